//! Prometheus metrics with upstream's names: a small in-memory registry ([`Family`]) and
//! the kubelet's metric families ([`kubelet`]) that every crate records into, rendered
//! in the text exposition format (0.0.4) by the binary's `/metrics` and `/metrics/probes`.
//!
//! Upstream keeps its families in a process-global `legacyregistry`; here they live in a
//! [`KubeletMetrics`](kubelet::KubeletMetrics) value that the kubelet's assembler makes
//! and hands to each part, so kubelets (and tests) sharing a process stay apart.
//! Recording is a map update under a short lock, no I/O. A family with labels shows no lines until it has a series,
//! as Go's Prometheus client; a family without labels always shows its value.
//!
//! ```
//! use kubelet_core::metrics::{kubelet::KubeletMetrics, render};
//!
//! let metrics = KubeletMetrics::new();
//! metrics.runtime_operations_total.inc(&["run_podsandbox"]);
//! let text = render(&[&metrics.runtime_operations_total]);
//! assert!(text.contains("# TYPE kubelet_runtime_operations_total counter"));
//! assert!(text.contains(r#"kubelet_runtime_operations_total{operation_type="run_podsandbox"}"#));
//! ```

pub mod kubelet;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// A metric's stability level, shown in its help text as upstream's component-base does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    /// `[ALPHA]`.
    Alpha,
    /// `[BETA]`.
    Beta,
    /// `[STABLE]`.
    Stable,
}

impl Stability {
    fn tag(self) -> &'static str {
        match self {
            Stability::Alpha => "[ALPHA] ",
            Stability::Beta => "[BETA] ",
            Stability::Stable => "[STABLE] ",
        }
    }
}

/// What a family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into buckets.
    Histogram,
}

#[derive(Debug, Clone, PartialEq)]
enum Series {
    Value(f64),
    Histogram {
        /// Observations at or below each bucket's bound (not cumulative).
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// One metric family: a name, help text, label names and a series per label values.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    stability: Stability,
    kind: Kind,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

/// A series' label values, as stored (`Vec<String>`) or as a caller gives them
/// ([`Given`]), ordered alike, so that recording into an existing series looks it up
/// without building a key (recording happens several times a second: every runtime
/// call, every relist).
trait LabelValues {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> &str;
}

impl LabelValues for Vec<String> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn get(&self, i: usize) -> &str {
        &self[i]
    }
}

/// Label values as given to a recording call.
struct Given<'a>(&'a [&'a str]);

impl LabelValues for Given<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, i: usize) -> &str {
        self.0[i]
    }
}

impl Ord for dyn LabelValues + '_ {
    /// Lexicographic by value, a prefix first: `Vec<String>`'s own order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (0..self.len())
            .map(|i| self.get(i))
            .cmp((0..other.len()).map(|i| other.get(i)))
    }
}

impl PartialOrd for dyn LabelValues + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn LabelValues + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn LabelValues + '_ {}

impl<'a> std::borrow::Borrow<dyn LabelValues + 'a> for Vec<String> {
    fn borrow(&self) -> &(dyn LabelValues + 'a) {
        self
    }
}

