//! openbatch extensions: join tokens for `openbatch node join`, and the agent endpoint.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openbatch_api::error::{codes, ApiError};
use serde::{Deserialize, Serialize};

use super::{empty, json_response, ApiResult, S};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateToken {
    #[serde(default)]
    description: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    id: String,
    token: String,
    created: chrono::DateTime<chrono::Utc>,
}

fn internal(e: anyhow::Error) -> super::AppError {
    ApiError::new(500, codes::INTERNAL_ERROR, format!("{e:#}")).into()
}

/// `POST /openbatch/jointokens` → `{"id", "token", "created"}`; the token is shown once.
pub(crate) async fn create(State(st): S, body: Bytes) -> ApiResult {
    let req: CreateToken = if body.is_empty() {
        CreateToken::default()
    } else {
        super::parse_body(&body)?
    };
    let (info, token) = st.tokens.create(req.description).map_err(internal)?;
    Ok(json_response(
        StatusCode::CREATED,
        &Created {
            id: info.id,
            token,
            created: info.created,
        },
    ))
}

pub(crate) async fn list(State(st): S) -> ApiResult {
    let tokens = st.tokens.list().map_err(internal)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "value": tokens }),
    ))
}

pub(crate) async fn revoke(State(st): S, Path(id): Path<String>) -> ApiResult {
    if st.tokens.revoke(&id).map_err(internal)? {
        Ok(empty(StatusCode::OK))
    } else {
        Err(ApiError::new(
            404,
            codes::RESOURCE_NOT_FOUND,
            "The specified join token does not exist.",
        )
        .into())
    }
}

/// `GET /agent/v1/connect`: the agent's WebSocket, authenticated by its join token.
pub(crate) async fn agent_connect(
    State(st): S,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(token) = headers
        .get(openbatch_api::agent::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        tracing::warn!(%peer, "a node agent connected without a join token; refused");
        return super::AppError(ApiError::new(
            401,
            codes::AUTHENTICATION_FAILED,
            "A node agent must present a join token.",
        ))
        .into_response();
    };
    ws.max_message_size(64 << 20)
        .on_upgrade(move |socket| crate::agents::serve_agent(st, socket, token, peer))
}
