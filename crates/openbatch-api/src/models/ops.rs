//! Bodies of the update and action operations (P2): pool update/replace/remove nodes, job
//! update/disable, task replace, node scheduling/reboot/reimage, and the account listings.

use serde::{Deserialize, Serialize};

use super::common::{wire_enum, ApplicationPackageReference, MetadataItem, StartTask};
use super::job::{JobConstraints, OnAllTasksComplete, PoolInfo};
use super::pool::{
    ImageReference, NodeDeallocationOption, TaskSchedulingPolicy, VirtualMachineConfiguration,
};
use crate::models::TaskConstraints;
use crate::time::IsoDuration;

wire_enum!(
    /// `DisableBatchJobOption`.
    DisableJobOption { Requeue = "requeue", Terminate = "terminate", Wait = "wait" }
);
wire_enum!(
    /// `BatchNodeDisableSchedulingOption`.
    DisableSchedulingOption { Requeue = "requeue", Terminate = "terminate", TaskCompletion = "taskcompletion" }
);

/// `BatchPoolUpdateOptions` (PATCH): only the properties present change.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_inter_node_communication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_package_references: Option<Vec<ApplicationPackageReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<MetadataItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<VirtualMachineConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots_per_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduling_policy: Option<TaskSchedulingPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_accounts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_policy: Option<serde_json::Value>,
}

/// `BatchPoolReplaceOptions` (`updateproperties`): a full replace; an absent start task is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReplace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    pub application_package_references: Vec<ApplicationPackageReference>,
    pub metadata: Vec<MetadataItem>,
}

/// `BatchNodeRemoveOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRemove {
    pub node_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deallocation_option: Option<NodeDeallocationOption>,
}

/// `BatchJobUpdateOptions` (PATCH) and the settable part of a `BatchJob` (PUT).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_task_preemption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<JobConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_info: Option<PoolInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<MetadataItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
}

/// `BatchJobDisableOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobDisable {
    pub disable_tasks: DisableJobOption,
}

/// The settable part of a `BatchTask` for `PUT /jobs/{job}/tasks/{task}`: its constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReplace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
}

/// `BatchNodeDisableSchedulingOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDisableScheduling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_disable_scheduling_option: Option<DisableSchedulingOption>,
}

/// `BatchNodeRebootOptions` / `BatchNodeReimageOptions`: what happens to running tasks. The
/// field is `nodeRebootKind` in 2025-06-01 and `nodeRebootOption` before; both are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRestart {
    #[serde(
        default,
        alias = "nodeRebootKind",
        alias = "nodeReimageOption",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_reboot_option: Option<NodeDeallocationOption>,
}

/// `BatchSupportedImage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedImage {
    #[serde(rename = "nodeAgentSKUId")]
    pub node_agent_sku_id: String,
    pub image_reference: ImageReference,
    pub os_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    pub verification_type: String,
}

/// `BatchNodeCounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    pub creating: i32,
    pub idle: i32,
    pub offline: i32,
    pub preempted: i32,
    pub rebooting: i32,
    pub reimaging: i32,
    pub running: i32,
    pub starting: i32,
    pub start_task_failed: i32,
    pub leaving_pool: i32,
    pub unknown: i32,
    pub unusable: i32,
    pub waiting_for_start_task: i32,
    pub deallocated: i32,
    pub deallocating: i32,
    pub total: i32,
    #[serde(rename = "upgradingOS")]
    pub upgrading_os: i32,
}

/// `BatchPoolNodeCounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolNodeCounts {
    pub pool_id: String,
    pub dedicated: NodeCounts,
    pub low_priority: NodeCounts,
}

/// `AutoScaleRunError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaleRunError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<super::common::NameValuePair>,
}

/// `AutoScaleRun`: the outcome of one evaluation of a pool's formula.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoScaleRun {
    #[serde(with = "crate::time::ts")]
    pub timestamp: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AutoScaleRunError>,
}

/// `BatchPoolEnableAutoScaleOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolEnableAutoScale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_formula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_evaluation_interval: Option<IsoDuration>,
}

/// `BatchPoolEvaluateAutoScaleOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolEvaluateAutoScale {
    pub auto_scale_formula: String,
}
