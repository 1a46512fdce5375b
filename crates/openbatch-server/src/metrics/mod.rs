//! `GET /metrics`: the Prometheus text exposition of the service's state and activity.
//!
//! What is exposed is counts, pool ids and route templates: never job or task ids, so label
//! cardinality stays bounded by the number of pools (and the API's routes), and the endpoint can
//! be served without Shared Key by default, as Prometheus expects (`[metrics] access`).
//!
//! Sources, and what a scrape costs:
//! - the core, read under its mutex once: `Core::pool_gauges` (O(nodes)) and
//!   `Core::task_tallies` (O(pools): derived per-pool counters kept by the core, never a walk
//!   over tasks). The time spent holding the lock is itself exported.
//! - counters kept as things happen: the journal (`engine.rs` through [`JournalStats`]), agent
//!   messages ([`AgentTraffic`]), and HTTP requests ([`http::track`]).
//! - the agents' latest resource reports, aggregated per pool.

pub(crate) mod http;
pub(crate) mod text;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::NodeState;
use serde::{Deserialize, Serialize};

use crate::http::AppError;
use crate::server::AppState;
use text::{Histogram, Kind, Text};

/// Who may read `/metrics` (`[metrics] access`, `OPENBATCH_METRICS_ACCESS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who can reach the listener (the Prometheus convention; only counts and pool ids
    /// are exposed).
    #[default]
    Open,
    /// Requests signed with the account's Shared Key, like the REST API.
    SharedKey,
    /// Nobody: `/metrics` answers 404.
    Disabled,
}

impl FromStr for MetricsAccess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "sharedkey" => Ok(Self::SharedKey),
            "disabled" => Ok(Self::Disabled),
            _ => Err(format!(
                "'{s}' is not a metrics access mode; expected open, sharedkey or disabled"
            )),
        }
    }
}

/// `[metrics]` in the server's config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub access: MetricsAccess,
}

impl MetricsConfig {
    pub(crate) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        if let Some(v) = get("OPENBATCH_METRICS_ACCESS") {
            self.access = v
                .parse()
                .map_err(|e| anyhow::anyhow!("OPENBATCH_METRICS_ACCESS: {e}"))?;
        }
        Ok(())
    }
}

/// Upper bounds of the journal's commit histogram (seconds): an fsync is 0.1 to 10 ms on
/// SSDs, more on network disks.
const COMMIT_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The journal's activity, counted by the committer thread.
pub(crate) struct JournalStats {
    commits: AtomicU64,
    records: AtomicU64,
    syncs: AtomicU64,
    snapshots: AtomicU64,
    errors: AtomicU64,
    commit_seconds: Mutex<Histogram>,
}

impl JournalStats {
    pub(crate) fn new() -> Self {
        Self {
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            commit_seconds: Mutex::new(Histogram::new(COMMIT_BOUNDS)),
        }
    }

    /// One transaction of `records` was written (and synced, if `synced`) in `took`.
    pub(crate) fn committed(&self, records: usize, synced: bool, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        if synced {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.commit_seconds).observe(took.as_secs_f64());
    }

    /// A sync of commits written unsynced before.
    pub(crate) fn synced(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_written(&self) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
    }

