//! `/pools`: create, list, get, exists, delete, resize.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::{PoolCreate, PoolResize};
use openbatch_core::{Input, Reply, Target};

use super::odata::{filter, keep, POOL_PROPS};
use super::{empty, entity_headers, parse_body, ApiResult, Ctx, S};

pub(crate) async fn create(State(st): S, ctx: Ctx, body: Bytes) -> ApiResult {
    let spec: PoolCreate = parse_body(&body)?;
    if crate::vmsizes::lookup(&spec.vm_size, &st.config.vm_sizes).is_none() {
        return Err(ApiError::new(
            400,
            codes::UNSUPPORTED_VM_SIZE,
            crate::vmsizes::unknown_message(&spec.vm_size),
        )
        .with_value("PropertyName", "vmSize")
        .with_value("PropertyValue", spec.vm_size.clone())
        .into());
    }
    if spec.enable_auto_scale == Some(true) {
        if let Some(f) = &spec.auto_scale_formula {
            super::autoscale::check_formula(f)?;
        }
        super::autoscale::check_interval(
            spec.auto_scale_evaluation_interval,
            st.autoscaler.min_interval(),
        )?;
    }
    let id = spec.id.clone();
    let applied = st.engine.submit(Input::CreatePool(Box::new(spec))).await?;
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
            Some(&format!("{}/pools/{id}", ctx.base)),
        );
    }
    Ok(resp)
}

pub(crate) async fn list(State(st): S, ctx: Ctx) -> ApiResult {
    let f = filter(&ctx, POOL_PROPS)?;
    let limit = ctx.max_results()?;
    let page = st
        .engine
        .read()
        .list_pools(ctx.q("$skiptoken"), limit, &ctx.urls(), &keep(&f));
    Ok(ctx.list_body(page.items, page.next, "pools"))
}

pub(crate) async fn get(State(st): S, ctx: Ctx, Path(pool): Path<String>) -> ApiResult {
    let p = st.engine.read().pool(&pool, &ctx.urls())?;
    if let Some(r) = ctx.read_guard(&p.e_tag, p.last_modified)? {
        return Ok(r);
    }
    let mut resp = ctx.entity_body(&p)?;
    entity_headers(&mut resp, &p.e_tag, p.last_modified, None);
    Ok(resp)
}

pub(crate) async fn exists(State(st): S, ctx: Ctx, Path(pool): Path<String>) -> Response {
    let found = st.engine.read().pool(&pool, &ctx.urls());
    match found {
        Ok(p) => {
            match ctx.read_guard(&p.e_tag, p.last_modified) {
                Ok(Some(r)) => return r,
                Ok(None) => {}
                Err(e) => return e.into_response(),
            }
            let mut resp = empty(StatusCode::OK);
            entity_headers(&mut resp, &p.e_tag, p.last_modified, None);
            resp
        }
        Err(_) => empty(StatusCode::NOT_FOUND),
    }
}

pub(crate) async fn delete(State(st): S, ctx: Ctx, Path(pool): Path<String>) -> ApiResult {
    let input = ctx.guarded(Target::Pool(pool.clone()), Input::DeletePool { id: pool })?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn resize(
    State(st): S,
    ctx: Ctx,
    Path(pool): Path<String>,
    body: Bytes,
) -> ApiResult {
    let resize: PoolResize = parse_body(&body)?;
    let input = ctx.guarded(
        Target::Pool(pool.clone()),
        Input::ResizePool { id: pool, resize },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
