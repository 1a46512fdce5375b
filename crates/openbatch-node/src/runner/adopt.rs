//! What the agent does when its task launcher dies without killing its tasks (a SIGKILL, the
//! OOM killer): it kills every task group the launcher had started and reaps what is left.
//!
//! The agent is a child subreaper ([`sys::become_subreaper`]) once it starts a launcher, so the
//! launcher's children (the task leaders, and what the tasks left behind, which the launcher,
//! a subreaper too, had adopted) are re-parented to the agent when it dies, never to init. A
//! task leader that the launcher had not reaped is then the agent's unreaped child, so its pid,
//! and the process group it leads, cannot be recycled: killing that group cannot hit anything
//! else. A leader the launcher did reap (the task ended, its report lost with the launcher) is
//! no child of the agent, and its group is left alone, as after any task's end.
//!
//! The adopted processes are reaped here, on every SIGCHLD, except the agent's own children
//! that tokio reaps (launchers, and tasks forked in place when no launcher could start), which
//! are listed in [`OWNED`] from their spawn until tokio has reaped them.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::sys;

/// The agent's children that tokio reaps.
static OWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn owned() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes the agent a child subreaper, once; called before its first launcher starts.
pub(super) fn become_subreaper() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::AcqRel) {
        if let Err(err) = sys::become_subreaper() {
            tracing::warn!(error = %err, "could not become a child subreaper; tasks may outlive a killed task launcher");
        }
    }
}

/// Spawns `command`, a child that tokio will reap, listed in [`OWNED`] from before anything
/// could reap it here until [`release`].
pub(super) fn spawn_owned(
    command: &mut tokio::process::Command,
) -> io::Result<tokio::process::Child> {
    let mut owned = owned();
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        owned.insert(pid);
    }
    Ok(child)
}

/// Tokio has reaped `pid`.
pub(super) fn release(pid: Option<u32>) {
    if let Some(pid) = pid {
        owned().remove(&pid);
    }
}

/// The launcher is dead and reaped, so everything it left is now the agent's: SIGKILL the
/// group of each of `tasks` (the pids it had started and not reported ended) that is still an
/// unreaped child, then reap what has exited, now and on every SIGCHLD from here on.
///
/// Must run on the agent's runtime thread, with no await between the check and the kill: the
/// sweep that could reap a leader runs on that thread too.
pub(super) fn launcher_died(tasks: &[u32]) {
    let mut killed = 0;
    for &pid in tasks {
        if sys::is_unreaped_child(pid) && sys::signal_group(pid, libc::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    if killed > 0 {
        tracing::warn!(
            killed,
            "the task launcher died; killed the process groups of its running tasks"
        );
    }
    sweep();
    start_sweeper();
}

/// Reaps every exited child of the agent that tokio does not own.
fn sweep() {
    let owned = owned();
    for pid in sys::children() {
        if !owned.contains(&pid) {
            sys::reap_if_exited(pid);
        }
    }
}

fn start_sweeper() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child());
    match signals {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    sweep();
                }
            });
        }
        Err(err) => {
            STARTED.store(false, Ordering::Release);
            tracing::warn!(error = %err, "could not watch for adopted processes' exits");
        }
    }
}
