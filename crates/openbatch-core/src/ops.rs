//! The update and action operations on pools, jobs, tasks and nodes (Azure Batch's P2 set):
//! pool update/replace/stop resize/remove nodes, job update/replace/disable/enable, task
//! replace/reactivate, node scheduling on/off and reboot/reimage.

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    AllocationState, DisableJobOption, DisableSchedulingOption, JobState, JobUpdate,
    NodeDeallocationOption, NodeState, OnAllTasksComplete, PoolReplace, PoolState, PoolUpdate,
    SchedulingState, TaskConstraints, TaskExecutionInfo, TaskState,
};

use crate::input::{Effect, Reply};
use crate::nodes::RunFate;
use crate::state::Core;
use crate::{id_key, CoreError};

impl Core {
    fn active_pool(&self, id: &str) -> Result<String, CoreError> {
        let key = id_key(id);
        let pool = self
            .pools
            .get(&key)
            .ok_or_else(|| CoreError::PoolNotFound(id.into()))?;
        if pool.state == PoolState::Deleting {
            return Err(CoreError::PoolBeingDeleted(id.into()));
        }
        Ok(key)
    }

    fn touch_pool(&mut self, key: &str, now: DateTime<Utc>) {
        let version = self.version();
        if let Some(p) = self.pools.get_mut(key) {
            p.version = version;
            p.last_modified = now;
        }
    }

    pub(crate) fn update_pool(
        &mut self,
        id: &str,
        patch: PoolUpdate,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(id)?;
        let has_nodes = !self.pools[&key].nodes.is_empty();
        // Properties that shape the nodes can only change on an empty pool, as on Azure.
        for (name, set) in [
            ("vmSize", patch.vm_size.is_some()),
            ("taskSlotsPerNode", patch.task_slots_per_node.is_some()),
            (
                "virtualMachineConfiguration",
                patch.virtual_machine_configuration.is_some(),
            ),
        ] {
            if set && has_nodes {
                return Err(CoreError::InvalidState(format!(
                    "{name} can only be changed while the pool has no nodes; resize it to 0 first."
                )));
            }
        }
        if let Some(slots) = patch.task_slots_per_node {
            if !(1..=256).contains(&slots) {
                return Err(CoreError::invalid(
                    "taskSlotsPerNode",
                    slots,
                    "must be between 1 and 256",
                ));
            }
        }
        if let Some(refs) = &patch.application_package_references {
            self.check_package_refs(refs, true)?;
        }
        let pool = self.pools.get_mut(&key).expect("checked");
        let s = &mut pool.spec;
        if let Some(v) = patch.display_name {
            s.display_name = Some(v);
        }
        if let Some(v) = patch.vm_size {
            s.vm_size = v;
        }
        if let Some(v) = patch.enable_inter_node_communication {
            s.enable_inter_node_communication = Some(v);
        }
        if let Some(v) = patch.start_task {
            s.start_task = Some(v);
        }
        if let Some(v) = patch.application_package_references {
            s.application_package_references = v;
        }
        if let Some(v) = patch.metadata {
            s.metadata = v;
        }
        if let Some(v) = patch.virtual_machine_configuration {
            s.virtual_machine_configuration = Some(v);
        }
        if let Some(v) = patch.task_slots_per_node {
            s.task_slots_per_node = Some(v);
        }
        if let Some(v) = patch.task_scheduling_policy {
            s.task_scheduling_policy = Some(v);
        }
        if patch.network_configuration.is_some() {
            s.network_configuration = patch.network_configuration;
        }
        if patch.user_accounts.is_some() {
            s.user_accounts = patch.user_accounts;
        }
        if patch.mount_configuration.is_some() {
            s.mount_configuration = patch.mount_configuration;
        }
        if patch.upgrade_policy.is_some() {
            s.upgrade_policy = patch.upgrade_policy;
        }
        self.touch_pool(&key, now);
        // Fewer slots per node can leave queued tasks that no node will ever fit.
        self.recheck_queue(&key);
        self.dirty_pools.insert(key);
        Ok(Reply::Done)
    }

