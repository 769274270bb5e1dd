//! How many image pulls run at once and how often they may start, as upstream's image
//! manager wires its pullers (`pkg/kubelet/images`): `serializeImagePulls` (one pull at
//! a time, the others wait their turn in order), else `maxParallelImagePulls` at most
//! (unbounded when unset), and `registryPullQPS`/`registryBurst` as a token bucket
//! checked when a pull starts: a pull over the rate fails with upstream's
//! `pull QPS exceeded` (the pod's container then backs off as for any pull error).

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kubelet_core::config::KubeletConfiguration;
use kubelet_core::{
    FilesystemUsage, Image, ImageService, RegistryAuth, RuntimeError, RuntimeErrorKind,
    SandboxConfig, TokenBucket,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The limits on image pulls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullLimits {
    /// Pulls at once; `None`: no limit.
    pub parallel: Option<usize>,
    /// Pulls started per second on average; 0: no rate limit.
    pub qps: f64,
    /// Pulls that may start at once above the average rate.
    pub burst: u32,
}

impl Default for PullLimits {
    /// Upstream's defaults: serialized pulls, 5 per second, bursts of 10.
    fn default() -> Self {
        Self {
            parallel: Some(1),
            qps: 5.0,
            burst: 10,
        }
    }
}

impl PullLimits {
    /// The limits of a (defaulted) configuration.
    pub fn from_config(c: &KubeletConfiguration) -> Self {
        let parallel = if c.serialize_image_pulls.unwrap_or(true) {
            Some(1)
        } else {
            c.max_parallel_image_pulls
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
        };
        Self {
            parallel,
            qps: f64::from(c.registry_pull_qps.unwrap_or(5).max(0)),
            burst: u32::try_from(c.registry_burst).unwrap_or(0),
        }
    }
}

/// An [`ImageService`] whose pulls keep to [`PullLimits`]; the other calls pass through.
pub struct LimitedPulls {
    inner: Arc<dyn ImageService>,
    slots: Option<Semaphore>,
    bucket: Option<Mutex<TokenBucket>>,
}

impl std::fmt::Debug for LimitedPulls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedPulls")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl LimitedPulls {
    /// `inner` with `limits` on its pulls.
    pub fn new(inner: Arc<dyn ImageService>, limits: PullLimits) -> Self {
        Self {
            inner,
            slots: limits.parallel.map(Semaphore::new),
            bucket: (limits.qps > 0.0)
                .then(|| Mutex::new(TokenBucket::new(limits.qps, limits.burst))),
        }
    }
}

#[async_trait]
impl ImageService for LimitedPulls {
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        sandbox_config: Option<&SandboxConfig>,
    ) -> kubelet_core::Result<String> {
        // Waiting for a slot is in order of arrival (tokio's semaphore is fair).
        let _slot = match &self.slots {
            Some(slots) => Some(slots.acquire().await.map_err(|_| RuntimeError {
                operation: "PullImage",
                object: image.to_owned(),
                kind: RuntimeErrorKind::Unavailable,
                message: "the image puller is shutting down".to_owned(),
                timeout: None,
            })?),
            None => None,
        };
        if let Some(bucket) = &self.bucket {
            let accepted = bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .try_take(Instant::now().into_std());
            if !accepted {
                return Err(RuntimeError {
                    operation: "PullImage",
                    object: image.to_owned(),
                    kind: RuntimeErrorKind::Other,
                    message: "pull QPS exceeded".to_owned(),
                    timeout: None,
                }
                .into());
            }
        }
        self.inner.pull_image(image, auth, sandbox_config).await
    }

    async fn image_status(&self, image: &str) -> kubelet_core::Result<Option<Image>> {
        self.inner.image_status(image).await
    }

    async fn list_images(&self) -> kubelet_core::Result<Vec<Image>> {
        self.inner.list_images().await
    }

    async fn remove_image(&self, image: &str) -> kubelet_core::Result<()> {
        self.inner.remove_image(image).await
    }

    async fn image_fs_info(&self) -> kubelet_core::Result<Vec<FilesystemUsage>> {
        self.inner.image_fs_info().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Pulls that take `delay` each, counting how many run at once.
    #[derive(Default)]
    struct SlowPulls {
        running: AtomicUsize,
        most: AtomicUsize,
        done: AtomicUsize,
    }

    #[async_trait]
    impl ImageService for SlowPulls {
        async fn pull_image(
            &self,
            image: &str,
            _: Option<&RegistryAuth>,
            _: Option<&SandboxConfig>,
        ) -> kubelet_core::Result<String> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(format!("sha256:{image}"))
        }
        async fn image_status(&self, _: &str) -> kubelet_core::Result<Option<Image>> {
            Ok(None)
        }
        async fn list_images(&self) -> kubelet_core::Result<Vec<Image>> {
            Ok(Vec::new())
        }
        async fn remove_image(&self, _: &str) -> kubelet_core::Result<()> {
            Ok(())
        }
        async fn image_fs_info(&self) -> kubelet_core::Result<Vec<FilesystemUsage>> {
            Ok(Vec::new())
        }
    }

    /// Pulls six images at once through `limits`: the most that ran together, and the
    /// errors.
    async fn pull_six(limits: PullLimits) -> (usize, Vec<String>) {
        let inner = Arc::new(SlowPulls::default());
        let limited = Arc::new(LimitedPulls::new(inner.clone(), limits));
        let pulls: Vec<_> = (0..6)
            .map(|i| {
                let limited = limited.clone();
                tokio::spawn(
                    async move { limited.pull_image(&format!("img{i}"), None, None).await },
                )
            })
            .collect();
        let mut errors = Vec::new();
        for pull in pulls {
            if let Err(e) = pull.await.expect("task") {
                errors.push(e.to_string());
            }
        }
        (inner.most.load(Ordering::SeqCst), errors)
    }

    #[tokio::test(start_paused = true)]
    async fn serialized_parallel_and_unlimited_pulls() {
        let unlimited_rate = |parallel| PullLimits {
            parallel,
            qps: 0.0,
            burst: 0,
        };
        assert_eq!(pull_six(unlimited_rate(Some(1))).await, (1, Vec::new()));
        assert_eq!(pull_six(unlimited_rate(Some(2))).await, (2, Vec::new()));
        assert_eq!(pull_six(unlimited_rate(None)).await, (6, Vec::new()));
    }

    #[tokio::test(start_paused = true)]
    async fn pulls_over_the_rate_fail_as_upstreams() {
        let (_, errors) = pull_six(PullLimits {
            parallel: None,
            qps: 1.0,
            burst: 4,
        })
        .await;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.contains("pull QPS exceeded")),
            "{errors:?}"
        );
        // Serialized, each pull waits for its turn, by which time the bucket refilled.
        let (_, errors) = pull_six(PullLimits {
            parallel: Some(1),
            qps: 1.0,
            burst: 1,
        })
        .await;
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn limits_from_the_configuration() {
        let mut c = KubeletConfiguration::defaulted();
        assert_eq!(PullLimits::from_config(&c), PullLimits::default());
        c.serialize_image_pulls = Some(false);
        c.max_parallel_image_pulls = Some(3);
        c.registry_pull_qps = Some(0);
        let limits = PullLimits::from_config(&c);
        assert_eq!((limits.parallel, limits.qps), (Some(3), 0.0));
        c.max_parallel_image_pulls = None;
        assert_eq!(PullLimits::from_config(&c).parallel, None);
    }
}
