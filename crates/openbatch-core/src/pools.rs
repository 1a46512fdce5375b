//! Pools: create, delete, resize, and keeping the node count at the target.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use openbatch_api::models::{
    AllocationState, NodeDeallocationOption, NodeState, PoolCreate, PoolResize, PoolState,
};

use crate::input::{Effect, Reply};
use crate::state::{etag, Core, Node, Pool};
use crate::{id_key, valid_id, CoreError};

/// Azure's maximum of task slots per node.
const MAX_TASK_SLOTS_PER_NODE: i32 = 256;
/// A local pool larger than this is almost certainly a typo; Azure's default quota is similar.
const MAX_TARGET_NODES: i32 = 10_000;

impl Core {
    pub(crate) fn create_pool(
        &mut self,
        spec: PoolCreate,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        if !valid_id(&spec.id) {
            return Err(CoreError::invalid(
                "id",
                &spec.id,
                "a pool id has 1 to 64 letters, digits, hyphens and underscores",
            ));
        }
        let key = id_key(&spec.id);
        if let Some(p) = self.pools.get(&key) {
            return Err(if p.state == PoolState::Deleting {
                CoreError::PoolBeingDeleted(spec.id)
            } else {
                CoreError::PoolExists(spec.id)
            });
        }
        if spec.vm_size.trim().is_empty() {
            return Err(CoreError::MissingProperty("vmSize".into()));
        }
        self.check_package_refs(&spec.application_package_references, true)?;
        let slots = spec.task_slots_per_node.unwrap_or(1);
        if !(1..=MAX_TASK_SLOTS_PER_NODE).contains(&slots) {
            return Err(CoreError::invalid(
                "taskSlotsPerNode",
                slots,
                format!("must be between 1 and {MAX_TASK_SLOTS_PER_NODE}"),
            ));
        }
        let dedicated = spec.target_dedicated_nodes.unwrap_or(0);
        let low = spec.target_low_priority_nodes.unwrap_or(0);
        check_target("targetDedicatedNodes", dedicated)?;
        check_target("targetLowPriorityNodes", low)?;
        if let Some(st) = &spec.start_task {
            crate::tasks::check_resource_files("startTask.resourceFiles", &st.resource_files)?;
        }
        if spec.enable_auto_scale == Some(true) {
            // Azure: with autoscale the formula sets the targets; none may be given.
            if spec
                .auto_scale_formula
                .as_deref()
                .is_none_or(|f| f.trim().is_empty())
            {
                return Err(CoreError::MissingProperty("autoScaleFormula".into()));
            }
            if spec.target_dedicated_nodes.is_some() || spec.target_low_priority_nodes.is_some() {
                return Err(CoreError::invalid(
                    "targetDedicatedNodes",
                    dedicated,
                    "must not be set when enableAutoScale is true: the formula sets the targets",
                ));
            }
        }
        let seq = self.seq();
        let version = self.version();
        let pool = Pool {
            spec,
            seq,
            version,
            created: now,
            last_modified: now,
            state: PoolState::Active,
            state_time: now,
            allocation_state: AllocationState::Steady,
            allocation_time: now,
            target_dedicated: dedicated as u32,
            target_low_priority: low as u32,
            deallocation: NodeDeallocationOption::Requeue,
            nodes: BTreeSet::new(),
            autoscale_run: None,
            reservation: None,
            resize_errors: Vec::new(),
        };
        self.pools.insert(key.clone(), pool);
        // Tasks of jobs that named this pool before it existed may be queued on it already.
        self.recheck_queue(&key);
        self.reconcile_pool_size(&key, now, fx);
        self.dirty_pools.insert(key);
        Ok(Reply::Created {
            etag: etag(version),
            last_modified: now,
        })
    }

    pub(crate) fn delete_pool(
        &mut self,
        id: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let pool = self
            .pools
            .get_mut(&key)
            .ok_or_else(|| CoreError::PoolNotFound(id.into()))?;
        if pool.state == PoolState::Deleting {
            return Ok(Reply::Done);
        }
        pool.state = PoolState::Deleting;
        pool.state_time = now;
        pool.target_dedicated = 0;
        pool.target_low_priority = 0;
        pool.deallocation = NodeDeallocationOption::Requeue;
        let nodes: Vec<String> = pool.nodes.iter().cloned().collect();
        for n in nodes {
            self.start_leaving(&n, NodeDeallocationOption::Requeue, now, fx);
        }
        self.finish_pool_delete_if_empty(&key);
        Ok(Reply::Done)
    }

    pub(crate) fn finish_pool_delete_if_empty(&mut self, key: &str) {
        if let Some(p) = self.pools.get(key) {
            if p.state == PoolState::Deleting && p.nodes.is_empty() {
                self.pools.remove(key);
            }
        }
    }

    pub(crate) fn resize_pool(
        &mut self,
        id: &str,
        resize: PoolResize,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(id);
        let pool = self
            .pools
            .get(&key)
            .ok_or_else(|| CoreError::PoolNotFound(id.into()))?;
        if pool.state == PoolState::Deleting {
            return Err(CoreError::PoolBeingDeleted(id.into()));
        }
        if pool.spec.enable_auto_scale == Some(true) {
            return Err(CoreError::InvalidState(format!(
                "Pool '{id}' scales automatically; disable autoscale before resizing it by hand."
            )));
        }
        let dedicated = resize
            .target_dedicated_nodes
            .unwrap_or(pool.target_dedicated as i32);
        let low = resize
            .target_low_priority_nodes
            .unwrap_or(pool.target_low_priority as i32);
        check_target("targetDedicatedNodes", dedicated)?;
        check_target("targetLowPriorityNodes", low)?;
        let version = self.version();
        let pool = self.pools.get_mut(&key).expect("checked above");
        pool.target_dedicated = dedicated as u32;
        pool.target_low_priority = low as u32;
        // A new resize: the errors of the last one go, and allocation is tried again.
        pool.resize_errors.clear();
        pool.deallocation = resize
            .node_deallocation_option
            .unwrap_or(NodeDeallocationOption::Requeue);
        if let Some(t) = resize.resize_timeout {
            pool.spec.resize_timeout = Some(t);
        }
        pool.version = version;
        pool.last_modified = now;
        self.reconcile_pool_size(&key, now, fx);
        Ok(Reply::Done)
    }

