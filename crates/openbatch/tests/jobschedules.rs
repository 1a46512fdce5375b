//! Job schedules end to end: the real binary as a server (recurrences down to 1 s allowed by
//! `OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE`), the `openbatch jobschedule` CLI and the typed
//! client, and a `kill -9` of the server between two runs of a schedule: the jobs it created
//! are still there after the restart, the schedule goes on, and no job id is used twice.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use openbatch_api::models::{JobScheduleState, JobState};
use openbatch_client::{Client, ListOptions};

const BIN: &str = env!("CARGO_BIN_EXE_openbatch");

struct Server {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    listen: String,
}

impl Server {
    fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            dir: tmp.path().join("data"),
            _tmp: tmp,
            listen: "127.0.0.1:0".into(),
        };
        s.spawn();
        // Restarts reuse the port.
        let endpoint = s.credentials()["endpoint"].as_str().unwrap().to_string();
        s.listen = endpoint.trim_start_matches("http://").to_string();
        s
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("credentials.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("log file");
        let child = Command::new(BIN)
            .args(["server", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", &self.listen])
            .env("OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE", "1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.dir.join("credentials.json").exists() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn credentials(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("credentials.json")).unwrap())
            .unwrap()
    }

    fn client(&self) -> Client {
        let c = self.credentials();
        Client::new(
            c["endpoint"].as_str().unwrap(),
            c["accountName"].as_str().unwrap(),
            c["accountKey"].as_str().unwrap(),
        )
        .unwrap()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the CLI against this server.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("OPENBATCH_DATA_DIR", &self.dir)
            .env_remove("OPENBATCH_ENDPOINT")
            .env_remove("OPENBATCH_ACCOUNT_NAME")
            .env_remove("OPENBATCH_ACCOUNT_KEY")
            .output()
            .expect("run the CLI")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "openbatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

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
