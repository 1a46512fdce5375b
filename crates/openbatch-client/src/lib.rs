//! A typed async client of the openbatch REST API, which is the Azure Batch data-plane REST
//! API (2025-06-01).
//!
//! It signs every request with Shared Key exactly as the official Python SDK does (same
//! headers, same string to sign, file paths fully percent-encoded), so what works here works
//! with the SDK and the other way round. It speaks in the wire models of `openbatch-api` and
//! reports the service's errors with their Azure error codes ([`ClientError::Api`]).
//!
//! It is not for policy: it does not retry, poll or wait. Callers (the CLI, tests) decide how
//! long to wait for what.
//!
//! ```no_run
//! # async fn demo() -> Result<(), openbatch_client::ClientError> {
//! let client = openbatch_client::Client::new("http://127.0.0.1:8771", "openbatch", "a2V5")?;
//! for pool in client.list_pools(&Default::default()).await? {
//!     println!("{} {}", pool.id, pool.state);
//! }
//! # Ok(()) }
//! ```

mod apps;
mod error;
mod explain;
mod files;
mod gpus;
mod jobtasks;
mod request;
mod resources;
mod schedules;
mod storage;
mod tokens;

use std::time::Duration;

use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use openbatch_api::models::ListResponse;
use request::{Account, Body, Seg};

pub use error::ClientError;
pub use files::{FileDownload, FileInfo};
pub use gpus::{GpuInfo, NodeGpus};
pub use request::API_VERSION;
pub use storage::StorageSas;
pub use tokens::JoinToken;

/// How long a JSON call may take end to end. File downloads are not bounded by it: a large
/// file legitimately takes longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A service that does not accept a connection in this long is down, not slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A guard against a server whose `odata.nextLink` never ends: at the default page size of
/// 1000 this is ten million items.
const MAX_PAGES: usize = 10_000;

/// How many tasks one `addtaskcollection` request carries: the service's limit.
pub const MAX_TASKS_PER_COLLECTION: usize = 100;

/// Options of a list call.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// An OData `$filter`, e.g. `state eq 'completed'`.
    pub filter: Option<String>,
    /// Items per page (`maxresults`); the service's default is 1000. All pages are read either
    /// way.
    pub max_results: Option<u32>,
}

impl ListOptions {
    pub fn filter(filter: impl Into<String>) -> Self {
        Self {
            filter: Some(filter.into()),
            max_results: None,
        }
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(m) = self.max_results {
            q.push(("maxresults", m.to_string()));
        }
        if let Some(f) = &self.filter {
            q.push(("$filter", f.clone()));
        }
        q
    }
}

/// A client of one Batch account. Cheap to clone; clones share a connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The endpoint without a trailing slash, e.g. `http://127.0.0.1:8771`.
    base: String,
    account: Account,
}

impl Client {
    /// A client of `endpoint` (`http(s)://host:port`, optionally with a path prefix) that signs
    /// as `account_name` with the base64 `account_key`.
    pub fn new(endpoint: &str, account_name: &str, account_key: &str) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(endpoint.trim()).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("an endpoint has no query string or fragment"));
        }
        if account_name.is_empty() {
            return Err(ClientError::InvalidArgument {
                what: "account name",
                value: String::new(),
                reason: "it must not be empty",
            });
        }
        openbatch_api::auth::decode_key(account_key).map_err(|_| ClientError::InvalidKey)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("openbatch-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport {
                url: endpoint.to_owned(),
                source: e,
            })?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            account: Account {
                name: account_name.to_owned(),
                key: account_key.trim().to_owned(),
            },
        })
    }

    /// The endpoint this client talks to, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// The account this client signs as.
    pub fn account_name(&self) -> &str {
        &self.account.name
    }

    fn url(&self, segments: &[Seg<'_>], query: &[(&str, String)]) -> Result<Url, ClientError> {
        request::build_url(&self.base, segments, query)
    }

    /// Signs and sends one request; any non-2xx answer becomes [`ClientError::Api`].
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<Body>,
        extra: &[(&'static str, String)],
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let headers = request::signed_headers(
            &self.account,
            method.as_str(),
            &url,
            body.as_ref(),
            extra,
            chrono::Utc::now(),
            &request_id,
        )?;
        let mut req = self.http.request(method, url.clone());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.body(body.bytes);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let transport = |source| ClientError::Transport {
            url: redact(&url),
            source,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.map_err(transport)?;
        Err(ClientError::from_response(status, &body))
    }

    /// Sends a JSON call (with an optional JSON body) and returns the response.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<Response, ClientError> {
        let body = match body {
            Some(b) => Some(Body {
                bytes: serde_json::to_vec(b).map_err(ClientError::Encode)?,
            }),
            None => None,
        };
        let accept = [("accept", "application/json".to_owned())];
        self.execute(method, url, body, &accept, Some(CALL_TIMEOUT))
            .await
    }

    /// A call whose answer does not matter beyond its status.
    async fn call_no_content(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let resp = self.call(method, url.clone(), body).await?;
        // Drain the body so the connection can be reused; its content is not needed.
        resp.bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: redact(&url),
                source,
            })?;
        Ok(())
    }

    /// A call that answers a JSON object.
    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let resp = self.call(method, url.clone(), body).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                url: redact(&url),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse {
            url: redact(&url),
            detail: format!("the body is not the expected JSON: {e}"),
        })
    }

    /// GETs a list and follows `odata.nextLink` until the last page.
    async fn list_all<T: DeserializeOwned>(&self, first: Url) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            let page: ListResponse<T> = self.call_json(Method::GET, url.clone(), NO_BODY).await?;
            items.extend(page.value);
            pages += 1;
            next = match page.next_link.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(_) if pages >= MAX_PAGES => {
                    return Err(ClientError::InvalidResponse {
                        url: redact(&url),
                        detail: format!("the list did not end after {MAX_PAGES} pages"),
                    })
                }
                Some(link) => Some(self.next_link_url(&url, link)?),
            };
        }
        Ok(items)
    }

    /// The URL of the next page: the link as given when absolute (the service builds it from
    /// the request, keeping the api-version), resolved against the current page otherwise.
    fn next_link_url(&self, current: &Url, link: &str) -> Result<Url, ClientError> {
        let mut url = current
            .join(link)
            .map_err(|e| ClientError::InvalidResponse {
                url: redact(current),
                detail: format!("odata.nextLink '{link}' is not a URL: {e}"),
            })?;
        if !url.query_pairs().any(|(k, _)| k == "api-version") {
            url.query_pairs_mut()
                .append_pair("api-version", API_VERSION);
        }
        Ok(url)
    }
}

/// `None` for calls without a body, typed so that `Option<&impl Serialize>` infers.
const NO_BODY: Option<&()> = None;

/// A URL fit for an error message: without the query string, which may one day carry a secret
/// (a SAS-signed next link), and which never helps the reader.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}
