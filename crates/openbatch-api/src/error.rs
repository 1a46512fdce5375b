//! The Azure Batch error body and the error codes openbatch answers with.
//!
//! Every non-2xx answer carries `{"code", "message": {"lang", "value"}, "values": [{"key", "value"}]}`.
//! The official SDK needs `message` to be an object (a flat string makes `e.error` None), and maps
//! 404/409/412 to typed exceptions by status, so status and code must agree.

use serde::{Deserialize, Serialize};

/// The error body on the wire (`BatchError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ErrorMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// An error as openbatch answers it: an HTTP status, an Azure Batch error code, a message that
/// says what was wrong and what to do, and optional key/value details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub values: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            values: Vec::new(),
        }
    }

    pub fn with_value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.push((key.into(), value.into()));
        self
    }

    /// The wire body; `request_id` and `time` are appended to the message as Azure does.
    pub fn to_body(&self, request_id: &str, time: &str) -> BatchError {
        BatchError {
            code: Some(self.code.to_string()),
            message: Some(ErrorMessage {
                lang: Some("en-US".into()),
                value: Some(format!(
                    "{}\nRequestId:{request_id}\nTime:{time}",
                    self.message
                )),
            }),
            values: self
                .values
                .iter()
                .map(|(k, v)| ErrorDetail {
                    key: Some(k.clone()),
                    value: Some(v.clone()),
                })
                .collect(),
        }
    }

    pub fn not_found(code: &'static str, what: &str) -> Self {
        Self::new(404, code, format!("The specified {what} does not exist."))
    }

    pub fn missing_property(name: &str) -> Self {
        Self::new(
            400,
            codes::MISSING_REQUIRED_PROPERTY,
            format!("A required property was not specified in the request body: {name}."),
        )
        .with_value("PropertyName", name)
    }

    pub fn invalid_property(name: &str, value: &str, reason: &str) -> Self {
        Self::new(
            400,
            codes::INVALID_PROPERTY_VALUE,
            format!("The value provided for one of the properties in the request body is invalid: {name}: {reason}"),
        )
        .with_value("PropertyName", name)
        .with_value("PropertyValue", value)
        .with_value("Reason", reason)
    }

    pub fn invalid_query(name: &str, value: &str, reason: &str) -> Self {
        Self::new(
            400,
            codes::INVALID_QUERY_PARAMETER_VALUE,
            format!("The value for one of the query parameters specified in the request URI is invalid: {name}: {reason}"),
        )
        .with_value("QueryParameterName", name)
        .with_value("QueryParameterValue", value)
        .with_value("Reason", reason)
    }
}

/// The Azure Batch error codes openbatch uses (docs: batch-status-and-error-codes).
pub mod codes {
    pub const ACCOUNT_NOT_FOUND: &str = "AccountNotFound";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const AUTOSCALE_NOT_ENABLED: &str = "AutoScalingNotEnabled";
    pub const INVALID_AUTOSCALE_FORMULA: &str = "InvalidAutoScaleFormula";
    pub const CONDITION_NOT_MET: &str = "ConditionNotMet";
    pub const FILE_NOT_FOUND: &str = "FileNotFound";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const INVALID_HEADER_VALUE: &str = "InvalidHeaderValue";
    pub const INVALID_PROPERTY_VALUE: &str = "InvalidPropertyValue";
    pub const INVALID_QUERY_PARAMETER_VALUE: &str = "InvalidQueryParameterValue";
    pub const INVALID_REQUEST_BODY: &str = "InvalidRequestBody";
    pub const INVALID_URI: &str = "InvalidUri";
    pub const JOB_BEING_DELETED: &str = "JobBeingDeleted";
    pub const JOB_COMPLETED: &str = "JobCompleted";
    pub const JOB_EXISTS: &str = "JobExists";
    pub const JOB_NOT_FOUND: &str = "JobNotFound";
    pub const JOB_SCHEDULE_BEING_DELETED: &str = "JobScheduleBeingDeleted";
    pub const JOB_SCHEDULE_BEING_TERMINATED: &str = "JobScheduleBeingTerminated";
    pub const JOB_SCHEDULE_COMPLETED: &str = "JobScheduleCompleted";
    pub const JOB_SCHEDULE_EXISTS: &str = "JobScheduleExists";
    pub const JOB_SCHEDULE_NOT_FOUND: &str = "JobScheduleNotFound";
    pub const JOB_SCHEDULE_WITH_SAME_ID_EXISTS: &str = "JobScheduleWithSameIdExists";
    pub const JOB_WITH_SAME_ID_EXISTS: &str = "JobWithSameIdExists";
    pub const MISSING_REQUIRED_PROPERTY: &str = "MissingRequiredProperty";
    pub const MISSING_REQUIRED_QUERY_PARAMETER: &str = "MissingRequiredQueryParameter";
    pub const NODE_NOT_FOUND: &str = "NodeNotFound";
    pub const NODE_NOT_READY: &str = "NodeNotReady";
    pub const OPERATION_INVALID_FOR_CURRENT_STATE: &str = "OperationInvalidForCurrentState";
    pub const OPERATION_TIMED_OUT: &str = "OperationTimedOut";
    pub const APPLICATION_NOT_FOUND: &str = "ApplicationNotFound";
    pub const APPLICATION_PACKAGE_NOT_FOUND: &str = "ApplicationPackageNotFound";
    pub const APPLICATION_PACKAGE_IN_USE: &str = "ApplicationPackageInUse";
    pub const INVALID_APPLICATION_PACKAGE_REFERENCES: &str = "InvalidApplicationPackageReferences";
    pub const POOL_BEING_DELETED: &str = "PoolBeingDeleted";
    pub const POOL_EXISTS: &str = "PoolExists";
    pub const POOL_NOT_FOUND: &str = "PoolNotFound";
    pub const REQUEST_BODY_TOO_LARGE: &str = "RequestBodyTooLarge";
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFound";
    pub const SERVER_BUSY: &str = "ServerBusy";
    pub const TASK_COMPLETED: &str = "TaskCompleted";
    pub const TASK_DEPENDENCIES_NOT_SPECIFIED_ON_JOB: &str = "TaskDependenciesNotSpecifiedOnJob";
    pub const TASK_DEPENDENCY_LIST_TOO_LONG: &str = "TaskDependencyListTooLong";
    pub const TASK_DEPENDENCY_RANGES_TOO_LONG: &str = "TaskDependencyRangesTooLong";
    pub const TASK_EXISTS: &str = "TaskExists";
    pub const TASK_NOT_FOUND: &str = "TaskNotFound";
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
    pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperation";
    pub const UNSUPPORTED_QUERY_PARAMETER: &str = "UnsupportedQueryParameter";
    pub const UNSUPPORTED_VM_SIZE: &str = "UnsupportedVmSize";
}
