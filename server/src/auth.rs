//! Who may call the kubelet API, as upstream's `KubeletAuth`: authentication by client
//! certificate (user = CN, groups = O), by bearer token through the API server's
//! TokenReview (cached for `authentication.webhook.cacheTTL`), or as `system:anonymous`
//! when `authentication.anonymous.enabled`; authorization of every request as the
//! `nodes/<subresource>` of this node, through SubjectAccessReview (answers cached for
//! `authorization.webhook.cacheAuthorizedTTL` / `cacheUnauthorizedTTL`) or AlwaysAllow.
//!
//! The API server calls are behind [`TokenReviewer`] and [`AccessReviewer`], so the
//! decisions are tested with in-memory fakes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cache::TtlCache;

/// The user of anonymous requests.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of anonymous requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group every authenticated user is added to.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Most cached TokenReview answers.
const TOKEN_CACHE_SIZE: usize = 4096;
/// Most cached SubjectAccessReview answers.
const ACCESS_CACHE_SIZE: usize = 8192;

/// Who made a request (upstream `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct UserInfo {
    /// The user name.
    pub name: String,
    /// The user's UID, when the authenticator gives one.
    pub uid: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// Extra attributes (from a TokenReview).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user of a name and groups.
    pub fn new(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            groups: groups.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds `system:authenticated` unless the user already is in it or is anonymous
    /// (upstream `AuthenticatedGroupAdder`).
    fn authenticated(mut self) -> Self {
        let skip = self.name == ANONYMOUS_USER
            || self
                .groups
                .iter()
                .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
        if !skip {
            self.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        self
    }
}

/// Reviews bearer tokens (the API server's TokenReview).
#[async_trait]
pub trait TokenReviewer: Send + Sync {
    /// The token's user; `None` when the token is not valid; an error when the review
    /// could not be made.
    async fn review_token(&self, token: &str) -> Result<Option<UserInfo>, String>;
}

/// What one authorization check asks (upstream `authorizer.Attributes` of a request to
/// the kubelet: always a resource request on `nodes`, API version `v1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Attributes {
    /// Who.
    pub user: UserInfo,
    /// The API verb (`get`, `create`, ...; empty for other HTTP methods).
    pub verb: &'static str,
    /// The subresource of `nodes`, e.g. `proxy`.
    pub subresource: &'static str,
    /// The node's name.
    pub name: String,
}

/// A SubjectAccessReview's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Not allowed (denied, or no authorizer had an opinion).
    Deny,
}

/// Reviews requests (the API server's SubjectAccessReview).
#[async_trait]
pub trait AccessReviewer: Send + Sync {
    /// Whether the user may; an error when the review could not be made.
    async fn review_access(&self, attributes: &Attributes) -> Result<Verdict, String>;
}

/// How bearer tokens are checked.
pub enum TokenAuth {
    /// `authentication.webhook.enabled: false`: tokens are ignored.
    Disabled,
    /// Enabled, but the kubelet has no API server (no `--kubeconfig`): a token cannot be
    /// checked, so a request with one is refused with that reason.
    NoApiServer,
    /// Checked by the API server, answers cached for `ttl`.
    Webhook {
        /// The API server.
        reviewer: Arc<dyn TokenReviewer>,
        /// `authentication.webhook.cacheTTL`, for valid and invalid tokens alike.
        ttl: Duration,
    },
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    /// The request's user.
    User(UserInfo),
    /// Not reviewed: the source sent too many tokens the cache did not know (429).
    TooManyReviews,
    /// Not authenticated (401); `why` is for the log, `hint` (when set) is told to the
    /// client as well.
    Unauthorized {
        /// Why, for the kubelet's log.
        why: String,
        /// An explanation for the client, for a kubelet set up so that no request can
        /// authenticate this way.
        hint: Option<String>,
    },
}

/// Authenticates requests (upstream's union: client certificate, then bearer token, then
/// anonymous; a token that fails does not fall back to anonymous).
pub struct Authenticator {
    tokens: TokenAuth,
    token_cache: TtlCache<[u8; 32], Option<UserInfo>>,
    review_budget: ReviewBudget,
    anonymous: bool,
}

/// A burst of token reviews each source may cause, refilled at [`REVIEWS_PER_SECOND`]:
/// tokens the cache does not know cost a TokenReview each, and a client sending random
/// ones must not turn every request into one.
const REVIEW_BURST: u32 = 20;
/// How fast a source's review budget refills.
const REVIEWS_PER_SECOND: f64 = 5.0;
/// Most sources whose budget is tracked.
const REVIEW_SOURCES: usize = 4096;

