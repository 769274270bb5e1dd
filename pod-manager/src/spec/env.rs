//! A container's environment (upstream `makeEnvironmentVariables`) and `$(VAR)` expansion
//! (upstream `third_party/forked/golang/expansion`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kubelet_core::Quantity;

use super::{
    EnvObjects, NodeContext, node_ips, parse_ip_sloppy, pod_spec, service_env, spec_error,
};
use crate::Result;
use crate::source::validation::label_key_errors as is_label_key;

/// Replaces `$(NAME)` references in `input` with `lookup(NAME)`, exactly as Kubernetes
/// expands command, args and env values: `$$` is an escaped `$`, a reference whose name
/// `lookup` does not know stays as written, and anything else (`$NAME`, `${NAME}`, an
/// unterminated `$(`) is left alone.
///
/// ```
/// use kubelet_pod_manager::spec::expand;
///
/// let lookup = |name: &str| (name == "A").then(|| "x".to_owned());
/// assert_eq!(expand("$(A)-$$(A)-$(B)-$A", lookup), "x-$(A)-$(B)-$A");
/// ```
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let (read, advance) = read_reference(rest);
            match read {
                Reference::Variable(name) => match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                },
                Reference::Literal(text) => out.push_str(&text),
            }
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint..]);
    out
}

