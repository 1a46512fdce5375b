//! `openbatch pool create|list|show|resize|delete`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use openbatch_api::models::{Pool, PoolCreate, PoolResize};
use openbatch_client::ListOptions;
use serde_json::json;

use super::output::{emit, or_dash, progress, time, Fields, Table};
use super::{api, read_json_file, wait, GlobalArgs};

/// The image reported for pools created from flags. Nodes run the host's OS whatever the
/// image says; this one is the Azure quickstart's.
const DEFAULT_IMAGE: (&str, &str, &str, &str) = (
    "canonical",
    "0001-com-ubuntu-server-focal",
    "20_04-lts",
    "latest",
);
const DEFAULT_NODE_AGENT_SKU: &str = "batch.node.ubuntu 20.04";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum PoolCommand {
    /// Create a pool from flags, or from a JSON pool specification.
    Create(CreateArgs),
    /// List pools.
    List {
        /// An OData filter, e.g. "state eq 'active'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show one pool.
    Show {
        /// The pool id.
        pool_id: String,
    },
    /// Change a pool's target node counts.
    Resize {
        /// The pool id.
        pool_id: String,
        #[arg(long)]
        target_dedicated_nodes: Option<i32>,
        #[arg(long)]
        target_low_priority_nodes: Option<i32>,
        /// What happens to the tasks of removed nodes: requeue, terminate, taskcompletion or
        /// retaineddata.
        #[arg(long)]
        node_deallocation_option: Option<String>,
        /// Wait until the pool is steady with its target nodes ready.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Delete a pool and its nodes (running tasks are requeued or fail).
    Delete {
        /// The pool id.
        pool_id: String,
        /// Wait until the pool is gone.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The pool id (required unless --json gives it).
    #[arg(long, required_unless_present = "json")]
    id: Option<String>,
    /// An Azure VM size name; it decides cores, memory and GPUs per node.
    #[arg(long, default_value = "Standard_D2s_v3")]
    vm_size: String,
    #[arg(long, default_value_t = 0)]
    target_dedicated_nodes: i32,
    #[arg(long, default_value_t = 0)]
    target_low_priority_nodes: i32,
    /// How many tasks a node runs at once.
    #[arg(long)]
    task_slots_per_node: Option<i32>,
    /// A command line every node runs when it joins the pool.
    #[arg(long)]
    start_task: Option<String>,
    /// Schedule no task on a node until its start task succeeded.
    #[arg(long, requires = "start_task")]
    start_task_wait: bool,
    /// A pool specification (the JSON body of POST /pools) instead of the flags; --id, if
    /// given, overrides its id. `-` reads stdin.
    #[arg(long, conflicts_with_all = ["start_task", "task_slots_per_node"])]
    json: Option<PathBuf>,
    /// Wait until the pool's nodes are idle.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait at most.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

pub(crate) async fn run_pool(cmd: PoolCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        PoolCommand::Create(args) => {
            let spec = create_spec(&args)?;
            client.create_pool(&spec).await.map_err(api)?;
            eprintln!("created pool '{}'", spec.id);
            if args.wait {
                let bar = progress(0, "waiting for nodes");
                let res =
                    wait::pool_ready(&client, &spec.id, Duration::from_secs(args.timeout), &bar)
                        .await;
                bar.finish_and_clear();
                res?;
            }
            let pool = client.get_pool(&spec.id).await.map_err(api)?;
            emit(g.output, &pool, |p| show(p).print())
        }
        PoolCommand::List { filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let pools = client.list_pools(&opts).await.map_err(api)?;
            emit(g.output, &pools, |pools| {
                let mut t = Table::new(&[
                    "ID",
                    "STATE",
                    "ALLOCATION",
                    "VM SIZE",
                    "DEDICATED",
                    "LOW-PRI",
                    "SLOTS/NODE",
                    "CREATED",
                ]);
                for p in pools {
                    t.row(vec![
                        p.id.clone(),
                        p.state.to_string(),
                        p.allocation_state.to_string(),
                        p.vm_size.clone(),
                        format!("{}/{}", p.current_dedicated_nodes, p.target_dedicated_nodes),
                        format!(
                            "{}/{}",
                            p.current_low_priority_nodes, p.target_low_priority_nodes
                        ),
                        p.task_slots_per_node.to_string(),
                        time(p.creation_time),
                    ]);
                }
                t.print()
            })
        }
        PoolCommand::Show { pool_id } => {
            let pool = client.get_pool(&pool_id).await.map_err(api)?;
            emit(g.output, &pool, |p| show(p).print())
        }
        PoolCommand::Resize {
            pool_id,
            target_dedicated_nodes,
            target_low_priority_nodes,
            node_deallocation_option,
            wait,
            timeout,
        } => {
            if target_dedicated_nodes.is_none() && target_low_priority_nodes.is_none() {
                anyhow::bail!("give --target-dedicated-nodes and/or --target-low-priority-nodes");
            }
            let resize: PoolResize = serde_json::from_value(json!({
                "targetDedicatedNodes": target_dedicated_nodes,
                "targetLowPriorityNodes": target_low_priority_nodes,
                "nodeDeallocationOption": node_deallocation_option,
            }))
            .context("--node-deallocation-option")?;
            client.resize_pool(&pool_id, &resize).await.map_err(api)?;
            eprintln!("resizing pool '{pool_id}'");
            if wait {
                let bar = progress(0, "waiting for nodes");
                let res =
                    wait::pool_ready(&client, &pool_id, Duration::from_secs(timeout), &bar).await;
                bar.finish_and_clear();
                res?;
            }
            let pool = client.get_pool(&pool_id).await.map_err(api)?;
            emit(g.output, &pool, |p| show(p).print())
        }
        PoolCommand::Delete {
            pool_id,
            wait,
            timeout,
        } => {
            client.delete_pool(&pool_id).await.map_err(api)?;
            if wait {
                let bar = progress(1, "deleting pool");
                let res = wait::gone(
                    &format!("pool '{pool_id}'"),
                    Duration::from_secs(timeout),
                    || async { client.get_pool(&pool_id).await.map(|_| ()) },
                )
                .await;
                bar.finish_and_clear();
                res?;
                eprintln!("deleted pool '{pool_id}'");
            } else {
                eprintln!("deleting pool '{pool_id}'");
            }
            Ok(())
        }
    }
}

/// The body of POST /pools: the JSON file if given, with the flags applied over it.
fn create_spec(args: &CreateArgs) -> anyhow::Result<PoolCreate> {
    if let Some(path) = &args.json {
        let mut spec: PoolCreate = read_json_file(path)?;
        if let Some(id) = &args.id {
            spec.id = id.clone();
        }
        return Ok(spec);
    }
    let (publisher, offer, sku, version) = DEFAULT_IMAGE;
    let start_task = args.start_task.as_ref().map(|cmd| {
        json!({
            "commandLine": cmd,
            "waitForSuccess": args.start_task_wait,
        })
    });
    let spec = json!({
        "id": args.id,
        "vmSize": args.vm_size,
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": publisher, "offer": offer, "sku": sku, "version": version,
            },
            "nodeAgentSKUId": DEFAULT_NODE_AGENT_SKU,
        },
        "targetDedicatedNodes": args.target_dedicated_nodes,
        "targetLowPriorityNodes": args.target_low_priority_nodes,
        "taskSlotsPerNode": args.task_slots_per_node,
        "startTask": start_task,
    });
    serde_json::from_value(strip_nulls(spec)).context("building the pool specification")
}

/// Drops `null` members so that optional flags that were not given stay absent.
pub(crate) fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn show(p: &Pool) -> Fields {
    let mut f = Fields::new();
    f.add("id", &p.id)
        .opt("display name", p.display_name.as_ref())
        .add("state", p.state)
        .add("allocation state", p.allocation_state)
        .add("vm size", &p.vm_size)
        .add(
            "dedicated nodes",
            format!(
                "{} (target {})",
                p.current_dedicated_nodes, p.target_dedicated_nodes
            ),
        )
        .add(
            "low-priority nodes",
            format!(
                "{} (target {})",
                p.current_low_priority_nodes, p.target_low_priority_nodes
            ),
        )
        .add("task slots per node", p.task_slots_per_node)
        .add("node fill type", p.task_scheduling_policy.node_fill_type)
        .add("auto scale", p.enable_auto_scale)
        .opt("auto scale formula", p.auto_scale_formula.as_ref())
        .add(
            "start task",
            or_dash(p.start_task.as_ref().map(|s| {
                let wait = if s.wait_for_success == Some(true) {
                    " (wait for success)"
                } else {
                    ""
                };
                format!("{}{wait}", s.command_line)
            })),
        )
        .add("created", time(p.creation_time));
    for e in &p.resize_errors {
        f.add(
            "resize error",
            format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("-"),
                e.message.as_deref().unwrap_or("-")
            ),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        args: CreateArgs,
    }

    #[test]
    fn flags_make_a_pool_spec_without_nulls() {
        let p = P::parse_from([
            "x",
            "--id",
            "p1",
            "--target-dedicated-nodes",
            "2",
            "--task-slots-per-node",
            "2",
            "--start-task",
            "echo hi",
            "--start-task-wait",
        ]);
        let spec = create_spec(&p.args).unwrap();
        assert_eq!(spec.id, "p1");
        assert_eq!(spec.vm_size, "Standard_D2s_v3");
        assert_eq!(spec.target_dedicated_nodes, Some(2));
        assert_eq!(spec.task_slots_per_node, Some(2));
        let st = spec.start_task.unwrap();
        assert_eq!(st.command_line, "echo hi");
        assert_eq!(st.wait_for_success, Some(true));

        let p = P::parse_from(["x", "--id", "p2"]);
        let spec = create_spec(&p.args).unwrap();
        assert_eq!(spec.task_slots_per_node, None);
        assert!(spec.start_task.is_none());
    }
}
