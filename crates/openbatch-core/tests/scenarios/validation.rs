//! Refused inputs: duplicates, bad ids, bad values, oversized collections. A refused input
//! changes nothing (`Sim::refused` compares the whole state before and after).

use openbatch_api::models::{TaskAddStatus, TaskState};
use openbatch_core::{CoreError, Input, Reply};
use serde_json::json;

use crate::common::*;

fn base() -> Sim {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("pool1", 0, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job("job1", "pool1"))));
    sim
}

/// The per-task results of an `AddTasks`.
fn results(sim: &mut Sim, input: Input) -> Vec<(String, TaskAddStatus, Option<String>)> {
    match sim.ok(input).reply {
        Reply::TaskResults(r) => r
            .into_iter()
            .map(|r| (r.task_id, r.status, r.error.and_then(|e| e.code)))
            .collect(),
        other => panic!("expected task results, got {other:?}"),
    }
}

/// Azure: creating what exists is refused with `PoolExists` / `JobExists`; adding a task that
/// exists gives that task a `clienterror` with `TaskExists`, while the others are added.
#[test]
fn duplicates_are_refused() {
    let mut sim = base();
    assert_eq!(
        sim.refused(Input::CreatePool(Box::new(simple_pool("pool1", 3, 1)))),
        CoreError::PoolExists("pool1".into())
    );
    assert_eq!(
        sim.refused(Input::CreateJob(Box::new(simple_job("job1", "pool1")))),
        CoreError::JobExists("job1".into())
    );
    assert_eq!(
        results(&mut sim, add("job1", simple_tasks("t", 1))),
        vec![("t1".into(), TaskAddStatus::Success, None)]
    );
    assert_eq!(
        results(
            &mut sim,
            add(
                "job1",
                vec![simple_task("t2"), simple_task("t1"), simple_task("t2")]
            )
        ),
        vec![
            ("t2".into(), TaskAddStatus::Success, None),
            (
                "t1".into(),
                TaskAddStatus::ClientError,
                Some("TaskExists".into())
            ),
            (
                "t2".into(),
                TaskAddStatus::ClientError,
                Some("TaskExists".into())
            ),
        ]
    );
    assert_eq!(sim.tasks("job1").len(), 2);
}

/// An `AddTasks` in which every task fails changes nothing, so the shell need not journal it.
#[test]
fn an_add_where_every_task_fails_changes_nothing() {
    let mut sim = base();
    sim.ok(add("job1", simple_tasks("t", 1)));
    let before = serde_json::to_value(&sim.core).unwrap();
    let a = sim.ok(add("job1", simple_tasks("t", 1)));
    assert!(!a.changed);
    assert_eq!(before, serde_json::to_value(&sim.core).unwrap());
}

/// Azure: at most 100 tasks per `addtaskcollection`; more is refused as a whole
/// (`RequestBodyTooLarge`) and adds nothing.
#[test]
fn more_than_100_tasks_in_one_call_are_refused() {
    let mut sim = base();
    match sim.refused(add("job1", simple_tasks("t", 101))) {
        CoreError::TooManyTasks(_) => {}
        other => panic!("expected TooManyTasks, got {other:?}"),
    }
    assert!(sim.tasks("job1").is_empty());
    let r = results(&mut sim, add("job1", simple_tasks("t", 100)));
    assert!(r.iter().all(|(_, s, _)| *s == TaskAddStatus::Success));
    assert_eq!(sim.counts("job1").active, 100);
}

