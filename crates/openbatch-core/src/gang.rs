//! Gang placement of multi-instance tasks (`multiInstanceSettings`).
//!
//! A multi-instance task needs `numberOfInstances` distinct nodes at once (Azure: one primary
//! and subtasks, one per node; `requiredSlots` must be 1, and the pool runs one task per node).
//! openbatch gives each instance a whole node: it starts only on a node that runs nothing, and
//! takes all of that node's slots, so `taskSlotsPerNode` > 1 pools work too.
//!
//! Properties kept (tested by `tests/scenarios/gangs.rs`, `tests/gang_props.rs` and the
//! simulation):
//! - **Atomic.** All instances start in one input, or none does ([`Core::start_gang`]). The
//!   primary (instance 0) is the task's `current_run`, and its node is the task's `nodeInfo`.
//! - **No deadlock.** A gang never holds part of its nodes while running: nodes are *held*
//!   (reserved) only by the pool's one reservation (`Pool::reservation`, extended with `gang`),
//!   for one task at a time, chosen in queue order (job priority, job age, task age).
//! - **No starvation.** When the job's oldest task is a gang that cannot start now, the pool
//!   holds nodes for it: the nodes with the most free slots, topped up as capacity frees, until
//!   `numberOfInstances` are held. Held nodes leave the capacity index, so nothing new starts on
//!   them; other nodes keep running narrow tasks (backfill). When every held node is empty, the
//!   gang starts on them. A gang behind the head starts at once if enough nodes are empty, but
//!   never holds any.
//! - **All or nothing while it runs.** The loss of any instance (node lost, removed,
//!   preempted, requeued) requeues the whole task: the other instances are killed, and their
//!   slots stay taken until their agents report the kill, like any killed run. The failure of a
//!   subtask fails the attempt (Azure: "if any of the subtasks fail, the entire multi-instance
//!   task fails"), which is retried up to `maxTaskRetryCount`; the other instances are killed.
//!   The primary's end ends the attempt with its result and stops the others. A subtask that
//!   ends successfully before the primary frees its node.
//! - **Fail fast.** A gang wider than its pool can have (the pool's target node count and its
//!   current nodes, for a pool without autoscale) is completed as failed when it would be
//!   queued, like a task that needs more slots than a node has (`explain.rs`), with code
//!   `TaskRequiresMoreNodesThanPoolHas`. A held reservation whose pool shrank below the gang
//!   fails it the same way.
//!
//! - **Job preparation.** A gang placed on nodes that have not run its job's preparation task
//!   starts it on each of them and waits in `preparing`, its nodes taken and its instance runs
//!   held back (`Node::waiting`), until preparation succeeded on all of them (or runs or ran,
//!   without `waitForSuccess`); then all instances start in one input ([`Core::dispatch_gang`]).
//!   A failure on one node, or the loss of one, requeues the whole gang without a retry; nodes
//!   where the preparation failed are never chosen for it, and count against the pool's size
//!   for the fail-fast check.
//!
//! Everything is in the journaled state (the reservation's held nodes, the task's instance
//! runs); the indexes (`Core::empty`, and the held nodes' absence from `Core::capacity`) are
//! derived and rebuilt on load, so a replay places exactly as the live server did.
//!
//! Costs: holding and checking a reservation is O(`numberOfInstances`) per placement pass of
//! its pool; starting a gang is O(`numberOfInstances` · log nodes).

use chrono::{DateTime, Utc};
use openbatch_api::agent::InstanceSpec;
use openbatch_api::models::{
    self as m, ErrorCategory, ExecutionResult, FailureInfo, NameValuePair, SubtaskState,
    TaskCreate, TaskState,
};
use serde::{Deserialize, Serialize};

use crate::input::{Effect, RunResult};
use crate::jobtasks::Gate;
use crate::state::{Core, JobOrder, Reservation, Task};
use crate::view::Urls;
use crate::CoreError;

