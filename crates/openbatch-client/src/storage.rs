//! openbatch's auto-storage extension: signed container URLs for clients.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::request::Seg::Lit;
use crate::{Client, ClientError};

/// A container URL of the account's auto-storage, signed for some permissions until
/// `expiry_time`: usable with any Azure Blob client (`ContainerClient.from_container_url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSas {
    pub container_url: String,
    pub expiry_time: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SasBody<'a> {
    container: &'a str,
    permissions: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry_time: Option<chrono::DateTime<chrono::Utc>>,
}

impl Client {
    /// `POST /openbatch/storagesas`: a container URL signed for `permissions` (Azure's letters
    /// `r`, `c`, `w`, `l`) until `expiry` (the server's default, a day, when `None`).
    pub async fn storage_sas(
        &self,
        container: &str,
        permissions: &str,
        expiry: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<StorageSas, ClientError> {
        let url = self.url(&[Lit("openbatch"), Lit("storagesas")], &[])?;
        self.call_json(
            Method::POST,
            url,
            Some(&SasBody {
                container,
                permissions,
                expiry_time: expiry,
            }),
        )
        .await
    }
}