/// The token review budget of each source address.
#[derive(Default)]
struct ReviewBudget {
    sources: std::sync::Mutex<std::collections::HashMap<IpAddr, kubelet_core::TokenBucket>>,
}

impl ReviewBudget {
    /// Takes one review from `source`'s budget; false when it has none left.
    fn take(&self, source: IpAddr) -> bool {
        let now = Instant::now().into_std();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= REVIEW_SOURCES && !sources.contains_key(&source) {
            // Sources back at a full budget are the same as unknown ones.
            sources.retain(|_, budget| !budget.is_full(now));
            if sources.len() >= REVIEW_SOURCES {
                return false;
            }
        }
        sources
            .entry(source)
            .or_insert_with(|| kubelet_core::TokenBucket::new(REVIEWS_PER_SECOND, REVIEW_BURST))
            .try_take(now)
    }
}

impl Authenticator {
    /// An authenticator checking tokens as `tokens` says, and allowing anonymous
    /// requests when `anonymous`. Client certificates are checked by TLS (against
    /// `authentication.x509.clientCAFile`) before a request gets here.
    pub fn new(tokens: TokenAuth, anonymous: bool) -> Self {
        Self {
            tokens,
            token_cache: TtlCache::new(TOKEN_CACHE_SIZE),
            review_budget: ReviewBudget::default(),
            anonymous,
        }
    }

    /// Whether some request can authenticate at all (for a warning at start-up).
    pub fn accepts_tokens(&self) -> bool {
        matches!(self.tokens, TokenAuth::Webhook { .. })
    }

    /// Authenticates a request from `source`: `client_cert` is the user of its verified
    /// client certificate, `authorization` its `Authorization` header.
    pub async fn authenticate(
        &self,
        source: IpAddr,
        client_cert: Option<&UserInfo>,
        authorization: Option<&str>,
    ) -> Authn {
        if let Some(user) = client_cert {
            return Authn::User(user.clone().authenticated());
        }
        if let Some(token) = authorization.and_then(bearer_token) {
            match &self.tokens {
                TokenAuth::Disabled => {}
                TokenAuth::NoApiServer => {
                    return Authn::Unauthorized {
                        why: "bearer token, but no API server to review it".into(),
                        hint: Some(
                            "authentication.webhook is enabled but this kubelet has no API \
                             server (--kubeconfig) to review bearer tokens"
                                .into(),
                        ),
                    };
                }
                TokenAuth::Webhook { reviewer, ttl } => {
                    return self
                        .review_token(source, reviewer.as_ref(), *ttl, token)
                        .await;
                }
            }
        }
        if self.anonymous {
            return Authn::User(UserInfo::new(ANONYMOUS_USER, [UNAUTHENTICATED_GROUP]));
        }
        Authn::Unauthorized {
            why: "no credentials".into(),
            hint: None,
        }
    }

    async fn review_token(
        &self,
        source: IpAddr,
        reviewer: &dyn TokenReviewer,
        ttl: Duration,
        token: &str,
    ) -> Authn {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let answer = match self.token_cache.get(&key) {
            Some(answer) => answer,
            None if !self.review_budget.take(source) => return Authn::TooManyReviews,
            None => match reviewer.review_token(token).await {
                Ok(answer) => {
                    self.token_cache.insert(key, answer.clone(), ttl);
                    answer
                }
                // Errors are not cached, as upstream.
                Err(e) => {
                    return Authn::Unauthorized {
                        why: format!("reviewing the bearer token: {e}"),
                        hint: None,
                    };
                }
            },
        };
        match answer {
            Some(user) => Authn::User(user.authenticated()),
            None => Authn::Unauthorized {
                why: "invalid bearer token".into(),
                hint: None,
            },
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (upstream `bearertoken`).
fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The API verb of an HTTP method, as upstream (others give an empty verb).
pub fn api_verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// `path` is `prefix` or below it (upstream `isSubpath`; a trailing `/` of `prefix`
/// does not matter).
fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The subresources of `nodes` a request path is checked as, in order, as upstream's
/// `GetRequestAttributes` with `KubeletFineGrainedAuthz` (GA, locked on): `/pods`,
/// `/runningpods` and `/allocatedPods` as `pods`, `/healthz` as `healthz`, `/configz` as
/// `configz`, each falling back to `proxy`; `/stats` as `stats`, `/metrics` as `metrics`,
/// `/logs` as `log`, `/checkpoint` as `checkpoint`, `/statusz` as `statusz`, `/flagz` as
/// `configz`; everything else (`/containerLogs`, `/exec`, ...) as `proxy`.
pub fn subresources(path: &str) -> Vec<&'static str> {
    let mut subresources = Vec::with_capacity(2);
    if is_subpath(path, "/allocatedPods") || is_subpath(path, "/pods") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    } else if is_subpath(path, "/runningpods/") {
        subresources.push("pods");
    }
    let last = if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        "log"
    } else if is_subpath(path, "/checkpoint/") {
        "checkpoint"
    } else if is_subpath(path, "/statusz") {
        "statusz"
    } else if is_subpath(path, "/flagz") {
        "configz"
    } else {
        "proxy"
    };
    subresources.push(last);
    subresources
}

