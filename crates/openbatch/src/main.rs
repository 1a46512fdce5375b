//! `openbatch`: the one binary. A thin main that parses the command line and calls into the
//! crates: `server` (openbatch-server), `node run|join` (openbatch-node), the resource
//! commands and `quickstart` (the CLI in `cli/`, over openbatch-client).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "openbatch",
    version,
    about = "A self-hosted batch compute service that speaks the Azure Batch REST API"
)]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (control plane, REST API, local node provider).
    Server(ServerArgs),
    /// Start an embedded server and a local pool of 2 nodes, run a real batch, print results.
    Quickstart(cli::quickstart::QuickstartArgs),
    /// Pools: create, list, show, resize, delete.
    #[command(subcommand)]
    Pool(cli::PoolCommand),
    /// Jobs: create, list, show, delete, terminate.
    #[command(subcommand)]
    Job(cli::JobCommand),
    /// Job schedules: create, list, show, delete, disable, enable, terminate.
    #[command(subcommand)]
    Jobschedule(cli::JobScheduleCommand),
    /// Tasks: add, list, show, delete, and their files.
    #[command(subcommand)]
    Task(cli::TaskCommand),
    /// Compute nodes (list, show, files) and the node agent (join).
    #[command(subcommand)]
    Node(NodeCli),
    /// Join tokens that let `openbatch node join` add machines to pools.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Autoscale formulas: evaluate one offline against recorded metrics, or show a pool's history.
    #[command(subcommand)]
    Autoscale(cli::AutoscaleCommand),
    /// The account's auto-storage: signed container URLs for uploading inputs and reading outputs.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Application packages: upload, list, show, set the default version, delete.
    #[command(subcommand)]
    App(cli::AppCommand),
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Print a container URL of the auto-storage, signed for the given permissions (as JSON).
    Sas {
        /// The container (3 to 63 lowercase letters, digits and hyphens).
        container: String,
        /// Azure permission letters: r read, c create, w write, l list.
        #[arg(long, default_value = "rl")]
        permissions: String,
        /// How long the URL stays valid, in hours.
        #[arg(long, default_value_t = 24)]
        expiry_hours: u32,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a join token; the secret is printed once (as JSON).
    Create {
        /// A note to recognise the token by.
        #[arg(long)]
        description: Option<String>,
    },
    /// List join tokens (without their secrets).
    List,
    /// Revoke a join token: agents presenting it are refused from now on.
    Revoke {
        /// The token's id.
        id: String,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Where state, credentials and local node directories live.
    #[arg(long, env = "OPENBATCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8771; port 0 picks a free port).
    #[arg(long, env = "OPENBATCH_LISTEN")]
    listen: Option<String>,
    /// A TOML config file (see README).
    #[arg(long, env = "OPENBATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum NodeCli {
    #[command(flatten)]
    Resource(cli::NodeCommand),
    /// Join a pool of a server on another machine: `openbatch node join URL --token T --pool P`.
    Join(JoinArgs),
    /// Run a node agent for a provisioned node (used by the local provider).
    #[command(hide = true)]
    Run(RunArgs),
    /// The node agent's task launcher (started by the agent itself).
    #[command(hide = true)]
    Launcher {
        /// The agent's process id.
        #[arg(long)]
        parent: u32,
    },
}

#[derive(Args)]
struct JoinArgs {
    /// The server's URL, e.g. http://10.0.0.5:8771.
    url: String,
    /// A join token from `POST /openbatch/jointokens` (account owner only).
    #[arg(long, env = "OPENBATCH_JOIN_TOKEN")]
    token: String,
    /// The pool to join.
    #[arg(long)]
    pool: String,
    /// The node's root directory (AZ_BATCH_NODE_ROOT_DIR).
    #[arg(long, default_value = "openbatch-node")]
    root: PathBuf,
    /// Task slots this node offers (default: the pool's taskSlotsPerNode).
    #[arg(long)]
    slots: Option<u32>,
    /// The VM size to report (default: the pool's).
    #[arg(long)]
    vm_size: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    #[arg(long)]
    server: String,
    #[arg(long)]
    node_id: String,
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    slots: Option<u32>,
    #[arg(long, env = "OPENBATCH_JOIN_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long, env = "OPENBATCH_VM_SIZE")]
    vm_size: Option<String>,
    /// The GPUs the local provider assigned to this node, as JSON (absent: every GPU found).
    #[arg(long, env = "OPENBATCH_NODE_GPU_DEVICES", hide_env_values = true)]
    gpu_devices: Option<String>,
}

/// How long an agent keeps trying to reach a server that went away before it stops its tasks.
const AGENT_GIVE_UP: Duration = Duration::from_secs(600);

/// Logs go to stderr. Long-running roles (server, node agent) log at `info` by default; the
/// client commands only say what went wrong, so their output stays readable.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENBATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let long_running = matches!(
        cli.command,
        Command::Server(_) | Command::Node(NodeCli::Join(_)) | Command::Node(NodeCli::Run(_))
    );
    init_logging(if long_running { "info" } else { "warn" });
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Node(NodeCli::Launcher { parent }) = cli.command {
        // No runtime: the launcher only forks and reaps (openbatch_node::runner::launcher).
        return openbatch_node::runner::launcher::serve(parent).context("task launcher");
    }
    // The node agent runs on one thread, the main one: it mostly waits on its tasks, and
    // forking from the thread that lives as long as the process lets the runner tie each task
    // to the agent's life (PR_SET_PDEATHSIG) without a hop to another thread.
    let agent = matches!(
        cli.command,
        Command::Node(NodeCli::Join(_)) | Command::Node(NodeCli::Run(_))
    );
    let rt = if agent {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;
    if agent {
        // Tasks start through a launcher process, a fresh exec of this binary (see
        // openbatch_node::runner::launcher). /proc/self/exe is this very file even if an
        // upgrade replaced it on disk.
        let exe = if cfg!(target_os = "linux") {
            Some(PathBuf::from("/proc/self/exe"))
        } else {
            std::env::current_exe().ok()
        };
        if let Some(exe) = exe {
            openbatch_node::runner::launcher::use_task_launcher(
                exe,
                vec!["node".into(), "launcher".into()],
            );
        }
    }
    let global = cli.global;
    rt.block_on(async move {
        match cli.command {
            Command::Quickstart(a) => cli::quickstart::run_quickstart(a).await,
            Command::Pool(c) => cli::run_pool(c, &global).await,
            Command::Job(c) => cli::run_job(c, &global).await,
            Command::Jobschedule(c) => cli::run_job_schedule(c, &global).await,
            Command::Task(c) => cli::run_task(c, &global).await,
            Command::Node(NodeCli::Resource(c)) => cli::run_node(c, &global).await,
            Command::Token(c) => run_token(c, &global).await,
            Command::App(c) => cli::run_app(c, &global).await,
            Command::Storage(StorageCommand::Sas {
                container,
                permissions,
                expiry_hours,
            }) => {
                let expiry = chrono::Utc::now() + chrono::Duration::hours(expiry_hours.into());
                let sas = global
                    .client()?
                    .storage_sas(&container, &permissions, Some(expiry))
                    .await
                    .map_err(cli::api)?;
                println!("{}", serde_json::to_string_pretty(&sas)?);
                Ok(())
            }
            Command::Autoscale(c) => cli::run_autoscale(c, &global).await,
            Command::Server(args) => run_server(args).await,
            Command::Node(NodeCli::Run(a)) => {
                let gpus = match &a.gpu_devices {
                    Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                        anyhow::anyhow!("OPENBATCH_NODE_GPU_DEVICES is not a GPU list: {e}")
                    })?),
                    None => None,
                };
                openbatch_node::run_agent(openbatch_node::AgentOptions {
                    server_url: a.server,
                    token: a.token,
                    node_id: Some(a.node_id),
                    pool_id: None,
                    root_dir: a.root,
                    vm_size: a.vm_size,
                    slots: a.slots,
                    give_up_after: AGENT_GIVE_UP,
                    gpus,
                })
                .await
            }
            Command::Node(NodeCli::Launcher { .. }) => {
                anyhow::bail!("the task launcher runs without a runtime (handled above)")
            }
            Command::Node(NodeCli::Join(a)) => {
                openbatch_node::run_agent(openbatch_node::AgentOptions {
                    server_url: a.url,
                    token: a.token,
                    node_id: None,
                    pool_id: Some(a.pool),
                    root_dir: a.root,
                    vm_size: a.vm_size,
                    slots: a.slots,
                    give_up_after: AGENT_GIVE_UP,
                    gpus: None,
                })
                .await
            }
        }
    })
}

async fn run_token(cmd: TokenCommand, global: &cli::GlobalArgs) -> anyhow::Result<()> {
    let client = global.client()?;
    match cmd {
        TokenCommand::Create { description } => {
            let t = client.create_join_token(description.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TokenCommand::List => {
            let tokens = client.list_join_tokens().await?;
            match global.output {
                cli::OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&tokens)?),
                cli::OutputFormat::Table => {
                    println!("{:<14} {:<32} DESCRIPTION", "ID", "CREATED");
                    for t in tokens {
                        println!(
                            "{:<14} {:<32} {}",
                            t.id,
                            t.created.to_rfc3339(),
                            t.description.unwrap_or_default()
                        );
                    }
                }
            }
        }
        TokenCommand::Revoke { id } => {
            client.revoke_join_token(&id).await?;
            eprintln!("revoked join token {id}");
        }
    }
    Ok(())
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = openbatch_server::ServerConfig::load(args.config.as_deref())?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    let handle = openbatch_server::start(cfg).await?;
    eprintln!(
        "openbatch server listening on {} (credentials in {})",
        handle.endpoint(),
        handle.data_dir().join("credentials.json").display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}
