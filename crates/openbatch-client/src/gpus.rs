//! openbatch's node GPU extension: `GET /openbatch/pools/{pool}/nodes/{node}/gpus`.

use reqwest::Method;
use serde::{Deserialize, Serialize};

pub use openbatch_api::agent::GpuInfo;

use crate::request::Seg::{Lit, Val};
use crate::{Client, ClientError, NO_BODY};

/// The GPUs a node's tasks see, and where the server learned them: `agent` (the node said so
/// when it connected), `provider` (the local provider's assignment, before the agent
/// connected) or `none`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeGpus {
    pub node_id: String,
    pub source: String,
    #[serde(default)]
    pub gpus: Vec<GpuInfo>,
}

impl Client {
    /// `GET /openbatch/pools/{pool}/nodes/{node}/gpus`.
    pub async fn node_gpus(&self, pool_id: &str, node_id: &str) -> Result<NodeGpus, ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("pools"),
                Val("pool id", pool_id),
                Lit("nodes"),
                Val("node id", node_id),
                Lit("gpus"),
            ],
            &[],
        )?;
        self.call_json(Method::GET, url, NO_BODY).await
    }
}
