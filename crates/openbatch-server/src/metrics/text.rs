//! The Prometheus text exposition format, version 0.0.4, written by hand.
//!
//! Why not a client crate: every gauge here is computed at scrape time from the core and the
//! agent registry, and the counters are plain atomics spread over the engine, the agents and
//! the HTTP layer. A client library would add a registry, collector plumbing and a dependency
//! tree for what is, in the end, about a hundred lines of escaping and formatting. The rules
//! kept (from the format's specification): one `# HELP` and one `# TYPE` line per family,
//! before its samples, which are contiguous; names match `[a-zA-Z_:][a-zA-Z0-9_:]*` and label
//! names `[a-zA-Z_][a-zA-Z0-9_]*`; label values escape `\`, `"` and line feeds, help texts `\`
//! and line feeds; histograms give cumulative `_bucket{le=...}` samples ending with `+Inf`, then
//! `_sum` and `_count`; every line ends with a line feed.

use std::fmt::Write as _;

/// The content type of what [`Text`] writes.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A histogram with fixed upper bounds (seconds). Not thread-safe: keep it behind a lock.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`, for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must rise");
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub(crate) fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum += value;
    }
}

/// An exposition being written. Families must be written whole, one after the other.
pub(crate) struct Text {
    out: String,
    /// The family being written, to check that samples belong to it.
    current: Option<(String, Kind)>,
}

