//! The node agent protocol: what agents and the server say over the agent's one long-lived
//! WebSocket connection (`GET /agent/v1/connect`).
//!
//! Text frames carry one JSON [`AgentMsg`] or [`ServerMsg`]. File contents travel in binary
//! frames: 8 bytes of request id (big endian), 1 byte flag (1 = last chunk), then the data.
//! The first message on a connection is the agent's `Hello`; the server answers `Welcome` or
//! `Refused`. Both sides check [`PROTOCOL_VERSION`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::models::{EnvironmentSetting, FailureInfo, OutputFile, ResourceFile, StartTask};

/// The agent protocol's version; the server refuses agents that speak another. 3 added
/// application packages (`InstallPackages`, `RunSpec::app_packages`), multi-instance runs
/// (`RunSpec::instance`), job preparation tasks and `RunResult::empty_logs`. 4 added the
/// cleanup of task directories (`DeleteTaskDirs`, `TaskDirsDeleted`). 5 added the
/// coordination barrier of multi-instance tasks (`AgentMsg::Coordinated`,
/// `ServerMsg::RunPrimaryCommand`) and the node's GPUs (`Hello::gpus`).
pub const PROTOCOL_VERSION: u32 = 5;

/// The header that carries the join token on the WebSocket upgrade request.
pub const TOKEN_HEADER: &str = "x-openbatch-join-token";

/// One attempt of a task on a node, unique for the life of the service.
pub type RunId = u64;

/// A task's directory relative to the node root, as Azure Batch lays it out:
/// `workitems/<job>/job-1/<task>`, and for a job that a job schedule created (`<schedule>:job-<n>`)
/// `workitems/<schedule>/job-<n>/<task>`. The core (for the task file API) and the agent agree
/// through this one function.
pub fn task_dir(job_id: &str, task_id: &str) -> String {
    match job_id.split_once(':') {
        Some((schedule, run)) => format!("workitems/{schedule}/{run}/{task_id}"),
        None => format!("workitems/{job_id}/job-1/{task_id}"),
    }
}

/// A job's directory relative to the node root: `workitems/<job>` (which holds `job-1`), and
/// for a job that a job schedule created `workitems/<schedule>/job-<n>` (the schedule's other
/// jobs live beside it).
pub fn job_dir(job_id: &str) -> String {
    match job_id.split_once(':') {
        Some((schedule, run)) => format!("workitems/{schedule}/{run}"),
        None => format!("workitems/{job_id}"),
    }
}

/// A directory under `workitems/` that the server asks a node to delete: one task's directory
/// ([`task_dir`]), or with no task the whole job's ([`job_dir`]). Ids are as the job and task
/// were created (case preserved), as the agent named the directories.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskDirRef {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

impl TaskDirRef {
    /// The directory relative to the node root.
    pub fn path(&self) -> String {
        match &self.task_id {
            Some(t) => task_dir(&self.job_id, t),
            None => job_dir(&self.job_id),
        }
    }
}

/// The outcome of one process run on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub failure: Option<FailureInfo>,
    /// The process never started (resource files could not be staged, the program was not found).
    #[serde(default)]
    pub pre_processing_error: bool,
    /// The process ran, but uploading its output files failed (`exitConditions.fileUploadError`).
    #[serde(default)]
    pub file_upload_error: bool,
    /// The logs (`stdout.txt`, `stderr.txt`) that were empty when the run ended. They are not
    /// uploaded to the logs container (no object per empty file); the server serves them as
    /// empty files once the node no longer has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_logs: Vec<String>,
}

/// What a node needs to run one task attempt. Built by the core so the agent stays dumb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub run: RunId,
    pub job_id: String,
    pub task_id: String,
    pub command_line: String,
    /// The job's common environment, then the task's own (later entries win).
    pub environment: Vec<EnvironmentSetting>,
    pub resource_files: Vec<ResourceFile>,
    pub output_files: Vec<OutputFile>,
    pub max_wall_clock: Option<Duration>,
    pub required_slots: u32,
    /// Where the agent keeps this attempt's `stdout.txt` and `stderr.txt` when it ends. The
    /// core leaves it empty; the server fills it in at dispatch (the logs container of the
    /// account's auto-storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_upload: Option<LogUpload>,
    /// The id of the job's preparation task, when the job has one: the agent tells every run
    /// of the job where its directory is (`AZ_BATCH_JOB_PREP_DIR`,
    /// `AZ_BATCH_JOB_PREP_WORKING_DIR`). A job preparation or release task is itself a run like
    /// any other, under its own id (`workitems/<job>/job-1/jobpreparation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_preparation_task: Option<String>,
    /// The application packages the run needs on its node: the pool's, then the task's own.
    /// The node installs each (once per node) before the resource files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_packages: Vec<AppPackage>,
    /// Set for each node of a multi-instance task (a gang): which instance this run is. The
    /// core places all of them in one step, each on a whole node (`required_slots` is the
    /// node's slot count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceSpec>,
}

