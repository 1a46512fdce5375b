//! Text forms of time: `time("...")` parsing (W3C-DTF and RFC 1123, spec §6), timestamps
//! printed as `2016-10-13T19:18:47.805Z`, and intervals printed as .NET `TimeSpan` text.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

use crate::limits::TICKS_PER_SECOND;
use crate::value::{Interval, Timestamp};

/// More than 3 fractional-second digits broke a real formula against Azure (nextflow#3866),
/// so we reject them too rather than accept formulas the service would not.
const MAX_FRACTION_DIGITS: usize = 3;

/// Parses a `time("...")` argument: W3C-DTF (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mmTZD`, `YYYY-MM-DDThh:mm:ss[.s{1,3}]TZD` with `TZD` = `Z` or `±hh:mm`)
/// or RFC 1123 (`Mon, 15 Jan 2024 12:00:00 GMT`, as .NET's `ToString("r")` writes it).
pub(crate) fn parse_time(text: &str) -> Result<Timestamp, &'static str> {
    let dt = if text.starts_with(|c: char| c.is_ascii_digit()) {
        parse_w3c(text)?
    } else {
        DateTime::parse_from_rfc2822(text)
            .map_err(|_| {
                "not a W3C-DTF time (2024-01-15T12:00:00Z) or an RFC 1123 time \
                 (Mon, 15 Jan 2024 12:00:00 GMT)"
            })?
            .with_timezone(&Utc)
    };
    Timestamp::from_datetime(dt).ok_or("time out of range")
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn eat(&mut self, b: u8) -> bool {
        if self.bytes.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Result<u32, &'static str> {
        let mut value = 0u32;
        for _ in 0..n {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    self.at += 1;
                }
                _ => return Err("malformed W3C-DTF time; expected a digit"),
            }
        }
        Ok(value)
    }

    /// `Z` or `±hh:mm`, as seconds east of UTC.
    fn zone(&mut self) -> Result<i64, &'static str> {
        if self.eat(b'Z') {
            return Ok(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return Err("W3C-DTF times need a zone: 'Z' or '+hh:mm'");
        };
        let hours = self.digits(2)?;
        if !self.eat(b':') {
            return Err("malformed zone offset; expected '+hh:mm'");
        }
        let minutes = self.digits(2)?;
        if hours > 23 || minutes > 59 {
            return Err("zone offset out of range");
        }
        Ok(sign * (i64::from(hours) * 3600 + i64::from(minutes) * 60))
    }
}

fn parse_w3c(text: &str) -> Result<DateTime<Utc>, &'static str> {
    let mut s = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    let year = s.digits(4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut milli) = (0, 0, 0, 0);
    let mut offset = 0i64;
    if s.eat(b'-') {
        month = s.digits(2)?;
        if s.eat(b'-') {
            day = s.digits(2)?;
            if s.eat(b'T') {
                hour = s.digits(2)?;
                if !s.eat(b':') {
                    return Err("malformed W3C-DTF time; expected 'hh:mm'");
                }
                minute = s.digits(2)?;
                if s.eat(b':') {
                    second = s.digits(2)?;
                    if s.eat(b'.') {
                        let start = s.at;
                        while s.peek().is_some_and(|b| b.is_ascii_digit()) {
                            s.at += 1;
                        }
                        let count = s.at - start;
                        if count == 0 {
                            return Err("malformed fractional seconds");
                        }
                        if count > MAX_FRACTION_DIGITS {
                            return Err(
                                "more than 3 fractional-second digits; Azure rejects them too",
                            );
                        }
                        let mut digits = Scanner {
                            bytes: text.as_bytes(),
                            at: start,
                        };
                        let scale = [100, 10, 1].get(count - 1).copied().unwrap_or(1);
                        milli = digits.digits(count)? * scale;
                    }
                }
                offset = s.zone()?;
            }
        }
    }
    if s.at != text.len() {
        return Err("unexpected characters after the W3C-DTF time");
    }
    let year = i32::try_from(year).map_err(|_| "year out of range")?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or("no such date")?;
    let time = NaiveTime::from_hms_milli_opt(hour, minute, second, milli).ok_or("no such time")?;
    let local = date.and_time(time).and_utc();
    local
        .checked_sub_signed(chrono::TimeDelta::seconds(offset))
        .ok_or("time out of range")
}

