//! Staging resource files: downloading each `httpUrl`, and every blob of each
//! `storageContainerUrl` (listed first, see `container`), into the task's working directory
//! before its process starts.
//!
//! URLs usually carry a SAS token in their query string, which is a secret: every message, log
//! line and failure detail uses [`redact_url`], and reqwest errors are stripped of their URL.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncWriteExt;

use super::failure::{codes, FailureCategory, FailureInfo};
use super::{ResourceFileSpec, ResourceSource};

mod container;
pub(in crate::runner) use container::blob_url as blob_url_of;
mod validate;

pub(in crate::runner) use validate::redact_url;
use validate::{contained_relative_path, parse_file_mode, url_file_name};

/// Downloads of one task that run at once: enough to hide per-request latency for tasks with many
/// small inputs, few enough not to open hundreds of connections to one storage account.
const MAX_PARALLEL_DOWNLOADS: usize = 8;

/// Tries per file. Retries cover connection errors, timeouts, 408, 429 and 5xx: the blips storage
/// services produce under load. A 404 or 403 will not fix itself and fails at once.
const MAX_ATTEMPTS: u32 = 3;

/// Wait before the first retry; doubled for each further one (0.5 s, 1 s).
const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);

/// A server that does not accept a connection in this long is down, not slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A download that receives no bytes for this long is stalled. Deliberately not a whole-request
/// timeout: multi-gigabyte inputs legitimately take many minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Azure: "If this property is not specified for a Linux Compute Node, then a default value of
/// 0770 is applied to the file" (ResourceFile.fileMode).
const DEFAULT_FILE_MODE: u32 = 0o770;

/// Downloads every resource file into `working_dir`. On failure nothing half-written is left under
/// a requested name (files are written under a hidden `.NAME.partial-download` name and renamed
/// when complete; partial files are removed), and the failure names the file and the redacted URL.
///
/// Dropping the returned future cancels the downloads; partial files may then remain, under their
/// hidden names.
pub(super) async fn stage(
    working_dir: &Path,
    files: &[ResourceFileSpec],
) -> Result<(), FailureInfo> {
    if files.is_empty() {
        return Ok(());
    }
    let client = client()?;
    let files = container::expand(client, files).await?;
    let downloads = plan(working_dir, &files)?;
    let partials: Vec<PathBuf> = downloads
        .iter()
        .map(|download| download.partial.clone())
        .collect();
    let mut failure = None;
    {
        // Each future owns its `Download`: futures borrowing from a local would not be `Send`
        // across the higher-ranked lifetimes `buffer_unordered` needs.
        let mut results = stream::iter(
            downloads
                .into_iter()
                .map(|download| async move { fetch_with_retries(client, &download).await }),
        )
        .buffer_unordered(MAX_PARALLEL_DOWNLOADS);
        while let Some(result) = results.next().await {
            if let Err(err) = result {
                failure = Some(err);
                break;
            }
        }
        // Dropping `results` here cancels the downloads still in flight.
    }
    let Some(failure) = failure else {
        return Ok(());
    };
    for partial in &partials {
        // NotFound is the common case (that download never started or already finished).
        let _ = tokio::fs::remove_file(partial).await;
    }
    Err(failure)
}

/// The one HTTP client of the agent's downloads, so that connections to a storage account are
/// reused across files and tasks.
///
/// Its connection pool belongs to the runtime that opened each connection; the agent runs one
/// runtime for its whole life, so that is fine. (Tests, with one runtime each, use servers that
/// close their connections.)
pub(in crate::runner) fn client() -> Result<&'static reqwest::Client, FailureInfo> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("openbatch-node/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| {
            FailureInfo::server(
                codes::BLOB_DOWNLOAD_MISC_ERROR,
                format!(
                    "The node agent could not set up its HTTP client for resource files: {err}"
                ),
            )
        })
}

/// One resource file, validated and resolved.
#[derive(Debug)]
struct Download {
    /// The filePath the user will recognise (derived from the URL when it was empty).
    file_path: String,
    url: Url,
    redacted_url: String,
    dest: PathBuf,
    partial: PathBuf,
    mode: u32,
}

/// Validates every file before downloading any, so a bad filePath fails the run at once.
fn plan(working_dir: &Path, files: &[HttpFile]) -> Result<Vec<Download>, FailureInfo> {
    let mut seen = HashSet::new();
    let mut downloads = Vec::with_capacity(files.len());
    for spec in files {
        let download = plan_one(working_dir, spec)?;
        if !seen.insert(download.dest.clone()) {
            return Err(FailureInfo::user(
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!(
                    "Two resource files have the filePath '{}'; give each a distinct filePath",
                    download.file_path
                ),
            )
            .with_detail("FilePath", download.file_path));
        }
        downloads.push(download);
    }
    Ok(downloads)
}

/// One file to download: an `httpUrl` resource file, or one blob of a container.
#[derive(Debug, Clone)]
struct HttpFile {
    http_url: String,
    file_path: String,
    file_mode: Option<String>,
}

