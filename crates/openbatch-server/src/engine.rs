//! The engine: the core behind a mutex, the group-commit journal writer, and effect dispatch.
//!
//! `submit` applies an input to the core under the lock (so inputs are ordered), hands the
//! serialized input to the committer thread and waits for it to be durable. The committer
//! takes everything queued, writes it in one SQLite transaction, and only then releases the
//! replies and the effects, in apply order. Many concurrent requests share one fsync.
//!
//! Agents' reports (a task ended) go through `submit_report`: their commit is not synced at
//! once. The agent keeps a report until it is acknowledged, and the acknowledgement waits for
//! the sync, so a report lost with the machine is sent again. Their sync comes with the next
//! synced commit, or `REPORT_SYNC_WITHIN` after the first unsynced one: while thousands of
//! short tasks end, the journal syncs a few dozen times a second, not once per task.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::Context;
use chrono::{DateTime, Utc};
use openbatch_core::{Applied, Core, CoreError, Effect, Input, Limits};
use openbatch_store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Journal records between snapshots. A snapshot serializes the whole state under the lock,
/// so this trades replay time after a crash against pauses while running.
const SNAPSHOT_EVERY: u64 = 50_000;

/// Most records in one transaction; beyond this, later submitters wait for the next one.
const MAX_BATCH: usize = 4096;

/// The longest an agent's report waits for its commit to be synced (see the module docs).
const REPORT_SYNC_WITHIN: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Deserialize)]
struct Record {
    now: DateTime<Utc>,
    input: Input,
}

/// The same JSON as [`Record`], serialized from a borrowed input so the hot path does not
/// clone every input (a task collection can be large) just to journal it.
#[derive(Serialize)]
struct RecordRef<'a> {
    now: DateTime<Utc>,
    input: &'a Input,
}

enum Commit {
    Input {
        record: Vec<u8>,
        effects: Vec<Effect>,
        done: Option<oneshot::Sender<()>>,
        /// Its sync may wait (an agent's report; see the module docs).
        report: bool,
    },
    Snapshot(Vec<u8>),
}

impl Commit {
    fn may_wait_for_sync(&self) -> bool {
        matches!(self, Commit::Input { report: true, .. })
    }
}

pub(crate) struct Engine {
    core: Mutex<Core>,
    commits: std::sync::mpsc::Sender<Commit>,
    /// Effects that may run before durability go straight here (see
    /// `Effect::safe_before_durable`); the committer sends the rest after the commit.
    early: mpsc::UnboundedSender<Effect>,
    since_snapshot: Mutex<u64>,
    /// What the committer did, for `/metrics`.
    journal: Arc<crate::metrics::JournalStats>,
}

/// Effects released after their input became durable.
pub(crate) type EffectRx = mpsc::UnboundedReceiver<Effect>;

/// A submitted input whose reply waits on durability.
pub(crate) struct Pending {
    pub(crate) applied: Result<Applied, CoreError>,
    durable: Option<oneshot::Receiver<()>>,
}

impl Pending {
    /// Wait until the input is in the journal, then return the core's answer.
    pub(crate) async fn durable(self) -> Result<Applied, CoreError> {
        if let Some(rx) = self.durable {
            // A dropped sender means the committer died; the server is going down anyway.
            let _ = rx.await;
        }
        self.applied
    }
}

impl Engine {
    /// Open the store, restore the core from snapshot + journal, and start the committer.
    pub(crate) fn open(store: Store, limits: Limits) -> anyhow::Result<(Arc<Self>, EffectRx)> {
        let loaded = store.load().context("reading the journal")?;
        let mut core = match loaded.snapshot {
            Some((_, body)) => {
                let mut c: Core = serde_json::from_slice(&body).context("decoding the snapshot")?;
                c.rebuild_indexes();
                c
            }
            None => Core::new(limits.clone()),
        };
        core.set_limits(limits);
        let replayed = loaded.records.len();
        for (seq, body) in loaded.records {
            let rec: Record = serde_json::from_slice(&body)
                .with_context(|| format!("decoding journal record {seq}"))?;
            // Effects of replayed inputs were carried out before the restart (or are
            // reconciled when agents reconnect); the state is what matters here.
            let _ = core.apply(rec.input, rec.now);
        }
        // `/metrics` counts the task events this process sees, not the replayed ones.
        core.reset_task_events();
        tracing::info!(replayed, "state restored from the journal");
        let (tx, rx) = std::sync::mpsc::channel::<Commit>();
        let (fx_tx, fx_rx) = mpsc::unbounded_channel();
        let journal = Arc::new(crate::metrics::JournalStats::new());
        thread::Builder::new()
            .name("journal".into())
            .spawn({
                let fx_tx = fx_tx.clone();
                let journal = journal.clone();
                move || committer(store, rx, fx_tx, &journal)
            })
            .context("starting the journal thread")?;
        Ok((
            Arc::new(Self {
                core: Mutex::new(core),
                commits: tx,
                early: fx_tx,
                since_snapshot: Mutex::new(replayed as u64),
                journal,
            }),
            fx_rx,
        ))
    }

