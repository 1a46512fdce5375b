//! Multi-instance tasks over the REST API: accepted alone and in a collection (the core
//! places them as gangs and the agents run their instances), with the core's checks:
//! `numberOfInstances` at least 1 and `requiredSlots` 1, refused with a clear error body and
//! nothing added.

use openbatch_api::models::{JobCreate, TaskAddStatus, TaskCreate};
use openbatch_client::Client;
use openbatch_server::{start, ServerConfig};
use serde_json::json;

fn task(v: serde_json::Value) -> TaskCreate {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn multi_instance_tasks_are_accepted_and_checked() {
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
    let gang = task(json!({
        "id": "mpi", "commandLine": "mpirun app",
        "multiInstanceSettings": {"numberOfInstances": 2, "coordinationCommandLine": "start",
            "commonResourceFiles": [{"httpUrl": "https://example.com/a.txt", "filePath": "a.txt"}]},
    }));
    client.create_task("j", &gang).await.unwrap();
    let got = client.get_task("j", "mpi").await.unwrap();
    let m = got
        .multi_instance_settings
        .expect("the settings round-trip");
    assert_eq!(m.number_of_instances, Some(2));
    assert_eq!(m.coordination_command_line, "start");
    assert_eq!(m.common_resource_files.len(), 1);

    // Not started yet: no subtasks; an unknown task is a 404.
    assert!(client.list_subtasks("j", "mpi").await.unwrap().is_empty());
    let err = client.list_subtasks("j", "nope").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("TaskNotFound"));

    // Zero instances, and a multi-instance task that asks for more than one slot.
    let zero = task(json!({
        "id": "zero", "commandLine": "x",
        "multiInstanceSettings": {"numberOfInstances": 0, "coordinationCommandLine": "c"},
    }));
    let err = client.create_task("j", &zero).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("InvalidPropertyValue"));
    let wide = task(json!({
        "id": "wide", "commandLine": "x", "requiredSlots": 2,
        "multiInstanceSettings": {"numberOfInstances": 2, "coordinationCommandLine": "c"},
    }));
    let err = client.create_task("j", &wide).await.unwrap_err();
    assert_eq!(err.status(), Some(400));

    // In a collection: each task on its own.
    let other = task(json!({
        "id": "mpi2", "commandLine": "mpirun app",
        "multiInstanceSettings": {"numberOfInstances": 3, "coordinationCommandLine": "c"},
    }));
    let results = client
        .add_task_collection("j", &[other, zero])
        .await
        .unwrap();
    let by_id = |id: &str| results.iter().find(|r| r.task_id == id).unwrap();
    assert_eq!(by_id("mpi2").status, TaskAddStatus::Success);
    assert_eq!(by_id("zero").status, TaskAddStatus::ClientError);
    let tasks = client
        .list_tasks("j", &openbatch_client::ListOptions::default())
        .await
        .unwrap();
    let mut ids: Vec<_> = tasks.iter().map(|t| t.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["mpi", "mpi2"]);
}
