//! Why a task is not running (`explain`), and tasks that never can run failing fast.

use openbatch_api::models::{
    DisableJobOption, ErrorCategory, ExecutionResult, ExplainReason, TaskExplanation, TaskState,
};
use openbatch_core::Input;
use serde_json::json;

use crate::common::*;

/// Pool `p` of `nodes` connected nodes with `slots` slots each, and job `j` on it.
fn setup(nodes: i32, slots: i32, job_extra: serde_json::Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, slots))));
    sim.connect_all();
    let mut spec = json!({"id": "j", "poolInfo": {"poolId": "p"}});
    spec.as_object_mut()
        .unwrap()
        .extend(job_extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(spec))));
    sim
}

fn explain(sim: &Sim, job: &str, task: &str) -> TaskExplanation {
    sim.core.explain_task(job, task).expect("the task exists")
}

fn slots_task(id: &str, slots: i32) -> openbatch_api::models::TaskCreate {
    task(json!({"id": id, "commandLine": "x", "requiredSlots": slots}))
}

/// openbatch extension (Azure accepts such a task and never runs it): a task that needs more
/// slots than a node of its pool has completes at once, failed, with a clear reason.
#[test]
fn a_task_needing_more_slots_than_a_node_has_fails_at_once() {
    let mut sim = setup(1, 2, json!({}));
    sim.ok(add("j", vec![slots_task("huge", 3), simple_task("t1")]));
    let t = sim.task_view("j", "huge");
    assert_eq!(t.state, TaskState::Completed);
    let exec = t.execution_info;
    assert_eq!(exec.result, Some(ExecutionResult::Failure));
    let f = exec.failure_info.expect("failure info");
    assert_eq!(f.category, ErrorCategory::UserError);
    assert_eq!(f.code.as_deref(), Some("TaskRequiresMoreSlotsThanNodeHas"));
    assert!(f.message.unwrap().contains("requires 3 slots"));
    assert_eq!(sim.counts("j").failed, 1);
    // The small one behind it runs as usual.
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
    let x = explain(&sim, "j", "huge");
    assert_eq!(x.reason, ExplainReason::Completed);
    assert_eq!(x.result, Some(ExecutionResult::Failure));
}

/// A task whose job is disabled is not checked until it would be queued: enabling the job
/// completes it. Exit conditions see it as a pre-processing error.
#[test]
fn a_never_runnable_task_fails_when_its_job_is_enabled_and_takes_its_exit_conditions() {
    let mut sim = setup(
        1,
        1,
        json!({"onTaskFailure": "performexitoptionsjobaction"}),
    );
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: DisableJobOption::Requeue,
    });
    sim.ok(add(
        "j",
        vec![task(json!({
            "id": "huge", "commandLine": "x", "requiredSlots": 2,
            "exitConditions": {"preProcessingError": {"jobAction": "none"}}
        }))],
    ));
    assert_eq!(sim.task_state("j", "huge"), TaskState::Active);
    assert_eq!(
        explain(&sim, "j", "huge").reason,
        ExplainReason::JobNotActive
    );
    sim.ok(Input::EnableJob { id: "j".into() });
    assert_eq!(sim.task_state("j", "huge"), TaskState::Completed);
    // `jobAction: none` for pre-processing errors: the job stays active.
    assert_eq!(
        sim.job_view("j").state,
        openbatch_api::models::JobState::Active
    );
}

/// Shrinking a pool's `taskSlotsPerNode` (allowed while it has no nodes) fails the queued
/// tasks that no longer fit, and only those.
#[test]
fn shrinking_task_slots_per_node_fails_queued_tasks_that_no_longer_fit() {
    let mut sim = setup(0, 4, json!({}));
    sim.ok(add("j", vec![slots_task("four", 4), slots_task("two", 2)]));
    assert_eq!(explain(&sim, "j", "four").reason, ExplainReason::NoNodes);
    sim.ok(Input::UpdatePool {
        id: "p".into(),
        patch: Box::new(serde_json::from_value(json!({"taskSlotsPerNode": 2})).unwrap()),
    });
    assert_eq!(sim.task_state("j", "four"), TaskState::Completed);
    assert_eq!(sim.task_state("j", "two"), TaskState::Active);
    assert_eq!(explain(&sim, "j", "two").reason, ExplainReason::NoNodes);
}

/// A running task says where; a completed one how it ended.
#[test]
fn explain_running_and_completed() {
    let mut sim = setup(1, 1, json!({}));
    sim.ok(add("j", vec![simple_task("a")]));
    let x = explain(&sim, "j", "a");
    assert_eq!(x.reason, ExplainReason::Running);
    assert_eq!(x.node_id.as_deref(), Some(sim.node_of("j", "a").as_str()));
    sim.finish_task("j", "a", 3);
    let x = explain(&sim, "j", "a");
    assert_eq!(x.reason, ExplainReason::Completed);
    assert_eq!(x.exit_code, Some(3));
    assert_eq!(x.result, Some(ExecutionResult::Failure));
}

