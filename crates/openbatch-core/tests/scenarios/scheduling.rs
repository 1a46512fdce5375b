//! The scheduler: slots, fill type, priority and submission order, parallelism limits.

use std::collections::BTreeMap;

use openbatch_api::models::TaskState;
use openbatch_core::Input;
use serde_json::json;

use crate::common::*;

/// A pool `p` of connected nodes, and job `j` on it. Returns the node ids.
fn pool_of(sim: &mut Sim, nodes: i32, slots: i32, fill: &str) -> Vec<String> {
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": nodes,
        "taskSlotsPerNode": slots, "taskSchedulingPolicy": {"nodeFillType": fill},
    })))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.provisioned.clone()
}

fn per_node(sim: &Sim) -> BTreeMap<String, i64> {
    sim.nodes("p")
        .into_iter()
        .map(|n| (n.id, n.running_task_slots_count))
        .collect()
}

/// Azure `taskSlotsPerNode`: a node runs at most that many tasks at once; the rest wait.
/// (`Sim` checks the per-node limit after every step.)
#[test]
fn slots_cap_the_tasks_running_on_each_node() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 2, 2, "spread");
    sim.ok(add("j", simple_tasks("t", 5)));
    assert_eq!(sim.counts("j").running, 4);
    assert_eq!(sim.counts("j").active, 1);
    assert!(per_node(&sim).values().all(|&s| s == 2));

    // A slot frees up: the fifth task takes it, on that node.
    let node = sim.node_of("j", "t3");
    sim.finish_task("j", "t3", 0);
    assert_eq!(sim.last_run_tasks(), vec![(node, "t5".to_string())]);
    assert_eq!(sim.counts("j").running, 4);
    sim.finish_all(0);
    assert_eq!(sim.counts("j").succeeded, 5);
    assert!(per_node(&sim).values().all(|&s| s == 0));
}

/// Azure `requiredSlots`: a task that needs all of a node's slots runs alone on it.
#[test]
fn a_task_requiring_all_slots_takes_a_whole_node() {
    let mut sim = Sim::new();
    let nodes = pool_of(&mut sim, 2, 2, "spread");
    sim.ok(add(
        "j",
        vec![
            task(json!({"id": "big", "commandLine": "x", "requiredSlots": 2})),
            simple_task("t1"),
            simple_task("t2"),
            simple_task("t3"),
        ],
    ));
    let big = sim.node_of("j", "big");
    let other = nodes.iter().find(|n| **n != big).unwrap().clone();
    assert_eq!(sim.node_of("j", "t1"), other);
    assert_eq!(sim.node_of("j", "t2"), other);
    assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
    let v = sim.node_view(&big);
    assert_eq!((v.running_tasks_count, v.running_task_slots_count), (1, 2));
    let c = sim.core.task_counts("j").unwrap();
    assert_eq!(c.task_slot_counts.running, 4);
    assert_eq!(c.task_slot_counts.active, 1);

    // The whole node frees up when `big` ends.
    sim.finish_task("j", "big", 0);
    assert_eq!(sim.last_run_tasks(), vec![(big, "t3".to_string())]);
}

/// A task that needs more slots than any node has never starts (openbatch completes it at
/// once, failed: see `explain.rs`); it does not hold back the smaller tasks submitted after it.
#[test]
fn a_task_too_big_for_any_node_never_starts_and_blocks_nothing() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 2, "spread");
    sim.ok(add(
        "j",
        vec![
            task(json!({"id": "huge", "commandLine": "x", "requiredSlots": 3})),
            simple_task("t1"),
            simple_task("t2"),
            simple_task("t3"),
        ],
    ));
    assert_eq!(sim.tasks_in("j", TaskState::Running), vec!["t1", "t2"]);
    sim.finish_all(0);
    sim.finish_all(0);
    assert_eq!(sim.counts("j").succeeded, 3);
    assert_eq!(sim.task_state("j", "huge"), TaskState::Completed);
    assert_eq!(sim.counts("j").failed, 1);
}

/// The same with many such tasks: however many unplaceable tasks are ahead in the queue, a
/// small task behind them starts on a free node.
#[test]
fn many_unplaceable_tasks_do_not_starve_the_ones_behind() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 2, "spread");
    for batch in 0..3 {
        let huge = (0..100)
            .map(|i| task(json!({"id": format!("huge{batch}-{i}"), "commandLine": "x", "requiredSlots": 3})))
            .collect();
        sim.ok(add("j", huge));
    }
    sim.ok(add("j", simple_tasks("small", 1)));
    assert_eq!(sim.task_state("j", "small1"), TaskState::Running);
}

