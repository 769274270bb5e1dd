//! A container's environment (upstream `makeEnvironmentVariables`); `$(VAR)` expansion
//! ([`expand`]) and the downward API's values live in `kubelet-core`, shared with volumes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret, Service};
use kubelet_core::downward::{self, split_subscript};
pub use kubelet_core::expand;

use super::{
    EnvObjects, NodeContext, node_ips, parse_ip_sloppy, pod_spec, service_env, spec_error,
};
use crate::Result;

/// Environment variables in the order they were first defined, later definitions
/// replacing the value in place.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(i) => self.vars[*i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.index.get(name).map(|i| self.vars[*i].1.clone())
    }
}

/// The container's environment, as upstream `makeEnvironmentVariables` builds it:
/// `envFrom` sources first (each ConfigMap's or Secret's keys, with the prefix), then
/// `env` in order, a later definition of a name replacing the earlier one. Values expand
/// `$(VAR)` against what is defined so far, then against the service link variables;
/// `valueFrom` resolves fieldRef, resourceFieldRef (unset limits default to the node's
/// allocatable), configMapKeyRef and secretKeyRef. A missing object or key is skipped
/// when marked optional and an error otherwise.
///
/// The service link variables ([`service_env`] of the [`PodObjects`]' services, for the
/// pod's namespace and `enableServiceLinks`, unset meaning true) come after the
/// container's own, except those the container defines itself: its value wins. Without services (`None`, standalone mode) there are none,
/// as upstream without a service lister.
///
/// Upstream returns the container's variables in Go map order (random), then the
/// remaining service variables in map order; here a container variable keeps the
/// position of its first definition and service variables keep [`service_env`]'s order.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    pod_ips: &[String],
    ctx: &NodeContext,
    objects: &PodObjects,
) -> Result<Vec<(String, String)>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let fail = |reason: String| spec_error(pod, &container.name, reason);
    let mut env = Env::default();
    let enable_service_links = pod_spec(pod).enable_service_links.unwrap_or(true);
    let services = objects
        .services
        .as_deref()
        // Upstream hard-codes the master namespace (metav1.NamespaceDefault).
        .map(|services| service_env(services, namespace, enable_service_links, "default"))
        .unwrap_or_default();
    let service_vars: HashMap<&str, &str> = services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            let optional = reference.optional == Some(true);
            let Some(config_map) = objects
                .config_map(&reference.name, optional)
                .map_err(fail)?
            else {
                continue;
            };
            for (key, value) in config_map.data.iter().flatten() {
                env.set(format!("{prefix}{key}"), value.clone());
            }
        } else if let Some(reference) = &source.secret_ref {
            let optional = reference.optional == Some(true);
            let Some(secret) = objects.secret(&reference.name, optional).map_err(fail)? else {
                continue;
            };
            for (key, value) in secret.data.iter().flatten() {
                env.set(
                    format!("{prefix}{key}"),
                    String::from_utf8_lossy(&value.0).into_owned(),
                );
            }
        }
    }

    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |name| {
                env.get(name)
                    .or_else(|| service_vars.get(name).map(|v| (*v).to_owned()))
            })
        } else if let Some(from) = &var.value_from {
            if let Some(selector) = &from.field_ref {
                field_value(pod, selector, pod_ips, ctx).map_err(fail)?
            } else if let Some(selector) = &from.resource_field_ref {
                downward::env_container_resource(pod, container, selector, &ctx.allocatable)
                    .map_err(|e| fail(e.message))?
            } else if let Some(selector) = &from.config_map_key_ref {
                let optional = selector.optional == Some(true);
                let Some(config_map) =
                    objects.config_map(&selector.name, optional).map_err(fail)?
                else {
                    continue;
                };
                match config_map.data.as_ref().and_then(|d| d.get(&selector.key)) {
                    Some(value) => value.clone(),
                    None if optional => continue,
                    None => {
                        return Err(fail(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            selector.key, selector.name
                        )));
                    }
                }
            } else if let Some(selector) = &from.secret_key_ref {
                let optional = selector.optional == Some(true);
                let Some(secret) = objects.secret(&selector.name, optional).map_err(fail)? else {
                    continue;
                };
                match secret.data.as_ref().and_then(|d| d.get(&selector.key)) {
                    Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(fail(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            selector.key, selector.name
                        )));
                    }
                }
            } else if let Some(selector) = &from.file_key_ref {
                // Needs the pod's volumes, which this translation does not see yet.
                return Err(fail(format!(
                    "env var {}: fileKeyRef (volume {:?}) is not supported yet",
                    var.name, selector.volume_name
                )));
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }
    let Env { mut vars, index } = env;
    vars.extend(
        services
            .into_iter()
            .filter(|(name, _)| !index.contains_key(name)),
    );
    Ok(vars)
}