    pub(crate) fn replace_pool_properties(
        &mut self,
        id: &str,
        props: PoolReplace,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(id)?;
        self.check_package_refs(&props.application_package_references, true)?;
        let pool = self.pools.get_mut(&key).expect("checked");
        pool.spec.start_task = props.start_task;
        pool.spec.application_package_references = props.application_package_references;
        pool.spec.metadata = props.metadata;
        self.touch_pool(&key, now);
        Ok(Reply::Done)
    }

    /// Stop a resize: the pool keeps the nodes it has (booting ones included) as its target.
    pub(crate) fn stop_pool_resize(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(id)?;
        let (mut dedicated, mut low) = (0, 0);
        for n in self.pools[&key]
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
        {
            if n.leaving.is_some() {
                continue;
            }
            if n.dedicated {
                dedicated += 1;
            } else {
                low += 1;
            }
        }
        let pool = self.pools.get_mut(&key).expect("checked");
        if pool.allocation_state == AllocationState::Steady {
            return Ok(Reply::Done);
        }
        pool.target_dedicated = dedicated;
        pool.target_low_priority = low;
        self.touch_pool(&key, now);
        self.reconcile_pool_size(&key, now, fx);
        Ok(Reply::Done)
    }

    pub(crate) fn remove_nodes(
        &mut self,
        pool_id: &str,
        nodes: Vec<String>,
        option: Option<NodeDeallocationOption>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(pool_id)?;
        if nodes.is_empty() || nodes.len() > 100 {
            return Err(CoreError::invalid(
                "nodeList",
                nodes.len(),
                "must name 1 to 100 nodes",
            ));
        }
        for n in &nodes {
            if !self.pools[&key].nodes.contains(n) {
                return Err(CoreError::NodeNotFound(n.clone()));
            }
        }
        let option = option.unwrap_or(NodeDeallocationOption::Requeue);
        for n in &nodes {
            let Some(node) = self.nodes.get(n) else {
                continue;
            };
            if node.leaving.is_some() {
                continue;
            }
            let dedicated = node.dedicated;
            if let Some(p) = self.pools.get_mut(&key) {
                if dedicated {
                    p.target_dedicated = p.target_dedicated.saturating_sub(1);
                } else {
                    p.target_low_priority = p.target_low_priority.saturating_sub(1);
                }
            }
            self.start_leaving(n, option, now, fx);
        }
        self.touch_pool(&key, now);
        self.update_allocation_state(&key, now);
        Ok(Reply::Done)
    }

