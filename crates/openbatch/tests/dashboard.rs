//! The web dashboard, end to end: its static files are served (public, right types, no dangling
//! references, revalidated by ETag) while the API still needs Shared Key, and the dashboard's
//! own signing code, as the server serves it, is accepted by the real server when node runs it.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{job, pool, task, wait_completed, wait_idle, Server};
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The relative URLs a page or module refers to: `src="..."`/`href="..."` in HTML, and
/// `from "./x.js"` / `import "./x.js"` in modules. Fragments, data: and absolute URLs are not
/// files of the dashboard.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for marker in [
        "src=\"",
        "href=\"",
        "from \"",
        "from '",
        "import \"",
        "import '",
    ] {
        let quote = &marker[marker.len() - 1..];
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let Some(end) = rest.find(quote) else {
                continue;
            };
            let target = &rest[..end];
            let external = target.starts_with('#')
                || target.contains(':')
                || target.starts_with('/')
                || target.is_empty();
            if !external {
                out.push(target.trim_start_matches("./").to_string());
            }
        }
    }
    out
}

fn content_type_for(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        other => panic!("unexpected asset type {other:?} ({name})"),
    }
}

/// `/dashboard/` and every file it references, directly or through module imports, is
/// served without credentials, with its content type, an ETag and `no-cache`; a matching
/// `If-None-Match` gets a 304. The API itself still refuses unsigned requests.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_files_are_public_and_complete_while_the_api_needs_a_key() {
    let s = Server::start();
    let base = s.credentials()["endpoint"].as_str().unwrap().to_string();
    let h = http();

    let r = h.get(format!("{base}/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/dashboard/");

    let mut seen = BTreeSet::new();
    let mut queue = vec![String::new()];
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let url = format!("{base}/dashboard/{name}");
        let r = h.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {url}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let expected = content_type_for(if name.is_empty() { "index.html" } else { &name });
        assert!(ct.starts_with(expected), "{url}: content type {ct}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{url}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}");
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        assert!(!text.is_empty(), "{url} is empty");

        let again = h
            .get(&url)
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "revalidating {url}");

        if !expected.ends_with("css") {
            queue.extend(references(&text));
        }
    }
    for must in ["", "app.js", "api.js", "sign.js", "style.css"] {
        assert!(
            seen.contains(must),
            "the dashboard does not reach {must}: {seen:?}"
        );
    }

    let missing = h
        .get(format!("{base}/dashboard/missing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The page's security headers.
    let page = h.get(format!("{base}/dashboard/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");

    // The data is not public: no Authorization, no answer.
    let r = h
        .get(format!("{base}/pools?api-version=2025-06-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "AuthenticationFailed");
}

/// The driver node runs: the dashboard's own `api.js` (over `sign.js`), as served, makes signed
/// calls against the live server and prints what it got as JSON.
const DRIVER: &str = r#"
import { readFileSync } from "node:fs";
import { BatchApi } from "./api.js";

const [credsPath, poolId, jobId, taskId] = process.argv.slice(2);
const c = JSON.parse(readFileSync(credsPath, "utf8"));
const api = new BatchApi(c.accountName, c.accountKey, c.endpoint);
const out = {};
out.pools = (await api.pools()).map((p) => p.id);
out.nodes = (await api.nodes(poolId)).map((n) => n.state);
out.taskCounts = (await api.taskCounts(jobId)).taskCounts;
const first = await api.tasksPage(jobId, { state: "completed", maxResults: 1 });
const second = first.nextLink ? await api.tasksPage(jobId, { next: first.nextLink }) : { items: [] };
out.completedPages = [first.items.map((t) => t.id), second.items.map((t) => t.id)];
out.task = await api.task(jobId, taskId);
out.stdoutSize = await api.taskFileSize(jobId, taskId, "stdout.txt");
out.stdoutTail = new TextDecoder().decode(
  await api.taskFileRange(jobId, taskId, "stdout.txt", 6, out.stdoutSize - 1),
);
try {
  await new BatchApi(c.accountName, "d3Jvbmcga2V5", c.endpoint).pools();
  out.wrongKey = "accepted";
} catch (e) {
  out.wrongKey = { status: e.status, code: e.code, isAuthFailure: e.isAuthFailure };
}
try {
  await api.task(jobId, "no-such-task");
} catch (e) {
  out.missing = { status: e.status, code: e.code, message: e.message };
}
console.log(JSON.stringify(out));
"#;

/// The proof that the browser-side signing works: node imports the modules the server serves
/// and performs signed `GET /pools`, `GET /jobs/{id}/taskcounts`, a filtered and paged task
/// list, and a ranged (`ocp-range`) log read, all accepted; a wrong key is refused with
/// `AuthenticationFailed`, which the module reports as an auth failure.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_signing_module_is_accepted_by_the_server() {
    if Command::new("node").arg("--version").output().is_err() {
        println!("skipped: node not found");
        return;
    }
    let s = Server::start();
    let c = s.client();
    let base = s.credentials()["endpoint"].as_str().unwrap().to_string();
    c.create_pool(&pool("dash", 1, 2, serde_json::json!({})))
        .await
        .unwrap();
    wait_idle(&c, "dash", 1).await;
    c.create_job(&job("dj", "dash")).await.unwrap();
    let tasks = [
        task(
            "t1",
            r#"/bin/sh -c "echo hello dashboard""#,
            serde_json::json!({}),
        ),
        task("t2", r#"/bin/sh -c "exit 4""#, serde_json::json!({})),
    ];
    let added = c.add_task_collection("dj", &tasks).await.unwrap();
    assert!(added.iter().all(|r| r.error.is_none()), "{added:?}");
    wait_completed(&c, "dj", 2, Duration::from_secs(30)).await;

    // The modules exactly as a browser gets them.
    let dir = tempfile::tempdir().unwrap();
    let h = http();
    for name in ["api.js", "sign.js"] {
        let body = h
            .get(format!("{base}/dashboard/{name}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    std::fs::write(dir.path().join("package.json"), r#"{"type":"module"}"#).unwrap();
    std::fs::write(dir.path().join("driver.mjs"), DRIVER).unwrap();

    let creds = s.dir.join("credentials.json");
    let out = run_node(
        Command::new("node")
            .arg(dir.path().join("driver.mjs"))
            .arg(&creds)
            .args(["dash", "dj", "t1"])
            .current_dir(dir.path()),
        Duration::from_secs(60),
    )
    .await;
    let v: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("driver output is not JSON ({e}): {out}"));

    assert_eq!(v["pools"], serde_json::json!(["dash"]));
    assert_eq!(v["nodes"], serde_json::json!(["idle"]));
    let counts = &v["taskCounts"];
    assert_eq!(counts["completed"], 2, "{counts}");
    assert_eq!(counts["succeeded"], 1, "{counts}");
    assert_eq!(counts["failed"], 1, "{counts}");
    assert_eq!(counts["active"], 0, "{counts}");
    assert_eq!(counts["running"], 0, "{counts}");
    assert_eq!(
        v["completedPages"],
        serde_json::json!([["t1"], ["t2"]]),
        "paged with odata.nextLink under $filter"
    );
    assert_eq!(
        v["task"]["commandLine"],
        r#"/bin/sh -c "echo hello dashboard""#
    );
    assert_eq!(v["task"]["executionInfo"]["exitCode"], 0);
    assert_eq!(v["stdoutSize"], "hello dashboard\n".len());
    assert_eq!(v["stdoutTail"], "dashboard\n");
    assert_eq!(
        v["wrongKey"],
        serde_json::json!({"status": 403, "code": "AuthenticationFailed", "isAuthFailure": true})
    );
    assert_eq!(v["missing"]["status"], 404);
    assert_eq!(v["missing"]["code"], "TaskNotFound");
    assert_eq!(
        v["missing"]["message"],
        "The specified task does not exist."
    );
}

/// Runs node to completion within `limit` and returns its stdout; fails the test, with its
/// stderr, when it fails or runs too long.
async fn run_node(cmd: &mut Command, limit: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node ran for more than {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "node failed ({status}): {stderr}\n{stdout}"
    );
    stdout
}