/// One node's part of a multi-instance task: instance `index` of `count`; index 0 is the
/// primary (the one that runs the task's command line; the task's `nodeInfo` is its node).
/// The contract for the agents: an instance's run lasts until
/// its attempt ends. The primary's end is the attempt's end, and the core then kills the other
/// instances; a subtask's failure fails the attempt; a subtask reported ended with success
/// before that frees its node early, so an agent should keep a subtask's run (its coordination
/// service) in flight until it is killed.
///
/// The agent downloads `common_resource_files` into the task directory (Azure's
/// `AZ_BATCH_TASK_SHARED_DIR`) on every instance and runs `coordination_command_line` there;
/// each reports `AgentMsg::Coordinated` when it has; the primary then waits for
/// `ServerMsg::RunPrimaryCommand` (every instance has coordinated), stages the task's own
/// resource files and runs its command line, while a subtask stays in flight (its coordination command running, or its process group kept) until
/// it is killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub index: u32,
    pub count: u32,
    /// The instances' node addresses (the address each agent connected from), in instance
    /// order: `hosts[0]` is the primary's. Empty from a core that predates it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `multiInstanceSettings.coordinationCommandLine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination_command_line: Option<String>,
    /// `multiInstanceSettings.commonResourceFiles` (the server resolves auto-storage ones at
    /// dispatch, like the task's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_resource_files: Vec<ResourceFile>,
}

/// One application package a run (or start task) needs, resolved to a concrete version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPackage {
    /// The application's id as it was created (case preserved).
    pub application_id: String,
    pub version: String,
    /// The reference named no version (the application's default was used), so the
    /// version-less `AZ_BATCH_APP_PACKAGE_<id>` variable is set as well.
    #[serde(default)]
    pub is_default: bool,
    /// Hex SHA-256 of the package's zip file: names its install directory and is checked
    /// after the download.
    #[serde(default)]
    pub sha256: String,
    /// The package's blob in the auto-storage's application container.
    #[serde(default)]
    pub blob: String,
    /// A signed GET URL of the blob; the server fills it in at dispatch.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Why the reference cannot be installed (the application or version is gone, or no
    /// default version is set); the run fails as a pre-processing error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
}

/// A signed container URL (write access) and the blob name prefix under which the agent
/// uploads a run's `stdout.txt` and `stderr.txt` (`<prefix>stdout.txt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogUpload {
    pub container_url: String,
    pub prefix: String,
}

/// A file or directory under the node root, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the directory that was listed, with `/` separators.
    pub name: String,
    pub is_directory: bool,
    pub size: u64,
    pub modified: DateTime<Utc>,
    pub created: Option<DateTime<Utc>>,
    /// Octal mode, e.g. `100644`.
    pub mode: String,
}

/// Why a file request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileError {
    NotFound,
    /// The path tried to leave the node root, or is otherwise unacceptable.
    Invalid(String),
    Io(String),
}

/// A node's resource use, reported with every heartbeat (for autoscale formulas). Traffic
/// counters cover the `interval_secs` since the previous report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    pub interval_secs: f64,
    /// CPU busy over the interval, 0 to 100.
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// On the file system of the node root.
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub disk_read_ops: u64,
    pub disk_write_ops: u64,
    pub network_in_bytes: u64,
    pub network_out_bytes: u64,
}

