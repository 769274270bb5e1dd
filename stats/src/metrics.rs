//! `/metrics/resource`: upstream's resource metrics collector in the Prometheus text
//! format 0.0.4, written as client_golang writes it (families sorted by name, samples
//! by label values, floats as Go's `strconv.FormatFloat(v, 'g', -1, 64)`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubelet_core::metrics::number;

use crate::summary::{ContainerStats, PodStats, Summary};
use crate::time::Time;

/// Content type of the text this module writes.
pub const CONTENT_TYPE: &str = kubelet_core::metrics::TEXT_CONTENT_TYPE;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

struct Desc {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

const NODE_CPU: Desc = Desc {
    name: "node_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
    kind: Kind::Counter,
};
const NODE_MEMORY: Desc = Desc {
    name: "node_memory_working_set_bytes",
    help: "[STABLE] Current working set of the node in bytes",
    kind: Kind::Gauge,
};
const NODE_SWAP: Desc = Desc {
    name: "node_swap_usage_bytes",
    help: "[ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems",
    kind: Kind::Gauge,
};
const CONTAINER_CPU: Desc = Desc {
    name: "container_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
    kind: Kind::Counter,
};
const CONTAINER_MEMORY: Desc = Desc {
    name: "container_memory_working_set_bytes",
    help: "[STABLE] Current working set of the container in bytes",
    kind: Kind::Gauge,
};
const CONTAINER_SWAP: Desc = Desc {
    name: "container_swap_usage_bytes",
    help: "[ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems",
    kind: Kind::Gauge,
};
const CONTAINER_SWAP_LIMIT: Desc = Desc {
    name: "container_swap_limit_bytes",
    help: "[ALPHA] Current amount of the container swap limit in bytes. Reported only on non-windows systems",
    kind: Kind::Gauge,
};
const CONTAINER_START: Desc = Desc {
    name: "container_start_time_seconds",
    help: "[STABLE] Start time of the container since unix epoch in seconds",
    kind: Kind::Gauge,
};
const POD_CPU: Desc = Desc {
    name: "pod_cpu_usage_seconds_total",
    help: "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
    kind: Kind::Counter,
};
const POD_MEMORY: Desc = Desc {
    name: "pod_memory_working_set_bytes",
    help: "[STABLE] Current working set of the pod in bytes",
    kind: Kind::Gauge,
};
const POD_SWAP: Desc = Desc {
    name: "pod_swap_usage_bytes",
    help: "[ALPHA] Current amount of the pod swap usage in bytes. Reported only on non-windows systems",
    kind: Kind::Gauge,
};
const SCRAPE_ERROR: Desc = Desc {
    name: "resource_scrape_error",
    help: "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
    kind: Kind::Gauge,
};

struct Sample {
    /// Label pairs sorted by name.
    labels: Vec<(&'static str, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

#[derive(Default)]
struct Families<'a> {
    by_name: BTreeMap<&'static str, (&'a Desc, Vec<Sample>)>,
}

impl<'a> Families<'a> {
    fn add(
        &mut self,
        desc: &'a Desc,
        labels: Vec<(&'static str, String)>,
        value: f64,
        time: Option<Time>,
    ) {
        let mut labels = labels;
        labels.sort_by(|a, b| a.0.cmp(b.0));
        self.by_name
            .entry(desc.name)
            .or_insert_with(|| (desc, Vec::new()))
            .1
            .push(Sample {
                labels,
                value,
                timestamp_ms: time.map(Time::unix_millis),
            });
    }

    fn render(mut self) -> String {
        let mut out = String::new();
        for (desc, samples) in self.by_name.values_mut() {
            samples.sort_by(|a, b| {
                let la = a.labels.iter().map(|l| l.1.as_str());
                let lb = b.labels.iter().map(|l| l.1.as_str());
                la.cmp(lb).then(a.timestamp_ms.cmp(&b.timestamp_ms))
            });
            let _ = writeln!(out, "# HELP {} {}", desc.name, escape_help(desc.help));
            let kind = match desc.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {} {kind}", desc.name);
            for sample in samples.iter() {
                out.push_str(desc.name);
                if !sample.labels.is_empty() {
                    out.push('{');
                    for (i, (name, value)) in sample.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&number(sample.value));
                if let Some(ts) = sample.timestamp_ms {
                    let _ = write!(out, " {ts}");
                }
                out.push('\n');
            }
        }
        out
    }
}

fn container_labels(pod: &PodStats, c: &ContainerStats) -> Vec<(&'static str, String)> {
    vec![
        ("container", c.name.clone()),
        ("pod", pod.pod_ref.name.clone()),
        ("namespace", pod.pod_ref.namespace.clone()),
    ]
}

fn pod_labels(pod: &PodStats) -> Vec<(&'static str, String)> {
    vec![
        ("pod", pod.pod_ref.name.clone()),
        ("namespace", pod.pod_ref.namespace.clone()),
    ]
}

const NANOS_PER_SECOND: f64 = 1e9;

/// Renders the resource metrics of a CPU-and-memory summary, or only
/// `resource_scrape_error 1` when the summary could not be gathered (as upstream).
pub fn render_resource_metrics(summary: Option<&Summary>) -> String {
    let mut f = Families::default();
    let Some(summary) = summary else {
        f.add(&SCRAPE_ERROR, Vec::new(), 1.0, None);
        return f.render();
    };
    let node = &summary.node;
    if let Some(cpu) = &node.cpu
        && let Some(ns) = cpu.usage_core_nano_seconds
    {
        f.add(
            &NODE_CPU,
            Vec::new(),
            ns as f64 / NANOS_PER_SECOND,
            Some(cpu.time),
        );
    }
    if let Some(mem) = &node.memory
        && let Some(ws) = mem.working_set_bytes
    {
        f.add(&NODE_MEMORY, Vec::new(), ws as f64, Some(mem.time));
    }
    if let Some(swap) = &node.swap
        && let Some(used) = swap.swap_usage_bytes
    {
        f.add(&NODE_SWAP, Vec::new(), used as f64, Some(swap.time));
    }
    for pod in &summary.pods {
        for c in &pod.containers {
            if c.start_time.unix_seconds() > 0 {
                f.add(
                    &CONTAINER_START,
                    container_labels(pod, c),
                    c.start_time.unix_nanos() as f64 / NANOS_PER_SECOND,
                    None,
                );
            }
            if let Some(cpu) = &c.cpu
                && let Some(ns) = cpu.usage_core_nano_seconds
            {
                f.add(
                    &CONTAINER_CPU,
                    container_labels(pod, c),
                    ns as f64 / NANOS_PER_SECOND,
                    Some(cpu.time),
                );
            }
            if let Some(mem) = &c.memory
                && let Some(ws) = mem.working_set_bytes
            {
                f.add(
                    &CONTAINER_MEMORY,
                    container_labels(pod, c),
                    ws as f64,
                    Some(mem.time),
                );
            }
            if let Some(swap) = &c.swap {
                let used = swap.swap_usage_bytes.map_or(0.0, |u| u as f64);
                if swap.swap_usage_bytes.is_some() {
                    f.add(
                        &CONTAINER_SWAP,
                        container_labels(pod, c),
                        used,
                        Some(swap.time),
                    );
                }
                if let Some(available) = swap.swap_available_bytes {
                    f.add(
                        &CONTAINER_SWAP_LIMIT,
                        container_labels(pod, c),
                        available as f64 + used,
                        Some(swap.time),
                    );
                }
            }
        }
        if let Some(cpu) = &pod.cpu
            && let Some(ns) = cpu.usage_core_nano_seconds
        {
            f.add(
                &POD_CPU,
                pod_labels(pod),
                ns as f64 / NANOS_PER_SECOND,
                Some(cpu.time),
            );
        }
        if let Some(mem) = &pod.memory
            && let Some(ws) = mem.working_set_bytes
        {
            f.add(&POD_MEMORY, pod_labels(pod), ws as f64, Some(mem.time));
        }
        if let Some(swap) = &pod.swap
            && let Some(used) = swap.swap_usage_bytes
        {
            f.add(&POD_SWAP, pod_labels(pod), used as f64, Some(swap.time));
        }
    }
    f.add(&SCRAPE_ERROR, Vec::new(), 0.0, None);
    f.render()
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{CpuStats, MemoryStats, NodeStats, PodReference, SwapStats};

    #[test]
    fn renders_upstream_families_sorted_with_millisecond_timestamps() {
        let t = Time::from_unix_nanos(1_700_000_000_123_000_000);
        let pod = |name: &str| PodStats {
            pod_ref: PodReference {
                name: name.into(),
                namespace: "ns".into(),
                uid: "u".into(),
            },
            start_time: t,
            containers: vec![ContainerStats {
                name: "app".into(),
                start_time: Time::from_unix_nanos(1_600_000_000_500_000_000),
                cpu: Some(CpuStats {
                    time: t,
                    usage_core_nano_seconds: Some(1_500_000_000),
                    usage_nano_cores: None,
                }),
                memory: Some(MemoryStats {
                    time: t,
                    working_set_bytes: Some(4096),
                    ..Default::default()
                }),
                swap: Some(SwapStats {
                    time: t,
                    swap_usage_bytes: Some(0),
                    swap_available_bytes: Some(0),
                }),
                ..Default::default()
            }],
            cpu: Some(CpuStats {
                time: t,
                usage_core_nano_seconds: Some(2_000_000_000),
                usage_nano_cores: None,
            }),
            memory: Some(MemoryStats {
                time: t,
                working_set_bytes: Some(8192),
                ..Default::default()
            }),
            ..Default::default()
        };
        let summary = Summary {
            node: NodeStats {
                node_name: "n".into(),
                cpu: Some(CpuStats {
                    time: t,
                    usage_core_nano_seconds: Some(12_345_000_000_000),
                    usage_nano_cores: None,
                }),
                memory: Some(MemoryStats {
                    time: t,
                    working_set_bytes: Some(1_073_741_824),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pods: vec![pod("b"), pod("a")],
        };
        let text = render_resource_metrics(Some(&summary));
        let expected = "\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container=\"app\",namespace=\"ns\",pod=\"a\"} 1.5 1700000000123
container_cpu_usage_seconds_total{container=\"app\",namespace=\"ns\",pod=\"b\"} 1.5 1700000000123
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container=\"app\",namespace=\"ns\",pod=\"a\"} 4096 1700000000123
container_memory_working_set_bytes{container=\"app\",namespace=\"ns\",pod=\"b\"} 4096 1700000000123
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container=\"app\",namespace=\"ns\",pod=\"a\"} 1.6000000005e+09
container_start_time_seconds{container=\"app\",namespace=\"ns\",pod=\"b\"} 1.6000000005e+09
# HELP container_swap_limit_bytes [ALPHA] Current amount of the container swap limit in bytes. Reported only on non-windows systems
# TYPE container_swap_limit_bytes gauge
container_swap_limit_bytes{container=\"app\",namespace=\"ns\",pod=\"a\"} 0 1700000000123
container_swap_limit_bytes{container=\"app\",namespace=\"ns\",pod=\"b\"} 0 1700000000123
# HELP container_swap_usage_bytes [ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems
# TYPE container_swap_usage_bytes gauge
container_swap_usage_bytes{container=\"app\",namespace=\"ns\",pod=\"a\"} 0 1700000000123
container_swap_usage_bytes{container=\"app\",namespace=\"ns\",pod=\"b\"} 0 1700000000123
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 12345 1700000000123
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 1700000000123
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"a\"} 2 1700000000123
pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"b\"} 2 1700000000123
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace=\"ns\",pod=\"a\"} 8192 1700000000123
pod_memory_working_set_bytes{namespace=\"ns\",pod=\"b\"} 8192 1700000000123
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
";
        assert_eq!(text, expected);

        let failed = render_resource_metrics(None);
        assert!(failed.ends_with("resource_scrape_error 1\n"), "{failed}");
        assert!(!failed.contains("node_cpu"));
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
