//! The rest of upstream's command line: the deprecated flags that set a configuration
//! field (`--event-qps`, `--cgroups-per-qos`, ... "should be set via the config file"),
//! and the few flags with no configuration field. A kubeadm or distribution unit passing
//! them must not stop the kubelet with "unexpected argument": they are taken out of the
//! command line before it is parsed, the field flags become a JSON merge patch over the
//! configuration (flags override the file, as upstream), and every one given is reported
//! (upstream's deprecation warning, or what this kubelet does not do with it).

use std::ffi::OsString;

use serde_json::{Map, Value, json};

/// How a flag's value is written into the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--flag`, `--flag=true|false`.
    Bool,
    /// A decimal number.
    Int,
    /// A string (durations and quantities are strings in the file too).
    Str,
    /// `key=value,key=value`.
    Map,
}

/// Where a flag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// This field of the configuration (a path of JSON names).
    Field(&'static [&'static str]),
    /// Nowhere: this kubelet does not act on it; the text says what happens instead.
    Ignored(&'static str),
}

use Kind::{Bool, Int, Map as KvMap, Str};
use Target::{Field, Ignored};

/// Upstream's flags (k8s.io/kubernetes v1.37.2 cmd/kubelet/app/options) that the typed
/// command line does not declare.
const FLAGS: [(&str, Kind, Target); 58] = [
    (
        "authentication-token-webhook-cache-ttl",
        Str,
        Field(&["authentication", "webhook", "cacheTTL"]),
    ),
    (
        "authorization-webhook-cache-authorized-ttl",
        Str,
        Field(&["authorization", "webhook", "cacheAuthorizedTTL"]),
    ),
    (
        "authorization-webhook-cache-unauthorized-ttl",
        Str,
        Field(&["authorization", "webhook", "cacheUnauthorizedTTL"]),
    ),
    ("cgroups-per-qos", Bool, Field(&["cgroupsPerQOS"])),
    (
        "contention-profiling",
        Bool,
        Field(&["enableContentionProfiling"]),
    ),
    ("cpu-cfs-quota", Bool, Field(&["cpuCFSQuota"])),
    ("cpu-cfs-quota-period", Str, Field(&["cpuCFSQuotaPeriod"])),
    ("cpu-manager-policy", Str, Field(&["cpuManagerPolicy"])),
    (
        "cpu-manager-policy-options",
        KvMap,
        Field(&["cpuManagerPolicyOptions"]),
    ),
    (
        "cpu-manager-reconcile-period",
        Str,
        Field(&["cpuManagerReconcilePeriod"]),
    ),
    (
        "enable-controller-attach-detach",
        Bool,
        Field(&["enableControllerAttachDetach"]),
    ),
    (
        "enable-debugging-handlers",
        Bool,
        Field(&["enableDebuggingHandlers"]),
    ),
    ("enable-server", Bool, Field(&["enableServer"])),
    ("event-burst", Int, Field(&["eventBurst"])),
    ("event-qps", Int, Field(&["eventRecordQPS"])),
    ("hairpin-mode", Str, Field(&["hairpinMode"])),
    (
        "image-gc-high-threshold",
        Int,
        Field(&["imageGCHighThresholdPercent"]),
    ),
    (
        "image-gc-low-threshold",
        Int,
        Field(&["imageGCLowThresholdPercent"]),
    ),
    (
        "kernel-memcg-notification",
        Bool,
        Field(&["kernelMemcgNotification"]),
    ),
    ("kube-api-burst", Int, Field(&["kubeAPIBurst"])),
    ("kube-api-content-type", Str, Field(&["contentType"])),
    ("kube-api-qps", Int, Field(&["kubeAPIQPS"])),
    ("kube-reserved-cgroup", Str, Field(&["kubeReservedCgroup"])),
    (
        "local-storage-capacity-isolation",
        Bool,
        Field(&["localStorageCapacityIsolation"]),
    ),
    (
        "log-text-info-buffer-size",
        Str,
        Field(&["logging", "options", "text", "infoBufferSize"]),
    ),
    (
        "log-text-split-stream",
        Bool,
        Field(&["logging", "options", "text", "splitStream"]),
    ),
    ("logging-format", Str, Field(&["logging", "format"])),
    (
        "make-iptables-util-chains",
        Bool,
        Field(&["makeIPTablesUtilChains"]),
    ),
    (
        "memory-manager-policy",
        Str,
        Field(&["memoryManagerPolicy"]),
    ),
    (
        "node-status-max-images",
        Int,
        Field(&["nodeStatusMaxImages"]),
    ),
    ("pod-cidr", Str, Field(&["podCIDR"])),
    ("pod-max-pids", Int, Field(&["podPidsLimit"])),
    (
        "protect-kernel-defaults",
        Bool,
        Field(&["protectKernelDefaults"]),
    ),
    ("provider-id", Str, Field(&["providerID"])),
    ("qos-reserved", KvMap, Field(&["qosReserved"])),
    ("registry-burst", Int, Field(&["registryBurst"])),
    ("registry-qps", Int, Field(&["registryPullQPS"])),
    ("reserved-cpus", Str, Field(&["reservedSystemCPUs"])),
    (
        "rotate-server-certificates",
        Bool,
        Field(&["serverTLSBootstrap"]),
    ),
    ("runonce", Bool, Field(&["runOnce"])),
    (
        "serialize-image-pulls",
        Bool,
        Field(&["serializeImagePulls"]),
    ),
    (
        "streaming-connection-idle-timeout",
        Str,
        Field(&["streamingConnectionIdleTimeout"]),
    ),
    (
        "system-reserved-cgroup",
        Str,
        Field(&["systemReservedCgroup"]),
    ),
    (
        "topology-manager-policy",
        Str,
        Field(&["topologyManagerPolicy"]),
    ),
    (
        "topology-manager-policy-options",
        KvMap,
        Field(&["topologyManagerPolicyOptions"]),
    ),
    (
        "topology-manager-scope",
        Str,
        Field(&["topologyManagerScope"]),
    ),
    ("volume-plugin-dir", Str, Field(&["volumePluginDir"])),
    (
        "volume-stats-agg-period",
        Str,
        Field(&["volumeStatsAggPeriod"]),
    ),
    (
        "reserved-memory",
        Str,
        Ignored("there is no memory manager"),
    ),
    (
        "cloud-provider",
        Str,
        Ignored(
            "no cloud provider integration: the node is not tainted uninitialized for an external one",
        ),
    ),
    (
        "exit-on-lock-contention",
        Bool,
        Ignored("no lock file is taken"),
    ),
    ("lock-file", Str, Ignored("no lock file is taken")),
    (
        "housekeeping-interval",
        Str,
        Ignored("stats are read when asked for, there is no cAdvisor housekeeping"),
    ),
    (
        "experimental-mounter-path",
        Str,
        Ignored("mounts use the mount system call"),
    ),
    (
        "experimental-allocatable-ignore-eviction",
        Bool,
        Ignored("allocatable always leaves out the hard eviction thresholds"),
    ),
    (
        "minimum-image-ttl-duration",
        Str,
        Ignored("imageMinimumGCAge decides"),
    ),
    (
        "log-flush-frequency",
        Str,
        Ignored("logs are written unbuffered"),
    ),
    ("vmodule", Str, Ignored("verbosity is one level (-v)")),
];

