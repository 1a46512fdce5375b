//! Applications: Azure's `GET /applications[/{id}]`, and openbatch's own management
//! operations under `/openbatch/applications` (Azure keeps those in its management plane):
//!
//! * `PUT /openbatch/applications/{id}/versions/{version}[?displayName=...]`, the zip file as
//!   the body: the package is streamed to the auto-storage first, then recorded; an upload
//!   that fails leaves nothing behind. Uploading an existing version replaces it.
//! * `GET /openbatch/applications[/{id}]`: versions with sizes, digests and the default.
//! * `PATCH /openbatch/applications/{id}` `{"defaultVersion": "2", "displayName": "..."}`.
//! * `DELETE /openbatch/applications/{id}[/versions/{version}]`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openbatch_api::error::{codes, ApiError};
use openbatch_api::models::ApplicationUpdate;
use openbatch_core::{id_key, valid_id, valid_version, CoreError, Input, PackageUpload, Reply};

use super::{empty, json_response, parse_body, ApiResult, Ctx, S};
use crate::apps::UploadError;

/// `GET /applications`, in id order, paged with `$skiptoken` (the last id of a page).
pub(crate) async fn list(State(st): S, ctx: Ctx) -> ApiResult {
    let limit = ctx.max_results()?;
    let after = ctx.q("$skiptoken").map(id_key);
    let all = st.engine.read().applications();
    let mut items: Vec<_> = all
        .into_iter()
        .filter(|a| after.as_ref().is_none_or(|k| id_key(&a.id) > *k))
        .take(limit + 1)
        .collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|a| a.id.clone()).unwrap_or_default()
    });
    Ok(ctx.list_body(items, next, "applications"))
}

/// `GET /applications/{id}`.
pub(crate) async fn get(State(st): S, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let app = st
        .engine
        .read()
        .application(&id)
        .ok_or_else(|| ApiError::from(CoreError::ApplicationNotFound(id)))?;
    ctx.entity_body(&app)
}

pub(crate) async fn list_details(State(st): S, ctx: Ctx) -> ApiResult {
    let apps = st.engine.read().application_details();
    Ok(ctx.list_body(apps, None, "openbatch.applications"))
}

pub(crate) async fn get_details(State(st): S, Path(id): Path<String>) -> ApiResult {
    let app = st
        .engine
        .read()
        .application_detail(&id)
        .ok_or_else(|| ApiError::from(CoreError::ApplicationNotFound(id)))?;
    Ok(json_response(StatusCode::OK, &app))
}

/// `PUT /openbatch/applications/{id}/versions/{version}`: 201 with the application.
pub(crate) async fn upload(
    State(st): S,
    ctx: Ctx,
    Path((id, version)): Path<(String, String)>,
    body: Body,
) -> ApiResult {
    if !valid_id(&id) {
        return Err(ApiError::from(CoreError::invalid(
            "applicationId",
            &id,
            "an application id has 1 to 64 letters, digits, hyphens and underscores",
        ))
        .into());
    }
    if !valid_version(&version) {
        return Err(ApiError::from(CoreError::invalid(
            "version",
            &version,
            "a version has 1 to 64 letters, digits, hyphens, underscores and periods",
        ))
        .into());
    }
    let display_name = ctx.q("displayname").map(str::to_string);
    let stored = st
        .storage
        .store_package(&id_key(&id), &version, body.into_data_stream())
        .await
        .map_err(|e| match e {
            UploadError::NotZip => ApiError::new(
                400,
                codes::INVALID_REQUEST_BODY,
                "An application package must be a zip file.",
            ),
            UploadError::Storage(e) => ApiError::new(
                500,
                codes::INTERNAL_ERROR,
                format!("The package could not be stored in the auto-storage: {e}"),
            ),
        })?;
    let blob = stored.blob.clone();
    let applied = st
        .engine
        .submit(Input::PutApplicationPackage(PackageUpload {
            application_id: id.clone(),
            version,
            display_name,
            blob: stored.blob,
            sha256: stored.sha256,
            size: stored.size,
        }))
        .await;
    let applied = match applied {
        Ok(a) => a,
        Err(e) => {
            st.storage.delete_packages(&[blob]).await;
            return Err(e.into());
        }
    };
    if let Reply::BlobsReleased(old) = applied.reply {
        st.storage.delete_packages(&old).await;
    }
    let app = st.engine.read().application_detail(&id);
    Ok(json_response(StatusCode::CREATED, &app))
}

pub(crate) async fn update(State(st): S, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let update: ApplicationUpdate = parse_body(&body)?;
    st.engine
        .submit(Input::UpdateApplication {
            application_id: id.clone(),
            update,
        })
        .await?;
    let app = st.engine.read().application_detail(&id);
    Ok(json_response(StatusCode::OK, &app))
}

pub(crate) async fn delete(State(st): S, Path(id): Path<String>) -> ApiResult {
    remove(st, id, None).await
}

pub(crate) async fn delete_version(
    State(st): S,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult {
    remove(st, id, Some(version)).await
}

async fn remove(
    st: std::sync::Arc<crate::server::AppState>,
    id: String,
    version: Option<String>,
) -> ApiResult {
    let applied = st
        .engine
        .submit(Input::DeleteApplicationPackage {
            application_id: id,
            version,
        })
        .await?;
    if let Reply::BlobsReleased(blobs) = applied.reply {
        st.storage.delete_packages(&blobs).await;
    }
    Ok(empty(StatusCode::OK))
}
