//! `GET /metrics` on the real binary: a pool runs a few tasks, the scrape is parsed as
//! Prometheus reads it, and its values are checked against what happened; then the access
//! modes (`OPENBATCH_METRICS_ACCESS`): Shared Key refuses an unsigned scrape, disabled hides it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use openbatch_client::{Client, ListOptions};
use serde_json::json;

type Labels = BTreeMap<String, String>;

/// The scrape, parsed: every sample by name, with its labels. Fails the test on anything the
/// text format does not allow: a sample whose family has no HELP and TYPE before it, a family
/// split in two, a malformed line.
struct Scrape {
    samples: Vec<(String, Labels, f64)>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        assert!(
            text.ends_with('\n'),
            "the exposition must end with a line feed"
        );
        let mut types = HashMap::new();
        let mut helps = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(helps.insert(name.to_string(), help.to_string()).is_none());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
                assert!(helps.contains_key(name), "TYPE before HELP: {line}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none());
                order.push(name.to_string());
                continue;
            }
            let (name, labels, value) = parse_line(line);
            let family = order.last().expect("a sample before any TYPE");
            let own = name == *family
                || (types[family] == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{family}{s}")));
            assert!(own, "sample {name} outside its family (in {family})");
            if types[family] == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            samples.push((name, labels, value));
        }
        Self { samples, types }
    }

    /// The value of the one sample of `name` whose labels include `want`.
    fn get(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
            .collect();
        assert_eq!(found.len(), 1, "{name}{want:?}: {found:?}");
        found[0]
    }

    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
            .sum()
    }
}

