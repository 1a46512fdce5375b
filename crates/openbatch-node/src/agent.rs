//! The agent's connection to the server: dial out, say Hello, run what it is told, report
//! results until the server acknowledges them, and dial again when the connection drops.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use openbatch_api::agent::{
    AgentMsg, RunId, RunResult, RunSpec, ServerMsg, PROTOCOL_VERSION, TOKEN_HEADER,
};
use openbatch_api::models::{ErrorCategory, FailureInfo, NameValuePair, StartTask};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::cleanup;
use crate::files;
use crate::runner::{
    self, KillReason, OutputFileSpec, ResourceFileSpec, ResourceSource, RunKiller, RunOutcome,
    UploadCondition,
};

pub const AGENT_VERSION: &str = concat!("openbatch-node/", env!("CARGO_PKG_VERSION"));

/// Backoff between connection attempts, doubling up to the maximum.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// At most this many queued messages go out in one write to the server.
const WRITE_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `http://host:port` of the server.
    pub server_url: String,
    pub token: String,
    /// Set for provisioned nodes; joined nodes learn theirs from the server.
    pub node_id: Option<String>,
    /// For `node join`: the pool to join.
    pub pool_id: Option<String>,
    /// The node root (`AZ_BATCH_NODE_ROOT_DIR`).
    pub root_dir: PathBuf,
    pub vm_size: Option<String>,
    pub slots: Option<u32>,
    /// Give up (and stop every task) after this long without reaching the server.
    pub give_up_after: Duration,
    /// The GPUs the local provider assigned to this node (`Some(vec![])`: none). `None` (a
    /// joined node, or a provider that does not assign GPUs): every GPU discovery finds.
    pub gpus: Option<Vec<crate::gpu::GpuInfo>>,
}

/// What the node knows about itself once welcomed.
#[derive(Debug, Clone, Default)]
struct Identity {
    node_id: String,
    pool_id: String,
    account_name: String,
    account_url: String,
    dedicated: bool,
}

#[derive(Default)]
struct Shared {
    identity: Identity,
    running: HashMap<RunId, RunKiller>,
    /// The (job id, task id) of each running run: their directories are not deleted.
    run_dirs: HashMap<RunId, (String, String)>,
    /// Where each running task finds its preemption notice (`AZ_BATCH_TASK_PREEMPTION_NOTICE`).
    notice_files: HashMap<RunId, PathBuf>,
    /// Finished runs the server has not acknowledged yet, in finishing order.
    unacked: BTreeMap<u64, (RunId, RunResult)>,
    next_order: u64,
    start_task_unacked: Option<RunResult>,
    start_task_running: bool,
    /// The live connection's outbox, if any.
    outbox: Option<mpsc::UnboundedSender<Message>>,
    /// The GPUs this node's tasks see, and the variables that show them (see `gpu.rs`).
    gpus: Vec<crate::gpu::GpuInfo>,
    gpu_env: Vec<(String, String)>,
    /// The coordination barriers of the multi-instance runs in flight: (barrier, primary).
    barriers: HashMap<RunId, (runner::Barrier, bool)>,
}

type State = Arc<Mutex<Shared>>;

fn lock(s: &State) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn send(s: &State, msg: &AgentMsg) {
    if let Ok(text) = serde_json::to_string(msg) {
        if let Some(tx) = &lock(s).outbox {
            let _ = tx.send(Message::Text(text.into()));
        }
    }
}

