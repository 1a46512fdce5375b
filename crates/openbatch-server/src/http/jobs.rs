//! `/jobs`: create, list, get, delete, terminate, task counts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openbatch_api::models::{JobCreate, JobTerminate};
use openbatch_core::{Input, Reply, Target};

use super::odata::{filter, keep, JOB_PROPS};
use super::{empty, entity_headers, json_response, parse_body, ApiResult, Ctx, S};

pub(crate) async fn create(State(st): S, ctx: Ctx, body: Bytes) -> ApiResult {
    let spec: JobCreate = parse_body(&body)?;
    let id = spec.id.clone();
    let applied = st.engine.submit(Input::CreateJob(Box::new(spec))).await?;
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
            Some(&format!("{}/jobs/{id}", ctx.base)),
        );
    }
    Ok(resp)
}

pub(crate) async fn list(State(st): S, ctx: Ctx) -> ApiResult {
    let f = filter(&ctx, JOB_PROPS)?;
    let limit = ctx.max_results()?;
    let page = st
        .engine
        .read()
        .list_jobs(ctx.q("$skiptoken"), limit, &ctx.urls(), &keep(&f));
    Ok(ctx.list_body(page.items, page.next, "jobs"))
}

pub(crate) async fn get(State(st): S, ctx: Ctx, Path(job): Path<String>) -> ApiResult {
    let j = st.engine.read().job(&job, &ctx.urls())?;
    if let Some(r) = ctx.read_guard(&j.e_tag, j.last_modified)? {
        return Ok(r);
    }
    let mut resp = ctx.entity_body(&j)?;
    entity_headers(&mut resp, &j.e_tag, j.last_modified, None);
    Ok(resp)
}

pub(crate) async fn delete(State(st): S, ctx: Ctx, Path(job): Path<String>) -> ApiResult {
    let input = ctx.guarded(Target::Job(job.clone()), Input::DeleteJob { id: job })?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn terminate(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    let reason = if body.is_empty() {
        None
    } else {
        parse_body::<JobTerminate>(&body)?.terminate_reason
    };
    let input = ctx.guarded(
        Target::Job(job.clone()),
        Input::TerminateJob { id: job, reason },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn task_counts(State(st): S, Path(job): Path<String>) -> ApiResult {
    let counts = st.engine.read().task_counts(&job)?;
    Ok(json_response(StatusCode::OK, &counts))
}
