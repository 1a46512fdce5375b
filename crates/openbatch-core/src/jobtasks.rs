//! The job's own tasks: the job manager task, the job preparation task and the job release
//! task.
//!
//! - **Job manager** (`jobManagerTask`): an ordinary task of the job, added when the job is
//!   created (so it is the oldest task, and placed first), and marked `Task::job_manager`.
//!   With `killJobOnCompletion` (default true) its completion, after its retries, terminates
//!   the job with `JMComplete`. With `runExclusive` (default true) it is placed only on a node
//!   that runs nothing, and takes all of that node's slots while it runs; when no node is
//!   idle, the scheduler holds one for it (`Pool::reservation`) until it drains.
//!   `allowLowPriorityNode: false` keeps it on dedicated nodes.
//! - **Job preparation** (`jobPreparationTask`): when a task of the job is placed on a node
//!   where the preparation task has not run, the node runs it first. With `waitForSuccess`
//!   (default true) the task waits in `preparing`, its slots held and its run not yet sent to
//!   the agent (`Node::waiting`), and starts when preparation succeeds. If preparation fails
//!   after its retries, the waiting tasks go back to `active` (their `requeueCount` counts it)
//!   and the job's tasks are not placed on that node again until it is reimaged (or rebooted,
//!   which reruns preparation). Without `waitForSuccess` tasks start at once. A multi-instance
//!   task waits until preparation succeeded on every node of its gang (see `gang.rs`). A reboot forgets
//!   a successful preparation when `rerunOnNodeRebootAfterSuccess` (default true); a reimage,
//!   or a preempted node's recovery, always does.
//! - **Job release** (`jobReleaseTask`): when the job ends (terminated, completed or deleted)
//!   and none of its tasks and preparation runs is left, each node that ran the preparation
//!   task and is connected runs the release task (`maxWallClockTime` default 15 minutes). The
//!   job stays `terminating` (or `deleting`) until they have all ended.
//!
//! Preparation and release runs are runs like any other for the agent (`RunSpec` with the
//! task id `jobpreparation`/`jobrelease`, laid out under `workitems/<job>/job-1/<id>`), and sit
//! in `Node::running` with 0 slots under the reserved task keys `PREP` and `RELEASE` (not
//! valid task ids), so node loss, reboots, restarts and replay handle them with every other
//! run. Their per-node outcome is `Job::node_tasks`, part of the state, and is what
//! `GET /jobs/{id}/jobpreparationandreleasetaskstatus` lists.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    self as m, ExecutionResult, JobCreate, JobPreparationTaskExecutionInfo,
    JobPreparationTaskState, JobReleaseTaskExecutionInfo, JobReleaseTaskState, JobState, NodeState,
    TaskCreate, TaskState,
};
use serde::{Deserialize, Serialize};

use crate::input::{Effect, RunResult, RunSpec};
use crate::state::{Core, RunId};
use crate::tasks::{check_output_files, check_resource_files, exit_code_failure};
use crate::view::{after, page, ListPage, Urls};
use crate::{id_key, valid_id, CoreError};

/// The task key under which a node holds a job preparation run.
pub(crate) const PREP: &str = "#jobpreparation";
/// The task key under which a node holds a job release run.
pub(crate) const RELEASE: &str = "#jobrelease";

/// Whether a task key of `Node::running` is a job preparation or release run.
pub(crate) fn is_job_task_key(tk: &str) -> bool {
    tk.starts_with('#')
}

/// Azure's limit (and default) for a job release task's `maxWallClockTime`.
const RELEASE_MAX_WALL_CLOCK: Duration = Duration::from_secs(15 * 60);

/// The job preparation and release tasks of one job on one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NodeJobTasks {
    pub(crate) pool_id: String,
    #[serde(default)]
    pub(crate) prep: Option<JobPreparationTaskExecutionInfo>,
    #[serde(default)]
    pub(crate) prep_run: Option<RunId>,
    #[serde(default)]
    pub(crate) release: Option<JobReleaseTaskExecutionInfo>,
    #[serde(default)]
    pub(crate) release_run: Option<RunId>,
}

/// What the job preparation task lets a task of its job do on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Run now.
    Ready,
    /// Preparation has not run here: start it first.
    Start,
    /// Preparation runs here and must succeed first.
    Wait,
    /// Preparation failed here (with `waitForSuccess`): not on this node.
    Blocked,
}