/// Run the agent until the server tells it to leave, refuses it, or cannot be reached.
pub async fn run_agent(opts: AgentOptions) -> anyhow::Result<()> {
    for d in [
        "applications",
        "fsmounts",
        "shared",
        "startup",
        "volatile",
        "workitems",
    ] {
        std::fs::create_dir_all(opts.root_dir.join(d))
            .with_context(|| format!("creating {}", opts.root_dir.join(d).display()))?;
    }
    let root = opts.root_dir.canonicalize()?;
    // An install the agent was killed in the middle of is started again when next needed.
    runner::apps::clean_partial(&root.join("applications"));
    // Directories an earlier agent took for deletion but did not finish removing.
    let trash_root = root.clone();
    tokio::task::spawn_blocking(move || cleanup::clean_trash(&trash_root));
    let state: State = Arc::new(Mutex::new(Shared::default()));
    {
        let (gpus, gpu_env) = node_gpus(&opts);
        let mut s = lock(&state);
        s.gpus = gpus;
        s.gpu_env = gpu_env;
    }
    let url = ws_url(&opts.server_url)?;
    let mut backoff = RECONNECT_MIN;
    let mut last_contact = tokio::time::Instant::now();
    let mut node_id = opts.node_id.clone();
    loop {
        match connect_once(&opts, &url, &root, &state, &mut node_id).await {
            Ok(Session::Shutdown) => {
                tracing::info!("the server asked this node to leave; stopping");
                kill_all(&state, KillReason::Requeued);
                return Ok(());
            }
            Ok(Session::Dropped) => {
                last_contact = tokio::time::Instant::now();
                backoff = RECONNECT_MIN;
            }
            Ok(Session::Restart(wipe)) => {
                tracing::info!(
                    wipe,
                    "restarting as the server asked (reboot{})",
                    if wipe { " with reimage" } else { "" }
                );
                restart(&state, &root, wipe).await;
                last_contact = tokio::time::Instant::now();
                backoff = RECONNECT_MIN;
                continue;
            }
            Err(ConnectError::Refused(reason)) => {
                kill_all(&state, KillReason::Requeued);
                bail!("the server refused this node: {reason}");
            }
            Err(ConnectError::Unreachable(e)) => {
                if last_contact.elapsed() > opts.give_up_after {
                    kill_all(&state, KillReason::Requeued);
                    bail!(
                        "could not reach the server at {} for {:?} ({e}); giving up",
                        opts.server_url,
                        opts.give_up_after
                    );
                }
                tracing::debug!(error = %e, "server unreachable; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// The GPUs of this node and the environment that shows them to its tasks: the provider's
/// assignment, or (joined nodes) every GPU this machine has. An operator who started a joined
/// agent with `CUDA_VISIBLE_DEVICES` set keeps it: tasks inherit the agent's environment.
fn node_gpus(opts: &AgentOptions) -> (Vec<crate::gpu::GpuInfo>, Vec<(String, String)>) {
    let (gpus, how) = match &opts.gpus {
        Some(assigned) => (assigned.clone(), "assigned by the server"),
        None => (crate::gpu::discover(), "found on this machine"),
    };
    let list: Vec<String> = gpus.iter().map(crate::gpu::describe).collect();
    if gpus.is_empty() && opts.gpus.is_none() {
        tracing::info!("no GPUs found on this machine");
    } else {
        tracing::info!(count = gpus.len(), gpus = %list.join("; "), "GPUs {how}");
    }
    let inherited = std::env::var_os("CUDA_VISIBLE_DEVICES").is_some();
    let env = if opts.gpus.is_some() || (!gpus.is_empty() && !inherited) {
        crate::gpu::visible_env(&gpus)
    } else {
        Vec::new()
    };
    (gpus, env)
}

/// A reboot: every task is killed (the server already requeued or ended them), the start task
/// forgotten, and with `wipe` the node root emptied, as a reimage leaves a fresh disk.
async fn restart(state: &State, root: &Path, wipe: bool) {
    kill_all(state, KillReason::Requeued);
    let deadline = tokio::time::Instant::now() + runner::KILL_GRACE + Duration::from_secs(2);
    while !lock(state).running.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let mut s = lock(state);
        s.running.clear();
        s.run_dirs.clear();
        s.unacked.clear();
        s.start_task_unacked = None;
        s.start_task_running = false;
    }
    if wipe {
        for d in [
            "applications",
            "fsmounts",
            "shared",
            "startup",
            "volatile",
            "workitems",
        ] {
            let dir = root.join(d);
            let _ = tokio::fs::remove_dir_all(&dir).await;
            let _ = tokio::fs::create_dir_all(&dir).await;
        }
    }
}

fn kill_all(state: &State, reason: KillReason) {
    for k in lock(state).running.values() {
        k.kill(reason);
    }
}

fn ws_url(server: &str) -> anyhow::Result<String> {
    let base = server.trim_end_matches('/');
    let rest = if let Some(r) = base.strip_prefix("http://") {
        format!("ws://{r}")
    } else if let Some(r) = base.strip_prefix("https://") {
        format!("wss://{r}")
    } else {
        bail!("the server URL must start with http:// or https://, got '{server}'")
    };
    Ok(format!("{rest}/agent/v1/connect"))
}

enum Session {
    Shutdown,
    Dropped,
    /// Reboot (or with `true`, reimage) and connect again.
    Restart(bool),
}

enum ConnectError {
    Refused(String),
    Unreachable(String),
}

async fn connect_once(
    opts: &AgentOptions,
    url: &str,
    root: &Path,
    state: &State,
    node_id: &mut Option<String>,
) -> Result<Session, ConnectError> {
    let unreachable = |e: &dyn std::fmt::Display| ConnectError::Unreachable(e.to_string());
    let mut req = url.into_client_request().map_err(|e| unreachable(&e))?;
    req.headers_mut().insert(
        TOKEN_HEADER,
        opts.token.parse().map_err(|_| {
            ConnectError::Refused("the join token is not a valid header value".into())
        })?,
    );
    // No Nagle: results and task starts are small messages that must not wait for ACKs.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sink, mut stream) = ws.split();
    let hello = {
        let s = lock(state);
        AgentMsg::Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: AGENT_VERSION.into(),
            node_id: node_id.clone(),
            pool_id: opts.pool_id.clone(),
            vm_size: opts.vm_size.clone(),
            slots: opts.slots,
            running: s.running.keys().copied().collect(),
            finished: s.unacked.values().cloned().collect(),
            start_task: None,
            gpus: s.gpus.clone(),
        }
    };
    let text = serde_json::to_string(&hello).map_err(|e| unreachable(&e))?;
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|e| unreachable(&e))?;
    let welcome = match stream.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<ServerMsg>(&t).ok(),
        Some(Ok(Message::Close(_))) | None => None,
        _ => None,
    };
    let heartbeat = match welcome {
        Some(ServerMsg::Welcome {
            node_id: id,
            pool_id,
            account_name,
            account_url,
            dedicated,
            heartbeat_interval,
        }) => {
            *node_id = Some(id.clone());
            lock(state).identity = Identity {
                node_id: id,
                pool_id,
                account_name,
                account_url,
                dedicated,
            };
            heartbeat_interval
        }
        Some(ServerMsg::Refused { reason }) => return Err(ConnectError::Refused(reason)),
        _ => {
            return Err(ConnectError::Unreachable(
                "no welcome from the server".into(),
            ))
        }
    };
    tracing::info!(node_id = ?node_id, "connected to the server");
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    {
        let mut s = lock(state);
        s.outbox = Some(tx.clone());
        if let Some(result) = s.start_task_unacked.clone() {
            if let Ok(t) = serde_json::to_string(&AgentMsg::StartTaskFinished { result }) {
                let _ = tx.send(Message::Text(t.into()));
            }
        }
        // Coordinations the server may not have recorded (it restarted), and primaries that
        // may have missed their release: said again, the server ignores repeats.
        for (run, (barrier, primary)) in &s.barriers {
            if barrier.is_coordinated() && !(*primary && barrier.is_released()) {
                if let Ok(t) = serde_json::to_string(&AgentMsg::Coordinated { run: *run }) {
                    let _ = tx.send(Message::Text(t.into()));
                }
            }
        }
    }
    let writer = tokio::spawn(async move {
        // What queued up while the last write was under way goes out in one write (one
        // syscall for many short messages when tasks end fast), capped to bound the buffer.
        'writing: while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                break;
            }
            for _ in 1..WRITE_BATCH {
                let Ok(m) = rx.try_recv() else { break };
                if sink.feed(m).await.is_err() {
                    break 'writing;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
    });
    let mut ticker = tokio::time::interval(heartbeat.max(Duration::from_millis(100)));
    let mut metrics = crate::metrics::Sampler::new(root);
    let outcome = loop {
        tokio::select! {
            _ = ticker.tick() => send(state, &AgentMsg::Metrics(metrics.sample())),
            msg = stream.next() => {
                let msg = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Session::Dropped,
                    Some(Ok(_)) => continue,
                };
                let Ok(msg) = serde_json::from_str::<ServerMsg>(&msg) else {
                    tracing::warn!("an unreadable message from the server was ignored");
                    continue;
                };
                match msg {
                    ServerMsg::Shutdown => break Session::Shutdown,
                    ServerMsg::Restart { wipe } => break Session::Restart(wipe),
                    _ => {}
                }
                handle(msg, root, state);
            }
        }
    };
    lock(state).outbox = None;
    writer.abort();
    Ok(outcome)
}

fn handle(msg: ServerMsg, root: &Path, state: &State) {
    match msg {
        ServerMsg::RunTask { spec } => start_task(*spec, root, state),
        ServerMsg::RunStartTask {
            start_task,
            log_upload,
            app_packages,
        } => run_start_task(start_task, log_upload, &app_packages, root, state),
        ServerMsg::RunPrimaryCommand { run } => {
            if let Some((barrier, true)) = lock(state).barriers.get(&run) {
                barrier.release();
            }
        }
        ServerMsg::KillTask { run } => {
            if let Some(k) = lock(state).running.get(&run) {
                k.kill(KillReason::Terminated);
            }
        }
        ServerMsg::Preempt { grace, deadline } => preempt(state, grace, deadline),
        ServerMsg::DeleteTaskDirs { dirs } => delete_task_dirs(dirs, root, state),
        ServerMsg::InstallPackages { app_packages } => {
            if let Some(apps) = applications(root, &app_packages) {
                tokio::spawn(async move {
                    if let Err(f) = runner::apps::install_all(&apps).await {
                        tracing::warn!(code = %f.code, message = %f.message, "an application package could not be installed ahead of its runs");
                    }
                });
            }
        }
        ServerMsg::Ack { runs, start_task } => {
            let mut s = lock(state);
            s.unacked.retain(|_, (r, _)| !runs.contains(r));
            if start_task {
                s.start_task_unacked = None;
            }
        }
        ServerMsg::ListFiles {
            req,
            path,
            recursive,
        } => {
            let root = root.to_path_buf();
            let state = state.clone();
            tokio::spawn(async move {
                let result = files::list(&root, &path, recursive).await;
                send(&state, &AgentMsg::Files { req, result });
            });
        }
        ServerMsg::DeleteFile {
            req,
            path,
            recursive,
        } => {
            let root = root.to_path_buf();
            let state = state.clone();
            tokio::spawn(async move {
                let result = files::delete(&root, &path, recursive).await;
                send(&state, &AgentMsg::Deleted { req, result });
            });
        }
        ServerMsg::ReadFile {
            req,
            path,
            range,
            head_only,
        } => {
            let root = root.to_path_buf();
            let state = state.clone();
            tokio::spawn(async move {
                let outbox = lock(&state).outbox.clone();
                if let Some(outbox) = outbox {
                    files::read(&root, &path, range, head_only, req, &outbox).await;
                }
            });
        }
        ServerMsg::Welcome { .. }
        | ServerMsg::Refused { .. }
        | ServerMsg::Shutdown
        | ServerMsg::Restart { .. } => {}
    }
}

/// The `AZ_BATCH_*` environment of every task on this node, and the variables that show it
/// its GPUs (before the task's own settings, which win).
fn node_env(root: &Path, s: &Shared) -> Vec<(String, String)> {
    let id = &s.identity;
    let r = root.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("AZ_BATCH_ACCOUNT_NAME".into(), id.account_name.clone()),
        ("AZ_BATCH_ACCOUNT_URL".into(), id.account_url.clone()),
        ("AZ_BATCH_POOL_ID".into(), id.pool_id.clone()),
        ("AZ_BATCH_NODE_ID".into(), id.node_id.clone()),
        (
            "AZ_BATCH_NODE_IS_DEDICATED".into(),
            id.dedicated.to_string(),
        ),
        ("AZ_BATCH_NODE_ROOT_DIR".into(), r.clone()),
        ("AZ_BATCH_NODE_SHARED_DIR".into(), format!("{r}/shared")),
        ("AZ_BATCH_NODE_STARTUP_DIR".into(), format!("{r}/startup")),
        ("AZ_BATCH_NODE_MOUNTS_DIR".into(), format!("{r}/fsmounts")),
    ];
    env.extend(s.gpu_env.iter().cloned());
    env
}

