//! Read side of job schedules: the wire model, lists, and the jobs of a schedule.

use openbatch_api::models::{self as m, JobScheduleState};

use super::Schedule;
use crate::state::{etag, Core};
use crate::view::{after, page, ListPage, Urls};
use crate::{id_key, CoreError};

impl Core {
    fn render_schedule(&self, s: &Schedule, urls: &Urls) -> m::JobSchedule {
        let live = matches!(
            s.state,
            JobScheduleState::Active | JobScheduleState::Disabled
        );
        m::JobSchedule {
            id: s.spec.id.clone(),
            display_name: s.spec.display_name.clone(),
            url: format!("{}/jobschedules/{}", urls.base, s.spec.id),
            e_tag: etag(s.version),
            last_modified: s.last_modified,
            creation_time: s.created,
            state: s.state,
            state_transition_time: s.state_time,
            previous_state: s.previous_state.map(|p| p.0),
            previous_state_transition_time: s.previous_state.map(|p| p.1),
            schedule: Some(s.spec.schedule.clone().unwrap_or_default()),
            job_specification: s.spec.job_specification.clone(),
            execution_info: m::JobScheduleExecutionInfo {
                next_run_time: s.next_run.filter(|_| live),
                recent_job: s.recent_job.as_ref().map(|id| m::RecentJob {
                    id: Some(id.clone()),
                    url: Some(format!("{}/jobs/{}", urls.base, id)),
                }),
                end_time: s.end_time,
            },
            metadata: s.spec.metadata.clone(),
        }
    }

    pub fn job_schedule(&self, id: &str, urls: &Urls) -> Result<m::JobSchedule, CoreError> {
        self.schedules
            .get(&id_key(id))
            .map(|s| self.render_schedule(s, urls))
            .ok_or_else(|| CoreError::JobScheduleNotFound(id.into()))
    }

    pub fn list_job_schedules(
        &self,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::JobSchedule) -> bool,
    ) -> ListPage<m::JobSchedule> {
        page(after(&self.schedules, after_key), limit, |s| {
            Some(self.render_schedule(s, urls)).filter(|v| keep(v))
        })
    }

    /// `GET /jobschedules/{id}/jobs`: the jobs the schedule created that still exist.
    pub fn list_schedule_jobs(
        &self,
        schedule_id: &str,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::Job) -> bool,
    ) -> Result<ListPage<m::Job>, CoreError> {
        let s = self
            .schedules
            .get(&id_key(schedule_id))
            .ok_or_else(|| CoreError::JobScheduleNotFound(schedule_id.into()))?;
        let keys: Box<dyn Iterator<Item = &String>> = match after_key {
            Some(a) => Box::new(s.jobs.range::<String, _>((
                std::ops::Bound::Excluded(a.to_string()),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(s.jobs.iter()),
        };
        let jobs = keys.filter_map(|k| self.jobs.get_key_value(k));
        Ok(page(jobs, limit, |j| {
            Some(self.render_job(j, urls)).filter(|v| keep(v))
        }))
    }
}
