//! The data model around an evaluation: the pool it reads ([`PoolState`]) and the
//! [`Outcome`] it produces, in the JSON shapes of `autoscale-vectors.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RunError;
use crate::value::Value;

/// What a formula can see of its pool. Deserializes from the vectors' `pool` object
/// (camelCase; missing fields take [`PoolState::default`]'s values; unknown fields are
/// ignored so a full pool document can be passed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoolState {
    /// Current target: the initial value of `$TargetDedicatedNodes`.
    pub target_dedicated_nodes: u32,
    /// Current target: the initial value of `$TargetLowPriorityNodes`.
    pub target_low_priority_nodes: u32,
    /// Allocated dedicated nodes: `$CurrentDedicatedNodes`.
    pub current_dedicated_nodes: u32,
    /// Allocated low-priority nodes, preempted included: `$CurrentLowPriorityNodes`.
    pub current_low_priority_nodes: u32,
    /// Pool setting: `$TaskSlotsPerNode`.
    pub task_slots_per_node: u32,
    /// Not read by the evaluator: whether a pool may be evaluated is the server's decision
    /// (Evaluate AutoScale needs autoscale enabled). Kept so pool documents round-trip.
    pub enable_auto_scale: bool,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            target_dedicated_nodes: 0,
            target_low_priority_nodes: 0,
            current_dedicated_nodes: 0,
            current_low_priority_nodes: 0,
            task_slots_per_node: 1,
            enable_auto_scale: true,
        }
    }
}

/// What happens to running tasks when nodes are removed (`$NodeDeallocationOption`).
/// Serialized as the formula keyword (`"taskcompletion"`); the REST API's camelCase enum
/// (`taskCompletion`) is the wire crate's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeDeallocationOption {
    /// Terminate running tasks now and requeue them (the documented default).
    #[default]
    Requeue,
    /// Terminate running tasks now; they are not run again.
    Terminate,
    /// Let running tasks finish, schedule nothing new, then remove the node.
    TaskCompletion,
    /// Wait until task-retained data is cleaned up, then remove the node.
    RetainedData,
}

impl NodeDeallocationOption {
    /// The formula keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            NodeDeallocationOption::Requeue => "requeue",
            NodeDeallocationOption::Terminate => "terminate",
            NodeDeallocationOption::TaskCompletion => "taskcompletion",
            NodeDeallocationOption::RetainedData => "retaineddata",
        }
    }

    /// The option a formula keyword names.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        match keyword {
            "requeue" => Some(NodeDeallocationOption::Requeue),
            "terminate" => Some(NodeDeallocationOption::Terminate),
            "taskcompletion" => Some(NodeDeallocationOption::TaskCompletion),
            "retaineddata" => Some(NodeDeallocationOption::RetainedData),
            _ => None,
        }
    }
}

/// What the pool adopts: targets truncated toward zero and clamped at 0. After a failed
/// evaluation, the pool's unchanged targets and no deallocation option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// New dedicated target.
    pub target_dedicated_nodes: u32,
    /// New low-priority target.
    pub target_low_priority_nodes: u32,
    /// How to remove nodes; `None` when the evaluation failed (nothing to apply).
    pub node_deallocation_option: Option<NodeDeallocationOption>,
}

impl Applied {
    pub(crate) fn unchanged(pool: &PoolState) -> Self {
        Applied {
            target_dedicated_nodes: pool.target_dedicated_nodes,
            target_low_priority_nodes: pool.target_low_priority_nodes,
            node_deallocation_option: None,
        }
    }
}

/// The result of one evaluation. Serializes as the vectors' `expected` object:
/// `{"status": "success", "variables", "applied", "results"}` or
/// `{"status": "error", "error", "applied", "results"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// The formula ran to the end (or to `stop()`).
    Success {
        /// Final value of every assigned variable, by name as written; aliases are
        /// reported under the full target name; `$NodeDeallocationOption` is in `applied`.
        variables: BTreeMap<String, Value>,
        /// What the pool adopts.
        applied: Applied,
        /// The `AutoScaleRun.results` string.
        results: String,
    },
    /// The formula was rejected or its evaluation failed; the pool keeps its targets.
    Error {
        /// `AutoScaleRun.error`.
        error: RunError,
        /// The unchanged targets.
        applied: Applied,
        /// The `AutoScaleRun.results` string: the pool's targets and the variables
        /// evaluated before the failure.
        results: String,
    },
}

impl Outcome {
    /// Whether the evaluation succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }

    /// What the pool adopts.
    pub fn applied(&self) -> &Applied {
        match self {
            Outcome::Success { applied, .. } | Outcome::Error { applied, .. } => applied,
        }
    }

    /// The `AutoScaleRun.results` string.
    pub fn results(&self) -> &str {
        match self {
            Outcome::Success { results, .. } | Outcome::Error { results, .. } => results,
        }
    }

    /// The `AutoScaleRun.error`, if the evaluation failed.
    pub fn error(&self) -> Option<&RunError> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Error { error, .. } => Some(error),
        }
    }
}
