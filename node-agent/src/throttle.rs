//! A client-side rate limit on requests to the API server (`kubeAPIQPS` and
//! `kubeAPIBurst`), as client-go's token bucket: a request waits for its token before
//! it is sent, in the order requests came, watches included.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use kubelet_core::TokenBucket;
use tower::{BoxError, ServiceExt};

/// One token bucket shared by every client given a clone of it (upstream's kubelet
/// client has one for all its requests and watches).
#[derive(Clone, Debug)]
pub struct Throttle {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl Throttle {
    /// Upstream's limit for `kubeAPIQPS` and `kubeAPIBurst` (defaulted to 50 and 100):
    /// `qps` a second after a burst of `burst`. A QPS of 0 is client-go's default of 5.
    pub fn kube_api(qps: i32, burst: i32) -> Self {
        let qps = if qps == 0 { 5.0 } else { f64::from(qps) };
        Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                qps,
                u32::try_from(burst).unwrap_or(1),
            ))),
        }
    }

    /// How long the next request waits for its token (it takes the token now).
    fn reserve(&self) -> std::time::Duration {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(tokio::time::Instant::now().into_std())
    }
}

/// A [`tower::Layer`] holding every request of the service to a [`Throttle`].
#[derive(Clone, Debug)]
pub struct ThrottleLayer {
    throttle: Throttle,
}

impl ThrottleLayer {
    /// Requests keep to `throttle`.
    pub fn new(throttle: Throttle) -> Self {
        Self { throttle }
    }
}

impl<S> tower::Layer<S> for ThrottleLayer {
    type Service = Throttled<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttled {
            inner,
            throttle: self.throttle.clone(),
        }
    }
}

/// A service whose requests wait for a token of their [`Throttle`] before being sent.
#[derive(Clone, Debug)]
pub struct Throttled<S> {
    inner: S,
    throttle: Throttle,
}

impl<S, Request> tower::Service<Request> for Throttled<S>
where
    S: tower::Service<Request> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Request: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner service is made ready when the token has come.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let wait = self.throttle.reserve();
        let inner = self.inner.clone();
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            inner.oneshot(request).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_their_tokens_in_order() {
        let start = tokio::time::Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        let service = tower::service_fn(move |n: u32| {
            record
                .lock()
                .expect("sent")
                .push((n, start.elapsed().as_millis()));
            async move { Ok::<_, std::convert::Infallible>(n) }
        });
        // 10 a second after a burst of 2.
        let throttled = ThrottleLayer::new(Throttle::kube_api(10, 2));
        let service = tower::Layer::layer(&throttled, service);
        let calls = (0..5).map(|n| service.clone().oneshot(n));
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(
            *sent.lock().expect("sent"),
            [(0, 0), (1, 0), (2, 100), (3, 200), (4, 300)]
        );
        // A QPS of 0 is client-go's default of 5 a second.
        let slow = Throttle::kube_api(0, 1);
        assert_eq!(slow.reserve(), Duration::ZERO);
        assert_eq!(slow.reserve(), Duration::from_millis(200));
    }
}
