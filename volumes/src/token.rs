//! Service-account tokens for projected volumes, cached and refreshed as upstream's
//! token manager (`pkg/kubelet/token/token_manager.go`) does.
//!
//! A token is requested once per pod, service account, audience and lifetime, and
//! reused until it needs a refresh: once 80% of its lifetime has passed, or once it is
//! older than 24 hours (for long-lived tokens). Upstream subtracts up to 10 s of random
//! jitter from both deadlines to spread requests; here the deadlines are exact, so that
//! they can be tested. When a refresh fails, the cached token is used until it expires.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kubelet_core::{Clock, ServiceAccountToken, VolumeSources};
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Tokens older than this are refreshed whatever their lifetime.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a token is requested for (upstream's cache key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    namespace: String,
    service_account: String,
    pod_name: String,
    pod_uid: String,
    audience: Option<String>,
    expiration_seconds: i64,
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} for pod {} ({}), audience {:?}, {}s",
            self.namespace,
            self.service_account,
            self.pod_name,
            self.pod_uid,
            self.audience.as_deref().unwrap_or_default(),
            self.expiration_seconds
        )
    }
}

/// Upstream `requiresRefresh` without jitter: `expiration_seconds` is the lifetime that
/// was requested, so the token was issued at `expiration - expiration_seconds`.
pub(crate) fn requires_refresh(
    now: SystemTime,
    expiration: SystemTime,
    expiration_seconds: i64,
) -> bool {
    let lifetime = Duration::from_secs(u64::try_from(expiration_seconds).unwrap_or_default());
    let issued_at = expiration
        .checked_sub(lifetime)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if now > issued_at + MAX_TTL {
        return true;
    }
    // Integer arithmetic, as upstream: 20% of the lifetime, in whole seconds.
    let margin =
        Duration::from_secs(u64::try_from(expiration_seconds * 20 / 100).unwrap_or_default());
    now > expiration
        .checked_sub(margin)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The token cache shared by the projected plugin and the volume manager.
pub(crate) struct TokenManager {
    sources: Arc<dyn VolumeSources>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<TokenKey, ServiceAccountToken>>,
}

impl TokenManager {
    pub(crate) fn new(sources: Arc<dyn VolumeSources>, clock: Arc<dyn Clock>) -> Self {
        Self {
            sources,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, ServiceAccountToken>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token for `pod`'s service account: the cached one while it is fresh, a new one
    /// otherwise (upstream `GetServiceAccountToken`).
    pub(crate) async fn token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String> {
        let meta = &pod.metadata;
        let key = TokenKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            pod_name: meta.name.clone().unwrap_or_default(),
            pod_uid: meta.uid.clone().unwrap_or_default(),
            audience: audience.map(str::to_owned),
            expiration_seconds,
        };
        let now = self.clock.now();
        let cached = {
            let mut cache = self.cache();
            // Upstream drops expired tokens every minute; here, other keys' on each
            // request (this key's is needed below to tell "expired" from "never had").
            cache.retain(|k, token| *k == key || token.expiration >= now);
            cache.get(&key).cloned()
        };
        if let Some(token) = &cached
            && !requires_refresh(now, token.expiration, expiration_seconds)
        {
            return Ok(token.token.clone());
        }
        debug!(key = %key, "requesting a service account token");
        match self
            .sources
            .service_account_token(pod, audience, expiration_seconds)
            .await
        {
            Ok(token) => {
                let value = token.token.clone();
                self.cache().insert(key, token);
                Ok(value)
            }
            Err(e) => match cached {
                None => Err(Error::Invalid(format!("failed to fetch token: {e}"))),
                Some(token) if now > token.expiration => Err(Error::Invalid(format!(
                    "token {key} expired and refresh failed: {e}"
                ))),
                Some(token) => {
                    warn!(key = %key, error = %e, "couldn't update token; using the cached one");
                    Ok(token.token)
                }
            },
        }
    }

    /// Forgets the tokens of pod `uid` (upstream `DeleteServiceAccountToken`).
    pub(crate) fn forget_pod(&self, uid: &str) {
        self.cache().retain(|key, _| key.pod_uid != uid);
    }

    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeClock, FakeSources, pod};

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refresh_at_eighty_percent_of_the_lifetime_or_after_a_day() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exp = issued + HOUR;
        assert!(!requires_refresh(issued, exp, 3600));
        assert!(!requires_refresh(
            issued + Duration::from_secs(2880),
            exp,
            3600
        ));
        assert!(requires_refresh(
            issued + Duration::from_secs(2881),
            exp,
            3600
        ));
        // A year-long token is refreshed after 24 hours.
        let year = 365 * 24 * 3600;
        let exp = issued + Duration::from_secs(year);
        assert!(!requires_refresh(issued + MAX_TTL, exp, year as i64));
        assert!(requires_refresh(
            issued + MAX_TTL + Duration::from_secs(1),
            exp,
            year as i64
        ));
    }

    #[tokio::test]
    async fn cached_until_refresh_time_then_requested_again() {
        let sources = Arc::new(FakeSources::default());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Arc::new(FakeClock::new(start));
        let tokens = TokenManager::new(sources.clone(), clock.clone());
        let pod = pod("web", "u1");

        let first = tokens.token(&pod, None, 3600).await.expect("token");
        assert_eq!(sources.token_requests(), 1);
        // Other audiences and lifetimes are separate tokens.
        tokens
            .token(&pod, Some("vault"), 3600)
            .await
            .expect("token");
        assert_eq!(sources.token_requests(), 2);

        clock.set(start + Duration::from_secs(2880));
        assert_eq!(tokens.token(&pod, None, 3600).await.expect("cached"), first);
        assert_eq!(sources.token_requests(), 2);

        clock.set(start + Duration::from_secs(2881));
        let second = tokens.token(&pod, None, 3600).await.expect("refreshed");
        assert_ne!(second, first);
        assert_eq!(sources.token_requests(), 3);

        tokens.forget_pod("u1");
        assert_eq!(tokens.cached(), 0);
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_token_until_it_expires() {
        let sources = Arc::new(FakeSources::default());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Arc::new(FakeClock::new(start));
        let tokens = TokenManager::new(sources.clone(), clock.clone());
        let pod = pod("web", "u1");
        let first = tokens.token(&pod, None, 3600).await.expect("token");

        sources.fail_tokens(true);
        clock.set(start + Duration::from_secs(3000));
        assert_eq!(
            tokens
                .token(&pod, None, 3600)
                .await
                .expect("stale but valid"),
            first
        );
        assert_eq!(sources.token_requests(), 2);

        clock.set(start + Duration::from_secs(3601));
        let err = tokens.token(&pod, None, 3600).await.expect_err("expired");
        assert!(
            err.to_string().contains("expired and refresh failed"),
            "{err}"
        );

        let fresh = TokenManager::new(sources.clone(), clock.clone());
        let err = fresh
            .token(&pod, None, 3600)
            .await
            .expect_err("no token at all");
        assert!(
            err.to_string().starts_with("failed to fetch token: "),
            "{err}"
        );
    }
}
