//! Job schedules: jobs created on a schedule, one at a time.
//!
//! A schedule keeps the time its next job is due (`next_run`, from [`timing`]). Whenever time
//! passes (`Input::Tick`) or its job ends, [`Core::advance_schedule`] looks at it again:
//!
//! * a due time whose start window has closed is skipped, and so is every due time before the
//!   latest one that has passed (a due job is never carried over to the next recurrence);
//! * a due time that is open gets its job (`{schedule}:job-{n}`, from `jobSpecification`) if
//!   the schedule is `active` and its previous job has completed; otherwise it waits;
//! * once no due time is left (no recurrence, `doNotRunAfter` passed) and no job is active,
//!   the schedule is `completed`.
//!
//! `disable` stops job creation (the active job runs on), `terminate` terminates the active
//! job and completes the schedule when it has ended, and `delete` deletes every job of the
//! schedule and the schedule with the last of them. A job learns nothing of its schedule; the
//! schedule hears of its jobs through [`Core::scheduled_job_ended`] and
//! [`Core::scheduled_job_removed`], which the job code calls.

mod timing;
mod view;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    JobScheduleConfiguration, JobScheduleCreate, JobScheduleState, JobScheduleUpdate,
    JobSpecification, JobState,
};
use serde::{Deserialize, Serialize};

use crate::input::{Effect, Reply};
use crate::state::{etag, Core};
use crate::{id_key, valid_id, CoreError};
use timing::Timing;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Schedule {
    pub(crate) spec: JobScheduleCreate,
    pub(crate) version: u64,
    pub(crate) created: DateTime<Utc>,
    /// The last change of the schedule's own data (Azure: not its jobs or its state).
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) state: JobScheduleState,
    pub(crate) state_time: DateTime<Utc>,
    pub(crate) previous_state: Option<(JobScheduleState, DateTime<Utc>)>,
    /// When the next job is due; `None` once no more jobs will be created.
    pub(crate) next_run: Option<DateTime<Utc>>,
    /// How many jobs the schedule has created: the next one is `{id}:job-{runs + 1}`.
    pub(crate) runs: u64,
    /// The key of the schedule's job until that job completes: at most one at a time.
    pub(crate) active_job: Option<String>,
    /// The id of the job created last.
    pub(crate) recent_job: Option<String>,
    /// Keys of the schedule's jobs that still exist.
    pub(crate) jobs: BTreeSet<String>,
    pub(crate) end_time: Option<DateTime<Utc>>,
}

/// A schedule's `schedule` property, `{}` when absent (run once, now).
fn config(spec: &JobScheduleCreate) -> JobScheduleConfiguration {
    spec.schedule.clone().unwrap_or_default()
}

/// The job specification must make a valid job; errors name `jobSpecification.*`.
fn check_job_specification(js: &JobSpecification) -> Result<(), CoreError> {
    if js.pool_info.is_none() {
        return Err(CoreError::MissingProperty(
            "jobSpecification.poolInfo".into(),
        ));
    }
    crate::jobs::check_job_spec(&js.to_job(String::new())).map_err(|e| match e {
        CoreError::MissingProperty(p) => {
            CoreError::MissingProperty(format!("jobSpecification.{p}"))
        }
        CoreError::InvalidProperty {
            property,
            value,
            reason,
        } => CoreError::InvalidProperty {
            property: format!("jobSpecification.{property}"),
            value,
            reason,
        },
        other => other,
    })
}

impl Core {
    fn schedule_key(&self, id: &str) -> Result<String, CoreError> {
        let key = id_key(id);
        if self.schedules.contains_key(&key) {
            Ok(key)
        } else {
            Err(CoreError::JobScheduleNotFound(id.into()))
        }
    }

    /// The key of a schedule that may still change: not completed, terminating or deleting.
    fn live_schedule(&self, id: &str) -> Result<String, CoreError> {
        let key = self.schedule_key(id)?;
        match self.schedules[&key].state {
            JobScheduleState::Active | JobScheduleState::Disabled => Ok(key),
            JobScheduleState::Completed => Err(CoreError::JobScheduleCompleted(id.into())),
            JobScheduleState::Terminating => Err(CoreError::JobScheduleBeingTerminated(id.into())),
            JobScheduleState::Deleting => Err(CoreError::JobScheduleBeingDeleted(id.into())),
        }
    }

