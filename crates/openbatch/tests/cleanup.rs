//! Task directories are cleaned up on the nodes: the real `openbatch` binary as a server with a
//! real node agent. A task's directory goes once its `constraints.retentionTime` has passed
//! since it completed, when the task is deleted, and the job's whole directory when the job is.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{job, pool, task, wait_completed, wait_idle, wait_until, Server};

use openbatch_client::{Client, ClientError, ListOptions};
use serde_json::json;

/// The directory of `job`/`task` on the disk of the node it ran on.
async fn task_dir_on_disk(s: &Server, c: &Client, job: &str, task: &str) -> PathBuf {
    let t = c.get_task(job, task).await.unwrap();
    let node = t.node_info.and_then(|n| n.node_id).expect("the task ran");
    s.dir
        .join("nodes")
        .join(node)
        .join("root")
        .join(openbatch_api::agent::task_dir(job, task))
}

fn not_found(r: Result<Vec<u8>, ClientError>) -> bool {
    matches!(r, Err(ClientError::Api { status: 404, ref code, .. }) if code == "FileNotFound")
}

#[tokio::test(flavor = "multi_thread")]
async fn task_directories_go_after_retention_and_with_their_task_and_job() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 1, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 1).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let write = r#"/bin/sh -c "echo out > out.txt; echo hello""#;
    let added = c
        .add_task_collection(
            "j",
            &[
                task(
                    "short",
                    write,
                    json!({"constraints": {"retentionTime": "PT6S"}}),
                ),
                task("kept", write, json!({})),
            ],
        )
        .await
        .unwrap();
    assert!(added.iter().all(|r| r.error.is_none()), "{added:?}");
    wait_completed(&c, "j", 2, Duration::from_secs(60)).await;
    let short = task_dir_on_disk(&s, &c, "j", "short").await;
    let kept = task_dir_on_disk(&s, &c, "j", "kept").await;
    let node = c
        .get_task("j", "short")
        .await
        .unwrap()
        .node_info
        .and_then(|n| n.node_id)
        .unwrap();

    // Right after completion (the retention time counts from when the server noted the end; 6 s is
    // long enough to look): the files are listed and read from the node.
    let files = c
        .list_task_files("j", "short", true, &ListOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"wd/out.txt"), "{names:?}");
    assert_eq!(
        c.get_task_file("j", "short", "wd/out.txt", None)
            .await
            .unwrap(),
        b"out\n"
    );

    // After the retention time the directory is gone from the node's disk, and the node's
    // file API no longer finds the task's files.
    wait_until(
        Duration::from_secs(30),
        "the expired directory to go",
        || async { !short.exists() },
    )
    .await;
    assert!(not_found(
        c.get_task_file("j", "short", "wd/out.txt", None).await
    ));
    let node_path = format!(
        "{}/stdout.txt",
        openbatch_api::agent::task_dir("j", "short")
    );
    assert!(not_found(
        c.get_node_file("p", &node, &node_path, None).await
    ));
    // The kept copy of its log (in auto-storage) stays until the task is deleted.
    assert_eq!(
        c.get_task_file("j", "short", "stdout.txt", None)
            .await
            .unwrap(),
        b"hello\n"
    );
    // The other task keeps its directory (7 days by default).
    assert!(kept.join("wd/out.txt").exists());

    // Deleting a task deletes its directory.
    c.delete_task("j", "kept").await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "the deleted task's directory to go",
        || async { !kept.exists() },
    )
    .await;

    // Deleting the job deletes its whole directory (`workitems/j`).
    c.add_task_collection("j", &[task("last", write, json!({}))])
        .await
        .unwrap();
    wait_completed(&c, "j", 2, Duration::from_secs(60)).await;
    let job_dir = task_dir_on_disk(&s, &c, "j", "last")
        .await
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap();
    assert!(job_dir.ends_with("workitems/j"), "{}", job_dir.display());
    assert!(job_dir.exists());
    c.delete_job("j").await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "the job's directory to go",
        || async { !job_dir.exists() },
    )
    .await;
    // Nothing is left behind in the agent's trash once it is removed in the background.
    let trash = job_dir
        .parent()
        .and_then(|w| w.parent())
        .map(|root| root.join("volatile/deleting"))
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the trash to be emptied",
        || async { std::fs::read_dir(&trash).map_or(true, |d| d.count() == 0) },
    )
    .await;
}
