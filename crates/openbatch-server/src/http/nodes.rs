//! `/pools/{pool}/nodes`: list and get.

use axum::extract::{Path, State};

use super::odata::{filter, keep, NODE_PROPS};
use super::{ApiResult, Ctx, S};

pub(crate) async fn list(State(st): S, ctx: Ctx, Path(pool): Path<String>) -> ApiResult {
    let f = filter(&ctx, NODE_PROPS)?;
    let limit = ctx.max_results()?;
    let page =
        st.engine
            .read()
            .list_nodes(&pool, ctx.q("$skiptoken"), limit, &ctx.urls(), &keep(&f))?;
    Ok(ctx.list_body(page.items, page.next, "nodes"))
}

pub(crate) async fn get(
    State(st): S,
    ctx: Ctx,
    Path((pool, node)): Path<(String, String)>,
) -> ApiResult {
    let n = st.engine.read().node(&pool, &node, &ctx.urls())?;
    ctx.entity_body(&n)
}
