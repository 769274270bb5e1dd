//! The parsers of outside input, for the fuzz targets of `cargo xtask fuzz` (feature
//! `fuzzing`): each takes raw bytes and must return, whatever they are, without a panic
//! or a hang.

use crate::source::ManifestOrigin;

/// A static pod manifest (a file or a URL's body), decoded, defaulted and validated as
/// the file and URL sources do.
pub fn static_pod_manifest(data: &[u8]) {
    let origin = ManifestOrigin::File("/etc/kubernetes/manifests/fuzz.yaml".into());
    match crate::source::manifest::decode(data, true) {
        Ok(crate::source::manifest::Decoded::Pod(pod)) => {
            let _ = crate::source::prepare_static_pod(*pod, &origin, "fuzz-node");
        }
        Ok(crate::source::manifest::Decoded::PodList(items)) => {
            for item in items {
                if let Ok(pod) = serde_json::from_value(item) {
                    let _ = crate::source::prepare_static_pod(pod, &origin, "fuzz-node");
                }
            }
        }
        Err(_) => {}
    }
}

/// One line of a container's CRI log file.
pub fn cri_log_line(line: &[u8]) {
    crate::logs::fuzz_parse_line(line);
}
