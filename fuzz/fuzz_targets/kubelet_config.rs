//! KubeletConfiguration files and `--config-dir` drop-ins, read by kubelet-bin's own
//! loader: the input is a configuration, then (after a NUL byte, if any) a drop-in
//! merged over it, each strictly decoded, defaulted and validated.
#![no_main]

#[allow(dead_code)]
#[path = "../../kubelet-bin/src/config/load.rs"]
mod load;

fn configuration(text: &str) -> Option<kubelet_core::config::KubeletConfiguration> {
    let mut config = load::decode(load::parse_text(text).ok()?).ok()?;
    config.set_defaults();
    let _ = kubelet_core::config::validate(&config);
    Some(config)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (base, drop_in) = text.split_once('\0').unwrap_or((text, ""));
    let Some(config) = configuration(base) else {
        return;
    };
    if drop_in.is_empty() {
        return;
    }
    let Ok(patch) = load::parse_text(drop_in) else {
        return;
    };
    let Ok(mut merged) = serde_json::to_value(&config) else {
        return;
    };
    load::merge_patch(&mut merged, patch);
    if let Ok(mut merged) = load::decode(merged) {
        merged.set_defaults();
        let _ = kubelet_core::config::validate(&merged);
    }
});
