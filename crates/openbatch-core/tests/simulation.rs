//! A seeded, deterministic simulation of the core at scale: thousands of nodes, hundreds of
//! thousands of tasks with mixed slot needs and priorities, failures and retries, nodes lost and
//! replaced, and a server restart from a snapshot plus the journal, with the invariants checked
//! after every step:
//!
//! - no node's slots are over-committed;
//! - no task runs twice at once, and no run starts for a task that is not runnable;
//! - every accepted task ends exactly once (completed is terminal; a completed task never runs);
//! - no task starts before every task it depends on (`dependsOn` ids and ranges) completed;
//! - the state restored from a snapshot and the journal equals the live state;
//! - no gang partially started: the instances of a multi-instance task (one task in 200, 2 to
//!   16 nodes) start in one input, all of them, each on a node of its own that ran nothing, and
//!   none is left running once its attempt ended (requeued, failed, completed). Some jobs have
//!   a job preparation task (one with `waitForSuccess: false`): a gang of such a job waits,
//!   its nodes taken and nothing sent, until preparation succeeded on all of its nodes, and a
//!   node where preparation failed gets none of the job's tasks.
//!
//! The checks are incremental (a shadow of the nodes' slots and of the runs, kept from the
//! effects the core asks for), so a step costs the same at 200,000 tasks as at 200. A full
//! recount of every job's task counts runs every so often and at the end.
//!
//! `OPENBATCH_SIM_SEED` picks another seed; `OPENBATCH_SIM_SCALE` (a divisor, default 1)
//! shrinks the run for quick local iterations.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use openbatch_api::models::{self as m, TaskState};
use openbatch_core::{Core, Effect, Input, Limits, NodeHello, RunId, RunResult, Urls};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The id of the jobs' preparation task (its default).
const PREP: &str = "jobpreparation";

fn urls() -> Urls {
    Urls {
        base: "https://sim.openbatch.test".into(),
    }
}

struct Params {
    nodes: u32,
    slots: u32,
    tasks: usize,
    jobs: usize,
}

/// A run as the simulated agents see it.
#[derive(Debug, Clone)]
struct Run {
    node: String,
    job: String,
    task: String,
    slots: u32,
    started: DateTime<Utc>,
    /// An instance of a multi-instance task: (index, count); 0 is the primary.
    instance: Option<(u32, u32)>,
    /// The core asked for it to be killed; the agent reports its end next.
    killed: bool,
    /// A job preparation run (once per node, not a task of the job).
    prep: bool,
}

/// The world around the core: the clock, the agents, the journal, and the shadow state the
/// invariants are checked against.
struct World {
    core: Core,
    now: DateTime<Utc>,
    rng: StdRng,
    /// Accepted inputs that changed something, with their time: what the shell journals.
    journal: Vec<(Input, DateTime<Utc>)>,
    /// Node ids the core provisioned and whose agent has not connected yet.
    booting: Vec<String>,
    /// Connected agents and the slots they have.
    connected: BTreeMap<String, u32>,
    /// Slots in use per node, from the runs the core started there.
    used: HashMap<String, u32>,
    runs: BTreeMap<RunId, Run>,
    /// Tasks with a run in flight (for a gang: with a live instance).
    running: HashSet<(String, String)>,
    /// Live (not killed) instances of each multi-instance task in flight.
    live_instances: HashMap<(String, String), u32>,
    /// Runs the core asked to kill, which their agents report next.
    kills: Vec<RunId>,
    gangs_started: u64,
    /// Gangs that started when the last preparation on their nodes succeeded.
    gangs_after_prep: u64,
    /// Tasks seen completed.
    completed: HashSet<(String, String)>,
    /// Tasks accepted by the core, per job.
    accepted: HashMap<String, usize>,
    /// What each task with dependencies waits for (task ids of the same job).
    depends: HashMap<(String, String), Vec<String>>,
    placements: u64,
    steps: u64,
    /// (job, node) where the job's preparation task ran (or runs), and where it succeeded.
    prepared: HashSet<(String, String)>,
    prep_ok: HashSet<(String, String)>,
    /// Jobs whose preparation task has `waitForSuccess`.
    wait_for_prep: HashSet<String>,
    /// Multi-instance tasks of those jobs not seen completed: a failed preparation can leave
    /// too few nodes for one, which then fails at once (in the input that says so, or when it
    /// is added).
    open_gangs: HashMap<String, HashSet<String>>,
}

