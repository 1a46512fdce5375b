//! Spawning a task's process and supervising it until it exits or is killed.
//!
//! Every task is the leader of its own process group, so "kill the task" means "kill the
//! group": SIGTERM to all of it, then SIGKILL to whatever is left after [`KILL_GRACE`]. A task
//! that exits normally leaves its background children alone, as a shell would (start tasks
//! commonly launch daemons with `nohup ... &`).

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, OnceCell};
use tokio::time::Instant;
use tracing::Instrument;

use super::failure::{codes, FailureInfo};
use super::{adopt, launcher, sys, Control, KillReason};

/// How long a killed task's process group gets between SIGTERM and SIGKILL: long enough for a
/// well-behaved program to flush its output and remove its temporary files, short enough that a
/// terminated task frees its slot promptly (a program that ignores SIGTERM costs us this much).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// How often, during [`KILL_GRACE`], we look whether the whole group is gone. Process groups have
/// no exit notification, and this only runs while a task is being killed.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How a spawned process ended.
pub(super) struct Exited {
    pub(super) status: ExitStatus,
    /// Set when we killed the process group, and why.
    pub(super) killed_by: Option<KillReason>,
    /// The process's group (its pid): background children it left may still be in it.
    pub(super) pgid: u32,
}

impl Exited {
    /// The exit code to report: the process's own, or `128 + signal` when a signal ended it, the
    /// convention of POSIX shells (Azure documents that a killed task may show an "operating
    /// system-defined exit code").
    pub(super) fn exit_code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
}

/// Spawns `command` (already fully configured: argv, cwd, env, stdio, process group) and
/// supervises it until it exits, a kill is requested on `kill_rx`, or `deadline` passes.
///
/// `program` is only used in messages.
/// `task_dir` holds the `stdout.txt` and `stderr.txt` the command writes to.
pub(super) async fn spawn_and_supervise(
    mut command: Command,
    program: String,
    task_dir: &std::path::Path,
    control: Arc<Control>,
    kill_rx: watch::Receiver<Option<KillReason>>,
    deadline: Option<Instant>,
) -> Result<Exited, FailureInfo> {
    // On a current-thread runtime that runs on the process's main thread (the node agent's),
    // the forking thread lives exactly as long as the process, so PR_SET_PDEATHSIG means
    // "the agent died" and the task can be started right here, without a hop to the spawner
    // thread: through the task launcher when the binary set one up (`launcher.rs` says why),
    // else by forking the agent. Everywhere else (tests, multi-thread runtimes) the spawner
    // thread forks.
    if on_main_thread_runtime() {
        if let Some(launcher) = launcher::client() {
            let launched = launcher
                .launch(&command, task_dir)
                .await
                .map_err(|err| spawn_failure(&program, &err))?;
            return supervise(Proc::Launched(launched), control, kill_rx, deadline).await;
        }
        sys::kill_child_when_parent_dies(command.as_std_mut());
        // Listed as tokio's to reap: the agent may be a subreaper that reaps adopted processes.
        let child =
            adopt::spawn_owned(&mut command).map_err(|err| spawn_failure(&program, &err))?;
        let pid = child.id();
        let supervised = supervise(Proc::Direct(child), control, kill_rx, deadline).await;
        adopt::release(pid);
        return supervised;
    }
    sys::kill_child_when_parent_dies(command.as_std_mut());
    let spawner = spawner().await.map_err(|err| {
        FailureInfo::server(
            codes::COMMAND_LAUNCH_FAILED,
            format!("The node agent could not start its task spawner thread: {err}"),
        )
    })?;
    let supervised = spawner.spawn(
        async move {
            let child = command
                .spawn()
                .map_err(|err| spawn_failure(&program, &err))?;
            supervise(Proc::Direct(child), control, kill_rx, deadline).await
        }
        .instrument(tracing::Span::current()),
    );
    match supervised.await {
        Ok(result) => result,
        Err(err) => Err(FailureInfo::internal(format!(
            "The task supervisor stopped unexpectedly: {err}"
        ))),
    }
}

/// Whether we run on a current-thread runtime driven by the process's main thread.
fn on_main_thread_runtime() -> bool {
    let current_thread = tokio::runtime::Handle::try_current()
        .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
        .unwrap_or(false);
    // The main thread's id equals the process id on Linux.
    #[allow(unsafe_code)]
    // SAFETY: gettid takes no arguments and touches no memory.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    current_thread && tid == i64::from(std::process::id() as i32)
}

/// The runtime that forks every task and reaps it.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// Forking from an arbitrary runtime thread would SIGKILL healthy tasks whenever that thread went
/// away (tokio's blocking-pool threads exit after 10 s idle; a worker that enters
/// `block_in_place` can become one). So tasks are forked from one dedicated thread that runs a
/// small current-thread runtime forever; it only forks, waits and sends signals, so it is never
/// busy. Resource downloads run on the caller's runtime.
async fn spawner() -> io::Result<&'static Handle> {
    static SPAWNER: OnceCell<Handle> = OnceCell::const_new();
    SPAWNER
        .get_or_try_init(|| async {
            let (handle_tx, handle_rx) = oneshot::channel();
            std::thread::Builder::new()
                .name("openbatch-task-spawner".to_owned())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => {
                            // The receiver is alive: get_or_try_init is awaiting it.
                            let _ = handle_tx.send(Ok(runtime.handle().clone()));
                            runtime.block_on(std::future::pending::<()>());
                        }
                        Err(err) => {
                            let _ = handle_tx.send(Err(err));
                        }
                    }
                })?;
            handle_rx
                .await
                .map_err(|_| io::Error::other("the task spawner thread exited while starting"))?
        })
        .await
}

