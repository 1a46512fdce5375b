//! Task logs kept by the server, so they outlive the node that wrote them.
//!
//! When a run is dispatched, the shell gives it a signed URL (create and write) of the
//! reserved `openbatch-logs` container of the account's auto-storage. When the run ends, the
//! agent uploads `stdout.txt` and `stderr.txt` there (their last 64 MiB) before reporting it.
//! Layout of the container:
//!
//! * `jobs/<job>/<task>/<run>/stdout.txt` (and `stderr.txt`): one directory per attempt, by
//!   run id. Run ids only grow (they carry the restart epoch), so the largest is the latest.
//! * `nodes/<node>/startup/stdout.txt` (and `stderr.txt`): the node's start task, the last run.
//!
//! `http/files.rs` reads a task's `stdout.txt`/`stderr.txt` from here when its node is gone or
//! no longer has the task directory.

use std::time::Duration;

use chrono::Utc;
use openbatch_api::agent::{FileEntry, LogUpload, RunId};
use openbatch_storage::{BlobInfo, Container};

use crate::storage::AutoStorage;

/// The reserved container of the auto-storage that holds task logs.
pub(crate) const LOGS_CONTAINER: &str = "openbatch-logs";

/// The files of a task directory that are kept.
pub(crate) const KEPT_FILES: [&str; 2] = ["stdout.txt", "stderr.txt"];

/// How long an upload URL for logs stays valid: a run may take that long.
const LOG_URL_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub(crate) fn run_prefix(job: &str, task: &str, run: RunId) -> String {
    format!("jobs/{job}/{task}/{run}/")
}

pub(crate) fn startup_prefix(node: &str) -> String {
    format!("nodes/{node}/startup/")
}

/// What the server knows of a task's latest attempt, to find its kept logs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempt {
    pub(crate) run: Option<RunId>,
    pub(crate) empty_logs: Vec<String>,
    pub(crate) ended: Option<chrono::DateTime<Utc>>,
}

/// A kept log of a task: the blob (full name) and its properties. An empty log has size 0 and
/// no blob behind it.
pub(crate) struct KeptLog {
    pub(crate) container: Container,
    pub(crate) blob: String,
    pub(crate) info: BlobInfo,
}

impl KeptLog {
    /// The log as the node would describe it (`name` relative to the task directory).
    pub(crate) fn entry(&self, name: &str) -> FileEntry {
        FileEntry {
            name: name.to_string(),
            is_directory: false,
            size: self.info.size,
            modified: self.info.last_modified,
            // Storage knows one time; the upload happened when the run ended.
            created: Some(self.info.last_modified),
            mode: "100644".into(),
        }
    }
}