impl World {
    fn new(seed: u64) -> Self {
        Self {
            core: Core::new(Limits::default()),
            now: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            rng: StdRng::seed_from_u64(seed),
            journal: Vec::new(),
            booting: Vec::new(),
            connected: BTreeMap::new(),
            used: HashMap::new(),
            runs: BTreeMap::new(),
            running: HashSet::new(),
            live_instances: HashMap::new(),
            kills: Vec::new(),
            gangs_started: 0,
            gangs_after_prep: 0,
            completed: HashSet::new(),
            accepted: HashMap::new(),
            depends: HashMap::new(),
            placements: 0,
            steps: 0,
            prepared: HashSet::new(),
            prep_ok: HashSet::new(),
            wait_for_prep: HashSet::new(),
            open_gangs: HashMap::new(),
        }
    }

    fn apply(&mut self, input: Input) -> openbatch_core::Applied {
        self.apply_completing(input, None)
    }

    /// Apply an input; `completing` is the task whose run just ended: whether it is completed
    /// now is recorded before the input's effects (which may start its dependents) are checked.
    fn apply_completing(
        &mut self,
        input: Input,
        completing: Option<(String, String)>,
    ) -> openbatch_core::Applied {
        self.steps += 1;
        let logged = input.clone();
        let applied = self
            .core
            .apply(input, self.now)
            .unwrap_or_else(|e| panic!("refused at step {}: {e}", self.steps));
        if let Some(key) = &completing {
            let key = key.clone();
            let t = self
                .core
                .task(&key.0, &key.1, &urls())
                .expect("task exists");
            if t.state == TaskState::Completed {
                if let Some(open) = self.open_gangs.get_mut(&key.0) {
                    open.remove(&key.1);
                }
                assert!(
                    self.completed.insert(key.clone()),
                    "{key:?} completed twice"
                );
            }
        }
        if applied.changed {
            self.journal.push((logged, self.now));
        } else {
            assert!(
                applied.effects.is_empty(),
                "an unchanged input asked for effects"
            );
        }
        self.observe(&applied.effects);
        let mut touched: Vec<(String, String)> = applied
            .effects
            .iter()
            .filter_map(|fx| match fx {
                Effect::RunTask { spec, .. } if spec.instance.is_some() => {
                    Some((spec.job_id.clone(), spec.task_id.clone()))
                }
                Effect::KillTask { run, .. } => {
                    self.runs.get(run).map(|r| (r.job.clone(), r.task.clone()))
                }
                _ => None,
            })
            .collect();
        touched.extend(completing);
        self.check_gangs_whole(&touched);
        applied
    }

    /// No gang partially started: every instance of a multi-instance task started by this input
    /// is here, indexes 0..count, each on a node of its own that runs nothing (checked against
    /// the shadow before any of this input's runs are added), taking all its slots.
    fn check_gangs_atomic(&mut self, effects: &[Effect]) {
        // Per task: (index, count, node) of each instance started.
        type Started = HashMap<(String, String), Vec<(u32, u32, String)>>;
        let mut started: Started = HashMap::new();
        for fx in effects {
            if let Effect::RunTask { node, spec } = fx {
                if let Some(i) = &spec.instance {
                    assert_eq!(
                        self.used.get(node).copied().unwrap_or(0),
                        0,
                        "instance {} of {}/{} placed on busy node {node}",
                        i.index,
                        spec.job_id,
                        spec.task_id
                    );
                    assert_eq!(
                        Some(&spec.required_slots),
                        self.connected.get(node),
                        "an instance takes its whole node"
                    );
                    started
                        .entry((spec.job_id.clone(), spec.task_id.clone()))
                        .or_default()
                        .push((i.index, i.count, node.clone()));
                }
            }
        }
        for (key, mut list) in started {
            list.sort();
            let count = list[0].1;
            let nodes: HashSet<&String> = list.iter().map(|(_, _, n)| n).collect();
            assert!(
                list.iter()
                    .enumerate()
                    .all(|(k, (i, c, _))| *i == k as u32 && *c == count)
                    && list.len() == count as usize
                    && nodes.len() == list.len(),
                "gang {key:?} partially started: {list:?}"
            );
            self.gangs_started += 1;
        }
    }

