//! Multi-instance tasks (gangs) and the job preparation task together. Azure: "The Job
//! Preparation Task is a special Task run on each Compute Node before any other Task of the
//! Job", which includes every node that runs an instance (primary or subtask) of a
//! multi-instance task; with `waitForSuccess` (default true) the job's tasks do not run on a
//! node until it has succeeded there, and a node where it failed gets none of them; the job
//! release task runs on every node that ran the preparation task.
//!
//! openbatch places a gang on its N nodes at once; the nodes that have not run the job's
//! preparation run it first, in parallel, and the gang waits in `preparing` with its nodes
//! taken until preparation succeeded on all N; then every instance starts in one input. A
//! failure on one node requeues the gang (no retry used) to nodes that may still take it, or
//! fails it at once when the pool no longer has enough of them. `Sim` checks after every step
//! that no gang started partially.

use openbatch_api::models::{
    ExecutionResult, ExplainReason, JobPreparationTaskState, JobState, NodeState, SubtaskState,
    TaskState,
};
use openbatch_core::{Core, Input, Limits, RunId};
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of `nodes` connected nodes with `slots` slots, and job `j` on it with a
/// preparation task (and `job_extra` merged in).
fn setup(nodes: i32, slots: i32, job_extra: Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, slots))));
    sim.connect_all();
    let mut j = json!({
        "id": "j", "poolInfo": {"poolId": "p"},
        "jobPreparationTask": {"commandLine": "/bin/sh -c 'touch $AZ_BATCH_NODE_SHARED_DIR/m'"},
        "jobReleaseTask": {"commandLine": "/bin/true"},
    });
    merge(&mut j, &job_extra);
    sim.ok(Input::CreateJob(Box::new(job(j))));
    sim
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A multi-instance task of `n` nodes.
fn gang(id: &str, n: i32) -> openbatch_api::models::TaskCreate {
    task(json!({
        "id": id, "commandLine": "mpirun app",
        "multiInstanceSettings": {"numberOfInstances": n, "coordinationCommandLine": "start-daemon"},
    }))
}

