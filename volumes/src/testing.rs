//! Test helpers: an in-memory `VolumeSources`, a settable clock, pods, and a guard that
//! unmounts whatever a test mounted under its temporary directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubelet_core::{ObjectSource, ServiceAccountToken, VolumeSources};

use crate::sys;
use kubelet_core::Clock;

/// ConfigMaps and Secrets in memory; tokens numbered by request, valid for the
/// requested lifetime from the fake clock's time (or `UNIX_EPOCH + 1e6 s`).
#[derive(Default)]
pub(crate) struct FakeSources {
    config_maps: Mutex<HashMap<(String, String), ConfigMap>>,
    secrets: Mutex<HashMap<(String, String), Secret>>,
    claims: Mutex<HashMap<(String, String), PersistentVolumeClaim>>,
    persistent_volumes: Mutex<HashMap<String, PersistentVolume>>,
    /// How many claims and persistent volumes were read.
    claim_reads: AtomicUsize,
    token_requests: AtomicUsize,
    fail_tokens: AtomicBool,
    unavailable: AtomicBool,
    now: Mutex<Option<SystemTime>>,
}

impl FakeSources {
    /// Stores `claim` under its namespace and name.
    pub(crate) fn put_claim(&self, claim: PersistentVolumeClaim) {
        let key = (
            claim.metadata.namespace.clone().unwrap_or_default(),
            claim.metadata.name.clone().unwrap_or_default(),
        );
        self.claims.lock().expect("lock").insert(key, claim);
    }

    /// Stores `pv` under its name.
    pub(crate) fn put_persistent_volume(&self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.persistent_volumes
            .lock()
            .expect("lock")
            .insert(name, pv);
    }

    pub(crate) fn claim_reads(&self) -> usize {
        self.claim_reads.load(Ordering::SeqCst)
    }

    pub(crate) fn put_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let config_map = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.config_maps
            .lock()
            .expect("lock")
            .insert((namespace.into(), name.into()), config_map);
    }

    pub(crate) fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).into(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.secrets
            .lock()
            .expect("lock")
            .insert((namespace.into(), name.into()), secret);
    }

    pub(crate) fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    pub(crate) fn fail_tokens(&self, fail: bool) {
        self.fail_tokens.store(fail, Ordering::SeqCst);
    }

    /// Every lookup fails, as with no API server.
    pub(crate) fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    pub(crate) fn set_now(&self, now: SystemTime) {
        *self.now.lock().expect("lock") = Some(now);
    }

    fn check_available(&self) -> kubelet_core::Result<()> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(kubelet_core::Error::Invalid {
                what: "source".into(),
                reason: "API server unavailable".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectSource for FakeSources {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<ConfigMap>> {
        self.check_available()?;
        Ok(self
            .config_maps
            .lock()
            .expect("lock")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> kubelet_core::Result<Option<Secret>> {
        self.check_available()?;
        Ok(self
            .secrets
            .lock()
            .expect("lock")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }
}

#[async_trait]
impl VolumeSources for FakeSources {
    async fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> kubelet_core::Result<ServiceAccountToken> {
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_tokens.load(Ordering::SeqCst) {
            return Err(kubelet_core::Error::Invalid {
                what: "token request".into(),
                reason: "refused".into(),
            });
        }
        let now = self
            .now
            .lock()
            .expect("lock")
            .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        Ok(ServiceAccountToken {
            token: format!(
                "token-{n}-{}-{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                audience.unwrap_or("api")
            ),
            expiration: now + Duration::from_secs(u64::try_from(expiration_seconds).unwrap_or(0)),
        })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> kubelet_core::Result<Option<PersistentVolumeClaim>> {
        self.check_available()?;
        self.claim_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .claims
            .lock()
            .expect("lock")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn persistent_volume(
        &self,
        name: &str,
    ) -> kubelet_core::Result<Option<PersistentVolume>> {
        self.check_available()?;
        self.claim_reads.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .persistent_volumes
            .lock()
            .expect("lock")
            .get(name)
            .cloned())
    }
}

/// A clock the test sets.
#[derive(Debug)]
pub(crate) struct FakeClock(Mutex<SystemTime>);

impl FakeClock {
    pub(crate) fn new(now: SystemTime) -> Self {
        Self(Mutex::new(now))
    }

    pub(crate) fn set(&self, now: SystemTime) {
        *self.0.lock().expect("lock") = now;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().expect("lock")
    }
}

/// A pod `default/<name>` with UID `uid` and no containers.
pub(crate) fn pod(name: &str, uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        ..Default::default()
    }
}

/// True when the test may mount (it runs as root); otherwise reports the skip (a
/// failure under `KUBELET_TEST_REQUIRE_ENV=1`).
pub(crate) fn can_mount(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        kubelet_test_support::skip(test, "mounting needs root");
    }
    root
}

/// Mount points under `root`.
pub(crate) fn mounted_under(root: &Path) -> Vec<PathBuf> {
    sys::mounts_under(root).expect("mountinfo")
}
