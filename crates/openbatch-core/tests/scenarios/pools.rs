//! Pools: allocation, resizing (each node deallocation option), deletion.

use openbatch_api::models::{AllocationState, NodeState, PoolResize, PoolState, TaskState};
use openbatch_core::{CoreError, Effect, Input, Reply};
use serde_json::json;

use crate::common::*;

fn resize(id: &str, dedicated: i32, option: &str) -> Input {
    Input::ResizePool {
        id: id.into(),
        resize: serde_json::from_value::<PoolResize>(
            json!({"targetDedicatedNodes": dedicated, "nodeDeallocationOption": option}),
        )
        .unwrap(),
    }
}

/// Azure: creating a pool with `targetDedicatedNodes = N` allocates N nodes. They start
/// `creating` and the pool's `allocationState` is `resizing`; a booted node is `idle`, and
/// once all are there the pool is `steady`.
#[test]
fn pool_create_provisions_target_nodes_then_settles() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 3, 2))));
    assert_eq!(sim.last.len(), 3);
    for fx in &sim.last {
        match fx {
            Effect::ProvisionNode {
                pool,
                vm_size,
                dedicated,
                slots,
                ..
            } => {
                assert_eq!(
                    (pool.as_str(), vm_size.as_str(), *dedicated, *slots),
                    ("p", "standard_d2s_v3", true, 2)
                );
            }
            other => panic!("unexpected effect {other:?}"),
        }
    }
    assert_eq!(sim.node_states("p"), vec![NodeState::Creating; 3]);
    let p = sim.pool_view("p");
    assert_eq!(p.allocation_state, AllocationState::Resizing);
    assert_eq!((p.target_dedicated_nodes, p.state), (3, PoolState::Active));

    let nodes = sim.pending();
    sim.connect(&nodes[0]);
    assert_eq!(sim.node_state(&nodes[0]), NodeState::Idle);
    assert_eq!(sim.node_view(&nodes[0]).ip_address, "10.0.0.1");
    assert_eq!(
        sim.pool_view("p").allocation_state,
        AllocationState::Resizing
    );

    sim.advance(5);
    sim.connect(&nodes[1]);
    sim.connect(&nodes[2]);
    assert_eq!(sim.node_states("p"), vec![NodeState::Idle; 3]);
    let p = sim.pool_view("p");
    assert_eq!(p.allocation_state, AllocationState::Steady);
    assert_eq!(p.allocation_state_transition_time, sim.now);
    assert_eq!(p.current_dedicated_nodes, 3);
}

/// Azure: a pool created with no target nodes is `steady` right away and allocates nothing.
#[test]
fn empty_pool_is_steady() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 0, 1))));
    assert!(sim.last.is_empty());
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);
    assert!(sim.nodes("p").is_empty());
}

/// Azure: resizing up allocates the missing nodes; existing nodes keep their work.
#[test]
fn resize_up_provisions_the_difference() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 3)));
    assert_eq!(sim.counts("j").running, 1);

    sim.ok(resize("p", 3, "requeue"));
    assert_eq!(sim.last_provisions().len(), 2);
    assert_eq!(
        sim.pool_view("p").allocation_state,
        AllocationState::Resizing
    );
    sim.connect_all();
    assert_eq!(sim.counts("j").running, 3);
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);
}

/// Azure: when a pool shrinks, idle nodes go first; busy nodes keep running.
#[test]
fn resize_down_prefers_idle_nodes() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 3, 1))));
    sim.connect_all();
    let nodes = sim.provisioned.clone();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    let busy = sim.node_of("j", "t1");

    sim.ok(resize("p", 1, "requeue"));
    assert!(
        sim.last_kills().is_empty(),
        "no running task may be disturbed"
    );
    let leaving: Vec<String> = sim.last_removals();
    assert_eq!(leaving.len(), 2);
    assert!(!leaving.contains(&busy));
    for n in &nodes {
        let want = if *n == busy {
            NodeState::Running
        } else {
            NodeState::LeavingPool
        };
        assert_eq!(sim.node_state(n), want);
    }
    for n in leaving {
        sim.removed(&n);
    }
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);
    assert_eq!(sim.nodes("p").len(), 1);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
}

