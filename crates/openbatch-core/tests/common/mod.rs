//! The harness of the core's tests: a manual clock, builders for the API bodies, and [`Sim`],
//! which applies inputs to a [`Core`], records what the core asks for, plays the node agents
//! and the provider, and checks the core's invariants after every single step.
//!
//! Every test binary uses a different part of the harness, hence the `allow`s.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use openbatch_api::models::{
    self as m, NodeState, TaskCounts, TaskCountsResult, TaskCreate, TaskState,
};
use openbatch_core::{Applied, Core, CoreError, Effect, Input, Limits, NodeHello, RunId, RunResult, Urls};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Builders: the API bodies as the wire writes them, so a test reads like a request.

pub fn pool(v: Value) -> m::PoolCreate {
    serde_json::from_value(v).expect("a valid PoolCreate body")
}

pub fn job(v: Value) -> m::JobCreate {
    serde_json::from_value(v).expect("a valid JobCreate body")
}

pub fn task(v: Value) -> TaskCreate {
    serde_json::from_value(v).expect("a valid TaskCreate body")
}

/// A pool of `nodes` dedicated nodes with `slots` task slots each.
pub fn simple_pool(id: &str, nodes: i32, slots: i32) -> m::PoolCreate {
    pool(json!({"id": id, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": nodes, "taskSlotsPerNode": slots}))
}

/// A job on `pool` with nothing else set.
pub fn simple_job(id: &str, pool: &str) -> m::JobCreate {
    job(json!({"id": id, "poolInfo": {"poolId": pool}}))
}

/// A task that runs `/bin/true`.
pub fn simple_task(id: &str) -> TaskCreate {
    task(json!({"id": id, "commandLine": "/bin/true"}))
}

/// `n` simple tasks `{prefix}{i}`, i from 1.
pub fn simple_tasks(prefix: &str, n: usize) -> Vec<TaskCreate> {
    (1..=n).map(|i| simple_task(&format!("{prefix}{i}"))).collect()
}

pub fn add(job: &str, tasks: Vec<TaskCreate>) -> Input {
    Input::AddTasks {
        job: job.into(),
        tasks,
    }
}

pub fn urls() -> Urls {
    Urls {
        base: "https://acct.openbatch.test".into(),
    }
}

/// The epoch of every test: the manual clock starts here.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The simulation.

/// A run as the simulated agent sees it.
#[derive(Debug, Clone)]
pub struct Run {
    pub node: String,
    pub job: String,
    pub task: String,
    pub slots: u32,
    pub started: DateTime<Utc>,
    /// The core asked for it to be killed; the agent has not reported its end yet.
    pub killed: bool,
}

/// One applied input, as a shell would journal it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub input: Input,
    pub now: DateTime<Utc>,
    pub changed: bool,
    pub effects: Vec<Effect>,
}

/// A core driven by a test: a manual clock, the journal of every applied input, the effects
/// asked for, and the node agents' view (which runs are executing where).
pub struct Sim {
    pub core: Core,
    pub now: DateTime<Utc>,
    /// Every input that was accepted (`Ok`), serialized as JSON: the replay tests read it back.
    pub journal: Vec<String>,
    /// Every effect ever asked for, in order.
    pub effects: Vec<Effect>,
    /// The effects of the last input.
    pub last: Vec<Effect>,
    /// Node ids in the order the core asked for them.
    pub provisioned: Vec<String>,
    /// Nodes whose agent is connected right now.
    pub connected: BTreeSet<String>,
    /// Nodes the core has forgotten (lost or removed): their agents are gone.
    pub gone: BTreeSet<String>,
    /// Nodes the core asked the provider to remove.
    pub remove_requested: BTreeSet<String>,
    /// Runs executing on agents.
    pub runs: BTreeMap<RunId, Run>,
    /// Every run id ever handed out in a `RunTask`.
    pub run_ids: BTreeSet<RunId>,
    /// `RunStartTask` effects per node.
    pub start_tasks: BTreeMap<String, u32>,
    /// Execution info of every task seen completed: completed is terminal and never changes.
    pub completed: BTreeMap<(String, String), m::TaskExecutionInfo>,
    /// Run the invariant checks after every step (on by default).
    pub checks: bool,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self {
            core: Core::new(limits),
            now: t0(),
            journal: Vec::new(),
            effects: Vec::new(),
            last: Vec::new(),
            provisioned: Vec::new(),
            connected: BTreeSet::new(),
            gone: BTreeSet::new(),
            remove_requested: BTreeSet::new(),
            runs: BTreeMap::new(),
            run_ids: BTreeSet::new(),
            start_tasks: BTreeMap::new(),
            completed: BTreeMap::new(),
            checks: true,
        }
    }

    // --- the clock -----------------------------------------------------------------------------

    pub fn advance(&mut self, secs: i64) {
        self.now += Duration::seconds(secs);
    }

    // --- applying ------------------------------------------------------------------------------

    /// Apply one input at the current time, record it and its effects, then check invariants.
    pub fn apply(&mut self, input: Input) -> Result<Applied, CoreError> {
        let logged = input.clone();
        let result = self.core.apply(input, self.now);
        match &result {
            Ok(applied) => {
                // The shell journals only inputs that changed something; an input that changed
                // nothing must ask for nothing, or a replay would lose what it asked for.
                if !applied.changed {
                    assert!(
                        applied.effects.is_empty(),
                        "{logged:?} reported changed=false but asked for {:?}",
                        applied.effects
                    );
                }
                let entry = Entry {
                    input: logged,
                    now: self.now,
                    changed: applied.changed,
                    effects: applied.effects.clone(),
                };
                self.journal
                    .push(serde_json::to_string(&entry).expect("inputs serialize"));
                self.observe(&applied.effects);
            }
            Err(_) => self.last.clear(),
        }
        self.notice_gone_nodes();
        if self.checks {
            self.check();
        }
        result
    }

    /// Apply an input that must be accepted.
    pub fn ok(&mut self, input: Input) -> Applied {
        let dbg = format!("{input:?}");
        self.apply(input)
            .unwrap_or_else(|e| panic!("{dbg} was refused: {e}"))
    }

    /// Apply an input that must be refused; nothing may change.
    pub fn refused(&mut self, input: Input) -> CoreError {
        let before = serde_json::to_value(&self.core).unwrap();
        let dbg = format!("{input:?}");
        let err = match self.apply(input) {
            Ok(a) => panic!("{dbg} was accepted: {:?}", a.reply),
            Err(e) => e,
        };
        assert_eq!(
            before,
            serde_json::to_value(&self.core).unwrap(),
            "a refused input changed the state"
        );
        err
    }

    fn observe(&mut self, effects: &[Effect]) {
        self.last = effects.to_vec();
        self.effects.extend(effects.iter().cloned());
        for fx in effects {
            match fx {
                Effect::ProvisionNode { node, .. } => {
                    assert!(
                        !self.provisioned.contains(node),
                        "node id {node} provisioned twice"
                    );
                    self.provisioned.push(node.clone());
                }
                Effect::RunStartTask { node, .. } => {
                    *self.start_tasks.entry(node.clone()).or_default() += 1;
                }
                Effect::RunTask { node, spec } => {
                    let job = self.core.job(&spec.job_id, &urls()).expect("the run's job exists");
                    assert_eq!(
                        job.state,
                        m::JobState::Active,
                        "task {} of a {} job started",
                        spec.task_id,
                        job.state
                    );
                    assert!(
                        self.run_ids.insert(spec.run),
                        "run id {} handed out twice",
                        spec.run
                    );
                    assert!(
                        self.connected.contains(node),
                        "run {} of task {} placed on node {node}, whose agent is not connected",
                        spec.run,
                        spec.task_id
                    );
                    self.runs.insert(
                        spec.run,
                        Run {
                            node: node.clone(),
                            job: spec.job_id.clone(),
                            task: spec.task_id.clone(),
                            slots: spec.required_slots,
                            started: self.now,
                            killed: false,
                        },
                    );
                }
                Effect::KillTask { run, .. } => {
                    if let Some(r) = self.runs.get_mut(run) {
                        r.killed = true;
                    }
                }
                Effect::RemoveNode { node } => {
                    self.remove_requested.insert(node.clone());
                }
            }
        }
    }

    /// A node the core no longer knows is gone for the simulation too: its agent was told to
    /// stop (or died), and whatever it was running died with it.
    fn notice_gone_nodes(&mut self) {
        let known: BTreeSet<String> = self.core.node_ids().into_iter().map(|(n, _)| n).collect();
        for n in &self.provisioned {
            if !known.contains(n) && self.gone.insert(n.clone()) {
                self.connected.remove(n);
                self.runs.retain(|_, r| &r.node != n);
            }
        }
    }

    // --- playing the agents and the provider ---------------------------------------------------

    pub fn result(&self, started: DateTime<Utc>, exit_code: i32) -> RunResult {
        RunResult {
            start_time: started,
            end_time: self.now,
            exit_code: Some(exit_code),
            failure: None,
            pre_processing_error: false,
        }
    }

    /// Provisioned nodes whose agent has never connected or is away, and that still exist.
    pub fn pending(&self) -> Vec<String> {
        self.provisioned
            .iter()
            .filter(|n| !self.connected.contains(*n) && !self.gone.contains(*n))
            .cloned()
            .collect()
    }

    /// The agent of `node` dials in: it reports the runs the simulation has on it.
    pub fn connect(&mut self, node: &str) -> Applied {
        let running = self.runs_on(node);
        self.hello(node, running, Vec::new())
    }

    /// The agent of `node` dials in and says exactly this.
    pub fn hello(
        &mut self,
        node: &str,
        running: Vec<RunId>,
        finished: Vec<(RunId, RunResult)>,
    ) -> Applied {
        self.hello_with_start_task(node, running, finished, None)
    }

    pub fn hello_with_start_task(
        &mut self,
        node: &str,
        running: Vec<RunId>,
        finished: Vec<(RunId, RunResult)>,
        start_task: Option<RunResult>,
    ) -> Applied {
        // What the agent does not report running any more it no longer runs.
        let keep: BTreeSet<RunId> = running.iter().copied().collect();
        self.runs.retain(|r, run| run.node != node || keep.contains(r));
        for (r, _) in &finished {
            self.runs.remove(r);
        }
        self.connected.insert(node.to_string());
        let ip = format!("10.0.0.{}", self.provisioned.iter().position(|n| n == node).unwrap_or(0) + 1);
        self.ok(Input::NodeConnected(NodeHello {
            node: node.into(),
            ip_address: ip,
            agent_version: "test-agent".into(),
            running,
            finished,
            start_task,
        }))
    }

    /// Connect every pending node.
    pub fn connect_all(&mut self) {
        for n in self.pending() {
            self.connect(&n);
        }
    }

    pub fn disconnect(&mut self, node: &str) -> Applied {
        self.connected.remove(node);
        self.ok(Input::NodeDisconnected { node: node.into() })
    }

    pub fn lose(&mut self, node: &str) -> Applied {
        self.ok(Input::NodeLost {
            node: node.into(),
            reason: "the test pulled the plug".into(),
        })
    }

    /// The provider answers a `RemoveNode`.
    pub fn removed(&mut self, node: &str) -> Applied {
        self.ok(Input::NodeRemoved { node: node.into() })
    }

    pub fn tick(&mut self) -> Applied {
        self.ok(Input::Tick)
    }

    pub fn start_task_done(&mut self, node: &str, exit_code: i32) -> Applied {
        let result = self.result(self.now, exit_code);
        self.ok(Input::StartTaskCompleted {
            node: node.into(),
            result,
        })
    }

    /// The agent reports that `run` ended with `exit_code`.
    pub fn finish(&mut self, run: RunId, exit_code: i32) -> Applied {
        let r = self
            .runs
            .remove(&run)
            .unwrap_or_else(|| panic!("run {run} is not executing on any agent"));
        let result = self.result(r.started, exit_code);
        self.ok(Input::TaskCompleted {
            node: r.node,
            run,
            result,
        })
    }

    /// The run of `job`/`task` that is executing (not being killed).
    pub fn run_of(&self, job: &str, task: &str) -> RunId {
        let mut live = self
            .runs
            .iter()
            .filter(|(_, r)| r.job == job && r.task == task && !r.killed)
            .map(|(id, _)| *id);
        let run = live
            .next()
            .unwrap_or_else(|| panic!("task {job}/{task} is not executing anywhere"));
        assert!(live.next().is_none(), "task {job}/{task} executes twice");
        run
    }

    /// Finish the executing run of `job`/`task`.
    pub fn finish_task(&mut self, job: &str, task: &str, exit_code: i32) -> Applied {
        let run = self.run_of(job, task);
        self.finish(run, exit_code)
    }

    /// Finish every run executing now (killed ones too), oldest first.
    pub fn finish_all(&mut self, exit_code: i32) {
        let runs: Vec<RunId> = self.runs.keys().copied().collect();
        for r in runs {
            if self.runs.contains_key(&r) {
                self.finish(r, exit_code);
            }
        }
    }

    pub fn runs_on(&self, node: &str) -> Vec<RunId> {
        self.runs
            .iter()
            .filter(|(_, r)| r.node == node)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Effects of the last input of one kind.
    pub fn last_run_tasks(&self) -> Vec<(String, String)> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::RunTask { node, spec } => Some((node.clone(), spec.task_id.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn last_kills(&self) -> Vec<RunId> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::KillTask { run, .. } => Some(*run),
                _ => None,
            })
            .collect()
    }

    pub fn last_removals(&self) -> Vec<String> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::RemoveNode { node } => Some(node.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn last_provisions(&self) -> Vec<String> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::ProvisionNode { node, .. } => Some(node.clone()),
                _ => None,
            })
            .collect()
    }

    // --- views ---------------------------------------------------------------------------------

    pub fn pool_view(&self, id: &str) -> m::Pool {
        self.core.pool(id, &urls()).expect("pool exists")
    }

    pub fn job_view(&self, id: &str) -> m::Job {
        self.core.job(id, &urls()).expect("job exists")
    }

    pub fn task_view(&self, job: &str, task: &str) -> m::Task {
        self.core.task(job, task, &urls()).expect("task exists")
    }

    pub fn task_state(&self, job: &str, task: &str) -> TaskState {
        self.task_view(job, task).state
    }

    pub fn tasks(&self, job: &str) -> Vec<m::Task> {
        self.core
            .list_tasks(job, None, usize::MAX, &urls(), &|_| true)
            .expect("job exists")
            .items
    }

    /// Ids of the job's tasks in a state.
    pub fn tasks_in(&self, job: &str, state: TaskState) -> Vec<String> {
        self.tasks(job)
            .into_iter()
            .filter(|t| t.state == state)
            .map(|t| t.id)
            .collect()
    }

    pub fn nodes(&self, pool: &str) -> Vec<m::Node> {
        self.core
            .list_nodes(pool, None, usize::MAX, &urls(), &|_| true)
            .expect("pool exists")
            .items
    }

    pub fn node_view(&self, node: &str) -> m::Node {
        let (pool, ..) = self.core.node_placement(node).expect("node exists");
        self.core.node(&pool, node, &urls()).expect("node in its pool")
    }

    pub fn node_state(&self, node: &str) -> NodeState {
        self.node_view(node).state
    }

    /// Node states of a pool, in node id order (which is creation order).
    pub fn node_states(&self, pool: &str) -> Vec<NodeState> {
        self.nodes(pool).into_iter().map(|n| n.state).collect()
    }

    pub fn counts(&self, job: &str) -> TaskCounts {
        self.core.task_counts(job).expect("job exists").task_counts
    }

    /// Which node the task's latest attempt ran on.
    pub fn node_of(&self, job: &str, task: &str) -> String {
        self.task_view(job, task)
            .node_info
            .and_then(|n| n.node_id)
            .unwrap_or_else(|| panic!("task {job}/{task} never ran"))
    }

    // --- invariants ----------------------------------------------------------------------------

    /// What must hold after every input, whatever happened.
    pub fn check(&mut self) {
        let u = urls();
        for p in self.core.list_pools(None, usize::MAX, &u, &|_| true).items {
            let nodes = self.core.list_nodes(&p.id, None, usize::MAX, &u, &|_| true).unwrap();
            let waits_for_start_task = p
                .start_task
                .as_ref()
                .is_some_and(|st| st.wait_for_success.unwrap_or(true));
            let mut changing = false;
            for n in nodes.items {
                // Slots: no node runs more than it has.
                assert!(
                    n.running_task_slots_count <= i64::from(p.task_slots_per_node),
                    "node {} runs {} slots of {}",
                    n.id,
                    n.running_task_slots_count,
                    p.task_slots_per_node
                );
                assert!(n.running_tasks_count <= n.running_task_slots_count);
                // The node's state agrees with what it runs.
                let busy = n.running_tasks_count > 0;
                match n.state {
                    NodeState::Idle => assert!(!busy, "idle node {} runs tasks", n.id),
                    NodeState::Running => assert!(busy, "running node {} runs nothing", n.id),
                    NodeState::LeavingPool | NodeState::Unknown => {}
                    other => assert!(!busy, "node {} is {other} but runs tasks", n.id),
                }
                // Azure waitForSuccess: no task on a node whose start task has not succeeded.
                if busy && waits_for_start_task {
                    let ok = n.start_task_info.as_ref().and_then(|i| i.result)
                        == Some(m::ExecutionResult::Success);
                    assert!(ok, "node {} runs tasks, but its start task did not succeed", n.id);
                }
                changing |= matches!(n.state, NodeState::Creating | NodeState::LeavingPool);
            }
            // allocationState: resizing while nodes come or go, steady otherwise.
            if p.state == m::PoolState::Active {
                let want = if changing {
                    m::AllocationState::Resizing
                } else {
                    m::AllocationState::Steady
                };
                assert_eq!(p.allocation_state, want, "allocationState of pool {}", p.id);
            }
        }
        // Counts: the job's counters equal a recount over its tasks.
        let mut seen = BTreeSet::new();
        for j in self.core.list_jobs(None, usize::MAX, &u, &|_| true).items {
            let tasks = self.tasks(&j.id);
            let mut counts = TaskCounts::default();
            let mut slots = TaskCounts::default();
            for t in &tasks {
                let s = i64::from(t.required_slots);
                for (c, by) in [(&mut counts, 1), (&mut slots, s)] {
                    match t.state {
                        TaskState::Active => c.active += by,
                        TaskState::Preparing | TaskState::Running => c.running += by,
                        TaskState::Completed => {
                            c.completed += by;
                            if t.execution_info.result == Some(m::ExecutionResult::Failure) {
                                c.failed += by;
                            } else {
                                c.succeeded += by;
                            }
                        }
                    }
                }
                // Completed is terminal: once completed, a task stays so, with the same outcome.
                let key = (j.id.to_ascii_lowercase(), t.id.to_ascii_lowercase());
                seen.insert(key.clone());
                match (t.state, self.completed.get(&key)) {
                    (TaskState::Completed, None) => {
                        self.completed.insert(key, t.execution_info.clone());
                    }
                    (TaskState::Completed, Some(first)) => assert_eq!(
                        first, &t.execution_info,
                        "completed task {}/{} changed its outcome",
                        j.id, t.id
                    ),
                    (state, Some(_)) => {
                        panic!("task {}/{} went from completed back to {state}", j.id, t.id)
                    }
                    (_, None) => {}
                }
                // A running task says where it runs.
                if t.state == TaskState::Running {
                    assert!(t.node_info.is_some(), "running task {} has no nodeInfo", t.id);
                }
            }
            let have = self.core.task_counts(&j.id).unwrap();
            assert_eq!(
                have,
                TaskCountsResult {
                    task_counts: counts,
                    task_slot_counts: slots
                },
                "task counts of job {} differ from a recount",
                j.id
            );
        }
        self.completed.retain(|k, _| seen.contains(k));
        self.check_runs();
        // No task executes twice at once on the agents (killed runs are on their way out).
        let mut live: BTreeMap<(String, String), RunId> = BTreeMap::new();
        for (id, r) in self.runs.iter().filter(|(_, r)| !r.killed) {
            if let Some(other) = live.insert((r.job.clone(), r.task.clone()), *id) {
                panic!(
                    "task {}/{} executes twice at once: runs {other} and {id}",
                    r.job, r.task
                );
            }
        }
    }

    /// The run bookkeeping, read from the core's snapshot (the one place that shows which runs
    /// a node holds): slots add up, each run is on one node, each running task's current run is
    /// held by exactly one node, and a node holds no run of a task other than its current one.
    fn check_runs(&self) {
        let snap = serde_json::to_value(&self.core).unwrap();
        let nodes = snap["nodes"]
            .as_object()
            .expect("snapshot has `nodes` (update tests/common if the format changed)");
        let mut holder: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
        for (id, n) in nodes {
            let running = n["running"].as_object().expect("node has `running`");
            let mut used = 0;
            for (run, entry) in running {
                let run: u64 = run.parse().unwrap();
                let (jk, tk, slots) = (
                    entry[0].as_str().unwrap().to_string(),
                    entry[1].as_str().unwrap().to_string(),
                    entry[2].as_u64().unwrap(),
                );
                used += slots;
                if let Some(prev) = holder.insert(run, (id.clone(), jk, tk)) {
                    panic!("run {run} is held by nodes {} and {id}", prev.0);
                }
            }
            assert_eq!(n["used_slots"].as_u64(), Some(used), "node {id}: used_slots");
            assert!(used <= n["slots"].as_u64().unwrap(), "node {id} over-committed");
        }
        let jobs = snap["jobs"].as_object().expect("snapshot has `jobs`");
        for (jk, j) in jobs {
            for (tk, t) in j["tasks"].as_object().expect("job has `tasks`") {
                let state = t["state"].as_str().unwrap();
                match t["current_run"].as_u64() {
                    Some(run) => {
                        let h = holder.get(&run).unwrap_or_else(|| {
                            panic!("task {jk}/{tk} runs as {run}, which no node holds")
                        });
                        assert_eq!((&h.1, &h.2), (jk, tk), "run {run} held for another task");
                        assert_eq!(state, "running", "task {jk}/{tk} has a run but is {state}");
                    }
                    None => assert_ne!(state, "running", "task {jk}/{tk} runs without a run"),
                }
            }
        }
        for (run, (node, jk, tk)) in &holder {
            if let Some(t) = jobs.get(jk).and_then(|j| j["tasks"].get(tk)) {
                assert_eq!(
                    t["current_run"].as_u64(),
                    Some(*run),
                    "node {node} holds run {run} of {jk}/{tk}, which is not the task's current run"
                );
            }
        }
    }

    // --- journal, replay, snapshots ------------------------------------------------------------

    pub fn entries(&self) -> Vec<Entry> {
        self.journal
            .iter()
            .map(|s| serde_json::from_str(s).expect("journal entries deserialize"))
            .collect()
    }
}

