//! The job's own tasks: the job manager task, the job preparation task and the job release
//! task (`BatchJobManagerTask`, `BatchJobPreparationTask`, `BatchJobReleaseTask`), and the
//! per-node status of preparation and release (`BatchJobPreparationAndReleaseTaskStatus`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{
    wire_enum, ApplicationPackageReference, EnvironmentSetting, ExecutionResult, FailureInfo,
    OutputFile, ResourceFile, TaskConstraints, UserIdentity,
};
use crate::time::{ts, IsoDuration};

/// The id a job preparation task gets when it names none.
pub const DEFAULT_JOB_PREPARATION_TASK_ID: &str = "jobpreparation";
/// The id a job release task gets when it names none.
pub const DEFAULT_JOB_RELEASE_TASK_ID: &str = "jobrelease";

/// `BatchJobManagerTask`: a task of the job started with the job (its id is a task id of the
/// job), which may end the job when it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobManagerTask {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
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
    pub constraints: Option<TaskConstraints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_slots: Option<i32>,
    /// Default true: the job is terminated (`JMComplete`) when this task completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_job_on_completion: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// Default true: nothing else runs on its node while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_exclusive: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_package_references: Vec<ApplicationPackageReference>,
    /// Default true: it may run on a low-priority (spot) node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_low_priority_node: Option<bool>,
}

/// `BatchJobPreparationTask`: runs on a node before the first task of the job there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPreparationTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<TaskConstraints>,
    /// Default true: the job's tasks wait on the node until it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
    /// Default true: after a node reboot it runs again before the job's next task there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_on_node_reboot_after_success: Option<bool>,
}

impl JobPreparationTask {
    pub fn task_id(&self) -> &str {
        self.id
            .as_deref()
            .unwrap_or(DEFAULT_JOB_PREPARATION_TASK_ID)
    }
}

/// `BatchJobReleaseTask`: runs on each node that ran the job's preparation task, when the job
/// ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReleaseTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub command_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_files: Vec<ResourceFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_settings: Vec<EnvironmentSetting>,
    /// Default 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_clock_time: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
}

impl JobReleaseTask {
    pub fn task_id(&self) -> &str {
        self.id.as_deref().unwrap_or(DEFAULT_JOB_RELEASE_TASK_ID)
    }
}

wire_enum!(
    /// `BatchJobPreparationTaskState`.
    JobPreparationTaskState { Running = "running", Completed = "completed" }
);
wire_enum!(
    /// `BatchJobReleaseTaskState`.
    JobReleaseTaskState { Running = "running", Completed = "completed" }
);

/// `BatchJobPreparationTaskExecutionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPreparationTaskExecutionInfo {
    #[serde(with = "ts")]
    pub start_time: DateTime<Utc>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    pub state: JobPreparationTaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    pub retry_count: i32,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}

/// `BatchJobReleaseTaskExecutionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReleaseTaskExecutionInfo {
    #[serde(with = "ts")]
    pub start_time: DateTime<Utc>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    pub state: JobReleaseTaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_root_directory_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
}

/// `BatchJobPreparationAndReleaseTaskStatus`: one item of
/// `GET /jobs/{id}/jobpreparationandreleasetaskstatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPreparationAndReleaseTaskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task_execution_info: Option<JobPreparationTaskExecutionInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_release_task_execution_info: Option<JobReleaseTaskExecutionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_with_wire_names() {
        let json = serde_json::json!({
            "poolId": "p", "nodeId": "n", "nodeUrl": "http://x/pools/p/nodes/n",
            "jobPreparationTaskExecutionInfo": {
                "startTime": "2025-01-01T00:00:00.000Z", "state": "completed",
                "taskRootDirectory": "workitems/j/job-1/jobpreparation",
                "exitCode": 0, "retryCount": 0, "result": "success"
            },
            "jobReleaseTaskExecutionInfo": {
                "startTime": "2025-01-01T00:01:00.000Z", "state": "running"
            }
        });
        let s: JobPreparationAndReleaseTaskStatus = serde_json::from_value(json).unwrap();
        assert_eq!(
            s.job_preparation_task_execution_info
                .as_ref()
                .unwrap()
                .state,
            JobPreparationTaskState::Completed
        );
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["jobReleaseTaskExecutionInfo"]["state"], "running");
        assert_eq!(back["jobPreparationTaskExecutionInfo"]["retryCount"], 0);
    }

    #[test]
    fn job_tasks_parse_and_default_ids() {
        let prep: JobPreparationTask = serde_json::from_value(serde_json::json!({
            "commandLine": "/bin/true", "waitForSuccess": false,
            "rerunOnNodeRebootAfterSuccess": false,
            "constraints": {"maxTaskRetryCount": 2}
        }))
        .unwrap();
        assert_eq!(prep.task_id(), "jobpreparation");
        let rel: JobReleaseTask = serde_json::from_value(serde_json::json!({
            "id": "cleanup", "commandLine": "/bin/true", "maxWallClockTime": "PT5M"
        }))
        .unwrap();
        assert_eq!(rel.task_id(), "cleanup");
        let jm: JobManagerTask = serde_json::from_value(serde_json::json!({
            "id": "jm", "commandLine": "/bin/true", "killJobOnCompletion": false,
            "runExclusive": false, "requiredSlots": 2, "allowLowPriorityNode": true
        }))
        .unwrap();
        assert_eq!(jm.required_slots, Some(2));
    }
}