    /// Check each effect against the shadow state, then play it.
    fn observe(&mut self, effects: &[Effect]) {
        self.check_gangs_atomic(effects);
        for fx in effects {
            match fx {
                Effect::ProvisionNode { node, .. } => self.booting.push(node.clone()),
                Effect::RunTask { node, spec } if spec.task_id == PREP => {
                    assert!(self.connected.contains_key(node), "preparation on {node}");
                    assert_eq!(spec.required_slots, 0, "preparation takes no slot");
                    let key = (spec.job_id.clone(), node.clone());
                    assert!(
                        self.prepared.insert(key.clone()),
                        "preparation of {key:?} runs twice, or again after it succeeded"
                    );
                    self.runs.insert(
                        spec.run,
                        Run {
                            node: node.clone(),
                            job: spec.job_id.clone(),
                            task: spec.task_id.clone(),
                            slots: 0,
                            started: self.now,
                            instance: None,
                            killed: false,
                            prep: true,
                        },
                    );
                }
                Effect::RunTask { node, spec } => {
                    let slots = *self
                        .connected
                        .get(node)
                        .unwrap_or_else(|| panic!("run placed on {node}, which is not connected"));
                    let used = self.used.entry(node.clone()).or_default();
                    *used += spec.required_slots;
                    assert!(
                        *used <= slots,
                        "node {node} over-committed: {used} of {slots} slots"
                    );
                    let key = (spec.job_id.clone(), spec.task_id.clone());
                    // With waitForSuccess, a job's tasks (every instance of a gang included)
                    // start only where its preparation succeeded.
                    if self.wait_for_prep.contains(&spec.job_id) {
                        assert!(
                            self.prep_ok.contains(&(spec.job_id.clone(), node.clone())),
                            "{key:?} started on {node} before preparation succeeded there"
                        );
                    }
                    assert!(
                        !self.completed.contains(&key),
                        "completed task {key:?} ran again"
                    );
                    // Dependency order: everything a task waits for has completed (failures
                    // satisfy their dependents here, by their exit conditions).
                    for d in self.depends.get(&key).into_iter().flatten() {
                        assert!(
                            self.completed.contains(&(key.0.clone(), d.clone())),
                            "{key:?} started before its dependency {d} completed"
                        );
                    }
                    let instance = spec.instance.as_ref().map(|i| (i.index, i.count));
                    match instance {
                        Some((index, _)) => {
                            // The primary comes first; the others join its attempt.
                            assert_eq!(
                                self.running.insert(key.clone()),
                                index == 0,
                                "instance {index} of {key:?}: runs twice, or without its primary"
                            );
                            *self.live_instances.entry(key.clone()).or_default() += 1;
                        }
                        None => assert!(
                            self.running.insert(key.clone()),
                            "task {key:?} runs twice at once"
                        ),
                    }
                    self.runs.insert(
                        spec.run,
                        Run {
                            node: node.clone(),
                            job: key.0,
                            task: key.1,
                            slots: spec.required_slots,
                            started: self.now,
                            instance,
                            killed: false,
                            prep: false,
                        },
                    );
                    self.placements += 1;
                }
                // Killed runs end when their agent reports them, like real ones (next step).
                Effect::KillTask { run, .. } => {
                    let newly = self.runs.get_mut(run).filter(|r| !r.killed).map(|r| {
                        r.killed = true;
                        ((r.job.clone(), r.task.clone()), r.instance.is_some())
                    });
                    if let Some((key, instance)) = newly {
                        if !self.runs[run].prep {
                            self.run_gone(&key, instance);
                        }
                        self.kills.push(*run);
                    }
                }
                Effect::RunStartTask { .. }
                | Effect::InstallPackages { .. }
                | Effect::DiscardLogs { .. }
                | Effect::DeleteTaskDirs { .. }
                | Effect::RunPrimaryCommand { .. } => {}
                Effect::RemoveNode { node } => {
                    self.drop_agent(node);
                    let n = node.clone();
                    self.apply(Input::NodeRemoved { node: n });
                }
                Effect::RestartNode { node, .. } | Effect::PreemptNode { node, .. } => {
                    panic!("unexpected restart or preemption of {node}")
                }
            }
        }
    }

