//! `openbatch quickstart`: the Azure Batch Python quickstart, self-contained.
//!
//! It starts an embedded server, then works only through the REST API, as a user's program
//! would: a pool of two nodes, input files served over HTTP behind SAS-like URLs and fetched
//! by the tasks as `httpUrl` resource files, a job with one task per file doing real work on
//! it, a wait for completion, a results table built from each task's `stdout.txt` (read
//! through the task file API), and clean-up. Every task's report is checked against what the
//! quickstart knows about the file it generated, so a run that "succeeds" with wrong output
//! still fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use openbatch_api::models::{
    ExecutionResult, JobCreate, PoolCreate, Task, TaskAddStatus, TaskCreate,
};
use openbatch_client::{Client, ListOptions};
use openbatch_server::{ServerConfig, ServerHandle};
use serde_json::json;

mod work;

use super::fileserver::FileServer;
use super::output::{progress, truncate, Table};
use super::{api, wait};
use work::{command_line, write_inputs, InputFile};

const POOL_ID: &str = "quickstart-pool";
const JOB_ID: &str = "quickstart-job";
const VM_SIZE: &str = "Standard_D2s_v3";
const NODES: i32 = 2;
const SLOTS_PER_NODE: i32 = 2;

/// Local nodes are idle in well under a second; this allows for a slow, loaded machine.
const NODES_TIMEOUT: Duration = Duration::from_secs(120);
/// Deleting the job and the pool stops local processes and removes directories.
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a task's stdout.txt that is read for the results table.
const STDOUT_PEEK: u64 = 64 * 1024;

const STEPS: usize = 7;

#[derive(Debug, clap::Args)]
pub(crate) struct QuickstartArgs {
    /// Where the embedded server keeps its state, and where inputs and downloaded outputs go
    /// [default: a new directory under the system temp dir].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// How many input files, and so tasks, to make.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) tasks: u32,
    /// Keep the pool, the job and the task directories instead of deleting them.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Seconds to wait for the tasks to complete.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout: u64,
}

