//! Preemption of low-priority (spot) nodes.
//!
//! Azure Batch takes spot capacity back without warning: the node goes to `preempted`, its
//! tasks go back to the queue without using a retry (`requeueCount`), and Batch restores the
//! capacity when it can, so preempted nodes still count in `currentLowPriorityNodes`.
//! openbatch does the same and adds a notice: before a node goes, its running tasks get SIGTERM
//! and a grace period (the agent also writes a notice file they can watch), and whatever they do
//! in that time, exit cleanly or not, their tasks are requeued, never failed.
//!
//! A node's preemption has three phases:
//! 1. **notice**: the node takes no new work; its runs have until `deadline` to end. Each
//!    reported end is a requeue.
//! 2. **preempted**: drained; state `preempted`; the shell stops its agent and wipes its disk
//!    (`Effect::RemoveNode`, answered by `Input::NodeRemoved`, which here does not forget it).
//! 3. **recovery**: at `recover_at`, once the agent is gone, the capacity comes back as a fresh
//!    machine under the same node id: `creating`, the start task runs again.
//!
//! A node that is sent away (resize down, remove) while preempted simply leaves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openbatch_api::models::NodeState;
use serde::{Deserialize, Serialize};

use crate::input::{Effect, Reply, RunResult};
use crate::state::Core;
use crate::CoreError;

/// Extra time past the notice deadline for the agent's reports to arrive before the core
/// requeues what is left by itself.
const REPORT_SLACK_SECS: i64 = 30;

/// A preemption in progress on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Preemption {
    /// When the notice period ends (the agent kills what still runs).
    pub(crate) deadline: DateTime<Utc>,
    /// How long the capacity stays away once the node is drained.
    pub(crate) recovery: Duration,
    /// Set when the node is drained: when its capacity comes back.
    pub(crate) recover_at: Option<DateTime<Utc>>,
    /// The shell stopped the node's agent (its `NodeRemoved` arrived).
    pub(crate) stopped: bool,
}

impl Core {
    /// Preempt a low-priority node: notice and grace for its runs, then `preempted`.
    pub(crate) fn preempt_node(
        &mut self,
        pool: &str,
        node: &str,
        grace: Duration,
        recovery: Duration,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let id = self.pool_node(pool, node)?;
        let n = &self.nodes[&id];
        if n.dedicated {
            return Err(CoreError::InvalidState(format!(
                "Node '{node}' is a dedicated node; only low-priority (spot) nodes can be preempted."
            )));
        }
        if n.preemption.is_some() {
            return Err(CoreError::InvalidState(format!(
                "Node '{node}' is already being preempted or is preempted."
            )));
        }
        self.check_node_can_act(&id, node)?;
        let grace_chrono = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
        let n = self.nodes.get_mut(&id).expect("checked above");
        n.preemption = Some(Preemption {
            deadline: now + grace_chrono,
            recovery,
            recover_at: None,
            stopped: false,
        });
        // A restart that waited for the runs to finish no longer happens: the machine goes.
        n.pending_restart = None;
        let pool_key = n.pool.clone();
        // Tasks waiting for a job preparation task there never started: back to the queue now.
        for run in n.waiting.clone() {
            self.requeue_run(run, now);
        }
        let idle = self.nodes[&id].running.is_empty();
        self.refresh_capacity(&id);
        if idle {
            self.finish_notice(&id, now, fx);
        } else {
            fx.push(Effect::PreemptNode {
                node: id.clone(),
                grace,
            });
        }
        self.dirty_pools.insert(pool_key);
        Ok(Reply::Done)
    }

    /// Whether the node is in the notice phase of a preemption (and not otherwise leaving).
    pub(crate) fn in_preemption_notice(&self, node_id: &str) -> bool {
        self.nodes.get(node_id).is_some_and(|n| {
            n.leaving.is_none()
                && n.preemption
                    .as_ref()
                    .is_some_and(|p| p.recover_at.is_none())
        })
    }

