//! Every request ends by its deadline: the caller's `grpc-timeout` for gRPC and gRPC-Web
//! calls, capped by [`crate::Limits::request_timeout`], which alone bounds HTTP/JSON requests.
//!
//! tonic's own server timeout does not reach services mounted in an axum router, and it
//! reports an expired deadline as `CANCELLED`; this layer answers `DEADLINE_EXCEEDED` (HTTP
//! 504 over JSON) and drops the work. While a request runs, its deadline is in a task-local
//! ([`call_deadline`]), so a call the request makes to another service can be given the time
//! that is left, and never more.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request being served on this task, if it runs under [`DeadlineLayer`].
pub fn call_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Runs `future` with `deadline` as its [`call_deadline`] (for tests and for work a request
/// hands to another task).
pub async fn with_deadline<F: Future>(deadline: Instant, future: F) -> F::Output {
    DEADLINE.scope(deadline, future).await
}

/// A `grpc-timeout` header value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`),
/// as the gRPC over HTTP/2 specification defines it; `None` when absent or malformed.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Bounds each request by its deadline; see the module documentation.
pub struct DeadlineLayer<B> {
    max: Duration,
    grpc: bool,
    on_timeout: fn() -> Response<B>,
}

impl<B> Clone for DeadlineLayer<B> {
    fn clone(&self) -> Self {
        Self {
            max: self.max,
            grpc: self.grpc,
            on_timeout: self.on_timeout,
        }
    }
}

impl<B: Default> DeadlineLayer<B> {
    /// For gRPC services: the caller's `grpc-timeout`, at most `max`; an expired call is
    /// answered `DEADLINE_EXCEEDED`. Put it inside `tonic-web` so gRPC-Web callers get that
    /// answer in their own encoding.
    pub fn grpc(max: Duration) -> Self {
        Self {
            max,
            grpc: true,
            on_timeout: deadline_exceeded::<B>,
        }
    }
}

fn deadline_exceeded<B: Default>() -> Response<B> {
    tonic::Status::deadline_exceeded("deadline exceeded").into_http()
}

impl<B> DeadlineLayer<B> {
    /// For other requests: `max`, answered with `on_timeout()` when it passes.
    pub fn http(max: Duration, on_timeout: fn() -> Response<B>) -> Self {
        Self {
            max,
            grpc: false,
            on_timeout,
        }
    }
}

impl<S, B> Layer<S> for DeadlineLayer<B> {
    type Service = Deadline<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`DeadlineLayer`] makes.
pub struct Deadline<S, B> {
    inner: S,
    layer: DeadlineLayer<B>,
}

impl<S: Clone, B> Clone for Deadline<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for Deadline<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let budget = if self.layer.grpc {
            grpc_timeout(request.headers())
                .map_or(self.layer.max, |asked| asked.min(self.layer.max))
        } else {
            self.layer.max
        };
        let deadline = Instant::now() + budget;
        let on_timeout = self.layer.on_timeout;
        let grpc = self.layer.grpc;
        let future = DEADLINE.scope(deadline, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(result) => result,
                Err(_) => {
                    metrics::counter!("server_request_deadlines_exceeded_total").increment(1);
                    // The one log line of this answer. A gRPC caller chose its deadline; an
                    // HTTP request ran past the server's own bound, a server failure (504).
                    if grpc {
                        tracing::debug!(?budget, "the caller's deadline passed; work dropped");
                    } else {
                        tracing::warn!(
                            ?budget,
                            "the request ran past GRIMOS_REQUEST_TIMEOUT; work dropped"
                        );
                    }
                    Ok(on_timeout())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        headers
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(grpc_timeout(&headers("1m")), Some(Duration::from_millis(1)));
        assert_eq!(grpc_timeout(&headers("2S")), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(&headers("3M")), Some(Duration::from_secs(180)));
        assert_eq!(
            grpc_timeout(&headers("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            grpc_timeout(&headers("500u")),
            Some(Duration::from_micros(500))
        );
        assert_eq!(
            grpc_timeout(&headers("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "m", "123456789m", "1x", "-1m", "1.5S", "S1"] {
            let mut map = HeaderMap::new();
            if let Ok(value) = value.parse() {
                map.insert("grpc-timeout", value);
            }
            assert_eq!(grpc_timeout(&map), None, "{value:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn the_deadline_is_visible_to_the_work_and_ends_it() {
        let slow = tower::service_fn(|_: Request<()>| async {
            let left = call_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            assert!(left.is_some_and(|left| left <= Duration::from_millis(20)));
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(Response::new(tonic::body::Body::empty()))
        });
        let mut service = DeadlineLayer::grpc(Duration::from_secs(30)).layer(slow);
        let request = Request::builder()
            .header("grpc-timeout", "20m")
            .body(())
            .unwrap();
        let started = std::time::Instant::now();
        let response = service.call(request).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(response.headers()["grpc-status"], "4");
    }
}
