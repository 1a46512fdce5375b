//! `GET /openbatch/jobs/{job}/tasks/{task}/explain`: why a task is not running (an openbatch
//! extension; see `openbatch-core/src/explain.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{json_response, ApiResult, S};

pub(crate) async fn explain(State(st): S, Path((job, task)): Path<(String, String)>) -> ApiResult {
    let x = st.engine.read().explain_task(&job, &task)?;
    Ok(json_response(StatusCode::OK, &x))
}