/// The wire resource files as the runner takes them. `autoStorageContainerName` never
/// arrives: the server resolves it into a container URL (or `httpUrl`s) before dispatching.
fn resource_files(
    files: &[openbatch_api::models::ResourceFile],
) -> Result<Vec<ResourceFileSpec>, String> {
    files
        .iter()
        .map(|f| {
            let source = match (&f.http_url, &f.storage_container_url) {
                (Some(url), _) => ResourceSource::HttpUrl(url.clone()),
                (None, Some(url)) => ResourceSource::Container {
                    url: url.clone(),
                    blob_prefix: f.blob_prefix.clone().unwrap_or_default(),
                },
                (None, None) => {
                    return Err(format!(
                        "the resource file for auto-storage container '{}' reached the node without a URL; the server resolves those when it dispatches a run",
                        f.auto_storage_container_name.as_deref().unwrap_or_default()
                    ))
                }
            };
            Ok(ResourceFileSpec {
                source,
                file_path: f.file_path.clone().unwrap_or_default(),
                file_mode: f.file_mode.clone(),
            })
        })
        .collect()
}

/// The port named in `AZ_BATCH_MASTER_NODE`. Azure documents the variable as the primary's
/// `ip:port` and tells programs not to use the port; openbatch keeps the same shape.
const MASTER_PORT: u16 = 6000;

