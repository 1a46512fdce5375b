//! When a job schedule's jobs are due: a pure function of its `schedule` and the time.
//!
//! A schedule is a sequence of due times: one (no recurrence), every `recurrenceInterval`
//! from the first, or every match of a cron expression in an IANA time zone (the openbatch
//! extension). The first due time is the first one at or after both the time the schedule
//! (re)started and `doNotRunUntil`; none is after `doNotRunAfter`. A due time's job must be
//! created within `startWindow` of it (unbounded by default); a due time is never carried over
//! into the next one, so only the latest due time that has passed counts.
//!
//! Cron expressions follow the Open Cron Pattern Specification as `croner` implements it, so
//! daylight saving transitions behave as Vixie cron does: a fixed-time job (`30 2 * * *`) in a
//! skipped hour runs right after the gap, and once only in a repeated hour; a wildcard or step
//! job (`*/15 * * * *`) skips the gap and runs on every matching minute of both passes of the
//! repeated hour. Search always moves in real time, so due times strictly increase.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use openbatch_api::models::JobScheduleConfiguration;
use openbatch_api::time::IsoDuration;

use crate::CoreError;

/// The five fields of a cron expression, for error messages.
const CRON_FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

/// A parsed `schedule`.
#[derive(Debug)]
pub(crate) struct Timing {
    until: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
    window: Option<Duration>,
    recurrence: Recurrence,
}

#[derive(Debug)]
enum Recurrence {
    Once,
    Every(Duration),
    Cron { cron: Box<Cron>, tz: Tz },
}

/// A finite duration in chrono's terms; `None` for unbounded (or beyond chrono's range).
fn finite(d: IsoDuration) -> Option<Duration> {
    d.as_duration().and_then(|d| Duration::from_std(d).ok())
}

impl Timing {
    /// Parse and check a `schedule`. Errors name the property and say what is wrong.
    pub(crate) fn parse(cfg: &JobScheduleConfiguration) -> Result<Self, CoreError> {
        let window = match cfg.start_window {
            Some(d) if d.as_duration().is_some_and(|d| d.is_zero()) => {
                return Err(CoreError::invalid(
                    "schedule.startWindow",
                    d,
                    "must be greater than 0",
                ))
            }
            Some(d) => finite(d),
            None => None,
        };
        let recurrence = match (&cfg.recurrence_interval, &cfg.cron) {
            (Some(_), Some(cron)) => {
                return Err(CoreError::invalid(
                    "schedule.cron",
                    cron,
                    "schedule.cron and schedule.recurrenceInterval are mutually exclusive: a schedule recurs either every interval or on a cron expression",
                ))
            }
            (Some(d), None) if d.as_duration().is_some_and(|d| d.is_zero()) => {
                return Err(CoreError::invalid(
                    "schedule.recurrenceInterval",
                    d,
                    "must be greater than 0",
                ))
            }
            (Some(d), None) => finite(*d).map_or(Recurrence::Once, Recurrence::Every),
            (None, Some(cron)) => Recurrence::Cron {
                cron: Box::new(parse_cron(cron)?),
                tz: parse_zone(cfg.time_zone.as_deref())?,
            },
            (None, None) => {
                if let Some(tz) = &cfg.time_zone {
                    return Err(CoreError::invalid(
                        "schedule.timeZone",
                        tz,
                        "applies to schedule.cron only; set schedule.cron too, or leave timeZone out",
                    ));
                }
                Recurrence::Once
            }
        };
        Ok(Self {
            until: cfg.do_not_run_until,
            after: cfg.do_not_run_after,
            window,
            recurrence,
        })
    }