/// Azure, `nodeDeallocationOption = requeue`: running tasks on the leaving nodes are stopped and
/// put back in the queue (their `requeueCount` goes up, `retryCount` does not); the nodes
/// are `leavingpool` until removed.
#[test]
fn resize_down_with_requeue_requeues_running_tasks() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    sim.connect_all();
    let (n1, n2) = (sim.provisioned[0].clone(), sim.provisioned[1].clone());
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 3)));
    assert_eq!(sim.node_of("j", "t1"), n1);
    assert_eq!(sim.node_of("j", "t2"), n2);
    let old = sim.run_of("j", "t2");

    sim.advance(1);
    sim.ok(resize("p", 1, "requeue"));
    // Both nodes are busy: the youngest goes.
    assert_eq!(sim.node_state(&n2), NodeState::LeavingPool);
    assert_eq!(sim.last_kills(), vec![old]);
    assert_eq!(sim.last_removals(), vec![n2.clone()]);
    let t2 = sim.task_view("j", "t2");
    assert_eq!(t2.state, TaskState::Active);
    assert_eq!(t2.execution_info.requeue_count, 1);
    assert_eq!(t2.execution_info.retry_count, 0);
    assert_eq!(t2.execution_info.last_requeue_time, Some(sim.now));
    assert_eq!(
        sim.pool_view("p").allocation_state,
        AllocationState::Resizing
    );
    // Nothing starts on a leaving node.
    assert!(sim.last_run_tasks().is_empty());

    // The kill's report is late news: the task is already back in the queue.
    let before = sim.task_view("j", "t2");
    let a = sim.finish(old, 137);
    assert!(!a.changed);
    assert_eq!(sim.task_view("j", "t2"), before);

    sim.removed(&n2);
    assert_eq!(sim.nodes("p").len(), 1);
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);

    // The survivor works through the queue: t1, then t2 (requeued, older) before t3.
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.last_run_tasks(), vec![(n1.clone(), "t2".to_string())]);
    sim.finish_task("j", "t2", 0);
    sim.finish_task("j", "t3", 0);
    assert_eq!(sim.counts("j").succeeded, 3);
}

/// Azure, `nodeDeallocationOption = terminate`: running tasks are stopped and complete as
/// failed (`TaskEnded`), without retries; the node is removed once they have stopped.
#[test]
fn resize_down_with_terminate_ends_running_tasks() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    sim.connect_all();
    let n2 = sim.provisioned[1].clone();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add(
        "j",
        vec![
            simple_task("t1"),
            task(json!({"id": "t2", "commandLine": "sleep 1000", "constraints": {"maxTaskRetryCount": 3}})),
        ],
    ));
    let run = sim.run_of("j", "t2");

    sim.ok(resize("p", 1, "terminate"));
    assert_eq!(sim.last_kills(), vec![run]);
    assert!(sim.last_removals().is_empty(), "the node still runs t2");
    assert_eq!(sim.node_state(&n2), NodeState::LeavingPool);
    assert_eq!(sim.task_state("j", "t2"), TaskState::Running);

    sim.advance(2);
    sim.finish(run, 137);
    let t2 = sim.task_view("j", "t2");
    assert_eq!(t2.state, TaskState::Completed);
    assert_eq!(
        t2.execution_info.result,
        Some(openbatch_api::models::ExecutionResult::Failure)
    );
    assert_eq!(
        t2.execution_info.failure_info.unwrap().code.as_deref(),
        Some("TaskEnded")
    );
    assert_eq!(t2.execution_info.retry_count, 0);
    assert_eq!(sim.last_removals(), vec![n2.clone()]);

    sim.removed(&n2);
    assert_eq!(sim.nodes("p").len(), 1);
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);
}

/// Azure, `nodeDeallocationOption = taskcompletion`: the leaving node takes no new tasks but
/// finishes the ones it runs; then it is removed.
#[test]
fn resize_down_with_taskcompletion_lets_tasks_finish() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 2))));
    sim.connect_all();
    let (n1, n2) = (sim.provisioned[0].clone(), sim.provisioned[1].clone());
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    // Spread: t1 on n1, t2 on n2.
    sim.ok(add("j", simple_tasks("t", 2)));
    assert_eq!(sim.node_of("j", "t2"), n2);

    sim.ok(resize("p", 1, "taskcompletion"));
    assert!(sim.last_kills().is_empty());
    assert!(sim.last_removals().is_empty());
    assert_eq!(sim.node_state(&n2), NodeState::LeavingPool);

    // n2 has a free slot but is leaving: new work goes to n1 only.
    sim.ok(add("j", vec![simple_task("t3"), simple_task("t4")]));
    assert_eq!(sim.last_run_tasks(), vec![(n1.clone(), "t3".to_string())]);
    assert_eq!(sim.task_state("j", "t4"), TaskState::Active);

    sim.finish_task("j", "t2", 0);
    assert_eq!(
        sim.task_view("j", "t2").execution_info.result,
        Some(openbatch_api::models::ExecutionResult::Success)
    );
    assert_eq!(sim.last_removals(), vec![n2.clone()]);
    assert!(
        sim.last_run_tasks().is_empty(),
        "nothing may start on the drained node"
    );
    sim.removed(&n2);
    assert_eq!(sim.nodes("p").len(), 1);
    assert_eq!(sim.task_state("j", "t4"), TaskState::Active);
    sim.finish_task("j", "t1", 0);
    assert_eq!(sim.last_run_tasks(), vec![(n1, "t4".to_string())]);
}

