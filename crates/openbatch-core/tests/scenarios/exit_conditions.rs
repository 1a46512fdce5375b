//! Exit conditions (`exitConditions`) and the job's `onTaskFailure`, as the Azure Batch REST
//! reference of `ExitConditions`, `ExitOptions` and `BatchJobActionKind`, and the "Dependency
//! actions" section of the task dependencies article, describe them.

use openbatch_api::models::{ErrorCategory, FailureInfo, JobState, TaskCreate, TaskState};
use openbatch_core::Input;
use serde_json::{json, Value};

use crate::common::*;

/// Pool `p` of `nodes` connected one-slot nodes and job `j` with `usesTaskDependencies` (body
/// extras merged in).
fn setup(nodes: i32, job_extra: Value) -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", nodes, 1))));
    sim.connect_all();
    let mut body = json!({"id": "j", "poolInfo": {"poolId": "p"}, "usesTaskDependencies": true});
    body.as_object_mut()
        .unwrap()
        .extend(job_extra.as_object().unwrap().clone());
    sim.ok(Input::CreateJob(Box::new(job(body))));
    sim
}

fn with_exits(id: &str, exit_conditions: Value) -> TaskCreate {
    task(json!({"id": id, "commandLine": "/bin/true", "exitConditions": exit_conditions}))
}

fn after(id: &str, parent: &str) -> TaskCreate {
    task(json!({"id": id, "commandLine": "/bin/true", "dependsOn": {"taskIds": [parent]}}))
}

fn started(sim: &Sim) -> Vec<String> {
    let mut ids: Vec<String> = sim.last_run_tasks().into_iter().map(|(_, t)| t).collect();
    ids.sort();
    ids
}

/// The article's example: task A blocks its dependents after a pre-processing error or exit
/// codes 10 and 20, and satisfies them after any other ending (`default: satisfy`).
fn article_parent(id: &str) -> TaskCreate {
    with_exits(
        id,
        json!({
            "preProcessingError": {"dependencyAction": "block"},
            "exitCodes": [
                {"code": 10, "exitOptions": {"dependencyAction": "block"}},
                {"code": 20, "exitOptions": {"dependencyAction": "block"}},
            ],
            "default": {"dependencyAction": "satisfy"},
        }),
    )
}

/// "If the parent task exits with any other non-zero error, the dependent task is eligible to
/// run"; with exit code 10 it is blocked.
#[test]
fn the_articles_dependency_actions() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![
            article_parent("a1"),
            after("b1", "a1"),
            article_parent("a2"),
            after("b2", "a2"),
        ],
    ));
    sim.finish_task("j", "a1", 3);
    assert_eq!(started(&sim), vec!["b1"]);
    sim.finish_task("j", "a2", 10);
    assert!(started(&sim).is_empty());
    sim.finish_task("j", "b1", 0);
    assert_eq!(sim.task_state("j", "b2"), TaskState::Active);
    assert_eq!(sim.task_view("j", "a1").execution_info.exit_code, Some(3));
}

