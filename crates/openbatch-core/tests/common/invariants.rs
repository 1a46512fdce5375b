//! The invariants `Sim` checks after every input.

use std::collections::{BTreeMap, BTreeSet};

use openbatch_api::models::{self as m, NodeState, TaskCounts, TaskCountsResult, TaskState};
use openbatch_core::RunId;

use super::{urls, Sim};

impl Sim {
    /// What must hold after every input, whatever happened.
    pub fn check(&mut self) {
        self.core.check_indexes();
        let u = urls();
        for p in self.core.list_pools(None, usize::MAX, &u, &|_| true).items {
            let nodes = self
                .core
                .list_nodes(&p.id, None, usize::MAX, &u, &|_| true)
                .unwrap();
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
                    assert!(
                        ok,
                        "node {} runs tasks, but its start task did not succeed",
                        n.id
                    );
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
                    assert!(
                        t.node_info.is_some(),
                        "running task {} has no nodeInfo",
                        t.id
                    );
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
        self.check_schedules();
        // No task executes twice at once on the agents (killed runs are on their way out); the
        // instances of one multi-instance task are one attempt, on distinct nodes. A job
        // preparation or release task runs once per node, not once per job.
        let mut live: BTreeMap<(String, String, String), RunId> = BTreeMap::new();
        let mut instances: BTreeMap<(String, String), BTreeSet<(u32, String)>> = BTreeMap::new();
        for (id, r) in self.runs.iter().filter(|(_, r)| !r.killed) {
            if let Some((index, _)) = r.instance {
                let key = (r.job.clone(), r.task.clone());
                let set = instances.entry(key).or_default();
                assert!(
                    set.iter().all(|(i, n)| *i != index && n != &r.node),
                    "task {}/{}: two live instances share an index or a node",
                    r.job,
                    r.task
                );
                set.insert((index, r.node.clone()));
                continue;
            }
            let per_node = self
                .core
                .job(&r.job, &u)
                .ok()
                .and_then(|j| super::job_task_kind(&j, &r.task))
                .is_some();
            let node = if per_node {
                r.node.clone()
            } else {
                String::new()
            };
            if let Some(other) = live.insert((r.job.clone(), r.task.clone(), node), *id) {
                panic!(
                    "task {}/{} executes twice at once: runs {other} and {id}",
                    r.job, r.task
                );
            }
        }
        // Live instances belong to a running task's current attempt: a requeued or ended gang
        // leaves none behind that is not being killed.
        for (job, task) in instances.keys() {
            assert!(
                !live.contains_key(&(job.clone(), task.clone(), String::new())),
                "task {job}/{task} runs as a gang and alone at once"
            );
            if let Ok(t) = self.core.task(job, task, &urls()) {
                assert_eq!(
                    t.state,
                    TaskState::Running,
                    "task {job}/{task} has live instances but is {}",
                    t.state
                );
            }
        }
    }

    /// No gang partially started: the instances of a multi-instance task start in one input,
    /// all of them (indexes 0..count), each on its own node, on a node that runs nothing else
    /// and whole (its slots all taken).
    pub fn check_gangs_atomic(&self, effects: &[openbatch_core::Effect]) {
        // Per task: (index, count, node) of each instance started.
        type Started = BTreeMap<(String, String), Vec<(u32, u32, String)>>;
        let mut started: Started = BTreeMap::new();
        for fx in effects {
            if let openbatch_core::Effect::RunTask { node, spec } = fx {
                if let Some(i) = &spec.instance {
                    started
                        .entry((spec.job_id.clone(), spec.task_id.clone()))
                        .or_default()
                        .push((i.index, i.count, node.clone()));
                    // Job preparation and release runs take no slot: they may run beside it.
                    let others = self
                        .runs
                        .values()
                        .filter(|r| &r.node == node && r.slots > 0)
                        .count();
                    assert_eq!(
                        others, 0,
                        "instance {} of {}/{} started on node {node}, which still runs {others} run(s)",
                        i.index, spec.job_id, spec.task_id
                    );
                    let slots = self
                        .core
                        .node_placement(node)
                        .and_then(|(pool, ..)| self.core.node(&pool, node, &urls()).ok())
                        .map(|n| n.running_task_slots_count);
                    assert!(slots.is_some(), "instance placed on unknown node {node}");
                }
            }
        }
        for ((job, task), list) in started {
            let count = list[0].1;
            let idx: BTreeSet<u32> = list.iter().map(|(i, _, _)| *i).collect();
            let nodes: BTreeSet<&String> = list.iter().map(|(_, _, n)| n).collect();
            assert!(
                list.iter().all(|(_, c, _)| *c == count)
                    && idx == (0..count).collect::<BTreeSet<u32>>()
                    && nodes.len() == count as usize,
                "gang {job}/{task} partially started: {list:?}"
            );
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
            // Killed runs whose end is not reported yet keep their slots.
            if let Some(killing) = n.get("killing").and_then(|k| k.as_object()) {
                used += killing.values().map(|s| s.as_u64().unwrap()).sum::<u64>();
            }
            assert_eq!(
                n["used_slots"].as_u64(),
                Some(used),
                "node {id}: used_slots"
            );
            assert!(
                used <= n["slots"].as_u64().unwrap(),
                "node {id} over-committed"
            );
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
                        assert!(
                            state == "running" || state == "preparing",
                            "task {jk}/{tk} has a run but is {state}"
                        );
                    }
                    None => assert!(
                        state != "running" && state != "preparing",
                        "task {jk}/{tk} runs without a run"
                    ),
                }
            }
        }
        for (run, (node, jk, tk)) in &holder {
            if let Some(t) = jobs.get(jk).and_then(|j| j["tasks"].get(tk)) {
                // An instance of the task's running gang, or a run being killed (the other
                // instances of a gang that was requeued or ended), is held too.
                let instance = t["gang"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|e| e[0].as_u64() == Some(*run)));
                let killed = self.runs.get(run).is_some_and(|r| r.killed);
                if instance || killed {
                    continue;
                }
                assert_eq!(
                    t["current_run"].as_u64(),
                    Some(*run),
                    "node {node} holds run {run} of {jk}/{tk}, which is not the task's current run"
                );
            }
        }
    }
}

