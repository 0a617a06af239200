//! Request bodies with a deadline for the whole body, not per read.
//!
//! tower-http's `RequestBodyTimeout` restarts its timer at every frame, so a client dripping
//! one byte every few seconds keeps a request open for as long as it likes. Here the clock
//! starts when the request arrives and the body fails once [`crate::Limits::body_read_timeout`]
//! has passed, whatever arrived meanwhile. The error is a `tonic::Status` with
//! `DEADLINE_EXCEEDED`: tonic finds a `Status` in a body error's source chain and answers the
//! call with it, and the HTTP/JSON extractor turns it into 408
//! (`grimos_proto::gateway::error::is_body_timeout`, the one copy of that rule).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The message of the error a late body ends with.
const LATE_BODY: &str = "the request body was not received in time";

pin_project! {
    /// A body that fails with `DEADLINE_EXCEEDED` once its deadline has passed.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        done: bool,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner`, failing if it has not ended by `deadline`.
    pub fn new(inner: B, deadline: Instant) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep_until(deadline),
            done: false,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => {
                if this.deadline.poll(cx).is_ready() {
                    *this.done = true;
                    metrics::counter!("server_request_body_timeouts_total").increment(1);
                    Poll::Ready(Some(Err(Box::new(tonic::Status::deadline_exceeded(
                        LATE_BODY,
                    )))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use http_body_util::StreamBody;

    use super::*;

    #[tokio::test]
    async fn a_body_that_ends_in_time_is_passed_through() {
        let body = DeadlineBody::new(
            http_body_util::Full::new(Bytes::from_static(b"{}")),
            Instant::now() + Duration::from_secs(5),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{}");
    }

    #[tokio::test]
    async fn a_body_still_arriving_at_its_deadline_fails_with_deadline_exceeded() {
        // One frame, then nothing: the client stalls.
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        sender
            .send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = DeadlineBody::new(
            StreamBody::new(tokio_stream_from(receiver)),
            Instant::now() + Duration::from_millis(50),
        );
        let error = body.collect().await.unwrap_err();
        let status = error.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{error}");
        drop(sender);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_core::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }
}