    pub(crate) fn update_job(
        &mut self,
        id: &str,
        u: JobUpdate,
        replace: bool,
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
        crate::jobs::check_job_limits(u.priority, u.max_parallel_tasks)?;
        if let Some(pi) = &u.pool_info {
            let same = pi.pool_id.as_deref().map(id_key)
                == job.spec.pool_info.pool_id.as_deref().map(id_key);
            if !same && job.state != JobState::Disabled {
                return Err(CoreError::InvalidState(
                    "A job's poolInfo can only be changed while the job is disabled.".into(),
                ));
            }
            if pi.pool_id.as_deref().is_none_or(str::is_empty) {
                return Err(CoreError::MissingProperty("poolInfo.poolId".into()));
            }
        } else if replace {
            return Err(CoreError::MissingProperty("poolInfo".into()));
        }
        // Queue positions depend on priority and pool: take the job's tasks out, put them back.
        let waiting: Vec<String> = job
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Active && t.current_run.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for tk in &waiting {
            self.dequeue(&key, tk);
        }
        let version = self.version();
        let job = self.jobs.get_mut(&key).expect("checked");
        let was_terminatejob =
            job.spec.on_all_tasks_complete == Some(OnAllTasksComplete::TerminateJob);
        let s = &mut job.spec;
        if replace {
            // PUT: what is not given goes back to its default.
            s.priority = u.priority;
            s.allow_task_preemption = u.allow_task_preemption;
            s.max_parallel_tasks = u.max_parallel_tasks;
            s.constraints = u.constraints;
            s.on_all_tasks_complete = u.on_all_tasks_complete;
            s.metadata = u.metadata.unwrap_or_default();
        } else {
            if u.priority.is_some() {
                s.priority = u.priority;
            }
            if u.allow_task_preemption.is_some() {
                s.allow_task_preemption = u.allow_task_preemption;
            }
            if u.max_parallel_tasks.is_some() {
                s.max_parallel_tasks = u.max_parallel_tasks;
            }
            if u.constraints.is_some() {
                s.constraints = u.constraints;
            }
            if u.on_all_tasks_complete.is_some() {
                s.on_all_tasks_complete = u.on_all_tasks_complete;
            }
            if let Some(m) = u.metadata {
                s.metadata = m;
            }
        }
        if u.network_configuration.is_some() {
            s.network_configuration = u.network_configuration;
        }
        if let Some(pi) = u.pool_info {
            // The job's tasks move to the other pool's tally (see `tally.rs`).
            self.tally.job_tasks(job, -1);
            job.spec.pool_info = pi;
            self.tally.job_tasks(job, 1);
        }
        job.version = version;
        job.last_modified = now;
        // Priority and allowTaskPreemption decide who may take whose node: place again.
        let pool = job.pool_key();
        self.dirty_pools.insert(pool);
        for tk in &waiting {
            self.enqueue(&key, tk);
        }
        if !was_terminatejob {
            self.terminate_job_when_all_complete(&key, now, fx);
        }
        Ok(Reply::Done)
    }

    pub(crate) fn disable_job(
        &mut self,
        id: &str,
        option: DisableJobOption,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let job = self
            .jobs
            .get(&key)
            .ok_or_else(|| CoreError::JobNotFound(id.into()))?;
        match job.state {
            JobState::Active => {}
            JobState::Disabled | JobState::Disabling => return Ok(Reply::Done),
            JobState::Completed | JobState::Terminating => {
                return Err(CoreError::JobCompleted(id.into()))
            }
            JobState::Deleting => return Err(CoreError::JobBeingDeleted(id.into())),
            JobState::Enabling => {}
        }
        let mut waiting = Vec::new();
        let mut runs = Vec::new();
        for (tk, t) in &job.tasks {
            match t.current_run {
                Some(r) => runs.push(r),
                None if t.state == TaskState::Active => waiting.push(tk.clone()),
                None => {}
            }
        }
        for tk in &waiting {
            self.dequeue(&key, tk);
        }
        // Azure: "The Batch Service immediately moves the Job to the disabling state ... The
        // Job remains in the disabling state until ... all Tasks have been dealt with according
        // to the disableTasks option; the Job then moves to the disabled state" (where "No
        // Tasks are running"): `maybe_complete_job` finishes the move when the last run ends.
        self.set_job_state(&key, JobState::Disabling, now);
        match option {
            DisableJobOption::Requeue => {
                for run in runs {
                    if let Some((_, _, node)) = self.runs.get(&run) {
                        fx.push(Effect::KillTask {
                            node: node.clone(),
                            run,
                        });
                    }
                    let held = self.killed_run_slots(run);
                    // Requeued into a disabled job: it waits, out of the queue, for enable.
                    self.requeue_run(run, now);
                    if let Some((node, slots)) = held {
                        self.hold_until_killed(&node, run, slots);
                    }
                }
            }
            DisableJobOption::Terminate => {
                for run in runs {
                    if let Some((_, _, node)) = self.runs.get(&run) {
                        fx.push(Effect::KillTask {
                            node: node.clone(),
                            run,
                        });
                    }
                    self.mark_run_terminating(run);
                }
            }
            DisableJobOption::Wait => {}
        }
        if self.jobs.get(&key).is_some_and(|j| j.counts.running == 0) {
            self.set_job_state(&key, JobState::Disabled, now);
        }
        Ok(Reply::Done)
    }

