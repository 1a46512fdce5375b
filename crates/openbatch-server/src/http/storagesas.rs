//! openbatch extension: `POST /openbatch/storagesas` signs a container URL of the account's
//! auto-storage, so that a client holding the account key can upload inputs or read outputs
//! (with the Azure Storage SDKs' `ContainerClient.from_container_url`, or plain HTTP).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use openbatch_api::error::{codes, ApiError};
use serde::{Deserialize, Serialize};

use super::{json_response, ApiResult, S};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SasRequest {
    container: String,
    /// Azure permission letters: `r` read, `c` create, `w` write, `l` list (default `rl`).
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    expiry_time: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SasResponse {
    container_url: String,
    expiry_time: DateTime<Utc>,
}

pub(crate) async fn create(State(st): S, body: Bytes) -> ApiResult {
    let req: SasRequest = super::parse_body(&body)?;
    let permissions = req.permissions.unwrap_or_else(|| "rl".into());
    if permissions.is_empty() || !permissions.chars().all(|c| "rcwl".contains(c)) {
        return Err(ApiError::new(
            400,
            codes::INVALID_PROPERTY_VALUE,
            format!("permissions '{permissions}' may only hold the letters r, c, w and l"),
        )
        .with_value("PropertyName", "permissions")
        .into());
    }
    let now = Utc::now();
    let expiry = req
        .expiry_time
        .unwrap_or_else(|| now + chrono::Duration::hours(24));
    if expiry <= now {
        return Err(ApiError::new(
            400,
            codes::INVALID_PROPERTY_VALUE,
            "expiryTime must be in the future",
        )
        .with_value("PropertyName", "expiryTime")
        .into());
    }
    let url = st
        .storage
        .container_url(&req.container, &permissions, expiry)
        .map_err(|e| {
            ApiError::new(400, codes::INVALID_PROPERTY_VALUE, e.to_string())
                .with_value("PropertyName", "container")
        })?;
    Ok(json_response(
        StatusCode::OK,
        &SasResponse {
            container_url: url,
            expiry_time: expiry,
        },
    ))
}
