//! The few raw libc calls the runner needs, each a small wrapper with its safety argument.
//! Everything else in the runner is safe code.

use std::io;

/// Makes the kernel SIGKILL the child when the thread that forked it dies, so that a crashed or
/// killed agent (or task launcher) does not leave its tasks running unsupervised (Linux only; a
/// no-op elsewhere).
///
/// The "parent" of `PR_SET_PDEATHSIG` is the forking *thread*, not the process: see
/// `process::spawner`, which forks every task from one thread that lives as long as the agent,
/// and `launcher`, which forks from its main thread.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn kill_child_when_parent_dies(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent_pid = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It makes plain syscalls (prctl, getppid), which neither allocate
    // nor take locks, and builds its errors from raw errno values without allocating.
    unsafe {
        command.pre_exec(move || die_with_parent(parent_pid));
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn kill_child_when_parent_dies(_command: &mut std::process::Command) {}

/// The calling process gets SIGKILL when the thread that started it ends; fails with `ESRCH`
/// when its parent (expected to be `parent_pid`) is already gone, so that nothing runs orphaned.
/// Async-signal-safe: it runs between fork and exec.
#[cfg(target_os = "linux")]
pub(super) fn die_with_parent(parent_pid: u32) -> io::Result<()> {
    signal_when_parent_dies(parent_pid, libc::SIGKILL)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn signal_when_parent_dies(_parent_pid: u32, _signal: libc::c_int) -> io::Result<()> {
    Ok(())
}

/// Blocks `signal` in the calling thread (and in the threads it starts afterwards), so that
/// only [`wait_signal`] takes it. Returns the set to wait on.
#[allow(unsafe_code)]
pub(super) fn block_signal(signal: libc::c_int) -> io::Result<libc::sigset_t> {
    // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only reads
    // it; a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for any child of this process to end and reaps it: its pid and raw wait status.
/// `ECHILD` when it has none.
#[allow(unsafe_code)]
pub(super) fn wait_any_child() -> io::Result<(u32, i32)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a live c_int and touches nothing else of ours.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            return Ok((pid as u32, status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Waits until a signal of `set` (blocked in every thread) is pending, and takes it.
#[allow(unsafe_code)]
pub(super) fn wait_signal(set: &libc::sigset_t) {
    let mut got: libc::c_int = 0;
    // SAFETY: both pointers are to live, initialised values of the right types.
    while unsafe { libc::sigwait(set, &mut got) } != 0 {}
}

/// Like [`die_with_parent`], with `signal` instead of SIGKILL.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn signal_when_parent_dies(parent_pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // If the parent died before prctl, the signal will never come: don't start an orphan.
    // SAFETY: getppid takes no arguments and touches no memory.
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent_pid) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn die_with_parent(_parent_pid: u32) -> io::Result<()> {
    Ok(())
}

/// Sends `signal` to every process in the process group `pgid` (the task's group: its leader's
/// pid, since tasks are spawned with `process_group(0)`). `signal` 0 only probes.
#[allow(unsafe_code)]
pub(super) fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // killpg(0) would signal the agent's own group and pgid 1 is init's: never valid task groups.
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours; the only hazard, hitting
    // the wrong processes, is excluded above for the agent's group and init's.
    if unsafe { libc::killpg(pgid, signal) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether any process (zombies included) is still in the process group `pgid`.
pub(super) fn group_exists(pgid: u32) -> bool {
    match signal_group(pgid, 0) {
        Ok(()) => true,
        // EPERM means there are members we may not signal: they exist.
        Err(err) => err.raw_os_error() == Some(libc::EPERM),
    }
}

/// Makes this process a child subreaper: its descendants whose parent dies are re-parented to
/// it (not to init), so it alone can reap them, and a process group whose leader it has not
/// reaped cannot be recycled (Linux only; a no-op elsewhere).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory of
    // ours.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn become_subreaper() -> io::Result<()> {
    Ok(())
}

/// Peeks (reaps nothing) with `waitid(idtype, id, WEXITED | WNOHANG | WNOWAIT)`: `true` when
/// the caller has a matching child, running or exited and not yet reaped.
#[allow(unsafe_code)]
fn has_unreaped_child(idtype: libc::idtype_t, id: libc::id_t) -> bool {
    loop {
        // SAFETY: waitid writes into a live, zeroed siginfo_t and touches nothing else of ours.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                idtype,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return true;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // ECHILD: no such child (of ours).
            return false;
        }
    }
}

/// Whether `pid` is a child of this process that nobody has reaped yet: while it is, `pid`
/// (and the process group it leads) cannot be recycled for another process.
pub(super) fn is_unreaped_child(pid: u32) -> bool {
    pid > 1 && has_unreaped_child(libc::P_PID, pid)
}

/// Whether this process has any child, running or not yet reaped.
pub(super) fn has_children() -> bool {
    has_unreaped_child(libc::P_ALL, 0)
}

/// Reaps the child `pid` if it has exited; `true` when it did (or it is no child of ours).
#[allow(unsafe_code)]
pub(super) fn reap_if_exited(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a live c_int and touches nothing else of ours.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc >= 0 {
            return rc > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true;
        }
    }
}

/// The pids of this process's children (of all its threads), from
/// `/proc/self/task/*/children`; empty where the kernel does not provide that file.
pub(super) fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}
