//! Task directories on the nodes: when they are deleted, and on which nodes.
//!
//! A task's directory (`workitems/<job>/job-1/<task>`) stays on each node where an attempt of
//! it ran (`Task::ran_on`, durable) until one of:
//! - its `constraints.retentionTime` (default 7 days) has passed since the task completed.
//!   `Core::retention` is an index of completed tasks by that moment (derived from the tasks'
//!   state, rebuilt on load, kept by `refresh_retention` wherever a task's state changes), so
//!   `Input::Tick` finds what expired in O(log tasks). Only the latest completion counts: a
//!   retry or a reactivation takes the task out of the index, and its next completion puts it
//!   back.
//! - the task is deleted.
//! - the job is deleted: the whole `workitems/<job>` goes, on every node that ran anything of
//!   the job (`Job::ran_on`), once the job record is removed, which is after its release tasks
//!   have ended.
//!
//! What to delete where is an obligation of the node (`Node::dir_cleanup`, durable): it is
//! sent (`Effect::DeleteTaskDirs`) whenever the node is connected and no run on it uses the
//! directory (a deleted task's run being killed, say), again after every reconnect, and
//! forgotten when the agent answers (`Input::TaskDirsDeleted`) or the node leaves the pool.
//! Deleting is idempotent on the agent, so sending twice is harmless. A new run of the same
//! job (and task) on the node takes the directory over: the obligation is dropped, and the
//! new run's own end decides.

use chrono::{DateTime, Utc};
use openbatch_api::agent::TaskDirRef;
use openbatch_api::models::TaskState;

use crate::id_key;
use crate::input::Effect;
use crate::state::{Core, Node, Task};

/// Azure's default `retentionTime`.
const DEFAULT_RETENTION_DAYS: i64 = 7;

/// When a completed task's directory may go, if ever (an unbounded retention never expires).
fn expiry(task: &Task) -> Option<DateTime<Utc>> {
    if task.state != TaskState::Completed || task.ran_on.is_empty() {
        return None;
    }
    let retention = match task.spec.constraints.and_then(|c| c.retention_time) {
        Some(d) => chrono::Duration::from_std(d.as_duration()?).ok()?,
        None => chrono::Duration::days(DEFAULT_RETENTION_DAYS),
    };
    task.state_time.checked_add_signed(retention)
}

/// Whether a run on the node still uses the directory (a run of the task, or for a job's
/// directory any run of the job, its preparation and release runs included).
fn in_use(node: &Node, dir: &TaskDirRef) -> bool {
    let jk = id_key(&dir.job_id);
    let tk = dir.task_id.as_deref().map(id_key);
    node.running
        .values()
        .any(|(j, t, _)| *j == jk && tk.as_ref().is_none_or(|tk| tk == t))
}

/// Whether `dir` is the directory of `jk`/`tk` or the directory of job `jk`.
fn covers(dir: &TaskDirRef, jk: &str, tk: Option<&str>) -> bool {
    id_key(&dir.job_id) == jk
        && match (&dir.task_id, tk) {
            (None, _) => true,
            (Some(d), Some(t)) => id_key(d) == t,
            (Some(_), None) => false,
        }
}

impl Core {
    /// File a task in the retention index as it is now (completed with directories left, or
    /// not at all). Cheap when nothing changed.
    pub(crate) fn refresh_retention(&mut self, jk: &str, tk: &str) {
        let Some(task) = self.jobs.get_mut(jk).and_then(|j| j.tasks.get_mut(tk)) else {
            return;
        };
        let want = expiry(task);
        if task.retention_at == want {
            return;
        }
        if let Some(old) = task.retention_at.take() {
            self.retention
                .remove(&(old, jk.to_string(), tk.to_string()));
        }
        if let Some(at) = want {
            self.retention.insert((at, jk.to_string(), tk.to_string()));
        }
        task.retention_at = want;
    }

    /// A task record is gone (deleted, or with its job): out of the index.
    pub(crate) fn unindex_retention(&mut self, jk: &str, tk: &str, task: &Task) {
        if let Some(at) = task.retention_at {
            self.retention.remove(&(at, jk.to_string(), tk.to_string()));
        }
    }

    /// A run of `jk`/`tk` (a task key, or a job preparation or release key) starts on
    /// `node`: the task and the job have a directory there now, and an obligation to delete it
    /// left by an earlier task or job of the same id is dropped (this run owns it).
    pub(crate) fn note_run_dir(&mut self, jk: &str, tk: &str, node: &str) {
        let job_task = crate::jobtasks::is_job_task_key(tk);
        if let Some(job) = self.jobs.get_mut(jk) {
            if !job.ran_on.contains(node) {
                job.ran_on.insert(node.to_string());
            }
            if let Some(t) = job.tasks.get_mut(tk) {
                if !t.ran_on.contains(node) {
                    t.ran_on.insert(node.to_string());
                }
            }
        }
        if let Some(n) = self.nodes.get_mut(node) {
            if !n.dir_cleanup.is_empty() {
                let tk = (!job_task).then_some(tk);
                n.dir_cleanup.retain(|d| !covers(d, jk, tk));
            }
        }
    }

    /// The node is to delete `dir`: an obligation until the agent answers, sent at the end of
    /// this input if the node is connected and nothing uses the directory.
    pub(crate) fn want_dir_deleted(&mut self, node: &str, dir: TaskDirRef) {
        let Some(n) = self.nodes.get_mut(node) else {
            // The node left the pool: its disk went with it.
            return;
        };
        let jk = id_key(&dir.job_id);
        n.dir_cleanup.insert(dir);
        self.cleanup_out.insert((node.to_string(), Some(jk)));
    }