/// The checks of a job's `jobManagerTask`, `jobPreparationTask` and `jobReleaseTask`, on
/// create and in a job schedule's `jobSpecification`. The job manager task is added as a task
/// when the job is recorded, so everything `add_task` checks is checked here first.
pub(crate) fn check_job_tasks(spec: &JobCreate) -> Result<(), CoreError> {
    let id_rule = "an id has 1 to 64 letters, digits, hyphens and underscores";
    let prep_id = spec.job_preparation_task.as_ref().map(|p| p.task_id());
    let release_id = spec.job_release_task.as_ref().map(|r| r.task_id());
    if let Some(jm) = &spec.job_manager_task {
        if !valid_id(&jm.id) {
            return Err(CoreError::invalid("jobManagerTask.id", &jm.id, id_rule));
        }
        if jm.command_line.trim().is_empty() {
            return Err(CoreError::MissingProperty(
                "jobManagerTask.commandLine".into(),
            ));
        }
        if let Some(slots) = jm.required_slots {
            if slots < 1 {
                return Err(CoreError::invalid(
                    "jobManagerTask.requiredSlots",
                    slots,
                    "must be at least 1",
                ));
            }
        }
        check_retries(
            "jobManagerTask.constraints.maxTaskRetryCount",
            jm.constraints,
        )?;
        check_resource_files("jobManagerTask.resourceFiles", &jm.resource_files)?;
        check_output_files(&jm.output_files)?;
        for (other, name) in [(prep_id, "preparation"), (release_id, "release")] {
            if other.is_some_and(|o| id_key(o) == id_key(&jm.id)) {
                return Err(CoreError::invalid(
                    "jobManagerTask.id",
                    &jm.id,
                    format!("the job manager task cannot have the id of the job {name} task"),
                ));
            }
        }
    }
    if let Some(p) = &spec.job_preparation_task {
        if !valid_id(p.task_id()) {
            return Err(CoreError::invalid(
                "jobPreparationTask.id",
                p.task_id(),
                id_rule,
            ));
        }
        if p.command_line.trim().is_empty() {
            return Err(CoreError::MissingProperty(
                "jobPreparationTask.commandLine".into(),
            ));
        }
        check_retries(
            "jobPreparationTask.constraints.maxTaskRetryCount",
            p.constraints,
        )?;
        check_resource_files("jobPreparationTask.resourceFiles", &p.resource_files)?;
    }
    if let Some(r) = &spec.job_release_task {
        let Some(prep_id) = prep_id else {
            return Err(CoreError::invalid(
                "jobReleaseTask",
                r.task_id(),
                "a job release task can only be given with a job preparation task",
            ));
        };
        if !valid_id(r.task_id()) {
            return Err(CoreError::invalid(
                "jobReleaseTask.id",
                r.task_id(),
                id_rule,
            ));
        }
        if id_key(r.task_id()) == id_key(prep_id) {
            return Err(CoreError::invalid(
                "jobReleaseTask.id",
                r.task_id(),
                "the job release task cannot have the id of the job preparation task",
            ));
        }
        if r.command_line.trim().is_empty() {
            return Err(CoreError::MissingProperty(
                "jobReleaseTask.commandLine".into(),
            ));
        }
        if let Some(d) = r.max_wall_clock_time {
            if d.as_duration().is_none_or(|d| d > RELEASE_MAX_WALL_CLOCK) {
                return Err(CoreError::invalid(
                    "jobReleaseTask.maxWallClockTime",
                    d,
                    "a job release task may run at most 15 minutes (PT15M)",
                ));
            }
        }
        check_resource_files("jobReleaseTask.resourceFiles", &r.resource_files)?;
    }
    Ok(())
}

fn check_retries(property: &str, c: Option<m::TaskConstraints>) -> Result<(), CoreError> {
    match c.and_then(|c| c.max_task_retry_count) {
        Some(n) if n < -1 => Err(CoreError::invalid(
            property,
            n,
            "must be -1 (unlimited) or at least 0",
        )),
        _ => Ok(()),
    }
}

