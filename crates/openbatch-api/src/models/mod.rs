//! Request and response bodies of the Azure Batch REST API (2025-06-01 shapes).
//!
//! Property names are exactly the wire's (camelCase, with its odd spellings such as
//! `nodeAgentSKUId` and `eTag`). Nested objects that openbatch stores and reports back but does
//! not interpret (network configuration, mounts, containers, user accounts) are kept as raw
//! JSON values so that they round-trip unchanged.

mod application;
mod common;
mod explain;
mod file;
mod job;
mod jobtasks;
mod node;
mod ops;
mod pool;
mod schedule;
mod subtask;
mod task;

pub use application::*;
pub use common::*;
pub use explain::*;
pub use file::*;
pub use job::*;
pub use jobtasks::*;
pub use node::*;
pub use ops::*;
pub use pool::*;
pub use schedule::*;
pub use subtask::*;
pub use task::*;

use serde::{Deserialize, Serialize};

/// A list response: `{"value": [...], "odata.nextLink": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse<T> {
    #[serde(
        rename = "odata.metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_metadata: Option<String>,
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(
        rename = "odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
}
