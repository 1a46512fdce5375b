//! Durability for openbatch: an append-only journal of accepted inputs plus snapshots, in
//! SQLite (bundled, WAL).
//!
//! The store deals in opaque bytes: it knows nothing of pools or tasks. The server appends the
//! serialized inputs that changed the core, many at once in one transaction (group commit), and
//! only answers its clients after [`Store::append`] returned. On start it loads the newest
//! snapshot and the journal records after it, and replays them.
//!
//! Not for: queries over the state (the core answers those from memory), caching, or anything
//! that needs a schema of the domain.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// Bump when the layout changes; [`Store::open`] migrates older layouts forward.
pub const FORMAT_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the data directory was written by a newer openbatch (format {found}, this build reads up to {FORMAT_VERSION})")]
    TooNew { found: i64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A snapshot and the journal records written after it, in order.
#[derive(Debug, Default)]
pub struct Loaded {
    pub snapshot: Option<(u64, Vec<u8>)>,
    pub records: Vec<(u64, Vec<u8>)>,
}

pub struct Store {
    conn: Connection,
    /// Whether commits are synced to disk (`PRAGMA synchronous = FULL`) right now.
    synced_commits: bool,
}

impl Store {
    /// Open (or create) the database at `path` and bring its layout up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // WAL lets readers run beside the one writer; FULL makes each commit survive power
        // loss, and group commit makes that affordable.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut store = Self {
            conn,
            synced_commits: true,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        let found: Option<i64> = self
            .conn
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'format_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            Some(v) if v > FORMAT_VERSION => return Err(StoreError::TooNew { found: v }),
            Some(_) => {}
            None => {
                let tx = self.conn.transaction()?;
                tx.execute_batch(
                    "CREATE TABLE journal (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
                     CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, body BLOB NOT NULL);
                     CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
                )?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('format_version', ?1)",
                    params![FORMAT_VERSION.to_string()],
                )?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    /// Append records in one transaction, durably (it, and every commit before it, survives
    /// power loss once this returns); returns the sequence number of the last one.
    pub fn append<B: AsRef<[u8]>>(&mut self, records: &[B]) -> Result<u64> {
        self.append_with(records, true)
    }

    /// [`Store::append`], but with `synced: false` the commit is not synced to disk: it survives
    /// a crash of this process (it is in the operating system's cache), and power loss only
    /// after the next synced commit or [`Store::sync`]. One sync then covers many commits.
    pub fn append_with<B: AsRef<[u8]>>(&mut self, records: &[B], synced: bool) -> Result<u64> {
        self.set_synced_commits(synced)?;
        let tx = self.conn.transaction()?;
        let mut last = 0;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO journal (body) VALUES (?1)")?;
            for r in records {
                stmt.execute(params![r.as_ref()])?;
                last = tx.last_insert_rowid() as u64;
            }
        }
        tx.commit()?;
        Ok(last)
    }

    /// Make every commit so far survive power loss: a small synced commit, which in WAL mode
    /// syncs the log with all the commits before it.
    pub fn sync(&mut self) -> Result<()> {
        self.set_synced_commits(true)?;
        self.conn.execute(
            "INSERT INTO kv (key, value) VALUES ('journal_synced_at', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            // A value that changes, so that the commit writes a page and syncs.
            params![std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
                .to_string()],
        )?;
        Ok(())
    }

    fn set_synced_commits(&mut self, synced: bool) -> Result<()> {
        if self.synced_commits != synced {
            let mode = if synced { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode)?;
            self.synced_commits = synced;
        }
        Ok(())
    }

    /// The newest snapshot and every record after it.
    pub fn load(&self) -> Result<Loaded> {
        let snapshot: Option<(u64, Vec<u8>)> = self
            .conn
            .query_row("SELECT seq, body FROM snapshot WHERE id = 1", [], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?;
        let from = snapshot.as_ref().map(|s| s.0).unwrap_or(0) as i64;
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM journal WHERE seq > ?1 ORDER BY seq")?;
        let records = stmt
            .query_map(params![from], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Loaded { snapshot, records })
    }

    /// Replace the snapshot with one that covers the journal up to `seq`, and drop those
    /// records, atomically.
    pub fn write_snapshot(&mut self, seq: u64, body: &[u8]) -> Result<()> {
        self.set_synced_commits(true)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO snapshot (id, seq, body) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, body = excluded.body",
            params![seq as i64, body],
        )?;
        tx.execute("DELETE FROM journal WHERE seq <= ?1", params![seq as i64])?;
        tx.commit()?;
        Ok(())
    }

    /// The number of journal records after the snapshot.
    pub fn journal_len(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM journal", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_synced_commits(true)?;
        self.conn.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn delete(&mut self, key: &str) -> Result<()> {
        self.set_synced_commits(true)?;
        self.conn
            .execute("DELETE FROM kv WHERE key = ?1", params![key])?;
        Ok(())
    }

    /// Keys with a prefix, with their values.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt
            .query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_survives_reopen_and_snapshot_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.append(&[b"a".to_vec(), b"b".to_vec()]).unwrap(), 2);
            assert_eq!(s.append(&[b"c"]).unwrap(), 3);
        }
        let mut s = Store::open(&path).unwrap();
        let l = s.load().unwrap();
        assert!(l.snapshot.is_none());
        assert_eq!(
            l.records.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        s.write_snapshot(2, b"snap").unwrap();
        s.append(&[b"d"]).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.snapshot, Some((2, b"snap".to_vec())));
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.records[0], (3, b"c".to_vec()));
        assert_eq!(l.records[1], (4, b"d".to_vec()));
    }

    #[test]
    fn unsynced_commits_are_kept_and_synced_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let synchronous = |s: &Store| -> i64 {
            s.conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(synchronous(&s), 2, "FULL by default");
            assert_eq!(s.append_with(&[b"a"], false).unwrap(), 1);
            assert_eq!(synchronous(&s), 1, "NORMAL for an unsynced commit");
            assert_eq!(s.append_with(&[b"b"], false).unwrap(), 2);
            s.sync().unwrap();
            assert_eq!(synchronous(&s), 2, "FULL again after a sync");
            s.append_with(&[b"c"], false).unwrap();
            s.set("k", "v").unwrap();
            assert_eq!(synchronous(&s), 2, "other writes are always synced");
        }
        let l = Store::open(&path).unwrap().load().unwrap();
        assert_eq!(
            l.records.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
    }

    #[test]
    fn kv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        s.set("token/a", "1").unwrap();
        s.set("token/b", "2").unwrap();
        s.set("other", "3").unwrap();
        assert_eq!(s.get("token/a").unwrap().as_deref(), Some("1"));
        assert_eq!(s.scan("token/").unwrap().len(), 2);
        s.delete("token/a").unwrap();
        assert_eq!(s.get("token/a").unwrap(), None);
    }

    #[test]
    fn refuses_newer_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute(
            "UPDATE meta SET value = '99' WHERE key = 'format_version'",
            [],
        )
        .unwrap();
        drop(c);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 99 })
        ));
    }
}
