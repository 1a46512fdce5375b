//! Job schedules: one method per REST operation.

use openbatch_api::models::{Job, JobSchedule, JobScheduleCreate, JobScheduleUpdate};
use reqwest::Method;

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, ListOptions, NO_BODY};

impl Client {
    fn job_schedule_url(
        &self,
        id: &str,
        action: Option<&'static str>,
        query: &[(&str, String)],
    ) -> Result<reqwest::Url, ClientError> {
        let mut segs = vec![Lit("jobschedules"), Val("job schedule id", id)];
        segs.extend(action.map(Lit));
        self.url(&segs, query)
    }

    /// `POST /jobschedules` (201). A schedule that is due at once has created its first job
    /// when this returns.
    pub async fn create_job_schedule(
        &self,
        schedule: &JobScheduleCreate,
    ) -> Result<(), ClientError> {
        let url = self.url(&[Lit("jobschedules")], &[])?;
        self.call_no_content(Method::POST, url, Some(schedule))
            .await
    }

    /// `GET /jobschedules/{id}`.
    pub async fn get_job_schedule(&self, id: &str) -> Result<JobSchedule, ClientError> {
        let url = self.job_schedule_url(id, None, &[])?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `GET /jobschedules`, every page.
    pub async fn list_job_schedules(
        &self,
        opts: &ListOptions,
    ) -> Result<Vec<JobSchedule>, ClientError> {
        let url = self.url(&[Lit("jobschedules")], &opts.query())?;
        self.list_all(url).await
    }

    /// `HEAD /jobschedules/{id}`: true on 200, false on 404.
    pub async fn job_schedule_exists(&self, id: &str) -> Result<bool, ClientError> {
        let url = self.job_schedule_url(id, None, &[])?;
        match self.call_no_content(Method::HEAD, url, NO_BODY).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /jobschedules/{id}`: what `update` gives changes, the rest stays.
    pub async fn update_job_schedule(
        &self,
        id: &str,
        update: &JobScheduleUpdate,
    ) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, None, &[])?;
        self.call_no_content(Method::PATCH, url, Some(update)).await
    }

    /// `PUT /jobschedules/{id}`: every settable property is replaced; `jobSpecification` is
    /// required, and an absent `schedule` or `metadata` goes back to its default.
    pub async fn replace_job_schedule(
        &self,
        id: &str,
        replace: &JobScheduleUpdate,
    ) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, None, &[])?;
        self.call_no_content(Method::PUT, url, Some(replace)).await
    }

    /// `DELETE /jobschedules/{id}` (202). The schedule is `deleting` while its jobs are
    /// deleted, then `get_job_schedule` answers 404.
    pub async fn delete_job_schedule(&self, id: &str) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, None, &[])?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }

    /// `POST /jobschedules/{id}/disable` (204): no new jobs; the active one runs on.
    pub async fn disable_job_schedule(&self, id: &str) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, Some("disable"), &[])?;
        self.call_no_content(Method::POST, url, NO_BODY).await
    }

    /// `POST /jobschedules/{id}/enable` (204).
    pub async fn enable_job_schedule(&self, id: &str) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, Some("enable"), &[])?;
        self.call_no_content(Method::POST, url, NO_BODY).await
    }

    /// `POST /jobschedules/{id}/terminate` (202). The active job is terminated; the schedule is
    /// `terminating` until that job has ended, then `completed`.
    pub async fn terminate_job_schedule(&self, id: &str) -> Result<(), ClientError> {
        let url = self.job_schedule_url(id, Some("terminate"), &[])?;
        self.call_no_content(Method::POST, url, NO_BODY).await
    }

    /// `GET /jobschedules/{id}/jobs`, every page: the jobs the schedule created.
    pub async fn list_jobs_from_schedule(
        &self,
        id: &str,
        opts: &ListOptions,
    ) -> Result<Vec<Job>, ClientError> {
        let url = self.job_schedule_url(id, Some("jobs"), &opts.query())?;
        self.list_all(url).await
    }
}
