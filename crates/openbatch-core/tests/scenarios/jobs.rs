//! Jobs: terminate, complete when all tasks are done, delete.

use openbatch_api::models::{ExecutionResult, JobState, TaskState};
use openbatch_core::{CoreError, Input};
use serde_json::json;

use crate::common::*;

/// Pool `p` of two connected one-slot nodes and job `j` (body extras merged in).
fn setup(job_extra: serde_json::Value) -> Sim {
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

fn terminate(job: &str) -> Input {
    Input::TerminateJob {
        id: job.into(),
        reason: None,
    }
}

/// Azure terminate job: the job is `terminating` while its running tasks are killed, then
/// `completed` with `terminateReason = UserTerminate`. Killed tasks complete as failed
/// (`TaskEnded`); tasks still `active` stay active and are never scheduled; no task can be
/// added any more.
#[test]
fn terminate_job_kills_running_tasks_and_completes_when_the_last_reports() {
    let mut sim = setup(json!({}));
    sim.ok(add("j", simple_tasks("t", 3)));
    let (r1, r2) = (sim.run_of("j", "t1"), sim.run_of("j", "t2"));

    sim.advance(1);
    sim.ok(terminate("j"));
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, vec![r1, r2]);
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Terminating);
    assert_eq!(j.previous_state, Some(JobState::Active));

    sim.advance(1);
    sim.finish(r1, 137);
    assert_eq!(sim.job_view("j").state, JobState::Terminating);
    assert!(sim.last_run_tasks().is_empty(), "t3 must not start");

    sim.advance(1);
    sim.finish(r2, 137);
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    let exec = j.execution_info.unwrap();
    assert_eq!(exec.terminate_reason.as_deref(), Some("UserTerminate"));
    assert_eq!(exec.end_time, Some(sim.now));
    for t in ["t1", "t2"] {
        let v = sim.task_view("j", t);
        assert_eq!(v.state, TaskState::Completed);
        assert_eq!(
            v.execution_info.failure_info.unwrap().code.as_deref(),
            Some("TaskEnded")
        );
    }
    assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
    assert!(sim.last_run_tasks().is_empty());

    assert_eq!(
        sim.refused(add("j", simple_tasks("late", 1))),
        CoreError::JobCompleted("j".into())
    );
    assert_eq!(
        sim.refused(terminate("j")),
        CoreError::JobCompleted("j".into())
    );
}

/// Azure: a job with nothing running completes at once; the reason given is kept.
#[test]
fn terminate_an_idle_job_completes_it_at_once() {
    let mut sim = setup(json!({}));
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: Some("done here".into()),
    });
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(
        j.execution_info.unwrap().terminate_reason.as_deref(),
        Some("done here")
    );
}

/// Azure `onAllTasksComplete = terminatejob`: when the last task completes (success or not),
/// the job completes with `terminateReason = AllTasksComplete`. With `noaction` it stays active.
#[test]
fn on_all_tasks_complete_terminatejob_completes_the_job() {
    let mut sim = setup(json!({"onAllTasksComplete": "terminatejob"}));
    sim.ok(Input::CreateJob(Box::new(simple_job("stays", "p"))));
    sim.ok(add("j", simple_tasks("t", 3)));
    sim.ok(add("stays", simple_tasks("s", 1)));
    assert_eq!(sim.job_view("j").state, JobState::Active);

    sim.finish_task("j", "t1", 0);
    sim.finish_task("j", "t2", 1);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.advance(3);
    sim.finish_task("j", "t3", 0);
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    let exec = j.execution_info.unwrap();
    assert_eq!(exec.terminate_reason.as_deref(), Some("AllTasksComplete"));
    assert_eq!(exec.end_time, Some(sim.now));
    let c = sim.counts("j");
    assert_eq!((c.succeeded, c.failed), (2, 1));

    sim.finish_task("stays", "s1", 0);
    assert_eq!(sim.job_view("stays").state, JobState::Active);
}

/// A task that is retried is not complete: `terminatejob` waits for its last attempt.
#[test]
fn on_all_tasks_complete_waits_for_retries() {
    let mut sim = setup(json!({"onAllTasksComplete": "terminatejob"}));
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "t1", "commandLine": "x", "constraints": {"maxTaskRetryCount": 1}}),
        )],
    ));
    sim.finish_task("j", "t1", 1);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(
        sim.task_view("j", "t1").execution_info.result,
        Some(ExecutionResult::Success)
    );
}

/// Terminating the last unfinished task of a `terminatejob` job completes the job too.
#[test]
fn on_all_tasks_complete_after_terminating_the_last_task() {
    let mut sim = setup(json!({"onAllTasksComplete": "terminatejob"}));
    sim.ok(add("j", simple_tasks("t", 1)));
    let run = sim.run_of("j", "t1");
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "t1".into(),
    });
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.finish(run, 137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
}

/// Azure delete job: the job is `deleting` while its running tasks are killed (its id cannot be
/// reused meanwhile), then it is gone.
#[test]
fn delete_job_goes_through_deleting_then_disappears() {
    let mut sim = setup(json!({}));
    sim.ok(add("j", simple_tasks("t", 3)));
    let runs = vec![sim.run_of("j", "t1"), sim.run_of("j", "t2")];
    sim.ok(Input::DeleteJob { id: "j".into() });
    let mut kills = sim.last_kills();
    kills.sort();
    assert_eq!(kills, runs);
    assert_eq!(sim.job_view("j").state, JobState::Deleting);
    assert_eq!(
        sim.refused(Input::CreateJob(Box::new(simple_job("j", "p")))),
        CoreError::JobBeingDeleted("j".into())
    );
    assert_eq!(
        sim.refused(add("j", simple_tasks("x", 1))),
        CoreError::JobBeingDeleted("j".into())
    );
    sim.finish(runs[0], 137);
    assert_eq!(sim.job_view("j").state, JobState::Deleting);
    assert!(sim.last_run_tasks().is_empty(), "t3 must not start");
    sim.finish(runs[1], 137);
    assert_eq!(
        sim.core.job("j", &urls()).unwrap_err(),
        CoreError::JobNotFound("j".into())
    );
    // The id is free again, and the nodes are idle.
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    assert!(sim.tasks("j").is_empty());
    assert!(sim
        .nodes("p")
        .iter()
        .all(|n| n.running_task_slots_count == 0));
}

/// A job with nothing running is deleted at once.
#[test]
fn delete_an_idle_job_is_immediate() {
    let mut sim = setup(json!({}));
    sim.ok(Input::DeleteJob { id: "j".into() });
    assert!(sim.core.job("j", &urls()).is_err());
}

/// A terminating job completes when it has no running task left, however that task went away:
/// deleting the task whose kill it waits for must not leave it `terminating` forever.
#[test]
fn a_terminating_job_completes_when_its_last_running_task_is_deleted() {
    let mut sim = setup(json!({}));
    sim.ok(add("j", simple_tasks("t", 1)));
    let run = sim.run_of("j", "t1");
    sim.ok(terminate("j"));
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    sim.finish(run, 137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
}

/// The same for a job being deleted: it must disappear once its last run is gone.
#[test]
fn a_deleting_job_disappears_when_its_last_running_task_is_deleted() {
    let mut sim = setup(json!({}));
    sim.ok(add("j", simple_tasks("t", 1)));
    let run = sim.run_of("j", "t1");
    sim.ok(Input::DeleteJob { id: "j".into() });
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    sim.finish(run, 137);
    assert!(
        sim.core.job("j", &urls()).is_err(),
        "job still there: {:?}",
        sim.job_view("j").state
    );
}
