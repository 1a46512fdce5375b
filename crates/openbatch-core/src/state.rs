use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    AllocationState, JobCreate, JobState, NodeDeallocationOption, NodeState, PoolCreate, PoolState,
    SchedulingState, StartTaskInfo, TaskCounts, TaskCreate, TaskExecutionInfo, TaskInfo, TaskState,
};
use serde::{Deserialize, Serialize};

use crate::input::{Applied, Input, Reply};
use crate::CoreError;

/// One attempt of a task on a node. Unique for the life of the service, so a late report of an
/// old attempt can never be mistaken for the current one.
pub use openbatch_api::agent::RunId;

/// Tunables the shell passes in (from its config).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// How long a disconnected node keeps its tasks before they are requeued and it is replaced.
    pub node_lost_after: Duration,
    /// Most tasks in one `addtaskcollection` call (Azure: 100).
    pub max_tasks_per_collection: usize,
    /// Recent tasks listed on a node (Azure lists the last few).
    pub recent_tasks_per_node: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            node_lost_after: Duration::from_secs(60),
            max_tasks_per_collection: 100,
            recent_tasks_per_node: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pool {
    pub(crate) spec: PoolCreate,
    pub(crate) seq: u64,
    pub(crate) version: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) state: PoolState,
    pub(crate) state_time: DateTime<Utc>,
    pub(crate) allocation_state: AllocationState,
    pub(crate) allocation_time: DateTime<Utc>,
    pub(crate) target_dedicated: u32,
    pub(crate) target_low_priority: u32,
    /// How nodes leave when the target shrinks (from the last resize).
    pub(crate) deallocation: NodeDeallocationOption,
    /// Node ids, by key order of creation.
    pub(crate) nodes: BTreeSet<String>,
    /// The last autoscale evaluation, when autoscale is or was enabled.
    #[serde(default)]
    pub(crate) autoscale_run: Option<openbatch_api::models::AutoScaleRun>,
    /// A node held for the task at the head of the queue that fits on no node yet, so that a
    /// stream of smaller tasks cannot starve it (see `sched.rs`). Part of the state: placements
    /// after a snapshot load must be the ones the live server made.
    #[serde(default)]
    pub(crate) reservation: Option<Reservation>,
    /// `resizeErrors`: nodes of the last resize that a provider could not allocate. While
    /// there are any, the pool does not grow by itself (see `allocation.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resize_errors: Vec<openbatch_api::models::ResizeError>,
}

/// See [`Pool::reservation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub(crate) job: String,
    pub(crate) task: String,
    pub(crate) node: String,
    /// For a multi-instance task (a gang): every node held for it, `node` first (see
    /// `gang.rs`). Held nodes leave the capacity index: nothing new starts on them, they drain,
    /// and the gang starts on all of them in one step once they are all empty. Empty for a
    /// single-node reservation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) gang: Vec<String>,
}

impl Pool {
    pub(crate) fn slots_per_node(&self) -> u32 {
        self.spec.task_slots_per_node.unwrap_or(1).max(1) as u32
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) pool: String,
    pub(crate) seq: u64,
    pub(crate) state: NodeState,
    pub(crate) state_time: DateTime<Utc>,
    pub(crate) scheduling: SchedulingState,
    pub(crate) allocation_time: DateTime<Utc>,
    pub(crate) boot_time: DateTime<Utc>,
    pub(crate) ip_address: String,
    pub(crate) agent_version: Option<String>,
    pub(crate) vm_size: String,
    pub(crate) dedicated: bool,
    pub(crate) slots: u32,
    /// Runs on this node: run id -> (job key, task key, slots).
    pub(crate) running: BTreeMap<RunId, (String, String, u32)>,
    pub(crate) used_slots: u32,
    pub(crate) total_tasks_run: i64,
    pub(crate) total_tasks_succeeded: i64,
    pub(crate) start_task_info: Option<StartTaskInfo>,
    pub(crate) connected: bool,
    /// When the connection dropped (for the lost-node timeout).
    pub(crate) disconnected_since: Option<DateTime<Utc>>,
    /// Set when the node is on its way out: what happens to its running tasks.
    pub(crate) leaving: Option<NodeDeallocationOption>,
    /// A reboot (false) or reimage (true) waiting for the node's runs to finish.
    #[serde(default)]
    pub(crate) pending_restart: Option<bool>,
    pub(crate) recent_tasks: VecDeque<TaskInfo>,
    /// A preemption of this low-priority node in progress (see `preempt.rs`).
    #[serde(default)]
    pub(crate) preemption: Option<crate::preempt::Preemption>,
    /// Runs held for tasks that wait in `preparing` for the job preparation task on this node:
    /// their slots are taken, but the agent has not been told to start them (see `jobtasks.rs`).
    #[serde(default)]
    pub(crate) waiting: BTreeSet<RunId>,
    /// Task and job directories this node is to delete, until its agent says it did (see
    /// `cleanup.rs`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) dir_cleanup: BTreeSet<openbatch_api::agent::TaskDirRef>,
    /// Runs killed here while the node stays in service, whose end the agent has not reported
    /// yet: run id -> slots, counted in `used_slots` until then (see `Core::hold_until_killed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) killing: BTreeMap<RunId, u32>,
    /// The free slots this node is filed under in its pool's capacity index, if it is there.
    /// Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) indexed_free: Option<u32>,
    /// Whether this node is filed in its pool's index of empty nodes (`Core::empty`).
    /// Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) indexed_empty: bool,
}

