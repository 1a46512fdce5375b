//! Starting and stopping the server: open the store, restore the core, bind, serve, tick.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openbatch_core::{Effect, Input, Limits};
use openbatch_store::Store;
use tokio::sync::watch;

use crate::account::{self, Credentials};
use crate::agents::Agents;
use crate::config::ServerConfig;
use crate::engine::{EffectRx, Engine};
use crate::provider::LocalProvider;
use crate::tokens::Tokens;

/// How often time-driven transitions are checked (lost nodes, job schedules that are due).
const TICK: Duration = Duration::from_millis(500);

/// Everything request handlers and background tasks share.
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) agents: Arc<Agents>,
    pub(crate) provider: Arc<LocalProvider>,
    pub(crate) tokens: Tokens,
    pub(crate) account_name: String,
    pub(crate) account_key: String,
    pub(crate) config: ServerConfig,
    pub(crate) public_url: Option<String>,
    pub(crate) autoscaler: Arc<crate::autoscale::Autoscaler>,
    pub(crate) storage: Arc<crate::storage::AutoStorage>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    credentials: Credentials,
    data_dir: PathBuf,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// `http://host:port` that this server answers on.
    pub fn endpoint(&self) -> &str {
        &self.credentials.endpoint
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stop accepting requests, stop the local node agents, and make everything durable.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.state.provider.stop_all(&self.state.agents).await;
        self.state.engine.snapshot_now();
        self.state.engine.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.serve).await;
    }
}

/// Start a server: open (or create) the data directory, restore state, bind, and serve.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let db = data_dir.join("openbatch.db");
    let mut store = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let (account_name, account_key) = account::load_or_create(&mut store, &config.account_name)?;
    openbatch_api::auth::decode_key(&account_key)
        .map_err(|e| anyhow::anyhow!("the stored account key is unusable: {e}"))?;
    let tokens = Tokens::open(&db)?;
    let restarted = store
        .load()
        .map(|l| l.snapshot.is_some() || !l.records.is_empty())?;

    let limits = Limits {
        node_lost_after: config.node_lost_after,
        ..Limits::default()
    };
    let (engine, effects) = Engine::open(store, limits)?;

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let credentials = Credentials {
        account_name: account_name.clone(),
        account_key: account_key.clone(),
        endpoint: endpoint.clone(),
    };
    account::write_credentials(&data_dir, &credentials)?;

    let agents = Arc::new(Agents::new());
    let program = match &config.agent_program {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding this executable for local nodes")?,
    };
    let provider = Arc::new(LocalProvider::new(
        data_dir.join("nodes"),
        program,
        endpoint.clone(),
        tokens.local_token()?,
        engine.clone(),
        config.local.gpus,
    ));
    let autoscaler = Arc::new(crate::autoscale::Autoscaler::new(
        engine.clone(),
        agents.clone(),
        config.autoscale_sample_interval,
        config.autoscale_min_interval,
    ));
    let key_bytes = openbatch_api::auth::decode_key(&account_key)
        .map_err(|e| anyhow::anyhow!("the stored account key is unusable: {e}"))?;
    let storage = Arc::new(crate::storage::AutoStorage::open(
        &config.storage,
        &data_dir,
        &key_bytes,
        &endpoint,
    )?);
    let state = Arc::new(AppState {
        autoscaler: autoscaler.clone(),
        storage,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        engine: engine.clone(),
        agents: agents.clone(),
        provider: provider.clone(),
        tokens,
        account_name,
        account_key,
        public_url: config.public_url.clone(),
        config,
    });

    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(dispatch_effects(state.clone(), effects));
    if restarted {
        engine.submit(Input::ServerRestarted).await.ok();
        // Take the list first: adopt() submits inputs, which need the core lock.
        let nodes = engine.read().node_ids();
        provider.adopt(&nodes).await;
        // Logs whose discard a crash interrupted (`logs.rs`).
        let (storage, engine) = (state.storage.clone(), engine.clone());
        tokio::spawn(async move { storage.sweep_orphaned_logs(&engine).await });
    }
    tokio::spawn(tick_loop(engine.clone(), stop_rx.clone()));
    tokio::spawn(autoscaler.run(stop_rx.clone()));
    if state.config.preemption_rate > 0.0 {
        tokio::spawn(crate::preemption::random_preemptions(
            state.clone(),
            stop_rx.clone(),
        ));
    }

    let app = crate::http::router(state.clone());
    let mut stop_rx2 = stop_rx.clone();
    let serve = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
        };
        // Agents and clients exchange many small messages; Nagle's algorithm would hold each
        // one back waiting for an ACK and add tens of milliseconds between a task's end and
        // the next one's start.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    tracing::info!(%endpoint, data_dir = %data_dir.display(), "openbatch server listening");
    Ok(ServerHandle {
        addr,
        credentials,
        data_dir,
        state,
        stop,
        serve,
    })
}