    /// Read access to the core. Hold it briefly: every write waits for it.
    pub(crate) fn read(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply an input now; durability is awaited through the returned [`Pending`].
    pub(crate) fn submit_nowait(&self, input: Input) -> Pending {
        self.submit_inner(input, false)
    }

    /// [`Engine::submit_nowait`] for an agent's report, which the agent sends again until it is
    /// acknowledged: its commit may be synced a little later, together with others.
    pub(crate) fn submit_report(&self, input: Input) -> Pending {
        self.submit_inner(input, true)
    }

    fn submit_inner(&self, input: Input, report: bool) -> Pending {
        let now = Utc::now();
        let record = serde_json::to_vec(&RecordRef { now, input: &input });
        let mut core = self.read();
        let applied = core.apply(input, now);
        let Ok(applied_ok) = &applied else {
            return Pending {
                applied,
                durable: None,
            };
        };
        // Runs start now, under the lock so that early effects keep their order; the rest wait
        // for the commit. This keeps fsync latency out of the path from one task's end to the
        // next task's start on the same slot.
        let (early, effects): (Vec<Effect>, Vec<Effect>) = applied_ok
            .effects
            .iter()
            .cloned()
            .partition(Effect::safe_before_durable);
        for e in early {
            let _ = self.early.send(e);
        }
        if !applied_ok.changed && effects.is_empty() {
            return Pending {
                applied,
                durable: None,
            };
        }
        let (done_tx, done_rx) = oneshot::channel();
        let record = match (applied_ok.changed, record) {
            (true, Ok(r)) => r,
            (true, Err(e)) => {
                tracing::error!(error = %e, "an input could not be serialized for the journal");
                Vec::new()
            }
            (false, _) => Vec::new(),
        };
        let journaled = !record.is_empty();
        let _ = self.commits.send(Commit::Input {
            record,
            effects,
            done: Some(done_tx),
            report,
        });
        if journaled {
            let mut n = self
                .since_snapshot
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *n += 1;
            if *n >= SNAPSHOT_EVERY {
                *n = 0;
                match serde_json::to_vec(&*core) {
                    Ok(body) => {
                        let _ = self.commits.send(Commit::Snapshot(body));
                    }
                    Err(e) => tracing::error!(error = %e, "snapshot serialization failed"),
                }
            }
        }
        drop(core);
        Pending {
            applied,
            durable: Some(done_rx),
        }
    }

    /// The journal's counters (`/metrics`).
    pub(crate) fn journal_stats(&self) -> &crate::metrics::JournalStats {
        &self.journal
    }

    pub(crate) async fn submit(&self, input: Input) -> Result<Applied, CoreError> {
        self.submit_nowait(input).durable().await
    }

    /// Write a snapshot now (on clean shutdown), so the next start replays nothing.
    pub(crate) fn snapshot_now(&self) {
        let core = self.read();
        if let Ok(body) = serde_json::to_vec(&*core) {
            let _ = self.commits.send(Commit::Snapshot(body));
        }
        *self
            .since_snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = 0;
    }

    /// Wait until everything submitted so far is durable.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = self.commits.send(Commit::Input {
            record: Vec::new(),
            effects: Vec::new(),
            done: Some(tx),
            report: false,
        });
        let _ = rx.await;
    }
}

