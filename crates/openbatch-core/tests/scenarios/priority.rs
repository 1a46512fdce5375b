//! Azure job `allowTaskPreemption`: "Whether Tasks in this job can be preempted by other high
//! priority jobs. If the value is set to True, other high priority jobs submitted to the system
//! will take precedence and will be able requeue tasks from this job."

use openbatch_api::models::TaskState;
use openbatch_core::{Core, Input, Limits};
use serde_json::json;

use crate::common::*;

fn pool_of(sim: &mut Sim, nodes: i32, slots: i32) {
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, slots))));
    sim.connect_all();
}

fn job_with(sim: &mut Sim, id: &str, priority: i32, preemptible: bool) {
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": id, "poolInfo": {"poolId": "p"}, "priority": priority,
        "allowTaskPreemption": preemptible,
    })))));
}

/// A higher-priority task takes the slot of the most recently started task of a job that
/// allows preemption; that task is requeued (no retry used) and runs again afterwards.
#[test]
fn a_higher_priority_task_requeues_a_preemptible_one() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 2);
    job_with(&mut sim, "low", 0, true);
    sim.ok(add("low", simple_tasks("l", 2)));
    sim.advance(5);
    assert_eq!(sim.counts("low").running, 2);
    let newest = sim.run_of("low", "l2");
    assert!(newest > sim.run_of("low", "l1"));

    job_with(&mut sim, "high", 100, false);
    sim.ok(add("high", simple_tasks("h", 1)));
    assert_eq!(sim.last_kills(), vec![newest]);
    assert_eq!(sim.task_state("low", "l2"), TaskState::Active);
    let l2 = sim.task_view("low", "l2").execution_info;
    assert_eq!((l2.requeue_count, l2.retry_count), (1, 0));
    assert_eq!(sim.task_state("low", "l1"), TaskState::Running);
    // The slot stays taken until the killed process is gone: `h1` does not start beside it,
    // and nothing more is preempted for it meanwhile.
    assert_eq!(sim.task_state("high", "h1"), TaskState::Active);
    sim.tick();
    assert!(sim.last_kills().is_empty());
    assert_eq!(sim.task_state("low", "l1"), TaskState::Running);

    // The killed run reports its end: `h1` starts in its slot. The slot goes back to `l2`
    // when `h1` ends.
    sim.finish(newest, 137);
    assert_eq!(sim.task_state("high", "h1"), TaskState::Running);
    assert_eq!(sim.task_state("low", "l2"), TaskState::Active);
    sim.finish_task("high", "h1", 0);
    assert_eq!(sim.task_state("low", "l2"), TaskState::Running);
    sim.finish_all(0);
    assert_eq!(sim.counts("low").succeeded, 2);
    let l2 = sim.task_view("low", "l2").execution_info;
    assert_eq!((l2.requeue_count, l2.retry_count), (1, 0));
}

/// Without `allowTaskPreemption` (the default), or against a job of the same priority, the
/// waiting task waits.
#[test]
fn no_preemption_without_the_flag_or_between_equals() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 2);
    job_with(&mut sim, "plain", 0, false);
    job_with(&mut sim, "peer", 50, true);
    sim.ok(add("plain", simple_tasks("a", 1)));
    sim.ok(add("peer", simple_tasks("b", 1)));
    job_with(&mut sim, "high", 50, false);
    sim.ok(add("high", simple_tasks("h", 1)));
    assert!(sim.last_kills().is_empty());
    assert_eq!(sim.task_state("high", "h1"), TaskState::Active);
    sim.finish_task("plain", "a1", 0);
    assert_eq!(sim.task_state("high", "h1"), TaskState::Running);
}

/// Victims come from the lowest-priority job first, and only as many as the waiting task
/// needs, on one node: a 2-slot task on a node with one slot free costs one victim there. A
/// requeued task of a job that outranks another preemptible job may in turn take its place.
#[test]
fn the_fewest_lowest_priority_victims_on_one_node() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 2, 2);
    job_with(&mut sim, "mid", -10, true);
    job_with(&mut sim, "bottom", -20, true);
    sim.ok(add("mid", simple_tasks("m", 2)));
    sim.ok(add("bottom", simple_tasks("b", 1)));
    // spread: m1 and m2 on different nodes, b1 with m1.
    let shared = sim.node_of("bottom", "b1");
    assert_eq!(sim.node_of("mid", "m1"), shared);
    let other = sim.node_of("mid", "m2");
    let (m2, b1) = (sim.run_of("mid", "m2"), sim.run_of("bottom", "b1"));
    job_with(&mut sim, "high", 10, false);
    sim.ok(add(
        "high",
        vec![task(
            json!({"id": "wide", "commandLine": "x", "requiredSlots": 2}),
        )],
    ));
    // The node with one slot free needs one victim (`m2`); the shared node would need two.
    assert_eq!(sim.last_kills(), vec![m2]);
    // Once `m2` is gone, `wide` starts there; `m2`, requeued, outranks `b1`: it takes b1's
    // slot, once `b1` is gone.
    sim.finish(m2, 137);
    assert_eq!(sim.node_of("high", "wide"), other);
    assert_eq!(sim.last_kills(), vec![b1]);
    sim.finish(b1, 137);
    assert_eq!(sim.node_of("mid", "m2"), shared);
    assert_eq!(sim.task_state("bottom", "b1"), TaskState::Active);
}

