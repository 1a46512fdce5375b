//! `openbatch task add|list|show|explain|delete|terminate` and `openbatch task file list|get`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use openbatch_api::models::{ExecutionResult, NodeFile, Task, TaskAddStatus, TaskCreate};
use openbatch_client::{Client, ListOptions};
use serde_json::json;

use super::output::{emit, or_dash, progress, save_download, size, time, truncate, Fields, Table};
use super::pool::strip_nulls;
use super::{api, read_json_file, wait, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TaskCommand {
    /// Add a task to a job, or many from a JSON file.
    Add(AddArgs),
    /// List a job's tasks.
    List {
        /// The job id.
        job_id: String,
        /// An OData filter, e.g. "state eq 'completed'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show one task.
    Show {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
    },
    /// Why a task is not running (waiting for dependencies, a slot, nodes...), or where it ran.
    Explain {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
    },
    /// Delete a task (a running one is killed).
    Delete {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
    },
    /// Terminate a running or waiting task.
    Terminate {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
    },
    /// A task's files: stdout.txt, stderr.txt and its working directory wd/.
    #[command(subcommand)]
    File(TaskFileCommand),
    /// Print a task's stdout.txt (or stderr.txt), from its node or, once the node is gone,
    /// from the copy the server kept.
    Log {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
        /// stderr.txt instead of stdout.txt.
        #[arg(long)]
        stderr: bool,
        /// Keep printing what the running task writes, until it completes.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TaskFileCommand {
    /// List a task's files.
    List {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
        /// Include the contents of subdirectories (wd/...).
        #[arg(long)]
        recursive: bool,
    },
    /// Download a task's file to stdout or --dest.
    Get {
        /// The job id.
        job_id: String,
        /// The task id.
        task_id: String,
        /// The file's path in the task directory, e.g. stdout.txt or wd/out.txt.
        path: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Only these bytes, inclusive: START-END (e.g. 0-1023).
        #[arg(long, value_parser = parse_range)]
        range: Option<(u64, u64)>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The job to add to.
    #[arg(long)]
    job_id: String,
    /// The task id (required unless --json is given).
    #[arg(long, required_unless_present = "json")]
    task_id: Option<String>,
    /// What to run. No shell is implied: write `/bin/sh -c "..."` for pipes and variables.
    #[arg(long, required_unless_present = "json")]
    command_line: Option<String>,
    /// A file to download into the task's working directory first: PATH=URL. Repeatable.
    #[arg(long = "resource-file", value_name = "PATH=URL", value_parser = parse_pair)]
    resource_files: Vec<(String, String)>,
    /// An environment variable for the task: NAME=VALUE. Repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// How many of a node's task slots the task takes.
    #[arg(long)]
    required_slots: Option<i32>,
    /// How often a failed task is retried (-1: without limit).
    #[arg(long, allow_negative_numbers = true)]
    max_task_retry_count: Option<i32>,
    /// Run only after this task succeeded (the job needs --uses-task-dependencies). Repeatable.
    #[arg(long = "depends-on", value_name = "TASK_ID")]
    depends_on: Vec<String>,
    /// Run only after every task whose id is an integer in START-END succeeded. Repeatable.
    #[arg(long = "depends-on-range", value_name = "START-END", value_parser = parse_id_range)]
    depends_on_ranges: Vec<(i64, i64)>,
    /// A task (the JSON body of POST /jobs/{job}/tasks) or a JSON array of tasks instead of
    /// the flags; arrays are added 100 at a time. `-` reads stdin.
    #[arg(long, conflicts_with_all = ["task_id", "command_line", "resource_files", "env", "required_slots", "max_task_retry_count", "depends_on", "depends_on_ranges"])]
    json: Option<PathBuf>,
    /// Wait until the tasks complete; exit non-zero if any failed.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait at most.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected START-END in bytes, e.g. 0-1023, got '{s}'");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(format!("the range {s} starts after it ends"));
    }
    Ok((a, b))
}

fn parse_id_range(s: &str) -> Result<(i64, i64), String> {
    let bad = || format!("expected START-END of task ids, e.g. 1-100, got '{s}'");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(format!("the range {s} starts after it ends"));
    }
    Ok((a, b))
}

pub(crate) async fn run_task(cmd: TaskCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        TaskCommand::Add(args) => add(&client, args, g).await,
        TaskCommand::List { job_id, filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let tasks = client.list_tasks(&job_id, &opts).await.map_err(api)?;
            emit(g.output, &tasks, |t| task_table(t).print())
        }
        TaskCommand::Show { job_id, task_id } => {
            let task = client.get_task(&job_id, &task_id).await.map_err(api)?;
            emit(g.output, &task, |t| show(t).print())
        }
        TaskCommand::Explain { job_id, task_id } => {
            let x = client.explain_task(&job_id, &task_id).await.map_err(api)?;
            emit(g.output, &x, super::explain::print)
        }
        TaskCommand::Delete { job_id, task_id } => {
            client.delete_task(&job_id, &task_id).await.map_err(api)?;
            eprintln!("deleted task '{task_id}' of job '{job_id}'");
            Ok(())
        }
        TaskCommand::Terminate { job_id, task_id } => {
            client
                .terminate_task(&job_id, &task_id)
                .await
                .map_err(api)?;
            eprintln!("terminated task '{task_id}' of job '{job_id}'");
            Ok(())
        }
        TaskCommand::File(TaskFileCommand::List {
            job_id,
            task_id,
            recursive,
        }) => {
            let files = client
                .list_task_files(&job_id, &task_id, recursive, &ListOptions::default())
                .await
                .map_err(api)?;
            emit(g.output, &files, |f| file_table(f).print())
        }
        TaskCommand::Log {
            job_id,
            task_id,
            stderr,
            follow,
        } => {
            let path = if stderr { "stderr.txt" } else { "stdout.txt" };
            let download = if follow {
                client.follow_task_file(&job_id, &task_id, path).await
            } else {
                client.download_task_file(&job_id, &task_id, path).await
            }
            .map_err(api)?;
            save_download(download, None).await?;
            Ok(())
        }
        TaskCommand::File(TaskFileCommand::Get {
            job_id,
            task_id,
            path,
            dest,
            range,
        }) => {
            let download = client
                .download_task_file_range(&job_id, &task_id, &path, range.map(|(a, b)| a..=b))
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

async fn add(client: &Client, args: AddArgs, g: &GlobalArgs) -> anyhow::Result<()> {
    let tasks = match &args.json {
        Some(path) => {
            let value: serde_json::Value = read_json_file(path)?;
            let many = value.is_array();
            let tasks: Vec<TaskCreate> = if many {
                serde_json::from_value(value)
            } else {
                serde_json::from_value(value).map(|t| vec![t])
            }
            .with_context(|| format!("{} is not a task or an array of tasks", path.display()))?;
            if tasks.is_empty() {
                bail!("{} has no tasks", path.display());
            }
            tasks
        }
        None => vec![spec_from_flags(&args)?],
    };
    let job_id = args.job_id.as_str();

    if let [task] = tasks.as_slice() {
        client.create_task(job_id, task).await.map_err(api)?;
        eprintln!("added task '{}' to job '{job_id}'", task.id);
    } else {
        let results = client
            .add_task_collection(job_id, &tasks)
            .await
            .map_err(api)?;
        let refused: Vec<_> = results
            .iter()
            .filter(|r| r.status != TaskAddStatus::Success)
            .collect();
        if !args.wait || !refused.is_empty() {
            emit(g.output, &results, |results| {
                let mut t = Table::new(&["TASK", "STATUS", "ERROR"]);
                for r in results {
                    let err = r.error.as_ref().map(|e| {
                        let msg = e.message.as_ref().and_then(|m| m.value.as_deref());
                        format!(
                            "{}: {}",
                            e.code.as_deref().unwrap_or("-"),
                            msg.and_then(|m| m.lines().next()).unwrap_or("")
                        )
                    });
                    t.row(vec![r.task_id.clone(), r.status.to_string(), or_dash(err)]);
                }
                t.print()
            })?;
        }
        if !refused.is_empty() {
            bail!(
                "{} of {} tasks were not added to job '{job_id}'",
                refused.len(),
                results.len()
            );
        }
        eprintln!("added {} tasks to job '{job_id}'", results.len());
        if !args.wait {
            return Ok(());
        }
    }

    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    if !args.wait {
        // One task, not waited for: show it as created.
        let Some(id) = ids.first() else {
            return Ok(());
        };
        let task = client.get_task(job_id, id).await.map_err(api)?;
        return emit(g.output, &task, |t| show(t).print());
    }
    let bar = progress(ids.len() as u64, "waiting for tasks");
    let done = wait::tasks_completed(
        client,
        job_id,
        &ids,
        Duration::from_secs(args.timeout),
        &bar,
    )
    .await;
    bar.finish_and_clear();
    let mut done = done?;
    done.sort_by_key(|t| ids.iter().position(|i| *i == t.id));
    if let [task] = done.as_slice() {
        emit(g.output, task, |t| show(t).print())?;
    } else {
        emit(g.output, &done, |t| task_table(t).print())?;
    }
    let failed: Vec<&str> = done
        .iter()
        .filter(|t| t.execution_info.result == Some(ExecutionResult::Failure))
        .map(|t| t.id.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} tasks failed: {}; see `openbatch task show {job_id} TASK` and its \
             stderr.txt",
            failed.len(),
            done.len(),
            truncate(&failed.join(", "), 200)
        );
    }
    Ok(())
}

fn spec_from_flags(args: &AddArgs) -> anyhow::Result<TaskCreate> {
    let resource_files: Vec<_> = args
        .resource_files
        .iter()
        .map(|(path, url)| json!({ "httpUrl": url, "filePath": path }))
        .collect();
    let env: Vec<_> = args
        .env
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let spec = json!({
        "id": args.task_id,
        "commandLine": args.command_line,
        "resourceFiles": resource_files,
        "environmentSettings": env,
        "requiredSlots": args.required_slots,
        "constraints": args.max_task_retry_count.map(|n| json!({ "maxTaskRetryCount": n })),
        "dependsOn": (!args.depends_on.is_empty() || !args.depends_on_ranges.is_empty()).then(|| {
            let ranges: Vec<_> = args
                .depends_on_ranges
                .iter()
                .map(|(start, end)| json!({ "start": start, "end": end }))
                .collect();
            json!({ "taskIds": args.depends_on, "taskIdRanges": ranges })
        }),
    });
    serde_json::from_value(strip_nulls(spec)).context("building the task specification")
}

pub(crate) fn task_table(tasks: &[Task]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "STATE",
        "EXIT CODE",
        "RESULT",
        "NODE",
        "RETRIES",
        "COMMAND LINE",
    ]);
    for task in tasks {
        let info = &task.execution_info;
        t.row(vec![
            task.id.clone(),
            task.state.to_string(),
            or_dash(info.exit_code),
            or_dash(info.result),
            or_dash(task.node_info.as_ref().and_then(|n| n.node_id.as_ref())),
            info.retry_count.to_string(),
            truncate(&task.command_line, 60),
        ]);
    }
    t
}

