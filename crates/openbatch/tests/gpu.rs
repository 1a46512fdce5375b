//! GPU sizes on the local provider, end to end with the real binary.
//!
//! - `fake_gpus_*` and `no_gpus_*`/`ignore_*` run everywhere: `OPENBATCH_GPU_DISCOVERY_CMD`
//!   stands in for `nvidia-smi` (it prints the same CSV), so assignment, the environment tasks
//!   get, the resize error and the restart are checked on machines without GPUs.
//! - `real_gpu_*` runs only where `nvidia-smi -L` lists a GPU, and otherwise passes after
//!   printing "skipped: no GPU". It was run on an NVIDIA H100 (one GPU) machine with this test
//!   binary and `openbatch` copied there (`OPENBATCH_TEST_BIN=.../openbatch ./gpu-test`); all 4
//!   tests passed, and the real-GPU one printed:
//!
//!   ```text
//!   host GPUs: ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-6d8d778f-9aec-d33c-c672-d18ce8381bac)"]
//!   task stdout:
//!   CUDA_VISIBLE_DEVICES=GPU-6d8d778f-9aec-d33c-c672-d18ce8381bac
//!   GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-6d8d778f-9aec-d33c-c672-d18ce8381bac)
//!   selected:
//!   0, GPU-6d8d778f-9aec-d33c-c672-d18ce8381bac, NVIDIA H100 80GB HBM3
//!   CUDA in the task: cuInit=0 devices=1
//!   openbatch node show: ... gpu  0: NVIDIA H100 80GB HBM3 (GPU-6d8d778f-..., 81559 MiB)
//!   resizeErrors: [ResizeError { code: Some("AllocationFailed"), message: Some("A node of VM
//!     size Standard_NC6s_v3 needs 1 GPU of its own, and 0 of this machine's 1 GPU are free
//!     ..."), values: [VmSize, GpusNeeded 1, GpusFree 0, GpusTotal 1] }]
//!   ```

mod common;

use std::time::Duration;

use common::{job, pool, task, wait_until, Server};
use openbatch_api::models::{AllocationState, PoolResize, ResizeError, TaskState};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

/// Prints both variables the agent sets, on one line.
const SHOW_ENV: &str =
    "/bin/sh -c 'echo \"CVD=[$CUDA_VISIBLE_DEVICES] NVD=[$NVIDIA_VISIBLE_DEVICES]\"'";

fn fake_gpus(n: usize) -> String {
    let lines: Vec<String> = (0..n)
        .map(|i| format!("{i}, GPU-fake-{i}, Fake GPU, 1024"))
        .collect();
    format!("printf '{}\\n'", lines.join("\\n"))
}

fn resize(n: i32) -> PoolResize {
    serde_json::from_value(json!({"targetDedicatedNodes": n})).unwrap()
}

fn gpu_pool(id: &str, nodes: i32, extra: serde_json::Value) -> openbatch_api::models::PoolCreate {
    let mut p = pool(id, nodes, 1, extra);
    p.vm_size = "Standard_NC6s_v3".into();
    p
}

