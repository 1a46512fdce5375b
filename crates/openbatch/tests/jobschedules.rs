//! Job schedules end to end: the real binary as a server (recurrences down to 1 s allowed by
//! `OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE`), the `openbatch jobschedule` CLI and the typed
//! client, and a `kill -9` of the server between two runs of a schedule: the jobs it created
//! are still there after the restart, the schedule goes on, and no job id is used twice.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openbatch_api::models::{JobScheduleState, JobState};
use openbatch_client::{Client, ListOptions};

/// Ids of the schedule's jobs once there are `n` of them.
async fn jobs_of(client: &Client, schedule: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ids: Vec<String> = client
            .list_jobs_from_schedule(schedule, &ListOptions::default())
            .await
            .map(|jobs| jobs.into_iter().map(|j| j.id).collect())
            .unwrap_or_default();
        if ids.len() >= n {
            ids.sort();
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} jobs of {schedule} (have {ids:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_survives_a_server_kill_and_the_cli_drives_it() {
    let mut server = Server::start();
    // The jobs need no pool to be created; nothing runs in them.
    let created = server.cli_ok(&[
        "jobschedule",
        "create",
        "--id",
        "tick",
        "--pool-id",
        "nowhere",
        "--recurrence",
        "PT1S",
        "-o",
        "json",
    ]);
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    assert_eq!(created["id"], "tick");
    assert_eq!(created["schedule"]["recurrenceInterval"], "PT1S");
    let client = server.client();
    assert_eq!(jobs_of(&client, "tick", 1).await, ["tick:job-1"]);

    // A job with nothing to do stays active: ending it lets the next one in.
    client.terminate_job("tick:job-1", None).await.unwrap();
    assert_eq!(
        jobs_of(&client, "tick", 2).await,
        ["tick:job-1", "tick:job-2"]
    );

    server.kill9();
    server.spawn();
    let client = server.client();
    let s = client.get_job_schedule("tick").await.unwrap();
    assert_eq!(s.state, JobScheduleState::Active);
    assert_eq!(
        s.execution_info.recent_job.and_then(|r| r.id).as_deref(),
        Some("tick:job-2")
    );
    let jobs = jobs_of(&client, "tick", 2).await;
    assert_eq!(jobs, ["tick:job-1", "tick:job-2"], "job-2 still runs");
    assert_eq!(
        client.get_job("tick:job-1").await.unwrap().state,
        JobState::Completed
    );
    client.terminate_job("tick:job-2", None).await.unwrap();
    assert_eq!(jobs_of(&client, "tick", 3).await.len(), 3);

    // The rest of the CLI.
    let listed = server.cli_ok(&["jobschedule", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("tick") && l.contains("every PT1S")),
        "{listed}"
    );
    server.cli_ok(&["jobschedule", "disable", "tick"]);
    let shown = server.cli_ok(&["jobschedule", "show", "tick"]);
    assert!(
        shown.contains("disabled") && shown.contains("tick:job-3 (active)"),
        "{shown}"
    );
    server.cli_ok(&["jobschedule", "enable", "tick"]);
    server.cli_ok(&["jobschedule", "terminate", "tick"]);
    let s = client.get_job_schedule("tick").await.unwrap();
    assert_eq!(
        s.state,
        JobScheduleState::Completed,
        "job-3 had nothing running"
    );
    let bad = server.cli(&[
        "jobschedule",
        "create",
        "--id",
        "b",
        "--pool-id",
        "p",
        "--cron",
        "0 3 * *",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected 5 fields"));
    server.cli_ok(&["jobschedule", "delete", "tick", "--wait", "--timeout", "20"]);
    assert!(!client.job_schedule_exists("tick").await.unwrap());
    assert!(client
        .list_jobs(&ListOptions::default())
        .await
        .unwrap()
        .is_empty());
}