    /// An agent is gone: what it ran ends with it (the core requeues it).
    fn drop_agent(&mut self, node: &str) {
        self.connected.remove(node);
        self.used.remove(node);
        let gone: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, r)| r.node == node)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let r = self.runs.remove(&id).unwrap();
            if r.prep {
                // A lost preparation runs again before the job's next task there.
                self.prepared.remove(&(r.job.clone(), r.node.clone()));
            } else if !r.killed {
                self.run_gone(&(r.job, r.task), r.instance.is_some());
            }
        }
    }

    /// A live run of the task is gone (ended, killed, or died with its agent): the task is no
    /// longer in flight once it has no live run left.
    fn run_gone(&mut self, key: &(String, String), instance: bool) {
        if !instance {
            self.running.remove(key);
            return;
        }
        let live = self
            .live_instances
            .get_mut(key)
            .expect("a live instance is counted");
        *live -= 1;
        if *live == 0 {
            self.live_instances.remove(key);
            self.running.remove(key);
        }
    }

    /// Agents report the runs the core asked them to kill.
    fn report_kills(&mut self) {
        while !self.kills.is_empty() {
            for run in std::mem::take(&mut self.kills) {
                if self.runs.contains_key(&run) {
                    let (input, _) = self.end_run(run, 137);
                    self.apply(input);
                }
            }
        }
    }

    /// After an input: a multi-instance task with a live instance is running, with its
    /// primary live (a requeued, failed or completed gang leaves no instance behind).
    fn check_gangs_whole(&self, keys: &[(String, String)]) {
        for key in keys {
            let Some(live) = self.live_instances.get(key) else {
                continue;
            };
            let t = self
                .core
                .task(&key.0, &key.1, &urls())
                .expect("task exists");
            assert_eq!(
                t.state,
                TaskState::Running,
                "{key:?} has {live} live instance(s) but is {}",
                t.state
            );
            let primary_live = self.runs.values().any(|r| {
                &(r.job.clone(), r.task.clone()) == key
                    && !r.killed
                    && r.instance.map(|i| i.0) == Some(0)
            });
            assert!(primary_live, "{key:?} runs instances without its primary");
        }
    }

    fn connect(&mut self, node: String, slots: u32) {
        self.connected.insert(node.clone(), slots);
        let running: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(_, r)| r.node == node)
            .map(|(id, _)| *id)
            .collect();
        self.apply(Input::NodeConnected(NodeHello {
            node,
            ip_address: "10.0.0.1".into(),
            agent_version: "sim".into(),
            running,
            finished: Vec::new(),
            start_task: None,
        }));
    }

    /// The agent reports a run's end; the task's new state is checked.
    fn finish(&mut self, run: RunId, exit_code: i32) {
        if self.runs[&run].prep {
            // Preparation: its node is prepared for the job if it succeeded; a failure (no
            // retries) keeps the job's tasks off the node for good.
            let r = &self.runs[&run];
            let key = (r.job.clone(), r.node.clone());
            let job = key.0.clone();
            if exit_code == 0 {
                self.prep_ok.insert(key);
            }
            let (input, _) = self.end_run(run, exit_code);
            let before = self.gangs_started;
            self.apply(input);
            self.gangs_after_prep += self.gangs_started - before;
            self.note_failed_gangs(&job);
            return;
        }
        let (input, key) = self.end_run(run, exit_code);
        self.apply_completing(input, Some(key));
    }

    /// Gangs of `job` that failed at once (too few nodes left where its preparation did not
    /// fail) are completed: each exactly once.
    fn note_failed_gangs(&mut self, job: &str) {
        let Some(open) = self.open_gangs.get(job) else {
            return;
        };
        let done: Vec<String> = open
            .iter()
            .filter(|t| {
                self.core
                    .task(job, t, &urls())
                    .is_ok_and(|t| t.state == TaskState::Completed)
            })
            .cloned()
            .collect();
        for t in done {
            self.open_gangs.get_mut(job).unwrap().remove(&t);
            assert!(
                self.completed.insert((job.to_string(), t.clone())),
                "{job}/{t} completed twice"
            );
        }
    }

    /// Take a run off its agent (slots, running set) and make its `TaskCompleted` report.
    fn end_run(&mut self, run: RunId, exit_code: i32) -> (Input, (String, String)) {
        let r = self.runs.remove(&run).expect("the run executes");
        let key = (r.job.clone(), r.task.clone());
        if !r.killed && !r.prep {
            self.run_gone(&key, r.instance.is_some());
        }
        if let Some(u) = self.used.get_mut(&r.node) {
            *u -= r.slots;
        }
        let result = RunResult {
            start_time: r.started,
            end_time: self.now,
            exit_code: Some(exit_code),
            failure: None,
            pre_processing_error: false,
            file_upload_error: false,
            empty_logs: Vec::new(),
        };
        let input = Input::TaskCompleted {
            node: r.node,
            run,
            result,
        };
        (input, key)
    }

    /// Every job's counters against a recount of its tasks, and against the shadow.
    fn full_check(&self) {
        self.core.check_indexes();
        let mut completed = 0usize;
        for (job, accepted) in &self.accepted {
            let tasks = self
                .core
                .list_tasks(job, None, usize::MAX, &urls(), &|_| true)
                .expect("job exists")
                .items;
            assert_eq!(tasks.len(), *accepted, "job {job} lost tasks");
            let counts = self.core.task_counts(job).unwrap().task_counts;
            let recount = |s: TaskState| tasks.iter().filter(|t| t.state == s).count() as i64;
            assert_eq!(counts.active, recount(TaskState::Active), "{job} active");
            assert_eq!(
                counts.running,
                recount(TaskState::Running) + recount(TaskState::Preparing),
                "{job} running"
            );
            assert_eq!(
                counts.completed,
                recount(TaskState::Completed),
                "{job} done"
            );
            completed += recount(TaskState::Completed) as usize;
            for t in &tasks {
                let key = (job.clone(), t.id.clone());
                assert_eq!(
                    t.state == TaskState::Running,
                    self.running.contains(&key),
                    "{key:?} is {} but the agents say otherwise",
                    t.state
                );
            }
        }
        assert_eq!(completed, self.completed.len());
    }
}