    /// A cron expression must match some date (`0 0 30 2 *` never does).
    pub(crate) fn check_matches(&self, now: DateTime<Utc>) -> Result<(), CoreError> {
        if let Recurrence::Cron { cron, tz } = &self.recurrence {
            if cron
                .find_next_occurrence(&now.with_timezone(tz), true)
                .is_err()
            {
                return Err(CoreError::invalid(
                    "schedule.cron",
                    cron.pattern.to_string(),
                    "the expression matches no date (such as February 30)",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn do_not_run_after(&self) -> Option<DateTime<Utc>> {
        self.after
    }

    /// The first due time of a schedule that (re)starts at `now`; `None` when there is none
    /// (a cron expression that never matches again, or one past `doNotRunAfter`).
    pub(crate) fn first(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.until.map_or(now, |u| u.max(now));
        let due = match &self.recurrence {
            Recurrence::Once | Recurrence::Every(_) => Some(start),
            Recurrence::Cron { cron, tz } => cron
                .find_next_occurrence(&start.with_timezone(tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        };
        due.and_then(|d| self.not_after(d))
    }

    /// The due time after `due`, if the schedule recurs and has one left.
    pub(crate) fn following(&self, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match &self.recurrence {
            Recurrence::Once => None,
            Recurrence::Every(every) => due.checked_add_signed(*every),
            Recurrence::Cron { cron, tz } => cron
                .find_next_occurrence(&due.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        };
        next.and_then(|d| self.not_after(d))
    }

    /// The latest due time of the sequence that starts at `due` that is not after `now`
    /// (`due` itself when the next one is still to come). Requires `due <= now`.
    pub(crate) fn latest(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match &self.recurrence {
            Recurrence::Once => due,
            Recurrence::Every(every) => {
                // Whole intervals between due and now, in nanoseconds (i128: no overflow for
                // any span chrono can represent).
                let nanos = |d: Duration| {
                    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
                };
                let step = nanos(*every);
                if step <= 0 {
                    return due;
                }
                let skip = nanos(now - due) / step * step;
                let secs = i64::try_from(skip / 1_000_000_000).unwrap_or(i64::MAX);
                let sub = (skip % 1_000_000_000) as i64;
                Duration::try_seconds(secs)
                    .and_then(|s| s.checked_add(&Duration::nanoseconds(sub)))
                    .and_then(|d| due.checked_add_signed(d))
                    .unwrap_or(due)
            }
            Recurrence::Cron { cron, tz } => cron
                .find_previous_occurrence(&now.with_timezone(tz), true)
                .map(|t| t.with_timezone(&Utc).max(due))
                .unwrap_or(due),
        }
    }

    /// When the job of `due` may no longer be created; `None` for an unbounded start window.
    pub(crate) fn window_closes(&self, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.window.and_then(|w| due.checked_add_signed(w))
    }

    fn not_after(&self, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.after {
            Some(after) if due > after => None,
            _ => Some(due),
        }
    }
}

/// A five-field cron expression (or an `@daily`-style nickname). A bad one is answered with
/// the field, its column and the reason.
fn parse_cron(expr: &str) -> Result<Cron, CoreError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let invalid = |reason: String| CoreError::invalid("schedule.cron", expr, reason);
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return parser.parse(trimmed).map_err(|e| {
            invalid(format!(
                "'{trimmed}' is not a known nickname (@yearly, @monthly, @weekly, @daily, @hourly): {e}"
            ))
        });
    }
    // Fields with their 1-based columns in the expression as given.
    let fields: Vec<(usize, &str)> = expr
        .split_whitespace()
        .map(|f| (f.as_ptr() as usize - expr.as_ptr() as usize + 1, f))
        .collect();
    if fields.len() != 5 {
        return Err(invalid(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}; seconds and years are not supported",
            fields.len()
        )));
    }
    let whole = match parser.parse(expr) {
        Ok(cron) => return Ok(cron),
        Err(e) => e,
    };
    // Find the field at fault: the first that fails on its own, the others being `*`.
    for (i, (column, field)) in fields.iter().enumerate() {
        let mut probe = ["*"; 5];
        probe[i] = field;
        if let Err(e) = parser.parse(&probe.join(" ")) {
            return Err(invalid(format!(
                "field {} ({}) '{field}' at column {column}: {e}",
                i + 1,
                CRON_FIELDS[i]
            )));
        }
    }
    Err(invalid(whole.to_string()))
}

fn parse_zone(name: Option<&str>) -> Result<Tz, CoreError> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => Tz::from_str(name).map_err(|_| {
            CoreError::invalid(
                "schedule.timeZone",
                name,
                "not a time zone of the IANA database; use a name such as Europe/Berlin, America/New_York or UTC",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expr: &str, tz: Option<&str>) -> Timing {
        Timing::parse(&JobScheduleConfiguration {
            cron: Some(expr.into()),
            time_zone: tz.map(Into::into),
            ..Default::default()
        })
        .unwrap()
    }

    /// The due times from `from` on, `n` of them.
    fn dues(t: &Timing, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut due = t.first(utc(from));
        while let Some(d) = due {
            if out.len() == n {
                break;
            }
            out.push(d.to_rfc3339());
            due = t.following(d);
        }
        out
    }

    fn reason(e: CoreError) -> String {
        match e {
            CoreError::InvalidProperty {
                property, reason, ..
            } => format!("{property}: {reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn daily_cron_in_a_named_zone_follows_its_utc_offset() {
        let t = cron("0 3 * * *", Some("Europe/Berlin"));
        assert_eq!(
            dues(&t, "2025-01-10T12:00:00Z", 2),
            ["2025-01-11T02:00:00+00:00", "2025-01-12T02:00:00+00:00"]
        );
        // Summer time: 03:00 CEST is 01:00 UTC.
        assert_eq!(
            dues(&t, "2025-07-10T12:00:00Z", 1),
            ["2025-07-11T01:00:00+00:00"]
        );
    }

    /// Spring forward in Berlin, 2025-03-30: 02:00 CET jumps to 03:00 CEST, so 02:30 never
    /// happens. A fixed-time job runs once that day, right after the gap (03:00 CEST).
    #[test]
    fn fixed_time_in_the_spring_gap_runs_right_after_it() {
        let t = cron("30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            dues(&t, "2025-03-29T00:00:00Z", 3),
            [
                "2025-03-29T01:30:00+00:00", // 02:30 CET
                "2025-03-30T01:00:00+00:00", // 03:00 CEST, just after the gap
                "2025-03-31T00:30:00+00:00", // 02:30 CEST
            ]
        );
    }

    /// A step job skips the minutes that do not exist and keeps its rhythm after the gap.
    #[test]
    fn step_job_skips_the_spring_gap() {
        let t = cron("*/30 * * * *", Some("Europe/Berlin"));
        assert_eq!(
            dues(&t, "2025-03-30T00:00:00Z", 4),
            [
                "2025-03-30T00:00:00+00:00", // 01:00 CET
                "2025-03-30T00:30:00+00:00", // 01:30 CET
                "2025-03-30T01:00:00+00:00", // 03:00 CEST
                "2025-03-30T01:30:00+00:00", // 03:30 CEST
            ]
        );
    }

    /// Fall back in Berlin, 2025-10-26: 03:00 CEST goes back to 02:00 CET, so 02:30 happens
    /// twice. A fixed-time job runs once, at the first 02:30; a step job runs in both passes.
    #[test]
    fn fall_back_overlap_runs_fixed_times_once_and_steps_twice() {
        let fixed = cron("30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            dues(&fixed, "2025-10-25T12:00:00Z", 2),
            [
                "2025-10-26T00:30:00+00:00", // 02:30 CEST, the first pass
                "2025-10-27T01:30:00+00:00", // 02:30 CET the next day
            ]
        );
        let step = cron("*/30 2 * * *", Some("Europe/Berlin"));
        assert_eq!(
            dues(&step, "2025-10-26T00:00:00Z", 4),
            [
                "2025-10-26T00:00:00+00:00", // 02:00 CEST
                "2025-10-26T00:30:00+00:00", // 02:30 CEST
                "2025-10-26T01:00:00+00:00", // 02:00 CET
                "2025-10-26T01:30:00+00:00", // 02:30 CET
            ]
        );
    }

    #[test]
    fn latest_skips_missed_due_times_in_one_step() {
        let every = Timing::parse(&JobScheduleConfiguration {
            recurrence_interval: Some(IsoDuration(Some(std::time::Duration::from_secs(60)))),
            ..Default::default()
        })
        .unwrap();
        let due = utc("2025-01-01T00:00:00Z");
        assert_eq!(
            every.latest(due, utc("2026-01-01T00:00:30Z")),
            utc("2026-01-01T00:00:00Z")
        );
        assert_eq!(every.latest(due, due), due);
        let hourly = cron("0 * * * *", None);
        assert_eq!(
            hourly.latest(due, utc("2025-01-01T05:59:59Z")),
            utc("2025-01-01T05:00:00Z")
        );
    }

    #[test]
    fn bounds_and_windows() {
        let t = Timing::parse(&JobScheduleConfiguration {
            do_not_run_until: Some(utc("2025-01-01T10:00:00Z")),
            do_not_run_after: Some(utc("2025-01-01T10:02:30Z")),
            start_window: Some(IsoDuration(Some(std::time::Duration::from_secs(30)))),
            recurrence_interval: Some(IsoDuration(Some(std::time::Duration::from_secs(60)))),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            dues(&t, "2025-01-01T09:00:00Z", 10),
            [
                "2025-01-01T10:00:00+00:00",
                "2025-01-01T10:01:00+00:00",
                "2025-01-01T10:02:00+00:00"
            ]
        );
        assert_eq!(
            t.window_closes(utc("2025-01-01T10:00:00Z")),
            Some(utc("2025-01-01T10:00:30Z"))
        );
        assert_eq!(t.first(utc("2025-01-01T11:00:00Z")), None);
    }

    #[test]
    fn bad_cron_names_the_field_and_column() {
        let e = |expr: &str| {
            reason(
                Timing::parse(&JobScheduleConfiguration {
                    cron: Some(expr.into()),
                    ..Default::default()
                })
                .unwrap_err(),
            )
        };
        let r = e("0 25 * * *");
        assert!(
            r.starts_with("schedule.cron: field 2 (hour) '25' at column 3"),
            "{r}"
        );
        let r = e("*/5 * * JANX *");
        assert!(r.contains("field 4 (month) 'JANX' at column 9"), "{r}");
        let r = e("0 3 * *");
        assert!(r.contains("expected 5 fields"), "{r}");
        let r = e("0 0 3 * * *");
        assert!(r.contains("found 6; seconds"), "{r}");
        assert!(e("@often").contains("nickname"));
    }

    #[test]
    fn other_checks() {
        let p = |cfg: JobScheduleConfiguration| Timing::parse(&cfg).map_err(reason);
        let minute = Some(IsoDuration(Some(std::time::Duration::from_secs(60))));
        let r = p(JobScheduleConfiguration {
            cron: Some("0 3 * * *".into()),
            recurrence_interval: minute,
            ..Default::default()
        })
        .unwrap_err();
        assert!(r.contains("mutually exclusive"), "{r}");
        let r = p(JobScheduleConfiguration {
            cron: Some("0 3 * * *".into()),
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(r.starts_with("schedule.timeZone"), "{r}");
        let r = p(JobScheduleConfiguration {
            time_zone: Some("UTC".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(r.contains("applies to schedule.cron only"), "{r}");
        let r = p(JobScheduleConfiguration {
            recurrence_interval: Some(IsoDuration(Some(std::time::Duration::ZERO))),
            ..Default::default()
        })
        .unwrap_err();
        assert!(r.starts_with("schedule.recurrenceInterval"), "{r}");
        // Nicknames are cron expressions too; an unbounded interval means no recurrence.
        assert!(p(JobScheduleConfiguration {
            cron: Some("@daily".into()),
            ..Default::default()
        })
        .is_ok());
        let once = p(JobScheduleConfiguration {
            recurrence_interval: Some(IsoDuration::unbounded()),
            ..Default::default()
        })
        .unwrap();
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(once.following(t), None);
    }
}
