//! The account's auto-storage in the shell: the configured backend, the signer of the blob
//! endpoint's URLs, and the resolution of `autoStorageContainerName` resource files into
//! something a node can fetch, done when a run is dispatched (the core is sans-IO and builds
//! the `RunSpec` with the names as the user wrote them).
//!
//! * local directory and Azure: the name becomes a signed container URL (our own blob
//!   endpoint's, or an Azure container SAS), and the node lists and downloads it like any
//!   `storageContainerUrl`;
//! * S3: the server lists the container and hands the node one presigned `httpUrl` per blob.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use openbatch_api::models::{ErrorCategory, FailureInfo, NameValuePair, ResourceFile};
use openbatch_storage::blocks::BlockStager;
use openbatch_storage::{BackendKind, Storage, StorageConfig, UrlSigner};

/// How long the server may spend listing an S3 container for one run before the run fails.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct AutoStorage {
    pub(crate) storage: Storage,
    pub(crate) signer: UrlSigner,
    pub(crate) stager: BlockStager,
    /// The server's public base URL, which signed container URLs start with.
    endpoint: String,
    lifetime: Duration,
}

impl AutoStorage {
    pub(crate) fn open(
        cfg: &StorageConfig,
        data_dir: &Path,
        account_key: &[u8],
        endpoint: &str,
    ) -> anyhow::Result<Self> {
        let storage = Storage::open(cfg, data_dir)?;
        tracing::info!(backend = storage.kind().as_str(), "auto-storage ready");
        Ok(AutoStorage {
            storage,
            signer: UrlSigner::new(account_key),
            stager: BlockStager::new(data_dir.join("storage-blocks")),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            lifetime: cfg.signed_url_lifetime(),
        })
    }

    /// A container URL of the server's own blob endpoint, signed for `permissions`.
    pub(crate) fn endpoint_container_url(
        &self,
        container: &str,
        permissions: &str,
        expiry: chrono::DateTime<Utc>,
    ) -> String {
        format!(
            "{}/openbatch/storage/{container}?{}",
            self.endpoint,
            self.signer.sign(container, permissions, expiry)
        )
    }

    /// A container URL for `permissions` until `expiry`: Azure's own SAS URL for an Azure
    /// backend, the blob endpoint's otherwise (S3 included: the endpoint reads and writes
    /// through the backend).
    pub(crate) fn container_url(
        &self,
        container: &str,
        permissions: &str,
        expiry: chrono::DateTime<Utc>,
    ) -> Result<String, openbatch_storage::StorageError> {
        openbatch_storage::check_container_name(container)?;
        match self
            .storage
            .azure_container_url(container, permissions, expiry)?
        {
            Some(url) => Ok(url),
            None => Ok(self.endpoint_container_url(container, permissions, expiry)),
        }
    }

    /// Rewrites each `autoStorageContainerName` resource file into what a node can fetch.
    /// Others pass unchanged. On failure the run cannot start: the caller reports it as a
    /// pre-processing failure.
    pub(crate) async fn resolve(&self, files: &mut Vec<ResourceFile>) -> Result<(), FailureInfo> {
        if files
            .iter()
            .all(|f| f.auto_storage_container_name.is_none())
        {
            return Ok(());
        }
        let expiry = Utc::now() + chrono::Duration::from_std(self.lifetime).unwrap_or_default();
        let mut out = Vec::with_capacity(files.len());
        for f in files.drain(..) {
            let Some(name) = f.auto_storage_container_name.clone() else {
                out.push(f);
                continue;
            };
            let fail = |code: &str, why: String| {
                FailureInfo {
                category: ErrorCategory::UserError,
                code: Some(code.into()),
                message: Some(format!(
                    "The resource files of auto-storage container '{name}' could not be staged: {why}"
                )),
                details: vec![NameValuePair {
                    name: Some("AutoStorageContainerName".into()),
                    value: Some(name.clone()),
                }],
            }
            };
            if self.storage.kind() != BackendKind::S3 {
                let url = self
                    .container_url(&name, "rl", expiry)
                    .map_err(|e| fail("BlobDownloadMiscError", e.to_string()))?;
                out.push(ResourceFile {
                    auto_storage_container_name: None,
                    storage_container_url: Some(url),
                    ..f
                });
                continue;
            }
            let container = self
                .storage
                .container(&name)
                .map_err(|e| fail("BlobDownloadMiscError", e.to_string()))?;
            let prefix = f.blob_prefix.clone().unwrap_or_default();
            let blobs = tokio::time::timeout(LIST_TIMEOUT, container.list(&prefix))
                .await
                .map_err(|_| {
                    fail(
                        "BlobDownloadMiscError",
                        format!("listing it took longer than {LIST_TIMEOUT:?}"),
                    )
                })?
                .map_err(|e| fail("BlobDownloadMiscError", e.to_string()))?;
            let dir = f.file_path.clone().unwrap_or_default();
            for blob in blobs.iter().filter(|b| !b.name.ends_with('/')) {
                let url = container
                    .presigned_get_url(&blob.name, self.lifetime)
                    .await
                    .map_err(|e| fail("BlobDownloadMiscError", e.to_string()))?
                    .unwrap_or_default();
                let file_path = if dir.is_empty() {
                    blob.name.clone()
                } else {
                    format!("{}/{}", dir.trim_end_matches('/'), blob.name)
                };
                out.push(ResourceFile {
                    http_url: Some(url),
                    file_path: Some(file_path),
                    file_mode: f.file_mode.clone(),
                    ..ResourceFile::default()
                });
            }
        }
        *files = out;
        Ok(())
    }
}
