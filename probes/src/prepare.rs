//! Resolving what the prober cannot see: named ports and `$(VAR)` references in exec
//! commands, both of which need the container's spec.

use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet_core::{Error, Result};

/// Resolves a probe port against the container's ports, as upstream's
/// `ResolveContainerPort`: a number is taken as is, a name is looked up in `ports`.
///
/// Errors as upstream: `port "http" not found`, `invalid port number: 0`.
pub fn resolve_port(
    ports: &[ContainerPort],
    port: &IntOrString,
) -> std::result::Result<u16, String> {
    match port {
        IntOrString::Int(n) => check_port(*n),
        IntOrString::String(name) => match ports.iter().find(|p| p.name.as_deref() == Some(name)) {
            Some(p) => check_port(p.container_port),
            None => Err(format!("port {name:?} not found")),
        },
    }
}

pub(crate) fn check_port(n: i32) -> std::result::Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port number: {n}")),
    }
}

/// Returns a copy of `probe` ready for [`KubeletProber`](crate::KubeletProber): named
/// httpGet and tcpSocket ports replaced by the container's port numbers, and `$(VAR)`
/// references in an exec command expanded from the container's literal `env` values
/// (upstream `ExpandContainerCommandOnlyStatic`: no valueFrom, no pod environment).
///
/// A port that cannot be resolved is an [`Error::Probe`] naming the container; upstream
/// finds the same error on every attempt and discards those attempts.
pub fn prepare_probe(probe: &Probe, container: &Container) -> Result<Probe> {
    let ports = container.ports.as_deref().unwrap_or_default();
    let mut probe = probe.clone();
    let resolve = |port: &mut IntOrString| -> Result<()> {
        let n = resolve_port(ports, port).map_err(|reason| Error::Probe {
            container: container.name.clone(),
            reason,
        })?;
        *port = IntOrString::Int(i32::from(n));
        Ok(())
    };
    if let Some(action) = probe.http_get.as_mut() {
        resolve(&mut action.port)?;
    }
    if let Some(action) = probe.tcp_socket.as_mut() {
        resolve(&mut action.port)?;
    }
    if let Some(command) = probe.exec.as_mut().and_then(|e| e.command.as_mut()) {
        let env: Vec<(&str, &str)> = container
            .env
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|e| e.value_from.is_none())
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect();
        for arg in command.iter_mut() {
            *arg = expand(arg, &env);
        }
    }
    Ok(probe)
}

/// Upstream `expansion.Expand` with a static mapping: `$(VAR)` becomes the value of
/// `VAR` when defined and stays as written otherwise; `$$` is an escaped `$`.
fn expand(input: &str, env: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    // Last definition wins, as upstream builds a map from the list.
                    match env.iter().rev().find(|(k, _)| *k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, ExecAction, TCPSocketAction};

    fn port(name: &str, n: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.to_owned()),
            container_port: n,
            ..Default::default()
        }
    }

    #[test]
    fn resolves_numbers_and_names_like_upstream() {
        let ports = [port("http", 8080), port("metrics", 9090)];
        assert_eq!(resolve_port(&ports, &IntOrString::Int(80)), Ok(80));
        assert_eq!(
            resolve_port(&ports, &IntOrString::String("metrics".into())),
            Ok(9090)
        );
        assert_eq!(
            resolve_port(&ports, &IntOrString::String("grpc".into())),
            Err("port \"grpc\" not found".to_owned())
        );
        assert_eq!(
            resolve_port(&ports, &IntOrString::Int(0)),
            Err("invalid port number: 0".to_owned())
        );
        assert_eq!(
            resolve_port(&ports, &IntOrString::Int(65536)),
            Err("invalid port number: 65536".to_owned())
        );
    }

    #[test]
    fn prepare_resolves_named_port_and_expands_static_env() {
        let container = Container {
            name: "app".into(),
            ports: Some(vec![port("probe", 7000)]),
            env: Some(vec![EnvVar {
                name: "FILE".into(),
                value: Some("/tmp/healthy".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("probe".into()),
                ..Default::default()
            }),
            exec: Some(ExecAction {
                command: Some(vec!["cat".into(), "$(FILE)".into(), "$(NOPE)$$x".into()]),
            }),
            ..Default::default()
        };
        let prepared = prepare_probe(&probe, &container).expect("prepares");
        assert_eq!(
            prepared.tcp_socket.map(|t| t.port),
            Some(IntOrString::Int(7000))
        );
        assert_eq!(
            prepared.exec.and_then(|e| e.command),
            Some(vec![
                "cat".into(),
                "/tmp/healthy".into(),
                "$(NOPE)$x".into()
            ])
        );
    }

    #[test]
    fn prepare_names_the_container_when_a_port_is_missing() {
        let container = Container {
            name: "app".into(),
            ..Default::default()
        };
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("web".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = prepare_probe(&probe, &container).expect_err("missing port");
        assert_eq!(
            err.to_string(),
            "probe of container \"app\": port \"web\" not found"
        );
    }
}