/// One GPU of a node's machine, as `nvidia-smi` lists it (openbatch; Azure's node model has
/// no GPU field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuInfo {
    /// The index `nvidia-smi` gives it on its machine (PCI bus order).
    pub index: u32,
    /// `GPU-...` (or `MIG-...`): stable, and what `CUDA_VISIBLE_DEVICES` names.
    pub uuid: String,
    pub name: String,
    /// Total memory in MiB (0 when `nvidia-smi` does not say).
    pub memory_mib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello {
        protocol: u32,
        agent_version: String,
        /// Set when the node was provisioned (or has joined before) and knows its id.
        node_id: Option<String>,
        /// For `node join`: the pool to join.
        pool_id: Option<String>,
        vm_size: Option<String>,
        slots: Option<u32>,
        running: Vec<RunId>,
        finished: Vec<(RunId, RunResult)>,
        start_task: Option<RunResult>,
        /// The GPUs this node's tasks see (assigned by the local provider, or all the GPUs a
        /// joined node found).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gpus: Vec<GpuInfo>,
    },
    Heartbeat,
    /// A heartbeat that carries the node's resource use.
    Metrics(NodeMetrics),
    TaskFinished {
        run: RunId,
        result: RunResult,
    },
    StartTaskFinished {
        result: RunResult,
    },
    /// An instance of a multi-instance task ran its coordination command to success (or had
    /// none). Said again after every reconnection while the run is in flight and, for the
    /// primary, not yet released.
    Coordinated {
        run: RunId,
    },
    Files {
        req: u64,
        result: Result<Vec<FileEntry>, FileError>,
    },
    /// The answer to `ReadFile`: the file's properties, then (unless `head_only`) binary
    /// frames with the bytes of the requested range.
    FileMeta {
        req: u64,
        result: Result<FileEntry, FileError>,
    },
    Deleted {
        req: u64,
        result: Result<(), FileError>,
    },
    /// The answer to `DeleteTaskDirs`: these directories are gone (or were refused and never
    /// will be: outside `workitems/`, or in use by a run). The server stops asking for them.
    TaskDirsDeleted {
        dirs: Vec<TaskDirRef>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ServerMsg {
    Welcome {
        node_id: String,
        pool_id: String,
        account_name: String,
        account_url: String,
        dedicated: bool,
        heartbeat_interval: Duration,
    },
    Refused {
        reason: String,
    },
    RunStartTask {
        start_task: StartTask,
        /// Where the start task's `stdout.txt` and `stderr.txt` are kept when it ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_upload: Option<LogUpload>,
        /// The pool's application packages, installed before the start task runs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        app_packages: Vec<AppPackage>,
    },
    RunTask {
        spec: Box<RunSpec>,
    },
    KillTask {
        run: RunId,
    },
    /// Every instance of the primary `run`'s attempt has coordinated: run the task's command
    /// line now.
    RunPrimaryCommand {
        run: RunId,
    },
    /// These results are durable on the server; the agent may forget them.
    Ack {
        runs: Vec<RunId>,
        start_task: bool,
    },
    ListFiles {
        req: u64,
        path: String,
        recursive: bool,
    },
    ReadFile {
        req: u64,
        path: String,
        range: Option<(u64, Option<u64>)>,
        head_only: bool,
    },
    DeleteFile {
        req: u64,
        path: String,
        recursive: bool,
    },
    /// The node is being preempted: send SIGTERM to every run, SIGKILL what is left after
    /// `grace`, write the notice file each task was told of (`AZ_BATCH_TASK_PREEMPTION_NOTICE`),
    /// and report the runs' ends as usual. The server stops the agent afterwards.
    Preempt {
        grace: Duration,
        /// When the grace period ends (for the notice file).
        deadline: DateTime<Utc>,
    },
    /// Install these application packages now (each once per node), ahead of the runs that
    /// will need them. Failures are only logged: a run that needs a package installs it
    /// itself, and reports a failure then.
    InstallPackages {
        app_packages: Vec<AppPackage>,
    },
    /// Delete these task (or job) directories, with everything in them. A missing one is
    /// fine; one that a run on the node still uses is left alone. Answered with
    /// `TaskDirsDeleted` once they are out of the way; the server asks again after a reconnect
    /// until it has that answer.
    DeleteTaskDirs {
        dirs: Vec<TaskDirRef>,
    },
    /// Leave the pool: stop running tasks and exit.
    Shutdown,
    /// Reboot: stop every task, forget the start task's outcome, and connect again as a fresh
    /// boot; with `wipe` (reimage), also empty the node root.
    Restart {
        wipe: bool,
    },
}

/// Encode a binary file-data frame.
pub fn encode_chunk(req: u64, last: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + data.len());
    out.extend_from_slice(&req.to_be_bytes());
    out.push(u8::from(last));
    out.extend_from_slice(data);
    out
}

/// Decode a binary file-data frame: (request id, last, data).
pub fn decode_chunk(frame: &[u8]) -> Option<(u64, bool, &[u8])> {
    if frame.len() < 9 {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&frame[..8]);
    Some((u64::from_be_bytes(id), frame[8] == 1, &frame[9..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_dirs_follow_azure_layout() {
        assert_eq!(task_dir("j", "t"), "workitems/j/job-1/t");
        assert_eq!(task_dir("nightly:job-7", "t"), "workitems/nightly/job-7/t");
        assert_eq!(job_dir("j"), "workitems/j");
        assert_eq!(job_dir("nightly:job-7"), "workitems/nightly/job-7");
        let t = TaskDirRef {
            job_id: "j".into(),
            task_id: Some("t".into()),
        };
        assert_eq!(t.path(), "workitems/j/job-1/t");
    }
}