impl Node {
    /// A node that was just provisioned (or asked to join) and has not connected yet.
    pub(crate) fn new(
        id: String,
        pool: String,
        seq: u64,
        vm_size: String,
        dedicated: bool,
        slots: u32,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            pool,
            seq,
            state: NodeState::Creating,
            state_time: now,
            scheduling: SchedulingState::Enabled,
            allocation_time: now,
            boot_time: now,
            ip_address: String::new(),
            agent_version: None,
            vm_size,
            dedicated,
            slots,
            running: BTreeMap::new(),
            used_slots: 0,
            total_tasks_run: 0,
            total_tasks_succeeded: 0,
            start_task_info: None,
            connected: false,
            disconnected_since: Some(now),
            leaving: None,
            pending_restart: None,
            recent_tasks: VecDeque::new(),
            preemption: None,
            waiting: BTreeSet::new(),
            dir_cleanup: BTreeSet::new(),
            killing: BTreeMap::new(),
            indexed_free: None,
            indexed_empty: false,
        }
    }

    /// Whether new tasks may be placed here.
    pub(crate) fn schedulable(&self) -> bool {
        self.connected
            && self.leaving.is_none()
            && self.preemption.is_none()
            && self.scheduling == SchedulingState::Enabled
            && matches!(self.state, NodeState::Idle | NodeState::Running)
    }
    pub(crate) fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.used_slots)
    }
    /// Whether a task of a job runs (or waits to run) here, as opposed to nothing, or only a
    /// job preparation or release task: what makes a node `running` rather than `idle`.
    pub(crate) fn runs_tasks(&self) -> bool {
        self.running
            .values()
            .any(|(_, tk, _)| !crate::jobtasks::is_job_task_key(tk))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) spec: JobCreate,
    pub(crate) seq: u64,
    pub(crate) version: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) state: JobState,
    pub(crate) state_time: DateTime<Utc>,
    pub(crate) previous_state: Option<(JobState, DateTime<Utc>)>,
    pub(crate) end_time: Option<DateTime<Utc>>,
    pub(crate) terminate_reason: Option<String>,
    pub(crate) tasks: BTreeMap<String, Task>,
    pub(crate) counts: TaskCounts,
    pub(crate) slot_counts: TaskCounts,
    pub(crate) next_task_seq: u64,
    /// Who waits for whom among the job's tasks (`dependsOn`). Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) deps: crate::deps::DepIndex,
    /// The key of the job schedule that created this job, if one did.
    #[serde(default)]
    pub(crate) schedule: Option<String>,
    /// Per node id: the job preparation and release tasks on that node (see `jobtasks.rs`).
    #[serde(default)]
    pub(crate) node_tasks: BTreeMap<String, crate::jobtasks::NodeJobTasks>,
    /// Nodes where anything of the job ran: its directory is deleted there with the job (see
    /// `cleanup.rs`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) ran_on: BTreeSet<String>,
}

