//! A configured plugin as upstream's `pluginProvider`: which images it is asked about,
//! the cache of its answers, one run at a time per key, and service-account token mode.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::debug;

use crate::config::{CACHE_TYPE_TOKEN, CredentialProvider};
use crate::matching::{registry_of, urls_match};
use crate::plugin::{AuthConfig, CredentialProviderResponse, ExecPlugin};
use crate::{Error, Result};

/// Upstream's cache key of `cacheKeyType: Global` answers.
const GLOBAL_CACHE_KEY: &str = "<global>";
/// How often expired answers are dropped, as upstream.
const CACHE_PURGE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// At most this many cached answers per plugin; past it, expired answers go, then the
/// ones expiring soonest (upstream's cache is unbounded).
pub const MAX_CACHE_ENTRIES: usize = 1024;

/// Where token mode gets the pod's service account and its tokens: the kubelet's API
/// server client (the token source its projected volumes use).
#[async_trait]
pub trait ServiceAccounts: Send + Sync {
    /// The service account `namespace/name` (its UID and annotations are used).
    async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<ServiceAccount>;

    /// A token of `pod`'s service account for `audience`, bound to the pod.
    async fn token(&self, pod: &Pod, audience: &str) -> kubelet_core::Result<String>;
}

const _: Option<&dyn ServiceAccounts> = None;

/// Runs a plugin; the exec plugin in a kubelet, a fake in tests.
#[async_trait]
pub(crate) trait Plugin: Send + Sync {
    async fn run(
        &self,
        image: &str,
        token: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<CredentialProviderResponse>;
}

#[async_trait]
impl Plugin for ExecPlugin {
    async fn run(
        &self,
        image: &str,
        token: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<CredentialProviderResponse> {
        ExecPlugin::run(self, image, token, annotations).await
    }
}

/// A plugin's credentials: registry key -> user name and password.
pub(crate) type Credentials = Arc<BTreeMap<String, AuthConfig>>;

#[derive(Debug)]
struct CacheEntry {
    credentials: Credentials,
    expires_at: Instant,
}

/// Answers by cache key, bounded, expired ones purged.
#[derive(Debug)]
struct Cache {
    entries: HashMap<String, CacheEntry>,
    last_purge: Instant,
}

impl Cache {
    fn get(&mut self, key: &str, now: Instant) -> Option<Credentials> {
        if now > self.last_purge + CACHE_PURGE_INTERVAL {
            self.entries.retain(|_, e| e.expires_at >= now);
            self.last_purge = now;
        }
        match self.entries.get(key) {
            Some(entry) if entry.expires_at >= now => Some(entry.credentials.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: String, entry: CacheEntry, now: Instant) {
        if self.entries.len() >= MAX_CACHE_ENTRIES && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires_at >= now);
            if self.entries.len() >= MAX_CACHE_ENTRIES
                && let Some(soonest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, entry);
    }
}

type Flight = Shared<BoxFuture<'static, Result<Arc<CredentialProviderResponse>, Arc<Error>>>>;

/// Forgets a finished (or abandoned) run, so the next caller starts afresh: a caller
/// that gives up (its pull cancelled) must not leave a run nobody polls in the map. The
/// run itself stops, its plugin killed, once no caller holds it.
struct FlightGuard<'a> {
    flights: &'a Mutex<HashMap<String, Flight>>,
    key: String,
    flight: Flight,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        if flights
            .get(&self.key)
            .is_some_and(|f| f.ptr_eq(&self.flight))
        {
            flights.remove(&self.key);
        }
    }
}

/// Token mode's settings (upstream's `serviceAccountProvider`).
#[derive(Debug, Clone)]
struct TokenMode {
    audience: String,
    require_service_account: bool,
    required_annotations: Vec<String>,
    optional_annotations: Vec<String>,
    cache_per_token: bool,
}

/// The pod a pull is for, as the plugin provider needs it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodIdentity<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) uid: &'a str,
    pub(crate) service_account: &'a str,
    pub(crate) pod: Option<&'a Pod>,
}