/// Between two preemptible jobs on a node, the lower-priority one gives way first.
#[test]
fn the_lowest_priority_job_gives_way_first() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 2);
    job_with(&mut sim, "bottom", -20, true);
    job_with(&mut sim, "mid", -10, true);
    sim.ok(add("bottom", simple_tasks("b", 1)));
    sim.advance(1);
    sim.ok(add("mid", simple_tasks("m", 1)));
    job_with(&mut sim, "high", 10, false);
    sim.ok(add("high", simple_tasks("h", 1)));
    sim.report_kills();
    assert_eq!(sim.task_state("bottom", "b1"), TaskState::Active);
    assert_eq!(sim.task_state("mid", "m1"), TaskState::Running);
    assert_eq!(sim.task_state("high", "h1"), TaskState::Running);
}

/// `allowTaskPreemption` can be switched on by an update (Azure: "You can update a job's
/// allowTaskPreemption after it has been created"): a higher-priority task that waits gets
/// its node then.
#[test]
fn switching_preemption_on_by_update_frees_a_node_for_a_waiting_task() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 1);
    job_with(&mut sim, "low", 0, false);
    sim.ok(add("low", simple_tasks("l", 1)));
    job_with(&mut sim, "high", 10, false);
    sim.ok(add("high", simple_tasks("h", 1)));
    assert_eq!(sim.task_state("high", "h1"), TaskState::Active);
    sim.ok(Input::UpdateJob {
        id: "low".into(),
        update: Box::new(serde_json::from_value(json!({"allowTaskPreemption": true})).unwrap()),
        replace: false,
    });
    assert_eq!(sim.task_state("low", "l1"), TaskState::Active);
    sim.report_kills();
    assert_eq!(sim.task_state("high", "h1"), TaskState::Running);
    assert_eq!(sim.task_state("low", "l1"), TaskState::Active);
}

/// A chain of priorities ends: each round of preemption starts a task of a strictly higher
/// priority than its victims, and a replay gives the same state.
#[test]
fn preemption_replays_to_the_same_state() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 2, 2);
    for (id, prio) in [("a", -30), ("b", -20), ("c", -10)] {
        job_with(&mut sim, id, prio, true);
    }
    sim.ok(add("a", simple_tasks("a", 4)));
    sim.advance(1);
    sim.ok(add("b", simple_tasks("b", 3)));
    sim.report_kills();
    sim.advance(1);
    sim.ok(add("c", simple_tasks("c", 2)));
    sim.report_kills();
    assert_eq!(sim.counts("c").running, 2);
    assert_eq!(sim.counts("b").running, 2);
    assert_eq!(sim.counts("a").running, 0);
    for _ in 0..4 {
        sim.advance(1);
        sim.finish_all(0);
    }
    for j in ["a", "b", "c"] {
        assert_eq!(sim.counts(j).active + sim.counts(j).running, 0, "{j}");
    }
    let entries = sim.entries();
    let want = serde_json::to_value(&sim.core).unwrap();
    let mut again = Core::new(Limits::default());
    replay_into(&mut again, &entries);
    assert_eq!(serde_json::to_value(&again).unwrap(), want);
}

/// A node emptied for a waiting task is held for it while the kills are under way: a slot
/// freed by the first kill report does not go to a smaller task behind it (the requeued
/// victims among them, which would be preempted again, without end), and nothing more is
/// preempted for it meanwhile.
#[test]
fn the_node_emptied_by_preemption_is_held_until_the_waiting_task_starts() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 4);
    job_with(&mut sim, "low", 0, true);
    sim.ok(add("low", simple_tasks("l", 6)));
    assert_eq!(sim.counts("low").running, 4);
    job_with(&mut sim, "high", 10, false);
    sim.ok(add(
        "high",
        vec![task(
            json!({"id": "wide", "commandLine": "x", "requiredSlots": 4}),
        )],
    ));
    let mut kills = sim.last_kills();
    assert_eq!(kills.len(), 4);
    assert_eq!(sim.counts("low").running, 0);
    while let Some(run) = kills.pop() {
        assert_eq!(sim.task_state("high", "wide"), TaskState::Active);
        sim.finish(run, 137);
        assert!(sim.last_kills().is_empty(), "nothing is preempted twice");
        if !kills.is_empty() {
            assert_eq!(
                sim.counts("low").running,
                0,
                "the held node is not backfilled"
            );
        }
    }
    assert_eq!(sim.task_state("high", "wide"), TaskState::Running);
    assert_eq!(sim.counts("low").running, 0);
    sim.finish_task("high", "wide", 0);
    assert_eq!(sim.counts("low").running, 4);
}
