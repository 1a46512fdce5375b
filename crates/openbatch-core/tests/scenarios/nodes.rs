//! Nodes: start tasks, losing and regaining contact, node loss and replacement.

use std::time::Duration;

use openbatch_api::models::{ExecutionResult, NodeState, StartTaskState, TaskState};
use openbatch_core::{Effect, Input, Limits};
use serde_json::json;

use crate::common::*;

fn pool_with_start_task(start_task: serde_json::Value) -> Input {
    Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1,
        "startTask": start_task,
    }))))
}

/// A pool of one node with a start task, a job `j` with task `t1`; the node has connected.
fn start_task_setup(start_task: serde_json::Value) -> (Sim, String) {
    let mut sim = Sim::new();
    sim.ok(pool_with_start_task(start_task));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    let node = sim.pending()[0].clone();
    sim.connect(&node);
    (sim, node)
}

/// Azure: with `waitForSuccess = true` a node is `waitingforstarttask` and gets no task until
/// its start task succeeds; then it is `idle` and tasks are scheduled on it.
#[test]
fn start_task_wait_for_success_holds_the_node_until_it_succeeds() {
    let (mut sim, node) =
        start_task_setup(json!({"commandLine": "setup.sh", "waitForSuccess": true}));
    assert!(matches!(
        &sim.last[..],
        [Effect::RunStartTask { start_task, .. }] if start_task.command_line == "setup.sh"
    ));
    assert_eq!(sim.node_state(&node), NodeState::WaitingForStartTask);
    let info = sim.node_view(&node).start_task_info.unwrap();
    assert_eq!(info.state, StartTaskState::Running);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Active);

    sim.advance(10);
    sim.start_task_done(&node, 0);
    let info = sim.node_view(&node).start_task_info.unwrap();
    assert_eq!(
        (info.state, info.exit_code, info.result),
        (
            StartTaskState::Completed,
            Some(0),
            Some(ExecutionResult::Success)
        )
    );
    // Idle, then at once busy with the waiting task.
    assert_eq!(sim.last_run_tasks(), vec![(node.clone(), "t1".to_string())]);
    assert_eq!(sim.node_state(&node), NodeState::Running);
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.node_state(&node), NodeState::Idle);
}

/// Azure: a failing start task is retried `maxTaskRetryCount` times; when it still fails and
/// `waitForSuccess` is set, the node is `starttaskfailed` and never gets a task.
#[test]
fn start_task_failing_after_its_retries_makes_the_node_starttaskfailed() {
    let (mut sim, node) = start_task_setup(
        json!({"commandLine": "setup.sh", "waitForSuccess": true, "maxTaskRetryCount": 2}),
    );
    assert_eq!(sim.start_tasks[&node], 1);
    for retry in 1..=2 {
        sim.advance(5);
        sim.start_task_done(&node, 3);
        assert_eq!(sim.start_tasks[&node], 1 + retry, "retry {retry} asked for");
        assert_eq!(sim.node_state(&node), NodeState::WaitingForStartTask);
        let info = sim.node_view(&node).start_task_info.unwrap();
        assert_eq!(info.retry_count, retry as i32);
        assert_eq!(info.state, StartTaskState::Running);
    }
    sim.advance(5);
    sim.start_task_done(&node, 3);
    assert_eq!(sim.start_tasks[&node], 3, "no more retries");
    assert_eq!(sim.node_state(&node), NodeState::StartTaskFailed);
    let info = sim.node_view(&node).start_task_info.unwrap();
    assert_eq!(info.state, StartTaskState::Completed);
    assert_eq!(info.result, Some(ExecutionResult::Failure));
    assert_eq!(info.exit_code, Some(3));
    assert_eq!(info.retry_count, 2);
    assert_eq!(
        info.failure_info.unwrap().code.as_deref(),
        Some("FailureExitCode")
    );

    // No task is ever placed there, whatever else happens.
    sim.ok(add("j", simple_tasks("more", 3)));
    sim.advance(3600);
    sim.tick();
    assert!(sim.run_ids.is_empty());
    assert_eq!(sim.counts("j").active, 4);
}

