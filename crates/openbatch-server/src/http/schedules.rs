//! `/jobschedules`: create, list, get, exists, update (PATCH), replace (PUT), delete, disable,
//! enable, terminate, and the jobs of a schedule.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openbatch_api::error::ApiError;
use openbatch_api::models::{self as m, JobScheduleConfiguration, JobScheduleCreate};
use openbatch_api::odata::{FilterTarget, Value};
use openbatch_api::time::IsoDuration;
use openbatch_core::{Input, Reply, Target as Entity};

use super::odata::{filter, keep, Target, JOB_PROPS};
use super::{empty, entity_headers, parse_body, ApiResult, Ctx, S};

pub(crate) const JOB_SCHEDULE_PROPS: &[&str] = &[
    "id",
    "state",
    "creationTime",
    "lastModified",
    "displayName",
    "executionInfo/nextRunTime",
    "executionInfo/recentJob/id",
    "executionInfo/endTime",
    "jobSpecification/poolInfo/poolId",
];

impl FilterTarget for Target<'_, m::JobSchedule> {
    fn property(&self, path: &str) -> Value {
        let s = self.0;
        let info = &s.execution_info;
        match path {
            "id" => s.id.clone().into(),
            "state" => s.state.as_str().into(),
            "creationTime" => s.creation_time.into(),
            "lastModified" => s.last_modified.into(),
            "displayName" => s.display_name.clone().into(),
            "executionInfo/nextRunTime" => info.next_run_time.into(),
            "executionInfo/recentJob/id" => {
                info.recent_job.as_ref().and_then(|r| r.id.clone()).into()
            }
            "executionInfo/endTime" => info.end_time.into(),
            "jobSpecification/poolInfo/poolId" => s
                .job_specification
                .pool_info
                .as_ref()
                .and_then(|p| p.pool_id.clone())
                .into(),
            _ => Value::Null,
        }
    }
}

/// Azure refuses a `recurrenceInterval` or `startWindow` under 1 minute with a 400; this
/// server's minimum is `job_schedule_min_recurrence` (1 minute unless lowered for development).
/// The core checks everything else about a schedule.
fn check_intervals(cfg: Option<&JobScheduleConfiguration>, min: Duration) -> ApiResult<()> {
    let Some(cfg) = cfg else { return Ok(()) };
    for (name, value) in [
        ("schedule.recurrenceInterval", cfg.recurrence_interval),
        ("schedule.startWindow", cfg.start_window),
    ] {
        if let Some(d) = value.and_then(|v| v.as_duration()) {
            if d < min {
                return Err(ApiError::invalid_property(
                    name,
                    &IsoDuration(Some(d)).to_string(),
                    &format!(
                        "must be at least {} (the minimum of this server, set by job_schedule_min_recurrence; Azure's is 1 minute)",
                        IsoDuration(Some(min))
                    ),
                )
                .into());
            }
        }
    }
    Ok(())
}

/// The times and durations of a schedule body, each checked on its own first, so that a bad
/// one is answered with `InvalidPropertyValue` naming it rather than with a generic
/// `InvalidRequestBody`.
const TIMED: &[(&str, &str, bool)] = &[
    ("schedule", "recurrenceInterval", true),
    ("schedule", "startWindow", true),
    ("schedule", "doNotRunUntil", false),
    ("schedule", "doNotRunAfter", false),
];

/// Parse a create, update or replace body (see [`TIMED`]).
fn parse_schedule_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let small = body.len() <= super::MAX_BODY;
    if let Some(v) = small
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten()
    {
        for (parent, name, duration) in TIMED {
            let Some(text) = v.get(parent).and_then(|p| p.get(name)) else {
                continue;
            };
            let property = format!("{parent}.{name}");
            let ok = match (text.as_str(), duration) {
                (Some(t), true) => openbatch_api::time::parse_duration(t).is_ok(),
                (Some(t), false) => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                (None, _) => text.is_null(),
            };
            if !ok {
                let reason = if *duration {
                    "not an ISO 8601 duration such as PT1H, PT15M or P1D"
                } else {
                    "not an ISO 8601 UTC time such as 2025-06-01T03:00:00Z"
                };
                let shown = text
                    .as_str()
                    .map_or_else(|| text.to_string(), str::to_string);
                return Err(ApiError::invalid_property(&property, &shown, reason).into());
            }
        }
    }
    parse_body(body)
}

