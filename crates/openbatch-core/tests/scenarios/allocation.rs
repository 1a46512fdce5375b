//! Nodes a provider cannot allocate (`Input::NodeAllocationFailed`, e.g. too few free GPUs on
//! the local provider): Azure ends such a resize `steady` with fewer nodes than the target and
//! an `AllocationFailed` entry in the pool's `resizeErrors`.

use openbatch_api::models::{AllocationState, PoolResize, ResizeError};
use openbatch_core::{Core, Effect, Input, Limits};
use serde_json::json;

use crate::common::*;

fn resize(id: &str, dedicated: i32) -> Input {
    Input::ResizePool {
        id: id.into(),
        resize: serde_json::from_value::<PoolResize>(json!({"targetDedicatedNodes": dedicated}))
            .unwrap(),
    }
}

fn failed(node: &str, message: &str) -> Input {
    Input::NodeAllocationFailed {
        node: node.into(),
        error: ResizeError {
            code: Some("AllocationFailed".into()),
            message: Some(message.into()),
            values: Vec::new(),
        },
    }
}

fn provisioned(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|fx| match fx {
            Effect::ProvisionNode { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_that_cannot_be_allocated_is_dropped_and_the_resize_ends_with_an_error() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 1, 1))));
    let first = sim.pending();
    sim.connect(&first[0]);
    assert_eq!(sim.pool_view("p").allocation_state, AllocationState::Steady);

    let asked = sim.ok(resize("p", 3));
    let new = provisioned(&asked.effects);
    assert_eq!(new.len(), 2);
    // The provider gets a machine for the first, not for the second.
    sim.connect(&new[0]);
    let applied = sim.ok(failed(&new[1], "no free GPU"));
    assert!(applied.changed);
    assert!(
        provisioned(&applied.effects).is_empty(),
        "a failed allocation is not retried by itself: {:?}",
        applied.effects
    );
    let p = sim.pool_view("p");
    assert_eq!(p.allocation_state, AllocationState::Steady);
    assert_eq!(
        (p.target_dedicated_nodes, p.current_dedicated_nodes),
        (3, 2)
    );
    assert_eq!(p.resize_errors.len(), 1);
    assert_eq!(p.resize_errors[0].code.as_deref(), Some("AllocationFailed"));
    assert_eq!(sim.node_states("p").len(), 2);

    // A second failure of the same resize does not add a second entry; one for a node that
    // is already gone changes nothing.
    assert!(!sim.ok(failed(&new[1], "again")).changed);

    // Losing a node while short does not bring a replacement either...
    sim.lose(&new[0]);
    assert!(provisioned(&sim.last).is_empty());
    assert_eq!(sim.node_states("p").len(), 1);
    // ...but a new resize clears the errors and tries again.
    let again = sim.ok(resize("p", 3));
    assert_eq!(provisioned(&again.effects).len(), 2);
    assert!(sim.pool_view("p").resize_errors.is_empty());
}

#[test]
fn allocation_failures_replay_and_survive_a_snapshot() {
    let mut sim = Sim::new();
    sim.ok(Input::CreatePool(Box::new(simple_pool("p", 2, 1))));
    let nodes = sim.pending();
    sim.connect(&nodes[0]);
    sim.ok(failed(&nodes[1], "no free GPU"));
    let want = render_all(&sim.core);
    assert_eq!(
        want["pools"][0]["resizeErrors"][0]["message"],
        json!("no free GPU")
    );

    let mut replayed = Core::new(Limits::default());
    replay_into(&mut replayed, &sim.entries());
    assert_eq!(render_all(&replayed), want);
    let restored = snapshot(&sim.core);
    assert_eq!(render_all(&restored), want);
}