/// Azure `maxParallelTasks`: a job never has more tasks running than that, however much room
/// the pool has.
#[test]
fn max_parallel_tasks_caps_a_jobs_running_tasks() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 4, "spread");
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "capped", "poolInfo": {"poolId": "p"}, "maxParallelTasks": 2}),
    ))));
    sim.ok(add("capped", simple_tasks("t", 5)));
    assert_eq!(sim.counts("capped").running, 2);
    sim.finish_task("capped", "t1", 0);
    assert_eq!(sim.counts("capped").running, 2);
    assert_eq!(sim.tasks_in("capped", TaskState::Running), vec!["t2", "t3"]);
    // The rest of the node is free for other jobs.
    sim.ok(add("j", simple_tasks("o", 3)));
    assert_eq!(sim.counts("j").running, 2);
}

/// `maxParallelTasks` limits that job only: a job at its limit with a long queue must not keep
/// other jobs' tasks off idle slots.
#[test]
fn a_job_at_its_parallel_limit_does_not_starve_other_jobs() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 1, 4, "spread");
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "capped", "poolInfo": {"poolId": "p"}, "maxParallelTasks": 1, "priority": 100}),
    ))));
    for batch in 0..3 {
        sim.ok(add("capped", simple_tasks(&format!("c{batch}-"), 100)));
    }
    sim.ok(add("j", simple_tasks("t", 1)));
    assert_eq!(sim.counts("capped").running, 1);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
}

/// Azure `nodeFillType = pack`: tasks fill one node before the next gets any.
#[test]
fn pack_puts_tasks_on_the_same_node_first() {
    let mut sim = Sim::new();
    let nodes = pool_of(&mut sim, 2, 2, "pack");
    sim.ok(add("j", simple_tasks("t", 3)));
    assert_eq!(sim.node_of("j", "t1"), sim.node_of("j", "t2"));
    assert_ne!(sim.node_of("j", "t3"), sim.node_of("j", "t1"));
    // A node with one free slot left is filled before an empty one.
    sim.finish_task("j", "t1", 0);
    sim.finish_task("j", "t3", 0);
    sim.ok(add("j", simple_tasks("u", 1)));
    assert_eq!(sim.node_of("j", "u1"), nodes[0]);
}

/// Azure `affinityInfo.affinityId`: "a locality hint that can be used by the Batch service to
/// select a Compute Node on which to start the new Task". The named node is preferred when it
/// can take the task; when it is full, unknown or in another pool the task starts elsewhere,
/// and it never waits for the node.
#[test]
fn affinity_prefers_the_named_node_and_never_waits_for_it() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 3, 2, "spread");
    sim.ok(add("j", simple_tasks("t", 1)));
    let first = sim.node_of("j", "t1");
    // The task view gives the affinity id of the node it ran on, as Azure does.
    let hint = sim
        .core
        .task("j", "t1", &urls())
        .unwrap()
        .node_info
        .unwrap()
        .affinity_id
        .unwrap();
    assert_eq!(hint, first);
    let near = |id: &str, node: &str| {
        task(json!({"id": id, "commandLine": "x", "affinityInfo": {"affinityId": node}}))
    };
    // Spread alone would pick an empty node; the hint wins while the node has room.
    sim.ok(add("j", vec![near("a1", &hint)]));
    assert_eq!(sim.node_of("j", "a1"), first);
    // Now it is full: the next hinted task starts at once, elsewhere.
    sim.ok(add("j", vec![near("a2", &hint)]));
    assert_eq!(sim.task_state("j", "a2"), TaskState::Running);
    assert_ne!(sim.node_of("j", "a2"), first);
    // A hint naming no node of the pool changes nothing.
    sim.ok(add("j", vec![near("a3", "no-such-node")]));
    assert_eq!(sim.task_state("j", "a3"), TaskState::Running);
    // Queue order is kept: with every slot busy, a hinted task waits its turn behind an older
    // one, even when its node is the one that frees up.
    let other = sim.node_of("j", "a2");
    sim.ok(add("j", simple_tasks("q", 3)));
    sim.ok(add("j", vec![near("late", &other)]));
    assert_eq!(sim.counts("j").active, 2);
    sim.finish_task("j", "a2", 0);
    assert_eq!(sim.node_of("j", "q3"), other);
    assert_eq!(sim.task_state("j", "late"), TaskState::Active);
    sim.finish_all(0);
    sim.finish_all(0);
    assert_eq!(sim.counts("j").succeeded, 8);
}

