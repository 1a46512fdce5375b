//! What a failed run reports: the node-side half of Azure Batch's `TaskFailureInformation`
//! (`executionInfo.failureInfo` of a task, `startTaskInfo.failureInfo` of a start task).

use std::fmt;
use std::time::Duration;

use super::KillReason;

/// Azure Batch `ErrorCategory`: who has to act to fix the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCategory {
    /// The task's specification or program is at fault (wire value `usererror`).
    UserError,
    /// The node or the service is at fault (wire value `servererror`).
    ServerError,
}

impl FailureCategory {
    /// The wire value, as the Azure Batch REST API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::UserError => "usererror",
            FailureCategory::ServerError => "servererror",
        }
    }
}

impl fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run failed, shaped like Azure Batch's `TaskFailureInformation`.
///
/// Messages and details never contain a resource file URL's query string: SAS tokens are
/// secrets, and these values end up in the REST API and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureInfo {
    pub category: FailureCategory,
    /// One of [`codes`].
    pub code: String,
    pub message: String,
    /// Azure's `details` (`NameValuePair`s), e.g. `("FilePath", "input/a.txt")`.
    pub details: Vec<(String, String)>,
}

impl FailureInfo {
    pub(super) fn new(category: FailureCategory, code: &str, message: impl Into<String>) -> Self {
        FailureInfo {
            category,
            code: code.to_owned(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub(super) fn user(code: &str, message: impl Into<String>) -> Self {
        Self::new(FailureCategory::UserError, code, message)
    }

    pub(super) fn server(code: &str, message: impl Into<String>) -> Self {
        Self::new(FailureCategory::ServerError, code, message)
    }

    pub(super) fn with_detail(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.push((name.to_owned(), value.into()));
        self
    }

    /// The process ran and exited with a non-zero code, or died of a signal nobody sent on
    /// purpose (a crash, the OOM killer).
    pub(super) fn exit_code(signal: Option<i32>) -> Self {
        // Azure's own message for this code, as recorded from the live service in
        // microsoft/CromwellOnAzure's tests ("The task process exited with an unexpected exit code").
        let failure = Self::user(
            codes::FAILURE_EXIT_CODE,
            "The task process exited with an unexpected exit code",
        );
        match signal {
            Some(signal) => failure.with_detail("Signal", signal.to_string()),
            None => failure,
        }
    }

    /// The run was ended on purpose: see [`KillReason`].
    pub(super) fn ended(reason: KillReason, max_wall_clock: Option<Duration>) -> Self {
        match reason {
            // Azure's message for a user terminate, with the capitalisation the service uses.
            KillReason::Terminated => {
                Self::user(codes::TASK_ENDED, "Task Was Ended by User Request")
            }
            KillReason::MaxWallClockTimeExceeded => {
                let limit = max_wall_clock
                    .map(iso8601_duration)
                    .unwrap_or_else(|| "unknown".to_owned());
                Self::user(
                    codes::TASK_ENDED,
                    format!(
                        "The task ran longer than its maxWallClockTime ({limit}) and was ended; \
                         raise constraints.maxWallClockTime if it needs more time"
                    ),
                )
                .with_detail("MaxWallClockTime", limit)
            }
            KillReason::Requeued => Self::server(
                codes::TASK_ENDED,
                "The task was ended because its compute node is leaving the pool, rebooting or \
                 reimaging; it will be requeued",
            ),
            KillReason::Preempted { .. } => Self::server(
                codes::TASK_ENDED,
                "The task was ended because its low-priority compute node was preempted; it will \
                 be requeued",
            ),
        }
    }

    /// The runner itself broke (a bug, not an input): never expected, but reported, not panicked.
    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::server(codes::UNKNOWN, message)
    }
}

impl fmt::Display for FailureInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.category, self.message)
    }
}

