//! Gang placement of multi-instance tasks (`multiInstanceSettings.numberOfInstances`): all
//! nodes at once or none, no deadlock between two gangs, no starvation of a wide gang by narrow
//! tasks, the whole gang requeued when one of its nodes goes, fail fast for a gang wider than
//! its pool, and a replay that places exactly as the live core did. `Sim` checks after every
//! step that no gang started partially and that no instance outlives its attempt.

use openbatch_api::models::{ExplainReason, TaskAddStatus, TaskState};
use openbatch_core::{Core, Input, Limits, Reply, RunId};
use serde_json::json;

use crate::common::*;

/// A pool `p` of connected nodes, and job `j` on it (with `job_extra` merged into the job).
fn setup(sim: &mut Sim, nodes: i32, slots: i32, fill: &str, job_extra: serde_json::Value) {
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": nodes,
        "taskSlotsPerNode": slots, "taskSchedulingPolicy": {"nodeFillType": fill},
    })))));
    sim.connect_all();
    let mut j = json!({"id": "j", "poolInfo": {"poolId": "p"}});
    if let (Some(o), Some(extra)) = (j.as_object_mut(), job_extra.as_object()) {
        o.extend(extra.clone());
    }
    sim.ok(Input::CreateJob(Box::new(job(j))));
}

/// A multi-instance task of `n` nodes.
fn gang(id: &str, n: i32) -> openbatch_api::models::TaskCreate {
    task(json!({
        "id": id, "commandLine": "mpirun app",
        "multiInstanceSettings": {"numberOfInstances": n, "coordinationCommandLine": "start-daemon"},
    }))
}

/// The live (not killed) instance runs of a task, by index: (index, run, node).
fn instances(sim: &Sim, job: &str, task: &str) -> Vec<(u32, RunId, String)> {
    let mut v: Vec<(u32, RunId, String)> = sim
        .runs
        .iter()
        .filter(|(_, r)| r.job == job && r.task == task && !r.killed)
        .filter_map(|(id, r)| r.instance.map(|(i, _)| (i, *id, r.node.clone())))
        .collect();
    v.sort();
    v
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

fn explain(sim: &Sim, task: &str) -> openbatch_api::models::TaskExplanation {
    sim.core.explain_task("j", task).expect("task exists")
}

/// Azure: a multi-instance task runs one primary and N-1 subtasks, one per node. openbatch
/// starts all N in one input, each on a whole node (all of its slots), the primary first; the
/// task's nodeInfo is the primary's node. The primary's end ends the task and stops the others.
#[test]
fn a_gang_starts_on_all_its_nodes_at_once() {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 2, "spread", json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let started = sim.last_run_tasks();
    assert_eq!(started.len(), 3, "all three instances in one input");
    let inst = instances(&sim, "j", "mpi");
    assert_eq!(inst.iter().map(|i| i.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Running);
    assert_eq!(
        sim.node_of("j", "mpi"),
        inst[0].2,
        "nodeInfo is the primary's"
    );
    assert_eq!(sim.counts("j").running, 1, "a gang is one running task");
    for (_, _, node) in &inst {
        assert_eq!(
            sim.node_view(node).running_task_slots_count,
            2,
            "whole node"
        );
    }
    // The fourth node is the only one left for anything else.
    sim.ok(add("j", simple_tasks("t", 3)));
    assert_eq!(sim.last_run_tasks().len(), 2);
    assert!(sim
        .last_run_tasks()
        .iter()
        .all(|(n, _)| inst.iter().all(|i| &i.2 != n)));

    // A subtask that ends well frees its node; the primary's end completes the task and stops
    // the subtask still running.
    sim.finish(inst[1].1, 0);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Running);
    assert_eq!(sim.last_run_tasks().len(), 1, "t3 takes the freed node");
    sim.finish(inst[0].1, 0);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Completed);
    assert_eq!(sim.last_kills(), vec![inst[2].1]);
    assert_eq!(
        sim.task_view("j", "mpi").execution_info.result,
        Some(openbatch_api::models::ExecutionResult::Success)
    );
    // The killed subtask's slots stay taken until its agent reports the kill.
    assert_eq!(sim.node_view(&inst[2].2).running_task_slots_count, 2);
    report_kills(&mut sim);
    assert_eq!(sim.node_view(&inst[2].2).running_task_slots_count, 0);
}

