//! Resource file staging, end to end, against a minimal HTTP server started by each test.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{eventually, failure_code, finish, read, run_to_end, spec};
use crate::runner::{codes, start, FailureCategory, KillReason, ResourceFileSpec, ResourceSource};

/// A minimal HTTP/1.1 server: `route(path_and_query, request_number)` gives the status and body.
/// It closes every connection, so no pooled connection outlives a test's runtime.
pub(super) struct TestServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl TestServer {
    pub(super) async fn start(
        route: impl Fn(&str, usize) -> (u16, Vec<u8>) + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let route = Arc::new(route);
        let counter = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let route = Arc::clone(&route);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let target = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let number = counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = route(&target, number);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TestServer { addr, requests }
    }

    pub(super) fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub(super) fn resource(
    http_url: String,
    file_path: &str,
    file_mode: Option<&str>,
) -> ResourceFileSpec {
    ResourceFileSpec {
        source: ResourceSource::HttpUrl(http_url),
        file_path: file_path.to_owned(),
        file_mode: file_mode.map(str::to_owned),
    }
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn resource_files_are_downloaded_before_the_process_starts() {
    let server = TestServer::start(|target, _| match target.split('?').next() {
        Some("/scripts/run.sh") => (
            200,
            b"#!/bin/sh\necho from-script \"$(cat data.txt)\"\n".to_vec(),
        ),
        Some("/files/data.txt") => (200, b"payload".to_vec()),
        Some("/files/data%20set.csv") => (200, b"a,b\n".to_vec()),
        _ => (404, Vec::new()),
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, "./bin/run.sh");
    spec.resource_files = vec![
        resource(
            server.url("/scripts/run.sh?sv=1&sig=SECRET"),
            "bin/run.sh",
            Some("0755"),
        ),
        resource(server.url("/files/data.txt"), "bin/../data.txt", None),
        resource(server.url("/files/data%20set.csv?sig=SECRET"), "", None),
    ];
    let (task_dir, wd) = (spec.task_dir.clone(), spec.working_dir.clone());
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(read(task_dir.join("stdout.txt")), "from-script payload\n");
    assert_eq!(mode_of(&wd.join("bin/run.sh")), 0o755);
    assert_eq!(
        mode_of(&wd.join("data.txt")),
        0o770,
        "Azure's default fileMode on Linux"
    );
    assert_eq!(read(wd.join("data set.csv")), "a,b\n");
    let leftovers: Vec<PathBuf> = walk(&wd)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[tokio::test]
async fn failed_download_is_a_redacted_pre_processing_error() {
    let server = TestServer::start(|target, _| match target.split('?').next() {
        Some("/ok.txt") => (200, b"fine".to_vec()),
        _ => (404, b"nope".to_vec()),
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, r#"/bin/sh -c "touch ran.txt""#);
    spec.resource_files = vec![
        resource(server.url("/ok.txt"), "ok.txt", None),
        resource(
            server.url("/container/missing.bin?sv=2024&sig=SECRET"),
            "inputs/missing.bin",
            None,
        ),
    ];
    let wd = spec.working_dir.clone();
    let outcome = run_to_end(spec).await;

    assert!(outcome.pre_processing_error);
    assert_eq!(outcome.exit_code, None);
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.category, FailureCategory::UserError);
    assert_eq!(failure.code, codes::BLOB_NOT_FOUND);
    assert!(
        failure.message.contains("inputs/missing.bin"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains("/container/missing.bin?<redacted>"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("404"), "{}", failure.message);
    let everything = format!("{failure:?}");
    assert!(
        !everything.contains("SECRET") && !everything.contains("sig="),
        "{everything}"
    );
    assert!(failure
        .details
        .contains(&("FilePath".to_owned(), "inputs/missing.bin".to_owned())));
    assert!(
        !wd.join("ran.txt").exists(),
        "the process must not start after a failed download"
    );
    assert!(!wd.join("inputs/missing.bin").exists());
    assert_eq!(server.requests(), 2, "a 404 is not retried");
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = TestServer::start(|_, number| {
        if number == 0 {
            (503, Vec::new())
        } else {
            (200, b"second time".to_vec())
        }
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, "cat flaky.txt");
    spec.resource_files = vec![resource(server.url("/flaky.txt"), "flaky.txt", None)];
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(read(task_dir.join("stdout.txt")), "second time");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn connection_refused_fails_after_retries_without_leaking_the_token() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, "true");
    spec.resource_files = vec![resource(
        format!("http://127.0.0.1:{port}/x.bin?sig=SECRET"),
        "x.bin",
        None,
    )];
    let outcome = run_to_end(spec).await;
    assert!(outcome.pre_processing_error);
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.code, codes::BLOB_DOWNLOAD_MISC_ERROR);
    assert_eq!(failure.category, FailureCategory::ServerError);
    assert!(
        failure.message.contains("3 attempts"),
        "{}",
        failure.message
    );
    assert!(!format!("{failure:?}").contains("SECRET"), "{failure:?}");
}

#[tokio::test]
async fn resource_paths_may_not_escape_the_working_dir() {
    let server = TestServer::start(|_, _| (200, b"x".to_vec())).await;
    for bad in [
        "../escape.txt",
        "a/../../escape.txt",
        "/etc/openbatch-escape",
    ] {
        let dir = TempDir::new().unwrap();
        let mut spec = spec(&dir, r#"/bin/sh -c "touch ran.txt""#);
        spec.resource_files = vec![resource(server.url("/x?sig=SECRET"), bad, None)];
        let wd = spec.working_dir.clone();
        let outcome = run_to_end(spec).await;
        assert!(outcome.pre_processing_error, "{bad}");
        let failure = outcome.failure.expect("a failure");
        assert_eq!(failure.category, FailureCategory::UserError, "{bad}");
        assert_eq!(failure.code, codes::RESOURCE_FILE_CREATE_FAILED, "{bad}");
        assert!(failure.message.contains(bad), "{}", failure.message);
        assert!(!wd.join("ran.txt").exists());
        assert!(!dir.path().join("task/escape.txt").exists());
    }
    assert_eq!(
        server.requests(),
        0,
        "nothing is downloaded for an invalid filePath"
    );
}

#[tokio::test]
async fn kill_during_staging_stops_before_the_process_starts() {
    // The server accepts and never answers, so the download hangs until the kill.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, r#"/bin/sh -c "touch ran.txt""#);
    spec.resource_files = vec![resource(
        format!("http://{addr}/slow.bin"),
        "slow.bin",
        None,
    )];
    let wd = spec.working_dir.clone();
    let handle = start(spec);
    assert!(
        eventually(Duration::from_secs(10), || accepted.load(Ordering::SeqCst)
            > 0)
        .await,
        "the download never connected"
    );
    handle.kill(KillReason::Terminated);
    let outcome = finish(handle).await;
    hold.abort();
    assert_eq!(outcome.killed_by, Some(KillReason::Terminated));
    assert_eq!(failure_code(&outcome), codes::TASK_ENDED);
    assert_eq!(outcome.exit_code, None);
    assert!(!outcome.pre_processing_error);
    assert!(!wd.join("ran.txt").exists());
}

fn container(url: String, blob_prefix: &str, file_path: &str) -> ResourceFileSpec {
    ResourceFileSpec {
        source: ResourceSource::Container {
            url,
            blob_prefix: blob_prefix.to_owned(),
        },
        file_path: file_path.to_owned(),
        file_mode: None,
    }
}

fn list_xml(names: &[&str], next_marker: &str) -> Vec<u8> {
    let blobs: String = names
        .iter()
        .map(|n| format!("<Blob><Name>{n}</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="c"><Blobs>{blobs}</Blobs><NextMarker>{next_marker}</NextMarker></EnumerationResults>"#
    )
    .into_bytes()
}

/// A `storageContainerUrl` with a `blobPrefix`: every matching blob, listed over two pages,
/// lands under `filePath` with its blob name's directories kept.
#[tokio::test]
async fn container_blobs_are_listed_page_by_page_and_downloaded_under_file_path() {
    let server = TestServer::start(|target, _| {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if !query.contains("sig=SECRET") {
            return (403, Vec::new());
        }
        match path {
            "/acct/inputs" if query.contains("comp=list") => {
                assert!(query.contains("restype=container"), "{query}");
                assert!(
                    query.contains("prefix=data%2F") || query.contains("prefix=data/"),
                    "{query}"
                );
                if query.contains("marker=") {
                    (200, list_xml(&["data/sub/b.txt"], ""))
                } else {
                    (
                        200,
                        list_xml(&["data/a.txt", "data/empty-dir/"], "data/a.txt"),
                    )
                }
            }
            "/acct/inputs/data/a.txt" => (200, b"A".to_vec()),
            "/acct/inputs/data/sub/b.txt" => (200, b"B".to_vec()),
            _ => (404, Vec::new()),
        }
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(
        &dir,
        r#"/bin/sh -c "cat staged/data/a.txt staged/data/sub/b.txt""#,
    );
    spec.resource_files = vec![container(
        server.url("/acct/inputs?sv=1&sig=SECRET"),
        "data/",
        "staged",
    )];
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(read(task_dir.join("stdout.txt")), "AB");
    // Two list pages and two blobs; the directory placeholder is not downloaded.
    assert_eq!(server.requests(), 4);
}

/// A blob whose name climbs out of the working directory fails the run as a usererror, before
/// anything is downloaded; a missing container is a usererror that names it, redacted.
#[tokio::test]
async fn container_blobs_stay_inside_the_working_dir_and_failures_are_redacted() {
    let server = TestServer::start(|target, _| match target.split('?').next() {
        Some("/acct/evil") => (200, list_xml(&["../../escape.txt"], "")),
        _ => (404, Vec::new()),
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut evil = spec(&dir, r#"/bin/sh -c "touch ran.txt""#);
    evil.resource_files = vec![container(server.url("/acct/evil?sig=SECRET"), "", "")];
    let wd = evil.working_dir.clone();
    let outcome = run_to_end(evil).await;
    assert!(outcome.pre_processing_error);
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.category, FailureCategory::UserError);
    assert_eq!(failure.code, codes::RESOURCE_FILE_CREATE_FAILED);
    assert!(!wd.join("ran.txt").exists());
    assert!(!dir.path().join("escape.txt").exists());

    let dir = TempDir::new().unwrap();
    let mut missing = spec(&dir, "true");
    missing.resource_files = vec![container(server.url("/acct/missing?sig=SECRET"), "", "")];
    let outcome = run_to_end(missing).await;
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.code, codes::BLOB_NOT_FOUND);
    assert_eq!(failure.category, FailureCategory::UserError);
    assert!(
        failure.message.contains("/acct/missing?<redacted>"),
        "{}",
        failure.message
    );
    assert!(!format!("{failure:?}").contains("SECRET"));
}