    /// A run of job `jk` ended on `node`: directories it held back may go now.
    pub(crate) fn run_dir_released(&mut self, node: &str, jk: &str) {
        if self
            .nodes
            .get(node)
            .is_some_and(|n| n.dir_cleanup.iter().any(|d| id_key(&d.job_id) == jk))
        {
            self.cleanup_out
                .insert((node.to_string(), Some(jk.to_string())));
        }
    }

    /// The node (re)connected: everything it still owes is sent again.
    pub(crate) fn resend_dir_cleanup(&mut self, node: &str) {
        if self
            .nodes
            .get(node)
            .is_some_and(|n| !n.dir_cleanup.is_empty())
        {
            self.cleanup_out.insert((node.to_string(), None));
        }
    }

    /// The agent deleted these directories (or refused them for good). Returns whether an
    /// obligation was dropped.
    pub(crate) fn task_dirs_deleted(&mut self, node: &str, dirs: &[TaskDirRef]) -> bool {
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        let mut changed = false;
        for d in dirs {
            changed |= n.dir_cleanup.remove(d);
        }
        changed
    }

    /// A task record is removed (task delete): its directories go on every node where it ran,
    /// after its run there (if one is being killed) has ended.
    pub(crate) fn task_removed_dirs(&mut self, job_id: &str, task: &Task) {
        for node in &task.ran_on {
            self.want_dir_deleted(
                node,
                TaskDirRef {
                    job_id: job_id.to_string(),
                    task_id: Some(task.spec.id.clone()),
                },
            );
        }
    }

    /// A job record is removed (job delete, after its release tasks): its directory goes on
    /// every node that ran anything of it.
    pub(crate) fn job_removed_dirs(&mut self, key: &str, job: &crate::state::Job) {
        let mut nodes = job.ran_on.clone();
        // Records written before `ran_on` existed: where its tasks and job tasks ran.
        nodes.extend(job.node_tasks.keys().cloned());
        for (tk, t) in &job.tasks {
            self.unindex_retention(key, tk, t);
            nodes.extend(t.ran_on.iter().cloned());
            nodes.extend(t.location.as_ref().map(|l| l.node_id.clone()));
        }
        for node in nodes {
            self.want_dir_deleted(
                &node,
                TaskDirRef {
                    job_id: job.spec.id.clone(),
                    task_id: None,
                },
            );
        }
    }

    /// Time-driven: completed tasks whose retention time has passed have their directories
    /// deleted. Returns whether any had.
    pub(crate) fn expire_retention(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        while self.retention.first().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, jk, tk)) = self.retention.pop_first() else {
                break;
            };
            let Some(job) = self.jobs.get_mut(&jk) else {
                continue;
            };
            let job_id = job.spec.id.clone();
            let Some(task) = job.tasks.get_mut(&tk) else {
                continue;
            };
            task.retention_at = None;
            let nodes = std::mem::take(&mut task.ran_on);
            let task_id = task.spec.id.clone();
            for node in nodes {
                self.want_dir_deleted(
                    &node,
                    TaskDirRef {
                        job_id: job_id.clone(),
                        task_id: Some(task_id.clone()),
                    },
                );
            }
            changed = true;
        }
        changed
    }

    /// The end of every input: one `DeleteTaskDirs` per connected node with directories to
    /// delete that no run uses.
    pub(crate) fn flush_dir_cleanup(&mut self, fx: &mut Vec<Effect>) {
        let out = std::mem::take(&mut self.cleanup_out);
        let mut by_node: std::collections::BTreeMap<&str, Vec<TaskDirRef>> = Default::default();
        for (node, job) in &out {
            let Some(n) = self.nodes.get(node) else {
                continue;
            };
            if !n.connected {
                continue;
            }
            let dirs = by_node.entry(node.as_str()).or_default();
            for d in &n.dir_cleanup {
                let wanted = job.as_ref().is_none_or(|jk| id_key(&d.job_id) == *jk);
                if wanted && !in_use(n, d) && !dirs.contains(d) {
                    dirs.push(d.clone());
                }
            }
        }
        for (node, mut dirs) in by_node {
            if dirs.is_empty() {
                continue;
            }
            dirs.sort();
            fx.push(Effect::DeleteTaskDirs {
                node: node.to_string(),
                dirs,
            });
        }
    }

    /// The retention index as it should be, from the tasks (for `check_indexes`).
    pub(crate) fn check_retention_index(&self) {
        let mut want = std::collections::BTreeSet::new();
        for (jk, j) in &self.jobs {
            for (tk, t) in &j.tasks {
                assert_eq!(
                    t.retention_at,
                    expiry(t),
                    "task {jk}/{tk} is filed under the wrong retention time"
                );
                if let Some(at) = expiry(t) {
                    want.insert((at, jk.clone(), tk.clone()));
                }
            }
        }
        assert_eq!(
            self.retention, want,
            "the retention index disagrees with the tasks"
        );
        assert!(
            self.cleanup_out.is_empty(),
            "directory cleanups left between inputs"
        );
    }

    /// Rebuild the retention index (after loading a snapshot).
    pub(crate) fn rebuild_retention(&mut self) {
        self.retention.clear();
        let keys: Vec<(String, String)> = self
            .jobs
            .iter()
            .flat_map(|(jk, j)| j.tasks.keys().map(move |tk| (jk.clone(), tk.clone())))
            .collect();
        for (jk, tk) in keys {
            if let Some(t) = self.jobs.get_mut(&jk).and_then(|j| j.tasks.get_mut(&tk)) {
                t.retention_at = None;
            }
            self.refresh_retention(&jk, &tk);
        }
        self.cleanup_out.clear();
    }
}
