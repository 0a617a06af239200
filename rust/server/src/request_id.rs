//! The request id of the request being served: taken from `x-request-id` when the caller sent
//! a sane one, made up otherwise, written back to the header (so logs, the response and the
//! handlers all see the same id) and kept in a task-local ([`request_id`]) while the request
//! runs, so every call it makes to another service carries it without a parameter.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

/// The header (and gRPC metadata key) that carries a request id from HTTP, between services
/// and into logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken from a caller; a longer one is replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served on this task, if it runs under [`RequestIdLayer`].
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Runs `future` with `id` as its [`request_id`] (for tests and for work a request hands to
/// another task).
pub async fn with_request_id<F: std::future::Future>(id: Arc<str>, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// Gives every request an id; see the module documentation. Put it outside the layers that
/// log (the trace span reads the header it writes).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service [`RequestIdLayer`] makes.
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<Arc<str>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let sent = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES);
        let id: Arc<str> = match sent {
            Some(id) => Arc::from(id),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                if let Ok(value) = HeaderValue::from_str(&id) {
                    request.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                Arc::from(id)
            }
        };
        REQUEST_ID.scope(id, self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::convert::Infallible;

    use super::*;

    /// What the inner service saw: the header and the task-local.
    async fn seen(header: Option<&str>) -> (Option<String>, Option<Arc<str>>) {
        let inner = tower::service_fn(|request: Request<()>| async move {
            let header = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, Infallible>((header, request_id()))
        });
        let mut request = Request::new(());
        if let Some(header) = header {
            request
                .headers_mut()
                .insert(REQUEST_ID_HEADER, HeaderValue::from_str(header).unwrap());
        }
        RequestIdLayer.layer(inner).call(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_sane_id_is_kept_and_in_scope() {
        let (header, scoped) = seen(Some("abc-123")).await;
        assert_eq!(header.as_deref(), Some("abc-123"));
        assert_eq!(scoped.as_deref(), Some("abc-123"));
        assert_eq!(request_id(), None, "only inside the request");
    }

    #[tokio::test]
    async fn a_missing_empty_or_oversized_id_is_replaced_everywhere() {
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        for sent in [None, Some(""), Some(long.as_str())] {
            let (header, scoped) = seen(sent).await;
            let header = header.unwrap();
            assert_eq!(header.len(), 36, "a UUID, not {sent:?}");
            assert_eq!(scoped.as_deref(), Some(header.as_str()));
        }
    }
}