    pub(crate) fn enable_job(&mut self, id: &str, now: DateTime<Utc>) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let job = self
            .jobs
            .get(&key)
            .ok_or_else(|| CoreError::JobNotFound(id.into()))?;
        match job.state {
            JobState::Disabled | JobState::Disabling => {}
            JobState::Active | JobState::Enabling => return Ok(Reply::Done),
            JobState::Completed | JobState::Terminating => {
                return Err(CoreError::JobCompleted(id.into()))
            }
            JobState::Deleting => return Err(CoreError::JobBeingDeleted(id.into())),
        }
        let waiting: Vec<String> = job
            .tasks
            .iter()
            .filter(|(_, t)| t.state == TaskState::Active && t.current_run.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        self.set_job_state(&key, JobState::Active, now);
        for tk in &waiting {
            self.enqueue(&key, tk);
        }
        Ok(Reply::Done)
    }

    pub(crate) fn replace_task(
        &mut self,
        job: &str,
        task: &str,
        constraints: Option<TaskConstraints>,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let (jk, tk) = self.find_task(job, task)?;
        let version = self.version();
        let t = self
            .jobs
            .get_mut(&jk)
            .and_then(|j| j.tasks.get_mut(&tk))
            .expect("checked");
        if t.state == TaskState::Completed {
            return Err(CoreError::TaskCompleted(job.into(), task.into()));
        }
        t.spec.constraints = constraints;
        t.version = version;
        t.last_modified = now;
        Ok(Reply::Done)
    }

