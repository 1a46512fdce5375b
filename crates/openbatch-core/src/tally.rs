//! Per-pool task tallies for the shell's `/metrics`: how many tasks of the jobs bound to each
//! pool are in each state (a derived index, so a scrape costs O(pools), not O(tasks)), and how
//! many completions, retries and requeues happened since the core was loaded (event counters,
//! not state: they are never journaled nor snapshotted, and the shell resets them after the
//! replay, so they count what this process saw, as Prometheus counters do).
//!
//! The task states are kept where the jobs' own counts are kept (`set_task_state`, `add_task`,
//! `remove_task`), and where tasks leave a pool wholesale (`remove_job`, a job moved to another
//! pool). They are rebuilt on load and checked by `Core::check_indexes`.

use std::collections::BTreeMap;

use openbatch_api::models::{ExecutionResult, NodeState, TaskState};

use crate::state::{Core, Job};

/// Tasks by state. `preparing` is apart from `running` here (the task counts of the REST API
/// fold it into `running`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStates {
    pub active: u64,
    pub preparing: u64,
    pub running: u64,
    pub completed: u64,
}

impl TaskStates {
    fn add(&mut self, state: TaskState, by: i64) {
        let slot = match state {
            TaskState::Active => &mut self.active,
            TaskState::Preparing => &mut self.preparing,
            TaskState::Running => &mut self.running,
            TaskState::Completed => &mut self.completed,
        };
        // Never below zero, even if a bug made the index drift: `check_indexes` catches drift.
        *slot = slot.saturating_add_signed(by);
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Task events since the core was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskEvents {
    /// Tasks that completed with `executionInfo.result` success.
    pub succeeded: u64,
    /// Tasks that completed with `executionInfo.result` failure.
    pub failed: u64,
    /// Failed attempts that were retried (`retryCount` went up).
    pub retries: u64,
    /// Attempts given back to the queue without counting as a retry (`requeueCount`).
    pub requeues: u64,
}

/// One pool's tallies, by pool key.
#[derive(Debug, Clone, Default)]
pub(crate) struct PoolTally {
    pub(crate) tasks: TaskStates,
    pub(crate) events: TaskEvents,
}

/// See the module docs. Derived; not serialized.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) pools: BTreeMap<String, PoolTally>,
}

impl Tally {
    fn pool(&mut self, pool_key: &str) -> &mut PoolTally {
        if !self.pools.contains_key(pool_key) {
            self.pools
                .insert(pool_key.to_string(), PoolTally::default());
        }
        self.pools.get_mut(pool_key).expect("inserted above")
    }

    /// A task of a job bound to `pool_key` entered (`by` 1) or left (-1) `state`.
    pub(crate) fn task(&mut self, pool_key: &str, state: TaskState, by: i64) {
        self.pool(pool_key).tasks.add(state, by);
    }

    /// A task changed state from `old` to `new`; a completion is counted by its result.
    pub(crate) fn changed(
        &mut self,
        pool_key: &str,
        old: TaskState,
        new: TaskState,
        result: Option<ExecutionResult>,
    ) {
        let p = self.pool(pool_key);
        p.tasks.add(old, -1);
        p.tasks.add(new, 1);
        if new == TaskState::Completed && old != TaskState::Completed {
            match result {
                Some(ExecutionResult::Failure) => p.events.failed += 1,
                _ => p.events.succeeded += 1,
            }
        }
    }

    pub(crate) fn retried(&mut self, pool_key: &str) {
        self.pool(pool_key).events.retries += 1;
    }

    pub(crate) fn requeued(&mut self, pool_key: &str) {
        self.pool(pool_key).events.requeues += 1;
    }

    /// Every task of `job` leaves (`by` -1) or joins (1) the job's pool.
    pub(crate) fn job_tasks(&mut self, job: &Job, by: i64) {
        let p = self.pool(&job.pool_key());
        for t in job.tasks.values() {
            p.tasks.add(t.state, by);
        }
    }

