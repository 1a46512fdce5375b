//! End-to-end tests of the runner: real processes, real files, a real HTTP server on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;

mod instances;
mod outputs;
mod resources;

/// Generous bound for any run in these tests; they normally finish in well under a second.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

fn spec(dir: &TempDir, command_line: &str) -> RunSpec {
    let task_dir = dir.path().join("task");
    RunSpec {
        command_line: command_line.to_owned(),
        working_dir: task_dir.join("wd"),
        task_dir,
        env: Vec::new(),
        resource_files: Vec::new(),
        output_files: Vec::new(),
        max_wall_clock: None,
        log_upload: None,
        applications: None,
        instance: None,
    }
}

async fn run_to_end(spec: RunSpec) -> RunOutcome {
    finish(start(spec)).await
}

async fn finish(handle: RunHandle) -> RunOutcome {
    tokio::time::timeout(RUN_DEADLINE, handle.wait())
        .await
        .expect("the run did not end in time")
}

/// Polls `condition` until it holds or `within` passes.
async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|err| panic!("{}: {err}", path.as_ref().display()))
}

/// Whether `pid` is gone (or a zombie, which is dead but not yet reaped by its new parent).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
    }
}

fn failure_code(outcome: &RunOutcome) -> &str {
    outcome
        .failure
        .as_ref()
        .map(|failure| failure.code.as_str())
        .unwrap_or("<none>")
}

#[tokio::test]
async fn echo_goes_to_stdout_file() {
    let dir = TempDir::new().unwrap();
    let spec = spec(&dir, "echo hello world");
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert!(!outcome.pre_processing_error);
    assert!(outcome.start_time <= outcome.end_time);
    assert_eq!(read(task_dir.join("stdout.txt")), "hello world\n");
    assert_eq!(read(task_dir.join("stderr.txt")), "");
}

#[tokio::test]
async fn non_zero_exit_is_a_failure_exit_code() {
    let dir = TempDir::new().unwrap();
    let spec = spec(&dir, r#"/bin/sh -c "echo oops >&2; exit 3""#);
    let task_dir = spec.task_dir.clone();
    let outcome = run_to_end(spec).await;
    assert_eq!(outcome.exit_code, Some(3));
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.category, FailureCategory::UserError);
    assert_eq!(failure.code, codes::FAILURE_EXIT_CODE);
    assert!(!outcome.pre_processing_error);
    assert_eq!(outcome.killed_by, None);
    assert_eq!(read(task_dir.join("stderr.txt")), "oops\n");
}

#[tokio::test]
async fn command_line_quoting_without_a_shell() {
    let dir = TempDir::new().unwrap();
    let spec = spec(&dir, r#"/bin/sh -c "echo 'a b' > out.txt""#);
    let wd = spec.working_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    assert_eq!(read(wd.join("out.txt")), "a b\n");
}

#[tokio::test]
async fn environment_variables_are_visible_and_later_entries_win() {
    let dir = TempDir::new().unwrap();
    let mut spec = spec(
        &dir,
        r#"/bin/sh -c 'echo "$OB_FIRST $OB_SECOND ${HOME:+inherited}" > env.txt'"#,
    );
    spec.env = vec![
        ("OB_FIRST".to_owned(), "one".to_owned()),
        ("OB_SECOND".to_owned(), "overridden".to_owned()),
        ("OB_SECOND".to_owned(), "two".to_owned()),
    ];
    let wd = spec.working_dir.clone();
    let outcome = run_to_end(spec).await;
    assert!(outcome.succeeded(), "{:?}", outcome.failure);
    let expected = if std::env::var_os("HOME").is_some() {
        "one two inherited\n"
    } else {
        "one two \n"
    };
    assert_eq!(read(wd.join("env.txt")), expected);
}

#[tokio::test]
async fn wall_clock_kills_the_whole_process_tree() {
    let dir = TempDir::new().unwrap();
    let mut spec = spec(
        &dir,
        r#"/bin/sh -c 'sleep 30 & echo $! > bg.pid; sleep 30'"#,
    );
    spec.max_wall_clock = Some(Duration::from_secs(1));
    let wd = spec.working_dir.clone();
    let started = Instant::now();
    let outcome = run_to_end(spec).await;
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_secs(1),
        "killed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "SIGTERM should end it well within the grace: {elapsed:?}"
    );
    assert_eq!(
        outcome.killed_by,
        Some(KillReason::MaxWallClockTimeExceeded)
    );
    let failure = outcome.failure.as_ref().expect("a failure");
    assert_eq!(failure.code, codes::TASK_ENDED);
    assert_eq!(failure.category, FailureCategory::UserError);
    assert!(
        failure.message.contains("maxWallClockTime"),
        "{}",
        failure.message
    );
    assert_eq!(outcome.exit_code, Some(128 + libc::SIGTERM));
    assert!(!outcome.pre_processing_error);

    let grandchild: u32 = read(wd.join("bg.pid")).trim().parse().expect("a pid");
    assert!(
        eventually(Duration::from_secs(3), || process_is_dead(grandchild)).await,
        "the background sleep {grandchild} survived the kill"
    );
}

