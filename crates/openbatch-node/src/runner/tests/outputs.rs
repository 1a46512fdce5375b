//! Output file uploads, end to end, against a minimal blob server started by each test that
//! records every request (method, target, headers, body).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{read, run_to_end, spec};
use crate::runner::{FailureCategory, OutputFileSpec, UploadCondition};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Route = dyn Fn(&Request) -> (u16, Vec<(String, String)>) + Send + Sync;

struct BlobServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl BlobServer {
    async fn start(
        route: impl Fn(&Request) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (route, log) = (Arc::clone(&route), Arc::clone(&log));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or_default().split_whitespace();
                    let method = first.next().unwrap_or_default().to_owned();
                    let target = first.next().unwrap_or_default().to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end..].to_vec();
                    while body.len() < len {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = Request {
                        method,
                        target,
                        headers,
                        body,
                    };
                    let (status, extra) = route(&req);
                    log.lock().unwrap().push(req);
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n"
                    );
                    for (n, v) in extra {
                        head.push_str(&format!("{n}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        BlobServer { addr, seen }
    }

    fn container(&self, query: &str) -> String {
        format!("http://{}/acct/results?{query}", self.addr)
    }

    fn puts(&self) -> Vec<Request> {
        let mut v: Vec<Request> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "PUT")
            .cloned()
            .collect();
        v.sort_by(|a, b| a.target.cmp(&b.target));
        v
    }
}

fn output(
    server: &BlobServer,
    pattern: &str,
    path: Option<&str>,
    condition: UploadCondition,
) -> OutputFileSpec {
    OutputFileSpec {
        file_pattern: pattern.to_owned(),
        container_url: server.container("sv=1&sig=SECRET"),
        path: path.map(str::to_owned),
        upload_headers: vec![("Content-Type".into(), "text/plain".into())],
        condition,
    }
}

const MAKES_OUTPUTS: &str = r#"/bin/sh -c "echo hello; mkdir -p out/d; echo a > out/a.txt; echo b > out/d/b.txt; exit $CODE""#;

/// A successful run uploads its `tasksuccess` and `taskcompletion` outputs (globs keep the
/// tree below their literal part, `../std*.txt` are the task's logs) and skips `taskfailure`.
#[tokio::test]
async fn outputs_are_uploaded_by_condition_after_a_success() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, MAKES_OUTPUTS);
    spec.env = vec![("CODE".into(), "0".into())];
    spec.output_files = vec![
        output(
            &server,
            "out/**/*.txt",
            Some("res"),
            UploadCondition::TaskSuccess,
        ),
        output(
            &server,
            "../std*.txt",
            Some("logs"),
            UploadCondition::TaskCompletion,
        ),
        output(
            &server,
            "out/a.txt",
            Some("failed/a.txt"),
            UploadCondition::TaskFailure,
        ),
    ];
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert!(!outcome.file_upload_error);
    let puts = server.puts();
    let paths: Vec<&str> = puts.iter().map(Request::path).collect();
    assert_eq!(
        paths,
        [
            "/acct/results/logs/stderr.txt",
            "/acct/results/logs/stdout.txt",
            "/acct/results/res/a.txt",
            "/acct/results/res/d/b.txt"
        ]
    );
    let stdout = puts
        .iter()
        .find(|r| r.path().ends_with("stdout.txt"))
        .unwrap();
    assert_eq!(stdout.body, b"hello\n");
    assert!(
        stdout.target.contains("sig=SECRET"),
        "the SAS goes with the request"
    );
    assert_eq!(stdout.header("x-ms-blob-type"), Some("BlockBlob"));
    assert_eq!(stdout.header("content-type"), Some("text/plain"));
    let log = read(task_dir.join("fileuploadout.txt"));
    assert!(log.contains("res/d/b.txt"), "{log}");
    assert!(!log.contains("SECRET"), "{log}");
}

/// A failed run uploads `taskfailure` outputs, not `tasksuccess` ones, and keeps its own
/// failure.
#[tokio::test]
async fn a_failed_run_uploads_its_taskfailure_outputs() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, MAKES_OUTPUTS);
    spec.env = vec![("CODE".into(), "3".into())];
    spec.output_files = vec![
        output(&server, "out/*.txt", None, UploadCondition::TaskSuccess),
        output(
            &server,
            "out/a.txt",
            Some("failed/a.txt"),
            UploadCondition::TaskFailure,
        ),
    ];
    let outcome = run_to_end(spec).await;
    assert_eq!(outcome.exit_code, Some(3));
    assert!(!outcome.file_upload_error);
    assert_eq!(outcome.failure.as_ref().unwrap().code, "FailureExitCode");
    let puts = server.puts();
    let paths: Vec<&str> = puts.iter().map(Request::path).collect();
    assert_eq!(paths, ["/acct/results/failed/a.txt"]);
    assert_eq!(puts[0].body, b"a\n");
}