fn plan_one(working_dir: &Path, spec: &HttpFile) -> Result<Download, FailureInfo> {
    let redacted_url = redact_url(&spec.http_url);
    let invalid_url = |why: &str| {
        FailureInfo::user(
            codes::BLOB_DOWNLOAD_MISC_ERROR,
            format!("The resource file httpUrl {redacted_url} {why}"),
        )
        .with_detail("ResourceUrl", redacted_url.clone())
    };
    let url = Url::parse(&spec.http_url).map_err(|_| invalid_url("is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid_url("is not an http or https URL"));
    }

    let mut file_path = spec.file_path.clone();
    if file_path.is_empty() || file_path.ends_with('/') {
        let Some(name) = url_file_name(&url) else {
            return Err(FailureInfo::user(
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!(
                    "The resource file from {redacted_url} has no file name in its filePath and its \
                     URL path does not end in one; set filePath"
                ),
            )
            .with_detail("ResourceUrl", redacted_url));
        };
        file_path.push_str(&name);
    }
    let relative = contained_relative_path(&file_path).map_err(|why| {
        FailureInfo::user(
            codes::RESOURCE_FILE_CREATE_FAILED,
            format!(
                "The resource file filePath '{file_path}' {why}; filePath must be a relative path \
                 that stays inside the task working directory"
            ),
        )
        .with_detail("FilePath", file_path.clone())
    })?;
    let mode = match &spec.file_mode {
        None => DEFAULT_FILE_MODE,
        Some(mode) => parse_file_mode(mode).ok_or_else(|| {
            FailureInfo::user(
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!(
                    "The resource file '{file_path}' has fileMode '{mode}', which is not an octal \
                     permission mode; use a value such as 0644 or 0755"
                ),
            )
            .with_detail("FilePath", file_path.clone())
        })?,
    };

    let dest = working_dir.join(&relative);
    // `contained_relative_path` guarantees a last, normal component.
    let mut partial_name = OsString::from(".");
    partial_name.push(dest.file_name().unwrap_or_default());
    partial_name.push(".partial-download");
    let partial = dest.with_file_name(partial_name);
    Ok(Download {
        file_path,
        url,
        redacted_url,
        dest,
        partial,
        mode,
    })
}

async fn fetch_with_retries(
    client: &reqwest::Client,
    download: &Download,
) -> Result<(), FailureInfo> {
    if let Some(parent) = download.dest.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|err| {
            download.failure(AttemptError::io(
                &err,
                codes::RESOURCE_DIRECTORY_CREATE_FAILED,
                format!("could not create the directory '{}'", parent.display()),
            ))
        })?;
    }
    let mut attempt = 1;
    loop {
        match fetch(client, download).await {
            Ok(()) => break,
            Err(err) if err.transient && attempt < MAX_ATTEMPTS => {
                let delay = RETRY_BASE_DELAY * 2u32.pow(attempt - 1);
                tracing::warn!(
                    file_path = %download.file_path,
                    url = %download.redacted_url,
                    attempt,
                    error = %download.scrub(&err.detail),
                    "resource file download failed; retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(mut err) => {
                if attempt > 1 {
                    err.detail
                        .push_str(&format!(" (gave up after {attempt} attempts)"));
                }
                return Err(download.failure(err));
            }
        }
    }
    let finish = async {
        tokio::fs::set_permissions(&download.partial, Permissions::from_mode(download.mode))
            .await?;
        tokio::fs::rename(&download.partial, &download.dest).await
    };
    finish.await.map_err(|err| {
        download.failure(AttemptError::io(
            &err,
            codes::RESOURCE_FILE_CREATE_FAILED,
            format!("could not create '{}'", download.dest.display()),
        ))
    })?;
    tracing::debug!(file_path = %download.file_path, url = %download.redacted_url, "resource file downloaded");
    Ok(())
}