    /// A run ended on a node. During a preemption notice its task goes back to the queue,
    /// however it ended; otherwise this is an ordinary completion.
    pub(crate) fn run_ended(
        &mut self,
        node_id: &str,
        run: u64,
        result: RunResult,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if !self.in_preemption_notice(node_id) {
            return self.task_completed(node_id, run, result, now, fx);
        }
        self.killed_run_ended(node_id, run);
        let ours = self
            .nodes
            .get(node_id)
            .is_some_and(|n| n.running.contains_key(&run));
        if ours {
            self.requeue_run(run, now);
        }
        if self
            .nodes
            .get(node_id)
            .is_some_and(|n| n.running.is_empty())
        {
            self.finish_notice(node_id, now, fx);
        }
        true
    }

    /// The node is drained (or out of time): it is `preempted` now, and its agent is stopped.
    pub(crate) fn finish_notice(
        &mut self,
        node_id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let runs: Vec<u64> = self
            .nodes
            .get(node_id)
            .map(|n| n.running.keys().copied().collect())
            .unwrap_or_default();
        for run in runs {
            fx.push(Effect::KillTask {
                node: node_id.to_string(),
                run,
            });
            self.requeue_run(run, now);
        }
        let Some(n) = self.nodes.get_mut(node_id) else {
            return;
        };
        let Some(p) = n.preemption.as_mut() else {
            return;
        };
        let recovery = chrono::Duration::from_std(p.recovery).unwrap_or(chrono::Duration::zero());
        p.recover_at = Some(now + recovery);
        let pool = n.pool.clone();
        self.set_node_state(node_id, NodeState::Preempted, now);
        fx.push(Effect::RemoveNode {
            node: node_id.to_string(),
        });
        self.update_allocation_state(&pool, now);
        self.dirty_pools.insert(pool);
    }

    /// `NodeRemoved` for a preempted node: its agent is gone, the record stays until the
    /// capacity comes back. Returns false when the node is not preempted (an ordinary removal).
    pub(crate) fn preempted_node_stopped(&mut self, node_id: &str) -> bool {
        let Some(n) = self.nodes.get_mut(node_id) else {
            return false;
        };
        if n.leaving.is_some() {
            return false;
        }
        match n.preemption.as_mut() {
            Some(p) if p.recover_at.is_some() => {
                p.stopped = true;
                true
            }
            _ => false,
        }
    }

    /// Time-driven preemption steps: notices whose reports never came, and capacity coming
    /// back.
    pub(crate) fn preemption_tick(&mut self, now: DateTime<Utc>, fx: &mut Vec<Effect>) -> bool {
        let slack = chrono::Duration::seconds(REPORT_SLACK_SECS);
        let mut overdue = Vec::new();
        let mut recover = Vec::new();
        for n in self.nodes.values() {
            let Some(p) = &n.preemption else { continue };
            if n.leaving.is_some() {
                continue;
            }
            match p.recover_at {
                None if now >= p.deadline + slack => overdue.push(n.id.clone()),
                Some(at) if p.stopped && now >= at => recover.push(n.id.clone()),
                _ => {}
            }
        }
        let changed = !overdue.is_empty() || !recover.is_empty();
        for id in overdue {
            self.finish_notice(&id, now, fx);
        }
        for id in recover {
            self.recover_node(&id, now, fx);
        }
        changed
    }

    /// The capacity is back: the node boots again as a fresh machine under the same id.
    fn recover_node(&mut self, node_id: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let Some(pool_key) = self.nodes.get(node_id).map(|n| n.pool.clone()) else {
            return;
        };
        let Some(pool) = self.pools.get(&pool_key) else {
            return;
        };
        let pool_id = pool.spec.id.clone();
        let n = self.nodes.get_mut(node_id).expect("checked above");
        n.preemption = None;
        n.connected = false;
        n.disconnected_since = Some(now);
        n.agent_version = None;
        n.ip_address = String::new();
        n.start_task_info = None;
        n.boot_time = now;
        n.allocation_time = now;
        n.recent_tasks.clear();
        self.forget_preparations(node_id, true);
        let n = self.nodes.get_mut(node_id).expect("checked above");
        fx.push(Effect::ProvisionNode {
            pool: pool_id,
            node: node_id.to_string(),
            vm_size: n.vm_size.clone(),
            dedicated: n.dedicated,
            slots: n.slots,
        });
        self.set_node_state(node_id, NodeState::Creating, now);
        self.update_allocation_state(&pool_key, now);
        self.dirty_pools.insert(pool_key);
    }
}
