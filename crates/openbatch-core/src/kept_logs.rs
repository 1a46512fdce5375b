//! Which of the task logs the server keeps in storage (`jobs/<job>/<task>/<run>/`, see the
//! server's `logs.rs`) still belong to something, and the discards that must wait for a run.
//!
//! `Effect::DiscardLogs` is emitted when a job or task record is gone for good. Two things
//! could still leave logs behind, and are handled here:
//!
//! * A run of a deleted task that was still in flight uploads its logs when it ends, after the
//!   discard. Such runs are noted in `Core::discard_after` (durable state) when the task is
//!   removed, and when the run ends (its report, or its loss) the core emits a second
//!   `DiscardLogs` that covers it.
//! * Effects are not replayed: a crash between journaling a delete and deleting the objects
//!   leaves them behind. The server sweeps the container at start and asks
//!   [`Core::keeps_logs_of`] about each run directory.

use crate::id_key;
use crate::input::Effect;
use crate::state::{Core, RunId};

impl Core {
    /// Whether the kept logs of run `run` of task `task_id` of job `job_id` (ids as in the
    /// storage path) belong to a job and task the core still has: a task of the job, or its
    /// job preparation or release task. A job or task created again under the same id keeps
    /// its predecessor's logs here; they go when it is deleted (the discard covers every
    /// earlier run).
    pub fn keeps_logs_of(&self, job_id: &str, task_id: &str) -> bool {
        let Some(job) = self.jobs.get(&id_key(job_id)) else {
            return false;
        };
        let key = id_key(task_id);
        job.tasks.contains_key(&key)
            || job
                .spec
                .job_preparation_task
                .as_ref()
                .is_some_and(|p| id_key(p.task_id()) == key)
            || job
                .spec
                .job_release_task
                .as_ref()
                .is_some_and(|r| id_key(r.task_id()) == key)
    }

    /// A task is being removed while `runs` of it may still be in flight: their logs are
    /// discarded when they end.
    pub(crate) fn discard_logs_after(&mut self, job_id: &str, task_id: &str, runs: &[RunId]) {
        for run in runs {
            if self.runs.contains_key(run) {
                self.discard_after
                    .insert(*run, (job_id.to_string(), task_id.to_string()));
            }
        }
    }

    /// Run `run` ended or was lost: if its task was removed meanwhile, its logs (uploaded
    /// before the report) go too.
    pub(crate) fn run_released_for_logs(&mut self, run: RunId) {
        if let Some((job, task)) = self.discard_after.remove(&run) {
            self.deferred.push(Effect::DiscardLogs {
                job,
                task: Some(task),
                before_run: run + 1,
            });
        }
    }
}
