//! Output files: after the process exits and before the run is reported, upload what each
//! `outputFiles` entry names to its container URL (Azure Blob's Put Blob, or Put Block and
//! Put Block List for large files), when its upload condition holds.
//!
//! Like Azure, the node writes what it uploaded to `fileuploadout.txt` and what failed to
//! `fileuploaderr.txt` in the task directory. URLs are shown without their query string (SAS
//! tokens are secrets) there, in logs and in the failure.

use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{self, StreamExt};
use reqwest::{StatusCode, Url};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::download::{client, error_chain, redact_url, with_retries, AttemptError};
use super::failure::{FailureCategory, FailureInfo};
use super::{OutputFileSpec, RunSpec, UploadCondition};

mod pattern;

/// Files up to this size go up in one Put Blob; larger ones in blocks of this size.
const BLOCK_SIZE: u64 = 8 * 1024 * 1024;
/// Uploads of one task that run at once.
const MAX_PARALLEL_UPLOADS: usize = 4;
/// One request (one block at most) that takes longer than this has stalled.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const MS_VERSION: &str = "2021-08-06";

/// Azure's codes for output file failures (`TaskFailureInformationCodes`).
mod codes {
    /// The destination container does not exist (404).
    pub(super) const CONTAINER_NOT_FOUND: &str = "FileUploadContainerNotFound";
    /// Any other upload failure: refused SAS, storage down, a file that cannot be read.
    pub(super) const MISC_ERROR: &str = "FileUploadMiscError";
}

/// Whether `condition` holds for a run that did (`succeeded`) or did not succeed.
pub(super) fn applies(condition: UploadCondition, succeeded: bool) -> bool {
    match condition {
        UploadCondition::TaskSuccess => succeeded,
        UploadCondition::TaskFailure => !succeeded,
        UploadCondition::TaskCompletion => true,
    }
}

/// One file going to one blob.
struct Upload {
    file: std::path::PathBuf,
    /// The file as the user knows it (relative to the task directory when it is inside it).
    shown: String,
    container: Url,
    blob: String,
    headers: Vec<(String, String)>,
    /// Bytes at the start of the file that are not uploaded (a log's tail is kept).
    skip: u64,
}

impl Upload {
    fn redacted_target(&self) -> String {
        format!(
            "{}/{}",
            redact_url(self.container.as_str())
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_end_matches('/'),
            self.blob
        )
    }
}

/// Uploads the output files whose condition holds. Stops at the first failure and returns it
/// (usererror: the SAS, the container or the pattern is the user's to fix).
pub(super) async fn upload_outputs(spec: &RunSpec, succeeded: bool) -> Result<(), FailureInfo> {
    let mut uploads = Vec::new();
    for out in spec
        .output_files
        .iter()
        .filter(|o| applies(o.condition, succeeded))
    {
        uploads.extend(plan(spec, out)?);
    }
    let log = UploadLog::open(&spec.task_dir).await;
    if uploads.is_empty() {
        return Ok(());
    }
    let client = client()?;
    let mut results = stream::iter(uploads.into_iter().map(|u| async move {
        let r = upload_one(client, &u).await;
        (u, r)
    }))
    .buffer_unordered(MAX_PARALLEL_UPLOADS);
    while let Some((u, result)) = results.next().await {
        match result {
            Ok(bytes) => {
                log.out(&format!(
                    "uploaded {} ({bytes} bytes) to {}",
                    u.shown,
                    u.redacted_target()
                ))
                .await
            }
            Err(err) => {
                let failure = failure(&u, err);
                log.err(&failure.message).await;
                tracing::info!(file = %u.shown, target = %u.redacted_target(), "output file upload failed");
                return Err(failure);
            }
        }
    }
    Ok(())
}

