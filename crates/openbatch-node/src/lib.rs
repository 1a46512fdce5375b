//! The openbatch node agent.
//!
//! It dials out to the server over one long-lived WebSocket connection, authenticates with a
//! join token, heartbeats, prepares the Azure Batch directory layout, stages resource files,
//! runs start tasks and tasks as real processes, captures `stdout.txt`/`stderr.txt`, enforces
//! wall-clock limits and reports results. It never decides placement: it runs what it is told.

pub mod agent;
mod cleanup;
mod files;
pub mod gpu;
mod metrics;
pub mod runner;

pub use agent::{run_agent, AgentOptions, AGENT_VERSION};
