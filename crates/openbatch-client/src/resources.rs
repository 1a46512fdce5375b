//! Pools, nodes, jobs and tasks: one method per REST operation.

use openbatch_api::models::{
    Job, JobCreate, JobTerminate, Node, Pool, PoolCreate, PoolResize, Task, TaskAddResult,
    TaskCountsResult, TaskCreate,
};
use reqwest::Method;
use serde::Serialize;

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, ListOptions, MAX_TASKS_PER_COLLECTION, NO_BODY};

/// The error code the service answers when a task collection is over its size limit.
const REQUEST_BODY_TOO_LARGE: &str = "RequestBodyTooLarge";

/// `{"value": [...]}`, the body of `addtaskcollection`.
#[derive(Serialize)]
struct TaskGroupRef<'a> {
    value: &'a [TaskCreate],
}

#[derive(serde::Deserialize)]
struct TaskAddCollection {
    #[serde(default)]
    value: Vec<TaskAddResult>,
}

impl Client {
    // ---- pools ----

    /// `POST /pools` (201).
    pub async fn create_pool(&self, pool: &PoolCreate) -> Result<(), ClientError> {
        let url = self.url(&[Lit("pools")], &[])?;
        self.call_no_content(Method::POST, url, Some(pool)).await
    }

    /// `GET /pools/{id}`.
    pub async fn get_pool(&self, pool_id: &str) -> Result<Pool, ClientError> {
        let url = self.url(&[Lit("pools"), Val("pool id", pool_id)], &[])?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `GET /pools`, every page.
    pub async fn list_pools(&self, opts: &ListOptions) -> Result<Vec<Pool>, ClientError> {
        let url = self.url(&[Lit("pools")], &opts.query())?;
        self.list_all(url).await
    }

    /// `DELETE /pools/{id}` (202). The pool goes to `deleting`, then `get_pool` answers 404.
    pub async fn delete_pool(&self, pool_id: &str) -> Result<(), ClientError> {
        let url = self.url(&[Lit("pools"), Val("pool id", pool_id)], &[])?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }

    /// `HEAD /pools/{id}`: true on 200, false on 404.
    pub async fn pool_exists(&self, pool_id: &str) -> Result<bool, ClientError> {
        let url = self.url(&[Lit("pools"), Val("pool id", pool_id)], &[])?;
        match self.call_no_content(Method::HEAD, url, NO_BODY).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /pools/{id}/resize` (202). The pool's allocation state goes `resizing`, then
    /// `steady`.
    pub async fn resize_pool(&self, pool_id: &str, resize: &PoolResize) -> Result<(), ClientError> {
        let url = self.url(&[Lit("pools"), Val("pool id", pool_id), Lit("resize")], &[])?;
        self.call_no_content(Method::POST, url, Some(resize)).await
    }

    /// `PATCH /pools/{id}` (200): the properties set in `update` change, others stay.
    pub async fn update_pool(
        &self,
        pool_id: &str,
        update: &openbatch_api::models::PoolUpdate,
    ) -> Result<(), ClientError> {
        let url = self.url(&[Lit("pools"), Val("pool id", pool_id)], &[])?;
        self.call_no_content(Method::PATCH, url, Some(update)).await
    }

    // ---- nodes ----

    /// `GET /pools/{id}/nodes`, every page.
    pub async fn list_nodes(
        &self,
        pool_id: &str,
        opts: &ListOptions,
    ) -> Result<Vec<Node>, ClientError> {
        let url = self.url(
            &[Lit("pools"), Val("pool id", pool_id), Lit("nodes")],
            &opts.query(),
        )?;
        self.list_all(url).await
    }

    /// `GET /pools/{id}/nodes/{node}`.
    pub async fn get_node(&self, pool_id: &str, node_id: &str) -> Result<Node, ClientError> {
        let url = self.url(
            &[
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("nodes"),
                Val("node id", node_id),
            ],
            &[],
        )?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    // ---- jobs ----

    /// `POST /jobs` (201).
    pub async fn create_job(&self, job: &JobCreate) -> Result<(), ClientError> {
        let url = self.url(&[Lit("jobs")], &[])?;
        self.call_no_content(Method::POST, url, Some(job)).await
    }

    /// `GET /jobs/{id}`.
    pub async fn get_job(&self, job_id: &str) -> Result<Job, ClientError> {
        let url = self.url(&[Lit("jobs"), Val("job id", job_id)], &[])?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `GET /jobs`, every page.
    pub async fn list_jobs(&self, opts: &ListOptions) -> Result<Vec<Job>, ClientError> {
        let url = self.url(&[Lit("jobs")], &opts.query())?;
        self.list_all(url).await
    }

    /// `DELETE /jobs/{id}` (202). Running tasks are killed; the job goes to `deleting`, then
    /// `get_job` answers 404.
    pub async fn delete_job(&self, job_id: &str) -> Result<(), ClientError> {
        let url = self.url(&[Lit("jobs"), Val("job id", job_id)], &[])?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }

    /// `POST /jobs/{id}/terminate` (202), with an optional reason (the service's default is
    /// `UserTerminate`).
    pub async fn terminate_job(
        &self,
        job_id: &str,
        reason: Option<&str>,
    ) -> Result<(), ClientError> {
        let url = self.url(&[Lit("jobs"), Val("job id", job_id), Lit("terminate")], &[])?;
        match reason {
            Some(r) => {
                let body = JobTerminate {
                    terminate_reason: Some(r.to_owned()),
                };
                self.call_no_content(Method::POST, url, Some(&body)).await
            }
            None => self.call_no_content(Method::POST, url, NO_BODY).await,
        }
    }

    /// `GET /jobs/{id}/taskcounts`.
    pub async fn get_task_counts(&self, job_id: &str) -> Result<TaskCountsResult, ClientError> {
        let url = self.url(
            &[Lit("jobs"), Val("job id", job_id), Lit("taskcounts")],
            &[],
        )?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    // ---- tasks ----

    /// `POST /jobs/{id}/tasks` (201).
    pub async fn create_task(&self, job_id: &str, task: &TaskCreate) -> Result<(), ClientError> {
        let url = self.url(&[Lit("jobs"), Val("job id", job_id), Lit("tasks")], &[])?;
        self.call_no_content(Method::POST, url, Some(task)).await
    }

    /// `POST /jobs/{id}/addtaskcollection`, in requests of at most 100 tasks (halved when the
    /// service says a request is too large, as the SDK's `create_tasks` does). Returns one
    /// result per task, in the service's order; a task that was refused has status
    /// `clienterror` or `servererror` and an `error`. An error is returned only when a whole
    /// request fails; tasks of earlier requests have then been added.
    pub async fn add_task_collection(
        &self,
        job_id: &str,
        tasks: &[TaskCreate],
    ) -> Result<Vec<TaskAddResult>, ClientError> {
        let url = self.url(
            &[Lit("jobs"), Val("job id", job_id), Lit("addtaskcollection")],
            &[],
        )?;
        let mut results = Vec::with_capacity(tasks.len());
        // Chunks still to send, in order; a chunk that is too large is split in place.
        let mut pending: Vec<&[TaskCreate]> =
            tasks.chunks(MAX_TASKS_PER_COLLECTION).rev().collect();
        while let Some(chunk) = pending.pop() {
            let body = TaskGroupRef { value: chunk };
            match self
                .call_json::<TaskAddCollection>(Method::POST, url.clone(), Some(&body))
                .await
            {
                Ok(answer) => results.extend(answer.value),
                Err(e) if e.code() == Some(REQUEST_BODY_TOO_LARGE) && chunk.len() > 1 => {
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    pending.push(second);
                    pending.push(first);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    /// `GET /jobs/{id}/tasks`, every page.
    pub async fn list_tasks(
        &self,
        job_id: &str,
        opts: &ListOptions,
    ) -> Result<Vec<Task>, ClientError> {
        let url = self.url(
            &[Lit("jobs"), Val("job id", job_id), Lit("tasks")],
            &opts.query(),
        )?;
        self.list_all(url).await
    }

    /// `GET /jobs/{id}/tasks/{task}`.
    pub async fn get_task(&self, job_id: &str, task_id: &str) -> Result<Task, ClientError> {
        let url = self.task_url(job_id, task_id, None)?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `DELETE /jobs/{id}/tasks/{task}` (200). A running task is killed.
    pub async fn delete_task(&self, job_id: &str, task_id: &str) -> Result<(), ClientError> {
        let url = self.task_url(job_id, task_id, None)?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }

    /// `POST /jobs/{id}/tasks/{task}/terminate` (204).
    pub async fn terminate_task(&self, job_id: &str, task_id: &str) -> Result<(), ClientError> {
        let url = self.task_url(job_id, task_id, Some("terminate"))?;
        self.call_no_content(Method::POST, url, NO_BODY).await
    }

    fn task_url(
        &self,
        job_id: &str,
        task_id: &str,
        action: Option<&'static str>,
    ) -> Result<reqwest::Url, ClientError> {
        let mut segs = vec![
            Lit("jobs"),
            Val("job id", job_id),
            Lit("tasks"),
            Val("task id", task_id),
        ];
        segs.extend(action.map(Lit));
        self.url(&segs, &[])
    }
}