/// Azure: with `waitForSuccess = false` the node is `idle` as soon as its start task starts,
/// runs tasks alongside it, and a failing start task does not take it out of service.
#[test]
fn start_task_without_wait_makes_the_node_idle_at_once() {
    let (mut sim, node) =
        start_task_setup(json!({"commandLine": "setup.sh", "waitForSuccess": false}));
    assert_eq!(sim.start_tasks[&node], 1);
    assert_eq!(sim.node_state(&node), NodeState::Running);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
    sim.start_task_done(&node, 1);
    assert_eq!(sim.node_state(&node), NodeState::Running);
    assert_eq!(
        sim.node_view(&node).start_task_info.unwrap().result,
        Some(ExecutionResult::Failure)
    );
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.node_state(&node), NodeState::Idle);
}

/// An agent that restarts after its start task completed says so in its hello: the start task
/// is not run again, and its result decides the node's state.
#[test]
fn start_task_result_in_the_first_hello_is_used() {
    let mut sim = Sim::new();
    sim.ok(pool_with_start_task(
        json!({"commandLine": "setup.sh", "waitForSuccess": true}),
    ));
    let node = sim.pending()[0].clone();
    let done = sim.result(sim.now, 0);
    sim.hello_with_start_task(&node, vec![], vec![], Some(done));
    assert!(!sim.start_tasks.contains_key(&node));
    assert_eq!(sim.node_state(&node), NodeState::Idle);
}

/// Azure: `starttaskfailed` is where a node stays until it is rebooted or reimaged. Losing and
/// regaining the agent's connection (or a server restart) must not put it back in service.
#[test]
fn start_task_failed_node_stays_failed_after_a_reconnect() {
    let (mut sim, node) =
        start_task_setup(json!({"commandLine": "setup.sh", "waitForSuccess": true}));
    sim.start_task_done(&node, 1);
    assert_eq!(sim.node_state(&node), NodeState::StartTaskFailed);

    sim.disconnect(&node);
    sim.advance(5);
    sim.connect(&node);
    assert_eq!(sim.node_state(&node), NodeState::StartTaskFailed);
    assert!(
        sim.run_ids.is_empty(),
        "a task was placed on a starttaskfailed node"
    );
}

/// Azure: a node stays `waitingforstarttask` until its start task ends. An agent that reconnects
/// while the start task still runs (it reports no start task result) is still waiting.
#[test]
fn node_waiting_for_its_start_task_keeps_waiting_after_a_reconnect() {
    let (mut sim, node) =
        start_task_setup(json!({"commandLine": "setup.sh", "waitForSuccess": true}));
    sim.ok(Input::ServerRestarted);
    sim.connected.clear();
    sim.advance(5);
    sim.connect(&node);
    assert_eq!(sim.node_state(&node), NodeState::WaitingForStartTask);
    assert!(
        sim.run_ids.is_empty(),
        "a task was placed before the start task succeeded"
    );
}

/// Azure: a node on its way out stays `leavingpool` until it is gone; a start task that fails
/// meanwhile does not turn it into `starttaskfailed` (the pool counts it as leaving).
#[test]
fn a_leaving_node_stays_leaving_when_its_start_task_fails() {
    let (mut sim, node) =
        start_task_setup(json!({"commandLine": "setup.sh", "waitForSuccess": true}));
    sim.ok(Input::ResizePool {
        id: "p".into(),
        resize: serde_json::from_value(json!({"targetDedicatedNodes": 0})).unwrap(),
    });
    assert_eq!(sim.node_state(&node), NodeState::LeavingPool);
    sim.checks = false;
    sim.start_task_done(&node, 1);
    assert_eq!(sim.node_state(&node), NodeState::LeavingPool);
    sim.check();
}

