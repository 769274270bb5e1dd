//! Device plugins on the real control plane and containerd, with upstream's sample
//! device plugin (`test/images/sample-device-plugin`: resource `example.com/resource`,
//! devices `Dev-1` and `Dev-2`, each mounted from `/tmp/<device>`): the node advertises
//! the devices, a pod asking for one gets it (the plugin's mount in its container, the
//! PodResources API lists it), a pod's devices are freed when it goes, and a plugin
//! that dies takes its devices out of the node's allocatable.

mod common;

use std::process::Command;

use common::{Helper, Namespace, lock};
use kubelet_pod_resources::proto::v1::ListPodResourcesRequest;

const RESOURCE: &str = "example.com/resource";

fn node_resource(node: &serde_json::Value, field: &str) -> Option<String> {
    node["status"][field][RESOURCE].as_str().map(str::to_owned)
}

#[test]
fn a_device_plugins_devices_are_advertised_given_to_pods_and_freed() {
    let test = "a_device_plugins_devices_are_advertised_given_to_pods_and_freed";
    let Some((_env, c)) = common::Cluster::from_env(test) else {
        return;
    };
    let Some(plugin_binary) = common::env_program(test, "KUBELET_TEST_SAMPLE_DEVICE_PLUGIN") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "device-plugin-test");
    let ns = namespace.name;
    let plugin = Helper::spawn(Command::new(&plugin_binary), &dir.path().join("plugin.log"));
    let plugin_log = || std::fs::read_to_string(dir.path().join("plugin.log")).unwrap_or_default();
    let node = ["get", "node", c.node.as_str()];
    common::wait_until(
        "the node advertising 2 devices",
        60,
        || format!("{}\nplugin:\n{}", kubelet.log(), plugin_log()),
        || {
            let n = c.json(&node);
            node_resource(&n, "capacity").as_deref() == Some("2")
                && node_resource(&n, "allocatable").as_deref() == Some("2")
        },
    );

    let pod = |name: &str, count: u32| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "ls /tmp; sleep 3600"]
    resources: {{limits: {{{RESOURCE}: {count}}}}}
"#,
            image = c.busybox
        )
    };
    c.apply(&pod("one", 1));
    let running =
        |p: &serde_json::Value| p["status"]["containerStatuses"][0]["state"]["running"].is_object();
    c.wait_json(
        "one Running",
        &["get", "pod", "-n", ns, "one"],
        90,
        &kubelet,
        running,
    );
    // The plugin's mount of its device file is in the container.
    common::wait_until(
        "one's device file",
        30,
        || kubelet.log(),
        || {
            c.try_kubectl(&["logs", "-n", ns, "one"], None)
                .is_ok_and(|l| l.lines().filter(|f| f.starts_with("Dev-")).count() == 1)
        },
    );
    let socket = dir.path().join("root/pod-resources/kubelet.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listed = runtime.block_on(async {
        kubelet_pod_resources::connect(&socket)
            .list(ListPodResourcesRequest {})
            .await
            .expect("List")
            .into_inner()
    });
    let one = listed
        .pod_resources
        .iter()
        .find(|p| p.namespace == ns && p.name == "one")
        .expect("one is listed");
    let devices = &one.containers[0].devices;
    assert_eq!(devices.len(), 1, "{listed:?}");
    assert_eq!(devices[0].resource_name, RESOURCE);
    assert_eq!(devices[0].device_ids.len(), 1);

    // Gone, its device is free again: a pod asking for both gets them.
    c.kubectl(&["delete", "pod", "-n", ns, "one", "--wait=true"]);
    c.apply(&pod("two", 2));
    c.wait_json(
        "two Running with both devices",
        &["get", "pod", "-n", ns, "two"],
        90,
        &kubelet,
        running,
    );
    common::wait_until(
        "two's device files",
        30,
        || format!("{}\n{}", kubelet.log(), plugin_log()),
        || {
            c.try_kubectl(&["logs", "-n", ns, "two"], None)
                .is_ok_and(|l| l.lines().filter(|f| f.starts_with("Dev-")).count() == 2)
        },
    );

    // A restarted kubelet: the plugin registers again when the socket comes back, and
    // the running pod keeps its devices (from the checkpoint) without a restart.
    drop(kubelet);
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    common::wait_until(
        "the plugin registering with the new kubelet",
        60,
        || format!("{}\nplugin:\n{}", kubelet.log(), plugin_log()),
        || {
            kubelet
                .log()
                .contains("Got registration request from device plugin")
        },
    );
    let listed = runtime.block_on(async {
        kubelet_pod_resources::connect(&socket)
            .list(ListPodResourcesRequest {})
            .await
            .expect("List after the restart")
            .into_inner()
    });
    let two = listed
        .pod_resources
        .iter()
        .find(|p| p.namespace == ns && p.name == "two")
        .expect("two is listed");
    assert_eq!(
        two.containers[0].devices[0].device_ids.len(),
        2,
        "{listed:?}"
    );
    let pod_two = c.json(&["get", "pod", "-n", ns, "two"]);
    assert_eq!(pod_two["status"]["containerStatuses"][0]["restartCount"], 0);

    // The plugin dies: its devices stay in capacity but leave allocatable.
    drop(plugin);
    c.wait_json("no allocatable devices", &node, 60, &kubelet, |n| {
        node_resource(n, "capacity").as_deref() == Some("2")
            && node_resource(n, "allocatable").as_deref() == Some("0")
    });
    drop(namespace);
    drop(kubelet);
}

