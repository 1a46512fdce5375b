//! The task launcher: a small helper process that forks every task, so the agent never forks
//! itself.
//!
//! Why: a task must die with the agent (`PR_SET_PDEATHSIG`, set between fork and exec), which
//! rules out `posix_spawn`/`vfork`, so every task start is a real `fork` of the process that
//! starts it. Forking the agent is expensive: its heap and stacks are marked copy-on-write, and
//! every page it writes afterwards takes a fault. With thousands of short tasks that was the
//! largest single cost of a task on a node. The launcher is a fresh exec of the same binary
//! (`openbatch node launcher`) that does nothing but fork, so its few pages are cheap to copy.
//!
//! The launcher starts tasks with `posix_spawn` (no pre-exec hook, so std uses vfork and copies
//! no page tables), which cannot set `PR_SET_PDEATHSIG` on the task. It keeps the guarantee
//! itself: it gets SIGTERM when the agent's main thread ends (its own PDEATHSIG), and then, or
//! when the agent closes its pipe, it SIGKILLs the process group of every task still running
//! and exits. Killing the agent therefore still kills every task. When the launcher itself is
//! killed, the agent (a child subreaper, which adopts the tasks) kills them: see `adopt.rs`.
//!
//! Protocol: one JSON object per line. The agent writes [`Request`]s to the launcher's stdin; the
//! launcher answers each with [`Event::Spawned`] (or [`Event::Failed`]) and, when the process
//! exits, [`Event::Exited`] with its raw wait status. The launcher's stderr is the agent's.
//!
//! The agent uses the launcher only when the binary configured one ([`use_task_launcher`]) and it
//! runs on its main thread; otherwise (unit tests, embedders) it forks tasks itself as before.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{adopt, sys};

/// One process to start. Everything but the output files comes from the prepared `Command`.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    program: String,
    args: Vec<String>,
    cwd: Option<String>,
    /// Set on top of the launcher's environment, which is the agent's.
    env: Vec<(String, String)>,
    /// Created (and truncated) by the agent already; the launcher opens them for writing.
    stdout: PathBuf,
    stderr: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
enum Event {
    Spawned {
        id: u64,
        pid: u32,
    },
    Failed {
        id: u64,
        errno: Option<i32>,
        message: String,
    },
    Exited {
        id: u64,
        status: i32,
    },
}

// ---------------------------------------------------------------------------------------------
// The launcher process.

/// The tasks running now, by pid (= process group id): the request id each was started for.
#[derive(Default)]
struct Live {
    tasks: Mutex<HashMap<u32, u64>>,
    /// Signalled when a task is added, for the reaper waiting for one.
    added: std::sync::Condvar,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u64>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGKILL to the group of every task still running. The lock is kept: nothing starts
    /// after this.
    fn kill_all_and_exit(&self, code: i32) -> ! {
        let tasks = self.lock();
        for pgid in tasks.keys() {
            let _ = sys::signal_group(*pgid, libc::SIGKILL);
        }
        std::process::exit(code)
    }
}

/// Runs the launcher until its stdin closes. `parent_pid` is the agent that started it: if it
/// is already gone, the launcher refuses to start.
pub fn serve(parent_pid: u32) -> io::Result<()> {
    // The agent's death arrives as SIGTERM, taken by one thread that kills every task group
    // still running and exits. Blocked before any thread exists, so that only that one takes
    // it; children start with an empty mask (std resets it), so tasks still get SIGTERM.
    let term = sys::block_signal(libc::SIGTERM)?;
    sys::signal_when_parent_dies(parent_pid, libc::SIGTERM)?;
    // What a task leaves running when it ends is re-parented here and reaped by [`reap`], so
    // that if the launcher itself dies, all of it is re-parented to the agent (a subreaper too,
    // see [`adopt`]) rather than to init.
    if let Err(err) = sys::become_subreaper() {
        eprintln!("openbatch task launcher: could not become a child subreaper: {err}");
    }
    let live: Arc<Live> = Arc::default();
    let out = Arc::new(Mutex::new(io::stdout()));
    {
        let live = Arc::clone(&live);
        std::thread::Builder::new()
            .name("guard".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                sys::wait_signal(&term);
                live.kill_all_and_exit(0)
            })?;
    }
    {
        let (live, out) = (Arc::clone(&live), Arc::clone(&out));
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || reap(&live, &out))?;
    }
    let served = serve_requests(&live, &out);
    // The agent closed the pipe (or said something unreadable): it is gone or stopping, and
    // nothing will watch the tasks any more. They go, as with the agent's death.
    if let Err(err) = &served {
        eprintln!("openbatch task launcher: {err}");
    }
    live.kill_all_and_exit(i32::from(served.is_err()))
}