/// The result the core records for a run it never sent to the agent and ended itself.
fn killed_before_start(now: DateTime<Utc>) -> RunResult {
    RunResult {
        start_time: now,
        end_time: now,
        exit_code: None,
        failure: None,
        pre_processing_error: false,
        file_upload_error: false,
        empty_logs: Vec::new(),
    }
}

fn failed(result: &RunResult) -> bool {
    result.failure.is_some() || result.exit_code != Some(0)
}

impl Core {
    /// A new job with a `jobManagerTask`: add it as the job's first task. `check_job_tasks`
    /// already checked everything adding it could refuse.
    pub(crate) fn add_job_manager(&mut self, jk: &str, now: DateTime<Utc>) {
        let Some(jm) = self
            .jobs
            .get(jk)
            .and_then(|j| j.spec.job_manager_task.clone())
        else {
            return;
        };
        let spec = TaskCreate {
            id: jm.id.clone(),
            display_name: jm.display_name,
            exit_conditions: None,
            command_line: jm.command_line,
            container_settings: jm.container_settings,
            resource_files: jm.resource_files,
            output_files: jm.output_files,
            environment_settings: jm.environment_settings,
            affinity_info: None,
            constraints: jm.constraints,
            required_slots: jm.required_slots,
            user_identity: jm.user_identity,
            multi_instance_settings: None,
            depends_on: None,
            application_package_references: jm.application_package_references,
        };
        if self.add_task(jk, spec, now).is_ok() {
            if let Some(t) = self
                .jobs
                .get_mut(jk)
                .and_then(|j| j.tasks.get_mut(&id_key(&jm.id)))
            {
                t.job_manager = true;
            }
        }
    }

    /// A task may not take the id of its job's preparation or release task.
    pub(crate) fn check_task_id_free(&self, jk: &str, task_id: &str) -> Result<(), CoreError> {
        let Some(job) = self.jobs.get(jk) else {
            return Ok(());
        };
        let key = id_key(task_id);
        if let Some(p) = &job.spec.job_preparation_task {
            if id_key(p.task_id()) == key {
                return Err(CoreError::TaskIdOfJobTask(
                    job.spec.id.clone(),
                    task_id.into(),
                    true,
                ));
            }
        }
        if let Some(r) = &job.spec.job_release_task {
            if id_key(r.task_id()) == key {
                return Err(CoreError::TaskIdOfJobTask(
                    job.spec.id.clone(),
                    task_id.into(),
                    false,
                ));
            }
        }
        Ok(())
    }

    /// A job manager task whose completion ends the job.
    pub(crate) fn kills_job_on_completion(&self, jk: &str, tk: &str) -> bool {
        self.jobs.get(jk).is_some_and(|j| {
            j.tasks.get(tk).is_some_and(|t| t.job_manager)
                && j.spec
                    .job_manager_task
                    .as_ref()
                    .is_none_or(|jm| jm.kill_job_on_completion.unwrap_or(true))
        })
    }

    /// A job manager task that needs a node to itself.
    pub(crate) fn runs_exclusive(&self, jk: &str, tk: &str) -> bool {
        self.jobs.get(jk).is_some_and(|j| {
            j.tasks.get(tk).is_some_and(|t| t.job_manager)
                && j.spec
                    .job_manager_task
                    .as_ref()
                    .is_none_or(|jm| jm.run_exclusive.unwrap_or(true))
        })
    }

    /// What the job preparation task lets the job's tasks do on `node`.
    pub(crate) fn prep_gate(&self, jk: &str, node: &str) -> Gate {
        let Some(job) = self.jobs.get(jk) else {
            return Gate::Ready;
        };
        let Some(prep) = &job.spec.job_preparation_task else {
            return Gate::Ready;
        };
        let wait = prep.wait_for_success.unwrap_or(true);
        match job.node_tasks.get(node).and_then(|e| e.prep.as_ref()) {
            None => Gate::Start,
            Some(i) if i.state == JobPreparationTaskState::Running => {
                if wait {
                    Gate::Wait
                } else {
                    Gate::Ready
                }
            }
            Some(i) if i.result == Some(ExecutionResult::Success) || !wait => Gate::Ready,
            Some(_) => Gate::Blocked,
        }
    }