/// `PT1H2M3.5S`-style rendering, the format Azure uses for `maxWallClockTime`.
fn iso8601_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let millis = d.subsec_millis();
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || millis > 0 || out == "PT" {
        if millis > 0 {
            out.push_str(&format!("{s}.{millis:03}S"));
        } else {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

/// The failure codes a run can report. All are Azure Batch's own codes, so clients that match on
/// them (the Python and .NET SDKs expose them as constants) keep working.
///
/// Sources: Azure's "Batch Status and Error Codes" page (task scheduling error table, which gives
/// each code's category), the SDKs' `TaskFailureInformationCodes` / `TaskSchedulingErrorCodes`
/// classes, and the Batch "Constraint failures" docs for the wall-clock case. Where the category
/// below differs from that table, the constant's comment says why.
pub mod codes {
    /// Non-zero exit code (usererror). Azure SDK integration tests assert exactly this code and
    /// category for a failing command line; our API reference (§7.1) agrees.
    pub const FAILURE_EXIT_CODE: &str = "FailureExitCode";
    /// The task was ended before it finished: user terminate ("Task was ended by user request",
    /// usererror in the error-code table) and also `maxWallClockTime` expiry — Azure's
    /// "Constraint failures" docs: "When the maximum amount of time has been exceeded, the task is
    /// marked as completed, … and the schedulingError field is marked as
    /// { category:"ServerError", code="TaskEnded" }". We report the wall-clock case as usererror,
    /// as the error-code table does for this code: the user set the limit and must raise it. A
    /// requeue (node leaving) is servererror: nothing the user did.
    pub const TASK_ENDED: &str = "TaskEnded";
    /// A resource file URL answered 404 (usererror).
    pub const BLOB_NOT_FOUND: &str = "BlobNotFound";
    /// A resource file URL answered 401 or 403, e.g. an expired SAS (usererror).
    pub const BLOB_ACCESS_DENIED: &str = "BlobAccessDenied";
    /// A resource file download stalled past the idle timeout on every attempt (servererror).
    pub const BLOB_DOWNLOAD_TIMED_OUT: &str = "BlobDownloadTimedOut";
    /// Any other download failure: connection refused, 5xx after retries, other 4xx (servererror
    /// in Azure's table). An httpUrl that is not an http(s) URL at all is reported with this code
    /// but as usererror: Azure rejects those when the task is added, so only our own validation
    /// gap could let one reach a node, and the fix is still the user's.
    pub const BLOB_DOWNLOAD_MISC_ERROR: &str = "BlobDownloadMiscError";
    /// A directory for the task or a resource file could not be created (servererror).
    pub const RESOURCE_DIRECTORY_CREATE_FAILED: &str = "ResourceDirectoryCreateFailed";
    /// A resource file could not be created (servererror). Also used, as usererror, for a
    /// resource file whose filePath is absolute or escapes the working directory, or whose
    /// fileMode is not octal: Azure rejects those at task add time with a 400, so again only a
    /// validation gap upstream reaches this, and the fix is the user's.
    pub const RESOURCE_FILE_CREATE_FAILED: &str = "ResourceFileCreateFailed";
    /// A resource file could not be written (servererror).
    pub const RESOURCE_FILE_WRITE_FAILED: &str = "ResourceFileWriteFailed";
    /// The node's disk filled up while staging files (servererror).
    pub const DISK_FULL: &str = "DiskFull";
    /// The command line's program does not exist (usererror).
    pub const COMMAND_PROGRAM_NOT_FOUND: &str = "CommandProgramNotFound";
    /// The command line could not be launched: it does not parse (unbalanced quote), is empty, or
    /// its program is not executable (usererror); or the node could not fork (servererror).
    pub const COMMAND_LAUNCH_FAILED: &str = "CommandLaunchFailed";
    /// The runner itself failed unexpectedly (servererror).
    pub const UNKNOWN: &str = "Unknown";
    /// An application package could not be downloaded, or its digest did not match
    /// (servererror when the storage or network failed, usererror for a 4xx).
    pub const APPLICATION_PACKAGE_DOWNLOAD_FAILED: &str = "ApplicationPackageDownloadFailed";
    /// An application package could not be unpacked: not a zip file, an entry that would land
    /// outside its directory (zip-slip), or a write failure (usererror, servererror for I/O).
    pub const APPLICATION_PACKAGE_INSTALL_FAILED: &str = "ApplicationPackageInstallFailed";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations_match_azure_style() {
        assert_eq!(iso8601_duration(Duration::from_secs(0)), "PT0S");
        assert_eq!(iso8601_duration(Duration::from_secs(5)), "PT5S");
        assert_eq!(iso8601_duration(Duration::from_millis(1500)), "PT1.500S");
        assert_eq!(iso8601_duration(Duration::from_secs(3600 + 120)), "PT1H2M");
    }

    #[test]
    fn categories_use_wire_values() {
        assert_eq!(FailureCategory::UserError.as_str(), "usererror");
        assert_eq!(FailureCategory::ServerError.to_string(), "servererror");
    }
}
