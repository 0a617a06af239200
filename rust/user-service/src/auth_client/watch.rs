//! The one `WatchRevocations` stream of a client ([`watch`]), which keeps local
//! verification's revocation set current.
//!
//! - **One stream to the service**, through the same channel as every call (the balancer,
//!   when there are several replicas, picks the endpoint it runs on). Any replica's stream
//!   carries every revocation: replicas share one database, and each streams what any of
//!   them commits to it.
//! - **No deadline.** The stream is opened with the service credential and without the
//!   unary `grpc-timeout` (see `outgoing`): it lives until it fails. Silence is what bounds
//!   it: the server sends a heartbeat every `heartbeat_interval`, and a stream silent past the
//!   silence bound is dropped and opened again.
//! - **Reconnect with a cursor.** Every message carries the cursor to resume after it; a new
//!   stream sends the last one, and the server answers with the revocations since (or, when
//!   it cannot resume from it, with the whole set and `reset`, which replaces what is held).
//!   Keys are fetched again before each stream, so a restarted auth-service's new key is
//!   known before its first token arrives. Attempts back off from 50 ms to 2 s.
//! - While no stream is in sync, local state is not trusted (see `local`).
//!
//! Metrics: `auth_client_revocation_stream_connected` (1 while a stream is in sync),
//! `auth_client_revocation_stream_lag_seconds` (since the last message),
//! `auth_client_revocations_applied_total`.

use std::sync::Arc;
use std::time::Duration;

use grimos_proto::auth::v1 as pb;
use grimos_token::Revocation;
use tonic::Streaming;

use super::AuthClient;
use super::local::{Local, now_secs};

/// The first wait before opening a stream again, doubled on each failure up to the second.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the lag gauge is updated and expired revocations are dropped while waiting.
const TICK: Duration = Duration::from_millis(100);

/// Keeps `local` in sync with auth-service's revocations, for ever (the task is aborted when
/// the client is dropped). `client` is a clone that does not keep this task alive.
pub(super) async fn watch(client: AuthClient, local: Arc<Local>) {
    // Out of sync until the first message: a stream that never opens shows (and alerts) too.
    metrics::gauge!("auth_client_revocation_stream_connected").set(0.0);
    // The counters exist from the start, so a rate over them is 0 rather than absent.
    metrics::counter!("auth_client_local_fallbacks_total").increment(0);
    metrics::counter!("auth_client_revocations_applied_total").increment(0);
    let mut cursor = String::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match client.open(&local, &cursor).await {
            Ok(stream) => {
                let outcome = follow(stream, &local, &mut cursor).await;
                local.disconnected();
                metrics::gauge!("auth_client_revocation_stream_connected").set(0.0);
                match outcome {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        tracing::warn!("the revocation stream ended; opening it again");
                    }
                    Err(Broken::AfterSync(reason)) => {
                        backoff = FIRST_BACKOFF;
                        tracing::warn!(reason, "the revocation stream broke; opening it again");
                    }
                    Err(Broken::BeforeSync(reason)) => {
                        tracing::warn!(
                            reason,
                            "the revocation stream broke before its first message"
                        );
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(reason, "cannot open the revocation stream");
            }
        }
        metrics::gauge!("auth_client_revocation_stream_lag_seconds").set(local.lag().as_secs_f64());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a stream was given up.
enum Broken {
    BeforeSync(String),
    AfterSync(String),
}

impl AuthClient {
    /// Fetches the keys, then opens a stream resuming after `cursor`.
    async fn open(
        &self,
        local: &Local,
        cursor: &str,
    ) -> Result<Streaming<pb::WatchRevocationsResponse>, String> {
        self.fetch_keys(local)
            .await
            .map_err(|error| format!("{error:#}"))?;
        let request = pb::WatchRevocationsRequest {
            cursor: cursor.to_owned(),
        };
        let mut stream = self.stream.clone();
        // Only the answer's headers are bounded by the deadline; the stream has none.
        match tokio::time::timeout(self.deadline, stream.watch_revocations(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err("auth-service did not answer within the deadline".to_owned()),
        }
    }
}

/// Applies the stream's messages until it ends (`Ok`), fails, or is silent past the bound.
async fn follow(
    mut stream: Streaming<pb::WatchRevocationsResponse>,
    local: &Local,
    cursor: &mut String,
) -> Result<(), Broken> {
    let mut synced = false;
    let mut silent = Duration::ZERO;
    let broken = |synced: bool, reason: String| {
        if synced {
            Broken::AfterSync(reason)
        } else {
            Broken::BeforeSync(reason)
        }
    };
    loop {
        // Before the first message, the deadline; then the silence bound.
        let bound = if synced {
            local.silence()
        } else {
            client_wait(local)
        };
        match tokio::time::timeout(TICK, stream.message()).await {
            Ok(Ok(Some(message))) => {
                apply(local, &message, !synced).map_err(|reason| broken(synced, reason))?;
                cursor.clone_from(&message.cursor);
                if !synced {
                    synced = true;
                    metrics::gauge!("auth_client_revocation_stream_connected").set(1.0);
                }
                silent = Duration::ZERO;
                metrics::gauge!("auth_client_revocation_stream_lag_seconds").set(0.0);
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(status)) => {
                return Err(broken(
                    synced,
                    format!("{:?}: {}", status.code(), status.message()),
                ));
            }
            Err(_) => {
                silent += TICK;
                metrics::gauge!("auth_client_revocation_stream_lag_seconds")
                    .set(local.lag().as_secs_f64());
                local.revocations.purge(now_secs());
                if silent > bound {
                    return Err(broken(synced, format!("silent for more than {bound:?}")));
                }
            }
        }
    }
}

/// How long to wait for a new stream's first message.
fn client_wait(local: &Local) -> Duration {
    local.silence().max(Duration::from_secs(2))
}

/// Applies one message: the whole set on `reset`, else the revocations since the last.
fn apply(local: &Local, message: &pb::WatchRevocationsResponse, first: bool) -> Result<(), String> {
    let revocations = message
        .revocations
        .iter()
        .map(Revocation::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    if message.reset {
        local.revocations.reset(&revocations);
    } else {
        local.revocations.apply(&revocations);
    }
    metrics::counter!("auth_client_revocations_applied_total").increment(revocations.len() as u64);
    local.reached(&message.cursor);
    let heartbeat = if first {
        message.heartbeat_interval.as_ref().and_then(|d| {
            Some(Duration::new(
                u64::try_from(d.seconds).ok()?,
                u32::try_from(d.nanos).ok()?,
            ))
        })
    } else {
        None
    };
    local.received(heartbeat);
    Ok(())
}
