//! Multi-instance (MPI-style) tasks end to end, on the real binary with three local nodes:
//! every instance runs the coordination command (subtasks keep a daemon running), the primary
//! runs the command line once all of them have completed, the task ends with the primary's result, and the subtasks'
//! processes are gone afterwards.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use openbatch_api::models::{ExecutionResult, SubtaskState, TaskState};
use serde_json::json;

/// The coordination script: note this node's host list and shared directory in `$MARKERS`.
/// A subtask's starts a daemon (an MPI daemon's stand-in, whose pid it notes) and notes its
/// host list last, after a while: the primary's command line must only start once every
/// instance's coordination command has completed.
const COORDINATION: &str = r#"
echo "$AZ_BATCH_TASK_SHARED_DIR" > "$MARKERS/$AZ_BATCH_NODE_ID.shared"
if [ "$AZ_BATCH_IS_CURRENT_NODE_MASTER" = true ]; then
  echo "$AZ_BATCH_NODE_ID" > "$MARKERS/primary"
  echo "$AZ_BATCH_HOST_LIST" > "$MARKERS/$AZ_BATCH_NODE_ID.hosts"
  exit 0
fi
sleep 600 &
echo $! >> "$MARKERS/$AZ_BATCH_NODE_ID.pid"
sleep 1.5
echo "$AZ_BATCH_HOST_LIST" > "$MARKERS/$AZ_BATCH_NODE_ID.tmp"
mv "$MARKERS/$AZ_BATCH_NODE_ID.tmp" "$MARKERS/$AZ_BATCH_NODE_ID.hosts"
"#;