/// The nodes of the task's gang (primary first), read from the core's state: also while it
/// waits and nothing was sent to the agents.
fn gang_nodes(sim: &Sim, task: &str) -> Vec<String> {
    let snap = serde_json::to_value(&sim.core).unwrap();
    snap["jobs"]["j"]["tasks"][task]["gang"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|e| e[1].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The live instance runs of a task the agents execute: (index, run, node).
fn instances(sim: &Sim, task: &str) -> Vec<(u32, RunId, String)> {
    let mut v: Vec<(u32, RunId, String)> = sim
        .runs
        .iter()
        .filter(|(_, r)| r.job == "j" && r.task == task && !r.killed)
        .filter_map(|(id, r)| r.instance.map(|(i, _)| (i, *id, r.node.clone())))
        .collect();
    v.sort();
    v
}

/// The preparation run executing on `node`.
fn prep_on(sim: &Sim, node: &str) -> RunId {
    sim.runs
        .iter()
        .find(|(_, r)| r.task == "jobpreparation" && r.node == node && !r.killed)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no preparation runs on {node}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The nodes the last input started `task` on.
fn started(sim: &Sim, task: &str) -> Vec<String> {
    sorted(
        sim.last_run_tasks()
            .into_iter()
            .filter(|(_, t)| t == task)
            .map(|(n, _)| n)
            .collect(),
    )
}

/// Runs the agents still execute that the core asked to kill: they report their end.
fn report_kills(sim: &mut Sim) {
    let killed: Vec<RunId> = sim
        .runs
        .iter()
        .filter(|(_, r)| r.killed)
        .map(|(id, _)| *id)
        .collect();
    for run in killed {
        sim.finish(run, 137);
    }
}

fn prep_state(sim: &Sim, node: &str) -> Option<(JobPreparationTaskState, Option<ExecutionResult>)> {
    sim.core
        .list_job_prep_release_status("j", None, usize::MAX, &urls(), &|_| true)
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.node_id.as_deref() == Some(node))
        .and_then(|s| s.job_preparation_task_execution_info)
        .map(|i| (i.state, i.result))
}

/// The gang is placed on all its nodes at once and each runs the preparation task; the gang
/// waits in `preparing` (its nodes taken, nothing sent for it) and starts on all of them, in
/// one input, only when the last preparation succeeds.
#[test]
fn a_gang_waits_for_preparation_on_all_its_nodes_and_starts_after_the_last() {
    let mut sim = setup(4, 2, json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let nodes = gang_nodes(&sim, "mpi");
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        started(&sim, "jobpreparation"),
        sorted(nodes.clone()),
        "preparation on each node of the gang, in parallel"
    );
    assert!(started(&sim, "mpi").is_empty(), "no instance yet");
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    assert_eq!(sim.counts("j").running, 1, "preparing counts as running");
    assert_eq!(
        sim.node_of("j", "mpi"),
        nodes[0],
        "nodeInfo is the primary's"
    );
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert_eq!(subs.len(), 2);
    assert!(subs
        .iter()
        .all(|s| s.state == Some(SubtaskState::Preparing)));
    // Its nodes are taken: a narrow task goes to the fourth node only.
    for n in &nodes {
        assert_eq!(sim.node_view(n).running_task_slots_count, 2, "whole node");
    }
    sim.ok(add("j", simple_tasks("t", 2)));
    let rest: Vec<String> = sim
        .known_nodes()
        .into_iter()
        .filter(|n| !nodes.contains(n))
        .collect();
    assert_eq!(sim.node_of("j", "t1"), rest[0]);
    assert_eq!(sim.node_of("j", "t2"), rest[0]);
    let x = sim.core.explain_task("j", "mpi").unwrap();
    assert_eq!(x.reason, ExplainReason::WaitingForJobPreparation);
    assert_eq!((x.held_nodes, x.prepared_nodes), (Some(3), Some(0)));

    // The preparations end one by one (out of order): nothing starts before the last.
    sim.finish(prep_on(&sim, &nodes[2]), 0);
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    assert!(started(&sim, "mpi").is_empty());
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    let x = sim.core.explain_task("j", "mpi").unwrap();
    assert_eq!(x.prepared_nodes, Some(2));
    assert!(x.message.contains(&nodes[1]), "{}", x.message);
    sim.advance(3);
    sim.finish(prep_on(&sim, &nodes[1]), 0);
    assert_eq!(started(&sim, "mpi"), sorted(nodes.clone()), "all at once");
    let inst = instances(&sim, "mpi");
    assert_eq!(
        inst.iter().map(|i| i.2.clone()).collect::<Vec<_>>(),
        nodes,
        "instance i on the gang's node i"
    );
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.execution_info.start_time, Some(sim.now));
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert!(subs.iter().all(|s| s.state == Some(SubtaskState::Running)
        && s.previous_state == Some(SubtaskState::Preparing)));
    assert_eq!(
        sim.core.explain_task("j", "mpi").unwrap().reason,
        ExplainReason::Running
    );
    sim.finish(inst[0].1, 0);
    report_kills(&mut sim);
    assert_eq!(
        sim.task_view("j", "mpi").execution_info.result,
        Some(ExecutionResult::Success)
    );
}

/// Preparation that already ran on some of the gang's nodes is not run again there; a gang on
/// nodes that are all prepared starts at once.
#[test]
fn preparation_already_done_on_some_nodes_runs_only_on_the_others() {
    let mut sim = setup(3, 1, json!({}));
    sim.ok(add("j", vec![simple_task("t1")]));
    let first = sim.node_of("j", "t1");
    sim.finish(prep_on(&sim, &first), 0);
    sim.finish_task("j", "t1", 0);

    sim.ok(add("j", vec![gang("mpi", 3)]));
    let others = sorted(
        sim.known_nodes()
            .into_iter()
            .filter(|n| *n != first)
            .collect(),
    );
    assert_eq!(
        started(&sim, "jobpreparation"),
        others,
        "not again on {first}"
    );
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    sim.finish(prep_on(&sim, &others[0]), 0);
    assert!(started(&sim, "mpi").is_empty());
    sim.finish(prep_on(&sim, &others[1]), 0);
    assert_eq!(started(&sim, "mpi").len(), 3);
    let inst = instances(&sim, "mpi");
    sim.finish(inst[0].1, 0);
    report_kills(&mut sim);

    // Every node is prepared now: the next gang starts in the input that adds it.
    sim.ok(add("j", vec![gang("again", 3)]));
    assert_eq!(sim.task_state("j", "again"), TaskState::Running);
    assert_eq!(started(&sim, "again").len(), 3);
    assert!(started(&sim, "jobpreparation").is_empty());
}

/// A preparation that fails (after its retries) on one node of a waiting gang: the gang never
/// starts there; all its nodes are let go, it is requeued without using a retry, and placed
/// again on nodes that may take it. The node where preparation failed gets none of the job's
/// tasks; other jobs still use it.
#[test]
fn a_failed_preparation_requeues_the_gang_to_other_nodes() {
    let mut sim = setup(
        4,
        1,
        json!({"jobPreparationTask": {"constraints": {"maxTaskRetryCount": 1}}}),
    );
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let nodes = gang_nodes(&sim, "mpi");
    let spare = sim
        .known_nodes()
        .into_iter()
        .find(|n| !nodes.contains(n))
        .unwrap();
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    sim.finish(prep_on(&sim, &nodes[1]), 1);
    assert_eq!(
        prep_state(&sim, &nodes[1]),
        Some((JobPreparationTaskState::Running, None)),
        "retried first"
    );
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    sim.finish(prep_on(&sim, &nodes[1]), 1);
    assert_eq!(
        prep_state(&sim, &nodes[1]),
        Some((
            JobPreparationTaskState::Completed,
            Some(ExecutionResult::Failure)
        ))
    );
    assert!(started(&sim, "mpi").is_empty(), "no instance ever ran");
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.execution_info.requeue_count, 1);
    assert_eq!(t.execution_info.retry_count, 0);
    // Placed again at once, without the failed node: the prepared node, the node still
    // preparing and the spare one (which starts preparing now).
    let again = gang_nodes(&sim, "mpi");
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    assert_eq!(
        sorted(again.clone()),
        sorted(vec![nodes[0].clone(), nodes[2].clone(), spare.clone()])
    );
    assert_eq!(started(&sim, "jobpreparation"), vec![spare.clone()]);
    assert_eq!(sim.node_view(&nodes[1]).running_task_slots_count, 0);
    assert_eq!(sim.node_state(&nodes[1]), NodeState::Idle);
    sim.finish(prep_on(&sim, &nodes[2]), 0);
    sim.finish(prep_on(&sim, &spare), 0);
    assert_eq!(started(&sim, "mpi"), sorted(again));
    assert!(instances(&sim, "mpi").iter().all(|i| i.2 != nodes[1]));

    // Other jobs still use the excluded node.
    sim.ok(Input::CreateJob(Box::new(simple_job("k", "p"))));
    sim.ok(add("k", vec![simple_task("x")]));
    assert_eq!(sim.node_of("k", "x"), nodes[1]);
}

