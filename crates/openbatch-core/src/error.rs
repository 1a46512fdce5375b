use openbatch_api::error::{codes, ApiError};

/// Why the core refused an input. Every variant maps to an Azure Batch error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("pool '{0}' does not exist")]
    PoolNotFound(String),
    #[error("pool '{0}' already exists")]
    PoolExists(String),
    #[error("pool '{0}' is being deleted")]
    PoolBeingDeleted(String),
    #[error("job '{0}' does not exist")]
    JobNotFound(String),
    #[error("job '{0}' already exists")]
    JobExists(String),
    #[error("job '{0}' is being deleted")]
    JobBeingDeleted(String),
    #[error("job '{0}' is completed")]
    JobCompleted(String),
    #[error("job schedule '{0}' does not exist")]
    JobScheduleNotFound(String),
    #[error("job schedule '{0}' already exists")]
    JobScheduleExists(String),
    #[error("job schedule '{0}' is being deleted")]
    JobScheduleBeingDeleted(String),
    #[error("job schedule '{0}' is being terminated")]
    JobScheduleBeingTerminated(String),
    #[error("job schedule '{0}' is completed")]
    JobScheduleCompleted(String),
    /// A job cannot take the id of a job schedule.
    #[error("a job schedule with id '{0}' exists")]
    JobScheduleWithSameIdExists(String),
    /// A job schedule cannot take the id of a job.
    #[error("a job with id '{0}' exists")]
    JobWithSameIdExists(String),
    #[error("task '{1}' of job '{0}' does not exist")]
    TaskNotFound(String, String),
    #[error("task '{1}' already exists in job '{0}'")]
    TaskExists(String, String),
    #[error("task '{1}' of job '{0}' is completed")]
    TaskCompleted(String, String),
    #[error("node '{0}' does not exist")]
    NodeNotFound(String),
    #[error("invalid value for {property}: {reason}")]
    InvalidProperty {
        property: String,
        value: String,
        reason: String,
    },
    #[error("missing required property {0}")]
    MissingProperty(String),
    #[error("{0}")]
    TooManyTasks(String),
    /// The resource is in a state where the operation cannot be done (409).
    #[error("{0}")]
    InvalidState(String),
    #[error("node '{0}' is not ready for this operation")]
    NodeNotReady(String),
    #[error("the condition specified using HTTP conditional header(s) is not met")]
    ConditionNotMet,
    #[error("{0}")]
    Unsupported(String),
    /// A task has `dependsOn`, but its job was not created with `usesTaskDependencies`.
    #[error("job '{0}' does not use task dependencies")]
    DependenciesNotOnJob(String),
    /// `dependsOn.taskIds` is longer in total than Azure stores (characters).
    #[error("dependsOn.taskIds has {0} characters in total")]
    DependencyListTooLong(usize),
    /// `dependsOn.taskIdRanges` has more ranges than are stored.
    #[error("dependsOn.taskIdRanges has {0} ranges")]
    DependencyRangesTooLong(usize),
    #[error("application '{0}' does not exist")]
    ApplicationNotFound(String),
    #[error("application '{0}' has no version '{1}'")]
    ApplicationPackageNotFound(String, String),
    /// `applicationPackageReferences` name an application or version that does not exist,
    /// or (on a pool) an application without a default version.
    #[error("{0}")]
    InvalidApplicationPackageReferences(String),
    #[error("{0}")]
    ApplicationPackageInUse(String),
    /// A task takes the id of the job's preparation (`true`) or release (`false`) task.
    #[error("task '{1}' has the id of job '{0}''s job preparation or release task")]
    TaskIdOfJobTask(String, String, bool),
    /// `jobpreparationandreleasetaskstatus` of a job without a job preparation task.
    #[error("job '{0}' has no job preparation task")]
    JobPreparationTaskNotSpecified(String),
}

