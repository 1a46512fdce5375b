//! Task and node files, read from the node over its agent connection and streamed out. A task's
//! `stdout.txt` and `stderr.txt` (and the task's file list) fall back to the copies kept in
//! storage (`crate::logs`) when the node is gone or no longer has them.
//!
//! Task file paths are relative to the task directory (`stdout.txt`, `wd/out.txt`), node file
//! paths to the node root (`startup/stdout.txt`). The SDK sends `wd%2Fout.txt`; axum decodes
//! the captured path, and the agent refuses anything that would leave its root.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::{stream, TryStreamExt};
use openbatch_api::agent::{FileEntry, FileError};
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::{FileProperties, NodeFile};

use super::odata::{filter, keep, FILE_PROPS};
use super::{empty, encode_component, ApiResult, Ctx, S};
use crate::agents::FileReqError;
use crate::server::AppState;

/// Where a file request goes: node, the directory it is rooted at, and its URL prefix.
pub(super) struct Root {
    pub(super) node: String,
    pub(super) dir: String,
    pub(super) url: String,
    /// For a task's files: its latest attempt, to find the logs kept in storage.
    pub(super) attempt: crate::logs::Attempt,
}

fn task_root(st: &AppState, ctx: &Ctx, job: &str, task: &str) -> ApiResult<Root> {
    let loc = st.engine.read().task_location(job, task)?;
    let Some(loc) = loc else {
        return Err(ApiError::new(
            409,
            codes::FILE_NOT_FOUND,
            "The task has not been scheduled on a node yet, so it has no files.",
        )
        .into());
    };
    Ok(Root {
        node: loc.node_id,
        dir: loc.task_dir,
        url: format!("{}/jobs/{job}/tasks/{task}/files", ctx.base),
        attempt: crate::logs::Attempt {
            run: loc.run,
            empty_logs: loc.empty_logs,
            ended: loc.ended,
        },
    })
}

fn node_root(st: &AppState, ctx: &Ctx, pool: &str, node: &str) -> ApiResult<Root> {
    st.engine.read().node_in_pool(pool, node)?;
    Ok(Root {
        node: node.to_string(),
        dir: String::new(),
        url: format!("{}/pools/{pool}/nodes/{node}/files", ctx.base),
        attempt: crate::logs::Attempt::default(),
    })
}

pub(super) fn join(dir: &str, path: &str) -> String {
    let path = path.trim_start_matches('/').replace('\\', "/");
    if dir.is_empty() {
        path
    } else if path.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{path}")
    }
}

fn map_err(e: FileReqError, node: &str) -> ApiError {
    match e {
        FileReqError::NotConnected => ApiError::new(
            409,
            codes::NODE_NOT_READY,
            format!("The node '{node}' that holds this file is not connected (it may have left the pool); its files cannot be read now."),
        ),
        FileReqError::TimedOut => ApiError::new(
            500,
            codes::OPERATION_TIMED_OUT,
            format!("The node '{node}' did not answer the file request in time."),
        ),
        FileReqError::File(FileError::NotFound) => {
            ApiError::new(404, codes::FILE_NOT_FOUND, "The specified file does not exist.")
        }
        FileReqError::File(FileError::Invalid(why)) => {
            ApiError::new(400, codes::INVALID_URI, format!("The file path is not acceptable: {why}"))
        }
        FileReqError::File(FileError::Io(why)) => ApiError::new(
            500,
            codes::INTERNAL_ERROR,
            format!("The node could not read the file: {why}"),
        ),
    }
}

fn props(e: &FileEntry) -> FileProperties {
    FileProperties {
        creation_time: e.created,
        last_modified: e.modified,
        content_length: e.size,
        content_type: Some("application/octet-stream".into()),
        file_mode: Some(e.mode.clone()),
    }
}

/// Whether a failed node file request may be answered from the logs kept in storage: the node
/// is gone (or silent), or no longer has the file (preempted, reimaged, another attempt's
/// cleanup).
fn falls_back(e: &FileReqError) -> bool {
    matches!(
        e,
        FileReqError::NotConnected
            | FileReqError::TimedOut
            | FileReqError::File(FileError::NotFound)
    )
}