fn plan(spec: &RunSpec, out: &OutputFileSpec) -> Result<Vec<Upload>, FailureInfo> {
    let redacted = redact_url(&out.container_url);
    let bad = |why: String| {
        FailureInfo::user(codes::MISC_ERROR, why).with_detail("ContainerUrl", redacted.clone())
    };
    let container = Url::parse(&out.container_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
        .ok_or_else(|| {
            bad(format!(
                "The output file containerUrl {redacted} is not an http(s) container URL"
            ))
        })?;
    let found = pattern::matches(&spec.working_dir, &out.file_pattern, out.path.as_deref())
        .map_err(|why| bad(why).with_detail("FilePattern", out.file_pattern.clone()))?;
    Ok(found
        .into_iter()
        .map(|m| Upload {
            shown: m
                .file
                .strip_prefix(&spec.task_dir)
                .unwrap_or(&m.file)
                .display()
                .to_string(),
            file: m.file,
            container: container.clone(),
            blob: m.blob,
            headers: out.upload_headers.clone(),
            skip: 0,
        })
        .collect())
}

fn failure(u: &Upload, err: AttemptError) -> FailureInfo {
    let code = match err.status {
        Some(StatusCode::NOT_FOUND) => codes::CONTAINER_NOT_FOUND,
        _ => codes::MISC_ERROR,
    };
    let hint = match err.status {
        Some(StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED) => {
            "; check that the container URL's SAS token grants write access and has not expired"
        }
        Some(StatusCode::NOT_FOUND) => "; check that the container exists",
        _ => "",
    };
    let f = FailureInfo::new(
        FailureCategory::UserError,
        code,
        format!(
            "Failed to upload output file '{}' to {}: {}{hint}",
            u.shown,
            u.redacted_target(),
            scrub(&err.detail, &u.container)
        ),
    )
    .with_detail("FilePath", u.shown.clone())
    .with_detail("BlobUrl", u.redacted_target());
    match err.status {
        Some(s) => f.with_detail("HttpStatusCode", s.as_u16().to_string()),
        None => f,
    }
}

/// Errors from the HTTP stack have had their URL removed; should any still echo the query
/// string, it goes no further.
fn scrub(text: &str, url: &Url) -> String {
    match url.query() {
        Some(q) if !q.is_empty() => text.replace(q, "<redacted>"),
        _ => text.to_owned(),
    }
}

fn io_error(what: String, e: &std::io::Error) -> AttemptError {
    AttemptError {
        code: codes::MISC_ERROR,
        category: FailureCategory::UserError,
        transient: false,
        detail: format!("{what}: {e}"),
        status: None,
    }
}

/// Put Blob for a small file, Put Block + Put Block List for a large one. Returns the size.
async fn upload_one(client: &reqwest::Client, u: &Upload) -> Result<u64, AttemptError> {
    let size = tokio::fs::metadata(&u.file)
        .await
        .map_err(|e| io_error(format!("could not read '{}'", u.shown), &e))?
        .len()
        .saturating_sub(u.skip);
    let target = u.redacted_target();
    let blob_url = super::download::blob_url_of(&u.container, &u.blob);
    if size <= BLOCK_SIZE {
        let data = read_block(&u.file, u.skip, size)
            .await
            .map_err(|e| io_error(format!("could not read '{}'", u.shown), &e))?;
        with_retries("uploading an output file", &target, || {
            let mut req = client
                .put(blob_url.clone())
                .timeout(REQUEST_TIMEOUT)
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-version", MS_VERSION);
            for (name, value) in &u.headers {
                req = req.header(name.as_str(), value.as_str());
            }
            send(req.body(data.clone()))
        })
        .await?;
        return Ok(size);
    }
    let blocks = size.div_ceil(BLOCK_SIZE);
    let mut ids = Vec::with_capacity(blocks as usize);
    for i in 0..blocks {
        // Block ids of one blob must all have the same length.
        let id = base64::engine::general_purpose::STANDARD.encode(format!("block-{i:010}"));
        let data = read_block(&u.file, u.skip + i * BLOCK_SIZE, BLOCK_SIZE)
            .await
            .map_err(|e| io_error(format!("could not read '{}'", u.shown), &e))?;
        let mut url = blob_url.clone();
        url.query_pairs_mut()
            .append_pair("comp", "block")
            .append_pair("blockid", &id);
        with_retries("uploading a block of an output file", &target, || {
            send(
                client
                    .put(url.clone())
                    .timeout(REQUEST_TIMEOUT)
                    .header("x-ms-version", MS_VERSION)
                    .body(data.clone()),
            )
        })
        .await?;
        ids.push(id);
    }
    let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
    for id in &ids {
        body.push_str(&format!("<Latest>{id}</Latest>"));
    }
    body.push_str("</BlockList>");
    let mut url = blob_url.clone();
    url.query_pairs_mut().append_pair("comp", "blocklist");
    with_retries("committing the blocks of an output file", &target, || {
        let mut req = client
            .put(url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header("x-ms-version", MS_VERSION);
        // On Put Block List the blob's properties travel as x-ms-blob-* headers (Content-Type
        // there is the block list's own).
        for (name, value) in &u.headers {
            req = req.header(block_list_header(name), value.as_str());
        }
        send(req.body(body.clone()))
    })
    .await?;
    Ok(size)
}

fn block_list_header(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "content-type" => "x-ms-blob-content-type".into(),
        "content-encoding" => "x-ms-blob-content-encoding".into(),
        "content-language" => "x-ms-blob-content-language".into(),
        "content-disposition" => "x-ms-blob-content-disposition".into(),
        "cache-control" => "x-ms-blob-cache-control".into(),
        "content-md5" => "x-ms-blob-content-md5".into(),
        other => other.to_string(),
    }
}

async fn read_block(file: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut f = tokio::fs::File::open(file).await?;
    f.seek(SeekFrom::Start(offset)).await?;
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf).await?;
    Ok(buf)
}

