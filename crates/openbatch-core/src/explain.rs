//! Why a task is not running, and tasks that never can.
//!
//! **Never runnable.** A task whose `requiredSlots` is more than any node of its job's pool has
//! (the pool's `taskSlotsPerNode`, or a joined node's own slot count if larger) would wait
//! forever. Azure Batch accepts such a task and never runs it ("The Batch Service doesn't
//! currently validate this conflict when you submit tasks", because a job may not have its
//! pool bound yet, or may move to another pool). openbatch instead completes it as soon as it
//! would be queued, with `executionInfo.result = failure` and `failureInfo` category
//! `usererror`, code `TaskRequiresMoreSlotsThanNodeHas` (Azure documents no code for this). It
//! counts as a pre-processing error for exit conditions: the process never started. The check
//! runs wherever a task enters its pool's queue (add, retry, requeue, a dependency satisfied,
//! its job enabled or moved to another pool), and over the whole queue when a pool's
//! `taskSlotsPerNode` shrinks. A task whose job is disabled or waits for a dependency is not
//! queued yet, so it is checked when it would be.
//!
//! [`Core::enqueue`] only notes such a task in `unrunnable`; `apply` completes them at its end,
//! so completion (and what it triggers: dependents, job actions) never runs inside a queue
//! operation.
//!
//! **Explain.** [`Core::explain_task`] is a read-only view. The queue position (`tasksAhead`)
//! follows the scheduler's order (see `sched.rs`): every runnable task of the pool's jobs ahead
//! of this one's job, plus this job's tasks submitted before it. The first part costs one step
//! per (job ahead, `requiredSlots` bucket), since a bucket knows its length; the second walks
//! this job's tasks ahead of the task, so it is O(tasks ahead in the same job), never a sort.

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    self as m, ErrorCategory, ExecutionResult, ExplainReason, FailureInfo, JobState, NameValuePair,
    TaskState,
};

use crate::exits::Ending;
use crate::input::Effect;
use crate::state::Core;
use crate::{id_key, CoreError};

/// The failure code of a task that needs more slots than any node of its pool has.
pub(crate) const NEVER_RUNNABLE_CODE: &str = "TaskRequiresMoreSlotsThanNodeHas";

/// Most unmet dependency ids listed in an explanation.
const MAX_LISTED: usize = 100;

fn never_runnable_failure(need: u32, pool_id: &str, most: u32) -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::UserError,
        code: Some(NEVER_RUNNABLE_CODE.into()),
        message: Some(format!(
            "The task requires {need} slots but the nodes of pool {pool_id} have at most {most} (taskSlotsPerNode), so it can never run."
        )),
        details: vec![
            NameValuePair {
                name: Some("RequiredSlots".into()),
                value: Some(need.to_string()),
            },
            NameValuePair {
                name: Some("TaskSlotsPerNode".into()),
                value: Some(most.to_string()),
            },
        ],
    }
}

impl Core {
    /// The most slots a node of the pool has or will have: its `taskSlotsPerNode`, or a joined
    /// node's own count if larger. `None` if there is no such pool.
    fn most_slots(&self, pool_key: &str) -> Option<u32> {
        let pool = self.pools.get(pool_key)?;
        let per_node = pool.slots_per_node();
        let joined = pool
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .map(|n| n.slots)
            .max()
            .unwrap_or(0);
        Some(per_node.max(joined))
    }

    /// Whether a task needing `slots` can never run on the pool (an unknown pool decides
    /// nothing). Looks at the nodes only when `slots` is more than `taskSlotsPerNode`.
    pub(crate) fn never_fits(&self, pool_key: &str, slots: u32) -> bool {
        match self.pools.get(pool_key) {
            Some(pool) if slots > pool.slots_per_node() => {
                self.most_slots(pool_key).is_some_and(|most| slots > most)
            }
            _ => false,
        }
    }

