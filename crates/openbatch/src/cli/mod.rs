//! The resource commands of the `openbatch` binary, in the shape of `az batch`
//! (`pool|job|task|node` verbs), and `openbatch quickstart`.
//!
//! Everything here goes through the REST API with `openbatch-client`, as any user's program
//! would; nothing reaches into the server's state. Data goes to stdout (a table or, with
//! `--output json`, the API objects), everything else (progress, hints) to stderr.
//!
//! `main.rs` flattens [`GlobalArgs`] into its top-level parser and dispatches to
//! [`run_pool`], [`run_job`], [`run_job_schedule`], [`run_task`], [`run_node`] and
//! [`quickstart::run_quickstart`].
//! [`run_autoscale`] (`openbatch autoscale evaluate`) is the exception: it works offline,
//! on files, with no server.

mod app;
mod autoscale;
mod explain;
mod job;
mod jobschedule;
mod node;
mod output;
mod pool;
pub(crate) mod quickstart;
mod task;
mod wait;

mod fileserver;

use std::path::{Path, PathBuf};

use anyhow::Context;
use openbatch_client::{Client, ClientError};

pub(crate) use app::{run_app, AppCommand};
pub(crate) use autoscale::{run_autoscale, AutoscaleCommand};
pub(crate) use job::{run_job, JobCommand};
pub(crate) use jobschedule::{run_job_schedule, JobScheduleCommand};
pub(crate) use node::{run_node, NodeCommand};
pub(crate) use pool::{run_pool, PoolCommand};
pub(crate) use task::{run_task, TaskCommand};

/// Where the credentials of a local server are looked for when nothing else is given.
const DEFAULT_DATA_DIR: &str = "openbatch-data";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The API objects as JSON, for scripts.
    Json,
}

/// How to reach the service and how to print. Flags win over the environment; whatever is
/// still missing is read from `DATA_DIR/credentials.json` (default `./openbatch-data`), which
/// `openbatch server` writes.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
    /// The service endpoint, e.g. http://127.0.0.1:8771.
    #[arg(long, global = true, env = "OPENBATCH_ENDPOINT")]
    pub(crate) endpoint: Option<String>,
    /// The Batch account name.
    #[arg(long, global = true, env = "OPENBATCH_ACCOUNT_NAME")]
    pub(crate) account_name: Option<String>,
    /// The account's base64 shared key.
    #[arg(
        long,
        global = true,
        env = "OPENBATCH_ACCOUNT_KEY",
        hide_env_values = true
    )]
    pub(crate) account_key: Option<String>,
    /// A server's data directory, whose credentials.json is used for what is not given
    /// otherwise [default: ./openbatch-data].
    #[arg(long, global = true, env = "OPENBATCH_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// A client for the account these arguments name.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let (endpoint, name, key) = match (&self.endpoint, &self.account_name, &self.account_key) {
            (Some(e), Some(n), Some(k)) => (e.clone(), n.clone(), k.clone()),
            (e, n, k) => {
                let dir = self
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let creds = openbatch_server::read_credentials(&dir).with_context(|| {
                    format!(
                        "no credentials for the service: pass --endpoint, --account-name and \
                         --account-key (or set OPENBATCH_ENDPOINT, OPENBATCH_ACCOUNT_NAME and \
                         OPENBATCH_ACCOUNT_KEY), or --data-dir of a server started with \
                         `openbatch server --data-dir DIR` (looked in {})",
                        dir.display()
                    )
                })?;
                (
                    e.clone().unwrap_or(creds.endpoint),
                    n.clone().unwrap_or(creds.account_name),
                    k.clone().unwrap_or(creds.account_key),
                )
            }
        };
        Client::new(&endpoint, &name, &key).map_err(api)
    }
}

/// Turns a client error into the CLI's error, with a hint when the server cannot be reached.
/// API errors keep their Azure code and message (`PoolExists: The specified pool already
/// exists.`), which is what users search for.
pub(crate) fn api(err: ClientError) -> anyhow::Error {
    match err {
        ClientError::Transport { .. } => anyhow::Error::new(err).context(
            "is the openbatch server running? Start one with `openbatch server`, or point \
             --endpoint or --data-dir at a running one",
        ),
        other => anyhow::Error::new(other),
    }
}

