//! `openbatch jobschedule create|list|show|delete|disable|enable|terminate`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use openbatch_api::models::{Job, JobSchedule, JobScheduleCreate};
use openbatch_client::ListOptions;
use serde_json::json;

use super::output::{emit, or_dash, print_json, progress, time, Fields, Table};
use super::pool::strip_nulls;
use super::{api, read_json_file, wait, GlobalArgs, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum JobScheduleCommand {
    /// Create a job schedule: a job on a pool, created once or on a recurrence.
    Create(CreateArgs),
    /// List job schedules.
    List {
        /// An OData filter, e.g. "state eq 'active'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Show one job schedule and the jobs it created.
    Show {
        /// The job schedule id.
        schedule_id: String,
    },
    /// Delete a job schedule and every job it created.
    Delete {
        /// The job schedule id.
        schedule_id: String,
        /// Wait until the schedule is gone.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Stop creating jobs; the active job runs on.
    Disable {
        /// The job schedule id.
        schedule_id: String,
    },
    /// Create jobs again.
    Enable {
        /// The job schedule id.
        schedule_id: String,
    },
    /// End the schedule: its active job is terminated, and no job is created any more.
    Terminate {
        /// The job schedule id.
        schedule_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The job schedule id (required unless --json gives it).
    #[arg(long, required_unless_present = "json")]
    id: Option<String>,
    /// The pool the jobs' tasks run on (required unless --json gives it).
    #[arg(long, required_unless_present = "json")]
    pool_id: Option<String>,
    /// Create a job every this long (ISO 8601, e.g. PT1H; at least PT1M).
    #[arg(long, conflicts_with = "cron")]
    recurrence: Option<String>,
    /// Create a job on this cron expression instead (minute hour day-of-month month
    /// day-of-week, e.g. "0 3 * * *"); an openbatch extension.
    #[arg(long)]
    cron: Option<String>,
    /// The IANA time zone of --cron, e.g. Europe/Berlin (default UTC).
    #[arg(long, requires = "cron")]
    time_zone: Option<String>,
    /// No job before this time (RFC 3339, e.g. 2025-06-01T03:00:00Z).
    #[arg(long)]
    do_not_run_until: Option<String>,
    /// No job after this time (RFC 3339); the schedule then completes.
    #[arg(long)]
    do_not_run_after: Option<String>,
    /// A due job not created within this long is skipped (ISO 8601, e.g. PT10M).
    #[arg(long)]
    start_window: Option<String>,
    /// Terminate each job once all its tasks are complete, so the next one can start.
    #[arg(long)]
    terminate_on_completion: bool,
    /// A job schedule specification (the JSON body of POST /jobschedules) instead of the
    /// flags; --id and --pool-id, if given, override it. `-` reads stdin.
    #[arg(long, conflicts_with_all = [
        "recurrence", "cron", "time_zone", "do_not_run_until", "do_not_run_after",
        "start_window", "terminate_on_completion",
    ])]
    json: Option<PathBuf>,
}

pub(crate) async fn run_job_schedule(
    cmd: JobScheduleCommand,
    g: &GlobalArgs,
) -> anyhow::Result<()> {
    let client = g.client()?;
    match cmd {
        JobScheduleCommand::Create(args) => {
            let spec = create_spec(&args)?;
            client.create_job_schedule(&spec).await.map_err(api)?;
            eprintln!("created job schedule '{}'", spec.id);
            let s = client.get_job_schedule(&spec.id).await.map_err(api)?;
            emit(g.output, &s, |s| show(s, None).print())
        }
        JobScheduleCommand::List { filter } => {
            let opts = ListOptions {
                filter,
                ..Default::default()
            };
            let all = client.list_job_schedules(&opts).await.map_err(api)?;
            emit(g.output, &all, |all| {
                let mut t = Table::new(&["ID", "STATE", "POOL", "WHEN", "NEXT RUN", "RECENT JOB"]);
                for s in all {
                    t.row(vec![
                        s.id.clone(),
                        s.state.to_string(),
                        or_dash(
                            s.job_specification
                                .pool_info
                                .as_ref()
                                .and_then(|p| p.pool_id.as_ref()),
                        ),
                        when(s),
                        or_dash(s.execution_info.next_run_time.map(time)),
                        or_dash(
                            s.execution_info
                                .recent_job
                                .as_ref()
                                .and_then(|r| r.id.as_ref()),
                        ),
                    ]);
                }
                t.print()
            })
        }
        JobScheduleCommand::Show { schedule_id } => {
            let s = client.get_job_schedule(&schedule_id).await.map_err(api)?;
            match g.output {
                OutputFormat::Json => print_json(&s),
                OutputFormat::Table => {
                    let jobs = client
                        .list_jobs_from_schedule(&schedule_id, &ListOptions::default())
                        .await
                        .map_err(api)?;
                    show(&s, Some(&jobs)).print()
                }
            }
        }
        JobScheduleCommand::Delete {
            schedule_id,
            wait,
            timeout,
        } => {
            client
                .delete_job_schedule(&schedule_id)
                .await
                .map_err(api)?;
            if wait {
                let bar = progress(1, "deleting job schedule");
                let res = wait::gone(
                    &format!("job schedule '{schedule_id}'"),
                    Duration::from_secs(timeout),
                    || async { client.get_job_schedule(&schedule_id).await.map(|_| ()) },
                )
                .await;
                bar.finish_and_clear();
                res?;
                eprintln!("deleted job schedule '{schedule_id}'");
            } else {
                eprintln!("deleting job schedule '{schedule_id}'");
            }
            Ok(())
        }
        JobScheduleCommand::Disable { schedule_id } => {
            client
                .disable_job_schedule(&schedule_id)
                .await
                .map_err(api)?;
            eprintln!("disabled job schedule '{schedule_id}'");
            Ok(())
        }
        JobScheduleCommand::Enable { schedule_id } => {
            client
                .enable_job_schedule(&schedule_id)
                .await
                .map_err(api)?;
            eprintln!("enabled job schedule '{schedule_id}'");
            Ok(())
        }
        JobScheduleCommand::Terminate { schedule_id } => {
            client
                .terminate_job_schedule(&schedule_id)
                .await
                .map_err(api)?;
            eprintln!("terminating job schedule '{schedule_id}'");
            Ok(())
        }
    }
}

fn create_spec(args: &CreateArgs) -> anyhow::Result<JobScheduleCreate> {
    if let Some(path) = &args.json {
        let mut spec: JobScheduleCreate = read_json_file(path)?;
        if let Some(id) = &args.id {
            spec.id = id.clone();
        }
        if let Some(pool) = &args.pool_id {
            let info =
                spec.job_specification
                    .pool_info
                    .get_or_insert(openbatch_api::models::PoolInfo {
                        pool_id: None,
                        auto_pool_specification: None,
                    });
            info.pool_id = Some(pool.clone());
        }
        return Ok(spec);
    }
    let spec = json!({
        "id": args.id,
        "schedule": {
            "recurrenceInterval": args.recurrence,
            "cron": args.cron,
            "timeZone": args.time_zone,
            "doNotRunUntil": args.do_not_run_until,
            "doNotRunAfter": args.do_not_run_after,
            "startWindow": args.start_window,
        },
        "jobSpecification": {
            "poolInfo": { "poolId": args.pool_id },
            "onAllTasksComplete": args.terminate_on_completion.then_some("terminatejob"),
        },
    });
    serde_json::from_value(strip_nulls(spec)).context("building the job schedule specification")
}

/// How often the schedule runs, in a few words.
fn when(s: &JobSchedule) -> String {
    let Some(cfg) = &s.schedule else {
        return "once".into();
    };
    match (&cfg.recurrence_interval, &cfg.cron) {
        (Some(every), _) => format!("every {every}"),
        (None, Some(cron)) => match &cfg.time_zone {
            Some(tz) => format!("cron '{cron}' {tz}"),
            None => format!("cron '{cron}' UTC"),
        },
        (None, None) => "once".into(),
    }
}

fn show(s: &JobSchedule, jobs: Option<&[Job]>) -> Fields {
    let mut f = Fields::new();
    let info = &s.execution_info;
    f.add("id", &s.id)
        .opt("display name", s.display_name.as_ref())
        .add("state", s.state)
        .add(
            "pool",
            or_dash(
                s.job_specification
                    .pool_info
                    .as_ref()
                    .and_then(|p| p.pool_id.as_ref()),
            ),
        )
        .add("runs", when(s));
    if let Some(cfg) = &s.schedule {
        f.opt("do not run until", cfg.do_not_run_until.map(time))
            .opt("do not run after", cfg.do_not_run_after.map(time))
            .opt("start window", cfg.start_window);
    }
    f.add("created", time(s.creation_time))
        .opt("next run", info.next_run_time.map(time))
        .opt(
            "recent job",
            info.recent_job.as_ref().and_then(|r| r.id.as_ref()),
        )
        .opt("ended", info.end_time.map(time));
    if let Some(jobs) = jobs {
        let list: Vec<String> = jobs
            .iter()
            .map(|j| format!("{} ({})", j.id, j.state))
            .collect();
        f.add(
            "jobs",
            if list.is_empty() {
                "-".to_owned()
            } else {
                list.join(", ")
            },
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: JobScheduleCommand,
    }

    fn create(args: &[&str]) -> JobScheduleCreate {
        let mut argv = vec!["t", "create"];
        argv.extend(args);
        match Cli::try_parse_from(argv).unwrap().cmd {
            JobScheduleCommand::Create(a) => create_spec(&a).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_build_the_request_body() {
        let s = create(&[
            "--id",
            "nightly",
            "--pool-id",
            "p",
            "--cron",
            "0 3 * * *",
            "--time-zone",
            "Europe/Berlin",
            "--start-window",
            "PT30M",
            "--terminate-on-completion",
        ]);
        let cfg = s.schedule.unwrap();
        assert_eq!(cfg.cron.as_deref(), Some("0 3 * * *"));
        assert_eq!(cfg.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            cfg.start_window.map(|d| d.to_string()).as_deref(),
            Some("PT30M")
        );
        assert_eq!(cfg.recurrence_interval, None);
        let js = s.job_specification;
        assert_eq!(js.pool_info.and_then(|p| p.pool_id).as_deref(), Some("p"));
        assert!(js.on_all_tasks_complete.is_some());

        let once = create(&["--id", "o", "--pool-id", "p"]);
        assert_eq!(once.schedule, Some(Default::default()));
    }

    #[test]
    fn cron_and_recurrence_exclude_each_other() {
        let r = Cli::try_parse_from([
            "t",
            "create",
            "--id",
            "x",
            "--pool-id",
            "p",
            "--cron",
            "* * * * *",
            "--recurrence",
            "PT1H",
        ]);
        assert!(r.is_err());
        let r = Cli::try_parse_from([
            "t",
            "create",
            "--id",
            "x",
            "--pool-id",
            "p",
            "--time-zone",
            "UTC",
        ]);
        assert!(r.is_err(), "--time-zone needs --cron");
    }
}
