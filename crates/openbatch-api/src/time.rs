//! Durations and timestamps as Azure Batch writes them.
//!
//! Durations are ISO-8601 (`PT15M`, `P7D`); the SDK sends zero-padded forms (`PT01H00M30S`,
//! `PT15M00S`), and "unbounded" is .NET's `TimeSpan.MaxValue`, `P10675199DT2H48M5.4775807S`.
//! Response headers (`Last-Modified`, `ocp-creation-time`) must be RFC 1123, or the SDK fails.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What Azure Batch reports for an unbounded duration (TimeSpan.MaxValue).
pub const UNBOUNDED: &str = "P10675199DT2H48M5.4775807S";

/// TimeSpan.MaxValue in whole seconds; anything at or above it reads as unbounded.
const UNBOUNDED_SECS: u64 = 10_675_199 * 86_400 + 2 * 3600 + 48 * 60 + 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an ISO-8601 duration such as PT15M, PT01H00M30S or P7D")]
pub struct DurationError(pub String);

/// An ISO-8601 duration on the wire. `None` inside means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoDuration(pub Option<Duration>);

impl IsoDuration {
    pub fn from_duration(d: Duration) -> Self {
        if d.as_secs() >= UNBOUNDED_SECS {
            Self(None)
        } else {
            Self(Some(d))
        }
    }
    pub fn unbounded() -> Self {
        Self(None)
    }
    pub fn as_duration(&self) -> Option<Duration> {
        self.0
    }
}

/// Parse `[-]P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`. Years and months are taken as 365 and 30
/// days: Batch durations are spans, never calendar arithmetic.
pub fn parse_duration(text: &str) -> Result<IsoDuration, DurationError> {
    let err = || DurationError(text.to_string());
    let s = text.trim();
    let rest = s.strip_prefix('P').ok_or_else(err)?;
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_nanos: u128 = 0;
    let mut in_time = false;
    let mut num = String::new();
    let mut saw_component = false;
    for c in rest.chars() {
        match c {
            'T' if !in_time && num.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => num.push(if c == ',' { '.' } else { c }),
            unit => {
                if num.is_empty() {
                    return Err(err());
                }
                let unit_secs: f64 = match (in_time, unit) {
                    (false, 'Y') => 365.0 * 86_400.0,
                    (false, 'M') => 30.0 * 86_400.0,
                    (false, 'W') => 7.0 * 86_400.0,
                    (false, 'D') => 86_400.0,
                    (true, 'H') => 3_600.0,
                    (true, 'M') => 60.0,
                    (true, 'S') => 1.0,
                    _ => return Err(err()),
                };
                let value: f64 = num.parse().map_err(|_| err())?;
                if !value.is_finite() || value < 0.0 {
                    return Err(err());
                }
                let nanos = value * unit_secs * 1e9;
                if nanos >= (UNBOUNDED_SECS as f64) * 1e9 {
                    return Ok(IsoDuration(None));
                }
                total_nanos += nanos.round() as u128;
                num.clear();
                saw_component = true;
            }
        }
    }
    if !num.is_empty() || !saw_component {
        return Err(err());
    }
    if total_nanos >= u128::from(UNBOUNDED_SECS) * 1_000_000_000 {
        return Ok(IsoDuration(None));
    }
    let secs = (total_nanos / 1_000_000_000) as u64;
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(IsoDuration(Some(Duration::new(secs, nanos))))
}

/// Format as Azure does: `P{d}DT{h}H{m}M{s}S` with only the non-zero parts (`PT0S` for zero).
pub fn format_duration(d: IsoDuration) -> String {
    let Some(d) = d.0 else {
        return UNBOUNDED.to_string();
    };
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let frac = d.subsec_nanos();
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if h > 0 || m > 0 || s > 0 || frac > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if s > 0 || frac > 0 || (h == 0 && m == 0) {
            if frac > 0 {
                let f = format!("{:09}", frac);
                out.push_str(&format!("{s}.{}S", f.trim_end_matches('0')));
            } else {
                out.push_str(&format!("{s}S"));
            }
        }
    }
    out
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(*self))
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*self))
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// RFC 1123 (`Sun, 22 Nov 2026 08:35:56 GMT`), for `Last-Modified` and `ocp-creation-time`.
pub fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parse an RFC 1123 date header.
pub fn parse_rfc1123(s: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(s).ok().map(DateTime::<Utc>::from)
}

/// ISO-8601 with 7 fractional digits, as the Azure Batch service writes timestamps.
pub fn iso8601(t: DateTime<Utc>) -> String {
    // chrono has no 7-digit fraction; write 100 ns ticks by hand, as .NET does.
    use chrono::Timelike;
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        (t.nanosecond() % 1_000_000_000) / 100
    )
}

/// Serde helpers for timestamps in the Azure format.
pub mod ts {
    use super::*;
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&iso8601(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
    /// For `Option<DateTime<Utc>>` fields.
    pub mod opt {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&iso8601(*t)),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Option<u64> {
        parse_duration(s).unwrap().0.map(|d| d.as_secs())
    }

    #[test]
    fn parses_plain_and_zero_padded_forms() {
        assert_eq!(secs("PT15M"), Some(900));
        assert_eq!(secs("PT15M00S"), Some(900));
        assert_eq!(secs("PT01H00M30S"), Some(3630));
        assert_eq!(secs("P7D"), Some(7 * 86_400));
        assert_eq!(secs("P1DT2H"), Some(86_400 + 7200));
        assert_eq!(
            parse_duration("PT0.5S").unwrap().0,
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_duration(UNBOUNDED).unwrap().0, None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "P", "PT", "15M", "PTM", "P1H", "PT1D", "PT-1S", "PT1.2.3S", "PT5",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["PT15M", "P7D", "PT1H0M30S", "PT0S", "P1DT2H3M4.5S"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{s}");
        }
        assert_eq!(format_duration(IsoDuration(None)), UNBOUNDED);
        assert_eq!(
            format_duration(IsoDuration(Some(Duration::from_secs(900)))),
            "PT15M"
        );
    }

    #[test]
    fn iso8601_has_seven_fraction_digits() {
        let t = DateTime::parse_from_rfc3339("2016-11-21T22:43:31.4733476Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso8601(t), "2016-11-21T22:43:31.4733476Z");
    }

    #[test]
    fn rfc1123_round_trips() {
        let t = parse_rfc1123("Sun, 22 Nov 2026 08:35:56 GMT").unwrap();
        assert_eq!(rfc1123(t), "Sun, 22 Nov 2026 08:35:56 GMT");
    }
}