/// All or nothing: with one node busy, a gang of the pool's size holds the free nodes (and the
/// busy one once it drains), nothing new starts on them, and it starts on all of them at once.
#[test]
fn a_gang_holds_nodes_as_they_drain_and_starts_on_all_at_once() {
    let mut sim = Sim::new();
    setup(&mut sim, 3, 1, "spread", json!({}));
    sim.ok(add("j", simple_tasks("a", 2)));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    assert!(sim.last_run_tasks().is_empty(), "no partial start");
    let x = explain(&sim, "mpi");
    assert_eq!(x.reason, ExplainReason::WaitingForGangReservation);
    assert_eq!(
        (x.instances, x.held_nodes, x.held_nodes_empty),
        (Some(3), Some(1), Some(1))
    );
    assert!(
        x.message.contains("waiting for a gang reservation"),
        "{}",
        x.message
    );

    // a1 ends: its node is held too, and a later task does not get it.
    sim.finish_task("j", "a1", 0);
    assert!(sim.last_run_tasks().is_empty());
    sim.ok(add("j", vec![simple_task("late")]));
    assert!(
        sim.last_run_tasks().is_empty(),
        "held nodes take no new work"
    );
    assert_eq!(explain(&sim, "mpi").held_nodes, Some(2));
    assert_eq!(explain(&sim, "late").reason, ExplainReason::WaitingForSlot);

    sim.finish_task("j", "a2", 0);
    assert_eq!(
        sim.last_run_tasks().len(),
        3,
        "the gang starts on all three at once"
    );
    assert_eq!(instances(&sim, "j", "mpi").len(), 3);
    assert_eq!(sim.task_state("j", "late"), TaskState::Active);
    sim.finish(instances(&sim, "j", "mpi")[0].1, 0);
    report_kills(&mut sim);
    assert_eq!(sim.task_state("j", "late"), TaskState::Running);
}

/// No deadlock: two gangs that together need more nodes than the pool has never each hold
/// part of it. One holds nodes and runs; the other waits, then runs.
#[test]
fn two_gangs_that_together_exceed_the_pool_do_not_deadlock() {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 1, "pack", json!({}));
    sim.ok(add("j", simple_tasks("a", 2)));
    sim.ok(add("j", vec![gang("g1", 3), gang("g2", 3)]));
    assert!(sim.last_run_tasks().is_empty());
    assert_eq!(
        explain(&sim, "g1").reason,
        ExplainReason::WaitingForGangReservation
    );
    let x = explain(&sim, "g2");
    assert_eq!(x.reason, ExplainReason::WaitingForNodes);
    assert!(x.message.contains("g1"), "{}", x.message);

    sim.finish_task("j", "a1", 0);
    assert_eq!(sim.last_run_tasks().len(), 3, "g1 starts");
    assert_eq!(instances(&sim, "j", "g1").len(), 3);
    assert!(instances(&sim, "j", "g2").is_empty());
    sim.finish_task("j", "a2", 0);
    assert!(
        sim.last_run_tasks().is_empty(),
        "g2 never starts on a part of the pool"
    );

    let primary = instances(&sim, "j", "g1")[0].1;
    sim.finish(primary, 0);
    assert!(
        instances(&sim, "j", "g2").is_empty(),
        "g1's instances still stop"
    );
    report_kills(&mut sim);
    assert_eq!(instances(&sim, "j", "g2").len(), 3, "then g2 starts");
    let primary = instances(&sim, "j", "g2")[0].1;
    sim.finish(primary, 0);
    report_kills(&mut sim);
    assert_eq!(sim.counts("j").succeeded, 4);
}