    /// A failed task runs again, with its retry count back at 0 (Azure: reactivation fails for
    /// tasks that are not completed or that succeeded, and in jobs that are ending).
    pub(crate) fn reactivate_task(
        &mut self,
        job: &str,
        task: &str,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let (jk, tk) = self.find_task(job, task)?;
        let j = &self.jobs[&jk];
        match j.state {
            JobState::Completed | JobState::Terminating => {
                return Err(CoreError::JobCompleted(job.into()))
            }
            JobState::Deleting => return Err(CoreError::JobBeingDeleted(job.into())),
            _ => {}
        }
        let t = &j.tasks[&tk];
        let failed = t.exec.result == Some(openbatch_api::models::ExecutionResult::Failure);
        if t.state != TaskState::Completed || !failed {
            return Err(CoreError::InvalidState(format!(
                "Task '{task}' cannot be reactivated: only completed tasks that failed can be."
            )));
        }
        // Counts move out of completed/failed before the execution info is cleared.
        self.set_task_state(&jk, &tk, TaskState::Active, now);
        if let Some(t) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) {
            t.exec = TaskExecutionInfo {
                requeue_count: t.exec.requeue_count,
                last_requeue_time: t.exec.last_requeue_time,
                ..TaskExecutionInfo::default()
            };
        }
        self.enqueue(&jk, &tk);
        Ok(Reply::Done)
    }

    pub(crate) fn pool_node(&self, pool: &str, node: &str) -> Result<String, CoreError> {
        let key = id_key(pool);
        let p = self
            .pools
            .get(&key)
            .ok_or_else(|| CoreError::PoolNotFound(pool.into()))?;
        if !p.nodes.contains(node) {
            return Err(CoreError::NodeNotFound(node.into()));
        }
        Ok(node.to_string())
    }

    pub(crate) fn set_node_scheduling(
        &mut self,
        pool: &str,
        node: &str,
        enabled: bool,
        option: Option<DisableSchedulingOption>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let id = self.pool_node(pool, node)?;
        let n = self.nodes.get_mut(&id).expect("checked");
        n.scheduling = if enabled {
            SchedulingState::Enabled
        } else {
            SchedulingState::Disabled
        };
        let pool_key = n.pool.clone();
        self.refresh_capacity(&id);
        if !enabled {
            let fate = match option.unwrap_or(DisableSchedulingOption::Requeue) {
                DisableSchedulingOption::Requeue => RunFate::Requeue,
                DisableSchedulingOption::Terminate => RunFate::Terminate,
                DisableSchedulingOption::TaskCompletion => RunFate::Finish,
            };
            self.dispose_runs(&id, fate, now, fx);
        }
        if matches!(
            self.nodes.get(&id).map(|n| n.state),
            Some(NodeState::Idle | NodeState::Running | NodeState::Offline)
        ) {
            let state = self.settled_state(&id);
            self.set_node_state(&id, state, now);
        }
        self.dirty_pools.insert(pool_key);
        Ok(Reply::Done)
    }

    /// A node that is not leaving and is up (connected, not booting or restarting): what a
    /// reboot, reimage or preemption needs. `node` is the id as the caller wrote it.
    pub(crate) fn check_node_can_act(&self, id: &str, node: &str) -> Result<(), CoreError> {
        let n = &self.nodes[id];
        if n.leaving.is_some() {
            return Err(CoreError::InvalidState(format!(
                "Node '{node}' is leaving the pool."
            )));
        }
        if !n.connected
            || matches!(
                n.state,
                NodeState::Creating | NodeState::Rebooting | NodeState::Reimaging
            )
        {
            return Err(CoreError::NodeNotReady(node.into()));
        }
        Ok(())
    }

    pub(crate) fn restart_node(
        &mut self,
        pool: &str,
        node: &str,
        option: Option<NodeDeallocationOption>,
        reimage: bool,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let id = self.pool_node(pool, node)?;
        self.check_node_can_act(&id, node)?;
        let n = &self.nodes[&id];
        let busy = !n.running.is_empty();
        let fate = RunFate::from(option.unwrap_or(NodeDeallocationOption::Requeue));
        if fate == RunFate::Finish && busy {
            // Let the runs finish; the restart happens when the node drains.
            let n = self.nodes.get_mut(&id).expect("checked");
            n.pending_restart = Some(reimage);
            n.scheduling = SchedulingState::Disabled;
            self.refresh_capacity(&id);
            return Ok(Reply::Done);
        }
        self.dispose_runs(&id, fate, now, fx);
        // A restarting agent never reports the runs it kills: settle them now (terminated
        // ones complete as failed, as their kill report would have made them).
        let left: Vec<u64> = self.nodes[&id].running.keys().copied().collect();
        for run in left {
            self.requeue_run(run, now);
        }
        self.begin_restart(&id, reimage, now, fx);
        Ok(Reply::Done)
    }

    /// The node goes to `rebooting`/`reimaging`; the shell restarts its agent, which connects
    /// again and runs the start task like a new node.
    pub(crate) fn begin_restart(
        &mut self,
        id: &str,
        reimage: bool,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        n.pending_restart = None;
        n.scheduling = SchedulingState::Enabled;
        n.start_task_info = None;
        n.boot_time = now;
        self.forget_preparations(id, reimage);
        let state = if reimage {
            NodeState::Reimaging
        } else {
            NodeState::Rebooting
        };
        self.set_node_state(id, state, now);
        fx.push(Effect::RestartNode {
            node: id.to_string(),
            wipe: reimage,
        });
    }

    pub(crate) fn enable_autoscale(
        &mut self,
        id: &str,
        formula: Option<String>,
        interval: Option<openbatch_api::time::IsoDuration>,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(id)?;
        let pool = self.pools.get_mut(&key).expect("checked");
        let formula = formula.or_else(|| pool.spec.auto_scale_formula.clone());
        if formula.as_deref().is_none_or(|f| f.trim().is_empty()) {
            return Err(CoreError::MissingProperty("autoScaleFormula".into()));
        }
        pool.spec.enable_auto_scale = Some(true);
        pool.spec.auto_scale_formula = formula;
        if interval.is_some() {
            pool.spec.auto_scale_evaluation_interval = interval;
        }
        // A new formula is evaluated at once: forget when the last run was.
        pool.autoscale_run = None;
        self.touch_pool(&key, now);
        Ok(Reply::Done)
    }

    pub(crate) fn disable_autoscale(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = self.active_pool(id)?;
        let pool = self.pools.get_mut(&key).expect("checked");
        pool.spec.enable_auto_scale = Some(false);
        self.touch_pool(&key, now);
        Ok(Reply::Done)
    }

    pub(crate) fn autoscale_evaluated(
        &mut self,
        id: &str,
        run: openbatch_api::models::AutoScaleRun,
        targets: Option<(u32, u32, NodeDeallocationOption)>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let key = id_key(id);
        let Some(pool) = self.pools.get_mut(&key) else {
            return false;
        };
        if pool.state == PoolState::Deleting || pool.spec.enable_auto_scale != Some(true) {
            return false;
        }
        pool.autoscale_run = Some(run);
        if let Some((dedicated, low, option)) = targets {
            let limit = MAX_AUTOSCALE_TARGET;
            let (dedicated, low) = (dedicated.min(limit), low.min(limit));
            // New targets are a new resize (see `allocation.rs`); the same ones again are not,
            // so a pool short of GPUs does not retry on every evaluation.
            if (dedicated, low) != (pool.target_dedicated, pool.target_low_priority) {
                pool.resize_errors.clear();
            }
            pool.target_dedicated = dedicated;
            pool.target_low_priority = low;
            pool.deallocation = option;
            self.reconcile_pool_size(&key, now, fx);
        }
        true
    }

    /// Every pool with autoscale on: its formula, whether its interval is due, and whether it
    /// also wants evaluations on events (the metadata item
    /// `openbatch.autoscale.evaluateOnEvents`, default true; an openbatch extension that keeps
    /// the Azure shape).
    pub fn autoscale_pools(
        &self,
        now: DateTime<Utc>,
        min_interval: std::time::Duration,
    ) -> Vec<AutoscalePool> {
        self.pools
            .values()
            .filter(|p| p.state == PoolState::Active && p.spec.enable_auto_scale == Some(true))
            .filter_map(|p| {
                let formula = p.spec.auto_scale_formula.clone()?;
                let interval = p
                    .spec
                    .auto_scale_evaluation_interval
                    .and_then(|d| d.as_duration())
                    .unwrap_or(std::time::Duration::from_secs(15 * 60))
                    .max(min_interval);
                let last = p.autoscale_run.as_ref().map(|r| r.timestamp);
                let due = match last {
                    None => true,
                    Some(t) => chrono::Duration::from_std(interval)
                        .map(|i| now - t >= i)
                        .unwrap_or(true),
                };
                let on_events =
                    !p.spec.metadata.iter().any(|m| {
                        m.name == EVENTS_METADATA && m.value.eq_ignore_ascii_case("false")
                    });
                Some(AutoscalePool {
                    id: p.spec.id.clone(),
                    formula,
                    due,
                    on_events,
                    last,
                })
            })
            .collect()
    }
}

/// The pool metadata item that turns event-triggered autoscale evaluation off (`false`).
pub const EVENTS_METADATA: &str = "openbatch.autoscale.evaluateOnEvents";

/// A pool with autoscale on, as the shell's autoscaler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoscalePool {
    pub id: String,
    pub formula: String,
    /// Its evaluation interval has passed since the last run (or it never ran).
    pub due: bool,
    /// It also wants evaluations when work appears or drains.
    pub on_events: bool,
    pub last: Option<DateTime<Utc>>,
}

/// The most nodes an autoscale formula may ask for in one pool (as for a manual resize).
const MAX_AUTOSCALE_TARGET: u32 = 10_000;