/// A task's job and task id, for the logs kept in storage (`crate::logs`).
type Kept<'a> = Option<(&'a str, &'a str)>;

async fn list(st: &AppState, ctx: &Ctx, root: Root, kept: Kept<'_>) -> ApiResult {
    let f = filter(ctx, FILE_PROPS)?;
    let recursive = ctx
        .q("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let entries = match st.agents.list_files(&root.node, &root.dir, recursive).await {
        Ok(entries) => entries,
        Err(e) => {
            let logs = match kept {
                Some((job, task)) if falls_back(&e) => {
                    st.storage.kept_logs(job, task, &root.attempt).await
                }
                _ => Vec::new(),
            };
            if logs.is_empty() {
                return Err(map_err(e, &root.node).into());
            }
            logs.iter().map(|(name, log)| log.entry(name)).collect()
        }
    };
    let keep = keep(&f);
    let mut items: Vec<NodeFile> = entries
        .iter()
        .map(|e| NodeFile {
            name: e.name.clone(),
            url: format!("{}/{}", root.url, encode_component(&e.name)),
            is_directory: e.is_directory,
            properties: (!e.is_directory).then(|| props(e)),
        })
        .filter(|nf| keep(nf))
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    let limit = ctx.max_results()?;
    let start = match ctx.q("$skiptoken") {
        Some(after) => items.partition_point(|i| i.name.as_str() <= after),
        None => 0,
    };
    let page: Vec<NodeFile> = items.into_iter().skip(start).take(limit + 1).collect();
    let (page, next) = if page.len() > limit {
        let next = page[limit - 1].name.clone();
        (page.into_iter().take(limit).collect(), Some(next))
    } else {
        (page, None)
    };
    Ok(ctx.list_body(page, next, "files"))
}

/// `ocp-range: bytes=a-b` (inclusive), or `bytes=a-`.
pub(super) fn parse_range(ctx: &Ctx) -> ApiResult<Option<(u64, Option<u64>)>> {
    let Some(v) = ctx.headers.get("ocp-range").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = || -> super::AppError {
        ApiError::new(
            400,
            codes::INVALID_HEADER_VALUE,
            format!("ocp-range '{v}' is not of the form bytes=START-END"),
        )
        .with_value("HeaderName", "ocp-range")
        .into()
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse::<u64>().map_err(|_| bad())?)
    };
    if end.is_some_and(|e| e < start) {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// The length of `range` of a file (all of it without one).
fn range_len(entry: &FileEntry, range: Option<(u64, Option<u64>)>) -> u64 {
    if entry.is_directory {
        return 0;
    }
    match range {
        Some((start, end)) => {
            let last = end.unwrap_or(u64::MAX).min(entry.size.saturating_sub(1));
            if start >= entry.size {
                0
            } else {
                last - start + 1
            }
        }
        None => entry.size,
    }
}

pub(super) async fn read(
    st: &AppState,
    ctx: &Ctx,
    root: Root,
    path: &str,
    head: bool,
    kept: Kept<'_>,
) -> ApiResult {
    let range = parse_range(ctx)?;
    let full = join(&root.dir, path);
    let (entry, data) = match st.agents.read_file(&root.node, &full, range, head).await {
        Ok(found) => found,
        Err(e) => {
            let log = match kept {
                Some((job, task)) if falls_back(&e) => {
                    st.storage.kept_log(job, task, &root.attempt, path).await
                }
                _ => None,
            };
            let Some(log) = log else {
                return Err(map_err(e, &root.node).into());
            };
            return read_kept(&root, path, head, range, log).await;
        }
    };
    let len = range_len(&entry, range);
    let resp = match data {
        Some(rx) if !head => Response::new(Body::from_stream(stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
        }))),
        _ => empty(StatusCode::OK),
    };
    Ok(with_file_headers(resp, &entry, len, &root, path))
}

