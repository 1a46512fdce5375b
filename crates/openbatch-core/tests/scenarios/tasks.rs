//! Tasks: the lifecycle, retries, terminating and deleting.

use openbatch_api::models::{ErrorCategory, ExecutionResult, NodeState, TaskState};
use openbatch_core::{CoreError, Effect, Input};
use serde_json::json;

use crate::common::*;

/// A pool `p` of `nodes` connected one-slot nodes and a job `j` (`job` body extras merged in).
fn setup(nodes: i32, job_extra: serde_json::Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, 1))));
    sim.connect_all();
    let mut body = json!({"id": "j", "poolInfo": {"poolId": "p"}});
    body.as_object_mut()
        .unwrap()
        .extend(job_extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(body))));
    sim
}

/// Azure: a task goes `active` → `running` → `completed`; exit code 0 is success. The task
/// reports where it ran, when, and how; the node counts it and lists it among its recent tasks.
#[test]
fn task_lifecycle_active_running_completed() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "j", "poolInfo": {"poolId": "p"},
        "commonEnvironmentSettings": [{"name": "A", "value": "job"}, {"name": "B", "value": "job"}],
    })))));
    sim.ok(add(
        "j",
        vec![task(json!({
            "id": "t1", "commandLine": "echo hi",
            "environmentSettings": [{"name": "A", "value": "task"}],
            "constraints": {"maxWallClockTime": "PT1M"},
        }))],
    ));
    assert_eq!(sim.task_state("j", "t1"), TaskState::Active);
    let node = sim.pending()[0].clone();
    sim.advance(1);
    let started = sim.now;
    sim.connect(&node);
    match &sim.last[..] {
        [Effect::RunTask { node: n, spec }] => {
            assert_eq!(n, &node);
            assert_eq!((spec.job_id.as_str(), spec.task_id.as_str()), ("j", "t1"));
            assert_eq!(spec.command_line, "echo hi");
            assert_eq!(spec.required_slots, 1);
            assert_eq!(
                spec.max_wall_clock,
                Some(std::time::Duration::from_secs(60))
            );
            // The job's environment, then the task's: the agent applies them in order.
            let env: Vec<(&str, &str)> = spec
                .environment
                .iter()
                .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("")))
                .collect();
            assert_eq!(env, vec![("A", "job"), ("B", "job"), ("A", "task")]);
        }
        other => panic!("expected one RunTask, got {other:?}"),
    }
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.previous_state, Some(TaskState::Active));
    assert_eq!(t.execution_info.start_time, Some(started));
    let info = t.node_info.unwrap();
    assert_eq!(info.node_id.as_deref(), Some(node.as_str()));
    assert_eq!(info.pool_id.as_deref(), Some("p"));
    assert_eq!(
        info.task_root_directory.as_deref(),
        Some("workitems/j/job-1/t1")
    );
    assert_eq!(sim.node_state(&node), NodeState::Running);

    sim.advance(7);
    sim.finish_task("j", "t1", 0);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.previous_state, Some(TaskState::Running));
    assert_eq!(t.execution_info.exit_code, Some(0));
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
    assert_eq!(t.execution_info.end_time, Some(sim.now));
    assert_eq!(t.execution_info.failure_info, None);
    let n = sim.node_view(&node);
    assert_eq!(n.state, NodeState::Idle);
    assert_eq!((n.total_tasks_run, n.total_tasks_succeeded), (1, 1));
    assert_eq!(n.recent_tasks.len(), 1);
    assert_eq!(n.recent_tasks[0].task_id.as_deref(), Some("t1"));
    let c = sim.counts("j");
    assert_eq!((c.completed, c.succeeded, c.failed), (1, 1, 0));
}

/// Azure `maxTaskRetryCount`: a task that exits non-zero is retried that many times (so it runs
/// up to 1 + maxTaskRetryCount times); then it completes as failed with `FailureExitCode`.
#[test]
fn a_failing_task_is_retried_max_task_retry_count_times() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "t1", "commandLine": "false", "constraints": {"maxTaskRetryCount": 2}}),
        )],
    ));
    let mut runs = Vec::new();
    for attempt in 0..3 {
        let run = sim.run_of("j", "t1");
        assert!(!runs.contains(&run), "every attempt is a new run");
        runs.push(run);
        assert_eq!(sim.task_view("j", "t1").execution_info.retry_count, attempt);
        sim.advance(1);
        sim.finish(run, 1);
    }
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.retry_count, 2);
    assert_eq!(t.execution_info.requeue_count, 0);
    assert_eq!(t.execution_info.exit_code, Some(1));
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert!(t.execution_info.last_retry_time.is_some());
    let f = t.execution_info.failure_info.unwrap();
    assert_eq!(f.code.as_deref(), Some("FailureExitCode"));
    assert_eq!(f.category, ErrorCategory::UserError);
    assert!(sim.runs.is_empty(), "no fourth attempt");
    let c = sim.counts("j");
    assert_eq!((c.completed, c.failed, c.succeeded), (1, 1, 0));
    let n = sim.node_view(&sim.provisioned[0]);
    assert_eq!((n.total_tasks_run, n.total_tasks_succeeded), (3, 0));
}