fn spawn_failure(program: &str, err: &io::Error) -> FailureInfo {
    match err.kind() {
        io::ErrorKind::NotFound => {
            let hint = if program.contains('/') {
                String::new()
            } else {
                format!(" such as ./{program}")
            };
            FailureInfo::user(
                codes::COMMAND_PROGRAM_NOT_FOUND,
                format!(
                    "The program '{program}' was not found (or the interpreter named on its #! \
                     line does not exist). Command lines run without a shell: give an absolute \
                     path, a name on PATH, or a path relative to the task working directory{hint}"
                ),
            )
        }
        io::ErrorKind::PermissionDenied => FailureInfo::user(
            codes::COMMAND_LAUNCH_FAILED,
            format!(
                "The program '{program}' could not be executed: permission denied. If it is a \
                 resource file, give it an executable fileMode such as 0755"
            ),
        ),
        _ if err.raw_os_error() == Some(libc::ENOEXEC) => FailureInfo::user(
            codes::COMMAND_LAUNCH_FAILED,
            format!(
                "The program '{program}' is not an executable for this node (a script needs a #! \
                 line): {err}"
            ),
        ),
        _ => FailureInfo::server(
            codes::COMMAND_LAUNCH_FAILED,
            format!("The node could not start the program '{program}': {err}"),
        ),
    }
}

/// A task's process: forked here, or started by the task launcher.
enum Proc {
    Direct(Child),
    Launched(launcher::Launched),
}

impl Proc {
    fn id(&self) -> Option<u32> {
        match self {
            Proc::Direct(child) => child.id(),
            Proc::Launched(l) => Some(l.pid),
        }
    }

    /// Cancel-safe, like `Child::wait`.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Proc::Direct(child) => child.wait().await,
            Proc::Launched(l) => l.wait().await,
        }
    }
}

async fn supervise(
    mut child: Proc,
    control: Arc<Control>,
    mut kill_rx: watch::Receiver<Option<KillReason>>,
    deadline: Option<Instant>,
) -> Result<Exited, FailureInfo> {
    // tokio only returns no id for a child it has already reaped, which cannot be the case here.
    let Some(pgid) = child.id() else {
        return Err(FailureInfo::internal(
            "The task process was reaped before it could be supervised",
        ));
    };
    control.pid.store(pgid, Ordering::Release);
    tracing::debug!(pid = pgid, "task process started");

    let killed_by = tokio::select! {
        status = child.wait() => {
            control.pid.store(0, Ordering::Release);
            let status = status.map_err(|err| wait_failure(&err))?;
            return Ok(Exited { status, killed_by: None, pgid });
        }
        reason = kill_requested(&mut kill_rx) => reason,
        () = sleep_until(deadline) => KillReason::MaxWallClockTimeExceeded,
    };
    tracing::info!(pid = pgid, reason = ?killed_by, "killing task process group");
    let status = kill_group(&mut child, pgid, killed_by.grace()).await;
    control.pid.store(0, Ordering::Release);
    Ok(Exited {
        status: status.map_err(|err| wait_failure(&err))?,
        killed_by: Some(killed_by),
        pgid,
    })
}

fn wait_failure(err: &io::Error) -> FailureInfo {
    FailureInfo::internal(format!(
        "The node agent lost track of the task process: {err}"
    ))
}

/// SIGTERM to the whole group, then SIGKILL to whatever is still there after `grace` (usually
/// [`KILL_GRACE`]).
/// Returns the leader's exit status. Returns early once the leader is reaped and the group is
/// empty, so a task that dies promptly on SIGTERM is not held for the whole grace period.
async fn kill_group(child: &mut Proc, pgid: u32, grace: Duration) -> io::Result<ExitStatus> {
    if let Err(err) = sys::signal_group(pgid, libc::SIGTERM) {
        // ESRCH: everything already exited between our decision and the signal.
        tracing::debug!(pid = pgid, error = %err, "SIGTERM to task process group failed");
    }
    let grace_end = Instant::now() + grace;
    let mut status = None;
    while Instant::now() < grace_end {
        if status.is_none() {
            tokio::select! {
                result = child.wait() => status = Some(result?),
                () = tokio::time::sleep(GROUP_POLL_INTERVAL) => {}
            }
        } else {
            tokio::time::sleep(GROUP_POLL_INTERVAL).await;
        }
        if let Some(status) = status {
            // The leader is reaped, so its pid, which is the group id, stays reserved only while
            // members remain: checking and signalling cannot hit a recycled group.
            if !sys::group_exists(pgid) {
                return Ok(status);
            }
        }
    }
    tracing::warn!(
        pid = pgid,
        ?grace,
        "task process group outlived SIGTERM; sending SIGKILL"
    );
    if let Err(err) = sys::signal_group(pgid, libc::SIGKILL) {
        tracing::debug!(pid = pgid, error = %err, "SIGKILL to task process group failed");
    }
    match status {
        Some(status) => Ok(status),
        None => child.wait().await,
    }
}

/// Resolves with the first kill requested through the run's handle. Never resolves if no kill
/// is ever requested (including when every handle is gone: dropping a handle must not kill).
pub(super) async fn kill_requested(
    kill_rx: &mut watch::Receiver<Option<KillReason>>,
) -> KillReason {
    loop {
        if let Some(reason) = *kill_rx.borrow_and_update() {
            return reason;
        }
        if kill_rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Sleeps until `deadline`, forever if there is none.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