fn serve_requests(live: &Live, out: &Mutex<io::Stdout>) -> io::Result<()> {
    for line in io::stdin().lock().lines() {
        let line = line?;
        let req: Request = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let id = req.id;
        // Started, recorded and announced under the lock: the guard never misses a task, and
        // the reaper never reaps one it cannot name, nor reports its exit before its start.
        let mut tasks = live.lock();
        match start(&req) {
            Ok(pid) => {
                tasks.insert(pid, id);
                emit(out, &Event::Spawned { id, pid });
                drop(tasks);
                live.added.notify_one();
            }
            Err(err) => emit(
                out,
                &Event::Failed {
                    id,
                    errno: err.raw_os_error(),
                    message: err.to_string(),
                },
            ),
        }
    }
    Ok(())
}

/// Starts the task; returns its pid. The `Child` handle is dropped: [`reap`] waits for every
/// child of the launcher.
fn start(req: &Request) -> io::Result<u32> {
    // Not an errno of the spawn: the agent would read ENOENT as "program not found".
    let output = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io::Error::other(format!("could not open '{}': {e}", path.display())))
    };
    let mut command = std::process::Command::new(&req.program);
    command
        .args(&req.args)
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(output(&req.stdout)?)
        .stderr(output(&req.stderr)?);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if let Some(cwd) = &req.cwd {
        command.current_dir(cwd);
    }
    // No pre_exec hook: std then starts the process with posix_spawn (vfork), which copies
    // no page tables. The guard thread stands in for PR_SET_PDEATHSIG.
    command.spawn().map(|child| child.id())
}

/// One thread reaps every child (a thread per task cost a clone per task): the tasks, whose
/// exits it reports with their request ids, and what they left behind, which the launcher
/// adopts as a subreaper. It waits for any child while the launcher has one.
fn reap(live: &Live, out: &Mutex<io::Stdout>) {
    loop {
        {
            // Checked under the lock: a task is listed only once it is a child, so no children
            // and listed tasks means something else reaped them.
            let mut tasks = live.lock();
            if !sys::has_children() {
                if !tasks.is_empty() {
                    eprintln!("openbatch task launcher: its tasks are no longer its children");
                    // Say they are gone (as killed) rather than spin.
                    for (_, id) in tasks.drain() {
                        emit(
                            out,
                            &Event::Exited {
                                id,
                                status: libc::SIGKILL,
                            },
                        );
                    }
                }
                while tasks.is_empty() {
                    tasks = live.added.wait(tasks).unwrap_or_else(|e| e.into_inner());
                }
                continue;
            }
        }
        let (pid, status) = match sys::wait_any_child() {
            Ok(reaped) => reaped,
            // ECHILD: looked at again above.
            Err(_) => continue,
        };
        // The leader is gone: what it left in its group is not a running task (a finished
        // task's daemons are left alone, as a shell would). An adopted orphan is only reaped.
        let id = live.lock().remove(&pid);
        if let Some(id) = id {
            emit(out, &Event::Exited { id, status });
        }
    }
}

fn emit(out: &Mutex<io::Stdout>, event: &Event) {
    let mut line = serde_json::to_vec(event).expect("events serialize");
    line.push(b'\n');
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
    if out.write_all(&line).and_then(|()| out.flush()).is_err() {
        // The agent is gone; PR_SET_PDEATHSIG takes the tasks down with us.
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// The agent's side.

static PROGRAM: OnceLock<(PathBuf, Vec<String>)> = OnceLock::new();
static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Makes the agent start its tasks through a launcher: `program args... --parent <agent pid>`
/// must run [`serve`]. Called once by the binary before the agent starts.
pub fn use_task_launcher(program: PathBuf, args: Vec<String>) {
    let _ = PROGRAM.set((program, args));
}

struct Waiters {
    /// The task's pid (= process group), once the launcher said it started it.
    pid: Option<u32>,
    spawned: Option<oneshot::Sender<io::Result<u32>>>,
    exited: oneshot::Sender<ExitStatus>,
}

pub(super) struct Client {
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    pending: Mutex<HashMap<u64, Waiters>>,
    next: AtomicU64,
    alive: AtomicBool,
}

/// A process started by the launcher.
pub(super) struct Launched {
    pub(super) pid: u32,
    exited: oneshot::Receiver<ExitStatus>,
    status: Option<io::Result<ExitStatus>>,
}

impl Launched {
    /// Waits for the process's exit. Cancel-safe; returns the same answer when called again.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if self.status.is_none() {
            self.status = Some((&mut self.exited).await.map_err(|_| {
                io::Error::other("the task launcher exited, taking the task with it")
            }));
        }
        match self.status.as_ref().expect("set above") {
            Ok(status) => Ok(*status),
            Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
        }
    }
}

