//! A pod's PersistentVolumeClaims (`persistentVolumeClaim` and generic `ephemeral`
//! volumes) resolved to the PersistentVolumes they are bound to, with upstream's checks
//! and messages (`desired_state_of_world_populator.go`: `createVolumeSpec`,
//! `getPVCExtractPV`, `getPVSpec`).

use k8s_openapi::api::core::v1::{PersistentVolume, Pod, Volume};
use kubelet_core::{PodRef, VolumeSources};

/// The finalizer that keeps a claim in use from going (`kubernetes.io/pvc-protection`).
const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The annotation naming a group every container of a pod using the volume joins.
const VOLUME_GID_ANNOTATION: &str = "pv.beta.kubernetes.io/gid";

/// A pod volume's claim: the PersistentVolumeClaim's name, whether the pod mounts it
/// read-only, and whether it is a generic ephemeral volume (whose claim the pod must own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimRef {
    pub(crate) claim_name: String,
    pub(crate) read_only: bool,
    pub(crate) ephemeral: bool,
}

/// The claim `volume` refers to, if it is a claim: upstream names a generic ephemeral
/// volume's claim `<pod name>-<volume name>`.
pub(crate) fn claim_of(pod: &Pod, volume: &Volume) -> Option<ClaimRef> {
    if let Some(source) = &volume.persistent_volume_claim {
        return Some(ClaimRef {
            claim_name: source.claim_name.clone(),
            read_only: source.read_only.unwrap_or(false),
            ephemeral: false,
        });
    }
    volume.ephemeral.as_ref().map(|_| ClaimRef {
        claim_name: format!(
            "{}-{}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            volume.name
        ),
        read_only: false,
        ephemeral: true,
    })
}

/// A claim resolved to its bound volume.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claimed {
    pub(crate) pv: PersistentVolume,
    pub(crate) read_only: bool,
    /// The volume's `pv.beta.kubernetes.io/gid`, when it is a number.
    pub(crate) gid: Option<i64>,
}

/// Reads the claim and its volume and checks them as upstream does before mounting
/// anything; the error is upstream's message (the event says the volume could not be
/// processed).
pub(crate) async fn resolve(
    sources: &dyn VolumeSources,
    pod: &Pod,
    volume: &Volume,
    claim: &ClaimRef,
) -> Result<Claimed, String> {
    let namespace = PodRef::of(pod).namespace;
    let processing =
        |e: String| format!("error processing PVC {namespace}/{}: {e}", claim.claim_name);
    let pvc = match sources
        .persistent_volume_claim(&namespace, &claim.claim_name)
        .await
    {
        Ok(Some(pvc)) => pvc,
        Ok(None) => {
            return Err(processing(format!(
                "failed to fetch PVC from API server: persistentvolumeclaims {:?} not found",
                claim.claim_name
            )));
        }
        Err(e) => {
            return Err(processing(format!(
                "failed to fetch PVC from API server: {e}"
            )));
        }
    };
    let protected = pvc
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == PVC_PROTECTION_FINALIZER);
    if pvc.metadata.deletion_timestamp.is_some() && !protected {
        return Err(processing("PVC is being deleted".to_owned()));
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        return Err(processing("PVC is not bound".to_owned()));
    }
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if pv_name.is_empty() {
        return Err(processing("PVC has empty pvc.Spec.VolumeName".to_owned()));
    }
    if claim.ephemeral && !owned_by(&pvc.metadata, pod) {
        // Not wrapped, as upstream's `ephemeral.VolumeIsForPod`.
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Err(format!(
            "PVC {namespace}/{} was not created for pod {namespace}/{pod_name} (pod is not owner)",
            claim.claim_name
        ));
    }
    let pvc_uid = pvc.metadata.uid.clone().unwrap_or_default();
    let pv = match sources.persistent_volume(&pv_name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => {
            return Err(processing(format!(
                "failed to fetch PV {pv_name} from API server: persistentvolumes {pv_name:?} not found"
            )));
        }
        Err(e) => {
            return Err(processing(format!(
                "failed to fetch PV {pv_name} from API server: {e}"
            )));
        }
    };
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let Some(claim_ref) = claim_ref else {
        return Err(processing(format!(
            "found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
        )));
    };
    let bound_uid = claim_ref.uid.clone().unwrap_or_default();
    if bound_uid != pvc_uid {
        return Err(processing(format!(
            "found PV object {pv_name} but its pv.Spec.ClaimRef.UID {bound_uid} does not point to claim.UID {pvc_uid}"
        )));
    }
    check_volume_mode(pod, volume, &pv)?;
    let gid = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VOLUME_GID_ANNOTATION))
        .and_then(|v| v.parse::<i64>().ok());
    Ok(Claimed {
        pv,
        read_only: claim.read_only,
        gid,
    })
}

/// Upstream `metav1.IsControlledBy(pvc, pod)`.
fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, pod: &Pod) -> bool {
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == pod_uid)
}

/// A Filesystem volume may only be in `volumeMounts`, a Block volume only in
/// `volumeDevices` (upstream's populator checks).
fn check_volume_mode(pod: &Pod, volume: &Volume, pv: &PersistentVolume) -> Result<(), String> {
    let mode = pv
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.clone())
        .unwrap_or_else(|| "Filesystem".to_owned());
    // Each container's (volumeMounts, volumeDevices), whatever its kind.
    let uses = pod.spec.iter().flat_map(|s| {
        let regular = s.init_containers.iter().flatten().chain(&s.containers);
        let regular = regular.map(|c| (c.volume_mounts.as_deref(), c.volume_devices.as_deref()));
        let ephemeral = s.ephemeral_containers.iter().flatten();
        let ephemeral =
            ephemeral.map(|c| (c.volume_mounts.as_deref(), c.volume_devices.as_deref()));
        regular.chain(ephemeral)
    });
    let (mut mounted, mut device) = (false, false);
    for (mounts, devices) in uses {
        mounted |= mounts
            .unwrap_or_default()
            .iter()
            .any(|m| m.name == volume.name);
        device |= devices
            .unwrap_or_default()
            .iter()
            .any(|d| d.name == volume.name);
    }
    if mounted && mode != "Filesystem" {
        return Err(format!(
            "volume {} has volumeMode {mode}, but is specified in volumeMounts",
            volume.name
        ));
    }
    if device && mode != "Block" {
        return Err(format!(
            "volume {} has volumeMode {mode}, but is specified in volumeDevices",
            volume.name
        ));
    }
    Ok(())
}