/// The multi-instance variables of one instance (Azure's names and formats). With nodes
/// started by the local provider every address is the same (the loopback), repeated once
/// per instance.
fn instance_env(i: &openbatch_api::agent::InstanceSpec, task_dir: &Path) -> Vec<(String, String)> {
    let master = i.hosts.first().cloned().unwrap_or_default();
    vec![
        (
            "AZ_BATCH_TASK_SHARED_DIR".into(),
            task_dir.display().to_string(),
        ),
        ("AZ_BATCH_HOST_LIST".into(), i.hosts.join(",")),
        ("AZ_BATCH_NODE_LIST".into(), i.hosts.join(";")),
        (
            "AZ_BATCH_MASTER_NODE".into(),
            format!("{master}:{MASTER_PORT}"),
        ),
        (
            "AZ_BATCH_IS_CURRENT_NODE_MASTER".into(),
            (i.index == 0).to_string(),
        ),
    ]
}

/// The wire instance as the runner takes it.
fn instance_run(i: &openbatch_api::agent::InstanceSpec) -> Result<runner::InstanceRun, String> {
    Ok(runner::InstanceRun {
        primary: i.index == 0,
        coordination_command_line: i.coordination_command_line.clone(),
        common_resource_files: resource_files(&i.common_resource_files)?,
        barrier: None,
    })
}

