//! A tiny HTTP file server standing in for blob storage in the quickstart: it serves one
//! directory's files under `/input/NAME`, each behind a SAS-like token (`?sv=..&sig=..`), so
//! tasks fetch their inputs as `httpUrl` resource files exactly as they would from Azure
//! Storage with a SAS URL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

struct Shared {
    dir: PathBuf,
    /// The `sig` every URL must carry: a random secret, as a SAS signature is.
    token: String,
    served: AtomicU64,
}

/// A running file server; stop it with [`FileServer::shutdown`].
pub(crate) struct FileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Serves `dir` on 127.0.0.1 at a free port.
    pub(crate) async fn start(dir: PathBuf) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            dir,
            token: uuid::Uuid::new_v4().simple().to_string(),
            served: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/input/{name}", get(serve_file))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the quickstart's file server")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "the quickstart file server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The SAS-style URL of a file in the served directory.
    pub(crate) fn url(&self, name: &str) -> String {
        format!(
            "http://{}/input/{name}?sv=2025-05-05&sr=b&sp=r&sig={}",
            self.addr, self.shared.token
        )
    }

    /// How many files it has served.
    pub(crate) fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn serve_file(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("sig") != Some(&shared.token) {
        return (
            StatusCode::FORBIDDEN,
            "AuthenticationFailed: the URL's sig is missing or wrong\n",
        )
            .into_response();
    }
    // One flat directory: no separators, no hidden files, nothing that climbs out of it.
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return (StatusCode::NOT_FOUND, "BlobNotFound\n").into_response();
    }
    match tokio::fs::read(shared.dir.join(&name)).await {
        Ok(bytes) => {
            shared.served.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "BlobNotFound\n").into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, file = %name, "the quickstart file server could not read a file");
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_files_only_with_the_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
        let fs = FileServer::start(dir.path().to_owned()).await.unwrap();
        let http = reqwest::Client::new();

        let ok = http.get(fs.url("a.txt")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "hello\n");

        let no_sig = fs.url("a.txt").replace("sig=", "nosig=");
        assert_eq!(http.get(no_sig).send().await.unwrap().status(), 403);
        let missing = http.get(fs.url("b.txt")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let climbing = fs.url("a.txt").replace("/input/a.txt", "/input/..%2Fa.txt");
        assert_eq!(http.get(climbing).send().await.unwrap().status(), 404);

        assert_eq!(fs.served(), 1);
        fs.shutdown().await;
    }
}