/// Azure ids: 1 to 64 letters, digits, hyphens and underscores.
#[test]
fn invalid_ids_are_refused() {
    let mut sim = base();
    let long = "x".repeat(65);
    for bad in ["", "has space", "dot.ted", "slash/ed", "é", long.as_str()] {
        let e = sim.refused(Input::CreatePool(Box::new(simple_pool(bad, 0, 1))));
        assert!(
            matches!(e, CoreError::InvalidProperty { ref property, .. } if property == "id"),
            "pool {bad:?}: {e:?}"
        );
        let e = sim.refused(Input::CreateJob(Box::new(simple_job(bad, "pool1"))));
        assert!(
            matches!(e, CoreError::InvalidProperty { ref property, .. } if property == "id"),
            "job {bad:?}: {e:?}"
        );
        let r = results(&mut sim, add("job1", vec![simple_task(bad)]));
        assert_eq!(r[0].1, TaskAddStatus::ClientError, "task {bad:?}");
        assert_eq!(r[0].2.as_deref(), Some("InvalidPropertyValue"));
    }
    let ok = "A-z_0".repeat(12) + "abcd";
    assert_eq!(ok.len(), 64);
    sim.ok(Input::CreatePool(Box::new(simple_pool(&ok, 0, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job(&ok, &ok))));
    assert_eq!(
        results(&mut sim, add(&ok, vec![simple_task(&ok)]))[0].1,
        TaskAddStatus::Success
    );
}

/// Azure ids are case-preserving and case-insensitive: `Job1` after `job1` is `JobExists`, and
/// any spelling finds the object, which keeps the spelling it was created with.
#[test]
fn ids_are_case_insensitive() {
    let mut sim = base();
    assert_eq!(
        sim.refused(Input::CreatePool(Box::new(simple_pool("POOL1", 0, 1)))),
        CoreError::PoolExists("POOL1".into())
    );
    assert_eq!(
        sim.refused(Input::CreateJob(Box::new(simple_job("Job1", "pool1")))),
        CoreError::JobExists("Job1".into())
    );
    sim.ok(add("JOB1", simple_tasks("Task", 1)));
    assert_eq!(
        results(&mut sim, add("job1", vec![simple_task("TASK1")])),
        vec![(
            "TASK1".into(),
            TaskAddStatus::ClientError,
            Some("TaskExists".into())
        )]
    );
    assert_eq!(sim.task_view("jOb1", "task1").id, "Task1");
    assert_eq!(sim.job_view("JOB1").id, "job1");
    assert_eq!(sim.pool_view("Pool1").id, "pool1");

    // A job naming its pool in another case still runs there.
    sim.ok(Input::CreateJob(Box::new(simple_job("other", "POOL1"))));
    sim.ok(add("other", simple_tasks("t", 1)));
    sim.ok(Input::ResizePool {
        id: "Pool1".into(),
        resize: serde_json::from_value(json!({"targetDedicatedNodes": 1})).unwrap(),
    });
    sim.connect_all();
    assert_eq!(sim.counts("job1").running + sim.counts("other").running, 1);
    sim.finish_all(0);
    assert_eq!(sim.counts("job1").running + sim.counts("other").running, 1);
}

/// Values Azure rejects, each with the property it names.
#[test]
fn invalid_values_are_refused() {
    let mut sim = base();
    let bad_pools = [
        (
            json!({"id": "p", "vmSize": " ", "targetDedicatedNodes": 1}),
            "vmSize",
        ),
        (
            json!({"id": "p", "vmSize": "s", "taskSlotsPerNode": 0}),
            "taskSlotsPerNode",
        ),
        (
            json!({"id": "p", "vmSize": "s", "taskSlotsPerNode": 257}),
            "taskSlotsPerNode",
        ),
        (
            json!({"id": "p", "vmSize": "s", "targetDedicatedNodes": -1}),
            "targetDedicatedNodes",
        ),
        (
            json!({"id": "p", "vmSize": "s", "targetLowPriorityNodes": 10001}),
            "targetLowPriorityNodes",
        ),
    ];
    for (body, property) in bad_pools {
        let e = sim.refused(Input::CreatePool(Box::new(pool(body.clone()))));
        let named = match &e {
            CoreError::InvalidProperty { property, .. } => property.clone(),
            CoreError::MissingProperty(p) => p.clone(),
            other => panic!("{body}: unexpected {other:?}"),
        };
        assert_eq!(named, property, "{body}");
    }
    // Autoscale pools: the formula sets the targets, so none may be given, and a formula is
    // required (its syntax is checked by the shell, which owns the formula language).
    assert!(matches!(
        sim.refused(Input::CreatePool(Box::new(pool(
            json!({"id": "p", "vmSize": "s", "enableAutoScale": true, "autoScaleFormula": "$TargetDedicatedNodes=1;", "targetDedicatedNodes": 2})
        )))),
        CoreError::InvalidProperty { .. }
    ));
    assert!(matches!(
        sim.refused(Input::CreatePool(Box::new(pool(
            json!({"id": "p", "vmSize": "s", "enableAutoScale": true})
        )))),
        CoreError::MissingProperty(ref p) if p == "autoScaleFormula"
    ));
    assert!(matches!(
        sim.refused(Input::CreateJob(Box::new(job(json!({"id": "j", "poolInfo": {}}))))),
        CoreError::MissingProperty(ref p) if p == "poolInfo.poolId"
    ));
    assert!(matches!(
        sim.refused(Input::CreateJob(Box::new(job(json!({"id": "j", "poolInfo": {"poolId": "p"}, "priority": 1001}))))),
        CoreError::InvalidProperty { ref property, .. } if property == "priority"
    ));
    assert!(matches!(
        sim.refused(Input::CreateJob(Box::new(job(json!({"id": "j", "poolInfo": {"poolId": "p"}, "maxParallelTasks": 0}))))),
        CoreError::InvalidProperty { ref property, .. } if property == "maxParallelTasks"
    ));
    assert!(matches!(
        sim.refused(Input::ResizePool {
            id: "pool1".into(),
            resize: serde_json::from_value(json!({"targetDedicatedNodes": -3})).unwrap(),
        }),
        CoreError::InvalidProperty { .. }
    ));
    assert_eq!(
        sim.refused(Input::ResizePool {
            id: "nope".into(),
            resize: Default::default(),
        }),
        CoreError::PoolNotFound("nope".into())
    );

    let r = results(
        &mut sim,
        add(
            "job1",
            vec![
                task(json!({"id": "a", "commandLine": "  "})),
                task(json!({"id": "b", "commandLine": "x", "requiredSlots": 0})),
                task(json!({"id": "c", "commandLine": "x", "dependsOn": {"taskIds": ["a"]}})),
                task(json!({"id": "d", "commandLine": "x"})),
            ],
        ),
    );
    let codes: Vec<Option<String>> = r.iter().map(|x| x.2.clone()).collect();
    assert_eq!(
        codes,
        vec![
            Some("MissingRequiredProperty".into()),
            Some("InvalidPropertyValue".into()),
            // Azure: a task with dependsOn on a job without usesTaskDependencies.
            Some("TaskDependenciesNotSpecifiedOnJob".into()),
            None
        ]
    );
    assert_eq!(sim.tasks_in("job1", TaskState::Active), vec!["d"]);

    assert_eq!(
        sim.refused(add("nope", simple_tasks("t", 1))),
        CoreError::JobNotFound("nope".into())
    );
    assert_eq!(
        sim.refused(Input::TerminateTask {
            job: "job1".into(),
            task: "zz".into()
        }),
        CoreError::TaskNotFound("job1".into(), "zz".into())
    );
}

/// Resource files of all three sources and output files are accepted and reach the node as
/// written (the shell resolves auto-storage names when it dispatches the run); a file with
/// no source or two, a `blobPrefix` on an `httpUrl`, or an output file without a container
/// destination is that task's `clienterror`.
#[test]
fn resource_and_output_files_are_checked_and_passed_to_the_run() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("pool1", 1, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job("job1", "pool1"))));
    let good = task(json!({
        "id": "good", "commandLine": "/bin/true",
        "resourceFiles": [
            {"httpUrl": "https://acct.blob.core.windows.net/c/a.txt?sig=x", "filePath": "a.txt"},
            {"storageContainerUrl": "https://acct.blob.core.windows.net/c?sig=x", "blobPrefix": "in/"},
            {"autoStorageContainerName": "inputs", "filePath": "data", "fileMode": "0644"}
        ],
        "outputFiles": [{
            "filePattern": "../std*.txt",
            "destination": {"container": {"containerUrl": "https://acct.blob.core.windows.net/out?sig=y", "path": "logs",
                                          "uploadHeaders": [{"name": "Content-Type", "value": "text/plain"}]}},
            "uploadOptions": {"uploadCondition": "taskcompletion"}
        }]
    }));
    let bad = |id: &str, extra: serde_json::Value| {
        let mut v = json!({"id": id, "commandLine": "/bin/true"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        task(v)
    };
    let tasks = vec![
        good,
        bad("nosource", json!({"resourceFiles": [{"filePath": "x"}]})),
        bad(
            "twosources",
            json!({"resourceFiles": [{"httpUrl": "http://h/x", "autoStorageContainerName": "c"}]}),
        ),
        bad(
            "prefixonhttp",
            json!({"resourceFiles": [{"httpUrl": "http://h/x", "blobPrefix": "p"}]}),
        ),
        bad(
            "notaurl",
            json!({"resourceFiles": [{"storageContainerUrl": "ftp://h/c"}]}),
        ),
        bad(
            "nocontainer",
            json!({"outputFiles": [{"filePattern": "*.txt", "destination": {},
                                    "uploadOptions": {"uploadCondition": "tasksuccess"}}]}),
        ),
    ];
    let r = results(&mut sim, add("job1", tasks));
    assert_eq!(r[0], ("good".into(), TaskAddStatus::Success, None));
    let codes: Vec<_> = r[1..].iter().map(|(_, s, c)| (*s, c.clone())).collect();
    assert_eq!(
        codes,
        vec![
            (
                TaskAddStatus::ClientError,
                Some("InvalidPropertyValue".into())
            ),
            (
                TaskAddStatus::ClientError,
                Some("InvalidPropertyValue".into())
            ),
            (
                TaskAddStatus::ClientError,
                Some("InvalidPropertyValue".into())
            ),
            (
                TaskAddStatus::ClientError,
                Some("InvalidPropertyValue".into())
            ),
            (
                TaskAddStatus::ClientError,
                Some("MissingRequiredProperty".into())
            ),
        ]
    );
    sim.connect_all();
    let spec = sim
        .effects
        .iter()
        .find_map(|e| match e {
            openbatch_core::Effect::RunTask { spec, .. } => Some(spec.clone()),
            _ => None,
        })
        .expect("the task was placed");
    assert_eq!(spec.resource_files.len(), 3);
    assert_eq!(
        spec.resource_files[2]
            .auto_storage_container_name
            .as_deref(),
        Some("inputs")
    );
    assert_eq!(spec.output_files.len(), 1);
    assert_eq!(spec.output_files[0].file_pattern, "../std*.txt");
}
