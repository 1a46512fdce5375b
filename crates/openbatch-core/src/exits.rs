//! Exit conditions (`exitConditions`) and what a task's completion does to its job.
//!
//! The rules are Azure Batch's (REST reference of `ExitConditions`, `ExitOptions`,
//! `BatchJobActionKind` and the job's `onTaskFailure`):
//! - When a task completes (its last attempt, after retries), one `ExitOptions` applies: for a
//!   pre-processing error (the process never started) `preProcessingError`; else the first
//!   `exitCodes` entry with its exit code, else the first `exitCodeRanges` entry (inclusive)
//!   that holds it; else, after a file upload error, `fileUploadError` (an exit code that
//!   matched takes precedence over it); else `default` for any ending but success. A success
//!   that no entry lists uses the defaults: "If you want non-default behavior on exit code 0,
//!   you must list it explicitly".
//! - Each property of the options left out takes its default: `dependencyAction` is `satisfy`
//!   for exit code 0 and `block` for all other exit conditions; `jobAction` is `none` for exit
//!   code 0 and `terminate` for all others.
//! - The job action applies only if the job's `onTaskFailure` is
//!   `performexitoptionsjobaction`; giving a `jobAction` on a job whose `onTaskFailure` is
//!   `noaction` fails the add with an invalid property value. `terminate` ends the job with
//!   `terminateReason` `TaskFailed`; `disable` is the disable job API with `requeue`.
//!
//! One choice of ours: a task ended on request (terminate task, or terminate or disable of its
//! job) takes its dependency action from its exit conditions like any failure, but never
//! triggers a job action, since its ending is what someone asked for, not a failure of the work.

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    DependencyAction, DisableJobOption, ExitConditions, ExitOptions, JobAction, JobState,
    OnTaskFailure, TaskState,
};

use crate::input::Effect;
use crate::state::Core;
use crate::CoreError;

/// How a task's last attempt ended, as exit conditions see it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ending {
    pub(crate) exit_code: Option<i32>,
    /// Exit code 0 and no failure.
    pub(crate) success: bool,
    pub(crate) pre_processing_error: bool,
    pub(crate) file_upload_error: bool,
    /// Ended on request (terminate), not by itself.
    pub(crate) requested: bool,
}

impl crate::state::Task {
    /// How the task ended when it was ended on request, from its final execution info: its
    /// exit code and result, if its process reported one, and no pre-processing or upload error
    /// (whatever stopped the process was the request).
    pub(crate) fn requested_ending(&self) -> Ending {
        Ending {
            exit_code: self.exec.exit_code,
            success: self.exec.result == Some(openbatch_api::models::ExecutionResult::Success),
            requested: true,
            ..Ending::default()
        }
    }
}

/// The options that apply to an ending, with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) job_action: JobAction,
    pub(crate) dependency_action: DependencyAction,
}

/// Which exit options apply to an ending (see the module doc for the order).
pub(crate) fn resolve(conditions: Option<&ExitConditions>, ending: &Ending) -> Resolved {
    let chosen: Option<&ExitOptions> = conditions.and_then(|c| {
        if ending.pre_processing_error {
            return c.pre_processing_error.as_ref().or(c.default.as_ref());
        }
        if let Some(code) = ending.exit_code {
            if let Some(m) = c.exit_codes.iter().find(|m| m.code == code) {
                return Some(&m.exit_options);
            }
            if let Some(m) = c
                .exit_code_ranges
                .iter()
                .find(|m| m.start <= code && code <= m.end)
            {
                return Some(&m.exit_options);
            }
        }
        if ending.file_upload_error {
            return c.file_upload_error.as_ref().or(c.default.as_ref());
        }
        if ending.success {
            None
        } else {
            c.default.as_ref()
        }
    });
    let (job_action, dependency_action) = if ending.success {
        (JobAction::None, DependencyAction::Satisfy)
    } else {
        (JobAction::Terminate, DependencyAction::Block)
    };
    Resolved {
        job_action: chosen.and_then(|o| o.job_action).unwrap_or(job_action),
        dependency_action: chosen
            .and_then(|o| o.dependency_action)
            .unwrap_or(dependency_action),
    }
}