/// One subtask (instance 1 and up) of a multi-instance task's current or latest attempt: what
/// `subtasksinfo` lists. Started `running` with the gang; `completed` when its run reports its
/// end (with that result), or when the attempt ends without it (stopped: the time only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubtaskRecord {
    pub(crate) index: u32,
    pub(crate) run: u64,
    pub(crate) node_id: String,
    pub(crate) pool_id: String,
    pub(crate) state: SubtaskState,
    pub(crate) state_time: DateTime<Utc>,
    #[serde(default)]
    pub(crate) previous: Option<(SubtaskState, DateTime<Utc>)>,
    pub(crate) start_time: DateTime<Utc>,
    #[serde(default)]
    pub(crate) end_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) exit_code: Option<i32>,
    #[serde(default)]
    pub(crate) failure: Option<FailureInfo>,
    #[serde(default)]
    pub(crate) result: Option<ExecutionResult>,
}

impl SubtaskRecord {
    /// The subtask ends now: with its run's result when it reported one.
    fn complete(&mut self, result: Option<&RunResult>, now: DateTime<Utc>) {
        if self.state == SubtaskState::Completed {
            return;
        }
        self.previous = Some((self.state, self.state_time));
        self.state = SubtaskState::Completed;
        self.state_time = now;
        self.end_time = Some(now);
        if let Some(r) = result {
            self.end_time = Some(r.end_time.max(self.start_time));
            self.exit_code = r.exit_code;
            self.failure = r.failure.clone();
            self.result = Some(if r.failure.is_none() && r.exit_code == Some(0) {
                ExecutionResult::Success
            } else {
                ExecutionResult::Failure
            });
        }
    }
}

/// The failure code of a multi-instance task wider than its pool can have.
pub(crate) const TOO_WIDE_CODE: &str = "TaskRequiresMoreNodesThanPoolHas";

/// What became of a job's oldest task when it is a gang.
pub(crate) enum HeadGang {
    /// It started on empty nodes.
    Started,
    /// Nodes are held for it now, or it left the queue: look again.
    Changed,
    /// It waits (another task holds the pool's reservation, or no node can be held now).
    Waits,
}

/// The checks of `multiInstanceSettings` when a task is added.
pub(crate) fn check(spec: &TaskCreate) -> Result<(), CoreError> {
    let Some(m) = &spec.multi_instance_settings else {
        return Ok(());
    };
    if let Some(n) = m.number_of_instances {
        if n < 1 {
            return Err(CoreError::invalid(
                "multiInstanceSettings.numberOfInstances",
                n,
                "must be at least 1",
            ));
        }
    }
    if let Some(slots) = spec.required_slots {
        if slots != 1 {
            return Err(CoreError::invalid(
                "requiredSlots",
                slots,
                "a multi-instance task must have requiredSlots 1: each instance takes a whole node",
            ));
        }
    }
    crate::tasks::check_resource_files(
        "multiInstanceSettings.commonResourceFiles",
        &m.common_resource_files,
    )
}

fn too_wide_failure(n: u32, pool_id: &str, most: u32) -> FailureInfo {
    FailureInfo {
        category: ErrorCategory::UserError,
        code: Some(TOO_WIDE_CODE.into()),
        message: Some(format!(
            "The multi-instance task requires {n} nodes but pool {pool_id} has a target of {most} node(s) and no autoscale, so it can never run."
        )),
        details: vec![
            NameValuePair {
                name: Some("NumberOfInstances".into()),
                value: Some(n.to_string()),
            },
            NameValuePair {
                name: Some("PoolNodes".into()),
                value: Some(most.to_string()),
            },
        ],
    }
}

impl Core {
    /// The most nodes the pool is going to have: its target (dedicated plus low-priority) or
    /// its current node count if larger. `None` for an unknown pool, or one with autoscale on
    /// (its size is the formula's to decide).
    pub(crate) fn most_nodes(&self, pool_key: &str) -> Option<u32> {
        let pool = self.pools.get(pool_key)?;
        if pool.spec.enable_auto_scale == Some(true) {
            return None;
        }
        let target = pool
            .target_dedicated
            .saturating_add(pool.target_low_priority);
        Some(target.max(pool.nodes.len() as u32))
    }

    /// Whether a gang of `n` of job `jk` can never run on the pool: it is wider than the pool
    /// can be, less the pool's nodes where the job's preparation task failed (with
    /// `waitForSuccess`: the job's tasks never go there, `jobtasks.rs`).
    pub(crate) fn gang_never_fits(&self, pool_key: &str, jk: &str, n: u32) -> bool {
        self.most_nodes(pool_key)
            .is_some_and(|most| n > most.saturating_sub(self.prep_excluded(jk, pool_key)))
    }