/// No starvation: a gang as wide as the pool behind a stream of narrow tasks that keeps every
/// node busy still starts, within as many completions as there were narrow runs in flight.
fn not_starved(fill: &str) -> usize {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 2, fill, json!({}));
    sim.ok(add("j", simple_tasks("n", 8)));
    sim.ok(add("j", vec![gang("wide", 4)]));
    for step in 1..=8 {
        // The oldest narrow run ends, and a new narrow task arrives.
        let oldest = sim
            .runs
            .iter()
            .filter(|(_, r)| r.instance.is_none())
            .map(|(id, _)| *id)
            .next()
            .expect("narrow runs left");
        sim.finish(oldest, 0);
        if !instances(&sim, "j", "wide").is_empty() {
            assert_eq!(instances(&sim, "j", "wide").len(), 4);
            return step;
        }
        sim.ok(add("j", vec![simple_task(&format!("n{}", 8 + step))]));
    }
    panic!("the gang was starved under {fill}");
}

#[test]
fn a_wide_gang_is_not_starved_by_a_stream_of_narrow_tasks() {
    // Pack and spread fill nodes differently; a gang's placement does not depend on it.
    assert_eq!(not_starved("pack"), 8);
    assert_eq!(not_starved("spread"), 8);
}

/// Azure: a multi-instance task whose node is lost is requeued as a whole (requeueCount, not a
/// retry): its other instances are stopped, and it starts again on a full set of nodes.
#[test]
fn losing_a_node_of_a_running_gang_requeues_the_whole_gang() {
    for lose_primary in [false, true] {
        let mut sim = Sim::new();
        setup(&mut sim, 3, 1, "spread", json!({}));
        sim.ok(add("j", vec![gang("mpi", 3)]));
        let inst = instances(&sim, "j", "mpi");
        let lost = if lose_primary { &inst[0] } else { &inst[2] };
        sim.lose(&lost.2);
        let mut kills = sim.last_kills();
        kills.sort();
        let want: Vec<RunId> = inst.iter().filter(|i| i.1 != lost.1).map(|i| i.1).collect();
        assert_eq!(kills, want, "every other instance is stopped");
        assert_eq!(sim.task_state("j", "mpi"), TaskState::Active);
        let e = sim.task_view("j", "mpi").execution_info;
        assert_eq!((e.requeue_count, e.retry_count), (1, 0));
        assert!(
            instances(&sim, "j", "mpi").is_empty(),
            "nothing partial keeps running"
        );
        // The replacement node comes up and the kills are reported: the gang starts again.
        sim.connect_all();
        assert!(
            instances(&sim, "j", "mpi").is_empty(),
            "not before the kills are reported"
        );
        report_kills(&mut sim);
        assert_eq!(instances(&sim, "j", "mpi").len(), 3);
        let primary = instances(&sim, "j", "mpi")[0].1;
        sim.finish(primary, 0);
        report_kills(&mut sim);
        assert_eq!(sim.counts("j").succeeded, 1);
    }
}

/// Azure: if a subtask fails, the whole multi-instance task fails, is terminated and retried up
/// to its retry limit.
#[test]
fn a_failed_subtask_fails_the_attempt_which_is_retried() {
    let mut sim = Sim::new();
    setup(
        &mut sim,
        3,
        1,
        "spread",
        json!({"constraints": {"maxTaskRetryCount": 1}}),
    );
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let inst = instances(&sim, "j", "mpi");
    sim.finish(inst[1].1, 3);
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, vec![inst[0].1, inst[2].1]);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Active);
    assert_eq!(sim.task_view("j", "mpi").execution_info.retry_count, 1);
    report_kills(&mut sim);
    let inst = instances(&sim, "j", "mpi");
    assert_eq!(inst.len(), 3, "retried as a whole");
    // The second failure, of the primary this time, is final.
    sim.finish(inst[0].1, 2);
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.exit_code, Some(2));
    report_kills(&mut sim);
    assert!(sim
        .nodes("p")
        .iter()
        .all(|n| n.running_task_slots_count == 0));
}

