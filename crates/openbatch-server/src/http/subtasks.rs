//! `GET /jobs/{job}/tasks/{task}/subtasksinfo`: the subtasks of a multi-instance task's current
//! or latest attempt (`gang.rs` in the core keeps them).

use axum::extract::{Path, State};

use super::{ApiResult, Ctx, S};

pub(crate) async fn list(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let items = st.engine.read().list_subtasks(&job, &task, &ctx.urls())?;
    Ok(ctx.list_body(items, None, "subtaskinfo"))
}
