//! The local node provider: each node of a pool is an `openbatch node run` process on this
//! machine, with its own root directory under `DATA_DIR/nodes/<node-id>`.
//!
//! The server starts and stops these processes; they dial back like any remote agent. Their
//! pids are kept in `agent.pid` so that a restarted server can adopt agents that outlived it
//! (they keep running their tasks and reconnect) and notice the ones that did not.
//!
//! The provider also owns the host's GPUs: each node of a GPU size gets its own (see
//! `gpus.rs`), or is not allocated when too few are free.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openbatch_core::Input;
use tokio::process::Command;

use crate::agents::Agents;
use crate::engine::Engine;
use crate::gpus::{GpuAllocator, GpuMode, Shortage};
use crate::vmsizes::VmSize;

/// How long a node agent gets to exit after `Shutdown` before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often adopted (non-child) agents are checked for liveness.
const ADOPTED_POLL: Duration = Duration::from_secs(1);

pub(crate) struct LocalProvider {
    root: PathBuf,
    program: PathBuf,
    server_url: String,
    token: String,
    engine: Arc<Engine>,
    /// Node id -> pid of its agent, and whether we are removing it on purpose.
    procs: Mutex<HashMap<String, (u32, bool)>>,
    gpu_mode: GpuMode,
    /// The host's GPUs and the nodes holding them (`Assign` mode only).
    gpus: Mutex<GpuAllocator>,
}

/// Whether `pid` is a live (not zombie) openbatch node agent. The command line is checked so
/// that a recycled pid of some other program is not mistaken for our agent.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"node") && args.iter().any(|a| *a == b"run")
        })
        .unwrap_or(false)
}

/// `0: NVIDIA H100 (GPU-..., 81559 MiB); 1: ...`
fn describe(gpus: &[openbatch_api::agent::GpuInfo]) -> String {
    let list: Vec<String> = gpus.iter().map(openbatch_node::gpu::describe).collect();
    list.join("; ")
}

fn kill(pid: u32, signal: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) with a pid we started; no memory is shared with the callee.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

impl LocalProvider {
    pub(crate) fn new(
        root: PathBuf,
        program: PathBuf,
        server_url: String,
        token: String,
        engine: Arc<Engine>,
        gpu_mode: GpuMode,
    ) -> Self {
        let mut gpus = GpuAllocator::default();
        if gpu_mode == GpuMode::Assign {
            // Once, at start: the GPUs of this machine, then what the nodes the core still
            // has held before a restart (before anything new is provisioned).
            gpus = GpuAllocator::new(openbatch_node::gpu::discover());
            for (node, _) in engine.read().node_ids() {
                if node.ends_with("_j") {
                    continue;
                }
                let held = gpus.restore(&node, &crate::gpus::load(&root.join(&node)));
                if !held.is_empty() {
                    tracing::info!(node_id = %node, gpus = %describe(&held), "a local node keeps its GPUs across the restart");
                }
            }
            tracing::info!(
                total = gpus.total(),
                free = gpus.free().len(),
                "local nodes get GPUs of their own ([local] gpus = \"assign\")"
            );
        }
        Self {
            root,
            program,
            server_url,
            token,
            engine,
            procs: Mutex::new(HashMap::new()),
            gpu_mode,
            gpus: Mutex::new(gpus),
        }
    }

