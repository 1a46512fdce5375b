//! Applications: Azure's `GET /applications[/{id}]`, and openbatch's management operations
//! (`/openbatch/applications`): upload a version's zip, set the default version, delete.

use std::path::Path;

use openbatch_api::models::{Application, ApplicationDetails, ApplicationUpdate};
use reqwest::Method;
use serde::Deserialize;

use crate::request::Seg::{Lit, Val};
use crate::{redact, Client, ClientError, NO_BODY};

#[derive(Deserialize)]
struct DetailsList {
    #[serde(default)]
    value: Vec<ApplicationDetails>,
}

/// Bytes read from the package file per chunk of the upload.
const CHUNK: usize = 256 * 1024;

impl Client {
    /// `GET /applications`: every application with a version, all pages.
    pub async fn list_applications(&self) -> Result<Vec<Application>, ClientError> {
        let url = self.url(&[Lit("applications")], &[])?;
        self.list_all(url).await
    }

    /// `GET /applications/{id}`.
    pub async fn get_application(&self, id: &str) -> Result<Application, ClientError> {
        let url = self.url(&[Lit("applications"), Val("application id", id)], &[])?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `GET /openbatch/applications`: each application with its packages and default version.
    pub async fn list_application_details(&self) -> Result<Vec<ApplicationDetails>, ClientError> {
        let url = self.url(&[Lit("openbatch"), Lit("applications")], &[])?;
        let list: DetailsList = self.call_json(Method::GET, url, NO_BODY).await?;
        Ok(list.value)
    }

    /// `GET /openbatch/applications/{id}`.
    pub async fn get_application_details(
        &self,
        id: &str,
    ) -> Result<ApplicationDetails, ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("applications"),
                Val("application id", id),
            ],
            &[],
        )?;
        self.call_json(Method::GET, url, NO_BODY).await
    }

    /// `PUT /openbatch/applications/{id}/versions/{version}` with the zip file streamed as
    /// the body (201): the application as it is afterwards. An existing version is replaced.
    pub async fn upload_application_package(
        &self,
        id: &str,
        version: &str,
        display_name: Option<&str>,
        zip: &Path,
    ) -> Result<ApplicationDetails, ClientError> {
        let query: Vec<(&str, String)> = display_name
            .map(|n| ("displayName", n.to_string()))
            .into_iter()
            .collect();
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("applications"),
                Val("application id", id),
                Lit("versions"),
                Val("version", version),
            ],
            &query,
        )?;
        let io = |e: std::io::Error| ClientError::InvalidArgument {
            what: "package file",
            value: zip.display().to_string(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "it does not exist"
            } else {
                "it cannot be read"
            },
        };
        let file = tokio::fs::File::open(zip).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        let stream = futures_util::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let request_id = uuid::Uuid::new_v4().to_string();
        let headers = crate::request::signed_headers_for(
            &self.account,
            "PUT",
            &url,
            Some(("application/zip", len)),
            &[("accept", "application/json".to_owned())],
            chrono::Utc::now(),
            &request_id,
        )?;
        let mut req = self.http.put(url.clone());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let transport = |source| ClientError::Transport {
            url: redact(&url),
            source,
        };
        let resp = req
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ClientError::from_response(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::InvalidResponse {
            url: redact(&url),
            detail: format!("the body is not the expected JSON: {e}"),
        })
    }

    /// `PATCH /openbatch/applications/{id}`: the display name or the default version (an
    /// empty `default_version` clears it).
    pub async fn update_application(
        &self,
        id: &str,
        update: &ApplicationUpdate,
    ) -> Result<ApplicationDetails, ClientError> {
        let url = self.url(
            &[
                Lit("openbatch"),
                Lit("applications"),
                Val("application id", id),
            ],
            &[],
        )?;
        self.call_json(Method::PATCH, url, Some(update)).await
    }

    /// `DELETE /openbatch/applications/{id}[/versions/{version}]`.
    pub async fn delete_application(
        &self,
        id: &str,
        version: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut segs = vec![
            Lit("openbatch"),
            Lit("applications"),
            Val("application id", id),
        ];
        if let Some(v) = version {
            segs.extend([Lit("versions"), Val("version", v)]);
        }
        let url = self.url(&segs, &[])?;
        self.call_no_content(Method::DELETE, url, NO_BODY).await
    }
}
