//! `openbatch autoscale evaluate`: backtest an autoscale formula offline, before it is
//! enabled on a pool.
//!
//! The command reads a formula, a pool and recorded metric histories from files, evaluates
//! the formula with `openbatch-autoscale` exactly as the server's scheduled evaluation would,
//! and prints the [`Outcome`] as JSON on stdout. No server is involved.
//!
//! Its shape is a contract other tools rely on: the input files take the layout of a vector's
//! `pool` and `metrics` objects in `autoscale-vectors.json`, `--now` the layout of its `now`,
//! and stdout is exactly the layout of its `expected` object (serde_json of [`Outcome`]).
//! Exit codes: 0 when the evaluation succeeded, 1 when the outcome is an error (the JSON is
//! still printed), 2 when an input cannot be used (the message names the file and the fault).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use openbatch_autoscale::{Metrics, Outcome, PoolState};
use serde::de::DeserializeOwned;

/// The exit code for inputs that cannot be used, kept apart from 1 (the formula failed) so a
/// script can tell a bad formula from a bad invocation. It is also clap's code for usage
/// errors (a malformed `--now`, a missing flag), which are the same kind of mistake.
const EXIT_UNUSABLE_INPUT: i32 = 2;

/// What a pool file looks like, for error messages.
const POOL_EXAMPLE: &str =
    r#"{"targetDedicatedNodes": 2, "currentDedicatedNodes": 2, "taskSlotsPerNode": 1}"#;

