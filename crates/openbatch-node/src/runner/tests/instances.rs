//! Instances of multi-instance tasks: the coordination step, the primary's command line, and
//! subtasks that stay in flight until they are killed.

use std::time::Duration;

use tempfile::TempDir;

use super::resources::{resource, TestServer};
use super::{eventually, failure_code, finish, process_is_dead, read, run_to_end, spec};
use crate::runner::{codes, start, InstanceRun, KillReason, RunSpec};

fn instance(dir: &TempDir, primary: bool, coordination: &str, command_line: &str) -> RunSpec {
    let mut s = spec(dir, command_line);
    s.instance = Some(InstanceRun {
        primary,
        coordination_command_line: Some(coordination.to_owned()).filter(|c| !c.is_empty()),
        common_resource_files: Vec::new(),
        barrier: None,
    });
    s
}

fn pid_in(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn the_primary_downloads_common_files_to_the_task_dir_coordinates_then_runs_its_command() {
    let server = TestServer::start(|_, _| (200, b"common data\n".to_vec())).await;
    let dir = TempDir::new().unwrap();
    let mut s = instance(
        &dir,
        true,
        "/bin/sh -c 'cat ../common.txt > coordinated.txt; echo coordination ran'",
        "/bin/sh -c 'cat coordinated.txt; echo command ran'",
    );
    if let Some(i) = &mut s.instance {
        i.common_resource_files = vec![resource(server.url("/c"), "common.txt", None)];
    }
    let task_dir = s.task_dir.clone();
    let outcome = run_to_end(s).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(outcome.exit_code, Some(0));
    // In the task directory (AZ_BATCH_TASK_SHARED_DIR), not the working directory.
    assert_eq!(read(task_dir.join("common.txt")), "common data\n");
    assert!(!task_dir.join("wd/common.txt").exists());
    // Both commands write to the task's stdout.txt, in order.
    assert_eq!(
        read(task_dir.join("stdout.txt")),
        "coordination ran\ncommon data\ncommand ran\n"
    );
}

#[tokio::test]
async fn the_primarys_result_is_its_command_lines_and_coordination_leftovers_are_killed() {
    let dir = TempDir::new().unwrap();
    let s = instance(
        &dir,
        true,
        "/bin/sh -c 'sleep 60 & echo $! > ../daemon.pid'",
        "/bin/sh -c 'exit 3'",
    );
    let task_dir = s.task_dir.clone();
    let outcome = run_to_end(s).await;
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(failure_code(&outcome), codes::FAILURE_EXIT_CODE);
    let daemon = pid_in(&task_dir.join("daemon.pid")).expect("the daemon's pid");
    assert!(
        eventually(Duration::from_secs(10), || process_is_dead(daemon)).await,
        "the coordination command's daemon outlived the primary"
    );
}

#[tokio::test]
async fn a_failed_coordination_fails_the_run_before_the_command_line() {
    let dir = TempDir::new().unwrap();
    let s = instance(&dir, true, "/bin/sh -c 'exit 7'", "touch ran");
    let task_dir = s.task_dir.clone();
    let outcome = run_to_end(s).await;
    assert_eq!(outcome.exit_code, Some(7));
    assert_eq!(failure_code(&outcome), codes::FAILURE_EXIT_CODE);
    assert!(!task_dir.join("wd/ran").exists());
}

#[tokio::test]
async fn a_subtask_stays_in_flight_with_its_coordination_command_until_killed() {
    let dir = TempDir::new().unwrap();
    let s = instance(
        &dir,
        false,
        "/bin/sh -c 'echo $$ > ../coord.pid; exec sleep 60'",
        "touch ran",
    );
    let task_dir = s.task_dir.clone();
    let handle = start(s);
    assert!(
        eventually(Duration::from_secs(10), || pid_in(
            &task_dir.join("coord.pid")
        )
        .is_some())
        .await
    );
    let pid = pid_in(&task_dir.join("coord.pid")).unwrap();
    assert!(
        !eventually(Duration::from_millis(500), || handle.is_finished()).await,
        "a subtask's run ended on its own"
    );
    handle.kill(KillReason::Terminated);
    let outcome = finish(handle).await;
    assert_eq!(outcome.killed_by, Some(KillReason::Terminated));
    assert!(process_is_dead(pid));
    assert!(
        !task_dir.join("wd/ran").exists(),
        "a subtask ran the command line"
    );
}

#[tokio::test]
async fn a_subtask_whose_coordination_exits_keeps_its_daemons_until_killed() {
    let dir = TempDir::new().unwrap();
    let s = instance(
        &dir,
        false,
        "/bin/sh -c 'sleep 60 & echo $! > ../daemon.pid'",
        "touch ran",
    );
    let task_dir = s.task_dir.clone();
    let handle = start(s);
    assert!(
        eventually(Duration::from_secs(10), || pid_in(
            &task_dir.join("daemon.pid")
        )
        .is_some())
        .await
    );
    let daemon = pid_in(&task_dir.join("daemon.pid")).unwrap();
    assert!(
        !eventually(Duration::from_millis(500), || handle.is_finished()).await,
        "a subtask's run ended with its coordination command"
    );
    assert!(!process_is_dead(daemon), "the daemon was killed too early");
    handle.kill(KillReason::Terminated);
    let outcome = finish(handle).await;
    assert_eq!(outcome.killed_by, Some(KillReason::Terminated));
    assert!(
        eventually(Duration::from_secs(10), || process_is_dead(daemon)).await,
        "the subtask's daemon outlived the kill"
    );
    assert!(!task_dir.join("wd/ran").exists());
}

#[tokio::test]
async fn a_subtask_without_a_coordination_command_waits_for_its_kill() {
    let dir = TempDir::new().unwrap();
    let handle = start(instance(&dir, false, "", "touch ran"));
    assert!(!eventually(Duration::from_millis(300), || handle.is_finished()).await);
    handle.kill(KillReason::Requeued);
    let outcome = finish(handle).await;
    assert_eq!(outcome.killed_by, Some(KillReason::Requeued));
    assert_eq!(outcome.exit_code, None);
}
