//! The real test environment of `cargo xtask env up`, for integration tests.

/// Variables `cargo xtask env up` exports, read by integration tests on real parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEnv {
    /// `CONTAINER_RUNTIME_ENDPOINT`: containerd's CRI socket.
    pub endpoint: String,
    /// `KUBELET_TEST_BUSYBOX_IMAGE`: a busybox image in the local registry.
    pub busybox: String,
    /// `KUBELET_TEST_REGISTRY`: the local registry.
    pub registry: String,
    /// `KUBELET_TEST_AUTH_REGISTRY`: the local registry that requires credentials.
    pub auth_registry: String,
    /// `KUBELET_TEST_AUTH_USER`: its user.
    pub auth_user: String,
    /// `KUBELET_TEST_AUTH_PASSWORD`: its password.
    pub auth_password: String,
    /// `KUBELET_TEST_RUNTIME_HANDLER`: a runtime handler besides the default one.
    pub runtime_handler: String,
}

impl TestEnv {
    /// The environment, or `None` with the reason printed as `<test>: SKIPPED: ...`.
    ///
    /// # Panics
    ///
    /// When `KUBELET_TEST_REQUIRE_ENV=1` (as `cargo xtask test` sets) and the environment
    /// is missing: there a skipped test would hide a broken set-up.
    pub fn from_env(test: &str) -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let names = [
            "CONTAINER_RUNTIME_ENDPOINT",
            "KUBELET_TEST_BUSYBOX_IMAGE",
            "KUBELET_TEST_REGISTRY",
            "KUBELET_TEST_AUTH_REGISTRY",
            "KUBELET_TEST_AUTH_USER",
            "KUBELET_TEST_AUTH_PASSWORD",
            "KUBELET_TEST_RUNTIME_HANDLER",
        ];
        let missing: Vec<_> = names.iter().filter(|n| var(n).is_none()).collect();
        if !missing.is_empty() {
            kubelet_test_support::skip(
                test,
                format!(
                    "no test environment ({missing:?} unset); run `cargo xtask test` or \
                     `eval \"$(cargo xtask env up)\"` first"
                ),
            );
            return None;
        }
        let get = |name: &str| var(name).unwrap_or_default();
        Some(Self {
            endpoint: get("CONTAINER_RUNTIME_ENDPOINT"),
            busybox: get("KUBELET_TEST_BUSYBOX_IMAGE"),
            registry: get("KUBELET_TEST_REGISTRY"),
            auth_registry: get("KUBELET_TEST_AUTH_REGISTRY"),
            auth_user: get("KUBELET_TEST_AUTH_USER"),
            auth_password: get("KUBELET_TEST_AUTH_PASSWORD"),
            runtime_handler: get("KUBELET_TEST_RUNTIME_HANDLER"),
        })
    }
}
