//! The task-execution engine of the node agent: runs one task (or start task, job preparation or
//! release task) as a real process, the way an Azure Batch node does.
//!
//! A run goes: create the task and working directories, open `stdout.txt` and `stderr.txt`,
//! split the command line (no shell, see `cmdline`), download the resource files into the working
//! directory (`download`), then spawn the program in its own process group and supervise it
//! (`process`) until it exits, a kill is requested, or its `maxWallClockTime` passes. The result
//! is a [`RunOutcome`] shaped like Azure's `executionInfo`.
//!
//! What this module is not for: deciding anything. It does not retry a failed task (the server
//! does, by `maxTaskRetryCount`), does not build the `AZ_BATCH_*` environment (the caller passes
//! it in [`RunSpec::env`]) and does not know about the wire protocol.
//!
//! Outcome rules, in one place:
//! * exit code 0: success, no failure.
//! * non-zero exit, or death by a signal we did not send: `usererror` / `FailureExitCode`.
//! * killed by [`RunHandle::kill`] or by the wall clock: `TaskEnded` (see [`codes`]), whatever the
//!   process's own exit status was.
//! * the process never ran because staging or spawning failed: `pre_processing_error` is set,
//!   `exit_code` is `None`. A command line that does not parse and a program that is missing or
//!   not executable count as such: Azure lists `CommandProgramNotFound` and `CommandLaunchFailed`
//!   with the resource file errors, as things that stop a task from starting, and a retry cannot
//!   fix them.
//! * a kill or the wall clock during staging: `TaskEnded`, `exit_code` `None`, and *not* a
//!   pre-processing error (nothing went wrong; the run was stopped).
//! * `exit_code` of a process that died of a signal is `128 + signal`, as shells report it
//!   (143 for SIGTERM, 137 for SIGKILL). Azure documents that a task it ended "may show an
//!   operating system-defined exit code"; it reports one whenever the process ran, and so do we.

mod adopt;
pub mod apps;
mod barrier;
mod cmdline;
mod download;
mod failure;
mod instance;
pub mod launcher;
mod process;
mod sys;
#[cfg(test)]
mod tests;
mod upload;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use barrier::Barrier;
pub use failure::{codes, FailureCategory, FailureInfo};
pub use process::KILL_GRACE;

/// Files to download into the working directory before the task starts: Azure's
/// `ResourceFile` (the server has already turned `autoStorageContainerName` into a container
/// URL, or into presigned `httpUrl`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFileSpec {
    pub source: ResourceSource,
    /// `httpUrl`: the destination relative to the working directory; may name subdirectories,
    /// which are created. Empty (or ending in `/`): the last segment of the URL's path is the
    /// file name. A container: the directory the blobs go to, each under its full blob name.
    pub file_path: String,
    /// Octal permission bits such as `"0755"`; Azure's Linux default `0770` when `None`.
    pub file_mode: Option<String>,
}

/// Where a resource file comes from. URLs usually carry a SAS token in their query string:
/// never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSource {
    /// One file, fetched with GET.
    HttpUrl(String),
    /// Every blob of an Azure Blob container URL (Azure, Azurite or the server's blob endpoint)
    /// whose name starts with `blob_prefix`.
    Container { url: String, blob_prefix: String },
}

/// When an output file is uploaded (Azure's `OutputFileUploadCondition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadCondition {
    TaskSuccess,
    TaskFailure,
    TaskCompletion,
}

/// Files to upload from the task's directories to a blob container once its process exits
/// (Azure's `OutputFile` with a container destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFileSpec {
    /// A glob (`*`, `?`, `**`, `[...]`) relative to the working directory, or absolute; for
    /// example `../std*.txt` for the task's own logs.
    pub file_pattern: String,
    /// A container URL with a SAS granting write.
    pub container_url: String,
    /// The blob name (a pattern without wildcards) or the virtual directory the matches go
    /// under (a pattern with wildcards).
    pub path: Option<String>,
    /// Headers sent with each upload (`Content-Type`, `x-ms-meta-*`, ...).
    pub upload_headers: Vec<(String, String)>,
    pub condition: UploadCondition,
}