/// Runs the quickstart; fails (exit code 1) if any task failed or reported something wrong.
pub(crate) async fn run_quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => fresh_data_dir()?,
    };
    refuse_if_served(&data_dir).await?;

    step(
        1,
        &format!(
            "Starting an openbatch server (data in {})",
            data_dir.display()
        ),
    );
    let server = openbatch_server::start(ServerConfig {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await
    .context("starting the embedded openbatch server")?;
    eprintln!(
        "      listening on {} as account '{}'",
        server.endpoint(),
        server.credentials().account_name
    );

    // Ctrl-C still shuts the server down, which stops the local node processes it started.
    let outcome = tokio::select! {
        r = session(&server, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };

    step(STEPS, "Shutting the server down");
    server.shutdown().await;
    match &outcome {
        Ok(()) => eprintln!(
            "\nQuickstart finished in {:.1}s.",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => eprintln!(
            "\nQuickstart failed; the data directory is {}",
            data_dir.display()
        ),
    }
    outcome
}

/// Everything between starting and stopping the server, through the REST API only.
async fn session(server: &ServerHandle, args: &QuickstartArgs) -> anyhow::Result<()> {
    let creds = server.credentials();
    let client =
        Client::new(server.endpoint(), &creds.account_name, &creds.account_key).map_err(api)?;
    let work_dir = server.data_dir().join("quickstart");
    let input_dir = work_dir.join("input");
    let inputs = write_inputs(&input_dir, args.tasks)?;
    let files = FileServer::start(input_dir).await?;

    let mut created = Created::default();
    let result = run_batch(
        &client,
        server.data_dir(),
        args,
        &inputs,
        &files,
        &mut created,
    )
    .await;
    files.shutdown().await;

    if args.keep {
        if created.pool || created.job {
            step(STEPS - 1, "Keeping the job and the pool (--keep)");
            eprintln!(
                "      Kept pool '{POOL_ID}' and job '{JOB_ID}'. To look at them later:\n        \
                 openbatch server --data-dir {dir}\n        \
                 openbatch task list {JOB_ID} --data-dir {dir}",
                dir = server.data_dir().display()
            );
        }
    } else if created.pool || created.job {
        step(
            STEPS - 1,
            &format!("Deleting job '{JOB_ID}' and pool '{POOL_ID}'"),
        );
        if let Err(e) = clean_up(&client, &created).await {
            // The run's own outcome matters more; a failed clean-up is reported beside it.
            eprintln!("      clean-up failed: {e:#}");
            if result.is_ok() {
                return Err(e);
            }
        }
    }
    result
}

#[derive(Default)]
struct Created {
    pool: bool,
    job: bool,
}

async fn run_batch(
    client: &Client,
    data_dir: &Path,
    args: &QuickstartArgs,
    inputs: &[InputFile],
    files: &FileServer,
    created: &mut Created,
) -> anyhow::Result<()> {
    step(
        2,
        &format!(
            "Creating pool '{POOL_ID}': {NODES} x {VM_SIZE}, {SLOTS_PER_NODE} task slots each"
        ),
    );
    client.create_pool(&pool_spec()?).await.map_err(|e| {
        if e.code() == Some("PoolExists") {
            anyhow!(
                "{e}\nAn earlier `quickstart --keep` left it in {}; use another --data-dir",
                data_dir.display()
            )
        } else {
            api(e)
        }
    })?;
    created.pool = true;
    let bar = progress(NODES as u64, "nodes ready");
    let nodes = wait::pool_ready(client, POOL_ID, NODES_TIMEOUT, &bar).await;
    bar.finish_and_clear();
    let nodes = nodes?;
    for n in &nodes {
        eprintln!("      node {} is {} ({})", n.id, n.state, n.vm_size);
    }

    step(
        3,
        &format!(
            "Creating job '{JOB_ID}' with {} tasks; inputs served from {}",
            inputs.len(),
            files.base()
        ),
    );
    let job: JobCreate = serde_json::from_value(json!({
        "id": JOB_ID,
        "poolInfo": { "poolId": POOL_ID },
    }))?;
    client.create_job(&job).await.map_err(api)?;
    created.job = true;
    let tasks = inputs
        .iter()
        .map(|input| task_spec(input, &files.url(&input.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let added = client
        .add_task_collection(JOB_ID, &tasks)
        .await
        .map_err(api)?;
    if let Some(refused) = added.iter().find(|r| r.status != TaskAddStatus::Success) {
        let why = refused.error.as_ref().map(|e| {
            let msg = e.message.as_ref().and_then(|m| m.value.as_deref());
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("-"),
                msg.and_then(|m| m.lines().next()).unwrap_or("")
            )
        });
        bail!(
            "task '{}' was not added: {}",
            refused.task_id,
            why.unwrap_or_else(|| refused.status.to_string())
        );
    }

    step(4, "Waiting for the tasks to complete");
    let bar = progress(tasks.len() as u64, "tasks completed");
    let counts = wait::job_tasks_done(
        client,
        JOB_ID,
        tasks.len() as u64,
        Duration::from_secs(args.timeout),
        &bar,
    )
    .await;
    bar.finish_and_clear();
    let counts = counts?;
    eprintln!(
        "      {} succeeded, {} failed; the file server answered {} downloads",
        counts.succeeded,
        counts.failed,
        files.served()
    );

    step(
        5,
        "Reading each task's stdout.txt through the task file API",
    );
    let mut done = client
        .list_tasks(JOB_ID, &ListOptions::default())
        .await
        .map_err(api)?;
    done.sort_by_key(|t| inputs.iter().position(|i| i.task_id == t.id));
    let output_dir = data_dir.join("quickstart").join("output");
    let mut table = Table::new(&["TASK", "NODE", "EXIT CODE", "CHECK", "STDOUT"]);
    let mut bad = Vec::new();
    for task in &done {
        let input = inputs.iter().find(|i| i.task_id == task.id);
        let report = report_line(client, task).await;
        save_outputs(client, task, &output_dir.join(&task.id)).await?;
        let check = match (input, &report) {
            _ if task.execution_info.result != Some(ExecutionResult::Success) => "FAILED",
            (Some(input), Ok(line)) if line.starts_with(&input.expected_report()) => "ok",
            _ => "WRONG",
        };
        if check != "ok" {
            bad.push(task.id.clone());
        }
        table.row(vec![
            task.id.clone(),
            task.node_info
                .as_ref()
                .and_then(|n| n.node_id.clone())
                .unwrap_or_else(|| "-".into()),
            task.execution_info
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            check.to_owned(),
            truncate(&report.unwrap_or_else(|e| e), 100),
        ]);
    }
    eprintln!();
    table.print()?;
    print_locations(data_dir, &done, &output_dir, args.keep);

    if !bad.is_empty() {
        bail!(
            "{} of {} tasks failed or reported wrong results: {}; see `stderr.txt` under {}",
            bad.len(),
            inputs.len(),
            bad.join(", "),
            output_dir.display()
        );
    }
    if done.len() != inputs.len() {
        bail!(
            "the job lists {} tasks, {} were added",
            done.len(),
            inputs.len()
        );
    }
    Ok(())
}

/// The first line of the task's stdout.txt, or of its failure when it has none.
async fn report_line(client: &Client, task: &Task) -> Result<String, String> {
    let stdout = client
        .get_task_file(JOB_ID, &task.id, "stdout.txt", Some(0..=STDOUT_PEEK - 1))
        .await;
    let first = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    };
    match stdout {
        Ok(bytes) => match first(&bytes) {
            Some(line) => Ok(line),
            None => Err(failure_text(task).unwrap_or_else(|| "(empty stdout.txt)".into())),
        },
        Err(e) => Err(failure_text(task).unwrap_or_else(|| format!("(stdout.txt: {e})"))),
    }
}

fn failure_text(task: &Task) -> Option<String> {
    task.execution_info.failure_info.as_ref().map(|f| {
        format!(
            "{}: {}",
            f.code.as_deref().unwrap_or("failure"),
            f.message.as_deref().unwrap_or("-")
        )
    })
}

/// Downloads the task's files that exist (stdout.txt, stderr.txt, wd/sorted.txt) into `dir`,
/// so they outlive the job.
async fn save_outputs(client: &Client, task: &Task, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for path in ["stdout.txt", "stderr.txt", "wd/sorted.txt"] {
        match client.get_task_file(JOB_ID, &task.id, path, None).await {
            Ok(bytes) => {
                let name = path.rsplit('/').next().unwrap_or(path);
                let dest = dir.join(name);
                std::fs::write(&dest, bytes)
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            // A task that failed before it ran has no outputs; that is in the table already.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(api(e)),
        }
    }
    Ok(())
}

fn print_locations(data_dir: &Path, tasks: &[Task], output_dir: &Path, keep: bool) {
    let mut text = String::from("\nWhere the outputs are:\n");
    let _ = writeln!(
        text,
        "  downloaded through the task file API:  {}/<task>/{{stdout.txt,stderr.txt,sorted.txt}}",
        output_dir.display()
    );
    let example = tasks.iter().find_map(|t| {
        let info = t.node_info.as_ref()?;
        let dir = data_dir
            .join("nodes")
            .join(info.node_id.as_deref()?)
            .join("root")
            .join(info.task_root_directory.as_deref()?);
        dir.exists().then_some(dir)
    });
    let when = if keep {
        "kept by --keep"
    } else {
        "deleted with the job; --keep keeps them"
    };
    match example {
        Some(dir) => {
            let _ = writeln!(
                text,
                "  task directories on the nodes ({when}), e.g.\n      {}",
                dir.display()
            );
        }
        None => {
            let _ = writeln!(
                text,
                "  task directories on the nodes ({when}): under {}/nodes/<node>/",
                data_dir.display()
            );
        }
    }
    let _ = writeln!(
        text,
        "  over the REST API:  GET /jobs/{JOB_ID}/tasks/<task>/files/stdout.txt, or\n      \
         openbatch task file get {JOB_ID} task1 stdout.txt --data-dir {}   (with a server on that data dir)",
        data_dir.display()
    );
    eprint!("{text}");
}

async fn clean_up(client: &Client, created: &Created) -> anyhow::Result<()> {
    if created.job {
        client.delete_job(JOB_ID).await.map_err(api)?;
        wait::gone(&format!("job '{JOB_ID}'"), DELETE_TIMEOUT, || async {
            client.get_job(JOB_ID).await.map(|_| ())
        })
        .await?;
    }
    if created.pool {
        client.delete_pool(POOL_ID).await.map_err(api)?;
        wait::gone(&format!("pool '{POOL_ID}'"), DELETE_TIMEOUT, || async {
            client.get_pool(POOL_ID).await.map(|_| ())
        })
        .await?;
    }
    Ok(())
}

fn step(n: usize, what: &str) {
    eprintln!("[{n}/{STEPS}] {what}");
}

/// `TMP/openbatch-quickstart-20260122-083556-<pid>`, created empty.
fn fresh_data_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "openbatch-quickstart-{}-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A second server on the same data directory would fight the first over its database.
async fn refuse_if_served(data_dir: &Path) -> anyhow::Result<()> {
    let Ok(creds) = openbatch_server::read_credentials(data_dir) else {
        return Ok(());
    };
    let Ok(client) = Client::new(&creds.endpoint, &creds.account_name, &creds.account_key) else {
        return Ok(());
    };
    let probe = tokio::time::timeout(Duration::from_secs(2), client.pool_exists(POOL_ID)).await;
    if let Ok(Ok(_)) = probe {
        bail!(
            "a server is already running on {} (at {}); stop it or choose another --data-dir",
            data_dir.display(),
            creds.endpoint
        );
    }
    Ok(())
}

fn pool_spec() -> anyhow::Result<PoolCreate> {
    Ok(serde_json::from_value(json!({
        "id": POOL_ID,
        "vmSize": VM_SIZE,
        // What the Azure quickstart asks for; nodes run the host's OS and report this image.
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": "canonical",
                "offer": "0001-com-ubuntu-server-focal",
                "sku": "20_04-lts",
                "version": "latest",
            },
            "nodeAgentSKUId": "batch.node.ubuntu 20.04",
        },
        "targetDedicatedNodes": NODES,
        "taskSlotsPerNode": SLOTS_PER_NODE,
        "startTask": {
            "commandLine": "/bin/sh -c \"echo node $AZ_BATCH_NODE_ID of pool $AZ_BATCH_POOL_ID is ready\"",
            "waitForSuccess": true,
        },
    }))?)
}

fn task_spec(input: &InputFile, url: &str) -> anyhow::Result<TaskCreate> {
    Ok(serde_json::from_value(json!({
        "id": input.task_id,
        "commandLine": command_line(&input.name),
        "resourceFiles": [{ "httpUrl": url, "filePath": input.name }],
    }))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_valid() {
        let spec = pool_spec().unwrap();
        assert_eq!(spec.target_dedicated_nodes, Some(NODES));
        let input = InputFile {
            task_id: "task1".into(),
            name: "taskdata1.txt".into(),
            lines: 1,
            words: 1,
        };
        let t = task_spec(&input, "http://127.0.0.1:1/input/taskdata1.txt?sig=x").unwrap();
        assert_eq!(
            t.resource_files[0].file_path.as_deref(),
            Some("taskdata1.txt")
        );
    }
}
