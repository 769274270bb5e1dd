//! The `kubelet` binary with `--config` and `--config-dir`: a broken or invalid
//! configuration stops it at once with a message naming the file and the field, before
//! it touches the container runtime. Needs neither containerd nor a control plane: every
//! run here ends before the runtime is dialled (a run that would reach it points at an
//! unsupported endpoint scheme and fails there), and a run still going after a deadline
//! is killed and fails the test.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

/// A socket that does not exist, should a run get as far as the runtime.
const NO_RUNTIME: &str = "unix:///nonexistent/kubelet-config-test.sock";

struct Outcome {
    success: bool,
    stderr: String,
}

/// Runs the kubelet with `args`; it must exit within a few seconds.
fn kubelet(args: &[&str]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the kubelet");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the kubelet") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the kubelet {args:?} still runs after 20 s: it should have stopped at its configuration"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    Outcome {
        success: status.success(),
        stderr,
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

#[test]
fn a_wrong_type_stops_the_kubelet_naming_file_and_field() {
    let dir = kubelet_test_support::TestDir::new();
    let file = dir.path().join("kubelet.yaml");
    write(&file, &format!("{HEADER}maxPods: lots\n"));
    let file = file.to_string_lossy();
    let run = kubelet(&[
        "--config",
        &file,
        "--container-runtime-endpoint",
        NO_RUNTIME,
    ]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "kubelet: config file {file}: field \"maxPods\": invalid type: string \"lots\", expected i32"
        )),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("container runtime"),
        "the runtime was dialled: {}",
        run.stderr
    );
}

#[test]
fn an_unknown_field_stops_the_kubelet() {
    let dir = kubelet_test_support::TestDir::new();
    let file = dir.path().join("kubelet.yaml");
    write(
        &file,
        &format!("{HEADER}authentication:\n  anonymous:\n    enable: true\n"),
    );
    let run = kubelet(&[
        "--config",
        &file.to_string_lossy(),
        "--container-runtime-endpoint",
        NO_RUNTIME,
    ]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains(&*file.to_string_lossy()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("field \"authentication.anonymous.enable\": unknown field"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_broken_drop_in_is_named() {
    let dir = kubelet_test_support::TestDir::new();
    let file = dir.path().join("kubelet.yaml");
    write(&file, &format!("{HEADER}maxPods: 20\n"));
    let drop_in = dir.path().join("kubelet.conf.d/50-lease.conf");
    write(
        &drop_in,
        &format!("{HEADER}nodeLeaseDurationSeconds: forty\n"),
    );
    let run = kubelet(&[
        "--config",
        &file.to_string_lossy(),
        "--config-dir",
        &dir.path().join("kubelet.conf.d").to_string_lossy(),
        "--container-runtime-endpoint",
        NO_RUNTIME,
    ]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "drop-in config file {}: field \"nodeLeaseDurationSeconds\"",
            drop_in.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn an_invalid_value_stops_the_kubelet() {
    let dir = kubelet_test_support::TestDir::new();
    let file = dir.path().join("kubelet.yaml");
    write(
        &file,
        &format!("{HEADER}nodeLeaseDurationSeconds: -1\ncgroupDriver: upstart\n"),
    );
    let run = kubelet(&[
        "--config",
        &file.to_string_lossy(),
        "--container-runtime-endpoint",
        NO_RUNTIME,
    ]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains(&*file.to_string_lossy()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("nodeLeaseDurationSeconds must be greater than 0"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("cgroupDriver"), "{}", run.stderr);
}

#[test]
fn a_valid_file_is_used_and_typed_flags_override_it() {
    // The file's endpoint has a scheme the CRI client refuses, so the kubelet stops
    // right after the configuration, at the first use of one of its values.
    let dir = kubelet_test_support::TestDir::new();
    let file = dir.path().join("kubelet.yaml");
    write(
        &file,
        &format!(
            "{HEADER}containerRuntimeEndpoint: tcp://127.0.0.1:1\nreadOnlyPort: 0\n\
             staticPodPath: manifests\nclusterDNS: [10.96.0.10]\nmaxPods: 30\n\
             failCgroupV1: false\n"
        ),
    );
    let file = file.to_string_lossy();
    let run = kubelet(&["--config", &file]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("invalid CRI endpoint \"tcp://127.0.0.1:1\""),
        "the file's containerRuntimeEndpoint is not used: {}",
        run.stderr
    );
    let run = kubelet(&[
        "--config",
        &file,
        "--read-only-port",
        "0",
        "--container-runtime-endpoint",
        "http://flag.invalid:1",
    ]);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("invalid CRI endpoint \"http://flag.invalid:1\""),
        "the flag does not override the file: {}",
        run.stderr
    );
}

#[test]
fn a_cgroup_v1_host_is_refused_unless_fail_cgroupv1_is_false() {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return kubelet_test_support::skip(
            "a_cgroup_v1_host_is_refused_unless_fail_cgroupv1_is_false",
            "this host uses cgroup v2, where failCgroupV1 has no effect",
        );
    }
    // An endpoint the CRI client refuses: reaching it means the configuration passed.
    let endpoint = ["--container-runtime-endpoint", "tcp://127.0.0.1:1"];
    let run = kubelet(&endpoint);
    assert!(!run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "kubelet is configured to not run on a host using cgroup v1. cgroup v1 support is \
             unsupported and will be removed in a future release"
        ),
        "{}",
        run.stderr
    );
    let run = kubelet(&[&endpoint[..], &["--fail-cgroupv1=false"]].concat());
    assert!(
        run.stderr
            .contains("invalid CRI endpoint \"tcp://127.0.0.1:1\""),
        "--fail-cgroupv1=false should let the kubelet past its configuration: {}",
        run.stderr
    );
}

#[test]
fn help_lists_the_config_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .arg("--help")
        .output()
        .expect("kubelet --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--config <CONFIG>"), "{help}");
    assert!(help.contains("--config-dir <CONFIG_DIR>"), "{help}");
}
