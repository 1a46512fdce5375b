//! Kept task logs whose job or task is gone are swept at start: a crash between journaling a
//! delete and deleting the logs (effects are not replayed) leaves them behind.

use std::path::Path;
use std::time::{Duration, Instant};

use openbatch_api::models::{JobCreate, TaskCreate};
use openbatch_client::Client;
use openbatch_server::{start, ServerConfig, ServerHandle};
use openbatch_storage::{Storage, StorageConfig};
use serde_json::json;

async fn server(dir: &Path) -> (ServerHandle, Client) {
    let server = start(ServerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        agent_program: Some("/bin/false".into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let c = server.credentials();
    let client = Client::new(server.endpoint(), &c.account_name, &c.account_key).unwrap();
    (server, client)
}

#[tokio::test]
async fn logs_of_deleted_jobs_and_tasks_left_by_a_crash_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (first, c) = server(dir.path()).await;
    let job = |v: serde_json::Value| -> JobCreate { serde_json::from_value(v).unwrap() };
    let task = |id: &str| -> TaskCreate {
        serde_json::from_value(json!({"id": id, "commandLine": "true"})).unwrap()
    };
    c.create_job(&job(json!({"id": "Kept", "poolInfo": {"poolId": "nopool"},
        "jobPreparationTask": {"commandLine": "true"}})))
        .await
        .unwrap();
    c.add_task_collection("Kept", &[task("t1"), task("t2")])
        .await
        .unwrap();
    c.create_job(&job(
        json!({"id": "gone", "poolInfo": {"poolId": "nopool"}}),
    ))
    .await
    .unwrap();
    c.delete_task("Kept", "t2").await.unwrap();
    c.delete_job("gone").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get_job("gone").await.is_ok() {
        assert!(Instant::now() < deadline, "the job was never removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown().await;

    // The crash: the deletes are journaled, their logs are still in storage (as if the runs'
    // uploads landed and the server died before the discards).
    let storage = Storage::open(
        &StorageConfig::default(),
        &dir.path().canonicalize().unwrap(),
    )
    .unwrap();
    let logs = storage.container("openbatch-logs").unwrap();
    let kept = [
        "jobs/Kept/t1/5/stdout.txt",
        "jobs/Kept/jobpreparation/6/stdout.txt",
        "nodes/tvm-1/startup/stdout.txt",
    ];
    let orphaned = [
        "jobs/Kept/t2/7/stdout.txt",
        "jobs/gone/t/8/stdout.txt",
        "jobs/gone/t/8/stderr.txt",
        "jobs/never/x/1/stdout.txt",
    ];
    for blob in kept.iter().chain(&orphaned) {
        logs.put(blob, "log".into()).await.unwrap();
    }

    let (second, _c) = server(dir.path()).await;
    let mut want: Vec<&str> = kept.to_vec();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut names: Vec<String> = logs
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        names.sort();
        if names == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned logs were not swept: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.shutdown().await;
}
