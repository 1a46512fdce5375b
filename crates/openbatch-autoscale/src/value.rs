//! Runtime values (spec §4) and their JSON form in [`crate::Outcome::Success`]'s
//! `variables`.

use chrono::{DateTime, Utc};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::limits::TICKS_PER_SECOND;
use crate::model::NodeDeallocationOption;

/// A point in time: whole 100-ns ticks since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Ticks (100 ns) since 1970-01-01T00:00:00Z; negative before it.
    pub fn ticks(self) -> i64 {
        self.0
    }

    pub(crate) fn from_ticks(ticks: i64) -> Self {
        Timestamp(ticks)
    }

    /// Converts a chrono time, truncating below 100 ns. `None` beyond about ±29,000 years
    /// from 1970, which ticks cannot hold.
    pub fn from_datetime(dt: DateTime<Utc>) -> Option<Self> {
        let ticks = dt
            .timestamp()
            .checked_mul(TICKS_PER_SECOND)?
            .checked_add(i64::from(dt.timestamp_subsec_nanos() / 100))?;
        Some(Timestamp(ticks))
    }

    /// Converts to a chrono time (always representable: chrono's range is wider).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        let secs = self.0.div_euclid(TICKS_PER_SECOND);
        let sub_ticks = self.0.rem_euclid(TICKS_PER_SECOND);
        let nanos = u32::try_from(sub_ticks * 100).ok()?;
        DateTime::from_timestamp(secs, nanos)
    }
}

/// A signed duration in whole 100-ns ticks (the smallest constant is `TimeInterval_100ns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(i64);

impl Interval {
    /// A duration of `ticks` × 100 ns.
    pub fn from_ticks(ticks: i64) -> Self {
        Interval(ticks)
    }

    /// The duration in 100-ns ticks.
    pub fn ticks(self) -> i64 {
        self.0
    }

    /// The duration in seconds.
    pub fn as_seconds(self) -> f64 {
        self.0 as f64 / TICKS_PER_SECOND as f64
    }
}

/// A value of the formula language.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `double`; booleans are 1 and 0.
    Double(f64),
    /// `doubleVec`.
    Vector(Vec<f64>),
    /// `string`.
    String(String),
    /// `timestamp`.
    Timestamp(Timestamp),
    /// `timeinterval`.
    Interval(Interval),
    /// A node deallocation keyword (`requeue`, ...), the type of `$NodeDeallocationOption`.
    Deallocation(NodeDeallocationOption),
}

impl Value {
    /// The type's name in the language, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Double(_) => "double",
            Value::Vector(_) => "doubleVec",
            Value::String(_) => "string",
            Value::Timestamp(_) => "timestamp",
            Value::Interval(_) => "timeinterval",
            Value::Deallocation(_) => "a node deallocation option",
        }
    }
}

/// Largest magnitude below which every integer is an exact double.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// A double as JSON: integral values as integers (`5`, not `5.0`), non-finite values as
/// the strings `"+inf"`, `"-inf"` and `"NaN"` (JSON has no such numbers).
struct JsonDouble(f64);

impl Serialize for JsonDouble {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_nan() {
            serializer.serialize_str("NaN")
        } else if x.is_infinite() {
            serializer.serialize_str(if x > 0.0 { "+inf" } else { "-inf" })
        } else if x.fract() == 0.0 && x.abs() <= EXACT_INTEGER_LIMIT {
            // Exact: integral and within ±2^53.
            serializer.serialize_i64(x as i64)
        } else {
            serializer.serialize_f64(x)
        }
    }
}

impl Serialize for Value {
    /// doubles as numbers, doubleVec as arrays, timestamps as ISO-8601 strings with
    /// milliseconds, timeintervals as `{"timeinterval_seconds": n}`, strings and
    /// deallocation options as strings.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Double(x) => JsonDouble(*x).serialize(serializer),
            Value::Vector(v) => {
                let mut seq = serializer.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(&JsonDouble(*x))?;
                }
                seq.end()
            }
            Value::String(s) => serializer.serialize_str(s),
            Value::Timestamp(t) => serializer.serialize_str(&crate::timefmt::format_timestamp(*t)),
            Value::Interval(i) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("timeinterval_seconds", &JsonDouble(i.as_seconds()))?;
                map.end()
            }
            Value::Deallocation(option) => serializer.serialize_str(option.keyword()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &Value) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    #[test]
    fn doubles_serialize_as_integers_when_integral_and_strings_when_not_finite() {
        assert_eq!(json(&Value::Double(5.0)), "5");
        assert_eq!(json(&Value::Double(-0.0)), "0");
        assert_eq!(json(&Value::Double(0.375)), "0.375");
        assert_eq!(json(&Value::Double(f64::INFINITY)), "\"+inf\"");
        assert_eq!(json(&Value::Double(f64::NEG_INFINITY)), "\"-inf\"");
        assert_eq!(json(&Value::Double(f64::NAN)), "\"NaN\"");
        assert_eq!(json(&Value::Double(1e300)), "1e+300");
        assert_eq!(json(&Value::Vector(vec![1.0, 2.5])), "[1,2.5]");
    }

    #[test]
    fn intervals_and_timestamps() {
        assert_eq!(
            json(&Value::Interval(Interval::from_ticks(
                1_800 * TICKS_PER_SECOND
            ))),
            "{\"timeinterval_seconds\":1800}"
        );
        assert_eq!(
            json(&Value::Interval(Interval::from_ticks(1))),
            "{\"timeinterval_seconds\":1e-7}"
        );
        let t = Timestamp::from_ticks(-1);
        assert_eq!(json(&Value::Timestamp(t)), "\"1969-12-31T23:59:59.999Z\"");
        let dt = t.to_datetime();
        assert_eq!(dt.and_then(Timestamp::from_datetime), Some(t));
    }
}
