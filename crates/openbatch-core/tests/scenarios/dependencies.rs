//! Task dependencies (`dependsOn`), as the Azure Batch article "Create task dependencies to run
//! tasks that depend on other tasks" and the REST reference of `BatchTaskDependencies` describe
//! them. `Sim` also checks, for every run the core starts, that the task's dependencies were all
//! satisfied at that moment (see `common/invariants.rs`).

use openbatch_api::models::{JobState, TaskCreate, TaskState};
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

/// A task that depends on tasks by id.
fn after(id: &str, ids: &[&str]) -> TaskCreate {
    task(json!({"id": id, "commandLine": "/bin/true", "dependsOn": {"taskIds": ids}}))
}

/// A task that depends on ranges of numeric task ids.
fn after_ranges(id: &str, ranges: &[(i64, i64)]) -> TaskCreate {
    let ranges: Vec<Value> = ranges
        .iter()
        .map(|(s, e)| json!({"start": s, "end": e}))
        .collect();
    task(json!({"id": id, "commandLine": "/bin/true", "dependsOn": {"taskIdRanges": ranges}}))
}

/// Ids of the tasks the last input started.
fn started(sim: &Sim) -> Vec<String> {
    let mut ids: Vec<String> = sim.last_run_tasks().into_iter().map(|(_, t)| t).collect();
    ids.sort();
    ids
}

/// The error code of each task of one `addtaskcollection` (None for success).
fn add_codes(sim: &mut Sim, job: &str, tasks: Vec<TaskCreate>) -> Vec<Option<String>> {
    let applied = sim
        .apply(add(job, tasks))
        .expect("the collection is accepted");
    let openbatch_core::Reply::TaskResults(results) = applied.reply else {
        panic!("not task results")
    };
    results
        .into_iter()
        .map(|r| r.error.and_then(|e| e.code))
        .collect()
}

/// One-to-one: "taskB will not be scheduled for execution until taskA has completed
/// successfully". The dependent waits in `active`, even with a free node.
#[test]
fn a_dependent_waits_in_active_until_its_dependency_succeeds() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![simple_task("taskA"), after("taskB", &["taskA"])],
    ));
    assert_eq!(started(&sim), vec!["taskA"]);
    assert_eq!(sim.task_state("j", "taskB"), TaskState::Active);

    sim.advance(1);
    sim.finish_task("j", "taskA", 0);
    assert_eq!(started(&sim), vec!["taskB"]);
    sim.finish_task("j", "taskB", 0);
    assert_eq!(sim.counts("j").succeeded, 2);
}

/// One-to-many: "Flowers" runs only after both "Rain" and "Sun" have completed successfully;
/// ids are case-insensitive like every Batch id.
#[test]
fn one_to_many_waits_for_every_parent() {
    let mut sim = setup(3, json!({}));
    sim.ok(add(
        "j",
        vec![
            simple_task("Rain"),
            simple_task("Sun"),
            after("Flowers", &["rain", "SUN"]),
        ],
    ));
    assert_eq!(started(&sim), vec!["Rain", "Sun"]);
    sim.finish_task("j", "Sun", 0);
    assert!(started(&sim).is_empty());
    sim.finish_task("j", "Rain", 0);
    assert_eq!(started(&sim), vec!["Flowers"]);
}

/// `taskIds` may name tasks not added yet: the dependent waits for them to be added and to
/// complete (Azure does not check that they exist).
#[test]
fn a_dependency_not_added_yet_is_waited_for() {
    let mut sim = setup(2, json!({}));
    sim.ok(add("j", vec![after("late-child", &["parent"])]));
    assert!(started(&sim).is_empty());
    sim.advance(5);
    sim.ok(add("j", vec![simple_task("parent")]));
    assert_eq!(started(&sim), vec!["parent"]);
    sim.finish_task("j", "parent", 0);
    assert_eq!(started(&sim), vec!["late-child"]);
}

