//! Tasks: adding, completing, retrying, requeueing, terminating, deleting.

use chrono::{DateTime, Utc};
use openbatch_api::error::ApiError;
use openbatch_api::models::{
    ErrorCategory, ExecutionResult, FailureInfo, JobState, TaskAddResult, TaskAddStatus,
    TaskCreate, TaskExecutionInfo, TaskInfo, TaskState,
};

use crate::exits::Ending;
use crate::input::{Effect, Reply, RunResult};
use crate::state::{etag, Core, Task};
use crate::{id_key, valid_id, CoreError};

/// The failure Azure reports for a non-zero exit code.
pub(crate) fn exit_code_failure(code: Option<i32>) -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::UserError,
        code: Some("FailureExitCode".into()),
        message: Some(match code {
            Some(c) => format!("The task process exited with an unexpected exit code: {c}"),
            None => "The task process ended without an exit code".into(),
        }),
        details: vec![openbatch_api::models::NameValuePair {
            name: Some("Message".into()),
            value: Some("The task process exited with an unexpected exit code".into()),
        }],
    }
}

/// The failure Azure reports for a task ended by a user request.
fn terminated_failure() -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::UserError,
        code: Some("TaskEnded".into()),
        message: Some("Task Was Ended by User Request".into()),
        details: Vec::new(),
    }
}

