//! Which runtime handler runs a pod: its RuntimeClass's (node.k8s.io/v1), or the
//! runtime's default when it names none (upstream `pkg/kubelet/runtimeclass`).

use k8s_openapi::api::core::v1::Pod;

/// Looks up RuntimeClasses. The API-server implementation lives with the node agent;
/// without an API server there is [`NoRuntimeClasses`].
#[async_trait::async_trait]
pub trait RuntimeClasses: Send + Sync {
    /// The handler of the RuntimeClass `name`; `Err` with upstream's message when it
    /// cannot be had, e.g. `runtimeclass.node.k8s.io "gvisor" not found`.
    async fn handler(&self, name: &str) -> Result<String, String>;
}

/// No API server (standalone mode). Upstream then ignores `runtimeClassName` and runs
/// the pod on the default handler; a pod that asked for a sandboxed runtime must not
/// run with less, so here it does not start.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRuntimeClasses;

#[async_trait::async_trait]
impl RuntimeClasses for NoRuntimeClasses {
    async fn handler(&self, name: &str) -> Result<String, String> {
        Err(format!(
            "RuntimeClass {name:?} cannot be looked up without an API server: this kubelet \
             runs in standalone mode"
        ))
    }
}

/// The runtime handler for `pod`: empty (the runtime's default) unless it names a
/// RuntimeClass.
pub async fn runtime_handler(classes: &dyn RuntimeClasses, pod: &Pod) -> Result<String, String> {
    match pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
    {
        None | Some("") => Ok(String::new()),
        Some(name) => classes.handler(name).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    struct One;

    #[async_trait::async_trait]
    impl RuntimeClasses for One {
        async fn handler(&self, name: &str) -> Result<String, String> {
            match name {
                "sandboxed" => Ok("runsc".to_owned()),
                _ => Err(format!("runtimeclass.node.k8s.io {name:?} not found")),
            }
        }
    }

    fn pod(class: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                runtime_class_name: class.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pod_gets_its_classes_handler_or_the_default() {
        assert_eq!(runtime_handler(&One, &pod(None)).await, Ok(String::new()));
        assert_eq!(
            runtime_handler(&One, &pod(Some(""))).await,
            Ok(String::new())
        );
        assert_eq!(
            runtime_handler(&One, &pod(Some("sandboxed"))).await,
            Ok("runsc".to_owned())
        );
        assert_eq!(
            runtime_handler(&One, &pod(Some("gone"))).await,
            Err("runtimeclass.node.k8s.io \"gone\" not found".to_owned())
        );
    }

    #[tokio::test]
    async fn standalone_refuses_a_named_class_and_keeps_the_default() {
        assert_eq!(
            runtime_handler(&NoRuntimeClasses, &pod(None)).await,
            Ok(String::new())
        );
        let error = runtime_handler(&NoRuntimeClasses, &pod(Some("kata")))
            .await
            .expect_err("refused");
        assert!(error.contains("\"kata\""), "{error}");
    }
}
