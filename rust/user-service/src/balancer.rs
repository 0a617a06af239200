//! Which auth-service endpoints the client balances over, when `AUTH_SERVICE_ADDRESS` names
//! several (a comma-separated list) or a `dns:///` name.
//!
//! tonic's balancer keeps an endpoint that refuses connections among the ready ones (a lazy
//! connection reports ready until a call tries it), so calls routed there fail with
//! `UNAVAILABLE` for as long as it is down: about a third of all calls with one of two
//! replicas stopped. One task per client, [`maintain`], therefore owns the balancer's set:
//!
//! - **Members**: the list's URLs, or every address the name resolves to, re-resolved every
//!   `refresh` (a failed or empty resolution keeps the current members).
//! - **Health**: every [`PROBE_INTERVAL`] each member is asked `grpc.health.v1.Health/Check`
//!   (the overall status, within the call deadline) on a connection of its own. A member that
//!   does not answer `SERVING` leaves the rotation at once; it is asked again on every round
//!   and comes back with its first `SERVING`.
//! - **Failing open**: when no member is healthy, all of them stay in rotation, so calls fail
//!   fast with `UNAVAILABLE` and recover with the first replica that comes back, rather than
//!   waiting for a probe.
//!
//! A replica that dies is out of rotation within one interval plus one probe (a refused
//! connection fails at once); calls routed to it before then still fail, and are not retried
//! (see the client's invariants).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio::task::JoinSet;
use tokio::time::{Interval, MissedTickBehavior};
use tonic::Request;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::auth_client::EndpointTemplate;

/// How often every member's health is checked.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Room for changes queued while no call drives the balancer.
pub(crate) const CHANGES_CAPACITY: usize = 1024;

/// A DNS lookup of the name's addresses.
pub(crate) type Resolve =
    Box<dyn FnMut() -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> + Send>;

/// Where the members come from.
pub(crate) enum Source {
    /// The URLs of a list, fixed.
    List(Vec<Endpoint>),
    /// A `dns:///` name, re-resolved every `refresh`; `template` makes each address an endpoint.
    Dns(Box<Dns>),
}

/// A `dns:///` source.
pub(crate) struct Dns {
    pub(crate) name: String,
    pub(crate) resolve: Resolve,
    pub(crate) template: EndpointTemplate,
    pub(crate) refresh: Duration,
}

/// One endpoint the balancer may use.
struct Member {
    endpoint: Endpoint,
    /// Health checks, on a connection of their own.
    health: HealthClient<Channel>,
    /// The last check's verdict; members start healthy, as tonic's balancer would treat them.
    healthy: bool,
}

impl Member {
    fn new(endpoint: Endpoint) -> Self {
        let health = HealthClient::new(endpoint.connect_lazy());
        Self {
            endpoint,
            health,
            healthy: true,
        }
    }
}

/// Keeps the balancer behind `changes` equal to the healthy members of `source` (all of them
/// when none is healthy). Ends when the balancer (the channel) is gone.
pub(crate) async fn maintain(
    source: Source,
    changes: Sender<Change<String, Endpoint>>,
    deadline: Duration,
    probe_every: Duration,
) {
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let (mut dns, mut resolve_ticker) = match source {
        Source::List(endpoints) => {
            for endpoint in endpoints {
                members.insert(endpoint.uri().to_string(), Member::new(endpoint));
            }
            (None, None)
        }
        Source::Dns(dns) => {
            let Dns {
                name,
                resolve,
                template,
                refresh,
            } = *dns;
            (Some((name, resolve, template)), Some(ticker(refresh)))
        }
    };
    // Members start healthy: the first check comes one interval after the start.
    let mut probe_ticker = ticker(probe_every);
    probe_ticker.reset();
    let mut balanced = Balanced::default();
    loop {
        if balanced.sync(&members, &changes).await.is_err() {
            return;
        }
        tokio::select! {
            () = tick(&mut resolve_ticker) => {
                if let Some((name, resolve, template)) = &mut dns {
                    follow(name, resolve, template, &mut members).await;
                }
            }
            _ = probe_ticker.tick() => probe_all(&mut members, deadline).await,
            () = changes.closed() => return,
        }
    }
}

fn ticker(period: Duration) -> Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Re-resolves `name`: new addresses become members, vanished ones stop being members.
async fn follow(
    name: &str,
    resolve: &mut Resolve,
    template: &EndpointTemplate,
    members: &mut BTreeMap<String, Member>,
) {
    let resolved: BTreeMap<String, SocketAddr> = match resolve().await {
        Ok(addrs) if addrs.is_empty() => {
            tracing::warn!(%name, "auth-service name resolved to no address; keeping the current ones");
            return;
        }
        Ok(addrs) => addrs.into_iter().map(|a| (a.to_string(), a)).collect(),
        Err(error) => {
            tracing::warn!(%name, %error, "cannot resolve auth-service name; retrying");
            return;
        }
    };
    members.retain(|key, _| {
        let keep = resolved.contains_key(key);
        if !keep {
            tracing::info!(%name, addr = %key, "auth-service endpoint removed (no longer resolved)");
        }
        keep
    });
    for (key, addr) in resolved {
        if members.contains_key(&key) {
            continue;
        }
        match template.endpoint(addr) {
            Ok(endpoint) => {
                tracing::info!(%name, %addr, "auth-service endpoint added");
                members.insert(key, Member::new(endpoint));
            }
            Err(error) => {
                tracing::warn!(%name, %addr, error = format!("{error:#}"), "skipping address");
            }
        }
    }
}