#[tokio::test]
async fn user_kill_ends_the_task() {
    let dir = TempDir::new().unwrap();
    let handle = start(spec(&dir, "sleep 30"));
    assert!(
        eventually(Duration::from_secs(10), || handle.pid().is_some()).await,
        "the process never started"
    );
    let pid = handle.pid().expect("a pid");
    let started = Instant::now();
    handle.kill(KillReason::Terminated);
    let outcome = finish(handle).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.killed_by, Some(KillReason::Terminated));
    let failure = outcome.failure.as_ref().expect("a failure");
    assert_eq!(failure.code, codes::TASK_ENDED);
    assert_eq!(failure.category, FailureCategory::UserError);
    assert_eq!(outcome.exit_code, Some(128 + libc::SIGTERM));
    assert!(process_is_dead(pid));
}

#[tokio::test]
async fn sigterm_ignoring_tasks_get_sigkill_after_the_grace() {
    let dir = TempDir::new().unwrap();
    // An ignored signal stays ignored across exec, so the sleep ignores SIGTERM too.
    let spec = spec(
        &dir,
        r#"/bin/sh -c 'trap "" TERM; touch trapped; sleep 60; exit 0'"#,
    );
    let trapped = spec.working_dir.join("trapped");
    let handle = start(spec);
    assert!(
        eventually(Duration::from_secs(10), || trapped.exists()).await,
        "the shell never got to install its trap"
    );
    let killer = handle.killer();
    let started = Instant::now();
    killer.kill(KillReason::Terminated);
    let outcome = finish(handle).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= KILL_GRACE - Duration::from_millis(100),
        "SIGKILL came before the grace ended: {elapsed:?}"
    );
    assert!(elapsed < KILL_GRACE + Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(outcome.exit_code, Some(128 + libc::SIGKILL));
    assert_eq!(failure_code(&outcome), codes::TASK_ENDED);
}

#[tokio::test]
async fn a_preemption_kill_uses_its_own_grace_period() {
    let dir = TempDir::new().unwrap();
    let spec = spec(
        &dir,
        r#"/bin/sh -c 'trap "" TERM; touch trapped; sleep 60; exit 0'"#,
    );
    let trapped = spec.working_dir.join("trapped");
    let handle = start(spec);
    assert!(
        eventually(Duration::from_secs(10), || trapped.exists()).await,
        "the shell never got to install its trap"
    );
    let grace = Duration::from_millis(1500);
    let started = Instant::now();
    handle.killer().kill(KillReason::Preempted { grace });
    let outcome = finish(handle).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= grace - Duration::from_millis(100), "{elapsed:?}");
    assert!(
        elapsed < KILL_GRACE,
        "the default grace was used: {elapsed:?}"
    );
    assert_eq!(outcome.exit_code, Some(128 + libc::SIGKILL));
    assert_eq!(outcome.killed_by, Some(KillReason::Preempted { grace }));
}

