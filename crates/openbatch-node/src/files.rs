//! Files under the node root, for the server's file API: list, read (ranges, chunked), delete.
//! Every path is checked to stay inside the root, symlinks included.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use openbatch_api::agent::{encode_chunk, AgentMsg, FileEntry, FileError};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Bytes per binary frame of a file read.
const CHUNK: usize = 256 * 1024;
/// A recursive listing stops here; Azure pages file lists, and so do we, but only over this.
const MAX_LIST: usize = 100_000;

/// Resolve `rel` under `root`, refusing anything that would leave it.
fn resolve(root: &Path, rel: &str) -> Result<PathBuf, FileError> {
    let rel = rel.replace('\\', "/");
    let mut out = root.to_path_buf();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(FileError::Invalid(format!(
                    "'{rel}' leaves the directory it is relative to"
                )))
            }
        }
    }
    // Symlinks may point anywhere; the real location must still be under the root.
    match out.canonicalize() {
        Ok(real) if real.starts_with(root) => Ok(real),
        Ok(_) => Err(FileError::Invalid(format!(
            "'{rel}' points outside the node's directory"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileError::NotFound),
        Err(e) => Err(FileError::Io(e.to_string())),
    }
}

fn entry(name: String, md: &std::fs::Metadata) -> FileEntry {
    let modified: DateTime<Utc> = md.modified().map(Into::into).unwrap_or_else(|_| Utc::now());
    FileEntry {
        name,
        is_directory: md.is_dir(),
        size: if md.is_dir() { 0 } else { md.len() },
        modified,
        created: md.created().ok().map(Into::into),
        mode: format!("{:o}", md.mode()),
    }
}

fn io(e: std::io::Error) -> FileError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FileError::NotFound
    } else {
        FileError::Io(e.to_string())
    }
}

pub(crate) async fn list(
    root: &Path,
    rel: &str,
    recursive: bool,
) -> Result<Vec<FileEntry>, FileError> {
    let base = resolve(root, rel)?;
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(io)?;
            for e in rd.flatten() {
                let path = e.path();
                let Ok(md) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if !path.starts_with(&root) {
                    continue;
                }
                let name = path
                    .strip_prefix(&base)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                if md.is_dir() && recursive {
                    stack.push(path.clone());
                }
                out.push(entry(name, &md));
                if out.len() >= MAX_LIST {
                    return Ok(out);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
    .map_err(|e| FileError::Io(e.to_string()))?
}

pub(crate) async fn delete(root: &Path, rel: &str, recursive: bool) -> Result<(), FileError> {
    let path = resolve(root, rel)?;
    if path == root {
        return Err(FileError::Invalid(
            "the root directory cannot be deleted".into(),
        ));
    }
    let md = tokio::fs::metadata(&path).await.map_err(io)?;
    if md.is_dir() {
        if recursive {
            tokio::fs::remove_dir_all(&path).await.map_err(io)
        } else {
            tokio::fs::remove_dir(&path).await.map_err(|e| {
                FileError::Invalid(format!(
                    "the directory is not empty; delete it with recursive=true ({e})"
                ))
            })
        }
    } else {
        tokio::fs::remove_file(&path).await.map_err(io)
    }
}

/// Answer a read: the file's properties, then its bytes in binary frames (last one flagged).
pub(crate) async fn read(
    root: &Path,
    rel: &str,
    range: Option<(u64, Option<u64>)>,
    head_only: bool,
    req: u64,
    out: &mpsc::UnboundedSender<Message>,
) {
    let meta = |result: Result<FileEntry, FileError>| {
        serde_json::to_string(&AgentMsg::FileMeta { req, result }).map(|t| Message::Text(t.into()))
    };
    let path = match resolve(root, rel) {
        Ok(p) => p,
        Err(e) => {
            if let Ok(m) = meta(Err(e)) {
                let _ = out.send(m);
            }
            return;
        }
    };
    let md = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) => {
            if let Ok(m) = meta(Err(io(e))) {
                let _ = out.send(m);
            }
            return;
        }
    };
    let name = rel.to_string();
    let e = entry(name, &md);
    let is_dir = e.is_directory;
    let size = e.size;
    if let Ok(m) = meta(Ok(e)) {
        let _ = out.send(m);
    }
    if head_only {
        return;
    }
    if is_dir || size == 0 {
        let _ = out.send(Message::Binary(encode_chunk(req, true, &[]).into()));
        return;
    }
    let (start, end) = match range {
        Some((s, e)) => (s, e.unwrap_or(u64::MAX).min(size.saturating_sub(1))),
        None => (0, size - 1),
    };
    if start >= size || start > end {
        let _ = out.send(Message::Binary(encode_chunk(req, true, &[]).into()));
        return;
    }
    let mut remaining = end - start + 1;
    let result: std::io::Result<()> = async {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(std::io::SeekFrom::Start(start)).await?;
        let mut buf = vec![0u8; CHUNK];
        while remaining > 0 {
            let want = (remaining as usize).min(CHUNK);
            let n = f.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            remaining -= n as u64;
            let last = remaining == 0;
            if out
                .send(Message::Binary(encode_chunk(req, last, &buf[..n]).into()))
                .is_err()
            {
                return Ok(());
            }
            if last {
                return Ok(());
            }
        }
        Ok(())
    }
    .await;
    if remaining > 0 || result.is_err() {
        // The file shrank or could not be read: end the stream so the reader does not hang.
        let _ = out.send(Message::Binary(encode_chunk(req, true, &[]).into()));
    }
}
