//! Service link environment variables (`<SVC>_SERVICE_HOST`, `<SVC>_PORT_80_TCP`, ...),
//! as upstream's `getServiceEnvVarMap` selects the services and `envvars.FromServices`
//! names them.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Service, ServicePort};

/// The service that every pod gets variables for, from the master namespace, whatever
/// its `enableServiceLinks` says (upstream `masterServices`).
const MASTER_SERVICE: &str = "kubernetes";

/// The service link environment of a pod in `namespace`, built from every Service the
/// kubelet knows (all namespaces), as upstream `getServiceEnvVarMap`:
///
/// - Only services with a cluster IP count: an empty `spec.clusterIP` (ExternalName) and
///   `None` (headless) are skipped.
/// - The `kubernetes` service of `master_namespace` (upstream: always `default`) is
///   always included, also when `enable_service_links` is false.
/// - With `enable_service_links`, every service of `namespace` is included too; one of
///   them named `kubernetes` wins over the master namespace's.
///
/// Each service gives, in this order (upstream `FromServices`): `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT` (the first port), `<NAME>_SERVICE_PORT_<PORT NAME>` for every
/// named port, then the Docker link variables `<NAME>_PORT` (first port, as
/// `tcp://10.0.0.1:80`) and for every port `<NAME>_PORT_<port>_<PROTO>`, with `_PROTO`,
/// `_PORT` and `_ADDR` after it. Names are upper-cased with `-` turned into `_`; IPv6
/// cluster IPs are bracketed in the URLs (`tcp://[fd00::1]:80`); the protocol defaults
/// to TCP.
///
/// Upstream collects the services in a Go map, so both the order of the services and,
/// for a variable two services both produce (possible only with contrived names, e.g. a
/// port named `x-service-host` on `a` and a service `a-service-port-x`), which value wins
/// are random. Here services come in name order, and a repeated variable keeps the
/// position where it first appeared with the value of the last service, as a map
/// assignment in that order would.
///
/// ```
/// use k8s_openapi::api::core::v1::Service;
/// use kubelet_pod_manager::spec::service_env;
///
/// let api: Service = serde_json::from_value(serde_json::json!({
///     "metadata": {"name": "kubernetes", "namespace": "default"},
///     "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
/// }))
/// .unwrap();
/// let env = service_env(&[api], "shop", false, "default");
/// assert_eq!(env[0], ("KUBERNETES_SERVICE_HOST".to_owned(), "10.96.0.1".to_owned()));
/// assert_eq!(env[3], ("KUBERNETES_PORT".to_owned(), "tcp://10.96.0.1:443".to_owned()));
/// ```
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
    master_namespace: &str,
) -> Vec<(String, String)> {
    let mut selected: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        if cluster_ip(service).is_none() {
            continue;
        }
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        if service_namespace == master_namespace && name == MASTER_SERVICE {
            // Upstream lists services in no particular order; the pod's own namespace
            // must win whichever comes first, so the master service never replaces.
            selected.entry(name).or_insert(service);
        } else if service_namespace == namespace && enable_service_links {
            selected.insert(name, service);
        }
    }

    let mut env = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for service in selected.values() {
        for (name, value) in service_vars(service) {
            match index.get(&name) {
                Some(i) => env[*i] = (name, value),
                None => {
                    index.insert(name.clone(), env.len());
                    env.push((name, value));
                }
            }
        }
    }
    env
}

/// The service's cluster IP, unless it has none (upstream `IsServiceIPSet`).
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_deref()?;
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// One service's variables, in upstream `FromServices` order.
fn service_vars(service: &Service) -> Vec<(String, String)> {
    let Some(ip) = cluster_ip(service) else {
        return Vec::new();
    };
    let prefix = variable_name(service.metadata.name.as_deref().unwrap_or_default());
    let ports: &[ServicePort] = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();

    let mut vars = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_owned())];
    // Validation requires ports on every service with a cluster IP; upstream would
    // crash on one without, here it just gets no port variables.
    let Some(first) = ports.first() else {
        return vars;
    };
    let port_var = format!("{prefix}_SERVICE_PORT");
    vars.push((port_var.clone(), first.port.to_string()));
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!("{port_var}_{}", variable_name(name)),
                port.port.to_string(),
            ));
        }
    }

    // Docker link variables.
    for (i, port) in ports.iter().enumerate() {
        let protocol = port
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_ascii_lowercase();
        let url = format!("{lower}://{}", join_host_port(ip, port.port));
        if i == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!(
            "{prefix}_PORT_{}_{}",
            port.port,
            protocol.to_ascii_uppercase()
        );
        vars.push((port_prefix.clone(), url));
        vars.push((format!("{port_prefix}_PROTO"), lower));
        vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push((format!("{port_prefix}_ADDR"), ip.to_owned()));
    }
    vars
}

/// Upstream `makeEnvVariableName`: `-` to `_`, upper case. Service and port names are
/// ASCII by validation, where Go's `ToUpper` and ASCII upper-casing agree.
fn variable_name(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// Go's `net.JoinHostPort`: a host containing a colon (IPv6) is bracketed.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