/// Length-prefixed parts, so that no two different lists make the same key (upstream
/// uses cryptobyte for this).
fn key_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts
        .into_iter()
        .map(|p| format!("{}:{p}", p.len()))
        .collect::<Vec<_>>()
        .join(",")
}

fn annotations_key(annotations: &BTreeMap<String, String>) -> String {
    key_of(
        annotations
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
    )
}

fn sha256_hex(data: &str) -> String {
    let digest = Sha256::digest(data.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One configured plugin.
pub(crate) struct PluginProvider {
    pub(crate) name: String,
    match_images: Vec<String>,
    default_cache_duration: Duration,
    plugin: Arc<dyn Plugin>,
    cache: Mutex<Cache>,
    in_flight: Mutex<HashMap<String, Flight>>,
    token_mode: Option<TokenMode>,
    service_accounts: Option<Arc<dyn ServiceAccounts>>,
}

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("name", &self.name)
            .field("match_images", &self.match_images)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PluginProvider {
    pub(crate) fn new(
        config: &CredentialProvider,
        plugin: Arc<dyn Plugin>,
        service_accounts: Option<Arc<dyn ServiceAccounts>>,
    ) -> Self {
        let token_mode = config
            .token_attributes
            .as_ref()
            .filter(|t| !t.service_account_token_audience.is_empty())
            .map(|t| TokenMode {
                audience: t.service_account_token_audience.clone(),
                require_service_account: t.require_service_account.unwrap_or(true),
                required_annotations: t.required_service_account_annotation_keys.clone(),
                optional_annotations: t.optional_service_account_annotation_keys.clone(),
                cache_per_token: t.cache_type == CACHE_TYPE_TOKEN,
            });
        Self {
            name: config.name.clone(),
            match_images: config.match_images.clone(),
            default_cache_duration: config
                .default_cache_duration
                .and_then(|d| d.to_std())
                .unwrap_or_default(),
            plugin,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                last_purge: Instant::now(),
            }),
            in_flight: Mutex::new(HashMap::new()),
            token_mode,
            service_accounts,
        }
    }

    pub(crate) fn set_service_accounts(&mut self, service_accounts: Arc<dyn ServiceAccounts>) {
        self.service_accounts = Some(service_accounts);
    }

    /// Whether the plugin is asked about `image` (its `matchImages`).
    pub(crate) fn is_image_allowed(&self, image: &str) -> bool {
        self.match_images.iter().any(|glob| urls_match(glob, image))
    }

    /// The plugin's credentials for `image` (upstream's `provide`): empty when the
    /// plugin is not for this image or pod, from the cache when still fresh, else from
    /// a run shared by every concurrent caller with the same key.
    pub(crate) async fn provide(&self, image: &str, pod: &PodIdentity<'_>) -> Result<Credentials> {
        if !self.is_image_allowed(image) {
            return Ok(Credentials::default());
        }
        let mut token = String::new();
        let mut annotations = BTreeMap::new();
        let mut sa_cache_key = String::new();
        let mut token_hash = String::new();
        if let Some(mode) = &self.token_mode {
            if pod.service_account.is_empty() && mode.require_service_account {
                debug!(provider = %self.name, image, pod = %pod.name, pod_uid = %pod.uid, "service account name is empty");
                return Ok(Credentials::default());
            }
            if !pod.service_account.is_empty() {
                let sa_error = |reason: String| Error::ServiceAccount {
                    plugin: self.name.clone(),
                    namespace: pod.namespace.to_owned(),
                    name: pod.service_account.to_owned(),
                    reason,
                };
                let accounts = self.service_accounts.as_ref().ok_or_else(|| {
                    sa_error("cannot get ServiceAccounts when kubelet is in standalone mode".into())
                })?;
                let account = accounts
                    .service_account(pod.namespace, pod.service_account)
                    .await
                    .map_err(|e| sa_error(format!("failed to get service account: {e}")))?;
                let sa_annotations = account.metadata.annotations.unwrap_or_default();
                for key in &mode.required_annotations {
                    match sa_annotations.get(key) {
                        Some(value) => {
                            annotations.insert(key.clone(), value.clone());
                        }
                        None => {
                            debug!(provider = %self.name, image, annotation = %key, "required annotation not found");
                            return Ok(Credentials::default());
                        }
                    }
                }
                for key in &mode.optional_annotations {
                    if let Some(value) = sa_annotations.get(key) {
                        annotations.insert(key.clone(), value.clone());
                    }
                }
                let pod_object = pod
                    .pod
                    .ok_or_else(|| sa_error("no pod to bind a token to".into()))?;
                token = accounts
                    .token(pod_object, &mode.audience)
                    .await
                    .map_err(|e| sa_error(format!("failed to get service account token: {e}")))?;
                token_hash = sha256_hex(&token);
                let uid = account.metadata.uid.unwrap_or_default();
                let annotations_part = annotations_key(&annotations);
                let mut parts = vec![
                    pod.namespace,
                    pod.service_account,
                    uid.as_str(),
                    annotations_part.as_str(),
                ];
                if mode.cache_per_token {
                    parts.extend(["token", token_hash.as_str()]);
                }
                sa_cache_key = key_of(parts);
            }
        }

        let now = Instant::now();
        {
            let mut cache = lock(&self.cache);
            for base in [image, registry_of(image), GLOBAL_CACHE_KEY] {
                if let Some(found) = cache.get(&key_of([base, sa_cache_key.as_str()]), now) {
                    return Ok(found);
                }
            }
        }

        let flight_key = if token.is_empty() {
            image.to_owned()
        } else {
            key_of([
                image,
                token_hash.as_str(),
                annotations_key(&annotations).as_str(),
            ])
        };
        let flight = {
            let mut flights = lock(&self.in_flight);
            flights
                .entry(flight_key.clone())
                .or_insert_with(|| {
                    let (plugin, image, token, annotations) = (
                        self.plugin.clone(),
                        image.to_owned(),
                        token.clone(),
                        annotations.clone(),
                    );
                    async move {
                        plugin
                            .run(&image, &token, &annotations)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let guard = FlightGuard {
            flights: &self.in_flight,
            key: flight_key,
            flight,
        };
        let result = guard.flight.clone().await;
        drop(guard);
        let response = result.map_err(Error::Shared)?;
        let fail = |reason: String| Error::Plugin {
            plugin: self.name.clone(),
            image: image.to_owned(),
            reason,
        };
        let auth = response.auth.clone().unwrap_or_default();
        if !token.is_empty()
            && !self.token_mode.as_ref().is_some_and(|m| m.cache_per_token)
            && auth.values().any(|a| a.password == token)
        {
            return Err(fail(
                "credential provider plugin returned the service account token as the password which is not allowed when service account cache type is not set to 'Token'".into(),
            ));
        }
        let base = match response.cache_key_type.as_str() {
            "Image" => image,
            "Registry" => registry_of(image),
            "Global" => GLOBAL_CACHE_KEY,
            other => {
                return Err(fail(format!(
                    "credential provider plugin did not return a valid cacheKeyType: {other}"
                )));
            }
        };
        let credentials: Credentials = Arc::new(auth);
        let ttl = match response.cache_duration {
            Some(d) => d.to_std().unwrap_or_default(),
            None => self.default_cache_duration,
        };
        if !ttl.is_zero() {
            let now = Instant::now();
            lock(&self.cache).insert(
                key_of([base, sa_cache_key.as_str()]),
                CacheEntry {
                    credentials: credentials.clone(),
                    expires_at: now + ttl,
                },
                now,
            );
        }
        Ok(credentials)
    }

    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        lock(&self.cache).entries.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{PLUGIN_API_V1, ServiceAccountTokenAttributes};
    use kubelet_core::config::GoDuration;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What a fake plugin was asked: image, token, annotations.
    pub(crate) type Request = (String, String, BTreeMap<String, String>);

    /// A plugin answering `response` after `delay`, counting its runs.
    pub(crate) struct FakePlugin {
        pub(crate) runs: AtomicUsize,
        pub(crate) response: Mutex<Result<CredentialProviderResponse, String>>,
        pub(crate) delay: Duration,
        pub(crate) requests: Mutex<Vec<Request>>,
    }

    impl FakePlugin {
        pub(crate) fn answering(
            cache_key_type: &str,
            cache_duration: Option<GoDuration>,
        ) -> Arc<Self> {
            Arc::new(Self {
                runs: AtomicUsize::new(0),
                response: Mutex::new(Ok(CredentialProviderResponse {
                    api_version: PLUGIN_API_V1.into(),
                    kind: "CredentialProviderResponse".into(),
                    cache_key_type: cache_key_type.into(),
                    cache_duration,
                    auth: Some(BTreeMap::from([(
                        "*.registry.io".to_owned(),
                        AuthConfig {
                            username: "user".into(),
                            password: "pass".into(),
                        },
                    )])),
                })),
                delay: Duration::ZERO,
                requests: Mutex::new(Vec::new()),
            })
        }

        pub(crate) fn runs(&self) -> usize {
            self.runs.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Plugin for FakePlugin {
        async fn run(
            &self,
            image: &str,
            token: &str,
            annotations: &BTreeMap<String, String>,
        ) -> Result<CredentialProviderResponse> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            lock(&self.requests).push((image.into(), token.into(), annotations.clone()));
            tokio::time::sleep(self.delay).await;
            lock(&self.response)
                .clone()
                .map_err(|reason| Error::Plugin {
                    plugin: "fake".into(),
                    image: image.into(),
                    reason,
                })
        }
    }

    pub(crate) fn provider_config(default_cache: i64) -> CredentialProvider {
        CredentialProvider {
            name: "fake".into(),
            match_images: vec!["*.registry.io".into(), "registry.io:5000".into()],
            default_cache_duration: Some(GoDuration::from_secs(default_cache)),
            api_version: PLUGIN_API_V1.into(),
            ..Default::default()
        }
    }

    fn no_pod() -> PodIdentity<'static> {
        PodIdentity::default()
    }

    #[tokio::test(start_paused = true)]
    async fn images_outside_match_images_never_run_the_plugin() {
        let plugin = FakePlugin::answering("Image", None);
        let provider = PluginProvider::new(&provider_config(60), plugin.clone(), None);
        assert!(
            provider
                .provide("other.io/app", &no_pod())
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert!(
            provider
                .provide("registry.io/app", &no_pod())
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert_eq!(plugin.runs(), 0);
        assert!(
            !provider
                .provide("a.registry.io/app", &no_pod())
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert!(
            !provider
                .provide("registry.io:5000/app", &no_pod())
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert_eq!(plugin.runs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn image_answers_are_cached_per_image_until_they_expire() {
        let plugin = FakePlugin::answering("Image", Some(GoDuration::from_secs(60)));
        let provider = PluginProvider::new(&provider_config(600), plugin.clone(), None);
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 1);
        provider
            .provide("a.registry.io/two", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2, "another image of the registry asks again");
        tokio::time::advance(Duration::from_secs(61)).await;
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 3, "cacheDuration passed");
    }

    #[tokio::test(start_paused = true)]
    async fn registry_and_global_answers_serve_other_images() {
        let plugin = FakePlugin::answering("Registry", None);
        let provider = PluginProvider::new(&provider_config(30), plugin.clone(), None);
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        provider
            .provide("a.registry.io/two", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 1);
        provider
            .provide("b.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2, "another registry");
        tokio::time::advance(Duration::from_secs(31)).await;
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 3, "defaultCacheDuration passed");

        let plugin = FakePlugin::answering("Global", None);
        let provider = PluginProvider::new(&provider_config(30), plugin.clone(), None);
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        provider
            .provide("b.registry.io/two", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_durations_and_bad_cache_key_types_are_not_cached() {
        let plugin = FakePlugin::answering("Image", Some(GoDuration::ZERO));
        let provider = PluginProvider::new(&provider_config(600), plugin.clone(), None);
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2);

        let plugin = FakePlugin::answering("Image", None);
        let provider = PluginProvider::new(&provider_config(0), plugin.clone(), None);
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2, "defaultCacheDuration 0 caches nothing");

        let plugin = FakePlugin::answering("Sometimes", None);
        let provider = PluginProvider::new(&provider_config(600), plugin.clone(), None);
        let err = provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect_err("fails");
        assert!(
            err.to_string().contains("valid cacheKeyType: Sometimes"),
            "{err}"
        );
        assert_eq!(provider.cached(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_for_one_image_share_one_run() {
        let plugin = Arc::new(FakePlugin {
            delay: Duration::from_secs(5),
            ..Arc::into_inner(FakePlugin::answering("Image", Some(GoDuration::ZERO)))
                .expect("succeeds")
        });
        let provider = Arc::new(PluginProvider::new(
            &provider_config(0),
            plugin.clone(),
            None,
        ));
        let calls: Vec<_> = (0..5)
            .map(|i| {
                let provider = provider.clone();
                let image = if i < 4 {
                    "a.registry.io/one"
                } else {
                    "a.registry.io/two"
                };
                tokio::spawn(
                    async move { provider.provide(image, &no_pod()).await.map(|c| c.len()) },
                )
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.expect("succeeds").expect("succeeds"), 1);
        }
        assert_eq!(plugin.runs(), 2, "one run per image");
        assert!(lock(&provider.in_flight).is_empty());
        // Later requests run again (nothing cached with a zero duration).
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_giving_up_leaves_no_run_behind() {
        let plugin = Arc::new(FakePlugin {
            delay: Duration::from_secs(5),
            ..Arc::into_inner(FakePlugin::answering("Image", None)).expect("one owner")
        });
        let provider = PluginProvider::new(&provider_config(60), plugin.clone(), None);
        let gave_up = tokio::time::timeout(
            Duration::from_secs(1),
            provider.provide("a.registry.io/one", &no_pod()),
        )
        .await;
        assert!(gave_up.is_err());
        assert!(lock(&provider.in_flight).is_empty());
        provider
            .provide("a.registry.io/one", &no_pod())
            .await
            .expect("a new run");
        assert_eq!(plugin.runs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_stays_bounded_and_drops_expired_answers() {
        let plugin = FakePlugin::answering("Image", None);
        let provider = PluginProvider::new(&provider_config(60), plugin.clone(), None);
        for i in 0..MAX_CACHE_ENTRIES + 10 {
            provider
                .provide(&format!("a.registry.io/img{i}"), &no_pod())
                .await
                .expect("succeeds");
        }
        assert_eq!(provider.cached(), MAX_CACHE_ENTRIES);
        tokio::time::advance(CACHE_PURGE_INTERVAL + Duration::from_secs(1)).await;
        provider
            .provide("a.registry.io/img0", &no_pod())
            .await
            .expect("succeeds");
        assert_eq!(provider.cached(), 1, "expired answers purged");
    }

    struct Accounts {
        annotations: BTreeMap<String, String>,
        token: Mutex<String>,
    }

    #[async_trait]
    impl ServiceAccounts for Accounts {
        async fn service_account(
            &self,
            namespace: &str,
            name: &str,
        ) -> kubelet_core::Result<ServiceAccount> {
            let mut account = ServiceAccount::default();
            account.metadata.namespace = Some(namespace.into());
            account.metadata.name = Some(name.into());
            account.metadata.uid = Some(format!("uid-{name}"));
            account.metadata.annotations = Some(self.annotations.clone());
            Ok(account)
        }
        async fn token(&self, _pod: &Pod, audience: &str) -> kubelet_core::Result<String> {
            Ok(format!("{}-{audience}", lock(&self.token)))
        }
    }

    fn token_config(cache_type: &str, require: bool) -> CredentialProvider {
        CredentialProvider {
            token_attributes: Some(ServiceAccountTokenAttributes {
                service_account_token_audience: "registry-aud".into(),
                cache_type: cache_type.into(),
                require_service_account: Some(require),
                required_service_account_annotation_keys: if require {
                    vec!["example.com/role".into()]
                } else {
                    vec![]
                },
                optional_service_account_annotation_keys: vec!["example.com/opt".into()],
            }),
            ..provider_config(600)
        }
    }

    fn accounts(annotations: &[(&str, &str)]) -> Arc<Accounts> {
        Arc::new(Accounts {
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            token: Mutex::new("tok1".into()),
        })
    }

    fn pod_of<'a>(pod: &'a Pod, account: &'a str) -> PodIdentity<'a> {
        PodIdentity {
            namespace: "ns",
            name: "p",
            uid: "u",
            service_account: account,
            pod: Some(pod),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn token_mode_passes_token_and_annotations_and_caches_per_service_account() {
        let plugin = FakePlugin::answering("Registry", None);
        let sas = accounts(&[
            ("example.com/role", "puller"),
            ("example.com/opt", "x"),
            ("other", "y"),
        ]);
        let provider = PluginProvider::new(
            &token_config("ServiceAccount", true),
            plugin.clone(),
            Some(sas.clone()),
        );
        let pod = Pod::default();
        provider
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect("succeeds");
        let (image, token, annotations) = lock(&plugin.requests)[0].clone();
        assert_eq!(
            (image.as_str(), token.as_str()),
            ("a.registry.io/one", "tok1-registry-aud")
        );
        assert_eq!(
            annotations,
            BTreeMap::from([
                ("example.com/opt".into(), "x".into()),
                ("example.com/role".into(), "puller".into())
            ])
        );
        // Same service account, a new token: cached per service account.
        *lock(&sas.token) = "tok2".into();
        provider
            .provide("a.registry.io/two", &pod_of(&pod, "builder"))
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 1);
        // Another service account asks again.
        provider
            .provide("a.registry.io/two", &pod_of(&pod, "deployer"))
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2);
        // No service account: nothing, as requireServiceAccount says.
        assert!(
            provider
                .provide("a.registry.io/two", &pod_of(&pod, ""))
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert_eq!(plugin.runs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn token_cache_type_caches_per_token_and_missing_required_annotations_give_nothing() {
        let plugin = FakePlugin::answering("Registry", None);
        let sas = accounts(&[("example.com/role", "puller")]);
        let provider = PluginProvider::new(
            &token_config("Token", true),
            plugin.clone(),
            Some(sas.clone()),
        );
        let pod = Pod::default();
        provider
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect("succeeds");
        provider
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 1);
        *lock(&sas.token) = "tok2".into();
        provider
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect("succeeds");
        assert_eq!(plugin.runs(), 2, "a new token asks again");

        let plugin = FakePlugin::answering("Registry", None);
        let provider = PluginProvider::new(
            &token_config("ServiceAccount", true),
            plugin.clone(),
            Some(accounts(&[])),
        );
        assert!(
            provider
                .provide("a.registry.io/one", &pod_of(&pod, "builder"))
                .await
                .expect("succeeds")
                .is_empty()
        );
        assert_eq!(plugin.runs(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn token_mode_refuses_the_token_as_password_and_needs_an_api_server() {
        let plugin = FakePlugin::answering("Registry", None);
        if let Ok(r) = lock(&plugin.response).as_mut() {
            r.auth = Some(BTreeMap::from([(
                "*.registry.io".into(),
                AuthConfig {
                    username: "u".into(),
                    password: "tok1-registry-aud".into(),
                },
            )]));
        }
        let provider = PluginProvider::new(
            &token_config("ServiceAccount", false),
            plugin.clone(),
            Some(accounts(&[])),
        );
        let pod = Pod::default();
        let err = provider
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect_err("fails");
        assert!(
            err.to_string()
                .contains("returned the service account token as the password"),
            "{err}"
        );
        // requireServiceAccount false: a pod without one still gets the plugin, no token.
        provider
            .provide("a.registry.io/one", &pod_of(&pod, ""))
            .await
            .expect("succeeds");
        assert_eq!(lock(&plugin.requests).last().expect("succeeds").1, "");

        let standalone = PluginProvider::new(&token_config("ServiceAccount", false), plugin, None);
        let err = standalone
            .provide("a.registry.io/one", &pod_of(&pod, "builder"))
            .await
            .expect_err("fails");
        assert!(err.to_string().contains("standalone mode"), "{err}");
    }
}