/// Azure `nodeFillType = spread`: tasks go to the least loaded node.
#[test]
fn spread_puts_tasks_on_different_nodes() {
    let mut sim = Sim::new();
    pool_of(&mut sim, 2, 2, "spread");
    sim.ok(add("j", simple_tasks("t", 2)));
    assert_ne!(sim.node_of("j", "t1"), sim.node_of("j", "t2"));
}

/// Azure job `priority`: tasks of a higher-priority job are scheduled before those of a
/// lower-priority job, even an older one.
#[test]
fn higher_priority_jobs_start_first() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "low", "poolInfo": {"poolId": "p"}, "priority": 0}),
    ))));
    sim.ok(add("low", simple_tasks("l", 2)));
    sim.advance(1);
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "high", "poolInfo": {"poolId": "p"}, "priority": 500}),
    ))));
    sim.ok(add("high", simple_tasks("h", 2)));
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "neg", "poolInfo": {"poolId": "p"}, "priority": -5}),
    ))));
    sim.ok(add("neg", simple_tasks("n", 1)));
    sim.connect_all();

    let mut order = Vec::new();
    for _ in 0..5 {
        let started = sim.last_run_tasks();
        assert_eq!(started.len(), 1);
        order.push(started[0].1.clone());
        sim.advance(1);
        let run = *sim.runs.keys().next().unwrap();
        sim.finish(run, 0);
    }
    assert_eq!(order, vec!["h1", "h2", "l1", "l2", "n1"]);
}

/// Azure: within a job (same priority), tasks start in the order they were submitted, not in
/// id order.
#[test]
fn tasks_of_a_job_start_in_submission_order() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", vec![simple_task("zeta"), simple_task("alpha")]));
    sim.ok(add("j", vec![simple_task("mid")]));
    sim.connect_all();
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(sim.last_run_tasks()[0].1.clone());
        let run = *sim.runs.keys().next().unwrap();
        sim.finish(run, 0);
    }
    assert_eq!(order, vec!["zeta", "alpha", "mid"]);
}

/// Azure: a job may name a pool that does not exist yet; its tasks wait and run once the pool
/// has nodes.
#[test]
fn tasks_wait_for_a_pool_that_does_not_exist_yet() {
    let mut sim = Sim::new();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "later"))));
    sim.ok(add("j", simple_tasks("t", 2)));
    assert_eq!(sim.counts("j").active, 2);
    sim.ok(Input::CreatePool(Box::new(simple_pool("later", 1, 2))));
    sim.connect_all();
    assert_eq!(sim.counts("j").running, 2);
}

/// Issue 4, no starvation: a task needing every slot of a node is not delayed forever by a
/// stream of 1-slot tasks behind it. When it reaches the head of the queue and fits nowhere, one
/// node is held for it (nothing new starts there) while the other nodes keep taking small tasks;
/// it starts as soon as the held node has drained.
#[test]
fn a_wide_task_is_not_starved_by_a_stream_of_narrow_ones() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 4))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("s", 8)));
    assert_eq!(sim.runs.len(), 8, "both nodes full");
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "wide", "commandLine": "/bin/true", "requiredSlots": 4}),
        )],
    ));
    sim.ok(add("j", simple_tasks("more", 40)));
    // Narrow tasks end one by one, oldest first; the wide one must start within the time it
    // takes one node to drain (4 ends on it), however the ends fall across the nodes.
    let mut ends = 0;
    while sim.task_state("j", "wide") != TaskState::Running {
        let oldest = *sim.runs.keys().next().expect("something runs");
        sim.finish(oldest, 0);
        ends += 1;
        assert!(
            ends <= 8,
            "the wide task is still waiting after {ends} ends"
        );
    }
    let node = sim.node_of("j", "wide");
    assert_eq!(sim.node_view(&node).running_task_slots_count, 4);
    // Meanwhile the other node kept taking narrow tasks: nothing idled but the held node.
    let other: Vec<_> = sim
        .nodes("p")
        .into_iter()
        .filter(|n| n.id != node)
        .collect();
    assert_eq!(other[0].running_task_slots_count, 4);
}