    fn gpus(&self) -> std::sync::MutexGuard<'_, GpuAllocator> {
        self.gpus.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node could not get its GPUs: it is not created, and its pool says why.
    fn allocation_failed(&self, node: &str, pool: &str, vm_size: &str, short: Shortage) {
        let plural = |n: u32| if n == 1 { "" } else { "s" };
        let message = format!(
            "A node of VM size {vm_size} needs {} GPU{} of its own, and {} of this machine's {} GPU{} {} free \
             (the local provider gives each node its own GPUs; resize again once others are released, \
             or set [local] gpus = \"ignore\" in the server config to run GPU sizes without them).",
            short.needed,
            plural(short.needed),
            short.free,
            short.total,
            plural(short.total),
            if short.free == 1 { "is" } else { "are" },
        );
        tracing::warn!(node_id = %node, pool_id = %pool, %message, "a local node could not be allocated");
        let value = |name: &str, value: String| openbatch_api::models::NameValuePair {
            name: Some(name.into()),
            value: Some(value),
        };
        let error = openbatch_api::models::ResizeError {
            code: Some("AllocationFailed".into()),
            message: Some(message),
            values: vec![
                value("VmSize", vm_size.to_string()),
                value("GpusNeeded", short.needed.to_string()),
                value("GpusFree", short.free.to_string()),
                value("GpusTotal", short.total.to_string()),
            ],
        };
        let engine = self.engine.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            let _ = engine
                .submit(Input::NodeAllocationFailed { node, error })
                .await;
        });
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn server_url(&self) -> &str {
        &self.server_url
    }

    fn procs(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, bool)>> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The GPUs the provider assigned to a local node (none in `Ignore` mode).
    pub(crate) fn gpus_of(&self, node: &str) -> Vec<openbatch_api::agent::GpuInfo> {
        self.gpus().held_by(node)
    }

    pub(crate) fn node_root(&self, node: &str) -> PathBuf {
        self.root.join(node)
    }

    /// Start an agent process for a node.
    pub(crate) fn provision(
        self: &Arc<Self>,
        node: &str,
        pool: &str,
        vm_size: &str,
        size: Option<VmSize>,
        dedicated: bool,
        slots: u32,
    ) {
        if node.ends_with("_j") {
            return;
        }
        let gpus = match self.gpu_mode {
            GpuMode::Ignore => None,
            GpuMode::Assign => {
                let need = size.as_ref().map_or(0, |s| s.gpus);
                match self.gpus().assign(node, need) {
                    Ok(g) => Some(g),
                    Err(short) => return self.allocation_failed(node, pool, vm_size, short),
                }
            }
        };
        let dir = self.node_root(node);
        let spawned = (|| -> std::io::Result<tokio::process::Child> {
            std::fs::create_dir_all(&dir)?;
            if let Some(gpus) = &gpus {
                // Kept beside the agent's pid, for a restarted server (see `gpus.rs`).
                crate::gpus::save(&dir, gpus)?;
            }
            let log = std::fs::File::create(dir.join("agent.log"))?;
            let mut cmd = Command::new(&self.program);
            cmd.arg("node")
                .arg("run")
                .arg("--server")
                .arg(&self.server_url)
                .arg("--node-id")
                .arg(node)
                .arg("--root")
                .arg(dir.join("root"))
                .arg("--slots")
                .arg(slots.to_string())
                .env("OPENBATCH_JOIN_TOKEN", &self.token)
                .env("OPENBATCH_VM_SIZE", vm_size)
                .env("OPENBATCH_NODE_IS_DEDICATED", dedicated.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: a Ctrl-C at the server's terminal must not hit the
                // nodes directly; the server stops them in order.
                .process_group(0);
            if let Some(size) = &size {
                cmd.env("OPENBATCH_NODE_CORES", size.cores.to_string())
                    .env("OPENBATCH_NODE_MEMORY_MIB", size.memory_mib.to_string())
                    .env("OPENBATCH_NODE_GPUS", size.gpus.to_string());
            }
            if let Some(gpus) = &gpus {
                cmd.env(
                    "OPENBATCH_NODE_GPU_DEVICES",
                    serde_json::to_string(gpus).map_err(std::io::Error::other)?,
                );
            }
            cmd.spawn()
        })();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(node_id = %node, pool_id = %pool, error = %e, "could not start a local node agent");
                let engine = self.engine.clone();
                let node = node.to_string();
                tokio::spawn(async move {
                    let _ = engine
                        .submit(Input::NodeLost {
                            node,
                            reason: format!("the node agent could not be started: {e}"),
                        })
                        .await;
                });
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        let _ = std::fs::write(dir.join("agent.pid"), pid.to_string());
        self.procs().insert(node.to_string(), (pid, false));
        match gpus.as_deref() {
            Some(g) if !g.is_empty() => {
                tracing::info!(node_id = %node, pool_id = %pool, pid, gpus = %describe(g), "started a local node agent with its GPUs")
            }
            _ => {
                tracing::info!(node_id = %node, pool_id = %pool, pid, "started a local node agent")
            }
        }
        let this = self.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            let status = child.wait().await;
            this.exited(&node, format!("{status:?}")).await;
        });
    }

    /// An agent process ended. If nobody asked it to, the node is lost.
    async fn exited(&self, node: &str, status: String) {
        let intentional = self.procs().remove(node).map(|(_, i)| i).unwrap_or(true);
        if !intentional {
            tracing::warn!(node_id = %node, %status, "a local node agent exited unexpectedly");
            let _ = self
                .engine
                .submit(Input::NodeLost {
                    node: node.to_string(),
                    reason: format!("the node agent exited ({status})"),
                })
                .await;
        }
    }

    /// After a restart: watch the agents that are still alive, report the others lost.
    pub(crate) async fn adopt(self: &Arc<Self>, nodes: &[(String, String)]) {
        for (node, _pool) in nodes {
            if node.ends_with("_j") {
                continue;
            }
            let pid = std::fs::read_to_string(self.node_root(node).join("agent.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            match pid {
                Some(pid) if alive(pid) => {
                    self.procs().insert(node.clone(), (pid, false));
                    let this = self.clone();
                    let node = node.clone();
                    tokio::spawn(async move {
                        while alive(pid) {
                            tokio::time::sleep(ADOPTED_POLL).await;
                        }
                        this.exited(&node, "adopted process ended".into()).await;
                    });
                }
                _ => {
                    let _ = self
                        .engine
                        .submit(Input::NodeLost {
                            node: node.clone(),
                            reason: "the node agent did not survive the server restart".into(),
                        })
                        .await;
                }
            }
        }
    }

    /// Stop a node's agent (it was already sent `Shutdown`) and delete its directory.
    pub(crate) async fn remove(&self, node: &str) {
        let pid = {
            let mut procs = self.procs();
            match procs.get_mut(node) {
                Some(entry) => {
                    entry.1 = true;
                    Some(entry.0)
                }
                None => None,
            }
        };
        if let Some(pid) = pid {
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if alive(pid) {
                kill(pid, libc::SIGKILL);
            }
            self.procs().remove(node);
        }
        if !node.ends_with("_j") {
            let dir = self.node_root(node);
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        // Its agent and tasks are gone: its GPUs can go to another node.
        let released = self.gpus().release(node);
        if !released.is_empty() {
            tracing::info!(node_id = %node, gpus = %released.join(","), "released a local node's GPUs");
        }
    }

    /// On server shutdown: ask every local agent to stop, then make sure they did.
    pub(crate) async fn stop_all(&self, agents: &Agents) {
        let nodes: Vec<(String, u32)> = {
            let mut procs = self.procs();
            procs
                .iter_mut()
                .map(|(n, e)| {
                    e.1 = true;
                    (n.clone(), e.0)
                })
                .collect()
        };
        for (n, _) in &nodes {
            agents.send(n, &openbatch_api::agent::ServerMsg::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while nodes.iter().any(|(_, p)| alive(*p)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, p) in &nodes {
            if alive(*p) {
                kill(*p, libc::SIGKILL);
            }
        }
    }
}
