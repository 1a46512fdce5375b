//! The update and action operations (Azure Batch's P2 set) and the account listings.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::{
    ImageReference, JobDisable, JobUpdate, NodeDisableScheduling, NodeRemove, NodeRestart,
    PoolReplace, PoolUpdate, SupportedImage, TaskReplace,
};
use openbatch_core::{Input, Target};

use super::{empty, parse_body, ApiResult, Ctx, S};

/// A body that may be absent (the SDK sends none for some actions).
fn optional<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

pub(crate) async fn update_pool(
    State(st): S,
    ctx: Ctx,
    Path(pool): Path<String>,
    body: Bytes,
) -> ApiResult {
    let patch: PoolUpdate = parse_body(&body)?;
    if let Some(size) = &patch.vm_size {
        if crate::vmsizes::lookup(size, &st.config.vm_sizes).is_none() {
            return Err(ApiError::new(
                400,
                codes::UNSUPPORTED_VM_SIZE,
                crate::vmsizes::unknown_message(size),
            )
            .into());
        }
    }
    let input = ctx.guarded(
        Target::Pool(pool.clone()),
        Input::UpdatePool {
            id: pool,
            patch: Box::new(patch),
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn replace_pool_properties(
    State(st): S,
    Path(pool): Path<String>,
    body: Bytes,
) -> ApiResult {
    let props: PoolReplace = parse_body(&body)?;
    st.engine
        .submit(Input::ReplacePoolProperties { id: pool, props })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn stop_resize(State(st): S, ctx: Ctx, Path(pool): Path<String>) -> ApiResult {
    let input = ctx.guarded(
        Target::Pool(pool.clone()),
        Input::StopPoolResize { id: pool },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn remove_nodes(
    State(st): S,
    ctx: Ctx,
    Path(pool): Path<String>,
    body: Bytes,
) -> ApiResult {
    let r: NodeRemove = parse_body(&body)?;
    let input = ctx.guarded(
        Target::Pool(pool.clone()),
        Input::RemoveNodes {
            pool,
            nodes: r.node_list,
            option: r.node_deallocation_option,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

/// PATCH changes what is given; PUT replaces the settable properties (what is missing goes
/// back to its default).
async fn update_job(
    st: &crate::server::AppState,
    ctx: &Ctx,
    job: String,
    body: &Bytes,
    replace: bool,
) -> ApiResult {
    let update: JobUpdate = parse_body(body)?;
    let input = ctx.guarded(
        Target::Job(job.clone()),
        Input::UpdateJob {
            id: job,
            update: Box::new(update),
            replace,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn patch_job(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    update_job(&st, &ctx, job, &body, false).await
}

pub(crate) async fn put_job(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    update_job(&st, &ctx, job, &body, true).await
}

pub(crate) async fn disable_job(
    State(st): S,
    ctx: Ctx,
    Path(job): Path<String>,
    body: Bytes,
) -> ApiResult {
    let d: JobDisable = parse_body(&body)?;
    let input = ctx.guarded(
        Target::Job(job.clone()),
        Input::DisableJob {
            id: job,
            option: d.disable_tasks,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn enable_job(State(st): S, ctx: Ctx, Path(job): Path<String>) -> ApiResult {
    let input = ctx.guarded(Target::Job(job.clone()), Input::EnableJob { id: job })?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn put_task(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let r: TaskReplace = optional(&body)?;
    let target = Target::Task(job.clone(), task.clone());
    let input = ctx.guarded(
        target,
        Input::ReplaceTask {
            job,
            task,
            constraints: r.constraints,
        },
    )?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn reactivate_task(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let target = Target::Task(job.clone(), task.clone());
    let input = ctx.guarded(target, Input::ReactivateTask { job, task })?;
    st.engine.submit(input).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn disable_scheduling(
    State(st): S,
    Path((pool, node)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let d: NodeDisableScheduling = optional(&body)?;
    st.engine
        .submit(Input::SetNodeScheduling {
            pool,
            node,
            enabled: false,
            option: d.node_disable_scheduling_option,
        })
        .await?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn enable_scheduling(
    State(st): S,
    Path((pool, node)): Path<(String, String)>,
) -> ApiResult {
    st.engine
        .submit(Input::SetNodeScheduling {
            pool,
            node,
            enabled: true,
            option: None,
        })
        .await?;
    Ok(empty(StatusCode::OK))
}

async fn restart(
    st: &crate::server::AppState,
    pool: String,
    node: String,
    body: &Bytes,
    reimage: bool,
) -> ApiResult {
    let r: NodeRestart = optional(body)?;
    st.engine
        .submit(Input::RestartNode {
            pool,
            node,
            option: r.node_reboot_option,
            reimage,
        })
        .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn reboot_node(
    State(st): S,
    Path((pool, node)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    restart(&st, pool, node, &body, false).await
}

pub(crate) async fn reimage_node(
    State(st): S,
    Path((pool, node)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    restart(&st, pool, node, &body, true).await
}

/// `GET /supportedimages`: the one image local nodes really run, the host's, described honestly.
pub(crate) async fn supported_images(ctx: Ctx) -> ApiResult {
    let os = host_os();
    let image = SupportedImage {
        node_agent_sku_id: format!("batch.node.{} {}", os.0, os.1),
        image_reference: ImageReference {
            publisher: Some("openbatch".into()),
            offer: Some(format!("host-{}", os.0)),
            sku: Some(os.1.clone()),
            version: Some("latest".into()),
            virtual_machine_image_id: None,
            exact_version: None,
        },
        os_type: "linux".into(),
        capabilities: Vec::new(),
        verification_type: "verified".into(),
    };
    Ok(ctx.list_body(vec![image], None, "supportedimages"))
}

/// (id, version) from /etc/os-release, e.g. ("debian", "12").
fn host_os() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
    };
    (
        field("ID").unwrap_or_else(|| "linux".into()),
        field("VERSION_ID").unwrap_or_else(|| "unknown".into()),
    )
}

pub(crate) async fn node_counts(State(st): S, ctx: Ctx) -> ApiResult {
    let counts = st.engine.read().node_counts();
    Ok(ctx.list_body(counts, None, "nodecounts"))
}

/// The body of openbatch's preempt operation: `{"gracePeriod": "PT30S"}`, all optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PreemptBody {
    grace_period: Option<openbatch_api::time::IsoDuration>,
}

/// `POST /openbatch/pools/{pool}/nodes/{node}/preempt` (an openbatch extension): take a
/// low-priority node's capacity back as a spot eviction would, after a notice and grace period
/// for its tasks, which are requeued.
pub(crate) async fn preempt_node(
    State(st): S,
    Path((pool, node)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let b: PreemptBody = optional(&body)?;
    let grace = match b.grace_period {
        Some(d) => Some(d.as_duration().ok_or_else(|| {
            ApiError::invalid_property("gracePeriod", &d.to_string(), "must be a finite duration")
        })?),
        None => None,
    };
    st.engine
        .submit(crate::preemption::input(&st, pool, node, grace))
        .await?;
    Ok(empty(StatusCode::ACCEPTED))
}