fn show(t: &Task) -> Fields {
    let info = &t.execution_info;
    let node = t.node_info.as_ref();
    let mut f = Fields::new();
    f.add("id", &t.id)
        .opt("display name", t.display_name.as_ref())
        .add("state", t.state)
        .add("command line", &t.command_line)
        .add(
            "node",
            or_dash(node.and_then(|n| match (&n.pool_id, &n.node_id) {
                (Some(p), Some(n)) => Some(format!("{n} (pool {p})")),
                (None, Some(n)) => Some(n.clone()),
                _ => None,
            })),
        )
        .opt(
            "task directory",
            node.and_then(|n| n.task_root_directory.as_ref()),
        )
        .add("exit code", or_dash(info.exit_code))
        .add("result", or_dash(info.result));
    if let Some(fi) = &info.failure_info {
        f.add(
            "failure",
            format!(
                "{} {}: {}",
                fi.category,
                fi.code.as_deref().unwrap_or("-"),
                fi.message.as_deref().unwrap_or("-")
            ),
        );
    }
    if let Some(d) = &t.depends_on {
        let mut on: Vec<String> = d.task_ids.clone();
        on.extend(
            d.task_id_ranges
                .iter()
                .map(|r| format!("{}-{}", r.start, r.end)),
        );
        f.add("depends on", on.join(", "));
    }
    f.opt("started", info.start_time.map(time))
        .opt("ended", info.end_time.map(time))
        .add("retries", info.retry_count)
        .add("required slots", t.required_slots)
        .add("created", time(t.creation_time));
    f
}