/// Reads a JSON file (or stdin for `-`) into `T`, naming the file in errors.
pub(crate) fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading JSON from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    //! The command-line shape main.rs builds from these pieces: global flags anywhere, `node`
    //! resource verbs flattened beside the agent verbs, `quickstart --data-dir` its own.

    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        #[command(subcommand)]
        Pool(PoolCommand),
        #[command(subcommand)]
        Job(JobCommand),
        #[command(subcommand)]
        Task(TaskCommand),
        #[command(subcommand)]
        Node(NodeCli),
        Quickstart(quickstart::QuickstartArgs),
        Server {
            #[arg(long, env = "OPENBATCH_DATA_DIR")]
            data_dir: Option<PathBuf>,
        },
    }

    #[derive(Subcommand, Debug)]
    enum NodeCli {
        #[command(flatten)]
        Resource(NodeCommand),
        Join {
            url: String,
        },
        Run {
            #[arg(long)]
            server: String,
        },
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("openbatch").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_verb() {
        let cli = parse(&[
            "pool",
            "list",
            "--output",
            "json",
            "--endpoint",
            "http://x:1",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.endpoint.as_deref(), Some("http://x:1"));
        let cli = parse(&["-o", "json", "task", "show", "j", "t"]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert!(matches!(cli.command, Cmd::Task(TaskCommand::Show { .. })));
    }

    #[test]
    fn node_resource_verbs_sit_beside_the_agent_verbs() {
        assert!(matches!(
            parse(&["node", "list", "p1"]).command,
            Cmd::Node(NodeCli::Resource(NodeCommand::List { .. }))
        ));
        assert!(matches!(
            parse(&["node", "file", "get", "p1", "n1", "startup/stdout.txt"]).command,
            Cmd::Node(NodeCli::Resource(NodeCommand::File(_)))
        ));
        assert!(matches!(
            parse(&["node", "join", "http://x"]).command,
            Cmd::Node(NodeCli::Join { .. })
        ));
    }

    #[test]
    fn quickstart_has_its_own_data_dir() {
        let cli = parse(&[
            "quickstart",
            "--data-dir",
            "/tmp/qs",
            "--tasks",
            "3",
            "--keep",
        ]);
        let Cmd::Quickstart(args) = cli.command else {
            panic!("not quickstart");
        };
        assert_eq!(args.data_dir.as_deref(), Some(Path::new("/tmp/qs")));
        assert_eq!(args.tasks, 3);
        assert!(args.keep);
        let cli = parse(&["server", "--data-dir", "/srv/ob"]);
        assert!(matches!(cli.command, Cmd::Server { data_dir: Some(_) }));
    }

    #[test]
    fn create_flags_parse() {
        let cli = parse(&[
            "pool",
            "create",
            "--id",
            "p1",
            "--vm-size",
            "Standard_D2s_v3",
            "--target-dedicated-nodes",
            "2",
            "--start-task",
            "echo hi",
            "--start-task-wait",
            "--wait",
        ]);
        assert!(matches!(cli.command, Cmd::Pool(PoolCommand::Create(_))));
        let cli = parse(&[
            "task",
            "add",
            "--job-id",
            "j",
            "--task-id",
            "t",
            "--command-line",
            "/bin/sh -c 'echo hi'",
        ]);
        assert!(matches!(cli.command, Cmd::Task(TaskCommand::Add(_))));
        let cli = parse(&["task", "file", "get", "j", "t", "wd/out.txt", "--dest", "o"]);
        assert!(matches!(cli.command, Cmd::Task(TaskCommand::File(_))));
    }

    #[test]
    fn flags_fill_in_what_the_credentials_file_lacks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("credentials.json"),
            r#"{"accountName":"acct","accountKey":"a2V5","endpoint":"http://127.0.0.1:9"}"#,
        )
        .unwrap();
        let g = GlobalArgs {
            data_dir: Some(dir.path().to_owned()),
            endpoint: Some("http://10.0.0.1:8771".into()),
            ..Default::default()
        };
        let client = g.client().unwrap();
        assert_eq!(client.endpoint(), "http://10.0.0.1:8771");
        assert_eq!(client.account_name(), "acct");

        let missing = GlobalArgs {
            data_dir: Some(dir.path().join("nope")),
            ..Default::default()
        };
        let err = format!("{:#}", missing.client().unwrap_err());
        assert!(err.contains("--account-key"), "{err}");
    }
}
