//! A job's completion rules: `onAllTasksComplete` (also switched on by an update),
//! `constraints.maxWallClockTime` and `constraints.maxTaskRetryCount`, as the Azure Batch REST
//! reference of `BatchJob`, `BatchJobConstraints` and `BatchJobUpdateOptions` describes them.

use openbatch_api::models::{JobState, TaskState};
use openbatch_core::Input;
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of two connected one-slot nodes and job `j` (body extras merged in).
fn setup(job_extra: Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    sim.connect_all();
    let mut body = json!({"id": "j", "poolInfo": {"poolId": "p"}});
    body.as_object_mut()
        .unwrap()
        .extend(job_extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(body))));
    sim
}

fn patch(sim: &mut Sim, body: Value) {
    sim.ok(Input::UpdateJob {
        id: "j".into(),
        update: Box::new(serde_json::from_value(body).unwrap()),
        replace: false,
    });
}

fn terminate_reason(sim: &Sim) -> Option<String> {
    sim.job_view("j").execution_info.unwrap().terminate_reason
}

/// `maxWallClockTime`: "If the Job does not complete within the time limit, the Batch service
/// terminates it and any Tasks that are still running. In this case, the termination reason
/// will be MaxWallClockTimeExpiry." The limit counts from the job's creation; time reaches the
/// core as ticks.
#[test]
fn max_wall_clock_time_terminates_the_job() {
    let mut sim = setup(json!({"constraints": {"maxWallClockTime": "PT10M"}}));
    sim.ok(add("j", simple_tasks("t", 3)));
    let running = [sim.run_of("j", "t1"), sim.run_of("j", "t2")];
    sim.advance(599);
    assert!(!sim.tick().changed, "not yet");
    sim.advance(1);
    let applied = sim.tick();
    assert!(applied.changed);
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, running.to_vec());
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    assert_eq!(
        terminate_reason(&sim).as_deref(),
        Some("MaxWallClockTimeExpiry")
    );
    sim.finish_all(137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
    sim.advance(600);
    assert!(!sim.tick().changed, "a completed job expires once");
}

/// The limit is one of the job's updatable constraints; a disabled job expires too.
#[test]
fn an_updated_wall_clock_limit_applies_to_a_disabled_job() {
    let mut sim = setup(json!({}));
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: openbatch_api::models::DisableJobOption::Requeue,
    });
    sim.advance(3600);
    assert!(!sim.tick().changed, "no limit");
    patch(
        &mut sim,
        json!({"constraints": {"maxWallClockTime": "PT30M"}}),
    );
    let applied = sim.tick();
    assert!(applied.changed);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(
        terminate_reason(&sim).as_deref(),
        Some("MaxWallClockTimeExpiry")
    );
}

/// Azure's advice for `onAllTasksComplete`: "set onAllTasksComplete to noaction and update the
/// Job properties to set onAllTasksComplete to terminatejob once you have finished adding
/// Tasks". Switched on when every task is already done, the job ends at once.
#[test]
fn switching_on_terminatejob_ends_a_job_whose_tasks_are_done() {
    let mut sim = setup(json!({"onAllTasksComplete": "noaction"}));
    sim.ok(add("j", simple_tasks("t", 2)));
    sim.finish_all(0);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    patch(&mut sim, json!({"onAllTasksComplete": "terminatejob"}));
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(
        j.execution_info.unwrap().terminate_reason.as_deref(),
        Some("AllTasksComplete")
    );
}

/// Switched on while work is left, the job ends when its last task completes.
#[test]
fn switching_on_terminatejob_with_work_left_waits_for_it() {
    let mut sim = setup(json!({}));
    sim.ok(add("j", simple_tasks("t", 3)));
    patch(&mut sim, json!({"onAllTasksComplete": "terminatejob"}));
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.finish_task("j", "t1", 0);
    sim.finish_task("j", "t2", 1);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.finish_task("j", "t3", 0);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(terminate_reason(&sim).as_deref(), Some("AllTasksComplete"));
}

/// "Note that if a Job contains no Tasks, then all Tasks are considered complete": switching
/// `terminatejob` on for an empty job ends it. A job *created* with `terminatejob` is not ended
/// before its first task (ours: that would race with the tasks its creator adds next), and a
/// PUT that keeps `terminatejob` as it was (a read-modify-write of another property) does not
/// end it either.
#[test]
fn an_empty_job_ends_when_terminatejob_is_switched_on_not_when_created_with_it() {
    let mut sim = setup(json!({"onAllTasksComplete": "terminatejob"}));
    sim.advance(60);
    sim.tick();
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.ok(Input::UpdateJob {
        id: "j".into(),
        update: Box::new(
            serde_json::from_value(json!({
                "poolInfo": {"poolId": "p"}, "priority": 3, "onAllTasksComplete": "terminatejob"
            }))
            .unwrap(),
        ),
        replace: true,
    });
    assert_eq!(sim.job_view("j").state, JobState::Active);

    sim.ok(Input::CreateJob(Box::new(simple_job("k", "p"))));
    sim.ok(Input::UpdateJob {
        id: "k".into(),
        update: Box::new(
            serde_json::from_value(json!({"onAllTasksComplete": "terminatejob"})).unwrap(),
        ),
        replace: false,
    });
    let k = sim.job_view("k");
    assert_eq!(k.state, JobState::Completed);
    assert_eq!(
        k.execution_info.unwrap().terminate_reason.as_deref(),
        Some("AllTasksComplete")
    );
}

/// `constraints.maxTaskRetryCount` of the job is the default for tasks that do not set their
/// own; a task's own count wins, 0 included.
#[test]
fn the_jobs_max_task_retry_count_is_the_default_for_its_tasks() {
    let mut sim = setup(json!({"constraints": {"maxTaskRetryCount": 2}}));
    sim.ok(add(
        "j",
        vec![
            simple_task("inherits"),
            task(json!({"id": "own", "commandLine": "x", "constraints": {"maxTaskRetryCount": 0}})),
        ],
    ));
    assert_eq!(
        sim.task_view("j", "inherits")
            .constraints
            .max_task_retry_count,
        Some(2)
    );
    sim.finish_task("j", "own", 1);
    assert_eq!(sim.task_state("j", "own"), TaskState::Completed);
    for attempt in 0..3 {
        assert_eq!(
            sim.task_state("j", "inherits"),
            TaskState::Running,
            "{attempt}"
        );
        sim.finish_task("j", "inherits", 1);
    }
    let t = sim.task_view("j", "inherits");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.retry_count, 2);
}
