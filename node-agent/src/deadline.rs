//! A bound on each request to the API server, counted from when it is sent: its whole
//! answer, headers and body, must come within it.
//!
//! A read timeout on the connection would bound the same stuck request, but it also
//! runs while the connection waits in the pool between requests (hyper keeps reading an
//! idle connection to notice its close), so every connection idle for longer than the
//! timeout is closed: a heartbeat client whose Lease renewal comes every 10 s with a
//! 10 s timeout made a new TCP connection and TLS handshake for every renewal. The
//! deadline runs only while a request is out. When it passes, the request's future or
//! body is dropped, and hyper closes a connection whose request was given up, so the
//! next request opens a new one (a half-open connection is not reused).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::BoxError;

use crate::Error;

/// A [`tower::Layer`] giving every request [`Deadline`]'s bound.
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    /// Every request's answer must be complete within `limit` of its sending.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

/// A service whose requests fail with [`Error::NoAnswer`] when their answer is not
/// complete within a limit of their sending (see the module docs).
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for Deadline<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ResponseBody: Body + Unpin,
    ResponseBody::Error: Into<BoxError>,
{
    type Response = http::Response<DeadlineBody<ResponseBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let limit = self.limit;
        let deadline = Instant::now() + limit;
        let answer = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(response)) => Ok(response.map(|body| DeadlineBody {
                    body,
                    expires: Box::pin(tokio::time::sleep_until(deadline)),
                    limit,
                })),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(Box::new(Error::NoAnswer { limit }) as BoxError),
            }
        })
    }
}

/// A response body that fails with [`Error::NoAnswer`] when its request's deadline
/// passes before its end.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    body: B,
    expires: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.expires.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err(Box::new(Error::NoAnswer { limit: this.limit }))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{Layer, Service, ServiceExt};

    type Answer<B> = Pin<Box<dyn Future<Output = Result<http::Response<B>, BoxError>> + Send>>;

    /// A service answering after `delay` with `body`.
    fn answering<B: Send + 'static>(
        delay: Duration,
        body: impl Fn() -> B + Clone + Send + 'static,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<B>,
        Error = BoxError,
        Future = Answer<B>,
    > + Clone {
        tower::service_fn(move |_: http::Request<()>| {
            let body = body.clone();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok::<_, BoxError>(http::Response::new(body()))
            }) as Answer<B>
        })
    }

    fn no_answer(e: &BoxError) -> bool {
        matches!(e.downcast_ref::<Error>(), Some(Error::NoAnswer { .. }))
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_limit_passes_whole() {
        let service = DeadlineLayer::new(Duration::from_secs(10))
            .layer(answering(Duration::from_secs(9), || {
                Full::new(Bytes::from_static(b"lease"))
            }));
        let response = service
            .oneshot(http::Request::new(()))
            .await
            .expect("answer");
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(body.to_bytes(), Bytes::from_static(b"lease"));
    }

    #[tokio::test(start_paused = true)]
    async fn headers_later_than_the_limit_fail_the_request() {
        let service = DeadlineLayer::new(Duration::from_secs(10))
            .layer(answering(Duration::from_secs(11), || {
                Full::new(Bytes::new())
            }));
        let e = service
            .oneshot(http::Request::new(()))
            .await
            .expect_err("no answer in time");
        assert!(no_answer(&e), "{e}");
        assert_eq!(
            e.to_string(),
            "no complete answer from the API server within 10s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_unfinished_at_the_limit_fails() {
        // Headers at once, then one chunk at 5 s and none after: the limit counts from
        // the sending, not from the last chunk.
        let stalled = || {
            let chunks = futures::stream::unfold(0, |n| async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Some((Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"{"))), 1))
                } else {
                    std::future::pending().await
                }
            });
            StreamBody::new(Box::pin(chunks))
        };
        let service =
            DeadlineLayer::new(Duration::from_secs(10)).layer(answering(Duration::ZERO, stalled));
        let started = Instant::now();
        let response = service
            .oneshot(http::Request::new(()))
            .await
            .expect("headers");
        let e = response
            .into_body()
            .collect()
            .await
            .expect_err("the body never ends");
        assert!(no_answer(&e), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_is_per_request() {
        // Two requests 30 s apart on one service: the first's deadline does not reach
        // the second, as a read timeout on an idle pooled connection would.
        let service = DeadlineLayer::new(Duration::from_secs(10))
            .layer(answering(Duration::from_secs(1), || {
                Full::new(Bytes::from_static(b"ok"))
            }));
        for _ in 0..2 {
            let response = service
                .clone()
                .oneshot(http::Request::new(()))
                .await
                .expect("answer");
            response.into_body().collect().await.expect("body");
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}
