//! `openbatch node list|show` and `openbatch node file list|get`.
//!
//! [`NodeCommand`] is flattened by main.rs next to the agent verbs (`node join`, `node run`),
//! so its verb names must stay clear of those.

use std::path::PathBuf;

use openbatch_api::models::{ExecutionResult, Node};
use openbatch_client::ListOptions;

use super::output::{emit, or_dash, save_download, size, time, Fields, Table};
use super::task::file_table;
use super::{api, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// List a pool's compute nodes.
    List {
        /// The pool id.
        pool_id: String,
        /// An OData filter, e.g. "state eq 'idle'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show one compute node.
    Show {
        /// The pool id.
        pool_id: String,
        /// The node id.
        node_id: String,
    },
    /// Preempt a low-priority (spot) node, as a spot eviction would: its running tasks get
    /// SIGTERM and a grace period, then are requeued; the node is `preempted` until its capacity
    /// comes back.
    Preempt {
        /// The pool id.
        pool_id: String,
        /// The node id.
        node_id: String,
        /// Seconds the tasks get between SIGTERM and SIGKILL (default: the server's
        /// `preemption_grace`, 30 s).
        #[arg(long)]
        grace: Option<u64>,
    },
    /// A node's files: startup/ (the start task), shared/, workitems/ (task directories).
    #[command(subcommand)]
    File(NodeFileCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeFileCommand {
    /// List a node's files.
    List {
        /// The pool id.
        pool_id: String,
        /// The node id.
        node_id: String,
        /// Include the contents of subdirectories.
        #[arg(long)]
        recursive: bool,
    },
    /// Download a node's file to stdout or --dest.
    Get {
        /// The pool id.
        pool_id: String,
        /// The node id.
        node_id: String,
        /// The file's path under the node root, e.g. startup/stdout.txt.
        path: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        dest: Option<PathBuf>,
    },
}

pub(crate) async fn run_node(cmd: NodeCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        NodeCommand::List { pool_id, filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let nodes = client.list_nodes(&pool_id, &opts).await.map_err(api)?;
            emit(g.output, &nodes, |nodes| {
                let mut t = Table::new(&[
                    "ID",
                    "STATE",
                    "SCHEDULING",
                    "RUNNING",
                    "TASKS RUN",
                    "SUCCEEDED",
                    "START TASK",
                    "IP",
                    "VM SIZE",
                ]);
                for n in nodes {
                    t.row(vec![
                        n.id.clone(),
                        n.state.to_string(),
                        n.scheduling_state.to_string(),
                        n.running_tasks_count.to_string(),
                        n.total_tasks_run.to_string(),
                        n.total_tasks_succeeded.to_string(),
                        start_task_summary(n),
                        n.ip_address.clone(),
                        n.vm_size.clone(),
                    ]);
                }
                t.print()
            })
        }
        NodeCommand::Preempt {
            pool_id,
            node_id,
            grace,
        } => {
            client
                .preempt_node(
                    &pool_id,
                    &node_id,
                    grace.map(std::time::Duration::from_secs),
                )
                .await
                .map_err(api)?;
            eprintln!("Node {node_id} of pool {pool_id} is being preempted.");
            Ok(())
        }
        NodeCommand::Show { pool_id, node_id } => {
            let node = client.get_node(&pool_id, &node_id).await.map_err(api)?;
            // The GPUs are an openbatch extension: the JSON output stays Azure's node, and a
            // server without the extension shows no GPU line.
            let gpus = match g.output {
                super::OutputFormat::Table => client.node_gpus(&pool_id, &node_id).await.ok(),
                super::OutputFormat::Json => None,
            };
            emit(g.output, &node, |n| {
                let mut f = show(n);
                if let Some(gpus) = &gpus {
                    if gpus.gpus.is_empty() {
                        f.add("gpus", "none");
                    }
                    for gpu in &gpus.gpus {
                        f.add("gpu", openbatch_node::gpu::describe(gpu));
                    }
                }
                f.print()
            })
        }
        NodeCommand::File(NodeFileCommand::List {
            pool_id,
            node_id,
            recursive,
        }) => {
            let files = client
                .list_node_files(&pool_id, &node_id, recursive, &ListOptions::default())
                .await
                .map_err(api)?;
            emit(g.output, &files, |f| file_table(f).print())
        }
        NodeCommand::File(NodeFileCommand::Get {
            pool_id,
            node_id,
            path,
            dest,
        }) => {
            let download = client
                .download_node_file(&pool_id, &node_id, &path)
                .await
                .map_err(api)?;
            let n = save_download(download, dest.as_deref()).await?;
            if let Some(dest) = &dest {
                eprintln!("wrote {} to {}", size(n), dest.display());
            }
            Ok(())
        }
    }
}

/// `-`, `running`, `exit 0`, `exit 1 (failure)`.
fn start_task_summary(n: &Node) -> String {
    match &n.start_task_info {
        None => "-".to_owned(),
        Some(info) => match (info.exit_code, info.result) {
            (Some(code), Some(ExecutionResult::Failure)) => format!("exit {code} (failure)"),
            (Some(code), _) => format!("exit {code}"),
            (None, _) => info.state.to_string(),
        },
    }
}

fn show(n: &Node) -> Fields {
    let mut f = Fields::new();
    f.add("id", &n.id)
        .add("state", n.state)
        .add("scheduling", n.scheduling_state)
        .add("vm size", &n.vm_size)
        .add("dedicated", n.is_dedicated)
        .add("ip address", &n.ip_address)
        .add(
            "tasks",
            format!(
                "{} running ({} slots), {} run, {} succeeded",
                n.running_tasks_count,
                n.running_task_slots_count,
                n.total_tasks_run,
                n.total_tasks_succeeded
            ),
        )
        .add(
            "start task",
            or_dash(n.start_task.as_ref().map(|s| s.command_line.clone())),
        )
        .add("start task state", start_task_summary(n))
        .add("allocated", time(n.allocation_time))
        .add("last boot", time(n.last_boot_time))
        .opt(
            "agent version",
            n.node_agent_info.as_ref().map(|a| a.version.clone()),
        );
    for t in &n.recent_tasks {
        f.add(
            "recent task",
            format!(
                "{}/{} {}",
                or_dash(t.job_id.as_ref()),
                or_dash(t.task_id.as_ref()),
                t.task_state
            ),
        );
    }
    for e in &n.errors {
        f.add(
            "error",
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or("-")
            ),
        );
    }
    f
}
