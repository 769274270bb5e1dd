//! Upstream's health endpoints (`k8s.io/apiserver/pkg/server/healthz`): `/healthz` runs
//! every check and answers `ok` (with `?verbose`, a line per check), `/healthz/<check>`
//! runs one; each run of `/healthz` is recorded in `/metrics/slis`.

use std::fmt::Write as _;
use std::sync::Arc;

use hyper::{Response, StatusCode};
use kubelet_core::metrics::kubelet::KubeletMetrics;

use crate::routes::{ApiBody, text};

/// One named check: `Ok`, or why it fails.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The checks behind `/healthz`.
#[derive(Clone)]
pub struct Healthz {
    checks: Vec<(&'static str, HealthCheck)>,
    /// Where each run of `/healthz` is recorded (`/metrics/slis`).
    metrics: Arc<KubeletMetrics>,
}

impl std::fmt::Debug for Healthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Healthz").field("checks", &names).finish()
    }
}

/// The prefix of the health endpoints.
const ROOT: &str = "/healthz";

impl Healthz {
    /// The kubelet API's checks, as upstream's server installs them: `ping`, `log` and
    /// `syncloop` (whether the pod manager's loop still goes round); runs recorded in
    /// `metrics`.
    pub fn kubelet(syncloop: HealthCheck, metrics: Arc<KubeletMetrics>) -> Self {
        Self {
            checks: vec![
                ("ping", always()),
                ("log", always()),
                ("syncloop", syncloop),
            ],
            metrics,
        }
    }

    /// `ping` alone: the `healthzPort` server, as upstream's default handler; runs
    /// recorded in `metrics`.
    pub fn ping(metrics: Arc<KubeletMetrics>) -> Self {
        Self {
            checks: vec![("ping", always())],
            metrics,
        }
    }

    /// The answer for `path` when it is a health endpoint.
    pub fn serve(&self, path: &str, query: Option<&str>) -> Option<Response<ApiBody>> {
        if path == ROOT || path == "/healthz/" {
            return Some(self.root(query));
        }
        let name = path.strip_prefix("/healthz/")?;
        let (_, check) = self.checks.iter().find(|(n, _)| *n == name)?;
        Some(match check() {
            Ok(()) => plain(StatusCode::OK, "ok".to_owned()),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {e}\n"),
            ),
        })
    }

    fn root(&self, query: Option<&str>) -> Response<ApiBody> {
        let mut lines = String::new();
        let mut failed = Vec::new();
        for (name, check) in &self.checks {
            match check() {
                Ok(()) => {
                    self.observe(name, "success");
                    let _ = writeln!(lines, "[+]{name} ok");
                }
                Err(e) => {
                    self.observe(name, "error");
                    // Public endpoint: the reason goes to the log only, as upstream.
                    tracing::info!(check = name, error = %e, "healthz check failed");
                    let _ = writeln!(lines, "[-]{name} failed: reason withheld");
                    failed.push(*name);
                }
            }
        }
        if !failed.is_empty() {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{lines}healthz check failed\n"),
            );
        }
        let verbose = query
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.split('=').next() == Some("verbose"));
        if verbose {
            plain(StatusCode::OK, format!("{lines}healthz check passed\n"))
        } else {
            plain(StatusCode::OK, "ok".to_owned())
        }
    }

    fn observe(&self, name: &str, status: &str) {
        self.metrics.healthcheck.set(
            &[name, "healthz"],
            if status == "success" { 1.0 } else { 0.0 },
        );
        self.metrics
            .healthchecks_total
            .inc(&[name, status, "healthz"]);
    }
}

/// A check that cannot fail: `ping` answers when the server does; `log`, upstream's
/// check that klog's flush is not stuck, has nothing to watch here, where log lines are
/// written as they come.
fn always() -> HealthCheck {
    Arc::new(|| Ok(()))
}

fn plain(status: StatusCode, body: String) -> Response<ApiBody> {
    text(status, "text/plain; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(h: &Healthz, path: &str, query: Option<&str>) -> Option<(u16, String)> {
        let response = h.serve(path, query)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn answers_as_upstreams_healthz_handler() {
        let stuck = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stuck.clone();
        let metrics = Arc::new(KubeletMetrics::new());
        let h = Healthz::kubelet(
            Arc::new(move || {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    Err("sync Loop took longer than expected".into())
                } else {
                    Ok(())
                }
            }),
            metrics.clone(),
        );
        assert_eq!(answer(&h, "/healthz", None).await, Some((200, "ok".into())));
        assert_eq!(
            answer(&h, "/healthz", Some("verbose")).await,
            Some((
                200,
                "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n".into()
            ))
        );
        for check in ["ping", "log", "syncloop"] {
            assert_eq!(
                answer(&h, &format!("/healthz/{check}"), None).await,
                Some((200, "ok".into()))
            );
        }
        assert_eq!(answer(&h, "/healthz/other", None).await, None);
        assert_eq!(answer(&h, "/healthzz", None).await, None);
        stuck.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            answer(&h, "/healthz", None).await,
            Some((
                500,
                "[+]ping ok\n[+]log ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n"
                    .into()
            ))
        );
        assert_eq!(
            answer(&h, "/healthz/syncloop", None).await,
            Some((
                500,
                "internal server error: sync Loop took longer than expected\n".into()
            ))
        );
        assert_eq!(
            metrics.healthcheck.value(&["syncloop", "healthz"]),
            Some(0.0)
        );
        assert_eq!(
            metrics
                .healthchecks_total
                .value(&["syncloop", "error", "healthz"]),
            Some(1.0)
        );
        // The healthz port has the ping check only.
        let ping = Healthz::ping(metrics.clone());
        assert_eq!(
            answer(&ping, "/healthz/ping", None).await,
            Some((200, "ok".into()))
        );
        assert_eq!(answer(&ping, "/healthz/syncloop", None).await, None);
    }
}