/// By default a failure blocks: "Setting the DependencyAction property to Block indicates that
/// dependent tasks are not eligible to run", and "Batch does not yet support cancellation of
/// dependent tasks", so the dependent stays `active` for good. With `terminatejob` the job
/// never ends on its own; terminating it does.
#[test]
fn a_failed_dependency_blocks_its_dependents_for_good() {
    let mut sim = setup(2, json!({"onAllTasksComplete": "terminatejob"}));
    sim.ok(add("j", vec![simple_task("a"), after("b", &["a"])]));
    sim.finish_task("j", "a", 2);
    assert!(started(&sim).is_empty());
    for _ in 0..5 {
        sim.advance(60);
        sim.tick();
    }
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
    assert_eq!(sim.job_view("j").state, JobState::Active);
    sim.ok(Input::TerminateJob {
        id: "j".into(),
        reason: None,
    });
    assert_eq!(sim.job_view("j").state, JobState::Completed);
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
}

/// A parent's retries come first: a dependent waits for the parent's last attempt, and runs
/// when that one succeeds.
#[test]
fn a_retried_dependency_satisfies_when_its_last_attempt_succeeds() {
    let mut sim = setup(2, json!({"constraints": {"maxTaskRetryCount": 2}}));
    sim.ok(add("j", vec![simple_task("a"), after("b", &["a"])]));
    sim.finish_task("j", "a", 1);
    assert_eq!(started(&sim), vec!["a"], "a is retried, b still waits");
    sim.finish_task("j", "a", 0);
    assert_eq!(started(&sim), vec!["b"]);
}

/// Task ID range: "only tasks with IDs representing integer values will be selected by the
/// range", "leading zeroes are not significant", and "every task in the range must satisfy the
/// dependency". A task of the range that is not added yet is waited for.
#[test]
fn a_range_waits_for_every_integer_in_it() {
    let mut sim = setup(4, json!({}));
    sim.ok(add(
        "j",
        vec![
            simple_task("1"),
            simple_task("2"),
            simple_task("5flamingoes"),
            after_ranges("merge", &[(1, 3)]),
        ],
    ));
    assert_eq!(started(&sim), vec!["1", "2", "5flamingoes"]);
    sim.finish_task("j", "1", 0);
    sim.finish_task("j", "2", 0);
    sim.finish_task("j", "5flamingoes", 0);
    assert_eq!(
        sim.task_state("j", "merge"),
        TaskState::Active,
        "3 is missing"
    );
    sim.ok(add("j", vec![simple_task("003")]));
    assert_eq!(started(&sim), vec!["003"]);
    sim.finish_task("j", "003", 0);
    assert_eq!(started(&sim), vec!["merge"]);
}

/// "Tasks with string identifiers 4, 04 and 004 will all be within the range and they will all
/// be treated as task 4, so the first one to complete will satisfy the dependency."
#[test]
fn any_spelling_of_a_number_satisfies_it() {
    let mut sim = setup(3, json!({}));
    sim.ok(add(
        "j",
        vec![
            simple_task("4"),
            simple_task("004"),
            after_ranges("d", &[(4, 4)]),
        ],
    ));
    sim.finish_task("j", "004", 0);
    assert_eq!(started(&sim), vec!["d"]);
    assert_eq!(sim.task_state("j", "4"), TaskState::Running);
}

/// Ids and ranges together, overlapping ranges and repeated ids: everything listed must be
/// satisfied, each only once.
#[test]
fn ids_and_overlapping_ranges_combine() {
    let mut sim = setup(2, json!({}));
    let mut d = after_ranges("d", &[(1, 3), (2, 4), (1, 3)]);
    d.depends_on.as_mut().unwrap().task_ids = vec!["x".into(), "X".into()];
    sim.ok(add("j", vec![d]));
    for id in ["3", "1", "4", "x", "2"] {
        assert_eq!(sim.task_state("j", "d"), TaskState::Active, "before {id}");
        sim.ok(add("j", vec![simple_task(id)]));
        sim.finish_task("j", id, 0);
    }
    assert_eq!(started(&sim), vec!["d"]);
}