/// The flags of [`FLAGS`] found on a command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MoreFlags {
    /// The configuration fields they set, as a JSON merge patch.
    pub patch: Map<String, Value>,
    /// One start-up warning per flag given.
    pub notes: Vec<String>,
}

impl MoreFlags {
    /// Takes the flags of [`FLAGS`] out of `args` (the program name first); the rest of
    /// the command line and what was taken.
    pub fn split(args: Vec<OsString>) -> Result<(Vec<OsString>, Self), String> {
        let mut rest = Vec::with_capacity(args.len());
        let mut more = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str() else {
                rest.push(arg);
                continue;
            };
            if text == "--" {
                rest.push(arg);
                rest.extend(args.by_ref());
                break;
            }
            let Some(flag) = text.strip_prefix("--") else {
                rest.push(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (flag, None),
            };
            let Some((name, kind, target)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
                rest.push(arg);
                continue;
            };
            let value = match (inline, kind) {
                (Some(value), _) => value,
                (None, Bool) => "true".to_owned(),
                (None, _) => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("flag needs an argument: --{name}"))?,
            };
            more.take(name, *kind, *target, &value)?;
        }
        Ok((rest, more))
    }

    fn take(&mut self, name: &str, kind: Kind, target: Target, value: &str) -> Result<(), String> {
        let invalid =
            |why: String| format!("invalid argument {value:?} for \"--{name}\" flag: {why}");
        let json = match kind {
            Bool => {
                json!(super::parse_go_bool(value).ok_or_else(|| invalid("not a boolean".into()))?)
            }
            Int => json!(value.parse::<i64>().map_err(|e| invalid(e.to_string()))?),
            Str => json!(value),
            KvMap => {
                let mut map = Map::new();
                for pair in value.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        invalid(format!("{pair:?} must be formatted as key=value"))
                    })?;
                    map.insert(k.trim().to_owned(), json!(v.trim()));
                }
                Value::Object(map)
            }
        };
        match target {
            Field(path) => {
                let mut node = &mut self.patch;
                let (last, parents) = path
                    .split_last()
                    .ok_or_else(|| invalid("no field".into()))?;
                for parent in parents {
                    let entry = node
                        .entry((*parent).to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    let Value::Object(next) = entry else {
                        return Err(invalid("no field".into()));
                    };
                    node = next;
                }
                node.insert((*last).to_owned(), json);
                self.notes.push(format!(
                    "Flag --{name} has been deprecated, This parameter should be set via the \
                     config file specified by the Kubelet's --config flag. See \
                     https://kubernetes.io/docs/tasks/administer-cluster/kubelet-config-file/ \
                     for more information."
                ));
            }
            Ignored(instead) => {
                // An empty cloud provider is upstream's default: nothing to say.
                if !(name == "cloud-provider" && value.is_empty()) {
                    self.notes.push(format!(
                        "--{name} is not supported and is ignored ({value:?}): {instead}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(args: &[&str]) -> Result<(Vec<String>, MoreFlags), String> {
        let args = args.iter().map(OsString::from).collect();
        MoreFlags::split(args).map(|(rest, more)| {
            (
                rest.into_iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                more,
            )
        })
    }

    #[test]
    fn field_flags_become_a_patch_and_the_rest_stays() {
        let (rest, more) = split(&[
            "kubelet",
            "--config",
            "c.yaml",
            "--event-qps=7",
            "--cgroups-per-qos",
            "--serialize-image-pulls=false",
            "--authentication-token-webhook-cache-ttl",
            "30s",
            "--qos-reserved=memory=50%",
            "-v",
            "2",
        ])
        .expect("split");
        assert_eq!(rest, ["kubelet", "--config", "c.yaml", "-v", "2"]);
        assert_eq!(
            Value::Object(more.patch),
            json!({
                "eventRecordQPS": 7,
                "cgroupsPerQOS": true,
                "serializeImagePulls": false,
                "authentication": {"webhook": {"cacheTTL": "30s"}},
                "qosReserved": {"memory": "50%"},
            })
        );
        assert_eq!(more.notes.len(), 5);
        assert!(more.notes[0].starts_with("Flag --event-qps has been deprecated"));
    }

    #[test]
    fn ignored_flags_are_reported_and_bad_values_refused() {
        let (_, more) =
            split(&["kubelet", "--cloud-provider=external", "--cloud-provider="]).expect("split");
        assert_eq!(more.notes.len(), 1, "{:?}", more.notes);
        assert!(more.notes[0].contains("--cloud-provider is not supported"));
        assert!(split(&["kubelet", "--event-qps=lots"]).is_err());
        assert!(
            split(&["kubelet", "--pod-cidr"]).is_err(),
            "a value is needed"
        );
        // After `--` nothing is a flag.
        let (rest, more) = split(&["kubelet", "--", "--event-qps=1"]).expect("split");
        assert_eq!(rest.len(), 3);
        assert!(more.patch.is_empty());
    }

    #[test]
    fn every_target_field_is_a_configuration_field() {
        for (name, kind, target) in FLAGS {
            let Field(path) = target else { continue };
            let value = match kind {
                Bool => "true",
                Int => "1",
                Str => "1m0s",
                KvMap => "a=b",
            };
            let mut more = MoreFlags::default();
            more.take(name, kind, target, value).expect("value");
            let mut base =
                serde_json::to_value(kubelet_core::config::KubeletConfiguration::defaulted())
                    .expect("json");
            super::super::load::merge_patch(&mut base, Value::Object(more.patch));
            let decoded = super::super::load::decode(base);
            // A value of the wrong kind for a field is a decode error naming it; an
            // unknown field would be "unknown field".
            if let Err(e) = decoded {
                assert_ne!(e.reason, "unknown field", "--{name} -> {path:?}");
            }
        }
    }
}
