//! `BatchSubtask`: one subtask of a multi-instance task, as `GET
//! /jobs/{job}/tasks/{task}/subtasksinfo` lists it (the primary is not listed; subtask ids are
//! the instance indexes 1 to `numberOfInstances - 1`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{wire_enum, ExecutionResult, FailureInfo};
use super::task::NodeInfo;
use crate::time::ts;

wire_enum!(
    /// `BatchSubtaskState`.
    SubtaskState { Preparing = "preparing", Running = "running", Completed = "completed" }
);

/// `BatchSubtask`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subtask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeInfo>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SubtaskState>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub state_transition_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<SubtaskState>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}
