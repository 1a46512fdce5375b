//! The per-pool task tallies behind the shell's `/metrics`: tasks by state per pool, and
//! completions, retries and requeues counted as they happen. The index itself is checked
//! against the tasks after every step by the harness (`check_indexes`).

use openbatch_api::models::TaskState;
use openbatch_core::{Input, PoolTaskTally, TaskEvents, TaskStates};
use serde_json::json;

use crate::common::*;

fn tally_of(sim: &Sim, pool: &str) -> PoolTaskTally {
    sim.core
        .task_tallies()
        .into_iter()
        .find(|t| t.pool_id == pool)
        .unwrap_or_else(|| panic!("no tally for pool {pool}"))
}

fn states(active: u64, preparing: u64, running: u64, completed: u64) -> TaskStates {
    TaskStates {
        active,
        preparing,
        running,
        completed,
    }
}

/// Tasks are tallied per pool by state, and each completion, retry and requeue is counted once.
#[test]
fn tasks_are_tallied_per_pool_with_completions_retries_and_requeues() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("Pool-A", 2, 1))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(job(json!({
        "id": "j", "poolInfo": {"poolId": "pool-a"},
        "constraints": {"maxTaskRetryCount": 1},
    })))));
    sim.ok(add("j", simple_tasks("t", 5)));
    // Two run on the two one-slot nodes; three wait.
    assert_eq!(tally_of(&sim, "Pool-A").tasks, states(3, 0, 2, 0));

    sim.finish_task("j", "t1", 0);
    // t1 succeeded; t2 fails once (a retry), then again (a failure).
    let t2 = sim.run_of("j", "t2");
    sim.finish(t2, 1);
    let t2 = sim.run_of("j", "t2");
    sim.finish(t2, 1);
    let tally = tally_of(&sim, "Pool-A");
    assert_eq!(tally.tasks.completed, 2);
    assert_eq!(
        tally.events,
        TaskEvents {
            succeeded: 1,
            failed: 1,
            retries: 1,
            requeues: 0,
        }
    );

    // A lost node's run goes back to the queue: a requeue, not a retry.
    let node = sim.node_of("j", "t3");
    sim.lose(&node);
    assert_eq!(tally_of(&sim, "Pool-A").events.requeues, 1);
    assert_eq!(
        sim.tasks_in("j", TaskState::Completed).len() as u64,
        tally_of(&sim, "Pool-A").tasks.completed
    );

    // Deleting the job takes its tasks out of the tally; the events stay counted.
    sim.ok(Input::DeleteJob { id: "j".into() });
    sim.finish_all(0);
    sim.settle(|s| s.finish_all(0));
    assert!(sim.core.task_counts("j").is_err(), "the job is gone");
    let tally = tally_of(&sim, "Pool-A");
    assert_eq!(tally.tasks, TaskStates::default());
    assert!(tally.events.succeeded >= 1 && tally.events.failed == 1);

    // After a replay the events start again from zero, the states are rebuilt.
    let mut restored = sim.core.clone();
    restored.rebuild_indexes();
    restored.reset_task_events();
    restored.check_indexes();
    assert!(restored
        .task_tallies()
        .iter()
        .all(|t| t.events == TaskEvents::default()));
}