/// The wire output files as the runner takes them (those with a container destination; the
/// server refuses others when the task is added).
fn output_files(files: &[openbatch_api::models::OutputFile]) -> Vec<OutputFileSpec> {
    use openbatch_api::models::UploadCondition as Wire;
    files
        .iter()
        .filter_map(|f| {
            let c = f.destination.container.as_ref()?;
            Some(OutputFileSpec {
                file_pattern: f.file_pattern.clone(),
                container_url: c.container_url.clone(),
                path: c.path.clone(),
                upload_headers: c
                    .upload_headers
                    .iter()
                    .flatten()
                    .filter_map(|h| {
                        let name = h.get("name")?.as_str()?.to_string();
                        let value = h.get("value").and_then(|v| v.as_str()).unwrap_or_default();
                        Some((name, value.to_string()))
                    })
                    .collect(),
                condition: match f.upload_options.upload_condition {
                    Wire::TaskSuccess => UploadCondition::TaskSuccess,
                    Wire::TaskFailure => UploadCondition::TaskFailure,
                    Wire::TaskCompletion => UploadCondition::TaskCompletion,
                },
            })
        })
        .collect()
}

/// The packages of a run as the runner takes them (the server signed their URLs).
fn applications(
    root: &Path,
    packages: &[openbatch_api::agent::AppPackage],
) -> Option<runner::apps::Applications> {
    (!packages.is_empty()).then(|| runner::apps::Applications {
        dir: root.join("applications"),
        packages: packages
            .iter()
            .map(|p| runner::apps::AppPackageSpec {
                application_id: p.application_id.clone(),
                version: p.version.clone(),
                is_default: p.is_default,
                sha256: p.sha256.clone(),
                url: p.url.clone(),
            })
            .collect(),
    })
}