async fn send(req: reqwest::RequestBuilder) -> Result<(), AttemptError> {
    let resp = req.send().await.map_err(AttemptError::http)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let mut err = AttemptError::status(status);
    // Azure says which of its codes it was (AuthorizationPermissionMismatch, ...): keep it.
    if let Some(code) = resp
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
    {
        err.detail = format!("the storage service answered HTTP {status} ({code})");
    } else {
        err.detail = format!("the storage service answered HTTP {status}");
    }
    Err(err)
}

/// The most of each log that is kept in storage: its last 64 MiB (a log that grew past this
/// loses its start there; the node's copy stays whole).
pub const MAX_KEPT_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// Uploads `stdout.txt` and `stderr.txt` of `task_dir` (those that exist) under the prefix of
/// `logs`. Failures are logged as warnings and otherwise ignored: the file is then only on the
/// node. Returns the logs that are empty: they are not uploaded (most tasks never write to
/// `stderr.txt`, and an object per empty file costs a request and an inode or a billed PUT);
/// the server knows them from the run's result.
pub(super) async fn upload_logs(task_dir: &Path, logs: &super::LogUploadSpec) -> Vec<String> {
    let mut empty = Vec::new();
    let Some(container) = Url::parse(&logs.container_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
    else {
        tracing::warn!(
            url = %redact_url(&logs.container_url),
            "the log container URL is not usable; the task's logs stay on the node only"
        );
        return empty;
    };
    let client = match client() {
        Ok(c) => c,
        Err(f) => {
            tracing::warn!(error = %f.message, "no HTTP client for the log upload");
            return empty;
        }
    };
    for name in ["stdout.txt", "stderr.txt"] {
        let file = task_dir.join(name);
        // Inline: one stat on local disk costs less than a trip to the blocking pool, and this
        // runs once per log of every run.
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.len() == 0 {
            empty.push(name.to_owned());
            continue;
        }
        let u = Upload {
            file,
            shown: name.to_owned(),
            container: container.clone(),
            blob: format!("{}{name}", logs.prefix),
            headers: vec![("Content-Type".into(), "text/plain".into())],
            skip: meta.len().saturating_sub(MAX_KEPT_LOG_BYTES),
        };
        match upload_one(client, &u).await {
            Ok(bytes) => tracing::debug!(file = name, bytes, "log kept in storage"),
            Err(err) => tracing::warn!(
                file = name,
                target = %u.redacted_target(),
                error = %scrub(&err.detail, &u.container),
                "could not keep the task's log in storage; it is only on the node"
            ),
        }
    }
    empty
}

/// `fileuploadout.txt` and `fileuploaderr.txt` in the task directory, appended to.
struct UploadLog {
    dir: std::path::PathBuf,
}

impl UploadLog {
    async fn open(task_dir: &Path) -> UploadLog {
        UploadLog {
            dir: task_dir.to_path_buf(),
        }
    }

    async fn write(&self, name: &str, line: &str) {
        let path = self.dir.join(name);
        let line = format!("{} {line}\n", chrono::Utc::now().to_rfc3339());
        let result = async {
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await?;
            f.write_all(line.as_bytes()).await?;
            f.flush().await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %error_chain(&e), "could not write {name}");
        }
    }

    async fn out(&self, line: &str) {
        self.write("fileuploadout.txt", line).await
    }

    async fn err(&self, line: &str) {
        self.write("fileuploaderr.txt", line).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_conditions() {
        use UploadCondition::*;
        assert!(applies(TaskSuccess, true) && !applies(TaskSuccess, false));
        assert!(!applies(TaskFailure, true) && applies(TaskFailure, false));
        assert!(applies(TaskCompletion, true) && applies(TaskCompletion, false));
    }

    #[test]
    fn blob_properties_move_to_x_ms_blob_headers_on_block_lists() {
        assert_eq!(block_list_header("Content-Type"), "x-ms-blob-content-type");
        assert_eq!(block_list_header("x-ms-meta-run"), "x-ms-meta-run");
    }
}