#[test]
fn a_device_plugin_in_the_plugins_registry_registers_through_the_plugin_manager() {
    let test = "a_device_plugin_in_the_plugins_registry_registers_through_the_plugin_manager";
    let Some((_env, c)) = common::Cluster::from_env(test) else {
        return;
    };
    let Some(plugin_binary) = common::env_program(test, "KUBELET_TEST_SAMPLE_DEVICE_PLUGIN") else {
        return;
    };
    let _node = lock();
    let dir = kubelet_test_support::TestDir::new();
    let kubelet = c.start_kubelet(dir.path());
    c.wait_node_ready(&kubelet);
    let namespace = Namespace::create(&c, "device-plugin-watcher-test");
    let ns = namespace.name;
    // Upstream's stub serves the pluginregistration API beside the device plugin API;
    // with a registration control file that stays, it never registers on kubelet.sock,
    // so only the plugin manager can find it.
    let control = dir.path().join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    std::fs::write(control.join("register"), "").expect("control file");
    let mut command = Command::new(&plugin_binary);
    command
        .env("PLUGIN_SOCK_DIR", dir.path().join("root/plugins_registry"))
        .env("REGISTER_CONTROL_FILE", control.join("register"));
    let plugin = Helper::spawn(command, &dir.path().join("plugin.log"));
    let plugin_log = || std::fs::read_to_string(dir.path().join("plugin.log")).unwrap_or_default();
    let node = ["get", "node", c.node.as_str()];
    common::wait_until(
        "the node advertising the plugin's 2 devices",
        60,
        || format!("{}\nplugin:\n{}", kubelet.log(), plugin_log()),
        || {
            let n = c.json(&node);
            node_resource(&n, "capacity").as_deref() == Some("2")
                && node_resource(&n, "allocatable").as_deref() == Some("2")
        },
    );
    assert!(
        kubelet
            .log()
            .contains("device plugin registered through the plugin manager"),
        "{}",
        kubelet.log()
    );
    assert!(
        !kubelet
            .log()
            .contains("Got registration request from device plugin"),
        "registered on kubelet.sock instead"
    );
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: watched, namespace: {ns}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "ls /tmp; sleep 3600"]
    resources: {{limits: {{{RESOURCE}: 1}}}}
"#,
        image = c.busybox
    ));
    c.wait_json(
        "watched Running",
        &["get", "pod", "-n", ns, "watched"],
        90,
        &kubelet,
        |p| p["status"]["containerStatuses"][0]["state"]["running"].is_object(),
    );
    common::wait_until(
        "watched's device file",
        30,
        || kubelet.log(),
        || {
            c.try_kubectl(&["logs", "-n", ns, "watched"], None)
                .is_ok_and(|l| l.lines().filter(|f| f.starts_with("Dev-")).count() == 1)
        },
    );
    // The plugin goes (its socket removed on SIGTERM, or its stream ended): its
    // devices leave allocatable.
    drop(plugin);
    c.wait_json("no allocatable devices", &node, 60, &kubelet, |n| {
        node_resource(n, "allocatable").as_deref() == Some("0")
    });
    drop(namespace);
    drop(kubelet);
}