/// Retries `attempt` on transient failures, as downloads do; `what` names the operation in the
/// log. Returns the last error, with the number of attempts, when it gives up.
pub(in crate::runner) async fn with_retries<T, F, Fut>(
    what: &str,
    redacted_url: &str,
    mut attempt_fn: F,
) -> Result<T, AttemptError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AttemptError>>,
{
    let mut attempt = 1;
    loop {
        match attempt_fn().await {
            Ok(v) => return Ok(v),
            Err(err) if err.transient && attempt < MAX_ATTEMPTS => {
                let delay = RETRY_BASE_DELAY * 2u32.pow(attempt - 1);
                tracing::warn!(url = %redacted_url, attempt, error = %err.detail, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(mut err) => {
                if attempt > 1 {
                    err.detail
                        .push_str(&format!(" (gave up after {attempt} attempts)"));
                }
                return Err(err);
            }
        }
    }
}

/// One attempt: GET, stream the body into the partial file.
async fn fetch(client: &reqwest::Client, download: &Download) -> Result<(), AttemptError> {
    let mut response = client
        .get(download.url.clone())
        .send()
        .await
        .map_err(AttemptError::http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(AttemptError::status(status));
    }
    let mut file = tokio::fs::File::create(&download.partial)
        .await
        .map_err(|err| {
            AttemptError::io(
                &err,
                codes::RESOURCE_FILE_CREATE_FAILED,
                format!("could not create '{}'", download.partial.display()),
            )
        })?;
    let write_failed = |err: io::Error| {
        AttemptError::io(
            &err,
            codes::RESOURCE_FILE_WRITE_FAILED,
            format!("could not write '{}'", download.partial.display()),
        )
    };
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
            Err(_elapsed) => {
                return Err(AttemptError {
                    code: codes::BLOB_DOWNLOAD_TIMED_OUT,
                    category: FailureCategory::ServerError,
                    transient: true,
                    detail: format!("no data arrived for {} s", IDLE_TIMEOUT.as_secs()),
                    status: None,
                })
            }
            Ok(Err(err)) => return Err(AttemptError::http(err)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => file.write_all(&chunk).await.map_err(write_failed)?,
        }
    }
    // tokio's File hands writes to a background thread: flush to know they all succeeded.
    file.flush().await.map_err(write_failed)
}

/// Why one attempt failed, before it becomes a [`FailureInfo`].
#[derive(Debug)]
pub(in crate::runner) struct AttemptError {
    pub(in crate::runner) code: &'static str,
    pub(in crate::runner) category: FailureCategory,
    /// Worth another attempt.
    pub(in crate::runner) transient: bool,
    /// What went wrong, without the URL.
    pub(in crate::runner) detail: String,
    pub(in crate::runner) status: Option<StatusCode>,
}

impl AttemptError {
    pub(in crate::runner) fn http(err: reqwest::Error) -> Self {
        // reqwest puts the full URL, SAS token included, into its messages.
        let err = err.without_url();
        let code = if err.is_timeout() {
            codes::BLOB_DOWNLOAD_TIMED_OUT
        } else {
            codes::BLOB_DOWNLOAD_MISC_ERROR
        };
        AttemptError {
            code,
            category: FailureCategory::ServerError,
            // Connect errors, resets and truncated bodies are all worth another try; a builder
            // error cannot happen for a URL that parsed and is not worth one.
            transient: !err.is_builder(),
            detail: error_chain(&err),
            status: err.status(),
        }
    }

    pub(in crate::runner) fn status(status: StatusCode) -> Self {
        let (code, category, transient, hint) = match status {
            StatusCode::NOT_FOUND => (
                codes::BLOB_NOT_FOUND,
                FailureCategory::UserError,
                false,
                "; check the URL and that the blob exists",
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                codes::BLOB_ACCESS_DENIED,
                FailureCategory::UserError,
                false,
                "; check that the URL's SAS token grants read access and has not expired",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => (
                codes::BLOB_DOWNLOAD_MISC_ERROR,
                FailureCategory::ServerError,
                true,
                "",
            ),
            s if s.is_server_error() => (
                codes::BLOB_DOWNLOAD_MISC_ERROR,
                FailureCategory::ServerError,
                true,
                "",
            ),
            _ => (
                codes::BLOB_DOWNLOAD_MISC_ERROR,
                FailureCategory::ServerError,
                false,
                "",
            ),
        };
        AttemptError {
            code,
            category,
            transient,
            detail: format!("the server answered HTTP {status}{hint}"),
            status: Some(status),
        }
    }

    fn io(err: &io::Error, code: &'static str, what: String) -> Self {
        let code = if err.raw_os_error() == Some(libc::ENOSPC) {
            codes::DISK_FULL
        } else {
            code
        };
        AttemptError {
            code,
            category: FailureCategory::ServerError,
            transient: false,
            detail: format!("{what}: {err}"),
            status: None,
        }
    }
}

impl Download {
    fn failure(&self, err: AttemptError) -> FailureInfo {
        let message = format!(
            "Failed to download resource file '{}' from {}: {}",
            self.file_path,
            self.redacted_url,
            self.scrub(&err.detail)
        );
        let failure = FailureInfo::new(err.category, err.code, message)
            .with_detail("FilePath", self.file_path.clone())
            .with_detail("ResourceUrl", self.redacted_url.clone());
        match err.status {
            Some(status) => failure.with_detail("HttpStatusCode", status.as_u16().to_string()),
            None => failure,
        }
    }

    /// Belt and braces: errors from the HTTP stack have had their URL removed, but should any
    /// layer still echo the query string, it does not leave this function.
    fn scrub(&self, text: &str) -> String {
        match self.url.query() {
            Some(query) if !query.is_empty() => text.replace(query, "<redacted>"),
            _ => text.to_owned(),
        }
    }
}

/// "outer: cause: root cause", the way errors read best in one line.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