/// A pre-processing error (the process never started, say a resource file could not be
/// downloaded) takes `preProcessingError`; without it, `default`.
#[test]
fn a_pre_processing_error_takes_pre_processing_error_options() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![
            article_parent("a"),
            after("b", "a"),
            with_exits("c", json!({"default": {"dependencyAction": "satisfy"}})),
            after("d", "c"),
        ],
    ));
    for parent in ["a", "c"] {
        let run = sim.run_of("j", parent);
        let r = sim.runs.remove(&run).unwrap();
        let mut result = sim.result(r.started, 0);
        result.exit_code = None;
        result.pre_processing_error = true;
        result.failure = Some(FailureInfo {
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
    }
    // a blocks (preProcessingError: block); c satisfies through default.
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
    assert_eq!(sim.task_state("j", "d"), TaskState::Running);
}

/// A file upload error takes `fileUploadError`, unless the exit code is listed: "the action
/// specified by the exit code takes precedence".
#[test]
fn a_file_upload_error_yields_to_a_listed_exit_code() {
    let mut sim = setup(1, json!({}));
    let exits = json!({
        "exitCodes": [{"code": 0, "exitOptions": {"dependencyAction": "satisfy"}}],
        "fileUploadError": {"dependencyAction": "block"},
    });
    sim.ok(add(
        "j",
        vec![
            with_exits("a", exits.clone()),
            after("b", "a"),
            with_exits("c", exits),
            after("d", "c"),
        ],
    ));
    for (parent, code) in [("a", 0), ("c", 4)] {
        let run = sim.run_of("j", parent);
        let r = sim.runs.remove(&run).unwrap();
        let mut result = sim.result(r.started, code);
        result.file_upload_error = true;
        result.failure = Some(FailureInfo {
            category: ErrorCategory::UserError,
            code: Some("FileUploadFailed".into()),
            message: Some("could not upload out.txt".into()),
            details: Vec::new(),
        });
        sim.ok(Input::TaskCompleted {
            node: r.node,
            run,
            result,
        });
        if parent == "a" {
            // Exit code 0 is listed: satisfy, despite the upload error.
            assert_eq!(started(&sim), vec!["b"]);
            sim.finish_task("j", "b", 0);
        }
    }
    assert_eq!(sim.task_state("j", "d"), TaskState::Active);
}

/// "If you want non-default behavior on exit code 0, you must list it explicitly": exit code 0
/// listed as `block` blocks, while `default` never applies to a success.
#[test]
fn exit_code_zero_follows_only_an_explicit_entry() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![
            with_exits(
                "a",
                json!({"exitCodeRanges": [{"start": -5, "end": 5, "exitOptions": {"dependencyAction": "block"}}]}),
            ),
            after("b", "a"),
            with_exits("c", json!({"default": {"dependencyAction": "block"}})),
            after("d", "c"),
        ],
    ));
    sim.finish_task("j", "a", 0);
    sim.finish_task("j", "c", 0);
    assert_eq!(started(&sim), vec!["d"]);
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
}

/// `onTaskFailure: performexitoptionsjobaction` with no exit conditions: a failure's default
/// job action is terminate. The job ends with `terminateReason` `TaskFailed`, its running tasks
/// are killed and its waiting tasks never start.
#[test]
fn a_failure_terminates_the_job_by_default_when_the_job_performs_exit_options() {
    let mut sim = setup(2, json!({"onTaskFailure": "performexitoptionsjobaction"}));
    sim.ok(add("j", simple_tasks("t", 3)));
    let other = sim.run_of("j", "t2");
    sim.advance(1);
    sim.finish_task("j", "t1", 1);
    assert_eq!(sim.last_kills(), vec![other]);
    assert!(started(&sim).is_empty());
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Terminating);
    assert_eq!(
        j.execution_info.unwrap().terminate_reason.as_deref(),
        Some("TaskFailed")
    );
    sim.finish(other, 137);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(sim.task_state("j", "t3"), TaskState::Active);
}

/// The default `onTaskFailure` is `noaction`: a failure changes nothing for the job.
#[test]
fn with_noaction_a_failure_leaves_the_job_alone() {
    let mut sim = setup(1, json!({}));
    sim.ok(add("j", simple_tasks("t", 2)));
    sim.finish_task("j", "t1", 1);
    assert_eq!(started(&sim), vec!["t2"]);
    assert_eq!(sim.job_view("j").state, JobState::Active);
}

/// `jobAction: disable` is "equivalent to calling the disable Job API, with a disableTasks
/// value of requeue": running tasks are killed and go back to active, nothing new starts.
/// Exit code 0 mapped to an action takes it too.
#[test]
fn job_action_disable_requeues_and_an_explicit_success_mapping_counts() {
    let mut sim = setup(2, json!({"onTaskFailure": "performexitoptionsjobaction"}));
    sim.ok(add(
        "j",
        vec![
            with_exits(
                "a",
                json!({"exitCodes": [{"code": 0, "exitOptions": {"jobAction": "disable"}}]}),
            ),
            simple_task("b"),
            simple_task("c"),
        ],
    ));
    let b = sim.run_of("j", "b");
    sim.finish_task("j", "a", 0);
    assert_eq!(sim.last_kills(), vec![b]);
    assert_eq!(sim.job_view("j").state, JobState::Disabled);
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
    assert!(started(&sim).is_empty());
    assert_eq!(sim.task_state("j", "a"), TaskState::Completed);
    // The killed run's late report changes nothing; enabling runs b and c again.
    sim.finish(b, 137);
    sim.ok(Input::EnableJob { id: "j".into() });
    assert_eq!(started(&sim), vec!["b", "c"]);
}