    /// The task states as they should be, from the jobs (for rebuilds and checks).
    fn expected(jobs: &BTreeMap<String, Job>) -> BTreeMap<String, TaskStates> {
        let mut want: BTreeMap<String, TaskStates> = BTreeMap::new();
        for job in jobs.values() {
            let s = want.entry(job.pool_key()).or_default();
            for t in job.tasks.values() {
                s.add(t.state, 1);
            }
        }
        want.retain(|_, s| !s.is_empty());
        want
    }
}

/// One pool's task tallies, as `Core::task_tallies` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTaskTally {
    /// The pool's id as created, or the pool key the jobs name when no such pool exists.
    pub pool_id: String,
    pub tasks: TaskStates,
    pub events: TaskEvents,
}

impl Core {
    /// Per pool (by the jobs' `poolInfo.poolId`): tasks by state and task events since the core
    /// was loaded. O(pools): it reads the tallies, not the tasks.
    pub fn task_tallies(&self) -> Vec<PoolTaskTally> {
        self.tally
            .pools
            .iter()
            .map(|(key, t)| PoolTaskTally {
                pool_id: self
                    .pools
                    .get(key)
                    .map_or_else(|| key.clone(), |p| p.spec.id.clone()),
                tasks: t.tasks,
                events: t.events,
            })
            .collect()
    }

    /// Forget the task events counted so far (the shell calls this after the journal replay,
    /// so the counters start at what this process sees).
    pub fn reset_task_events(&mut self) {
        for p in self.tally.pools.values_mut() {
            p.events = TaskEvents::default();
        }
    }

    pub(crate) fn rebuild_tally(&mut self) {
        let want = Tally::expected(&self.jobs);
        for p in self.tally.pools.values_mut() {
            p.tasks = TaskStates::default();
        }
        for (key, tasks) in want {
            self.tally.pool(&key).tasks = tasks;
        }
    }

    pub(crate) fn check_tally(&self) {
        let have: BTreeMap<String, TaskStates> = self
            .tally
            .pools
            .iter()
            .filter(|(_, p)| !p.tasks.is_empty())
            .map(|(k, p)| (k.clone(), p.tasks))
            .collect();
        assert_eq!(
            have,
            Tally::expected(&self.jobs),
            "the per-pool task tally disagrees with the tasks"
        );
    }
}

/// One pool's nodes, as `Core::pool_gauges` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGauges {
    pub pool_id: String,
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    /// Nodes by (state, dedicated); only the combinations that occur.
    pub nodes: BTreeMap<(NodeState, bool), u64>,
    /// Task slots of every node of the pool, and those taken by runs (or held for runs that
    /// wait for their job preparation task).
    pub slots_total: u64,
    pub slots_busy: u64,
    /// The pool's node ids (for the shell to aggregate what their agents report).
    pub node_ids: Vec<String>,
}

impl Core {
    /// Per pool: targets, nodes by state and priority, and slots. O(nodes).
    pub fn pool_gauges(&self) -> Vec<PoolGauges> {
        self.pools
            .values()
            .map(|p| {
                let mut g = PoolGauges {
                    pool_id: p.spec.id.clone(),
                    target_dedicated: p.target_dedicated,
                    target_low_priority: p.target_low_priority,
                    nodes: BTreeMap::new(),
                    slots_total: 0,
                    slots_busy: 0,
                    node_ids: Vec::with_capacity(p.nodes.len()),
                };
                for n in p.nodes.iter().filter_map(|n| self.nodes.get(n)) {
                    *g.nodes.entry((n.state, n.dedicated)).or_default() += 1;
                    g.slots_total += u64::from(n.slots);
                    g.slots_busy += u64::from(n.used_slots);
                    g.node_ids.push(n.id.clone());
                }
                g
            })
            .collect()
    }

    /// How many jobs there are (any state).
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }
}
