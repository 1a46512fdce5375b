//! Job schedules in the harness: builders, views, and the invariants `Sim` checks.

use std::collections::BTreeMap;

use openbatch_api::models::{self as m, JobScheduleState, JobState};
use serde_json::Value;

use super::{urls, Sim};

pub fn job_schedule(v: Value) -> m::JobScheduleCreate {
    serde_json::from_value(v).expect("a valid JobScheduleCreate body")
}

impl Sim {
    pub fn schedule_view(&self, id: &str) -> m::JobSchedule {
        self.core
            .job_schedule(id, &urls())
            .expect("job schedule exists")
    }

    pub fn schedules(&self) -> Vec<m::JobSchedule> {
        self.core
            .list_job_schedules(None, usize::MAX, &urls(), &|_| true)
            .items
    }

    /// Ids of the jobs a schedule created that still exist, in key order.
    pub fn schedule_jobs(&self, id: &str) -> Vec<String> {
        self.core
            .list_schedule_jobs(id, None, usize::MAX, &urls(), &|_| true)
            .expect("job schedule exists")
            .items
            .into_iter()
            .map(|j| j.id)
            .collect()
    }

    /// What must hold for job schedules after every input.
    pub(super) fn check_schedules(&self) {
        let u = urls();
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for s in self.schedules() {
            let jobs = self
                .core
                .list_schedule_jobs(&s.id, None, usize::MAX, &u, &|_| true)
                .unwrap()
                .items;
            let prefix = format!("{}:job-", s.id);
            let mut unfinished = Vec::new();
            for j in &jobs {
                assert!(
                    j.id.starts_with(&prefix),
                    "job {} listed under schedule {}",
                    j.id,
                    s.id
                );
                owner.insert(j.id.to_ascii_lowercase(), s.id.clone());
                if j.state != JobState::Completed {
                    unfinished.push(j.id.clone());
                }
            }
            // One job at a time (a schedule being deleted has all of its jobs on the way out).
            if s.state != JobScheduleState::Deleting {
                assert!(
                    unfinished.len() <= 1,
                    "schedule {} has more than one job that is not completed: {unfinished:?}",
                    s.id
                );
            }
            let info = &s.execution_info;
            match s.state {
                JobScheduleState::Completed => {
                    assert!(info.end_time.is_some(), "completed {} has no endTime", s.id);
                    assert!(
                        info.next_run_time.is_none(),
                        "completed {} has a nextRunTime",
                        s.id
                    );
                    assert!(
                        unfinished.is_empty(),
                        "schedule {} completed while its job {unfinished:?} is not",
                        s.id
                    );
                }
                JobScheduleState::Active | JobScheduleState::Disabled => {
                    assert!(
                        info.end_time.is_none(),
                        "{} has an endTime but is {}",
                        s.id,
                        s.state
                    );
                    // Nothing left to run and nothing running is a completed schedule.
                    assert!(
                        info.next_run_time.is_some() || !unfinished.is_empty(),
                        "schedule {} is {} with no job and no next run",
                        s.id,
                        s.state
                    );
                }
                JobScheduleState::Terminating | JobScheduleState::Deleting => {
                    assert!(info.next_run_time.is_none());
                }
            }
            // The recent job is the newest one: job numbers only grow.
            if let (Some(recent), Some(last)) = (
                info.recent_job.as_ref().and_then(|r| r.id.clone()),
                jobs.iter()
                    .filter_map(|j| j.id.strip_prefix(&prefix)?.parse::<u64>().ok())
                    .max(),
            ) {
                let n: u64 = recent.strip_prefix(&prefix).unwrap().parse().unwrap();
                assert!(n >= last, "recentJob {recent} is older than job-{last}");
            }
        }
        // Every job a schedule created belongs to a schedule that still exists.
        for j in self.core.list_jobs(None, usize::MAX, &u, &|_| true).items {
            if j.id.contains(':') {
                assert!(
                    owner.contains_key(&j.id.to_ascii_lowercase()),
                    "job {} outlived its schedule",
                    j.id
                );
            }
        }
    }
}