/// A dependency action is decided when the parent completes; terminating a parent that waits
/// ends it as failed (`TaskEnded`), which blocks by default like any failure.
#[test]
fn terminating_a_dependency_blocks_its_dependents() {
    let mut sim = setup(1, json!({}));
    sim.ok(add(
        "j",
        vec![simple_task("busy"), simple_task("a"), after("b", &["a"])],
    ));
    sim.ok(Input::TerminateTask {
        job: "j".into(),
        task: "a".into(),
    });
    sim.finish_task("j", "busy", 0);
    assert!(started(&sim).is_empty());
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
}

/// Ours, documented in `deps.rs`: dependencies are read against the tasks the job has now. A
/// satisfied dependency that is deleted no longer counts for a dependent that has not started;
/// one added again under the same id counts once it completes.
#[test]
fn deleting_a_satisfied_dependency_makes_its_waiting_dependents_wait_for_it_again() {
    let mut sim = setup(2, json!({}));
    sim.ok(add(
        "j",
        vec![simple_task("a"), simple_task("b"), after("c", &["a", "b"])],
    ));
    sim.finish_task("j", "a", 0);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "a".into(),
    });
    sim.finish_task("j", "b", 0);
    assert!(started(&sim).is_empty(), "a is gone");
    sim.ok(add("j", vec![simple_task("a")]));
    sim.finish_task("j", "a", 0);
    assert_eq!(started(&sim), vec!["c"]);
}

/// The same for ranges: a failed task whose exit conditions satisfy, reactivated, stops
/// satisfying until it completes again.
#[test]
fn reactivating_a_satisfying_task_withdraws_it_from_a_range() {
    let mut sim = setup(2, json!({}));
    let satisfy_anyway = |id: &str| {
        task(json!({"id": id, "commandLine": "x",
            "exitConditions": {"default": {"dependencyAction": "satisfy"}}}))
    };
    let mut m = after_ranges("m", &[(1, 2)]);
    m.depends_on.as_mut().unwrap().task_ids = vec!["x".into()];
    sim.ok(add("j", vec![simple_task("1"), satisfy_anyway("2"), m]));
    sim.finish_task("j", "1", 0);
    sim.finish_task("j", "2", 7);
    sim.ok(Input::ReactivateTask {
        job: "j".into(),
        task: "2".into(),
    });
    assert_eq!(started(&sim), vec!["2"]);
    sim.ok(add("j", vec![simple_task("x")]));
    sim.finish_task("j", "x", 0);
    assert!(
        started(&sim).is_empty(),
        "2 runs again and does not satisfy yet"
    );
    sim.finish_task("j", "2", 7);
    assert_eq!(started(&sim), vec!["m"]);
}

/// A dependent that fails and is retried after its dependency was withdrawn waits again
/// before its next attempt; a dependent that was released and is reactivated later checks
/// its dependencies again.
#[test]
fn a_reactivated_dependent_checks_its_dependencies_again() {
    let mut sim = setup(2, json!({}));
    sim.ok(add("j", vec![simple_task("a"), after("b", &["a"])]));
    sim.finish_task("j", "a", 0);
    sim.finish_task("j", "b", 1);
    sim.ok(Input::DeleteTask {
        job: "j".into(),
        task: "a".into(),
    });
    sim.ok(Input::ReactivateTask {
        job: "j".into(),
        task: "b".into(),
    });
    assert!(started(&sim).is_empty(), "b's dependency a is gone");
    sim.ok(add("j", vec![simple_task("a")]));
    sim.finish_task("j", "a", 0);
    assert_eq!(started(&sim), vec!["b"]);
}

/// Disabling and enabling the job, or changing its priority, puts waiting tasks back in the
/// queue: those whose dependencies are not met stay out.
#[test]
fn enable_and_update_do_not_release_waiting_dependents() {
    let mut sim = setup(2, json!({}));
    sim.ok(add("j", vec![simple_task("a"), after("b", &["a"])]));
    sim.ok(Input::DisableJob {
        id: "j".into(),
        option: openbatch_api::models::DisableJobOption::Requeue,
    });
    sim.ok(Input::EnableJob { id: "j".into() });
    assert_eq!(started(&sim), vec!["a"]);
    sim.ok(Input::UpdateJob {
        id: "j".into(),
        update: Box::new(serde_json::from_value(json!({"priority": 5})).unwrap()),
        replace: false,
    });
    assert!(started(&sim).is_empty());
    assert_eq!(sim.task_state("j", "b"), TaskState::Active);
    sim.finish_task("j", "a", 0);
    assert_eq!(started(&sim), vec!["b"]);
}

