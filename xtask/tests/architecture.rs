//! The dependency rules of ARCHITECTURE.md, checked against `cargo metadata` so they stay
//! true: which workspace crate may depend on which, and which crates may pull the
//! dependencies that mean I/O of a kind (gRPC, the API server, D-Bus, flags, a log
//! subscriber).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The workspace crates each library or binary may depend on (normal dependencies;
/// tests and examples may use more, e.g. the fake CRI server).
const ALLOWED_WORKSPACE_DEPS: &[(&str, &[&str])] = &[
    ("kubelet-core", &[]),
    ("kubelet-cgroups", &["kubelet-core"]),
    ("kubelet-probes", &["kubelet-core"]),
    ("kubelet-volumes", &["kubelet-core"]),
    // The test support only behind the `testing` feature (its fake server and TestEnv).
    (
        "kubelet-cri-client",
        &["kubelet-core", "kubelet-test-support"],
    ),
    ("kubelet-stats", &["kubelet-core", "kubelet-cgroups"]),
    (
        "kubelet-pod-manager",
        &[
            "kubelet-core",
            "kubelet-cgroups",
            "kubelet-probes",
            "kubelet-volumes",
            "kubelet-inotify",
        ],
    ),
    // The node agent also records CSI drivers in the CSINode object (kubelet-csi's seam).
    (
        "kubelet-node-agent",
        &["kubelet-core", "kubelet-pod-manager", "kubelet-csi"],
    ),
    (
        "kubelet-server",
        &["kubelet-core", "kubelet-pod-manager", "kubelet-stats"],
    ),
    // Eviction reads the stats and kills and refuses pods through the pod manager.
    (
        "kubelet-eviction",
        &["kubelet-core", "kubelet-pod-manager", "kubelet-stats"],
    ),
    // Image GC measures the image filesystem with the stats crate's statvfs.
    ("kubelet-images", &["kubelet-core", "kubelet-stats"]),
    // Credential provider plugins: the core's traits and metrics only.
    ("kubelet-credential-provider", &["kubelet-core"]),
    (
        "kubelet-builder",
        &[
            "kubelet-core",
            "kubelet-cgroups",
            "kubelet-probes",
            "kubelet-volumes",
            "kubelet-stats",
            "kubelet-pod-manager",
            "kubelet-node-agent",
            "kubelet-server",
            "kubelet-eviction",
            "kubelet-images",
            "kubelet-credential-provider",
            "kubelet-pod-resources",
            "kubelet-device-manager",
            "kubelet-plugin-manager",
            "kubelet-csi",
        ],
    ),
    // Node plugins' registration (plugins_registry): gRPC on unix sockets only.
    (
        "kubelet-plugin-manager",
        &["kubelet-grpc-uds", "kubelet-inotify"],
    ),
    // CSI: a volume plugin (core's trait, the volume library's ownership and mount
    // table) and a plugin manager handler, talking gRPC to drivers.
    (
        "kubelet-csi",
        &[
            "kubelet-core",
            "kubelet-volumes",
            "kubelet-grpc-uds",
            "kubelet-plugin-manager",
        ],
    ),
    // Device plugins: its own gRPC, the core traits it implements.
    (
        "kubelet-device-manager",
        &["kubelet-core", "kubelet-grpc-uds", "kubelet-plugin-manager"],
    ),
    // gRPC on unix sockets (Go clients' authorities), for the two servers below.
    ("kubelet-grpc-uds", &[]),
    // An async inotify watch (the static pod path, plugins_registry).
    ("kubelet-inotify", &[]),
    // The PodResources API: its own provider trait, pods in k8s-openapi's types.
    (
        "kubelet-pod-resources",
        &["kubelet-core", "kubelet-grpc-uds"],
    ),
    (
        "kubelet-bin",
        &[
            "kubelet-core",
            "kubelet-cgroups",
            "kubelet-cri-client",
            "kubelet-builder",
        ],
    ),
    ("kubelet-test-support", &[]),
    ("xtask", &[]),
];