/// What an object read gave: the object, `None` when it does not exist, or why it cannot
/// be known now.
type Read<K> = std::result::Result<Option<K>, String>;

/// The ConfigMaps and Secrets a pod's containers name in `env` and `envFrom`, read once
/// through its [`EnvObjects`] before the (synchronous) container configs are built, and the
/// Services for the service link variables. The default has none of them (standalone
/// mode).
#[derive(Debug, Clone, Default)]
pub struct PodObjects {
    namespace: String,
    config_maps: HashMap<String, Read<ConfigMap>>,
    secrets: HashMap<String, Read<Secret>>,
    services: Option<Vec<Service>>,
}

impl PodObjects {
    /// Reads the objects `pod`'s containers name in their environment, all at once (an
    /// object whose cache has not synced waits for it, and those waits overlap).
    pub async fn read(pod: &Pod, source: &dyn EnvObjects) -> Self {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let (config_map_names, secret_names) = env_references(pod);
        let config_map_reads = config_map_names.into_iter().map(|name| async {
            let read = source.config_map(&namespace, &name).await;
            (name, read.map_err(|e| e.to_string()))
        });
        let secret_reads = secret_names.into_iter().map(|name| async {
            let read = source.secret(&namespace, &name).await;
            (name, read.map_err(|e| e.to_string()))
        });
        let (config_maps, secrets) = futures::future::join(
            futures::future::join_all(config_map_reads),
            futures::future::join_all(secret_reads),
        )
        .await;
        let (config_maps, secrets) = (
            config_maps.into_iter().collect(),
            secrets.into_iter().collect(),
        );
        Self {
            namespace,
            config_maps,
            secrets,
            services: source.services(),
        }
    }

    /// The ConfigMap `name`: `None` when it is missing and `optional`; an error naming it
    /// when it is missing and not optional, or cannot be read (optional or not, as
    /// upstream tolerates only "not found").
    fn config_map(
        &self,
        name: &str,
        optional: bool,
    ) -> std::result::Result<Option<&ConfigMap>, String> {
        Self::wanted(self.config_maps.get(name), optional, || {
            self.missing("configMap", name)
        })
    }

    /// The Secret `name`, as [`Self::config_map`].
    fn secret(&self, name: &str, optional: bool) -> std::result::Result<Option<&Secret>, String> {
        Self::wanted(self.secrets.get(name), optional, || {
            self.missing("secret", name)
        })
    }

    fn wanted<K>(
        read: Option<&Read<K>>,
        optional: bool,
        missing: impl FnOnce() -> String,
    ) -> std::result::Result<Option<&K>, String> {
        match read {
            Some(Ok(Some(object))) => Ok(Some(object)),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(None)) | None if optional => Ok(None),
            Some(Ok(None)) | None => Err(missing()),
        }
    }

    fn missing(&self, kind: &str, name: &str) -> String {
        format!("couldn't get {kind} {}/{name}: not found", self.namespace)
    }
}

