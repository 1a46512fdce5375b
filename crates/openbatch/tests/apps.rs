//! Application packages end to end, on the real binary: packages uploaded with the CLI, a pool
//! whose start task uses one, a task that names a version, the default version and the
//! pool's references switched while the pool runs (the nodes install the new version at once),
//! one download per node per version, and a package that tries to write outside its directory.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use openbatch_api::models::{PoolUpdate, Task};
use openbatch_client::{Client, ListOptions};
use serde_json::json;
use zip::write::SimpleFileOptions;

/// A package with `bin/hello.sh` (executable) that prints its version.
fn make_package(path: &Path, version: &str) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    w.start_file(
        "bin/hello.sh",
        SimpleFileOptions::default().unix_permissions(0o755),
    )
    .unwrap();
    write!(w, "#!/bin/sh\necho \"hello from v{version}\"\n").unwrap();
    w.start_file(
        "README.txt",
        SimpleFileOptions::default().unix_permissions(0o644),
    )
    .unwrap();
    w.write_all(b"a test package\n").unwrap();
    w.finish().unwrap();
}

async fn stdout(c: &Client, job: &str, task: &str) -> String {
    String::from_utf8(
        c.get_task_file(job, task, "stdout.txt", None)
            .await
            .unwrap(),
    )
    .unwrap()
}

async fn completed(c: &Client, job: &str, task: &str) -> Task {
    wait_until(Duration::from_secs(60), "the task to complete", || async {
        c.get_task(job, task)
            .await
            .is_ok_and(|t| t.state.as_str() == "completed")
    })
    .await;
    c.get_task(job, task).await.unwrap()
}

/// Installs recorded in each node's `applications/installs.log`: (app, version) -> count.
async fn installs(c: &Client, pool: &str) -> BTreeMap<String, BTreeMap<(String, String), usize>> {
    let mut out = BTreeMap::new();
    for n in c.list_nodes(pool, &ListOptions::default()).await.unwrap() {
        let log = c
            .get_node_file(pool, &n.id, "applications/installs.log", None)
            .await
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or_default();
        let mut counts = BTreeMap::new();
        for line in log.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            *counts
                .entry((f[1].to_string(), f[2].to_string()))
                .or_insert(0) += 1;
        }
        out.insert(n.id, counts);
    }
    out
}