    /// A write or sync failed (and is retried).
    pub(crate) fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages over the agents' WebSockets.
#[derive(Default)]
pub(crate) struct AgentTraffic {
    pub(crate) received: AtomicU64,
    pub(crate) sent: AtomicU64,
}

/// What the HTTP layer and the scrape itself count.
pub(crate) struct Metrics {
    pub(crate) http: http::HttpStats,
    auth_failures: AtomicU64,
    started: f64,
    /// How long the latest scrape held the core's lock, in nanoseconds.
    last_core_read_nanos: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            http: http::HttpStats::default(),
            auth_failures: AtomicU64::new(0),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            last_core_read_nanos: AtomicU64::new(0),
        }
    }

    /// A request was refused because its Shared Key signature was missing or wrong.
    pub(crate) fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /metrics`.
pub(crate) async fn serve(State(st): State<Arc<AppState>>, req: Request) -> Response {
    match st.config.metrics.access {
        MetricsAccess::Disabled => {
            let mut r = Response::new(Body::from(
                "The metrics endpoint is disabled on this server ([metrics] access = \"disabled\").\n",
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        MetricsAccess::SharedKey => {
            if let Err(e) = check_shared_key(&st, &req) {
                st.metrics.auth_failed();
                return e.into_response();
            }
        }
        MetricsAccess::Open => {}
    }
    let body = render(&st);
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(text::CONTENT_TYPE),
    );
    r
}

/// The Shared Key check of the REST API, without its `api-version` rule (a scraper has no use
/// for one).
fn check_shared_key(st: &AppState, req: &Request) -> Result<(), AppError> {
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let to_sign = openbatch_api::auth::RequestToSign {
        method: req.method().as_str(),
        raw_path: req.uri().path(),
        raw_query: req.uri().query(),
        headers: &headers,
    };
    openbatch_api::auth::verify(
        &to_sign,
        &st.account_name,
        &[st.account_key.as_str()],
        chrono::Utc::now(),
        openbatch_api::auth::DEFAULT_MAX_SKEW,
    )
    .map_err(|e| {
        tracing::info!(reason = %e.detail(), "a metrics scrape was refused: authentication failed");
        AppError(
            ApiError::new(
                e.http_status(),
                codes::AUTHENTICATION_FAILED,
                "This server requires Shared Key authentication on /metrics ([metrics] access = \"sharedkey\"); sign the request with the account name and key.",
            )
            .with_value("AuthenticationErrorDetail", e.detail()),
        )
    })
}

/// The whole exposition.
fn render(st: &AppState) -> String {
    let read_started = Instant::now();
    let (pools, tallies, jobs) = {
        let core = st.engine.read();
        (core.pool_gauges(), core.task_tallies(), core.job_count())
    };
    let core_read = read_started.elapsed();
    st.metrics
        .last_core_read_nanos
        .store(core_read.as_nanos() as u64, Ordering::Relaxed);

    let mut t = Text::new();
    write_pools(&mut t, st, &pools);
    write_tasks(&mut t, &tallies, jobs);
    write_journal(&mut t, st.engine.journal_stats());
    st.metrics.http.write(&mut t);
    t.family(
        "openbatch_http_authentication_failures_total",
        Kind::Counter,
        "Requests refused because their Shared Key signature was missing or wrong.",
    );
    t.sample(&[], st.metrics.auth_failures.load(Ordering::Relaxed));
    write_agents(&mut t, st);
    t.family(
        "openbatch_build_info",
        Kind::Gauge,
        "Always 1; the labels say which openbatch this is.",
    );
    t.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
    t.family(
        "openbatch_start_time_seconds",
        Kind::Gauge,
        "When this server process started, in seconds since the Unix epoch.",
    );
    t.sample(&[], st.metrics.started);
    t.family(
        "openbatch_metrics_core_lock_seconds",
        Kind::Gauge,
        "How long this scrape held the core's lock to read its counters.",
    );
    t.sample(&[], core_read.as_secs_f64());
    t.finish()
}

const PRIORITIES: [(bool, &str); 2] = [(true, "dedicated"), (false, "lowpriority")];

fn write_pools(t: &mut Text, st: &AppState, pools: &[openbatch_core::PoolGauges]) {
    t.family(
        "openbatch_pool_nodes",
        Kind::Gauge,
        "Nodes of each pool by state and priority (dedicated or lowpriority).",
    );
    for p in pools {
        for (dedicated, priority) in PRIORITIES {
            for state in NodeState::ALL {
                let n = p.nodes.get(&(*state, dedicated)).copied().unwrap_or(0);
                t.sample(
                    &[
                        ("pool", &p.pool_id),
                        ("state", state.as_str()),
                        ("priority", priority),
                    ],
                    n,
                );
            }
        }
    }
    t.family(
        "openbatch_pool_target_nodes",
        Kind::Gauge,
        "The number of nodes each pool is asked to have, by priority.",
    );
    for p in pools {
        t.sample(
            &[("pool", &p.pool_id), ("priority", "dedicated")],
            p.target_dedicated,
        );
        t.sample(
            &[("pool", &p.pool_id), ("priority", "lowpriority")],
            p.target_low_priority,
        );
    }
    t.family(
        "openbatch_pool_current_nodes",
        Kind::Gauge,
        "The number of nodes each pool has now, in any state, by priority.",
    );
    for p in pools {
        for (dedicated, priority) in PRIORITIES {
            let n: u64 = p
                .nodes
                .iter()
                .filter(|((_, d), _)| *d == dedicated)
                .map(|(_, n)| n)
                .sum();
            t.sample(&[("pool", &p.pool_id), ("priority", priority)], n);
        }
    }
    t.family(
        "openbatch_pool_task_slots",
        Kind::Gauge,
        "Task slots of all nodes of each pool.",
    );
    for p in pools {
        t.sample(&[("pool", &p.pool_id)], p.slots_total);
    }
    t.family(
        "openbatch_pool_task_slots_busy",
        Kind::Gauge,
        "Task slots of each pool taken by running tasks (or held for tasks being prepared).",
    );
    for p in pools {
        t.sample(&[("pool", &p.pool_id)], p.slots_busy);
    }
    write_node_usage(t, st, pools);
}

/// The agents' latest resource reports, summed (or averaged, for CPU) per pool: per-node series
/// would grow with the fleet.
fn write_node_usage(t: &mut Text, st: &AppState, pools: &[openbatch_core::PoolGauges]) {
    struct Usage {
        reporting: u64,
        cpu: f64,
        mem_used: u64,
        mem_total: u64,
        disk_used: u64,
        disk_total: u64,
    }
    let usage: Vec<(&str, Usage)> = pools
        .iter()
        .map(|p| {
            let reports = st
                .agents
                .latest_metrics(p.node_ids.iter().map(String::as_str));
            let mut u = Usage {
                reporting: reports.len() as u64,
                cpu: 0.0,
                mem_used: 0,
                mem_total: 0,
                disk_used: 0,
                disk_total: 0,
            };
            for m in &reports {
                u.cpu += m.cpu_percent / 100.0;
                u.mem_used += m.memory_used_bytes;
                u.mem_total += m.memory_total_bytes;
                u.disk_used += m.disk_used_bytes;
                u.disk_total += m.disk_total_bytes;
            }
            if u.reporting > 0 {
                u.cpu /= u.reporting as f64;
            }
            (p.pool_id.as_str(), u)
        })
        .collect();
    type Field = fn(&Usage) -> text::Value;
    let families: [(&str, &str, Field); 6] = [
        (
            "openbatch_pool_nodes_reporting",
            "Nodes of each pool whose agent is connected and has reported its resource use.",
            |u| u.reporting.into(),
        ),
        (
            "openbatch_pool_cpu_utilization_ratio",
            "Mean CPU busy fraction (0 to 1) over the reporting nodes of each pool.",
            |u| u.cpu.into(),
        ),
        (
            "openbatch_pool_memory_used_bytes",
            "Memory in use, summed over the reporting nodes of each pool.",
            |u| u.mem_used.into(),
        ),
        (
            "openbatch_pool_memory_bytes",
            "Memory, summed over the reporting nodes of each pool.",
            |u| u.mem_total.into(),
        ),
        (
            "openbatch_pool_disk_used_bytes",
            "Disk in use on the file system of the node roots, summed over the reporting nodes of each pool.",
            |u| u.disk_used.into(),
        ),
        (
            "openbatch_pool_disk_bytes",
            "Disk size of the file system of the node roots, summed over the reporting nodes of each pool.",
            |u| u.disk_total.into(),
        ),
    ];
    for (name, help, field) in families {
        t.family(name, Kind::Gauge, help);
        for (pool, u) in &usage {
            t.sample(&[("pool", pool)], field(u));
        }
    }
}

fn write_tasks(t: &mut Text, tallies: &[openbatch_core::PoolTaskTally], jobs: usize) {
    t.family(
        "openbatch_tasks",
        Kind::Gauge,
        "Tasks of the jobs bound to each pool, by state.",
    );
    for p in tallies {
        for (state, n) in [
            ("active", p.tasks.active),
            ("preparing", p.tasks.preparing),
            ("running", p.tasks.running),
            ("completed", p.tasks.completed),
        ] {
            t.sample(&[("pool", &p.pool_id), ("state", state)], n);
        }
    }
    t.family(
        "openbatch_task_completions_total",
        Kind::Counter,
        "Tasks that completed since the server started, by pool and result (success or failure).",
    );
    for p in tallies {
        t.sample(
            &[("pool", &p.pool_id), ("result", "success")],
            p.events.succeeded,
        );
        t.sample(
            &[("pool", &p.pool_id), ("result", "failure")],
            p.events.failed,
        );
    }
    t.family(
        "openbatch_task_retries_total",
        Kind::Counter,
        "Failed task attempts that were retried since the server started, by pool.",
    );
    for p in tallies {
        t.sample(&[("pool", &p.pool_id)], p.events.retries);
    }
    t.family(
        "openbatch_task_requeues_total",
        Kind::Counter,
        "Task attempts put back in the queue (node lost, removed, preempted, job disabled) since the server started, by pool.",
    );
    for p in tallies {
        t.sample(&[("pool", &p.pool_id)], p.events.requeues);
    }
    t.family("openbatch_jobs", Kind::Gauge, "Jobs, in any state.");
    t.sample(&[], jobs);
}

fn write_journal(t: &mut Text, j: &JournalStats) {
    let counters: [(&str, &str, &AtomicU64); 5] = [
        (
            "openbatch_journal_commits_total",
            "Journal transactions written (one group commit each).",
            &j.commits,
        ),
        (
            "openbatch_journal_records_total",
            "Journal records (accepted inputs) written.",
            &j.records,
        ),
        (
            "openbatch_journal_syncs_total",
            "Journal fsyncs: synced commits, and the syncs that make agents' reports durable together.",
            &j.syncs,
        ),
        (
            "openbatch_journal_snapshots_total",
            "Snapshots of the state written.",
            &j.snapshots,
        ),
        (
            "openbatch_journal_errors_total",
            "Failed journal writes and syncs (each is retried until it succeeds).",
            &j.errors,
        ),
    ];
    for (name, help, v) in counters {
        t.family(name, Kind::Counter, help);
        t.sample(&[], v.load(Ordering::Relaxed));
    }
    let h = lock(&j.commit_seconds).clone();
    t.family(
        "openbatch_journal_commit_duration_seconds",
        Kind::Histogram,
        "Time to write one journal transaction, including its fsync when it is synced.",
    );
    t.histogram(&[], &h);
}

fn write_agents(t: &mut Text, st: &AppState) {
    t.family(
        "openbatch_agents_connected",
        Kind::Gauge,
        "Node agents connected now.",
    );
    t.sample(&[], st.agents.connected());
    t.family(
        "openbatch_agent_messages_received_total",
        Kind::Counter,
        "Messages received from node agents.",
    );
    t.sample(&[], st.agents.traffic.received.load(Ordering::Relaxed));
    t.family(
        "openbatch_agent_messages_sent_total",
        Kind::Counter,
        "Messages sent to node agents.",
    );
    t.sample(&[], st.agents.traffic.sent.load(Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_core::{Core, Input, Limits};

    #[test]
    fn access_from_toml_and_env() {
        use crate::ServerConfig;
        assert_eq!(ServerConfig::default().metrics.access, MetricsAccess::Open);
        let mut cfg: ServerConfig = toml::from_str("[metrics]\naccess = \"sharedkey\"").unwrap();
        assert_eq!(cfg.metrics.access, MetricsAccess::SharedKey);
        cfg.metrics
            .apply_env(&|k| (k == "OPENBATCH_METRICS_ACCESS").then(|| "Disabled".into()))
            .unwrap();
        assert_eq!(cfg.metrics.access, MetricsAccess::Disabled);
        let err = cfg
            .metrics
            .apply_env(&|k| (k == "OPENBATCH_METRICS_ACCESS").then(|| "public".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("open, sharedkey or disabled"),
            "{err}"
        );
        assert!(toml::from_str::<ServerConfig>("[metrics]\naccess = \"public\"").is_err());
        assert!(toml::from_str::<ServerConfig>("[metrics]\nacess = \"open\"").is_err());
    }

    /// A scrape reads O(pools + nodes) from the core, whatever the number of tasks: with 100,000
    /// tasks queued, the time under the core's lock stays in microseconds.
    #[test]
    fn a_scrape_with_100k_tasks_holds_the_core_lock_briefly() {
        let now = chrono::Utc::now();
        let mut core = Core::new(Limits::default());
        let pool =
            serde_json::json!({"id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2});
        core.apply(
            Input::CreatePool(Box::new(serde_json::from_value(pool).unwrap())),
            now,
        )
        .unwrap();
        let job = serde_json::json!({"id": "j", "poolInfo": {"poolId": "p"}});
        core.apply(
            Input::CreateJob(Box::new(serde_json::from_value(job).unwrap())),
            now,
        )
        .unwrap();
        for chunk in 0..1000 {
            let tasks = (0..100)
                .map(|i| {
                    serde_json::from_value(serde_json::json!({
                        "id": format!("t{chunk}-{i}"), "commandLine": "/bin/true"
                    }))
                    .unwrap()
                })
                .collect();
            core.apply(
                Input::AddTasks {
                    job: "j".into(),
                    tasks,
                },
                now,
            )
            .unwrap();
        }
        let runs = 200;
        let started = Instant::now();
        let mut active = 0;
        for _ in 0..runs {
            let tallies = core.task_tallies();
            let gauges = core.pool_gauges();
            active = tallies[0].tasks.active;
            assert_eq!(gauges.len(), 1);
        }
        let each = started.elapsed() / runs;
        assert_eq!(active, 100_000);
        eprintln!("core read for a scrape with 100,000 tasks: {each:?}");
        assert!(
            each < Duration::from_millis(5),
            "a scrape held the core for {each:?}"
        );
        let mut t = Text::new();
        write_tasks(&mut t, &core.task_tallies(), core.job_count());
        let samples = text::tests::parse(&t.finish()).unwrap();
        let active = samples
            .iter()
            .find(|(n, l, _)| n == "openbatch_tasks" && l["state"] == "active")
            .unwrap();
        assert_eq!(active.2, 100_000.0);
    }
}