/// What a metrics file looks like, for error messages.
const METRICS_EXAMPLE: &str = r#"{"$PendingTasks": {"samples": [[30, 5], [60, 4]]}}"#;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AutoscaleCommand {
    /// Evaluate a formula against recorded metrics and print the outcome as JSON, as the
    /// service would evaluate it at --now. Exit 0 on success, 1 when the formula fails
    /// (the outcome is still printed), 2 when an input file cannot be used.
    Evaluate(EvaluateArgs),
    /// Show a pool's last evaluations on the server: when, why (interval, event, evaluate),
    /// what the formula saw (targets, latest metric samples) and what came out.
    History {
        /// The pool id.
        pool_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct EvaluateArgs {
    /// The formula file, or `-` for stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) formula: PathBuf,
    /// The pool as JSON: {"targetDedicatedNodes", "targetLowPriorityNodes",
    /// "currentDedicatedNodes", "currentLowPriorityNodes", "taskSlotsPerNode"}; missing
    /// fields take their defaults and other fields are ignored.
    #[arg(long, value_name = "POOL.json")]
    pub(crate) pool: PathBuf,
    /// The recorded metrics as JSON: service variable name → {"samples": [[age_seconds,
    /// value], ...]}, ages counted back from --now.
    #[arg(long, value_name = "METRICS.json")]
    pub(crate) metrics: PathBuf,
    /// The evaluation time, RFC 3339 (e.g. 2024-01-15T12:00:00.000Z) [default: now].
    /// It also seeds rand(), so a fixed --now gives a reproducible outcome.
    #[arg(long, value_name = "T", value_parser = parse_rfc3339)]
    pub(crate) now: Option<DateTime<Utc>>,
}

pub(crate) async fn run_autoscale(
    cmd: AutoscaleCommand,
    global: &super::GlobalArgs,
) -> anyhow::Result<()> {
    match cmd {
        AutoscaleCommand::Evaluate(args) => evaluate(&args),
        AutoscaleCommand::History { pool_id } => history(&pool_id, global).await,
    }
}

async fn history(pool_id: &str, global: &super::GlobalArgs) -> anyhow::Result<()> {
    let entries = global.client()?.autoscale_history(pool_id).await?;
    match global.output {
        super::OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
        super::OutputFormat::Table => {
            println!(
                "{:<30} {:<9} {:<8} {:<8} RESULTS / ERROR",
                "TIME", "TRIGGER", "APPLIED", "PENDING"
            );
            for e in &entries {
                let run = &e["run"];
                let outcome = run["error"]["message"]
                    .as_str()
                    .map(|m| format!("error: {m}"))
                    .or_else(|| run["results"].as_str().map(str::to_string))
                    .unwrap_or_default();
                println!(
                    "{:<30} {:<9} {:<8} {:<8} {}",
                    run["timestamp"].as_str().unwrap_or("-"),
                    e["trigger"].as_str().unwrap_or("-"),
                    e["applied"].as_bool().unwrap_or(false),
                    e["latestMetrics"]["$PendingTasks"]
                        .as_f64()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    outcome
                );
            }
        }
    }
    Ok(())
}

fn evaluate(args: &EvaluateArgs) -> anyhow::Result<()> {
    let inputs = match Inputs::read(args) {
        Ok(inputs) => inputs,
        Err(e) => {
            // main.rs maps every error to exit 1, which here means "the formula failed";
            // an unusable input is a different answer, so it exits on its own.
            eprintln!("Error: {e:#}");
            std::process::exit(EXIT_UNUSABLE_INPUT);
        }
    };
    let now = args.now.unwrap_or_else(Utc::now);
    let outcome =
        openbatch_autoscale::evaluate(&inputs.formula, &inputs.pool, &inputs.metrics, now);
    println!(
        "{}",
        serde_json::to_string_pretty(&outcome).context("serializing the outcome")?
    );
    match outcome {
        Outcome::Success { .. } => Ok(()),
        Outcome::Error { error, .. } => {
            let detail = error
                .values
                .iter()
                .find(|v| v.name == "Message")
                .map_or(error.message.as_str(), |v| v.value.as_str());
            Err(anyhow!(
                "the formula failed with {}: {detail} (the outcome is on stdout)",
                error.code
            ))
        }
    }
}

/// The three inputs of an evaluation besides the time.
struct Inputs {
    formula: String,
    pool: PoolState,
    metrics: Metrics,
}

impl Inputs {
    fn read(args: &EvaluateArgs) -> anyhow::Result<Self> {
        let stdin_users = [&args.formula, &args.pool, &args.metrics]
            .iter()
            .filter(|p| is_stdin(p))
            .count();
        if stdin_users > 1 {
            return Err(anyhow!(
                "only one of --formula, --pool and --metrics can be read from stdin (`-`)"
            ));
        }
        let formula = read_text("--formula", &args.formula)?;
        let pool = read_json::<PoolState>("--pool", &args.pool, "a pool object", POOL_EXAMPLE)?;
        let metrics = read_json::<Metrics>(
            "--metrics",
            &args.metrics,
            "a metrics object",
            METRICS_EXAMPLE,
        )?;
        Ok(Inputs {
            formula,
            pool,
            metrics,
        })
    }
}

fn is_stdin(path: &Path) -> bool {
    path == Path::new("-")
}

/// Reads a file (or stdin for `-`) as UTF-8 text, without the byte-order mark some editors
/// write, since neither the formula lexer nor JSON accepts one.
fn read_text(flag: &str, path: &Path) -> anyhow::Result<String> {
    let text = if is_stdin(path) {
        std::io::read_to_string(std::io::stdin())
            .with_context(|| format!("cannot read {flag} from stdin"))?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {flag} file {}", path.display()))?
    };
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

fn read_json<T: DeserializeOwned>(
    flag: &str,
    path: &Path,
    what: &str,
    example: &str,
) -> anyhow::Result<T> {
    let text = read_text(flag, path)?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "{flag} file {} is not {what} like {example}: {e}",
            path.display()
        )
    })
}

fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2024-01-15T12:00:00.000Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: AutoscaleCommand,
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn now_takes_rfc3339_with_any_offset() {
        let cli = Cli::try_parse_from([
            "autoscale",
            "evaluate",
            "--formula",
            "-",
            "--pool",
            "p.json",
            "--metrics",
            "m.json",
            "--now",
            "2024-01-15T13:00:00.250+01:00",
        ])
        .unwrap();
        let AutoscaleCommand::Evaluate(args) = cli.command else {
            panic!("parsed as another subcommand");
        };
        assert_eq!(
            args.now.map(|t| t.to_rfc3339()).as_deref(),
            Some("2024-01-15T12:00:00.250+00:00")
        );
        assert!(parse_rfc3339("2024-01-15 12:00").is_err());
    }
}
