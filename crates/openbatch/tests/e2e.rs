//! End-to-end tests: the real `openbatch` binary as a server on 127.0.0.1:0, real node agents
//! as its child processes, driven over the REST API by the typed client.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

use openbatch_api::models::{PoolCreate, TaskCreate, TaskState};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_run_200_tasks_and_report_failures() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 2, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let mut tasks: Vec<TaskCreate> = (0..200)
        .map(|i| {
            task(
                &format!("t{i:03}"),
                "/bin/sh -c \"echo task $AZ_BATCH_TASK_ID on $AZ_BATCH_NODE_ID\"",
                json!({}),
            )
        })
        .collect();
    tasks.push(task(
        "fails",
        "/bin/sh -c \"echo oops >&2; exit 3\"",
        json!({}),
    ));
    let results = c.add_task_collection("j", &tasks).await.unwrap();
    assert_eq!(results.len(), 201);
    assert!(results.iter().all(|r| r.status.as_str() == "success"));
    wait_completed(&c, "j", 201, Duration::from_secs(120)).await;

    let counts = c.get_task_counts("j").await.unwrap().task_counts;
    assert_eq!((counts.succeeded, counts.failed), (200, 1));
    let nodes_used: std::collections::BTreeSet<String> = c
        .list_tasks("j", &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|t| t.node_info.and_then(|n| n.node_id))
        .collect();
    assert_eq!(nodes_used.len(), 2, "both nodes ran tasks");

    let out = c
        .download_task_file("j", "t007", "stdout.txt")
        .await
        .unwrap();
    let out = String::from_utf8(out.bytes().await.unwrap()).unwrap();
    assert!(out.starts_with("task t007 on tvmps_"), "{out}");

    let failed = c.get_task("j", "fails").await.unwrap();
    assert_eq!(failed.state, TaskState::Completed);
    assert_eq!(failed.execution_info.exit_code, Some(3));
    let fi = failed.execution_info.failure_info.expect("failureInfo");
    assert_eq!(fi.code.as_deref(), Some("FailureExitCode"));
    assert_eq!(fi.category.as_str(), "usererror");
    let err = c
        .download_task_file("j", "fails", "stderr.txt")
        .await
        .unwrap();
    assert_eq!(err.bytes().await.unwrap(), b"oops\n");

    let only_failed = c
        .list_tasks(
            "j",
            &ListOptions::filter("executionInfo/result eq 'failure'"),
        )
        .await
        .unwrap();
    assert_eq!(only_failed.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wall_clock_limit_kills_the_task_and_start_task_failure_marks_the_node() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 1, 1, json!({}))).await.unwrap();
    let bad = pool(
        "bad",
        1,
        1,
        json!({"startTask": {"commandLine": "/bin/sh -c \"exit 7\"", "waitForSuccess": true, "maxTaskRetryCount": 1}}),
    );
    c.create_pool(&bad).await.unwrap();
    wait_idle(&c, "p", 1).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let started = Instant::now();
    c.create_task(
        "j",
        &task(
            "slow",
            "/bin/sh -c \"sleep 60 & sleep 60\"",
            json!({"constraints": {"maxWallClockTime": "PT2S"}}),
        ),
    )
    .await
    .unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed well before 60 s"
    );
    let t = c.get_task("j", "slow").await.unwrap();
    let fi = t.execution_info.failure_info.expect("failureInfo");
    assert_eq!(fi.code.as_deref(), Some("TaskEnded"));

    wait_until(Duration::from_secs(30), "starttaskfailed", || async {
        c.list_nodes("bad", &ListOptions::default())
            .await
            .map(|n| n.len() == 1 && n[0].state.as_str() == "starttaskfailed")
            .unwrap_or(false)
    })
    .await;
    let node = &c.list_nodes("bad", &ListOptions::default()).await.unwrap()[0];
    let info = node.start_task_info.as_ref().expect("startTaskInfo");
    assert_eq!(info.exit_code, Some(7));
    assert_eq!(info.retry_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_killed_mid_run_restarts_and_completes_every_task_once() {
    let mut s = Server::start();
    let c = s.client();
    let runs = s.dir.with_extension("runs");
    std::fs::write(&runs, "").unwrap();
    c.create_pool(&pool("p", 2, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    c.create_job(&job("j", "p")).await.unwrap();
    let tasks: Vec<TaskCreate> = (0..80)
        .map(|i| {
            task(
                &format!("t{i}"),
                &format!(
                    "/bin/sh -c \"sleep 0.2; echo $AZ_BATCH_TASK_ID >> {}\"",
                    runs.display()
                ),
                json!({}),
            )
        })
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(Duration::from_secs(30), "some tasks done", || async {
        std::fs::read_to_string(&runs)
            .map(|r| r.lines().count() >= 10)
            .unwrap_or(false)
    })
    .await;
    s.kill9();
    s.spawn();
    let c = s.client();
    wait_completed(&c, "j", 80, Duration::from_secs(90)).await;
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for l in text.lines() {
        *seen.entry(l.to_string()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 80, "every task ran");
    assert!(
        seen.values().all(|&n| n == 1),
        "no task ran twice: {seen:?}"
    );
    let counts = c.get_task_counts("j").await.unwrap().task_counts;
    assert_eq!(counts.succeeded, 80);
}

/// Task dependencies survive a `kill -9` of the server: the dependency index is rebuilt from
/// the snapshot and journal, every dependent starts only after the tasks it depends on ended,
/// and a dependent that a failure blocked stays `active`.
#[tokio::test(flavor = "multi_thread")]
async fn dependencies_hold_across_a_server_kill() {
    let mut s = Server::start();
    let c = s.client();
    let log = s.dir.with_extension("order");
    std::fs::write(&log, "").unwrap();
    c.create_pool(&pool("p", 2, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    let mut spec = job("j", "p");
    spec.uses_task_dependencies = Some(true);
    c.create_job(&spec).await.unwrap();
    let cmd = format!(
        "/bin/sh -c \"echo start $AZ_BATCH_TASK_ID >> {0}; sleep 0.3; echo end $AZ_BATCH_TASK_ID >> {0}\"",
        log.display()
    );
    let mut edges: Vec<(String, Vec<String>)> = Vec::new();
    let mut tasks = Vec::new();
    // Dependents first: they wait for tasks added after them.
    let all: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    let mut finals = vec!["m1".to_string(), "m2".into(), "m3".into()];
    tasks.push(task(
        "final",
        &cmd,
        json!({"dependsOn": {"taskIds": finals, "taskIdRanges": [{"start": 1, "end": 12}]}}),
    ));
    finals.extend(all.iter().cloned());
    edges.push(("final".into(), finals));
    for k in 1..=3i64 {
        let (a, b) = (4 * k - 3, 4 * k);
        tasks.push(task(
            &format!("m{k}"),
            &cmd,
            json!({"dependsOn": {"taskIdRanges": [{"start": a, "end": b}]}}),
        ));
        edges.push((format!("m{k}"), (a..=b).map(|i| i.to_string()).collect()));
    }
    tasks.push(task(
        "blocked",
        &cmd,
        json!({"dependsOn": {"taskIds": ["fails"]}}),
    ));
    tasks.push(task("fails", "/bin/sh -c 'exit 1'", json!({})));
    tasks.extend(all.iter().map(|id| task(id, &cmd, json!({}))));
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(Duration::from_secs(30), "some tasks done", || async {
        std::fs::read_to_string(&log)
            .map(|r| r.lines().filter(|l| l.starts_with("end")).count() >= 4)
            .unwrap_or(false)
    })
    .await;
    s.kill9();
    s.spawn();
    let c = s.client();
    wait_until(Duration::from_secs(90), "final to complete", || async {
        c.get_task("j", "final")
            .await
            .map(|t| t.state == TaskState::Completed)
            .unwrap_or(false)
    })
    .await;
    let counts = c.get_task_counts("j").await.unwrap().task_counts;
    assert_eq!((counts.succeeded, counts.failed, counts.active), (16, 1, 1));
    let blocked = c.get_task("j", "blocked").await.unwrap();
    assert_eq!(blocked.state, TaskState::Active);
    assert!(blocked.execution_info.start_time.is_none());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = |what: &str| {
        lines
            .iter()
            .position(|l| *l == what)
            .unwrap_or_else(|| panic!("no '{what}' in {lines:?}"))
    };
    for (dependent, on) in &edges {
        let started = first(&format!("start {dependent}"));
        for parent in on {
            assert!(
                first(&format!("end {parent}")) < started,
                "{dependent} started before {parent} ended: {lines:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_node_agent_requeues_its_running_tasks() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 2, 2, json!({}))).await.unwrap();
    wait_idle(&c, "p", 2).await;
    c.create_job(&job("j", "p")).await.unwrap();
    // Each task notes its pid and node, so we can see the victim's processes die with it.
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("pids");
    let tasks: Vec<TaskCreate> = (0..4)
        .map(|i| {
            let cmd = format!(
                "/bin/sh -c \"echo $$ $AZ_BATCH_NODE_ID >> {}; exec sleep 5\"",
                pid_file.display()
            );
            task(&format!("t{i}"), &cmd, json!({}))
        })
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(Duration::from_secs(20), "4 running", || async {
        c.get_task_counts("j")
            .await
            .map(|t| t.task_counts.running == 4)
            .unwrap_or(false)
    })
    .await;
    wait_until(Duration::from_secs(10), "4 pids noted", || {
        let pid_file = pid_file.clone();
        async move {
            std::fs::read_to_string(&pid_file)
                .map(|s| s.lines().count() == 4)
                .unwrap_or(false)
        }
    })
    .await;
    let victim = c.list_nodes("p", &ListOptions::default()).await.unwrap()[0]
        .id
        .clone();
    let pid = s.agent_pid(&victim);
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    // The tasks die with their agent (through its task launcher), long before their 5 s end.
    let victims: Vec<i32> = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, node)| *node == victim)
        .map(|(pid, _)| pid.parse().unwrap())
        .collect();
    assert_eq!(victims.len(), 2, "the victim ran two tasks");
    wait_until(Duration::from_secs(2), "the victim's tasks to die", || {
        let victims = victims.clone();
        async move {
            // Gone, or a zombie waiting for a reaper (in a container, init may never reap).
            victims.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|stat| {
                        stat.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(true)
            })
        }
    })
    .await;
    wait_completed(&c, "j", 4, Duration::from_secs(60)).await;
    let tasks = c.list_tasks("j", &ListOptions::default()).await.unwrap();
    let requeued: Vec<_> = tasks
        .iter()
        .filter(|t| t.execution_info.requeue_count > 0)
        .collect();
    assert_eq!(requeued.len(), 2, "the victim's two tasks were requeued");
    assert!(tasks.iter().all(|t| t.execution_info.retry_count == 0));
    assert!(tasks
        .iter()
        .all(|t| t.execution_info.result.map(|r| r.as_str()) == Some("success")));
    // The pool replaced the lost node.
    wait_idle(&c, "p", 2).await;
    let ids: Vec<String> = c
        .list_nodes("p", &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(!ids.contains(&victim));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_is_refused_and_join_tokens_gate_remote_nodes() {
    let s = Server::start();
    let c = s.client();
    let creds = s.credentials();
    let bad = Client::new(
        creds["endpoint"].as_str().unwrap(),
        creds["accountName"].as_str().unwrap(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )
    .unwrap();
    let e = bad.list_pools(&ListOptions::default()).await.unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert_eq!(e.code(), Some("AuthenticationFailed"));

    // A pool with no local nodes, joined by an agent started by hand with a join token.
    c.create_pool(&pool("remote", 0, 1, json!({})))
        .await
        .unwrap();
    let endpoint = creds["endpoint"].as_str().unwrap();
    let token = mint_token(&s).await;
    let root = s.dir.with_extension("joined");
    let mut agent = Command::new(BIN)
        .args(["node", "join", endpoint, "--pool", "remote", "--root"])
        .arg(&root)
        .env("OPENBATCH_JOIN_TOKEN", &token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_idle(&c, "remote", 1).await;
    c.create_job(&job("j", "remote")).await.unwrap();
    c.create_task("j", &task("t", "/bin/sh -c \"echo joined\"", json!({})))
        .await
        .unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(30)).await;
    let out = c.download_task_file("j", "t", "stdout.txt").await.unwrap();
    assert_eq!(out.bytes().await.unwrap(), b"joined\n");
    let _ = agent.kill();
    let _ = agent.wait();

    // An unknown token is refused: the agent exits with an error.
    let status = Command::new(BIN)
        .args(["node", "join", endpoint, "--pool", "remote", "--root"])
        .arg(s.dir.with_extension("intruder"))
        .env("OPENBATCH_JOIN_TOKEN", "obt_000000000000_notatoken")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

/// `POST /openbatch/jointokens`, signed like any API call.
async fn mint_token(s: &Server) -> String {
    let out = Command::new(BIN)
        .args(["token", "create", "--data-dir"])
        .arg(&s.dir)
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
                if let Some(t) = v["token"].as_str() {
                    return t.to_string();
                }
            }
        }
    }
    panic!("could not mint a join token with `openbatch token create`");
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscale_grows_with_pending_tasks_and_shrinks_when_done() {
    let s = Server::start();
    let c = s.client();
    // An invalid formula is refused with where it went wrong.
    let bad = serde_json::from_value::<PoolCreate>(json!({
        "id": "bad", "vmSize": "Standard_D2s_v3", "enableAutoScale": true,
        "autoScaleFormula": "$TargetDedicatedNodes = min(3, ;", "autoScaleEvaluationInterval": "PT1S"
    }))
    .unwrap();
    let e = c.create_pool(&bad).await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.code(), Some("InvalidAutoScaleFormula"));

    let formula = "$TargetDedicatedNodes = min(3, $PendingTasks.GetSample(1));\n$NodeDeallocationOption = taskcompletion;";
    let pool: PoolCreate = serde_json::from_value(json!({
        "id": "auto", "vmSize": "Standard_D2s_v3", "enableAutoScale": true,
        "autoScaleFormula": formula, "autoScaleEvaluationInterval": "PT1S"
    }))
    .unwrap();
    c.create_pool(&pool).await.unwrap();
    wait_until(Duration::from_secs(20), "a first autoscale run", || async {
        c.get_pool("auto")
            .await
            .map(|p| p.auto_scale_run.is_some())
            .unwrap_or(false)
    })
    .await;
    assert_eq!(c.get_pool("auto").await.unwrap().target_dedicated_nodes, 0);

    c.create_job(&job("j", "auto")).await.unwrap();
    let tasks: Vec<TaskCreate> = (0..6)
        .map(|i| task(&format!("t{i}"), "/bin/sh -c \"sleep 2\"", json!({})))
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(
        Duration::from_secs(30),
        "the pool to grow to 3 nodes",
        || async {
            c.get_pool("auto")
                .await
                .map(|p| p.target_dedicated_nodes == 3)
                .unwrap_or(false)
        },
    )
    .await;
    wait_completed(&c, "j", 6, Duration::from_secs(60)).await;
    wait_until(
        Duration::from_secs(30),
        "the pool to shrink to 0",
        || async {
            c.get_pool("auto")
                .await
                .map(|p| p.target_dedicated_nodes == 0 && p.current_dedicated_nodes == 0)
                .unwrap_or(false)
        },
    )
    .await;
    let run = c.get_pool("auto").await.unwrap().auto_scale_run.unwrap();
    assert!(run.results.unwrap().starts_with("$TargetDedicatedNodes=0"));

    // Evaluate without applying; a manual resize is refused while autoscale is on.
    let eval = c
        .evaluate_auto_scale("auto", "$TargetDedicatedNodes = 2;")
        .await
        .unwrap();
    assert!(eval.results.unwrap().starts_with("$TargetDedicatedNodes=2"));
    assert_eq!(c.get_pool("auto").await.unwrap().target_dedicated_nodes, 0);
    let resize: openbatch_api::models::PoolResize =
        serde_json::from_value(json!({"targetDedicatedNodes": 1})).unwrap();
    assert_eq!(
        c.resize_pool("auto", &resize).await.unwrap_err().status(),
        Some(409)
    );
    c.disable_auto_scale("auto").await.unwrap();
    c.resize_pool("auto", &resize).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscale_reacts_to_work_on_an_empty_pool_without_waiting_for_its_interval() {
    let s = Server::start();
    let c = s.client();
    // A ten-minute interval: only an event can make this pool grow within the test.
    let pool: PoolCreate = serde_json::from_value(json!({
        "id": "ev", "vmSize": "Standard_D2s_v3", "enableAutoScale": true,
        "autoScaleFormula": "$TargetDedicatedNodes = min(2, $PendingTasks.GetSample(1));",
        "autoScaleEvaluationInterval": "PT10M"
    }))
    .unwrap();
    c.create_pool(&pool).await.unwrap();
    wait_until(Duration::from_secs(20), "the first evaluation", || async {
        c.get_pool("ev")
            .await
            .map(|p| p.auto_scale_run.is_some())
            .unwrap_or(false)
    })
    .await;
    c.create_job(&job("j", "ev")).await.unwrap();
    c.create_task("j", &task("t", "/bin/sh -c \"echo done\"", json!({})))
        .await
        .unwrap();
    wait_completed(&c, "j", 1, Duration::from_secs(30)).await;

    let history = c.autoscale_history("ev").await.unwrap();
    let triggers: Vec<&str> = history
        .iter()
        .filter_map(|e| e["trigger"].as_str())
        .collect();
    assert!(triggers.contains(&"event"), "{triggers:?} {history:#?}");
    assert_eq!(
        triggers.last(),
        Some(&"interval"),
        "the oldest is the first evaluation"
    );
    let grew = history
        .iter()
        .find(|e| e["trigger"] == "event" && e["applied"] == true)
        .expect("an applied event evaluation");
    assert!(grew["run"]["results"]
        .as_str()
        .unwrap()
        .starts_with("$TargetDedicatedNodes=1"));
}

/// Issue 6: a preemption during a run requeues and completes every task exactly once. The
/// victim's tasks get SIGTERM and find the notice file named by AZ_BATCH_TASK_PREEMPTION_NOTICE;
/// one kind exits cleanly at once, the other ignores SIGTERM and is killed at the end of the
/// grace period: both are requeued (requeueCount, no retry), and the node comes back under its
/// own id after `preempted`.
#[tokio::test(flavor = "multi_thread")]
async fn a_preemption_during_a_run_requeues_and_completes_every_task_once() {
    let s = Server::start();
    let c = s.client();
    let notices = tempfile::tempdir().unwrap();
    let nd = notices.path().display().to_string();
    c.create_pool(&pool("spot", 0, 2, json!({"targetLowPriorityNodes": 2})))
        .await
        .unwrap();
    wait_idle(&c, "spot", 2).await;
    let nodes = c.list_nodes("spot", &ListOptions::default()).await.unwrap();
    assert!(nodes.iter().all(|n| !n.is_dedicated));
    c.create_job(&job("j", "spot")).await.unwrap();
    let save = format!(r#"cp \"$AZ_BATCH_TASK_PREEMPTION_NOTICE\" {nd}/$AZ_BATCH_TASK_ID.notice"#);
    let tasks: Vec<TaskCreate> = (0..8)
        .map(|i| {
            // Each says it is ready once its trap is set: a SIGTERM before that would end the
            // shell before it could save the notice.
            let ready = format!("touch {nd}/$AZ_BATCH_TASK_ID.ready");
            let script = if i % 2 == 0 {
                format!("trap '{save}; exit 0' TERM; {ready}; sleep 4 & wait")
            } else {
                format!(
                    "trap '{save}' TERM; {ready}; i=0; while [ $i -lt 20 ]; do sleep 0.2; i=$((i+1)); done"
                )
            };
            task(
                &format!("t{i}"),
                &format!("/bin/sh -c \"{script}\""),
                json!({}),
            )
        })
        .collect();
    c.add_task_collection("j", &tasks).await.unwrap();
    wait_until(Duration::from_secs(20), "4 running", || async {
        c.get_task_counts("j")
            .await
            .map(|t| t.task_counts.running == 4)
            .unwrap_or(false)
    })
    .await;
    let victim = nodes[0].id.clone();
    wait_until(Duration::from_secs(10), "4 tasks ready", || {
        let dir = notices.path().to_path_buf();
        async move {
            std::fs::read_dir(&dir)
                .map(|d| {
                    d.filter(|e| {
                        e.as_ref()
                            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                    })
                    .count()
                        >= 4
                })
                .unwrap_or(false)
        }
    })
    .await;
    let victims: Vec<String> = c
        .list_tasks("j", &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.node_info.as_ref().and_then(|n| n.node_id.as_deref()) == Some(&victim))
        .map(|t| t.id)
        .collect();
    assert_eq!(victims.len(), 2, "two tasks run on the victim");
    c.preempt_node("spot", &victim, None).await.unwrap();
    // A node that is already being preempted cannot be preempted again.
    let again = c.preempt_node("spot", &victim, None).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("OperationInvalidForCurrentState"),
        "{again}"
    );

    wait_until(Duration::from_secs(15), "the victim preempted", || async {
        c.get_node("spot", &victim)
            .await
            .map(|n| n.state.as_str() == "preempted")
            .unwrap_or(false)
    })
    .await;
    // Preempted nodes still count in the pool's low-priority nodes, as in Azure.
    let p = c.get_pool("spot").await.unwrap();
    assert_eq!(p.current_low_priority_nodes, 2);

    wait_completed(&c, "j", 8, Duration::from_secs(90)).await;
    let all = c.list_tasks("j", &ListOptions::default()).await.unwrap();
    for t in &all {
        let e = &t.execution_info;
        assert_eq!(e.result.map(|r| r.as_str()), Some("success"), "{}", t.id);
        assert_eq!(e.retry_count, 0, "{}: no retry used", t.id);
        let want = i32::from(victims.contains(&t.id));
        assert_eq!(
            e.requeue_count, want,
            "{}: requeued iff it ran on the victim",
            t.id
        );
    }
    for v in &victims {
        let notice = std::fs::read_to_string(notices.path().join(format!("{v}.notice")))
            .unwrap_or_else(|e| panic!("task {v} found no preemption notice: {e}"));
        let notice: serde_json::Value = serde_json::from_str(&notice).unwrap();
        assert_eq!(notice["nodeId"], victim.as_str());
        assert_eq!(notice["gracePeriodSeconds"], 3.0);
        assert!(notice["deadline"].is_string());
    }
    // The capacity came back under the same id.
    wait_idle(&c, "spot", 2).await;
    let ids: Vec<String> = c
        .list_nodes("spot", &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(ids.contains(&victim), "{ids:?}");
}

/// Issue 6: agents report their node's CPU, memory, disk and network, and formulas read them
/// ($CPUPercent, $MemoryBytes in MB, $DiskBytes in GB, traffic counters).
#[tokio::test(flavor = "multi_thread")]
async fn formulas_read_the_resource_metrics_that_agents_report() {
    let s = Server::start();
    let c = s.client();
    let spec: PoolCreate = serde_json::from_value(json!({
        "id": "m", "vmSize": "Standard_D2s_v3", "enableAutoScale": true,
        "autoScaleFormula": "$TargetDedicatedNodes = 1;", "autoScaleEvaluationInterval": "PT5M",
    }))
    .unwrap();
    c.create_pool(&spec).await.unwrap();
    wait_idle(&c, "m", 1).await;
    let formula = "cpu = avg($CPUPercent.GetSample(1)); mem = avg($MemoryBytes.GetSample(1)); \
                   disk = avg($DiskBytes.GetSample(1)); net = avg($NetworkInBytes.GetSample(1)); \
                   $TargetDedicatedNodes = 1;";
    let deadline = Instant::now() + Duration::from_secs(20);
    let values: std::collections::HashMap<String, String> = loop {
        let results = c
            .evaluate_auto_scale("m", formula)
            .await
            .ok()
            .filter(|run| run.error.is_none())
            .and_then(|run| run.results);
        if let Some(results) = results {
            break results
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for metric samples"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let num = |k: &str| -> f64 {
        values
            .get(k)
            .unwrap_or_else(|| panic!("{k} in {values:?}"))
            .parse()
            .unwrap()
    };
    assert!((0.0..=100.0).contains(&num("cpu")), "{values:?}");
    assert!(num("mem") > 1.0, "megabytes of memory in use: {values:?}");
    assert!(num("disk") > 0.0, "gigabytes of disk in use: {values:?}");
    assert!(num("net") >= 0.0, "{values:?}");
}

/// The default auto-storage is a directory the server serves to its nodes over HTTP: a task
/// stages `autoStorageContainerName` inputs from it and uploads its outputs to a container URL
/// signed by `openbatch storage sas`.
#[tokio::test(flavor = "multi_thread")]
async fn local_auto_storage_stages_inputs_and_receives_outputs() {
    let s = Server::start();
    let c = s.client();
    let inputs = s.dir.join("storage/inputs/set1");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(inputs.join("b.txt"), "beta\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "storage",
            "sas",
            "results",
            "--permissions",
            "cw",
            "--data-dir",
        ])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sas: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results_url = sas["containerUrl"].as_str().unwrap().to_string();
    assert!(
        results_url.contains("/openbatch/storage/results?"),
        "{results_url}"
    );

    c.create_pool(&pool("stpool", 1, 1, json!({})))
        .await
        .unwrap();
    wait_idle(&c, "stpool", 1).await;
    c.create_job(&job("stjob", "stpool")).await.unwrap();
    c.create_task(
        "stjob",
        &task(
            "t1",
            "/bin/sh -c 'cat in/set1/a.txt in/set1/b.txt > joined.txt'",
            json!({
                "resourceFiles": [{"autoStorageContainerName": "inputs", "blobPrefix": "set1/", "filePath": "in"}],
                "outputFiles": [{
                    "filePattern": "*.txt",
                    "destination": {"container": {"containerUrl": results_url, "path": "t1"}},
                    "uploadOptions": {"uploadCondition": "tasksuccess"}
                }]
            }),
        ),
    )
    .await
    .unwrap();
    wait_completed(&c, "stjob", 1, Duration::from_secs(60)).await;
    let t = c.get_task("stjob", "t1").await.unwrap();
    assert!(
        t.execution_info.failure_info.is_none(),
        "{:?}",
        t.execution_info.failure_info
    );
    assert_eq!(
        std::fs::read_to_string(s.dir.join("storage/results/t1/joined.txt")).unwrap(),
        "alpha\nbeta\n"
    );
}

/// `GET /openbatch/jobs/{job}/tasks/{task}/explain` and `openbatch task explain`: a task
/// waiting for the only slot says so, with its place in the queue; a task that needs more slots
/// than a node has completes at once, failed; a wrong key is refused here too.
#[tokio::test(flavor = "multi_thread")]
async fn explain_says_why_a_task_waits_and_too_big_tasks_fail_fast() {
    let s = Server::start();
    let c = s.client();
    c.create_pool(&pool("p", 1, 1, json!({}))).await.unwrap();
    wait_idle(&c, "p", 1).await;
    c.create_job(&job("j", "p")).await.unwrap();
    c.create_task("j", &task("long", "/bin/sh -c \"sleep 60\"", json!({})))
        .await
        .unwrap();
    wait_until(Duration::from_secs(20), "long running", || async {
        c.get_task("j", "long")
            .await
            .is_ok_and(|t| t.state == TaskState::Running)
    })
    .await;
    for id in ["w1", "w2"] {
        c.create_task("j", &task(id, "/bin/true", json!({})))
            .await
            .unwrap();
    }
    c.create_task("j", &task("huge", "/bin/true", json!({"requiredSlots": 2})))
        .await
        .unwrap();

    let huge = c.get_task("j", "huge").await.unwrap();
    assert_eq!(huge.state, TaskState::Completed);
    let f = huge.execution_info.failure_info.expect("failure info");
    assert_eq!(f.code.as_deref(), Some("TaskRequiresMoreSlotsThanNodeHas"));

    let x = c.explain_task("j", "w2").await.unwrap();
    assert_eq!(x.reason.as_str(), "waitingForSlot");
    assert_eq!(x.tasks_ahead, Some(1));
    let p = x.pool.expect("pool");
    assert_eq!((p.free_slots, p.total_slots), (0, 1));
    let x = c.explain_task("j", "long").await.unwrap();
    assert_eq!(x.reason.as_str(), "running");
    let e = c.explain_task("j", "nope").await.unwrap_err();
    assert_eq!(e.status(), Some(404));

    // The CLI, as JSON and as text.
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("OPENBATCH_DATA_DIR", &s.dir)
            .env_remove("OPENBATCH_ENDPOINT")
            .env_remove("OPENBATCH_ACCOUNT_NAME")
            .env_remove("OPENBATCH_ACCOUNT_KEY")
            .output()
            .expect("run the CLI")
    };
    let out = cli(&["task", "explain", "j", "w1", "--output", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["reason"], "waitingForSlot");
    assert_eq!(v["tasksAhead"], 0);
    let out = cli(&["task", "explain", "j", "huge"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("completed"), "{text}");
    assert!(text.contains("TaskRequiresMoreSlotsThanNodeHas"), "{text}");

    // Shared Key like every other operation.
    let creds = s.credentials();
    let bad = Client::new(
        creds["endpoint"].as_str().unwrap(),
        creds["accountName"].as_str().unwrap(),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    )
    .unwrap();
    let e = bad.explain_task("j", "w1").await.unwrap_err();
    assert_eq!(e.status(), Some(403));

    c.terminate_task("j", "long").await.unwrap();
    wait_completed(&c, "j", 4, Duration::from_secs(30)).await;
}