/// Terminating or deleting a running multi-instance task stops every instance.
#[test]
fn terminate_and_delete_stop_every_instance() {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 1, "spread", json!({}));
    sim.ok(add("j", vec![gang("a", 2), gang("b", 2)]));
    let a = instances(&sim, "j", "a");
    let b = instances(&sim, "j", "b");
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "a".into(),
    });
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, a.iter().map(|i| i.1).collect::<Vec<_>>());
    report_kills(&mut sim);
    let t = sim.task_view("j", "a");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(
        t.execution_info
            .failure_info
            .and_then(|f| f.code)
            .as_deref(),
        Some("TaskEnded")
    );
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "b".into(),
    });
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, b.iter().map(|i| i.1).collect::<Vec<_>>());
    report_kills(&mut sim);
    assert!(sim
        .nodes("p")
        .iter()
        .all(|n| n.running_task_slots_count == 0));
}

/// A gang wider than its pool can ever be (its target, without autoscale) fails at once, with
/// a failureInfo that says so, instead of waiting forever. One that the pool could hold waits.
#[test]
fn a_gang_wider_than_the_pool_fails_fast() {
    let mut sim = Sim::new();
    setup(&mut sim, 2, 1, "spread", json!({}));
    sim.ok(add("j", vec![gang("wide", 3), gang("fits", 2)]));
    let t = sim.task_view("j", "wide");
    assert_eq!(t.state, TaskState::Completed);
    let f = t.execution_info.failure_info.expect("failureInfo");
    assert_eq!(f.code.as_deref(), Some("TaskRequiresMoreNodesThanPoolHas"));
    assert!(f.message.unwrap_or_default().contains("requires 3 nodes"));
    assert_eq!(sim.task_state("j", "fits"), TaskState::Running);

    // A pool shrunk below a gang holding nodes: the gang fails rather than hold them forever.
    let mut sim = Sim::new();
    setup(&mut sim, 3, 1, "spread", json!({}));
    sim.ok(add("j", vec![simple_task("busy"), gang("mpi", 3)]));
    assert_eq!(explain(&sim, "mpi").held_nodes, Some(2));
    sim.ok(Input::ResizePool {
        id: "p".into(),
        resize: serde_json::from_value(
            json!({"targetDedicatedNodes": 2, "nodeDeallocationOption": "taskcompletion"}),
        )
        .unwrap(),
    });
    let idle: Vec<String> = sim.last_removals();
    for n in idle {
        sim.removed(&n);
    }
    sim.finish_task("j", "busy", 0);
    // Failed in the input whose placement pass found it too wide, not in a later one.
    let t = sim.task_view("j", "mpi");
    assert_eq!(t.state, TaskState::Completed, "{:?}", explain(&sim, "mpi"));
    for n in sim.last_removals() {
        sim.removed(&n);
    }
    assert_eq!(
        t.execution_info
            .failure_info
            .and_then(|f| f.code)
            .as_deref(),
        Some("TaskRequiresMoreNodesThanPoolHas")
    );
    sim.ok(add("j", vec![simple_task("after")]));
    assert_eq!(
        sim.task_state("j", "after"),
        TaskState::Running,
        "nothing is held"
    );
}

/// Azure's checks at add: `numberOfInstances` is at least 1, and a multi-instance task's
/// `requiredSlots` is 1. A refused task changes nothing.
#[test]
fn bad_multi_instance_settings_are_refused_per_task() {
    let mut sim = Sim::new();
    setup(&mut sim, 2, 2, "spread", json!({}));
    let bad = vec![
        gang("zero", 0),
        task(json!({
            "id": "slots", "commandLine": "x", "requiredSlots": 2,
            "multiInstanceSettings": {"numberOfInstances": 2, "coordinationCommandLine": "c"},
        })),
        gang("ok", 1),
    ];
    let Reply::TaskResults(results) = sim.ok(add("j", bad)).reply else {
        panic!("task results expected");
    };
    let status: Vec<TaskAddStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        status,
        vec![
            TaskAddStatus::ClientError,
            TaskAddStatus::ClientError,
            TaskAddStatus::Success
        ]
    );
    assert_eq!(sim.tasks("j").len(), 1);
    // One instance is still a gang: it takes a whole node.
    let inst = instances(&sim, "j", "ok");
    assert_eq!(inst.len(), 1);
    assert_eq!(sim.node_view(&inst[0].2).running_task_slots_count, 2);
}