fn parse_line(line: &str) -> (String, Labels, f64) {
    let name_end = line.find(['{', ' ']).expect("a value");
    let name = &line[..name_end];
    assert!(
        name.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = Labels::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        let consumed = loop {
            let (i, c) = chars.next().expect("labels end with }");
            if c == '}' {
                break i + 1;
            }
            if c == ',' {
                continue;
            }
            let key_start = i;
            let mut key_end = i;
            for (j, c) in chars.by_ref() {
                if c == '=' {
                    key_end = j;
                    break;
                }
            }
            let key = &r[key_start..key_end];
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {key:?} in {line}"
            );
            assert_eq!(
                chars.next().map(|x| x.1),
                Some('"'),
                "unquoted value in {line}"
            );
            let mut value = String::new();
            loop {
                let (_, c) = chars.next().expect("a closing quote");
                match c {
                    '"' => break,
                    '\\' => match chars.next().expect("an escape").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c} in {line}"),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
        };
        rest = &r[consumed..];
    }
    let value = rest.strip_prefix(' ').expect("a space before the value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    (name.to_string(), labels, value)
}

async fn scrape(endpoint: &str) -> Scrape {
    let resp = reqwest::get(format!("{endpoint}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    Scrape::parse(&resp.text().await.unwrap())
}

/// A pool of two nodes runs five tasks, one of which fails after a retry; the scrape says so.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_pools_tasks_the_journal_agents_and_requests() {
    let s = Server::start();
    let c = s.client();
    let endpoint = s.credentials()["endpoint"].as_str().unwrap().to_string();
    c.create_pool(&pool("mp", 2, 1, json!({}))).await.unwrap();
    wait_idle(&c, "mp", 2).await;
    let mut j = job("mj", "mp");
    j.constraints = serde_json::from_value(json!({"maxTaskRetryCount": 1})).unwrap();
    c.create_job(&j).await.unwrap();
    let mut tasks: Vec<_> = (1..=4)
        .map(|i| task(&format!("ok{i}"), "/bin/true", json!({})))
        .collect();
    tasks.push(task("bad", "/bin/sh -c \"exit 3\"", json!({})));
    c.add_task_collection("mj", &tasks).await.unwrap();
    wait_completed(&c, "mj", 5, Duration::from_secs(60)).await;

    // A wrong key is an authentication failure, counted.
    let creds = s.credentials();
    let bad = Client::new(
        &endpoint,
        creds["accountName"].as_str().unwrap(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )
    .unwrap();
    assert!(bad.list_pools(&ListOptions::default()).await.is_err());

    // The nodes go back to idle once the last report is in.
    let mut m = scrape(&endpoint).await;
    for _ in 0..200 {
        let idle = m.get(
            "openbatch_pool_nodes",
            &[("pool", "mp"), ("state", "idle"), ("priority", "dedicated")],
        );
        if idle == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = scrape(&endpoint).await;
    }
    let mp = [("pool", "mp")];
    assert_eq!(
        m.get(
            "openbatch_pool_nodes",
            &[("pool", "mp"), ("state", "idle"), ("priority", "dedicated")]
        ),
        2.0
    );
    assert_eq!(m.sum("openbatch_pool_nodes", &mp), 2.0);
    assert_eq!(
        m.get(
            "openbatch_pool_target_nodes",
            &[("pool", "mp"), ("priority", "dedicated")]
        ),
        2.0
    );
    assert_eq!(
        m.get(
            "openbatch_pool_current_nodes",
            &[("pool", "mp"), ("priority", "lowpriority")]
        ),
        0.0
    );
    assert_eq!(m.get("openbatch_pool_task_slots", &mp), 2.0);
    assert_eq!(m.get("openbatch_pool_task_slots_busy", &mp), 0.0);

    // Tasks: five completed, four succeeded, one failed after one retry.
    assert_eq!(
        m.get("openbatch_tasks", &[("pool", "mp"), ("state", "completed")]),
        5.0
    );
    assert_eq!(m.sum("openbatch_tasks", &mp), 5.0);
    assert_eq!(
        m.get(
            "openbatch_task_completions_total",
            &[("pool", "mp"), ("result", "success")]
        ),
        4.0
    );
    assert_eq!(
        m.get(
            "openbatch_task_completions_total",
            &[("pool", "mp"), ("result", "failure")]
        ),
        1.0
    );
    assert_eq!(m.get("openbatch_task_retries_total", &mp), 1.0);
    assert_eq!(m.get("openbatch_task_requeues_total", &mp), 0.0);
    assert_eq!(m.get("openbatch_jobs", &[]), 1.0);

    // The journal: every accepted input is a record; commits group them and each is timed.
    let commits = m.get("openbatch_journal_commits_total", &[]);
    let records = m.get("openbatch_journal_records_total", &[]);
    assert!(commits > 0.0 && records >= commits, "{commits} {records}");
    assert!(m.get("openbatch_journal_syncs_total", &[]) > 0.0);
    assert_eq!(
        m.get("openbatch_journal_commit_duration_seconds_count", &[]),
        commits
    );
    assert_eq!(
        m.get(
            "openbatch_journal_commit_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        commits
    );
    assert_eq!(
        m.types["openbatch_journal_commit_duration_seconds"],
        "histogram"
    );

    // HTTP: by route template, never by id.
    assert!(
        m.get(
            "openbatch_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/jobs/{job}/addtaskcollection"),
                ("status", "2xx")
            ]
        ) >= 1.0
    );
    assert!(m.sum("openbatch_http_requests_total", &[("status", "4xx")]) >= 1.0);
    assert!(m.get("openbatch_http_authentication_failures_total", &[]) >= 1.0);
    for (name, labels, _) in &m.samples {
        for v in labels.values() {
            assert!(
                !v.contains("mj") && !v.contains("ok1") && !v.contains("bad"),
                "{name} has an id in its labels: {labels:?}"
            );
        }
    }

    // Agents and the process.
    assert_eq!(m.get("openbatch_agents_connected", &[]), 2.0);
    assert!(m.get("openbatch_agent_messages_received_total", &[]) >= 5.0);
    assert!(m.get("openbatch_agent_messages_sent_total", &[]) >= 5.0);
    assert_eq!(
        m.get(
            "openbatch_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.get("openbatch_start_time_seconds", &[]) > 1.6e9);
    let core_lock = m.get("openbatch_metrics_core_lock_seconds", &[]);
    assert!((0.0..0.1).contains(&core_lock), "{core_lock}");
    assert!(m.get("openbatch_pool_nodes_reporting", &mp) <= 2.0);
}

/// `sharedkey`: an unsigned scrape is refused and a signed one answered; `disabled`: 404.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_access_sharedkey_refuses_unsigned_scrapes_and_disabled_hides_them() {
    let s = Server::start_with(&[("OPENBATCH_METRICS_ACCESS", "sharedkey")]);
    let creds = s.credentials();
    let endpoint = creds["endpoint"].as_str().unwrap();
    let http = reqwest::Client::new();
    let unsigned = http
        .get(format!("{endpoint}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(body["code"], "AuthenticationFailed");

    let date = openbatch_api::auth::format_ocp_date(chrono::Utc::now());
    let headers = [("ocp-date", date.as_str())];
    let auth = openbatch_api::auth::authorization_header(
        creds["accountName"].as_str().unwrap(),
        creds["accountKey"].as_str().unwrap(),
        &openbatch_api::auth::RequestToSign {
            method: "GET",
            raw_path: "/metrics",
            raw_query: None,
            headers: &headers,
        },
    )
    .unwrap();
    let signed = http
        .get(format!("{endpoint}/metrics"))
        .header("ocp-date", &date)
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let m = Scrape::parse(&signed.text().await.unwrap());
    // The refused scrape is counted as an authentication failure.
    assert_eq!(
        m.get("openbatch_http_authentication_failures_total", &[]),
        1.0
    );
    assert_eq!(
        m.get(
            "openbatch_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("status", "4xx")]
        ),
        1.0
    );
    drop(s);

    let s = Server::start_with(&[("OPENBATCH_METRICS_ACCESS", "disabled")]);
    let endpoint = s.credentials()["endpoint"].as_str().unwrap().to_string();
    let resp = reqwest::get(format!("{endpoint}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("disabled"));
}

/// What a scrape costs with 100,000 tasks queued (run with `--ignored --nocapture`): the whole
/// request, and the time it held the core's lock.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: cargo test -p openbatch --test metrics -- --ignored --nocapture"]
async fn bench_scrape_with_100k_tasks() {
    let s = Server::start();
    let c = s.client();
    let endpoint = s.credentials()["endpoint"].as_str().unwrap().to_string();
    // No nodes: the tasks stay queued.
    c.create_pool(&pool("big", 0, 1, json!({}))).await.unwrap();
    c.create_job(&job("bj", "big")).await.unwrap();
    let mut adds = Vec::new();
    for chunk in 0..1000 {
        let c = c.clone();
        adds.push(tokio::spawn(async move {
            let tasks: Vec<_> = (0..100)
                .map(|i| task(&format!("t{chunk}-{i}"), "/bin/true", json!({})))
                .collect();
            c.add_task_collection("bj", &tasks).await.unwrap();
        }));
        if adds.len() == 32 {
            for a in adds.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in adds {
        a.await.unwrap();
    }
    let mut times = Vec::new();
    let mut m = None;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        m = Some(scrape(&endpoint).await);
        times.push(started.elapsed());
    }
    let m = m.unwrap();
    assert_eq!(
        m.get("openbatch_tasks", &[("pool", "big"), ("state", "active")]),
        100_000.0
    );
    times.sort();
    eprintln!(
        "scrape with 100,000 tasks: median {:?}, max {:?} (whole request); core lock {:.1} µs",
        times[times.len() / 2],
        times[times.len() - 1],
        m.get("openbatch_metrics_core_lock_seconds", &[]) * 1e6
    );
}