/// With the failed node excluded, a pool that no longer has enough nodes for the gang fails it
/// at once, as a gang wider than its pool does (`TaskRequiresMoreNodesThanPoolHas`); a gang
/// that still fits runs.
#[test]
fn too_few_eligible_nodes_left_fails_the_gang_fast() {
    let mut sim = setup(2, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    sim.finish(prep_on(&sim, &nodes[1]), 2);
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    let f = t.execution_info.failure_info.expect("failureInfo");
    assert_eq!(f.code.as_deref(), Some("TaskRequiresMoreNodesThanPoolHas"));
    assert!(
        f.message
            .unwrap_or_default()
            .contains("preparation task failed on 1"),
        "the message says why"
    );
    // A new gang of 2 fails when added; one of 1 runs on the node still eligible.
    sim.ok(add("j", vec![gang("two", 2), gang("one", 1)]));
    assert_eq!(sim.task_state("j", "two"), TaskState::Completed);
    assert_eq!(sim.task_state("j", "one"), TaskState::Running);
    assert_eq!(sim.node_of("j", "one"), nodes[0]);
}

/// `waitForSuccess: false`: the gang starts at once, beside the preparation tasks, and even a
/// failed preparation does not keep it off a node.
#[test]
fn without_wait_for_success_the_gang_starts_beside_the_preparation() {
    let mut sim = setup(
        2,
        1,
        json!({"jobPreparationTask": {"waitForSuccess": false}}),
    );
    sim.ok(add("j", vec![gang("mpi", 2)]));
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Running);
    assert_eq!(started(&sim, "jobpreparation").len(), 2);
    assert_eq!(started(&sim, "mpi").len(), 2);
    let nodes = gang_nodes(&sim, "mpi");
    sim.finish(prep_on(&sim, &nodes[0]), 1);
    sim.finish(prep_on(&sim, &nodes[1]), 1);
    let inst = instances(&sim, "mpi");
    sim.finish(inst[0].1, 0);
    report_kills(&mut sim);
    sim.ok(add("j", vec![gang("again", 2)]));
    assert_eq!(sim.task_state("j", "again"), TaskState::Running);
    assert!(
        started(&sim, "jobpreparation").is_empty(),
        "ran once per node"
    );
}