/// A SAS without write permission: the run reports a file upload error with a usererror
/// failure that names the file and the blob, and no part of the SAS anywhere.
#[tokio::test]
async fn a_refused_upload_is_a_redacted_file_upload_error() {
    let server = BlobServer::start(|_| {
        (
            403,
            vec![(
                "x-ms-error-code".into(),
                "AuthorizationPermissionMismatch".into(),
            )],
        )
    })
    .await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, MAKES_OUTPUTS);
    spec.env = vec![("CODE".into(), "0".into())];
    spec.output_files = vec![output(
        &server,
        "out/a.txt",
        None,
        UploadCondition::TaskSuccess,
    )];
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.file_upload_error);
    assert!(!outcome.pre_processing_error);
    assert_eq!(outcome.exit_code, Some(0));
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.category, FailureCategory::UserError);
    assert_eq!(failure.code, "FileUploadMiscError");
    assert!(failure.message.contains("out/a.txt"), "{}", failure.message);
    assert!(
        failure.message.contains("AuthorizationPermissionMismatch"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("/acct/results/a.txt"),
        "{}",
        failure.message
    );
    let everything = format!("{failure:?}") + &read(task_dir.join("fileuploaderr.txt"));
    assert!(
        !everything.contains("SECRET") && !everything.contains("sig="),
        "{everything}"
    );
    // 403 is not retried.
    assert_eq!(server.puts().len(), 1);
}

/// Files over one block go up as Put Block (in order) and one Put Block List.
#[tokio::test]
async fn large_outputs_go_up_in_blocks() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(
        &dir,
        r#"/bin/sh -c "head -c 9437184 /dev/zero | tr '\0' x > big.bin""#,
    );
    spec.output_files = vec![output(
        &server,
        "big.bin",
        None,
        UploadCondition::TaskSuccess,
    )];
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    let seen = server.seen.lock().unwrap().clone();
    let blocks: Vec<&Request> = seen
        .iter()
        .filter(|r| r.target.contains("comp=block&"))
        .collect();
    assert_eq!(blocks.len(), 2);
    let sizes: Vec<usize> = blocks.iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 9 * 1024 * 1024);
    let list = seen
        .iter()
        .find(|r| r.target.contains("comp=blocklist"))
        .expect("a block list");
    let body = String::from_utf8_lossy(&list.body);
    assert_eq!(body.matches("<Latest>").count(), 2, "{body}");
    assert_eq!(list.header("x-ms-blob-content-type"), Some("text/plain"));
}

fn logs_to(server: &BlobServer) -> crate::runner::LogUploadSpec {
    crate::runner::LogUploadSpec {
        container_url: format!("http://{}/acct/openbatch-logs?sv=1&sig=SECRET", server.addr),
        prefix: "jobs/j/t/7/".into(),
    }
}

/// After the run (and its outputs), `stdout.txt` and `stderr.txt` go to the log prefix.
#[tokio::test]
async fn logs_are_kept_when_a_run_ends() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(
        &dir,
        r#"/bin/sh -c "echo out-line; echo err-line >&2; exit 3""#,
    );
    spec.log_upload = Some(logs_to(&server));
    let outcome = run_to_end(spec).await;
    assert_eq!(outcome.exit_code, Some(3));
    assert!(!outcome.file_upload_error);
    let puts = server.puts();
    let got: Vec<(&str, &[u8])> = puts.iter().map(|r| (r.path(), r.body.as_slice())).collect();
    assert_eq!(
        got,
        [
            (
                "/acct/openbatch-logs/jobs/j/t/7/stderr.txt",
                b"err-line\n".as_slice()
            ),
            ("/acct/openbatch-logs/jobs/j/t/7/stdout.txt", b"out-line\n"),
        ]
    );
}

/// Storage that refuses the logs (or is down) never fails the run.
#[tokio::test]
async fn a_refused_log_upload_never_fails_the_run() {
    let server = BlobServer::start(|_| (403, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, r#"/bin/sh -c "echo fine; echo warn >&2""#);
    spec.log_upload = Some(logs_to(&server));
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert!(!outcome.file_upload_error);
    assert_eq!(server.puts().len(), 2, "one try each, 403 is not retried");
}

/// An empty log is not uploaded: the outcome names it, and the server serves it as empty.
#[tokio::test]
async fn empty_logs_are_named_not_uploaded() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let mut spec = spec(&dir, r#"/bin/sh -c "echo only-out""#);
    spec.log_upload = Some(logs_to(&server));
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(outcome.empty_logs, ["stderr.txt"]);
    let puts = server.puts();
    let paths: Vec<&str> = puts.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/acct/openbatch-logs/jobs/j/t/7/stdout.txt"]);
}

/// A log over the cap keeps its last `MAX_KEPT_LOG_BYTES`, in blocks.
#[tokio::test]
async fn a_large_log_keeps_its_tail() {
    let server = BlobServer::start(|_| (201, Vec::new())).await;
    let dir = TempDir::new().unwrap();
    let cap = crate::runner::MAX_KEPT_LOG_BYTES;
    let mut spec = spec(
        &dir,
        &format!(r#"/bin/sh -c "printf HEADER; head -c {cap} /dev/zero | tr '\0' x""#),
    );
    spec.log_upload = Some(logs_to(&server));
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    let seen = server.seen.lock().unwrap().clone();
    let blocks: Vec<&Request> = seen
        .iter()
        .filter(|r| r.path().ends_with("/stdout.txt") && r.target.contains("comp=block&"))
        .collect();
    let kept: usize = blocks.iter().map(|r| r.body.len()).sum();
    assert_eq!(kept as u64, cap);
    assert!(blocks.iter().all(|r| r.body.iter().all(|&b| b == b'x')));
    assert!(seen
        .iter()
        .any(|r| r.path().ends_with("/stdout.txt") && r.target.contains("comp=blocklist")));
}
