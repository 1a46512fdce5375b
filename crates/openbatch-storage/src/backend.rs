//! The auto-storage backends, on `object_store`: a local directory, Azure Blob, or an
//! S3-compatible bucket. A [`Container`] is one auto-storage container, whatever holds it.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

use crate::config::{BackendKind, StorageConfig};
use crate::StorageError;

/// Parts of a streamed upload: big enough to keep request counts low, small enough that a
/// few in flight stay modest in memory.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// One blob as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob name within its container (`dir/file.txt`).
    pub name: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub e_tag: Option<String>,
}

/// The account's auto-storage.
#[derive(Debug)]
pub struct Storage {
    kind: BackendKind,
    backend: Backend,
    /// Secrets of the configuration, scrubbed from every error message.
    secrets: Vec<String>,
}

#[derive(Debug)]
enum Backend {
    /// One store rooted at the directory; a container is its first path segment.
    Local {
        store: Arc<LocalFileSystem>,
        root: PathBuf,
    },
    /// `object_store` binds an Azure client to one container, so clients are made per
    /// container on first use.
    Azure {
        account: String,
        key: Option<String>,
        sas: Option<String>,
        endpoint: String,
        clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    },
    /// One bucket; a container is a top-level prefix.
    S3 { store: Arc<AmazonS3> },
}