    /// Whether a task can never run on the pool: too many slots for any node, or (a gang) too
    /// many nodes for the pool.
    pub(crate) fn task_never_fits(&self, pool_key: &str, jk: &str, task: &Task) -> bool {
        match task.instances() {
            Some(n) => self.gang_never_fits(pool_key, jk, n),
            None => self.never_fits(pool_key, task.required_slots()),
        }
    }

    /// The failure of a gang of job `jk` found never runnable.
    pub(crate) fn too_wide(&self, pool_key: &str, jk: &str, n: u32) -> FailureInfo {
        let pool_id = self
            .pools
            .get(pool_key)
            .map(|p| p.spec.id.clone())
            .unwrap_or_default();
        let most = self.most_nodes(pool_key).unwrap_or(0);
        let excluded = self.prep_excluded(jk, pool_key);
        let mut f = too_wide_failure(n, &pool_id, most);
        if excluded > 0 {
            f.message = Some(format!(
                "The multi-instance task requires {n} nodes but pool {pool_id} has a target of {most} node(s) and no autoscale, and the job preparation task failed on {excluded} of them (its tasks do not run there), so it can never run."
            ));
            f.details.push(NameValuePair {
                name: Some("NodesWhereJobPreparationFailed".into()),
                value: Some(excluded.to_string()),
            });
        }
        f
    }

