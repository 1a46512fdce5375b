//! Task dependencies (`dependsOn`): which of a job's waiting tasks may run.
//!
//! The rules are Azure Batch's (the "Create task dependencies" article and the REST reference of
//! `BatchTaskDependencies`):
//! - a task with `dependsOn` can only be added to a job created with `usesTaskDependencies`
//!   (`TaskDependenciesNotSpecifiedOnJob` otherwise);
//! - it stays `active` until every task it depends on has completed and satisfied it. By
//!   default a success (exit code 0) satisfies and every other ending blocks; exit conditions
//!   can say otherwise (`dependencyAction`, resolved in `exits.rs`);
//! - `taskIds` may name tasks that are not added yet: the dependent waits for them;
//! - a range `{start, end}` of `taskIdRanges` (inclusive) selects the tasks whose ids are
//!   integers, leading zeros ignored: `4`, `04` and `004` are all task 4, and any of them
//!   satisfies it. Every integer of the range must be satisfied, so a range waits for tasks that
//!   are not added yet too;
//! - a dependent that a dependency blocks never runs and stays `active`, as on Azure ("Batch does
//!   not yet support cancellation of dependent tasks"); terminating or deleting its job ends it.
//!
//! openbatch evaluates dependencies against the tasks the job has *now*. A satisfying task that
//! is deleted, or reactivated, stops satisfying, and a dependent that has not started waits
//! again. That keeps the index below a pure function of the tasks' persisted states (their
//! state and resolved `dependency_action`): it is never journaled, and is rebuilt from the tasks
//! after a snapshot loads.
//!
//! The index keeps reverse edges, so a completion touches only what depends on it:
//! - `by_id`: task key -> the dependents that name it in `taskIds`;
//! - ranges are never expanded into per-task lists. Dependents with the same `(start, end)`
//!   share one group, which keeps a cursor: the first integer of the range that is not
//!   satisfied (every integer before it is). The group is filed under its cursor in `watch`.
//!   When integer n becomes satisfied, only the groups watching n move, their cursors skipping
//!   forward over satisfied integers, so over its life a cursor crosses its range once. Only a
//!   withdrawal (rare: a delete or a reactivation) looks at every group that starts at or
//!   before n, to move cursors back;
//! - `unmet`: for each dependent that is not completed, how many of its distinct ids and ranges
//!   are not satisfied. It may be queued exactly when that is 0.

use std::collections::{BTreeMap, BTreeSet};

use openbatch_api::models::{TaskDependencies, TaskState};

use crate::state::{Core, Job, Task};
use crate::{id_key, valid_id, CoreError};

/// Azure: "The taskIds collection is limited to 64000 characters total (i.e. the combined
/// length of all Task IDs)"; longer is `TaskDependencyListTooLong`.
pub(crate) const MAX_TASK_IDS_CHARS: usize = 64_000;

/// Azure refuses too many ranges with `TaskDependencyRangesTooLong` ("the issue is not with the
/// size of ranges, but with the number of ranges") without saying how many. Ranges share the
/// 64,000-character store of `taskIds`, where one takes about 16 characters (two numbers and
/// separators): 4,000 ranges.
pub(crate) const MAX_ID_RANGES: usize = 4_000;

/// The integer a task id stands for in `taskIdRanges`: ids made only of digits, leading zeros
/// ignored. Larger than `i64::MAX` is no integer any range can reach.
pub(crate) fn numeric_id(id: &str) -> Option<i64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = id.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse().ok()
}