    /// Bring the node count to the pool's targets: provision what is missing, send away what
    /// is too many (idle and youngest first), and keep `allocationState` honest.
    pub(crate) fn reconcile_pool_size(
        &mut self,
        pool_key: &str,
        now: DateTime<Utc>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(pool) = self.pools.get(pool_key) else {
            return;
        };
        let mut members: Vec<(bool, &Node)> = pool
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .filter(|n| n.leaving.is_none())
            .map(|n| (n.dedicated, n))
            .collect();
        for (dedicated, target) in [
            (true, pool.target_dedicated),
            (false, pool.target_low_priority),
        ] {
            let have: Vec<&Node> = members
                .iter()
                .filter(|(d, _)| *d == dedicated)
                .map(|(_, n)| *n)
                .collect();
            let have_count = have.len() as u32;
            if have_count > target {
                // Prefer preempted nodes, then nodes doing nothing, then the least busy, then
                // the youngest.
                let mut order: Vec<&Node> = have;
                order.sort_by_key(|n| {
                    (
                        n.preemption.is_none(),
                        n.used_slots,
                        std::cmp::Reverse(n.seq),
                    )
                });
                let doomed: Vec<String> = order
                    .iter()
                    .take((have_count - target) as usize)
                    .map(|n| n.id.clone())
                    .collect();
                let option = pool.deallocation;
                for id in doomed {
                    self.start_leaving(&id, option, now, fx);
                }
                return self.reconcile_pool_size(pool_key, now, fx);
            }
            // After an allocation failure the pool stays short until its targets are set again.
            if have_count < target && pool.resize_errors.is_empty() {
                let missing = target - have_count;
                let (vm_size, slots, pool_id) = (
                    pool.spec.vm_size.clone(),
                    pool.slots_per_node(),
                    pool.spec.id.clone(),
                );
                for _ in 0..missing {
                    let seq = self.seq();
                    let id = format!("tvmps_{:012}_{}", seq, if dedicated { "d" } else { "p" });
                    let node = Node::new(
                        id.clone(),
                        pool_key.to_string(),
                        seq,
                        vm_size.clone(),
                        dedicated,
                        slots,
                        now,
                    );
                    self.nodes.insert(id.clone(), node);
                    if let Some(p) = self.pools.get_mut(pool_key) {
                        p.nodes.insert(id.clone());
                    }
                    fx.push(Effect::ProvisionNode {
                        pool: pool_id.clone(),
                        node: id,
                        vm_size: vm_size.clone(),
                        dedicated,
                        slots,
                    });
                }
                return self.reconcile_pool_size(pool_key, now, fx);
            }
            members.retain(|(d, _)| *d != dedicated);
        }
        self.update_allocation_state(pool_key, now);
    }

    /// `resizing` while nodes are being created or are leaving; `steady` otherwise.
    pub(crate) fn update_allocation_state(&mut self, pool_key: &str, now: DateTime<Utc>) {
        let Some(pool) = self.pools.get(pool_key) else {
            return;
        };
        let busy = pool
            .nodes
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .any(|n| n.leaving.is_some() || matches!(n.state, NodeState::Creating));
        let want = if busy {
            AllocationState::Resizing
        } else {
            AllocationState::Steady
        };
        let pool = self.pools.get_mut(pool_key).expect("checked above");
        if pool.allocation_state != want {
            pool.allocation_state = want;
            pool.allocation_time = now;
        }
    }

    /// A node agent that nobody provisioned joins a pool (`openbatch node join`).
    pub(crate) fn join_node(
        &mut self,
        pool_id: &str,
        vm_size: String,
        slots_hint: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Reply, CoreError> {
        let key = id_key(pool_id);
        let pool = self
            .pools
            .get(&key)
            .ok_or_else(|| CoreError::PoolNotFound(pool_id.into()))?;
        if pool.state == PoolState::Deleting {
            return Err(CoreError::PoolBeingDeleted(pool_id.into()));
        }
        let slots = slots_hint.unwrap_or(pool.slots_per_node()).max(1);
        let vm_size = if vm_size.is_empty() {
            pool.spec.vm_size.clone()
        } else {
            vm_size
        };
        let seq = self.seq();
        let id = format!("tvmps_{seq:012}_j");
        self.nodes.insert(
            id.clone(),
            Node::new(id.clone(), key.clone(), seq, vm_size, true, slots, now),
        );
        let pool = self.pools.get_mut(&key).expect("checked above");
        pool.nodes.insert(id.clone());
        // A joined node is extra capacity: the target follows it so a reconcile keeps it.
        pool.target_dedicated += 1;
        self.update_allocation_state(&key, now);
        Ok(Reply::Joined { node: id })
    }
}

fn check_target(name: &str, v: i32) -> Result<(), CoreError> {
    if !(0..=MAX_TARGET_NODES).contains(&v) {
        return Err(CoreError::invalid(
            name,
            v,
            format!("must be between 0 and {MAX_TARGET_NODES}"),
        ));
    }
    Ok(())
}