pub(crate) fn file_table(files: &[NodeFile]) -> Table {
    let mut t = Table::new(&["NAME", "TYPE", "SIZE", "MODIFIED"]);
    for file in files {
        let props = file.properties.as_ref();
        t.row(vec![
            file.name.clone(),
            if file.is_directory { "dir" } else { "file" }.to_owned(),
            if file.is_directory {
                "-".to_owned()
            } else {
                or_dash(props.map(|p| size(p.content_length)))
            },
            or_dash(props.map(|p| time(p.last_modified))),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn ranges_and_pairs_parse() {
        assert_eq!(parse_range("0-1023"), Ok((0, 1023)));
        assert!(parse_range("5-1").is_err());
        assert!(parse_range("x").is_err());
        assert_eq!(
            parse_pair("wd/in.txt=http://h/a?b=c"),
            Ok(("wd/in.txt".to_owned(), "http://h/a?b=c".to_owned()))
        );
        assert!(parse_pair("=x").is_err());
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        add: AddArgs,
    }

    fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
        let base = [
            "add",
            "--job-id",
            "j",
            "--task-id",
            "merge",
            "--command-line",
            "x",
        ];
        Cli::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn dependencies_come_from_flags() {
        let cli = parse(&[
            "--depends-on",
            "a",
            "--depends-on",
            "b",
            "--depends-on-range",
            "1-10",
        ])
        .unwrap();
        let deps = spec_from_flags(&cli.add).unwrap().depends_on.unwrap();
        assert_eq!(deps.task_ids, ["a", "b"]);
        assert_eq!(
            (deps.task_id_ranges[0].start, deps.task_id_ranges[0].end),
            (1, 10)
        );
        assert!(spec_from_flags(&parse(&[]).unwrap().add)
            .unwrap()
            .depends_on
            .is_none());
        assert!(parse(&["--depends-on-range", "5-1"]).is_err());
        assert!(parse(&["--depends-on-range", "5"]).is_err());
    }
}
