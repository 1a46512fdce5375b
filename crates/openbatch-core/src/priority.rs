//! Preemption by priority: a job's `allowTaskPreemption`.
//!
//! Azure: "Whether Tasks in this job can be preempted by other high priority jobs. If the value
//! is set to True, other high priority jobs submitted to the system will take precedence and
//! will be able requeue tasks from this job."
//!
//! After a placement pass leaves the pool's highest-priority waiting task without a node, the
//! scheduler looks for running tasks of strictly lower-priority jobs that allow preemption, on
//! one node that would then fit the waiting task. It requeues the fewest it needs there (the
//! lowest priority first, then the most recently started, so the least work is lost), exactly
//! as a requeue elsewhere does: the process is killed, and the task goes back to its job's queue
//! with `requeueCount` up and no retry used. Its slots stay taken until the agent reports the
//! kill (`Core::hold_until_killed`), and the node is held for the waiting task meanwhile (the
//! pool's reservation, as `sched.rs` holds a node for a task too large to fit), so the placement
//! pass after the last report starts it there; the victims wait their turn behind it. While the
//! pool holds nodes for another task, nothing is preempted.
//!
//! Left alone: multi-instance tasks (on either side), exclusive job manager tasks (they want
//! an empty node) and job manager tasks as victims, and runs waiting for their job's
//! preparation task. Everything here is a function of the state, so replay preempts exactly as
//! the live server did.

use chrono::{DateTime, Utc};
use openbatch_api::models::JobState;

use crate::input::Effect;
use crate::state::{Core, RunId};

/// A running task that may be requeued for a waiting one: (job priority, newest first, run).
type Victim = (i32, std::cmp::Reverse<RunId>, u32);

impl Core {
    /// Requeue lower-priority preemptible runs so the pool's first waiting task fits on a
    /// node. Returns whether anything was requeued (the caller places again).
    pub(crate) fn preempt_for_priority(
        &mut self,
        pool_key: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some((jk, tk, need, priority)) = self.first_waiting(pool_key) else {
            return false;
        };
        // Cheap first: is there a running, preemptible, lower-priority job at all?
        let victim_jobs: std::collections::BTreeSet<String> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                j.spec.allow_task_preemption == Some(true)
                    && j.priority() < priority
                    && j.counts.running > 0
                    && j.state == JobState::Active
            })
            .filter(|(_, j)| j.pool_key() == pool_key)
            .map(|(k, _)| k.clone())
            .collect();
        if victim_jobs.is_empty() {
            return false;
        }
        // The node emptied for the task is held for it (the pool's one reservation) until the
        // kills are reported and it starts, so that smaller tasks do not backfill the slots
        // (the victims among them, which would be preempted again, without end). While the
        // pool holds nodes for another task, this one waits its turn; a hold for this very
        // task moves to the node chosen.
        if self
            .pools
            .get(pool_key)
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| !(r.job == jk && r.task == tk && r.gang.is_empty()))
        {
            return false;
        }
        // The node that needs the fewest slots taken back; among equals, the oldest node.
        let mut best: Option<(u32, u64, String, Vec<Victim>)> = None;
        let node_ids: Vec<String> = self
            .pools
            .get(pool_key)
            .map(|p| p.nodes.iter().cloned().collect())
            .unwrap_or_default();
        for id in node_ids {
            let Some(node) = self.nodes.get(&id) else {
                continue;
            };
            if !node.schedulable() || node.slots < need || !self.node_allowed(&jk, &tk, &id) {
                continue;
            }
            let free = node.free_slots();
            let freeing: u32 = node.killing.values().sum();
            if free + freeing >= need {
                // It fits already (something else keeps it from starting; preempting would
                // not help it), or will once the kills under way here are reported: an
                // earlier round preempted for it.
                return false;
            }
            let mut victims: Vec<Victim> = node
                .running
                .iter()
                .filter(|(run, (vj, vt, _))| {
                    victim_jobs.contains(vj)
                        && !node.waiting.contains(run)
                        && self
                            .jobs
                            .get(vj)
                            .and_then(|j| j.tasks.get(vt))
                            .is_some_and(|t| t.gang.is_empty() && !t.job_manager)
                })
                .map(|(run, (vj, _, slots))| {
                    let p = self.jobs.get(vj).map_or(0, |j| j.priority());
                    (p, std::cmp::Reverse(*run), *slots)
                })
                .collect();
            victims.sort();
            let mut freed = free;
            let mut taken = Vec::new();
            for v in victims {
                if freed >= need {
                    break;
                }
                freed += v.2;
                taken.push(v);
            }
            if freed < need {
                continue;
            }
            let cost: u32 = taken.iter().map(|v| v.2).sum();
            if best
                .as_ref()
                .is_none_or(|(c, seq, _, _)| (cost, node.seq) < (*c, *seq))
            {
                best = Some((cost, node.seq, id.clone(), taken));
            }
        }
        let Some((_, _, node, taken)) = best else {
            return false;
        };
        if let Some(pool) = self.pools.get_mut(pool_key) {
            pool.reservation = Some(crate::state::Reservation {
                job: jk.clone(),
                task: tk.clone(),
                node: node.clone(),
                gang: Vec::new(),
            });
        }
        for (_, std::cmp::Reverse(run), slots) in taken {
            fx.push(Effect::KillTask {
                node: node.clone(),
                run,
            });
            self.requeue_run(run, now);
            self.hold_until_killed(&node, run, slots);
        }
        true
    }

    /// The pool's first waiting task in queue order that preemption could help: its job is
    /// active and below its parallel limit, and it is an ordinary task (not a gang, not an
    /// exclusive job manager). Returns (job key, task key, slots, job priority).
    fn first_waiting(&self, pool_key: &str) -> Option<(String, String, u32, i32)> {
        let queue = self.queues.get(pool_key)?;
        for jq in queue.values() {
            let Some(job) = self.jobs.get(&jq.job) else {
                continue;
            };
            if job.state != JobState::Active {
                continue;
            }
            let max_parallel = job.spec.max_parallel_tasks.unwrap_or(-1);
            if max_parallel > 0 && job.counts.running >= i64::from(max_parallel) {
                continue;
            }
            let head = jq
                .by_slots
                .iter()
                .filter_map(|(slots, b)| b.first_key_value().map(|(seq, tk)| (*seq, *slots, tk)))
                .min();
            let Some((_, need, tk)) = head else {
                continue;
            };
            if self.runs_exclusive(&jq.job, tk) {
                return None;
            }
            return Some((jq.job.clone(), tk.clone(), need, job.priority()));
        }
        None
    }
}
