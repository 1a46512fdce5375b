//! The coordination step of a multi-instance task's instance (see [`InstanceRun`]).
//!
//! A coordination command that exits successfully may leave background services (an MPI
//! daemon) in its process group. Its leader is reaped, so the group id stays reserved only
//! while members remain; the group is watched while the run goes on and forgotten as soon as
//! it is empty, so that the kill at the end cannot reach a recycled group.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    apps, cmdline, download, process, sys, Barrier, Control, Ended, FailureInfo, InstanceRun,
    KillReason, RunSpec,
};

/// How often a coordination command's leftover process group is looked at.
const GROUP_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What the coordination step left for the rest of the run.
pub(super) enum Coordinated {
    /// The primary goes on with the task's command line; `leftover` is the coordination
    /// command's process group if something is still in it.
    Primary { leftover: Option<u32> },
    /// The run ended here (a failure, a kill, the wall clock, or a subtask's end).
    Ended(Ended),
}

/// Download the common resource files into the task directory and run the coordination
/// command, and mark it done on the barrier. The primary then waits for the barrier's release
/// (every instance has coordinated); a subtask waits until it is killed.
pub(super) async fn coordinate(
    spec: &RunSpec,
    inst: &InstanceRun,
    control: &Arc<Control>,
    kill_rx: &watch::Receiver<Option<KillReason>>,
    deadline: Option<Instant>,
) -> Coordinated {
    let mut rx = kill_rx.clone();
    let staged = tokio::select! {
        staged = stage(spec, inst) => staged,
        reason = process::kill_requested(&mut rx) => return Coordinated::Ended(Ended::KilledBeforeStart(reason)),
        () = process::sleep_until(deadline) => return Coordinated::Ended(Ended::KilledBeforeStart(KillReason::MaxWallClockTimeExceeded)),
    };
    let command = match staged {
        Ok(command) => command,
        Err(failure) => return Coordinated::Ended(Ended::NotStarted(failure)),
    };
    if let Some(reason) = *kill_rx.borrow() {
        return Coordinated::Ended(Ended::KilledBeforeStart(reason));
    }
    let mut leftover = None;
    if let Some((command, program)) = command {
        let exited = match process::spawn_and_supervise(
            command,
            program,
            &spec.task_dir,
            Arc::clone(control),
            kill_rx.clone(),
            deadline,
        )
        .await
        {
            Ok(exited) => exited,
            Err(failure) => return Coordinated::Ended(Ended::NotStarted(failure)),
        };
        if exited.killed_by.is_some() || !exited.status.success() {
            return Coordinated::Ended(Ended::Exited(exited));
        }
        leftover = Some(exited.pgid).filter(|pgid| sys::group_exists(*pgid));
    }
    if let Some(barrier) = &inst.barrier {
        barrier.mark_coordinated();
    }
    // The primary waits for every instance's coordination (the barrier's release); a subtask
    // stays in flight until the attempt ends (the server kills it).
    let barrier = inst.barrier.as_ref().filter(|_| inst.primary);
    if inst.primary && barrier.is_none() {
        return Coordinated::Primary { leftover };
    }
    let reason = {
        let wait = async {
            tokio::select! {
                () = released(barrier) => None,
                reason = process::kill_requested(&mut rx) => Some(reason),
                () = process::sleep_until(deadline) => Some(KillReason::MaxWallClockTimeExceeded),
            }
        };
        let (reason, group) = watch_group(wait, leftover).await;
        leftover = group;
        match reason {
            Some(reason) => reason,
            None => return Coordinated::Primary { leftover },
        }
    };
    if let Some(pgid) = leftover {
        kill_leftover(pgid, reason.grace()).await;
    }
    Coordinated::Ended(Ended::KilledBeforeStart(reason))
}

/// Resolves when the primary's barrier is released; never for a subtask (`None`).
async fn released(barrier: Option<&Barrier>) {
    match barrier {
        Some(b) => b.released().await,
        None => std::future::pending().await,
    }
}

/// The common resource files, then the coordination command, ready to spawn (if there is one).
async fn stage(
    spec: &RunSpec,
    inst: &InstanceRun,
) -> Result<Option<(tokio::process::Command, String)>, FailureInfo> {
    let (stdout, stderr) = super::open_logs(spec, true)?;
    let argv = match inst.coordination_command_line.as_deref() {
        Some(line) if !line.trim().is_empty() => Some(cmdline::parse(line)?),
        _ => None,
    };
    download::stage(&spec.task_dir, &inst.common_resource_files).await?;
    let Some(argv) = argv else {
        return Ok(None);
    };
    let app_env = match &spec.applications {
        Some(a) if !a.packages.is_empty() => apps::install_all(a).await?,
        _ => Vec::new(),
    };
    Ok(Some(super::command(spec, &argv, &app_env, stdout, stderr)))
}

/// Runs `fut` while watching the process group `group`: returns `fut`'s output and the group,
/// or `None` once the group is empty.
pub(super) async fn watch_group<T>(
    fut: impl Future<Output = T>,
    mut group: Option<u32>,
) -> (T, Option<u32>) {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return (out, group),
            () = tokio::time::sleep(GROUP_WATCH_INTERVAL), if group.is_some() => {
                if group.is_some_and(|pgid| !sys::group_exists(pgid)) {
                    group = None;
                }
            }
        }
    }
}

/// SIGTERM to what is left of a process group whose leader is gone, SIGKILL after `grace`.
pub(super) async fn kill_leftover(pgid: u32, grace: Duration) {
    if !sys::group_exists(pgid) {
        return;
    }
    tracing::info!(
        pid = pgid,
        "killing what the coordination command left running"
    );
    let _ = sys::signal_group(pgid, libc::SIGTERM);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !sys::group_exists(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = sys::signal_group(pgid, libc::SIGKILL);
}
