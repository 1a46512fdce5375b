//! Low-priority (spot) nodes and their preemption.
//!
//! Azure Batch ("Use Spot VMs with Batch"): a preempted node goes to `preempted`; the tasks it
//! ran are requeued and run again elsewhere (a requeue, not a retry); preempted nodes still
//! count in `currentLowPriorityNodes`, and Batch restores the capacity when it can. openbatch
//! adds a notice: the runs get SIGTERM and a grace period first, and however they end within it,
//! their tasks are requeued.

use std::time::Duration;

use openbatch_api::models::{NodeState, TaskState};
use openbatch_core::{CoreError, Effect, Input};
use serde_json::json;

use crate::common::*;

const GRACE: Duration = Duration::from_secs(30);
const RECOVERY: Duration = Duration::from_secs(60);

fn preempt(node: &str) -> Input {
    Input::PreemptNode {
        pool: "p".into(),
        node: node.into(),
        grace: GRACE,
        recovery: RECOVERY,
    }
}

/// A pool of one dedicated and two low-priority nodes with one slot each, all connected and
/// running one task each of job `j` (three tasks, `t1`..`t3`, and `t4` queued).
fn busy_spot_pool() -> (Sim, Vec<String>) {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3",
        "targetDedicatedNodes": 1, "targetLowPriorityNodes": 2,
    })))));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.connect_all();
    sim.ok(add("j", simple_tasks("t", 4)));
    let spot: Vec<String> = sim
        .nodes("p")
        .into_iter()
        .filter(|n| !n.is_dedicated)
        .map(|n| n.id)
        .collect();
    assert_eq!(spot.len(), 2);
    (sim, spot)
}

fn task_on(sim: &Sim, node: &str) -> String {
    sim.runs
        .values()
        .find(|r| r.node == node && !r.killed)
        .map(|r| r.task.clone())
        .expect("the node runs a task")
}

/// The notice, then a clean exit inside the grace period: the task is requeued (not failed,
/// no retry used), the node is `preempted`, still counted, and its agent is stopped.
#[test]
fn a_task_that_exits_within_the_grace_period_is_requeued_not_failed() {
    let (mut sim, spot) = busy_spot_pool();
    let node = spot[0].clone();
    let task = task_on(&sim, &node);
    sim.ok(preempt(&node));
    assert!(matches!(
        &sim.last[..],
        [Effect::PreemptNode { node: n, grace }] if *n == node && *grace == GRACE
    ));
    // During the notice the task still runs there and the node takes nothing new.
    assert_eq!(sim.task_state("j", &task), TaskState::Running);
    assert_eq!(sim.node_state(&node), NodeState::Running);

    // The task handles SIGTERM and exits 143 (or 0): either way it is requeued.
    sim.advance(3);
    sim.finish_task("j", &task, 143);
    let t = sim.task_view("j", &task);
    assert_eq!(t.state, TaskState::Active, "requeued");
    let exec = t.execution_info;
    assert_eq!((exec.requeue_count, exec.retry_count), (1, 0));
    assert_eq!(sim.node_state(&node), NodeState::Preempted);
    assert_eq!(sim.last_removals(), vec![node.clone()]);
    // Preempted nodes still count as the pool's low-priority nodes (Azure).
    let p = sim.pool_view("p");
    assert_eq!(p.current_low_priority_nodes, 2);

    // The provider stops the agent; the node stays listed as preempted.
    sim.removed(&node);
    assert_eq!(sim.node_state(&node), NodeState::Preempted);
    // Losing contact is expected: no `unknown`, no lost-node replacement.
    sim.advance(59);
    sim.tick();
    assert_eq!(sim.node_state(&node), NodeState::Preempted);
    assert!(sim.last_provisions().is_empty());

    // The requeued task runs once a slot frees elsewhere, and completes exactly once.
    let other = spot[1].clone();
    let t_other = task_on(&sim, &other);
    sim.finish_task("j", &t_other, 0);
    sim.finish_task("j", &task, 0);
    assert_eq!(sim.task_state("j", &task), TaskState::Completed);
}

/// The capacity comes back after the recovery time: the same node id boots as a fresh machine
/// (`creating`, its start task runs again) and takes work again.
#[test]
fn a_preempted_node_recovers_under_its_own_id() {
    let (mut sim, spot) = busy_spot_pool();
    let node = spot[0].clone();
    let task = task_on(&sim, &node);
    sim.ok(preempt(&node));
    sim.finish_task("j", &task, 0);
    sim.removed(&node);
    sim.advance(RECOVERY.as_secs() as i64);
    sim.tick();
    assert_eq!(sim.last_provisions(), vec![node.clone()]);
    assert_eq!(sim.node_state(&node), NodeState::Creating);
    assert_eq!(
        sim.pool_view("p").allocation_state,
        openbatch_api::models::AllocationState::Resizing
    );
    sim.connect(&node);
    // It is a fresh node, so the queued work lands on it.
    assert!(matches!(
        sim.node_state(&node),
        NodeState::Running | NodeState::Idle
    ));
    assert!(sim.runs.values().any(|r| r.node == node));
}

