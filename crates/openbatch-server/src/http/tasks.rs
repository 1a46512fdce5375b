//! `/jobs/{job}/tasks` and `addtaskcollection`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::{
    TaskAddCollectionResult, TaskAddResult, TaskAddStatus, TaskCreate, TaskGroup,
};
use openbatch_core::{Input, Reply, Target};

use super::odata::{filter, TASK_PROPS};
use super::{body_error, empty, entity_headers, json_response, parse_body, ApiResult, Ctx, S};

pub(crate) async fn create(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    let spec: TaskCreate = parse_body(&body)?;
    let id = spec.id.clone();
    let applied = st
        .engine
        .submit(Input::AddTasks {
            job: job.clone(),
            tasks: vec![spec],
        })
        .await?;
    let Reply::TaskResults(mut results) = applied.reply else {
        return Err(ApiError::new(500, codes::INTERNAL_ERROR, "unexpected reply").into());
    };
    let r = results
        .pop()
        .ok_or_else(|| ApiError::new(500, codes::INTERNAL_ERROR, "the task was not processed"))?;
    if r.status != TaskAddStatus::Success {
        let body = r.error.unwrap_or(openbatch_api::error::BatchError {
            code: None,
            message: None,
            values: Vec::new(),
        });
        return Err(error_from_body(&body).into());
    }
    let mut resp = empty(StatusCode::CREATED);
    if let (Some(etag), Some(lm)) = (r.e_tag, r.last_modified) {
        entity_headers(
            &mut resp,
            &etag,
            lm,
            Some(&format!("{}/jobs/{job}/tasks/{id}", ctx.base)),
        );
    }
    Ok(resp)
}

/// Rebuild an ApiError from the body the core produced for one task.
fn error_from_body(b: &openbatch_api::error::BatchError) -> ApiError {
    let code = b.code.as_deref().unwrap_or("");
    let (status, code): (u16, &'static str) = match code {
        "TaskExists" => (409, codes::TASK_EXISTS),
        "TaskIdSameAsJobPreparationTask" => (409, "TaskIdSameAsJobPreparationTask"),
        "TaskIdSameAsJobReleaseTask" => (409, "TaskIdSameAsJobReleaseTask"),
        "JobNotFound" => (404, codes::JOB_NOT_FOUND),
        "MissingRequiredProperty" => (400, codes::MISSING_REQUIRED_PROPERTY),
        "UnsupportedOperation" => (400, codes::UNSUPPORTED_OPERATION),
        "TaskDependenciesNotSpecifiedOnJob" => (400, codes::TASK_DEPENDENCIES_NOT_SPECIFIED_ON_JOB),
        "TaskDependencyListTooLong" => (400, codes::TASK_DEPENDENCY_LIST_TOO_LONG),
        "TaskDependencyRangesTooLong" => (400, codes::TASK_DEPENDENCY_RANGES_TOO_LONG),
        "InvalidApplicationPackageReferences" => {
            (409, codes::INVALID_APPLICATION_PACKAGE_REFERENCES)
        }
        _ => (400, codes::INVALID_PROPERTY_VALUE),
    };
    let message = b
        .message
        .as_ref()
        .and_then(|m| m.value.clone())
        .unwrap_or_default();
    let message = message
        .split("\nRequestId:")
        .next()
        .unwrap_or("")
        .to_string();
    let mut e = ApiError::new(status, code, message);
    for v in &b.values {
        e = e.with_value(
            v.key.clone().unwrap_or_default(),
            v.value.clone().unwrap_or_default(),
        );
    }
    e
}

pub(crate) async fn add_collection(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    let group: TaskGroup = parse_body(&body)?;
    let limit = st.engine.read().limits().max_tasks_per_collection;
    if group.value.len() > limit {
        return Err(ApiError::new(
            413,
            codes::REQUEST_BODY_TOO_LARGE,
            format!(
                "The collection has {} tasks; at most {limit} tasks can be added in one request.",
                group.value.len()
            ),
        )
        .into());
    }
    // Tasks that do not even parse get their own clienterror; the rest go to the core.
    let mut early: Vec<TaskAddResult> = Vec::new();
    let mut good: Vec<TaskCreate> = Vec::new();
    for raw in group.value {
        let id = raw
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let refused = match serde_json::from_value::<TaskCreate>(raw) {
            Ok(t) => {
                good.push(t);
                continue;
            }
            Err(e) => body_error(&e.to_string()),
        };
        early.push(TaskAddResult {
            status: TaskAddStatus::ClientError,
            task_id: id,
            e_tag: None,
            last_modified: None,
            location: None,
            error: Some(refused.to_body("", &openbatch_api::time::iso8601(chrono::Utc::now()))),
        });
    }
    let mut results = early;
    if !good.is_empty() {
        let applied = st
            .engine
            .submit(Input::AddTasks {
                job: job.clone(),
                tasks: good,
            })
            .await?;
        if let Reply::TaskResults(r) = applied.reply {
            results.extend(r);
        }
    }
    // The core leaves the request id out of per-task errors (it has none); put this
    // request's in, as Azure does.
    let request_id = uuid::Uuid::new_v4().to_string();
    for r in &mut results {
        if r.status == TaskAddStatus::Success {
            r.location = Some(format!("{}/jobs/{job}/tasks/{}", ctx.base, r.task_id));
        }
        if let Some(m) = r.error.as_mut().and_then(|e| e.message.as_mut()) {
            if let Some(v) = m.value.as_mut() {
                *v = v.replace("\nRequestId:\n", &format!("\nRequestId:{request_id}\n"));
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &TaskAddCollectionResult { value: results },
    ))
}

pub(crate) async fn list(State(st): S, ctx: Ctx, Path(job): Path<String>) -> ApiResult {
    let f = filter(&ctx, TASK_PROPS)?;
    let limit = ctx.max_results()?;
    let page = st.engine.read().list_tasks_filtered(
        &job,
        ctx.q("$skiptoken")
            .map(|s| s.to_ascii_lowercase())
            .as_deref(),
        limit,
        &ctx.urls(),
        f.as_ref(),
    )?;
    Ok(ctx.list_body(page.items, page.next, "tasks"))
}

pub(crate) async fn get(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let t = st.engine.read().task(&job, &task, &ctx.urls())?;
    if let Some(r) = ctx.read_guard(&t.e_tag, t.last_modified)? {
        return Ok(r);
    }
    let mut resp = ctx.entity_body(&t)?;
    entity_headers(&mut resp, &t.e_tag, t.last_modified, None);
    Ok(resp)
}

pub(crate) async fn delete(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let input = ctx.guarded(
        Target::Task(job.clone(), task.clone()),
        Input::DeleteTask { job, task },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn terminate(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let input = ctx.guarded(
        Target::Task(job.clone(), task.clone()),
        Input::TerminateTask { job, task },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