/// The ConfigMaps and Secrets that the `env` and `envFrom` of a pod's containers (init,
/// regular and ephemeral) name, empty names left out.
pub fn env_references(pod: &Pod) -> (HashSet<String>, HashSet<String>) {
    let mut config_maps = HashSet::new();
    let mut secrets = HashSet::new();
    let Some(spec) = &pod.spec else {
        return (config_maps, secrets);
    };
    let envs = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (&c.env, &c.env_from))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (&c.env, &c.env_from)),
        );
    for (env, env_from) in envs {
        for from in env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
        for from in env
            .iter()
            .flatten()
            .filter_map(|var| var.value_from.as_ref())
        {
            if let Some(r) = &from.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    // No object has an empty name: such a reference is missing without asking.
    config_maps.retain(|n| !n.is_empty());
    secrets.retain(|n| !n.is_empty());
    (config_maps, secrets)
}

/// The value of a fieldRef (upstream `podFieldSelectorRuntimeValue`).
fn field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    pod_ips: &[String],
    ctx: &NodeContext,
) -> std::result::Result<String, String> {
    // API defaulting sets apiVersion to v1; a pod that skipped it means the same.
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = selector.field_path.as_str();
    let path = match split_subscript(path) {
        Some((base, _)) if base == "metadata.annotations" || base == "metadata.labels" => path,
        Some(_) => return Err(format!("field label does not support subscript: {path}")),
        None => match path {
            "metadata.annotations"
            | "metadata.labels"
            | "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.serviceAccountName"
            | "spec.schedulerName"
            | "status.phase"
            | "status.hostIP"
            | "status.hostIPs"
            | "status.podIP"
            | "status.podIPs" => path,
            // Old clients' name for spec.nodeName.
            "spec.host" => "spec.nodeName",
            _ => return Err(format!("field label not supported: {path}")),
        },
    };

    let spec = pod_spec(pod);
    let sorted_ips = sort_pod_ips(pod_ips, ctx.host_ips.first());
    let host_ips = || -> std::result::Result<Vec<String>, String> {
        let ips = node_ips(ctx);
        if ips.is_empty() {
            return Err("host IP unknown; known addresses: []".to_owned());
        }
        Ok(ips.iter().map(IpAddr::to_string).collect())
    };
    let value = match path {
        "spec.nodeName" => spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
        "status.hostIP" => host_ips()?.into_iter().next().unwrap_or_default(),
        "status.hostIPs" => host_ips()?.join(","),
        "status.podIP" => sorted_ips
            .first()
            .or(pod_ips.first())
            .cloned()
            .unwrap_or_default(),
        "status.podIPs" => sorted_ips.join(","),
        other => downward::pod_field(pod, other).map_err(|e| e.message)?,
    };
    Ok(value)
}

