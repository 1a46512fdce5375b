//! `GET /openbatch/pools/{pool}/nodes/{node}/gpus`: the GPUs a node's tasks see (an openbatch
//! extension behind `openbatch node show`; Azure's node model has no GPU field).
//!
//! The answer is what the node's agent reported when it last connected; before that, the
//! local provider's assignment. `source` says which (`agent`, `provider`), or `none`.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{json_response, ApiResult, Ctx, S};

pub(crate) async fn node_gpus(
    State(st): S,
    ctx: Ctx,
    Path((pool, node)): Path<(String, String)>,
) -> ApiResult {
    // 404 PoolNotFound / NodeNotFound as for `GET /pools/{pool}/nodes/{node}`.
    let n = st.engine.read().node(&pool, &node, &ctx.urls())?;
    let (source, gpus) = match st.agents.gpus_of(&n.id) {
        Some(g) => ("agent", g),
        None => {
            let g = st.provider.gpus_of(&n.id);
            (if g.is_empty() { "none" } else { "provider" }, g)
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "nodeId": n.id, "source": source, "gpus": gpus }),
    ))
}
