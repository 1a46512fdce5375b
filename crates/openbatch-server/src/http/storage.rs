//! The server's blob endpoint, `/openbatch/storage/{container}[/{blob}]`: the subset of the
//! Azure Blob REST protocol that nodes (and the Azure Storage SDKs, given a container URL)
//! need, over the account's auto-storage. Requests carry no Shared Key: they are authorized by
//! the signed, expiring query string of [`openbatch_storage::UrlSigner`].
//!
//! Operations: List Blobs (`GET ?restype=container&comp=list`, with `prefix`, `marker`,
//! `maxresults` and `NextMarker` paging), Get Blob and Get Blob Properties (`GET`/`HEAD`,
//! with `Range` or `x-ms-range`), Put Blob, Put Block and Put Block List.
//! Errors use Azure Storage's XML error body and codes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::TryStreamExt;
use openbatch_storage::blobxml;
use openbatch_storage::{Permission, SasError, StorageError};

use crate::server::AppState;

/// `maxresults` default and maximum of List Blobs, as Azure.
const MAX_LIST: usize = 5000;
/// The largest Put Block List body accepted (50,000 ids of 64 bytes fit).
const MAX_BLOCK_LIST_BODY: usize = 8 * 1024 * 1024;
const MS_VERSION: &str = "2021-08-06";

struct BlobError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl BlobError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        BlobError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<SasError> for BlobError {
    fn from(e: SasError) -> Self {
        BlobError::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
    }
}

impl From<StorageError> for BlobError {
    fn from(e: StorageError) -> Self {
        let (status, code) = match &e {
            StorageError::NotFound(_) => (StatusCode::NOT_FOUND, "BlobNotFound"),
            StorageError::InvalidName(_) => (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            StorageError::InvalidInput(_) => (StatusCode::BAD_REQUEST, "InvalidInput"),
            StorageError::Incomplete(_) => (StatusCode::BAD_REQUEST, "IncompleteBody"),
            StorageError::Config(_) | StorageError::Backend(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "blob endpoint: storage backend failed");
        }
        BlobError::new(status, code, e.to_string())
    }
}

impl IntoResponse for BlobError {
    fn into_response(self) -> Response {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><Error><Code>{}</Code><Message>{}</Message></Error>"#,
            self.code,
            quick_escape(&format!(
                "{}\nRequestId:{}\nTime:{}",
                self.message,
                uuid::Uuid::new_v4(),
                openbatch_api::time::iso8601(Utc::now())
            ))
        );
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        if let Ok(v) = HeaderValue::from_str(self.code) {
            h.insert("x-ms-error-code", v);
        }
        h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
        r
    }
}

fn quick_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

type BlobResult = Result<Response, BlobError>;

/// The decoded query parameters.
fn params(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (super::decode_component(k), super::decode_component(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn authorize(
    st: &AppState,
    container: &str,
    params: &[(String, String)],
    need: &[Permission],
) -> Result<(), BlobError> {
    let pairs = || params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let mut last = None;
    for p in need {
        match st.storage.signer.verify(container, pairs(), Utc::now(), *p) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or(SasError::Missing);
    tracing::info!(container, reason = %e, "blob endpoint: request refused");
    Err(e.into())
}

pub(crate) async fn container_op(
    State(st): State<Arc<AppState>>,
    Path(container): Path<String>,
    req: Request,
) -> Response {
    container_inner(&st, &container, req)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn container_inner(st: &AppState, container: &str, req: Request) -> BlobResult {
    let params = params(&req);
    if req.method() != Method::GET
        || param(&params, "restype") != Some("container")
        || param(&params, "comp") != Some("list")
    {
        return Err(BlobError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedHttpVerb",
            "This endpoint supports List Blobs (GET ?restype=container&comp=list) on a container.",
        ));
    }
    authorize(st, container, &params, &[Permission::List])?;
    let c = st.storage.storage.container(container)?;
    let prefix = param(&params, "prefix").unwrap_or("");
    let marker = param(&params, "marker").unwrap_or("");
    let max = match param(&params, "maxresults") {
        None => MAX_LIST,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_LIST),
            _ => {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeQueryParameterValue",
                    format!("maxresults '{v}' must be a positive integer"),
                ))
            }
        },
    };
    let all = c.list(prefix).await?;
    let mut page: Vec<_> = all
        .into_iter()
        .filter(|b| marker.is_empty() || b.name.as_str() > marker)
        .take(max + 1)
        .collect();
    let next = (page.len() > max).then(|| {
        page.truncate(max);
        page.last().map(|b| b.name.clone()).unwrap_or_default()
    });
    let service = format!("{}/", base_url(req.headers()));
    let xml = blobxml::list_blobs(
        &service,
        container,
        prefix,
        marker,
        max,
        &page,
        next.as_deref(),
    );
    let mut r = Response::new(Body::from(xml));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r.headers_mut()
        .insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    Ok(r)
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/openbatch/storage")
}