/// Upstream `sortPodIPs`: the first IP of the node's primary family (IPv4 when the node
/// has no IP), then the first of the other family, each in canonical form.
fn sort_pod_ips(pod_ips: &[String], node_ip: Option<&IpAddr>) -> Vec<String> {
    let node_v6 = matches!(node_ip.map(|ip| ip.to_canonical()), Some(IpAddr::V6(_)));
    let parsed: Vec<IpAddr> = pod_ips
        .iter()
        .filter_map(|ip| parse_ip_sloppy(ip))
        .collect();
    let first_of = |v6: bool| {
        parsed
            .iter()
            .find(|ip| ip.is_ipv6() == v6)
            .map(IpAddr::to_string)
    };
    first_of(node_v6)
        .into_iter()
        .chain(first_of(!node_v6))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        let value = match name {
            "VAR_A" => "A",
            "VAR_B" => "B",
            "VAR_C" => "C",
            "VAR_REF" => "$(VAR_A)",
            "VAR_EMPTY" => "",
            _ => return None,
        };
        Some(value.to_owned())
    }

    /// Upstream's expansion behaviour, case by case (the cases of its expand_test.go).
    #[test]
    fn expansion_matches_upstream() {
        let cases = [
            ("whole string", "$(VAR_A)", "A"),
            ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
            ("beginning", "$(VAR_A)-1", "A-1"),
            ("middle", "___$(VAR_B)___", "___B___"),
            ("end", "___$(VAR_C)", "___C"),
            ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("escape & expand", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            (
                "compound escape",
                "$$(VAR_A)_$$(VAR_B)",
                "$(VAR_A)_$(VAR_B)",
            ),
            ("mixed in escapes", "f000-$$VAR_A", "f000-$VAR_A"),
            ("backslash escape ignored", "foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("double backslash", "foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            (
                "lots of backslashes",
                "foo\\\\\\\\$(VAR_A)bar",
                "foo\\\\\\\\Abar",
            ),
            (
                "nested var references",
                "$(VAR_A$(VAR_B))",
                "$(VAR_A$(VAR_B))",
            ),
            ("nested, second type", "$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("value is a reference", "$(VAR_REF)", "$(VAR_A)"),
            (
                "reference twice",
                "%%$(VAR_REF)--$(VAR_REF)%%",
                "%%$(VAR_A)--$(VAR_A)%%",
            ),
            ("empty var", "foo$(VAR_EMPTY)bar", "foobar"),
            (
                "unterminated expression",
                "foo$(VAR_Awhoops!",
                "foo$(VAR_Awhoops!",
            ),
            (
                "expression without operator",
                "f00__(VAR_A)__",
                "f00__(VAR_A)__",
            ),
            ("shell special vars pass through", "$?_boo_$!", "$?_boo_$!"),
            ("bare operators are ignored", "$VAR_A", "$VAR_A"),
            (
                "undefined vars are passed through",
                "$(VAR_DNE)",
                "$(VAR_DNE)",
            ),
            (
                "even operators, undefined",
                "$$$$$$(BIG_MONEY)",
                "$$$(BIG_MONEY)",
            ),
            ("even operators, defined", "$$$$$$(VAR_A)", "$$$(VAR_A)"),
            (
                "odd operators, undefined",
                "$$$$$$$(GOOD_ODDS)",
                "$$$$(GOOD_ODDS)",
            ),
            ("odd operators, defined", "$$$$$$$(VAR_A)", "$$$A"),
            ("missing open expression", "$VAR_A)", "$VAR_A)"),
            ("shell syntax ignored", "${VAR_A}", "${VAR_A}"),
            (
                "trailing incomplete expression",
                "$(VAR_B)_______$(A",
                "B_______$(A",
            ),
            (
                "trailing incomplete, no content",
                "$(VAR_C)_______$(",
                "C_______$(",
            ),
            (
                "operator at end is preserved",
                "$(VAR_A)foobarzab$",
                "Afoobarzab$",
            ),
            (
                "shell escaped incomplete expr",
                "foo-\\$(VAR_A",
                "foo-\\$(VAR_A",
            ),
            ("lots of $( in middle", "--$($($($($--", "--$($($($($--"),
            (
                "lots of $( at beginning",
                "$($($($($--foo$(",
                "$($($($($--foo$(",
            ),
            ("lots of $( at end", "foo0--$($($($(", "foo0--$($($($("),
            ("escaped operators in names", "$(foo$$var)", "$(foo$$var)"),
            ("newline not expanded", "\n", "\n"),
            ("dollar then non-ASCII", "$£FOO", "$£FOO"),
            (
                "dollar then multi-byte in middle",
                "prefix-$€-suffix",
                "prefix-$€-suffix",
            ),
            ("dollar then Chinese", "$中文", "$中文"),
            ("empty input", "", ""),
            ("lone operator", "$", "$"),
        ];
        for (name, input, expected) in cases {
            assert_eq!(expand(input, vars), expected, "{name}: {input:?}");
        }
    }

    #[test]
    fn subscripts_split_like_upstream() {
        assert_eq!(
            split_subscript("metadata.annotations['myKey']"),
            Some(("metadata.annotations", "myKey"))
        );
        assert_eq!(
            split_subscript("metadata.annotations['a[b]c']"),
            Some(("metadata.annotations", "a[b]c"))
        );
        assert_eq!(
            split_subscript("metadata.labels['']"),
            Some(("metadata.labels", ""))
        );
        assert_eq!(split_subscript("metadata.labels"), None);
        assert_eq!(split_subscript("['x']"), None);
    }

    #[test]
    fn pod_ips_sort_by_node_family() {
        let ips = vec![
            "fd00::1".to_owned(),
            "bogus".to_owned(),
            "10.0.0.1".to_owned(),
            "10.0.0.2".to_owned(),
        ];
        let v4: IpAddr = [192, 168, 0, 1].into();
        let v6: IpAddr = "fd00::10".parse().expect("IPv6 literal");
        assert_eq!(sort_pod_ips(&ips, Some(&v4)), ["10.0.0.1", "fd00::1"]);
        assert_eq!(sort_pod_ips(&ips, Some(&v6)), ["fd00::1", "10.0.0.1"]);
        assert_eq!(sort_pod_ips(&ips, None), ["10.0.0.1", "fd00::1"]);
        // Sloppy parsing and canonical output.
        assert_eq!(
            sort_pod_ips(&["010.000.000.001".to_owned()], None),
            ["10.0.0.1"]
        );
        assert_eq!(sort_pod_ips(&["FD00:0:0::1".to_owned()], None), ["fd00::1"]);
    }
}
