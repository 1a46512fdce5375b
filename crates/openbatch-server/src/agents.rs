//! Node agent connections: the registry of live connections, the per-connection loop that
//! turns agent messages into core inputs, and file requests multiplexed over the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use openbatch_api::agent::{
    decode_chunk, AgentMsg, FileEntry, FileError, NodeMetrics, ServerMsg, PROTOCOL_VERSION,
};
use openbatch_core::{Input, NodeHello, Reply};
use tokio::sync::{mpsc, oneshot};

use crate::server::AppState;
use crate::tokens::TokenOwner;

/// How long a file request may wait for the agent before the API answers an error.
const FILE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks of a file read buffered between the agent connection and the HTTP response.
const FILE_CHUNKS_BUFFERED: usize = 16;
/// How long an ack waits for others to share its message.
const ACK_DELAY: Duration = Duration::from_millis(10);
/// At most this many queued messages go out in one write to an agent.
const WRITE_BATCH: usize = 256;

enum PendingReq {
    List(oneshot::Sender<Result<Vec<FileEntry>, FileError>>),
    Read {
        meta: Option<oneshot::Sender<Result<FileEntry, FileError>>>,
        data: Option<mpsc::Sender<Bytes>>,
    },
    Delete(oneshot::Sender<Result<(), FileError>>),
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Message>,
}

pub(crate) struct Agents {
    conns: Mutex<HashMap<String, Conn>>,
    /// The latest resource metrics of each connected node (for autoscale formulas).
    metrics: Mutex<HashMap<String, NodeMetrics>>,
    /// The GPUs each node's agent said its tasks see (in its latest Hello).
    gpus: Mutex<HashMap<String, Vec<openbatch_api::agent::GpuInfo>>>,
    pending: Mutex<HashMap<u64, (String, PendingReq)>>,
    next: AtomicU64,
    /// Messages in and out, for `/metrics`.
    pub(crate) traffic: crate::metrics::AgentTraffic,
}

/// Why a file request could not be answered.
#[derive(Debug)]
pub(crate) enum FileReqError {
    NotConnected,
    TimedOut,
    File(FileError),
}