/// `jobAction: none` on a failure keeps the job going; exit-code ranges pick their options.
#[test]
fn job_action_none_for_a_listed_failure() {
    let mut sim = setup(1, json!({"onTaskFailure": "performexitoptionsjobaction"}));
    sim.ok(add(
        "j",
        vec![
            with_exits(
                "a",
                json!({"exitCodeRanges": [{"start": 1, "end": 9, "exitOptions": {"jobAction": "none"}}]}),
            ),
            simple_task("b"),
        ],
    ));
    sim.finish_task("j", "a", 4);
    assert_eq!(started(&sim), vec!["b"]);
    // b has no exit conditions: its failure takes the default job action, terminate.
    sim.finish_task("j", "b", 12);
    let j = sim.job_view("j");
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(
        j.execution_info.unwrap().terminate_reason.as_deref(),
        Some("TaskFailed")
    );
}

/// Exit conditions apply when the task completes, after its retries: a retried attempt does
/// nothing to the job.
#[test]
fn the_job_action_waits_for_the_last_attempt() {
    let mut sim = setup(
        1,
        json!({"onTaskFailure": "performexitoptionsjobaction", "constraints": {"maxTaskRetryCount": 1}}),
    );
    sim.ok(add("j", simple_tasks("t", 1)));
    sim.finish_task("j", "t1", 1);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    assert_eq!(started(&sim), vec!["t1"]);
    sim.finish_task("j", "t1", 1);
    assert_eq!(sim.job_view("j").state, JobState::Completed);
}

/// Ours, documented in `exits.rs`: a task ended on request fails (`TaskEnded`) and its
/// dependency action follows its exit conditions, but it never triggers a job action.
#[test]
fn a_task_terminated_on_request_triggers_no_job_action() {
    let mut sim = setup(2, json!({"onTaskFailure": "performexitoptionsjobaction"}));
    sim.ok(add(
        "j",
        vec![
            with_exits("a", json!({"default": {"dependencyAction": "satisfy"}})),
            simple_task("busy"),
            after("b", "a"),
        ],
    ));
    let run = sim.run_of("j", "a");
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "a".into(),
    });
    sim.finish(run, 137);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    let a = sim.task_view("j", "a");
    assert_eq!(
        a.execution_info.failure_info.unwrap().code.as_deref(),
        Some("TaskEnded")
    );
    assert_eq!(started(&sim), vec!["b"], "default: satisfy");
}

/// "If the Job's onTaskFailed property is noaction, then specifying this property returns an
/// error and the add Task request fails with an invalid property value error". A range that
/// ends before it starts is invalid too.
#[test]
fn exit_conditions_are_validated() {
    let mut sim = setup(1, json!({}));
    let err = |sim: &mut Sim, exits: Value| {
        let applied = sim.ok(add("j", vec![with_exits("t", exits)]));
        let openbatch_core::Reply::TaskResults(r) = applied.reply else {
            panic!()
        };
        r[0].error.as_ref().map(|e| {
            (
                e.code.clone().unwrap(),
                e.values
                    .iter()
                    .find(|v| v.key.as_deref() == Some("PropertyName"))
                    .and_then(|v| v.value.clone())
                    .unwrap(),
            )
        })
    };
    assert_eq!(
        err(&mut sim, json!({"default": {"jobAction": "terminate"}})),
        Some((
            "InvalidPropertyValue".into(),
            "exitConditions.default.jobAction".into()
        ))
    );
    assert_eq!(
        err(
            &mut sim,
            json!({"exitCodes": [{"code": 3, "exitOptions": {"jobAction": "disable"}}]})
        ),
        Some((
            "InvalidPropertyValue".into(),
            "exitConditions.exitCodes.exitOptions.jobAction".into()
        ))
    );
    assert_eq!(
        err(
            &mut sim,
            json!({"exitCodeRanges": [{"start": 9, "end": 1, "exitOptions": {}}]})
        ),
        Some((
            "InvalidPropertyValue".into(),
            "exitConditions.exitCodeRanges".into()
        ))
    );
    // `none` asks for nothing and is accepted.
    assert_eq!(
        err(&mut sim, json!({"default": {"jobAction": "none"}})),
        None
    );
}
