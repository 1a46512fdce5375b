//! Multi-instance tasks over the REST API: the core places them (gang placement), but the
//! agents do not run their instances yet, so the server refuses them with a clear
//! `UnsupportedOperation`, alone and per task in a collection, and adds nothing.

use openbatch_api::models::{JobCreate, TaskAddStatus, TaskCreate};
use openbatch_client::Client;
use openbatch_server::{start, ServerConfig};
use serde_json::json;

#[tokio::test]
async fn multi_instance_tasks_are_refused_until_their_instances_can_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        agent_program: Some("/bin/false".into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let c = server.credentials();
    let client = Client::new(server.endpoint(), &c.account_name, &c.account_key).unwrap();
    let job: JobCreate =
        serde_json::from_value(json!({"id": "j", "poolInfo": {"poolId": "nopool"}})).unwrap();
    client.create_job(&job).await.unwrap();
    let gang: TaskCreate = serde_json::from_value(json!({
        "id": "mpi", "commandLine": "mpirun app",
        "multiInstanceSettings": {"numberOfInstances": 2, "coordinationCommandLine": "start"},
    }))
    .unwrap();
    let plain: TaskCreate =
        serde_json::from_value(json!({"id": "plain", "commandLine": "/bin/true"})).unwrap();

    let err = client.create_task("j", &gang).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("UnsupportedOperation"));

    let results = client
        .add_task_collection("j", &[gang.clone(), plain])
        .await
        .unwrap();
    let by_id = |id: &str| results.iter().find(|r| r.task_id == id).unwrap();
    assert_eq!(by_id("mpi").status, TaskAddStatus::ClientError);
    let message = by_id("mpi")
        .error
        .as_ref()
        .and_then(|e| e.message.as_ref())
        .and_then(|m| m.value.clone())
        .unwrap_or_default();
    assert!(message.contains("multiInstanceSettings"), "{message}");
    assert_eq!(by_id("plain").status, TaskAddStatus::Success);
    let tasks = client
        .list_tasks("j", &openbatch_client::ListOptions::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "only the plain task was added");
}