impl Storage {
    /// Builds the configured backend. Nothing is contacted yet; the local directory is
    /// created.
    pub fn open(cfg: &StorageConfig, data_dir: &FsPath) -> Result<Storage, StorageError> {
        let missing = |what: &str| {
            StorageError::Config(format!(
                "storage backend '{}' needs `{what}` in [storage] (or OPENBATCH_STORAGE_{})",
                cfg.backend.as_str(),
                what.to_ascii_uppercase()
            ))
        };
        let mut secrets = Vec::new();
        let backend = match cfg.backend {
            BackendKind::Local => {
                let root = cfg.local_path(data_dir);
                std::fs::create_dir_all(&root).map_err(|e| {
                    StorageError::Config(format!(
                        "creating the storage directory {}: {e}",
                        root.display()
                    ))
                })?;
                let root = root.canonicalize().map_err(|e| {
                    StorageError::Config(format!("opening {}: {e}", root.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| StorageError::Config(e.to_string()))?
                    .with_automatic_cleanup(true);
                Backend::Local {
                    store: Arc::new(store),
                    root,
                }
            }
            BackendKind::Azure => {
                let account = cfg.account.clone().ok_or_else(|| missing("account"))?;
                if cfg.key.is_none() && cfg.sas.is_none() {
                    return Err(missing("key"));
                }
                if let Some(key) = &cfg.key {
                    secrets.push(key.clone());
                }
                if let Some(sas) = &cfg.sas {
                    secrets.push(sas.trim_start_matches('?').to_string());
                }
                let endpoint = cfg
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{account}.blob.core.windows.net"))
                    .trim_end_matches('/')
                    .to_string();
                Backend::Azure {
                    account,
                    key: cfg.key.clone(),
                    sas: cfg
                        .sas
                        .clone()
                        .map(|s| s.trim_start_matches('?').to_string()),
                    endpoint,
                    clients: Mutex::new(HashMap::new()),
                }
            }
            BackendKind::S3 => {
                let bucket = cfg.bucket.clone().ok_or_else(|| missing("bucket"))?;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(cfg.region.clone().unwrap_or_else(|| "us-east-1".into()));
                if let Some(endpoint) = &cfg.endpoint {
                    b = b
                        .with_endpoint(endpoint.trim_end_matches('/'))
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(id) = &cfg.access_key_id {
                    b = b.with_access_key_id(id);
                }
                if let Some(secret) = &cfg.secret_access_key {
                    secrets.push(secret.clone());
                    b = b.with_secret_access_key(secret);
                }
                Backend::S3 {
                    store: Arc::new(b.build().map_err(|e| StorageError::Config(e.to_string()))?),
                }
            }
        };
        Ok(Storage {
            kind: cfg.backend,
            backend,
            secrets,
        })
    }

    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The local backend's directory, if that is the backend.
    pub fn local_root(&self) -> Option<&FsPath> {
        match &self.backend {
            Backend::Local { root, .. } => Some(root),
            _ => None,
        }
    }

    /// One container of the auto-storage; the name must be a valid Azure container name.
    pub fn container(&self, name: &str) -> Result<Container, StorageError> {
        check_container_name(name)?;
        let (store, prefix): (Arc<dyn ObjectStore>, Option<String>) = match &self.backend {
            Backend::Local { store, .. } => (store.clone(), Some(name.to_string())),
            Backend::S3 { store } => (store.clone(), Some(name.to_string())),
            Backend::Azure {
                account,
                key,
                sas,
                endpoint,
                clients,
            } => {
                let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
                let store = match clients.get(name) {
                    Some(s) => s.clone(),
                    None => {
                        let mut b = MicrosoftAzureBuilder::new()
                            .with_account(account)
                            .with_container_name(name)
                            .with_endpoint(endpoint.clone())
                            .with_allow_http(endpoint.starts_with("http://"));
                        if let Some(key) = key {
                            b = b.with_access_key(key);
                        } else if let Some(sas) = sas {
                            b = b.with_config(object_store::azure::AzureConfigKey::SasKey, sas);
                        }
                        let store: Arc<dyn ObjectStore> = Arc::new(
                            b.build()
                                .map_err(|e| StorageError::Config(self.scrub(&e.to_string())))?,
                        );
                        clients.insert(name.to_string(), store.clone());
                        store
                    }
                };
                (store, None)
            }
        };
        Ok(Container {
            name: name.to_string(),
            store,
            prefix,
            s3: match &self.backend {
                Backend::S3 { store } => Some(store.clone()),
                _ => None,
            },
            secrets: self.secrets.clone(),
        })
    }

    /// For the Azure backend: a container SAS URL (`https://acct.blob.../container?sv=...`) that
    /// grants `permissions` until `expiry`, signed with the account key (or, with only an
    /// account SAS configured, that SAS). `None` for other backends.
    pub fn azure_container_url(
        &self,
        container: &str,
        permissions: &str,
        expiry: DateTime<Utc>,
    ) -> Result<Option<String>, StorageError> {
        check_container_name(container)?;
        let Backend::Azure {
            account,
            key,
            sas,
            endpoint,
            ..
        } = &self.backend
        else {
            return Ok(None);
        };
        let query = match (key, sas) {
            (Some(key), _) => {
                crate::azure_sas::container_sas(account, key, container, permissions, expiry)?
            }
            (None, Some(sas)) => sas.clone(),
            (None, None) => return Err(StorageError::Config("no Azure key or SAS".into())),
        };
        Ok(Some(format!("{endpoint}/{container}?{query}")))
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }
}

fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

/// Azure's container naming rules: 3 to 63 lowercase letters, digits and single hyphens,
/// starting and ending with a letter or digit. They also keep local directory names safe.
pub fn check_container_name(name: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(format!(
            "'{name}' is not a valid container name: use 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
        )))
    }
}

/// A blob name as `object_store` paths take it: non-empty, at most 1024 characters, and no
/// empty, `.` or `..` segments (which a file system would interpret).
pub fn check_blob_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(format!(
            "'{name}' is not a usable blob name: it must be 1 to 1024 characters, without empty, '.' or '..' path segments"
        )))
    }
}

/// One container of the auto-storage.
#[derive(Debug, Clone)]
pub struct Container {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// The container's path prefix inside the store (local directory, S3 bucket).
    prefix: Option<String>,
    s3: Option<Arc<AmazonS3>>,
    secrets: Vec<String>,
}