/// Azure: deleting a pool puts it in `deleting`; its nodes leave (running tasks are requeued)
/// and it disappears once they are gone. Meanwhile the id is taken (`PoolBeingDeleted`).
#[test]
fn delete_pool_goes_through_deleting_then_disappears() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    sim.connect_all();
    let nodes = sim.provisioned.clone();
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    let run = sim.run_of("j", "t1");

    sim.ok(Input::DeletePool { id: "p".into() });
    assert_eq!(sim.pool_view("p").state, PoolState::Deleting);
    assert_eq!(sim.node_states("p"), vec![NodeState::LeavingPool; 2]);
    assert_eq!(sim.last_kills(), vec![run]);
    let mut removals = sim.last_removals();
    removals.sort();
    assert_eq!(removals, nodes);
    assert_eq!(sim.task_state("j", "t1"), TaskState::Active);

    assert_eq!(
        sim.refused(Input::CreatePool(Box::new(simple_pool("p", 1, 1)))),
        CoreError::PoolBeingDeleted("p".into())
    );
    assert_eq!(
        sim.refused(resize("p", 3, "requeue")),
        CoreError::PoolBeingDeleted("p".into())
    );
    // Deleting again is accepted and changes nothing.
    sim.ok(Input::DeletePool { id: "p".into() });

    sim.removed(&nodes[0]);
    assert_eq!(sim.pool_view("p").state, PoolState::Deleting);
    sim.removed(&nodes[1]);
    assert_eq!(
        sim.core.pool("p", &urls()).unwrap_err(),
        CoreError::PoolNotFound("p".into())
    );
    assert!(sim.core.node_ids().is_empty());
    // The job keeps its task, waiting for a pool of that name (Azure keeps it active too).
    assert_eq!(sim.task_state("j", "t1"), TaskState::Active);
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    sim.connect_all();
    assert_eq!(sim.task_state("j", "t1"), TaskState::Running);
}

/// Azure: a pool without nodes is deleted at once.
#[test]
fn delete_empty_pool_is_immediate() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 0, 1))));
    sim.ok(Input::DeletePool { id: "p".into() });
    assert!(sim.core.pool("p", &urls()).is_err());
    assert_eq!(
        sim.refused(Input::DeletePool { id: "p".into() }),
        CoreError::PoolNotFound("p".into())
    );
}

/// `openbatch node join`: an agent nobody provisioned joins a pool. It becomes a node of the
/// pool (the target follows, so nothing is provisioned or sent away for it) and takes tasks.
#[test]
fn a_joined_node_adds_capacity() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 0, 1))));
    sim.ok(Input::CreateJob(Box::new(simple_job("j", "p"))));
    sim.ok(add("j", simple_tasks("t", 1)));
    // The pool's allocationState lags behind a join (see the test below): check after connecting.
    sim.checks = false;
    let joined = sim.ok(Input::JoinNode {
        pool: "P".into(),
        vm_size: String::new(),
        slots_hint: None,
    });
    sim.checks = true;
    assert!(joined.effects.is_empty());
    let Reply::Joined { node } = joined.reply else {
        panic!("expected Joined, got {:?}", joined.reply)
    };
    sim.provisioned.push(node.clone());
    assert_eq!(sim.pool_view("p").target_dedicated_nodes, 1);
    assert_eq!(sim.node_view(&node).vm_size, "standard_d2s_v3");
    sim.connect(&node);
    assert_eq!(sim.node_of("j", "t1"), node);
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);
    assert!(matches!(
        sim.refused(Input::JoinNode {
            pool: "nope".into(),
            vm_size: String::new(),
            slots_hint: None
        }),
        CoreError::PoolNotFound(_)
    ));
}

/// A joined node is `creating` until its agent connects; like any node being created it makes
/// the pool `resizing` meanwhile.
#[test]
fn a_joining_node_makes_the_pool_resizing_until_it_connects() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 0, 1))));
    sim.checks = false;
    sim.ok(Input::JoinNode {
        pool: "p".into(),
        vm_size: String::new(),
        slots_hint: None,
    });
    assert_eq!(
        sim.pool_view("p").allocation_state,
        AllocationState::Resizing
    );
}
