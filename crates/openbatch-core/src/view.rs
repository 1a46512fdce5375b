//! Read side: render the core's state as the wire models, and list with paging.

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    self as m, ImageReference, JobConstraints, NodeFillType, OnAllTasksComplete, OnTaskFailure,
    TaskSchedulingPolicy,
};

use crate::state::{etag, Core, Job, Node, Pool, Task, TaskLocation};
use crate::{id_key, CoreError};

pub(crate) fn iso(t: DateTime<Utc>) -> String {
    openbatch_api::time::iso8601(t)
}

/// How to build the `url` properties: the public base URL of the account.
#[derive(Debug, Clone)]
pub struct Urls {
    pub base: String,
}

impl Urls {
    fn pool(&self, id: &str) -> String {
        format!("{}/pools/{}", self.base, id)
    }
    fn job(&self, id: &str) -> String {
        format!("{}/jobs/{}", self.base, id)
    }
    fn task(&self, job: &str, task: &str) -> String {
        format!("{}/jobs/{}/tasks/{}", self.base, job, task)
    }
    fn node(&self, pool: &str, node: &str) -> String {
        format!("{}/pools/{}/nodes/{}", self.base, pool, node)
    }
    pub(crate) fn node_url(&self, pool: &str, node: &str) -> String {
        self.node(pool, node)
    }
}

/// A pool's numbers at one moment, for autoscale formulas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSample {
    pub target_dedicated: u32,
    pub target_low_priority: u32,
    pub current_dedicated: u32,
    pub current_low_priority: u32,
    pub slots_per_node: u32,
    pub usable_nodes: u32,
    pub preempted_nodes: u32,
    pub active_tasks: u64,
    pub running_tasks: u64,
    pub succeeded_tasks: u64,
    pub failed_tasks: u64,
}

/// One page of a listing: the items and the key to continue after (the `$skiptoken`).
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Walk a key-ordered map after `after`, keep what `keep` accepts, stop at `limit`.
pub(crate) fn page<'a, V: 'a, T>(
    iter: impl Iterator<Item = (&'a String, &'a V)>,
    limit: usize,
    mut render: impl FnMut(&V) -> Option<T>,
) -> ListPage<T> {
    let mut items = Vec::new();
    let mut next = None;
    for (k, v) in iter {
        if let Some(t) = render(v) {
            if items.len() == limit {
                break;
            }
            items.push(t);
            next = Some(k.clone());
        }
    }
    // Only hand out a continuation when there may be more.
    if items.len() < limit {
        next = None;
    }
    ListPage { items, next }
}

pub(crate) fn after<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    after: Option<&str>,
) -> Box<dyn Iterator<Item = (&'a String, &'a V)> + 'a> {
    match after {
        Some(a) => Box::new(map.range::<String, _>((
            std::ops::Bound::Excluded(a.to_string()),
            std::ops::Bound::Unbounded,
        ))),
        None => Box::new(map.iter()),
    }
}

impl Core {
    fn render_pool(&self, p: &Pool, urls: &Urls) -> m::Pool {
        let (mut dedicated, mut low) = (0, 0);
        for n in p.nodes.iter().filter_map(|n| self.nodes.get(n)) {
            if n.dedicated {
                dedicated += 1;
            } else {
                low += 1;
            }
        }
        let s = &p.spec;
        m::Pool {
            id: s.id.clone(),
            display_name: s.display_name.clone(),
            url: urls.pool(&s.id),
            e_tag: etag(p.version),
            last_modified: p.last_modified,
            creation_time: p.created,
            state: p.state,
            state_transition_time: p.state_time,
            allocation_state: p.allocation_state,
            allocation_state_transition_time: p.allocation_time,
            vm_size: s.vm_size.clone(),
            virtual_machine_configuration: s.virtual_machine_configuration.clone(),
            resize_timeout: Some(s.resize_timeout.unwrap_or(openbatch_api::time::IsoDuration(
                Some(std::time::Duration::from_secs(15 * 60)),
            ))),
            resize_errors: p.resize_errors.clone(),
            current_dedicated_nodes: dedicated,
            current_low_priority_nodes: low,
            target_dedicated_nodes: p.target_dedicated as i32,
            target_low_priority_nodes: p.target_low_priority as i32,
            enable_auto_scale: s.enable_auto_scale.unwrap_or(false),
            auto_scale_formula: s.auto_scale_formula.clone(),
            auto_scale_evaluation_interval: s.auto_scale_evaluation_interval,
            auto_scale_run: p.autoscale_run.clone(),
            enable_inter_node_communication: s.enable_inter_node_communication.unwrap_or(false),
            network_configuration: s.network_configuration.clone(),
            start_task: s.start_task.clone(),
            application_package_references: s.application_package_references.clone(),
            task_slots_per_node: p.slots_per_node() as i32,
            task_scheduling_policy: s.task_scheduling_policy.unwrap_or(TaskSchedulingPolicy {
                job_default_order: None,
                node_fill_type: NodeFillType::Spread,
            }),
            user_accounts: s.user_accounts.clone(),
            metadata: s.metadata.clone(),
            mount_configuration: s.mount_configuration.clone(),
            upgrade_policy: s.upgrade_policy.clone(),
        }
    }

