//! Jobs: create, terminate, delete, complete.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use openbatch_api::models::{JobCreate, JobState, OnAllTasksComplete, TaskCounts};

use crate::input::{Effect, Reply};
use crate::state::{etag, Core, Job};
use crate::{id_key, valid_id, CoreError};

impl Core {
    pub(crate) fn create_job(
        &mut self,
        spec: JobCreate,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        if !valid_id(&spec.id) {
            return Err(CoreError::invalid(
                "id",
                &spec.id,
                "a job id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        let key = id_key(&spec.id);
        if let Some(j) = self.jobs.get(&key) {
            return Err(if j.state == JobState::Deleting {
                CoreError::JobBeingDeleted(spec.id)
            } else {
                CoreError::JobExists(spec.id)
            });
        }
        if self.schedules.contains_key(&key) {
            return Err(CoreError::JobScheduleWithSameIdExists(spec.id));
        }
        check_job_spec(&spec)?;
        let version = self.insert_job(spec, None, now);
        Ok(Reply::Created {
            etag: etag(version),
            last_modified: now,
        })
    }

    /// Record a new, validated job (`schedule`: the key of the job schedule that created it).
    /// Returns its version.
    pub(crate) fn insert_job(
        &mut self,
        spec: JobCreate,
        schedule: Option<String>,
        now: DateTime<Utc>,
    ) -> u64 {
        let key = id_key(&spec.id);
        let seq = self.seq();
        let version = self.version();
        self.jobs.insert(
            key.clone(),
            Job {
                spec,
                seq,
                version,
                created: now,
                last_modified: now,
                state: JobState::Active,
                state_time: now,
                previous_state: None,
                end_time: None,
                terminate_reason: None,
                tasks: BTreeMap::new(),
                counts: TaskCounts::default(),
                slot_counts: TaskCounts::default(),
                next_task_seq: 1,
                deps: Default::default(),
                schedule,
                node_tasks: BTreeMap::new(),
                ran_on: Default::default(),
            },
        );
        self.add_job_manager(&key, now);
        version
    }

    pub(crate) fn set_job_state(&mut self, key: &str, state: JobState, now: DateTime<Utc>) {
        let version = self.version();
        if let Some(job) = self.jobs.get_mut(key) {
            if job.state != state {
                job.previous_state = Some((job.state, job.state_time));
                job.state = state;
                job.state_time = now;
                job.version = version;
            }
        }
    }

    /// Take a job's waiting tasks out of the run queue and kill its runs.
    fn stop_job_tasks(&mut self, key: &str, fx: &mut Vec<Effect>) -> usize {
        let Some(job) = self.jobs.get(key) else {
            return 0;
        };
        let mut waiting = Vec::new();
        let mut runs = Vec::new();
        let mut gangs = Vec::new();
        for (tk, t) in &job.tasks {
            match t.current_run {
                Some(run) => runs.push(run),
                None => waiting.push(tk.clone()),
            }
            if !t.gang.is_empty() {
                gangs.push(tk.clone());
            }
        }
        for tk in waiting {
            self.dequeue(key, &tk);
        }
        for tk in gangs {
            self.kill_instances(key, &tk, fx);
        }
        for run in &runs {
            if let Some((_, _, node)) = self.runs.get(run) {
                fx.push(Effect::KillTask {
                    node: node.clone(),
                    run: *run,
                });
            }
            self.mark_run_terminating(*run);
        }
        self.kill_preparations(key, fx);
        runs.len()
    }

    pub(crate) fn terminate_job(
        &mut self,
        id: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let job = self
            .jobs
            .get(&key)
            .ok_or_else(|| CoreError::JobNotFound(id.into()))?;
        match job.state {
            JobState::Completed | JobState::Terminating => {
                return Err(CoreError::JobCompleted(id.into()))
            }
            JobState::Deleting => return Err(CoreError::JobBeingDeleted(id.into())),
            _ => {}
        }
        self.end_job(
            &key,
            reason.unwrap_or_else(|| "UserTerminate".into()),
            now,
            fx,
        );
        Ok(Reply::Done)
    }

    /// terminating -> completed once no run of the job is left.
    pub(crate) fn end_job(
        &mut self,
        key: &str,
        reason: String,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let running = self.stop_job_tasks(key, fx);
        if let Some(job) = self.jobs.get_mut(key) {
            job.terminate_reason = Some(reason);
        }
        self.set_job_state(key, JobState::Terminating, now);
        if running == 0 && self.job_tasks_done(key, now, fx) {
            self.finish_job(key, now);
        }
    }

    fn finish_job(&mut self, key: &str, now: DateTime<Utc>) {
        self.set_job_state(key, JobState::Completed, now);
        if let Some(job) = self.jobs.get_mut(key) {
            job.end_time = Some(now);
        }
        self.scheduled_job_ended(key, now);
    }

    /// Forget a deleted job whose runs are all gone; its job schedule, if any, learns of it.
    fn remove_job(&mut self, key: &str, now: DateTime<Utc>) {
        let Some(job) = self.jobs.remove(key) else {
            return;
        };
        self.tally.job_tasks(&job, -1);
        self.deferred.push(Effect::DiscardLogs {
            job: job.spec.id.clone(),
            task: None,
            before_run: self.next_run,
        });
        self.job_removed_dirs(key, &job);
        if let Some(schedule) = job.schedule {
            self.scheduled_job_removed(&schedule, key, now);
        }
    }

    pub(crate) fn delete_job(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let job = self
            .jobs
            .get(&key)
            .ok_or_else(|| CoreError::JobNotFound(id.into()))?;
        if job.state == JobState::Deleting {
            return Ok(Reply::Done);
        }
        let running = self.stop_job_tasks(&key, fx);
        self.set_job_state(&key, JobState::Deleting, now);
        if running == 0 && self.job_tasks_done(&key, now, fx) {
            self.remove_job(&key, now);
        }
        Ok(Reply::Done)
    }

    /// After a task completed: a terminating or deleting job may be done; a job whose
    /// `onAllTasksComplete` is `terminatejob` ends when its last task does.
    pub(crate) fn maybe_complete_job(
        &mut self,
        key: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get(key) else {
            return;
        };
        let in_flight = job.counts.running;
        let all_done = job.spec.on_all_tasks_complete == Some(OnAllTasksComplete::TerminateJob)
            && job.counts.active == 0
            && in_flight == 0
            && job.counts.completed > 0;
        let state = job.state;
        match state {
            // Its tasks are gone; its preparation and release runs may not be yet.
            JobState::Deleting if in_flight == 0 && self.job_tasks_done(key, now, fx) => {
                self.remove_job(key, now)
            }
            JobState::Terminating if in_flight == 0 && self.job_tasks_done(key, now, fx) => {
                self.finish_job(key, now)
            }
            JobState::Disabling if in_flight == 0 => {
                self.set_job_state(key, JobState::Disabled, now)
            }
            JobState::Active if all_done => {
                self.end_job(key, "AllTasksComplete".into(), now, fx);
            }
            _ => {}
        }
    }

    /// `onAllTasksComplete` was just changed to `terminatejob` (job update, which Azure allows
    /// for this very use: add the tasks, then switch it on). The rule holds from now on, so a
    /// job whose tasks are all completed ends at once. That includes a job with no task: "if a
    /// Job contains no Tasks, then all Tasks are considered complete". (A job *created* with
    /// `terminatejob` and no task is not ended at creation: that would race with the tasks its
    /// creator adds next. It ends when its last task completes.)
    pub(crate) fn terminate_job_when_all_complete(
        &mut self,
        key: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get(key) else {
            return;
        };
        if job.state == JobState::Active
            && job.spec.on_all_tasks_complete == Some(OnAllTasksComplete::TerminateJob)
            && job.counts.active == 0
            && job.counts.running == 0
        {
            self.end_job(key, "AllTasksComplete".into(), now, fx);
        }
    }

    /// Time-driven: a job that outlived its `constraints.maxWallClockTime`, counted from its
    /// creation, is terminated with `MaxWallClockTimeExpiry`, its running tasks killed (Azure:
    /// "If the Job does not complete within the time limit, the Batch service terminates it
    /// and any Tasks that are still running"). Returns whether any job expired.
    pub(crate) fn expire_jobs(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let expired: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                matches!(
                    j.state,
                    JobState::Active
                        | JobState::Disabling
                        | JobState::Disabled
                        | JobState::Enabling
                )
            })
            .filter(|(_, j)| {
                j.spec
                    .constraints
                    .and_then(|c| c.max_wall_clock_time)
                    .and_then(|d| d.as_duration())
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .is_some_and(|limit| now - j.created >= limit)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.end_job(key, "MaxWallClockTimeExpiry".into(), now, fx);
        }
        !expired.is_empty()
    }
}

/// Azure's limits on a job's settings: priority in -1000..=1000, and `maxParallelTasks` -1
/// (unlimited) or positive. Checked on create, update and replace alike.
pub(crate) fn check_job_limits(
    priority: Option<i32>,
    max_parallel: Option<i32>,
) -> Result<(), CoreError> {
    if let Some(p) = priority {
        if !(-1000..=1000).contains(&p) {
            return Err(CoreError::invalid(
                "priority",
                p,
                "must be between -1000 and 1000",
            ));
        }
    }
    if let Some(m) = max_parallel {
        if m == 0 || m < -1 {
            return Err(CoreError::invalid(
                "maxParallelTasks",
                m,
                "must be -1 (unlimited) or greater than 0",
            ));
        }
    }
    Ok(())
}

/// What a job's specification must satisfy, whether it comes from `POST /jobs` or from a job
/// schedule's `jobSpecification`.
pub(crate) fn check_job_spec(spec: &JobCreate) -> Result<(), CoreError> {
    match (&spec.pool_info.pool_id, &spec.pool_info.auto_pool_specification) {
        (Some(p), _) if !p.is_empty() => {}
        (_, Some(_)) => {
            return Err(CoreError::Unsupported(
                "Auto pools (poolInfo.autoPoolSpecification) are not supported yet by this openbatch server; create a pool and set poolInfo.poolId.".into(),
            ))
        }
        _ => return Err(CoreError::MissingProperty("poolInfo.poolId".into())),
    }
    check_job_limits(spec.priority, spec.max_parallel_tasks)?;
    crate::jobtasks::check_job_tasks(spec)
}