/// A long chain runs strictly in order, one task at a time, however many nodes are free.
#[test]
fn a_chain_runs_in_order() {
    let mut sim = setup(3, json!({}));
    let mut tasks = vec![simple_task("0")];
    for i in 1..30 {
        tasks.push(after(&i.to_string(), &[&(i - 1).to_string()]));
    }
    tasks.reverse();
    sim.ok(add("j", tasks));
    for i in 0..30 {
        assert_eq!(started(&sim), vec![i.to_string()]);
        sim.advance(1);
        sim.finish_task("j", &i.to_string(), 0);
    }
    assert_eq!(sim.counts("j").succeeded, 30);
}

/// Fan-in over a range of many tasks: the merge task starts when the last of them completes,
/// in whatever order they do.
#[test]
fn a_wide_range_fan_in() {
    let mut sim = setup(8, json!({}));
    sim.ok(add("j", vec![after_ranges("merge", &[(1, 300)])]));
    for chunk in (1..=300).collect::<Vec<i64>>().chunks(100) {
        sim.ok(add(
            "j",
            chunk
                .iter()
                .rev()
                .map(|i| simple_task(&i.to_string()))
                .collect(),
        ));
    }
    while sim.task_state("j", "merge") == TaskState::Active {
        let run = *sim.runs.keys().last().expect("something runs");
        sim.finish(run, 0);
    }
    assert_eq!(sim.counts("j").succeeded, 300);
    assert_eq!(sim.task_state("j", "merge"), TaskState::Running);
}

/// Azure's validation of `dependsOn`: `TaskDependenciesNotSpecifiedOnJob` on a job without
/// `usesTaskDependencies`; `TaskDependencyListTooLong` past 64,000 characters of ids;
/// `TaskDependencyRangesTooLong` for too many ranges; invalid property values for a range that
/// ends before it starts, a task that depends on itself, and ids that cannot be task ids.
#[test]
fn dependencies_are_validated() {
    let mut sim = setup(1, json!({}));
    sim.ok(Input::CreateJob(Box::new(simple_job("plain", "p"))));
    assert_eq!(
        add_codes(&mut sim, "plain", vec![after("b", &["a"])]),
        vec![Some("TaskDependenciesNotSpecifiedOnJob".into())]
    );
    let long: Vec<String> = (0..1001).map(|i| format!("{i:064}")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    let many: Vec<(i64, i64)> = (0..4001).map(|i| (i * 10, i * 10 + 1)).collect();
    let codes = add_codes(
        &mut sim,
        "j",
        vec![
            after("t1", &long),
            after_ranges("t2", &many),
            after_ranges("t3", &[(5, 4)]),
            after("t4", &["T4"]),
            after_ranges("77", &[(70, 80)]),
            after_ranges("t6", &[(-1, 3)]),
            after("t7", &["not an id"]),
            after_ranges("t8", &[(1, 1), (0, 0)]),
            task(json!({"id": "t9", "commandLine": "x", "dependsOn": {}})),
        ],
    );
    let invalid = Some("InvalidPropertyValue".to_string());
    assert_eq!(
        codes,
        vec![
            Some("TaskDependencyListTooLong".into()),
            Some("TaskDependencyRangesTooLong".into()),
            invalid.clone(),
            invalid.clone(),
            invalid.clone(),
            invalid.clone(),
            invalid,
            None,
            None,
        ]
    );
    // Exactly at the limits is fine.
    let at_limit: Vec<String> = (0..1000).map(|i| format!("{i:064}")).collect();
    let at_limit: Vec<&str> = at_limit.iter().map(String::as_str).collect();
    let ranges: Vec<(i64, i64)> = (0..4000).map(|i| (i * 10, i * 10 + 1)).collect();
    assert_eq!(
        add_codes(
            &mut sim,
            "j",
            vec![after("u1", &at_limit), after_ranges("u2", &ranges)]
        ),
        vec![None, None]
    );
}
