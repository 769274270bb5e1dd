//! Pod validation: the subset of upstream's `ValidatePodCreate`
//! (`pkg/apis/core/validation`) that matters for pods a kubelet reads itself.
//!
//! Messages follow upstream's `field.Error` format (`spec.containers[0].image: Required
//! value`) so that they read the same as the API server's would. Checks of fields the
//! kubelet never acts on (affinity, topology spread, scheduling gates, resource claims,
//! security context details, quantities) are left out.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, LifecycleHandler, Pod, PodSpec, Probe,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::validation::{
    dns1123_label_errors, dns1123_subdomain_errors, label_value_errors, max_len_error,
    qualified_name_errors,
};

/// One validation failure, in upstream's `field.Error` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What kind of failure, with the offending value where upstream shows it.
    pub kind: FieldErrorKind,
    /// Extra explanation; may be empty.
    pub detail: String,
}

/// The kinds of [`FieldError`], as upstream's `field.ErrorType`. Values are kept already
/// rendered the way upstream prints them (strings quoted, numbers bare).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Required value`.
    Required,
    /// `Invalid value: <value>`.
    Invalid(String),
    /// `Unsupported value: <value>`.
    NotSupported(String),
    /// `Duplicate value: <value>`.
    Duplicate(String),
    /// `Not found: <value>`.
    NotFound(String),
    /// `Forbidden`.
    Forbidden,
    /// `Too many: <count>`.
    TooMany(usize),
}

impl FieldError {
    fn new(field: &str, kind: FieldErrorKind, detail: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            kind,
            detail: detail.into(),
        }
    }

    fn required(field: &str, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Required, detail)
    }

    fn invalid_str(field: &str, value: &str, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid(quote(value)), detail)
    }

    fn invalid_num(field: &str, value: i64, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid(value.to_string()), detail)
    }

    fn not_supported(field: &str, value: &str, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(field, FieldErrorKind::NotSupported(quote(value)), detail)
    }

    fn duplicate(field: &str, value: &str) -> Self {
        Self::new(field, FieldErrorKind::Duplicate(quote(value)), "")
    }

    fn not_found(field: &str, value: &str) -> Self {
        Self::new(field, FieldErrorKind::NotFound(quote(value)), "")
    }

    fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, detail)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        match &self.kind {
            FieldErrorKind::Required => f.write_str("Required value")?,
            FieldErrorKind::Invalid(v) => write!(f, "Invalid value: {v}")?,
            FieldErrorKind::NotSupported(v) => write!(f, "Unsupported value: {v}")?,
            FieldErrorKind::Duplicate(v) => write!(f, "Duplicate value: {v}")?,
            FieldErrorKind::NotFound(v) => write!(f, "Not found: {v}")?,
            FieldErrorKind::Forbidden => f.write_str("Forbidden")?,
            FieldErrorKind::TooMany(n) => write!(f, "Too many: {n}")?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Upstream's rendering of a list of errors (`%v` of a `field.ErrorList`):
/// `[a: Required value, b: Invalid value: ...]`.
pub fn format_field_errors(errors: &[FieldError]) -> String {
    let items: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Go's `%q` for the strings validation messages show; Rust's debug escaping is the
/// same for everything a manifest realistically holds.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Validates a defaulted pod as upstream's `ValidatePodCreate` would (the subset
/// described in the module doc). Returns every failure found, in upstream's order; an
/// empty list means the pod is valid.
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_metadata(pod, &mut errs);
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    validate_spec(spec, &mut errs);

    // Checks upstream makes only for pods, not pod templates.
    if let Some(grace) = spec.termination_grace_period_seconds {
        nonnegative(grace, "spec.terminationGracePeriodSeconds", &mut errs);
    }
    for (list, containers) in [
        ("spec.containers", &spec.containers[..]),
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
    ] {
        for (i, c) in containers.iter().enumerate() {
            image_whitespace(c.image.as_deref(), &format!("{list}[{i}]"), &mut errs);
        }
    }

    // Ephemeral containers are only added through their own subresource, never on create.
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

fn validate_metadata(pod: &Pod, errs: &mut Vec<FieldError>) {
    let meta = &pod.metadata;
    match meta.name.as_deref() {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for msg in dns1123_subdomain_errors(name) {
                errs.push(FieldError::invalid_str("metadata.name", name, msg));
            }
        }
    }
    match meta.namespace.as_deref() {
        None | Some("") => errs.push(FieldError::required("metadata.namespace", "")),
        Some(ns) => {
            for msg in dns1123_label_errors(ns) {
                errs.push(FieldError::invalid_str("metadata.namespace", ns, msg));
            }
        }
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, "metadata.labels", errs);
    }
}