/// A workload of gangs, narrow tasks, a lost node and a retried subtask, for the replay tests.
fn busy(sim: &mut Sim) {
    setup(
        sim,
        5,
        2,
        "pack",
        json!({"constraints": {"maxTaskRetryCount": 2}}),
    );
    sim.ok(add("j", simple_tasks("n", 6)));
    sim.ok(add("j", vec![gang("g1", 4), gang("g2", 2), gang("g3", 5)]));
    sim.ok(add("j", simple_tasks("m", 4)));
    for step in 0..60 {
        sim.advance(1);
        if step == 20 {
            if let Some(i) = instances(sim, "j", "g1").get(1).cloned() {
                sim.lose(&i.2);
                sim.connect_all();
            }
        }
        report_kills(sim);
        let Some((&run, r)) = sim.runs.iter().find(|(_, r)| !r.killed) else {
            break;
        };
        let code = if r.instance == Some((1, 2)) && step < 30 {
            1
        } else {
            0
        };
        sim.finish(run, code);
    }
    sim.connect_all();
}

/// Replaying the journal, or a snapshot plus the rest of it, places every gang exactly as the
/// live core did (the reservation and the instances are state; the indexes are rebuilt).
#[test]
fn a_journal_with_gangs_replays_and_snapshots_to_the_same_state() {
    let mut sim = Sim::new();
    busy(&mut sim);
    assert!(sim.counts("j").completed >= 10, "{:?}", sim.counts("j"));
    let entries = sim.entries();
    let want = serde_json::to_value(&sim.core).unwrap();
    let want_views = render_all(&sim.core);
    let mut all = Core::new(Limits::default());
    replay_into(&mut all, &entries);
    assert_eq!(serde_json::to_value(&all).unwrap(), want);
    for k in (0..=entries.len()).step_by(4) {
        let mut core = Core::new(Limits::default());
        replay_into(&mut core, &entries[..k]);
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
}

/// The nodes the pool holds for a gang, read from the core's state.
fn held(sim: &Sim) -> Vec<String> {
    let snap = serde_json::to_value(&sim.core).unwrap();
    snap["pools"]["p"]["reservation"]["gang"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A held node that stops taking work (scheduling disabled) is let go, and another node is
/// held in its place; the gang never starts on it.
#[test]
fn a_held_node_taken_offline_is_replaced() {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 1, "spread", json!({}));
    sim.ok(add("j", simple_tasks("a", 2)));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let first = held(&sim);
    assert_eq!(first.len(), 2);
    sim.ok(Input::SetNodeScheduling {
        pool: "p".into(),
        node: first[0].clone(),
        enabled: false,
        option: None,
    });
    sim.finish_task("j", "a1", 0);
    assert!(
        !held(&sim).contains(&first[0]),
        "the offline node is let go"
    );
    sim.finish_task("j", "a2", 0);
    let inst = instances(&sim, "j", "mpi");
    assert_eq!(inst.len(), 3);
    assert!(inst.iter().all(|i| i.2 != first[0]));
}

/// Disabling the job with `requeue` stops every instance and puts the task back; enabling it
/// starts the gang again, whole.
#[test]
fn disabling_the_job_requeues_a_running_gang() {
    let mut sim = Sim::new();
    setup(&mut sim, 3, 1, "spread", json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let inst = instances(&sim, "j", "mpi");
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: openbatch_api::models::DisableJobOption::Requeue,
    });
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, inst.iter().map(|i| i.1).collect::<Vec<_>>());
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Active);
    report_kills(&mut sim);
    assert!(
        instances(&sim, "j", "mpi").is_empty(),
        "a disabled job starts nothing"
    );
    sim.ok(Input::EnableJob { id: "j".into() });
    assert_eq!(instances(&sim, "j", "mpi").len(), 3);
}