fn app_blobs(server: &Server) -> usize {
    fn walk(d: &Path) -> usize {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&server.dir.join("storage/openbatch-apps"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_for_start_task_and_tasks_with_versions_switched_while_the_pool_runs() {
    let mut server = Server::start();
    let c = server.client();
    let tmp = tempfile::tempdir().unwrap();
    let (v1, v2) = (tmp.path().join("v1.zip"), tmp.path().join("v2.zip"));
    make_package(&v1, "1");
    make_package(&v2, "2");

    // Upload two versions with the CLI; the first becomes the default.
    server.cli_ok(&[
        "app",
        "upload",
        "hello",
        "1",
        v1.to_str().unwrap(),
        "--display-name",
        "Hello",
        "--set-default",
    ]);
    server.cli_ok(&["app", "upload", "hello", "2", v2.to_str().unwrap()]);
    let listed: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["app", "list", "-o", "json"])).unwrap();
    assert_eq!(listed[0]["id"], "hello");
    assert_eq!(listed[0]["displayName"], "Hello");
    assert_eq!(listed[0]["defaultVersion"], "1");
    assert_eq!(listed[0]["packages"].as_array().unwrap().len(), 2);
    assert!(server
        .cli_ok(&["app", "show", "hello"])
        .contains("version 2"));
    // Azure's data-plane view.
    let apps = c.list_applications().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].versions, ["1", "2"]);
    assert_eq!(c.get_application("HELLO").await.unwrap().id, "hello");
    let missing = c.get_application("nope").await.unwrap_err();
    assert_eq!(missing.code(), Some("ApplicationNotFound"));

    // Something that is not a zip is refused and leaves nothing behind.
    let not_zip = tmp.path().join("not.zip");
    std::fs::write(&not_zip, "just text").unwrap();
    let out = server.cli(&["app", "upload", "hello", "3", not_zip.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidRequestBody"));
    assert_eq!(
        c.get_application("hello").await.unwrap().versions,
        ["1", "2"]
    );
    assert_eq!(app_blobs(&server), 2);

    // A pool whose start task runs the default version of the package.
    c.create_pool(&pool(
        "p",
        2,
        1,
        json!({
            "startTask": {
                "commandLine": "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello/bin/hello.sh > $AZ_BATCH_NODE_SHARED_DIR/start.txt'",
                "waitForSuccess": true
            },
            "applicationPackageReferences": [{"applicationId": "hello"}]
        }),
    ))
    .await
    .unwrap();
    wait_idle(&c, "p", 2).await;
    let nodes = c.list_nodes("p", &ListOptions::default()).await.unwrap();
    for n in &nodes {
        let start = c
            .get_node_file("p", &n.id, "shared/start.txt", None)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(start).unwrap(), "hello from v1\n");
    }

    // A task that names version 2 sees both: its own, and the pool's default.
    c.create_job(&job("j", "p")).await.unwrap();
    c.create_task(
        "j",
        &task(
            "t1",
            "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_2/bin/hello.sh; $AZ_BATCH_APP_PACKAGE_hello/bin/hello.sh; $AZ_BATCH_APP_PACKAGE_hello_1/bin/hello.sh'",
            json!({"applicationPackageReferences": [{"applicationId": "hello", "version": "2"}]}),
        ),
    )
    .await
    .unwrap();
    let t1 = completed(&c, "j", "t1").await;
    assert_eq!(t1.execution_info.exit_code, Some(0));
    assert_eq!(
        stdout(&c, "j", "t1").await,
        "hello from v2\nhello from v1\nhello from v1\n"
    );

    // Switch the default version while the pool runs: the next tasks, on every node, get it.
    server.cli_ok(&["app", "set-default", "hello", "2"]);
    // The nodes already in the pool install the new default at once, before any task asks.
    wait_until(
        Duration::from_secs(30),
        "every node to install v2",
        || async {
            installs(&c, "p")
                .await
                .values()
                .all(|counts| counts.contains_key(&("hello".to_string(), "2".to_string())))
        },
    )
    .await;
    let shows_default = "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello/bin/hello.sh; sleep 1'";
    for t in ["t2", "t3"] {
        c.create_task("j", &task(t, shows_default, json!({})))
            .await
            .unwrap();
    }
    let mut ran_on = Vec::new();
    for t in ["t2", "t3"] {
        let done = completed(&c, "j", t).await;
        ran_on.push(done.node_info.unwrap().node_id.unwrap());
        assert_eq!(stdout(&c, "j", t).await, "hello from v2\n");
    }
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(ran_on.len(), 2, "both nodes ran a task after the switch");

    // Switch the pool's reference to an explicit version 1: no default variable any more.
    let update: PoolUpdate = serde_json::from_value(
        json!({"applicationPackageReferences": [{"applicationId": "hello", "version": "1"}]}),
    )
    .unwrap();
    c.update_pool("p", &update).await.unwrap();
    c.create_task(
        "j",
        &task(
            "t4",
            "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_1/bin/hello.sh; echo ${AZ_BATCH_APP_PACKAGE_hello:-none}'",
            json!({}),
        ),
    )
    .await
    .unwrap();
    completed(&c, "j", "t4").await;
    assert_eq!(stdout(&c, "j", "t4").await, "hello from v1\nnone\n");

    // Each node downloaded each version it used exactly once.
    let per_node = installs(&c, "p").await;
    assert_eq!(per_node.len(), 2);
    for (node, counts) in &per_node {
        assert_eq!(
            counts.get(&("hello".into(), "1".into())),
            Some(&1),
            "{node}: {counts:?}"
        );
        assert_eq!(
            counts.get(&("hello".into(), "2".into())),
            Some(&1),
            "{node}: {counts:?}"
        );
    }
    let layout = c
        .list_node_files("p", &nodes[0].id, true, &ListOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = layout.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("applications/hello1.")),
        "{names:?}"
    );

    // A version the pool uses cannot be deleted; one it no longer uses can.
    let out = server.cli(&["app", "delete", "hello", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ApplicationPackageInUse"));
    server.cli_ok(&["app", "delete", "hello", "2"]);
    assert_eq!(c.get_application("hello").await.unwrap().versions, ["1"]);
    wait_until(Duration::from_secs(10), "the blob to go", || async {
        app_blobs(&server) == 1
    })
    .await;
    // A task that names a version that does not exist is refused.
    let refused = c
        .create_task(
            "j",
            &task(
                "t5",
                "/bin/true",
                json!({"applicationPackageReferences": [{"applicationId": "hello", "version": "2"}]}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("InvalidApplicationPackageReferences"));

    // A package with an entry that escapes its directory fails the task that needs it, as a
    // pre-processing error, and writes nothing outside.
    let evil = tmp.path().join("evil.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
        w.start_file("ok.txt", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"ok").unwrap();
        w.start_file("../../escaped.txt", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"evil").unwrap();
        w.finish().unwrap();
    }
    server.cli_ok(&["app", "upload", "evil", "1", evil.to_str().unwrap()]);
    c.create_task(
        "j",
        &task(
            "t6",
            "/bin/true",
            json!({"applicationPackageReferences": [{"applicationId": "evil", "version": "1"}]}),
        ),
    )
    .await
    .unwrap();
    let t6 = completed(&c, "j", "t6").await;
    let info = t6.execution_info;
    let failure = info.failure_info.unwrap();
    assert_eq!(
        failure.code.as_deref(),
        Some("ApplicationPackageInstallFailed")
    );
    assert_eq!(failure.category.as_str(), "usererror");
    assert!(failure.message.unwrap().contains("outside"));
    assert_eq!(info.exit_code, None);
    let node = t6.node_info.unwrap().node_id.unwrap();
    let escaped = server
        .dir
        .join("nodes")
        .join(&node)
        .join("root/escaped.txt");
    assert!(!escaped.exists());
    let names: Vec<String> = c
        .list_node_files("p", &node, true, &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("applications/evil")),
        "nothing of a failed install stays: {names:?}"
    );

    // The applications are durable: after a kill -9 and a restart they are all there, and a
    // task still gets its package (already installed on the node, not downloaded again).
    server.kill9();
    server.spawn();
    let c = server.client();
    let apps: Vec<(String, Vec<String>)> = c
        .list_applications()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.versions))
        .collect();
    assert_eq!(
        apps,
        [
            ("evil".to_string(), vec!["1".to_string()]),
            ("hello".to_string(), vec!["1".to_string()])
        ]
    );
    wait_idle(&c, "p", 2).await;
    c.create_task(
        "j",
        &task(
            "t7",
            "/bin/sh -c '$AZ_BATCH_APP_PACKAGE_hello_1/bin/hello.sh'",
            json!({}),
        ),
    )
    .await
    .unwrap();
    completed(&c, "j", "t7").await;
    assert_eq!(stdout(&c, "j", "t7").await, "hello from v1\n");
    for (node, counts) in installs(&c, "p").await {
        assert_eq!(counts.values().sum::<usize>(), 2, "{node}: {counts:?}");
    }
}