fn log_spec(l: openbatch_api::agent::LogUpload) -> runner::LogUploadSpec {
    runner::LogUploadSpec {
        container_url: l.container_url,
        prefix: l.prefix,
    }
}

fn to_result(o: RunOutcome) -> RunResult {
    RunResult {
        start_time: o.start_time,
        end_time: o.end_time,
        exit_code: o.exit_code,
        failure: o.failure.map(|f| FailureInfo {
            category: match f.category {
                runner::FailureCategory::UserError => ErrorCategory::UserError,
                runner::FailureCategory::ServerError => ErrorCategory::ServerError,
            },
            code: Some(f.code),
            message: Some(f.message),
            details: f
                .details
                .into_iter()
                .map(|(n, v)| NameValuePair {
                    name: Some(n),
                    value: Some(v),
                })
                .collect(),
        }),
        pre_processing_error: o.pre_processing_error,
        file_upload_error: o.file_upload_error,
        empty_logs: o.empty_logs,
    }
}

fn unsupported_result(message: String) -> RunResult {
    let now = chrono::Utc::now();
    RunResult {
        start_time: now,
        end_time: now,
        exit_code: None,
        failure: Some(FailureInfo {
            category: ErrorCategory::UserError,
            code: Some("ResourceFileUnsupported".into()),
            message: Some(message),
            details: Vec::new(),
        }),
        pre_processing_error: true,
        file_upload_error: false,
        empty_logs: Vec::new(),
    }
}

/// The notice file of a task, in its task directory (`AZ_BATCH_TASK_PREEMPTION_NOTICE`).
const NOTICE_FILE: &str = "preemption-notice.json";

/// The node is being preempted: tell every running task (a notice file, then SIGTERM) and
/// SIGKILL what is left when the grace period ends. Their ends are reported as usual; the
/// server requeues them.
fn preempt(state: &State, grace: Duration, deadline: chrono::DateTime<chrono::Utc>) {
    let s = lock(state);
    tracing::warn!(
        runs = s.running.len(),
        grace_secs = grace.as_secs(),
        "this node is being preempted; its tasks get SIGTERM and the grace period"
    );
    let notice = serde_json::json!({
        "nodeId": s.identity.node_id,
        "poolId": s.identity.pool_id,
        "noticeTime": chrono::Utc::now(),
        "deadline": deadline,
        "gracePeriodSeconds": grace.as_secs_f64(),
    })
    .to_string();
    for (run, killer) in &s.running {
        if let Some(path) = s.notice_files.get(run) {
            // Written before the signal, so a SIGTERM handler finds it.
            if let Err(e) = std::fs::write(path, &notice) {
                tracing::warn!(run, error = %e, "could not write a preemption notice");
            }
        }
        killer.kill(KillReason::Preempted { grace });
    }
}

/// The server asks for task or job directories to go: each is moved out of the way now (in
/// message order, before any run that comes next), unless a run here uses it, and removed on a
/// blocking thread. The answer names every requested directory, deleted or refused for good.
fn delete_task_dirs(dirs: Vec<openbatch_api::agent::TaskDirRef>, root: &Path, state: &State) {
    let busy: Vec<(String, String)> = lock(state).run_dirs.values().cloned().collect();
    let in_use = |d: &openbatch_api::agent::TaskDirRef| {
        busy.iter().any(|(j, t)| {
            j.eq_ignore_ascii_case(&d.job_id)
                && d.task_id
                    .as_deref()
                    .is_none_or(|x| x.eq_ignore_ascii_case(t))
        })
    };
    let (outcomes, taken) = cleanup::take_dirs(root, &dirs, &in_use);
    for (d, o) in dirs.iter().zip(&outcomes) {
        match o {
            cleanup::Outcome::Taken | cleanup::Outcome::Missing => {
                tracing::debug!(dir = %d.path(), outcome = ?o, "task directory deleted");
            }
            cleanup::Outcome::InUse => {
                tracing::info!(dir = %d.path(), "a run on this node uses a directory the server asked to delete; it is kept");
            }
            cleanup::Outcome::Refused(why) => {
                tracing::warn!(job_id = %d.job_id, task_id = ?d.task_id, reason = %why, "refused to delete a directory");
            }
        }
    }
    if !taken.is_empty() {
        tokio::task::spawn_blocking(move || cleanup::remove_all(&taken));
    }
    send(state, &AgentMsg::TaskDirsDeleted { dirs });
}