/// Everything needed to run one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Azure Batch command line: split like a POSIX shell would, but never run through one.
    /// `argv[0]` is looked up on `PATH`, or relative to `working_dir` when it contains a `/`.
    pub command_line: String,
    /// Where `stdout.txt` and `stderr.txt` go; created if missing.
    pub task_dir: PathBuf,
    /// The process's current directory (usually `task_dir/wd`) and where resource files land;
    /// created if missing.
    pub working_dir: PathBuf,
    /// Added to the agent's own environment; a later entry for the same name wins.
    pub env: Vec<(String, String)>,
    /// Downloaded into `working_dir` before the process starts.
    pub resource_files: Vec<ResourceFileSpec>,
    /// Uploaded after the process exits, before the run is reported finished.
    pub output_files: Vec<OutputFileSpec>,
    /// Azure's `constraints.maxWallClockTime`, measured from the start of the run (resource file
    /// downloads included). `None`: no limit.
    pub max_wall_clock: Option<Duration>,
    /// Where `stdout.txt` and `stderr.txt` are kept once the run ends (see [`LogUploadSpec`]).
    pub log_upload: Option<LogUploadSpec>,
    /// Application packages to install (once per node) before the resource files; their
    /// `AZ_BATCH_APP_PACKAGE_*` variables are added to `env` (which can override them).
    pub applications: Option<apps::Applications>,
    /// Set when the run is one instance of a multi-instance task (see [`InstanceRun`]).
    pub instance: Option<InstanceRun>,
}

/// One node's part of a multi-instance task. Before anything else, the common resource files
/// are downloaded into `task_dir` (Azure's `AZ_BATCH_TASK_SHARED_DIR`) and the coordination
/// command line runs in `working_dir`, writing to the same `stdout.txt` and `stderr.txt`.
/// Its failure (or a kill) ends the run. Its success is marked on the [`Barrier`], and the
/// primary waits for the barrier's release. Then the primary stages its resource files and runs
/// `command_line`, as for any run, and when that ends, kills whatever the coordination command
/// left running in its process group. A subtask runs nothing more: it stays in flight, its
/// coordination command still running or its process group kept, until it is killed (or its
/// wall clock ends), and then its whole process group is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRun {
    /// Instance 0: the one that runs `command_line`.
    pub primary: bool,
    pub coordination_command_line: Option<String>,
    /// Downloaded into `task_dir`, not `working_dir`.
    pub common_resource_files: Vec<ResourceFileSpec>,
    /// Where the coordination command's success is told, and, for the primary, what it waits
    /// on before `command_line` (every instance has coordinated). `None`: no waiting (a task
    /// of one instance).
    pub barrier: Option<Barrier>,
}

/// A container URL with a SAS granting write, and the blob name prefix for the run's logs:
/// after the process (and its output files), `stdout.txt` and `stderr.txt` of `task_dir` go to
/// `<prefix>stdout.txt` and `<prefix>stderr.txt`, the last [`MAX_KEPT_LOG_BYTES`] of each. A
/// failure is logged and never fails the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogUploadSpec {
    pub container_url: String,
    pub prefix: String,
}

pub use upload::MAX_KEPT_LOG_BYTES;

/// Why a run was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillReason {
    /// A user ended the task: Terminate Task, or Terminate/Delete Job.
    Terminated,
    /// The run outlived [`RunSpec::max_wall_clock`]. The runner enforces that itself; callers
    /// have no reason to send this.
    MaxWallClockTimeExceeded,
    /// The node is leaving the pool, rebooting or reimaging and the server will put the task back
    /// to `active`; the outcome is for the record only.
    Requeued,
    /// The node is being preempted: SIGTERM now, SIGKILL after `grace` (not [`KILL_GRACE`]).
    /// The server requeues the task however the process ends.
    Preempted { grace: Duration },
}

impl KillReason {
    /// How long the process group gets between SIGTERM and SIGKILL.
    pub fn grace(self) -> Duration {
        match self {
            KillReason::Preempted { grace } => grace,
            _ => KILL_GRACE,
        }
    }
}

