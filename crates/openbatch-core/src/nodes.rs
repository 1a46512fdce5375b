//! Nodes: connecting, losing contact, start tasks, leaving the pool.

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    ExecutionResult, NodeDeallocationOption, NodeState, SchedulingState, StartTaskInfo,
    StartTaskState,
};

use crate::input::{Effect, NodeHello, RunResult};
use crate::state::Core;

/// What becomes of a node's runs when it leaves, restarts or stops taking tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunFate {
    Requeue,
    Terminate,
    Finish,
}

impl From<NodeDeallocationOption> for RunFate {
    fn from(o: NodeDeallocationOption) -> Self {
        match o {
            NodeDeallocationOption::Requeue => RunFate::Requeue,
            NodeDeallocationOption::Terminate => RunFate::Terminate,
            NodeDeallocationOption::TaskCompletion | NodeDeallocationOption::RetainedData => {
                RunFate::Finish
            }
        }
    }
}

/// Run ids are `epoch << RUN_EPOCH_SHIFT | n`: 2^40 runs per server lifetime.
const RUN_EPOCH_SHIFT: u32 = 40;

/// Azure's default `resizeTimeout`: how long a new node may take to come up.
const DEFAULT_RESIZE_TIMEOUT_MINUTES: i64 = 15;

impl Core {
    pub(crate) fn set_node_state(&mut self, node: &str, state: NodeState, now: DateTime<Utc>) {
        if let Some(n) = self.nodes.get_mut(node) {
            if n.state != state {
                n.state = state;
                n.state_time = now;
            }
        }
        self.refresh_capacity(node);
    }

    /// The state a connected node is in, from what it runs and how its start task went: what a
    /// reconnect returns it to.
    pub(crate) fn settled_state(&self, node_id: &str) -> NodeState {
        let Some(node) = self.nodes.get(node_id) else {
            return NodeState::Unknown;
        };
        if node.leaving.is_some() {
            return NodeState::LeavingPool;
        }
        if node
            .preemption
            .as_ref()
            .is_some_and(|p| p.recover_at.is_some())
        {
            return NodeState::Preempted;
        }
        let wait = self
            .pools
            .get(&node.pool)
            .and_then(|p| p.spec.start_task.as_ref())
            .map(|st| st.wait_for_success.unwrap_or(true))
            .unwrap_or(false);
        if wait {
            if let Some(info) = &node.start_task_info {
                if info.state == StartTaskState::Running {
                    return NodeState::WaitingForStartTask;
                }
                if info.result == Some(ExecutionResult::Failure) {
                    return NodeState::StartTaskFailed;
                }
            }
        }
        match (!node.runs_tasks(), node.scheduling) {
            (true, SchedulingState::Disabled) => NodeState::Offline,
            (true, SchedulingState::Enabled) => NodeState::Idle,
            (false, _) => NodeState::Running,
        }
    }

    /// What happens to the runs on a node that is leaving, being restarted or taken out of
    /// scheduling: `requeue` kills them and puts their tasks back in the queue at once (no
    /// retry used); `terminate` kills them, and each task completes as failed when the node
    /// reports the kill; `finish` lets them run to the end.
    pub(crate) fn dispose_runs(
        &mut self,
        node_id: &str,
        fate: RunFate,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let runs: Vec<u64> = self
            .nodes
            .get(node_id)
            .map(|n| n.running.keys().copied().collect())
            .unwrap_or_default();
        if fate == RunFate::Finish {
            return;
        }
        for run in runs {
            fx.push(Effect::KillTask {
                node: node_id.to_string(),
                run,
            });
            if fate == RunFate::Terminate {
                self.mark_run_terminating(run);
            } else {
                self.requeue_run(run, now);
            }
        }
    }