fn params() -> Params {
    let scale: usize = std::env::var("OPENBATCH_SIM_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    Params {
        nodes: (2000 / scale as u32).max(4),
        slots: 4,
        tasks: (200_000 / scale).max(400),
        jobs: 20,
    }
}

/// The whole run. Phases: bring the pool up; submit every task in collections of 100 while
/// runs finish (10% fail, retried up to twice), with nodes lost now and then and replaced by
/// the pool; restart from a snapshot plus the journal halfway; drain.
#[test]
fn two_thousand_nodes_two_hundred_thousand_tasks() {
    let seed: u64 = std::env::var("OPENBATCH_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20251);
    let p = params();
    let started = std::time::Instant::now();
    let mut w = World::new(seed);

    let pool: m::PoolCreate = serde_json::from_value(json!({
        "id": "sim", "vmSize": "standard_d4s_v3", "targetDedicatedNodes": p.nodes,
        "taskSlotsPerNode": p.slots, "taskSchedulingPolicy": {"nodeFillType": "pack"},
    }))
    .unwrap();
    w.apply(Input::CreatePool(Box::new(pool)));
    let booting = std::mem::take(&mut w.booting);
    for n in booting {
        w.connect(n, p.slots);
    }
    for j in 0..p.jobs {
        let mut spec = json!({
            "id": format!("job{j}"), "poolInfo": {"poolId": "sim"},
            "priority": (j as i32 % 5) * 100 - 200,
            // The lowest-priority jobs give way to the others (priority preemption).
            "allowTaskPreemption": j % 5 == 0,
            "constraints": {"maxTaskRetryCount": 2},
            "usesTaskDependencies": j % 2 == 0,
        });
        // One job in four has a preparation task (one of them without waitForSuccess).
        if j % 4 == 1 {
            let wait = j != 9;
            spec["jobPreparationTask"] =
                json!({"commandLine": "/bin/true", "waitForSuccess": wait});
            if wait {
                w.wait_for_prep.insert(format!("job{j}"));
            }
        }
        let job: m::JobCreate = serde_json::from_value(spec).unwrap();
        w.apply(Input::CreateJob(Box::new(job)));
        w.accepted.insert(format!("job{j}"), 0);
    }

    let mut submitted = 0usize;
    let mut snapshot: Option<(Vec<u8>, usize)> = None;
    let mut restarted = false;
    let mut lost = 0u32;
    while submitted < p.tasks || !w.runs.is_empty() {
        w.now += Duration::milliseconds(10);
        // Submit a collection now and then, to a random job, with mixed slot needs.
        if submitted < p.tasks && w.rng.gen_bool(0.5) {
            let j = w.rng.gen_range(0..p.jobs);
            let job = format!("job{j}");
            let n = 100.min(p.tasks - submitted);
            let base = w.accepted[&job];
            let with_deps = j % 2 == 0;
            let tasks: Vec<m::TaskCreate> = (0..n)
                .map(|i| {
                    let id = base + i;
                    let slots = match w.rng.gen_range(0..10) {
                        0 => 4,
                        1 | 2 => 2,
                        _ => 1,
                    };
                    // Numeric ids, so that dependency ranges can name them.
                    let mut t = json!({
                        "id": id.to_string(), "commandLine": "/bin/true",
                        "requiredSlots": slots,
                    });
                    // One task in 200 is a multi-instance task of 2 to 16 nodes (never wider
                    // than the pool: that fails fast, which the scenarios cover).
                    if w.rng.gen_bool(0.005) {
                        t["requiredSlots"] = json!(1);
                        t["multiInstanceSettings"] = json!({
                            "numberOfInstances": w.rng.gen_range(2..=16.min(p.nodes)),
                            "coordinationCommandLine": "/bin/true",
                        });
                    }
                    // In jobs with dependencies, one task in five waits for up to three
                    // earlier ones (by id, or a range).
                    if with_deps && id > 0 && w.rng.gen_bool(0.2) {
                        let mut ids: Vec<String> = Vec::new();
                        let mut ranges = Vec::new();
                        for _ in 0..w.rng.gen_range(1..=3) {
                            let d = w.rng.gen_range(id.saturating_sub(500)..id);
                            if w.rng.gen_bool(0.8) {
                                ids.push(d.to_string());
                            } else {
                                let end = (d + 3).min(id - 1);
                                ranges.push(json!({"start": d, "end": end}));
                            }
                        }
                        t["dependsOn"] = json!({"taskIds": ids, "taskIdRanges": ranges});
                    }
                    if with_deps {
                        // A task's own exit conditions decide what its failure means for the
                        // tasks that wait for it: here, satisfied.
                        t["exitConditions"] = json!({"default": {"dependencyAction": "satisfy"}});
                    }
                    serde_json::from_value(t).unwrap()
                })
                .collect();
            for t in &tasks {
                if t.multi_instance_settings.is_some() && w.wait_for_prep.contains(&job) {
                    w.open_gangs
                        .entry(job.clone())
                        .or_default()
                        .insert(t.id.clone());
                }
                if let Some(d) = &t.depends_on {
                    let mut all: Vec<String> = d.task_ids.clone();
                    for r in &d.task_id_ranges {
                        all.extend((r.start..=r.end).map(|x| x.to_string()));
                    }
                    w.depends.insert((job.clone(), t.id.clone()), all);
                }
            }
            let applied = w.apply(Input::AddTasks {
                job: job.clone(),
                tasks,
            });
            match applied.reply {
                openbatch_core::Reply::TaskResults(results) => {
                    assert!(results
                        .iter()
                        .all(|r| r.status == m::TaskAddStatus::Success));
                }
                other => panic!("unexpected reply {other:?}"),
            }
            *w.accepted.get_mut(&job).unwrap() += n;
            w.note_failed_gangs(&job);
            submitted += n;
        }
        // Finish a handful of runs; one in ten fails.
        let finishing = w.rng.gen_range(0..=(w.runs.len() / 8).max(1));
        for _ in 0..finishing {
            if w.runs.is_empty() {
                break;
            }
            // A random run, in O(log n): the first at or after a random id.
            let lo = *w.runs.keys().next().unwrap();
            let hi = *w.runs.keys().next_back().unwrap();
            let pick = w.rng.gen_range(lo..=hi);
            let run = *w.runs.range(pick..).next().unwrap().0;
            // Preparation fails rarely: each failure keeps its job off that node for good.
            let fail = if w.runs[&run].prep { 0.02 } else { 0.1 };
            let code = if w.rng.gen_bool(fail) { 1 } else { 0 };
            if w.runs[&run].killed {
                w.report_kills();
            } else {
                w.finish(run, code);
            }
        }
        w.report_kills();
        // Now and then an agent vanishes: the provider reports the node lost; the pool
        // replaces it, and its runs are requeued.
        if lost < p.nodes / 20 && w.rng.gen_bool(0.02) {
            let k = w.rng.gen_range(0..w.connected.len());
            let node = w.connected.keys().nth(k).unwrap().clone();
            w.drop_agent(&node);
            w.apply(Input::NodeLost {
                node,
                reason: "simulated".into(),
            });
            lost += 1;
        }
        let booting = std::mem::take(&mut w.booting);
        for n in booting {
            w.connect(n, p.slots);
        }
        // A snapshot a quarter of the way, a restart from it plus the journal halfway.
        if snapshot.is_none() && submitted >= p.tasks / 4 {
            snapshot = Some((serde_json::to_vec(&w.core).unwrap(), w.journal.len()));
        }
        if !restarted && submitted >= p.tasks / 2 {
            restarted = true;
            let (bytes, at) = snapshot.take().expect("snapshot taken");
            let mut restored: Core = serde_json::from_slice(&bytes).unwrap();
            restored.rebuild_indexes();
            for (input, now) in &w.journal[at..] {
                restored.apply(input.clone(), *now).expect("replays");
            }
            assert_eq!(
                serde_json::to_value(&restored).unwrap(),
                serde_json::to_value(&w.core).unwrap(),
                "snapshot + journal differs from the live state"
            );
            w.core = restored;
            w.apply(Input::ServerRestarted);
            // Every agent dials in again with what it runs.
            let nodes: Vec<(String, u32)> =
                w.connected.iter().map(|(n, s)| (n.clone(), *s)).collect();
            for (n, s) in nodes {
                w.connect(n, s);
            }
            w.full_check();
        }
        if w.steps % 50_000 < 3 {
            w.full_check();
        }
    }
    w.full_check();
    let total: usize = w.accepted.values().sum();
    assert_eq!(total, p.tasks);
    assert_eq!(w.completed.len(), p.tasks, "every task ended exactly once");
    assert!(restarted);
    assert!(
        w.gangs_after_prep > 0 || p.tasks < 200_000,
        "no gang waited for its job's preparation"
    );
    println!(
        "seed {seed}: {} nodes x {} slots, {} tasks, {} gangs started ({} after their \
         preparation), {} placements, {} inputs, {} nodes lost, {:?}",
        p.nodes,
        p.slots,
        p.tasks,
        w.gangs_started,
        w.gangs_after_prep,
        w.placements,
        w.steps,
        lost,
        started.elapsed()
    );
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The scale benchmark behind `bench/scheduler_scale.sh` (ignored in `cargo test`): queue
/// `OPENBATCH_BENCH_TASKS` tasks (default 1,000,000) on an empty pool and measure the memory per
/// queued task; then bring up `OPENBATCH_BENCH_NODES` nodes (default 10,000) of 4 slots and
/// drain the queue, one completion and one placement per input, measuring scheduling decisions
/// per second. The raw baseline in the same run: the least work a decision can take (a FIFO
/// queue of task numbers and a stack of free slots, no state machine, no journal record).
#[test]
#[ignore = "a benchmark: run through bench/scheduler_scale.sh"]
fn bench_scheduler_scale() {
    let nodes = env_or("OPENBATCH_BENCH_NODES", 10_000) as u32;
    let tasks = env_or("OPENBATCH_BENCH_TASKS", 1_000_000);
    let slots = 4u32;
    let mut w = World::new(7);
    let pool: m::PoolCreate = serde_json::from_value(json!({
        "id": "bench", "vmSize": "standard_d4s_v3", "targetDedicatedNodes": 0,
        "taskSlotsPerNode": slots,
    }))
    .unwrap();
    w.apply(Input::CreatePool(Box::new(pool)));
    let job: m::JobCreate =
        serde_json::from_value(json!({"id": "j", "poolInfo": {"poolId": "bench"}})).unwrap();
    w.apply(Input::CreateJob(Box::new(job)));
    // The journal is the shell's business; keeping it here would count its memory too.
    let rss_before = rss_bytes();
    let submit = std::time::Instant::now();
    for base in (0..tasks).step_by(100) {
        let batch: Vec<m::TaskCreate> = (base..(base + 100).min(tasks))
            .map(|i| {
                serde_json::from_value(json!({"id": format!("t{i}"), "commandLine": "/bin/true"}))
                    .unwrap()
            })
            .collect();
        w.apply(Input::AddTasks {
            job: "j".into(),
            tasks: batch,
        });
        w.journal.clear();
    }
    let submit_secs = submit.elapsed().as_secs_f64();
    let per_task = (rss_bytes().saturating_sub(rss_before)) as f64 / tasks as f64;

    let resize: m::PoolResize =
        serde_json::from_value(json!({"targetDedicatedNodes": nodes})).unwrap();
    w.apply(Input::ResizePool {
        id: "bench".into(),
        resize,
    });
    let booting = std::mem::take(&mut w.booting);
    let drain = std::time::Instant::now();
    for n in booting {
        w.connect(n, slots);
    }
    w.journal.clear();
    while let Some((&run, _)) = w.runs.iter().next() {
        let (input, _) = w.end_run(run, 0);
        w.apply(input);
        if w.journal.len() > 10_000 {
            w.journal.clear();
        }
    }
    let drain_secs = drain.elapsed().as_secs_f64();
    assert_eq!(w.placements as usize, tasks);
    let rate = w.placements as f64 / drain_secs;

    // The baseline: the same decisions with nothing but a queue and a free-slot stack.
    let base = std::time::Instant::now();
    let mut queue: std::collections::VecDeque<u64> = (0..tasks as u64).collect();
    let mut free: Vec<u32> = (0..nodes).flat_map(|n| std::iter::repeat_n(n, 4)).collect();
    let mut running: std::collections::VecDeque<(u64, u32)> = std::collections::VecDeque::new();
    let mut decisions = 0u64;
    loop {
        while let (Some(slot), false) = (free.pop(), queue.is_empty()) {
            let t = queue.pop_front().unwrap();
            running.push_back((t, slot));
            decisions += 1;
        }
        match running.pop_front() {
            Some((_, slot)) => free.push(slot),
            None => break,
        }
    }
    std::hint::black_box(decisions);
    let base_secs = base.elapsed().as_secs_f64();
    let base_rate = decisions as f64 / base_secs;
    println!(
        "{{\"nodes\": {nodes}, \"slots_per_node\": {slots}, \"tasks\": {tasks}, \
         \"submit_secs\": {submit_secs:.2}, \"bytes_per_queued_task\": {per_task:.0}, \
         \"drain_secs\": {drain_secs:.2}, \"decisions_per_sec\": {rate:.0}, \
         \"baseline_decisions_per_sec\": {base_rate:.0}, \"ratio\": {:.1}}}",
        base_rate / rate
    );
}
