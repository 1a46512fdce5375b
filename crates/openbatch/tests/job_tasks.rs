//! Job preparation, release and manager tasks (issue 4, part 3) on the real `openbatch`
//! binary with real node agents: the preparation task runs once on each node before the job's
//! tasks there and leaves files they read (`AZ_BATCH_JOB_PREP_WORKING_DIR`), the release task
//! runs on both nodes when the job is terminated, and
//! `GET /jobs/{id}/jobpreparationandreleasetaskstatus` shows both.

mod common;

use std::time::Duration;

use common::{pool, task, wait_completed, wait_idle, wait_until, Server};
use openbatch_api::models::{
    ExecutionResult, JobCreate, JobPreparationTaskState, JobReleaseTaskState, JobState, TaskState,
};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

fn job_with(id: &str, extra: serde_json::Value) -> JobCreate {
    let mut v = json!({"id": id, "poolInfo": {"poolId": "p"}});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

async fn wait_job(c: &Client, job: &str, state: JobState) {
    wait_until(Duration::from_secs(60), "the job's state", || async {
        c.get_job(job).await.is_ok_and(|j| j.state == state)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preparation_and_release_run_on_each_node_of_a_two_node_pool() {
    let server = Server::start();
    let c = server.client();
    c.create_pool(&pool("p", 2, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    // An input in the auto-storage (the local directory backend), staged by the preparation
    // task like a task's resource file.
    let inputs = server.dir.join("storage").join("prepinputs");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("data.txt"), "shared input\n").unwrap();

    c.create_job(&job_with(
        "j",
        json!({
            "jobPreparationTask": {
                "commandLine": "/bin/sh -c 'echo \"$AZ_BATCH_NODE_ID\" > \"$AZ_BATCH_JOB_PREP_WORKING_DIR/marker\"; echo prepared'",
                "resourceFiles": [{"autoStorageContainerName": "prepinputs"}]
            },
            "jobReleaseTask": {
                "commandLine": "/bin/sh -c 'echo \"released $(cat \"$AZ_BATCH_JOB_PREP_WORKING_DIR/marker\")\"'"
            }
        }),
    ))
    .await
    .unwrap();
    // Each task reads the marker the preparation task left on its node.
    let tasks: Vec<_> = (1..=6)
        .map(|i| {
            task(
                &format!("t{i}"),
                "/bin/sh -c 'sleep 0.3; cat \"$AZ_BATCH_JOB_PREP_WORKING_DIR/marker\" \"$AZ_BATCH_JOB_PREP_WORKING_DIR/data.txt\"'",
                json!({}),
            )
        })
        .collect();
    let added = c.add_task_collection("j", &tasks).await.unwrap();
    assert!(added.iter().all(|r| r.error.is_none()), "{added:?}");
    wait_completed(&c, "j", 6, Duration::from_secs(60)).await;

    let mut used = std::collections::BTreeSet::new();
    for t in c.list_tasks("j", &ListOptions::default()).await.unwrap() {
        assert_eq!(
            t.execution_info.result,
            Some(ExecutionResult::Success),
            "{}: {:?}",
            t.id,
            t.execution_info.failure_info
        );
        let node = t.node_info.unwrap().node_id.unwrap();
        let out = c
            .get_task_file("j", &t.id, "stdout.txt", None)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{node}\nshared input\n"),
            "{}",
            t.id
        );
        used.insert(node);
    }
    assert_eq!(used.len(), 2, "both nodes ran tasks");

    let status = c
        .list_job_preparation_and_release_task_status("j", &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(status.len(), 2);
    for s in &status {
        let prep = s.job_preparation_task_execution_info.as_ref().unwrap();
        assert_eq!(prep.state, JobPreparationTaskState::Completed);
        assert_eq!(prep.result, Some(ExecutionResult::Success));
        assert_eq!(prep.retry_count, 0);
        assert!(s.job_release_task_execution_info.is_none());
        assert!(used.contains(s.node_id.as_deref().unwrap()));
        assert_eq!(s.pool_id.as_deref(), Some("p"));
    }

    c.terminate_job("j", None).await.unwrap();
    wait_job(&c, "j", JobState::Completed).await;
    let j = c.get_job("j").await.unwrap();
    assert_eq!(
        j.execution_info.unwrap().terminate_reason.as_deref(),
        Some("UserTerminate")
    );
    let status = c
        .list_job_preparation_and_release_task_status("j", &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(status.len(), 2);
    for s in &status {
        let node = s.node_id.clone().unwrap();
        let release = s.job_release_task_execution_info.as_ref().unwrap();
        assert_eq!(release.state, JobReleaseTaskState::Completed);
        assert_eq!(
            (release.exit_code, release.result),
            (Some(0), Some(ExecutionResult::Success)),
            "{:?}",
            release.failure_info
        );
        let dir = release.task_root_directory.clone().unwrap();
        assert_eq!(dir, "workitems/j/job-1/jobrelease");
        let out = c
            .get_node_file("p", &node, &format!("{dir}/stdout.txt"), None)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap().trim(),
            format!("released {node}")
        );
    }
    // The CLI shows the same, one row per node.
    let table = server.cli_ok(&["job", "prep-release-status", "j"]);
    for s in &status {
        let row = table
            .lines()
            .find(|l| l.contains(s.node_id.as_deref().unwrap()))
            .unwrap_or_else(|| panic!("no row for {:?} in\n{table}", s.node_id));
        assert_eq!(row.matches("completed (success)").count(), 2, "{row}");
    }
    // `$filter` on the list.
    let none = c
        .list_job_preparation_and_release_task_status(
            "j",
            &ListOptions::filter("jobReleaseTaskExecutionInfo/exitCode ne 0"),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// A preparation task that fails on one node keeps the job's tasks off it: they all run on the
/// other node. A job manager task ends its job when it completes (`JMComplete`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_preparation_and_a_job_manager() {
    let server = Server::start();
    let c = server.client();
    c.create_pool(&pool("p", 2, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    let nodes = c.list_nodes("p", &ListOptions::default()).await.unwrap();
    let bad = nodes[0].id.clone();
    c.create_job(&job_with(
        "j",
        json!({
            "jobPreparationTask": {
                "commandLine": format!("/bin/sh -c 'test \"$AZ_BATCH_NODE_ID\" != {bad}'")
            }
        }),
    ))
    .await
    .unwrap();
    let tasks: Vec<_> = (1..=4)
        .map(|i| task(&format!("t{i}"), "/bin/sleep 0.2", json!({})))
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_completed(&c, "j", 4, Duration::from_secs(60)).await;
    for t in c.list_tasks("j", &ListOptions::default()).await.unwrap() {
        assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
        assert_ne!(t.node_info.unwrap().node_id.as_deref(), Some(bad.as_str()));
    }
    let status = c
        .list_job_preparation_and_release_task_status(
            "j",
            &ListOptions::filter(format!("nodeId eq '{bad}'")),
        )
        .await
        .unwrap();
    let prep = status[0]
        .job_preparation_task_execution_info
        .as_ref()
        .unwrap();
    assert_eq!(prep.result, Some(ExecutionResult::Failure));
    assert_eq!(prep.exit_code, Some(1));

    c.create_job(&job_with(
        "m",
        json!({"jobManagerTask": {"id": "manager", "commandLine": "/bin/sh -c 'sleep 0.2'"}}),
    ))
    .await
    .unwrap();
    wait_job(&c, "m", JobState::Completed).await;
    let m = c.get_job("m").await.unwrap();
    assert_eq!(
        m.execution_info.unwrap().terminate_reason.as_deref(),
        Some("JMComplete")
    );
    let jm = c.get_task("m", "manager").await.unwrap();
    assert_eq!(jm.state, TaskState::Completed);
    assert_eq!(jm.execution_info.result, Some(ExecutionResult::Success));
}

/// A `kill -9` of the server while preparation tasks run: after the restart (snapshot and
/// journal replay), the agents report the preparation runs, the waiting tasks start, each
/// node ran its preparation exactly once, and every task ran exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_kill_during_preparation() {
    let mut server = Server::start();
    let c = server.client();
    let log = server.dir.with_extension("runs");
    std::fs::write(&log, "").unwrap();
    c.create_pool(&pool("p", 2, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    c.create_job(&job_with(
        "j",
        json!({
            "jobPreparationTask": {
                "commandLine": format!(
                    "/bin/sh -c 'echo prep $AZ_BATCH_NODE_ID >> {}; sleep 2'",
                    log.display()
                )
            },
            "jobReleaseTask": {
                "commandLine": format!(
                    "/bin/sh -c 'echo release $AZ_BATCH_NODE_ID >> {}'",
                    log.display()
                )
            }
        }),
    ))
    .await
    .unwrap();
    let tasks: Vec<_> = (1..=8)
        .map(|i| {
            task(
                &format!("t{i}"),
                &format!(
                    "/bin/sh -c 'echo task $AZ_BATCH_TASK_ID >> {}; sleep 0.2'",
                    log.display()
                ),
                json!({}),
            )
        })
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(Duration::from_secs(30), "preparation running", || async {
        c.list_tasks("j", &ListOptions::filter("state eq 'preparing'"))
            .await
            .is_ok_and(|t| t.len() == 4)
    })
    .await;
    server.kill9();
    server.spawn();
    let c = server.client();
    wait_completed(&c, "j", 8, Duration::from_secs(60)).await;
    c.terminate_job("j", None).await.unwrap();
    wait_job(&c, "j", JobState::Completed).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for l in text.lines() {
        *seen.entry(l.to_string()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "ran twice: {seen:?}");
    let count = |what: &str| seen.keys().filter(|k| k.starts_with(what)).count();
    assert_eq!(
        (count("prep "), count("task "), count("release ")),
        (2, 8, 2),
        "{seen:?}"
    );
    for t in c.list_tasks("j", &ListOptions::default()).await.unwrap() {
        assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
    }
}
