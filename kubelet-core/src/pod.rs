//! Small identities of pods shared by the traits.

use std::fmt;

use k8s_openapi::api::core::v1::Pod;

/// Identity of a pod: namespace, name and UID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl PodRef {
    /// The identity of a pod object; missing fields become empty strings.
    pub fn of(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for PodRef {
    /// `namespace/name`, as kubectl and the upstream kubelet's logs print pods.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn pod_ref_of_pod() {
        let pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("kube-system".into()),
                name: Some("etcd-node1".into()),
                uid: Some("1234".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = PodRef::of(&pod);
        assert_eq!(r.uid, "1234");
        assert_eq!(r.to_string(), "kube-system/etcd-node1");
    }
}