impl Text {
    pub(crate) fn new() -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
            current: None,
        }
    }

    /// Start a family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self.current = Some((name.to_string(), kind));
    }

    /// One sample of the current counter or gauge family.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        let Some((name, _)) = self.current.clone() else {
            debug_assert!(false, "a sample before any family");
            return;
        };
        self.line(&name, labels, None, value.into());
    }

    /// The samples of one histogram of the current (histogram) family.
    pub(crate) fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let Some((name, kind)) = self.current.clone() else {
            debug_assert!(false, "a histogram before any family");
            return;
        };
        debug_assert_eq!(kind, Kind::Histogram);
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = match h.bounds.get(i) {
                Some(b) => format_float(*b),
                None => "+Inf".to_string(),
            };
            self.line(&bucket, labels, Some(("le", &le)), Value::Int(cumulative));
        }
        self.line(&format!("{name}_sum"), labels, None, Value::Float(h.sum));
        self.line(
            &format!("{name}_count"),
            labels,
            None,
            Value::Int(cumulative),
        );
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, v: Value) {
        self.out.push_str(name);
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (i, (k, val)) in all.enumerate() {
                debug_assert!(valid_label_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(val));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match v {
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Float(f) => self.out.push_str(&format_float(f)),
        }
        self.out.push('\n');
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A sample value: integers print exactly, floats as Prometheus reads them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(n)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(u64::from(n))
    }
}
impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::Int(n as u64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    /// A parsed sample: name, labels, value.
    pub(crate) type Sample = (String, BTreeMap<String, String>, f64);

    /// A strict reader of the text format, for tests: it fails on any line a Prometheus server
    /// would refuse, on samples of a family without HELP and TYPE before them, on families that
    /// are split, and on histograms whose buckets are not cumulative or lack `+Inf`.
    pub(crate) fn parse(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("the last line must end with a line feed".into());
        }
        let mut helped: HashSet<String> = HashSet::new();
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut current: Option<String> = None;
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').ok_or("HELP without text")?;
                if !valid_name(name) || !helped.insert(name.to_string()) {
                    return Err(format!("bad or repeated HELP: {line}"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("unknown type: {line}"));
                }
                if typed.insert(name.to_string(), kind.to_string()).is_some() {
                    return Err(format!("repeated TYPE: {line}"));
                }
                if let Some(prev) = current.replace(name.to_string()) {
                    done.insert(prev);
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, labels, value) = parse_sample(line)?;
            let family = typed
                .iter()
                .filter(|(f, kind)| {
                    name == **f
                        || (kind.as_str() == "histogram"
                            && ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|s| name == format!("{f}{s}")))
                })
                .map(|(f, _)| f.clone())
                .next()
                .ok_or_else(|| format!("sample without a TYPE: {line}"))?;
            if !helped.contains(&family) {
                return Err(format!("sample without a HELP: {line}"));
            }
            if current.as_deref() != Some(family.as_str()) || done.contains(&family) {
                return Err(format!("family {family} is not contiguous"));
            }
            samples.push((name, labels, value));
        }
        check_histograms(&typed, &samples)?;
        Ok(samples)
    }

    fn parse_sample(line: &str) -> Result<(String, BTreeMap<String, String>, f64), String> {
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value: {line}"))?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(format!("bad metric name: {line}"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest
                    .find('=')
                    .ok_or_else(|| format!("bad labels: {line}"))?;
                let key = &rest[..eq];
                if !valid_label_name(key) {
                    return Err(format!("bad label name {key:?}: {line}"));
                }
                let mut chars = rest[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("unquoted label value: {line}"));
                }
                let mut value = String::new();
                let mut end = None;
                let mut escaped = false;
                for (i, c) in chars {
                    match (escaped, c) {
                        (true, 'n') => {
                            value.push('\n');
                            escaped = false
                        }
                        (true, '\\' | '"') => {
                            value.push(c);
                            escaped = false
                        }
                        (true, _) => return Err(format!("bad escape: {line}")),
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(eq + 1 + i);
                            break;
                        }
                        (false, '\n') => return Err(format!("raw line feed: {line}")),
                        (false, c) => value.push(c),
                    }
                }
                let end = end.ok_or_else(|| format!("unterminated label value: {line}"))?;
                if labels.insert(key.to_string(), value).is_some() {
                    return Err(format!("repeated label: {line}"));
                }
                rest = &rest[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| format!("bad value: {line}"))?,
        };
        Ok((name.to_string(), labels, value))
    }

    fn check_histograms(
        typed: &BTreeMap<String, String>,
        samples: &[Sample],
    ) -> Result<(), String> {
        for (family, _) in typed.iter().filter(|(_, k)| k.as_str() == "histogram") {
            let bucket = format!("{family}_bucket");
            let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for (name, labels, v) in samples.iter().filter(|s| s.0 == bucket) {
                let mut l = labels.clone();
                let le = l.remove("le").ok_or("a bucket without le")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("bad le in {name}"))?
                };
                series.entry(l).or_default().push((le, *v));
            }
            for (labels, buckets) in series {
                if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
                    return Err(format!("{family}{labels:?} has no +Inf bucket"));
                }
                if buckets
                    .windows(2)
                    .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
                {
                    return Err(format!("{family}{labels:?} is not cumulative"));
                }
                let count = samples
                    .iter()
                    .find(|s| s.0 == format!("{family}_count") && s.1 == labels)
                    .ok_or_else(|| format!("{family}{labels:?} has no _count"))?;
                if count.2 != buckets.last().expect("checked").1 {
                    return Err(format!("{family}{labels:?}: _count is not the +Inf bucket"));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn families_samples_and_escaping() {
        let mut t = Text::new();
        t.family(
            "openbatch_things_total",
            Kind::Counter,
            "Things.\nWith a \\ line.",
        );
        t.sample(&[("pool", "a\"b\\c\nd")], 3u64);
        t.sample(&[("pool", "plain")], 0u64);
        t.family("openbatch_level", Kind::Gauge, "A level.");
        t.sample(&[], 0.25);
        t.sample(&[("x", "inf")], f64::INFINITY);
        let text = t.finish();
        assert!(text.contains("# HELP openbatch_things_total Things.\\nWith a \\\\ line.\n"));
        assert!(text.contains("openbatch_things_total{pool=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(text.contains("openbatch_level 0.25\n"));
        assert!(text.contains("openbatch_level{x=\"inf\"} +Inf\n"));
        let samples = parse(&text).unwrap();
        // The escaped value reads back as it was.
        assert_eq!(samples[0].1["pool"], "a\"b\\c\nd");
        assert_eq!(samples.len(), 4);
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        static BOUNDS: &[f64] = &[0.01, 0.1, 1.0];
        let mut h = Histogram::new(BOUNDS);
        for v in [0.005, 0.01, 0.05, 0.5, 3.0] {
            h.observe(v);
        }
        let mut t = Text::new();
        t.family("openbatch_wait_seconds", Kind::Histogram, "Waits.");
        t.histogram(&[("route", "/pools/{pool}")], &h);
        let text = t.finish();
        let samples = parse(&text).unwrap();
        let bucket = |le: &str| {
            samples
                .iter()
                .find(|s| s.0 == "openbatch_wait_seconds_bucket" && s.1["le"] == le)
                .map(|s| s.2)
        };
        // A value equal to a bound falls in that bound's bucket (`le` is "less or equal").
        assert_eq!(bucket("0.01"), Some(2.0));
        assert_eq!(bucket("0.1"), Some(3.0));
        assert_eq!(bucket("1"), Some(4.0));
        assert_eq!(bucket("+Inf"), Some(5.0));
        assert!(text.contains("openbatch_wait_seconds_count{route=\"/pools/{pool}\"} 5\n"));
        assert!(text.contains("openbatch_wait_seconds_sum{route=\"/pools/{pool}\"} 3.565"));
    }

    #[test]
    fn the_reader_refuses_what_prometheus_refuses() {
        for bad in [
            "openbatch_x 1\n",                           // no TYPE
            "# TYPE openbatch_x gauge\nopenbatch_x 1\n", // no HELP
            "# HELP openbatch_x x\n# TYPE openbatch_x gauge\nopenbatch_x{a=\"\\q\"} 1\n",
            "# HELP openbatch_x x\n# TYPE openbatch_x gauge\nopenbatch_x{1a=\"\"} 1\n",
            "# HELP openbatch_x x\n# TYPE openbatch_x gauge\nopenbatch_x one\n",
            "# HELP openbatch_x x\n# TYPE openbatch_x gauge\nopenbatch_x 1",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad:?}");
        }
        assert!(valid_name("openbatch_a:b_1") && !valid_name("1abc") && !valid_name("a-b"));
        assert!(
            valid_label_name("pool") && !valid_label_name("__name") && !valid_label_name("a b")
        );
    }
}
