//! Task and node files: listings, downloads (whole or a byte range) and properties.
//!
//! A file path travels as one fully percent-encoded segment (`wd/out.txt` → `wd%2Fout.txt`),
//! as the SDK sends it.

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use openbatch_api::models::NodeFile;
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, Url};

use crate::request::Seg::{self, Lit, Val};
use crate::{redact, Client, ClientError, ListOptions, NO_BODY};

/// What `HEAD` on a file (and the headers of a download) say about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// `Content-Length`: the size of the file (of the range, for a ranged download).
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    pub last_modified: Option<DateTime<Utc>>,
    /// `ocp-creation-time`.
    pub creation_time: Option<DateTime<Utc>>,
    /// `ocp-batch-file-isdirectory`.
    pub is_directory: bool,
    /// `ocp-batch-file-url`.
    pub url: Option<String>,
    /// `ocp-batch-file-mode`, octal (`100644`).
    pub file_mode: Option<String>,
}

impl FileInfo {
    fn from_headers(h: &HeaderMap) -> Self {
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let date = |name: &str| {
            text(name)
                .and_then(|v| DateTime::parse_from_rfc2822(&v).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        FileInfo {
            content_length: text("content-length").and_then(|v| v.parse().ok()),
            content_type: text("content-type"),
            last_modified: date("last-modified"),
            creation_time: date("ocp-creation-time"),
            is_directory: text("ocp-batch-file-isdirectory")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            url: text("ocp-batch-file-url"),
            file_mode: text("ocp-batch-file-mode"),
        }
    }
}

/// A download in progress: the file's headers, then its bytes chunk by chunk.
#[derive(Debug)]
pub struct FileDownload {
    pub info: FileInfo,
    url: Url,
    resp: Response,
}

impl FileDownload {
    /// The next chunk of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let chunk = self
            .resp
            .chunk()
            .await
            .map_err(|source| ClientError::Transport {
                url: redact(&self.url),
                source,
            })?;
        Ok(chunk.map(|c| c.to_vec()))
    }

    /// The whole (remaining) body.
    pub async fn bytes(self) -> Result<Vec<u8>, ClientError> {
        let url = self.url;
        let bytes = self
            .resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: redact(&url),
                source,
            })?;
        Ok(bytes.to_vec())
    }
}

/// Where a file lives: under a task (`/jobs/{j}/tasks/{t}/files`) or a node
/// (`/pools/{p}/nodes/{n}/files`).
#[derive(Debug, Clone, Copy)]
enum Owner<'a> {
    Task { job: &'a str, task: &'a str },
    Node { pool: &'a str, node: &'a str },
}

impl Owner<'_> {
    fn segments(&self) -> Vec<Seg<'_>> {
        match *self {
            Owner::Task { job, task } => vec![
                Lit("jobs"),
                Val("job id", job),
                Lit("tasks"),
                Val("task id", task),
                Lit("files"),
            ],
            Owner::Node { pool, node } => vec![
                Lit("pools"),
                Val("pool id", pool),
                Lit("nodes"),
                Val("node id", node),
                Lit("files"),
            ],
        }
    }
}

impl Client {
    // ---- task files ----

    /// `GET /jobs/{j}/tasks/{t}/files[?recursive=true]`: names are relative to the task
    /// directory (`stdout.txt`, `wd`, `wd/out.txt`).
    pub async fn list_task_files(
        &self,
        job_id: &str,
        task_id: &str,
        recursive: bool,
        opts: &ListOptions,
    ) -> Result<Vec<NodeFile>, ClientError> {
        let owner = Owner::Task {
            job: job_id,
            task: task_id,
        };
        self.list_files(owner, recursive, opts).await
    }

