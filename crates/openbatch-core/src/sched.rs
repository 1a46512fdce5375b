//! The scheduler: place runnable tasks on free node slots.
//!
//! Properties kept (tested in `tests/`):
//! - A node never runs more slots than it has (`taskSlotsPerNode`), counting `requiredSlots`.
//! - Tasks start in queue order: higher job priority first, then older jobs, then older tasks.
//!   A task that does not fit on any node right now is skipped, and smaller ones behind it may
//!   start (backfill). Reserving capacity for large tasks comes with gang scheduling.
//! - `nodeFillType`: `spread` puts each task on the node with the most free slots, `pack`
//!   fills the busiest node that still fits first.
//! - A job's `maxParallelTasks` caps its runs in flight.
//!
//! Work per call is bounded by the placements made plus `MAX_SKIPS`, never by the queue length.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::{JobState, NodeFillType, NodeState, TaskState};

use crate::input::{Effect, RunSpec};
use crate::state::{Core, TaskLocation};

/// How many queued tasks that cannot start (too big for any free node, job at its parallel
/// limit) one pass looks past before it stops. Bounds the cost of a pass on a huge queue.
const MAX_SKIPS: usize = 256;

impl Core {
    /// Run a placement pass on every pool touched by the input. Returns whether anything started.
    pub(crate) fn schedule_dirty(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let pools = std::mem::take(&mut self.dirty_pools);
        let mut placed = false;
        for pool in pools {
            placed |= self.schedule_pool(&pool, now, fx);
        }
        // Placement itself marks pools dirty; those passes already ran.
        self.dirty_pools.clear();
        placed
    }

    fn schedule_pool(&mut self, pool_key: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let Some(pool) = self.pools.get(pool_key) else {
            return false;
        };
        let fill = pool
            .spec
            .task_scheduling_policy
            .map(|p| p.node_fill_type)
            .unwrap_or(NodeFillType::Spread);
        // Free capacity of schedulable nodes: (node id, free slots).
        let mut free: Vec<(String, u32)> = pool
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .filter(|n| n.schedulable() && n.free_slots() > 0)
            .map(|n| (n.id.clone(), n.free_slots()))
            .collect();
        if free.is_empty() {
            return false;
        }
        let Some(queue) = self.queues.get(pool_key) else {
            return false;
        };
        let mut picks = Vec::new();
        let mut skips = 0;
        let mut per_job_started: std::collections::BTreeMap<String, i64> = Default::default();
        for (qkey, (jk, tk)) in queue.iter() {
            if free.is_empty() || skips > MAX_SKIPS {
                break;
            }
            let Some(job) = self.jobs.get(jk) else { continue };
            let Some(task) = job.tasks.get(tk) else { continue };
            if job.state != JobState::Active {
                skips += 1;
                continue;
            }
            let max_parallel = job.spec.max_parallel_tasks.unwrap_or(-1);
            let started = per_job_started.get(jk).copied().unwrap_or(0);
            if max_parallel > 0 && job.counts.running + started >= max_parallel as i64 {
                skips += 1;
                continue;
            }
            let need = task.required_slots();
            let choice = match fill {
                NodeFillType::Spread => free
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, f))| *f >= need)
                    .max_by_key(|(i, (_, f))| (*f, std::cmp::Reverse(*i))),
                NodeFillType::Pack => free
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, f))| *f >= need)
                    .min_by_key(|(i, (_, f))| (*f, *i)),
            };
            let Some((idx, _)) = choice else {
                skips += 1;
                continue;
            };
            free[idx].1 -= need;
            let node = free[idx].0.clone();
            if free[idx].1 == 0 {
                free.swap_remove(idx);
            }
            *per_job_started.entry(jk.clone()).or_default() += 1;
            picks.push((*qkey, jk.clone(), tk.clone(), node, need));
        }
        let placed = !picks.is_empty();
        for (qkey, jk, tk, node, need) in picks {
            if let Some(q) = self.queues.get_mut(pool_key) {
                q.remove(&qkey);
            }
            self.start_run(&jk, &tk, &node, need, now, fx);
        }
        placed
    }

    fn start_run(
        &mut self,
        jk: &str,
        tk: &str,
        node_id: &str,
        slots: u32,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let run = self.next_run;
        self.next_run += 1;
        let Some(job) = self.jobs.get(jk) else { return };
        let Some(task) = job.tasks.get(tk) else { return };
        let mut environment = job.spec.common_environment_settings.clone();
        environment.extend(task.spec.environment_settings.iter().cloned());
        let max_wall_clock: Option<Duration> = task
            .spec
            .constraints
            .and_then(|c| c.max_wall_clock_time)
            .and_then(|d| d.as_duration());
        let spec = RunSpec {
            run,
            job_id: job.spec.id.clone(),
            task_id: task.spec.id.clone(),
            command_line: task.spec.command_line.clone(),
            environment,
            resource_files: task.spec.resource_files.clone(),
            output_files: task.spec.output_files.clone(),
            max_wall_clock,
            required_slots: slots,
        };
        let pool_id = self
            .nodes
            .get(node_id)
            .and_then(|n| self.pools.get(&n.pool))
            .map(|p| p.spec.id.clone())
            .unwrap_or_default();
        let task_dir = format!("workitems/{}/job-1/{}", job.spec.id, task.spec.id);
        let task = self
            .jobs
            .get_mut(jk)
            .and_then(|j| j.tasks.get_mut(tk))
            .expect("looked up above");
        task.current_run = Some(run);
        task.terminating = false;
        task.exec.start_time = Some(now);
        task.exec.end_time = None;
        task.exec.exit_code = None;
        task.exec.failure_info = None;
        task.exec.result = None;
        task.location = Some(TaskLocation {
            pool_id,
            node_id: node_id.to_string(),
            task_dir,
        });
        self.set_task_state(jk, tk, TaskState::Running, now);
        self.runs
            .insert(run, (jk.to_string(), tk.to_string(), node_id.to_string()));
        if let Some(node) = self.nodes.get_mut(node_id) {
            node.running
                .insert(run, (jk.to_string(), tk.to_string(), slots));
            node.used_slots += slots;
        }
        self.set_node_state(node_id, NodeState::Running, now);
        fx.push(Effect::RunTask {
            node: node_id.to_string(),
            spec: Box::new(spec),
        });
    }
}