impl Container {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, blob: &str) -> Result<Path, StorageError> {
        check_blob_name(blob)?;
        let full = match &self.prefix {
            Some(p) => format!("{p}/{blob}"),
            None => blob.to_string(),
        };
        Path::parse(&full).map_err(|e| {
            StorageError::InvalidName(format!("'{blob}' is not a usable blob name: {e}"))
        })
    }

    fn err(&self, what: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => {
                StorageError::NotFound(format!("{what}: not found in container '{}'", self.name))
            }
            e => StorageError::Backend(scrub(&format!("{what}: {e}"), &self.secrets)),
        }
    }

    /// The blob name of a store path.
    fn blob_name(&self, location: &Path) -> Option<String> {
        let raw = location.as_ref();
        let rest = match &self.prefix {
            Some(p) => raw.strip_prefix(p.as_str())?.strip_prefix('/')?,
            None => raw,
        };
        Some(
            rest.split('/')
                .map(|part| {
                    percent_encoding::percent_decode_str(part)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// Every blob whose name starts with `prefix` (a plain string prefix, as Azure's
    /// `blobPrefix`), sorted by name.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, StorageError> {
        // object_store lists whole path segments: list the prefix's directory, then filter.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let base = match (&self.prefix, dir.is_empty()) {
            (Some(p), true) => Some(p.clone()),
            (Some(p), false) => Some(format!("{p}/{dir}")),
            (None, true) => None,
            (None, false) => Some(dir.to_string()),
        };
        let base = match base {
            Some(b) => Some(Path::parse(&b).map_err(|e| {
                StorageError::InvalidName(format!("'{prefix}' is not a usable blob prefix: {e}"))
            })?),
            None => None,
        };
        let mut stream = self.store.list(base.as_ref());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = match item {
                Ok(m) => m,
                // A local container that does not exist yet lists as empty.
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.err("listing", e)),
            };
            let Some(name) = self.blob_name(&meta.location) else {
                continue;
            };
            if name.starts_with(prefix) {
                out.push(BlobInfo {
                    name,
                    size: meta.size,
                    last_modified: meta.last_modified,
                    e_tag: meta.e_tag,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn head(&self, blob: &str) -> Result<BlobInfo, StorageError> {
        let meta = self
            .store
            .head(&self.path(blob)?)
            .await
            .map_err(|e| self.err(blob, e))?;
        Ok(BlobInfo {
            name: blob.to_string(),
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
        })
    }

    /// The blob's properties and its bytes (all, or `range`), as a stream.
    pub async fn get(
        &self,
        blob: &str,
        range: Option<Range<u64>>,
    ) -> Result<
        (
            BlobInfo,
            Range<u64>,
            BoxStream<'static, Result<Bytes, StorageError>>,
        ),
        StorageError,
    > {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&self.path(blob)?, opts)
            .await
            .map_err(|e| self.err(blob, e))?;
        let info = BlobInfo {
            name: blob.to_string(),
            size: result.meta.size,
            last_modified: result.meta.last_modified,
            e_tag: result.meta.e_tag.clone(),
        };
        let range = result.range.clone();
        let secrets = self.secrets.clone();
        let stream = result
            .into_stream()
            .map_err(move |e| StorageError::Backend(scrub(&e.to_string(), &secrets)))
            .boxed();
        Ok((info, range, stream))
    }

    pub async fn get_bytes(&self, blob: &str) -> Result<Bytes, StorageError> {
        let (_, _, stream) = self.get(blob, None).await?;
        let parts: Vec<Bytes> = stream.try_collect().await?;
        Ok(parts.concat().into())
    }

    pub async fn put(&self, blob: &str, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.path(blob)?, data.into())
            .await
            .map_err(|e| self.err(blob, e))?;
        Ok(())
    }

    /// Writes a blob from a stream of chunks, in parts, so that its size is not bounded by
    /// memory. Nothing is visible under the name unless the whole stream arrived. Returns the
    /// number of bytes written.
    pub async fn put_stream<E: std::fmt::Display>(
        &self,
        blob: &str,
        mut data: impl futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<u64, StorageError> {
        let path = self.path(blob)?;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err(blob, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut total = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StorageError::Incomplete(format!(
                        "the upload of '{blob}' stopped: {e}"
                    )));
                }
            };
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                return Err(self.err(blob, e));
            }
            total += chunk.len() as u64;
            writer.put(chunk);
        }
        writer.finish().await.map_err(|e| self.err(blob, e))?;
        Ok(total)
    }

    pub async fn delete(&self, blob: &str) -> Result<(), StorageError> {
        self.store
            .delete(&self.path(blob)?)
            .await
            .map_err(|e| self.err(blob, e))
    }

    /// For S3: a presigned GET URL of one blob, valid for `lifetime`. `None` for backends that
    /// hand out container URLs instead.
    pub async fn presigned_get_url(
        &self,
        blob: &str,
        lifetime: Duration,
    ) -> Result<Option<String>, StorageError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let url = s3
            .signed_url(reqwest::Method::GET, &self.path(blob)?, lifetime)
            .await
            .map_err(|e| self.err(blob, e))?;
        Ok(Some(url.to_string()))
    }
}