    fn set_schedule_state(&mut self, key: &str, state: JobScheduleState, now: DateTime<Utc>) {
        let version = self.version();
        if let Some(s) = self.schedules.get_mut(key) {
            if s.state != state {
                s.previous_state = Some((s.state, s.state_time));
                s.state = state;
                s.state_time = now;
                s.version = version;
            }
        }
    }

    fn touch_schedule(&mut self, key: &str) {
        let version = self.version();
        if let Some(s) = self.schedules.get_mut(key) {
            s.version = version;
        }
    }

    pub(crate) fn create_job_schedule(
        &mut self,
        spec: JobScheduleCreate,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        if !valid_id(&spec.id) {
            return Err(CoreError::invalid(
                "id",
                &spec.id,
                "a job schedule id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        let key = id_key(&spec.id);
        if let Some(s) = self.schedules.get(&key) {
            return Err(if s.state == JobScheduleState::Deleting {
                CoreError::JobScheduleBeingDeleted(spec.id)
            } else {
                CoreError::JobScheduleExists(spec.id)
            });
        }
        if self.jobs.contains_key(&key) {
            return Err(CoreError::JobWithSameIdExists(spec.id));
        }
        let Some(cfg) = &spec.schedule else {
            return Err(CoreError::MissingProperty("schedule".into()));
        };
        let timing = Timing::parse(cfg)?;
        timing.check_matches(now)?;
        check_job_specification(&spec.job_specification)?;
        let version = self.version();
        self.schedules.insert(
            key.clone(),
            Schedule {
                spec,
                version,
                created: now,
                last_modified: now,
                state: JobScheduleState::Active,
                state_time: now,
                previous_state: None,
                next_run: timing.first(now),
                runs: 0,
                active_job: None,
                recent_job: None,
                jobs: BTreeSet::new(),
                end_time: None,
            },
        );
        // A schedule that is due now creates its job at once.
        self.advance_schedule(&key, now);
        Ok(Reply::Created {
            etag: etag(self.schedules[&key].version),
            last_modified: now,
        })
    }

    /// PATCH (`replace: false`: what is present changes) or PUT (`replace: true`: what is
    /// absent goes back to its default; `jobSpecification` is required). A changed `schedule`
    /// takes effect from now, as if the schedule started now; the active job is not touched.
    pub(crate) fn update_job_schedule(
        &mut self,
        id: &str,
        u: JobScheduleUpdate,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.live_schedule(id)?;
        if replace && u.job_specification.is_none() {
            return Err(CoreError::MissingProperty("jobSpecification".into()));
        }
        let schedule = match (u.schedule, replace) {
            (Some(cfg), _) => Some(cfg),
            (None, true) => Some(JobScheduleConfiguration::default()),
            (None, false) => None,
        };
        let timing = schedule.as_ref().map(Timing::parse).transpose()?;
        if let Some(t) = &timing {
            t.check_matches(now)?;
        }
        if let Some(js) = &u.job_specification {
            check_job_specification(js)?;
        }
        let version = self.version();
        let s = self.schedules.get_mut(&key).expect("checked");
        if let (Some(cfg), Some(timing)) = (schedule, timing) {
            if s.spec.schedule.as_ref() != Some(&cfg) {
                s.next_run = timing.first(now);
            }
            s.spec.schedule = Some(cfg);
        }
        if let Some(js) = u.job_specification {
            s.spec.job_specification = js;
        }
        match (u.metadata, replace) {
            (Some(m), _) => s.spec.metadata = m,
            (None, true) => s.spec.metadata.clear(),
            (None, false) => {}
        }
        s.version = version;
        s.last_modified = now;
        self.advance_schedule(&key, now);
        Ok(Reply::Done)
    }

    /// No new jobs until enabled; the active job runs on.
    pub(crate) fn disable_job_schedule(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.live_schedule(id)?;
        self.set_schedule_state(&key, JobScheduleState::Disabled, now);
        Ok(Reply::Done)
    }

    /// Jobs are created again; a due time whose window is still open gets its job now.
    pub(crate) fn enable_job_schedule(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.live_schedule(id)?;
        self.set_schedule_state(&key, JobScheduleState::Active, now);
        self.advance_schedule(&key, now);
        Ok(Reply::Done)
    }

    /// No more jobs; the active job is terminated, and the schedule completes when it has.
    pub(crate) fn terminate_job_schedule(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = self.schedule_key(id)?;
        match self.schedules[&key].state {
            JobScheduleState::Active | JobScheduleState::Disabled => {}
            JobScheduleState::Terminating => return Ok(Reply::Done),
            JobScheduleState::Completed => return Err(CoreError::JobScheduleCompleted(id.into())),
            JobScheduleState::Deleting => {
                return Err(CoreError::JobScheduleBeingDeleted(id.into()))
            }
        }
        self.set_schedule_state(&key, JobScheduleState::Terminating, now);
        let s = self.schedules.get_mut(&key).expect("checked");
        s.next_run = None;
        let active = s.active_job.clone();
        if let Some(jk) = active {
            let ending = self.jobs.get(&jk).map(|j| j.state);
            let running = matches!(
                ending,
                Some(
                    JobState::Active
                        | JobState::Disabled
                        | JobState::Disabling
                        | JobState::Enabling
                )
            );
            if running {
                // Its end (now, or once its runs are killed) completes the schedule. The job's
                // state was just checked, so terminating it cannot be refused.
                let _ = self.terminate_job(&jk, None, now, fx);
            }
        }
        self.complete_schedule_if_done(&key, now);
        Ok(Reply::Done)
    }

    /// The schedule goes `deleting`; each of its jobs is deleted, and the schedule is gone
    /// with the last of them.
    pub(crate) fn delete_job_schedule(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = self.schedule_key(id)?;
        if self.schedules[&key].state == JobScheduleState::Deleting {
            return Ok(Reply::Done);
        }
        self.set_schedule_state(&key, JobScheduleState::Deleting, now);
        let s = self.schedules.get_mut(&key).expect("checked");
        s.next_run = None;
        let jobs: Vec<String> = s.jobs.iter().cloned().collect();
        for jk in jobs {
            // A job already being deleted answers Ok; one the user deleted is gone already.
            // The job exists, so deleting it cannot be refused.
            if self.jobs.contains_key(&jk) {
                let _ = self.delete_job(&jk, now, fx);
            }
        }
        if self.schedules.get(&key).is_some_and(|s| s.jobs.is_empty()) {
            self.schedules.remove(&key);
        }
        Ok(Reply::Done)
    }

    /// Time passed: act on every schedule that is due or past its `doNotRunAfter`.
    pub(crate) fn tick_schedules(&mut self, now: DateTime<Utc>) -> bool {
        let due: Vec<String> = self
            .schedules
            .iter()
            .filter(|(_, s)| {
                let live = matches!(
                    s.state,
                    JobScheduleState::Active | JobScheduleState::Disabled
                );
                let past_end = s
                    .spec
                    .schedule
                    .as_ref()
                    .and_then(|c| c.do_not_run_after)
                    .is_some_and(|a| now > a);
                live && s.next_run.is_some_and(|d| d <= now || past_end)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for key in due {
            changed |= self.advance_schedule(&key, now);
        }
        changed
    }

    /// A job completed: if a schedule created it, the schedule may run its next job, or end.
    pub(crate) fn scheduled_job_ended(&mut self, job_key: &str, now: DateTime<Utc>) {
        let Some(key) = self.jobs.get(job_key).and_then(|j| j.schedule.clone()) else {
            return;
        };
        self.schedule_job_done(&key, job_key, now);
    }

    /// A job of schedule `key` was deleted for good.
    pub(crate) fn scheduled_job_removed(&mut self, key: &str, job_key: &str, now: DateTime<Utc>) {
        if let Some(s) = self.schedules.get_mut(key) {
            s.jobs.remove(job_key);
        }
        self.schedule_job_done(key, job_key, now);
        if self
            .schedules
            .get(key)
            .is_some_and(|s| s.state == JobScheduleState::Deleting && s.jobs.is_empty())
        {
            self.schedules.remove(key);
        }
    }

    fn schedule_job_done(&mut self, key: &str, job_key: &str, now: DateTime<Utc>) {
        let Some(s) = self.schedules.get_mut(key) else {
            return;
        };
        if s.active_job.as_deref() != Some(job_key) {
            return;
        }
        s.active_job = None;
        self.touch_schedule(key);
        self.complete_schedule_if_done(key, now);
        self.advance_schedule(key, now);
    }

    /// A terminating schedule whose job has ended is completed.
    fn complete_schedule_if_done(&mut self, key: &str, now: DateTime<Utc>) {
        let done = self
            .schedules
            .get(key)
            .is_some_and(|s| s.state == JobScheduleState::Terminating && s.active_job.is_none());
        if done {
            self.finish_schedule(key, now);
        }
    }

    fn finish_schedule(&mut self, key: &str, now: DateTime<Utc>) {
        self.set_schedule_state(key, JobScheduleState::Completed, now);
        if let Some(s) = self.schedules.get_mut(key) {
            s.next_run = None;
            s.end_time = Some(now);
        }
    }

    /// Bring an active or disabled schedule up to `now`: skip due times that can no longer
    /// run, create the job of the one that is due, complete the schedule when nothing is left.
    /// Returns whether anything changed.
    pub(crate) fn advance_schedule(&mut self, key: &str, now: DateTime<Utc>) -> bool {
        let Some(s) = self.schedules.get(key) else {
            return false;
        };
        if !matches!(
            s.state,
            JobScheduleState::Active | JobScheduleState::Disabled
        ) {
            return false;
        }
        // The schedule was checked when it was set; a failure here cannot happen, and would
        // only mean that no job is due any more.
        let timing = Timing::parse(&config(&s.spec)).ok();
        let mut next = s.next_run;
        if let (Some(due), Some(t)) = (next, &timing) {
            if due <= now {
                let current = t.latest(due, now);
                let open = t.window_closes(current).is_none_or(|end| now < end);
                next = if open {
                    Some(current)
                } else {
                    t.following(current)
                };
            }
            if t.do_not_run_after().is_some_and(|after| now > after) {
                next = None;
            }
        }
        if timing.is_none() {
            next = None;
        }
        let mut changed = next != s.next_run;
        let runnable = s.state == JobScheduleState::Active && s.active_job.is_none();
        if changed {
            self.schedules.get_mut(key).expect("looked up").next_run = next;
            self.touch_schedule(key);
        }
        if let (Some(due), Some(t), true) = (next, &timing, runnable) {
            if due <= now {
                self.run_scheduled_job(key, now);
                self.schedules.get_mut(key).expect("looked up").next_run = t.following(due);
                changed = true;
            }
        }
        let s = &self.schedules[key];
        if s.next_run.is_none() && s.active_job.is_none() {
            self.finish_schedule(key, now);
            changed = true;
        }
        changed
    }

    /// Create the schedule's next job from its job specification.
    fn run_scheduled_job(&mut self, key: &str, now: DateTime<Utc>) {
        let s = &self.schedules[key];
        let mut n = s.runs + 1;
        // Job ids with a ':' cannot be created by users, so this only skips ids of jobs a
        // deleted schedule of the same name left behind while they were being deleted.
        while self
            .jobs
            .contains_key(&id_key(&format!("{}:job-{n}", s.spec.id)))
        {
            n += 1;
        }
        let id = format!("{}:job-{n}", s.spec.id);
        let spec = s.spec.job_specification.to_job(id.clone());
        let jk = id_key(&id);
        self.insert_job(spec, Some(key.to_string()), now);
        let version = self.version();
        let s = self.schedules.get_mut(key).expect("looked up");
        s.runs = n;
        s.active_job = Some(jk.clone());
        s.recent_job = Some(id);
        s.jobs.insert(jk);
        s.version = version;
    }
}
