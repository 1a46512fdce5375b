//! `GET /openbatch/jobs/{job}/tasks/{task}/explain`: an openbatch extension (no Azure Batch
//! counterpart) that says why a task is, or is not, running.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{wire_enum, ExecutionResult, FailureInfo};
use super::job::JobState;
use super::pool::AllocationState;
use super::task::TaskState;

wire_enum!(ExplainReason {
    Running = "running",
    Completed = "completed",
    JobNotActive = "jobNotActive",
    PoolNotFound = "poolNotFound",
    NeverRunnable = "neverRunnable",
    WaitingForDependencies = "waitingForDependencies",
    JobAtMaxParallelTasks = "jobAtMaxParallelTasks",
    NoNodes = "noNodes",
    NoNodeReady = "noNodeReady",
    WaitingForSlot = "waitingForSlot",
    // Multi-instance tasks: nodes are held for it as they drain (`waitingForGangReservation`),
    // or it waits for enough empty nodes, the pool's reservation being another task's
    // (`waitingForNodes`).
    WaitingForGangReservation = "waitingForGangReservation",
    WaitingForNodes = "waitingForNodes",
    // Placed (`preparing`): the job preparation task must succeed on its node first, or, for
    // a multi-instance task, on every node of the gang.
    WaitingForJobPreparation = "waitingForJobPreparation",
});

/// Why a task is where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExplanation {
    pub job_id: String,
    pub task_id: String,
    pub state: TaskState,
    pub reason: ExplainReason,
    /// One sentence for people.
    pub message: String,
    pub required_slots: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<JobState>,
    /// Where it runs or ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_info: Option<FailureInfo>,
    /// Dependencies not satisfied yet (`waitingForDependencies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<ExplainDependencies>,
    /// The job's `maxParallelTasks` and its tasks running now (`jobAtMaxParallelTasks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks: Option<i64>,
    /// How many runnable tasks of the pool are ahead of this one in scheduling order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_ahead: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<ExplainPool>,
    /// A multi-instance task: the nodes it needs (`numberOfInstances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,
    /// A multi-instance task holding the pool's reservation: the nodes held for it so far, and
    /// of those, the ones already empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_nodes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_nodes_empty: Option<u64>,
    /// A multi-instance task waiting for the job preparation task (`waitingForJobPreparation`):
    /// its nodes are `heldNodes`; these of them are prepared already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_nodes: Option<u64>,
}

/// The dependencies a task waits for. Lists are capped; the counts are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainDependencies {
    /// Task ids of `dependsOn.taskIds` not satisfied (at most 100).
    pub unmet_task_ids: Vec<String>,
    pub unmet_task_id_count: u64,
    /// Of those, the ones that completed without satisfying (they block for good).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_task_ids: Vec<String>,
    /// Ranges of `dependsOn.taskIdRanges` not satisfied, with the first integer that is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmet_ranges: Vec<ExplainRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainRange {
    pub start: i64,
    pub end: i64,
    pub first_unmet: i64,
}

/// The pool a waiting task is queued on, as the scheduler sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainPool {
    pub pool_id: String,
    pub task_slots_per_node: i32,
    pub allocation_state: AllocationState,
    pub target_dedicated_nodes: i32,
    pub target_low_priority_nodes: i32,
    /// Nodes in the pool, and those that can take new tasks now.
    pub nodes: u64,
    pub schedulable_nodes: u64,
    /// Slots of the schedulable nodes: all of them, and those free now.
    pub total_slots: u64,
    pub free_slots: u64,
    /// Schedulable nodes with enough free slots for this task now.
    pub nodes_that_fit_now: u64,
    /// Nodes with enough slots in all for this task (when they are free).
    pub nodes_that_could_fit: u64,
}