enum Reference<'a> {
    /// `(NAME)`: a reference to look up.
    Variable(&'a str),
    /// Text to copy as it is.
    Literal(Cow<'a, str>),
}

/// Reads what follows a `$`; returns it and how many bytes of `rest` it consumed.
fn read_reference(rest: &str) -> (Reference<'_>, usize) {
    let Some(first) = rest.chars().next() else {
        return (Reference::Literal(Cow::Borrowed("$")), 0);
    };
    match first {
        // `$$` is an escaped operator.
        '$' => (Reference::Literal(Cow::Borrowed("$")), 1),
        '(' => match rest.bytes().skip(1).position(|b| b == b')') {
            Some(i) => (Reference::Variable(&rest[1..=i]), i + 2),
            // Unterminated: keep "$(" and rescan from after the parenthesis.
            None => (Reference::Literal(Cow::Borrowed("$(")), 1),
        },
        other => {
            let mut text = String::from("$");
            text.push(other);
            (Reference::Literal(Cow::Owned(text)), other.len_utf8())
        }
    }
}

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
/// The service link variables ([`service_env`] of `env_objects.services()`, for the
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
    env_objects: &dyn EnvObjects,
) -> Result<Vec<(String, String)>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let fail = |reason: String| spec_error(pod, &container.name, reason);
    let mut objects = Objects {
        source: env_objects,
        namespace,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = Env::default();
    let enable_service_links = pod_spec(pod).enable_service_links.unwrap_or(true);
    let services = env_objects
        .services()
        // Upstream hard-codes the master namespace (metav1.NamespaceDefault).
        .map(|services| service_env(&services, namespace, enable_service_links, "default"))
        .unwrap_or_default();
    let service_vars: HashMap<&str, &str> = services
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            let Some(config_map) = objects.config_map(&reference.name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(fail(objects.missing("configMap", &reference.name)));
            };
            for (key, value) in config_map.data.iter().flatten() {
                env.set(format!("{prefix}{key}"), value.clone());
            }
        } else if let Some(reference) = &source.secret_ref {
            let Some(secret) = objects.secret(&reference.name) else {
                if reference.optional == Some(true) {
                    continue;
                }
                return Err(fail(objects.missing("secret", &reference.name)));
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
                resource_value(pod, container, selector, ctx).map_err(fail)?
            } else if let Some(selector) = &from.config_map_key_ref {
                let optional = selector.optional == Some(true);
                let Some(config_map) = objects.config_map(&selector.name) else {
                    if optional {
                        continue;
                    }
                    return Err(fail(objects.missing("configMap", &selector.name)));
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
                let Some(secret) = objects.secret(&selector.name) else {
                    if optional {
                        continue;
                    }
                    return Err(fail(objects.missing("secret", &selector.name)));
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

/// ConfigMaps and Secrets fetched once per container, as upstream caches them.
struct Objects<'a> {
    source: &'a dyn EnvObjects,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Objects<'_> {
    fn config_map(&mut self, name: &str) -> Option<ConfigMap> {
        let (source, namespace) = (self.source, self.namespace);
        self.config_maps
            .entry(name.to_owned())
            .or_insert_with(|| source.config_map(namespace, name))
            .clone()
    }

    fn secret(&mut self, name: &str) -> Option<Secret> {
        let (source, namespace) = (self.source, self.namespace);
        self.secrets
            .entry(name.to_owned())
            .or_insert_with(|| source.secret(namespace, name))
            .clone()
    }

    fn missing(&self, kind: &str, name: &str) -> String {
        format!("couldn't get {kind} {}/{name}: not found", self.namespace)
    }
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
        other => metadata_field(pod, other)?,
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

/// Upstream `fieldpath.ExtractFieldPathAsString` for the metadata fields.
fn metadata_field(pod: &Pod, path: &str) -> std::result::Result<String, String> {
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let (map, checked) = match base {
            // Annotation keys are validated case-insensitively, looked up as written.
            "metadata.annotations" => (&meta.annotations, key.to_lowercase()),
            "metadata.labels" => (&meta.labels, key.to_owned()),
            _ => return Err(format!("fieldPath {path:?} does not support subscript")),
        };
        let errors = is_label_key(&checked);
        if !errors.is_empty() {
            return Err(format!(
                "invalid key subscript in {path}: {}",
                errors.join(";")
            ));
        }
        return Ok(map
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match path {
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    };
    Ok(value)
}

/// `metadata.annotations['key']` → `("metadata.annotations", "key")`.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// Upstream `fieldpath.FormatMap`: sorted `key="value"` lines, values quoted as Go quotes.
fn format_map(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", super::security::go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a resourceFieldRef (upstream `containerResourceRuntimeValue` on the pod
/// and container with limits defaulted by `defaultPodLimitsForDownwardAPI`).
fn resource_value(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    ctx: &NodeContext,
) -> std::result::Result<String, String> {
    let spec = pod_spec(pod);
    let allocatable = allocatable_for_downward_api(pod, ctx)?;
    let target_name = selector.container_name.as_deref().unwrap_or_default();
    // Upstream defaults the limits of the container itself and of the pod's regular
    // containers, but not of init containers referenced by name.
    let (target, defaulted) = if target_name.is_empty() {
        (container, true)
    } else if let Some(c) = spec.containers.iter().find(|c| c.name == target_name) {
        (c, true)
    } else if let Some(c) = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == target_name)
    {
        (c, false)
    } else {
        return Err(format!("container {target_name} not found"));
    };

    let divisor = match &selector.divisor {
        Some(d) => parse(d)?,
        None => Quantity::ZERO,
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_nanos(1_000_000_000)
    } else {
        divisor
    };
    let resources = target.resources.as_ref();
    let get = |list: Option<&std::collections::BTreeMap<String, ApiQuantity>>,
               name: &str|
     -> std::result::Result<Quantity, String> {
        list.and_then(|l| l.get(name))
            .map_or(Ok(Quantity::ZERO), parse)
    };
    let requests = resources.and_then(|r| r.requests.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let limit = |name: &str| -> std::result::Result<Quantity, String> {
        let value = get(limits, name)?;
        if value.is_zero() && defaulted {
            // MergeContainerResourceLimits: an unset or zero limit is the allocatable.
            Ok(match name {
                "cpu" => allocatable.cpu,
                "memory" => allocatable.memory,
                _ => allocatable.ephemeral_storage,
            })
        } else {
            Ok(value)
        }
    };

    let resource = selector.resource.as_str();
    let ceil_div = |a: i64, b: i64| (a as f64 / b as f64).ceil() as i64;
    let value = match resource {
        "limits.cpu" => ceil_div(limit("cpu")?.milli_value(), divisor.milli_value()),
        "requests.cpu" => ceil_div(get(requests, "cpu")?.milli_value(), divisor.milli_value()),
        "limits.memory" | "limits.ephemeral-storage" => {
            let name = resource.trim_start_matches("limits.");
            ceil_div(limit(name)?.value(), divisor.value())
        }
        "requests.memory" | "requests.ephemeral-storage" => {
            let name = resource.trim_start_matches("requests.");
            ceil_div(get(requests, name)?.value(), divisor.value())
        }
        _ => {
            if let Some(name) = resource
                .strip_prefix("requests.")
                .filter(|n| n.starts_with("hugepages-"))
            {
                ceil_div(get(requests, name)?.value(), divisor.value())
            } else if let Some(name) = resource
                .strip_prefix("limits.")
                .filter(|n| n.starts_with("hugepages-"))
            {
                // Hugepages are never overcommitted, so their limits are not defaulted.
                ceil_div(get(limits, name)?.value(), divisor.value())
            } else {
                return Err(format!("unsupported container resource : {resource}"));
            }
        }
    };
    Ok(value.to_string())
}

/// What an unset limit means to the downward API.
struct Allocatable {
    cpu: Quantity,
    memory: Quantity,
    ephemeral_storage: Quantity,
}

/// The node's allocatable, with pod-level CPU and memory limits (when the pod sets any
/// pod-level limit) taking its place, as upstream `defaultPodLimitsForDownwardAPI`.
fn allocatable_for_downward_api(
    pod: &Pod,
    ctx: &NodeContext,
) -> std::result::Result<Allocatable, String> {
    let bytes = |n: u64| Quantity::from_nanos(i128::from(n) * 1_000_000_000);
    let mut allocatable = Allocatable {
        cpu: Quantity::from_nanos(i128::from(ctx.allocatable_milli_cpu) * 1_000_000),
        memory: bytes(ctx.allocatable_memory),
        ephemeral_storage: bytes(ctx.allocatable_ephemeral_storage),
    };
    let spec = pod_spec(pod);
    let pod_limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    let pod_level_limits_set = pod_limits.is_some_and(|limits| {
        limits
            .keys()
            .any(|k| k == "cpu" || k == "memory" || k.starts_with("hugepages-"))
    });
    if let Some(limits) = pod_limits.filter(|_| pod_level_limits_set) {
        if let Some(cpu) = limits.get("cpu").map(parse).transpose()?
            && !cpu.is_zero()
        {
            allocatable.cpu = cpu;
        }
        if let Some(memory) = limits.get("memory").map(parse).transpose()?
            && !memory.is_zero()
        {
            allocatable.memory = memory;
        }
    }
    Ok(allocatable)
}

fn parse(quantity: &ApiQuantity) -> std::result::Result<Quantity, String> {
    Quantity::try_from(quantity).map_err(|e| e.to_string())
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