/// A task that ignores SIGTERM is killed by the agent at the deadline; its report is a requeue
/// too. If the report never comes (the agent is wedged), the core requeues by itself shortly
/// after the deadline.
#[test]
fn runs_that_outlive_the_notice_are_requeued_at_the_deadline() {
    let (mut sim, spot) = busy_spot_pool();
    let node = spot[0].clone();
    let task = task_on(&sim, &node);
    sim.ok(preempt(&node));
    sim.advance(GRACE.as_secs() as i64);
    sim.tick();
    assert_eq!(
        sim.task_state("j", &task),
        TaskState::Running,
        "still in slack"
    );
    sim.advance(30);
    sim.tick();
    assert_eq!(sim.node_state(&node), NodeState::Preempted);
    let t = sim.task_view("j", &task);
    let exec = t.execution_info;
    assert_eq!((exec.requeue_count, exec.retry_count), (1, 0));
    assert!(sim.last_kills().len() == 1);
}

/// Only low-priority nodes can be preempted, and only once at a time.
#[test]
fn preempting_a_dedicated_node_or_twice_is_refused() {
    let (mut sim, spot) = busy_spot_pool();
    let dedicated = sim
        .nodes("p")
        .into_iter()
        .find(|n| n.is_dedicated)
        .unwrap()
        .id;
    assert!(matches!(
        sim.refused(preempt(&dedicated)),
        CoreError::InvalidState(_)
    ));
    sim.ok(preempt(&spot[0]));
    assert!(matches!(
        sim.refused(preempt(&spot[0])),
        CoreError::InvalidState(_)
    ));
    assert!(matches!(
        sim.refused(preempt("no-such-node")),
        CoreError::NodeNotFound(_)
    ));
}

/// An idle node goes to `preempted` at once, with no notice to send.
#[test]
fn an_idle_node_is_preempted_at_once() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetLowPriorityNodes": 1,
    })))));
    sim.connect_all();
    let node = sim.nodes("p")[0].id.clone();
    sim.ok(preempt(&node));
    assert_eq!(sim.node_state(&node), NodeState::Preempted);
    assert_eq!(sim.last_removals(), vec![node.clone()]);
    assert!(sim.preempt_notices.is_empty());
}

/// Shrinking the pool while a node is preempted lets the preempted node go first, and it does
/// not come back.
#[test]
fn a_resize_down_removes_the_preempted_node_first() {
    let (mut sim, spot) = busy_spot_pool();
    let node = spot[1].clone();
    let task = task_on(&sim, &node);
    sim.ok(preempt(&node));
    sim.finish_task("j", &task, 0);
    sim.removed(&node);
    sim.ok(Input::ResizePool {
        id: "p".into(),
        resize: serde_json::from_value(
            json!({"targetDedicatedNodes": 1, "targetLowPriorityNodes": 1}),
        )
        .unwrap(),
    });
    assert_eq!(sim.node_state(&node), NodeState::LeavingPool);
    assert_eq!(sim.last_removals(), vec![node.clone()]);
    sim.removed(&node);
    assert!(sim.core.node_ids().iter().all(|(n, _)| n != &node));
    sim.advance(RECOVERY.as_secs() as i64);
    sim.tick();
    assert!(sim.last_provisions().is_empty());
}

/// Every input with a preemption in it replays to the same state.
#[test]
fn preemption_replays_to_the_same_state() {
    let (mut sim, spot) = busy_spot_pool();
    let node = spot[0].clone();
    let task = task_on(&sim, &node);
    sim.ok(preempt(&node));
    sim.finish_task("j", &task, 143);
    sim.removed(&node);
    sim.advance(RECOVERY.as_secs() as i64);
    sim.tick();
    sim.connect(&node);
    let entries = sim.entries();
    let mut replayed = openbatch_core::Core::new(openbatch_core::Limits::default());
    replay_into(&mut replayed, &entries);
    assert_eq!(render_all(&replayed), render_all(&sim.core));
    assert_eq!(
        serde_json::to_value(&replayed).unwrap(),
        serde_json::to_value(&sim.core).unwrap()
    );
}