/// Checks every member's health at once; each check is bounded by `deadline`.
async fn probe_all(members: &mut BTreeMap<String, Member>, deadline: Duration) {
    let mut checks = JoinSet::new();
    for (key, member) in members.iter() {
        let key = key.clone();
        let health = member.health.clone();
        checks.spawn(async move { (key, check(health, deadline).await) });
    }
    while let Some(result) = checks.join_next().await {
        let Ok((key, verdict)) = result else { continue };
        let Some(member) = members.get_mut(&key) else {
            continue;
        };
        if verdict.is_err() {
            // The next check dials afresh: a reconnecting channel would first hand it the
            // error of this failed attempt, and a replica back up would be seen a round late.
            member.health = HealthClient::new(member.endpoint.connect_lazy());
        }
        match verdict {
            Ok(()) if !member.healthy => {
                tracing::info!(endpoint = %key, "auth-service endpoint is serving again");
                member.healthy = true;
            }
            Err(reason) if member.healthy => {
                tracing::warn!(endpoint = %key, %reason, "auth-service endpoint failed its health check");
                member.healthy = false;
            }
            _ => {}
        }
    }
}

async fn check(mut health: HealthClient<Channel>, deadline: Duration) -> Result<(), String> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(deadline);
    match tokio::time::timeout(deadline, health.check(request)).await {
        Ok(Ok(response)) => {
            let status = response.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Ok(())
            } else {
                let name = ServingStatus::try_from(status)
                    .map_or("UNKNOWN", |status| status.as_str_name());
                Err(format!("status {name}"))
            }
        }
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

/// Which members belong in rotation: the healthy ones, or every one when none is healthy.
fn rotation(health: impl IntoIterator<Item = (String, bool)>) -> BTreeSet<String> {
    let (healthy, failing): (Vec<_>, Vec<_>) = health.into_iter().partition(|(_, ok)| *ok);
    let chosen = if healthy.is_empty() { failing } else { healthy };
    chosen.into_iter().map(|(key, _)| key).collect()
}

/// What the balancer has been told.
#[derive(Default)]
struct Balanced {
    /// The endpoints in the balancer, each with whether it was healthy when inserted.
    keys: BTreeMap<String, bool>,
    /// Whether the last sync found no healthy member (logged once per change).
    all_failing: bool,
}

impl Balanced {
    /// Sends the balancer the inserts and removals that make its set the [`rotation`] of
    /// `members`. Fails when the balancer is gone.
    ///
    /// A member kept in rotation while failing (no member was healthy) is inserted again, as
    /// a fresh connection, once it is healthy: tonic's reconnecting service would otherwise
    /// hand the next call the error of its last failed connection attempt.
    async fn sync(
        &mut self,
        members: &BTreeMap<String, Member>,
        changes: &Sender<Change<String, Endpoint>>,
    ) -> Result<(), ()> {
        let all_failing = !members.is_empty() && members.values().all(|m| !m.healthy);
        if all_failing && !self.all_failing {
            tracing::warn!(
                "no auth-service endpoint passes its health check; keeping them all in rotation"
            );
        }
        self.all_failing = all_failing;
        let wanted = rotation(members.iter().map(|(k, m)| (k.clone(), m.healthy)));
        let gone: Vec<String> = self
            .keys
            .keys()
            .filter(|key| !wanted.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            self.keys.remove(&key);
            changes.send(Change::Remove(key)).await.map_err(drop)?;
        }
        for key in wanted {
            let Some(member) = members.get(&key) else {
                continue;
            };
            let (fresh, replace) = match self.keys.get(&key) {
                None => (true, false),
                Some(&inserted_healthy) => {
                    let revived = member.healthy && !inserted_healthy;
                    (revived, revived)
                }
            };
            if replace {
                // An insert alone would leave the old service in tower's ready set until
                // it had served (failed) one more call.
                changes
                    .send(Change::Remove(key.clone()))
                    .await
                    .map_err(drop)?;
            }
            if fresh {
                changes
                    .send(Change::Insert(key.clone(), member.endpoint.clone()))
                    .await
                    .map_err(drop)?;
            }
            self.keys.insert(key, member.healthy);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rotation;

    fn keys(set: std::collections::BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn the_rotation_is_the_healthy_members_or_all_when_none_is() {
        let health = |list: &[(&str, bool)]| {
            list.iter()
                .map(|(k, ok)| ((*k).to_owned(), *ok))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(rotation(health(&[("a", true), ("b", false), ("c", true)]))),
            ["a", "c"]
        );
        assert_eq!(
            keys(rotation(health(&[("a", false), ("b", false)]))),
            ["a", "b"]
        );
        assert!(rotation(health(&[])).is_empty());
    }
}
