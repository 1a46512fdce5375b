//! `GET .../tasks/{task}/files/{path}?follow=true`, an openbatch extension: the file streamed
//! as it grows while the task runs (a chunked response without `Content-Length`).
//!
//! The server polls the node for the bytes after the last offset sent, every
//! [`POLL_INTERVAL`]. The stream ends once the task is completed (or its attempt has moved
//! off the node) and the bytes written until then are sent. `ocp-range: bytes=N-` starts at
//! offset `N`. A task that is already completed, or whose node no longer answers, is served
//! as a plain read (from the node, or the copy kept in storage).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::stream;
use openbatch_api::agent::FileError;
use openbatch_api::models::TaskState;
use openbatch_core::Urls;
use tokio::sync::mpsc;

use super::files::{join, parse_range, read, Root};
use super::{encode_component, ApiResult, Ctx};
use crate::agents::FileReqError;
use crate::server::AppState;

pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Whether the attempt that runs on `node` is over: the task completed, was deleted, or runs
/// (or waits) elsewhere now.
fn attempt_over(st: &AppState, urls: &Urls, job: &str, task: &str, node: &str) -> bool {
    let engine = st.engine.read();
    let Ok(t) = engine.task(job, task, urls) else {
        return true;
    };
    if t.state == TaskState::Completed || t.state == TaskState::Active {
        return true;
    }
    !matches!(engine.task_location(job, task), Ok(Some(loc)) if loc.node_id == node)
}

pub(crate) async fn follow(
    st: Arc<AppState>,
    ctx: &Ctx,
    job: String,
    task: String,
    root: Root,
    path: String,
) -> ApiResult {
    let start = parse_range(ctx)?.map_or(0, |(s, _)| s);
    let full = join(&root.dir, &path);
    let node = root.node.clone();
    // A finished attempt, or a node that cannot serve the file now: an ordinary read. A file
    // the running task has not created yet is waited for.
    let urls = ctx.urls();
    let node_answers = match st.agents.read_file(&node, &full, None, true).await {
        Ok(_) | Err(FileReqError::File(FileError::NotFound)) => true,
        Err(_) => false,
    };
    if attempt_over(&st, &urls, &job, &task, &node) || !node_answers {
        return read(&st, ctx, root, &path, false, Some((&job, &task))).await;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut offset = start;
        loop {
            // Looked at before the read, so the bytes of a task that just completed are sent.
            let over = attempt_over(&st, &urls, &job, &task, &node);
            match st
                .agents
                .read_file(&node, &full, Some((offset, None)), false)
                .await
            {
                Ok((entry, Some(mut data))) if !entry.is_directory => {
                    while let Some(chunk) = data.recv().await {
                        offset += chunk.len() as u64;
                        if !chunk.is_empty() && tx.send(chunk).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
                Ok(_) => return,
                Err(FileReqError::File(FileError::NotFound)) => {}
                // The node left; what it wrote last is in the kept copy (a plain read).
                Err(_) => return,
            }
            if over {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
    let mut resp = Response::new(Body::from_stream(stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    })));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        "ocp-batch-file-isdirectory",
        HeaderValue::from_static("false"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", root.url, encode_component(&path))) {
        h.insert("ocp-batch-file-url", v);
    }
    Ok(resp)
}
