//! An API server in memory for unit tests: a `kube::Client` whose every request an async
//! closure answers with a status code and a JSON body.

use std::convert::Infallible;

use http_body_util::BodyExt;
use serde_json::Value;

/// A client whose requests `answer` answers from their method, URI and body.
pub(crate) fn client<F, Fut>(answer: F) -> kube::Client
where
    F: Fn(http::request::Parts, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (u16, Value)> + Send + 'static,
{
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let answer = answer.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            let (code, value) = answer(parts, body).await;
            let response = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(value.to_string().into_bytes()))
                .expect("response");
            Ok::<_, Infallible>(response)
        }
    });
    kube::Client::new(service, "default")
}