/// Azure: when a node is lost, its running tasks are requeued (`requeueCount` + 1, no retry
/// used) and the pool allocates a replacement to keep its target. The task then runs again
/// and completes exactly once; news from the lost node about its old attempt is ignored.
#[test]
fn node_lost_requeues_its_tasks_and_is_replaced() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    let lost = sim.provisioned[0].clone();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    let old_run = sim.run_of("j", "t1");
    let started = sim.now;

    sim.advance(10);
    sim.lose(&lost);
    assert!(sim
        .last
        .contains(&Effect::RemoveNode { node: lost.clone() }));
    let replacement = sim.last_provisions();
    assert_eq!(replacement.len(), 1);
    assert_ne!(replacement[0], lost);
    assert!(sim.core.node_placement(&lost).is_none());
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Active);
    assert_eq!(t.execution_info.requeue_count, 1);
    assert_eq!(t.execution_info.retry_count, 0);
    assert_eq!(sim.pool_view("p").target_dedicated_nodes, 1);

    sim.advance(10);
    sim.connect(&replacement[0]);
    assert_eq!(sim.node_of("j", "t1"), replacement[0]);
    sim.advance(10);
    sim.finish_task("j", "t1", 0);
    let done = sim.task_view("j", "t1");
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.execution_info.result, Some(ExecutionResult::Success));

    // The lost node's old attempt reports late, with another outcome: ignored.
    let late = sim.ok(Input::TaskCompleted {
        node: lost,
        run: old_run,
        result: sim.result(started, 1),
    });
    assert!(!late.changed);
    assert!(late.effects.is_empty());
    assert_eq!(sim.task_view("j", "t1"), done);
    assert_eq!(sim.counts("j").succeeded, 1);
    assert_eq!(sim.counts("j").completed, 1);
}

/// When another node has room, a lost node's task moves there at once.
#[test]
fn node_lost_tasks_move_to_a_free_node() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 2))));
    sim.connect_all();
    let (n1, n2) = (sim.provisioned[0].clone(), sim.provisioned[1].clone());
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    assert_eq!(sim.node_of("j", "t1"), n1);
    sim.lose(&n1);
    assert_eq!(sim.last_run_tasks(), vec![(n2, "t1".to_string())]);
}

fn lost_after_60s() -> Sim {
    Sim::with_limits(Limits {
        node_lost_after: Duration::from_secs(60),
        ..Limits::default()
    })
}

/// A one-node pool running `j/t1`; returns the node and the run.
fn one_running(sim: &mut Sim) -> (String, u64) {
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    (sim.provisioned[0].clone(), sim.run_of("j", "t1"))
}

/// Azure: a node that stops talking is `unknown`; its tasks stay `running` for a while. If it
/// does not come back within the limit, it is lost: its tasks are requeued and it is replaced.
#[test]
fn disconnected_node_is_lost_after_the_deadline() {
    let mut sim = lost_after_60s();
    let (node, _) = one_running(&mut sim);
    sim.disconnect(&node);
    assert_eq!(sim.node_state(&node), NodeState::Unknown);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);

    sim.advance(59);
    let a = sim.tick();
    assert!(!a.changed && a.effects.is_empty());
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);

    sim.advance(1);
    sim.tick();
    assert!(sim.core.node_placement(&node).is_none());
    assert!(sim
        .last
        .contains(&Effect::RemoveNode { node: node.clone() }));
    assert_eq!(sim.last_provisions().len(), 1);
    let t = sim.task_view("j", "t1");
    assert_eq!(
        (t.state, t.execution_info.requeue_count),
        (TaskState::Active, 1)
    );

    sim.connect_all();
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.counts("j").succeeded, 1);
}

/// A node that comes back in time and still runs its task loses nothing: the task keeps its
/// attempt, nothing is requeued, and later ticks do not declare it lost.
#[test]
fn reconnect_before_the_deadline_keeps_running_tasks() {
    let mut sim = lost_after_60s();
    let (node, run) = one_running(&mut sim);
    sim.disconnect(&node);
    sim.advance(30);
    sim.hello(&node, vec![run], vec![]);
    assert!(sim.last.is_empty(), "nothing to do: {:?}", sim.last);
    assert_eq!(sim.node_state(&node), NodeState::Running);
    let t = sim.task_view("j", "t1");
    assert_eq!(
        (t.state, t.execution_info.requeue_count),
        (TaskState::Running, 0)
    );

    sim.advance(120);
    let a = sim.tick();
    assert!(!a.changed);
    assert_eq!(sim.run_of("j", "t1"), run);
    sim.finish(run, 0);
    assert_eq!(sim.counts("j").succeeded, 1);
    assert_eq!(sim.node_state(&node), NodeState::Idle);
}