pub(crate) async fn create(State(st): S, ctx: Ctx, body: Bytes) -> ApiResult {
    let spec: JobScheduleCreate = parse_schedule_body(&body)?;
    check_intervals(
        spec.schedule.as_ref(),
        st.config.job_schedule_min_recurrence,
    )?;
    let id = spec.id.clone();
    let applied = st
        .engine
        .submit(Input::CreateJobSchedule(Box::new(spec)))
        .await?;
    let mut resp = empty(StatusCode::CREATED);
    if let Reply::Created {
        etag,
        last_modified,
    } = applied.reply
    {
        entity_headers(
            &mut resp,
            &etag,
            last_modified,
            Some(&format!("{}/jobschedules/{id}", ctx.base)),
        );
    }
    Ok(resp)
}

pub(crate) async fn list(State(st): S, ctx: Ctx) -> ApiResult {
    let f = filter(&ctx, JOB_SCHEDULE_PROPS)?;
    let limit = ctx.max_results()?;
    let page =
        st.engine
            .read()
            .list_job_schedules(ctx.q("$skiptoken"), limit, &ctx.urls(), &keep(&f));
    Ok(ctx.list_body(page.items, page.next, "jobschedules"))
}

pub(crate) async fn get(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let s = st.engine.read().job_schedule(&id, &ctx.urls())?;
    if let Some(r) = ctx.read_guard(&s.e_tag, s.last_modified)? {
        return Ok(r);
    }
    let mut resp = ctx.entity_body(&s)?;
    entity_headers(&mut resp, &s.e_tag, s.last_modified, None);
    Ok(resp)
}

/// `HEAD /jobschedules/{id}`: 200 or 404, no body.
pub(crate) async fn exists(State(st): S, ctx: Ctx, Path(id): Path<String>) -> Response {
    let found = st.engine.read().job_schedule(&id, &ctx.urls());
    match found {
        Ok(s) => {
            match ctx.read_guard(&s.e_tag, s.last_modified) {
                Ok(Some(r)) => return r,
                Ok(None) => {}
                Err(e) => return e.into_response(),
            }
            let mut resp = empty(StatusCode::OK);
            entity_headers(&mut resp, &s.e_tag, s.last_modified, None);
            resp
        }
        Err(_) => empty(StatusCode::NOT_FOUND),
    }
}

async fn update(
    st: &crate::server::AppState,
    ctx: &Ctx,
    id: String,
    body: &Bytes,
    replace: bool,
) -> ApiResult {
    let update: m::JobScheduleUpdate = parse_schedule_body(body)?;
    check_intervals(
        update.schedule.as_ref(),
        st.config.job_schedule_min_recurrence,
    )?;
    let input = ctx.guarded(
        Entity::JobSchedule(id.clone()),
        Input::UpdateJobSchedule {
            id,
            update: Box::new(update),
            replace,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn patch(
    State(st): S,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    update(&st, &ctx, id, &body, false).await
}

pub(crate) async fn put(State(st): S, ctx: Ctx, Path(id): Path<String>, body: Bytes) -> ApiResult {
    update(&st, &ctx, id, &body, true).await
}

/// Submit a state change of a job schedule, guarded by the request's conditional headers.
async fn act(
    st: &crate::server::AppState,
    ctx: &Ctx,
    id: String,
    input: Input,
    status: StatusCode,
) -> ApiResult {
    let input = ctx.guarded(Entity::JobSchedule(id), input)?;
    st.engine.submit(input).await?;
    Ok(empty(status))
}

/// `DELETE /jobschedules/{id}` (202). `force` is accepted: jobs are deleted at once either way,
/// and a job with running tasks goes when its runs have been killed.
pub(crate) async fn delete(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let input = Input::DeleteJobSchedule { id: id.clone() };
    act(&st, &ctx, id, input, StatusCode::ACCEPTED).await
}

pub(crate) async fn disable(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let input = Input::DisableJobSchedule { id: id.clone() };
    act(&st, &ctx, id, input, StatusCode::NO_CONTENT).await
}

pub(crate) async fn enable(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let input = Input::EnableJobSchedule { id: id.clone() };
    act(&st, &ctx, id, input, StatusCode::NO_CONTENT).await
}

/// `POST /jobschedules/{id}/terminate` (202): see `DELETE` for `force`.
pub(crate) async fn terminate(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let input = Input::TerminateJobSchedule { id: id.clone() };
    act(&st, &ctx, id, input, StatusCode::ACCEPTED).await
}

/// `GET /jobschedules/{id}/jobs`: the jobs the schedule created, as `GET /jobs` lists them.
pub(crate) async fn list_jobs(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let f = filter(&ctx, JOB_PROPS)?;
    let limit = ctx.max_results()?;
    let page = st.engine.read().list_schedule_jobs(
        &id,
        ctx.q("$skiptoken"),
        limit,
        &ctx.urls(),
        &keep(&f),
    )?;
    Ok(ctx.list_body(page.items, page.next, "jobs"))
}
