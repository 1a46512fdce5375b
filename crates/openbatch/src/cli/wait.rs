//! Waiting on the service, always with a deadline: nodes becoming idle, tasks completing,
//! resources disappearing after a delete. Polls back off from 200 ms to 2 s.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::bail;
use indicatif::ProgressBar;
use openbatch_api::models::{
    AllocationState, Node, NodeState, PoolState, Task, TaskCounts, TaskState,
};
use openbatch_client::{Client, ListOptions};
use tokio::time::Instant;

use super::api;

const FIRST_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(2);

/// Poll intervals: 200 ms, growing by half each time up to 2 s, never past the deadline.
struct Poll {
    deadline: Instant,
    next: Duration,
}

impl Poll {
    fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            next: FIRST_POLL,
        }
    }

    /// Sleeps until the next poll; false once the deadline has passed.
    async fn tick(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        tokio::time::sleep(self.next.min(self.deadline - now)).await;
        self.next = (self.next * 3 / 2).min(MAX_POLL);
        true
    }
}

/// Waits until the pool is steady with all its target nodes idle (or running tasks), and
/// returns them. Fails fast on what will not fix itself: a start task that failed, an unusable
/// node, resize errors, a pool being deleted.
pub(crate) async fn pool_ready(
    client: &Client,
    pool_id: &str,
    timeout: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Node>> {
    let mut poll = Poll::new(timeout);
    loop {
        let pool = client.get_pool(pool_id).await.map_err(api)?;
        if pool.state == PoolState::Deleting {
            bail!("pool '{pool_id}' is being deleted");
        }
        if let Some(e) = pool.resize_errors.first() {
            bail!(
                "pool '{pool_id}' could not reach its target size: {}: {}",
                e.code.as_deref().unwrap_or("ResizeError"),
                e.message.as_deref().unwrap_or("no details")
            );
        }
        let nodes = client
            .list_nodes(pool_id, &ListOptions::default())
            .await
            .map_err(api)?;
        for node in &nodes {
            check_node(pool_id, node)?;
        }
        let target = (pool.target_dedicated_nodes + pool.target_low_priority_nodes).max(0) as u64;
        let ready = nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Idle | NodeState::Running))
            .count() as u64;
        bar.set_length(target);
        bar.set_position(ready.min(target));
        if pool.allocation_state == AllocationState::Steady && ready >= target {
            return Ok(nodes);
        }
        if !poll.tick().await {
            let states: Vec<String> = nodes
                .iter()
                .map(|n| format!("{} {}", n.id, n.state))
                .collect();
            bail!(
                "timed out after {}s waiting for pool '{pool_id}': {ready} of {target} nodes \
                 ready, allocation {} (nodes: {}); wait longer with --timeout",
                timeout.as_secs(),
                pool.allocation_state,
                if states.is_empty() {
                    "none yet".to_owned()
                } else {
                    states.join(", ")
                }
            );
        }
    }
}

/// A node in a state that waiting will not change is an error that says where to look.
fn check_node(pool_id: &str, node: &Node) -> anyhow::Result<()> {
    match node.state {
        NodeState::StartTaskFailed => {
            let exit = node
                .start_task_info
                .as_ref()
                .and_then(|i| i.exit_code)
                .map(|c| format!(" with exit code {c}"))
                .unwrap_or_default();
            bail!(
                "the start task of node '{}' failed{exit}; read its output with `openbatch node \
                 file get {pool_id} {} startup/stderr.txt` (and startup/stdout.txt)",
                node.id,
                node.id
            )
        }
        NodeState::Unusable => {
            let why: Vec<String> = node
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code.as_deref().unwrap_or("NodeError"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            bail!(
                "node '{}' of pool '{pool_id}' is unusable{}",
                node.id,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", why.join("; "))
                }
            )
        }
        _ => Ok(()),
    }
}

/// Waits until the job has no active or running task left and at least `expected` completed
/// ones, and returns the final counts.
pub(crate) async fn job_tasks_done(
    client: &Client,
    job_id: &str,
    expected: u64,
    timeout: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<TaskCounts> {
    let mut poll = Poll::new(timeout);
    loop {
        let counts = client
            .get_task_counts(job_id)
            .await
            .map_err(api)?
            .task_counts;
        let total = (counts.active + counts.running + counts.completed).max(0) as u64;
        bar.set_length(total.max(expected));
        bar.set_position(counts.completed.max(0) as u64);
        if counts.active == 0 && counts.running == 0 && counts.completed as u64 >= expected {
            return Ok(counts);
        }
        if !poll.tick().await {
            bail!(
                "timed out after {}s waiting for the tasks of job '{job_id}': {} active, {} \
                 running, {} completed; wait longer with --timeout",
                timeout.as_secs(),
                counts.active,
                counts.running,
                counts.completed
            );
        }
    }
}

/// Waits until every task in `ids` is completed, and returns them.
pub(crate) async fn tasks_completed(
    client: &Client,
    job_id: &str,
    ids: &[String],
    timeout: Duration,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Task>> {
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut poll = Poll::new(timeout);
    bar.set_length(wanted.len() as u64);
    loop {
        let tasks: Vec<Task> = if wanted.len() == 1 {
            // One task: a GET is cheaper than listing the job.
            let id = ids.first().map(String::as_str).unwrap_or_default();
            vec![client.get_task(job_id, id).await.map_err(api)?]
        } else {
            client
                .list_tasks(job_id, &ListOptions::default())
                .await
                .map_err(api)?
                .into_iter()
                .filter(|t| wanted.contains(t.id.as_str()))
                .collect()
        };
        let done = tasks
            .iter()
            .filter(|t| t.state == TaskState::Completed)
            .count();
        bar.set_position(done as u64);
        if done == wanted.len() {
            return Ok(tasks);
        }
        if !poll.tick().await {
            bail!(
                "timed out after {}s: {done} of {} tasks of job '{job_id}' completed; wait \
                 longer with --timeout, or check them with `openbatch task list {job_id}`",
                timeout.as_secs(),
                wanted.len()
            );
        }
    }
}

/// Waits until `probe` reports the resource gone (a 404).
pub(crate) async fn gone<F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), openbatch_client::ClientError>>,
{
    let mut poll = Poll::new(timeout);
    loop {
        match probe().await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(api(e)),
            Ok(()) => {}
        }
        if !poll.tick().await {
            bail!(
                "timed out after {}s waiting for {what} to be deleted",
                timeout.as_secs()
            );
        }
    }
}