    /// After a pool's slots per node changed: take the queued tasks that no longer fit out of
    /// its queue, for `apply` to complete.
    pub(crate) fn recheck_queue(&mut self, pool_key: &str) {
        let Some(most) = self.most_slots(pool_key) else {
            return;
        };
        let Some(queue) = self.queues.get(pool_key) else {
            return;
        };
        let out: Vec<(String, String)> = queue
            .values()
            .flat_map(|jq| {
                jq.by_slots
                    .range(most.saturating_add(1)..)
                    .flat_map(move |(_, b)| b.values().map(move |tk| (jq.job.clone(), tk.clone())))
            })
            .collect();
        for (jk, tk) in out {
            self.dequeue(&jk, &tk);
            self.unrunnable.push((jk, tk));
        }
    }

    /// Complete the tasks found never runnable during this input. Returns whether any was.
    pub(crate) fn fail_unrunnable(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let mut any = false;
        loop {
            let batch = std::mem::take(&mut self.unrunnable);
            if batch.is_empty() {
                break;
            }
            for (jk, tk) in batch {
                let Some(job) = self.jobs.get(&jk) else {
                    continue;
                };
                let Some(task) = job.tasks.get(&tk) else {
                    continue;
                };
                if job.state != JobState::Active
                    || task.state != TaskState::Active
                    || task.current_run.is_some()
                {
                    continue;
                }
                let pool_key = job.pool_key();
                let need = task.required_slots();
                if !self.task_never_fits(&pool_key, &jk, task) {
                    self.enqueue(&jk, &tk);
                    continue;
                }
                let failure = match task.instances() {
                    Some(n) => self.too_wide(&pool_key, &jk, n),
                    None => {
                        let most = self.most_slots(&pool_key).unwrap_or(0);
                        let pool_id = self.pools[&pool_key].spec.id.clone();
                        never_runnable_failure(need, &pool_id, most)
                    }
                };
                self.dequeue(&jk, &tk);
                if let Some(t) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) {
                    t.exec.result = Some(ExecutionResult::Failure);
                    t.exec.end_time = Some(now);
                    t.exec.exit_code = None;
                    t.exec.failure_info = Some(failure);
                }
                let ending = Ending {
                    pre_processing_error: true,
                    ..Ending::default()
                };
                self.complete_task(&jk, &tk, ending, now, fx);
                any = true;
            }
        }
        any
    }

    /// Why a task is, or is not, running (`GET /openbatch/jobs/{job}/tasks/{task}/explain`).
    pub fn explain_task(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<m::TaskExplanation, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        let job = &self.jobs[&jk];
        let task = &job.tasks[&tk];
        let need = task.required_slots();
        let mut x = m::TaskExplanation {
            job_id: job.spec.id.clone(),
            task_id: task.spec.id.clone(),
            state: task.state,
            reason: ExplainReason::WaitingForSlot,
            message: String::new(),
            required_slots: need as i32,
            job_state: Some(job.state),
            node_id: None,
            start_time: None,
            result: None,
            exit_code: None,
            failure_info: None,
            dependencies: None,
            max_parallel_tasks: None,
            running_tasks: None,
            tasks_ahead: None,
            pool: None,
            instances: task.instances().map(|n| n as i32),
            held_nodes: None,
            held_nodes_empty: None,
            prepared_nodes: None,
        };
        let node = task.location.as_ref().map(|l| l.node_id.clone());
        match task.state {
            TaskState::Preparing => {
                x.node_id = node.clone();
                x.start_time = task.exec.start_time;
                self.explain_preparing(&mut x, &jk, &tk);
                return Ok(x);
            }
            TaskState::Running => {
                x.reason = ExplainReason::Running;
                x.node_id = node.clone();
                x.start_time = task.exec.start_time;
                x.message = format!(
                    "The task is running on node {}.",
                    node.as_deref().unwrap_or("?")
                );
                return Ok(x);
            }
            TaskState::Completed => {
                x.reason = ExplainReason::Completed;
                x.node_id = node;
                x.start_time = task.exec.start_time;
                x.result = task.exec.result;
                x.exit_code = task.exec.exit_code;
                x.failure_info = task.exec.failure_info.clone();
                let result = task.exec.result.map_or("no result", |r| r.as_str());
                x.message = match &task.exec.failure_info {
                    Some(f) => format!(
                        "The task completed: {result} ({}).",
                        f.message.as_deref().or(f.code.as_deref()).unwrap_or("")
                    ),
                    None => format!("The task completed: {result}."),
                };
                return Ok(x);
            }
            TaskState::Active => {}
        }
        if job.state != JobState::Active {
            x.reason = ExplainReason::JobNotActive;
            x.message = format!(
                "The job is {}: its tasks start only while it is active.",
                job.state
            );
            return Ok(x);
        }
        let pool_key = job.pool_key();
        let Some(pool) = self.pools.get(&pool_key) else {
            x.reason = ExplainReason::PoolNotFound;
            x.message = format!(
                "The job's pool {} does not exist.",
                job.spec.pool_info.pool_id.as_deref().unwrap_or("(none)")
            );
            return Ok(x);
        };
        x.pool = Some(self.explain_pool(&pool_key, need));
        if let Some(n) = task
            .instances()
            .filter(|n| self.gang_never_fits(&pool_key, &jk, *n))
        {
            x.reason = ExplainReason::NeverRunnable;
            let excluded = self.prep_excluded(&jk, &pool_key);
            x.message = format!(
                "The multi-instance task requires {n} nodes but pool {} has a target of {} node(s) and no autoscale{}: it can never run there.",
                pool.spec.id,
                self.most_nodes(&pool_key).unwrap_or(0),
                if excluded > 0 {
                    format!(", and the job preparation task failed on {excluded} of them")
                } else {
                    String::new()
                }
            );
            return Ok(x);
        }
        if task.instances().is_none() && self.never_fits(&pool_key, need) {
            x.reason = ExplainReason::NeverRunnable;
            x.message = format!(
                "The task requires {need} slots but the nodes of pool {} have at most {}: it can never run there.",
                pool.spec.id,
                self.most_slots(&pool_key).unwrap_or(0)
            );
            return Ok(x);
        }
        if job.deps.is_blocked(&tk) {
            let deps = self.unmet_dependencies(&jk, &tk);
            x.reason = ExplainReason::WaitingForDependencies;
            x.message = if deps.blocking_task_ids.is_empty() {
                format!(
                    "The task waits for {} task(s) and {} range(s) it depends on.",
                    deps.unmet_task_id_count,
                    deps.unmet_ranges.len()
                )
            } else {
                format!(
                    "The task depends on task(s) that completed without satisfying it ({}): it will not run unless they are reactivated and succeed.",
                    deps.blocking_task_ids.join(", ")
                )
            };
            x.dependencies = Some(deps);
            return Ok(x);
        }
        if let Some(max) = job.spec.max_parallel_tasks.filter(|m| *m > 0) {
            if job.counts.running >= i64::from(max) {
                x.reason = ExplainReason::JobAtMaxParallelTasks;
                x.max_parallel_tasks = Some(max);
                x.running_tasks = Some(job.counts.running);
                x.message = format!(
                    "The job already runs {} task(s), its maxParallelTasks ({max}).",
                    job.counts.running
                );
                return Ok(x);
            }
        }
        let p = x.pool.as_ref().expect("set above");
        if p.nodes == 0 {
            x.reason = ExplainReason::NoNodes;
            x.message = if pool.allocation_state == m::AllocationState::Resizing {
                format!(
                    "Pool {} has no nodes yet: it is resizing to {} dedicated and {} low-priority node(s).",
                    pool.spec.id, pool.target_dedicated, pool.target_low_priority
                )
            } else {
                format!(
                    "Pool {} has no nodes: resize it, enable autoscale, or join a node.",
                    pool.spec.id
                )
            };
            return Ok(x);
        }
        if p.schedulable_nodes == 0 {
            x.reason = ExplainReason::NoNodeReady;
            x.message = format!(
                "None of the {} node(s) of pool {} can take tasks now (starting, rebooting, offline, disconnected or leaving).",
                p.nodes, pool.spec.id
            );
            return Ok(x);
        }
        x.tasks_ahead = self.tasks_ahead(&jk, &tk);
        if let Some(n) = task.instances() {
            self.explain_gang(&mut x, &pool_key, &jk, &tk, n);
            return Ok(x);
        }
        x.message = format!(
            "The task waits for {need} free slot(s) on one node: {} runnable task(s) are ahead of it; {} of {} slot(s) are free, and {} node(s) have room for it now.",
            x.tasks_ahead.unwrap_or(0),
            p.free_slots,
            p.total_slots,
            p.nodes_that_fit_now
        );
        Ok(x)
    }

    fn explain_pool(&self, pool_key: &str, need: u32) -> m::ExplainPool {
        let pool = &self.pools[pool_key];
        let mut out = m::ExplainPool {
            pool_id: pool.spec.id.clone(),
            task_slots_per_node: pool.slots_per_node() as i32,
            allocation_state: pool.allocation_state,
            target_dedicated_nodes: pool.target_dedicated as i32,
            target_low_priority_nodes: pool.target_low_priority as i32,
            nodes: 0,
            schedulable_nodes: 0,
            total_slots: 0,
            free_slots: 0,
            nodes_that_fit_now: 0,
            nodes_that_could_fit: 0,
        };
        for n in pool.nodes.iter().filter_map(|n| self.nodes.get(n)) {
            out.nodes += 1;
            if n.slots >= need {
                out.nodes_that_could_fit += 1;
            }
            if n.schedulable() {
                out.schedulable_nodes += 1;
                out.total_slots += u64::from(n.slots);
                out.free_slots += u64::from(n.free_slots());
            }
        }
        // The capacity index files schedulable nodes by free slots.
        out.nodes_that_fit_now = self.capacity.get(pool_key).map_or(0, |set| {
            set.range((need, 0, String::new())..).count() as u64
        });
        out
    }

    /// Runnable tasks of the pool ahead of this one in scheduling order; `None` if it is not
    /// queued.
    fn tasks_ahead(&self, jk: &str, tk: &str) -> Option<u64> {
        let job = self.jobs.get(jk)?;
        let task = job.tasks.get(tk)?;
        let queue = self.queues.get(&job.pool_key())?;
        let order = (std::cmp::Reverse(job.priority()), job.seq);
        let own = queue.get(&order)?;
        if task.instances().is_some() {
            own.gangs.get(&task.seq)?;
        } else {
            own.by_slots.get(&task.required_slots())?.get(&task.seq)?;
        }
        let before: u64 = queue
            .range(..order)
            .map(|(_, jq)| {
                jq.by_slots.values().map(|b| b.len() as u64).sum::<u64>() + jq.gangs.len() as u64
            })
            .sum();
        let within: u64 = own
            .by_slots
            .values()
            .map(|b| b.range(..task.seq).count() as u64)
            .sum::<u64>()
            + own.gangs.range(..task.seq).count() as u64;
        Some(before + within)
    }

    fn unmet_dependencies(&self, jk: &str, tk: &str) -> m::ExplainDependencies {
        let job = &self.jobs[jk];
        let task = &job.tasks[tk];
        let mut out = m::ExplainDependencies {
            unmet_task_ids: Vec::new(),
            unmet_task_id_count: 0,
            blocking_task_ids: Vec::new(),
            unmet_ranges: Vec::new(),
        };
        let Some(deps) = &task.spec.depends_on else {
            return out;
        };
        let mut seen = std::collections::BTreeSet::new();
        for id in &deps.task_ids {
            if !seen.insert(id_key(id)) {
                continue;
            }
            let dep = job.tasks.get(&id_key(id));
            if dep.is_some_and(|d| d.satisfies_dependents()) {
                continue;
            }
            out.unmet_task_id_count += 1;
            if out.unmet_task_ids.len() < MAX_LISTED {
                out.unmet_task_ids.push(id.clone());
            }
            if dep.is_some_and(|d| d.state == TaskState::Completed)
                && out.blocking_task_ids.len() < MAX_LISTED
            {
                out.blocking_task_ids.push(id.clone());
            }
        }
        for r in &deps.task_id_ranges {
            if let Some(first) = job.deps.range_first_unmet((r.start, r.end)) {
                if out.unmet_ranges.len() < MAX_LISTED {
                    out.unmet_ranges.push(m::ExplainRange {
                        start: r.start,
                        end: r.end,
                        first_unmet: first,
                    });
                }
            }
        }
        out
    }
}
