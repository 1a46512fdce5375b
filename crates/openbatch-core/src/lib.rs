//! The brain of openbatch, sans-IO.
//!
//! [`Core`] holds pools, nodes, jobs and tasks and their state machines, and the scheduler
//! that places tasks on node slots. It takes [`Input`]s (user commands from the API, events
//! from nodes and providers, clock ticks) with an explicit `now`, mutates its state and
//! returns an [`Applied`]: the reply for the caller and the [`Effect`]s for the shell to carry
//! out (provision a node, run a task there, kill a run, remove a node).
//!
//! Because `apply` is a pure function of (state, input, now), the shell makes the core durable
//! by journaling every input that changed something and replaying the journal after a restart:
//! the same inputs give the same state, the same node ids, the same placements.
//!
//! Not for: sockets, files, processes, the clock, the wire JSON of responses' headers. The
//! request and response *bodies* are the `openbatch-api` models, which the core stores as the
//! user's specification and renders back in views.

mod allocation;
mod apps;
mod barrier;
mod cleanup;
mod cond;
mod deps;
mod error;
mod exits;
mod explain;
mod gang;
mod input;
mod jobs;
mod jobtasks;
mod kept_logs;
mod nodes;
pub(crate) mod ops;
mod pools;
mod preempt;
mod priority;
mod sched;
mod schedules;
mod state;
mod tally;
mod tasks;
mod view;

pub use apps::{valid_version, PackageUpload, MAX_VERSIONS};
pub use cond::{Precondition, Target, Verdict};
pub use error::CoreError;
pub use input::{Applied, Effect, Input, NodeHello, Reply, RunResult, RunSpec};
pub use ops::{AutoscalePool, EVENTS_METADATA};
pub use state::{Core, Limits, RunId, TaskLocation};
pub use tally::{PoolGauges, PoolTaskTally, TaskEvents, TaskStates};
pub use view::{ListPage, PoolSample, Urls};

/// Azure Batch id rule: letters, digits, hyphens and underscores, 1 to 64 characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Ids are case-preserving and case-insensitive in Azure Batch: maps are keyed by this.
pub fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}
