use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{wire_enum, EnvironmentSetting, ErrorCategory, MetadataItem, NameValuePair};
use super::jobtasks::{JobManagerTask, JobPreparationTask, JobReleaseTask};
use crate::time::{ts, IsoDuration};

wire_enum!(JobState {
    Active = "active",
    Disabling = "disabling",
    Disabled = "disabled",
    Enabling = "enabling",
    Terminating = "terminating",
    Completed = "completed",
    Deleting = "deleting",
});
wire_enum!(
    /// `BatchAllTasksCompleteMode`.
    OnAllTasksComplete { NoAction = "noaction", TerminateJob = "terminatejob" }
);
wire_enum!(
    /// `BatchTaskFailureMode`.
    OnTaskFailure { NoAction = "noaction", PerformExitOptionsJobAction = "performexitoptionsjobaction" }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_pool_specification: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_task_retry_count: Option<i32>,
}

/// `BatchJobCreateOptions`: the body of `POST /jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCreate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_task_dependencies: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_task_preemption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<JobConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_manager_task: Option<JobManagerTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task: Option<JobPreparationTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_release_task: Option<JobReleaseTask>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_environment_settings: Vec<EnvironmentSetting>,
    pub pool_info: PoolInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_task_failure: Option<OnTaskFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSchedulingError {
    pub category: ErrorCategory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<NameValuePair>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecutionInfo {
    #[serde(with = "ts")]
    pub start_time: DateTime<Utc>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_error: Option<JobSchedulingError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_reason: Option<String>,
}

/// `BatchJob`: what `GET /jobs/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub uses_task_dependencies: bool,
    pub url: String,
    #[serde(rename = "eTag")]
    pub e_tag: String,
    #[serde(with = "ts")]
    pub last_modified: DateTime<Utc>,
    #[serde(with = "ts")]
    pub creation_time: DateTime<Utc>,
    pub state: JobState,
    #[serde(with = "ts")]
    pub state_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobState>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<DateTime<Utc>>,
    pub priority: i32,
    pub allow_task_preemption: bool,
    pub max_parallel_tasks: i32,
    pub constraints: JobConstraints,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_manager_task: Option<JobManagerTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task: Option<JobPreparationTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_release_task: Option<JobReleaseTask>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_environment_settings: Vec<EnvironmentSetting>,
    pub pool_info: PoolInfo,
    pub on_all_tasks_complete: OnAllTasksComplete,
    pub on_task_failure: OnTaskFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_info: Option<JobExecutionInfo>,
}

/// `BatchJobTerminateOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobTerminate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    pub active: i64,
    pub running: i64,
    pub completed: i64,
    pub succeeded: i64,
    pub failed: i64,
}

/// `BatchTaskCountsResult`: what `GET /jobs/{id}/taskcounts` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCountsResult {
    pub task_counts: TaskCounts,
    pub task_slot_counts: TaskCounts,
}
