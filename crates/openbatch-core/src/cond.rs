//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` on pools, jobs, tasks and job schedules. A mutation carries its precondition into the
//! core so that the check and the change happen under the same lock, with nothing in between.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{etag, Core};
use crate::{id_key, CoreError};

/// The entity a precondition is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Pool(String),
    Job(String),
    Task(String, String),
    JobSchedule(String),
}

/// The request's conditional headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Precondition {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<DateTime<Utc>>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

/// How a precondition came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// For reads: the client's copy is current (304).
    NotModified,
    /// The condition failed (412).
    Failed,
}

impl Precondition {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Evaluate against an entity's ETag and last-modified time (RFC 7232 order). `read` says
    /// whether the request is a GET/HEAD, where a satisfied `If-None-Match` or an unmet
    /// `If-Modified-Since` means "not modified" rather than "failed".
    pub fn evaluate(
        &self,
        current_etag: &str,
        last_modified: DateTime<Utc>,
        read: bool,
    ) -> Verdict {
        // HTTP dates have whole seconds: compare at that resolution.
        let lm = last_modified.timestamp();
        if let Some(m) = &self.if_match {
            if !etag_list_matches(m, current_etag) {
                return Verdict::Failed;
            }
        } else if let Some(t) = self.if_unmodified_since {
            if lm > t.timestamp() {
                return Verdict::Failed;
            }
        }
        if let Some(m) = &self.if_none_match {
            if etag_list_matches(m, current_etag) {
                return if read {
                    Verdict::NotModified
                } else {
                    Verdict::Failed
                };
            }
        } else if let Some(t) = self.if_modified_since {
            if lm <= t.timestamp() {
                return if read {
                    Verdict::NotModified
                } else {
                    Verdict::Failed
                };
            }
        }
        Verdict::Proceed
    }
}

/// `*` or a comma-separated list of (optionally quoted, optionally weak) ETags.
fn etag_list_matches(header: &str, current: &str) -> bool {
    header.split(',').map(str::trim).any(|t| {
        t == "*" || t.trim_start_matches("W/").trim_matches('"') == current.trim_matches('"')
    })
}

impl Core {
    /// The ETag and last-modified time of an entity, for conditional requests.
    pub fn entity_version(&self, target: &Target) -> Result<(String, DateTime<Utc>), CoreError> {
        match target {
            Target::Pool(id) => self
                .pools
                .get(&id_key(id))
                .map(|p| (etag(p.version), p.last_modified))
                .ok_or_else(|| CoreError::PoolNotFound(id.clone())),
            Target::Job(id) => self
                .jobs
                .get(&id_key(id))
                .map(|j| (etag(j.version), j.last_modified))
                .ok_or_else(|| CoreError::JobNotFound(id.clone())),
            Target::JobSchedule(id) => self
                .schedules
                .get(&id_key(id))
                .map(|s| (etag(s.version), s.last_modified))
                .ok_or_else(|| CoreError::JobScheduleNotFound(id.clone())),
            Target::Task(job, task) => {
                let (jk, tk) = self.find_task(job, task)?;
                let t = &self.jobs[&jk].tasks[&tk];
                Ok((etag(t.version), t.last_modified))
            }
        }
    }

    pub(crate) fn check_precondition(
        &self,
        target: &Target,
        cond: &Precondition,
    ) -> Result<(), CoreError> {
        let (tag, lm) = self.entity_version(target)?;
        match cond.evaluate(&tag, lm, false) {
            Verdict::Proceed => Ok(()),
            Verdict::NotModified | Verdict::Failed => Err(CoreError::ConditionNotMet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn rfc7232_rules() {
        let p = |m: Option<&str>, n: Option<&str>| Precondition {
            if_match: m.map(Into::into),
            if_none_match: n.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            p(Some("0x1"), None).evaluate("0x1", t(10), false),
            Verdict::Proceed
        );
        assert_eq!(
            p(Some("\"0x1\""), None).evaluate("0x1", t(10), false),
            Verdict::Proceed
        );
        assert_eq!(
            p(Some("0x2"), None).evaluate("0x1", t(10), false),
            Verdict::Failed
        );
        assert_eq!(
            p(Some("*"), None).evaluate("0x1", t(10), false),
            Verdict::Proceed
        );
        assert_eq!(
            p(None, Some("0x1")).evaluate("0x1", t(10), true),
            Verdict::NotModified
        );
        assert_eq!(
            p(None, Some("0x1")).evaluate("0x1", t(10), false),
            Verdict::Failed
        );
        assert_eq!(
            p(None, Some("0x2, 0x3")).evaluate("0x1", t(10), true),
            Verdict::Proceed
        );
        let since = |s| Precondition {
            if_modified_since: Some(t(s)),
            ..Default::default()
        };
        assert_eq!(since(10).evaluate("x", t(10), true), Verdict::NotModified);
        assert_eq!(since(9).evaluate("x", t(10), true), Verdict::Proceed);
        let unmod = |s| Precondition {
            if_unmodified_since: Some(t(s)),
            ..Default::default()
        };
        assert_eq!(unmod(9).evaluate("x", t(10), false), Verdict::Failed);
        assert_eq!(unmod(10).evaluate("x", t(10), false), Verdict::Proceed);
    }
}
