use chrono::{DateTime, Utc};
pub use openbatch_api::agent::{RunResult, RunSpec};
use openbatch_api::models::{
    DisableJobOption, DisableSchedulingOption, JobCreate, JobUpdate, NodeDeallocationOption,
    PoolCreate, PoolReplace, PoolResize, PoolUpdate, StartTask, TaskAddResult, TaskConstraints,
    TaskCreate,
};
use serde::{Deserialize, Serialize};

use openbatch_api::agent::RunId;

/// Everything that can change the core: user commands, node and provider events, ticks.
/// Inputs that changed state are journaled and replayed verbatim after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Input {
    CreatePool(Box<PoolCreate>),
    DeletePool {
        id: String,
    },
    ResizePool {
        id: String,
        resize: PoolResize,
    },
    CreateJob(Box<JobCreate>),
    DeleteJob {
        id: String,
    },
    TerminateJob {
        id: String,
        reason: Option<String>,
    },
    /// Tasks that already failed validation in the shell are not here; the core validates
    /// the rest and answers one result per task.
    AddTasks {
        job: String,
        tasks: Vec<TaskCreate>,
    },
    DeleteTask {
        job: String,
        task: String,
    },
    TerminateTask {
        job: String,
        task: String,
    },
    UpdatePool {
        id: String,
        patch: Box<PoolUpdate>,
    },
    ReplacePoolProperties {
        id: String,
        props: PoolReplace,
    },
    StopPoolResize {
        id: String,
    },
    RemoveNodes {
        pool: String,
        nodes: Vec<String>,
        option: Option<NodeDeallocationOption>,
    },
    /// PATCH (`replace: false`) or PUT (`replace: true`) of a job's settable properties.
    UpdateJob {
        id: String,
        update: Box<JobUpdate>,
        replace: bool,
    },
    DisableJob {
        id: String,
        option: DisableJobOption,
    },
    EnableJob {
        id: String,
    },
    ReplaceTask {
        job: String,
        task: String,
        constraints: Option<TaskConstraints>,
    },
    ReactivateTask {
        job: String,
        task: String,
    },
    SetNodeScheduling {
        pool: String,
        node: String,
        enabled: bool,
        option: Option<DisableSchedulingOption>,
    },
    /// Reboot (or, with `reimage`, reimage) a node: its tasks follow `option`, then its agent
    /// restarts and the start task runs again.
    RestartNode {
        pool: String,
        node: String,
        option: Option<NodeDeallocationOption>,
        reimage: bool,
    },
    /// Turn autoscale on (or change its formula or interval). The shell checked the formula.
    EnableAutoScale {
        id: String,
        formula: Option<String>,
        interval: Option<openbatch_api::time::IsoDuration>,
    },
    DisableAutoScale {
        id: String,
    },
    /// The shell evaluated the pool's formula: record the run, and if it succeeded and
    /// autoscale is still on, adopt the targets (dedicated, low-priority, how nodes leave).
    AutoScaleEvaluated {
        id: String,
        run: openbatch_api::models::AutoScaleRun,
        targets: Option<(u32, u32, NodeDeallocationOption)>,
    },
    /// Another input, applied only if the entity still matches the request's conditional
    /// headers (`If-Match`, ...); otherwise `ConditionNotMet` and nothing changes.
    Conditional {
        target: crate::cond::Target,
        cond: crate::cond::Precondition,
        input: Box<Input>,
    },
    /// A node agent that was not provisioned by a provider asks to join a pool.
    JoinNode {
        pool: String,
        vm_size: String,
        slots_hint: Option<u32>,
    },
    /// A node agent connected (first time or again) and told what it has.
    NodeConnected(NodeHello),
    /// The node's connection dropped; it may come back.
    NodeDisconnected {
        node: String,
    },
    /// The provider knows the node is gone for good (its process died, its machine vanished).
    NodeLost {
        node: String,
        reason: String,
    },
    /// The provider finished removing a node the core asked it to remove.
    NodeRemoved {
        node: String,
    },
    /// The provider could not allocate a node the core asked for (on the local provider: too
    /// few free GPUs for its size). The node is forgotten and the pool gets `error` in its
    /// `resizeErrors`; it does not grow again until its targets are set again (see
    /// `allocation.rs`).
    NodeAllocationFailed {
        node: String,
        error: openbatch_api::models::ResizeError,
    },
    StartTaskCompleted {
        node: String,
        result: RunResult,
    },
    TaskCompleted {
        node: String,
        run: RunId,
        result: RunResult,
    },
    /// An instance of a multi-instance task's attempt ran its coordination command to success
    /// (agents say it again after reconnecting, while the run is in flight). When every
    /// instance has, the primary is told to run the task's command line.
    InstanceCoordinated {
        node: String,
        run: RunId,
    },
    /// Take a low-priority node's capacity back (an operator's command or the provider's
    /// random preemption): its runs get `grace` to end (SIGTERM and a notice file), their tasks
    /// are requeued, and after `recovery` the node boots again as a fresh machine.
    PreemptNode {
        pool: String,
        node: String,
        grace: std::time::Duration,
        recovery: std::time::Duration,
    },
    /// `POST /jobschedules`. The shell checked the intervals against its configured minimum.
    CreateJobSchedule(Box<openbatch_api::models::JobScheduleCreate>),
    /// PATCH (`replace: false`) or PUT (`replace: true`) of a job schedule.
    UpdateJobSchedule {
        id: String,
        update: Box<openbatch_api::models::JobScheduleUpdate>,
        replace: bool,
    },
    DisableJobSchedule {
        id: String,
    },
    EnableJobSchedule {
        id: String,
    },
    /// Terminate a job schedule, and its active job with it.
    TerminateJobSchedule {
        id: String,
    },
    /// Delete a job schedule and every job it created.
    DeleteJobSchedule {
        id: String,
    },
    /// openbatch: a package's zip is in the auto-storage (`blob`); record it as `version` of
    /// the application, creating the application if it is new.
    PutApplicationPackage(crate::apps::PackageUpload),
    /// openbatch: set an application's display name or default version.
    UpdateApplication {
        application_id: String,
        update: openbatch_api::models::ApplicationUpdate,
    },
    /// openbatch: delete one version of an application, or the whole application.
    DeleteApplicationPackage {
        application_id: String,
        version: Option<String>,
    },
    /// The server restarted: every node is disconnected until its agent dials in again.
    ServerRestarted,
    /// A node's agent deleted these task or job directories (`Effect::DeleteTaskDirs`): the
    /// node no longer owes them.
    TaskDirsDeleted {
        node: String,
        dirs: Vec<openbatch_api::agent::TaskDirRef>,
    },
    /// Time passed: connection timeouts, deferred deletions, job wall-clock limits, job schedules that are due, task directories past their retention time.
    Tick,
}

