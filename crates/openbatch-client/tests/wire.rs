//! The client against a raw HTTP/1.1 listener: what goes on the wire (headers, Content-Length,
//! encoded paths) verifies with the server's own Shared Key verifier, lists follow
//! `odata.nextLink`, and errors keep their Azure codes.

use std::sync::{Arc, Mutex};

use openbatch_api::auth::{verify, RequestToSign, DEFAULT_MAX_SKEW};
use openbatch_client::{Client, ClientError, ListOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ACCOUNT: &str = "testacct";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
    fn verifies(&self) -> bool {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        verify(
            &RequestToSign {
                method: &self.method,
                raw_path: &self.path,
                raw_query: self.query.as_deref(),
                headers: &h,
            },
            ACCOUNT,
            &[KEY],
            chrono::Utc::now(),
            DEFAULT_MAX_SKEW,
        )
        .is_ok()
    }
}

type Reply = (u16, Vec<(&'static str, String)>, String);

/// Serves one request per connection with `handler`, recording every request.
async fn serve(
    handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, base2) = (seen.clone(), base.clone());
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (seen, handler, base) = (seen2.clone(), handler.clone(), base2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut tmp).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap().split(' ');
                let method = first.next().unwrap().to_owned();
                let target = first.next().unwrap().to_owned();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').unwrap();
                        (n.trim().to_owned(), v.trim().to_owned())
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = sock.read(&mut tmp).await.unwrap();
                    body.extend_from_slice(&tmp[..n]);
                }
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.clone(), None),
                };
                let req = Seen {
                    method,
                    path,
                    query,
                    headers,
                    body,
                };
                let (status, extra, text) = handler(&req, &base);
                seen.lock().unwrap().push(req);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: {}\r\n",
                    text.len()
                );
                for (n, v) in extra {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&text);
                sock.write_all(out.as_bytes()).await.unwrap();
            });
        }
    });
    (base, seen)
}

fn pool_json(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","url":"u","eTag":"e","lastModified":"2026-01-01T00:00:00Z","creationTime":"2026-01-01T00:00:00Z","state":"active","stateTransitionTime":"2026-01-01T00:00:00Z","allocationState":"steady","allocationStateTransitionTime":"2026-01-01T00:00:00Z","vmSize":"standard_d2s_v3","currentDedicatedNodes":0,"currentLowPriorityNodes":0,"targetDedicatedNodes":0,"targetLowPriorityNodes":0,"enableAutoScale":false,"enableInterNodeCommunication":false,"taskSlotsPerNode":1,"taskSchedulingPolicy":{{"nodeFillType":"spread"}}}}"#
    )
}