/// A node of a waiting gang lost (or preempted) before the gang started: the whole gang is
/// requeued (no retry used) and placed again; nodes already prepared do not prepare again.
#[test]
fn a_node_lost_while_the_gang_waits_requeues_the_whole_gang() {
    let mut sim = setup(3, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    let spare = sim
        .known_nodes()
        .into_iter()
        .find(|n| !nodes.contains(n))
        .unwrap();
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    sim.lose(&nodes[1]);
    let t = sim.task_view("j", "mpi");
    assert_eq!(
        (t.execution_info.requeue_count, t.execution_info.retry_count),
        (1, 0)
    );
    assert_eq!(t.state, TaskState::Preparing, "placed again at once");
    assert_eq!(
        sorted(gang_nodes(&sim, "mpi")),
        sorted(vec![nodes[0].clone(), spare.clone()])
    );
    assert_eq!(started(&sim, "jobpreparation"), vec![spare.clone()]);
    assert!(sim.last_kills().is_empty(), "nothing was sent to kill");
    sim.finish(prep_on(&sim, &spare), 0);
    assert_eq!(started(&sim, "mpi").len(), 2);
}

/// A node of a waiting gang rebooted: the gang is requeued (no retry used) and placed again;
/// the rebooted node, back, runs preparation again before the job's tasks. An agent that
/// reconnects still running its preparation keeps the gang waiting; one that restarted without
/// it sends the gang back to the queue.
#[test]
fn a_reboot_or_an_agent_restart_while_the_gang_waits() {
    let mut sim = setup(2, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    // Away and back with the preparation still running: nothing changes.
    sim.disconnect(&nodes[0]);
    sim.connect(&nodes[0]);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    assert_eq!(sim.task_view("j", "mpi").execution_info.requeue_count, 0);
    // Back without it (the agent restarted): the gang is requeued, and placed again as soon
    // as the node runs preparation again.
    sim.disconnect(&nodes[0]);
    sim.hello(&nodes[0], Vec::new(), Vec::new());
    assert_eq!(sim.task_view("j", "mpi").execution_info.requeue_count, 1);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    assert_eq!(started(&sim, "jobpreparation"), vec![nodes[0].clone()]);
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    // A reboot of the other node: requeued again; its preparation runs again when it is back.
    sim.ok(Input::RestartNode {
        pool: "p".into(),
        node: nodes[1].clone(),
        option: None,
        reimage: false,
    });
    let t = sim.task_view("j", "mpi");
    assert_eq!(
        (t.execution_info.requeue_count, t.execution_info.retry_count),
        (2, 0)
    );
    assert_eq!(t.state, TaskState::Active, "one node left: it waits");
    sim.connect(&nodes[1]);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Preparing);
    assert_eq!(started(&sim, "jobpreparation"), vec![nodes[1].clone()]);
    sim.finish(prep_on(&sim, &nodes[1]), 0);
    assert_eq!(started(&sim, "mpi").len(), 2);
}

/// A spot node of a waiting gang preempted: the gang goes back to the queue at once (it never
/// started) and runs on nodes that are still there.
#[test]
fn a_node_preempted_while_the_gang_waits_requeues_it() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetLowPriorityNodes": 3,
    })))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "j", "poolInfo": {"poolId": "p"},
        "jobPreparationTask": {"commandLine": "/bin/true"},
    })))));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    let spare = sim
        .known_nodes()
        .into_iter()
        .find(|n| !nodes.contains(n))
        .unwrap();
    sim.ok(Input::PreemptNode {
        pool: "p".into(),
        node: nodes[1].clone(),
        grace: std::time::Duration::from_secs(30),
        recovery: std::time::Duration::from_secs(60),
    });
    let t = sim.task_view("j", "mpi");
    assert_eq!(
        (t.execution_info.requeue_count, t.execution_info.retry_count),
        (1, 0)
    );
    assert_eq!(t.state, TaskState::Preparing);
    assert_eq!(
        sorted(gang_nodes(&sim, "mpi")),
        sorted(vec![nodes[0].clone(), spare.clone()])
    );
    sim.finish(prep_on(&sim, &nodes[0]), 0);
    sim.finish(prep_on(&sim, &spare), 0);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Running);
    assert!(instances(&sim, "mpi").iter().all(|i| i.2 != nodes[1]));
}

