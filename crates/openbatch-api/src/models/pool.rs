use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{
    wire_enum, ApplicationPackageReference, MetadataItem, NameValuePair, StartTask,
};
use crate::time::{ts, IsoDuration};

wire_enum!(PoolState { Active = "active", Deleting = "deleting" });
wire_enum!(AllocationState { Steady = "steady", Resizing = "resizing", Stopping = "stopping" });
wire_enum!(NodeFillType { Spread = "spread", Pack = "pack" });
wire_enum!(
    /// `BatchNodeDeallocationOption`.
    NodeDeallocationOption {
        Requeue = "requeue",
        Terminate = "terminate",
        TaskCompletion = "taskcompletion",
        RetainedData = "retaineddata",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_version: Option<String>,
}

/// `VirtualMachineConfiguration`: the image is accepted and stored; nodes run the host's OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineConfiguration {
    pub image_reference: ImageReference,
    #[serde(rename = "nodeAgentSKUId")]
    pub node_agent_sku_id: String,
    /// Every other property (containerConfiguration, dataDisks, ...) is kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSchedulingPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_default_order: Option<JobDefaultOrder>,
    pub node_fill_type: NodeFillType,
}

wire_enum!(JobDefaultOrder { None = "none", CreationTime = "creationtime" });

/// `BatchPoolCreateOptions`: the body of `POST /pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolCreate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub vm_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<VirtualMachineConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_auto_scale: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_formula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_evaluation_interval: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_inter_node_communication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_package_references: Vec<ApplicationPackageReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_slots_per_node: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_scheduling_policy: Option<TaskSchedulingPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_accounts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_policy: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<NameValuePair>,
}

/// `BatchPool`: what `GET /pools/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub url: String,
    #[serde(rename = "eTag")]
    pub e_tag: String,
    #[serde(with = "ts")]
    pub last_modified: DateTime<Utc>,
    #[serde(with = "ts")]
    pub creation_time: DateTime<Utc>,
    pub state: PoolState,
    #[serde(with = "ts")]
    pub state_transition_time: DateTime<Utc>,
    pub allocation_state: AllocationState,
    #[serde(with = "ts")]
    pub allocation_state_transition_time: DateTime<Utc>,
    pub vm_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine_configuration: Option<VirtualMachineConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resize_errors: Vec<ResizeError>,
    pub current_dedicated_nodes: i32,
    pub current_low_priority_nodes: i32,
    pub target_dedicated_nodes: i32,
    pub target_low_priority_nodes: i32,
    pub enable_auto_scale: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_formula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_evaluation_interval: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scale_run: Option<super::ops::AutoScaleRun>,
    pub enable_inter_node_communication: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_task: Option<StartTask>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_package_references: Vec<ApplicationPackageReference>,
    pub task_slots_per_node: i32,
    pub task_scheduling_policy: TaskSchedulingPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_accounts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_policy: Option<serde_json::Value>,
}

/// `BatchPoolResizeOptions`: the body of `POST /pools/{id}/resize`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolResize {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dedicated_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_low_priority_nodes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_timeout: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_deallocation_option: Option<NodeDeallocationOption>,
}
