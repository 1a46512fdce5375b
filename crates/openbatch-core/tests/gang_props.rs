//! Property test of gang placement: random mixes of multi-instance tasks (1 to 5 nodes, on a
//! pool of 4 nodes that is resized between 0 and 5) and narrow tasks, with node churn (agents
//! disconnecting, lost, removed; a server restart), failures, terminates and deletes.
//!
//! After every input `Sim` checks, besides the core's usual invariants (no over-commit, run ids,
//! counts, completed is terminal, the derived indexes including the empty-node index and the
//! gang reservation): no gang partially started (all its instances in one input, indexes
//! 0..count, each on a node of its own that ran nothing), and no live instance outside a
//! running task's current attempt. At the end the agents and the provider play along with 5
//! nodes until nothing is left: every task has ended (no gang starved or deadlocked), and the
//! journal replays to the same state.
//!
//! `PROPTEST_CASES` raises the number of cases for a soak.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use openbatch_api::models::{NodeState, TaskState};
use openbatch_core::{Core, Input, Limits, RunId};
use proptest::prelude::*;
use serde_json::json;

const JOBS: [&str; 2] = ["j", "k"];
const DEALLOCATION: [&str; 3] = ["requeue", "terminate", "taskcompletion"];

#[derive(Debug, Clone)]
enum Item {
    Narrow(u32),
    Gang(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Add { job: usize, items: Vec<Item> },
    Connect { node: usize, forget_first: bool },
    Finish { run: usize, exit_code: i32 },
    Disconnect { node: usize },
    Lose { node: usize },
    Removed { node: usize },
    Resize { target: i32, option: usize },
    Tick { secs: i64 },
    Terminate { task: usize },
    Delete { task: usize },
    ServerRestarted,
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        1 => (1u32..=2).prop_map(Item::Narrow),
        1 => (1u32..=5).prop_map(Item::Gang),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..JOBS.len(), prop::collection::vec(item(), 1..4))
            .prop_map(|(job, items)| Op::Add { job, items }),
        3 => (any::<usize>(), any::<bool>())
            .prop_map(|(node, forget_first)| Op::Connect { node, forget_first }),
        8 => (any::<usize>(), prop_oneof![4 => Just(0), 1 => Just(1)])
            .prop_map(|(run, exit_code)| Op::Finish { run, exit_code }),
        1 => any::<usize>().prop_map(|node| Op::Disconnect { node }),
        1 => any::<usize>().prop_map(|node| Op::Lose { node }),
        1 => any::<usize>().prop_map(|node| Op::Removed { node }),
        1 => (0i32..=5, 0..DEALLOCATION.len())
            .prop_map(|(target, option)| Op::Resize { target, option }),
        1 => (0i64..90).prop_map(|secs| Op::Tick { secs }),
        1 => any::<usize>().prop_map(|task| Op::Terminate { task }),
        1 => any::<usize>().prop_map(|task| Op::Delete { task }),
        1 => Just(Op::ServerRestarted),
    ]
}

struct World {
    sim: Sim,
    next_task: usize,
    deleted: BTreeSet<(String, String)>,
}

impl World {
    fn new(fill: &str) -> Self {
        let mut sim = Sim::with_limits(Limits {
            node_lost_after: Duration::from_secs(60),
            ..Limits::default()
        });
        sim.ok(Input::CreatePool(Box::new(pool(json!({
            "id": "p", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 4,
            "taskSlotsPerNode": 2, "taskSchedulingPolicy": {"nodeFillType": fill},
        })))));
        sim.ok(Input::CreateJob(Box::new(job(json!({
            "id": "j", "poolInfo": {"poolId": "p"}, "constraints": {"maxTaskRetryCount": 1},
        })))));
        sim.ok(Input::CreateJob(Box::new(job(json!({
            "id": "k", "poolInfo": {"poolId": "p"}, "priority": 5,
        })))));
        Self {
            sim,
            next_task: 0,
            deleted: BTreeSet::new(),
        }
    }

    fn all_tasks(&self) -> Vec<(String, String)> {
        JOBS.iter()
            .flat_map(|j| {
                self.sim
                    .tasks(j)
                    .into_iter()
                    .map(move |t| (j.to_string(), t.id))
            })
            .collect()
    }

