//! The REST API: the Azure Batch data-plane operations, Shared Key authentication, and the
//! openbatch extensions under `/openbatch/`.

mod apps;
mod autoscale;
mod dashboard;
mod explain;
mod files;
mod follow;
mod gpus;
mod jobs;
mod jobtasks;
mod nodes;
mod odata;
mod ops;
mod pools;
mod schedules;
mod storage;
mod storagesas;
mod subtasks;
mod tasks;
mod tokens;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use openbatch_api::error::{codes, ApiError};
use openbatch_core::{CoreError, Urls};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::server::AppState;

/// Azure Batch's limit on a request body (a task collection of 100 tasks must fit).
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// `maxresults` default and maximum for lists.
pub(crate) const MAX_RESULTS: usize = 1000;

pub(crate) type S = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/pools", post(pools::create).get(pools::list))
        .route(
            "/pools/{pool}",
            get(pools::get)
                .head(pools::exists)
                .delete(pools::delete)
                .patch(ops::update_pool),
        )
        .route("/pools/{pool}/resize", post(pools::resize))
        .route(
            "/pools/{pool}/updateproperties",
            post(ops::replace_pool_properties),
        )
        .route("/pools/{pool}/stopresize", post(ops::stop_resize))
        .route("/pools/{pool}/enableautoscale", post(autoscale::enable))
        .route("/pools/{pool}/disableautoscale", post(autoscale::disable))
        .route("/pools/{pool}/evaluateautoscale", post(autoscale::evaluate))
        .route(
            "/openbatch/pools/{pool}/autoscalehistory",
            get(autoscale::history),
        )
        .route("/pools/{pool}/removenodes", post(ops::remove_nodes))
        .route(
            "/pools/{pool}/nodes/{node}/disablescheduling",
            post(ops::disable_scheduling),
        )
        .route(
            "/pools/{pool}/nodes/{node}/enablescheduling",
            post(ops::enable_scheduling),
        )
        .route("/pools/{pool}/nodes/{node}/reboot", post(ops::reboot_node))
        .route(
            "/openbatch/pools/{pool}/nodes/{node}/preempt",
            post(ops::preempt_node),
        )
        .route(
            "/openbatch/pools/{pool}/nodes/{node}/gpus",
            get(gpus::node_gpus),
        )
        .route(
            "/pools/{pool}/nodes/{node}/reimage",
            post(ops::reimage_node),
        )
        .route("/supportedimages", get(ops::supported_images))
        .route("/nodecounts", get(ops::node_counts))
        .route("/applications", get(apps::list))
        .route("/applications/{app}", get(apps::get))
        .route("/openbatch/applications", get(apps::list_details))
        .route(
            "/openbatch/applications/{app}",
            get(apps::get_details)
                .patch(apps::update)
                .delete(apps::delete),
        )
        .route(
            "/openbatch/applications/{app}/versions/{version}",
            axum::routing::put(apps::upload).delete(apps::delete_version),
        )
        .route("/pools/{pool}/nodes", get(nodes::list))
        .route("/pools/{pool}/nodes/{node}", get(nodes::get))
        .route(
            "/pools/{pool}/nodes/{node}/files",
            get(files::list_node_files),
        )
        .route(
            "/pools/{pool}/nodes/{node}/files/{*path}",
            get(files::get_node_file)
                .head(files::head_node_file)
                .delete(files::delete_node_file),
        )
        .route("/jobs", post(jobs::create).get(jobs::list))
        .route(
            "/jobs/{job}",
            get(jobs::get)
                .delete(jobs::delete)
                .patch(ops::patch_job)
                .put(ops::put_job),
        )
        .route("/jobs/{job}/disable", post(ops::disable_job))
        .route("/jobs/{job}/enable", post(ops::enable_job))
        .route("/jobs/{job}/terminate", post(jobs::terminate))
        .route("/jobs/{job}/taskcounts", get(jobs::task_counts))
        .route(
            "/jobs/{job}/jobpreparationandreleasetaskstatus",
            get(jobtasks::status),
        )
        .route("/jobs/{job}/tasks", post(tasks::create).get(tasks::list))
        .route("/jobs/{job}/addtaskcollection", post(tasks::add_collection))
        .route(
            "/jobs/{job}/tasks/{task}",
            get(tasks::get).delete(tasks::delete).put(ops::put_task),
        )
        .route("/jobs/{job}/tasks/{task}/terminate", post(tasks::terminate))
        .route("/jobs/{job}/tasks/{task}/subtasksinfo", get(subtasks::list))
        .route(
            "/openbatch/jobs/{job}/tasks/{task}/explain",
            get(explain::explain),
        )
        .route(
            "/jobs/{job}/tasks/{task}/reactivate",
            post(ops::reactivate_task),
        )
        .route(
            "/jobs/{job}/tasks/{task}/files",
            get(files::list_task_files),
        )
        .route(
            "/jobs/{job}/tasks/{task}/files/{*path}",
            get(files::get_task_file)
                .head(files::head_task_file)
                .delete(files::delete_task_file),
        )
        .route("/openbatch/storagesas", post(storagesas::create))
        .route(
            "/jobschedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/jobschedules/{id}",
            get(schedules::get)
                .head(schedules::exists)
                .delete(schedules::delete)
                .patch(schedules::patch)
                .put(schedules::put),
        )
        .route("/jobschedules/{id}/disable", post(schedules::disable))
        .route("/jobschedules/{id}/enable", post(schedules::enable))
        .route("/jobschedules/{id}/terminate", post(schedules::terminate))
        .route("/jobschedules/{id}/jobs", get(schedules::list_jobs))
        .route(
            "/openbatch/jointokens",
            post(tokens::create).get(tokens::list),
        )
        .route(
            "/openbatch/jointokens/{id}",
            axum::routing::delete(tokens::revoke),
        )
        .fallback(unsupported)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/agent/v1/connect", get(tokens::agent_connect))
        .route("/openbatch/health", get(|| async { "ok" }))
        // Prometheus; not under Shared Key unless `[metrics] access` says so.
        .route("/metrics", get(crate::metrics::serve))
        // Authorized by signed URLs, not Shared Key: see http/storage.rs.
        .route(
            "/openbatch/storage/{container}",
            axum::routing::any(storage::container_op),
        )
        .route(
            "/openbatch/storage/{container}/{*blob}",
            axum::routing::any(storage::blob_op),
        )
        // The web dashboard's static files: public, like the page of a sign-in form.
        .merge(dashboard::routes())
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::http::track,
        ))
        .layer(middleware::from_fn(request_ids))
        .with_state(state)
}