    /// Why a `preparing` task waits: the job preparation task runs on its node, or (a gang)
    /// on some of its nodes, and must succeed there first.
    pub(crate) fn explain_preparing(&self, x: &mut m::TaskExplanation, jk: &str, tk: &str) {
        x.reason = m::ExplainReason::WaitingForJobPreparation;
        let Some(task) = self.jobs.get(jk).and_then(|j| j.tasks.get(tk)) else {
            return;
        };
        if task.gang.is_empty() {
            x.message = format!(
                "The task is placed on node {} and waits for the job preparation task there to succeed.",
                x.node_id.as_deref().unwrap_or("?")
            );
            return;
        }
        let n = task.gang.len();
        let pending: Vec<&str> = task
            .gang
            .iter()
            .filter(|(_, node)| self.prep_gate(jk, node) != Gate::Ready)
            .map(|(_, node)| node.as_str())
            .collect();
        x.held_nodes = Some(n as u64);
        x.prepared_nodes = Some((n - pending.len()) as u64);
        const LISTED: usize = 10;
        let more = if pending.len() > LISTED {
            format!(" and {} more", pending.len() - LISTED)
        } else {
            String::new()
        };
        x.message = format!(
            "The multi-instance task holds its {n} nodes and waits for the job preparation task to succeed on all of them: {} of {n} are prepared; it still runs on {}{more}. All instances start together once the last succeeds.",
            n - pending.len(),
            pending
                .iter()
                .take(LISTED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// How many nodes of the pool the job's tasks may not use because its preparation task
    /// failed there (with `waitForSuccess`). Costs one step per node that ran it.
    pub(crate) fn prep_excluded(&self, jk: &str, pool_key: &str) -> u32 {
        let Some(job) = self.jobs.get(jk) else {
            return 0;
        };
        if job
            .spec
            .job_preparation_task
            .as_ref()
            .is_none_or(|p| !p.wait_for_success.unwrap_or(true))
        {
            return 0;
        }
        job.node_tasks
            .keys()
            .filter(|n| {
                self.nodes.get(*n).is_some_and(|node| node.pool == pool_key)
                    && self.prep_gate(jk, n) == Gate::Blocked
            })
            .count() as u32
    }

    /// Whether the scheduler may place `task` of `job` on `node`: not where the job's
    /// preparation failed, and a job manager task that may not use low-priority nodes only on
    /// dedicated ones.
    pub(crate) fn node_allowed(&self, jk: &str, tk: &str, node: &str) -> bool {
        if self.prep_gate(jk, node) == Gate::Blocked {
            return false;
        }
        let Some(job) = self.jobs.get(jk) else {
            return true;
        };
        let low_priority_ok = !job.tasks.get(tk).is_some_and(|t| t.job_manager)
            || job
                .spec
                .job_manager_task
                .as_ref()
                .is_none_or(|jm| jm.allow_low_priority_node.unwrap_or(true));
        low_priority_ok || self.nodes.get(node).is_some_and(|n| n.dedicated)
    }

    /// The environment and files of a job preparation (`release: false`) or release run.
    fn job_task_spec(&self, jk: &str, release: bool, run: RunId) -> Option<RunSpec> {
        let job = self.jobs.get(jk)?;
        let prep = job.spec.job_preparation_task.as_ref()?;
        let mut environment = job.spec.common_environment_settings.clone();
        let (task_id, command_line, files, max_wall_clock) = if release {
            let r = job.spec.job_release_task.as_ref()?;
            environment.extend(r.environment_settings.iter().cloned());
            let limit = r
                .max_wall_clock_time
                .and_then(|d| d.as_duration())
                .unwrap_or(RELEASE_MAX_WALL_CLOCK);
            (
                r.task_id(),
                r.command_line.clone(),
                r.resource_files.clone(),
                Some(limit),
            )
        } else {
            environment.extend(prep.environment_settings.iter().cloned());
            let limit = prep
                .constraints
                .and_then(|c| c.max_wall_clock_time)
                .and_then(|d| d.as_duration());
            (
                prep.task_id(),
                prep.command_line.clone(),
                prep.resource_files.clone(),
                limit,
            )
        };
        Some(RunSpec {
            run,
            job_id: job.spec.id.clone(),
            task_id: task_id.to_string(),
            command_line,
            environment,
            resource_files: files,
            output_files: Vec::new(),
            max_wall_clock,
            required_slots: 0,
            log_upload: None,
            // The pool's packages: on the node already, and their variables are set for
            // every run there.
            app_packages: self.resolve_packages(
                self.pools
                    .get(&job.pool_key())
                    .into_iter()
                    .flat_map(|p| p.spec.application_package_references.iter()),
            ),
            job_preparation_task: Some(prep.task_id().to_string()),
            instance: None,
        })
    }

    /// Hand out a run id for a job preparation or release run on `node` and hold it there.
    fn start_job_task_run(
        &mut self,
        jk: &str,
        node: &str,
        release: bool,
        fx: &mut Vec<Effect>,
    ) -> Option<RunId> {
        let run = self.next_run;
        let spec = self.job_task_spec(jk, release, run)?;
        self.next_run += 1;
        let key = if release { RELEASE } else { PREP };
        self.runs
            .insert(run, (jk.to_string(), key.to_string(), node.to_string()));
        if let Some(n) = self.nodes.get_mut(node) {
            n.running.insert(run, (jk.to_string(), key.to_string(), 0));
        }
        self.note_run_dir(jk, key, node);
        fx.push(Effect::RunTask {
            node: node.to_string(),
            spec: Box::new(spec),
        });
        Some(run)
    }

    /// Start (or, with `retry`, start again) the job's preparation task on `node`.
    pub(crate) fn start_prep(
        &mut self,
        jk: &str,
        node: &str,
        retry: bool,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let pool_id = self
            .nodes
            .get(node)
            .and_then(|n| self.pools.get(&n.pool))
            .map(|p| p.spec.id.clone())
            .unwrap_or_default();
        let Some(run) = self.start_job_task_run(jk, node, false, fx) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        let entry = job
            .node_tasks
            .entry(node.to_string())
            .or_insert_with(|| NodeJobTasks {
                pool_id,
                ..Default::default()
            });
        let before = entry.prep.take();
        let (retry_count, last_retry_time) = match (&before, retry) {
            (Some(b), true) => (b.retry_count + 1, Some(now)),
            _ => (0, None),
        };
        entry.prep = Some(JobPreparationTaskExecutionInfo {
            start_time: now,
            end_time: None,
            state: JobPreparationTaskState::Running,
            task_root_directory: None,
            task_root_directory_url: None,
            exit_code: None,
            container_info: None,
            failure_info: None,
            retry_count,
            last_retry_time,
            result: None,
        });
        entry.prep_run = Some(run);
    }

    fn start_release(&mut self, jk: &str, node: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(run) = self.start_job_task_run(jk, node, true, fx) else {
            return;
        };
        if let Some(e) = self
            .jobs
            .get_mut(jk)
            .and_then(|j| j.node_tasks.get_mut(node))
        {
            e.release = Some(JobReleaseTaskExecutionInfo {
                start_time: now,
                end_time: None,
                state: JobReleaseTaskState::Running,
                task_root_directory: None,
                task_root_directory_url: None,
                exit_code: None,
                container_info: None,
                failure_info: None,
                result: None,
            });
            e.release_run = Some(run);
        }
    }

    /// The runs `node` holds for tasks of `jk` that wait for the job preparation task.
    fn waiting_runs(&self, jk: &str, node: &str) -> Vec<RunId> {
        self.nodes
            .get(node)
            .map(|n| {
                n.waiting
                    .iter()
                    .filter(|r| n.running.get(r).is_some_and(|(j, _, _)| j == jk))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Preparation succeeded on `node` (or need not be waited for): start the waiting tasks.
    /// In a job that is no longer active they go back to the queue instead.
    fn dispatch_prepared(
        &mut self,
        jk: &str,
        node: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let active = self
            .jobs
            .get(jk)
            .is_some_and(|j| j.state == JobState::Active);
        for run in self.waiting_runs(jk, node) {
            if !active {
                self.requeue_run(run, now);
                continue;
            }
            // An instance of a gang: the gang starts once every one of its nodes is prepared.
            if let Some((_, tk)) = self.gang_of(run) {
                self.dispatch_gang(jk, &tk, now, fx);
                continue;
            }
            let Some((_, tk, slots)) = self.nodes.get_mut(node).and_then(|n| {
                n.waiting.remove(&run);
                n.running.get(&run).cloned()
            }) else {
                continue;
            };
            let Some(spec) = self.run_spec(jk, &tk, run, slots, None) else {
                continue;
            };
            if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(&tk)) {
                t.exec.start_time = Some(now);
            }
            self.set_task_state(jk, &tk, TaskState::Running, now);
            fx.push(Effect::RunTask {
                node: node.to_string(),
                spec: Box::new(spec),
            });
        }
    }

    /// A job preparation or release run ended on its node (the agent reported it).
    pub(crate) fn job_task_ended(
        &mut self,
        jk: &str,
        tk: &str,
        (node, run): (&str, RunId),
        result: RunResult,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        self.ending_jobs.insert(jk.to_string());
        let bad = failed(&result);
        let failure = bad.then(|| {
            result
                .failure
                .clone()
                .unwrap_or_else(|| exit_code_failure(result.exit_code))
        });
        let node_ok = self
            .nodes
            .get(node)
            .is_some_and(|n| n.connected && n.leaving.is_none() && n.preemption.is_none());
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        let job_on = matches!(
            job.state,
            JobState::Active | JobState::Disabling | JobState::Disabled | JobState::Enabling
        );
        let Some(entry) = job.node_tasks.get_mut(node) else {
            return;
        };
        if tk == RELEASE {
            if entry.release_run != Some(run) {
                return;
            }
            entry.release_run = None;
            if let Some(i) = entry.release.as_mut() {
                i.state = JobReleaseTaskState::Completed;
                i.start_time = result.start_time;
                i.end_time = Some(result.end_time);
                i.exit_code = result.exit_code;
                i.failure_info = failure;
                i.result = Some(if bad {
                    ExecutionResult::Failure
                } else {
                    ExecutionResult::Success
                });
            }
            return;
        }
        if entry.prep_run != Some(run) {
            return;
        }
        entry.prep_run = None;
        let Some(prep) = job.spec.job_preparation_task.clone() else {
            return;
        };
        let Some(info) = entry.prep.as_mut() else {
            return;
        };
        info.start_time = result.start_time;
        info.end_time = Some(result.end_time);
        info.exit_code = result.exit_code;
        info.failure_info = failure;
        let max = prep
            .constraints
            .and_then(|c| c.max_task_retry_count)
            .unwrap_or(0);
        if bad && job_on && node_ok && (max == -1 || info.retry_count < max) {
            self.start_prep(jk, node, true, now, fx);
            return;
        }
        info.state = JobPreparationTaskState::Completed;
        info.result = Some(if bad {
            ExecutionResult::Failure
        } else {
            ExecutionResult::Success
        });
        if bad && prep.wait_for_success.unwrap_or(true) {
            // Not on this node: the waiting tasks go back to the queue, for other nodes.
            for r in self.waiting_runs(jk, node) {
                self.requeue_run(r, now);
            }
        } else {
            self.dispatch_prepared(jk, node, now, fx);
        }
    }

    /// A job preparation or release run is gone without a report (its node was lost,
    /// removed, restarted or preempted, or its agent no longer knows it). A lost preparation
    /// is forgotten, so it runs again before the job's next task there, and the tasks waiting
    /// for it go back to the queue; a lost release is recorded as failed.
    pub(crate) fn job_task_lost(
        &mut self,
        jk: &str,
        tk: &str,
        node: &str,
        run: RunId,
        now: DateTime<Utc>,
    ) {
        self.ending_jobs.insert(jk.to_string());
        let Some(entry) = self
            .jobs
            .get_mut(jk)
            .and_then(|j| j.node_tasks.get_mut(node))
        else {
            return;
        };
        if tk == RELEASE {
            // "If a Node reboots while the Job Release Task is still running, the Job Release
            // Task runs again when the Compute Node starts up": forgotten, it runs again when
            // the node is back (`job_tasks_done`), unless the node is gone for good.
            if entry.release_run == Some(run) {
                entry.release_run = None;
                entry.release = None;
            }
            return;
        }
        if entry.prep_run != Some(run) {
            return;
        }
        entry.prep_run = None;
        entry.prep = None;
        if entry.release.is_none() && entry.release_run.is_none() {
            if let Some(j) = self.jobs.get_mut(jk) {
                j.node_tasks.remove(node);
            }
        }
        for r in self.waiting_runs(jk, node) {
            self.requeue_run(r, now);
        }
    }

    /// The node restarts: a reimage (or a preempted node's recovery) forgets every job
    /// preparation that ran there; a reboot keeps only successful ones whose job says
    /// `rerunOnNodeRebootAfterSuccess: false`. The job's next task there runs it again first.
    /// Completed jobs keep their history; an ending job keeps it through a reboot, so that its
    /// release task runs there when the node is back (a reimaged node runs none: "If you
    /// reimage a Node after it has run the Job Preparation Task, and the Job ends without any
    /// further Tasks of the Job running on that Node ..., then the Job Release Task does not
    /// run on that Compute Node").
    pub(crate) fn forget_preparations(&mut self, node: &str, reimage: bool) {
        for job in self.jobs.values_mut() {
            let forget = match job.state {
                JobState::Completed => false,
                JobState::Terminating | JobState::Deleting => reimage,
                _ => true,
            };
            if !forget {
                continue;
            }
            let rerun = job
                .spec
                .job_preparation_task
                .as_ref()
                .is_none_or(|p| p.rerun_on_node_reboot_after_success.unwrap_or(true));
            let Some(e) = job.node_tasks.get_mut(node) else {
                continue;
            };
            let succeeded = e
                .prep
                .as_ref()
                .is_some_and(|p| p.result == Some(ExecutionResult::Success));
            let keep = !reimage && succeeded && !rerun;
            if !keep && e.prep_run.is_none() {
                e.prep = None;
            }
            if e.prep.is_none() && e.release.is_none() && e.release_run.is_none() {
                job.node_tasks.remove(node);
            }
        }
    }

    /// The job's preparation runs in flight are killed when it ends (their reports follow).
    pub(crate) fn kill_preparations(&self, jk: &str, fx: &mut Vec<Effect>) {
        let Some(job) = self.jobs.get(jk) else { return };
        for (node, e) in &job.node_tasks {
            if let Some(run) = e.prep_run {
                fx.push(Effect::KillTask {
                    node: node.clone(),
                    run,
                });
            }
        }
    }

    /// A terminating or deleting job whose tasks have all ended: whether its preparation and
    /// release runs are done too. Starts the release task on each connected node that ran the
    /// preparation task and has not run it yet.
    pub(crate) fn job_tasks_done(
        &mut self,
        jk: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(job) = self.jobs.get(jk) else {
            return true;
        };
        if job.node_tasks.values().any(|e| e.prep_run.is_some()) {
            return false;
        }
        if job.spec.job_release_task.is_none() {
            return true;
        }
        // Nodes that are gone, leaving or preempted run no release task; one that is away
        // (rebooting, reconnecting) is waited for, until it is back or declared lost.
        let mut todo = Vec::new();
        let mut away = false;
        for (n, _) in job
            .node_tasks
            .iter()
            .filter(|(_, e)| e.prep.is_some() && e.release.is_none())
        {
            match self.nodes.get(n) {
                Some(node) if node.leaving.is_none() && node.preemption.is_none() => {
                    let restarting = matches!(
                        node.state,
                        NodeState::Creating | NodeState::Rebooting | NodeState::Reimaging
                    );
                    if node.connected && !restarting {
                        todo.push(n.clone());
                    } else {
                        away = true;
                    }
                }
                _ => {}
            }
        }
        for n in todo {
            self.start_release(jk, &n, now, fx);
        }
        !away
            && self
                .jobs
                .get(jk)
                .is_none_or(|j| j.node_tasks.values().all(|e| e.release_run.is_none()))
    }

    /// A node came back or went for good: ending jobs that wait on it for a release task
    /// look again (at the end of the input).
    pub(crate) fn recheck_releases_on(&mut self, node: &str) {
        for (jk, j) in &self.jobs {
            if matches!(j.state, JobState::Terminating | JobState::Deleting)
                && j.spec.job_release_task.is_some()
                && j.node_tasks.contains_key(node)
            {
                self.ending_jobs.insert(jk.clone());
            }
        }
    }

    /// The end of every input: kills of runs the agent was never told to start (tasks waiting
    /// for a job preparation task) are answered here, as the agent would have answered a kill;
    /// then jobs whose preparation or release runs moved on may end.
    pub(crate) fn settle_job_tasks(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let mut changed = false;
        loop {
            // Kills of a gang's held-back instances (the gang was requeued or ended while it
            // waited for preparation) are answered here too.
            let mut d = 0;
            while d < self.deferred.len() {
                let waiting = matches!(&self.deferred[d], Effect::KillTask { node, run }
                    if self.nodes.get(node).is_some_and(|n| n.waiting.contains(run)));
                if waiting {
                    fx.push(self.deferred.remove(d));
                } else {
                    d += 1;
                }
            }
            let mut i = 0;
            while i < fx.len() {
                let waiting = match &fx[i] {
                    Effect::KillTask { node, run } => self
                        .nodes
                        .get(node)
                        .is_some_and(|n| n.waiting.contains(run))
                        .then(|| (node.clone(), *run)),
                    _ => None,
                };
                match waiting {
                    Some((node, run)) => {
                        fx.remove(i);
                        self.task_completed(&node, run, killed_before_start(now), now, fx);
                        changed = true;
                    }
                    None => i += 1,
                }
            }
            let more = self.deferred.iter().any(|e| {
                matches!(e, Effect::KillTask { node, run }
                    if self.nodes.get(node).is_some_and(|n| n.waiting.contains(run)))
            });
            if more {
                continue;
            }
            let Some(jk) = self.ending_jobs.pop_first() else {
                break;
            };
            self.maybe_complete_job(&jk, now, fx);
            changed = true;
        }
        changed
    }

    /// `GET /jobs/{id}/jobpreparationandreleasetaskstatus`: one item per node that ran (or
    /// runs) the job's preparation or release task, by node id, including nodes removed from
    /// the pool since. A job without a preparation task answers 409
    /// `JobPreparationTaskNotSpecified`, as on Azure.
    pub fn list_job_prep_release_status(
        &self,
        job_id: &str,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::JobPreparationAndReleaseTaskStatus) -> bool,
    ) -> Result<ListPage<m::JobPreparationAndReleaseTaskStatus>, CoreError> {
        let job = self
            .jobs
            .get(&id_key(job_id))
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        if job.spec.job_preparation_task.is_none() {
            return Err(CoreError::JobPreparationTaskNotSpecified(job_id.into()));
        }
        let prep_id = job
            .spec
            .job_preparation_task
            .as_ref()
            .map(|p| p.task_id().to_string());
        let release_id = job
            .spec
            .job_release_task
            .as_ref()
            .map(|r| r.task_id().to_string());
        let ids: std::collections::BTreeMap<String, (&String, &NodeJobTasks)> = job
            .node_tasks
            .iter()
            .map(|(n, e)| (n.clone(), (n, e)))
            .collect();
        Ok(page(after(&ids, after_key), limit, |(node, e)| {
            let node_url = urls.node_url(&e.pool_id, node);
            let dir = |task: &Option<String>| {
                task.as_ref()
                    .map(|t| openbatch_api::agent::task_dir(&job.spec.id, t))
            };
            let (prep_dir, release_dir) = (dir(&prep_id), dir(&release_id));
            let item = m::JobPreparationAndReleaseTaskStatus {
                pool_id: Some(e.pool_id.clone()),
                node_id: Some((*node).clone()),
                node_url: Some(node_url.clone()),
                job_preparation_task_execution_info: e.prep.clone().map(|mut i| {
                    i.task_root_directory_url =
                        prep_dir.as_ref().map(|d| format!("{node_url}/files/{d}"));
                    i.task_root_directory = prep_dir.clone();
                    i
                }),
                job_release_task_execution_info: e.release.clone().map(|mut i| {
                    i.task_root_directory_url = release_dir
                        .as_ref()
                        .map(|d| format!("{node_url}/files/{d}"));
                    i.task_root_directory = release_dir.clone();
                    i
                }),
            };
            Some(item).filter(|i| keep(i))
        }))
    }
}

impl Core {
    /// The job manager task completed (after its retries) and `killJobOnCompletion` holds: the
    /// job ends with `JMComplete`, its other tasks terminated.
    pub(crate) fn job_manager_completed(
        &mut self,
        jk: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let on = self.jobs.get(jk).is_some_and(|j| {
            matches!(
                j.state,
                JobState::Active | JobState::Disabling | JobState::Disabled | JobState::Enabling
            )
        });
        if on {
            self.end_job(jk, "JMComplete".into(), now, fx);
        }
    }
}
