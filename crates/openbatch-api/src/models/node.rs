use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{wire_enum, ExecutionResult, FailureInfo, NameValuePair, StartTask};
use super::pool::ImageReference;
use super::task::{TaskExecutionInfo, TaskState};
use crate::time::ts;

wire_enum!(
    /// `BatchNodeState`.
    NodeState {
        Idle = "idle",
        Rebooting = "rebooting",
        Reimaging = "reimaging",
        Running = "running",
        Unusable = "unusable",
        Creating = "creating",
        Starting = "starting",
        WaitingForStartTask = "waitingforstarttask",
        StartTaskFailed = "starttaskfailed",
        Unknown = "unknown",
        LeavingPool = "leavingpool",
        Offline = "offline",
        Preempted = "preempted",
        UpgradingOs = "upgradingos",
        Deallocated = "deallocated",
        Deallocating = "deallocating",
    }
);
wire_enum!(SchedulingState { Enabled = "enabled", Disabled = "disabled" });
wire_enum!(StartTaskState { Running = "running", Completed = "completed" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTaskInfo {
    pub state: StartTaskState,
    #[serde(with = "ts")]
    pub start_time: DateTime<Utc>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    pub retry_count: i32,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask_id: Option<i32>,
    pub task_state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_info: Option<TaskExecutionInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_details: Vec<NameValuePair>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentInfo {
    pub version: String,
    #[serde(with = "ts")]
    pub last_update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_reference: Option<ImageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_set_vm_resource_id: Option<String>,
}

/// `BatchNode`: what `GET /pools/{pool}/nodes/{node}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub url: String,
    pub state: NodeState,
    pub scheduling_state: SchedulingState,
    #[serde(with = "ts")]
    pub state_transition_time: DateTime<Utc>,
    #[serde(with = "ts")]
    pub last_boot_time: DateTime<Utc>,
    #[serde(with = "ts")]
    pub allocation_time: DateTime<Utc>,
    pub ip_address: String,
    pub ipv6_address: String,
    pub affinity_id: String,
    pub vm_size: String,
    pub total_tasks_run: i64,
    pub running_tasks_count: i64,
    pub running_task_slots_count: i64,
    pub total_tasks_succeeded: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_tasks: Vec<TaskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task_info: Option<StartTaskInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<NodeError>,
    pub is_dedicated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_agent_info: Option<NodeAgentInfo>,
    pub virtual_machine_info: VirtualMachineInfo,
}