impl Core {
    pub(crate) fn add_tasks(
        &mut self,
        job_id: &str,
        tasks: Vec<TaskCreate>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskAddResult>, CoreError> {
        let jk = id_key(job_id);
        let job = self
            .jobs
            .get(&jk)
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        match job.state {
            JobState::Completed | JobState::Terminating => {
                return Err(CoreError::JobCompleted(job_id.into()))
            }
            JobState::Deleting => return Err(CoreError::JobBeingDeleted(job_id.into())),
            _ => {}
        }
        if tasks.len() > self.limits.max_tasks_per_collection {
            return Err(CoreError::TooManyTasks(format!(
                "The request adds {} tasks; at most {} tasks can be added in one request.",
                tasks.len(),
                self.limits.max_tasks_per_collection
            )));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for spec in tasks {
            let task_id = spec.id.clone();
            match self.add_task(&jk, spec, now) {
                Ok(version) => results.push(TaskAddResult {
                    status: TaskAddStatus::Success,
                    task_id,
                    e_tag: Some(etag(version)),
                    last_modified: Some(now),
                    location: None,
                    error: None,
                }),
                Err(e) => {
                    let api: ApiError = e.into();
                    let status = if api.status >= 500 {
                        TaskAddStatus::ServerError
                    } else {
                        TaskAddStatus::ClientError
                    };
                    results.push(TaskAddResult {
                        status,
                        task_id,
                        e_tag: None,
                        last_modified: None,
                        location: None,
                        error: Some(api.to_body("", &crate::view::iso(now))),
                    })
                }
            }
        }
        Ok(results)
    }

    pub(crate) fn add_task(
        &mut self,
        jk: &str,
        spec: TaskCreate,
        now: DateTime<Utc>,
    ) -> Result<u64, CoreError> {
        if !valid_id(&spec.id) {
            return Err(CoreError::invalid(
                "id",
                &spec.id,
                "a task id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        if spec.command_line.trim().is_empty() {
            return Err(CoreError::MissingProperty("commandLine".into()));
        }
        if let Some(slots) = spec.required_slots {
            if slots < 1 {
                return Err(CoreError::invalid(
                    "requiredSlots",
                    slots,
                    "must be at least 1",
                ));
            }
        }
        crate::gang::check(&spec)?;
        check_resource_files("resourceFiles", &spec.resource_files)?;
        check_output_files(&spec.output_files)?;
        self.check_package_refs(&spec.application_package_references, false)?;
        let tk = id_key(&spec.id);
        let job = self.jobs.get(jk).expect("caller checked");
        if job.tasks.contains_key(&tk) {
            return Err(CoreError::TaskExists(job.spec.id.clone(), spec.id));
        }
        self.check_task_id_free(jk, &spec.id)?;
        if let Some(conditions) = &spec.exit_conditions {
            crate::exits::check(conditions, job.spec.on_task_failure)?;
        }
        if let Some(deps) = &spec.depends_on {
            if !job.uses_dependencies() {
                return Err(CoreError::DependenciesNotOnJob(job.spec.id.clone()));
            }
            crate::deps::check(&spec.id, deps)?;
        }
        let version = self.version();
        let job = self.jobs.get_mut(jk).expect("caller checked");
        let seq = job.next_task_seq;
        job.next_task_seq += 1;
        let task = Task {
            spec,
            seq,
            version,
            created: now,
            last_modified: now,
            state: TaskState::Active,
            state_time: now,
            previous_state: None,
            exec: TaskExecutionInfo::default(),
            location: None,
            current_run: None,
            terminating: false,
            dependency_action: None,
            job_manager: false,
            gang: Vec::new(),
            coordinated: Default::default(),
            subtasks: Vec::new(),
            ran_on: Default::default(),
            retention_at: None,
        };
        let slots = task.required_slots() as i64;
        job.counts.active += 1;
        job.slot_counts.active += slots;
        self.tally.task(&job.pool_key(), TaskState::Active, 1);
        job.tasks.insert(tk.clone(), task);
        self.deps_task_added(jk, &tk);
        self.enqueue(jk, &tk);
        Ok(version)
    }

    /// Put an active task in its pool's run queue, unless it waits for a dependency.
    pub(crate) fn enqueue(&mut self, jk: &str, tk: &str) {
        let Some(job) = self.jobs.get(jk) else { return };
        if job.state != JobState::Active {
            return;
        }
        let Some(task) = job.tasks.get(tk) else {
            return;
        };
        if task.state != TaskState::Active || task.current_run.is_some() || job.deps.is_blocked(tk)
        {
            return;
        }
        let pool = job.pool_key();
        if self.task_never_fits(&pool, jk, task) {
            self.unrunnable.push((jk.to_string(), tk.to_string()));
            return;
        }
        let jq = self
            .queues
            .entry(pool.clone())
            .or_default()
            .entry((std::cmp::Reverse(job.priority()), job.seq))
            .or_insert_with(|| crate::state::JobQueue {
                job: jk.to_string(),
                by_slots: Default::default(),
                gangs: Default::default(),
            });
        match task.instances() {
            Some(n) => {
                jq.gangs.insert(task.seq, (tk.to_string(), n));
            }
            None => {
                jq.by_slots
                    .entry(task.required_slots())
                    .or_default()
                    .insert(task.seq, tk.to_string());
            }
        }
        self.dirty_pools.insert(pool);
    }

    /// Whether the task waits in its pool's run queue (where `enqueue` put it: a gang among
    /// the job's gangs, any other task in its slots bucket).
    pub(crate) fn is_queued(&self, jk: &str, tk: &str) -> bool {
        let Some(job) = self.jobs.get(jk) else {
            return false;
        };
        let Some(task) = job.tasks.get(tk) else {
            return false;
        };
        let Some(jq) = self
            .queues
            .get(&job.pool_key())
            .and_then(|q| q.get(&(std::cmp::Reverse(job.priority()), job.seq)))
        else {
            return false;
        };
        match task.instances() {
            Some(_) => jq.gangs.contains_key(&task.seq),
            None => jq
                .by_slots
                .get(&task.required_slots())
                .is_some_and(|b| b.contains_key(&task.seq)),
        }
    }

    pub(crate) fn dequeue(&mut self, jk: &str, tk: &str) {
        let Some(job) = self.jobs.get(jk) else { return };
        let Some(task) = job.tasks.get(tk) else {
            return;
        };
        let order = (std::cmp::Reverse(job.priority()), job.seq);
        let pool = job.pool_key();
        if let Some(q) = self.queues.get_mut(&pool) {
            if let Some(jq) = q.get_mut(&order) {
                if task.instances().is_some() {
                    jq.gangs.remove(&task.seq);
                } else if let Some(bucket) = jq.by_slots.get_mut(&task.required_slots()) {
                    bucket.remove(&task.seq);
                    if bucket.is_empty() {
                        jq.by_slots.remove(&task.required_slots());
                    }
                }
                if jq.is_empty() {
                    q.remove(&order);
                }
            }
        }
    }

    /// Change a task's state, keeping the job's counts exact.
    pub(crate) fn set_task_state(
        &mut self,
        jk: &str,
        tk: &str,
        state: TaskState,
        now: DateTime<Utc>,
    ) {
        let version = self.version();
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        let Some(task) = job.tasks.get_mut(tk) else {
            return;
        };
        let slots = task.required_slots() as i64;
        let old = (task.state, task.exec.result);
        let was_done = task.state == TaskState::Completed;
        let was_satisfying = task.satisfies_dependents();
        task.previous_state = Some((task.state, task.state_time));
        task.state = state;
        task.state_time = now;
        task.version = version;
        if state != TaskState::Completed {
            task.dependency_action = None;
        }
        let new = (task.state, task.exec.result);
        let running = |s: TaskState| matches!(s, TaskState::Preparing | TaskState::Running);
        if job.state == JobState::Disabling && running(old.0) && !running(state) {
            // The job may be done disabling (`maybe_complete_job`, at the end of the input).
            self.ending_jobs.insert(jk.to_string());
        }
        adjust(&mut job.counts, old, -1);
        adjust(&mut job.slot_counts, old, -slots);
        adjust(&mut job.counts, new, 1);
        adjust(&mut job.slot_counts, new, slots);
        self.tally.changed(&job.pool_key(), old.0, new.0, new.1);
        self.deps_task_changed(jk, tk, was_done, was_satisfying);
        self.refresh_retention(jk, tk);
    }

    /// Remove a task's record, keeping the job's counts exact.
    fn remove_task(&mut self, jk: &str, tk: &str) {
        self.dequeue(jk, tk);
        self.deps_task_removed(jk, tk);
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        if let Some(task) = job.tasks.remove(tk) {
            let slots = task.required_slots() as i64;
            adjust(&mut job.counts, (task.state, task.exec.result), -1);
            adjust(&mut job.slot_counts, (task.state, task.exec.result), -slots);
            self.tally.task(&job.pool_key(), task.state, -1);
            let job_id = job.spec.id.clone();
            if task.location.is_some() {
                let job_id = job.spec.id.clone();
                self.deferred.push(Effect::DiscardLogs {
                    job: job_id.clone(),
                    task: Some(task.spec.id.clone()),
                    before_run: self.next_run,
                });
                // A run still in flight uploads its logs when it ends, after this discard.
                let in_flight: Vec<u64> = task
                    .current_run
                    .into_iter()
                    .chain(task.gang.iter().map(|(run, _)| *run))
                    .collect();
                self.discard_logs_after(&job_id, &task.spec.id, &in_flight);
            }
            self.unindex_retention(jk, tk, &task);
            self.task_removed_dirs(&job_id, &task);
        }
    }

    pub(crate) fn delete_task(
        &mut self,
        job_id: &str,
        task_id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        let run = self.jobs[&jk].tasks[&tk].current_run;
        if let Some(run) = run {
            if let Some((_, _, node)) = self.runs.get(&run) {
                fx.push(Effect::KillTask {
                    node: node.clone(),
                    run,
                });
            }
            self.kill_instances(&jk, &tk, fx);
            // The run's slots stay taken until the node reports the kill.
        }
        self.remove_task(&jk, &tk);
        self.maybe_complete_job(&jk, now, fx);
        Ok(Reply::Done)
    }

    pub(crate) fn terminate_task(
        &mut self,
        job_id: &str,
        task_id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        let task = &self.jobs[&jk].tasks[&tk];
        match (task.state, task.current_run) {
            (TaskState::Completed, _) => Ok(Reply::Done),
            (_, Some(run)) => {
                if let Some((_, _, node)) = self.runs.get(&run) {
                    fx.push(Effect::KillTask {
                        node: node.clone(),
                        run,
                    });
                }
                self.kill_instances(&jk, &tk, fx);
                self.mark_run_terminating(run);
                Ok(Reply::Done)
            }
            (_, None) => {
                self.dequeue(&jk, &tk);
                if let Some(t) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) {
                    t.exec.result = Some(ExecutionResult::Failure);
                    t.exec.end_time = Some(now);
                    t.exec.failure_info = Some(terminated_failure());
                }
                let ending = self.jobs[&jk].tasks[&tk].requested_ending();
                self.complete_task(&jk, &tk, ending, now, fx);
                Ok(Reply::Done)
            }
        }
    }

    pub(crate) fn mark_run_terminating(&mut self, run: u64) {
        if let Some((jk, tk, _)) = self.runs.get(&run) {
            if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
                t.terminating = true;
            }
        }
    }

    pub(crate) fn find_task(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<(String, String), CoreError> {
        let jk = id_key(job_id);
        let job = self
            .jobs
            .get(&jk)
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        let tk = id_key(task_id);
        if !job.tasks.contains_key(&tk) {
            return Err(CoreError::TaskNotFound(job_id.into(), task_id.into()));
        }
        Ok((jk, tk))
    }

    /// Release a run's slots on its node; returns (job key, task key) if the run was known.
    fn release_run(&mut self, run: u64) -> Option<(String, String, String)> {
        let (jk, tk, node_id) = self.runs.remove(&run)?;
        self.run_released_for_logs(run);
        if let Some(node) = self.nodes.get_mut(&node_id) {
            if let Some((_, _, slots)) = node.running.remove(&run) {
                node.used_slots = node.used_slots.saturating_sub(slots);
            }
            node.waiting.remove(&run);
            self.dirty_pools.insert(node.pool.clone());
        }
        self.refresh_capacity(&node_id);
        self.run_dir_released(&node_id, &jk);
        Some((jk, tk, node_id))
    }

    /// A run just requeued off a node that stays in service, with a kill on its way there,
    /// keeps its slots until the agent reports its end: the next task must not start beside a
    /// process that is still being killed (a GPU or memory it holds would not be free yet).
    /// Multi-instance runs are left out: a gang takes only empty nodes, and a node still
    /// killing is not empty.
    pub(crate) fn hold_until_killed(&mut self, node_id: &str, run: u64, slots: u32) {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return;
        };
        if slots == 0 || node.running.contains_key(&run) || node.killing.contains_key(&run) {
            return;
        }
        node.killing.insert(run, slots);
        node.used_slots += slots;
        self.refresh_capacity(node_id);
    }

    /// Where a run about to be killed and requeued runs, and its slots, if it is one whose
    /// slots [`Core::hold_until_killed`] should keep: a started run of an ordinary task (not an
    /// instance of a gang, not one still waiting for its job's preparation task).
    pub(crate) fn killed_run_slots(&self, run: u64) -> Option<(String, u32)> {
        if self.gang_of(run).is_some() {
            return None;
        }
        let (_, _, node_id) = self.runs.get(&run)?;
        let node = self.nodes.get(node_id)?;
        if node.waiting.contains(&run) {
            return None;
        }
        let (_, _, slots) = node.running.get(&run)?;
        Some((node_id.clone(), *slots))
    }

    /// The agent reported the end of a run killed by [`Core::hold_until_killed`] (or no longer
    /// has it): its slots are free. Returns whether it was held.
    pub(crate) fn killed_run_ended(&mut self, node_id: &str, run: u64) -> bool {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return false;
        };
        let Some(slots) = node.killing.remove(&run) else {
            return false;
        };
        node.used_slots = node.used_slots.saturating_sub(slots);
        let pool = node.pool.clone();
        self.refresh_capacity(node_id);
        self.dirty_pools.insert(pool);
        true
    }

    fn node_became_free(&mut self, node_id: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        if let Some(node) = self.nodes.get(node_id) {
            if node.running.is_empty() {
                if let (Some(reimage), None) = (node.pending_restart, node.leaving) {
                    self.begin_restart(node_id, reimage, now, fx);
                } else if node.state == openbatch_api::models::NodeState::Running {
                    let state = self.settled_state(node_id);
                    self.set_node_state(node_id, state, now);
                }
            } else if !node.runs_tasks() && node.state == openbatch_api::models::NodeState::Running
            {
                // Only job preparation or release runs are left: the node is idle for tasks.
                let state = self.settled_state(node_id);
                self.set_node_state(node_id, state, now);
            }
        }
        self.remove_if_drained(node_id, fx);
    }

    /// A run goes back to the queue without using a retry (node lost, removed, requeued).
    pub(crate) fn requeue_run(&mut self, run: u64, now: DateTime<Utc>) {
        if let Some((jk, tk)) = self.gang_of(run) {
            return self.requeue_gang(run, &jk, &tk, now);
        }
        let Some((jk, tk, node_id)) = self.release_run(run) else {
            return;
        };
        let mut noop = Vec::new();
        self.node_became_free(&node_id, now, &mut noop);
        if crate::jobtasks::is_job_task_key(&tk) {
            self.job_task_lost(&jk, &tk, &node_id, run, now);
            return;
        }
        let Some(job) = self.jobs.get_mut(&jk) else {
            return;
        };
        let pool_key = job.pool_key();
        let Some(task) = job.tasks.get_mut(&tk) else {
            return;
        };
        if task.current_run != Some(run) {
            return;
        }
        task.current_run = None;
        task.exec.requeue_count += 1;
        self.tally.requeued(&pool_key);
        task.exec.last_requeue_time = Some(now);
        if task.terminating {
            task.exec.result = Some(ExecutionResult::Failure);
            task.exec.end_time = Some(now);
            task.exec.failure_info = Some(terminated_failure());
            let ending = task.requested_ending();
            self.complete_task(&jk, &tk, ending, now, &mut noop);
            return;
        }
        self.set_task_state(&jk, &tk, TaskState::Active, now);
        self.enqueue(&jk, &tk);
    }

    pub(crate) fn task_completed(
        &mut self,
        node_id: &str,
        run: u64,
        result: RunResult,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if self.killed_run_ended(node_id, run) {
            self.node_became_free(node_id, now, fx);
            return true;
        }
        if self.gang_of(run).is_some() {
            return self.gang_run_ended(node_id, run, result, now, fx);
        }
        let Some((jk, tk, ran_on)) = self.release_run(run) else {
            // A report of a run we no longer track (deleted task, duplicate report): only the
            // node's slot bookkeeping could be affected, and release_run already handled it.
            if let Some(node) = self.nodes.get_mut(node_id) {
                if let Some((_, _, slots)) = node.running.remove(&run) {
                    node.used_slots = node.used_slots.saturating_sub(slots);
                    let pool = node.pool.clone();
                    self.refresh_capacity(node_id);
                    self.dirty_pools.insert(pool);
                    self.node_became_free(node_id, now, fx);
                    return true;
                }
            }
            return false;
        };
        if crate::jobtasks::is_job_task_key(&tk) {
            self.node_became_free(&ran_on, now, fx);
            self.job_task_ended(&jk, &tk, (&ran_on, run), result, now, fx);
            return true;
        }
        let failed = result.failure.is_some() || result.exit_code != Some(0);
        let job_retries = self
            .jobs
            .get(&jk)
            .and_then(|j| j.spec.constraints.and_then(|c| c.max_task_retry_count));
        if let Some(node) = self.nodes.get_mut(&ran_on) {
            node.total_tasks_run += 1;
            if !failed {
                node.total_tasks_succeeded += 1;
            }
        }
        self.node_became_free(&ran_on, now, fx);
        let job_id = self.jobs.get(&jk).map(|j| j.spec.id.clone());
        let Some(task) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) else {
            // The task was deleted while this run was in flight.
            self.maybe_complete_job(&jk, now, fx);
            return true;
        };
        if task.current_run != Some(run) {
            return true;
        }
        task.current_run = None;
        if let Some(loc) = task.location.as_mut().filter(|l| l.run == Some(run)) {
            loc.empty_logs = result.empty_logs.clone();
            loc.ended = Some(result.end_time);
        }
        task.exec.start_time = Some(result.start_time);
        task.exec.end_time = Some(result.end_time);
        task.exec.exit_code = result.exit_code;
        let max_retries = task
            .spec
            .constraints
            .and_then(|c| c.max_task_retry_count)
            .or(job_retries)
            .unwrap_or(0);
        let terminated = task.terminating;
        if failed {
            task.exec.result = Some(ExecutionResult::Failure);
            task.exec.failure_info = Some(if terminated {
                terminated_failure()
            } else {
                result
                    .failure
                    .clone()
                    .unwrap_or_else(|| exit_code_failure(result.exit_code))
            });
        } else {
            task.exec.result = Some(ExecutionResult::Success);
            task.exec.failure_info = None;
        }
        let retry =
            failed && !terminated && (max_retries == -1 || task.exec.retry_count < max_retries);
        let info = TaskInfo {
            task_url: None,
            job_id,
            task_id: Some(task.spec.id.clone()),
            subtask_id: None,
            task_state: if retry {
                TaskState::Active
            } else {
                TaskState::Completed
            },
            execution_info: Some(task.exec.clone()),
        };
        let recent_limit = self.limits.recent_tasks_per_node;
        if let Some(node) = self.nodes.get_mut(&ran_on) {
            node.recent_tasks.push_front(info);
            node.recent_tasks.truncate(recent_limit);
        }
        let task = self
            .jobs
            .get_mut(&jk)
            .and_then(|j| j.tasks.get_mut(&tk))
            .expect("looked up above");
        if retry {
            task.exec.retry_count += 1;
            task.exec.last_retry_time = Some(now);
            if let Some(job) = self.jobs.get(&jk) {
                self.tally.retried(&job.pool_key());
            }
            self.set_task_state(&jk, &tk, TaskState::Active, now);
            self.enqueue(&jk, &tk);
        } else {
            let ending = if terminated {
                task.requested_ending()
            } else {
                Ending {
                    exit_code: result.exit_code,
                    success: !failed,
                    pre_processing_error: result.pre_processing_error,
                    file_upload_error: result.file_upload_error,
                    requested: false,
                }
            };
            self.complete_task(&jk, &tk, ending, now, fx);
        }
        true
    }
}