    pub fn pool(&self, id: &str, urls: &Urls) -> Result<m::Pool, CoreError> {
        self.pools
            .get(&id_key(id))
            .map(|p| self.render_pool(p, urls))
            .ok_or_else(|| CoreError::PoolNotFound(id.into()))
    }

    pub fn list_pools(
        &self,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::Pool) -> bool,
    ) -> ListPage<m::Pool> {
        page(after(&self.pools, after_key), limit, |p| {
            Some(self.render_pool(p, urls)).filter(|v| keep(v))
        })
    }

    pub(crate) fn render_job(&self, j: &Job, urls: &Urls) -> m::Job {
        let s = &j.spec;
        m::Job {
            id: s.id.clone(),
            display_name: s.display_name.clone(),
            uses_task_dependencies: s.uses_task_dependencies.unwrap_or(false),
            url: urls.job(&s.id),
            e_tag: etag(j.version),
            last_modified: j.last_modified,
            creation_time: j.created,
            state: j.state,
            state_transition_time: j.state_time,
            previous_state: j.previous_state.map(|p| p.0),
            previous_state_transition_time: j.previous_state.map(|p| p.1),
            priority: s.priority.unwrap_or(0),
            allow_task_preemption: s.allow_task_preemption.unwrap_or(false),
            max_parallel_tasks: s.max_parallel_tasks.unwrap_or(-1),
            constraints: JobConstraints {
                max_wall_clock_time: Some(
                    s.constraints
                        .and_then(|c| c.max_wall_clock_time)
                        .unwrap_or(openbatch_api::time::IsoDuration::unbounded()),
                ),
                max_task_retry_count: Some(
                    s.constraints
                        .and_then(|c| c.max_task_retry_count)
                        .unwrap_or(0),
                ),
            },
            job_manager_task: s.job_manager_task.clone(),
            job_preparation_task: s.job_preparation_task.clone(),
            job_release_task: s.job_release_task.clone(),
            common_environment_settings: s.common_environment_settings.clone(),
            pool_info: s.pool_info.clone(),
            on_all_tasks_complete: s
                .on_all_tasks_complete
                .unwrap_or(OnAllTasksComplete::NoAction),
            on_task_failure: s.on_task_failure.unwrap_or(OnTaskFailure::NoAction),
            network_configuration: s.network_configuration.clone(),
            metadata: s.metadata.clone(),
            execution_info: Some(m::JobExecutionInfo {
                start_time: j.created,
                end_time: j.end_time,
                pool_id: s.pool_info.pool_id.clone(),
                scheduling_error: None,
                terminate_reason: j.terminate_reason.clone(),
            }),
        }
    }

    pub fn job(&self, id: &str, urls: &Urls) -> Result<m::Job, CoreError> {
        self.jobs
            .get(&id_key(id))
            .map(|j| self.render_job(j, urls))
            .ok_or_else(|| CoreError::JobNotFound(id.into()))
    }

    pub fn list_jobs(
        &self,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::Job) -> bool,
    ) -> ListPage<m::Job> {
        page(after(&self.jobs, after_key), limit, |j| {
            Some(self.render_job(j, urls)).filter(|v| keep(v))
        })
    }

    pub fn task_counts(&self, job_id: &str) -> Result<m::TaskCountsResult, CoreError> {
        let j = self
            .jobs
            .get(&id_key(job_id))
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        Ok(m::TaskCountsResult {
            task_counts: j.counts,
            task_slot_counts: j.slot_counts,
        })
    }

    fn render_task(&self, j: &Job, t: &Task, urls: &Urls) -> m::Task {
        let s = &t.spec;
        let job_retries = j.spec.constraints.and_then(|c| c.max_task_retry_count);
        let constraints = m::TaskConstraints {
            max_wall_clock_time: Some(
                s.constraints
                    .and_then(|c| c.max_wall_clock_time)
                    .unwrap_or(openbatch_api::time::IsoDuration::unbounded()),
            ),
            retention_time: Some(s.constraints.and_then(|c| c.retention_time).unwrap_or(
                openbatch_api::time::IsoDuration(Some(std::time::Duration::from_secs(7 * 86_400))),
            )),
            max_task_retry_count: Some(
                s.constraints
                    .and_then(|c| c.max_task_retry_count)
                    .or(job_retries)
                    .unwrap_or(0),
            ),
        };
        let node_info = t.location.as_ref().map(|l| m::NodeInfo {
            affinity_id: Some(l.node_id.clone()),
            node_url: Some(urls.node(&l.pool_id, &l.node_id)),
            pool_id: Some(l.pool_id.clone()),
            node_id: Some(l.node_id.clone()),
            task_root_directory: Some(l.task_dir.clone()),
            task_root_directory_url: Some(format!(
                "{}/files/{}",
                urls.node(&l.pool_id, &l.node_id),
                l.task_dir
            )),
        });
        m::Task {
            id: s.id.clone(),
            display_name: s.display_name.clone(),
            url: urls.task(&j.spec.id, &s.id),
            e_tag: etag(t.version),
            last_modified: t.last_modified,
            creation_time: t.created,
            exit_conditions: s.exit_conditions.clone(),
            state: t.state,
            state_transition_time: t.state_time,
            previous_state: t.previous_state.map(|p| p.0),
            previous_state_transition_time: t.previous_state.map(|p| p.1),
            command_line: s.command_line.clone(),
            container_settings: s.container_settings.clone(),
            resource_files: s.resource_files.clone(),
            output_files: s.output_files.clone(),
            environment_settings: s.environment_settings.clone(),
            affinity_info: s.affinity_info.clone(),
            constraints,
            required_slots: t.required_slots() as i32,
            user_identity: s.user_identity.clone(),
            execution_info: t.exec.clone(),
            node_info,
            multi_instance_settings: s.multi_instance_settings.clone(),
            depends_on: s.depends_on.clone(),
            application_package_references: s.application_package_references.clone(),
        }
    }

    pub fn task(&self, job_id: &str, task_id: &str, urls: &Urls) -> Result<m::Task, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        let j = &self.jobs[&jk];
        Ok(self.render_task(j, &j.tasks[&tk], urls))
    }

    pub fn list_tasks(
        &self,
        job_id: &str,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::Task) -> bool,
    ) -> Result<ListPage<m::Task>, CoreError> {
        let j = self
            .jobs
            .get(&id_key(job_id))
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        Ok(page(after(&j.tasks, after_key), limit, |t| {
            Some(self.render_task(j, t, urls)).filter(|v| keep(v))
        }))
    }

    /// List a job's tasks matching an OData filter, evaluated on the core's own records: only
    /// the tasks that match are rendered, so a filter that keeps few tasks of a large job costs
    /// a cheap pass over the job, not a serialization of every task.
    pub fn list_tasks_filtered(
        &self,
        job_id: &str,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        filter: Option<&openbatch_api::odata::Filter>,
    ) -> Result<ListPage<m::Task>, CoreError> {
        let j = self
            .jobs
            .get(&id_key(job_id))
            .ok_or_else(|| CoreError::JobNotFound(job_id.into()))?;
        Ok(page(after(&j.tasks, after_key), limit, |t| {
            let keep = filter.is_none_or(|f| f.matches(&TaskFields { job: j, task: t }));
            keep.then(|| self.render_task(j, t, urls))
        }))
    }

    /// Where a task's latest attempt ran, for its files.
    pub fn task_location(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Option<TaskLocation>, CoreError> {
        let (jk, tk) = self.find_task(job_id, task_id)?;
        Ok(self.jobs[&jk].tasks[&tk].location.clone())
    }

    fn render_node(&self, n: &Node, pool: &Pool, urls: &Urls) -> m::Node {
        m::Node {
            id: n.id.clone(),
            url: urls.node(&pool.spec.id, &n.id),
            state: n.state,
            scheduling_state: n.scheduling,
            state_transition_time: n.state_time,
            last_boot_time: n.boot_time,
            allocation_time: n.allocation_time,
            ip_address: n.ip_address.clone(),
            ipv6_address: String::new(),
            affinity_id: n.id.clone(),
            vm_size: n.vm_size.clone(),
            total_tasks_run: n.total_tasks_run,
            running_tasks_count: n
                .running
                .values()
                .filter(|(_, tk, _)| !crate::jobtasks::is_job_task_key(tk))
                .count() as i64,
            running_task_slots_count: n.used_slots as i64,
            total_tasks_succeeded: n.total_tasks_succeeded,
            recent_tasks: n
                .recent_tasks
                .iter()
                .cloned()
                .map(|mut t| {
                    if let (Some(j), Some(tid)) = (&t.job_id, &t.task_id) {
                        t.task_url = Some(urls.task(j, tid));
                    }
                    t
                })
                .collect(),
            start_task: pool.spec.start_task.clone(),
            start_task_info: n.start_task_info.clone(),
            errors: Vec::new(),
            is_dedicated: n.dedicated,
            node_agent_info: n.agent_version.as_ref().map(|v| m::NodeAgentInfo {
                version: v.clone(),
                last_update_time: n.boot_time,
            }),
            virtual_machine_info: m::VirtualMachineInfo {
                image_reference: pool
                    .spec
                    .virtual_machine_configuration
                    .as_ref()
                    .map(|c| c.image_reference.clone())
                    .or(Some(ImageReference {
                        publisher: None,
                        offer: None,
                        sku: None,
                        version: None,
                        virtual_machine_image_id: None,
                        exact_version: None,
                    })),
                scale_set_vm_resource_id: None,
            },
        }
    }

    pub fn node(&self, pool_id: &str, node_id: &str, urls: &Urls) -> Result<m::Node, CoreError> {
        let pool = self
            .pools
            .get(&id_key(pool_id))
            .ok_or_else(|| CoreError::PoolNotFound(pool_id.into()))?;
        let n = self
            .nodes
            .get(node_id)
            .filter(|n| pool.nodes.contains(&n.id))
            .ok_or_else(|| CoreError::NodeNotFound(node_id.into()))?;
        Ok(self.render_node(n, pool, urls))
    }

    pub fn list_nodes(
        &self,
        pool_id: &str,
        after_key: Option<&str>,
        limit: usize,
        urls: &Urls,
        keep: &dyn Fn(&m::Node) -> bool,
    ) -> Result<ListPage<m::Node>, CoreError> {
        let pool = self
            .pools
            .get(&id_key(pool_id))
            .ok_or_else(|| CoreError::PoolNotFound(pool_id.into()))?;
        let members: std::collections::BTreeMap<String, &Node> = pool
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n).map(|node| (n.clone(), node)))
            .collect();
        let iter: Box<dyn Iterator<Item = (&String, &&Node)>> = match after_key {
            Some(a) => Box::new(members.range::<String, _>((
                std::ops::Bound::Excluded(a.to_string()),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(members.iter()),
        };
        Ok(page(iter, limit, |n| {
            Some(self.render_node(n, pool, urls)).filter(|v| keep(v))
        }))
    }

    /// What the autoscaler samples and feeds a pool's formula: task counts over the jobs bound
    /// to the pool, node counts, targets and slots.
    pub fn pool_sample(&self, pool_id: &str) -> Option<PoolSample> {
        let key = id_key(pool_id);
        let pool = self.pools.get(&key)?;
        let mut s = PoolSample {
            target_dedicated: pool.target_dedicated,
            target_low_priority: pool.target_low_priority,
            slots_per_node: pool.slots_per_node(),
            ..Default::default()
        };
        for n in pool.nodes.iter().filter_map(|n| self.nodes.get(n)) {
            if n.dedicated {
                s.current_dedicated += 1;
            } else {
                s.current_low_priority += 1;
            }
            if matches!(n.state, m::NodeState::Idle | m::NodeState::Running) {
                s.usable_nodes += 1;
            }
            if n.state == m::NodeState::Preempted {
                s.preempted_nodes += 1;
            }
        }
        for job in self.jobs.values().filter(|j| j.pool_key() == key) {
            s.active_tasks += job.counts.active as u64;
            s.running_tasks += job.counts.running as u64;
            s.succeeded_tasks += job.counts.succeeded as u64;
            s.failed_tasks += job.counts.failed as u64;
        }
        Some(s)
    }

    /// `GET /nodecounts`: per pool, dedicated and low-priority nodes counted by state.
    pub fn node_counts(&self) -> Vec<m::PoolNodeCounts> {
        self.pools
            .values()
            .map(|p| {
                let mut counts = m::PoolNodeCounts {
                    pool_id: p.spec.id.clone(),
                    dedicated: Default::default(),
                    low_priority: Default::default(),
                };
                for n in p.nodes.iter().filter_map(|n| self.nodes.get(n)) {
                    let c = if n.dedicated {
                        &mut counts.dedicated
                    } else {
                        &mut counts.low_priority
                    };
                    c.total += 1;
                    use m::NodeState as S;
                    let slot = match n.state {
                        S::Idle => &mut c.idle,
                        S::Rebooting => &mut c.rebooting,
                        S::Reimaging => &mut c.reimaging,
                        S::Running => &mut c.running,
                        S::Unusable => &mut c.unusable,
                        S::Creating => &mut c.creating,
                        S::Starting => &mut c.starting,
                        S::WaitingForStartTask => &mut c.waiting_for_start_task,
                        S::StartTaskFailed => &mut c.start_task_failed,
                        S::Unknown => &mut c.unknown,
                        S::LeavingPool => &mut c.leaving_pool,
                        S::Offline => &mut c.offline,
                        S::Preempted => &mut c.preempted,
                        S::UpgradingOs => &mut c.upgrading_os,
                        S::Deallocated => &mut c.deallocated,
                        S::Deallocating => &mut c.deallocating,
                    };
                    *slot += 1;
                }
                counts
            })
            .collect()
    }

    /// Whether a node exists and belongs to the pool (for the file API).
    pub fn node_in_pool(&self, pool_id: &str, node_id: &str) -> Result<(), CoreError> {
        self.node(
            pool_id,
            node_id,
            &Urls {
                base: String::new(),
            },
        )
        .map(|_| ())
    }

    /// Every pool, by key (lower-cased id).
    pub fn pool_ids(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// Node ids the shell should expect agents for (after a restart).
    pub fn node_ids(&self) -> Vec<(String, String)> {
        self.nodes
            .values()
            .map(|n| (n.id.clone(), n.pool.clone()))
            .collect()
    }

    /// Low-priority nodes that could be preempted now: (pool id, node id).
    pub fn preemptible_nodes(&self) -> Vec<(String, String)> {
        self.nodes
            .values()
            .filter(|n| {
                !n.dedicated
                    && n.connected
                    && n.preemption.is_none()
                    && n.leaving.is_none()
                    && matches!(
                        n.state,
                        openbatch_api::models::NodeState::Idle
                            | openbatch_api::models::NodeState::Running
                    )
            })
            .filter_map(|n| Some((self.pools.get(&n.pool)?.spec.id.clone(), n.id.clone())))
            .collect()
    }

    /// The node's pool id and vm size, for the provider.
    pub fn node_placement(&self, node_id: &str) -> Option<(String, String, bool, u32)> {
        let n = self.nodes.get(node_id)?;
        let pool = self.pools.get(&n.pool)?;
        Some((
            pool.spec.id.clone(),
            n.vm_size.clone(),
            n.dedicated,
            n.slots,
        ))
    }
}

/// A task's filterable properties, read straight from the core's records.
struct TaskFields<'a> {
    job: &'a Job,
    task: &'a Task,
}

impl openbatch_api::odata::FilterTarget for TaskFields<'_> {
    fn property(&self, path: &str) -> openbatch_api::odata::Value {
        use openbatch_api::odata::Value;
        let t = self.task;
        let e = &t.exec;
        match path {
            "id" => t.spec.id.as_str().into(),
            "state" => t.state.as_str().into(),
            "creationTime" => t.created.into(),
            "lastModified" => t.last_modified.into(),
            "displayName" => t.spec.display_name.clone().into(),
            "commandLine" => t.spec.command_line.as_str().into(),
            "requiredSlots" => i64::from(t.required_slots()).into(),
            "executionInfo/exitCode" => e.exit_code.map(i64::from).into(),
            "executionInfo/result" => e.result.map(|r| r.as_str()).into(),
            "executionInfo/retryCount" => i64::from(e.retry_count).into(),
            "executionInfo/requeueCount" => i64::from(e.requeue_count).into(),
            "executionInfo/startTime" => e.start_time.into(),
            "executionInfo/endTime" => e.end_time.into(),
            "nodeInfo/nodeId" => t.location.as_ref().map(|l| l.node_id.clone()).into(),
            "nodeInfo/poolId" => t.location.as_ref().map(|l| l.pool_id.clone()).into(),
            _ => {
                let _ = self.job;
                Value::Null
            }
        }
    }
}