impl CoreError {
    pub fn invalid(property: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        CoreError::InvalidProperty {
            property: property.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e {
            CoreError::PoolNotFound(_) => ApiError::not_found(codes::POOL_NOT_FOUND, "pool"),
            CoreError::PoolExists(_) => ApiError::new(
                409,
                codes::POOL_EXISTS,
                "The specified pool already exists.",
            ),
            CoreError::PoolBeingDeleted(_) => ApiError::new(
                409,
                codes::POOL_BEING_DELETED,
                "The specified pool has been marked for deletion and is being deleted.",
            ),
            CoreError::JobNotFound(_) => ApiError::not_found(codes::JOB_NOT_FOUND, "job"),
            CoreError::JobExists(_) => {
                ApiError::new(409, codes::JOB_EXISTS, "The specified job already exists.")
            }
            CoreError::JobBeingDeleted(_) => ApiError::new(
                409,
                codes::JOB_BEING_DELETED,
                "The specified job has been marked for deletion and is being deleted.",
            ),
            CoreError::JobCompleted(_) => ApiError::new(
                409,
                codes::JOB_COMPLETED,
                "The specified job is already in a completed state.",
            ),
            CoreError::JobScheduleNotFound(_) => {
                ApiError::not_found(codes::JOB_SCHEDULE_NOT_FOUND, "job schedule")
            }
            CoreError::JobScheduleExists(_) => ApiError::new(
                409,
                codes::JOB_SCHEDULE_EXISTS,
                "The specified job schedule already exists.",
            ),
            CoreError::JobScheduleBeingDeleted(_) => ApiError::new(
                409,
                codes::JOB_SCHEDULE_BEING_DELETED,
                "The specified job schedule has been marked for deletion and is being deleted.",
            ),
            CoreError::JobScheduleBeingTerminated(_) => ApiError::new(
                409,
                codes::JOB_SCHEDULE_BEING_TERMINATED,
                "The specified job schedule is being terminated.",
            ),
            CoreError::JobScheduleCompleted(_) => ApiError::new(
                409,
                codes::JOB_SCHEDULE_COMPLETED,
                "The specified job schedule is already in a completed state.",
            ),
            CoreError::JobScheduleWithSameIdExists(id) => ApiError::new(
                409,
                codes::JOB_SCHEDULE_WITH_SAME_ID_EXISTS,
                format!("A job schedule with the id '{id}' exists; a job and a job schedule cannot have the same id."),
            ),
            CoreError::JobWithSameIdExists(id) => ApiError::new(
                409,
                codes::JOB_WITH_SAME_ID_EXISTS,
                format!("A job with the id '{id}' exists; a job and a job schedule cannot have the same id."),
            ),
            CoreError::TaskNotFound(_, _) => ApiError::not_found(codes::TASK_NOT_FOUND, "task"),
            CoreError::TaskExists(_, _) => ApiError::new(
                409,
                codes::TASK_EXISTS,
                "The specified task already exists.",
            ),
            CoreError::TaskCompleted(_, _) => ApiError::new(
                409,
                codes::TASK_COMPLETED,
                "The specified task is already completed.",
            ),
            CoreError::NodeNotFound(_) => ApiError::not_found(codes::NODE_NOT_FOUND, "node"),
            CoreError::InvalidProperty {
                property,
                value,
                reason,
            } => ApiError::invalid_property(&property, &value, &reason),
            CoreError::MissingProperty(p) => ApiError::missing_property(&p),
            CoreError::TooManyTasks(m) => ApiError::new(413, codes::REQUEST_BODY_TOO_LARGE, m),
            CoreError::InvalidState(m) => {
                ApiError::new(409, codes::OPERATION_INVALID_FOR_CURRENT_STATE, m)
            }
            CoreError::ConditionNotMet => ApiError::new(
                412,
                codes::CONDITION_NOT_MET,
                "The condition specified using HTTP conditional header(s) is not met.",
            ),
            CoreError::NodeNotReady(n) => ApiError::new(
                409,
                codes::NODE_NOT_READY,
                format!("The node '{n}' is not in a state that allows this operation (it is booting, restarting or not connected)."),
            ),
            CoreError::Unsupported(m) => ApiError::new(400, codes::UNSUPPORTED_OPERATION, m),
            CoreError::DependenciesNotOnJob(job) => ApiError::new(
                400,
                codes::TASK_DEPENDENCIES_NOT_SPECIFIED_ON_JOB,
                format!("The task depends on other tasks, but job '{job}' does not use task dependencies: create the job with usesTaskDependencies set to true."),
            ),
            CoreError::DependencyListTooLong(len) => ApiError::new(
                400,
                codes::TASK_DEPENDENCY_LIST_TOO_LONG,
                format!("dependsOn.taskIds has {len} characters in total; at most {} are stored. Depend on a range of task ids (taskIdRanges) instead.", crate::deps::MAX_TASK_IDS_CHARS),
            ),
            CoreError::JobPreparationTaskNotSpecified(job) => ApiError::new(
                409,
                "JobPreparationTaskNotSpecified",
                format!("Job '{job}' has no job preparation task, so it has no job preparation and release task status."),
            ),
            CoreError::TaskIdOfJobTask(job, task, prep) => ApiError::new(
                409,
                if prep {
                    "TaskIdSameAsJobPreparationTask"
                } else {
                    "TaskIdSameAsJobReleaseTask"
                },
                format!(
                    "The task id '{task}' is the id of the job {} task of job '{job}'; no other task of the job may have it.",
                    if prep { "preparation" } else { "release" }
                ),
            ),
            CoreError::DependencyRangesTooLong(n) => ApiError::new(
                400,
                codes::TASK_DEPENDENCY_RANGES_TOO_LONG,
                format!("dependsOn.taskIdRanges has {n} ranges; at most {} are stored. Merge adjacent ranges, or number the tasks so fewer ranges cover them.", crate::deps::MAX_ID_RANGES),
            ),
            CoreError::ApplicationNotFound(id) => ApiError::new(
                404,
                codes::APPLICATION_NOT_FOUND,
                format!("The application '{id}' does not exist."),
            ),
            CoreError::ApplicationPackageNotFound(id, v) => ApiError::new(
                404,
                codes::APPLICATION_PACKAGE_NOT_FOUND,
                format!("The application '{id}' has no version '{v}'."),
            ),
            CoreError::InvalidApplicationPackageReferences(m) => {
                ApiError::new(409, codes::INVALID_APPLICATION_PACKAGE_REFERENCES, m)
            }
            CoreError::ApplicationPackageInUse(m) => {
                ApiError::new(409, codes::APPLICATION_PACKAGE_IN_USE, m)
            }
        }
    }
}