/// What an agent says when it (re)connects.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeHello {
    pub node: String,
    pub ip_address: String,
    pub agent_version: String,
    /// Runs the agent is still executing.
    pub running: Vec<RunId>,
    /// Runs that finished while the agent was not connected, in the order they finished.
    pub finished: Vec<(RunId, RunResult)>,
    /// Whether the pool start task already completed on this node (its last result).
    pub start_task: Option<RunResult>,
}

/// What the shell must do after an input was applied (and journaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Bring up a node agent for this node id.
    ProvisionNode {
        pool: String,
        node: String,
        vm_size: String,
        dedicated: bool,
        slots: u32,
    },
    /// Run the pool's start task on a node.
    RunStartTask {
        node: String,
        start_task: StartTask,
        /// The pool's application packages, installed before the start task.
        #[serde(default)]
        app_packages: Vec<openbatch_api::agent::AppPackage>,
    },
    /// Run one task attempt on a node.
    RunTask { node: String, spec: Box<RunSpec> },
    /// Kill a run on a node (terminate, delete, node removal with terminate/requeue).
    KillTask { node: String, run: RunId },
    /// Every instance of the multi-instance attempt whose primary is `run` has coordinated:
    /// the primary runs the task's command line now.
    RunPrimaryCommand { node: String, run: RunId },
    /// Stop the node's agent and release the node; answer with `Input::NodeRemoved`.
    RemoveNode { node: String },
    /// Restart the node's agent (a reboot; with `wipe`, a reimage that empties the node root).
    RestartNode { node: String, wipe: bool },
    /// Tell the node it is being preempted: SIGTERM to its runs, SIGKILL after `grace`, and a
    /// notice file in each task's directory. The runs' reports follow as usual.
    PreemptNode {
        node: String,
        grace: std::time::Duration,
    },
    /// A deleted job (`task: None`) or task is gone for good: the logs the server keeps of its
    /// runs can be deleted. Only runs before `before_run` are meant (run ids only grow): a job
    /// or task created again under the same id keeps the logs of its own runs.
    DiscardLogs {
        job: String,
        task: Option<String>,
        before_run: RunId,
    },
    /// Install these application packages on the node now, ahead of the runs that need them
    /// (a node joined a pool with packages, or the pool's packages changed). The runs install
    /// them anyway (once per node) if this did not happen; it decides nothing.
    InstallPackages {
        node: String,
        app_packages: Vec<openbatch_api::agent::AppPackage>,
    },
    /// Delete these task or job directories on the node (retention time passed, task or job
    /// deleted); answer with `Input::TaskDirsDeleted`. The core asks again after a reconnect
    /// until then; deleting a missing directory is fine.
    DeleteTaskDirs {
        node: String,
        dirs: Vec<openbatch_api::agent::TaskDirRef>,
    },
}

impl Effect {
    /// Whether the shell may carry this effect out before the input that produced it is
    /// durable. Starting a run early is safe: if the server dies before the journal has it,
    /// the replayed core never heard of that run id (ids carry the restart epoch), so the
    /// reconnecting agent's report of it is answered with a kill and the task is placed again.
    /// Everything else (kills, provisioning, removals) waits for durability.
    pub fn safe_before_durable(&self) -> bool {
        matches!(self, Effect::RunTask { .. } | Effect::RunStartTask { .. })
    }
}

/// The caller's answer to an applied input.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    Created {
        etag: String,
        last_modified: DateTime<Utc>,
    },
    TaskResults(Vec<TaskAddResult>),
    Joined {
        node: String,
    },
    /// Application package blobs nothing refers to any more (a replaced upload, a deleted
    /// version): the shell deletes them from storage.
    BlobsReleased(Vec<String>),
}

/// The result of [`crate::Core::apply`].
#[derive(Debug)]
pub struct Applied {
    pub reply: Reply,
    pub effects: Vec<Effect>,
    /// Whether the input changed state and so must be journaled before the reply is sent.
    pub changed: bool,
}
