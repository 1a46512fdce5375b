//! Nodes a provider could not allocate (`Input::NodeAllocationFailed`).
//!
//! The core decides how many nodes a pool has; the provider decides whether a machine for one
//! can be had (on the local provider: enough free GPUs for the size). When it cannot, the node
//! is forgotten and the pool records the failure in `resizeErrors`, as Azure does when a resize
//! cannot get all its nodes: the resize ends (`steady`) with fewer nodes than the target. The
//! pool does not grow again by itself, which would retry (and fail) in a loop; a new resize, or
//! an autoscale evaluation that changes the targets, clears the errors and tries again.

use chrono::{DateTime, Utc};
use openbatch_api::models::ResizeError;

use crate::input::Effect;
use crate::state::Core;

impl Core {
    pub(crate) fn node_allocation_failed(
        &mut self,
        node_id: &str,
        error: ResizeError,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> bool {
        let Some(node) = self.nodes.get(node_id) else {
            // Removed meanwhile (a resize down, the pool deleted): nothing to record.
            return false;
        };
        let pool_key = node.pool.clone();
        // A node that never started runs nothing, but a recovering preempted node may still
        // hold runs on paper: they go back to the queue like a lost node's.
        let runs: Vec<u64> = node.running.keys().copied().collect();
        for run in runs {
            self.requeue_run(run, now);
        }
        if let Some(pool) = self.pools.get_mut(&pool_key) {
            // One entry per kind of failure: the first message stands for the resize.
            if !pool.resize_errors.iter().any(|e| e.code == error.code) {
                pool.resize_errors.push(error);
            }
        }
        // The pool's errors are set first, so the reconcile in `drop_node` does not ask for
        // a replacement.
        self.drop_node(node_id, now, fx);
        true
    }
}