/// A task log served from the copy kept in storage, as the node would have served it.
async fn read_kept(
    root: &Root,
    path: &str,
    head: bool,
    range: Option<(u64, Option<u64>)>,
    log: crate::logs::KeptLog,
) -> ApiResult {
    let entry = log.entry(path);
    let len = range_len(&entry, range);
    let resp = if head || len == 0 {
        empty(StatusCode::OK)
    } else {
        let start = range.map_or(0, |(s, _)| s);
        let (_, _, data) = log
            .container
            .get(&log.blob, Some(start..start + len))
            .await
            .map_err(|e| {
                ApiError::new(
                    500,
                    codes::INTERNAL_ERROR,
                    format!("The kept copy of the file could not be read: {e}"),
                )
            })?;
        Response::new(Body::from_stream(data.map_err(std::io::Error::other)))
    };
    Ok(with_file_headers(resp, &entry, len, root, path))
}

fn with_file_headers(
    mut resp: Response,
    entry: &FileEntry,
    len: u64,
    root: &Root,
    path: &str,
) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let rfc = |t| HeaderValue::from_str(&openbatch_api::time::rfc1123(t)).ok();
    if let Some(v) = rfc(entry.modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(v) = entry.created.and_then(rfc) {
        h.insert("ocp-creation-time", v);
    }
    h.insert(
        "ocp-batch-file-isdirectory",
        HeaderValue::from_static(if entry.is_directory { "true" } else { "false" }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", root.url, encode_component(path))) {
        h.insert("ocp-batch-file-url", v);
    }
    if let Ok(v) = HeaderValue::from_str(&entry.mode) {
        h.insert("ocp-batch-file-mode", v);
    }
    resp
}

async fn delete(st: &AppState, ctx: &Ctx, root: Root, path: &str) -> ApiResult {
    let recursive = ctx
        .q("recursive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    st.agents
        .delete_file(&root.node, &join(&root.dir, path), recursive)
        .await
        .map_err(|e| map_err(e, &root.node))?;
    Ok(empty(StatusCode::OK))
}

pub(crate) async fn list_task_files(
    State(st): S,
    ctx: Ctx,
    Path((job, task)): Path<(String, String)>,
) -> ApiResult {
    let root = task_root(&st, &ctx, &job, &task)?;
    list(&st, &ctx, root, Some((&job, &task))).await
}

pub(crate) async fn get_task_file(
    State(st): S,
    ctx: Ctx,
    Path((job, task, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = task_root(&st, &ctx, &job, &task)?;
    if ctx
        .q("follow")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return super::follow::follow(st.clone(), &ctx, job, task, root, path).await;
    }
    read(&st, &ctx, root, &path, false, Some((&job, &task))).await
}

pub(crate) async fn head_task_file(
    State(st): S,
    ctx: Ctx,
    Path((job, task, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = task_root(&st, &ctx, &job, &task)?;
    read(&st, &ctx, root, &path, true, Some((&job, &task))).await
}

pub(crate) async fn delete_task_file(
    State(st): S,
    ctx: Ctx,
    Path((job, task, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = task_root(&st, &ctx, &job, &task)?;
    delete(&st, &ctx, root, &path).await
}

pub(crate) async fn list_node_files(
    State(st): S,
    ctx: Ctx,
    Path((pool, node)): Path<(String, String)>,
) -> ApiResult {
    let root = node_root(&st, &ctx, &pool, &node)?;
    list(&st, &ctx, root, None).await
}

pub(crate) async fn get_node_file(
    State(st): S,
    ctx: Ctx,
    Path((pool, node, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = node_root(&st, &ctx, &pool, &node)?;
    read(&st, &ctx, root, &path, false, None).await
}

pub(crate) async fn head_node_file(
    State(st): S,
    ctx: Ctx,
    Path((pool, node, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = node_root(&st, &ctx, &pool, &node)?;
    read(&st, &ctx, root, &path, true, None).await
}

pub(crate) async fn delete_node_file(
    State(st): S,
    ctx: Ctx,
    Path((pool, node, path)): Path<(String, String, String)>,
) -> ApiResult {
    let root = node_root(&st, &ctx, &pool, &node)?;
    delete(&st, &ctx, root, &path).await
}
