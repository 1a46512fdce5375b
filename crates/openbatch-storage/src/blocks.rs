//! Staged blocks of the server's blob endpoint (Azure's Put Block and Put Block List): each
//! block is a file in a staging directory until a block list commits them, in order, into
//! the blob.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::backend::Container;
use crate::blobxml::BlockSource;
use crate::StorageError;

/// Azure's limit on one block (4000 MiB).
pub const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct BlockStager {
    dir: PathBuf,
}

impl BlockStager {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BlockStager { dir: dir.into() }
    }

    fn blob_dir(&self, container: &str, blob: &str) -> PathBuf {
        let digest = Sha256::digest(format!("{container}\n{blob}").as_bytes());
        self.dir.join(hex(&digest))
    }

    fn block_file(dir: &Path, block_id: &str) -> Result<PathBuf, StorageError> {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(block_id)
            .map_err(|_| {
                StorageError::InvalidInput(format!("the block id '{block_id}' is not base64"))
            })?;
        if raw.is_empty() || raw.len() > 64 {
            return Err(StorageError::InvalidInput(format!(
                "the block id '{block_id}' must decode to 1 to 64 bytes"
            )));
        }
        Ok(dir.join(hex(&raw)))
    }

    /// Stores one block of `blob`, replacing a block staged earlier with the same id.
    pub async fn stage<E: std::fmt::Display>(
        &self,
        container: &str,
        blob: &str,
        block_id: &str,
        mut data: impl futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<u64, StorageError> {
        let dir = self.blob_dir(container, blob);
        let path = Self::block_file(&dir, block_id)?;
        let io = |e: std::io::Error| StorageError::Backend(format!("staging a block: {e}"));
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let partial = path.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut total = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk
                .map_err(|e| StorageError::Incomplete(format!("the block upload stopped: {e}")));
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(e);
                }
            };
            total += chunk.len() as u64;
            if total > MAX_BLOCK_SIZE {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(StorageError::InvalidInput(format!(
                    "a block may hold at most {MAX_BLOCK_SIZE} bytes"
                )));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&partial, &path).await.map_err(io)?;
        Ok(total)
    }

    /// Writes the blob from its staged blocks in the list's order, then forgets every block
    /// staged for it. Blocks committed earlier cannot be reused (they are not kept): a list
    /// naming one that is not staged is refused, and nothing is written.
    pub async fn commit(
        &self,
        container: &Container,
        blob: &str,
        list: &[(BlockSource, String)],
    ) -> Result<u64, StorageError> {
        let dir = self.blob_dir(container.name(), blob);
        let mut files = Vec::with_capacity(list.len());
        for (_, id) in list {
            let f = Self::block_file(&dir, id)?;
            if !tokio::fs::try_exists(&f).await.unwrap_or(false) {
                return Err(StorageError::InvalidInput(format!(
                    "the block list names block '{id}', which is not staged for this blob"
                )));
            }
            files.push(f);
        }
        let data = stream::iter(files)
            .then(|f| async move { tokio::fs::read(&f).await.map(Bytes::from) })
            .boxed();
        let written = container.put_stream(blob, data).await?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(written)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