/// A retried task that then succeeds completes as success, its retries counted.
#[test]
fn a_retried_task_can_succeed() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "t1", "commandLine": "flaky", "constraints": {"maxTaskRetryCount": 5}}),
        )],
    ));
    sim.finish_task("j", "t1", 2);
    sim.finish_task("j", "t1", 0);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
    assert_eq!(t.execution_info.retry_count, 1);
    assert_eq!(t.execution_info.failure_info, None);
}

/// Azure: the job's `constraints.maxTaskRetryCount` applies to tasks that set none; a task's
/// own value (even 0) wins.
#[test]
fn the_jobs_max_task_retry_count_applies_when_the_task_has_none() {
    let mut sim = setup(2, json!({"constraints": {"maxTaskRetryCount": 1}}));
    sim.ok(add(
        "j",
        vec![
            simple_task("inherits"),
            task(json!({"id": "own", "commandLine": "false", "constraints": {"maxTaskRetryCount": 0}})),
        ],
    ));
    assert_eq!(
        sim.task_view("j", "inherits")
            .constraints
            .max_task_retry_count,
        Some(1)
    );
    sim.finish_task("j", "inherits", 1);
    let t = sim.task_view("j", "inherits");
    assert_eq!(
        (t.state, t.execution_info.retry_count),
        (TaskState::Running, 1)
    );
    sim.finish_task("j", "own", 1);
    let own = sim.task_view("j", "own");
    assert_eq!(
        (own.state, own.execution_info.retry_count),
        (TaskState::Completed, 0)
    );
    sim.finish_task("j", "inherits", 1);
    let t = sim.task_view("j", "inherits");
    assert_eq!(
        (t.state, t.execution_info.retry_count),
        (TaskState::Completed, 1)
    );
    assert_eq!(sim.counts("j").failed, 2);
}

/// Azure: `maxTaskRetryCount = -1` retries without limit.
#[test]
fn minus_one_retries_forever() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "t1", "commandLine": "false", "constraints": {"maxTaskRetryCount": -1}}),
        )],
    ));
    for attempt in 0..25 {
        assert_eq!(sim.task_view("j", "t1").execution_info.retry_count, attempt);
        sim.finish_task("j", "t1", 1);
        assert_eq!(
            sim.task_state("j", "t1"),
            TaskState::Running,
            "attempt {attempt}"
        );
    }
    sim.finish_task("j", "t1", 0);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.retry_count, 25);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
}

/// An agent's failure report (the process never started) fails the attempt even without an
/// exit code, and counts as a retry.
#[test]
fn a_failure_without_exit_code_fails_the_attempt() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 1)));
    let run = sim.run_of("j", "t1");
    let r = sim.runs.remove(&run).unwrap();
    let mut result = sim.result(r.started, 0);
    result.exit_code = None;
    result.pre_processing_error = true;
    result.failure = Some(openbatch_api::models::FailureInfo {
        category: ErrorCategory::UserError,
        code: Some("ResourceFileDownloadFailed".into()),
        message: Some("could not download input.txt".into()),
        details: Vec::new(),
    });
    sim.ok(Input::TaskCompleted {
        node: r.node,
        run,
        result,
    });
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert_eq!(
        t.execution_info.failure_info.unwrap().code.as_deref(),
        Some("ResourceFileDownloadFailed")
    );
}

/// Azure terminate task, running: the process is killed and the task completes as failed with
/// `TaskEnded` when the kill is reported; it is not retried.
#[test]
fn terminate_a_running_task() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![task(
            json!({"id": "t1", "commandLine": "sleep 1d", "constraints": {"maxTaskRetryCount": 3}}),
        )],
    ));
    let run = sim.run_of("j", "t1");
    let node = sim.provisioned[0].clone();
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "t1".into(),
    });
    assert_eq!(sim.last, vec![Effect::KillTask { node, run }]);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
    sim.advance(1);
    sim.finish(run, 137);
    let t = sim.task_view("j", "t1");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert_eq!(t.execution_info.retry_count, 0);
    assert_eq!(
        t.execution_info.failure_info.unwrap().code.as_deref(),
        Some("TaskEnded")
    );
    assert!(sim.runs.is_empty());
}

/// Azure terminate task, not yet running: it completes at once (failed, `TaskEnded`) and never
/// runs. Terminating a completed task changes nothing.
#[test]
fn terminate_an_active_task() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "t2".into(),
    });
    assert!(sim.last.is_empty());
    let t = sim.task_view("j", "t2");
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert_eq!(
        t.execution_info
            .failure_info
            .as_ref()
            .unwrap()
            .code
            .as_deref(),
        Some("TaskEnded")
    );
    assert!(t.node_info.is_none());
    sim.finish_task("j", "t1", 0);
    assert!(sim.last_run_tasks().is_empty(), "t2 must not run");

    let before = sim.task_view("j", "t2");
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "t2".into(),
    });
    assert_eq!(sim.task_view("j", "t2"), before);
}