/// The running launcher, started on first use; `None` when none is configured or it cannot be
/// started (the caller then forks the task itself). Call only on the agent's main thread: the
/// launcher lives as long as the thread that starts it.
pub(super) fn client() -> Option<Arc<Client>> {
    let (program, args) = PROGRAM.get()?;
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = slot.as_ref().filter(|c| c.alive.load(Ordering::Acquire)) {
        return Some(Arc::clone(c));
    }
    match Client::start(program, args) {
        Ok(c) => {
            *slot = Some(Arc::clone(&c));
            Some(c)
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not start the task launcher; the agent forks tasks itself");
            None
        }
    }
}

impl Client {
    fn start(program: &Path, args: &[String]) -> io::Result<Arc<Client>> {
        let mut command = tokio::process::Command::new(program);
        command
            // What `ps` shows: the program is often /proc/self/exe.
            .arg0("openbatch-task-launcher")
            .args(args)
            .arg("--parent")
            .arg(std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Out of the agent's group: a Ctrl-C meant for the agent must not kill the tasks
            // behind its back (the agent stops them itself).
            .process_group(0)
            .kill_on_drop(true);
        adopt::become_subreaper();
        let mut child = adopt::spawn_owned(&mut command)?;
        let launcher_pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("the task launcher has no pipes"));
        };
        let client = Arc::new(Client {
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            alive: AtomicBool::new(true),
        });
        let reader = Arc::clone(&client);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => match serde_json::from_str::<Event>(&line) {
                        Ok(event) => reader.deliver(event),
                        Err(err) => {
                            tracing::error!(error = %err, "the task launcher said something unreadable");
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(err) => {
                        tracing::error!(error = %err, "reading from the task launcher failed");
                        break;
                    }
                }
            }
            reader.alive.store(false, Ordering::Release);
            let orphaned: Vec<Waiters> = reader.lock_pending().drain().map(|(_, w)| w).collect();
            let _ = child.start_kill();
            match child.wait().await {
                Ok(status) => tracing::warn!(%status, "the task launcher exited"),
                Err(err) => tracing::warn!(error = %err, "the task launcher is gone"),
            }
            adopt::release(launcher_pid);
            // Reaped: its children are the agent's now. The tasks it had not reported ended die
            // (a launcher that was killed could not kill them itself).
            let pids: Vec<u32> = orphaned.iter().filter_map(|w| w.pid).collect();
            adopt::launcher_died(&pids);
            // Dropping the waiters tells every run in flight that its process is gone.
            drop(orphaned);
        });
        tracing::debug!("task launcher started");
        Ok(client)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiters>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, event: Event) {
        let mut pending = self.lock_pending();
        match event {
            Event::Spawned { id, pid } => {
                if let Some(w) = pending.get_mut(&id) {
                    w.pid = Some(pid);
                    if let Some(tx) = w.spawned.take() {
                        let _ = tx.send(Ok(pid));
                    }
                }
            }
            Event::Failed { id, errno, message } => {
                if let Some(mut w) = pending.remove(&id) {
                    let err = match errno {
                        Some(code) => io::Error::from_raw_os_error(code),
                        None => io::Error::other(message),
                    };
                    if let Some(tx) = w.spawned.take() {
                        let _ = tx.send(Err(err));
                    }
                }
            }
            Event::Exited { id, status } => {
                if let Some(w) = pending.remove(&id) {
                    let _ = w.exited.send(ExitStatus::from_raw(status));
                }
            }
        }
    }

    /// Starts `command` (configured by the runner: program, args, cwd, env) with its output in
    /// `task_dir/stdout.txt` and `stderr.txt`, which must exist.
    pub(super) async fn launch(
        &self,
        command: &tokio::process::Command,
        task_dir: &Path,
    ) -> io::Result<Launched> {
        let std = command.as_std();
        let lossy = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let request = Request {
            id,
            program: lossy(std.get_program()),
            args: std.get_args().map(lossy).collect(),
            cwd: std.get_current_dir().map(|d| lossy(d.as_os_str())),
            env: std
                .get_envs()
                .filter_map(|(k, v)| Some((lossy(k), lossy(v?))))
                .collect(),
            stdout: task_dir.join("stdout.txt"),
            stderr: task_dir.join("stderr.txt"),
        };
        let mut line = serde_json::to_vec(&request).map_err(io::Error::other)?;
        line.push(b'\n');
        let (spawned_tx, spawned_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        self.lock_pending().insert(
            id,
            Waiters {
                pid: None,
                spawned: Some(spawned_tx),
                exited: exited_tx,
            },
        );
        let written = self.stdin.lock().await.write_all(&line).await;
        if let Err(err) = written {
            self.lock_pending().remove(&id);
            self.alive.store(false, Ordering::Release);
            return Err(err);
        }
        let pid = spawned_rx.await.map_err(|_| {
            io::Error::other("the task launcher exited before it started the task")
        })??;
        Ok(Launched {
            pid,
            exited: exited_rx,
            status: None,
        })
    }
}