impl Job {
    pub(crate) fn pool_key(&self) -> String {
        crate::id_key(self.spec.pool_info.pool_id.as_deref().unwrap_or_default())
    }
    pub(crate) fn priority(&self) -> i32 {
        self.spec.priority.unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Task {
    pub(crate) spec: TaskCreate,
    pub(crate) seq: u64,
    pub(crate) version: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) last_modified: DateTime<Utc>,
    pub(crate) state: TaskState,
    pub(crate) state_time: DateTime<Utc>,
    pub(crate) previous_state: Option<(TaskState, DateTime<Utc>)>,
    pub(crate) exec: TaskExecutionInfo,
    /// Where the latest attempt ran (kept after completion, for files and nodeInfo).
    pub(crate) location: Option<TaskLocation>,
    /// The attempt in flight, if any.
    pub(crate) current_run: Option<RunId>,
    /// A terminate was requested while the attempt ran: its end completes the task, no retry.
    pub(crate) terminating: bool,
    /// What the task's completion does to the tasks that depend on it, resolved from its exit
    /// conditions when it completed. `None` while it is not completed (and in records written
    /// before exit conditions existed, where success satisfies and failure blocks).
    #[serde(default)]
    pub(crate) dependency_action: Option<openbatch_api::models::DependencyAction>,
    /// This task is the job's job manager task (`jobManagerTask`).
    #[serde(default)]
    pub(crate) job_manager: bool,
    /// For a multi-instance task while an attempt runs: the runs of its instances still in
    /// flight, (run, node), the primary (`current_run`) first. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) gang: Vec<(RunId, String)>,
    /// For a multi-instance task while an attempt runs: the instance runs whose coordination
    /// command has completed (`barrier.rs`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) coordinated: BTreeSet<RunId>,
    /// For a multi-instance task: its subtasks (instances 1 and up) in the current or latest
    /// attempt, as `subtasksinfo` lists them. Empty before its first start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) subtasks: Vec<crate::gang::SubtaskRecord>,
    /// Nodes where an attempt (or an instance) of the task ran and its directory is still
    /// there (see `cleanup.rs`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) ran_on: BTreeSet<String>,
    /// When the task's directories may go, as filed in `Core::retention`. Derived; rebuilt on
    /// load.
    #[serde(skip)]
    pub(crate) retention_at: Option<DateTime<Utc>>,
}

impl Task {
    pub(crate) fn required_slots(&self) -> u32 {
        self.spec.required_slots.unwrap_or(1).max(1) as u32
    }

    /// For a multi-instance task, how many nodes it needs (`numberOfInstances`, default 1).
    pub(crate) fn instances(&self) -> Option<u32> {
        self.spec
            .multi_instance_settings
            .as_ref()
            .map(|m| m.number_of_instances.unwrap_or(1).max(1) as u32)
    }

    /// Whether tasks that depend on this one may count it as done: it is completed, and its
    /// exit conditions (or their defaults: success satisfies, failure blocks) say `satisfy`.
    pub(crate) fn satisfies_dependents(&self) -> bool {
        use openbatch_api::models::{DependencyAction, ExecutionResult};
        self.state == TaskState::Completed
            && match self.dependency_action {
                Some(action) => action == DependencyAction::Satisfy,
                None => self.exec.result == Some(ExecutionResult::Success),
            }
    }
}

/// Where a task attempt ran: enough to find its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLocation {
    pub pool_id: String,
    pub node_id: String,
    /// The task directory relative to the node root (`workitems/<job>/job-1/<task>`).
    pub task_dir: String,
    /// The attempt's run: its logs are kept in storage under it. `None` in records written
    /// before runs were noted here.
    #[serde(default)]
    pub run: Option<RunId>,
    /// The attempt's logs that were empty when it ended, which are not kept in storage (they
    /// read as empty files once the node no longer has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_logs: Vec<String>,
    /// When the attempt ended, as the node reported it.
    #[serde(default)]
    pub ended: Option<DateTime<Utc>>,
}

/// Ordering key of a pool's jobs in its run queue: higher priority first, then older jobs.
pub(crate) type JobOrder = (std::cmp::Reverse<i32>, u64);

/// A job's runnable tasks, bucketed by `requiredSlots` and ordered by submission within each
/// bucket. Buckets let a placement pass skip every task that cannot fit the free capacity in
/// one step, so a crowd of large tasks never hides a small one behind it.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobQueue {
    pub(crate) job: String,
    pub(crate) by_slots: BTreeMap<u32, BTreeMap<u64, String>>,
    /// The job's runnable multi-instance tasks, by submission: seq -> (task key, instances).
    pub(crate) gangs: BTreeMap<u64, (String, u32)>,
}