fn finish_task(state: &State, run: RunId, result: RunResult) {
    let mut s = lock(state);
    s.running.remove(&run);
    s.run_dirs.remove(&run);
    s.notice_files.remove(&run);
    s.barriers.remove(&run);
    let order = s.next_order;
    s.next_order += 1;
    s.unacked.insert(order, (run, result.clone()));
    if let Some(tx) = &s.outbox {
        if let Ok(t) = serde_json::to_string(&AgentMsg::TaskFinished { run, result }) {
            let _ = tx.send(Message::Text(t.into()));
        }
    }
}

fn start_task(spec: RunSpec, root: &Path, state: &State) {
    let run = spec.run;
    if lock(state).running.contains_key(&run) {
        return;
    }
    let task_dir = root.join(openbatch_api::agent::task_dir(&spec.job_id, &spec.task_id));
    let files = match resource_files(&spec.resource_files) {
        Ok(f) => f,
        Err(m) => return finish_task(state, run, unsupported_result(m)),
    };
    let mut instance = match spec.instance.as_ref().map(instance_run).transpose() {
        Ok(i) => i,
        Err(m) => return finish_task(state, run, unsupported_result(m)),
    };
    // With other instances, the primary's command line waits for all their coordination
    // commands (the server releases it), and each instance reports its own.
    if let Some(i) = instance
        .as_mut()
        .filter(|_| spec.instance.as_ref().is_some_and(|i| i.count > 1))
    {
        let barrier = runner::Barrier::new();
        i.barrier = Some(barrier.clone());
        let mut coordinated = barrier.watch_coordinated();
        lock(state).barriers.insert(run, (barrier, i.primary));
        let state = state.clone();
        tokio::spawn(async move {
            // Ends with the run (its barrier gone) if it never coordinates.
            if coordinated.wait_for(|c| *c).await.is_ok() {
                send(&state, &AgentMsg::Coordinated { run });
            }
        });
    }
    // A subtask stages nothing of the task's own and uploads none of its output files: those
    // are the primary's (Azure downloads the task's resource files on the primary only).
    let subtask = instance.as_ref().is_some_and(|i| !i.primary);
    let (files, outputs) = if subtask {
        (Vec::new(), Vec::new())
    } else {
        (files, output_files(&spec.output_files))
    };
    let mut env = node_env(root, &lock(state));
    env.extend([
        ("AZ_BATCH_JOB_ID".into(), spec.job_id.clone()),
        ("AZ_BATCH_TASK_ID".into(), spec.task_id.clone()),
        ("AZ_BATCH_TASK_DIR".into(), task_dir.display().to_string()),
        (
            "AZ_BATCH_TASK_WORKING_DIR".into(),
            task_dir.join("wd").display().to_string(),
        ),
        (
            "AZ_BATCH_TASK_PREEMPTION_NOTICE".into(),
            task_dir.join(NOTICE_FILE).display().to_string(),
        ),
    ]);
    if let Some(prep) = &spec.job_preparation_task {
        let dir = root.join(openbatch_api::agent::task_dir(&spec.job_id, prep));
        env.extend([
            ("AZ_BATCH_JOB_PREP_DIR".into(), dir.display().to_string()),
            (
                "AZ_BATCH_JOB_PREP_WORKING_DIR".into(),
                dir.join("wd").display().to_string(),
            ),
        ]);
    }
    if let Some(i) = &spec.instance {
        env.extend(instance_env(i, &task_dir));
    }
    let notice = task_dir.join(NOTICE_FILE);
    // A notice left by an earlier attempt of this task on this node is stale.
    let _ = std::fs::remove_file(&notice);
    env.extend(
        spec.environment
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())),
    );
    let (job_id, task_id) = (spec.job_id.clone(), spec.task_id.clone());
    let span = tracing::debug_span!("task", job_id = %spec.job_id, task_id = %spec.task_id, run);
    let _enter = span.enter();
    let handle = runner::start(runner::RunSpec {
        command_line: spec.command_line,
        working_dir: task_dir.join("wd"),
        task_dir,
        env,
        resource_files: files,
        output_files: outputs,
        max_wall_clock: spec.max_wall_clock,
        log_upload: spec.log_upload.map(log_spec),
        applications: applications(root, &spec.app_packages),
        instance,
    });
    {
        let mut s = lock(state);
        s.running.insert(run, handle.killer());
        s.run_dirs.insert(run, (job_id, task_id));
        s.notice_files.insert(run, notice);
    }
    let state = state.clone();
    tokio::spawn(async move {
        let outcome = handle.wait().await;
        finish_task(&state, run, to_result(outcome));
    });
}