/// How a run ended: the node-side half of Azure's `TaskExecutionInformation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// When the run started (before resource files were staged).
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// The process's exit code, `128 + signal` if a signal ended it; `None` if it never ran.
    pub exit_code: Option<i32>,
    /// `None` exactly when the process exited with code 0 and was not killed.
    pub failure: Option<FailureInfo>,
    /// The process never ran because resource file staging, the command line or the spawn
    /// failed. Azure does not retry such tasks.
    pub pre_processing_error: bool,
    /// Set when the run was killed, and why.
    pub killed_by: Option<KillReason>,
    /// Uploading an output file failed (Azure's `fileUploadError`); `failure` says why unless
    /// the process had already failed.
    pub file_upload_error: bool,
    /// The logs that were empty at the end, so not uploaded (only when logs are kept).
    pub empty_logs: Vec<String>,
}

impl RunOutcome {
    /// Whether the run succeeded (Azure's `executionInfo.result = success`).
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }
}

/// Starts running `spec` in the background and returns its handle.
///
/// Must be called from within a Tokio runtime. The run continues if the handle is dropped:
/// dropping never kills a task (the wall-clock limit still applies). The current `tracing` span
/// (with the caller's `job_id`/`task_id` fields) is carried into the run's logs.
pub fn start(spec: RunSpec) -> RunHandle {
    let (kill_tx, kill_rx) = watch::channel(None);
    let control = Arc::new(Control {
        kill_tx,
        pid: AtomicU32::new(0),
    });
    let join =
        tokio::spawn(run(spec, Arc::clone(&control), kill_rx).instrument(tracing::Span::current()));
    RunHandle { control, join }
}

/// A running (or finished) task. See [`start`].
#[derive(Debug)]
pub struct RunHandle {
    control: Arc<Control>,
    join: JoinHandle<RunOutcome>,
}

impl RunHandle {
    /// Kills the task's whole process tree: SIGTERM to its process group, SIGKILL after
    /// [`KILL_GRACE`]. During resource file staging it cancels the downloads and the process
    /// never starts. Returns at once; [`RunHandle::wait`] reports the outcome. Only the first
    /// kill counts; killing a finished run does nothing.
    pub fn kill(&self, reason: KillReason) {
        self.control.kill(reason);
    }

    /// The pid of the task's process, which is also its process group id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.control.pid()
    }

    /// A cloneable way to kill the run from elsewhere while another task awaits [`RunHandle::wait`].
    pub fn killer(&self) -> RunKiller {
        RunKiller {
            control: Arc::clone(&self.control),
        }
    }

    /// Whether the run has ended (so that `wait` returns at once).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Waits for the run to end. Dropping this future does not stop the run.
    pub async fn wait(self) -> RunOutcome {
        let start_time = Utc::now();
        match self.join.await {
            Ok(outcome) => outcome,
            // Only a bug (a panic) or a runtime shutdown gets here; report it rather than panic.
            Err(err) => RunOutcome {
                start_time,
                end_time: Utc::now(),
                exit_code: None,
                failure: Some(FailureInfo::internal(format!(
                    "The task runner stopped unexpectedly: {err}"
                ))),
                pre_processing_error: false,
                killed_by: None,
                file_upload_error: false,
                empty_logs: Vec::new(),
            },
        }
    }
}

/// Kills a run and reads its pid; obtained from [`RunHandle::killer`].
#[derive(Debug, Clone)]
pub struct RunKiller {
    control: Arc<Control>,
}

impl RunKiller {
    /// See [`RunHandle::kill`].
    pub fn kill(&self, reason: KillReason) {
        self.control.kill(reason);
    }

    /// See [`RunHandle::pid`].
    pub fn pid(&self) -> Option<u32> {
        self.control.pid()
    }
}

/// What the handle shares with the running task.
#[derive(Debug)]
struct Control {
    /// The first kill request. The run holds the matching receiver.
    kill_tx: watch::Sender<Option<KillReason>>,
    /// The process's pid while it runs, 0 otherwise (no process has pid 0).
    pid: AtomicU32,
}

impl Control {
    fn kill(&self, reason: KillReason) {
        self.kill_tx.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(reason);
            true
        });
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|pid| *pid != 0)
    }
}