    /// Whether the node is held by its pool's reservation for a gang.
    pub(crate) fn held_for_gang(&self, node_id: &str) -> bool {
        let Some(n) = self.nodes.get(node_id) else {
            return false;
        };
        self.pools
            .get(&n.pool)
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| r.gang.iter().any(|g| g == node_id))
    }

    /// For tests: the index of empty nodes, and the gang reservations, agree with the nodes.
    pub(crate) fn check_gang_indexes(&self) {
        use std::collections::{BTreeMap, BTreeSet};
        let mut want: BTreeMap<String, BTreeSet<(u64, String)>> = BTreeMap::new();
        for n in self.nodes.values() {
            if n.schedulable() && !self.held_for_gang(&n.id) && n.used_slots == 0 {
                want.entry(n.pool.clone())
                    .or_default()
                    .insert((n.seq, n.id.clone()));
            }
            assert_eq!(
                n.indexed_empty,
                want.get(&n.pool)
                    .is_some_and(|s| s.contains(&(n.seq, n.id.clone()))),
                "node {}: indexed_empty",
                n.id
            );
        }
        let have: BTreeMap<String, BTreeSet<(u64, String)>> = self
            .empty
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(have, want, "the empty-node index disagrees with the nodes");
        for (pk, p) in &self.pools {
            let Some(r) = &p.reservation else { continue };
            if r.gang.is_empty() {
                continue;
            }
            assert_eq!(r.gang.first(), Some(&r.node), "pool {pk}: reservation node");
            let distinct: BTreeSet<&String> = r.gang.iter().collect();
            assert_eq!(distinct.len(), r.gang.len(), "pool {pk}: a node held twice");
            let task = self.jobs.get(&r.job).and_then(|j| j.tasks.get(&r.task));
            if let Some(t) = task {
                let n = t.instances().expect("a gang reservation is for a gang") as usize;
                assert!(r.gang.len() <= n, "pool {pk}: more nodes held than needed");
            }
        }
        // A running gang: every instance in flight is a run the core tracks, on its own node.
        for (jk, j) in &self.jobs {
            for (tk, t) in &j.tasks {
                if t.gang.is_empty() {
                    continue;
                }
                assert!(
                    matches!(t.state, TaskState::Running | TaskState::Preparing),
                    "{jk}/{tk}: instances of a task not running"
                );
                // A gang waiting for its job's preparation task holds back every instance;
                // a running one none.
                let preparing = t.state == TaskState::Preparing;
                for (run, node) in &t.gang {
                    assert_eq!(
                        self.nodes
                            .get(node)
                            .is_some_and(|n| n.waiting.contains(run)),
                        preparing,
                        "{jk}/{tk}: instance run {run} held back (preparing: {preparing})"
                    );
                }
                assert_eq!(
                    t.gang.first().map(|g| g.0),
                    t.current_run,
                    "{jk}/{tk}: primary"
                );
                let nodes: BTreeSet<&String> = t.gang.iter().map(|g| &g.1).collect();
                assert_eq!(
                    nodes.len(),
                    t.gang.len(),
                    "{jk}/{tk}: two instances on a node"
                );
                for (run, node) in &t.gang {
                    assert_eq!(
                        self.runs.get(run),
                        Some(&(jk.clone(), tk.clone(), node.clone())),
                        "{jk}/{tk}: instance run {run}"
                    );
                }
            }
        }
    }

    /// Why a queued multi-instance task waits: for the nodes held for it (how many of `n`, and
    /// how many of those are empty), or for the pool's reservation to be its.
    pub(crate) fn explain_gang(
        &self,
        x: &mut openbatch_api::models::TaskExplanation,
        pool_key: &str,
        jk: &str,
        tk: &str,
        n: u32,
    ) {
        use openbatch_api::models::ExplainReason;
        let empty_now = self.empty.get(pool_key).map_or(0, |s| s.len());
        let reservation = self
            .pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref());
        match reservation {
            Some(r) if r.job == jk && r.task == tk => {
                let held = r.gang.len() as u64;
                let drained = r
                    .gang
                    .iter()
                    .filter(|id| self.nodes.get(*id).is_some_and(|n| n.used_slots == 0))
                    .count() as u64;
                x.reason = ExplainReason::WaitingForGangReservation;
                x.held_nodes = Some(held);
                x.held_nodes_empty = Some(drained);
                x.message = format!(
                    "The multi-instance task is waiting for a gang reservation: {held} of the {n} nodes it needs are held for it ({drained} of them empty already). Nothing new starts on held nodes; it starts on all {n} at once when they are empty."
                );
            }
            Some(r) => {
                x.reason = ExplainReason::WaitingForNodes;
                x.message = format!(
                    "The multi-instance task needs {n} empty nodes at once; {empty_now} are empty now. The pool holds nodes for task {} first; this task's turn comes after it.",
                    self.jobs
                        .get(&r.job)
                        .and_then(|j| j.tasks.get(&r.task))
                        .map_or(r.task.as_str(), |t| t.spec.id.as_str())
                );
            }
            None => {
                x.reason = ExplainReason::WaitingForNodes;
                x.message = format!(
                    "The multi-instance task needs {n} empty nodes at once; {empty_now} are empty now, and {} runnable task(s) are ahead of it. Nodes are held for it when it is first in its pool's queue.",
                    x.tasks_ahead.unwrap_or(0)
                );
            }
        }
    }

    // --- placement ----------------------------------------------------------------------------

    /// The job's oldest queued gang other than the one its pool holds nodes for:
    /// (seq, task key, instances).
    pub(crate) fn gang_head(&self, pool_key: &str, order: &JobOrder) -> Option<(u64, String, u32)> {
        let jq = self.queues.get(pool_key)?.get(order)?;
        jq.gangs
            .iter()
            .find(|(_, (tk, _))| !self.is_reserved_task(pool_key, &jq.job, tk))
            .map(|(seq, (tk, n))| (*seq, tk.clone(), *n))
    }

    /// `n` empty, unheld, schedulable nodes of the pool other than `exclude` (the node held for
    /// a single-node task) that the gang `tk` of `jk` may use (not where its job's preparation
    /// failed), oldest first; `None` if there are fewer.
    pub(crate) fn empty_nodes_for(
        &self,
        pool_key: &str,
        (jk, tk): (&str, &str),
        n: u32,
        exclude: Option<&str>,
    ) -> Option<Vec<String>> {
        let set = self.empty.get(pool_key)?;
        if set.len() < n as usize {
            return None;
        }
        let nodes: Vec<String> = set
            .iter()
            .filter(|(_, id)| Some(id.as_str()) != exclude && self.node_allowed(jk, tk, id))
            .take(n as usize)
            .map(|(_, id)| id.clone())
            .collect();
        (nodes.len() == n as usize).then_some(nodes)
    }

    /// The job's oldest task is the gang `tk`: start it if `n` nodes are empty; if it can never
    /// run, take it out of the queue (the end of `apply` fails it); otherwise, when the pool
    /// holds nothing yet, hold nodes for it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn head_gang(
        &mut self,
        pool_key: &str,
        jk: &str,
        tk: &str,
        n: u32,
        exclude: Option<&str>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> HeadGang {
        if self.gang_never_fits(pool_key, jk, n) {
            self.dequeue(jk, tk);
            self.unrunnable.push((jk.to_string(), tk.to_string()));
            return HeadGang::Changed;
        }
        if let Some(nodes) = self.empty_nodes_for(pool_key, (jk, tk), n, exclude) {
            self.dequeue(jk, tk);
            self.start_gang(jk, tk, nodes, now, fx);
            return HeadGang::Started;
        }
        if !self.has_reservation(pool_key) && self.reserve_gang(pool_key, jk, tk) {
            return HeadGang::Changed;
        }
        HeadGang::Waits
    }

    /// Hold nodes for the gang `tk` (the pool holds nothing yet): see [`Core::top_up`].
    /// Returns whether any node could be held.
    fn reserve_gang(&mut self, pool_key: &str, jk: &str, tk: &str) -> bool {
        let Some(pool) = self.pools.get_mut(pool_key) else {
            return false;
        };
        pool.reservation = Some(Reservation {
            job: jk.to_string(),
            task: tk.to_string(),
            node: String::new(),
            gang: Vec::new(),
        });
        self.top_up(pool_key);
        let held = self
            .pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| !r.gang.is_empty());
        if !held {
            if let Some(p) = self.pools.get_mut(pool_key) {
                p.reservation = None;
            }
        }
        held
    }

    /// Hold more nodes for the pool's gang reservation until it has as many as the gang needs:
    /// the unheld schedulable nodes with the most free slots (the newest among equals, from
    /// the capacity index), so they drain soonest. Nodes with no free slot join when one frees.
    fn top_up(&mut self, pool_key: &str) {
        let Some(r) = self
            .pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
        else {
            return;
        };
        let Some(n) = self
            .jobs
            .get(&r.job)
            .and_then(|j| j.tasks.get(&r.task))
            .and_then(|t| t.instances())
        else {
            return;
        };
        let missing = (n as usize).saturating_sub(r.gang.len());
        if missing == 0 {
            return;
        }
        let (jk, tk) = (r.job.as_str(), r.task.as_str());
        let picked: Vec<String> = self
            .capacity
            .get(pool_key)
            .map(|set| {
                set.iter()
                    .rev()
                    .filter(|(_, _, id)| self.node_allowed(jk, tk, id))
                    .take(missing)
                    .map(|(_, _, id)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        if picked.is_empty() {
            return;
        }
        if let Some(r) = self
            .pools
            .get_mut(pool_key)
            .and_then(|p| p.reservation.as_mut())
        {
            r.gang.extend(picked.iter().cloned());
            r.node = r.gang[0].clone();
        }
        for id in &picked {
            self.refresh_capacity(id);
        }
    }

    /// Drop the pool's reservation; its held nodes take work again.
    fn release_reservation(&mut self, pool_key: &str) {
        let Some(r) = self
            .pools
            .get_mut(pool_key)
            .and_then(|p| p.reservation.take())
        else {
            return;
        };
        for id in &r.gang {
            self.refresh_capacity(id);
        }
    }

    /// The pass over a pool whose reservation is a gang's: drop it if its task no longer waits
    /// (or can never run now), let go of held nodes that left or stopped taking work, hold
    /// more, and start the gang once every node it needs is held and empty.
    pub(crate) fn place_reserved_gang(
        &mut self,
        pool_key: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(r) = self.pools.get(pool_key).and_then(|p| p.reservation.clone()) else {
            return false;
        };
        let Some(n) = self.reserved_task(pool_key, &r).and_then(|t| t.instances()) else {
            self.release_reservation(pool_key);
            return false;
        };
        if self.gang_never_fits(pool_key, &r.job, n) {
            self.release_reservation(pool_key);
            self.dequeue(&r.job, &r.task);
            self.unrunnable.push((r.job.clone(), r.task.clone()));
            return false;
        }
        // Held nodes that left the pool or stop taking work are let go, and so are nodes where
        // the job's preparation task failed since (a task of the job ran it there).
        let keep: Vec<String> = r
            .gang
            .iter()
            .filter(|id| {
                self.nodes
                    .get(*id)
                    .is_some_and(|node| node.pool == pool_key && node.schedulable())
                    && self.node_allowed(&r.job, &r.task, id)
            })
            .cloned()
            .collect();
        if keep.len() != r.gang.len() {
            let dropped: Vec<String> = r
                .gang
                .iter()
                .filter(|id| !keep.contains(id))
                .cloned()
                .collect();
            if let Some(res) = self
                .pools
                .get_mut(pool_key)
                .and_then(|p| p.reservation.as_mut())
            {
                res.gang = keep.clone();
                res.node = keep.first().cloned().unwrap_or_default();
            }
            for id in &dropped {
                self.refresh_capacity(id);
            }
        }
        self.top_up(pool_key);
        let Some(held) = self
            .pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
            .map(|r| r.gang.clone())
        else {
            return false;
        };
        if held.is_empty() {
            self.release_reservation(pool_key);
            return false;
        }
        // The job's maxParallelTasks holds for a gang as for any task: it keeps its nodes
        // until the job may run one more.
        let below_max = self.jobs.get(&r.job).is_some_and(|j| {
            j.spec
                .max_parallel_tasks
                .filter(|m| *m > 0)
                .is_none_or(|m| j.counts.running < i64::from(m))
        });
        let ready = below_max
            && held.len() == n as usize
            && held
                .iter()
                .all(|id| self.nodes.get(id).is_some_and(|node| node.used_slots == 0));
        if !ready {
            return false;
        }
        self.release_reservation(pool_key);
        self.dequeue(&r.job, &r.task);
        self.start_gang(&r.job, &r.task, held, now, fx);
        true
    }

    /// Start every instance of the gang `tk`, one per node of `nodes` (each empty), in this
    /// one input: instance 0, the primary, on the first node. Where the job has a preparation
    /// task that has not run on a node, it starts there first; with `waitForSuccess`, the gang
    /// waits in `preparing`, its nodes taken and its instance runs held back (`Node::waiting`),
    /// until preparation has succeeded on every one of its nodes ([`Core::dispatch_gang`]).
    pub(crate) fn start_gang(
        &mut self,
        jk: &str,
        tk: &str,
        nodes: Vec<String>,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        if self.jobs.get(jk).and_then(|j| j.tasks.get(tk)).is_none() || nodes.is_empty() {
            return;
        }
        let mut instances = Vec::with_capacity(nodes.len());
        for node_id in &nodes {
            let run = self.next_run;
            self.next_run += 1;
            let slots = self.nodes.get(node_id).map_or(1, |n| n.slots.max(1));
            instances.push((run, node_id.clone(), slots));
        }
        let (primary, primary_node, _) = instances[0].clone();
        self.mark_started(jk, tk, primary, &primary_node, now);
        for (run, node_id, slots) in &instances {
            self.occupy(jk, tk, *run, node_id, *slots, now);
        }
        let subtasks: Vec<SubtaskRecord> = instances
            .iter()
            .enumerate()
            .skip(1)
            .map(|(index, (run, node_id, _))| SubtaskRecord {
                index: index as u32,
                run: *run,
                node_id: node_id.clone(),
                pool_id: self
                    .nodes
                    .get(node_id)
                    .and_then(|n| self.pools.get(&n.pool))
                    .map(|p| p.spec.id.clone())
                    .unwrap_or_default(),
                state: SubtaskState::Running,
                state_time: now,
                previous: None,
                start_time: now,
                end_time: None,
                exit_code: None,
                failure: None,
                result: None,
            })
            .collect();
        if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
            t.gang = instances
                .iter()
                .map(|(run, node, _)| (*run, node.clone()))
                .collect();
            t.coordinated.clear();
            t.subtasks = subtasks;
        }
        // The job preparation task, on each node of the gang that has not run it (in parallel).
        let mut wait = false;
        for (_, node_id, _) in &instances {
            if self.prep_gate(jk, node_id) == Gate::Start {
                self.start_prep(jk, node_id, false, now, fx);
            }
            wait |= self.prep_gate(jk, node_id) == Gate::Wait;
        }
        if wait {
            self.set_task_state(jk, tk, TaskState::Preparing, now);
            for (run, node_id, _) in &instances {
                if let Some(node) = self.nodes.get_mut(node_id) {
                    node.waiting.insert(*run);
                }
            }
            if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
                for sub in &mut t.subtasks {
                    sub.state = SubtaskState::Preparing;
                }
            }
            return;
        }
        self.set_task_state(jk, tk, TaskState::Running, now);
        self.send_gang(jk, tk, fx);
    }

    /// Tell the agents to run every instance of the task's gang, the primary first. What each
    /// instance is told: the gang's node addresses (an agent's address is the one it connected
    /// from; the node id when it has none yet), and the coordination step.
    fn send_gang(&self, jk: &str, tk: &str, fx: &mut Vec<Effect>) {
        let Some(task) = self.jobs.get(jk).and_then(|j| j.tasks.get(tk)) else {
            return;
        };
        let count = task.gang.len() as u32;
        let hosts: Vec<String> = task
            .gang
            .iter()
            .map(|(_, id)| match self.nodes.get(id) {
                Some(n) if !n.ip_address.is_empty() => n.ip_address.clone(),
                _ => id.clone(),
            })
            .collect();
        let (coordination, common_files) =
            task.spec
                .multi_instance_settings
                .clone()
                .map_or((None, Vec::new()), |m| {
                    (
                        Some(m.coordination_command_line).filter(|c| !c.trim().is_empty()),
                        m.common_resource_files,
                    )
                });
        for (index, (run, node_id)) in task.gang.iter().enumerate() {
            let slots = self
                .nodes
                .get(node_id)
                .and_then(|n| n.running.get(run))
                .map_or(1, |(_, _, s)| *s);
            let instance = InstanceSpec {
                index: index as u32,
                count,
                hosts: hosts.clone(),
                coordination_command_line: coordination.clone(),
                common_resource_files: common_files.clone(),
            };
            let Some(spec) = self.run_spec(jk, tk, *run, slots, Some(instance)) else {
                return;
            };
            fx.push(Effect::RunTask {
                node: node_id.clone(),
                spec: Box::new(spec),
            });
        }
    }

    /// The job's preparation task succeeded (or need not be waited for) on a node of the gang
    /// `tk`, which waits in `preparing`: once that holds on every node of the gang, all its
    /// instances start, in this one input.
    pub(crate) fn dispatch_gang(
        &mut self,
        jk: &str,
        tk: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(task) = self.jobs.get(jk).and_then(|j| j.tasks.get(tk)) else {
            return;
        };
        if task.state != TaskState::Preparing || task.gang.is_empty() {
            return;
        }
        let gang = task.gang.clone();
        if gang
            .iter()
            .any(|(_, node)| self.prep_gate(jk, node) != Gate::Ready)
        {
            return;
        }
        for (run, node) in &gang {
            if let Some(n) = self.nodes.get_mut(node) {
                n.waiting.remove(run);
            }
        }
        if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
            t.exec.start_time = Some(now);
            for sub in &mut t.subtasks {
                sub.previous = Some((sub.state, sub.state_time));
                sub.state = SubtaskState::Running;
                sub.state_time = now;
                sub.start_time = now;
            }
        }
        self.set_task_state(jk, tk, TaskState::Running, now);
        self.send_gang(jk, tk, fx);
    }

    // --- instances ending ----------------------------------------------------------------------

    /// The task whose running gang `run` is an instance of, if it is one.
    pub(crate) fn gang_of(&self, run: u64) -> Option<(String, String)> {
        let (jk, tk, _) = self.runs.get(&run)?;
        let task = self.jobs.get(jk)?.tasks.get(tk)?;
        task.gang
            .iter()
            .any(|(r, _)| *r == run)
            .then(|| (jk.clone(), tk.clone()))
    }

    /// End the gang's attempt: every instance still in flight but `except` is killed (their
    /// slots stay taken until their agents report it) and forgotten by the task. The kills go
    /// out at the end of `apply`.
    fn stop_instances(&mut self, jk: &str, tk: &str, except: u64, now: DateTime<Utc>) {
        let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) else {
            return;
        };
        for sub in &mut t.subtasks {
            sub.complete(None, now);
        }
        t.coordinated.clear();
        for (run, node) in std::mem::take(&mut t.gang) {
            if run != except {
                self.deferred.push(Effect::KillTask { node, run });
            }
        }
    }

    /// Kill every instance of the task's running gang (a delete, terminate or job stop): the
    /// primary's kill is the caller's, as for any task.
    pub(crate) fn kill_instances(&mut self, jk: &str, tk: &str, fx: &mut Vec<Effect>) {
        let Some(t) = self.jobs.get(jk).and_then(|j| j.tasks.get(tk)) else {
            return;
        };
        for (run, node) in &t.gang {
            if Some(*run) != t.current_run {
                fx.push(Effect::KillTask {
                    node: node.clone(),
                    run: *run,
                });
            }
        }
    }

    /// An instance is requeued (its node was lost, removed, preempted or restarted, or its
    /// agent no longer has it): the whole gang goes back to the queue, its other instances
    /// killed. Like any requeue, no retry is used.
    pub(crate) fn requeue_gang(&mut self, run: u64, jk: &str, tk: &str, now: DateTime<Utc>) {
        self.stop_instances(jk, tk, run, now);
        // With the task's instances forgotten, the run is requeued as a single-node one: its
        // slots are released, and if it was the primary, the task goes back to the queue.
        let primary = self
            .jobs
            .get(jk)
            .and_then(|j| j.tasks.get(tk))
            .and_then(|t| t.current_run);
        if primary != Some(run) {
            if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
                t.current_run = Some(run);
            }
        }
        self.requeue_run(run, now);
    }

    /// An instance's agent reported its end. The primary's end is the attempt's; a subtask's
    /// failure fails the attempt; a subtask's success frees its node.
    pub(crate) fn gang_run_ended(
        &mut self,
        node_id: &str,
        run: u64,
        result: RunResult,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some((jk, tk)) = self.gang_of(run) else {
            return self.task_completed(node_id, run, result, now, fx);
        };
        let (jk, tk) = (jk.as_str(), tk.as_str());
        let primary = self
            .jobs
            .get(jk)
            .and_then(|j| j.tasks.get(tk))
            .and_then(|t| t.current_run);
        let failed = result.failure.is_some() || result.exit_code != Some(0);
        if let Some(sub) = self
            .jobs
            .get_mut(jk)
            .and_then(|j| j.tasks.get_mut(tk))
            .and_then(|t| t.subtasks.iter_mut().find(|s| s.run == run))
        {
            sub.complete(Some(&result), now);
        }
        if primary != Some(run) && !failed {
            self.instance_left_barrier(jk, tk, run);
            // No longer an instance in flight: it ends as a run of nothing current.
            return self.task_completed(node_id, run, result, now, fx);
        }
        self.stop_instances(jk, tk, run, now);
        if let Some(t) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) {
            // A failed subtask's report is the attempt's.
            t.current_run = Some(run);
        }
        self.task_completed(node_id, run, result, now, fx)
    }
}

