//! The answer to a connection over the limit: a short, defined refusal instead of silence.
//!
//! A plaintext connection over `GRIMOS_MAX_CONNECTIONS` is served for one request, at most
//! [`ANSWER_TIME`], by a service that answers every request with 503 (HTTP/1.1, with
//! `connection: close` and `retry-after`) or gRPC `UNAVAILABLE`, which clients retry. At most
//! [`ANSWERING`] such connections are answered at once; beyond that, and on TLS ports (where
//! answering would mean a handshake per refused connection), the connection is closed at
//! once. Each is counted in `server_connections_refused_total`.
//!
//! Every such answer carries [`NOT_PROCESSED_HEADER`]: no application code saw the request,
//! so a client may send it again elsewhere even when it is not idempotent (user-service's
//! auth client does).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How long a refused connection is served.
pub(crate) const ANSWER_TIME: Duration = Duration::from_secs(1);
/// Refused connections answered at once.
pub(crate) const ANSWERING: usize = 64;

const MESSAGE: &str = "the server is at its connection limit; retry later";

/// The header (gRPC: metadata) on an answer the server gave without running the request, so
/// that clients can tell it from an `UNAVAILABLE` or 503 the application produced.
pub const NOT_PROCESSED_HEADER: &str = "grimos-not-processed";
/// Its value on the connection limit's answer.
const CONNECTION_LIMIT: &str = "connection-limit";

pub(crate) struct Answerer {
    server: &'static str,
    slots: Arc<Semaphore>,
}

impl Answerer {
    pub(crate) fn new(server: &'static str) -> Self {
        Self {
            server,
            slots: Arc::new(Semaphore::new(ANSWERING)),
        }
    }

    /// Refuses `tcp`: answered if `tls` is off and an answering slot is free, else closed.
    pub(crate) fn answer(&self, tcp: TcpStream, tls: bool) {
        metrics::counter!("server_connections_refused_total", "server" => self.server).increment(1);
        tracing::debug!(
            server = self.server,
            "connection limit reached; refusing a connection"
        );
        if tls {
            return;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(ANSWER_TIME)
                .keep_alive(false);
            builder.http2().max_concurrent_streams(1);
            let service = hyper::service::service_fn(refuse);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(ANSWER_TIME, connection).await;
            drop(slot);
        });
    }
}

async fn refuse(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    let not_processed = (
        http::HeaderName::from_static(NOT_PROCESSED_HEADER),
        HeaderValue::from_static(CONNECTION_LIMIT),
    );
    if grpc {
        let mut response = tonic::Status::unavailable(MESSAGE).into_http::<String>();
        response
            .headers_mut()
            .insert(not_processed.0, not_processed.1);
        return Ok(response);
    }
    let mut response = Response::new(format!(
        r#"{{"code":14,"message":"{MESSAGE}","details":[]}}"#
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(not_processed.0, not_processed.1);
    if request.version() < http::Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}