impl JobQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_slots.values().all(|b| b.is_empty()) && self.gangs.is_empty()
    }
}

/// A pool's run queue: its jobs in scheduling order.
pub(crate) type PoolQueue = BTreeMap<JobOrder, JobQueue>;

/// The whole state of the service. Serialized as a snapshot; indexes are rebuilt on load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Core {
    pub(crate) limits: Limits,
    pub(crate) pools: BTreeMap<String, Pool>,
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) jobs: BTreeMap<String, Job>,
    /// Job schedules by key.
    #[serde(default)]
    pub(crate) schedules: BTreeMap<String, crate::schedules::Schedule>,
    /// Applications and their packages, by key (see `apps.rs`).
    #[serde(default)]
    pub(crate) applications: BTreeMap<String, crate::apps::Application>,
    pub(crate) next_seq: u64,
    pub(crate) next_run: RunId,
    /// Incremented by every `ServerRestarted`. Run ids carry it in their high bits, so a run
    /// the shell started before a crash but never journaled can never share an id with a run
    /// assigned after the replay.
    #[serde(default)]
    pub(crate) epoch: u64,
    pub(crate) next_version: u64,
    /// Runs in flight of removed tasks, with their (job id, task id): their logs are discarded
    /// when they end (see `kept_logs.rs`).
    #[serde(default)]
    pub(crate) discard_after: BTreeMap<RunId, (String, String)>,
    /// Runnable tasks per pool key, in scheduling order. Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) queues: BTreeMap<String, PoolQueue>,
    /// Runs in flight: run -> (job key, task key, node). Derived; rebuilt on load.
    #[serde(skip)]
    pub(crate) runs: BTreeMap<RunId, (String, String, String)>,
    /// Pools whose placement may have changed during this input.
    #[serde(skip)]
    pub(crate) dirty_pools: BTreeSet<String>,
    /// Schedulable nodes with free slots, per pool key, ordered by (free slots, node seq): the
    /// scheduler finds a node for a task in O(log nodes). Derived; rebuilt on load; kept by
    /// [`Core::refresh_capacity`] wherever a node's slots or schedulability change.
    #[serde(skip)]
    pub(crate) capacity: BTreeMap<String, BTreeSet<(u32, u64, String)>>,
    /// Schedulable nodes that run nothing and are not held for a gang, per pool key, by node
    /// seq: where a gang can start at once. Derived; rebuilt on load; kept by
    /// [`Core::refresh_capacity`].
    #[serde(skip)]
    pub(crate) empty: BTreeMap<String, BTreeSet<(u64, String)>>,
    /// Kills of gang instances decided inside a queue or run operation that has no effect
    /// list (see `gang.rs`); `apply` hands them out at its end. Derived; empty between inputs.
    #[serde(skip)]
    pub(crate) deferred: Vec<crate::input::Effect>,
    /// Tasks found never runnable when they were about to be queued (see `explain.rs`); the
    /// end of `apply` completes them. Derived; empty between inputs.
    #[serde(skip)]
    pub(crate) unrunnable: Vec<(String, String)>,
    /// Jobs whose ending may have moved on during this input (a job preparation or release run
    /// ended or was lost); the end of `apply` looks at them. Derived; empty between inputs.
    #[serde(skip)]
    pub(crate) ending_jobs: BTreeSet<String>,
    /// Completed tasks whose directories are still on nodes, by when they may go: (time, job
    /// key, task key). Derived; rebuilt on load; kept by `refresh_retention` (`cleanup.rs`).
    #[serde(skip)]
    pub(crate) retention: BTreeSet<(DateTime<Utc>, String, String)>,
    /// Nodes (and the job key, or all) whose directory cleanups are sent at the end of this
    /// input. Derived; empty between inputs.
    #[serde(skip)]
    pub(crate) cleanup_out: BTreeSet<(String, Option<String>)>,
    /// Per-pool task states and task events, for the shell's metrics (see `tally.rs`).
    /// Derived; rebuilt on load; checked by `check_indexes`.
    #[serde(skip)]
    pub(crate) tally: crate::tally::Tally,
}