/// Terminating a waiting gang (or its job) ends it at once: nothing was sent for its
/// instances, so the core answers the kills itself and frees the nodes; the preparations
/// still running are the agents' to finish.
#[test]
fn terminating_a_waiting_gang_frees_its_nodes_at_once() {
    let mut sim = setup(2, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "mpi".into(),
    });
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    for n in &nodes {
        assert_eq!(sim.node_view(n).running_task_slots_count, 0);
    }
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert!(subs
        .iter()
        .all(|s| s.state == Some(SubtaskState::Completed)));
    // The preparations go on and count.
    for n in &nodes {
        sim.finish(prep_on(&sim, n), 0);
    }
    sim.ok(add("j", vec![gang("next", 2)]));
    assert_eq!(sim.task_state("j", "next"), TaskState::Running);

    // A job terminated while its gang waits: released on both nodes once the preparations end.
    let mut sim = setup(2, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let nodes = gang_nodes(&sim, "mpi");
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: None,
    });
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Completed);
    report_kills(&mut sim);
    assert_eq!(
        started(&sim, "jobrelease"),
        sorted(nodes.clone()),
        "release on both nodes once their preparation ended"
    );
    for n in &nodes {
        let run = sim
            .runs
            .iter()
            .find(|(_, r)| r.task == "jobrelease" && &r.node == n)
            .map(|(id, _)| *id)
            .unwrap();
        sim.finish(run, 0);
    }
    assert_eq!(sim.job_view("j").state, JobState::Completed);
}

/// The job release task runs on every node that ran the preparation task, those that ran it
/// for a gang's subtasks included, and the job completes when they have all ended.
#[test]
fn release_runs_on_every_node_that_prepared_for_the_gang() {
    let mut sim = setup(4, 1, json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let nodes = gang_nodes(&sim, "mpi");
    for n in &nodes {
        sim.finish(prep_on(&sim, n), 0);
    }
    let inst = instances(&sim, "mpi");
    assert_eq!(inst.len(), 3);
    sim.finish(inst[1].1, 0);
    sim.finish(inst[0].1, 0);
    report_kills(&mut sim);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Completed);
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: None,
    });
    assert_eq!(started(&sim, "jobrelease"), sorted(nodes.clone()));
    let unused = sim
        .known_nodes()
        .into_iter()
        .find(|n| !nodes.contains(n))
        .unwrap();
    assert!(prep_state(&sim, &unused).is_none());
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(sim.job_view("j").state, JobState::Terminating);
        let run = sim
            .runs
            .iter()
            .find(|(_, r)| r.task == "jobrelease" && &r.node == n)
            .map(|(id, _)| *id)
            .unwrap();
        sim.finish(run, i as i32);
    }
    assert_eq!(sim.job_view("j").state, JobState::Completed);
}

/// A workload where gangs wait for preparation, one preparation fails, a node is lost during a
/// wait, and gangs run and end.
fn busy(sim: &mut Sim) {
    sim.ok(add("j", vec![gang("g1", 2), gang("g2", 3)]));
    sim.ok(add("j", simple_tasks("n", 3)));
    let nodes = gang_nodes(sim, "g1");
    sim.advance(1);
    sim.finish(prep_on(sim, &nodes[0]), 0);
    sim.advance(1);
    sim.finish(prep_on(sim, &nodes[1]), 3);
    sim.advance(1);
    if let Some(n) = gang_nodes(sim, "g1").get(1).cloned() {
        sim.lose(&n);
        sim.connect_all();
    }
    for step in 0..40 {
        sim.advance(1);
        report_kills(sim);
        let Some((&run, _)) = sim.runs.iter().find(|(_, r)| !r.killed) else {
            break;
        };
        sim.finish(run, if step == 5 { 1 } else { 0 });
    }
}

/// The journal replays to the same state, and a snapshot taken at any point (mid-wait
/// included: the gang, its held-back instances and the preparations are state) continues to
/// the same place.
#[test]
fn journal_and_snapshots_carry_a_waiting_gang() {
    let mut sim = setup(5, 1, json!({}));
    busy(&mut sim);
    let entries = sim.entries();
    let want = serde_json::to_value(&sim.core).unwrap();
    let want_views = render_all(&sim.core);
    let mut all = Core::new(Limits::default());
    replay_into(&mut all, &entries);
    assert_eq!(serde_json::to_value(&all).unwrap(), want);
    let mut mid_wait = 0;
    for k in 0..=entries.len() {
        let mut core = Core::new(Limits::default());
        replay_into(&mut core, &entries[..k]);
        let waiting = core
            .task("j", "g1", &urls())
            .is_ok_and(|t| t.state == TaskState::Preparing)
            || core
                .task("j", "g2", &urls())
                .is_ok_and(|t| t.state == TaskState::Preparing);
        mid_wait += usize::from(waiting);
        let mut restored = snapshot(&core);
        restored.check_indexes();
        replay_into(&mut restored, &entries[k..]);
        assert_eq!(
            render_all(&restored),
            want_views,
            "continued from entry {k}"
        );
        assert_eq!(
            serde_json::to_value(&restored).unwrap(),
            want,
            "continued from entry {k}"
        );
    }
    assert!(
        mid_wait > 0,
        "some snapshots were taken while a gang waited"
    );
}
