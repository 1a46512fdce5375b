//! The node agent's task launcher, killed: the real binary, one node.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

use openbatch_client::ListOptions;
use serde_json::json;

/// The `/proc/<pid>/stat` state letter of `pid`, `None` when there is no such process.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// The children of `pid` (of all its threads).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// The agent's task launcher: its child named `openbatch-task-launcher`.
fn launcher_of(agent: i32) -> Option<i32> {
    children(agent).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.starts_with(b"openbatch-task-launcher\0"))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_launcher_takes_its_tasks_with_it_and_is_replaced() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 1, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 1).await;
    c.create_job(&job("j", "p")).await.unwrap();
    // The task leaves a background child in its group, and becomes `sleep 600` itself.
    let dir = tempfile::tempdir().unwrap();
    let (leader_file, child_file) = (dir.path().join("leader"), dir.path().join("child"));
    let cmd = format!(
        "/bin/sh -c \"sleep 600 & echo $! > {}; echo $$ > {}.tmp; mv {}.tmp {}; exec sleep 600\"",
        child_file.display(),
        leader_file.display(),
        leader_file.display(),
        leader_file.display(),
    );
    c.add_task_collection("j", &[task("long", &cmd, json!({}))])
        .await
        .unwrap();
    wait_sync(Duration::from_secs(30), "the task to start", || {
        leader_file.exists()
    });
    let read_pid = |p: &std::path::Path| -> i32 {
        std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
    };
    let (leader, child) = (read_pid(&leader_file), read_pid(&child_file));
    assert_eq!(state(leader).map(|s| s != 'Z'), Some(true));
    let node = c.list_nodes("p", &ListOptions::default()).await.unwrap()[0]
        .id
        .clone();
    let agent = s.agent_pid(&node);
    let launcher = launcher_of(agent).expect("the agent has a task launcher");
    assert!(Command::new("kill")
        .args(["-9", &launcher.to_string()])
        .status()
        .unwrap()
        .success());
    // Both processes of the task are killed and reaped (by the agent, which adopted them):
    // gone, not zombies.
    wait_sync(
        Duration::from_secs(10),
        "the task's processes to go",
        || state(leader).is_none() && state(child).is_none(),
    );
    // The run is reported as before: the task ends, failed (it has no retries).
    wait_completed(&c, "j", 1, Duration::from_secs(30)).await;
    let long = c.get_task("j", "long").await.unwrap();
    assert_eq!(
        long.execution_info.result.map(|r| r.as_str().to_owned()),
        Some("failure".to_owned())
    );
    // No zombie is left under the agent.
    let zombies: Vec<i32> = children(agent)
        .into_iter()
        .filter(|p| state(*p) == Some('Z'))
        .collect();
    assert!(zombies.is_empty(), "zombies under the agent: {zombies:?}");
    // The next task runs, through a new launcher.
    c.add_task_collection("j", &[task("next", "/bin/sh -c \"echo ok\"", json!({}))])
        .await
        .unwrap();
    wait_completed(&c, "j", 2, Duration::from_secs(30)).await;
    let next = c.get_task("j", "next").await.unwrap();
    assert_eq!(
        next.execution_info.result.map(|r| r.as_str().to_owned()),
        Some("success".to_owned())
    );
    let relaunched = launcher_of(agent).expect("a new task launcher");
    assert_ne!(relaunched, launcher);
}