#[tokio::test]
async fn requests_are_signed_as_sent_and_lists_follow_next_links() {
    let (base, seen) = serve(|req, base| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/pools") if req.query.as_deref().is_some_and(|q| q.contains("skiptoken")) => (
            200,
            vec![],
            format!(r#"{{"value":[{}]}}"#, pool_json("p2")),
        ),
        ("GET", "/pools") => (
            200,
            vec![],
            format!(
                r#"{{"value":[{}],"odata.nextLink":"{base}/pools?api-version=2025-06-01&maxresults=1&$skiptoken=1"}}"#,
                pool_json("p1")
            ),
        ),
        ("GET", p) if p.contains("/files/") => (
            200,
            vec![
                ("ocp-batch-file-isdirectory", "false".into()),
                ("last-modified", "Sun, 22 Nov 2026 08:35:56 GMT".into()),
            ],
            "hello".into(),
        ),
        ("HEAD", _) => (404, vec![], String::new()),
        _ => (201, vec![], String::new()),
    })
    .await;
    let client = Client::new(&base, ACCOUNT, KEY).unwrap();

    let pools = client
        .list_pools(&ListOptions {
            filter: Some("state eq 'active'".into()),
            max_results: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(
        pools.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["p1", "p2"]
    );

    client.delete_pool("p1").await.unwrap();
    client.terminate_job("j 1", None).await.unwrap();
    client.terminate_job("j1", Some("done")).await.unwrap();
    assert!(!client.pool_exists("nope").await.unwrap());
    let file = client
        .download_task_file_range("j1", "t0", "wd/res ult.txt", Some(0..=4))
        .await
        .unwrap();
    assert!(!file.info.is_directory);
    assert!(file.info.last_modified.is_some());
    assert_eq!(file.bytes().await.unwrap(), b"hello");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    for req in &seen {
        assert!(req.verifies(), "signature does not verify: {req:?}");
        assert!(req.header("client-request-id").is_some());
        assert!(req.header_count("content-length") <= 1, "{req:?}");
    }
    // Body-less requests other than GET/HEAD carry Content-Length: 0; GET/HEAD carry none.
    let delete = &seen[2];
    assert_eq!(delete.method, "DELETE");
    assert_eq!(delete.header("content-length"), Some("0"));
    assert_eq!(seen[3].path, "/jobs/j%201/terminate");
    assert_eq!(seen[3].header("content-length"), Some("0"));
    assert!(seen[0].header("content-length").is_none());
    // A body is JSON with the SDK's content type.
    let terminate = &seen[4];
    assert_eq!(
        terminate.header("content-type"),
        Some("application/json; odata=minimalmetadata")
    );
    assert_eq!(terminate.body, br#"{"terminateReason":"done"}"#);
    // The first list call carries the filter encoded as the SDK encodes it.
    assert_eq!(
        seen[0].query.as_deref(),
        Some("api-version=2025-06-01&maxresults=1&$filter=state%20eq%20%27active%27")
    );
    assert_eq!(seen[5].method, "HEAD");
    let get = &seen[6];
    assert_eq!(get.path, "/jobs/j1/tasks/t0/files/wd%2Fres%20ult.txt");
    assert_eq!(get.header("ocp-range"), Some("bytes=0-4"));
}

#[tokio::test]
async fn errors_keep_their_azure_code_and_transport_errors_do_not_panic() {
    let (base, _) = serve(|_, _| {
        (
            409,
            vec![],
            r#"{"code":"PoolExists","message":{"lang":"en-US","value":"The specified pool already exists.\nRequestId:r\nTime:t"}}"#.into(),
        )
    })
    .await;
    let client = Client::new(&base, ACCOUNT, KEY).unwrap();
    let spec: openbatch_api::models::PoolCreate =
        serde_json::from_str(r#"{"id":"p1","vmSize":"Standard_D2s_v3"}"#).unwrap();
    let err = client.create_pool(&spec).await.unwrap_err();
    assert_eq!(err.code(), Some("PoolExists"));
    assert_eq!(err.status(), Some(409));
    assert_eq!(
        err.to_string(),
        "PoolExists: The specified pool already exists."
    );

    // Nothing listens on port 1.
    let client = Client::new("http://127.0.0.1:1", ACCOUNT, KEY).unwrap();
    let err = client.get_pool("p1").await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");

    assert!(matches!(
        Client::new("ftp://x", ACCOUNT, KEY),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::new("http://x", ACCOUNT, "%%%"),
        Err(ClientError::InvalidKey)
    ));
}

#[tokio::test]
async fn task_collections_go_in_chunks_of_100() {
    let (base, seen) = serve(|req, _| {
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let items = body["value"].as_array().unwrap();
        let results: Vec<String> = items
            .iter()
            .map(|t| format!(r#"{{"status":"success","taskId":{}}}"#, t["id"]))
            .collect();
        (
            200,
            vec![],
            format!(r#"{{"value":[{}]}}"#, results.join(",")),
        )
    })
    .await;
    let client = Client::new(&base, ACCOUNT, KEY).unwrap();
    let tasks: Vec<openbatch_api::models::TaskCreate> = (0..250)
        .map(|i| {
            serde_json::from_value(
                serde_json::json!({"id": format!("t{i}"), "commandLine": "true"}),
            )
            .unwrap()
        })
        .collect();
    let results = client.add_task_collection("j1", &tasks).await.unwrap();
    assert_eq!(results.len(), 250);
    assert_eq!(results[249].task_id, "t249");
    let sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["value"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}