#[tokio::test]
async fn dropping_the_handle_does_not_kill_the_task() {
    let dir = TempDir::new().unwrap();
    let spec = spec(&dir, r#"/bin/sh -c 'sleep 0.5; echo done > done.txt'"#);
    let done = spec.working_dir.join("done.txt");
    drop(start(spec));
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&done)
            .is_ok_and(|text| text == "done\n"))
        .await,
        "the task did not finish after its handle was dropped"
    );
}

#[tokio::test]
async fn missing_program_is_a_pre_processing_user_error() {
    let dir = TempDir::new().unwrap();
    let outcome = run_to_end(spec(&dir, "openbatch-no-such-program --flag")).await;
    assert_eq!(outcome.exit_code, None);
    assert!(outcome.pre_processing_error);
    let failure = outcome.failure.expect("a failure");
    assert_eq!(failure.code, codes::COMMAND_PROGRAM_NOT_FOUND);
    assert_eq!(failure.category, FailureCategory::UserError);
    assert!(
        failure.message.contains("openbatch-no-such-program"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn non_executable_program_and_bad_quoting_are_launch_failures() {
    let dir = TempDir::new().unwrap();
    let spec_noexec = spec(&dir, "./script.sh");
    std::fs::create_dir_all(&spec_noexec.working_dir).unwrap();
    std::fs::write(
        spec_noexec.working_dir.join("script.sh"),
        "#!/bin/sh\necho hi\n",
    )
    .unwrap();
    std::fs::set_permissions(
        spec_noexec.working_dir.join("script.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let outcome = run_to_end(spec_noexec).await;
    assert!(outcome.pre_processing_error);
    assert_eq!(failure_code(&outcome), codes::COMMAND_LAUNCH_FAILED);
    assert!(outcome
        .failure
        .as_ref()
        .is_some_and(|f| f.message.contains("fileMode")));

    let outcome = run_to_end(spec(&dir, r#"echo "unterminated"#)).await;
    assert!(outcome.pre_processing_error);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(failure_code(&outcome), codes::COMMAND_LAUNCH_FAILED);
    assert_eq!(
        outcome.failure.as_ref().map(|f| f.category),
        Some(FailureCategory::UserError)
    );
}

/// Set (to a pid file path) only in the child process that [`tasks_die_with_the_agent`] starts.
const AGENT_HELPER_ENV: &str = "OPENBATCH_RUNNER_TEST_AGENT_PID_FILE";

/// Plays a node agent that dies abruptly: starts a long task, records its pid and exits the whole
/// process without killing anything. Does nothing unless run by [`tasks_die_with_the_agent`].
#[test]
fn agent_process_for_the_parent_death_test() {
    let Some(pid_file) = std::env::var_os(AGENT_HELPER_ENV).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let task_dir = pid_file.with_file_name("task");
        let handle = start(RunSpec {
            command_line: "sleep 30".to_owned(),
            working_dir: task_dir.join("wd"),
            task_dir,
            env: Vec::new(),
            resource_files: Vec::new(),
            output_files: Vec::new(),
            max_wall_clock: None,
            log_upload: None,
            applications: None,
            instance: None,
        });
        assert!(eventually(Duration::from_secs(10), || handle.pid().is_some()).await);
        let pid = handle.pid().expect("a pid");
        std::fs::write(&pid_file, pid.to_string()).expect("pid file written");
    });
    std::process::exit(0);
}

#[test]
fn tasks_die_with_the_agent() {
    let dir = TempDir::new().unwrap();
    let pid_file = dir.path().join("task.pid");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runner::tests::agent_process_for_the_parent_death_test",
            "--nocapture",
        ])
        .env(AGENT_HELPER_ENV, &pid_file)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the helper agent failed: {status}");
    let task_pid: u32 = read(&pid_file).trim().parse().expect("a pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_is_dead(task_pid) {
        assert!(
            Instant::now() < deadline,
            "task {task_pid} outlived its agent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