/// External dependencies only some crates may have: what they mean, and who.
const RESTRICTED_DEPS: &[(&str, &[&str])] = &[
    // Only the CRI client, gRPC probes (grpc.health.v1), the PodResources API, device
    // plugins, plugin registration, CSI and the unix-socket serving they share speak gRPC.
    (
        "tonic",
        &[
            "kubelet-cri-client",
            "kubelet-probes",
            "kubelet-pod-resources",
            "kubelet-device-manager",
            "kubelet-plugin-manager",
            "kubelet-csi",
            "kubelet-grpc-uds",
        ],
    ),
    (
        "prost",
        &[
            "kubelet-cri-client",
            "kubelet-probes",
            "kubelet-pod-resources",
            "kubelet-device-manager",
            "kubelet-plugin-manager",
            "kubelet-csi",
        ],
    ),
    // The API server is the node agent's, the kubelet API's reviews' and the wiring's.
    (
        "kube",
        &["kubelet-node-agent", "kubelet-server", "kubelet-builder"],
    ),
    // D-Bus only for graceful node shutdown (logind) and the systemd cgroup driver.
    ("zbus", &["kubelet-node-agent", "kubelet-cgroups"]),
    // Flags, anyhow and the log subscriber only in binaries.
    ("clap", &["kubelet-bin"]),
    ("anyhow", &["kubelet-bin", "xtask"]),
    ("tracing-subscriber", &["kubelet-bin"]),
];

/// The crates that may choose a Kubernetes version of k8s-openapi in their normal
/// dependencies; libraries leave it to the binary.
const MAY_CHOOSE_K8S_VERSION: &[&str] = &["kubelet-bin"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// Each workspace package's normal (non-dev, non-build) dependencies, with the features
/// it enables on each.
fn normal_deps(metadata: &Value) -> BTreeMap<String, Vec<(String, Vec<String>)>> {
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_owned();
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| {
                    let features = d["features"]
                        .as_array()
                        .map(|f| {
                            f.iter()
                                .filter_map(|f| f.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    (d["name"].as_str().expect("dep name").to_owned(), features)
                })
                .collect();
            (name, deps)
        })
        .collect()
}

#[test]
fn workspace_crates_depend_only_on_what_the_architecture_allows() {
    let deps = normal_deps(&metadata());
    let workspace: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = ALLOWED_WORKSPACE_DEPS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        workspace, listed,
        "every workspace crate has its rule in ALLOWED_WORKSPACE_DEPS (and ARCHITECTURE.md)"
    );
    let mut violations = Vec::new();
    for (name, allowed) in ALLOWED_WORKSPACE_DEPS {
        for (dep, _) in &deps[*name] {
            if workspace.contains(dep.as_str()) && !allowed.contains(&dep.as_str()) {
                violations.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(violations.is_empty(), "not allowed: {violations:#?}");
}

#[test]
fn io_dependencies_stay_in_their_crates() {
    let deps = normal_deps(&metadata());
    let mut violations = Vec::new();
    for (name, crate_deps) in &deps {
        for (dep, features) in crate_deps {
            if let Some((_, allowed)) = RESTRICTED_DEPS.iter().find(|(d, _)| d == dep)
                && !allowed.contains(&name.as_str())
            {
                violations.push(format!("{name} depends on {dep}"));
            }
            if dep == "k8s-openapi"
                && features.iter().any(|f| f.starts_with("v1_"))
                && !MAY_CHOOSE_K8S_VERSION.contains(&name.as_str())
            {
                violations.push(format!(
                    "{name} chooses a Kubernetes version of k8s-openapi ({features:?})"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "not allowed: {violations:#?}");
}

#[test]
fn the_core_crate_has_no_io_dependencies() {
    let deps = normal_deps(&metadata());
    let allowed = [
        "k8s-openapi",
        "thiserror",
        "async-trait",
        "serde",
        "serde_json",
        "futures-core",
    ];
    let extra: Vec<&str> = deps["kubelet-core"]
        .iter()
        .map(|(d, _)| d.as_str())
        .filter(|d| !allowed.contains(d))
        .collect();
    assert!(
        extra.is_empty(),
        "kubelet-core may depend only on {allowed:?}, not {extra:?}"
    );
}

#[test]
fn workspace_dependencies_carry_versions_so_the_crates_can_be_published() {
    let metadata = metadata();
    let mut missing = Vec::new();
    for p in metadata["packages"].as_array().expect("packages") {
        if p["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        for d in p["dependencies"].as_array().expect("dependencies") {
            let is_path = d["path"].is_string();
            let normal = d["kind"].is_null();
            if is_path && normal && d["req"].as_str() == Some("*") {
                missing.push(format!("{} -> {}", p["name"], d["name"]));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "path dependencies without a version: {missing:?}"
    );
}