/// How requests are authorized (`authorization.mode`).
pub enum AuthzMode {
    /// `AlwaysAllow`.
    AlwaysAllow,
    /// `Webhook` without an API server: every request is refused with that reason.
    NoApiServer,
    /// `Webhook`: SubjectAccessReview, answers cached.
    Webhook {
        /// The API server.
        reviewer: Arc<dyn AccessReviewer>,
        /// `authorization.webhook.cacheAuthorizedTTL`.
        allowed_ttl: Duration,
        /// `authorization.webhook.cacheUnauthorizedTTL`.
        denied_ttl: Duration,
    },
}

/// The outcome of authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on.
    Allow,
    /// 403 with this body.
    Forbidden(String),
    /// 500 with this body: the review could not be made.
    Error(String),
}

/// Authorizes requests on this node's `nodes` subresources.
pub struct Authorizer {
    mode: AuthzMode,
    node_name: String,
    cache: TtlCache<String, Verdict>,
}

impl Authorizer {
    /// An authorizer of requests to the node `node_name`.
    pub fn new(mode: AuthzMode, node_name: impl Into<String>) -> Self {
        Self {
            mode,
            node_name: node_name.into(),
            cache: TtlCache::new(ACCESS_CACHE_SIZE),
        }
    }

    /// Whether `user` may make the request `method path`: allowed as soon as one of
    /// the path's subresources is, as upstream; the 403 body is upstream's.
    pub async fn authorize(&self, user: &UserInfo, method: &str, path: &str) -> Decision {
        let verb = api_verb(method);
        let subresources = subresources(path);
        let forbidden = format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])",
            user.name,
            subresources.join(" ")
        );
        let (reviewer, allowed_ttl, denied_ttl) = match &self.mode {
            AuthzMode::AlwaysAllow => return Decision::Allow,
            AuthzMode::NoApiServer => {
                return Decision::Forbidden(format!(
                    "{forbidden}: authorization.mode Webhook needs an API server \
                     (--kubeconfig) to review requests; a standalone kubelet needs \
                     authorization.mode AlwaysAllow\n"
                ));
            }
            AuthzMode::Webhook {
                reviewer,
                allowed_ttl,
                denied_ttl,
            } => (reviewer, *allowed_ttl, *denied_ttl),
        };
        for subresource in &subresources {
            let attributes = Attributes {
                user: user.clone(),
                verb,
                subresource,
                name: self.node_name.clone(),
            };
            let key = serde_json::to_string(&attributes).unwrap_or_default();
            let verdict = match self.cache.get(&key) {
                Some(verdict) => verdict,
                None => match reviewer.review_access(&attributes).await {
                    Ok(verdict) => {
                        let ttl = match verdict {
                            Verdict::Allow => allowed_ttl,
                            Verdict::Deny => denied_ttl,
                        };
                        self.cache.insert(key, verdict.clone(), ttl);
                        verdict
                    }
                    Err(e) => {
                        tracing::error!(user = %user.name, verb, subresource, error = %e, "authorization error");
                        return Decision::Error(format!(
                            "Authorization error (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                            user.name
                        ));
                    }
                },
            };
            if verdict == Verdict::Allow {
                return Decision::Allow;
            }
        }
        tracing::debug!(user = %user.name, verb, subresources = ?subresources, "forbidden");
        Decision::Forbidden(format!("{forbidden}\n"))
    }
}

#[cfg(test)]
mod tests;
