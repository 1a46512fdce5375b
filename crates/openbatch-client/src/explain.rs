//! `GET /openbatch/jobs/{job}/tasks/{task}/explain`: why a task is not running (an openbatch
//! extension).

use openbatch_api::models::TaskExplanation;
use reqwest::Method;

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, NO_BODY};

impl Client {
    /// Why the task is, or is not, running: its reason, and the details that go with it.
    pub async fn explain_task(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<TaskExplanation, ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("jobs"),
                Val("job id", job_id),
                Lit("tasks"),
                Val("task id", task_id),
                Lit("explain"),
            ],
            &[],
        )?;
        self.call_json(Method::GET, url, NO_BODY).await
    }
}
