//! `GET /jobs/{job}/jobpreparationandreleasetaskstatus`: the job preparation and release
//! tasks of a job, one item per node that ran them (`jobtasks.rs` in the core).

use axum::extract::{Path, State};
use openbatch_api::models as m;
use openbatch_api::odata::{FilterTarget, Value};

use super::odata::{filter, keep, Target};
use super::{ApiResult, Ctx, S};

/// What `$filter` may name on this list.
const STATUS_PROPS: &[&str] = &[
    "poolId",
    "nodeId",
    "jobPreparationTaskExecutionInfo/state",
    "jobPreparationTaskExecutionInfo/result",
    "jobPreparationTaskExecutionInfo/exitCode",
    "jobPreparationTaskExecutionInfo/retryCount",
    "jobPreparationTaskExecutionInfo/startTime",
    "jobPreparationTaskExecutionInfo/endTime",
    "jobReleaseTaskExecutionInfo/state",
    "jobReleaseTaskExecutionInfo/result",
    "jobReleaseTaskExecutionInfo/exitCode",
    "jobReleaseTaskExecutionInfo/startTime",
    "jobReleaseTaskExecutionInfo/endTime",
];

impl FilterTarget for Target<'_, m::JobPreparationAndReleaseTaskStatus> {
    fn property(&self, path: &str) -> Value {
        let s = self.0;
        let prep = s.job_preparation_task_execution_info.as_ref();
        let release = s.job_release_task_execution_info.as_ref();
        match path {
            "poolId" => s.pool_id.clone().into(),
            "nodeId" => s.node_id.clone().into(),
            "jobPreparationTaskExecutionInfo/state" => prep.map(|p| p.state.as_str()).into(),
            "jobPreparationTaskExecutionInfo/result" => {
                prep.and_then(|p| p.result).map(|r| r.as_str()).into()
            }
            "jobPreparationTaskExecutionInfo/exitCode" => {
                prep.and_then(|p| p.exit_code).map(i64::from).into()
            }
            "jobPreparationTaskExecutionInfo/retryCount" => {
                prep.map(|p| i64::from(p.retry_count)).into()
            }
            "jobPreparationTaskExecutionInfo/startTime" => prep.map(|p| p.start_time).into(),
            "jobPreparationTaskExecutionInfo/endTime" => prep.and_then(|p| p.end_time).into(),
            "jobReleaseTaskExecutionInfo/state" => release.map(|r| r.state.as_str()).into(),
            "jobReleaseTaskExecutionInfo/result" => {
                release.and_then(|r| r.result).map(|r| r.as_str()).into()
            }
            "jobReleaseTaskExecutionInfo/exitCode" => {
                release.and_then(|r| r.exit_code).map(i64::from).into()
            }
            "jobReleaseTaskExecutionInfo/startTime" => release.map(|r| r.start_time).into(),
            "jobReleaseTaskExecutionInfo/endTime" => release.and_then(|r| r.end_time).into(),
            _ => Value::Null,
        }
    }
}

pub(crate) async fn status(State(st): S, ctx: Ctx, Path(job): Path<String>) -> ApiResult {
    let f = filter(&ctx, STATUS_PROPS)?;
    let limit = ctx.max_results()?;
    let page = st.engine.read().list_job_prep_release_status(
        &job,
        ctx.q("$skiptoken"),
        limit,
        &ctx.urls(),
        &keep(&f),
    )?;
    Ok(ctx.list_body(
        page.items,
        page.next,
        "jobpreparationandreleasetaskstatuslist",
    ))
}
