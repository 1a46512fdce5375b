//! Job schedules: `BatchJobSchedule` and its bodies, plus openbatch's cron extension.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{wire_enum, EnvironmentSetting, MetadataItem};
use super::job::{JobConstraints, JobCreate, OnAllTasksComplete, OnTaskFailure, PoolInfo};
use super::jobtasks::{JobManagerTask, JobPreparationTask, JobReleaseTask};
use crate::time::{ts, IsoDuration};

wire_enum!(
    /// `BatchJobScheduleState`.
    JobScheduleState {
        Active = "active",
        Completed = "completed",
        Disabled = "disabled",
        Terminating = "terminating",
        Deleting = "deleting",
    }
);

/// `BatchJobScheduleConfiguration`: when jobs are created.
///
/// `cron` and `timeZone` are openbatch extensions (the official SDKs ignore fields they do
/// not know): a five-field cron expression (`minute hour day-of-month month day-of-week`)
/// evaluated in an IANA time zone (UTC when absent), instead of `recurrenceInterval`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleConfiguration {
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub do_not_run_until: Option<DateTime<Utc>>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub do_not_run_after: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_window: Option<IsoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence_interval: Option<IsoDuration>,
    /// openbatch extension: a cron expression, e.g. `0 3 * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// openbatch extension: the IANA time zone `cron` is evaluated in, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// `BatchJobSpecification`: the job each run of a schedule creates.
///
/// `poolInfo` is required on the wire; it is optional here only so that its absence is
/// answered with an error that names `jobSpecification.poolInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpecification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_task_preemption: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_task_dependencies: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_all_tasks_complete: Option<OnAllTasksComplete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_task_failure: Option<OnTaskFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_info: Option<PoolInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
}

impl JobSpecification {
    /// The body of the job a run creates, under the id the schedule gives it.
    pub fn to_job(&self, id: String) -> JobCreate {
        JobCreate {
            id,
            display_name: self.display_name.clone(),
            uses_task_dependencies: self.uses_task_dependencies,
            priority: self.priority,
            allow_task_preemption: self.allow_task_preemption,
            max_parallel_tasks: self.max_parallel_tasks,
            constraints: self.constraints,
            job_manager_task: self.job_manager_task.clone(),
            job_preparation_task: self.job_preparation_task.clone(),
            job_release_task: self.job_release_task.clone(),
            common_environment_settings: self.common_environment_settings.clone(),
            pool_info: self.pool_info.clone().unwrap_or(PoolInfo {
                pool_id: None,
                auto_pool_specification: None,
            }),
            on_all_tasks_complete: self.on_all_tasks_complete,
            on_task_failure: self.on_task_failure,
            network_configuration: self.network_configuration.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// `BatchJobScheduleCreateOptions`: the body of `POST /jobschedules`.
///
/// `schedule` is required on the wire; see [`JobSpecification`] for why it is optional here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleCreate {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobScheduleConfiguration>,
    pub job_specification: JobSpecification,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
}

/// `BatchJobScheduleUpdateOptions` (PATCH: what is present changes) and the settable part of
/// a `BatchJobSchedule` (PUT: what is absent goes back to its default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobScheduleConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_specification: Option<JobSpecification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<MetadataItem>>,
}

/// `RecentBatchJob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `BatchJobScheduleExecutionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobScheduleExecutionInfo {
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_job: Option<RecentJob>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
}

/// `BatchJobSchedule`: what `GET /jobschedules/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSchedule {
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
    pub state: JobScheduleState,
    #[serde(with = "ts")]
    pub state_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<JobScheduleState>,
    #[serde(default, with = "ts::opt", skip_serializing_if = "Option::is_none")]
    pub previous_state_transition_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobScheduleConfiguration>,
    pub job_specification: JobSpecification,
    pub execution_info: JobScheduleExecutionInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataItem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_body_with_the_cron_extension_parses() {
        let body = serde_json::json!({
            "id": "nightly",
            "schedule": {
                "doNotRunUntil": "2025-03-01T00:00:00Z",
                "startWindow": "PT01H00M00S",
                "cron": "0 3 * * *",
                "timeZone": "Europe/Berlin",
                "somethingNewer": true,
            },
            "jobSpecification": {"poolInfo": {"poolId": "p"}, "priority": 5},
        });
        let s: JobScheduleCreate = serde_json::from_value(body).unwrap();
        let cfg = s.schedule.unwrap();
        assert_eq!(cfg.cron.as_deref(), Some("0 3 * * *"));
        assert_eq!(cfg.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            cfg.start_window.and_then(|d| d.as_duration()),
            Some(std::time::Duration::from_secs(3600))
        );
        let job = s.job_specification.to_job("nightly:job-1".into());
        assert_eq!(job.pool_info.pool_id.as_deref(), Some("p"));
        assert_eq!(job.priority, Some(5));
    }
}