async fn unsupported(req: Request) -> AppError {
    AppError(ApiError::new(
        400,
        codes::UNSUPPORTED_OPERATION,
        format!(
            "The operation {} {} is not supported by this openbatch server. See README.md, \"Not yet supported\".",
            req.method(),
            req.uri().path()
        ),
    ))
}

/// An error answered with the Azure Batch error body.
#[derive(Debug)]
pub(crate) struct AppError(pub(crate) ApiError);

impl From<ApiError> for AppError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<CoreError> for AppError {
    fn from(e: CoreError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = self
            .0
            .to_body(&request_id, &openbatch_api::time::iso8601(Utc::now()));
        let mut resp = json_response(
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &body,
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("request-id", v);
        }
        resp
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, AppError>;

pub(crate) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json;odata=minimalmetadata"),
            );
            resp
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A response with no body and the given status.
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// ETag / Last-Modified / DataServiceId headers of an entity.
pub(crate) fn entity_headers(
    resp: &mut Response,
    etag: &str,
    last_modified: chrono::DateTime<Utc>,
    url: Option<&str>,
) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&openbatch_api::time::rfc1123(last_modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(url) = url {
        if let Ok(v) = HeaderValue::from_str(url) {
            h.insert("DataServiceId", v.clone());
            h.insert(header::LOCATION, v);
        }
    }
}

/// `request-id` on every response; `client-request-id` echoed when asked.
async fn request_ids(req: Request, next: Next) -> Response {
    let echo = req
        .headers()
        .get("return-client-request-id")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let client_id = req.headers().get("client-request-id").cloned();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if !h.contains_key("request-id") {
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            h.insert("request-id", v);
        }
    }
    h.insert("DataServiceVersion", HeaderValue::from_static("3.0"));
    if echo {
        if let Some(id) = client_id {
            h.insert("client-request-id", id);
        }
    }
    resp
}