impl Core {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pools: BTreeMap::new(),
            nodes: BTreeMap::new(),
            jobs: BTreeMap::new(),
            schedules: BTreeMap::new(),
            applications: BTreeMap::new(),
            next_seq: 1,
            next_run: 1,
            epoch: 0,
            next_version: 1,
            discard_after: BTreeMap::new(),
            queues: BTreeMap::new(),
            runs: BTreeMap::new(),
            dirty_pools: BTreeSet::new(),
            capacity: BTreeMap::new(),
            empty: BTreeMap::new(),
            deferred: Vec::new(),
            unrunnable: Vec::new(),
            ending_jobs: BTreeSet::new(),
            retention: BTreeSet::new(),
            cleanup_out: BTreeSet::new(),
            tally: Default::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replace the tunables (after loading a snapshot written under another config).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Rebuild the derived indexes after deserializing a snapshot.
    pub fn rebuild_indexes(&mut self) {
        self.queues.clear();
        self.runs.clear();
        self.capacity.clear();
        self.empty.clear();
        self.deferred.clear();
        self.unrunnable.clear();
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for n in &ids {
            if let Some(node) = self.nodes.get_mut(n) {
                node.indexed_free = None;
                node.indexed_empty = false;
            }
            self.refresh_capacity(n);
        }
        // Runs in flight are what the nodes hold, including runs of tasks deleted since.
        for node in self.nodes.values() {
            for (run, (jk, tk, _)) in &node.running {
                self.runs
                    .insert(*run, (jk.clone(), tk.clone(), node.id.clone()));
            }
        }
        for job in self.jobs.values_mut() {
            job.rebuild_deps();
        }
        let waiting: Vec<(String, String)> = self
            .jobs
            .iter()
            .flat_map(|(jk, job)| {
                job.tasks
                    .iter()
                    .filter(|(_, t)| t.current_run.is_none() && t.state == TaskState::Active)
                    .map(move |(tk, _)| (jk.clone(), tk.clone()))
            })
            .collect();
        for (jk, tk) in waiting {
            self.enqueue(&jk, &tk);
        }
        self.rebuild_retention();
        self.rebuild_tally();
        self.dirty_pools.clear();
    }

    /// File a node in its pool's capacity index as it is now (schedulable with free slots, or
    /// not at all). Cheap when nothing changed.
    pub(crate) fn refresh_capacity(&mut self, node_id: &str) {
        let held = self.held_for_gang(node_id);
        let Some(n) = self.nodes.get_mut(node_id) else {
            return;
        };
        let free = n.free_slots();
        let open = n.schedulable() && !held;
        let want = (open && free > 0).then_some(free);
        let want_empty = open && n.used_slots == 0;
        if n.indexed_empty != want_empty {
            let set = self.empty.entry(n.pool.clone()).or_default();
            if want_empty {
                set.insert((n.seq, n.id.clone()));
            } else {
                set.remove(&(n.seq, n.id.clone()));
            }
            n.indexed_empty = want_empty;
        }
        if n.indexed_free == want {
            return;
        }
        let set = self.capacity.entry(n.pool.clone()).or_default();
        if let Some(old) = n.indexed_free {
            set.remove(&(old, n.seq, n.id.clone()));
        }
        if let Some(f) = want {
            set.insert((f, n.seq, n.id.clone()));
        }
        n.indexed_free = want;
    }

    /// Forget a node in the capacity index (it is being removed).
    pub(crate) fn unindex_node(&mut self, node_id: &str) {
        if let Some(n) = self.nodes.get_mut(node_id) {
            if let Some(old) = n.indexed_free.take() {
                if let Some(set) = self.capacity.get_mut(&n.pool) {
                    set.remove(&(old, n.seq, n.id.clone()));
                }
            }
            if std::mem::take(&mut n.indexed_empty) {
                if let Some(set) = self.empty.get_mut(&n.pool) {
                    set.remove(&(n.seq, n.id.clone()));
                }
            }
        }
    }

    /// For tests: panics if a derived index disagrees with the records it is derived from.
    #[doc(hidden)]
    pub fn check_indexes(&self) {
        let mut want: BTreeMap<String, BTreeSet<(u32, u64, String)>> = BTreeMap::new();
        for n in self.nodes.values() {
            if n.schedulable() && !self.held_for_gang(&n.id) && n.free_slots() > 0 {
                want.entry(n.pool.clone()).or_default().insert((
                    n.free_slots(),
                    n.seq,
                    n.id.clone(),
                ));
            }
        }
        let have: BTreeMap<String, BTreeSet<(u32, u64, String)>> = self
            .capacity
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        assert_eq!(have, want, "the capacity index disagrees with the nodes");
        // Work for the end of `apply` never outlives it (neither is in a snapshot).
        assert!(
            self.unrunnable.is_empty(),
            "unrunnable tasks left between inputs"
        );
        assert!(
            self.deferred.is_empty(),
            "deferred effects left between inputs"
        );
        self.check_gang_indexes();
        self.check_retention_index();
        self.check_tally();
    }