/// How the process part of a run ended.
enum Ended {
    Exited(process::Exited),
    /// Killed (or out of time) before the process started.
    KilledBeforeStart(KillReason),
    /// The process could not be started.
    NotStarted(FailureInfo),
}

async fn run(
    spec: RunSpec,
    control: Arc<Control>,
    kill_rx: watch::Receiver<Option<KillReason>>,
) -> RunOutcome {
    let start_time = Utc::now();
    let deadline = spec
        .max_wall_clock
        .and_then(|limit| Instant::now().checked_add(limit));
    let ended = execute(&spec, control, kill_rx, deadline).await;
    let end_time = Utc::now();
    let outcome = match ended {
        Ended::Exited(exited) => {
            let exit_code = exited.exit_code();
            let failure = match exited.killed_by {
                Some(reason) => Some(FailureInfo::ended(reason, spec.max_wall_clock)),
                None if exited.status.success() => None,
                None => Some(FailureInfo::exit_code(exited.status.signal())),
            };
            RunOutcome {
                start_time,
                end_time,
                exit_code: Some(exit_code),
                failure,
                pre_processing_error: false,
                killed_by: exited.killed_by,
                file_upload_error: false,
                empty_logs: Vec::new(),
            }
        }
        Ended::KilledBeforeStart(reason) => RunOutcome {
            start_time,
            end_time,
            exit_code: None,
            failure: Some(FailureInfo::ended(reason, spec.max_wall_clock)),
            pre_processing_error: false,
            killed_by: Some(reason),
            file_upload_error: false,
            empty_logs: Vec::new(),
        },
        Ended::NotStarted(failure) => RunOutcome {
            start_time,
            end_time,
            exit_code: None,
            failure: Some(failure),
            pre_processing_error: true,
            killed_by: None,
            file_upload_error: false,
            empty_logs: Vec::new(),
        },
    };
    let mut outcome = outcome;
    // Uploads come after the process and before the run is reported: a requeued run is thrown
    // away, so its outputs are not uploaded.
    if !spec.output_files.is_empty() && outcome.killed_by != Some(KillReason::Requeued) {
        if let Err(failure) = upload::upload_outputs(&spec, outcome.succeeded()).await {
            outcome.file_upload_error = true;
            match &mut outcome.failure {
                None => outcome.failure = Some(failure),
                Some(existing) => existing
                    .details
                    .push(("FileUploadError".to_owned(), failure.message)),
            }
        }
    }
    // The logs go up after the outputs (which may write `fileuploaderr.txt`, not the logs) and
    // before the run is reported, requeued runs included: a preempted attempt's logs are kept.
    if let Some(logs) = &spec.log_upload {
        outcome.empty_logs = upload::upload_logs(&spec.task_dir, logs).await;
    }
    match &outcome.failure {
        None => tracing::debug!(exit_code = ?outcome.exit_code, "task run succeeded"),
        Some(failure) => tracing::info!(
            exit_code = ?outcome.exit_code,
            code = %failure.code,
            category = %failure.category,
            message = %failure.message,
            "task run failed"
        ),
    }
    outcome
}

async fn execute(
    spec: &RunSpec,
    control: Arc<Control>,
    kill_rx: watch::Receiver<Option<KillReason>>,
    deadline: Option<Instant>,
) -> Ended {
    let Some(inst) = &spec.instance else {
        return execute_command(spec, control, kill_rx, deadline).await;
    };
    match instance::coordinate(spec, inst, &control, &kill_rx, deadline).await {
        instance::Coordinated::Ended(ended) => ended,
        instance::Coordinated::Primary { leftover } => {
            let (ended, leftover) =
                instance::watch_group(execute_command(spec, control, kill_rx, deadline), leftover)
                    .await;
            if let Some(pgid) = leftover {
                instance::kill_leftover(pgid, KILL_GRACE).await;
            }
            ended
        }
    }
}

