//! Task logs that outlive the node (issue 5, part 5): the real `openbatch` binary as a server
//! with real node agents. A run's `stdout.txt`/`stderr.txt` are kept in auto-storage when it
//! ends, served from there once the node is gone, and `openbatch task log --follow` streams a
//! running task's output.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_until, Server, BIN};

use openbatch_api::models::{JobCreate, PoolCreate, PoolResize, TaskCreate, TaskState};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

fn pool(id: &str, extra: serde_json::Value) -> PoolCreate {
    let mut v = json!({"id": id, "vmSize": "Standard_D2s_v3", "taskSlotsPerNode": 1});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

fn job(id: &str, pool: &str) -> JobCreate {
    serde_json::from_value(json!({"id": id, "poolInfo": {"poolId": pool}})).unwrap()
}

fn task(id: &str, cmd: &str) -> TaskCreate {
    serde_json::from_value(json!({"id": id, "commandLine": cmd})).unwrap()
}

async fn add(c: &Client, job: &str, t: TaskCreate) {
    let added = c.add_task_collection(job, &[t]).await.unwrap();
    assert!(added.iter().all(|r| r.error.is_none()), "{added:?}");
}

async fn wait_nodes(c: &Client, pool: &str, n: usize, state: &str) {
    wait_until(Duration::from_secs(30), "nodes", || async {
        let nodes = c
            .list_nodes(pool, &ListOptions::default())
            .await
            .unwrap_or_default();
        nodes.len() == n && nodes.iter().all(|x| x.state.as_str() == state)
    })
    .await;
}

async fn wait_task(c: &Client, job: &str, task: &str, state: TaskState) {
    wait_until(Duration::from_secs(60), "the task's state", || async {
        c.get_task(job, task).await.is_ok_and(|t| t.state == state)
    })
    .await;
}

async fn stdout_of(c: &Client, job: &str, task: &str) -> String {
    let bytes = c
        .get_task_file(job, task, "stdout.txt", None)
        .await
        .unwrap_or_else(|e| panic!("stdout.txt of {job}/{task}: {e}"));
    String::from_utf8(bytes).unwrap()
}

/// A task's stdout and stderr are read from the node while it is there, then from the kept copy
/// once the pool was resized to zero, and still after the pool was deleted: the same bytes,
/// ranges, properties and file list.
#[tokio::test(flavor = "multi_thread")]
async fn logs_outlive_a_removed_node_and_a_deleted_pool() {
    let s = Server::start_with(&[
        // Time to look at a preempted node before it is back.
        ("OPENBATCH_PREEMPTION_GRACE", "2"),
        ("OPENBATCH_PREEMPTION_RECOVERY", "8"),
    ]);
    let c = s.client();
    c.create_pool(&pool("p", json!({"targetDedicatedNodes": 1})))
        .await
        .unwrap();
    wait_nodes(&c, "p", 1, "idle").await;
    c.create_job(&job("j", "p")).await.unwrap();
    add(
        &c,
        "j",
        task("t", r#"/bin/sh -c "echo hello from t; echo oops >&2""#),
    )
    .await;
    wait_task(&c, "j", "t", TaskState::Completed).await;
    // A task that writes nothing to stderr: its empty log is not stored as an object.
    add(&c, "j", task("quiet", r#"/bin/sh -c "echo only out""#)).await;
    wait_task(&c, "j", "quiet", TaskState::Completed).await;
    assert_eq!(stdout_of(&c, "j", "t").await, "hello from t\n");
    let on_node = c
        .get_task_file_properties("j", "t", "stdout.txt")
        .await
        .unwrap();

    c.resize_pool(
        "p",
        &serde_json::from_value::<PoolResize>(json!({"targetDedicatedNodes": 0})).unwrap(),
    )
    .await
    .unwrap();
    wait_nodes(&c, "p", 0, "idle").await;

    // The node is gone: the kept copy answers.
    assert_eq!(stdout_of(&c, "j", "t").await, "hello from t\n");
    let err = c.get_task_file("j", "t", "stderr.txt", None).await.unwrap();
    assert_eq!(err, b"oops\n");
    let kept = c
        .get_task_file_properties("j", "t", "stdout.txt")
        .await
        .unwrap();
    assert_eq!(kept.content_length, on_node.content_length);
    assert!(kept.creation_time.is_some());
    assert!(!kept.is_directory);
    assert!(kept
        .url
        .unwrap()
        .ends_with("/jobs/j/tasks/t/files/stdout.txt"));
    let part = c
        .get_task_file("j", "t", "stdout.txt", Some(6..=9))
        .await
        .unwrap();
    assert_eq!(part, b"from");
    let names: Vec<String> = c
        .list_task_files("j", "t", false, &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["stderr.txt", "stdout.txt"]);
    let kept_quiet = s.dir.join("storage/openbatch-logs/jobs/j/quiet");
    let blobs: Vec<String> = std::fs::read_dir(&kept_quiet)
        .unwrap()
        .flat_map(|run| std::fs::read_dir(run.unwrap().path()).unwrap())
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(blobs, ["stdout.txt"], "no object for the empty stderr.txt");
    assert_eq!(stdout_of(&c, "j", "quiet").await, "only out\n");
    let quiet_err = c
        .get_task_file("j", "quiet", "stderr.txt", None)
        .await
        .unwrap();
    assert!(quiet_err.is_empty());
    let quiet_files: Vec<(String, Option<u64>)> = c
        .list_task_files("j", "quiet", false, &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.properties.map(|p| p.content_length)))
        .collect();
    assert_eq!(
        quiet_files,
        [
            ("stderr.txt".to_string(), Some(0)),
            ("stdout.txt".to_string(), Some(9))
        ]
    );
    // Only the logs are kept: other files of the task are gone with the node.
    let wd = c
        .get_task_file("j", "t", "wd/nothing.txt", None)
        .await
        .unwrap_err();
    assert_eq!(wd.status(), Some(409), "{wd}");

    c.delete_pool("p").await.unwrap();
    wait_until(Duration::from_secs(30), "the pool deleted", || async {
        c.pool_exists("p").await.is_ok_and(|e| !e)
    })
    .await;
    assert_eq!(stdout_of(&c, "j", "t").await, "hello from t\n");

    // A task that never ran has no logs anywhere: as before, no file.
    add(&c, "j", task("never", "/bin/true")).await;
    let none = c
        .get_task_file("j", "never", "stdout.txt", None)
        .await
        .unwrap_err();
    assert_eq!(none.status(), Some(409), "{none}");
}

/// A preempted node is stopped and comes back wiped; while it is away, the kept copy of the
/// attempt that ran there answers. The second attempt's output replaces it as the latest.
#[tokio::test(flavor = "multi_thread")]
async fn a_preempted_node_still_serves_the_logs_of_its_attempt() {
    let s = Server::start_with(&[
        // Time to look at a preempted node before it is back.
        ("OPENBATCH_PREEMPTION_GRACE", "2"),
        ("OPENBATCH_PREEMPTION_RECOVERY", "8"),
    ]);
    let c = s.client();
    let marks = tempfile::tempdir().unwrap();
    let count = marks.path().join("count").display().to_string();
    c.create_pool(&pool("spot", json!({"targetLowPriorityNodes": 1})))
        .await
        .unwrap();
    wait_nodes(&c, "spot", 1, "idle").await;
    let node = c.list_nodes("spot", &ListOptions::default()).await.unwrap()[0]
        .id
        .clone();
    c.create_job(&job("j", "spot")).await.unwrap();
    // The first attempt prints and waits to be preempted; the second prints and ends.
    let script = format!(
        "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; echo attempt-$n; \
         if [ $n = 1 ]; then trap 'exit 0' TERM; sleep 60 & wait; fi"
    );
    add(&c, "j", task("t", &format!("/bin/sh -c \"{script}\""))).await;
    wait_until(
        Duration::from_secs(30),
        "the first attempt printed",
        || async {
            c.get_task_file("j", "t", "stdout.txt", None)
                .await
                .is_ok_and(|b| b == b"attempt-1\n")
        },
    )
    .await;
    c.preempt_node("spot", &node, None).await.unwrap();
    wait_until(Duration::from_secs(15), "the node preempted", || async {
        c.get_node("spot", &node)
            .await
            .is_ok_and(|n| n.state.as_str() == "preempted")
    })
    .await;
    assert_eq!(stdout_of(&c, "j", "t").await, "attempt-1\n");

    wait_task(&c, "j", "t", TaskState::Completed).await;
    assert_eq!(stdout_of(&c, "j", "t").await, "attempt-2\n");
    let t = c.get_task("j", "t").await.unwrap();
    assert_eq!(t.execution_info.requeue_count, 1);
}

/// `openbatch task log --follow` prints the lines of a slow task as it writes them, and exits
/// once the task completed and its last line was printed.
#[tokio::test(flavor = "multi_thread")]
async fn task_log_follow_prints_lines_as_they_are_written() {
    let s = Server::start_with(&[
        // Time to look at a preempted node before it is back.
        ("OPENBATCH_PREEMPTION_GRACE", "2"),
        ("OPENBATCH_PREEMPTION_RECOVERY", "8"),
    ]);
    let c = s.client();
    c.create_pool(&pool("p", json!({"targetDedicatedNodes": 1})))
        .await
        .unwrap();
    wait_nodes(&c, "p", 1, "idle").await;
    c.create_job(&job("j", "p")).await.unwrap();
    add(
        &c,
        "j",
        task(
            "slow",
            r#"/bin/sh -c "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.6; done""#,
        ),
    )
    .await;
    wait_task(&c, "j", "slow", TaskState::Running).await;

    let mut child = Command::new(BIN)
        .args(["task", "log", "j", "slow", "--follow", "--data-dir"])
        .arg(&s.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openbatch task log");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // The first line arrives while the task still runs.
    let (_, first) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a first line");
    assert_eq!(first, "line-1");
    let t = c.get_task("j", "slow").await.unwrap();
    assert_eq!(
        t.state,
        TaskState::Running,
        "the first line came before the end"
    );
    let mut lines = vec![first];
    let mut times = Vec::new();
    while let Ok((at, line)) = rx.recv_timeout(Duration::from_secs(20)) {
        times.push(at);
        lines.push(line);
    }
    let want: Vec<String> = (1..=6).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want);
    // Lines came as they were written, not all at once at the end.
    let spread = *times.last().unwrap() - times[0];
    assert!(spread >= Duration::from_secs(1), "{spread:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "task log --follow did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        c.get_task("j", "slow").await.unwrap().state,
        TaskState::Completed
    );
}
