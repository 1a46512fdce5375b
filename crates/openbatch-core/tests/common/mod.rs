//! The harness of the core's tests: a manual clock, builders for the API bodies, and [`Sim`],
//! which applies inputs to a [`Core`], records what the core asks for, plays the node agents
//! and the provider, and checks the core's invariants after every single step.
//!
//! Every test binary uses a different part of the harness, hence the `allow`s.
#![allow(dead_code, unused_imports, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
pub use openbatch_api::agent::TaskDirRef;
use openbatch_api::models::{self as m, NodeState, TaskCounts, TaskCreate, TaskState};
use openbatch_core::{
    Applied, Core, CoreError, Effect, Input, Limits, NodeHello, RunId, RunResult, Urls,
};
use serde_json::{json, Value};

mod invariants;
mod journal;
mod schedules;

pub use journal::{render_all, replay_into, snapshot, Entry};
pub use schedules::job_schedule;

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
    pool(
        json!({"id": id, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": nodes, "taskSlotsPerNode": slots}),
    )
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
    (1..=n)
        .map(|i| simple_task(&format!("{prefix}{i}")))
        .collect()
}

pub fn add(job: &str, tasks: Vec<TaskCreate>) -> Input {
    Input::AddTasks {
        job: job.into(),
        tasks,
    }
}

/// The `i`-th item, wrapping around; `None` when there are none (for random operations that
/// name "some node" or "some task" by an index).
pub fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
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

/// Whether `task_id` names the job's preparation (`Some(true)`) or release (`Some(false)`)
/// task, which run once per node rather than once per job.
pub fn job_task_kind(job: &m::Job, task_id: &str) -> Option<bool> {
    let same = |id: &str| id.eq_ignore_ascii_case(task_id);
    if job
        .job_preparation_task
        .as_ref()
        .is_some_and(|p| same(p.task_id()))
    {
        Some(true)
    } else if job
        .job_release_task
        .as_ref()
        .is_some_and(|r| same(r.task_id()))
    {
        Some(false)
    } else {
        None
    }
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
    /// For an instance of a multi-instance task: (index, count); index 0 is the primary.
    pub instance: Option<(u32, u32)>,
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
    /// Nodes told of a preemption (`Effect::PreemptNode`), in order.
    pub preempt_notices: Vec<String>,
    /// `RunStartTask` effects per node.
    pub start_tasks: BTreeMap<String, u32>,
    /// Execution info of every task seen completed: completed is terminal and never changes.
    pub completed: BTreeMap<(String, String), m::TaskExecutionInfo>,
    /// Run the invariant checks after every step (on by default).
    pub checks: bool,
    /// The task of every run ever handed out: (job id, task id) as the `RunTask` named them.
    pub run_tasks: BTreeMap<RunId, (String, String)>,
    /// The last result an agent reported for each task (keys lowercased), for the dependency
    /// invariant's own reading of exit conditions.
    pub last_results: BTreeMap<(String, String), RunResult>,
    /// Every directory a node was asked to delete (`Effect::DeleteTaskDirs`), in order.
    pub deleted_dirs: Vec<(String, TaskDirRef)>,
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
        Self::from_core(Core::new(limits), t0())
    }

    /// A simulation around an existing core (a replayed or restored one): no agent is connected
    /// and none runs anything yet.
    pub fn from_core(core: Core, now: DateTime<Utc>) -> Self {
        Self {
            core,
            now,
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
            preempt_notices: Vec::new(),
            completed: BTreeMap::new(),
            checks: true,
            run_tasks: BTreeMap::new(),
            last_results: BTreeMap::new(),
            deleted_dirs: Vec::new(),
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
        let reported: Vec<(RunId, RunResult)> = match &input {
            Input::TaskCompleted { run, result, .. } => vec![(*run, result.clone())],
            Input::NodeConnected(hello) => hello.finished.clone(),
            _ => Vec::new(),
        };
        // Reactivation is the one way back from completed (Azure: failed tasks only).
        let reactivated = match &input {
            Input::ReactivateTask { job, task } => {
                Some((job.to_ascii_lowercase(), task.to_ascii_lowercase()))
            }
            _ => None,
        };
        let result = self.core.apply(input, self.now);
        if result.is_ok() {
            if let Some(key) = reactivated {
                self.completed.remove(&key);
            }
            for (run, r) in reported {
                if let Some((job, task)) = self.run_tasks.get(&run) {
                    let key = (job.to_ascii_lowercase(), task.to_ascii_lowercase());
                    self.last_results.insert(key, r);
                }
            }
        }
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
        self.check_gangs_atomic(effects);
        for fx in effects {
            match fx {
                Effect::ProvisionNode { node, .. } => {
                    if self.provisioned.contains(node) {
                        // Only a preempted node comes back under its own id, and only after
                        // its agent was stopped.
                        assert!(
                            self.remove_requested.remove(node) && !self.connected.contains(node),
                            "node id {node} provisioned twice"
                        );
                    } else {
                        self.provisioned.push(node.clone());
                    }
                }
                Effect::RunStartTask { node, .. } => {
                    *self.start_tasks.entry(node.clone()).or_default() += 1;
                }
                Effect::RunTask { node, spec } => {
                    let job = self
                        .core
                        .job(&spec.job_id, &urls())
                        .expect("the run's job exists");
                    // A job's preparation task runs while the job is on; its release task
                    // once it ends; every other task only in an active job.
                    let kind = job_task_kind(&job, &spec.task_id);
                    let allowed: &[m::JobState] = match kind {
                        Some(true) => &[
                            m::JobState::Active,
                            m::JobState::Disabling,
                            m::JobState::Disabled,
                            m::JobState::Enabling,
                        ],
                        Some(false) => &[m::JobState::Terminating, m::JobState::Deleting],
                        None => &[m::JobState::Active],
                    };
                    assert!(
                        allowed.contains(&job.state),
                        "task {} of a {} job started",
                        spec.task_id,
                        job.state
                    );
                    assert!(
                        self.run_ids.insert(spec.run),
                        "run id {} handed out twice",
                        spec.run
                    );
                    self.run_tasks
                        .insert(spec.run, (spec.job_id.clone(), spec.task_id.clone()));
                    if self.checks && kind.is_none() {
                        self.check_dependencies_met(&spec.job_id, &spec.task_id);
                    }
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
                            instance: spec.instance.as_ref().map(|i| (i.index, i.count)),
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
                Effect::RestartNode { node, .. } => {
                    // The agent restarts: whatever it ran dies with it.
                    self.runs.retain(|_, r| &r.node != node);
                }
                Effect::PreemptNode { node, .. } => {
                    self.preempt_notices.push(node.clone());
                }
                Effect::InstallPackages { .. } | Effect::RunPrimaryCommand { .. } => {}
                // A directory is never deleted under a run that uses it (a run being killed
                // may still be there: the core requeued it and the agent kills it).
                Effect::DeleteTaskDirs { node, dirs } => {
                    assert!(
                        self.connected.contains(node),
                        "cleanup sent to {node}, which is not connected"
                    );
                    for d in dirs {
                        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
                        if let Some((run, _)) = self.runs.iter().find(|(_, r)| {
                            &r.node == node
                                && !r.killed
                                && same(&r.job, &d.job_id)
                                && d.task_id.as_deref().is_none_or(|t| same(t, &r.task))
                        }) {
                            panic!(
                                "{node} asked to delete {} while run {run} uses it",
                                d.path()
                            );
                        }
                        self.deleted_dirs.push((node.clone(), d.clone()));
                    }
                }
                // Logs are discarded only for what is gone for good.
                Effect::DiscardLogs { job, task, .. } => match task {
                    None => assert!(
                        self.core.job(job, &urls()).is_err(),
                        "logs of job {job} discarded while it exists"
                    ),
                    Some(task) => assert!(
                        self.core.task(job, task, &urls()).is_err(),
                        "logs of task {job}/{task} discarded while it exists"
                    ),
                },
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
            file_upload_error: false,
            empty_logs: Vec::new(),
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
        self.runs
            .retain(|r, run| run.node != node || keep.contains(r));
        for (r, _) in &finished {
            self.runs.remove(r);
        }
        self.connected.insert(node.to_string());
        let ip = format!(
            "10.0.0.{}",
            self.provisioned.iter().position(|n| n == node).unwrap_or(0) + 1
        );
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

    /// The provider answers a `RemoveNode`: the agent was stopped, and its runs with it.
    pub fn removed(&mut self, node: &str) -> Applied {
        self.connected.remove(node);
        self.runs.retain(|_, r| r.node != node);
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
    /// An agent reports the end of a run as a real one would: a run the core killed ends with
    /// 137, whatever `exit_code` the test meant.
    pub fn finish_as_agent(&mut self, run: RunId, exit_code: i32) {
        let killed = self.runs[&run].killed;
        self.finish(run, if killed { 137 } else { exit_code });
    }

    /// The ids of every node the core knows.
    pub fn known_nodes(&self) -> Vec<String> {
        self.core.node_ids().into_iter().map(|(n, _)| n).collect()
    }

    /// Nodes the core asked the provider to remove and still knows.
    pub fn outstanding_removals(&self) -> Vec<String> {
        let known: BTreeSet<String> = self.known_nodes().into_iter().collect();
        self.remove_requested
            .iter()
            .filter(|n| known.contains(*n))
            .cloned()
            .collect()
    }

    /// Play agents and provider until nothing runs, nothing boots and nothing waits to be
    /// removed: connect what boots, call `round` (the test's own chores), carry out removals,
    /// and end every run. Panics if that does not converge in 500 rounds.
    pub fn settle(&mut self, mut round: impl FnMut(&mut Sim)) {
        for _ in 0..500 {
            for n in self.pending() {
                self.connect(&n);
            }
            round(self);
            let removals = self.outstanding_removals();
            for n in &removals {
                self.removed(n);
            }
            let runs: Vec<RunId> = self.runs.keys().copied().collect();
            if runs.is_empty() && removals.is_empty() && self.pending().is_empty() {
                return;
            }
            for r in runs {
                if self.runs.contains_key(&r) {
                    self.finish_as_agent(r, 0);
                }
            }
        }
        panic!("the simulation does not settle");
    }

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

    /// What the last input started: (node, task id) of each `RunTask`.
    pub fn last_run_tasks(&self) -> Vec<(String, String)> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::RunTask { node, spec } => Some((node.clone(), spec.task_id.clone())),
                _ => None,
            })
            .collect()
    }

    /// The agents report the end of every run the last input killed (exit 137), and of every
    /// run those reports kill in turn, until a report kills nothing more.
    pub fn report_kills(&mut self) {
        let mut pending = self.last_kills();
        while let Some(run) = pending.pop() {
            self.finish(run, 137);
            pending.extend(self.last_kills());
        }
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

    /// The directories the last input asked nodes to delete: (node, path).
    pub fn last_dir_deletes(&self) -> Vec<(String, String)> {
        self.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::DeleteTaskDirs { node, dirs } => Some(
                    dirs.iter()
                        .map(|d| (node.clone(), d.path()))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The agent of `node` answers that it deleted these directories.
    pub fn dirs_deleted(&mut self, node: &str, dirs: Vec<TaskDirRef>) -> Applied {
        self.ok(Input::TaskDirsDeleted {
            node: node.into(),
            dirs,
        })
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
        self.core
            .node(&pool, node, &urls())
            .expect("node in its pool")
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
}
