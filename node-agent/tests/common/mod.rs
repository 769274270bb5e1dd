//! What the node agent's tests against a real API server share.

/// A client with the test control plane's admin kubeconfig (`KUBELET_TEST_KUBECONFIG`);
/// `None`, with `test` reported skipped, when there is no control plane.
pub async fn admin_client(test: &str) -> Option<kube::Client> {
    let Some(path) = std::env::var("KUBELET_TEST_KUBECONFIG")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        kubelet_test_support::skip(
            test,
            "no control plane (KUBELET_TEST_KUBECONFIG unset); run `cargo xtask test` or \
             `eval \"$(cargo xtask env up --control-plane)\"` first",
        );
        return None;
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client configuration");
    Some(kube::Client::try_from(config).expect("client"))
}