fn adjust(
    counts: &mut openbatch_api::models::TaskCounts,
    (state, result): (TaskState, Option<ExecutionResult>),
    by: i64,
) {
    match state {
        TaskState::Active => counts.active += by,
        TaskState::Preparing | TaskState::Running => counts.running += by,
        TaskState::Completed => {
            counts.completed += by;
            match result {
                Some(ExecutionResult::Failure) => counts.failed += by,
                _ => counts.succeeded += by,
            }
        }
    }
}

/// Each resource file names exactly one source; `blobPrefix` only goes with a container
/// source. The generic checks of every `resourceFiles` list (tasks, start tasks, and later job
/// preparation/release and multi-instance `commonResourceFiles`): where a file may land
/// (`filePath` inside the working directory) is checked by the node, which reports a
/// `usererror` for a path that escapes it.
pub(crate) fn check_resource_files(
    property: &str,
    files: &[openbatch_api::models::ResourceFile],
) -> Result<(), CoreError> {
    for f in files {
        let sources = [
            f.http_url.is_some(),
            f.storage_container_url.is_some(),
            f.auto_storage_container_name.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(CoreError::invalid(
                property,
                f.file_path.clone().unwrap_or_default(),
                "each resource file needs exactly one of httpUrl, storageContainerUrl and autoStorageContainerName",
            ));
        }
        for (name, value) in [
            ("httpUrl", &f.http_url),
            ("storageContainerUrl", &f.storage_container_url),
            ("autoStorageContainerName", &f.auto_storage_container_name),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(CoreError::invalid(
                    &format!("{property}.{name}"),
                    "",
                    "must not be empty",
                ));
            }
        }
        if let Some(url) = f.http_url.as_deref().or(f.storage_container_url.as_deref()) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                // Only the scheme is shown: the rest of the URL may carry a SAS token.
                return Err(CoreError::invalid(
                    property,
                    url.split(':').next().unwrap_or_default(),
                    "resource file URLs must be http:// or https:// URLs",
                ));
            }
        }
        if f.blob_prefix.is_some() && f.http_url.is_some() {
            return Err(CoreError::invalid(
                &format!("{property}.blobPrefix"),
                f.blob_prefix.clone().unwrap_or_default(),
                "blobPrefix is only valid with storageContainerUrl or autoStorageContainerName",
            ));
        }
    }
    Ok(())
}

/// Each output file has a pattern and a blob container destination.
pub(crate) fn check_output_files(
    files: &[openbatch_api::models::OutputFile],
) -> Result<(), CoreError> {
    for f in files {
        if f.file_pattern.trim().is_empty() {
            return Err(CoreError::MissingProperty("outputFiles.filePattern".into()));
        }
        let Some(container) = &f.destination.container else {
            return Err(CoreError::MissingProperty(
                "outputFiles.destination.container".into(),
            ));
        };
        let url = container.container_url.as_str();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(CoreError::invalid(
                "outputFiles.destination.container.containerUrl",
                url.split(':').next().unwrap_or_default(),
                "must be an http:// or https:// container URL (with a SAS granting write)",
            ));
        }
        for h in container.upload_headers.iter().flatten() {
            let name = h.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            if name.is_empty() {
                return Err(CoreError::MissingProperty(
                    "outputFiles.destination.container.uploadHeaders.name".into(),
                ));
            }
        }
    }
    Ok(())
}