/// Azure delete task, running: the process is killed and the task is gone at once; its slot is
/// free again once the node reports the kill.
#[test]
fn delete_a_running_task() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    let run = sim.run_of("j", "t1");
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    assert_eq!(sim.last_kills(), vec![run]);
    assert_eq!(
        sim.core.task("j", "t1", &urls()).unwrap_err(),
        CoreError::TaskNotFound("j".into(), "t1".into())
    );
    assert_eq!(sim.counts("j").running, 0);
    assert!(
        sim.last_run_tasks().is_empty(),
        "the slot is taken until the kill is reported"
    );

    sim.finish(run, 137);
    assert_eq!(
        sim.last_run_tasks(),
        vec![(sim.provisioned[0].clone(), "t2".to_string())]
    );
    assert_eq!(
        sim.refused(Input::DeleteTask {
            job: "j".into(),
            task: "t1".into()
        }),
        CoreError::TaskNotFound("j".into(), "t1".into())
    );
}

/// Azure delete task, waiting: it is gone and never runs.
#[test]
fn delete_an_active_task() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t2".into(),
    });
    assert!(sim.last.is_empty());
    assert_eq!(sim.counts("j").active, 0);
    sim.finish_task("j", "t1", 0);
    assert!(sim.last_run_tasks().is_empty());
    assert_eq!(sim.tasks("j").len(), 1);
}

/// The logs the server keeps of a task's runs go with the task: deleting a task that ran asks
/// for them to be discarded (runs up to now only), deleting one that never ran asks nothing, and
/// a deleted job's logs go as a whole once the job is gone.
#[test]
fn deleted_tasks_and_jobs_discard_their_kept_logs() {
    let discards = |sim: &Sim| -> Vec<(String, Option<String>, u64)> {
        sim.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::DiscardLogs {
                    job,
                    task,
                    before_run,
                } => Some((job.clone(), task.clone(), *before_run)),
                _ => None,
            })
            .collect()
    };
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    let run = sim.run_of("j", "t1");
    sim.finish_task("j", "t1", 0);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t1".into(),
    });
    let d = discards(&sim);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].0.as_str(), d[0].1.as_deref()), ("j", Some("t1")));
    assert!(d[0].2 > run, "the task's own runs are covered");
    sim.ok(add("j", simple_tasks("never", 1)));
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "never1".into(),
    });
    assert!(
        discards(&sim).is_empty(),
        "a task that never ran kept nothing"
    );

    // The job waits for its running task's end; then it is gone, and its logs with it.
    sim.ok(Input::DeleteJob { id: "j".into() });
    assert!(discards(&sim).is_empty());
    sim.finish_all(0);
    assert_eq!(
        discards(&sim)
            .into_iter()
            .map(|(j, t, _)| (j, t))
            .collect::<Vec<_>>(),
        vec![("j".to_string(), None)]
    );
}

/// A task deleted while it runs: its run uploads its logs when it ends, after the discard that
/// the delete asked for, so its end (reported after a restart here) asks for another that
/// covers that run, and only that task's. A later task of the same id keeps its own logs.
#[test]
fn a_run_of_a_deleted_task_discards_the_logs_it_uploads_when_it_ends() {
    let discards = |sim: &Sim| -> Vec<(String, Option<String>, u64)> {
        sim.last
            .iter()
            .filter_map(|fx| match fx {
                Effect::DiscardLogs {
                    job,
                    task,
                    before_run,
                } => Some((job.clone(), task.clone(), *before_run)),
                _ => None,
            })
            .collect()
    };
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", vec![simple_task("T")]));
    let run = sim.run_of("j", "T");
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "t".into(),
    });
    assert_eq!(discards(&sim).len(), 1, "the runs before the delete");
    assert!(!sim.core.keeps_logs_of("j", "T"));
    // The server restarts (snapshot) before the killed run reports.
    sim.core = snapshot(&sim.core);
    sim.finish_as_agent(run, 0);
    assert_eq!(
        discards(&sim),
        vec![("j".to_string(), Some("T".to_string()), run + 1)]
    );
    // Once only; a task created again under the id keeps its logs.
    sim.ok(add("j", vec![simple_task("T")]));
    assert!(sim.core.keeps_logs_of("j", "t"));
    let again = sim.run_of("j", "T");
    assert!(again > run);
    sim.finish(again, 0);
    assert!(discards(&sim).is_empty());
    assert!(sim.core.keeps_logs_of("j", "T"));
    assert!(!sim.core.keeps_logs_of("gone", "T"));
}