pub(crate) async fn blob_op(
    State(st): State<Arc<AppState>>,
    Path((container, blob)): Path<(String, String)>,
    req: Request,
) -> Response {
    blob_inner(&st, &container, &blob, req)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn blob_inner(st: &AppState, container: &str, blob: &str, req: Request) -> BlobResult {
    let params = params(&req);
    match *req.method() {
        Method::GET | Method::HEAD => {
            authorize(st, container, &params, &[Permission::Read])?;
            get_blob(st, container, blob, req).await
        }
        Method::PUT => {
            authorize(
                st,
                container,
                &params,
                &[Permission::Write, Permission::Create],
            )?;
            match param(&params, "comp") {
                Some("block") => {
                    let id = param(&params, "blockid").ok_or_else(|| {
                        BlobError::new(
                            StatusCode::BAD_REQUEST,
                            "MissingRequiredQueryParameter",
                            "Put Block needs the blockid query parameter",
                        )
                    })?;
                    st.storage.storage.container(container)?;
                    openbatch_storage::check_blob_name(blob)?;
                    st.storage
                        .stager
                        .stage(container, blob, id, req.into_body().into_data_stream())
                        .await?;
                    Ok(created(None))
                }
                Some("blocklist") => {
                    let c = st.storage.storage.container(container)?;
                    let body = axum::body::to_bytes(req.into_body(), MAX_BLOCK_LIST_BODY)
                        .await
                        .map_err(|e| {
                            BlobError::new(
                                StatusCode::BAD_REQUEST,
                                "InvalidInput",
                                format!("reading the block list: {e}"),
                            )
                        })?;
                    let list = blobxml::parse_block_list(&String::from_utf8_lossy(&body))?;
                    st.storage.stager.commit(&c, blob, &list).await?;
                    Ok(created(c.head(blob).await.ok()))
                }
                Some(other) => Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "UnsupportedQueryParameter",
                    format!("comp={other} is not supported by this endpoint"),
                )),
                None => {
                    let blob_type = req
                        .headers()
                        .get("x-ms-blob-type")
                        .and_then(|v| v.to_str().ok());
                    if blob_type != Some("BlockBlob") {
                        return Err(BlobError::new(
                            StatusCode::BAD_REQUEST,
                            "MissingRequiredHeader",
                            "Put Blob needs the header x-ms-blob-type: BlockBlob (only block blobs are supported)",
                        ));
                    }
                    let c = st.storage.storage.container(container)?;
                    c.put_stream(blob, req.into_body().into_data_stream())
                        .await?;
                    Ok(created(c.head(blob).await.ok()))
                }
            }
        }
        _ => Err(BlobError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UnsupportedHttpVerb",
            format!(
                "{} is not supported on a blob by this endpoint",
                req.method()
            ),
        )),
    }
}

fn created(info: Option<openbatch_storage::BlobInfo>) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("false"),
    );
    if let Some(info) = info {
        if let Ok(v) = HeaderValue::from_str(&blobxml::etag(&info)) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&blobxml::rfc1123(info.last_modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    r
}

/// `bytes=a-b` or `bytes=a-` (inclusive end, as HTTP).
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    match end {
        Some(e) if e < start => None,
        _ => Some((start, end)),
    }
}

async fn get_blob(st: &AppState, container: &str, blob: &str, req: Request) -> BlobResult {
    let c = st.storage.storage.container(container)?;
    let head_only = req.method() == Method::HEAD;
    let range_header = req
        .headers()
        .get("x-ms-range")
        .or_else(|| req.headers().get(header::RANGE))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let info = c.head(blob).await?;
    let range = match &range_header {
        None => None,
        Some(v) => {
            let Some((start, end)) = parse_range(v) else {
                return Err(BlobError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidRange",
                    format!("the range '{v}' is not bytes=START-END"),
                ));
            };
            if start >= info.size {
                return Err(BlobError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                ));
            }
            let end = end.map_or(info.size, |e| (e + 1).min(info.size));
            Some(start..end)
        }
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::LAST_MODIFIED, blobxml::rfc1123(info.last_modified))
        .header(header::ETAG, blobxml::etag(&info))
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", MS_VERSION)
        .header("x-ms-creation-time", blobxml::rfc1123(info.last_modified));
    let len = range.as_ref().map_or(info.size, |r| r.end - r.start);
    builder = builder.header(header::CONTENT_LENGTH, len);
    if let Some(r) = &range {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", r.start, r.end - 1, info.size),
        );
    }
    if head_only {
        return Ok(builder.body(Body::empty()).unwrap_or_default());
    }
    let (_, _, stream) = c.get(blob, range).await?;
    let body = Body::from_stream(stream.map_err(|e| std::io::Error::other(e.to_string())));
    Ok(builder.body(body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some((0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=9-5"), None);
        assert_eq!(parse_range("items=1-2"), None);
    }
}