/// Shared Key authentication of every API request.
async fn authenticate(State(state): S, req: Request, next: Next) -> Response {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let to_sign = openbatch_api::auth::RequestToSign {
        method: req.method().as_str(),
        raw_path: req.uri().path(),
        raw_query: req.uri().query(),
        headers: &pairs,
    };
    let verdict = openbatch_api::auth::verify(
        &to_sign,
        &state.account_name,
        &[state.account_key.as_str()],
        Utc::now(),
        openbatch_api::auth::DEFAULT_MAX_SKEW,
    );
    match verdict {
        Ok(()) => match check_api_version(req.uri().query()) {
            Ok(()) => next.run(req).await,
            Err(e) => AppError(e).into_response(),
        },
        Err(e) => {
            state.metrics.auth_failed();
            tracing::info!(method = %req.method(), path = %req.uri().path(), reason = %e.detail(), "request refused: authentication failed");
            let status = e.http_status();
            let message = if status == 401 {
                "The request is not authenticated: it has no Authorization header. Sign it with Shared Key (account name and key from credentials.json)."
            } else {
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."
            };
            AppError(
                ApiError::new(status, codes::AUTHENTICATION_FAILED, message)
                    .with_value("AuthenticationErrorDetail", e.detail()),
            )
            .into_response()
        }
    }
}

/// What every handler needs from the request: the base URL for `url` properties and
/// `odata.nextLink`, and the query parameters (names case-insensitive).
pub(crate) struct Ctx {
    pub(crate) base: String,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
}

impl<St: Send + Sync> FromRequestParts<St> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let mut query = HashMap::new();
        if let Some(q) = parts.uri.query() {
            for (k, v) in form_urlencoded_pairs(q) {
                query.entry(k.to_ascii_lowercase()).or_insert(v);
            }
        }
        Ok(Ctx {
            base: format!("http://{host}"),
            path: parts.uri.path().to_string(),
            query,
            headers: parts.headers.clone(),
        })
    }
}

fn form_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