/// Check a task's exit conditions before it is added to a job with this `onTaskFailure`.
pub(crate) fn check(
    conditions: &ExitConditions,
    on_task_failure: Option<OnTaskFailure>,
) -> Result<(), CoreError> {
    for r in &conditions.exit_code_ranges {
        if r.start > r.end {
            return Err(CoreError::invalid(
                "exitConditions.exitCodeRanges",
                format!("{}-{}", r.start, r.end),
                "start must not be greater than end",
            ));
        }
    }
    if on_task_failure == Some(OnTaskFailure::PerformExitOptionsJobAction) {
        return Ok(());
    }
    let named = conditions
        .exit_codes
        .iter()
        .map(|m| {
            (
                "exitConditions.exitCodes.exitOptions.jobAction",
                &m.exit_options,
            )
        })
        .chain(conditions.exit_code_ranges.iter().map(|m| {
            (
                "exitConditions.exitCodeRanges.exitOptions.jobAction",
                &m.exit_options,
            )
        }))
        .chain(
            [
                (
                    "exitConditions.preProcessingError.jobAction",
                    &conditions.pre_processing_error,
                ),
                (
                    "exitConditions.fileUploadError.jobAction",
                    &conditions.file_upload_error,
                ),
                ("exitConditions.default.jobAction", &conditions.default),
            ]
            .into_iter()
            .filter_map(|(name, o)| o.as_ref().map(|o| (name, o))),
        );
    for (name, options) in named {
        // `none` asks for nothing, so accepting it costs nothing even where Azure may refuse it.
        if let Some(action) = options.job_action.filter(|a| *a != JobAction::None) {
            return Err(CoreError::invalid(
                name,
                action,
                "a job action applies only when the job's onTaskFailure is performexitoptionsjobaction; create the job with it, or leave jobAction out",
            ));
        }
    }
    Ok(())
}

impl Core {
    /// The task (its execution info already final) completes: its exit conditions decide what
    /// it does to its dependents and, if the job performs exit options job actions, to the
    /// job; then the job's completion rules run.
    pub(crate) fn complete_task(
        &mut self,
        jk: &str,
        tk: &str,
        ending: Ending,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        let performs = job.spec.on_task_failure == Some(OnTaskFailure::PerformExitOptionsJobAction);
        let Some(task) = job.tasks.get_mut(tk) else {
            return;
        };
        let resolved = resolve(task.spec.exit_conditions.as_ref(), &ending);
        task.dependency_action = Some(resolved.dependency_action);
        self.set_task_state(jk, tk, TaskState::Completed, now);
        if performs && !ending.requested {
            self.job_action(jk, resolved.job_action, now, fx);
        }
        if self.kills_job_on_completion(jk, tk) {
            self.job_manager_completed(jk, now, fx);
        }
        self.maybe_complete_job(jk, now, fx);
    }

