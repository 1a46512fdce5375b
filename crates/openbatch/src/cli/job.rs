//! `openbatch job create|list|show|delete|terminate|prep-release-status`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use openbatch_api::models::{Job, JobCreate, TaskCountsResult};
use openbatch_client::ListOptions;
use serde_json::json;

use super::output::{emit, or_dash, print_json, progress, time, Fields, Table};
use super::pool::strip_nulls;
use super::{api, read_json_file, wait, GlobalArgs, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job that runs its tasks on a pool.
    Create(CreateArgs),
    /// List jobs.
    List {
        /// An OData filter, e.g. "state eq 'active'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show one job and its task counts.
    Show {
        /// The job id.
        job_id: String,
    },
    /// Count a job's tasks by state.
    TaskCounts {
        /// The job id.
        job_id: String,
    },
    /// Delete a job; its running tasks are killed and its task directories removed.
    Delete {
        /// The job id.
        job_id: String,
        /// Wait until the job is gone.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Terminate a job: no new tasks start, running ones are killed.
    Terminate {
        /// The job id.
        job_id: String,
        /// The reason recorded in the job's executionInfo.terminateReason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The job preparation and release tasks of a job, per node that ran them.
    PrepReleaseStatus {
        /// The job id.
        job_id: String,
        /// An OData filter, e.g. "jobPreparationTaskExecutionInfo/result eq 'failure'".
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The job id (required unless --json gives it).
    #[arg(long, required_unless_present = "json")]
    id: Option<String>,
    /// The pool the job's tasks run on (required unless --json gives it).
    #[arg(long, required_unless_present = "json")]
    pool_id: Option<String>,
    /// Higher runs first, -1000 to 1000.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// At most this many of the job's tasks run at once.
    #[arg(long)]
    max_parallel_tasks: Option<i32>,
    /// Terminate the job once all its tasks are complete.
    #[arg(long)]
    terminate_on_completion: bool,
    /// Let the job's tasks depend on each other (`task add --depends-on`).
    #[arg(long)]
    uses_task_dependencies: bool,
    /// A job specification (the JSON body of POST /jobs) instead of the flags; --id and
    /// --pool-id, if given, override it. `-` reads stdin.
    #[arg(long, conflicts_with_all = ["priority", "max_parallel_tasks", "terminate_on_completion", "uses_task_dependencies"])]
    json: Option<PathBuf>,
}

pub(crate) async fn run_job(cmd: JobCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        JobCommand::Create(args) => {
            let spec = create_spec(&args)?;
            client.create_job(&spec).await.map_err(api)?;
            eprintln!("created job '{}'", spec.id);
            let job = client.get_job(&spec.id).await.map_err(api)?;
            emit(g.output, &job, |j| show(j, None).print())
        }
        JobCommand::List { filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let jobs = client.list_jobs(&opts).await.map_err(api)?;
            emit(g.output, &jobs, |jobs| {
                let mut t = Table::new(&["ID", "STATE", "POOL", "PRIORITY", "CREATED"]);
                for j in jobs {
                    t.row(vec![
                        j.id.clone(),
                        j.state.to_string(),
                        or_dash(j.pool_info.pool_id.as_ref()),
                        j.priority.to_string(),
                        time(j.creation_time),
                    ]);
                }
                t.print()
            })
        }
        JobCommand::Show { job_id } => {
            let job = client.get_job(&job_id).await.map_err(api)?;
            match g.output {
                // The API object as returned; task counts are `job task-counts`.
                OutputFormat::Json => print_json(&job),
                OutputFormat::Table => {
                    let counts = client.get_task_counts(&job_id).await.map_err(api)?;
                    show(&job, Some(&counts)).print()
                }
            }
        }
        JobCommand::TaskCounts { job_id } => {
            let counts = client.get_task_counts(&job_id).await.map_err(api)?;
            emit(g.output, &counts, |c| {
                let mut t =
                    Table::new(&["", "ACTIVE", "RUNNING", "COMPLETED", "SUCCEEDED", "FAILED"]);
                for (name, n) in [("tasks", &c.task_counts), ("slots", &c.task_slot_counts)] {
                    t.row(vec![
                        name.to_owned(),
                        n.active.to_string(),
                        n.running.to_string(),
                        n.completed.to_string(),
                        n.succeeded.to_string(),
                        n.failed.to_string(),
                    ]);
                }
                t.print()
            })
        }
        JobCommand::Delete {
            job_id,
            wait,
            timeout,
        } => {
            client.delete_job(&job_id).await.map_err(api)?;
            if wait {
                let bar = progress(1, "deleting job");
                let res = wait::gone(
                    &format!("job '{job_id}'"),
                    Duration::from_secs(timeout),
                    || async { client.get_job(&job_id).await.map(|_| ()) },
                )
                .await;
                bar.finish_and_clear();
                res?;
                eprintln!("deleted job '{job_id}'");
            } else {
                eprintln!("deleting job '{job_id}'");
            }
            Ok(())
        }
        JobCommand::Terminate { job_id, reason } => {
            client
                .terminate_job(&job_id, reason.as_deref())
                .await
                .map_err(api)?;
            eprintln!("terminating job '{job_id}'");
            Ok(())
        }
        JobCommand::PrepReleaseStatus { job_id, filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let status = client
                .list_job_preparation_and_release_task_status(&job_id, &opts)
                .await
                .map_err(api)?;
            emit(g.output, &status, |items| {
                let mut t = Table::new(&[
                    "NODE",
                    "POOL",
                    "PREPARATION",
                    "EXIT",
                    "RETRIES",
                    "RELEASE",
                    "EXIT",
                ]);
                for s in items {
                    let prep = s.job_preparation_task_execution_info.as_ref();
                    let release = s.job_release_task_execution_info.as_ref();
                    let outcome = |state: String, result: Option<String>| match result {
                        Some(r) => format!("{state} ({r})"),
                        None => state,
                    };
                    t.row(vec![
                        or_dash(s.node_id.as_ref()),
                        or_dash(s.pool_id.as_ref()),
                        prep.map_or("-".into(), |p| {
                            outcome(p.state.to_string(), p.result.map(|r| r.to_string()))
                        }),
                        or_dash(prep.and_then(|p| p.exit_code)),
                        or_dash(prep.map(|p| p.retry_count)),
                        release.map_or("-".into(), |r| {
                            outcome(r.state.to_string(), r.result.map(|r| r.to_string()))
                        }),
                        or_dash(release.and_then(|r| r.exit_code)),
                    ]);
                }
                t.print()
            })
        }
    }
}

fn create_spec(args: &CreateArgs) -> anyhow::Result<JobCreate> {
    if let Some(path) = &args.json {
        let mut spec: JobCreate = read_json_file(path)?;
        if let Some(id) = &args.id {
            spec.id = id.clone();
        }
        if let Some(pool) = &args.pool_id {
            spec.pool_info.pool_id = Some(pool.clone());
        }
        return Ok(spec);
    }
    let spec = json!({
        "id": args.id,
        "poolInfo": { "poolId": args.pool_id },
        "priority": args.priority,
        "maxParallelTasks": args.max_parallel_tasks,
        "onAllTasksComplete": args.terminate_on_completion.then_some("terminatejob"),
        "usesTaskDependencies": args.uses_task_dependencies.then_some(true),
    });
    serde_json::from_value(strip_nulls(spec)).context("building the job specification")
}

fn show(j: &Job, counts: Option<&TaskCountsResult>) -> Fields {
    let mut f = Fields::new();
    f.add("id", &j.id)
        .opt("display name", j.display_name.as_ref())
        .add("state", j.state)
        .add("pool", or_dash(j.pool_info.pool_id.as_ref()))
        .add("priority", j.priority)
        .add("max parallel tasks", j.max_parallel_tasks)
        .add("on all tasks complete", j.on_all_tasks_complete)
        .add("on task failure", j.on_task_failure)
        .add("uses task dependencies", j.uses_task_dependencies)
        .add("created", time(j.creation_time));
    if let Some(info) = &j.execution_info {
        f.opt("ended", info.end_time.map(time))
            .opt("terminate reason", info.terminate_reason.as_ref());
        if let Some(e) = &info.scheduling_error {
            f.add(
                "scheduling error",
                format!(
                    "{}: {}",
                    e.code.as_deref().unwrap_or("-"),
                    e.message.as_deref().unwrap_or("-")
                ),
            );
        }
    }
    if let Some(c) = counts {
        let t = &c.task_counts;
        f.add(
            "tasks",
            format!(
                "{} active, {} running, {} completed ({} succeeded, {} failed)",
                t.active, t.running, t.completed, t.succeeded, t.failed
            ),
        );
    }
    f
}
