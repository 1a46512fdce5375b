//! The openbatch control plane's I/O shell.
//!
//! Around the sans-IO core it puts: the HTTP API (axum) with Shared Key authentication, the
//! journal (group commit into SQLite), the node-agent protocol endpoint, the local node
//! provider, and the clock. It moves bytes and carries out the core's effects; every decision
//! about pools, jobs, tasks and placement is the core's.

mod account;
mod agents;
mod apps;
mod autoscale;
mod config;
mod engine;
mod gpus;
mod http;
mod logs;
mod metrics;
mod preemption;
mod provider;
mod server;
mod storage;
mod tokens;
pub mod vmsizes;

pub use account::{read_credentials, Credentials};
pub use config::{ServerConfig, DEFAULT_LISTEN};
pub use gpus::{GpuMode, LocalConfig};
pub use metrics::{MetricsAccess, MetricsConfig};
pub use server::{start, ServerHandle};
