//! Lines of containers' CRI log files, as `kubectl logs` reads them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kubelet_pod_manager::fuzzing::cri_log_line(data);
});