fn validate_labels(labels: &BTreeMap<String, String>, field: &str, errs: &mut Vec<FieldError>) {
    for (key, value) in labels {
        for msg in qualified_name_errors(key) {
            errs.push(FieldError::invalid_str(field, key, msg));
        }
        for msg in label_value_errors(value) {
            errs.push(FieldError::invalid_str(field, value, msg));
        }
    }
}

fn validate_spec(spec: &PodSpec, errs: &mut Vec<FieldError>) {
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            "spec.terminationGracePeriodSeconds",
            "",
        ));
    }
    let grace = spec.termination_grace_period_seconds;
    let volumes = validate_volumes(spec, errs);
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");

    // Regular containers.
    let containers = &spec.containers;
    if containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        validate_container_common(c, &volumes, &path, restart_policy, errs);
        if !names.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(&format!("{path}.name"), &c.name));
        }
        if let Some(lifecycle) = &c.lifecycle {
            validate_lifecycle(lifecycle, grace, &format!("{path}.lifecycle"), errs);
        }
        validate_probes(c, grace, &path, errs);
        validate_container_restart_policy(c, &path, errs);
    }
    check_host_port_conflicts(containers, "spec.containers", errs);

    // Init containers: names unique with the regular ones too.
    let mut all_names: HashSet<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        validate_container_common(c, &volumes, &path, restart_policy, errs);
        validate_init_container_restart_policy(c, &path, errs);
        if all_names.contains(c.name.as_str()) {
            errs.push(FieldError::duplicate(&format!("{path}.name"), &c.name));
        } else if !c.name.is_empty() {
            all_names.insert(c.name.as_str());
        }
        // Init containers run one at a time, so only conflicts within one count.
        check_host_port_conflicts(std::slice::from_ref(c), "spec.initContainers", errs);
        if c.restart_policy.as_deref() == Some("Always") {
            if let Some(lifecycle) = &c.lifecycle {
                validate_lifecycle(lifecycle, grace, &format!("{path}.lifecycle"), errs);
            }
            validate_probes(c, grace, &path, errs);
        } else {
            const WHY: &str = "may not be set for init containers without restartPolicy=Always";
            if c.lifecycle.is_some() {
                errs.push(FieldError::forbidden(&format!("{path}.lifecycle"), WHY));
            }
            for (set, name) in [
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(&format!("{path}.{name}"), WHY));
                }
            }
        }
    }

    // Ephemeral containers: only their names matter here, since ValidatePodCreate
    // forbids the list as a whole.
    for (i, ec) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}].name");
        if ec.name.is_empty() {
            errs.push(FieldError::required(&path, ""));
        } else {
            for msg in dns1123_label_errors(&ec.name) {
                errs.push(FieldError::invalid_str(&path, &ec.name, msg));
            }
        }
        if all_names.contains(ec.name.as_str()) {
            errs.push(FieldError::duplicate(&path, &ec.name));
        } else {
            all_names.insert(ec.name.as_str());
        }
    }

    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required("spec.restartPolicy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.restartPolicy",
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = spec.dns_policy.as_deref().unwrap_or("");
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required("spec.dnsPolicy", "")),
        other => errs.push(FieldError::not_supported(
            "spec.dnsPolicy",
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(selector) = &spec.node_selector {
        validate_labels(selector, "spec.nodeSelector", errs);
    }
    if dns_policy == "None" {
        match &spec.dns_config {
            None => errs.push(FieldError::required(
                "spec.dnsConfig",
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(cfg) if cfg.nameservers.as_ref().is_none_or(Vec::is_empty) => {
                errs.push(FieldError::required(
                    "spec.dnsConfig.nameservers",
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        for msg in dns1123_subdomain_errors(node) {
            errs.push(FieldError::invalid_str("spec.nodeName", node, msg));
        }
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errs.push(FieldError::invalid_num(
            "spec.activeDeadlineSeconds",
            deadline,
            inclusive_range(1, i64::from(i32::MAX)),
        ));
    }
    for (field, value) in [
        ("spec.hostname", &spec.hostname),
        ("spec.subdomain", &spec.subdomain),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            for msg in dns1123_label_errors(v) {
                errs.push(FieldError::invalid_str(field, v, msg));
            }
        }
    }
}

/// Validates `spec.volumes` and returns the names of the valid ones, which volume
/// mounts may refer to.
fn validate_volumes<'a>(spec: &'a PodSpec, errs: &mut Vec<FieldError>) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}].name");
        let before = errs.len();
        if v.name.is_empty() {
            errs.push(FieldError::required(&path, ""));
        } else {
            for msg in dns1123_label_errors(&v.name) {
                errs.push(FieldError::invalid_str(&path, &v.name, msg));
            }
        }
        if names.contains(v.name.as_str()) {
            errs.push(FieldError::duplicate(&path, &v.name));
        }
        if errs.len() == before {
            names.insert(v.name.as_str());
        }
    }
    names
}

fn validate_container_common(
    c: &Container,
    volumes: &HashSet<&str>,
    path: &str,
    pod_restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    let name_path = format!("{path}.name");
    if c.name.is_empty() {
        errs.push(FieldError::required(&name_path, ""));
    } else {
        for msg in dns1123_label_errors(&c.name) {
            errs.push(FieldError::invalid_str(&name_path, &c.name, msg));
        }
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(&format!("{path}.image"), ""));
    }
    let tmp_path = format!("{path}.terminationMessagePolicy");
    match c.termination_message_policy.as_deref().unwrap_or("") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(&tmp_path, "")),
        other => errs.push(FieldError::not_supported(
            &tmp_path,
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_ports(
        c.ports.as_deref().unwrap_or(&[]),
        &format!("{path}.ports"),
        errs,
    );
    validate_env(
        c.env.as_deref().unwrap_or(&[]),
        &format!("{path}.env"),
        errs,
    );
    validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or(&[]),
        volumes,
        &format!("{path}.volumeMounts"),
        errs,
    );
    let pull_path = format!("{path}.imagePullPolicy");
    match c.image_pull_policy.as_deref().unwrap_or("") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(&pull_path, "")),
        other => errs.push(FieldError::not_supported(
            &pull_path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if pod_restart_policy == "Never" {
        for (i, p) in c.resize_policy.iter().flatten().enumerate() {
            if p.restart_policy != "NotRequired" {
                errs.push(FieldError::invalid_str(
                    &format!("{path}.resizePolicy[{i}]"),
                    &p.restart_policy,
                    "must be 'NotRequired' when pod `restartPolicy` is 'Never'",
                ));
            }
        }
    }
}

fn image_whitespace(image: Option<&str>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(image) = image
        && image.len() != image.trim().len()
    {
        errs.push(FieldError::invalid_str(
            &format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
}

fn validate_ports(ports: &[ContainerPort], path: &str, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = port_name_errors(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid_str(&format!("{idx}.name"), name, msg));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&format!("{idx}.name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(&format!("{idx}.containerPort"), ""));
        } else if !(1..=65535).contains(&port.container_port) {
            errs.push(FieldError::invalid_num(
                &format!("{idx}.containerPort"),
                i64::from(port.container_port),
                inclusive_range(1, 65535),
            ));
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0)
            && !(1..=65535).contains(&host_port)
        {
            errs.push(FieldError::invalid_num(
                &format!("{idx}.hostPort"),
                i64::from(host_port),
                inclusive_range(1, 65535),
            ));
        }
        let proto_path = format!("{idx}.protocol");
        match port.protocol.as_deref().unwrap_or("") {
            "TCP" | "UDP" | "SCTP" => {}
            "" => errs.push(FieldError::required(&proto_path, "")),
            other => errs.push(FieldError::not_supported(
                &proto_path,
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
    }
}

fn check_host_port_conflicts(containers: &[Container], path: &str, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                port.protocol.as_deref().unwrap_or(""),
                port.host_ip.as_deref().unwrap_or(""),
                host_port
            );
            if seen.contains(&key) {
                errs.push(FieldError::duplicate(
                    &format!("{path}[{ci}].ports[{pi}].hostPort"),
                    &key,
                ));
            } else {
                seen.insert(key);
            }
        }
    }
}

fn validate_env(env: &[EnvVar], path: &str, errs: &mut Vec<FieldError>) {
    for (i, var) in env.iter().enumerate() {
        let name_path = format!("{path}[{i}].name");
        if var.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else if var
            .name
            .chars()
            .any(|c| !c.is_ascii_graphic() && c != ' ' || c == '=')
        {
            errs.push(FieldError::invalid_str(
                &name_path,
                &var.name,
                "a valid environment variable name must consist only of printable ASCII \
                 characters other than '='",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &HashSet<&str>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        if m.name.is_empty() {
            errs.push(FieldError::required(&format!("{idx}.name"), ""));
        }
        if !volumes.contains(m.name.as_str()) {
            errs.push(FieldError::not_found(&format!("{idx}.name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(&format!("{idx}.mountPath"), ""));
        }
        if !mount_points.insert(m.mount_path.as_str()) {
            errs.push(FieldError::invalid_str(
                &format!("{idx}.mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
        if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            && let Some(expr) = m.sub_path_expr.as_deref().filter(|s| !s.is_empty())
        {
            errs.push(FieldError::invalid_str(
                &format!("{idx}.subPathExpr"),
                expr,
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
    }
}

fn validate_probes(c: &Container, grace: Option<i64>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = &c.liveness_probe {
        let path = format!("{path}.livenessProbe");
        validate_probe(p, grace, &path, errs);
        success_threshold_one(p, &path, errs);
    }
    if let Some(p) = &c.readiness_probe {
        let path = format!("{path}.readinessProbe");
        validate_probe(p, grace, &path, errs);
        if let Some(t) = p.termination_grace_period_seconds {
            errs.push(FieldError::invalid_num(
                &format!("{path}.terminationGracePeriodSeconds"),
                t,
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(p) = &c.startup_probe {
        let path = format!("{path}.startupProbe");
        validate_probe(p, grace, &path, errs);
        success_threshold_one(p, &path, errs);
    }
}

fn success_threshold_one(p: &Probe, path: &str, errs: &mut Vec<FieldError>) {
    let threshold = p.success_threshold.unwrap_or(0);
    if threshold != 1 {
        errs.push(FieldError::invalid_num(
            &format!("{path}.successThreshold"),
            i64::from(threshold),
            "must be 1",
        ));
    }
}

/// The handler types a probe or lifecycle hook may set; exactly one must be.
struct Handler<'a> {
    exec: Option<&'a k8s_openapi::api::core::v1::ExecAction>,
    http_get: Option<&'a k8s_openapi::api::core::v1::HTTPGetAction>,
    tcp_socket: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&'a k8s_openapi::api::core::v1::GRPCAction>,
    sleep: Option<&'a k8s_openapi::api::core::v1::SleepAction>,
}

fn validate_probe(p: &Probe, grace: Option<i64>, path: &str, errs: &mut Vec<FieldError>) {
    let handler = Handler {
        exec: p.exec.as_ref(),
        http_get: p.http_get.as_ref(),
        tcp_socket: p.tcp_socket.as_ref(),
        grpc: p.grpc.as_ref(),
        sleep: None,
    };
    validate_handler(&handler, grace, path, errs);
    for (value, name) in [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ] {
        nonnegative(
            i64::from(value.unwrap_or(0)),
            &format!("{path}.{name}"),
            errs,
        );
    }
    if let Some(t) = p.termination_grace_period_seconds
        && t <= 0
    {
        errs.push(FieldError::invalid_num(
            &format!("{path}.terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
}

fn validate_lifecycle(
    lifecycle: &k8s_openapi::api::core::v1::Lifecycle,
    grace: Option<i64>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let hooks: [(&Option<LifecycleHandler>, &str); 2] = [
        (&lifecycle.post_start, "postStart"),
        (&lifecycle.pre_stop, "preStop"),
    ];
    for (hook, name) in hooks {
        if let Some(h) = hook {
            let handler = Handler {
                exec: h.exec.as_ref(),
                http_get: h.http_get.as_ref(),
                tcp_socket: h.tcp_socket.as_ref(),
                grpc: None,
                sleep: h.sleep.as_ref(),
            };
            validate_handler(&handler, grace, &format!("{path}.{name}"), errs);
        }
    }
}

fn validate_handler(h: &Handler<'_>, grace: Option<i64>, path: &str, errs: &mut Vec<FieldError>) {
    const MORE_THAN_ONE: &str = "may not specify more than 1 handler type";
    let mut count = 0;
    let mut claim = |name: &str, errs: &mut Vec<FieldError>| -> bool {
        count += 1;
        if count > 1 {
            errs.push(FieldError::forbidden(
                &format!("{path}.{name}"),
                MORE_THAN_ONE,
            ));
            false
        } else {
            true
        }
    };
    if let Some(exec) = h.exec
        && claim("exec", errs)
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(&format!("{path}.exec.command"), ""));
    }
    if let Some(http) = h.http_get
        && claim("httpGet", errs)
    {
        let hp = format!("{path}.httpGet");
        if http.path.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(&format!("{hp}.path"), ""));
        }
        port_num_or_name(&http.port, &format!("{hp}.port"), errs);
        let scheme = http.scheme.as_deref().unwrap_or("");
        if scheme != "HTTP" && scheme != "HTTPS" {
            errs.push(FieldError::not_supported(
                &format!("{hp}.scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(tcp) = h.tcp_socket
        && claim("tcpSocket", errs)
    {
        port_num_or_name(&tcp.port, &format!("{path}.tcpSocket.port"), errs);
    }
    if let Some(grpc) = h.grpc
        && claim("grpc", errs)
    {
        port_num_or_name(
            &IntOrString::Int(grpc.port),
            &format!("{path}.grpc.port"),
            errs,
        );
    }
    if let Some(sleep) = h.sleep
        && claim("sleep", errs)
        && let Some(grace) = grace
        && (sleep.seconds < 0 || sleep.seconds > grace)
    {
        errs.push(FieldError::invalid_num(
            &format!("{path}.sleep"),
            sleep.seconds,
            format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

fn port_num_or_name(port: &IntOrString, path: &str, errs: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(n) => {
            if !(1..=65535).contains(n) {
                errs.push(FieldError::invalid_num(
                    path,
                    i64::from(*n),
                    inclusive_range(1, 65535),
                ));
            }
        }
        IntOrString::String(name) => {
            for msg in port_name_errors(name) {
                errs.push(FieldError::invalid_str(path, name, msg));
            }
        }
    }
}

const CONTAINER_RESTART_POLICIES: [&str; 3] = ["Always", "Never", "OnFailure"];

/// Container-level `restartPolicy` and `restartPolicyRules` on regular containers, as
/// v1.37 allows them (feature ContainerRestartRules, beta and on by default).
fn validate_container_restart_policy(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    let rules = c.restart_policy_rules.as_deref().unwrap_or(&[]);
    let policy_path = format!("{path}.restartPolicy");
    match c.restart_policy.as_deref() {
        None if rules.is_empty() => return,
        None => errs.push(FieldError::required(
            &policy_path,
            "must specify restartPolicy when restart rules are used",
        )),
        Some(p) if !CONTAINER_RESTART_POLICIES.contains(&p) => errs.push(
            FieldError::not_supported(&policy_path, p, &CONTAINER_RESTART_POLICIES),
        ),
        Some(_) => {}
    }
    validate_restart_rules(c, path, errs);
}

fn validate_restart_rules(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    let rules = c.restart_policy_rules.as_deref().unwrap_or(&[]);
    if rules.len() > 20 {
        errs.push(FieldError::new(
            &format!("{path}.restartPolicyRules"),
            FieldErrorKind::TooMany(rules.len()),
            "must have at most 20 items",
        ));
    }
    // RestartAllContainersOnContainerExits is beta and on by default in v1.37.
    const ACTIONS: [&str; 2] = ["RestartAllContainers", "Restart"];
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}.restartPolicyRules[{i}]");
        if !ACTIONS.contains(&rule.action.as_str()) {
            errs.push(FieldError::not_supported(
                &format!("{rule_path}.action"),
                &rule.action,
                &["Restart", "RestartAllContainers"],
            ));
        }
        match &rule.exit_codes {
            Some(codes) => {
                if codes.operator != "In" && codes.operator != "NotIn" {
                    errs.push(FieldError::not_supported(
                        &format!("{rule_path}.exitCodes.operator"),
                        &codes.operator,
                        &["In", "NotIn"],
                    ));
                }
                let n = codes.values.as_ref().map_or(0, Vec::len);
                if n > 255 {
                    errs.push(FieldError::new(
                        &format!("{rule_path}.exitCodes.values"),
                        FieldErrorKind::TooMany(n),
                        "must have at most 255 items",
                    ));
                }
            }
            None => errs.push(FieldError::required(
                &format!("{rule_path}.exitCodes"),
                "must be specified",
            )),
        }
    }
}

/// Init containers: `restartPolicy: Always` makes a sidecar; with ContainerRestartRules
/// on (v1.37 default) `Never` and `OnFailure` are accepted too.
fn validate_init_container_restart_policy(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    let rules = c.restart_policy_rules.as_deref().unwrap_or(&[]);
    match c.restart_policy.as_deref() {
        None => {
            if !rules.is_empty() {
                errs.push(FieldError::required(
                    &format!("{path}.restartPolicy"),
                    "must specify restartPolicy when restart rules are used",
                ));
            }
        }
        Some(_) => validate_container_restart_policy(c, path, errs),
    }
}

fn nonnegative(value: i64, field: &str, errs: &mut Vec<FieldError>) {
    if value < 0 {
        errs.push(FieldError::invalid_num(
            field,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream `IsValidPortName`.
fn port_name_errors(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    let b = port.as_bytes();
    if b.is_empty()
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// The API kinds a static pod must not reference (upstream `HasAPIObjectReference`):
/// the kubelet has no API server to fetch them from in standalone mode, and a mirror
/// pod could not be created for them. Returns the resource named in upstream's
/// message (`static pods may not reference <resource>`).
pub(crate) fn api_object_reference(spec: &PodSpec) -> Option<&'static str> {
    if spec
        .service_account_name
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Some("serviceaccounts");
    }
    if references_secrets(spec) {
        return Some("secrets");
    }
    if references_config_maps(spec) {
        return Some("configmaps");
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("resourceclaims");
    }
    for v in spec.volumes.iter().flatten() {
        if v.config_map.is_some() {
            return Some("configmaps (via configmap volumes)");
        }
        if v.secret.is_some() {
            return Some("secrets (via secret volumes)");
        }
        if v.csi.is_some() {
            return Some("csidrivers (via CSI volumes)");
        }
        if v.glusterfs.is_some() {
            return Some("endpoints (via glusterFS volumes)");
        }
        if v.persistent_volume_claim.is_some() {
            return Some("persistentvolumeclaims");
        }
        if v.ephemeral.is_some() {
            return Some("persistentvolumeclaims (via ephemeral volumes)");
        }
        if v.azure_file.is_some() {
            return Some("secrets (via azureFile volumes)");
        }
        if let Some(projected) = &v.projected {
            for s in projected.sources.iter().flatten() {
                if s.config_map.is_some() {
                    return Some("configmaps (via projected volumes)");
                }
                if s.secret.is_some() {
                    return Some("secrets (via projected volumes)");
                }
                if s.service_account_token.is_some() {
                    return Some("serviceaccounts (via projected volumes)");
                }
                if s.cluster_trust_bundle.is_some() {
                    return Some("clustertrustbundles");
                }
                if s.pod_certificate.is_some() {
                    return Some("podcertificates");
                }
            }
        }
    }
    None
}

/// Environment references of every container kind (init, regular, ephemeral).
fn env_references(spec: &PodSpec, secret: bool) -> bool {
    let check = |env: Option<&Vec<EnvVar>>, env_from: Option<&Vec<EnvFromSource>>| {
        env_from.into_iter().flatten().any(|e| {
            if secret {
                e.secret_ref.is_some()
            } else {
                e.config_map_ref.is_some()
            }
        }) || env.into_iter().flatten().any(|e| {
            e.value_from.as_ref().is_some_and(|v| {
                if secret {
                    v.secret_key_ref.is_some()
                } else {
                    v.config_map_key_ref.is_some()
                }
            })
        })
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .any(|c| check(c.env.as_ref(), c.env_from.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| check(c.env.as_ref(), c.env_from.as_ref()))
}

/// Upstream `VisitPodSecretNames`: image pull secrets, env and envFrom references, and
/// the volume types whose data or credentials live in a Secret.
fn references_secrets(spec: &PodSpec) -> bool {
    if spec
        .image_pull_secrets
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return true;
    }
    env_references(spec, true)
        || spec.volumes.iter().flatten().any(|v| {
            v.secret.is_some()
                || v.azure_file
                    .as_ref()
                    .is_some_and(|s| !s.secret_name.is_empty())
                || v.cephfs.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.cinder.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.flex_volume
                    .as_ref()
                    .is_some_and(|s| s.secret_ref.is_some())
                || v.rbd.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.iscsi.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.storageos.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.scale_io.is_some()
                || v.csi
                    .as_ref()
                    .is_some_and(|s| s.node_publish_secret_ref.is_some())
                || v.projected
                    .as_ref()
                    .is_some_and(|p| p.sources.iter().flatten().any(|s| s.secret.is_some()))
        })
}

/// Upstream `VisitPodConfigmapNames`: env and envFrom references, configMap volumes
/// and projected configMap sources.
fn references_config_maps(spec: &PodSpec) -> bool {
    env_references(spec, false)
        || spec.volumes.iter().flatten().any(|v| {
            v.config_map.is_some()
                || v.projected
                    .as_ref()
                    .is_some_and(|p| p.sources.iter().flatten().any(|s| s.config_map.is_some()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::apply_api_defaults;

    /// Validates a manifest after API defaulting and with the metadata a static pod gets,
    /// and returns the messages.
    fn check(yaml: &str) -> Vec<String> {
        let mut pod: Pod = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        apply_api_defaults(&mut pod);
        pod.metadata
            .namespace
            .get_or_insert_with(|| "default".to_owned());
        validate_pod(&pod).iter().map(ToString::to_string).collect()
    }

    const OK: &str = "metadata: {name: ok}\nspec:\n  containers: [{name: c, image: busybox}]\n";

    #[test]
    fn a_minimal_pod_is_valid() {
        assert_eq!(check(OK), Vec::<String>::new());
    }

    #[test]
    fn metadata_names() {
        assert_eq!(
            check(
                "metadata: {name: Web_1, namespace: kube.system}\nspec:\n  containers: [{name: c, image: i}]\n"
            ),
            vec![
                "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.', and must start and \
                 end with an alphanumeric character (e.g. 'example.com', regex used for \
                 validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "metadata.namespace: Invalid value: \"kube.system\": must not contain dots",
            ]
        );
        assert_eq!(
            check("metadata: {}\nspec:\n  containers: [{name: c, image: i}]\n"),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let long = "a".repeat(254);
        let errs = check(&format!(
            "metadata: {{name: {long}}}\nspec:\n  containers: [{{name: c, image: i}}]\n"
        ));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].ends_with(": must be no more than 253 characters"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn labels() {
        let errs = check(
            "metadata:\n  name: l\n  labels: {\"-bad\": ok, good: \"not ok!\"}\nspec:\n  containers: [{name: c, image: i}]\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters"), "{}", errs[0]);
        assert!(
            errs[1].starts_with(
                "metadata.labels: Invalid value: \"not ok!\": a valid label must be an empty string"
            ),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn containers_are_required_and_named_uniquely() {
        assert_eq!(
            check("metadata: {name: p}\nspec: {}\n"),
            vec!["spec.containers: Required value"]
        );
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  initContainers: [{name: app, image: i}, {name: Init, image: i}]\n  containers: [{name: app, image: i}, {name: app, image: i}, {name: x}]\n"
            ),
            vec![
                "spec.containers[1].name: Duplicate value: \"app\"",
                "spec.containers[2].image: Required value",
                "spec.initContainers[0].name: Duplicate value: \"app\"",
                "spec.initContainers[1].name: Invalid value: \"Init\": a lowercase RFC 1123 \
                 label must consist of lower case alphanumeric characters or '-', and must \
                 start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', \
                 regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ]
        );
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n  ephemeralContainers: [{name: c, image: i}]\n"
            ),
            vec![
                "spec.ephemeralContainers[0].name: Duplicate value: \"c\"",
                "spec.ephemeralContainers: Forbidden: cannot be set on create",
            ]
        );
    }

    #[test]
    fn policies() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  restartPolicy: Sometimes\n  dnsPolicy: Cluster\n  containers: [{name: c, image: i, imagePullPolicy: Maybe, terminationMessagePolicy: Log}]\n"
            ),
            vec![
                "spec.containers[0].terminationMessagePolicy: Unsupported value: \"Log\": \
                 supported values: \"File\", \"FallbackToLogsOnError\"",
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported \
                 values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \
                 \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \
                 \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  dnsPolicy: None\n  containers: [{name: c, image: i}]\n"
            ),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
            ]
        );
    }

    #[test]
    fn ports() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    ports:\n    - {containerPort: 70000, hostPort: -1}\n    - {containerPort: 0, name: http, protocol: ICMP}\n    - {containerPort: 81, name: http, hostPort: 8080}\n  - name: d\n    image: i\n    ports:\n    - {containerPort: 82, hostPort: 8080}\n"
            ),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be \
                 between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 \
                 and 65535, inclusive",
                "spec.containers[0].ports[1].containerPort: Required value",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported \
                 values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
                "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"",
            ]
        );
    }

    #[test]
    fn init_container_restart_policy_and_probes() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  initContainers:\n  - {name: sidecar, image: i, restartPolicy: Always, readinessProbe: {exec: {command: [\"true\"]}}}\n  - {name: once, image: i, restartPolicy: Sometimes}\n  - {name: plain, image: i, livenessProbe: {exec: {command: [\"true\"]}}}\n  containers: [{name: c, image: i}]\n"
            ),
            vec![
                "spec.initContainers[1].restartPolicy: Unsupported value: \"Sometimes\": \
                 supported values: \"Always\", \"Never\", \"OnFailure\"",
                "spec.initContainers[2].livenessProbe: Forbidden: may not be set for init \
                 containers without restartPolicy=Always",
            ]
        );
    }

    #[test]
    fn probes() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    livenessProbe: {successThreshold: 2, periodSeconds: -1}\n    readinessProbe: {httpGet: {port: 0, scheme: FTP}, tcpSocket: {port: 80}, terminationGracePeriodSeconds: 5}\n    startupProbe: {exec: {}}\n"
            ),
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be \
                 greater than or equal to 0",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be \
                 between 1 and 65535, inclusive",
                "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\": \
                 supported values: \"HTTP\", \"HTTPS\"",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more \
                 than 1 handler type",
                "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid \
                 value: 5: must not be set for readinessProbes",
                "spec.containers[0].startupProbe.exec.command: Required value",
            ]
        );
    }

    #[test]
    fn volumes_and_mounts() {
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  volumes: [{name: data}, {name: data}, {name: Logs}]\n  containers:\n  - name: c\n    image: i\n    volumeMounts: [{name: data, mountPath: /d}, {name: missing, mountPath: /d}]\n"
            ),
            vec![
                "spec.volumes[1].name: Duplicate value: \"data\"",
                "spec.volumes[2].name: Invalid value: \"Logs\": a lowercase RFC 1123 label \
                 must consist of lower case alphanumeric characters or '-', and must start and \
                 end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used \
                 for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be \
                 unique",
            ]
        );
    }

    #[test]
    fn grace_period_and_deadline() {
        // A negative grace period is raised to 1 by defaulting, as upstream.
        assert_eq!(
            check(
                "metadata: {name: p}\nspec:\n  terminationGracePeriodSeconds: -5\n  activeDeadlineSeconds: 0\n  containers: [{name: c, image: \" i\"}]\n"
            ),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and \
                 2147483647, inclusive",
                "spec.containers[0].image: Invalid value: \" i\": must not have leading or \
                 trailing whitespace",
            ]
        );
        let mut pod: Pod = serde_yaml::from_str(OK).unwrap_or_else(|e| panic!("{e}"));
        apply_api_defaults(&mut pod);
        pod.metadata.namespace = Some("default".into());
        if let Some(spec) = pod.spec.as_mut() {
            spec.termination_grace_period_seconds = Some(-1);
        }
        assert_eq!(
            validate_pod(&pod)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than \
                 or equal to 0"
            ]
        );
    }

    #[test]
    fn error_list_format() {
        let errs = vec![
            FieldError::required("a", ""),
            FieldError::forbidden("b", "no"),
        ];
        assert_eq!(
            format_field_errors(&errs),
            "[a: Required value, b: Forbidden: no]"
        );
    }

    #[test]
    fn api_object_references() {
        let spec = |yaml: &str| -> PodSpec {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let base = "containers: [{name: c, image: i}]\n";
        assert_eq!(api_object_reference(&spec(base)), None);
        for (extra, want) in [
            ("serviceAccountName: default\n", "serviceaccounts"),
            ("imagePullSecrets: [{name: regcred}]\n", "secrets"),
            ("volumes: [{name: s, secret: {secretName: s}}]\n", "secrets"),
            ("volumes: [{name: c, configMap: {name: c}}]\n", "configmaps"),
            (
                "volumes: [{name: p, persistentVolumeClaim: {claimName: p}}]\n",
                "persistentvolumeclaims",
            ),
            (
                "volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: t}}]}}]\n",
                "serviceaccounts (via projected volumes)",
            ),
            (
                "volumes: [{name: x, csi: {driver: d}}]\n",
                "csidrivers (via CSI volumes)",
            ),
        ] {
            assert_eq!(
                api_object_reference(&spec(&format!("{base}{extra}"))),
                Some(want),
                "{extra}"
            );
        }
        let env = "containers: [{name: c, image: i, env: [{name: X, valueFrom: {configMapKeyRef: {name: m, key: k}}}]}]\n";
        assert_eq!(api_object_reference(&spec(env)), Some("configmaps"));
        let host = "containers: [{name: c, image: i}]\nvolumes: [{name: h, hostPath: {path: /etc}}, {name: e, emptyDir: {}}]\n";
        assert_eq!(api_object_reference(&spec(host)), None);
    }
}