fn committer(
    mut store: Store,
    rx: std::sync::mpsc::Receiver<Commit>,
    effects: mpsc::UnboundedSender<Effect>,
    stats: &crate::metrics::JournalStats,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut last_seq = 0u64;
    // Committed but not yet synced (reports only), in order: released with the next sync.
    let mut unsynced: Vec<(Vec<Effect>, Option<oneshot::Sender<()>>)> = Vec::new();
    let mut sync_by: Option<std::time::Instant> = None;
    // Whether commits were written that are not synced yet.
    let mut dirty = false;
    loop {
        let first = match sync_by {
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => break,
            },
            Some(at) => {
                match rx.recv_timeout(at.saturating_duration_since(std::time::Instant::now())) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => {
                        if std::mem::take(&mut dirty) {
                            sync(&mut store, stats);
                        }
                        release(&mut unsynced, &effects);
                        sync_by = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        // One commit that must be durable now syncs the reports before it too.
        let synced = !batch.iter().all(Commit::may_wait_for_sync);
        // Records up to the first snapshot go in one transaction; a snapshot is written
        // after the records before it, so it always covers exactly the journal up to it.
        let mut records: Vec<Vec<u8>> = Vec::new();
        for c in batch {
            match c {
                Commit::Input {
                    record,
                    effects,
                    done,
                    ..
                } => {
                    if !record.is_empty() {
                        records.push(record);
                    }
                    unsynced.push((effects, done));
                }
                Commit::Snapshot(body) => {
                    last_seq = flush_records(&mut store, &mut records, last_seq, true, stats);
                    match store.write_snapshot(last_seq, &body) {
                        Ok(()) => stats.snapshot_written(),
                        Err(e) => {
                            stats.failed();
                            tracing::error!(error = %e, "writing a snapshot failed; the journal keeps everything");
                        }
                    }
                }
            }
        }
        let wrote = !records.is_empty();
        last_seq = flush_records(&mut store, &mut records, last_seq, synced, stats);
        if synced {
            // A synced commit syncs the log with every commit before it; without one, sync.
            if !wrote && dirty {
                sync(&mut store, stats);
            }
            dirty = false;
            release(&mut unsynced, &effects);
            sync_by = None;
        } else {
            dirty |= wrote;
            sync_by.get_or_insert_with(|| std::time::Instant::now() + REPORT_SYNC_WITHIN);
        }
    }
    // The server is going down: what was committed is made durable before it goes.
    if dirty {
        sync(&mut store, stats);
    }
    release(&mut unsynced, &effects);
}

/// Replies and effects of durable commits, in order.
fn release(
    durable: &mut Vec<(Vec<Effect>, Option<oneshot::Sender<()>>)>,
    effects: &mpsc::UnboundedSender<Effect>,
) {
    for (fx, done) in durable.drain(..) {
        for e in fx {
            let _ = effects.send(e);
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Sync the journal, retrying on failure like [`flush_records`].
fn sync(store: &mut Store, stats: &crate::metrics::JournalStats) {
    until_ok("sync", stats, || store.sync());
    stats.synced();
}

/// Append records, retrying on failure (see [`until_ok`]).
fn flush_records(
    store: &mut Store,
    records: &mut Vec<Vec<u8>>,
    last: u64,
    synced: bool,
    stats: &crate::metrics::JournalStats,
) -> u64 {
    if records.is_empty() {
        return last;
    }
    let seq = until_ok("write", stats, || {
        let started = std::time::Instant::now();
        let seq = store.append_with(records, synced)?;
        stats.committed(records.len(), synced, started.elapsed());
        Ok(seq)
    });
    records.clear();
    seq
}

/// Run a journal operation until it succeeds: nothing is acknowledged before it is durable,
/// so a failing disk stalls the service (and says so) rather than losing accepted work.
fn until_ok<T>(
    what: &str,
    stats: &crate::metrics::JournalStats,
    mut op: impl FnMut() -> openbatch_store::Result<T>,
) -> T {
    let mut delay = std::time::Duration::from_millis(50);
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) => {
                stats.failed();
                tracing::error!(error = %e, "journal {what} failed; retrying (is the disk full?)");
                thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_job(id: &str) -> Input {
        let spec =
            serde_json::from_value(serde_json::json!({"id": id, "poolInfo": {"poolId": "p"}}))
                .expect("a job spec");
        Input::CreateJob(Box::new(spec))
    }

    #[tokio::test]
    async fn a_report_waits_for_its_sync_and_a_synced_commit_takes_it_along() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (engine, _effects) =
            Engine::open(Store::open(&path).unwrap(), Limits::default()).unwrap();

        // Alone, a report is released by the sync timer, not before.
        let started = std::time::Instant::now();
        engine
            .submit_report(create_job("a"))
            .durable()
            .await
            .unwrap();
        assert!(started.elapsed() >= REPORT_SYNC_WITHIN);

        // A commit that must be durable now syncs the report before it, and both are
        // released in order.
        let mut report = engine.submit_report(create_job("b"));
        engine
            .submit_nowait(create_job("c"))
            .durable()
            .await
            .unwrap();
        let rx = report
            .durable
            .as_mut()
            .expect("the report waits for a commit");
        assert!(
            rx.try_recv().is_ok(),
            "the report was released with the synced commit"
        );

        // Everything is in the journal, in order.
        let records = Store::open(&path).unwrap().load().unwrap().records;
        let ids: Vec<String> = records
            .iter()
            .map(|(_, body)| {
                let rec: Record = serde_json::from_slice(body).unwrap();
                match rec.input {
                    Input::CreateJob(spec) => spec.id,
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
