//! The journal of a simulation, its replay, and snapshots.

use chrono::{DateTime, Utc};
use openbatch_core::{Core, Effect, Input};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{urls, Sim};

/// One applied input, as a shell would journal it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub input: Input,
    pub now: DateTime<Utc>,
    pub changed: bool,
    pub effects: Vec<Effect>,
}

impl Sim {
    pub fn entries(&self) -> Vec<Entry> {
        self.journal
            .iter()
            .map(|s| serde_json::from_str(s).expect("journal entries deserialize"))
            .collect()
    }
}

/// Everything a client can see of a core, as JSON: pools, their nodes, jobs, their tasks and
/// task counts.
pub fn render_all(core: &Core) -> Value {
    let u = urls();
    let pools = core.list_pools(None, usize::MAX, &u, &|_| true).items;
    let nodes: Vec<Value> = pools
        .iter()
        .map(|p| {
            json!(
                core.list_nodes(&p.id, None, usize::MAX, &u, &|_| true)
                    .unwrap()
                    .items
            )
        })
        .collect();
    let jobs = core.list_jobs(None, usize::MAX, &u, &|_| true).items;
    let tasks: Vec<Value> = jobs
        .iter()
        .map(|j| {
            json!({
                "tasks": core.list_tasks(&j.id, None, usize::MAX, &u, &|_| true).unwrap().items,
                "counts": core.task_counts(&j.id).unwrap(),
            })
        })
        .collect();
    json!({"pools": pools, "nodes": nodes, "jobs": jobs, "tasks": tasks})
}

/// Apply journal entries to `core`, asserting each asks for exactly what it asked for first.
pub fn replay_into(core: &mut Core, entries: &[Entry]) {
    for (i, e) in entries.iter().enumerate() {
        let applied = core
            .apply(e.input.clone(), e.now)
            .unwrap_or_else(|err| panic!("entry {i} ({:?}) refused on replay: {err}", e.input));
        assert_eq!(
            applied.effects, e.effects,
            "entry {i} ({:?}) asked for different effects on replay",
            e.input
        );
        assert_eq!(applied.changed, e.changed, "entry {i}: changed differs");
    }
}

/// A snapshot round trip, as the store does it: serialize, load, rebuild the indexes.
pub fn snapshot(core: &Core) -> Core {
    let text = serde_json::to_string(core).expect("core serializes");
    let mut back: Core = serde_json::from_str(&text).expect("snapshot deserializes");
    back.rebuild_indexes();
    back
}