/// ISO-8601 UTC with exactly three fractional digits (observed service output).
pub(crate) fn format_timestamp(t: Timestamp) -> String {
    match t.to_datetime() {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{}ticks", t.ticks()),
    }
}

/// .NET `TimeSpan` invariant text, `[-][d.]hh:mm:ss[.fffffff]` (our choice: the service's
/// rendering of intervals in `results` is unknown, and it is a .NET service).
pub(crate) fn format_interval(i: Interval) -> String {
    let ticks_per_second = TICKS_PER_SECOND.unsigned_abs();
    let abs = i.ticks().unsigned_abs();
    let fraction = abs % ticks_per_second;
    let total_seconds = abs / ticks_per_second;
    let seconds = total_seconds % 60;
    let minutes = total_seconds / 60 % 60;
    let hours = total_seconds / 3600 % 24;
    let days = total_seconds / 86_400;
    let mut out = String::new();
    if i.ticks() < 0 {
        out.push('-');
    }
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{hours:02}:{minutes:02}:{seconds:02}"));
    if fraction > 0 {
        out.push_str(&format!(".{fraction:07}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(text: &str) -> Result<String, &'static str> {
        parse_time(text).map(format_timestamp)
    }

    #[test]
    fn w3c_dtf_levels() {
        assert_eq!(iso("2024"), Ok("2024-01-01T00:00:00.000Z".into()));
        assert_eq!(iso("2024-02"), Ok("2024-02-01T00:00:00.000Z".into()));
        assert_eq!(iso("2024-02-29"), Ok("2024-02-29T00:00:00.000Z".into()));
        assert_eq!(
            iso("2024-01-15T12:30+01:00"),
            Ok("2024-01-15T11:30:00.000Z".into())
        );
        assert_eq!(
            iso("2024-01-15T12:00:00Z"),
            Ok("2024-01-15T12:00:00.000Z".into())
        );
        assert_eq!(
            iso("2016-10-13T19:18:47.8Z"),
            Ok("2016-10-13T19:18:47.800Z".into())
        );
        assert_eq!(
            iso("2016-10-13T19:18:47.805-02:00"),
            Ok("2016-10-13T21:18:47.805Z".into())
        );
    }

    #[test]
    fn w3c_dtf_rejections() {
        assert!(iso("2023-04-14T10:11:12.123456Z").is_err());
        assert!(iso("2023-04-14T10:11:12").is_err());
        assert!(iso("2023-02-30").is_err());
        assert!(iso("2023-04-14T25:00Z").is_err());
        assert!(iso("2023-04-14T10:11:60Z").is_err());
        assert!(iso("2023-04-14 ").is_err());
        assert!(iso("").is_err());
        assert!(iso("20").is_err());
    }

    #[test]
    fn rfc_1123() {
        assert_eq!(
            iso("Mon, 15 Jan 2024 12:00:00 GMT"),
            Ok("2024-01-15T12:00:00.000Z".into())
        );
        assert!(iso("Tue, 15 Jan 2024 12:00:00 GMT").is_err());
        assert!(iso("yesterday").is_err());
    }

    #[test]
    fn intervals_print_as_dotnet_timespans() {
        let s = TICKS_PER_SECOND;
        assert_eq!(format_interval(Interval::from_ticks(0)), "00:00:00");
        assert_eq!(format_interval(Interval::from_ticks(1_800 * s)), "00:30:00");
        assert_eq!(
            format_interval(Interval::from_ticks(-(86_400 + 7_200) * s)),
            "-1.02:00:00"
        );
        assert_eq!(format_interval(Interval::from_ticks(1)), "00:00:00.0000001");
        assert!(!format_interval(Interval::from_ticks(i64::MIN)).is_empty());
    }
}
