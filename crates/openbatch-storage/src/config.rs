//! The `[storage]` table of the server configuration: which backend holds the account's
//! auto-storage, and how to reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::StorageError;

/// Which kind of store holds the auto-storage containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A directory on the server's machine, served to nodes by the server's own blob endpoint.
    #[default]
    Local,
    /// Azure Blob Storage (or Azurite): each auto-storage container is a blob container.
    Azure,
    /// An S3-compatible store: one bucket, each auto-storage container a top-level prefix in it.
    S3,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Azure => "azure",
            BackendKind::S3 => "s3",
        }
    }
}

/// `[storage]` in the server's TOML; every field can also be set with an `OPENBATCH_STORAGE_*`
/// environment variable (see [`StorageConfig::apply_env`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: BackendKind,
    /// `local`: the directory (default `DATA_DIR/storage`).
    pub path: Option<PathBuf>,
    /// `azure`: the storage account name.
    pub account: Option<String>,
    /// `azure`: the account key (base64). Needed to sign container SAS URLs for nodes.
    pub key: Option<String>,
    /// `azure`: an account SAS token instead of a key (it must grant read, list and write on
    /// the containers tasks name).
    pub sas: Option<String>,
    /// `azure`: the blob endpoint (default `https://ACCOUNT.blob.core.windows.net`; Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`). `s3`: the S3 endpoint (default AWS).
    pub endpoint: Option<String>,
    /// `s3`: the bucket that holds the containers.
    pub bucket: Option<String>,
    /// `s3`: the region (default `us-east-1`).
    pub region: Option<String>,
    /// `s3`: credentials.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// How long the signed URLs handed to nodes stay valid, in seconds (default 1 day). They are
    /// made when a run is dispatched, so this only needs to cover one run's staging.
    pub signed_url_lifetime: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: BackendKind::Local,
            path: None,
            account: None,
            key: None,
            sas: None,
            endpoint: None,
            bucket: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            signed_url_lifetime: 24 * 3600,
        }
    }
}

impl StorageConfig {
    /// `OPENBATCH_STORAGE_BACKEND`, `_PATH`, `_ACCOUNT`, `_KEY`, `_SAS`, `_ENDPOINT`, `_BUCKET`,
    /// `_REGION`, `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`, `_SIGNED_URL_LIFETIME`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), StorageError> {
        if let Some(v) = get("OPENBATCH_STORAGE_BACKEND") {
            self.backend = match v.to_ascii_lowercase().as_str() {
                "local" => BackendKind::Local,
                "azure" => BackendKind::Azure,
                "s3" => BackendKind::S3,
                _ => {
                    return Err(StorageError::Config(format!(
                        "OPENBATCH_STORAGE_BACKEND={v}: expected local, azure or s3"
                    )))
                }
            };
        }
        if let Some(v) = get("OPENBATCH_STORAGE_PATH") {
            self.path = Some(v.into());
        }
        for (name, field) in [
            ("OPENBATCH_STORAGE_ACCOUNT", &mut self.account),
            ("OPENBATCH_STORAGE_KEY", &mut self.key),
            ("OPENBATCH_STORAGE_SAS", &mut self.sas),
            ("OPENBATCH_STORAGE_ENDPOINT", &mut self.endpoint),
            ("OPENBATCH_STORAGE_BUCKET", &mut self.bucket),
            ("OPENBATCH_STORAGE_REGION", &mut self.region),
            ("OPENBATCH_STORAGE_ACCESS_KEY_ID", &mut self.access_key_id),
            (
                "OPENBATCH_STORAGE_SECRET_ACCESS_KEY",
                &mut self.secret_access_key,
            ),
        ] {
            if let Some(v) = get(name) {
                *field = Some(v);
            }
        }
        if let Some(v) = get("OPENBATCH_STORAGE_SIGNED_URL_LIFETIME") {
            self.signed_url_lifetime = v.parse().map_err(|_| {
                StorageError::Config(format!(
                    "OPENBATCH_STORAGE_SIGNED_URL_LIFETIME={v} is not a whole number of seconds"
                ))
            })?;
        }
        Ok(())
    }

    /// The local backend's directory.
    pub fn local_path(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("storage"))
    }

    pub fn signed_url_lifetime(&self) -> Duration {
        Duration::from_secs(self.signed_url_lifetime.max(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_a_local_directory_under_the_data_dir() {
        let cfg = StorageConfig::default();
        assert_eq!(cfg.backend, BackendKind::Local);
        assert_eq!(cfg.local_path(Path::new("/d")), PathBuf::from("/d/storage"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut cfg = StorageConfig::default();
        cfg.apply_env(|k| match k {
            "OPENBATCH_STORAGE_BACKEND" => Some("S3".into()),
            "OPENBATCH_STORAGE_BUCKET" => Some("b".into()),
            "OPENBATCH_STORAGE_SIGNED_URL_LIFETIME" => Some("600".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.backend, BackendKind::S3);
        assert_eq!(cfg.bucket.as_deref(), Some("b"));
        assert_eq!(cfg.signed_url_lifetime(), Duration::from_secs(600));
        assert!(cfg
            .apply_env(|k| (k == "OPENBATCH_STORAGE_BACKEND").then(|| "ftp".into()))
            .is_err());
    }
}
