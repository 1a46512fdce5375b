//! The scheduler: place runnable tasks on free node slots.
//!
//! Properties kept (tested in `tests/`):
//! - A node never runs more slots than it has (`taskSlotsPerNode`), counting `requiredSlots`.
//! - Tasks start in queue order: higher job priority first, then older jobs, then older tasks.
//!   A task that does not fit on any node right now is skipped, and smaller ones behind it may
//!   start (backfill), but not forever: when a job's oldest task fits nowhere, one node (the one
//!   with the most free slots among those large enough) is held for it. Nothing new starts on
//!   the held node, other nodes keep backfilling, and the task starts as soon as it fits. One
//!   hold per pool at a time; it is part of the pool's state (`Pool::reservation`), so a replay
//!   or snapshot load places exactly as the live server did.
//! - `nodeFillType`: `spread` puts each task on the node with the most free slots, `pack`
//!   fills the busiest node that still fits first.
//! - A job's `maxParallelTasks` caps its runs in flight.
//! - Jobs with `allowTaskPreemption` give way: a waiting task of a higher-priority job that
//!   fits no node gets one by requeueing their tasks (`priority.rs`).
//! - A task's `affinityInfo.affinityId` is a preference: the task runs on that node when the
//!   node can take it at the moment the task's turn comes, and wherever the fill type says
//!   otherwise. It never changes the order in which tasks start.
//! - Multi-instance tasks (gangs) take whole nodes, all at once; the pool's one reservation
//!   holds several nodes for the gang at the head of a job's queue (see `gang.rs`).
//!
//! Work per call is bounded by the placements made plus `MAX_SKIPS`, never by the queue length.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::{JobState, NodeFillType, NodeState, TaskState};