/// Default histogram buckets (Go's `prometheus.DefBuckets`).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Family {
    /// A counter family.
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        stability: Stability,
        labels: &'static [&'static str],
    ) -> Self {
        Self::new(name, help, stability, Kind::Counter, labels, &[])
    }

    /// A gauge family.
    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        stability: Stability,
        labels: &'static [&'static str],
    ) -> Self {
        Self::new(name, help, stability, Kind::Gauge, labels, &[])
    }

    /// A histogram family with these bucket upper bounds (ascending; `+Inf` is implied).
    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        stability: Stability,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self::new(name, help, stability, Kind::Histogram, labels, buckets)
    }

    const fn new(
        name: &'static str,
        help: &'static str,
        stability: Stability,
        kind: Kind,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            stability,
            kind,
            labels,
            buckets,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn with<R>(&self, values: &[&str], f: impl FnOnce(&mut Series) -> R) -> R {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = series.get_mut(&Given(values) as &dyn LabelValues) {
            return f(existing);
        }
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let buckets = self.buckets.len();
        let kind = self.kind;
        let entry = series.entry(key).or_insert_with(|| match kind {
            Kind::Histogram => Series::Histogram {
                counts: vec![0; buckets],
                sum: 0.0,
                count: 0,
            },
            Kind::Counter | Kind::Gauge => Series::Value(0.0),
        });
        f(entry)
    }

    /// Adds one to the series of these label values.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// Adds `delta` to the series of these label values (counters ignore negative deltas).
    pub fn add(&self, values: &[&str], delta: f64) {
        if self.kind == Kind::Counter && delta < 0.0 {
            return;
        }
        self.with(values, |s| {
            if let Series::Value(v) = s {
                *v += delta;
            }
        });
    }

    /// Sets the series of these label values (gauges).
    pub fn set(&self, values: &[&str], value: f64) {
        self.with(values, |s| {
            if let Series::Value(v) = s {
                *v = value;
            }
        });
    }

    /// Records one observation (histograms).
    pub fn observe(&self, values: &[&str], value: f64) {
        let bucket = self.buckets.iter().position(|bound| value <= *bound);
        self.with(values, |s| {
            if let Series::Histogram { counts, sum, count } = s {
                if let Some(i) = bucket {
                    counts[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    /// Forgets every series (upstream's `Reset`, e.g. a `DELETE` of `/metrics/slis`).
    pub fn reset(&self) {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Forgets the series of these label values (an object that is gone).
    pub fn remove(&self, values: &[&str]) {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Given(values) as &dyn LabelValues);
    }

    /// The series of these label values, if it exists.
    fn series_of(&self, values: &[&str]) -> Option<Series> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Given(values) as &dyn LabelValues)
            .cloned()
    }

    /// The value of a counter or gauge series, if it exists.
    pub fn value(&self, values: &[&str]) -> Option<f64> {
        match self.series_of(values)? {
            Series::Value(v) => Some(v),
            Series::Histogram { .. } => None,
        }
    }

    /// How many observations a histogram series holds, if it exists.
    pub fn observations(&self, values: &[&str]) -> Option<u64> {
        match self.series_of(values)? {
            Series::Histogram { count, .. } => Some(count),
            Series::Value(_) => None,
        }
    }

    /// Appends the family in the text exposition format.
    pub fn render_into(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.is_empty() && !self.labels.is_empty() {
            return;
        }
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            out,
            "# HELP {} {}{}",
            self.name,
            self.stability.tag(),
            escape_help(self.help)
        );
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        let empty = [(Vec::new(), self.empty_series())];
        let all: Vec<(&Vec<String>, &Series)> = if series.is_empty() {
            empty.iter().map(|(k, s)| (k, s)).collect()
        } else {
            series.iter().collect()
        };
        for (values, series) in all {
            let pairs: Vec<(&str, String)> = self
                .labels
                .iter()
                .zip(values)
                .map(|(name, value)| (*name, value.clone()))
                .collect();
            match series {
                Series::Value(v) => {
                    let _ = writeln!(out, "{}{} {}", self.name, label_text(&pairs), number(*v));
                }
                Series::Histogram { counts, sum, count } => {
                    let mut cumulative = 0;
                    for (bound, n) in self.buckets.iter().zip(counts) {
                        cumulative += n;
                        let mut with_le = pairs.clone();
                        with_le.push(("le", number(*bound)));
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {cumulative}",
                            self.name,
                            label_text(&with_le)
                        );
                    }
                    let mut with_le = pairs.clone();
                    with_le.push(("le", "+Inf".to_owned()));
                    let _ = writeln!(out, "{}_bucket{} {count}", self.name, label_text(&with_le));
                    let _ = writeln!(
                        out,
                        "{}_sum{} {}",
                        self.name,
                        label_text(&pairs),
                        number(*sum)
                    );
                    let _ = writeln!(out, "{}_count{} {count}", self.name, label_text(&pairs));
                }
            }
        }
    }

    fn empty_series(&self) -> Series {
        match self.kind {
            Kind::Histogram => Series::Histogram {
                counts: vec![0; self.buckets.len()],
                sum: 0.0,
                count: 0,
            },
            Kind::Counter | Kind::Gauge => Series::Value(0.0),
        }
    }
}

/// Renders these families, in order, in the text exposition format.
pub fn render(families: &[&Family]) -> String {
    let mut out = String::new();
    for family in families {
        family.render_into(&mut out);
    }
    out
}

/// The content type of the text exposition format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as Prometheus' text format
/// writes sample values: shortest digits, exponent form when the exponent is below -4
/// or at least 6 (`1.2345678e+07`), and `+Inf`, `-Inf`, `NaN`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Go's shortest mode.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let nd = digits.len() as i32;
    let mut out = String::new();
    if v < 0.0 {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    } else {
        let dp = exp + 1;
        if dp > 0 {
            for i in 0..dp {
                out.push(
                    digits
                        .as_bytes()
                        .get(i as usize)
                        .map_or('0', |b| *b as char),
                );
            }
        } else {
            out.push('0');
        }
        let frac = (nd - dp).max(0);
        if frac > 0 {
            out.push('.');
            for i in 0..frac {
                let idx = dp + i;
                out.push(if idx < 0 {
                    '0'
                } else {
                    digits
                        .as_bytes()
                        .get(idx as usize)
                        .map_or('0', |b| *b as char)
                });
            }
        }
    }
    out
}

/// `{a="x",b="y"}`, or nothing without labels; values escaped as the format requires.
pub fn label_text(pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    static COUNTER: Family = Family::counter("t_ops_total", "Ops.", Stability::Alpha, &["op"]);
    static GAUGE: Family = Family::gauge("t_up", "Up.", Stability::Stable, &[]);
    static HIST: Family =
        Family::histogram("t_seconds", "Time.", Stability::Beta, &["op"], &[0.5, 1.0]);

    #[test]
    fn families_render_in_the_text_format() {
        assert_eq!(
            render(&[&COUNTER]),
            "",
            "a labelled family without series shows nothing"
        );
        COUNTER.inc(&["a\"b"]);
        COUNTER.add(&["a\"b"], 2.0);
        COUNTER.add(&["a\"b"], -5.0);
        GAUGE.set(&[], 1.5);
        HIST.observe(&["x"], 0.25);
        HIST.observe(&["x"], 0.75);
        HIST.observe(&["x"], 3.0);
        assert_eq!(
            render(&[&COUNTER, &GAUGE, &HIST]),
            "# HELP t_ops_total [ALPHA] Ops.\n# TYPE t_ops_total counter\nt_ops_total{op=\"a\\\"b\"} 3\n\
             # HELP t_up [STABLE] Up.\n# TYPE t_up gauge\nt_up 1.5\n\
             # HELP t_seconds [BETA] Time.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{op=\"x\",le=\"0.5\"} 1\nt_seconds_bucket{op=\"x\",le=\"1\"} 2\n\
             t_seconds_bucket{op=\"x\",le=\"+Inf\"} 3\nt_seconds_sum{op=\"x\"} 4\nt_seconds_count{op=\"x\"} 3\n"
        );
        assert_eq!(COUNTER.value(&["a\"b"]), Some(3.0));
        assert_eq!(HIST.observations(&["x"]), Some(3));
        COUNTER.remove(&["a\"b"]);
        assert_eq!(COUNTER.value(&["a\"b"]), None);
    }

    #[test]
    fn series_are_found_by_the_values_given_in_the_stored_order() {
        static PAIRS: Family =
            Family::counter("t_pairs_total", "Pairs.", Stability::Alpha, &["a", "b"]);
        // Values that are prefixes of one another, and an empty one.
        let values: [[&str; 2]; 5] = [["x", "yz"], ["xy", "z"], ["x", ""], ["", "x"], ["x", "y"]];
        for (i, v) in values.iter().enumerate() {
            for _ in 0..=i {
                PAIRS.inc(v);
            }
        }
        for (i, v) in values.iter().enumerate() {
            assert_eq!(PAIRS.value(v), Some((i + 1) as f64), "{v:?}");
        }
        let stored: Vec<Vec<String>> = PAIRS.series.lock().expect("lock").keys().cloned().collect();
        let mut sorted: Vec<Vec<String>> = values
            .iter()
            .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        sorted.sort();
        assert_eq!(
            stored, sorted,
            "one series per values, in Vec<String>'s order"
        );
        for (stored, given) in sorted.iter().zip(sorted.iter().skip(1)) {
            let given: Vec<&str> = given.iter().map(String::as_str).collect();
            let (a, b): (&dyn LabelValues, &dyn LabelValues) = (stored, &Given(&given));
            assert_eq!(a.cmp(b), std::cmp::Ordering::Less, "{stored:?} < {given:?}");
            assert_eq!(b.cmp(a), std::cmp::Ordering::Greater);
        }
        PAIRS.remove(&["x", "yz"]);
        assert_eq!(PAIRS.value(&["x", "yz"]), None);
        assert_eq!(PAIRS.value(&["x", "y"]), Some(5.0));
    }

    #[test]
    fn numbers_are_written_as_go_writes_them() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (2.2806528e7, "2.2806528e+07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (12.345, "12.345"),
            (1_700_000_000.123_456_7, "1.7000000001234567e+09"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(number(v), want, "{v}");
        }
    }
}
