//! Serving a port for either service: HTTP/1.1 and HTTP/2 (gRPC, gRPC-Web, HTTP/JSON), with
//! or without TLS, and a bound on every resource a client can hold ([`Limits`]).
//!
//! `axum::serve` and tonic's server each bound only part of that (neither caps connections or
//! closes idle HTTP/2 connections; `axum::serve` sets no header timeout, tonic no stream
//! limit), so both services serve through [`Server`], which drives hyper-util's connection
//! builder itself. It owns the accept loop and the connection limit ([`Server::serve`]), each
//! connection's watchdog (`connection`), the body deadline (`body`), the request deadline
//! (`deadline`), the lingering close (`linger`) and TLS files (`tls`). It knows nothing about
//! either service's API: it serves any `axum::Router`.
//!
//! Everything it ends is counted in the metrics (`server_connections_*`,
//! `server_request_*`); the table in `docs/ARCHITECTURE.md` ("Limits") lists every bound.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::task::TaskTracker;

mod body;
mod connection;
mod deadline;
pub mod health;
mod limits;
mod linger;
pub mod metrics;
mod overload;
pub mod probe;
mod request_id;
pub mod tls;
pub mod trace;

pub use body::DeadlineBody;
pub use deadline::{Deadline, DeadlineLayer, call_deadline, grpc_timeout, with_deadline};
pub use limits::Limits;
pub use linger::{LINGER_BYTES, LINGER_QUIET, LINGER_TIME};
pub use overload::NOT_PROCESSED_HEADER;
pub use request_id::{
    MAX_REQUEST_ID_BYTES, REQUEST_ID_HEADER, RequestIdLayer, RequestIdService, request_id,
    with_request_id,
};

use connection::Shared;
use linger::{Lingering, Slot, WriteStall};

/// HTTP/2 flow-control window per stream: twice the largest request message (64 KiB), so a
/// client cannot make the server buffer more per stream than a request can be.
const STREAM_WINDOW: u32 = 128 * 1024;
/// HTTP/2 flow-control window per connection.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Response bytes buffered per HTTP/2 stream while the client's window is closed.
const SEND_BUFFER: usize = 64 * 1024;
/// Streams a client may reset before the server has accepted them (rapid reset,
/// CVE-2023-44487), and streams the server may reset because of client errors, per
/// connection; beyond either the connection is closed with GOAWAY.
const PENDING_ACCEPT_RESETS: usize = 20;
const LOCAL_ERROR_RESETS: usize = 256;
/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A configured server for one port; see the crate documentation.
pub struct Server {
    name: &'static str,
    limits: Limits,
    tls: Option<Arc<ServerConfig>>,
    http2_only: bool,
}

impl Server {
    /// A plaintext server named `name` in logs and metrics (`user`, `auth`), with `limits`.
    pub fn new(name: &'static str, limits: Limits) -> Self {
        Self {
            name,
            limits,
            tls: None,
            http2_only: false,
        }
    }

    /// Serves TLS only, with this configuration (see [`tls::server_config`]).
    #[must_use]
    pub fn tls(mut self, tls: Option<Arc<ServerConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Speaks HTTP/2 only (a gRPC-only port).
    #[must_use]
    pub fn http2_only(mut self) -> Self {
        self.http2_only = true;
        self
    }

    /// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
    /// requests in flight finish (each connection for at most `request_timeout`) and returns.
    pub async fn serve<F>(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: F,
    ) -> io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.limits.check().map_err(io::Error::other)?;
        raise_file_limit(self.name, self.limits.max_connections);
        let shared = Arc::new(Shared {
            name: self.name,
            builder: self.builder(),
            router,
            limits: self.limits,
        });
        let tls = self.tls.map(TlsAcceptor::from);
        let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
        let overload = overload::Answerer::new(self.name);
        let (stop, stopping) = watch::channel(false);
        let connections = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(server = self.name, %error, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            if let Err(error) = tcp.set_nodelay(true) {
                // Without it, small responses wait for the peer's delayed ACK (~40 ms).
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            ::metrics::counter!("server_connections_total", "server" => self.name).increment(1);
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                overload.answer(tcp, tls.is_some());
                continue;
            };
            let stall = WriteStall::new();
            let tcp = Lingering::new(tcp, Slot::new(permit, self.name), stall.clone());
            connections.spawn(connection(
                tcp,
                stall,
                peer,
                tls.clone(),
                shared.clone(),
                stopping.clone(),
            ));
        }
        drop(listener);
        let _ = stop.send(true);
        connections.close();
        // Each connection ends within request_timeout of the stop; this is a backstop.
        let backstop = shared.limits.request_timeout + Duration::from_secs(1);
        if tokio::time::timeout(backstop, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                server = self.name,
                "connections still open after the graceful stop"
            );
        }
        Ok(())
    }

    fn builder(&self) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
        let limits = &self.limits;
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if self.http2_only {
            builder = builder.http2_only();
        }
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buf_size(SEND_BUFFER)
            .max_pending_accept_reset_streams(PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(LOCAL_ERROR_RESETS);
        builder
    }
}

/// One accepted connection: the TLS handshake (bounded by the header timeout), then hyper.
async fn connection(
    tcp: Lingering,
    stall: Arc<WriteStall>,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stopping: watch::Receiver<bool>,
) {
    match tls {
        None => connection::serve(TokioIo::new(tcp), stall, shared, stopping).await,
        Some(acceptor) => {
            let handshake = acceptor.accept(tcp);
            match tokio::time::timeout(shared.limits.header_read_timeout, handshake).await {
                Ok(Ok(tls)) => connection::serve(TokioIo::new(tls), stall, shared, stopping).await,
                Ok(Err(error)) => {
                    connection::closed(shared.name, "tls_handshake");
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    connection::closed(shared.name, "tls_handshake_timeout");
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so that the connection limit, not
/// the file limit, is what a flood of connections meets; warns if it is still too low.
fn raise_file_limit(server: &'static str, max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            // Databases, the listener and outgoing connections need descriptors too.
            let needed = u64::try_from(max_connections)
                .unwrap_or(u64::MAX)
                .saturating_add(64);
            if limit < needed {
                tracing::warn!(
                    server,
                    limit,
                    max_connections,
                    "the open-file limit is below GRIMOS_MAX_CONNECTIONS; accepting will fail first"
                );
            }
        }
        Err(error) => tracing::debug!(%error, "cannot raise the open-file limit"),
    }
}
