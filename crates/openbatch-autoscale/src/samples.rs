//! Metric histories and the sample windows of `GetSample` / `GetSamplePercent` (spec §7).
//!
//! A history is data handed in by the caller: samples with their *age* (seconds before
//! `now`). A sample that has not propagated yet is simply absent. Window rules:
//!
//! * `GetSample(T)`: samples with `0 <= age < T`; `T / 30 s` samples are expected.
//! * `GetSample(T1, T2)`: samples with `T1 <= age < T2`; `(T2 - T1) / 30 s` expected
//!   (the bounds are swapped if given in the other order).
//! * `GetSample(n)`: the `n` most recent samples, however old.
//! * percentage = `100 * available / expected`, capped at 100; an empty window is 0 %.
//!
//! Returned vectors are ordered oldest first (our choice; undocumented).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::SAMPLE_PERIOD_SECONDS;

/// One sample: how long before `now` it was taken, and its value. In JSON, the pair
/// `[age_seconds, value]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "(f64, f64)", into = "(f64, f64)")]
pub struct Sample {
    /// Seconds between the sample and `now`. Samples with a negative or non-finite age
    /// (from the future, or corrupt) are ignored.
    pub age_seconds: f64,
    /// The metric's value.
    pub value: f64,
}

impl Sample {
    /// A sample taken `age_seconds` before `now`.
    pub fn new(age_seconds: f64, value: f64) -> Self {
        Sample { age_seconds, value }
    }

    fn is_valid(&self) -> bool {
        self.age_seconds.is_finite() && self.age_seconds >= 0.0
    }
}

impl From<(f64, f64)> for Sample {
    fn from((age_seconds, value): (f64, f64)) -> Self {
        Sample { age_seconds, value }
    }
}

impl From<Sample> for (f64, f64) {
    fn from(s: Sample) -> Self {
        (s.age_seconds, s.value)
    }
}

/// The available samples of one metric, in any order. JSON: `{"samples": [[age, value], ...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricHistory {
    /// The samples.
    #[serde(default)]
    pub samples: Vec<Sample>,
}

impl MetricHistory {
    /// A history of the given samples.
    pub fn new(samples: Vec<Sample>) -> Self {
        MetricHistory { samples }
    }

    /// Valid samples, oldest first (stable for equal ages).
    fn chronological(&self) -> Vec<Sample> {
        let mut valid: Vec<Sample> = self
            .samples
            .iter()
            .copied()
            .filter(Sample::is_valid)
            .collect();
        valid.sort_by(|a, b| b.age_seconds.total_cmp(&a.age_seconds));
        valid
    }

    /// `Count()`: how many samples the history holds.
    pub(crate) fn count(&self) -> usize {
        self.samples.iter().filter(|s| s.is_valid()).count()
    }

    /// Age of the oldest sample, for `HistoryBeginTime()`.
    pub(crate) fn oldest_age(&self) -> Option<f64> {
        self.chronological().first().map(|s| s.age_seconds)
    }

    /// The value of the newest sample, used when a metric appears in arithmetic directly.
    pub(crate) fn latest_value(&self) -> Option<f64> {
        self.chronological().last().map(|s| s.value)
    }

    /// `GetSample(n)`: the `n` newest samples, oldest first.
    pub(crate) fn latest(&self, n: usize) -> Vec<f64> {
        let all = self.chronological();
        let skip = all.len().saturating_sub(n);
        all.iter().skip(skip).map(|s| s.value).collect()
    }

    /// Samples with `from <= age < to` (seconds, swapped if reversed) and the percentage
    /// of the expected samples they represent.
    pub(crate) fn window(&self, from: f64, to: f64) -> Window {
        let (from, to) = if from <= to { (from, to) } else { (to, from) };
        let values: Vec<f64> = self
            .chronological()
            .iter()
            .filter(|s| s.age_seconds >= from && s.age_seconds < to)
            .map(|s| s.value)
            .collect();
        let expected = (to - from) / SAMPLE_PERIOD_SECONDS as f64;
        let percent = if expected > 0.0 && expected.is_finite() {
            (values.len() as f64 / expected * 100.0).min(100.0)
        } else {
            0.0
        };
        Window { values, percent }
    }
}

/// The samples of a window and their percentage of the expected count.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub(crate) values: Vec<f64>,
    pub(crate) percent: f64,
}

/// Histories by service variable name as written in formulas (`"$PendingTasks"`).
/// Deserializes from the vectors' `metrics` object; a metric that is absent has an empty
/// history; names that are not service variables are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metrics {
    /// The histories.
    pub series: BTreeMap<String, MetricHistory>,
}

impl Metrics {
    /// No samples at all.
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Sets the history of `name` (e.g. `"$PendingTasks"`).
    pub fn insert(&mut self, name: impl Into<String>, history: MetricHistory) {
        self.series.insert(name.into(), history);
    }

    /// The history of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&MetricHistory> {
        self.series.get(name)
    }
}

impl<S: Into<String>> FromIterator<(S, MetricHistory)> for Metrics {
    fn from_iter<I: IntoIterator<Item = (S, MetricHistory)>>(iter: I) -> Self {
        Metrics {
            series: iter.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(ages: &[f64]) -> MetricHistory {
        MetricHistory::new(ages.iter().map(|&a| Sample::new(a, a)).collect())
    }

    #[test]
    fn window_is_half_open_and_counts_expected_samples() {
        let h = history(&[15.0, 45.0, 60.0, 75.0, 105.0]);
        let w = h.window(0.0, 60.0);
        assert_eq!(w.values, vec![45.0, 15.0]);
        assert_eq!(w.percent, 100.0);
        let w = h.window(120.0, 60.0);
        assert_eq!(w.values, vec![105.0, 75.0, 60.0]);
        assert_eq!(w.percent, 100.0);
        assert_eq!(h.window(0.0, 180.0).percent, 5.0 / 6.0 * 100.0);
        assert_eq!(h.window(0.0, 0.0).percent, 0.0);
    }

    #[test]
    fn latest_and_invalid_samples() {
        let h = history(&[45.0, -1.0, 15.0, f64::NAN, 75.0]);
        assert_eq!(h.count(), 3);
        assert_eq!(h.latest(2), vec![45.0, 15.0]);
        assert_eq!(h.latest(10), vec![75.0, 45.0, 15.0]);
        assert_eq!(h.latest(0), Vec::<f64>::new());
        assert_eq!(h.latest_value(), Some(15.0));
        assert_eq!(h.oldest_age(), Some(75.0));
        assert_eq!(MetricHistory::default().latest_value(), None);
    }

    #[test]
    fn deserializes_the_vector_shape() {
        let m: Metrics =
            serde_json::from_str(r#"{"$PendingTasks": {"samples": [[15, 3], [45.5, 2]]}}"#)
                .unwrap_or_default();
        assert_eq!(
            m.get("$PendingTasks"),
            Some(&MetricHistory::new(vec![
                Sample::new(15.0, 3.0),
                Sample::new(45.5, 2.0)
            ]))
        );
    }
}
