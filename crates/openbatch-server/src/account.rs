//! The account: its name and key, created on first start, and the credentials file that the
//! CLI and scripts read (`DIR/credentials.json`, mode 0600). Keep that file's shape stable.

use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use openbatch_store::Store;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// `DIR/credentials.json`: `{"accountName", "accountKey", "endpoint"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub account_name: String,
    pub account_key: String,
    pub endpoint: String,
}

pub(crate) const CREDENTIALS_FILE: &str = "credentials.json";

/// The account stored in the database, created with a random 256-bit key on first start.
pub(crate) fn load_or_create(
    store: &mut Store,
    default_name: &str,
) -> anyhow::Result<(String, String)> {
    let name = store.get("account/name")?;
    let key = store.get("account/key")?;
    if let (Some(name), Some(key)) = (name, key) {
        return Ok((name, key));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let key = base64::engine::general_purpose::STANDARD.encode(raw);
    store.set("account/name", default_name)?;
    store.set("account/key", &key)?;
    tracing::info!(account = default_name, "created the account");
    Ok((default_name.to_string(), key))
}

/// Write the credentials file atomically with mode 0600.
pub(crate) fn write_credentials(dir: &Path, creds: &Credentials) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(".credentials.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(creds)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(CREDENTIALS_FILE))?;
    Ok(())
}

/// Read `DIR/credentials.json`.
pub fn read_credentials(data_dir: &Path) -> anyhow::Result<Credentials> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (has the server been started with this --data-dir?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