/// A spot node of a running gang is preempted: its instance ends during the notice, and the
/// whole gang is requeued (not retried) and starts again on nodes that are still there.
#[test]
fn preempting_a_node_of_a_running_gang_requeues_the_whole_gang() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetLowPriorityNodes": 3,
    })))));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.connect_all();
    sim.ok(add("j", vec![gang("mpi", 2)]));
    let inst = instances(&sim, "j", "mpi");
    sim.ok(Input::PreemptNode {
        pool: "p".into(),
        node: inst[1].2.clone(),
        grace: std::time::Duration::from_secs(30),
        recovery: std::time::Duration::from_secs(60),
    });
    sim.finish(inst[1].1, 143);
    assert_eq!(sim.last_kills(), vec![inst[0].1]);
    let e = sim.task_view("j", "mpi").execution_info;
    assert_eq!((e.requeue_count, e.retry_count), (1, 0));
    report_kills(&mut sim);
    let again = instances(&sim, "j", "mpi");
    assert_eq!(again.len(), 2);
    assert!(
        again.iter().all(|i| i.2 != inst[1].2),
        "not on the preempted node"
    );
}

/// A gang counts as one task against the job's `maxParallelTasks`.
#[test]
fn a_gang_is_one_task_for_max_parallel_tasks() {
    let mut sim = Sim::new();
    setup(&mut sim, 4, 1, "spread", json!({"maxParallelTasks": 1}));
    sim.ok(add("j", vec![gang("mpi", 3), simple_task("t")]));
    assert_eq!(instances(&sim, "j", "mpi").len(), 3);
    assert_eq!(
        explain(&sim, "t").reason,
        ExplainReason::JobAtMaxParallelTasks
    );
    let primary = instances(&sim, "j", "mpi")[0].1;
    sim.finish(primary, 0);
    assert_eq!(sim.task_state("j", "t"), TaskState::Running);
    report_kills(&mut sim);
}

/// While a single-node task holds the pool's reservation, a gang waits for it and says so.
#[test]
fn a_gang_behind_another_reservation_explains_what_it_waits_for() {
    let mut sim = Sim::new();
    setup(&mut sim, 2, 2, "spread", json!({}));
    sim.ok(add("j", simple_tasks("a", 3)));
    sim.ok(add(
        "j",
        vec![
            task(json!({"id": "big", "commandLine": "x", "requiredSlots": 2})),
            gang("mpi", 2),
        ],
    ));
    let x = explain(&sim, "mpi");
    assert_eq!(x.reason, ExplainReason::WaitingForNodes);
    assert!(x.message.contains("big"), "{}", x.message);
    assert_eq!(x.instances, Some(2));
    sim.finish_all(0);
    report_kills(&mut sim);
    sim.finish_all(0);
    report_kills(&mut sim);
    sim.finish_all(0);
    assert_eq!(sim.counts("j").succeeded, 5);
}

/// A gang holding nodes does not start past its job's `maxParallelTasks`: when a task of its
/// job took the last allowed run while the held nodes drained, they stay held until that ends.
#[test]
fn a_held_gang_waits_for_its_jobs_max_parallel_tasks() {
    let mut sim = Sim::new();
    setup(&mut sim, 3, 2, "spread", json!({"maxParallelTasks": 1}));
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "k", "poolInfo": {"poolId": "p"}}),
    ))));
    sim.ok(add("k", simple_tasks("b", 5)));
    sim.ok(add("j", vec![gang("mpi", 2), simple_task("t")]));
    let first = held(&sim);
    assert_eq!(first.len(), 1);
    // Free a slot on another node: it is held too (two nodes, both still busy).
    let other = sim
        .nodes("p")
        .into_iter()
        .map(|n| n.id)
        .find(|n| !first.contains(n))
        .unwrap();
    let run = sim.runs_on(&other)[0];
    sim.finish(run, 0);
    let both = held(&sim);
    assert_eq!(both.len(), 2);
    // A slot frees on the third node: `t` takes it, and job j is at its maxParallelTasks.
    let third = sim
        .nodes("p")
        .into_iter()
        .map(|n| n.id)
        .find(|n| !both.contains(n))
        .unwrap();
    let run = sim.runs_on(&third)[0];
    sim.finish(run, 0);
    assert_eq!(sim.task_state("j", "t"), TaskState::Running);
    // The held nodes drain; the gang still waits for `t`.
    for n in &both {
        for run in sim.runs_on(n) {
            sim.finish(run, 0);
        }
    }
    assert!(
        instances(&sim, "j", "mpi").is_empty(),
        "maxParallelTasks is 1"
    );
    assert_eq!(sim.counts("j").running, 1);
    sim.finish_task("j", "t", 0);
    assert_eq!(instances(&sim, "j", "mpi").len(), 2);
}

