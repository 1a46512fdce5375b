//! The job's preparation and release tasks: their status per node.

use openbatch_api::models::JobPreparationAndReleaseTaskStatus;

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, ListOptions};

impl Client {
    /// `GET /jobs/{id}/jobpreparationandreleasetaskstatus`, every page: one item per node
    /// that ran the job's preparation (and release) task.
    pub async fn list_job_preparation_and_release_task_status(
        &self,
        job_id: &str,
        opts: &ListOptions,
    ) -> Result<Vec<JobPreparationAndReleaseTaskStatus>, ClientError> {
        let url = self.url(
            &[
                Lit("jobs"),
                Val("job id", job_id),
                Lit("jobpreparationandreleasetaskstatus"),
            ],
            &opts.query(),
        )?;
        self.list_all(url).await
    }
}

impl Client {
    /// `GET /jobs/{id}/tasks/{tid}/subtasksinfo`: the subtasks of a multi-instance task
    /// (instances 1 and up) in its current or latest attempt.
    pub async fn list_subtasks(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Vec<openbatch_api::models::Subtask>, ClientError> {
        let url = self.url(
            &[
                Lit("jobs"),
                Val("job id", job_id),
                Lit("tasks"),
                Val("task id", task_id),
                Lit("subtasksinfo"),
            ],
            &[],
        )?;
        self.list_all(url).await
    }
}
