//! Paths and query strings of kubelet API requests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kubelet_server::fuzzing::request_target(data);
});
