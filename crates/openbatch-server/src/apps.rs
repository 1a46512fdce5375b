//! Application packages in the shell: where their zip files live in the auto-storage, the
//! streamed upload (digest and size computed on the way, nothing visible unless it all
//! arrived), and the signed URL each package gets when a run or start task is dispatched.

use std::time::Duration;

use axum::body::Bytes;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use openbatch_api::agent::AppPackage;
use openbatch_api::models::{ErrorCategory, FailureInfo, NameValuePair};
use openbatch_storage::{BackendKind, StorageError};
use sha2::{Digest, Sha256};

use crate::storage::AutoStorage;

/// The reserved auto-storage container that holds the packages, as
/// `<application key>/<version>/<upload id>.zip`.
pub(crate) const APPS_CONTAINER: &str = "openbatch-apps";

/// How long a package URL handed to a node stays valid (the download starts at once; a run
/// queued on the node behind others may start later, hence the margin).
const PACKAGE_URL_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What an upload stored.
pub(crate) struct Stored {
    pub(crate) blob: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
}

/// Why an upload failed.
pub(crate) enum UploadError {
    /// The body is not a zip file.
    NotZip,
    Storage(StorageError),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AutoStorage {
    /// Stream a package's zip into the apps container under a fresh name. The body must start
    /// like a zip file (a local file header, or the end record of an empty archive). On any
    /// failure nothing is left under the name.
    pub(crate) async fn store_package<E: std::fmt::Display + Send + 'static>(
        &self,
        app_key: &str,
        version: &str,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin + Send,
    ) -> Result<Stored, UploadError> {
        let container = self
            .storage
            .container(APPS_CONTAINER)
            .map_err(UploadError::Storage)?;
        let blob = format!("{app_key}/{version}/{}.zip", uuid::Uuid::new_v4().simple());
        let state = std::sync::Arc::new(std::sync::Mutex::new((Sha256::new(), 0u64, Vec::new())));
        let seen = state.clone();
        let stream = body.map(move |chunk| {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            s.0.update(&chunk);
            s.1 += chunk.len() as u64;
            if s.2.len() < 4 {
                let take = (4 - s.2.len()).min(chunk.len());
                s.2.extend_from_slice(&chunk[..take]);
                if s.2.len() == 4 && !is_zip_magic(&s.2) {
                    return Err("the body is not a zip file".to_string());
                }
            }
            Ok(chunk)
        });
        let written = container.put_stream(&blob, Box::pin(stream)).await;
        let (hasher, size, magic) = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *s, (Sha256::new(), 0, Vec::new()))
        };
        let not_zip = !is_zip_magic(&magic);
        match written {
            Ok(_) if not_zip => {
                let _ = container.delete(&blob).await;
                Err(UploadError::NotZip)
            }
            Ok(_) => Ok(Stored {
                blob,
                sha256: hex(&hasher.finalize()),
                size,
            }),
            Err(_) if not_zip && size >= 4 => Err(UploadError::NotZip),
            Err(e) => Err(UploadError::Storage(e)),
        }
    }

    /// Delete package blobs nothing refers to any more (best effort: a failure is logged).
    pub(crate) async fn delete_packages(&self, blobs: &[String]) {
        let Ok(container) = self.storage.container(APPS_CONTAINER) else {
            return;
        };
        for b in blobs {
            if let Err(e) = container.delete(b).await {
                tracing::warn!(blob = %b, error = %e, "could not delete an application package blob");
            }
        }
    }

    /// Give each package a signed URL a node can download it from. A package the core could
    /// not resolve, or one that cannot be signed, fails the run as a pre-processing error.
    pub(crate) async fn resolve_packages(
        &self,
        packages: &mut [AppPackage],
    ) -> Result<(), FailureInfo> {
        for p in packages.iter_mut() {
            let fail = |code: &str, why: String| FailureInfo {
                category: ErrorCategory::UserError,
                code: Some(code.into()),
                message: Some(format!(
                    "Application package '{}' version '{}' could not be installed: {why}",
                    p.application_id, p.version
                )),
                details: vec![
                    NameValuePair {
                        name: Some("ApplicationId".into()),
                        value: Some(p.application_id.clone()),
                    },
                    NameValuePair {
                        name: Some("Version".into()),
                        value: Some(p.version.clone()),
                    },
                ],
            };
            if let Some(why) = &p.unresolved {
                return Err(fail("ApplicationPackageNotFound", why.clone()));
            }
            p.url = self
                .package_url(&p.blob)
                .await
                .map_err(|e| fail("ApplicationPackageDownloadFailed", e.to_string()))?;
        }
        Ok(())
    }

    /// A signed GET URL of one package blob.
    async fn package_url(&self, blob: &str) -> Result<String, StorageError> {
        if self.storage.kind() == BackendKind::S3 {
            let container = self.storage.container(APPS_CONTAINER)?;
            return Ok(container
                .presigned_get_url(blob, PACKAGE_URL_LIFETIME)
                .await?
                .unwrap_or_default());
        }
        let expiry =
            Utc::now() + chrono::Duration::from_std(PACKAGE_URL_LIFETIME).unwrap_or_default();
        let url = self.container_url(APPS_CONTAINER, "r", expiry)?;
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let path: Vec<String> = blob.split('/').map(crate::http::encode_component).collect();
        Ok(format!("{base}/{}?{query}", path.join("/")))
    }
}

/// A zip file starts with a local file header (`PK\x03\x04`), or, when it is empty, with the
/// end of central directory record (`PK\x05\x06`).
fn is_zip_magic(b: &[u8]) -> bool {
    b == b"PK\x03\x04" || b == b"PK\x05\x06"
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_storage::StorageConfig;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn uploads_are_hashed_and_non_zips_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let st =
            AutoStorage::open(&StorageConfig::default(), dir.path(), b"key", "http://h:1").unwrap();
        let stored = st
            .store_package("tool", "1.0", chunks(&[b"PK", b"\x03\x04rest"]))
            .await
            .ok()
            .unwrap();
        assert_eq!(stored.size, 8);
        assert_eq!(stored.sha256, hex(&Sha256::digest(b"PK\x03\x04rest")));
        assert!(stored.blob.starts_with("tool/1.0/") && stored.blob.ends_with(".zip"));
        let c = st.storage.container(APPS_CONTAINER).unwrap();
        assert_eq!(c.list("tool/").await.unwrap().len(), 1);

        let bodies: [&[&'static [u8]]; 3] = [&[b"hello world"], &[b"PK"], &[]];
        for body in bodies {
            let r = st.store_package("tool", "2", chunks(body)).await;
            assert!(matches!(r, Err(UploadError::NotZip)));
        }
        assert_eq!(
            c.list("tool/2/").await.unwrap().len(),
            0,
            "nothing left behind"
        );

        // The URL a node gets reads the blob through the blob endpoint.
        let mut p = vec![AppPackage {
            application_id: "tool".into(),
            version: "1.0".into(),
            is_default: false,
            sha256: stored.sha256.clone(),
            blob: stored.blob.clone(),
            url: String::new(),
            unresolved: None,
        }];
        st.resolve_packages(&mut p).await.unwrap();
        assert!(p[0].url.starts_with(&format!(
            "http://h:1/openbatch/storage/{APPS_CONTAINER}/tool/1.0/"
        )));
        p[0].unresolved = Some("gone".into());
        let f = st.resolve_packages(&mut p).await.unwrap_err();
        assert_eq!(f.code.as_deref(), Some("ApplicationPackageNotFound"));
    }
}