    fn step(&mut self, op: &Op) {
        self.sim.advance(1);
        match op {
            Op::Add { job, items } => {
                let first = self.next_task + 1;
                let tasks = items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| {
                        let id = format!("t{}", first + i);
                        match it {
                            Item::Narrow(s) => {
                                task(json!({"id": id, "commandLine": "x", "requiredSlots": s}))
                            }
                            Item::Gang(n) => task(json!({
                                "id": id, "commandLine": "mpirun x",
                                "multiInstanceSettings": {
                                    "numberOfInstances": n, "coordinationCommandLine": "c",
                                },
                            })),
                        }
                    })
                    .collect();
                self.sim.ok(add(JOBS[*job], tasks));
                self.next_task += items.len();
            }
            Op::Connect { node, forget_first } => {
                let Some(node) = pick(&self.sim.pending(), *node) else {
                    return;
                };
                let mut running = self.sim.runs_on(&node);
                if *forget_first && !running.is_empty() {
                    running.remove(0);
                }
                self.sim.hello(&node, running, Vec::new());
            }
            Op::Finish { run, exit_code } => {
                let runs: Vec<RunId> = self
                    .sim
                    .runs
                    .iter()
                    .filter(|(_, r)| self.sim.connected.contains(&r.node))
                    .map(|(id, _)| *id)
                    .collect();
                if let Some(run) = pick(&runs, *run) {
                    self.sim.finish_as_agent(run, *exit_code);
                }
            }
            Op::Disconnect { node } => {
                let connected: Vec<String> = self.sim.connected.iter().cloned().collect();
                if let Some(node) = pick(&connected, *node) {
                    self.sim.disconnect(&node);
                }
            }
            Op::Lose { node } => {
                if let Some(node) = pick(&self.sim.known_nodes(), *node) {
                    self.sim.lose(&node);
                }
            }
            Op::Removed { node } => {
                if let Some(node) = pick(&self.sim.outstanding_removals(), *node) {
                    self.sim.removed(&node);
                }
            }
            Op::Resize { target, option } => {
                self.sim.ok(Input::ResizePool {
                    id: "p".into(),
                    resize: serde_json::from_value(json!({
                        "targetDedicatedNodes": target,
                        "nodeDeallocationOption": DEALLOCATION[*option],
                    }))
                    .unwrap(),
                });
            }
            Op::Tick { secs } => {
                self.sim.advance(*secs);
                self.sim.tick();
            }
            Op::Terminate { task } => {
                if let Some((job, task)) = pick(&self.all_tasks(), *task) {
                    self.sim.ok(Input::TerminateTask { job, task });
                }
            }
            Op::Delete { task } => {
                if let Some((job, task)) = pick(&self.all_tasks(), *task) {
                    self.deleted.insert((job.clone(), task.clone()));
                    self.sim.ok(Input::DeleteTask { job, task });
                }
            }
            Op::ServerRestarted => {
                self.sim.ok(Input::ServerRestarted);
                self.sim.connected.clear();
            }
        }
    }

    /// Agents and provider play along with a pool of 5 nodes (every gang fits) until nothing
    /// is left to do.
    fn settle(&mut self) {
        self.sim.ok(Input::ResizePool {
            id: "p".into(),
            resize: serde_json::from_value(json!({"targetDedicatedNodes": 5})).unwrap(),
        });
        self.sim.settle(|_| {});
    }
}

fn run_case(pack: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(if pack { "pack" } else { "spread" });
    for op in ops {
        w.step(op);
    }
    w.settle();
    // Everything ends: no gang starved or deadlocked, no narrow task starved by a gang.
    for (j, t) in w.all_tasks() {
        prop_assert_eq!(
            w.sim.task_state(&j, &t),
            TaskState::Completed,
            "{}/{}",
            j,
            t
        );
    }
    prop_assert_eq!(w.all_tasks().len() + w.deleted.len(), w.next_task);
    let nodes = w.sim.nodes("p");
    prop_assert_eq!(nodes.len(), 5);
    prop_assert!(nodes.iter().all(|n| n.state == NodeState::Idle));
    // Determinism: the journal rebuilds the same state, reservation included.
    let entries: Vec<Entry> = w.sim.entries().into_iter().filter(|e| e.changed).collect();
    let mut replayed = Core::new(w.sim.core.limits().clone());
    replay_into(&mut replayed, &entries);
    prop_assert_eq!(
        serde_json::to_value(&replayed).unwrap(),
        serde_json::to_value(&w.sim.core).unwrap()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn gangs_start_whole_and_everything_ends(
        pack in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run_case(pack, &ops)?;
    }
}