/// `subtasksinfo`: the subtasks (instances 1 and up, not the primary) of the current or latest
/// attempt, with their nodes; `running` while the attempt runs, `completed` when it ends (a
/// failed subtask with its own result), replaced by a retry's.
#[test]
fn subtasks_are_listed_with_their_nodes_and_states() {
    use openbatch_api::models::{ExecutionResult, SubtaskState};
    let mut sim = Sim::new();
    setup(
        &mut sim,
        3,
        1,
        "spread",
        json!({"constraints": {"maxTaskRetryCount": 1}}),
    );
    assert!(sim.core.list_subtasks("j", "nope", &urls()).is_err());
    sim.ok(add(
        "j",
        vec![
            gang("mpi", 3),
            task(json!({"id": "plain", "commandLine": "x"})),
        ],
    ));
    assert!(sim
        .core
        .list_subtasks("j", "plain", &urls())
        .unwrap()
        .is_empty());
    let inst = instances(&sim, "j", "mpi");
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert_eq!(
        subs.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![Some(1), Some(2)]
    );
    for (s, i) in subs.iter().zip(&inst[1..]) {
        assert_eq!(s.state, Some(SubtaskState::Running));
        let node = s.node_info.as_ref().unwrap();
        assert_eq!(node.node_id.as_deref(), Some(i.2.as_str()));
        assert_eq!(node.pool_id.as_deref(), Some("p"));
        assert_eq!(
            node.task_root_directory.as_deref(),
            Some("workitems/j/job-1/mpi")
        );
        assert!(s.start_time.is_some() && s.end_time.is_none());
    }
    // Subtask 2 fails: it is completed with its result, subtask 1 is stopped with the attempt.
    sim.finish(inst[2].1, 3);
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert!(subs.iter().all(|s| s.state == Some(SubtaskState::Completed)
        && s.previous_state == Some(SubtaskState::Running)
        && s.end_time.is_some()));
    assert_eq!(subs[1].exit_code, Some(3));
    assert_eq!(subs[1].result, Some(ExecutionResult::Failure));
    assert_eq!(subs[0].exit_code, None);
    report_kills(&mut sim);
    // The retry's subtasks replace them, and the primary's success completes them.
    let inst = instances(&sim, "j", "mpi");
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert_eq!(subs.len(), 2);
    assert!(subs.iter().all(|s| s.state == Some(SubtaskState::Running)));
    sim.finish(inst[0].1, 0);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Completed);
    let subs = sim.core.list_subtasks("j", "mpi", &urls()).unwrap();
    assert!(subs
        .iter()
        .all(|s| s.state == Some(SubtaskState::Completed)));
    // Kept through a snapshot and a replay.
    let back = snapshot(&sim.core);
    assert_eq!(back.list_subtasks("j", "mpi", &urls()).unwrap(), subs);
    let mut replayed = Core::new(Limits::default());
    replay_into(&mut replayed, &sim.entries());
    assert_eq!(replayed.list_subtasks("j", "mpi", &urls()).unwrap(), subs);
}

/// The releases of a primary (`Effect::RunPrimaryCommand`) in the last input: (node, run).
fn releases(sim: &Sim) -> Vec<(String, RunId)> {
    sim.last
        .iter()
        .filter_map(|fx| match fx {
            openbatch_core::Effect::RunPrimaryCommand { node, run } => Some((node.clone(), *run)),
            _ => None,
        })
        .collect()
}

fn coordinated(sim: &mut Sim, node: &str, run: RunId) {
    sim.ok(Input::InstanceCoordinated {
        node: node.into(),
        run,
    });
}