impl Agents {
    pub(crate) fn new() -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            metrics: Mutex::new(HashMap::new()),
            gpus: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            traffic: Default::default(),
        }
    }

    /// How many agents are connected now.
    pub(crate) fn connected(&self) -> usize {
        self.conns().len()
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The GPUs the node's agent reported when it last connected (since this server started).
    pub(crate) fn gpus_of(&self, node: &str) -> Option<Vec<openbatch_api::agent::GpuInfo>> {
        let gpus = self.gpus.lock().unwrap_or_else(|p| p.into_inner());
        gpus.get(node).cloned()
    }

    fn metrics(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeMetrics>> {
        self.metrics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest metrics of those of `nodes` that are connected and have reported.
    pub(crate) fn latest_metrics<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Vec<NodeMetrics> {
        let m = self.metrics();
        nodes
            .into_iter()
            .filter_map(|n| m.get(n).cloned())
            .collect()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, PendingReq)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a message to a node's agent; false if it is not connected.
    pub(crate) fn send(&self, node: &str, msg: &ServerMsg) -> bool {
        let Ok(text) = serde_json::to_string(msg) else {
            return false;
        };
        match self.conns().get(node) {
            Some(c) => c.tx.send(Message::Text(text.into())).is_ok(),
            None => false,
        }
    }

    fn request(
        &self,
        node: &str,
        req: PendingReq,
        msg: impl FnOnce(u64) -> ServerMsg,
    ) -> Result<u64, FileReqError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending().insert(id, (node.to_string(), req));
        if !self.send(node, &msg(id)) {
            self.pending().remove(&id);
            return Err(FileReqError::NotConnected);
        }
        Ok(id)
    }

    pub(crate) async fn list_files(
        &self,
        node: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Vec<FileEntry>, FileReqError> {
        let (tx, rx) = oneshot::channel();
        let id = self.request(node, PendingReq::List(tx), |req| ServerMsg::ListFiles {
            req,
            path: path.to_string(),
            recursive,
        })?;
        self.await_reply(id, rx).await
    }

    pub(crate) async fn delete_file(
        &self,
        node: &str,
        path: &str,
        recursive: bool,
    ) -> Result<(), FileReqError> {
        let (tx, rx) = oneshot::channel();
        let id = self.request(node, PendingReq::Delete(tx), |req| ServerMsg::DeleteFile {
            req,
            path: path.to_string(),
            recursive,
        })?;
        self.await_reply(id, rx).await
    }

    /// Ask for a file's properties and, unless `head_only`, a stream of its bytes.
    pub(crate) async fn read_file(
        &self,
        node: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
        head_only: bool,
    ) -> Result<(FileEntry, Option<mpsc::Receiver<Bytes>>), FileReqError> {
        let (meta_tx, meta_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(FILE_CHUNKS_BUFFERED);
        let id = self.request(
            node,
            PendingReq::Read {
                meta: Some(meta_tx),
                data: (!head_only).then_some(data_tx),
            },
            |req| ServerMsg::ReadFile {
                req,
                path: path.to_string(),
                range,
                head_only,
            },
        )?;
        let meta = self.await_reply(id, meta_rx).await?;
        Ok((meta, (!head_only).then_some(data_rx)))
    }

    async fn await_reply<T>(
        &self,
        id: u64,
        rx: oneshot::Receiver<Result<T, FileError>>,
    ) -> Result<T, FileReqError> {
        match tokio::time::timeout(FILE_REQUEST_TIMEOUT, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(FileReqError::File(e)),
            Ok(Err(_)) => Err(FileReqError::NotConnected),
            Err(_) => {
                self.pending().remove(&id);
                Err(FileReqError::TimedOut)
            }
        }
    }

    fn on_file_msg(&self, msg: AgentMsg) {
        match msg {
            AgentMsg::Files { req, result } => {
                if let Some((_, PendingReq::List(tx))) = self.pending().remove(&req) {
                    let _ = tx.send(result);
                }
            }
            AgentMsg::Deleted { req, result } => {
                if let Some((_, PendingReq::Delete(tx))) = self.pending().remove(&req) {
                    let _ = tx.send(result);
                }
            }
            AgentMsg::FileMeta { req, result } => {
                let mut pending = self.pending();
                let done = result.is_err();
                if let Some((_, PendingReq::Read { meta, data })) = pending.get_mut(&req) {
                    if let Some(tx) = meta.take() {
                        let _ = tx.send(result);
                    }
                    if done || data.is_none() {
                        pending.remove(&req);
                    }
                }
            }
            _ => {}
        }
    }

    async fn on_chunk(&self, frame: &[u8]) {
        let Some((req, last, data)) = decode_chunk(frame) else {
            return;
        };
        let tx = {
            let mut pending = self.pending();
            let tx = match pending.get(&req) {
                Some((_, PendingReq::Read { data: Some(tx), .. })) => tx.clone(),
                _ => return,
            };
            if last {
                pending.remove(&req);
            }
            tx
        };
        if !data.is_empty() {
            // A reader that went away (client hung up) just drops the rest.
            let _ = tx.send(Bytes::copy_from_slice(data)).await;
        }
    }

    /// Fail every request waiting on a node whose connection is gone.
    fn fail_pending(&self, node: &str) {
        self.pending().retain(|_, (n, _)| n != node);
    }
}

/// One agent connection, from `Hello` to close.
pub(crate) async fn serve_agent(
    state: Arc<AppState>,
    socket: WebSocket,
    token: String,
    peer: SocketAddr,
) {
    let (mut sink, mut stream) = socket.split();
    let refuse = |reason: String| {
        Message::Text(
            serde_json::to_string(&ServerMsg::Refused { reason })
                .unwrap_or_default()
                .into(),
        )
    };
    let local_token = state.provider.token().to_string();
    let Some(owner) = state.tokens.check(&token, &local_token) else {
        tracing::warn!(%peer, "a node agent presented an unknown or revoked join token; refused");
        let _ = sink
            .send(refuse("unknown or revoked join token".into()))
            .await;
        return;
    };
    // The first message must be Hello.
    let hello = match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<AgentMsg>(&t).ok(),
        _ => None,
    };
    let Some(AgentMsg::Hello {
        protocol,
        agent_version,
        node_id,
        pool_id,
        vm_size,
        slots,
        running,
        finished,
        start_task,
        gpus,
    }) = hello
    else {
        let _ = sink
            .send(refuse("expected Hello as the first message".into()))
            .await;
        return;
    };
    if protocol != PROTOCOL_VERSION {
        let _ = sink
            .send(refuse(format!(
                "agent protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}"
            )))
            .await;
        return;
    }
    let node_id = match (node_id, pool_id) {
        (Some(id), _) => {
            if state.engine.read().node_placement(&id).is_none() {
                tracing::warn!(node_id = %id, %peer, "an agent for a node that is not in any pool; refused");
                let _ = sink
                    .send(refuse(format!("node '{id}' is not part of any pool")))
                    .await;
                return;
            }
            if owner != TokenOwner::Local && !id.ends_with("_j") {
                let _ = sink
                    .send(refuse(
                        "this token cannot act for a provisioned node".into(),
                    ))
                    .await;
                return;
            }
            id
        }
        (None, Some(pool)) => {
            match state
                .engine
                .submit(Input::JoinNode {
                    pool: pool.clone(),
                    vm_size: vm_size.unwrap_or_default(),
                    slots_hint: slots,
                })
                .await
            {
                Ok(applied) => match applied.reply {
                    Reply::Joined { node } => node,
                    _ => return,
                },
                Err(e) => {
                    let _ = sink
                        .send(refuse(format!("cannot join pool '{pool}': {e}")))
                        .await;
                    return;
                }
            }
        }
        (None, None) => {
            let _ = sink
                .send(refuse("Hello needs a node id or a pool id".into()))
                .await;
            return;
        }
    };
    let Some((pool_id, _vm, dedicated, _slots)) = state.engine.read().node_placement(&node_id)
    else {
        return;
    };
    if node_id.ends_with("_j") && !gpus.is_empty() {
        let list: Vec<String> = gpus.iter().map(openbatch_node::gpu::describe).collect();
        tracing::info!(node_id = %node_id, %peer, gpus = %list.join("; "), "a joined node has GPUs");
    }
    state
        .agents
        .gpus
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node_id.clone(), gpus);
    // Register the connection, replacing any older one for the same node.
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let conn_id = state.agents.next.fetch_add(1, Ordering::Relaxed);
    state.agents.conns().insert(
        node_id.clone(),
        Conn {
            id: conn_id,
            tx: tx.clone(),
        },
    );
    let welcome = ServerMsg::Welcome {
        node_id: node_id.clone(),
        pool_id,
        account_name: state.account_name.clone(),
        account_url: state
            .public_url
            .clone()
            .unwrap_or_else(|| state.provider.server_url().to_string()),
        dedicated,
        heartbeat_interval: state.config.heartbeat_interval,
    };
    let _ = tx.send(Message::Text(
        serde_json::to_string(&welcome).unwrap_or_default().into(),
    ));
    let agents = state.agents.clone();
    let writer = tokio::spawn(async move {
        // What queued up while the last write was under way goes out in one write (one
        // syscall for many short messages when tasks end fast), capped to bound the buffer.
        'writing: while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                break;
            }
            let mut fed = 1;
            for _ in 1..WRITE_BATCH {
                let Ok(m) = rx.try_recv() else { break };
                if sink.feed(m).await.is_err() {
                    break 'writing;
                }
                fed += 1;
            }
            agents.traffic.sent.fetch_add(fed, Ordering::Relaxed);
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tracing::info!(node_id = %node_id, %peer, "node agent connected");
    let acked: Vec<u64> = finished.iter().map(|(r, _)| *r).collect();
    let had_start_task = start_task.is_some();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<AckItem>();
    let acker = spawn_acker(tx.clone(), ack_rx);
    let pending = state.engine.submit_nowait(Input::NodeConnected(NodeHello {
        node: node_id.clone(),
        ip_address: peer.ip().to_string(),
        agent_version,
        running,
        finished,
        start_task,
    }));
    let _ = ack_tx.send((pending, acked, had_start_task));

    // Agents heartbeat; silence for three intervals means the connection is dead.
    let silence = state.config.heartbeat_interval * 3 + Duration::from_secs(1);
    loop {
        let msg = match tokio::time::timeout(silence, stream.next()).await {
            Ok(Some(Ok(m))) => {
                state
                    .agents
                    .traffic
                    .received
                    .fetch_add(1, Ordering::Relaxed);
                m
            }
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {
                tracing::warn!(node_id = %node_id, "no heartbeat from the node agent; closing its connection");
                break;
            }
        };
        match msg {
            Message::Text(t) => {
                let Ok(m) = serde_json::from_str::<AgentMsg>(&t) else {
                    tracing::warn!(node_id = %node_id, "an unreadable message from the agent was ignored");
                    continue;
                };
                match m {
                    AgentMsg::Heartbeat => {}
                    AgentMsg::Metrics(m) => {
                        state.agents.metrics().insert(node_id.clone(), m);
                    }
                    AgentMsg::TaskFinished { run, result } => {
                        let pending = state.engine.submit_report(Input::TaskCompleted {
                            node: node_id.clone(),
                            run,
                            result,
                        });
                        let _ = ack_tx.send((pending, vec![run], false));
                    }
                    AgentMsg::StartTaskFinished { result } => {
                        let pending = state.engine.submit_report(Input::StartTaskCompleted {
                            node: node_id.clone(),
                            result,
                        });
                        let _ = ack_tx.send((pending, Vec::new(), true));
                    }
                    AgentMsg::TaskDirsDeleted { dirs } => {
                        let _ = state.engine.submit_nowait(Input::TaskDirsDeleted {
                            node: node_id.clone(),
                            dirs,
                        });
                    }
                    AgentMsg::Coordinated { run } => {
                        // Nothing to acknowledge: the agent says it again after reconnecting.
                        let _ = state.engine.submit_nowait(Input::InstanceCoordinated {
                            node: node_id.clone(),
                            run,
                        });
                    }
                    AgentMsg::Hello { .. } => {}
                    other => state.agents.on_file_msg(other),
                }
            }
            Message::Binary(b) => state.agents.on_chunk(&b).await,
            Message::Close(_) => break,
            _ => {}
        }
    }
    // Only the newest connection of a node may mark it disconnected.
    let current = {
        let mut conns = state.agents.conns();
        match conns.get(&node_id) {
            Some(c) if c.id == conn_id => {
                conns.remove(&node_id);
                state.agents.metrics().remove(&node_id);
                true
            }
            _ => false,
        }
    };
    writer.abort();
    acker.abort();
    if current {
        state.agents.fail_pending(&node_id);
        tracing::info!(node_id = %node_id, "node agent disconnected");
        let _ = state
            .engine
            .submit(Input::NodeDisconnected { node: node_id })
            .await;
    }
}

/// Results waiting for durability before the agent is told it may forget them.
type AckItem = (crate::engine::Pending, Vec<u64>, bool);

/// One task per connection acknowledges results once they are durable. Commits are FIFO, so
/// waiting in order is enough; whatever is already queued behind is folded into the same Ack,
/// which keeps a stream of completions from costing a message (and a task) each.
fn spawn_acker(
    tx: mpsc::UnboundedSender<Message>,
    mut rx: mpsc::UnboundedReceiver<AckItem>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Acks only let the agent forget results, so they can wait a moment: the ones for
            // tasks that end meanwhile go in the same message (one write instead of one each).
            tokio::time::sleep(ACK_DELAY).await;
            let mut runs = Vec::new();
            let mut start_task = false;
            let mut next = Some(first);
            while let Some((pending, r, st)) = next.take() {
                if pending.durable().await.is_ok() {
                    runs.extend(r);
                    start_task |= st;
                }
                next = rx.try_recv().ok();
            }
            if runs.is_empty() && !start_task {
                continue;
            }
            if let Ok(t) = serde_json::to_string(&ServerMsg::Ack { runs, start_task }) {
                let _ = tx.send(Message::Text(t.into()));
            }
        }
    })
}
