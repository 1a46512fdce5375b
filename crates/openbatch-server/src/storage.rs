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

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_storage::Permission;

    fn auto(name: &str) -> ResourceFile {
        ResourceFile {
            auto_storage_container_name: Some(name.into()),
            blob_prefix: Some("in/".into()),
            file_path: Some("data".into()),
            file_mode: Some("0644".into()),
            ..ResourceFile::default()
        }
    }

    #[tokio::test]
    async fn local_auto_storage_becomes_a_signed_container_url() {
        let dir = tempfile::tempdir().unwrap();
        let st = AutoStorage::open(
            &StorageConfig::default(),
            dir.path(),
            b"key",
            "http://batch.example:8771/",
        )
        .unwrap();
        let http = ResourceFile {
            http_url: Some("http://h/x".into()),
            ..ResourceFile::default()
        };
        let mut files = vec![http.clone(), auto("inputs")];
        st.resolve(&mut files).await.unwrap();
        assert_eq!(files[0], http, "other resource files pass unchanged");
        let url = files[1].storage_container_url.clone().unwrap();
        assert!(files[1].auto_storage_container_name.is_none());
        assert_eq!(files[1].blob_prefix.as_deref(), Some("in/"));
        assert_eq!(files[1].file_path.as_deref(), Some("data"));
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "http://batch.example:8771/openbatch/storage/inputs");
        let params: Vec<(String, String)> = query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k.into(), crate::http::decode_component(v))
            })
            .collect();
        let pairs = || params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        // Read and list, nothing more.
        assert!(st
            .signer
            .verify("inputs", pairs(), Utc::now(), Permission::List)
            .is_ok());
        assert!(st
            .signer
            .verify("inputs", pairs(), Utc::now(), Permission::Write)
            .is_err());

        let mut bad = vec![auto("Not_A_Container")];
        let failure = st.resolve(&mut bad).await.unwrap_err();
        assert_eq!(failure.category, ErrorCategory::UserError);
        assert!(failure.message.unwrap().contains("Not_A_Container"));
    }

    /// S3 auto-storage: the server lists the container and hands out one presigned URL per
    /// blob, each going to `filePath/<blob name>`. Runs against moto's S3 server when it is
    /// installed (scripts/test.sh installs it), and is skipped, saying so, when it is not.
    #[tokio::test]
    async fn s3_auto_storage_becomes_presigned_urls_per_blob() {
        let bin = std::env::var_os("MOTO_SERVER_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../.venv-conformance/bin/moto_server")
            });
        if !bin.exists() {
            eprintln!("SKIPPED s3_auto_storage_becomes_presigned_urls_per_blob: moto_server is not installed (scripts/test.sh installs it; or set MOTO_SERVER_BIN)");
            return;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _moto = Kill(
            std::process::Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match http.put(format!("{endpoint}/autostore")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if std::time::Instant::now() > deadline => panic!("moto did not start"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            backend: BackendKind::S3,
            bucket: Some("autostore".into()),
            endpoint: Some(endpoint),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing-secret".into()),
            ..StorageConfig::default()
        };
        let st = AutoStorage::open(&cfg, dir.path(), b"key", "http://unused").unwrap();
        let c = st.storage.container("inputs").unwrap();
        for (name, data) in [("in/a.txt", "A"), ("in/sub/b.txt", "B"), ("other.txt", "X")] {
            c.put(name, bytes_of(data)).await.unwrap();
        }
        let mut files = vec![auto("inputs")];
        st.resolve(&mut files).await.unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.file_path.clone().unwrap()).collect();
        assert_eq!(paths, ["data/in/a.txt", "data/in/sub/b.txt"]);
        for (f, want) in files.iter().zip(["A", "B"]) {
            assert_eq!(f.file_mode.as_deref(), Some("0644"));
            let url = f.http_url.clone().unwrap();
            let got = http.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(got, want);
        }
    }

    fn bytes_of(s: &str) -> axum::body::Bytes {
        axum::body::Bytes::from(s.to_string())
    }
}