/// Stage, spawn and supervise `spec.command_line`.
async fn execute_command(
    spec: &RunSpec,
    control: Arc<Control>,
    mut kill_rx: watch::Receiver<Option<KillReason>>,
    deadline: Option<Instant>,
) -> Ended {
    let prepared = tokio::select! {
        prepared = prepare(spec) => prepared,
        reason = process::kill_requested(&mut kill_rx) => return Ended::KilledBeforeStart(reason),
        () = process::sleep_until(deadline) => return Ended::KilledBeforeStart(KillReason::MaxWallClockTimeExceeded),
    };
    let (command, program) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => return Ended::NotStarted(failure),
    };
    // A kill that raced with the end of staging wins over starting the process.
    if let Some(reason) = *kill_rx.borrow() {
        return Ended::KilledBeforeStart(reason);
    }
    match process::spawn_and_supervise(command, program, &spec.task_dir, control, kill_rx, deadline)
        .await
    {
        Ok(exited) => Ended::Exited(exited),
        Err(failure) => Ended::NotStarted(failure),
    }
}

/// Directories, output files, command line and resource files: everything before the spawn.
async fn prepare(spec: &RunSpec) -> Result<(tokio::process::Command, String), FailureInfo> {
    // An instance's coordination command has already opened (and truncated) the logs.
    let (stdout, stderr) = open_logs(spec, spec.instance.is_none())?;
    let argv = cmdline::parse(&spec.command_line)?;
    let app_env = match &spec.applications {
        Some(a) if !a.packages.is_empty() => apps::install_all(a).await?,
        _ => Vec::new(),
    };
    download::stage(&spec.working_dir, &spec.resource_files).await?;
    Ok(command(spec, &argv, &app_env, stdout, stderr))
}

/// The process to spawn for `argv`: in the working directory, with the run's environment and
/// its logs, in its own process group.
fn command(
    spec: &RunSpec,
    argv: &[String],
    app_env: &[(String, String)],
    stdout: Stdio,
    stderr: Stdio,
) -> (tokio::process::Command, String) {
    let program = argv[0].clone();
    let mut command =
        tokio::process::Command::new(cmdline::resolve_program(&program, &spec.working_dir));
    command
        .args(&argv[1..])
        .current_dir(&spec.working_dir)
        .envs(app_env.iter().map(|(name, value)| (name, value)))
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own group, so that a kill reaches everything the task started.
        .process_group(0)
        .kill_on_drop(false);
    (command, program)
}

/// Creates the task and working directories and opens `stdout.txt` and `stderr.txt`
/// (truncated, or appended to).
fn open_logs(spec: &RunSpec, truncate: bool) -> Result<(Stdio, Stdio), FailureInfo> {
    // The filesystem work before the spawn (two mkdirs, two opens on local disk) is done
    // inline: a trip to the blocking pool costs more than the calls themselves, and with
    // thousands of short tasks those hops are a visible share of each task's cost.
    let (task_dir, working_dir) = (spec.task_dir.clone(), spec.working_dir.clone());
    (move || {
        for dir in [&task_dir, &working_dir] {
            std::fs::create_dir_all(dir).map_err(|err| {
                let code = if err.raw_os_error() == Some(libc::ENOSPC) {
                    codes::DISK_FULL
                } else {
                    codes::RESOURCE_DIRECTORY_CREATE_FAILED
                };
                FailureInfo::server(
                    code,
                    format!(
                        "Could not create the task directory '{}': {err}",
                        dir.display()
                    ),
                )
            })?;
        }
        // Opened before anything can fail from here on, so that the file API always finds them.
        Ok::<_, FailureInfo>((
            open_output(&task_dir, "stdout.txt", truncate)?,
            open_output(&task_dir, "stderr.txt", truncate)?,
        ))
    })()
}

/// Creates (truncating) `task_dir/name` and hands it over as the process's stdout or stderr: the
/// process writes to the file directly, nothing passes through the agent.
fn open_output(
    task_dir: &std::path::Path,
    name: &str,
    truncate: bool,
) -> Result<Stdio, FailureInfo> {
    let path = task_dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .append(!truncate)
        .open(&path)
        .map_err(|err| {
            let code = if err.raw_os_error() == Some(libc::ENOSPC) {
                codes::DISK_FULL
            } else {
                codes::RESOURCE_FILE_CREATE_FAILED
            };
            FailureInfo::server(
                code,
                format!("Could not create '{}': {err}", path.display()),
            )
        })?;
    Ok(Stdio::from(file))
}