/// Check a task's `dependsOn` before it is added (the job uses dependencies).
pub(crate) fn check(own_id: &str, deps: &TaskDependencies) -> Result<(), CoreError> {
    let chars: usize = deps.task_ids.iter().map(|i| i.len()).sum();
    if chars > MAX_TASK_IDS_CHARS {
        return Err(CoreError::DependencyListTooLong(chars));
    }
    if deps.task_id_ranges.len() > MAX_ID_RANGES {
        return Err(CoreError::DependencyRangesTooLong(
            deps.task_id_ranges.len(),
        ));
    }
    let own = id_key(own_id);
    for id in &deps.task_ids {
        if !valid_id(id) {
            return Err(CoreError::invalid(
                "dependsOn.taskIds",
                id,
                "a task id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        if id_key(id) == own {
            return Err(CoreError::invalid(
                "dependsOn.taskIds",
                id,
                "a task cannot depend on itself",
            ));
        }
    }
    let own_number = numeric_id(own_id);
    for r in &deps.task_id_ranges {
        let value = format!("{}-{}", r.start, r.end);
        if r.start < 0 {
            return Err(CoreError::invalid(
                "dependsOn.taskIdRanges",
                value,
                "a range selects the tasks whose ids are integers, which are 0 or more: start must not be negative",
            ));
        }
        if r.start > r.end {
            return Err(CoreError::invalid(
                "dependsOn.taskIdRanges",
                value,
                "start must not be greater than end",
            ));
        }
        if own_number.is_some_and(|n| r.start <= n && n <= r.end) {
            return Err(CoreError::invalid(
                "dependsOn.taskIdRanges",
                value,
                "the range includes the task itself, and a task cannot depend on itself",
            ));
        }
    }
    Ok(())
}

/// The first integer in `from..=end` that is not in `satisfied`.
fn first_gap(satisfied: &BTreeMap<i64, u32>, from: i64, end: i64) -> Option<i64> {
    let mut want = from;
    for &n in satisfied.range(from..=end).map(|(n, _)| n) {
        if n != want {
            return Some(want);
        }
        if n == end {
            return None;
        }
        want = n + 1;
    }
    Some(want)
}

/// What a dependent waits for, without repeats: task keys and ranges.
fn wants(deps: &TaskDependencies) -> (BTreeSet<String>, BTreeSet<(i64, i64)>) {
    (
        deps.task_ids.iter().map(|i| id_key(i)).collect(),
        deps.task_id_ranges
            .iter()
            .map(|r| (r.start, r.end))
            .collect(),
    )
}

/// One job's dependency index. See the module doc.
#[derive(Debug, Clone, Default)]
pub(crate) struct DepIndex {
    /// Dependents not completed -> how many of their distinct ids and ranges are unmet.
    unmet: BTreeMap<String, u32>,
    /// Task key -> the dependents (not completed) that name it in `taskIds`.
    by_id: BTreeMap<String, BTreeSet<String>>,
    /// Dependents (not completed) by their exact range.
    ranges: BTreeMap<(i64, i64), RangeGroup>,
    /// Integer -> the range groups whose cursor is on it.
    watch: BTreeMap<i64, BTreeSet<(i64, i64)>>,
    /// Integer -> how many tasks with that numeric id satisfy their dependents now.
    satisfied_numbers: BTreeMap<i64, u32>,
}

#[derive(Debug, Clone, Default)]
struct RangeGroup {
    /// The first integer of the range that is not satisfied; `None` once all are.
    cursor: Option<i64>,
    dependents: BTreeSet<String>,
}

impl DepIndex {
    /// Whether the task waits for a dependency (and so must stay out of the run queue).
    pub(crate) fn is_blocked(&self, tk: &str) -> bool {
        self.unmet.get(tk).is_some_and(|n| *n > 0)
    }

    /// The first integer of a dependent's range that is not satisfied, if any (for `explain`).
    pub(crate) fn range_first_unmet(&self, range: (i64, i64)) -> Option<i64> {
        self.ranges.get(&range).and_then(|g| g.cursor)
    }

    /// Start tracking a dependent that is not completed.
    fn register(&mut self, tk: &str, deps: &TaskDependencies, tasks: &BTreeMap<String, Task>) {
        let (ids, ranges) = wants(deps);
        let mut unmet = 0;
        for id in ids {
            if !tasks.get(&id).is_some_and(Task::satisfies_dependents) {
                unmet += 1;
            }
            self.by_id.entry(id).or_default().insert(tk.to_string());
        }
        for range in ranges {
            if !self.ranges.contains_key(&range) {
                let cursor = first_gap(&self.satisfied_numbers, range.0, range.1);
                if let Some(c) = cursor {
                    self.watch.entry(c).or_default().insert(range);
                }
                self.ranges.insert(
                    range,
                    RangeGroup {
                        cursor,
                        dependents: BTreeSet::new(),
                    },
                );
            }
            let group = self.ranges.get_mut(&range).expect("inserted above");
            if group.cursor.is_some() {
                unmet += 1;
            }
            group.dependents.insert(tk.to_string());
        }
        self.unmet.insert(tk.to_string(), unmet);
    }

    /// Stop tracking a dependent (it completed or was deleted).
    fn unregister(&mut self, tk: &str, deps: &TaskDependencies) {
        let (ids, ranges) = wants(deps);
        for id in ids {
            if let Some(set) = self.by_id.get_mut(&id) {
                set.remove(tk);
                if set.is_empty() {
                    self.by_id.remove(&id);
                }
            }
        }
        for range in ranges {
            let Some(group) = self.ranges.get_mut(&range) else {
                continue;
            };
            group.dependents.remove(tk);
            if group.dependents.is_empty() {
                if let Some(c) = group.cursor {
                    if let Some(w) = self.watch.get_mut(&c) {
                        w.remove(&range);
                        if w.is_empty() {
                            self.watch.remove(&c);
                        }
                    }
                }
                self.ranges.remove(&range);
            }
        }
        self.unmet.remove(tk);
    }

    /// Task `tk` started satisfying its dependents: collect those it releases.
    fn satisfied(&mut self, tk: &str, released: &mut Vec<String>) {
        let Self {
            unmet,
            by_id,
            ranges,
            watch,
            satisfied_numbers,
        } = self;
        let mut one_less = |dependent: &String| {
            if let Some(n) = unmet.get_mut(dependent) {
                debug_assert!(*n > 0, "dependent {dependent} had nothing unmet");
                *n = n.saturating_sub(1);
                if *n == 0 {
                    released.push(dependent.clone());
                }
            }
        };
        if let Some(dependents) = by_id.get(tk) {
            dependents.iter().for_each(&mut one_less);
        }
        let Some(number) = numeric_id(tk) else {
            return;
        };
        let count = satisfied_numbers.entry(number).or_default();
        *count += 1;
        if *count > 1 {
            // Another task with the same number (`04` after `4`) already satisfied it.
            return;
        }
        let Some(groups) = watch.remove(&number) else {
            return;
        };
        for range in groups {
            let Some(group) = ranges.get_mut(&range) else {
                continue;
            };
            let next = if number == range.1 {
                None
            } else {
                first_gap(satisfied_numbers, number + 1, range.1)
            };
            group.cursor = next;
            match next {
                Some(c) => {
                    watch.entry(c).or_default().insert(range);
                }
                None => group.dependents.iter().for_each(&mut one_less),
            }
        }
    }

    /// Task `tk` stopped satisfying its dependents (deleted, or reactivated): collect the
    /// dependents that were ready and now wait again.
    fn withdrawn(&mut self, tk: &str, blocked: &mut Vec<String>) {
        let Self {
            unmet,
            by_id,
            ranges,
            watch,
            satisfied_numbers,
        } = self;
        let mut one_more = |dependent: &String| {
            if let Some(n) = unmet.get_mut(dependent) {
                *n += 1;
                if *n == 1 {
                    blocked.push(dependent.clone());
                }
            }
        };
        if let Some(dependents) = by_id.get(tk) {
            dependents.iter().for_each(&mut one_more);
        }
        let Some(number) = numeric_id(tk) else {
            return;
        };
        let Some(count) = satisfied_numbers.get_mut(&number) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        satisfied_numbers.remove(&number);
        for (&range, group) in ranges.range_mut(..=(number, i64::MAX)) {
            if range.1 < number || group.cursor.is_some_and(|c| c <= number) {
                continue;
            }
            match group.cursor {
                Some(c) => {
                    if let Some(w) = watch.get_mut(&c) {
                        w.remove(&range);
                        if w.is_empty() {
                            watch.remove(&c);
                        }
                    }
                }
                None => group.dependents.iter().for_each(&mut one_more),
            }
            group.cursor = Some(number);
            watch.entry(number).or_default().insert(range);
        }
    }
}

impl Job {
    pub(crate) fn uses_dependencies(&self) -> bool {
        self.spec.uses_task_dependencies == Some(true)
    }

    /// Build the dependency index from the tasks (after a snapshot loads).
    pub(crate) fn rebuild_deps(&mut self) {
        self.deps = DepIndex::default();
        if !self.uses_dependencies() {
            return;
        }
        for (tk, t) in &self.tasks {
            if let (true, Some(n)) = (t.satisfies_dependents(), numeric_id(tk)) {
                *self.deps.satisfied_numbers.entry(n).or_default() += 1;
            }
        }
        for (tk, t) in &self.tasks {
            if let (false, Some(d)) = (t.state == TaskState::Completed, &t.spec.depends_on) {
                self.deps.register(tk, d, &self.tasks);
            }
        }
    }
}

impl Core {
    /// A task was added: if it depends on others, track it (before it is queued).
    pub(crate) fn deps_task_added(&mut self, jk: &str, tk: &str) {
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        if !job.uses_dependencies() {
            return;
        }
        let Job { tasks, deps, .. } = job;
        if let Some(d) = tasks.get(tk).and_then(|t| t.spec.depends_on.as_ref()) {
            deps.register(tk, d, tasks);
        }
    }

    /// A task's state changed (`set_task_state`): keep the index right, and queue the dependents
    /// it released or take out those that wait again. `was_done` and `was_satisfying` describe
    /// the task before the change.
    pub(crate) fn deps_task_changed(
        &mut self,
        jk: &str,
        tk: &str,
        was_done: bool,
        was_satisfying: bool,
    ) {
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        if !job.uses_dependencies() {
            return;
        }
        let Job { tasks, deps, .. } = job;
        let Some(task) = tasks.get(tk) else {
            return;
        };
        let done = task.state == TaskState::Completed;
        let satisfying = task.satisfies_dependents();
        if let Some(d) = &task.spec.depends_on {
            match (was_done, done) {
                (false, true) => deps.unregister(tk, d),
                (true, false) => deps.register(tk, d, tasks),
                _ => {}
            }
        }
        let mut released = Vec::new();
        let mut blocked = Vec::new();
        match (was_satisfying, satisfying) {
            (false, true) => deps.satisfied(tk, &mut released),
            (true, false) => deps.withdrawn(tk, &mut blocked),
            _ => {}
        }
        for dependent in released {
            self.enqueue(jk, &dependent);
        }
        for dependent in blocked {
            self.dequeue(jk, &dependent);
        }
    }

    /// A task is about to be deleted: it no longer waits, and no longer satisfies anyone.
    pub(crate) fn deps_task_removed(&mut self, jk: &str, tk: &str) {
        let Some(job) = self.jobs.get_mut(jk) else {
            return;
        };
        if !job.uses_dependencies() {
            return;
        }
        let Job { tasks, deps, .. } = job;
        let Some(task) = tasks.get(tk) else {
            return;
        };
        if let (false, Some(d)) = (task.state == TaskState::Completed, &task.spec.depends_on) {
            deps.unregister(tk, d);
        }
        let mut blocked = Vec::new();
        if task.satisfies_dependents() {
            deps.withdrawn(tk, &mut blocked);
        }
        for dependent in blocked {
            self.dequeue(jk, &dependent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_ignore_leading_zeros() {
        assert_eq!(numeric_id("4"), Some(4));
        assert_eq!(numeric_id("004"), Some(4));
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("000"), Some(0));
        assert_eq!(numeric_id("5flamingoes"), None);
        assert_eq!(numeric_id("-4"), None);
        assert_eq!(numeric_id(""), None);
        assert_eq!(numeric_id(&"9".repeat(30)), None);
        assert_eq!(
            numeric_id(&format!("{}{}", "0".repeat(50), i64::MAX)),
            Some(i64::MAX)
        );
    }

    fn numbers(n: &[i64]) -> BTreeMap<i64, u32> {
        n.iter().map(|n| (*n, 1)).collect()
    }

    #[test]
    fn first_gap_skips_satisfied_integers() {
        let s = numbers(&[1, 2, 3, 5]);
        assert_eq!(first_gap(&s, 1, 10), Some(4));
        assert_eq!(first_gap(&s, 1, 3), None);
        assert_eq!(first_gap(&s, 5, 5), None);
        assert_eq!(first_gap(&s, 0, 3), Some(0));
        assert_eq!(first_gap(&s, 6, 9), Some(6));
        let top = numbers(&[i64::MAX - 1, i64::MAX]);
        assert_eq!(first_gap(&top, i64::MAX - 1, i64::MAX), None);
        assert_eq!(first_gap(&top, i64::MAX - 2, i64::MAX), Some(i64::MAX - 2));
    }
}