    /// Send a node away. With `requeue` its runs go back to the queue now; with `terminate`
    /// they end as failed; with `taskcompletion`/`retaineddata` they finish first.
    pub(crate) fn start_leaving(
        &mut self,
        node_id: &str,
        option: NodeDeallocationOption,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return;
        };
        if node.leaving.is_some() {
            return;
        }
        node.leaving = Some(option);
        self.set_node_state(node_id, NodeState::LeavingPool, now);
        self.dispose_runs(node_id, option.into(), now, fx);
        self.remove_if_drained(node_id, fx);
    }

    /// A leaving node with no runs left is handed to the provider for removal.
    pub(crate) fn remove_if_drained(&mut self, node_id: &str, fx: &mut Vec<Effect>) {
        let Some(node) = self.nodes.get(node_id) else {
            return;
        };
        if node.leaving.is_some() && node.running.is_empty() {
            fx.push(Effect::RemoveNode {
                node: node_id.to_string(),
            });
        }
    }

    pub(crate) fn node_connected(
        &mut self,
        hello: NodeHello,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let node_id = hello.node.clone();
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return false;
        };
        let first_time = node.agent_version.is_none();
        node.connected = true;
        node.disconnected_since = None;
        node.ip_address = hello.ip_address;
        node.agent_version = Some(hello.agent_version);
        let pool_key = node.pool.clone();
        // Results that arrived while we were apart, then anything we believe runs there but
        // the agent does not know about is lost: back to the queue. What we believe is taken
        // before the results: a result may start runs at once (the tasks that waited for a job
        // preparation task), which the agent cannot know of yet. Runs held for tasks that wait
        // for a job preparation task were never sent either.
        let ours: Vec<u64> = self
            .nodes
            .get(&node_id)
            .map(|n| n.running.keys().copied().collect())
            .unwrap_or_default();
        let unsent = self
            .nodes
            .get(&node_id)
            .map(|n| n.waiting.clone())
            .unwrap_or_default();
        for (run, result) in hello.finished {
            self.run_ended(&node_id, run, result, now, fx);
        }
        let still: std::collections::BTreeSet<u64> = hello.running.iter().copied().collect();
        // Killed runs the agent no longer has (it restarted, or their report was lost with
        // the connection) hold no slots any more.
        let gone: Vec<u64> = self
            .nodes
            .get(&node_id)
            .map(|n| {
                n.killing
                    .keys()
                    .filter(|r| !still.contains(r))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for run in gone {
            self.killed_run_ended(&node_id, run);
        }
        self.recheck_releases_on(&node_id);
        self.resend_dir_cleanup(&node_id);
        for run in &ours {
            if !still.contains(run) && !unsent.contains(run) {
                self.requeue_run(*run, now);
            }
        }
        // Unknown runs (a killed one among them) are killed again.
        for run in hello.running {
            if !ours.contains(&run) {
                fx.push(Effect::KillTask {
                    node: node_id.clone(),
                    run,
                });
            }
        }
        let Some(node) = self.nodes.get(&node_id) else {
            return true;
        };
        if node.leaving.is_some() {
            self.remove_if_drained(&node_id, fx);
            return true;
        }
        if node.preemption.is_some() {
            // Preempted, or drained by the runs the agent no longer had: it goes.
            if self.in_preemption_notice(&node_id)
                && self
                    .nodes
                    .get(&node_id)
                    .is_some_and(|n| n.running.is_empty())
            {
                self.finish_notice(&node_id, now, fx);
            } else if !self.in_preemption_notice(&node_id) {
                fx.push(Effect::RemoveNode {
                    node: node_id.clone(),
                });
            }
            return true;
        }
        if first_time
            || matches!(
                node.state,
                NodeState::Creating | NodeState::Rebooting | NodeState::Reimaging
            )
        {
            self.set_node_state(&node_id, NodeState::Starting, now);
            let start_task = self
                .pools
                .get(&pool_key)
                .and_then(|p| p.spec.start_task.clone());
            match (start_task, hello.start_task) {
                (Some(st), None) => {
                    let wait = st.wait_for_success.unwrap_or(true);
                    if let Some(n) = self.nodes.get_mut(&node_id) {
                        n.start_task_info = Some(StartTaskInfo {
                            state: StartTaskState::Running,
                            start_time: now,
                            end_time: None,
                            exit_code: None,
                            failure_info: None,
                            retry_count: 0,
                            last_retry_time: None,
                            result: None,
                        });
                    }
                    fx.push(Effect::RunStartTask {
                        node: node_id.clone(),
                        start_task: st,
                        app_packages: self.pool_packages(&pool_key),
                    });
                    let state = if wait {
                        NodeState::WaitingForStartTask
                    } else {
                        NodeState::Idle
                    };
                    self.set_node_state(&node_id, state, now);
                }
                (Some(_), Some(result)) => {
                    self.start_task_completed(&node_id, result, now, fx);
                }
                (None, _) => {
                    self.set_node_state(&node_id, NodeState::Idle, now);
                    // No start task to carry the pool's packages: install them at join.
                    self.prefetch_node_packages(&node_id, fx);
                }
            }
        } else if node.state == NodeState::Unknown {
            let state = self.settled_state(&node_id);
            self.set_node_state(&node_id, state, now);
        }
        self.refresh_capacity(&node_id);
        self.update_allocation_state(&pool_key, now);
        self.dirty_pools.insert(pool_key);
        true
    }

    pub(crate) fn node_disconnected(&mut self, node_id: &str, now: DateTime<Utc>) -> bool {
        let Some(node) = self.nodes.get_mut(node_id) else {
            return false;
        };
        if !node.connected {
            return false;
        }
        node.connected = false;
        node.disconnected_since = Some(now);
        self.refresh_capacity(node_id);
        let Some(node) = self.nodes.get(node_id) else {
            return true;
        };
        // A node that is booting, restarting or preempted was expected to drop its connection.
        if node.leaving.is_none()
            && node
                .preemption
                .as_ref()
                .is_none_or(|p| p.recover_at.is_none())
            && !matches!(
                node.state,
                NodeState::Creating | NodeState::Rebooting | NodeState::Reimaging
            )
        {
            self.set_node_state(node_id, NodeState::Unknown, now);
        }
        true
    }

    /// The node is gone for good: its runs are requeued (not retried: Azure counts these in
    /// `requeueCount`), and the pool replaces it if its target still asks for it.
    pub(crate) fn node_lost(
        &mut self,
        node_id: &str,
        _reason: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(node) = self.nodes.get(node_id) else {
            return false;
        };
        let runs: Vec<u64> = node.running.keys().copied().collect();
        for run in runs {
            self.requeue_run(run, now);
        }
        self.set_node_state(node_id, NodeState::Unusable, now);
        // The provider still has to clean up whatever is left of it.
        fx.push(Effect::RemoveNode {
            node: node_id.to_string(),
        });
        self.drop_node(node_id, now, fx);
        true
    }

    pub(crate) fn node_removed(
        &mut self,
        node_id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if self.preempted_node_stopped(node_id) {
            return true;
        }
        let Some(node) = self.nodes.get(node_id) else {
            return false;
        };
        let runs: Vec<u64> = node.running.keys().copied().collect();
        for run in runs {
            self.requeue_run(run, now);
        }
        self.drop_node(node_id, now, fx);
        true
    }

    /// Forget a node and let its pool catch up with its target.
    pub(crate) fn drop_node(&mut self, node_id: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        self.unindex_node(node_id);
        let Some(node) = self.nodes.remove(node_id) else {
            return;
        };
        self.recheck_releases_on(node_id);
        if let Some(p) = self.pools.get_mut(&node.pool) {
            p.nodes.remove(node_id);
        }
        self.finish_pool_delete_if_empty(&node.pool);
        self.reconcile_pool_size(&node.pool, now, fx);
        self.dirty_pools.insert(node.pool);
    }

    pub(crate) fn start_task_completed(
        &mut self,
        node_id: &str,
        result: RunResult,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(node) = self.nodes.get(node_id) else {
            return false;
        };
        let Some(pool) = self.pools.get(&node.pool) else {
            return false;
        };
        let Some(start_task) = pool.spec.start_task.clone() else {
            return false;
        };
        let pool_key = node.pool.clone();
        let app_packages = self.pool_packages(&pool_key);
        let max_retries = start_task.max_task_retry_count.unwrap_or(0);
        let wait = start_task.wait_for_success.unwrap_or(true);
        let failed = result.failure.is_some() || result.exit_code.unwrap_or(-1) != 0;
        let node = self.nodes.get_mut(node_id).expect("checked above");
        let mut info = node.start_task_info.clone().unwrap_or(StartTaskInfo {
            state: StartTaskState::Running,
            start_time: result.start_time,
            end_time: None,
            exit_code: None,
            failure_info: None,
            retry_count: 0,
            last_retry_time: None,
            result: None,
        });
        let retry = failed && (max_retries == -1 || info.retry_count < max_retries);
        if retry {
            info.retry_count += 1;
            info.last_retry_time = Some(now);
            info.state = StartTaskState::Running;
            info.exit_code = result.exit_code;
            info.failure_info = result.failure.clone();
            node.start_task_info = Some(info);
            fx.push(Effect::RunStartTask {
                node: node_id.to_string(),
                start_task,
                app_packages,
            });
            return true;
        }
        info.state = StartTaskState::Completed;
        info.start_time = result.start_time;
        info.end_time = Some(result.end_time);
        info.exit_code = result.exit_code;
        info.result = Some(if failed {
            ExecutionResult::Failure
        } else {
            ExecutionResult::Success
        });
        info.failure_info = if failed {
            Some(
                result
                    .failure
                    .unwrap_or_else(|| crate::tasks::exit_code_failure(result.exit_code)),
            )
        } else {
            None
        };
        node.start_task_info = Some(info);
        let state = node.state;
        if node.leaving.is_some() {
            // On its way out: the start task's outcome no longer decides its state.
        } else if failed && wait {
            self.set_node_state(node_id, NodeState::StartTaskFailed, now);
        } else if matches!(state, NodeState::WaitingForStartTask | NodeState::Starting) {
            self.set_node_state(node_id, NodeState::Idle, now);
        }
        self.dirty_pools.insert(pool_key);
        true
    }

    pub(crate) fn server_restarted(&mut self, now: DateTime<Utc>) -> bool {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in &ids {
            self.node_disconnected(id, now);
        }
        self.epoch += 1;
        self.next_run = self.next_run.max(self.epoch << RUN_EPOCH_SHIFT);
        true
    }

    /// Time-driven transitions: nodes that stayed away too long are lost.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let limit = chrono::Duration::from_std(self.limits.node_lost_after)
            .unwrap_or(chrono::Duration::seconds(60));
        // A node that never connected is still booting: it gets the pool's resizeTimeout (Azure's
        // default 15 minutes), not the lost-contact limit, so slow machines are not replaced
        // over and over.
        let lost: Vec<String> = self
            .nodes
            .values()
            .filter(|n| {
                let limit = if n.agent_version.is_none() {
                    self.pools
                        .get(&n.pool)
                        .and_then(|p| p.spec.resize_timeout)
                        .and_then(|d| d.as_duration())
                        .and_then(|d| chrono::Duration::from_std(d).ok())
                        .unwrap_or(chrono::Duration::minutes(DEFAULT_RESIZE_TIMEOUT_MINUTES))
                } else {
                    limit
                };
                // A preempted node is away on purpose until its capacity comes back.
                let preempted = n
                    .preemption
                    .as_ref()
                    .is_some_and(|p| p.recover_at.is_some());
                !n.connected
                    && !preempted
                    && n.disconnected_since
                        .is_some_and(|since| now - since >= limit)
            })
            .map(|n| n.id.clone())
            .collect();
        let changed = !lost.is_empty();
        for id in lost {
            self.node_lost(&id, "the node agent did not reconnect in time", now, fx);
        }
        changed
    }
}