async fn node_ids(c: &Client, pool: &str) -> Vec<String> {
    let mut ids: Vec<String> = c
        .list_nodes(pool, &ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    ids.sort();
    ids
}

async fn wait_idle_nodes(c: &Client, pool: &str, n: usize) {
    wait_until(LIMIT, "nodes idle", || async {
        let nodes = c
            .list_nodes(pool, &ListOptions::default())
            .await
            .unwrap_or_default();
        nodes.len() == n && nodes.iter().all(|x| x.state.as_str() == "idle")
    })
    .await;
}

/// Waits until the pool's resize has ended with errors, and returns them.
async fn wait_resize_error(c: &Client, pool: &str) -> Vec<ResizeError> {
    wait_until(LIMIT, "a resize error", || async {
        c.get_pool(pool).await.is_ok_and(|p| {
            !p.resize_errors.is_empty() && p.allocation_state == AllocationState::Steady
        })
    })
    .await;
    c.get_pool(pool).await.unwrap().resize_errors
}

/// The start task's stdout on a node (`CVD=[...] NVD=[...]`).
async fn start_task_out(c: &Client, pool: &str, node: &str) -> String {
    let out = c
        .get_node_file(pool, node, "startup/stdout.txt", None)
        .await
        .unwrap();
    String::from_utf8(out).unwrap().trim().to_string()
}

async fn task_out(c: &Client, job: &str, task: &str) -> String {
    let out = c
        .get_task_file(job, task, "stdout.txt", None)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn wait_task_done(c: &Client, job: &str, task: &str) {
    wait_until(LIMIT, "the task to complete", || async {
        c.get_task(job, task)
            .await
            .is_ok_and(|t| t.state == TaskState::Completed)
    })
    .await;
    let t = c.get_task(job, task).await.unwrap();
    let info = t.execution_info;
    assert_eq!(info.exit_code, Some(0), "{job}/{task}: {info:?}");
}

fn value<'a>(e: &'a ResizeError, name: &str) -> &'a str {
    e.values
        .iter()
        .find(|v| v.name.as_deref() == Some(name))
        .and_then(|v| v.value.as_deref())
        .unwrap_or_else(|| panic!("no {name} in {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_gpus_are_assigned_one_per_node_kept_across_a_restart_and_released() {
    let discovery = fake_gpus(2);
    let mut server = Server::start_with(&[("OPENBATCH_GPU_DISCOVERY_CMD", &discovery)]);
    let c = server.client();
    c.create_pool(&gpu_pool(
        "gp",
        2,
        json!({"startTask": {"commandLine": SHOW_ENV, "waitForSuccess": true}}),
    ))
    .await
    .unwrap();
    wait_idle_nodes(&c, "gp", 2).await;
    let nodes = node_ids(&c, "gp").await;
    // Each node's start task saw exactly one GPU, a different one.
    let mut seen = Vec::new();
    for n in &nodes {
        let out = start_task_out(&c, "gp", n).await;
        let gpu = out
            .strip_prefix("CVD=[")
            .and_then(|r| r.split_once(']'))
            .map(|(g, _)| g.to_string())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(gpu.starts_with("GPU-fake-"), "{out}");
        assert_eq!(out, format!("CVD=[{gpu}] NVD=[{gpu}]"));
        // `openbatch node show` names it.
        let shown = server.cli_ok(&["node", "show", "gp", n]);
        assert!(
            shown.contains(&format!(": Fake GPU ({gpu}, 1024 MiB)")),
            "{shown}"
        );
        seen.push(gpu);
    }
    seen.sort();
    assert_eq!(seen, ["GPU-fake-0", "GPU-fake-1"]);

    // Tasks (and job preparation) see their node's GPU; the user's own setting wins.
    c.create_job(
        &serde_json::from_value(json!({
            "id": "j", "poolInfo": {"poolId": "gp"},
            "jobPreparationTask": {"commandLine": SHOW_ENV},
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    c.create_task("j", &task("t", SHOW_ENV, json!({})))
        .await
        .unwrap();
    c.create_task(
        "j",
        &task(
            "mine",
            SHOW_ENV,
            json!({"environmentSettings": [{"name": "CUDA_VISIBLE_DEVICES", "value": "7"}]}),
        ),
    )
    .await
    .unwrap();
    wait_task_done(&c, "j", "t").await;
    wait_task_done(&c, "j", "mine").await;
    let t = c.get_task("j", "t").await.unwrap();
    let node = t.node_info.unwrap().node_id.unwrap();
    let out = task_out(&c, "j", "t").await;
    assert_eq!(out.trim(), start_task_out(&c, "gp", &node).await);
    let mine = task_out(&c, "j", "mine").await;
    assert!(mine.starts_with("CVD=[7] NVD=[GPU-fake-"), "{mine}");

    // A third node needs a third GPU: the resize ends with an error and no third node.
    c.resize_pool("gp", &resize(3)).await.unwrap();
    let errors = wait_resize_error(&c, "gp").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.code.as_deref(), Some("AllocationFailed"));
    let msg = e.message.as_deref().unwrap();
    assert!(
        msg.contains("Standard_NC6s_v3")
            && msg.contains("needs 1 GPU")
            && msg.contains("0 of this machine's 2 GPUs are free"),
        "{msg}"
    );
    assert_eq!(
        (
            value(e, "GpusNeeded"),
            value(e, "GpusFree"),
            value(e, "GpusTotal")
        ),
        ("1", "0", "2")
    );
    assert_eq!(node_ids(&c, "gp").await, nodes);
    let p = c.get_pool("gp").await.unwrap();
    assert_eq!(
        (p.target_dedicated_nodes, p.current_dedicated_nodes),
        (3, 2)
    );

    // kill -9 of the server: the agents live on, and the restarted server knows their GPUs
    // are taken (a new resize clears the errors and fails again).
    server.kill9();
    server.spawn();
    let c = server.client();
    wait_idle_nodes(&c, "gp", 2).await;
    c.resize_pool("gp", &resize(3)).await.unwrap();
    let errors = wait_resize_error(&c, "gp").await;
    assert_eq!(value(&errors[0], "GpusFree"), "0");
    assert_eq!(node_ids(&c, "gp").await, nodes);

    // A node that leaves gives its GPU back, and the next node gets it.
    c.resize_pool("gp", &resize(1)).await.unwrap();
    wait_idle_nodes(&c, "gp", 1).await;
    let kept = node_ids(&c, "gp").await;
    let kept_gpu = start_task_out(&c, "gp", &kept[0]).await;
    c.resize_pool("gp", &resize(2)).await.unwrap();
    wait_idle_nodes(&c, "gp", 2).await;
    assert!(c.get_pool("gp").await.unwrap().resize_errors.is_empty());
    let new: Vec<String> = node_ids(&c, "gp")
        .await
        .into_iter()
        .filter(|n| !kept.contains(n))
        .collect();
    let new_gpu = start_task_out(&c, "gp", &new[0]).await;
    assert_ne!(new_gpu, kept_gpu);
    assert!(new_gpu.starts_with("CVD=[GPU-fake-"), "{new_gpu}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gpus_found_means_gpu_sizes_cannot_be_allocated() {
    // Discovery finds nothing (as on a machine without GPUs, whatever this one has).
    let server = Server::start_with(&[("OPENBATCH_GPU_DISCOVERY_CMD", "true")]);
    let c = server.client();
    c.create_pool(&gpu_pool("gp", 1, json!({}))).await.unwrap();
    let errors = wait_resize_error(&c, "gp").await;
    assert_eq!(errors[0].code.as_deref(), Some("AllocationFailed"));
    let msg = errors[0].message.as_deref().unwrap();
    assert!(msg.contains("0 of this machine's 0 GPUs are free"), "{msg}");
    assert!(msg.contains("gpus = \"ignore\""), "{msg}");
    assert!(node_ids(&c, "gp").await.is_empty());
    // `openbatch pool show` shows the error.
    let shown = server.cli_ok(&["pool", "show", "gp"]);
    assert!(shown.contains("AllocationFailed"), "{shown}");

    // Sizes without GPUs are unaffected; their tasks are shown no GPU.
    c.create_pool(&pool(
        "cpu",
        1,
        1,
        json!({"startTask": {"commandLine": SHOW_ENV, "waitForSuccess": true}}),
    ))
    .await
    .unwrap();
    wait_idle_nodes(&c, "cpu", 1).await;
    let n = node_ids(&c, "cpu").await;
    assert_eq!(start_task_out(&c, "cpu", &n[0]).await, "CVD=[] NVD=[none]");
    let shown = server.cli_ok(&["node", "show", "cpu", &n[0]]);
    assert!(shown.contains("gpus") && shown.contains("none"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_mode_runs_gpu_sizes_without_gpus() {
    let server = Server::start_with(&[
        ("OPENBATCH_GPU_DISCOVERY_CMD", "true"),
        ("OPENBATCH_LOCAL_GPUS", "ignore"),
    ]);
    let c = server.client();
    c.create_pool(&gpu_pool("gp", 2, json!({}))).await.unwrap();
    wait_idle_nodes(&c, "gp", 2).await;
    assert!(c.get_pool("gp").await.unwrap().resize_errors.is_empty());
    c.create_job(&job("j", "gp")).await.unwrap();
    c.create_task("j", &task("t", SHOW_ENV, json!({})))
        .await
        .unwrap();
    wait_task_done(&c, "j", "t").await;
    // Nothing restricted: the agent found no GPU, so it set nothing, and the task has what
    // the server's environment had.
    let inherited = |name: &str| std::env::var(name).unwrap_or_default();
    assert_eq!(
        task_out(&c, "j", "t").await.trim(),
        format!(
            "CVD=[{}] NVD=[{}]",
            inherited("CUDA_VISIBLE_DEVICES"),
            inherited("NVIDIA_VISIBLE_DEVICES")
        )
    );
}

/// The host's GPUs per `nvidia-smi -L` (`GPU 0: NVIDIA H100 ... (UUID: GPU-...)`), or None.
fn host_gpus() -> Option<Vec<String>> {
    let out = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let gpus: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("GPU "))
        .map(str::to_string)
        .collect();
    (!gpus.is_empty()).then_some(gpus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gpu_a_node_sees_exactly_its_gpu_and_extra_nodes_fail() {
    let Some(host) = host_gpus() else {
        println!("skipped: no GPU (nvidia-smi -L failed or listed nothing)");
        return;
    };
    println!("host GPUs: {host:?}");
    let server = Server::start();
    let c = server.client();
    c.create_pool(&gpu_pool("gpu", 1, json!({}))).await.unwrap();
    wait_idle_nodes(&c, "gpu", 1).await;
    c.create_job(&job("j", "gpu")).await.unwrap();
    c.create_task(
        "j",
        &task(
            "smi",
            "/bin/sh -c 'echo \"CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\"; nvidia-smi -L; echo selected:; \
             nvidia-smi -i \"$CUDA_VISIBLE_DEVICES\" --query-gpu=index,uuid,name --format=csv,noheader'",
            json!({}),
        ),
    )
    .await
    .unwrap();
    wait_task_done(&c, "j", "smi").await;
    let out = task_out(&c, "j", "smi").await;
    println!("task stdout:\n{out}");
    let uuid = out
        .lines()
        .find_map(|l| l.strip_prefix("CUDA_VISIBLE_DEVICES="))
        .expect("the variable")
        .to_string();
    assert!(uuid.starts_with("GPU-") && !uuid.contains(','), "{out}");
    // `nvidia-smi -L` lists every GPU of the machine (it ignores CUDA_VISIBLE_DEVICES); the
    // variable selects exactly one of them.
    let (all, selected) = out.split_once("selected:").expect("both parts");
    assert!(
        all.lines()
            .any(|l| l.starts_with("GPU ") && l.contains(&uuid)),
        "{out}"
    );
    let selected: Vec<&str> = selected.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(selected.len(), 1, "{out}");
    assert!(selected[0].contains(&uuid), "{out}");
    assert!(
        host.iter().any(|h| h.contains(&uuid)),
        "{uuid} is not one of {host:?}"
    );
    // Where Python and the CUDA driver library are at hand, CUDA itself counts the GPUs the
    // task is shown (the UUID form of CUDA_VISIBLE_DEVICES included).
    let cuda = std::process::Command::new("python3")
        .args(["-c", "import ctypes; ctypes.CDLL('libcuda.so.1')"])
        .output()
        .is_ok_and(|o| o.status.success());
    if cuda {
        c.create_task(
            "j",
            &task(
                "cuda",
                "python3 -c \"import ctypes; c = ctypes.CDLL('libcuda.so.1'); n = ctypes.c_int(); \
                 r = c.cuInit(0); c.cuDeviceGetCount(ctypes.byref(n)); print('cuInit=%d devices=%d' % (r, n.value))\"",
                json!({}),
            ),
        )
        .await
        .unwrap();
        wait_task_done(&c, "j", "cuda").await;
        let out = task_out(&c, "j", "cuda").await;
        println!("CUDA in the task: {out}");
        assert_eq!(out.trim(), "cuInit=0 devices=1");
    } else {
        println!("no python3 with libcuda.so.1 here: CUDA's own count not checked");
    }
    let node = node_ids(&c, "gpu").await;
    let shown = server.cli_ok(&["node", "show", "gpu", &node[0]]);
    println!("openbatch node show:\n{shown}");
    assert!(shown.contains(&uuid), "{shown}");

    // One node per free GPU can still come; one more cannot.
    let free = host.len() - 1;
    c.resize_pool("gpu", &resize((1 + free + 1) as i32))
        .await
        .unwrap();
    let errors = wait_resize_error(&c, "gpu").await;
    println!("resizeErrors: {errors:?}");
    assert_eq!(errors[0].code.as_deref(), Some("AllocationFailed"));
    assert_eq!(value(&errors[0], "GpusFree"), "0");
    assert_eq!(value(&errors[0], "GpusTotal"), host.len().to_string());
    wait_idle_nodes(&c, "gpu", 1 + free).await;
}
