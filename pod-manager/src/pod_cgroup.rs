//! A pod's own cgroup, made with the pod's limits before its sandbox, as upstream's pod
//! container manager (`EnsureExists`) makes it with `cgroupsPerQOS` and the cgroupfs
//! driver.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use kubelet_cgroups::CgroupManager;
use kubelet_cgroups::tree::{PodResources, pod_resource_config};
use kubelet_core::{PodRef, pod_qos};

use crate::admission::{pod_limits, pod_requests};
use crate::{Error, Result};

/// How pod cgroups are sized; `None` in [`NodeContext`](crate::spec::NodeContext) leaves
/// them to the runtime (`cgroupsPerQOS: false`, or tests). They are made through the
/// [`SyncContext`](crate::SyncContext)'s cgroup manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroupSettings {
    /// `cpuCFSQuota`: enforce CPU limits with a CFS quota.
    pub cpu_cfs_quota: bool,
    /// `cpuCFSQuotaPeriod` in microseconds.
    pub cpu_cfs_quota_period_us: u64,
    /// `podPidsLimit`; not positive for none.
    pub pod_pids_limit: i64,
}

/// What the pod asks for, in the terms of the pod cgroup's settings.
pub fn pod_resources(pod: &Pod) -> Result<PodResources> {
    let invalid = |e: kubelet_core::QuantityError| Error::InvalidPod {
        pod: PodRef::of(pod).to_string(),
        field: "resources".to_owned(),
        reason: e.to_string(),
    };
    let requests = pod_requests(pod).map_err(invalid)?;
    let limits = pod_limits(pod).map_err(invalid)?;
    let spec = pod.spec.as_ref();
    let containers = || {
        spec.into_iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
    };
    let limited = |c: &Container, name: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .and_then(|q| kubelet_core::Quantity::try_from(q).ok())
            .is_some_and(|q| !q.is_zero())
    };
    let pod_level = |name: &str| {
        spec.and_then(|s| s.resources.as_ref())
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .and_then(|q| kubelet_core::Quantity::try_from(q).ok())
            .is_some_and(|q| !q.is_zero())
    };
    let milli = |list: &crate::admission::ResourceList, name: &str| {
        list.get(name)
            .map_or(0, |q| u64::try_from(q.milli_value()).unwrap_or(0))
    };
    Ok(PodResources {
        cpu_request_milli: milli(&requests, "cpu"),
        cpu_limit_milli: milli(&limits, "cpu"),
        memory_limit: limits.get("memory").map_or(0, |q| q.value()),
        cpu_limits_declared: containers().all(|c| limited(c, "cpu")) || pod_level("cpu"),
        memory_limits_declared: containers().all(|c| limited(c, "memory")) || pod_level("memory"),
    })
}

/// Makes the pod's cgroup with its limits unless it exists.
pub async fn ensure(
    cgroups: &Arc<dyn CgroupManager>,
    settings: &PodCgroupSettings,
    pod: &Pod,
) -> Result<()> {
    let uid = PodRef::of(pod).uid;
    let qos = pod_qos(pod);
    let name = kubelet_cgroups::pod_cgroupfs_path(qos, &uid);
    let config = pod_resource_config(
        qos,
        &pod_resources(pod)?,
        settings.cpu_cfs_quota,
        settings.cpu_cfs_quota_period_us,
        Some(settings.pod_pids_limit),
    );
    let cgroups = cgroups.clone();
    let made = tokio::task::spawn_blocking(move || {
        if cgroups.exists(&name) {
            return Ok(());
        }
        cgroups.apply(&name, &config)
    })
    .await;
    let reason = match made {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    Err(Error::PodCgroup { pod: uid, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod")
    }

    #[test]
    fn sums_requests_and_limits_and_notes_undeclared_limits() {
        let p = pod(r#"
metadata: {name: web, namespace: ns, uid: u-1}
spec:
  initContainers:
  - name: init
    resources: {requests: {cpu: "1"}, limits: {cpu: "1", memory: 64Mi}}
  containers:
  - name: a
    resources: {requests: {cpu: 100m}, limits: {cpu: 200m, memory: 32Mi}}
  - name: b
    resources: {requests: {cpu: 300m}, limits: {memory: 32Mi}}
"#);
        let r = pod_resources(&p).expect("resources");
        assert_eq!(r.cpu_request_milli, 1000, "the init container's peak");
        assert_eq!(r.cpu_limit_milli, 1000);
        assert_eq!(r.memory_limit, 64 << 20);
        assert!(!r.cpu_limits_declared, "b has no CPU limit");
        assert!(r.memory_limits_declared);
    }

    #[tokio::test]
    async fn a_burstable_pod_gets_its_cgroup_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for controller in ["cpu", "memory"] {
            std::fs::create_dir_all(dir.path().join(controller)).expect("mkdir");
        }
        let cgroups: Arc<dyn CgroupManager> =
            Arc::new(kubelet_cgroups::Cgroupfs::detect(dir.path()));
        let settings = PodCgroupSettings {
            cpu_cfs_quota: true,
            cpu_cfs_quota_period_us: 100_000,
            pod_pids_limit: -1,
        };
        let p = pod(r#"
metadata: {name: web, namespace: ns, uid: u-2}
spec:
  containers:
  - name: a
    resources: {requests: {cpu: 250m, memory: 16Mi}, limits: {memory: 32Mi}}
"#);
        ensure(&cgroups, &settings, &p).await.expect("ensure");
        let pod_dir = |c: &str| dir.path().join(c).join("kubepods/burstable/podu-2");
        let read = |path: std::path::PathBuf| std::fs::read_to_string(path).expect("read");
        assert_eq!(read(pod_dir("cpu").join("cpu.shares")), "256");
        assert_eq!(
            read(pod_dir("memory").join("memory.limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert!(
            !pod_dir("cpu").join("cpu.cfs_quota_us").exists(),
            "no CPU limit"
        );
        // An existing cgroup is left as it is.
        std::fs::write(pod_dir("cpu").join("cpu.shares"), "999").expect("write");
        ensure(&cgroups, &settings, &p).await.expect("again");
        assert_eq!(read(pod_dir("cpu").join("cpu.shares")), "999");
    }
}