/// A task waiting for dependencies names the unmet ones, ranges with their first gap, and the
/// ones that completed without satisfying it.
#[test]
fn explain_waiting_for_dependencies() {
    let mut sim = setup(1, 1, json!({"usesTaskDependencies": true}));
    sim.ok(add(
        "j",
        vec![
            simple_task("a"),
            simple_task("1"),
            task(json!({
                "id": "d", "commandLine": "x",
                "dependsOn": {"taskIds": ["a", "missing"], "taskIdRanges": [{"start": 1, "end": 3}]}
            })),
        ],
    ));
    let x = explain(&sim, "j", "d");
    assert_eq!(x.reason, ExplainReason::WaitingForDependencies);
    let deps = x.dependencies.expect("dependencies");
    assert_eq!(deps.unmet_task_ids, vec!["a", "missing"]);
    assert_eq!(deps.unmet_task_id_count, 2);
    assert!(deps.blocking_task_ids.is_empty());
    assert_eq!(deps.unmet_ranges.len(), 1);
    assert_eq!(deps.unmet_ranges[0].first_unmet, 1);

    sim.finish_task("j", "a", 1);
    let deps = explain(&sim, "j", "d").dependencies.unwrap();
    assert_eq!(deps.blocking_task_ids, vec!["a"]);
    sim.finish_all(0);
    let deps = explain(&sim, "j", "d").dependencies.unwrap();
    assert_eq!(deps.unmet_ranges[0].first_unmet, 2);
}

/// A terminating or disabled job holds its tasks back.
#[test]
fn explain_job_not_active() {
    let mut sim = setup(0, 1, json!({}));
    sim.ok(add("j", vec![simple_task("a")]));
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: DisableJobOption::Requeue,
    });
    let x = explain(&sim, "j", "a");
    assert_eq!(x.reason, ExplainReason::JobNotActive);
    assert_eq!(x.job_state, Some(openbatch_api::models::JobState::Disabled));
}

/// A job at its `maxParallelTasks` holds the rest back, even with free slots.
#[test]
fn explain_job_at_max_parallel_tasks() {
    let mut sim = setup(1, 4, json!({"maxParallelTasks": 1}));
    sim.ok(add("j", simple_tasks("t", 2)));
    let x = explain(&sim, "j", "t2");
    assert_eq!(x.reason, ExplainReason::JobAtMaxParallelTasks);
    assert_eq!((x.max_parallel_tasks, x.running_tasks), (Some(1), Some(1)));
    assert_eq!(x.pool.unwrap().free_slots, 3);
}

/// No node at all (the pool resizing to some, or to none), and nodes that are not ready.
#[test]
fn explain_no_nodes_and_no_node_ready() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 0, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", vec![simple_task("a")]));
    let x = explain(&sim, "j", "a");
    assert_eq!(x.reason, ExplainReason::NoNodes);
    assert!(x.message.contains("has no nodes"), "{}", x.message);

    sim.ok(Input::ResizePool {
        id: "p".into(),
        resize: serde_json::from_value(json!({"targetDedicatedNodes": 2})).unwrap(),
    });
    // Provisioned but not connected yet: the nodes exist and cannot take tasks.
    let x = explain(&sim, "j", "a");
    assert_eq!(x.reason, ExplainReason::NoNodeReady);
    let p = x.pool.unwrap();
    assert_eq!((p.nodes, p.schedulable_nodes), (2, 0));
    sim.connect_all();
    assert_eq!(explain(&sim, "j", "a").reason, ExplainReason::Running);
}

/// Waiting for a slot: the position counts the runnable tasks ahead in scheduling order (higher
/// priority jobs first, then older tasks of the same job), and the pool's slots.
#[test]
fn explain_waiting_for_a_slot_gives_queue_position_and_capacity() {
    let mut sim = setup(2, 2, json!({}));
    sim.ok(Input::CreateJob(Box::new(job(
        json!({"id": "urgent", "poolInfo": {"poolId": "p"}, "priority": 100}),
    ))));
    // Fill the pool: 4 slots.
    sim.ok(add("j", simple_tasks("run", 4)));
    sim.ok(add(
        "j",
        vec![simple_task("w1"), slots_task("w2", 2), simple_task("w3")],
    ));
    sim.ok(add("urgent", simple_tasks("u", 2)));
    let x = explain(&sim, "j", "w3");
    assert_eq!(x.reason, ExplainReason::WaitingForSlot);
    // Ahead: u1, u2 (higher priority job), then w1 and w2.
    assert_eq!(x.tasks_ahead, Some(4));
    let p = x.pool.unwrap();
    assert_eq!((p.free_slots, p.total_slots), (0, 4));
    assert_eq!((p.nodes_that_fit_now, p.nodes_that_could_fit), (0, 2));
    assert_eq!(explain(&sim, "urgent", "u1").tasks_ahead, Some(0));
    assert_eq!(explain(&sim, "j", "w1").tasks_ahead, Some(2));
    assert!(explain(&sim, "j", "w2").message.contains("2 free slot(s)"));
}

/// Explaining an unknown task or job is the usual not-found error.
#[test]
fn explain_unknown_task_is_not_found() {
    let sim = setup(0, 1, json!({}));
    assert!(sim.core.explain_task("j", "nope").is_err());
    assert!(sim.core.explain_task("nope", "a").is_err());
}

/// A job may name a pool that does not exist yet: its tasks wait (`poolNotFound`), and when
/// the pool is created, those that need more slots than its nodes have fail at once.
#[test]
fn a_pool_created_later_fails_the_tasks_it_can_never_run() {
    let mut sim = Sim::new();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "later"))));
    sim.ok(add("j", vec![slots_task("big", 2), simple_task("small")]));
    assert_eq!(
        explain(&sim, "j", "big").reason,
        ExplainReason::PoolNotFound
    );
    sim.ok(Input::CreatePool(Box::new(simple_pool("later", 0, 1))));
    assert_eq!(sim.task_state("j", "big"), TaskState::Completed);
    assert_eq!(sim.task_state("j", "small"), TaskState::Active);
    assert_eq!(explain(&sim, "j", "small").reason, ExplainReason::NoNodes);
}