fn run_start_task(
    st: StartTask,
    log_upload: Option<openbatch_api::agent::LogUpload>,
    app_packages: &[openbatch_api::agent::AppPackage],
    root: &Path,
    state: &State,
) {
    {
        let mut s = lock(state);
        if s.start_task_running {
            return;
        }
        s.start_task_running = true;
    }
    let dir = root.join("startup");
    let files = match resource_files(&st.resource_files) {
        Ok(f) => f,
        Err(m) => {
            let result = unsupported_result(m);
            let mut s = lock(state);
            s.start_task_running = false;
            s.start_task_unacked = Some(result.clone());
            drop(s);
            return send(state, &AgentMsg::StartTaskFinished { result });
        }
    };
    let mut env = node_env(root, &lock(state));
    env.extend([
        ("AZ_BATCH_TASK_DIR".into(), dir.display().to_string()),
        (
            "AZ_BATCH_TASK_WORKING_DIR".into(),
            dir.join("wd").display().to_string(),
        ),
    ]);
    env.extend(
        st.environment_settings
            .iter()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())),
    );
    let handle = runner::start(runner::RunSpec {
        command_line: st.command_line,
        working_dir: dir.join("wd"),
        task_dir: dir,
        env,
        resource_files: files,
        output_files: Vec::new(),
        max_wall_clock: None,
        log_upload: log_upload.map(log_spec),
        applications: applications(root, app_packages),
        instance: None,
    });
    let state = state.clone();
    tokio::spawn(async move {
        let result = to_result(handle.wait().await);
        {
            let mut s = lock(&state);
            s.start_task_running = false;
            s.start_task_unacked = Some(result.clone());
        }
        send(&state, &AgentMsg::StartTaskFinished { result });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The multi-instance variables in Azure's formats: `ip,ip`, `ip;ip`, the primary's
    /// `ip:port`, and whether this node is the primary's.
    #[test]
    fn instance_env_names_the_hosts_and_the_master() {
        let spec = openbatch_api::agent::InstanceSpec {
            index: 1,
            count: 3,
            hosts: vec!["10.0.0.4".into(), "10.0.0.5".into(), "10.0.0.6".into()],
            coordination_command_line: Some("start".into()),
            common_resource_files: Vec::new(),
        };
        let env: HashMap<String, String> = instance_env(&spec, Path::new("/r/workitems/j/job-1/t"))
            .into_iter()
            .collect();
        assert_eq!(env["AZ_BATCH_HOST_LIST"], "10.0.0.4,10.0.0.5,10.0.0.6");
        assert_eq!(env["AZ_BATCH_NODE_LIST"], "10.0.0.4;10.0.0.5;10.0.0.6");
        assert_eq!(env["AZ_BATCH_MASTER_NODE"], "10.0.0.4:6000");
        assert_eq!(env["AZ_BATCH_IS_CURRENT_NODE_MASTER"], "false");
        assert_eq!(env["AZ_BATCH_TASK_SHARED_DIR"], "/r/workitems/j/job-1/t");
        let primary = openbatch_api::agent::InstanceSpec { index: 0, ..spec };
        let run = instance_run(&primary).unwrap();
        assert!(run.primary);
        assert_eq!(run.coordination_command_line.as_deref(), Some("start"));
        let env: HashMap<String, String> = instance_env(&primary, Path::new("/t"))
            .into_iter()
            .collect();
        assert_eq!(env["AZ_BATCH_IS_CURRENT_NODE_MASTER"], "true");
    }
}
