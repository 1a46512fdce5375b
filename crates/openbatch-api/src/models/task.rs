use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{
    wire_enum, ApplicationPackageReference, EnvironmentSetting, ExecutionResult, FailureInfo,
    OutputFile, ResourceFile, TaskConstraints, UserIdentity,
};
use crate::error::BatchError;
use crate::time::ts;

wire_enum!(TaskState { Active = "active", Preparing = "preparing", Running = "running", Completed = "completed" });
wire_enum!(TaskAddStatus { Success = "success", ClientError = "clienterror", ServerError = "servererror" });
wire_enum!(JobAction { None = "none", Disable = "disable", Terminate = "terminate" });
wire_enum!(DependencyAction { Satisfy = "satisfy", Block = "block" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityInfo {
    pub affinity_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_action: Option<JobAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_action: Option<DependencyAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeMapping {
    pub code: i32,
    pub exit_options: ExitOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitCodeRangeMapping {
    pub start: i32,
    pub end: i32,
    pub exit_options: ExitOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitConditions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<ExitCodeMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_code_ranges: Vec<ExitCodeRangeMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_processing_error: Option<ExitOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_error: Option<ExitOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ExitOptions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiInstanceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_instances: Option<i32>,
    pub coordination_command_line: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_resource_files: Vec<ResourceFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIdRange {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDependencies {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_id_ranges: Vec<TaskIdRange>,
}

/// `BatchTaskCreateOptions`: the body of `POST /jobs/{id}/tasks` and an item of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCreate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_conditions: Option<ExitConditions>,
    pub command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<OutputFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_info: Option<AffinityInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_slots: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_instance_settings: Option<MultiInstanceSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<TaskDependencies>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_package_references: Vec<ApplicationPackageReference>,
}

/// `BatchTaskGroup`: the body of `POST /jobs/{id}/addtaskcollection`. Items are kept as raw
/// JSON so that one malformed task gets its own `clienterror` instead of failing the call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskGroup {
    pub value: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAddResult {
    pub status: TaskAddStatus,
    pub task_id: String,
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskAddCollectionResult {
    pub value: Vec<TaskAddResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecutionInfo {
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    pub retry_count: i32,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<DateTime<Utc>>,
    pub requeue_count: i32,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub last_requeue_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory_url: Option<String>,
}

/// `BatchTask`: what `GET /jobs/{job}/tasks/{task}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_conditions: Option<ExitConditions>,
    pub state: TaskState,
    #[serde(with = "ts")]
    pub state_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<TaskState>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<DateTime<Utc>>,
    pub command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<OutputFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_info: Option<AffinityInfo>,
    pub constraints: TaskConstraints,
    pub required_slots: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    pub execution_info: TaskExecutionInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_instance_settings: Option<MultiInstanceSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<TaskDependencies>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_package_references: Vec<ApplicationPackageReference>,
}