use crate::input::{Effect, RunSpec};
use crate::jobtasks::Gate;
use crate::state::{Core, JobOrder, TaskLocation};

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

    /// Place what fits; then, while a waiting task of a higher-priority job can get a node by
    /// requeueing tasks of jobs that allow it (`priority.rs`), do that and place again. Each
    /// round that preempts must start something, so the loop ends.
    fn schedule_pool(&mut self, pool_key: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let mut placed = self.place_pool(pool_key, now, fx);
        while self.preempt_for_priority(pool_key, now, fx) {
            if !self.place_pool(pool_key, now, fx) {
                break;
            }
            placed = true;
        }
        placed
    }

    fn place_pool(&mut self, pool_key: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let Some(pool) = self.pools.get(pool_key) else {
            return false;
        };
        let fill = pool
            .spec
            .task_scheduling_policy
            .map(|p| p.node_fill_type)
            .unwrap_or(NodeFillType::Spread);
        let mut placed = self.place_reserved(pool_key, fill, now, fx);
        let orders: Vec<JobOrder> = match self.queues.get(pool_key) {
            Some(q) => q.keys().copied().collect(),
            None => return placed,
        };
        // Jobs in priority order; within a job, the oldest task that fits the largest free
        // space. A job that cannot use the free capacity (not active, at its parallel limit,
        // only tasks too large) is passed over as a whole.
        for order in orders {
            let reserved = self.reserved_node(pool_key);
            if self.largest_free(pool_key, reserved.as_deref()) == 0 {
                break;
            }
            let Some(jq) = self.queues.get(pool_key).and_then(|q| q.get(&order)) else {
                continue;
            };
            let jk = jq.job.clone();
            let Some(job) = self.jobs.get(&jk) else {
                continue;
            };
            if job.state != JobState::Active {
                continue;
            }
            let max_parallel = job.spec.max_parallel_tasks.unwrap_or(-1);
            let mut allowance = if max_parallel > 0 {
                (max_parallel as i64 - job.counts.running).max(0)
            } else {
                i64::MAX
            };
            while allowance > 0 {
                let reserved = self.reserved_node(pool_key);
                let largest = self.largest_free(pool_key, reserved.as_deref());
                if largest == 0 {
                    break;
                }
                let Some(jq) = self.queues.get(pool_key).and_then(|q| q.get(&order)) else {
                    break;
                };
                // The oldest task of the job: if it fits nowhere, it gets a node held for it
                // (when none is held yet) before smaller tasks behind it fill the pool.
                let head = jq
                    .by_slots
                    .iter()
                    .filter_map(|(slots, b)| {
                        b.first_key_value()
                            .map(|(seq, tk)| (*seq, *slots, tk.clone()))
                    })
                    .min();
                // The job's oldest multi-instance task (not the one the pool holds nodes for).
                let gang = self.gang_head(pool_key, &order);
                if let Some((gseq, gtk, n)) = &gang {
                    if head.as_ref().is_none_or(|(seq, _, _)| gseq < seq) {
                        // It is the job's oldest task: it starts now on empty nodes, or gets
                        // nodes held for it, before smaller tasks behind it fill the pool.
                        match self.head_gang(pool_key, &jk, gtk, *n, reserved.as_deref(), now, fx) {
                            crate::gang::HeadGang::Started => {
                                placed = true;
                                allowance -= 1;
                                continue;
                            }
                            crate::gang::HeadGang::Changed => continue,
                            crate::gang::HeadGang::Waits => {}
                        }
                    }
                }
                if let Some((_, need, tk)) = &head {
                    // An exclusive job manager task that finds no node running nothing is
                    // held a node too: it drains, and the job manager starts there.
                    let blocked = *need > largest
                        || (self.runs_exclusive(&jk, tk)
                            && self
                                .node_for(pool_key, &jk, tk, *need, fill, reserved.as_deref())
                                .is_none());
                    if blocked
                        && !self.has_reservation(pool_key)
                        && self.reserve(pool_key, &jk, tk, *need)
                    {
                        continue;
                    }
                }
                let Some(jq) = self.queues.get(pool_key).and_then(|q| q.get(&order)) else {
                    break;
                };
                // The head of every bucket that fits; the oldest of them goes first.
                let pick = jq
                    .by_slots
                    .range(..=largest)
                    .filter_map(|(slots, bucket)| {
                        bucket
                            .first_key_value()
                            .map(|(seq, tk)| (*seq, *slots, tk.clone()))
                    })
                    .filter(|(_, _, tk)| !self.is_reserved_task(pool_key, &jk, tk))
                    .min();
                // A multi-instance task behind the head starts too if enough nodes are empty now
                // (all of them at once; it never holds any).
                let gang_now = gang.and_then(|(gseq, gtk, n)| {
                    self.empty_nodes_for(pool_key, (&jk, &gtk), n, reserved.as_deref())
                        .map(|nodes| (gseq, gtk, nodes))
                });
                if let Some((gseq, gtk, nodes)) = gang_now {
                    if pick.as_ref().is_none_or(|(seq, _, _)| gseq < *seq) {
                        self.dequeue(&jk, &gtk);
                        self.start_gang(&jk, &gtk, nodes, now, fx);
                        placed = true;
                        allowance -= 1;
                        continue;
                    }
                }
                let Some((_, need, tk)) = pick else { break };
                let Some((node, slots)) =
                    self.node_for(pool_key, &jk, &tk, need, fill, reserved.as_deref())
                else {
                    break;
                };
                self.dequeue(&jk, &tk);
                self.start_run(&jk, &tk, &node, slots, now, fx);
                placed = true;
                allowance -= 1;
            }
        }
        placed
    }

    /// The task a reservation of `pool_key` holds nodes for, while it still waits for them:
    /// its job is active and on that pool, it is active with no run, and it is in the run
    /// queue. `None`: the hold is stale.
    pub(crate) fn reserved_task(
        &self,
        pool_key: &str,
        r: &crate::state::Reservation,
    ) -> Option<&crate::state::Task> {
        let job = self
            .jobs
            .get(&r.job)
            .filter(|j| j.state == JobState::Active && j.pool_key() == pool_key)?;
        let task = job
            .tasks
            .get(&r.task)
            .filter(|t| t.state == TaskState::Active && t.current_run.is_none())?;
        self.is_queued(&r.job, &r.task).then_some(task)
    }

    /// The node held for a waiting single-node task, if any (a gang's held nodes are out of
    /// the capacity index instead).
    fn reserved_node(&self, pool_key: &str) -> Option<String> {
        self.pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
            .filter(|r| r.gang.is_empty())
            .map(|r| r.node.clone())
    }

    /// Whether the pool holds nodes for some task (one reservation per pool at a time).
    pub(crate) fn has_reservation(&self, pool_key: &str) -> bool {
        self.pools
            .get(pool_key)
            .is_some_and(|p| p.reservation.is_some())
    }

    pub(crate) fn is_reserved_task(&self, pool_key: &str, jk: &str, tk: &str) -> bool {
        self.pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| r.job == jk && r.task == tk)
    }

    /// Hold a node for `task`, which fits on no node right now: the schedulable node with the
    /// most free slots among those large enough for it (the oldest among equals). Nothing else
    /// is placed there until the task starts. Without such a node with a free slot now, the
    /// next pass (when a slot frees) tries again.
    fn reserve(&mut self, pool_key: &str, jk: &str, tk: &str, need: u32) -> bool {
        let Some(set) = self.capacity.get(pool_key) else {
            return false;
        };
        let node = set
            .iter()
            .rev()
            .filter(|(_, _, id)| {
                self.nodes.get(id).is_some_and(|n| n.slots >= need) && self.node_allowed(jk, tk, id)
            })
            .max_by_key(|(free, seq, _)| (*free, std::cmp::Reverse(*seq)))
            .map(|(_, _, id)| id.clone());
        match (node, self.pools.get_mut(pool_key)) {
            (Some(node), Some(pool)) => {
                pool.reservation = Some(crate::state::Reservation {
                    job: jk.to_string(),
                    task: tk.to_string(),
                    node,
                    gang: Vec::new(),
                });
                true
            }
            _ => false,
        }
    }

    /// Start the task a node is held for once it fits (on that node or any other), and drop a
    /// reservation that no longer holds: its task was deleted, started or is no longer
    /// runnable, its job stopped, or its node left.
    fn place_reserved(
        &mut self,
        pool_key: &str,
        fill: NodeFillType,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(r) = self.pools.get(pool_key).and_then(|p| p.reservation.clone()) else {
            return false;
        };
        if !r.gang.is_empty() {
            return self.place_reserved_gang(pool_key, now, fx);
        }
        let task = self.reserved_task(pool_key, &r);
        let queued = task.is_some();
        let need = task.map(|t| t.required_slots()).unwrap_or(0);
        let node_ok = self
            .nodes
            .get(&r.node)
            .is_some_and(|n| n.pool == pool_key && n.schedulable() && n.slots >= need)
            && self.node_allowed(&r.job, &r.task, &r.node);
        if !queued || !node_ok {
            if let Some(p) = self.pools.get_mut(pool_key) {
                p.reservation = None;
            }
            return false;
        }
        let Some((node, slots)) = self.node_for(pool_key, &r.job, &r.task, need, fill, None) else {
            return false;
        };
        if let Some(p) = self.pools.get_mut(pool_key) {
            p.reservation = None;
        }
        self.dequeue(&r.job, &r.task);
        self.start_run(&r.job, &r.task, &node, slots, now, fx);
        true
    }

    /// The most free slots any schedulable node of the pool but `exclude` has.
    fn largest_free(&self, pool_key: &str, exclude: Option<&str>) -> u32 {
        self.capacity
            .get(pool_key)
            .and_then(|s| {
                s.iter()
                    .rev()
                    .find(|(_, _, id)| Some(id.as_str()) != exclude)
            })
            .map_or(0, |(free, _, _)| *free)
    }

    /// Where `task` of `job` goes, and how many slots it takes there: a job manager task that
    /// runs exclusively needs a node that runs nothing, and takes all of its slots (the oldest
    /// such node); any other task a node with `need` free slots (`choose_node`). Never
    /// `exclude`, nor a node the task may not use (`node_allowed`).
    fn node_for(
        &self,
        pool_key: &str,
        jk: &str,
        tk: &str,
        need: u32,
        fill: NodeFillType,
        exclude: Option<&str>,
    ) -> Option<(String, u32)> {
        let ok = |id: &str| Some(id) != exclude && self.node_allowed(jk, tk, id);
        if self.runs_exclusive(jk, tk) {
            return self
                .capacity
                .get(pool_key)?
                .iter()
                .rev()
                .filter(|(free, _, id)| {
                    *free >= need && self.nodes.get(id).is_some_and(|n| n.slots == *free) && ok(id)
                })
                .min_by_key(|(_, seq, _)| *seq)
                .map(|(free, _, id)| (id.clone(), *free));
        }
        if let Some(id) = self.affinity_node(pool_key, jk, tk, need, &ok) {
            return Some((id, need));
        }
        self.choose_node(pool_key, need, fill, &ok)
            .map(|id| (id, need))
    }

    /// The node a task's `affinityInfo.affinityId` names, when it is in the pool, takes work,
    /// has room for the task and `ok` accepts it (not held for another task, allowed for the
    /// job). Affinity is a preference (Azure: "a locality hint"): when the node cannot take the
    /// task now, the fill type chooses.
    fn affinity_node(
        &self,
        pool_key: &str,
        jk: &str,
        tk: &str,
        need: u32,
        ok: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        let task = self.jobs.get(jk)?.tasks.get(tk)?;
        let wanted = task.spec.affinity_info.as_ref()?.affinity_id.as_str();
        let node = self.nodes.get(wanted)?;
        (node.pool == pool_key && ok(wanted) && node.indexed_free.is_some_and(|free| free >= need))
            .then(|| node.id.clone())
    }

    /// A node with at least `need` free slots that `ok` accepts: `spread` takes the one with
    /// the most free slots, `pack` the one with the fewest that still fit; among equals, the
    /// oldest node.
    fn choose_node(
        &self,
        pool_key: &str,
        need: u32,
        fill: NodeFillType,
        ok: &dyn Fn(&str) -> bool,
    ) -> Option<String> {
        let set = self.capacity.get(pool_key)?;
        let other = |id: &String| ok(id);
        let free = match fill {
            NodeFillType::Spread => set.iter().rev().find(|(_, _, id)| other(id))?.0,
            NodeFillType::Pack => {
                set.range((need, 0, String::new())..)
                    .find(|(_, _, id)| other(id))?
                    .0
            }
        };
        if free < need {
            return None;
        }
        set.range((free, 0, String::new())..)
            .find(|(_, _, id)| other(id))
            .map(|(_, _, id)| id.clone())
    }

    /// Start `task` of `job` on a node: a run id, its slots taken. Where the job's preparation
    /// task has not run yet it starts first, and (with `waitForSuccess`) the task waits for it
    /// in `preparing` (see `jobtasks.rs`).
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
        let Some(spec) = self.run_spec(jk, tk, run, slots, None) else {
            return;
        };
        self.next_run += 1;
        self.mark_started(jk, tk, run, node_id, now);
        self.occupy(jk, tk, run, node_id, slots, now);
        let mut gate = self.prep_gate(jk, node_id);
        if gate == Gate::Start {
            self.start_prep(jk, node_id, false, now, fx);
            gate = self.prep_gate(jk, node_id);
        }
        if gate == Gate::Wait {
            self.set_task_state(jk, tk, TaskState::Preparing, now);
            if let Some(node) = self.nodes.get_mut(node_id) {
                node.waiting.insert(run);
            }
            return;
        }
        self.set_task_state(jk, tk, TaskState::Running, now);
        fx.push(Effect::RunTask {
            node: node_id.to_string(),
            spec: Box::new(spec),
        });
    }

    /// What the agent is told to run for one attempt (or one instance of a gang's attempt).
    pub(crate) fn run_spec(
        &self,
        jk: &str,
        tk: &str,
        run: u64,
        slots: u32,
        instance: Option<openbatch_api::agent::InstanceSpec>,
    ) -> Option<RunSpec> {
        let job = self.jobs.get(jk)?;
        let task = job.tasks.get(tk)?;
        let mut environment = job.spec.common_environment_settings.clone();
        environment.extend(task.spec.environment_settings.iter().cloned());
        let max_wall_clock: Option<Duration> = task
            .spec
            .constraints
            .and_then(|c| c.max_wall_clock_time)
            .and_then(|d| d.as_duration());
        // The pool's packages as its references (and the defaults) are now, then the task's.
        let app_packages = self.resolve_packages(
            self.pools
                .get(&job.pool_key())
                .into_iter()
                .flat_map(|p| p.spec.application_package_references.iter())
                .chain(task.spec.application_package_references.iter()),
        );
        Some(RunSpec {
            run,
            job_id: job.spec.id.clone(),
            task_id: task.spec.id.clone(),
            command_line: task.spec.command_line.clone(),
            environment,
            resource_files: task.spec.resource_files.clone(),
            output_files: task.spec.output_files.clone(),
            max_wall_clock,
            required_slots: slots,
            log_upload: None,
            app_packages,
            job_preparation_task: job
                .spec
                .job_preparation_task
                .as_ref()
                .map(|p| p.task_id().to_string()),
            instance,
        })
    }

    /// The task's attempt `run` starts now on `node_id` (for a gang: its primary's node). The
    /// caller sets the task's state (`running`, or `preparing` while the job's preparation task
    /// runs on the node).
    pub(crate) fn mark_started(
        &mut self,
        jk: &str,
        tk: &str,
        run: u64,
        node_id: &str,
        now: DateTime<Utc>,
    ) {
        let pool_id = self
            .nodes
            .get(node_id)
            .and_then(|n| self.pools.get(&n.pool))
            .map(|p| p.spec.id.clone())
            .unwrap_or_default();
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        let job_id = job.spec.id.clone();
        let Some(task) = job.tasks.get_mut(tk) else {
            return;
        };
        let task_dir = openbatch_api::agent::task_dir(&job_id, &task.spec.id);
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
            run: Some(run),
            empty_logs: Vec::new(),
            ended: None,
        });
    }

    /// Run `run` of the task takes `slots` on the node.
    pub(crate) fn occupy(
        &mut self,
        jk: &str,
        tk: &str,
        run: u64,
        node_id: &str,
        slots: u32,
        now: DateTime<Utc>,
    ) {
        self.runs
            .insert(run, (jk.to_string(), tk.to_string(), node_id.to_string()));
        if let Some(node) = self.nodes.get_mut(node_id) {
            node.running
                .insert(run, (jk.to_string(), tk.to_string(), slots));
            node.used_slots += slots;
        }
        self.note_run_dir(jk, tk, node_id);
        self.set_node_state(node_id, NodeState::Running, now);
    }
}