/// Azure runs the primary's command line only once the coordination commands of all
/// instances have completed: the primary is released by the report that completes the set,
/// not before, whatever the order; repeated reports change nothing, but the primary asking
/// again (its agent reconnected) is answered again. A report from another node is ignored.
#[test]
fn the_primary_is_released_only_when_every_instance_has_coordinated() {
    let mut sim = Sim::new();
    setup(&mut sim, 3, 1, "spread", json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let inst = instances(&sim, "j", "mpi");
    let (primary, sub1, sub2) = (&inst[0], &inst[1], &inst[2]);
    coordinated(&mut sim, &sub2.2, sub2.1);
    assert!(releases(&sim).is_empty());
    coordinated(&mut sim, &primary.2, primary.1);
    assert!(releases(&sim).is_empty(), "a subtask is still coordinating");
    // From the wrong node: not the instance's report.
    let changed = sim
        .ok(Input::InstanceCoordinated {
            node: primary.2.clone(),
            run: sub1.1,
        })
        .changed;
    assert!(!changed && releases(&sim).is_empty());
    coordinated(&mut sim, &sub2.2, sub2.1);
    assert!(releases(&sim).is_empty());
    coordinated(&mut sim, &sub1.2, sub1.1);
    assert_eq!(releases(&sim), vec![(primary.2.clone(), primary.1)]);
    coordinated(&mut sim, &sub1.2, sub1.1);
    assert!(releases(&sim).is_empty(), "once");
    coordinated(&mut sim, &primary.2, primary.1);
    assert_eq!(releases(&sim), vec![(primary.2.clone(), primary.1)]);
    sim.finish(primary.1, 0);
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Completed);
    report_kills(&mut sim);
}

/// A subtask's coordination command that fails ends its run with that failure: the attempt
/// fails (and is retried) without the primary ever being released, and the next attempt's
/// barrier starts empty.
#[test]
fn a_failed_coordination_command_fails_the_attempt_before_the_primary_runs() {
    let mut sim = Sim::new();
    setup(
        &mut sim,
        3,
        1,
        "spread",
        json!({"constraints": {"maxTaskRetryCount": 1}}),
    );
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let inst = instances(&sim, "j", "mpi");
    coordinated(&mut sim, &inst[0].2, inst[0].1);
    coordinated(&mut sim, &inst[2].2, inst[2].1);
    sim.finish(inst[1].1, 1);
    assert!(releases(&sim).is_empty());
    assert_eq!(sim.task_state("j", "mpi"), TaskState::Active);
    assert_eq!(sim.task_view("j", "mpi").execution_info.retry_count, 1);
    report_kills(&mut sim);
    let again = instances(&sim, "j", "mpi");
    assert_eq!(again.len(), 3);
    // The old attempt's reports count for nothing; the new one needs all three again.
    coordinated(&mut sim, &again[1].2, again[1].1);
    coordinated(&mut sim, &again[2].2, again[2].1);
    assert!(releases(&sim).is_empty());
    coordinated(&mut sim, &again[0].2, again[0].1);
    assert_eq!(releases(&sim), vec![(again[0].2.clone(), again[0].1)]);
}

/// The barrier is journaled state: a server restart (snapshot, or a replay of the journal)
/// in the middle of it keeps the reports already made, and the last one releases the primary.
#[test]
fn a_restart_mid_barrier_keeps_the_reports_made() {
    let mut sim = Sim::new();
    setup(&mut sim, 3, 1, "spread", json!({}));
    sim.ok(add("j", vec![gang("mpi", 3)]));
    let inst = instances(&sim, "j", "mpi");
    coordinated(&mut sim, &inst[0].2, inst[0].1);
    coordinated(&mut sim, &inst[1].2, inst[1].1);
    let mut replayed = Core::new(Limits::default());
    replay_into(&mut replayed, &sim.entries());
    assert_eq!(
        serde_json::to_value(&replayed).unwrap(),
        serde_json::to_value(&sim.core).unwrap()
    );
    sim.core = snapshot(&sim.core);
    sim.ok(Input::ServerRestarted);
    coordinated(&mut sim, &inst[2].2, inst[2].1);
    assert_eq!(releases(&sim), vec![(inst[0].2.clone(), inst[0].1)]);
}