async fn tick_loop(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => { let _ = engine.submit_nowait(Input::Tick); }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Carry out the core's effects, in order, after their inputs are durable.
async fn dispatch_effects(state: Arc<AppState>, mut rx: EffectRx) {
    use openbatch_api::agent::ServerMsg;
    while let Some(effect) = rx.recv().await {
        match effect {
            Effect::ProvisionNode {
                pool,
                node,
                vm_size,
                dedicated,
                slots,
            } => {
                let size = crate::vmsizes::lookup(&vm_size, &state.config.vm_sizes);
                state
                    .provider
                    .provision(&node, &pool, &vm_size, size, dedicated, slots);
            }
            Effect::RunStartTask {
                node,
                mut start_task,
                mut app_packages,
            } => {
                // Auto-storage names become URLs a node can fetch; see `storage.rs`. The
                // pool's application packages get signed URLs (`apps.rs`).
                let resolved = match state.storage.resolve_packages(&mut app_packages).await {
                    Ok(()) => state.storage.resolve(&mut start_task.resource_files).await,
                    Err(failure) => Err(failure),
                };
                if let Err(failure) = resolved {
                    let result = staging_failed(failure);
                    let engine = state.engine.clone();
                    tokio::spawn(async move {
                        let _ = engine
                            .submit(Input::StartTaskCompleted { node, result })
                            .await;
                    });
                    continue;
                }
                // The start task's logs are kept in storage when it ends (`logs.rs`).
                let log_upload = state.storage.log_upload(crate::logs::startup_prefix(&node));
                state.agents.send(
                    &node,
                    &ServerMsg::RunStartTask {
                        start_task,
                        log_upload,
                        app_packages,
                    },
                );
            }
            Effect::RunTask { node, mut spec } => {
                let mut resolved =
                    match state.storage.resolve_packages(&mut spec.app_packages).await {
                        Ok(()) => state.storage.resolve(&mut spec.resource_files).await,
                        Err(failure) => Err(failure),
                    };
                if let (Ok(()), Some(i)) = (&resolved, spec.instance.as_mut()) {
                    resolved = state.storage.resolve(&mut i.common_resource_files).await;
                }
                if let Err(failure) = resolved {
                    // The node never hears of this run: the server reports it as the node
                    // would have, a run that could not start.
                    let (run, result) = (spec.run, staging_failed(failure));
                    let engine = state.engine.clone();
                    tokio::spawn(async move {
                        let _ = engine
                            .submit(Input::TaskCompleted { node, run, result })
                            .await;
                    });
                    continue;
                }
                // The run's logs are kept in storage when it ends (`logs.rs`).
                spec.log_upload = state.storage.log_upload(crate::logs::run_prefix(
                    &spec.job_id,
                    &spec.task_id,
                    spec.run,
                ));
                if !state.agents.send(&node, &ServerMsg::RunTask { spec }) {
                    tracing::warn!(node_id = %node, "a task was placed on a node that is not connected; it is requeued when the node reconnects or is lost");
                }
            }
            Effect::InstallPackages {
                node,
                mut app_packages,
            } => {
                if let Err(f) = state.storage.resolve_packages(&mut app_packages).await {
                    tracing::warn!(node_id = %node, error = ?f.message, "application packages could not be offered to a node ahead of its runs");
                    continue;
                }
                state
                    .agents
                    .send(&node, &ServerMsg::InstallPackages { app_packages });
            }
            Effect::KillTask { node, run } => {
                state.agents.send(&node, &ServerMsg::KillTask { run });
            }
            Effect::RunPrimaryCommand { node, run } => {
                state
                    .agents
                    .send(&node, &ServerMsg::RunPrimaryCommand { run });
            }
            Effect::DiscardLogs {
                job,
                task,
                before_run,
            } => {
                // In the background: a large job has many objects, and nothing waits on this.
                let storage = state.storage.clone();
                tokio::spawn(async move {
                    storage
                        .discard_logs(&job, task.as_deref(), before_run)
                        .await;
                });
            }
            Effect::DeleteTaskDirs { node, dirs } => {
                // The agent answers with `TaskDirsDeleted`; until then the core sends these
                // again whenever the node reconnects.
                state
                    .agents
                    .send(&node, &ServerMsg::DeleteTaskDirs { dirs });
            }
            Effect::RestartNode { node, wipe } => {
                state.agents.send(&node, &ServerMsg::Restart { wipe });
            }
            Effect::PreemptNode { node, grace } => {
                let deadline = chrono::Utc::now()
                    + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
                tracing::info!(node_id = %node, grace_secs = grace.as_secs(), "preempting a low-priority node");
                state
                    .agents
                    .send(&node, &ServerMsg::Preempt { grace, deadline });
            }
            Effect::RemoveNode { node } => {
                let st = state.clone();
                tokio::spawn(async move {
                    st.agents.send(&node, &ServerMsg::Shutdown);
                    st.provider.remove(&node).await;
                    let _ = st.engine.submit(Input::NodeRemoved { node }).await;
                });
            }
        }
    }
}

/// The result of a run whose auto-storage resource files could not be resolved.
fn staging_failed(failure: openbatch_api::models::FailureInfo) -> openbatch_api::agent::RunResult {
    let now = chrono::Utc::now();
    openbatch_api::agent::RunResult {
        start_time: now,
        end_time: now,
        exit_code: None,
        failure: Some(failure),
        pre_processing_error: true,
        file_upload_error: false,
        empty_logs: Vec::new(),
    }
}