    fn job_action(
        &mut self,
        jk: &str,
        action: JobAction,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(job) = self.jobs.get(jk) else {
            return;
        };
        match (action, job.state) {
            (JobAction::None, _) => {}
            (
                JobAction::Terminate,
                JobState::Active | JobState::Disabling | JobState::Disabled | JobState::Enabling,
            ) => self.end_job(jk, "TaskFailed".into(), now, fx),
            (JobAction::Disable, JobState::Active | JobState::Enabling) => {
                let id = job.spec.id.clone();
                // Cannot fail: the job exists and is active.
                let _ = self.disable_job(&id, DisableJobOption::Requeue, now, fx);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_api::models::{ExitCodeMapping, ExitCodeRangeMapping};

    fn options(job: Option<JobAction>, dep: Option<DependencyAction>) -> ExitOptions {
        ExitOptions {
            job_action: job,
            dependency_action: dep,
        }
    }

    fn exit(code: i32) -> Ending {
        Ending {
            exit_code: Some(code),
            success: code == 0,
            ..Ending::default()
        }
    }

    const SATISFY: Option<DependencyAction> = Some(DependencyAction::Satisfy);
    const BLOCK: Option<DependencyAction> = Some(DependencyAction::Block);

    #[test]
    fn without_exit_conditions_success_satisfies_and_failure_blocks_and_terminates() {
        assert_eq!(
            resolve(None, &exit(0)),
            Resolved {
                job_action: JobAction::None,
                dependency_action: DependencyAction::Satisfy
            }
        );
        assert_eq!(
            resolve(None, &exit(3)),
            Resolved {
                job_action: JobAction::Terminate,
                dependency_action: DependencyAction::Block
            }
        );
    }

    #[test]
    fn exit_codes_then_ranges_then_default() {
        let c = ExitConditions {
            exit_codes: vec![ExitCodeMapping {
                code: 10,
                exit_options: options(None, BLOCK),
            }],
            exit_code_ranges: vec![
                ExitCodeRangeMapping {
                    start: 5,
                    end: 20,
                    exit_options: options(Some(JobAction::Disable), SATISFY),
                },
                ExitCodeRangeMapping {
                    start: 0,
                    end: 100,
                    exit_options: options(Some(JobAction::None), BLOCK),
                },
            ],
            default: Some(options(Some(JobAction::None), SATISFY)),
            ..ExitConditions::default()
        };
        let r = |code| resolve(Some(&c), &exit(code));
        // The exact code wins over the range; the omitted jobAction takes its default.
        assert_eq!(r(10).dependency_action, DependencyAction::Block);
        assert_eq!(r(10).job_action, JobAction::Terminate);
        // The first range that holds the code.
        assert_eq!(r(7).job_action, JobAction::Disable);
        assert_eq!(r(7).dependency_action, DependencyAction::Satisfy);
        // Exit code 0 listed in a range: that range's options, not the success defaults.
        assert_eq!(r(0).dependency_action, DependencyAction::Block);
        // Not listed: `default`.
        assert_eq!(r(101).dependency_action, DependencyAction::Satisfy);
        assert_eq!(r(-1).job_action, JobAction::None);
    }

    #[test]
    fn success_not_listed_ignores_default() {
        let c = ExitConditions {
            default: Some(options(Some(JobAction::Terminate), BLOCK)),
            ..ExitConditions::default()
        };
        assert_eq!(
            resolve(Some(&c), &exit(0)),
            Resolved {
                job_action: JobAction::None,
                dependency_action: DependencyAction::Satisfy
            }
        );
    }

    #[test]
    fn pre_processing_and_file_upload_errors() {
        let c = ExitConditions {
            exit_codes: vec![ExitCodeMapping {
                code: 0,
                exit_options: options(None, SATISFY),
            }],
            pre_processing_error: Some(options(None, SATISFY)),
            default: Some(options(Some(JobAction::Disable), None)),
            ..ExitConditions::default()
        };
        let pre = Ending {
            pre_processing_error: true,
            ..Ending::default()
        };
        assert_eq!(
            resolve(Some(&c), &pre).dependency_action,
            DependencyAction::Satisfy
        );
        // fileUploadError is not set: `default`, whose dependencyAction defaults to block.
        let upload = Ending {
            exit_code: Some(1),
            file_upload_error: true,
            ..Ending::default()
        };
        assert_eq!(
            resolve(Some(&c), &upload),
            Resolved {
                job_action: JobAction::Disable,
                dependency_action: DependencyAction::Block
            }
        );
        // An exit code that is listed takes precedence over the upload error.
        let listed = Ending {
            exit_code: Some(0),
            file_upload_error: true,
            ..Ending::default()
        };
        assert_eq!(
            resolve(Some(&c), &listed).dependency_action,
            DependencyAction::Satisfy
        );
    }

    #[test]
    fn job_actions_need_perform_exit_options_job_action() {
        let c = ExitConditions {
            default: Some(options(Some(JobAction::Terminate), None)),
            ..ExitConditions::default()
        };
        assert!(matches!(
            check(&c, None),
            Err(CoreError::InvalidProperty { property, .. }) if property == "exitConditions.default.jobAction"
        ));
        assert!(check(&c, Some(OnTaskFailure::NoAction)).is_err());
        assert!(check(&c, Some(OnTaskFailure::PerformExitOptionsJobAction)).is_ok());
        let none = ExitConditions {
            default: Some(options(Some(JobAction::None), SATISFY)),
            ..ExitConditions::default()
        };
        assert!(check(&none, None).is_ok());
        let backwards = ExitConditions {
            exit_code_ranges: vec![ExitCodeRangeMapping {
                start: 9,
                end: 1,
                exit_options: options(None, SATISFY),
            }],
            ..ExitConditions::default()
        };
        assert!(check(&backwards, Some(OnTaskFailure::PerformExitOptionsJobAction)).is_err());
    }
}
