//! Static pod manifests (files and `--manifest-url` bodies): decoded, defaulted and
//! validated as the file and URL sources do.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kubelet_pod_manager::fuzzing::static_pod_manifest(data);
});