impl AutoStorage {
    /// The signed location a run's (or start task's) logs go to.
    pub(crate) fn log_upload(&self, prefix: String) -> Option<LogUpload> {
        let expiry = Utc::now() + chrono::Duration::from_std(LOG_URL_LIFETIME).unwrap_or_default();
        match self.container_url(LOGS_CONTAINER, "cw", expiry) {
            Ok(container_url) => Some(LogUpload {
                container_url,
                prefix,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no log upload URL; task logs stay on the nodes only");
                None
            }
        }
    }

    /// The kept logs (`stdout.txt`, `stderr.txt`, those that exist) of the task's latest
    /// attempt, by file name: the logs kept under its run, and those it ended with empty (which
    /// are not stored, and read as empty files). For attempts recorded before runs were noted
    /// (`attempt.run` is `None`), the latest attempt in storage that has any. Empty when none
    /// are kept or storage fails.
    pub(crate) async fn kept_logs(
        &self,
        job: &str,
        task: &str,
        attempt: &Attempt,
    ) -> Vec<(String, KeptLog)> {
        let Ok(container) = self.storage.container(LOGS_CONTAINER) else {
            return Vec::new();
        };
        let mut out = match attempt.run {
            Some(run) => self.logs_of_run(&container, job, task, run).await,
            None => self.latest_logs(&container, job, task).await,
        };
        for name in &attempt.empty_logs {
            if KEPT_FILES.contains(&name.as_str()) && !out.iter().any(|(n, _)| n == name) {
                let blob = format!("{}{name}", run_prefix(job, task, attempt.run.unwrap_or(0)));
                out.push((
                    name.clone(),
                    KeptLog {
                        container: container.clone(),
                        info: BlobInfo {
                            name: blob.clone(),
                            size: 0,
                            last_modified: attempt.ended.unwrap_or_else(Utc::now),
                            e_tag: None,
                        },
                        blob,
                    },
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn logs_of_run(
        &self,
        container: &Container,
        job: &str,
        task: &str,
        run: RunId,
    ) -> Vec<(String, KeptLog)> {
        let prefix = run_prefix(job, task, run);
        match container.list(&prefix).await {
            Ok(blobs) => blobs
                .into_iter()
                .filter_map(|b| {
                    let file = b.name.strip_prefix(&prefix)?.to_string();
                    KEPT_FILES.contains(&file.as_str()).then(|| {
                        (
                            file,
                            KeptLog {
                                container: container.clone(),
                                blob: b.name.clone(),
                                info: b,
                            },
                        )
                    })
                })
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "could not list kept task logs");
                Vec::new()
            }
        }
    }

    async fn latest_logs(
        &self,
        container: &Container,
        job: &str,
        task: &str,
    ) -> Vec<(String, KeptLog)> {
        let prefix = format!("jobs/{job}/{task}/");
        let blobs = match container.list(&prefix).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "could not list kept task logs");
                return Vec::new();
            }
        };
        let parsed: Vec<(RunId, String, BlobInfo)> = blobs
            .into_iter()
            .filter_map(|b| {
                let rest = b.name.strip_prefix(&prefix)?;
                let (run, file) = rest.split_once('/')?;
                let run: RunId = run.parse().ok()?;
                let file = file.to_string();
                KEPT_FILES
                    .contains(&file.as_str())
                    .then_some((run, file, b))
            })
            .collect();
        let Some(latest) = parsed.iter().map(|(r, _, _)| *r).max() else {
            return Vec::new();
        };
        parsed
            .into_iter()
            .filter(|(r, _, _)| *r == latest)
            .map(|(_, file, info)| {
                (
                    file,
                    KeptLog {
                        container: container.clone(),
                        blob: info.name.clone(),
                        info,
                    },
                )
            })
            .collect()
    }

    /// Deletes the kept logs of a deleted job (`task: None`) or task: every run's before
    /// `before_run`. Failures are logged; the objects then stay behind.
    pub(crate) async fn discard_logs(&self, job: &str, task: Option<&str>, before_run: RunId) {
        let Ok(container) = self.storage.container(LOGS_CONTAINER) else {
            return;
        };
        let prefix = match task {
            Some(task) => format!("jobs/{job}/{task}/"),
            None => format!("jobs/{job}/"),
        };
        let blobs = match container.list(&prefix).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "could not list the logs of a deleted job or task");
                return;
            }
        };
        let mut deleted = 0usize;
        for b in blobs {
            // jobs/<job>/<task>/<run>/<file>
            let run = b
                .name
                .strip_prefix("jobs/")
                .and_then(|rest| rest.split('/').nth(2))
                .and_then(|run| run.parse::<RunId>().ok());
            if run.is_some_and(|r| r < before_run) {
                match container.delete(&b.name).await {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::warn!(blob = %b.name, error = %e, "could not delete a kept log")
                    }
                }
            }
        }
        tracing::debug!(%prefix, deleted, "kept logs of a deleted job or task deleted");
    }

    /// Deletes the kept logs whose job or task the core no longer has: those a crash left
    /// behind between journaling a delete and carrying out its `DiscardLogs` (effects are not
    /// replayed). Run once at start, in the background. Each run directory is judged against
    /// the core's state after the listing, so logs of a job or task created meanwhile stay.
    pub(crate) async fn sweep_orphaned_logs(&self, engine: &crate::engine::Engine) {
        let Ok(container) = self.storage.container(LOGS_CONTAINER) else {
            return;
        };
        let blobs = match container.list("jobs/").await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the kept task logs to sweep them");
                return;
            }
        };
        let orphaned: Vec<String> = {
            let core = engine.read();
            blobs
                .into_iter()
                .filter(|b| {
                    // jobs/<job>/<task>/<run>/<file>
                    let mut parts = b.name.splitn(5, '/').skip(1);
                    match (parts.next(), parts.next()) {
                        (Some(job), Some(task)) => !core.keeps_logs_of(job, task),
                        _ => false,
                    }
                })
                .map(|b| b.name)
                .collect()
        };
        let mut deleted = 0usize;
        for blob in &orphaned {
            match container.delete(blob).await {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(%blob, error = %e, "could not delete an orphaned kept log")
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "kept logs of deleted jobs and tasks swept");
        }
    }

    /// The kept copy of one file of a task directory (`stdout.txt` or `stderr.txt`).
    pub(crate) async fn kept_log(
        &self,
        job: &str,
        task: &str,
        attempt: &Attempt,
        path: &str,
    ) -> Option<KeptLog> {
        let path = path.trim_start_matches('/');
        if !KEPT_FILES.contains(&path) {
            return None;
        }
        self.kept_logs(job, task, attempt)
            .await
            .into_iter()
            .find(|(name, _)| name == path)
            .map(|(_, log)| log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_storage::StorageConfig;

    #[tokio::test]
    async fn the_latest_attempt_with_logs_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let st =
            AutoStorage::open(&StorageConfig::default(), dir.path(), b"key", "http://x/").unwrap();
        let c = st.storage.container(LOGS_CONTAINER).unwrap();
        let put = |name: String, data: &'static str| {
            let c = c.clone();
            async move { c.put(&name, data.into()).await.unwrap() }
        };
        let legacy = Attempt::default();
        assert!(st.kept_logs("j", "t", &legacy).await.is_empty());
        put(run_prefix("j", "t", 9) + "stdout.txt", "old").await;
        put(run_prefix("j", "t", 10) + "stdout.txt", "new").await;
        put(run_prefix("j", "t", 10) + "stderr.txt", "err").await;
        put(run_prefix("j", "t2", 99) + "stdout.txt", "other task").await;
        put(run_prefix("j", "t", 10) + "wd/out.txt", "not a log").await;
        let logs = st.kept_logs("j", "t", &legacy).await;
        let names: Vec<_> = logs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stderr.txt", "stdout.txt"]);
        let out = st.kept_log("j", "t", &legacy, "stdout.txt").await.unwrap();
        assert_eq!(out.blob, "jobs/j/t/10/stdout.txt");
        assert_eq!(out.entry("stdout.txt").size, 3);
        assert!(st.kept_log("j", "t", &legacy, "wd/out.txt").await.is_none());
        // A known attempt reads its own run only, plus the logs it ended with empty: never an
        // older attempt's.
        let ended = Utc::now();
        let newest = Attempt {
            run: Some(11),
            empty_logs: vec!["stdout.txt".into(), "stderr.txt".into()],
            ended: Some(ended),
        };
        let logs = st.kept_logs("j", "t", &newest).await;
        assert_eq!(logs.len(), 2);
        assert!(logs
            .iter()
            .all(|(_, l)| l.info.size == 0 && l.info.last_modified == ended));
        let older = Attempt {
            run: Some(9),
            empty_logs: vec!["stderr.txt".into()],
            ended: Some(ended),
        };
        let logs = st.kept_logs("j", "t", &older).await;
        let sizes: Vec<_> = logs
            .iter()
            .map(|(n, l)| (n.as_str(), l.info.size))
            .collect();
        assert_eq!(sizes, [("stderr.txt", 0), ("stdout.txt", 3)]);
        let up = st.log_upload(startup_prefix("n1")).unwrap();
        assert!(up
            .container_url
            .starts_with("http://x/openbatch/storage/openbatch-logs?"));
        assert_eq!(up.prefix, "nodes/n1/startup/");
    }

    #[tokio::test]
    async fn discarding_deletes_only_the_runs_before_the_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let st =
            AutoStorage::open(&StorageConfig::default(), dir.path(), b"key", "http://x/").unwrap();
        let c = st.storage.container(LOGS_CONTAINER).unwrap();
        for blob in [
            "jobs/j/t/5/stdout.txt",
            "jobs/j/t/9/stderr.txt",
            "jobs/j/u/6/stdout.txt",
            "jobs/j/t/12/stdout.txt", // a task of the same id, created again after the delete
            "jobs/jj/t/5/stdout.txt", // another job whose id starts the same
        ] {
            c.put(blob, "x".into()).await.unwrap();
        }
        let names = || async {
            let mut n: Vec<String> = c
                .list("jobs/")
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.name)
                .collect();
            n.sort();
            n
        };
        st.discard_logs("j", Some("t"), 10).await;
        assert_eq!(
            names().await,
            [
                "jobs/j/t/12/stdout.txt",
                "jobs/j/u/6/stdout.txt",
                "jobs/jj/t/5/stdout.txt"
            ]
        );
        st.discard_logs("j", None, 10).await;
        assert_eq!(
            names().await,
            ["jobs/j/t/12/stdout.txt", "jobs/jj/t/5/stdout.txt"]
        );
    }
}