/// Everything a client can see of a core, as JSON: pools, their nodes, jobs, their tasks and
/// task counts.
pub fn render_all(core: &Core) -> Value {
    let u = urls();
    let pools = core.list_pools(None, usize::MAX, &u, &|_| true).items;
    let nodes: Vec<Value> = pools
        .iter()
        .map(|p| {
            json!(core
                .list_nodes(&p.id, None, usize::MAX, &u, &|_| true)
                .unwrap()
                .items)
        })
        .collect();
    let jobs = core.list_jobs(None, usize::MAX, &u, &|_| true).items;
    let tasks: Vec<Value> = jobs
        .iter()
        .map(|j| {
            json!({
                "tasks": core.list_tasks(&j.id, None, usize::MAX, &u, &|_| true).unwrap().items,
                "counts": core.task_counts(&j.id).unwrap(),
            })
        })
        .collect();
    json!({"pools": pools, "nodes": nodes, "jobs": jobs, "tasks": tasks})
}

/// Apply journal entries to `core`, asserting each asks for exactly what it asked for first.
pub fn replay_into(core: &mut Core, entries: &[Entry]) {
    for (i, e) in entries.iter().enumerate() {
        let applied = core
            .apply(e.input.clone(), e.now)
            .unwrap_or_else(|err| panic!("entry {i} ({:?}) refused on replay: {err}", e.input));
        assert_eq!(
            applied.effects, e.effects,
            "entry {i} ({:?}) asked for different effects on replay",
            e.input
        );
        assert_eq!(applied.changed, e.changed, "entry {i}: changed differs");
    }
}

/// A snapshot round trip, as the store does it: serialize, load, rebuild the indexes.
pub fn snapshot(core: &Core) -> Core {
    let text = serde_json::to_string(core).expect("core serializes");
    let mut back: Core = serde_json::from_str(&text).expect("snapshot deserializes");
    back.rebuild_indexes();
    back
}
