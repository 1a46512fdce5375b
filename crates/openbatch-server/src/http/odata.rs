//! `$filter` for lists: which properties each resource answers, and how to read them.

use openbatch_api::error::ApiError;
use openbatch_api::models as m;
use openbatch_api::odata::{Filter, FilterTarget, Value};

use super::{ApiResult, Ctx};

pub(crate) const POOL_PROPS: &[&str] = &[
    "id",
    "state",
    "allocationState",
    "vmSize",
    "creationTime",
    "displayName",
    "currentDedicatedNodes",
    "targetDedicatedNodes",
    "lastModified",
];
pub(crate) const JOB_PROPS: &[&str] = &[
    "id",
    "state",
    "creationTime",
    "displayName",
    "priority",
    "poolInfo/poolId",
    "executionInfo/poolId",
    "lastModified",
    "executionInfo/terminateReason",
];
pub(crate) const TASK_PROPS: &[&str] = &[
    "id",
    "state",
    "creationTime",
    "displayName",
    "commandLine",
    "lastModified",
    "executionInfo/exitCode",
    "executionInfo/result",
    "executionInfo/retryCount",
    "executionInfo/requeueCount",
    "executionInfo/startTime",
    "executionInfo/endTime",
    "nodeInfo/nodeId",
    "nodeInfo/poolId",
    "requiredSlots",
];
pub(crate) const NODE_PROPS: &[&str] = &[
    "id",
    "state",
    "schedulingState",
    "ipAddress",
    "vmSize",
    "isDedicated",
    "totalTasksRun",
    "runningTasksCount",
];
pub(crate) const FILE_PROPS: &[&str] = &["name", "isDirectory"];

/// The request's `$filter`, parsed against `allowed`, or None.
pub(crate) fn filter(ctx: &Ctx, allowed: &[&str]) -> ApiResult<Option<Filter>> {
    match ctx.q("$filter") {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => Filter::parse(text, allowed)
            .map(Some)
            .map_err(|e| ApiError::invalid_query("$filter", text, &e.to_string()).into()),
    }
}

pub(crate) fn keep<T>(f: &Option<Filter>) -> impl Fn(&T) -> bool + '_
where
    for<'a> Target<'a, T>: FilterTarget,
{
    move |item: &T| f.as_ref().is_none_or(|f| f.matches(&Target(item)))
}

pub(crate) struct Target<'a, T>(pub(crate) &'a T);

impl FilterTarget for Target<'_, m::Pool> {
    fn property(&self, path: &str) -> Value {
        let p = self.0;
        match path {
            "id" => p.id.clone().into(),
            "state" => p.state.as_str().into(),
            "allocationState" => p.allocation_state.as_str().into(),
            "vmSize" => p.vm_size.clone().into(),
            "creationTime" => p.creation_time.into(),
            "lastModified" => p.last_modified.into(),
            "displayName" => p.display_name.clone().into(),
            "currentDedicatedNodes" => i64::from(p.current_dedicated_nodes).into(),
            "targetDedicatedNodes" => i64::from(p.target_dedicated_nodes).into(),
            _ => Value::Null,
        }
    }
}

impl FilterTarget for Target<'_, m::Job> {
    fn property(&self, path: &str) -> Value {
        let j = self.0;
        match path {
            "id" => j.id.clone().into(),
            "state" => j.state.as_str().into(),
            "creationTime" => j.creation_time.into(),
            "lastModified" => j.last_modified.into(),
            "displayName" => j.display_name.clone().into(),
            "priority" => i64::from(j.priority).into(),
            "poolInfo/poolId" => j.pool_info.pool_id.clone().into(),
            "executionInfo/poolId" => j
                .execution_info
                .as_ref()
                .and_then(|e| e.pool_id.clone())
                .into(),
            "executionInfo/terminateReason" => j
                .execution_info
                .as_ref()
                .and_then(|e| e.terminate_reason.clone())
                .into(),
            _ => Value::Null,
        }
    }
}

impl FilterTarget for Target<'_, m::Node> {
    fn property(&self, path: &str) -> Value {
        let n = self.0;
        match path {
            "id" => n.id.clone().into(),
            "state" => n.state.as_str().into(),
            "schedulingState" => n.scheduling_state.as_str().into(),
            "ipAddress" => n.ip_address.clone().into(),
            "vmSize" => n.vm_size.clone().into(),
            "isDedicated" => n.is_dedicated.into(),
            "totalTasksRun" => n.total_tasks_run.into(),
            "runningTasksCount" => n.running_tasks_count.into(),
            _ => Value::Null,
        }
    }
}

impl FilterTarget for Target<'_, m::NodeFile> {
    fn property(&self, path: &str) -> Value {
        match path {
            "name" => self.0.name.clone().into(),
            "isDirectory" => self.0.is_directory.into(),
            _ => Value::Null,
        }
    }
}