impl Core {
    /// `GET /jobs/{job}/tasks/{task}/subtasksinfo`: the subtasks of the task's current or
    /// latest attempt, by id (the instance index; the primary is not listed). Empty for a task
    /// that is not multi-instance or has not started.
    pub fn list_subtasks(
        &self,
        job_id: &str,
        task_id: &str,
        urls: &Urls,
    ) -> Result<Vec<m::Subtask>, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        let job = &self.jobs[&jk];
        let task = &job.tasks[&tk];
        let dir = openbatch_api::agent::task_dir(&job.spec.id, &task.spec.id);
        Ok(task
            .subtasks
            .iter()
            .map(|s| {
                let node_url = urls.node_url(&s.pool_id, &s.node_id);
                m::Subtask {
                    id: Some(s.index as i32),
                    node_info: Some(m::NodeInfo {
                        affinity_id: Some(s.node_id.clone()),
                        node_url: Some(node_url.clone()),
                        pool_id: Some(s.pool_id.clone()),
                        node_id: Some(s.node_id.clone()),
                        task_root_directory: Some(dir.clone()),
                        task_root_directory_url: Some(format!("{node_url}/files/{dir}")),
                    }),
                    start_time: Some(s.start_time),
                    end_time: s.end_time,
                    exit_code: s.exit_code,
                    container_info: None,
                    failure_info: s.failure.clone(),
                    state: Some(s.state),
                    state_transition_time: Some(s.state_time),
                    previous_state: s.previous.map(|p| p.0),
                    previous_state_transition_time: s.previous.map(|p| p.1),
                    result: s.result,
                }
            })
            .collect())
    }
}