/// The test's own reading of Azure's exit conditions (independent of the core's): does this
/// task, as a client sees it, satisfy the tasks that depend on it? It must be completed, and
/// the exit options that apply to its ending must say `satisfy` (by default: success
/// satisfies, anything else blocks). `last` is the agent's last report for the task, which
/// says whether a pre-processing or file upload error happened; a task ended on request
/// (`TaskEnded`) had neither.
pub fn satisfies_dependents(t: &m::Task, last: Option<&openbatch_core::RunResult>) -> bool {
    use m::DependencyAction::{Block, Satisfy};
    if t.state != TaskState::Completed {
        return false;
    }
    let e = &t.execution_info;
    let success = e.result == Some(m::ExecutionResult::Success);
    let requested = e
        .failure_info
        .as_ref()
        .is_some_and(|f| f.code.as_deref() == Some("TaskEnded"));
    let (pre, upload) = match (requested, last) {
        (false, Some(r)) => (r.pre_processing_error, r.file_upload_error),
        _ => (false, false),
    };
    let default = if success { Satisfy } else { Block };
    let Some(c) = &t.exit_conditions else {
        return default == Satisfy;
    };
    let by_code = e.exit_code.and_then(|code| {
        c.exit_codes
            .iter()
            .find(|x| x.code == code)
            .map(|x| &x.exit_options)
            .or_else(|| {
                c.exit_code_ranges
                    .iter()
                    .find(|x| x.start <= code && code <= x.end)
                    .map(|x| &x.exit_options)
            })
    });
    let options = if pre {
        c.pre_processing_error.as_ref().or(c.default.as_ref())
    } else if by_code.is_some() {
        by_code
    } else if upload {
        c.file_upload_error.as_ref().or(c.default.as_ref())
    } else if success {
        None
    } else {
        c.default.as_ref()
    };
    options.and_then(|o| o.dependency_action).unwrap_or(default) == Satisfy
}

impl Sim {
    /// Whether every dependency of `job`/`task` is satisfied right now, read from the views
    /// alone: each task named in `taskIds` satisfies, and for each integer of each range some
    /// task whose id is that integer (leading zeros ignored) satisfies.
    pub fn dependencies_met(&self, job: &str, task: &str) -> bool {
        let t = self.task_view(job, task);
        let Some(deps) = &t.depends_on else {
            return true;
        };
        let tasks = self.tasks(job);
        let satisfying: Vec<&m::Task> = tasks
            .iter()
            .filter(|x| {
                let key = (job.to_ascii_lowercase(), x.id.to_ascii_lowercase());
                satisfies_dependents(x, self.last_results.get(&key))
            })
            .collect();
        let ids: BTreeSet<String> = satisfying
            .iter()
            .map(|x| x.id.to_ascii_lowercase())
            .collect();
        let numbers: BTreeSet<i64> = satisfying
            .iter()
            .filter(|x| x.id.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|x| {
                let digits = x.id.trim_start_matches('0');
                if digits.is_empty() {
                    Some(0)
                } else {
                    digits.parse().ok()
                }
            })
            .collect();
        deps.task_ids
            .iter()
            .all(|id| ids.contains(&id.to_ascii_lowercase()))
            && deps.task_id_ranges.iter().all(|r| {
                // A range longer than the satisfied numbers cannot be covered by them.
                let len = (r.end - r.start).saturating_add(1);
                len <= numbers.len() as i64 && (r.start..=r.end).all(|n| numbers.contains(&n))
            })
    }

    /// Azure: a dependent task is scheduled only once all its dependencies are satisfied.
    /// Checked for every run the core starts, at the moment it starts.
    pub fn check_dependencies_met(&self, job: &str, task: &str) {
        assert!(
            self.dependencies_met(job, task),
            "task {job}/{task} started before its dependencies were satisfied"
        );
    }
}