    pub(crate) fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub(crate) fn version(&mut self) -> u64 {
        let v = self.next_version;
        self.next_version += 1;
        v
    }

    /// Apply one input at time `now`. On error nothing changed.
    pub fn apply(&mut self, input: Input, now: DateTime<Utc>) -> Result<Applied, CoreError> {
        let mut fx = Vec::new();
        let (reply, changed) = match input {
            Input::CreatePool(spec) => (self.create_pool(*spec, now, &mut fx)?, true),
            Input::DeletePool { id } => (self.delete_pool(&id, now, &mut fx)?, true),
            Input::ResizePool { id, resize } => {
                (self.resize_pool(&id, resize, now, &mut fx)?, true)
            }
            Input::CreateJob(spec) => (self.create_job(*spec, now)?, true),
            Input::DeleteJob { id } => (self.delete_job(&id, now, &mut fx)?, true),
            Input::TerminateJob { id, reason } => {
                (self.terminate_job(&id, reason, now, &mut fx)?, true)
            }
            Input::AddTasks { job, tasks } => {
                let results = self.add_tasks(&job, tasks, now)?;
                let changed = results
                    .iter()
                    .any(|r| r.status == openbatch_api::models::TaskAddStatus::Success);
                (Reply::TaskResults(results), changed)
            }
            Input::DeleteTask { job, task } => (self.delete_task(&job, &task, now, &mut fx)?, true),
            Input::TerminateTask { job, task } => {
                (self.terminate_task(&job, &task, now, &mut fx)?, true)
            }
            Input::UpdatePool { id, patch } => {
                let packages = patch.application_package_references.is_some();
                let reply = self.update_pool(&id, *patch, now)?;
                if packages {
                    self.prefetch_pool_packages(&id, &mut fx);
                }
                (reply, true)
            }
            Input::ReplacePoolProperties { id, props } => {
                let reply = self.replace_pool_properties(&id, props, now)?;
                self.prefetch_pool_packages(&id, &mut fx);
                (reply, true)
            }
            Input::StopPoolResize { id } => (self.stop_pool_resize(&id, now, &mut fx)?, true),
            Input::RemoveNodes {
                pool,
                nodes,
                option,
            } => (self.remove_nodes(&pool, nodes, option, now, &mut fx)?, true),
            Input::UpdateJob {
                id,
                update,
                replace,
            } => (self.update_job(&id, *update, replace, now, &mut fx)?, true),
            Input::DisableJob { id, option } => {
                (self.disable_job(&id, option, now, &mut fx)?, true)
            }
            Input::EnableJob { id } => (self.enable_job(&id, now)?, true),
            Input::ReplaceTask {
                job,
                task,
                constraints,
            } => (self.replace_task(&job, &task, constraints, now)?, true),
            Input::ReactivateTask { job, task } => (self.reactivate_task(&job, &task, now)?, true),
            Input::SetNodeScheduling {
                pool,
                node,
                enabled,
                option,
            } => (
                self.set_node_scheduling(&pool, &node, enabled, option, now, &mut fx)?,
                true,
            ),
            Input::RestartNode {
                pool,
                node,
                option,
                reimage,
            } => (
                self.restart_node(&pool, &node, option, reimage, now, &mut fx)?,
                true,
            ),
            Input::EnableAutoScale {
                id,
                formula,
                interval,
            } => (self.enable_autoscale(&id, formula, interval, now)?, true),
            Input::DisableAutoScale { id } => (self.disable_autoscale(&id, now)?, true),
            Input::AutoScaleEvaluated { id, run, targets } => (
                Reply::Done,
                self.autoscale_evaluated(&id, run, targets, now, &mut fx),
            ),
            Input::Conditional {
                target,
                cond,
                input,
            } => {
                self.check_precondition(&target, &cond)?;
                return self.apply(*input, now);
            }
            Input::JoinNode {
                pool,
                vm_size,
                slots_hint,
            } => (self.join_node(&pool, vm_size, slots_hint, now)?, true),
            Input::NodeConnected(hello) => (Reply::Done, self.node_connected(hello, now, &mut fx)),
            Input::NodeDisconnected { node } => (Reply::Done, self.node_disconnected(&node, now)),
            Input::NodeLost { node, reason } => {
                (Reply::Done, self.node_lost(&node, &reason, now, &mut fx))
            }
            Input::NodeRemoved { node } => (Reply::Done, self.node_removed(&node, now, &mut fx)),
            Input::NodeAllocationFailed { node, error } => (
                Reply::Done,
                self.node_allocation_failed(&node, error, now, &mut fx),
            ),
            // A start task that ends while its node is being preempted decides nothing.
            Input::StartTaskCompleted { node, .. }
                if self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.preemption.is_some()) =>
            {
                (Reply::Done, false)
            }
            Input::StartTaskCompleted { node, result } => (
                Reply::Done,
                self.start_task_completed(&node, result, now, &mut fx),
            ),
            Input::TaskCompleted { node, run, result } => (
                Reply::Done,
                self.run_ended(&node, run, result, now, &mut fx),
            ),
            Input::PreemptNode {
                pool,
                node,
                grace,
                recovery,
            } => (
                self.preempt_node(&pool, &node, grace, recovery, now, &mut fx)?,
                true,
            ),
            Input::ServerRestarted => (Reply::Done, self.server_restarted(now)),
            Input::TaskDirsDeleted { node, dirs } => {
                (Reply::Done, self.task_dirs_deleted(&node, &dirs))
            }
            Input::InstanceCoordinated { node, run } => {
                (Reply::Done, self.instance_coordinated(&node, run, &mut fx))
            }
            Input::Tick => {
                let lost = self.tick(now, &mut fx);
                let preempted = self.preemption_tick(now, &mut fx);
                let jobs = self.expire_jobs(now, &mut fx);
                let schedules = self.tick_schedules(now);
                let retention = self.expire_retention(now);
                (
                    Reply::Done,
                    lost || preempted || jobs || schedules || retention,
                )
            }
            Input::CreateJobSchedule(spec) => (self.create_job_schedule(*spec, now)?, true),
            Input::UpdateJobSchedule {
                id,
                update,
                replace,
            } => (self.update_job_schedule(&id, *update, replace, now)?, true),
            Input::DisableJobSchedule { id } => (self.disable_job_schedule(&id, now)?, true),
            Input::EnableJobSchedule { id } => (self.enable_job_schedule(&id, now)?, true),
            Input::TerminateJobSchedule { id } => {
                (self.terminate_job_schedule(&id, now, &mut fx)?, true)
            }
            Input::DeleteJobSchedule { id } => (self.delete_job_schedule(&id, now, &mut fx)?, true),
            Input::PutApplicationPackage(upload) => {
                (self.put_application_package(upload, now)?, true)
            }
            Input::UpdateApplication {
                application_id,
                update,
            } => (
                self.update_application(&application_id, update, now, &mut fx)?,
                true,
            ),
            Input::DeleteApplicationPackage {
                application_id,
                version,
            } => (
                self.delete_application_package(&application_id, version.as_deref(), now)?,
                true,
            ),
        };
        let settled = self.settle_job_tasks(now, &mut fx);
        let mut failed = self.fail_unrunnable(now, &mut fx);
        // Kills of gang instances first: the nodes they free are placed after.
        fx.append(&mut self.deferred);
        let mut placed = self.schedule_dirty(now, &mut fx);
        // Placement can find a gang wider than its pool is now (it shrank): it fails in this
        // input too, and what that frees is placed.
        while !self.unrunnable.is_empty() {
            failed |= self.fail_unrunnable(now, &mut fx);
            fx.append(&mut self.deferred);
            placed |= self.schedule_dirty(now, &mut fx);
        }
        // Last: placements above may have taken a directory over.
        self.flush_dir_cleanup(&mut fx);
        Ok(Applied {
            reply,
            effects: fx,
            changed: changed || settled || failed || placed,
        })
    }
}

/// Format a version number as an Azure-style ETag.
pub(crate) fn etag(version: u64) -> String {
    format!("0x8DE{version:013X}")
}