pub(crate) fn decode_component(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Everything but RFC 3986's unreserved characters is escaped (so `/` in a file path becomes
/// `%2F`, as the SDK sends it, while `stdout.txt` stays as it is).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// The newest data-plane api-version openbatch speaks; older ones use the same paths.
const NEWEST_API_VERSION: &str = "2025-06-01";

/// `api-version` is required, and must be a version Azure Batch has had: `YYYY-MM-DD` with an
/// optional `.N.N` suffix, no newer than [`NEWEST_API_VERSION`].
fn check_api_version(query: Option<&str>) -> Result<(), ApiError> {
    let version = query
        .into_iter()
        .flat_map(form_urlencoded_pairs)
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v);
    let Some(v) = version else {
        return Err(ApiError::new(
            400,
            codes::MISSING_REQUIRED_QUERY_PARAMETER,
            "A query parameter that's mandatory for this request is not specified: api-version.",
        )
        .with_value("QueryParameterName", "api-version"));
    };
    let date = v.split('.').next().unwrap_or("");
    let well_formed = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        && v.split('.')
            .skip(1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed || !("2014-01-01"..=NEWEST_API_VERSION).contains(&date) {
        return Err(ApiError::invalid_query(
            "api-version",
            &v,
            &format!("this server supports api-versions up to {NEWEST_API_VERSION}"),
        ));
    }
    Ok(())
}

impl Ctx {
    /// The request's conditional headers (`If-Match`, `If-None-Match`, `If-Modified-Since`,
    /// `If-Unmodified-Since`).
    pub(crate) fn precondition(&self) -> ApiResult<openbatch_core::Precondition> {
        let text = |name: &str| {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let date = |name: &str| -> ApiResult<Option<chrono::DateTime<Utc>>> {
            match text(name) {
                None => Ok(None),
                Some(v) => openbatch_api::time::parse_rfc1123(&v)
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::new(
                            400,
                            codes::INVALID_HEADER_VALUE,
                            format!(
                                "The value of the {name} header is not an RFC 1123 date: '{v}'"
                            ),
                        )
                        .with_value("HeaderName", name)
                        .into()
                    }),
            }
        };
        Ok(openbatch_core::Precondition {
            if_match: text("if-match"),
            if_none_match: text("if-none-match"),
            if_modified_since: date("if-modified-since")?,
            if_unmodified_since: date("if-unmodified-since")?,
        })
    }

    /// Wrap a mutation in the request's preconditions on `target`, if it has any.
    pub(crate) fn guarded(
        &self,
        target: openbatch_core::Target,
        input: openbatch_core::Input,
    ) -> ApiResult<openbatch_core::Input> {
        let cond = self.precondition()?;
        Ok(if cond.is_empty() {
            input
        } else {
            openbatch_core::Input::Conditional {
                target,
                cond,
                input: Box::new(input),
            }
        })
    }

    /// For a GET/HEAD: `Some(response)` when the preconditions say 304 or 412.
    pub(crate) fn read_guard(
        &self,
        etag: &str,
        last_modified: chrono::DateTime<Utc>,
    ) -> ApiResult<Option<Response>> {
        let cond = self.precondition()?;
        Ok(match cond.evaluate(etag, last_modified, true) {
            openbatch_core::Verdict::Proceed => None,
            openbatch_core::Verdict::NotModified => {
                let mut r = empty(StatusCode::NOT_MODIFIED);
                entity_headers(&mut r, etag, last_modified, None);
                Some(r)
            }
            openbatch_core::Verdict::Failed => {
                return Err(AppError::from(openbatch_core::CoreError::ConditionNotMet))
            }
        })
    }

    pub(crate) fn urls(&self) -> Urls {
        Urls {
            base: self.base.clone(),
        }
    }

    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(|s| s.as_str())
    }

    pub(crate) fn max_results(&self) -> ApiResult<usize> {
        match self.q("maxresults") {
            None => Ok(MAX_RESULTS),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_RESULTS).contains(&n) => Ok(n),
                _ => Err(ApiError::invalid_query(
                    "maxresults",
                    v,
                    "must be an integer between 1 and 1000",
                )
                .into()),
            },
        }
    }

    /// The absolute continuation link: same path and query, with the new `$skiptoken`.
    pub(crate) fn next_link(&self, token: Option<String>) -> Option<String> {
        let token = token?;
        let mut parts: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| k.as_str() != "$skiptoken")
            .map(|(k, v)| {
                let name = if k.starts_with('$') {
                    k.clone()
                } else {
                    encode_component(k)
                };
                format!("{name}={}", encode_component(v))
            })
            .collect();
        parts.sort();
        parts.push(format!("$skiptoken={}", encode_component(&token)));
        Some(format!("{}{}?{}", self.base, self.path, parts.join("&")))
    }

    pub(crate) fn list_body<T: Serialize>(
        &self,
        items: Vec<T>,
        next: Option<String>,
        what: &str,
    ) -> Response {
        let select = match self.select() {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        };
        let value: Vec<serde_json::Value> = items
            .iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .map(|v| project(v, select.as_deref()))
            .collect();
        json_response(
            StatusCode::OK,
            &openbatch_api::models::ListResponse {
                odata_metadata: Some(format!("{}/$metadata#{what}", self.base)),
                value,
                next_link: self.next_link(next),
            },
        )
    }

    /// One entity, with `$select` applied.
    pub(crate) fn entity_body<T: Serialize>(&self, item: &T) -> ApiResult<Response> {
        let select = self.select()?;
        let v = serde_json::to_value(item).map_err(|e| {
            ApiError::new(
                500,
                codes::INTERNAL_ERROR,
                format!("serializing the response: {e}"),
            )
        })?;
        Ok(json_response(
            StatusCode::OK,
            &project(v, select.as_deref()),
        ))
    }

    /// `$select`: the top-level properties to return (a nested path keeps its top-level parent).
    fn select(&self) -> ApiResult<Option<Vec<String>>> {
        match self.q("$select") {
            None => Ok(None),
            Some(text) if text.trim().is_empty() => Ok(None),
            Some(text) => openbatch_api::odata::parse_select(text)
                .map(|names| {
                    Some(
                        names
                            .into_iter()
                            .map(|n| n.split('/').next().unwrap_or_default().to_string())
                            .collect(),
                    )
                })
                .map_err(|e| ApiError::invalid_query("$select", text, &e.to_string()).into()),
        }
    }
}

/// Keep only the selected top-level properties of a JSON object.
fn project(v: serde_json::Value, select: Option<&[String]>) -> serde_json::Value {
    match (v, select) {
        (serde_json::Value::Object(map), Some(names)) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .collect(),
        ),
        (v, _) => v,
    }
}

impl Ctx {}

/// Parse a JSON body into `T`, answering Azure-shaped errors for what is wrong with it.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            413,
            codes::REQUEST_BODY_TOO_LARGE,
            format!(
                "The request body is {} bytes; the limit is {MAX_BODY} bytes.",
                body.len()
            ),
        )
        .into());
    }
    if body.is_empty() {
        return Err(ApiError::new(
            400,
            codes::INVALID_REQUEST_BODY,
            "The request body is empty; a JSON object is required.",
        )
        .into());
    }
    serde_json::from_slice(body).map_err(|e| body_error(&e.to_string()).into())
}

/// Turn a serde error into `MissingRequiredProperty` or `InvalidRequestBody`.
pub(crate) fn body_error(msg: &str) -> ApiError {
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(name) = rest.split('`').next() {
            return ApiError::missing_property(name);
        }
    }
    ApiError::new(
        400,
        codes::INVALID_REQUEST_BODY,
        format!("The request body is not valid: {msg}"),
    )
}
