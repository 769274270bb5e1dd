//! TokenReview and SubjectAccessReview through the API server, for the kubelet API's
//! webhook authentication and authorization (the node's credentials may create both).

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::auth::{AccessReviewer, Attributes, TokenReviewer, UserInfo, Verdict};

/// How long one review may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of one review when the API server fails or cannot be reached.
const ATTEMPTS: u32 = 3;
/// The first delay between tries; it doubles.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The API server, reviewing tokens and requests.
#[derive(Clone)]
pub struct ApiReviews {
    client: kube::Client,
}

impl ApiReviews {
    /// Reviews through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

/// Whether a failed call is worth another try: the API server's own failures and
/// throttling, and transport errors; not a refusal of the request.
fn retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        _ => true,
    }
}

/// Creates `object` through `api`, retrying as [`retryable`] says.
async fn create<K>(api: &Api<K>, object: &K, what: &str) -> Result<K, String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut delay = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        let error =
            match tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), object))
                .await
            {
                Ok(Ok(created)) => return Ok(created),
                Ok(Err(e)) if attempt < ATTEMPTS && retryable(&e) => e.to_string(),
                Ok(Err(e)) => return Err(format!("creating a {what}: {e}")),
                Err(_) if attempt < ATTEMPTS => "timed out".to_owned(),
                Err(_) => {
                    return Err(format!(
                        "creating a {what}: no answer within {REVIEW_TIMEOUT:?}"
                    ));
                }
            };
        tracing::debug!(what, attempt, error, "review failed, retrying");
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

#[async_trait]
impl TokenReviewer for ApiReviews {
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = create(&api, &review, "TokenReview").await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            if let Some(error) = status.error.filter(|e| !e.is_empty()) {
                tracing::debug!(error, "token not authenticated");
            }
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }
}

#[async_trait]
impl AccessReviewer for ApiReviews {
    async fn review_access(&self, a: &Attributes) -> Result<Verdict, String> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(a.user.name.clone()),
                uid: non_empty(&a.user.uid),
                groups: Some(a.user.groups.clone()),
                extra: (!a.user.extra.is_empty()).then(|| a.user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.to_owned()),
                    group: Some(String::new()),
                    version: Some("v1".to_owned()),
                    resource: Some("nodes".to_owned()),
                    subresource: Some(a.subresource.to_owned()),
                    name: Some(a.name.clone()),
                    namespace: Some(String::new()),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = create(&api, &review, "SubjectAccessReview").await?;
        let status = answer.status.unwrap_or_default();
        if let Some(error) = status.evaluation_error.filter(|e| !e.is_empty()) {
            tracing::debug!(user = %a.user.name, error, "SubjectAccessReview evaluation error");
        }
        Ok(if status.allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        })
    }
}
