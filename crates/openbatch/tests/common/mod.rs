//! The harness of the end-to-end tests: the real `openbatch` binary as a server on
//! 127.0.0.1:0 with its local node agents, a typed client, the CLI, and waits with deadlines.
//!
//! Every test binary uses a different part of it.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use openbatch_api::models::{JobCreate, PoolCreate, TaskCreate};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_openbatch");

/// The binary the harness starts: `OPENBATCH_TEST_BIN` when set (a test binary copied to
/// another machine, e.g. one with a GPU, next to its `openbatch`), else the one Cargo built.
pub fn bin() -> String {
    std::env::var("OPENBATCH_TEST_BIN").unwrap_or_else(|_| BIN.to_string())
}

pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub listen: String,
    /// Environment set after the defaults (so it overrides them).
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with these environment variables on top of the test defaults.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Server {
            child: None,
            dir,
            _tmp: tmp,
            listen: "127.0.0.1:0".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        // From now on restarts reuse the port, so agents that outlive the server find it.
        let endpoint = s.credentials()["endpoint"].as_str().unwrap().to_string();
        s.listen = endpoint.trim_start_matches("http://").to_string();
        s
    }

    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("credentials.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .expect("log file");
        let child = Command::new(bin())
            .args(["server", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", &self.listen])
            .env("OPENBATCH_NODE_LOST_AFTER", "5")
            // Autoscale at test speed: sample every 200 ms, allow 1-second intervals.
            .env("OPENBATCH_AUTOSCALE_SAMPLE_INTERVAL", "0.2")
            .env("OPENBATCH_AUTOSCALE_MIN_INTERVAL", "1")
            // Preemption at test speed: 3 s of grace, capacity back 3 s after a node drained.
            .env("OPENBATCH_PREEMPTION_GRACE", "3")
            .env("OPENBATCH_PREEMPTION_RECOVERY", "3")
            // Job schedule recurrences down to 1 s.
            .env("OPENBATCH_JOB_SCHEDULE_MIN_RECURRENCE", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the server");
        self.child = Some(child);
        wait_sync(Duration::from_secs(20), "credentials.json", || {
            self.dir.join("credentials.json").exists()
        });
    }

    pub fn credentials(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("credentials.json")).unwrap())
            .unwrap()
    }

    pub fn client(&self) -> Client {
        let c = self.credentials();
        Client::new(
            c["endpoint"].as_str().unwrap(),
            c["accountName"].as_str().unwrap(),
            c["accountKey"].as_str().unwrap(),
        )
        .unwrap()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("OPENBATCH_DATA_DIR", &self.dir)
            .env_remove("OPENBATCH_ENDPOINT")
            .env_remove("OPENBATCH_ACCOUNT_NAME")
            .env_remove("OPENBATCH_ACCOUNT_KEY")
            .output()
            .expect("run the CLI")
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "openbatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn agent_pid(&self, node: &str) -> i32 {
        std::fs::read_to_string(self.dir.join("nodes").join(node).join("agent.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets the server stop its node agents.
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

pub fn wait_sync(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn pool(id: &str, nodes: i32, slots: i32, extra: serde_json::Value) -> PoolCreate {
    let mut v = json!({"id": id, "vmSize": "Standard_D2s_v3", "targetDedicatedNodes": nodes, "taskSlotsPerNode": slots});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

pub fn job(id: &str, pool: &str) -> JobCreate {
    serde_json::from_value(json!({"id": id, "poolInfo": {"poolId": pool}})).unwrap()
}

pub fn task(id: &str, cmd: &str, extra: serde_json::Value) -> TaskCreate {
    let mut v = json!({"id": id, "commandLine": cmd});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

pub async fn wait_idle(c: &Client, pool: &str, n: usize) {
    wait_until(Duration::from_secs(30), "nodes idle", || async {
        let nodes = c
            .list_nodes(pool, &ListOptions::default())
            .await
            .unwrap_or_default();
        nodes.len() == n && nodes.iter().all(|x| x.state.as_str() == "idle")
    })
    .await;
}

pub async fn wait_completed(c: &Client, job: &str, n: i64, limit: Duration) {
    wait_until(limit, "tasks completed", || async {
        c.get_task_counts(job)
            .await
            .map(|t| t.task_counts.completed == n)
            .unwrap_or(false)
    })
    .await;
}