    /// `GET /jobs/{j}/tasks/{t}/files/{path}`, the whole file or an inclusive byte range.
    pub async fn get_task_file(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<Vec<u8>, ClientError> {
        self.download_task_file_range(job_id, task_id, path, range)
            .await?
            .bytes()
            .await
    }

    /// The whole file as a stream of chunks (see [`FileDownload`]), for files too large to
    /// hold in memory.
    pub async fn download_task_file(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
    ) -> Result<FileDownload, ClientError> {
        self.download_task_file_range(job_id, task_id, path, None)
            .await
    }

    /// [`Client::download_task_file`], optionally of an inclusive byte range only
    /// (`ocp-range: bytes=START-END`).
    pub async fn download_task_file_range(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<FileDownload, ClientError> {
        let owner = Owner::Task {
            job: job_id,
            task: task_id,
        };
        self.download(owner, path, range).await
    }

    /// `GET /jobs/{j}/tasks/{t}/files/{path}?follow=true` (an openbatch extension): the file
    /// as it grows while the task runs; the body ends once the task completed and its last
    /// bytes were sent. A completed task's file comes whole, as a plain download.
    pub async fn follow_task_file(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
    ) -> Result<FileDownload, ClientError> {
        let owner = Owner::Task {
            job: job_id,
            task: task_id,
        };
        self.download_query(owner, path, None, &[("follow", "true".to_owned())])
            .await
    }

    /// `HEAD /jobs/{j}/tasks/{t}/files/{path}`.
    pub async fn get_task_file_properties(
        &self,
        job_id: &str,
        task_id: &str,
        path: &str,
    ) -> Result<FileInfo, ClientError> {
        let owner = Owner::Task {
            job: job_id,
            task: task_id,
        };
        self.file_properties(owner, path).await
    }

    // ---- node files ----

    /// `GET /pools/{p}/nodes/{n}/files[?recursive=true]`: names are relative to the node's
    /// root (`startup/stdout.txt`, `shared`, `workitems/...`).
    pub async fn list_node_files(
        &self,
        pool_id: &str,
        node_id: &str,
        recursive: bool,
        opts: &ListOptions,
    ) -> Result<Vec<NodeFile>, ClientError> {
        let owner = Owner::Node {
            pool: pool_id,
            node: node_id,
        };
        self.list_files(owner, recursive, opts).await
    }

    /// `GET /pools/{p}/nodes/{n}/files/{path}`, the whole file or an inclusive byte range.
    pub async fn get_node_file(
        &self,
        pool_id: &str,
        node_id: &str,
        path: &str,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<Vec<u8>, ClientError> {
        self.download_node_file_range(pool_id, node_id, path, range)
            .await?
            .bytes()
            .await
    }

    /// The whole file as a stream of chunks.
    pub async fn download_node_file(
        &self,
        pool_id: &str,
        node_id: &str,
        path: &str,
    ) -> Result<FileDownload, ClientError> {
        self.download_node_file_range(pool_id, node_id, path, None)
            .await
    }

    /// [`Client::download_node_file`], optionally of an inclusive byte range only.
    pub async fn download_node_file_range(
        &self,
        pool_id: &str,
        node_id: &str,
        path: &str,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<FileDownload, ClientError> {
        let owner = Owner::Node {
            pool: pool_id,
            node: node_id,
        };
        self.download(owner, path, range).await
    }

    /// `HEAD /pools/{p}/nodes/{n}/files/{path}`.
    pub async fn get_node_file_properties(
        &self,
        pool_id: &str,
        node_id: &str,
        path: &str,
    ) -> Result<FileInfo, ClientError> {
        let owner = Owner::Node {
            pool: pool_id,
            node: node_id,
        };
        self.file_properties(owner, path).await
    }

    // ---- shared ----

    async fn list_files(
        &self,
        owner: Owner<'_>,
        recursive: bool,
        opts: &ListOptions,
    ) -> Result<Vec<NodeFile>, ClientError> {
        let mut query = opts.query();
        if recursive {
            query.push(("recursive", "true".to_owned()));
        }
        let url = self.url(&owner.segments(), &query)?;
        let mut files: Vec<NodeFile> = self.list_all(url).await?;
        // Windows-style separators appear in some listings (the spec's own example); callers
        // pass these names back as paths, so normalise them.
        for f in &mut files {
            if f.name.contains('\\') {
                f.name = f.name.replace('\\', "/");
            }
        }
        Ok(files)
    }

    fn file_url(
        &self,
        owner: Owner<'_>,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Url, ClientError> {
        let mut segs = owner.segments();
        segs.push(Val("file path", path));
        self.url(&segs, query)
    }

    async fn download(
        &self,
        owner: Owner<'_>,
        path: &str,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<FileDownload, ClientError> {
        self.download_query(owner, path, range, &[]).await
    }

    async fn download_query(
        &self,
        owner: Owner<'_>,
        path: &str,
        range: Option<RangeInclusive<u64>>,
        query: &[(&str, String)],
    ) -> Result<FileDownload, ClientError> {
        let url = self.file_url(owner, path, query)?;
        let mut extra = vec![("accept", "application/octet-stream".to_owned())];
        if let Some(r) = range {
            if r.start() > r.end() {
                return Err(ClientError::InvalidArgument {
                    what: "byte range",
                    value: format!("{}-{}", r.start(), r.end()),
                    reason: "the start is after the end",
                });
            }
            extra.push(("ocp-range", format!("bytes={}-{}", r.start(), r.end())));
        }
        let resp = self
            .execute(Method::GET, url.clone(), None, &extra, None)
            .await?;
        Ok(FileDownload {
            info: FileInfo::from_headers(resp.headers()),
            url,
            resp,
        })
    }

    async fn file_properties(&self, owner: Owner<'_>, path: &str) -> Result<FileInfo, ClientError> {
        let url = self.file_url(owner, path, &[])?;
        let resp = self.call(Method::HEAD, url, NO_BODY).await?;
        Ok(FileInfo::from_headers(resp.headers()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    #[test]
    fn file_info_reads_the_batch_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("content-length", "1813"),
            ("content-type", "application/octet-stream"),
            ("last-modified", "Sun, 22 Nov 2026 08:35:56 GMT"),
            ("ocp-creation-time", "Sat, 21 Nov 2026 08:00:00 GMT"),
            ("ocp-batch-file-isdirectory", "False"),
            (
                "ocp-batch-file-url",
                "http://h/jobs/j/tasks/t/files/stdout.txt",
            ),
            ("ocp-batch-file-mode", "100644"),
        ] {
            h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let info = FileInfo::from_headers(&h);
        assert_eq!(info.content_length, Some(1813));
        assert!(!info.is_directory);
        assert_eq!(info.file_mode.as_deref(), Some("100644"));
        assert_eq!(
            info.last_modified.map(|d| d.to_rfc3339()),
            Some("2026-11-22T08:35:56+00:00".to_owned())
        );
        assert!(info.creation_time.is_some());
    }

    #[test]
    fn missing_or_odd_headers_read_as_none() {
        let mut h = HeaderMap::new();
        h.insert("last-modified", HeaderValue::from_static("yesterday"));
        h.insert(
            "ocp-batch-file-isdirectory",
            HeaderValue::from_static("true"),
        );
        let info = FileInfo::from_headers(&h);
        assert_eq!(info.last_modified, None);
        assert_eq!(info.content_length, None);
        assert!(info.is_directory);
    }
}