/// A node that comes back and reports that the task finished while it was away completes the
/// task, once: the agent's resend of the same result is ignored.
#[test]
fn reconnect_with_a_finished_run_completes_it_once() {
    let mut sim = lost_after_60s();
    let (node, run) = one_running(&mut sim);
    let started = sim.now;
    sim.disconnect(&node);
    sim.advance(20);
    let result = sim.result(started, 0);
    sim.hello(&node, vec![], vec![(run, result.clone())]);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
    assert_eq!(t.execution_info.requeue_count, 0);
    assert_eq!(sim.node_state(&node), NodeState::Idle);
    let n = sim.node_view(&node);
    assert_eq!((n.total_tasks_run, n.total_tasks_succeeded), (1, 1));

    let again = sim.ok(Input::TaskCompleted {
        node: node.clone(),
        run,
        result,
    });
    assert!(!again.changed);
    assert_eq!(sim.counts("j").completed, 1);
    assert_eq!(sim.node_view(&node).total_tasks_run, 1);
}

/// An agent that restarted and forgot a run (it is neither running nor finished there) gets
/// the task back: it is requeued and runs again.
#[test]
fn reconnect_without_a_run_requeues_it() {
    let mut sim = Sim::new();
    let (node, run) = one_running(&mut sim);
    sim.disconnect(&node);
    sim.hello(&node, vec![], vec![]);
    let t = sim.task_view("j", "t1");
    assert_eq!(
        t.state,
        TaskState::Running,
        "requeued and started again at once"
    );
    assert_eq!(t.execution_info.requeue_count, 1);
    assert_ne!(sim.run_of("j", "t1"), run);
}

/// An agent that runs something the server does not know (a run it was told to kill before a
/// crash) is told to kill it.
#[test]
fn reconnect_with_an_unknown_run_kills_it() {
    let mut sim = Sim::new();
    let (node, run) = one_running(&mut sim);
    sim.disconnect(&node);
    sim.hello(&node, vec![run, 9999], vec![]);
    assert_eq!(
        sim.last,
        vec![Effect::KillTask {
            node: node.clone(),
            run: 9999
        }]
    );
    assert_eq!(sim.run_of("j", "t1"), run);
}

/// After a server restart every node is `unknown` until its agent dials in again; agents that
/// come back keep their tasks, one that never does is lost after the deadline.
#[test]
fn server_restart_then_agents_reconnect() {
    let mut sim = lost_after_60s();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    sim.connect_all();
    let (n1, n2) = (sim.provisioned[0].clone(), sim.provisioned[1].clone());
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 2)));
    let r1 = sim.run_of("j", "t1");

    sim.ok(Input::ServerRestarted);
    sim.connected.clear();
    assert_eq!(sim.node_states("p"), vec![NodeState::Unknown; 2]);
    sim.advance(10);
    sim.hello(&n1, vec![r1], vec![]);
    assert_eq!(sim.node_state(&n1), NodeState::Running);
    sim.advance(50);
    sim.tick();
    assert!(sim.core.node_placement(&n2).is_none(), "n2 never came back");
    assert!(sim.core.node_placement(&n1).is_some());
    assert_eq!(sim.task_view("j", "t2").execution_info.requeue_count, 1);
    assert_eq!(sim.run_of("j", "t1"), r1);
    sim.connect_all();
    sim.finish_all(0);
    assert_eq!(sim.counts("j").succeeded, 2);
}

/// Azure: allocating a node may take minutes; the pool's `resizeTimeout` (15 minutes by default)
/// bounds it. A node the provider is still bringing up has never connected, so it has not
/// "lost contact": it must not be declared lost and replaced after `node_lost_after` (a minute
/// by default), which would replace every slow node (a VM booting, a Slurm allocation waiting in
/// the queue) again and again.
#[test]
fn a_node_being_created_is_not_lost_before_the_resize_timeout() {
    let mut sim = lost_after_60s();
    sim.ok(Input::CreatePool(Box::new(pool(json!({
        "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 1, "resizeTimeout": "PT15M",
    })))));
    let node = sim.provisioned[0].clone();
    for _ in 0..10 {
        sim.advance(60);
        sim.tick();
    }
    assert_eq!(
        sim.provisioned.len(),
        1,
        "nodes provisioned: {:?}",
        sim.provisioned
    );
    assert_eq!(sim.node_state(&node), NodeState::Creating);
    sim.connect(&node);
    assert_eq!(sim.node_state(&node), NodeState::Idle);
}