/// The primary's command: the three coordination markers must be there already (no waiting:
/// the coordination barrier), then wait (with `$WAIT_GO` set) for the test's `go` file, check
/// the host list, and exit with `$EXIT`.
const PRIMARY: &str = r#"
n=$(ls "$MARKERS"/*.hosts | wc -l)
i=0
while [ -n "$WAIT_GO" ] && [ ! -e "$MARKERS/go" ] && [ $i -lt 300 ]; do
  sleep 0.1; i=$((i+1))
done
hosts=$(echo "$AZ_BATCH_HOST_LIST" | tr ',' '\n' | wc -l)
echo "markers=$n hosts=$hosts master=$AZ_BATCH_MASTER_NODE"
[ "$n" -eq 3 ] && [ "$hosts" -eq 3 ] || exit 9
exit "$EXIT"
"#;

fn write_scripts(dir: &Path) -> (String, String) {
    let coord = dir.join("coord.sh");
    let primary = dir.join("primary.sh");
    std::fs::write(&coord, COORDINATION).unwrap();
    std::fs::write(&primary, PRIMARY).unwrap();
    (
        format!("/bin/sh {}", coord.display()),
        format!("/bin/sh {}", primary.display()),
    )
}

/// Every pid noted in `dir/*.pid` by a subtask (not the primary's node).
fn subtask_pids(dir: &Path) -> Vec<i32> {
    let primary = std::fs::read_to_string(dir.join("primary")).unwrap_or_default();
    let primary = primary.trim();
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(".pid") && name.trim_end_matches(".pid") != primary
        })
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Gone, or a zombie waiting for a reaper.
fn dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

fn mpi_task(id: &str, dir: &Path, exit: i32, retries: i32) -> openbatch_api::models::TaskCreate {
    let (coord, primary) = write_scripts(dir);
    task(
        id,
        &primary,
        json!({
            "environmentSettings": [
                {"name": "MARKERS", "value": dir.display().to_string()},
                {"name": "EXIT", "value": exit.to_string()},
            ],
            "constraints": {"maxTaskRetryCount": retries},
            "multiInstanceSettings": {"numberOfInstances": 3, "coordinationCommandLine": coord},
        }),
    )
}

#[tokio::test]
async fn a_three_node_multi_instance_task_coordinates_runs_on_the_primary_and_cleans_up() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 3, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 3).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let markers = tempfile::tempdir().unwrap();
    let mut t = mpi_task("mpi", markers.path(), 0, 0);
    t.environment_settings
        .push(serde_json::from_value(json!({"name": "WAIT_GO", "value": "1"})).unwrap());
    c.create_task("j", &t).await.unwrap();
    // While the attempt runs, subtasksinfo shows both subtasks running, each on its own node.
    wait_until(Duration::from_secs(30), "two running subtasks", || async {
        c.list_subtasks("j", "mpi").await.is_ok_and(|subs| {
            subs.len() == 2
                && subs
                    .iter()
                    .all(|s| s.state == Some(SubtaskState::Running) && s.end_time.is_none())
        })
    })
    .await;
    let running = c.list_subtasks("j", "mpi").await.unwrap();
    let running_nodes: std::collections::BTreeSet<_> = running
        .iter()
        .filter_map(|s| s.node_info.as_ref()?.node_id.clone())
        .collect();
    assert_eq!(running_nodes.len(), 2, "{running:?}");
    std::fs::write(markers.path().join("go"), "").unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(60)).await;

    let t = c.get_task("j", "mpi").await.unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(
        t.execution_info.exit_code,
        Some(0),
        "{:?}",
        t.execution_info
    );
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Success));
    assert_eq!(
        t.multi_instance_settings
            .as_ref()
            .and_then(|m| m.number_of_instances),
        Some(3)
    );
    // The task's node is the primary's, which ran the command line.
    let primary = std::fs::read_to_string(markers.path().join("primary")).unwrap();
    let node = t.node_info.as_ref().and_then(|n| n.node_id.clone());
    assert_eq!(node.as_deref(), Some(primary.trim()));
    let stdout = c
        .get_task_file("j", "mpi", "stdout.txt", None)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&stdout);
    assert!(stdout.contains("markers=3 hosts=3"), "{stdout}");

    // One coordination per node, each told the same three hosts and its own task directory.
    let nodes: Vec<String> = c
        .list_nodes("p", &openbatch_client::ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    for n in &nodes {
        let hosts = std::fs::read_to_string(markers.path().join(format!("{n}.hosts"))).unwrap();
        assert_eq!(hosts.trim().split(',').count(), 3, "{hosts}");
        let shared = std::fs::read_to_string(markers.path().join(format!("{n}.shared"))).unwrap();
        assert!(shared.trim().ends_with("workitems/j/job-1/mpi"), "{shared}");
    }
    // subtasksinfo lists the two subtasks (not the primary) on the other nodes, completed.
    let subs = c.list_subtasks("j", "mpi").await.unwrap();
    assert_eq!(
        subs.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![Some(1), Some(2)]
    );
    let mut sub_nodes: Vec<String> = subs
        .iter()
        .filter_map(|s| s.node_info.as_ref()?.node_id.clone())
        .collect();
    sub_nodes.push(primary.trim().to_string());
    sub_nodes.sort();
    let mut all_nodes = nodes.clone();
    all_nodes.sort();
    assert_eq!(sub_nodes, all_nodes, "one instance per node");
    assert!(subs
        .iter()
        .all(|s| s.state == Some(SubtaskState::Completed) && s.end_time.is_some()));
    // The subtasks' coordination daemons were killed when the primary ended.
    let pids = subtask_pids(markers.path());
    assert_eq!(pids.len(), 2, "{pids:?}");
    wait_until(
        Duration::from_secs(15),
        "the subtasks' processes to die",
        || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| dead(*p)) }
        },
    )
    .await;
    // And their nodes are free again.
    wait_idle(&c, "p", 3).await;
}

#[tokio::test]
async fn a_failing_primary_fails_the_task_after_its_retries() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 3, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 3).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let markers = tempfile::tempdir().unwrap();
    c.create_task("j", &mpi_task("mpi", markers.path(), 4, 1))
        .await
        .unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(90)).await;

    let t = c.get_task("j", "mpi").await.unwrap();
    assert_eq!(
        t.execution_info.exit_code,
        Some(4),
        "{:?}",
        t.execution_info
    );
    assert_eq!(t.execution_info.result, Some(ExecutionResult::Failure));
    assert_eq!(t.execution_info.retry_count, 1);
    // Two attempts, each with two subtasks, all killed.
    let pids = subtask_pids(markers.path());
    assert_eq!(pids.len(), 4, "{pids:?}");
    wait_until(
        Duration::from_secs(15),
        "the subtasks' processes to die",
        || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| dead(*p)) }
        },
    )
    .await;
    wait_idle(&c, "p", 3).await;
}

/// The job preparation task runs on each node of a multi-instance task before any of its
/// instances there: it leaves a marker (after a while) in the node's shared directory, and
/// both the coordination commands and the primary's command line find it on their node.
/// The job release task then runs on both nodes.
#[tokio::test]
async fn the_job_preparation_task_runs_on_every_node_of_a_gang_first() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 2, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    let j: openbatch_api::models::JobCreate = serde_json::from_value(json!({
        "id": "j", "poolInfo": {"poolId": "p"},
        "jobPreparationTask": {"commandLine":
            "/bin/sh -c 'sleep 1; echo \"$AZ_BATCH_NODE_ID\" > \"$AZ_BATCH_NODE_SHARED_DIR/prepared-$AZ_BATCH_JOB_ID\"'"},
        "jobReleaseTask": {"commandLine":
            "/bin/sh -c 'rm \"$AZ_BATCH_NODE_SHARED_DIR/prepared-$AZ_BATCH_JOB_ID\"'"},
    }))
    .unwrap();
    c.create_job(&j).await.unwrap();
    // Each instance checks that its own node was prepared (the marker names the node).
    let check = r#"[ "$(cat "$AZ_BATCH_NODE_SHARED_DIR/prepared-$AZ_BATCH_JOB_ID")" = "$AZ_BATCH_NODE_ID" ]"#;
    let markers = tempfile::tempdir().unwrap();
    let coord = markers.path().join("coord.sh");
    std::fs::write(
        &coord,
        format!("{check} || exit 3\necho \"$AZ_BATCH_NODE_ID\" > \"$MARKERS/$AZ_BATCH_NODE_ID.coordinated\"\n"),
    )
    .unwrap();
    let primary = markers.path().join("primary.sh");
    std::fs::write(
        &primary,
        format!("{check} || exit 4\necho \"prepared on $AZ_BATCH_NODE_ID\"\n"),
    )
    .unwrap();
    let t = task(
        "mpi",
        &format!("/bin/sh {}", primary.display()),
        json!({
            "environmentSettings": [{"name": "MARKERS", "value": markers.path().display().to_string()}],
            "multiInstanceSettings": {
                "numberOfInstances": 2,
                "coordinationCommandLine": format!("/bin/sh {}", coord.display()),
            },
        }),
    );
    c.create_task("j", &t).await.unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(60)).await;

    let t = c.get_task("j", "mpi").await.unwrap();
    assert_eq!(
        t.execution_info.result,
        Some(ExecutionResult::Success),
        "{:?}",
        t.execution_info
    );
    let node = t.node_info.and_then(|n| n.node_id).unwrap();
    let stdout = c
        .get_task_file("j", "mpi", "stdout.txt", None)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stdout).trim(),
        format!("prepared on {node}")
    );
    let nodes: Vec<String> = c
        .list_nodes("p", &openbatch_client::ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    for n in &nodes {
        assert!(
            markers.path().join(format!("{n}.coordinated")).exists(),
            "the coordination command on {n} found its node prepared"
        );
    }
    let status = c
        .list_job_preparation_and_release_task_status(
            "j",
            &openbatch_client::ListOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(status.len(), 2, "preparation ran on both nodes");
    assert!(status.iter().all(|s| s
        .job_preparation_task_execution_info
        .as_ref()
        .is_some_and(|p| p.result == Some(ExecutionResult::Success))));

    // Release runs on both nodes when the job ends.
    c.terminate_job("j", None).await.unwrap();
    wait_until(Duration::from_secs(60), "the job completed", || async {
        c.get_job("j")
            .await
            .is_ok_and(|j| j.state == openbatch_api::models::JobState::Completed)
    })
    .await;
    let status = c
        .list_job_preparation_and_release_task_status(
            "j",
            &openbatch_client::ListOptions::default(),
        )
        .await
        .unwrap();
    assert!(status.iter().all(|s| s
        .job_release_task_execution_info
        .as_ref()
        .is_some_and(|r| r.result == Some(ExecutionResult::Success))));
    wait_idle(&c, "p", 2).await;
}
