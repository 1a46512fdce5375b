//! Join tokens: what a node agent must present to connect.
//!
//! Only the account owner can mint one (`POST /openbatch/jointokens`, signed with the account
//! key). The server keeps only a SHA-256 of each secret. Local nodes get the server's own
//! local token through their environment, never on a command line.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use openbatch_store::Store;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinToken {
    pub(crate) id: String,
    pub(crate) created: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    created: chrono::DateTime<chrono::Utc>,
    description: Option<String>,
    sha256: String,
}

/// Who a presented token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenOwner {
    /// The server's own local provider.
    Local,
    /// A join token minted by the account owner.
    Join(String),
}

pub(crate) struct Tokens {
    store: Mutex<Store>,
}

fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn digest(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tokens {
    /// A second connection to the database, for this small table beside the journal.
    pub(crate) fn open(db: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            store: Mutex::new(Store::open(db).context("opening the token table")?),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local provider's token, created once and kept, so agents adopted after a restart
    /// can still reconnect.
    pub(crate) fn local_token(&self) -> anyhow::Result<String> {
        let mut s = self.store();
        if let Some(t) = s.get("localtoken")? {
            return Ok(t);
        }
        let t = format!("local_{}", random_secret());
        s.set("localtoken", &t)?;
        Ok(t)
    }

    /// Mint a join token; the secret is returned once and never stored.
    pub(crate) fn create(
        &self,
        description: Option<String>,
    ) -> anyhow::Result<(JoinToken, String)> {
        let mut raw = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let secret = random_secret();
        let token = format!("obt_{id}_{secret}");
        let created = chrono::Utc::now();
        let stored = Stored {
            created,
            description: description.clone(),
            sha256: digest(&secret),
        };
        self.store()
            .set(&format!("jointoken/{id}"), &serde_json::to_string(&stored)?)?;
        Ok((
            JoinToken {
                id,
                created,
                description,
            },
            token,
        ))
    }

    pub(crate) fn list(&self) -> anyhow::Result<Vec<JoinToken>> {
        let rows = self.store().scan("jointoken/")?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let s: Stored = serde_json::from_str(&v).ok()?;
                Some(JoinToken {
                    id: k.trim_start_matches("jointoken/").to_string(),
                    created: s.created,
                    description: s.description,
                })
            })
            .collect())
    }

    /// Revoke a join token; returns whether it existed.
    pub(crate) fn revoke(&self, id: &str) -> anyhow::Result<bool> {
        let key = format!("jointoken/{id}");
        let mut s = self.store();
        let existed = s.get(&key)?.is_some();
        s.delete(&key)?;
        Ok(existed)
    }

    /// Check a presented token.
    pub(crate) fn check(&self, presented: &str, local: &str) -> Option<TokenOwner> {
        if constant_time_eq(presented.as_bytes(), local.as_bytes()) {
            return Some(TokenOwner::Local);
        }
        let rest = presented.strip_prefix("obt_")?;
        let (id, secret) = rest.split_once('_')?;
        let v = self.store().get(&format!("jointoken/{id}")).ok()??;
        let s: Stored = serde_json::from_str(&v).ok()?;
        constant_time_eq(digest(secret).as_bytes(), s.sha256.as_bytes())
            .then(|| TokenOwner::Join(id.to_string()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_check_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(&dir.path().join("db")).unwrap();
        let local = t.local_token().unwrap();
        assert_eq!(t.local_token().unwrap(), local, "stable across calls");
        let (info, secret) = t.create(Some("lab".into())).unwrap();
        assert_eq!(
            t.check(&secret, &local),
            Some(TokenOwner::Join(info.id.clone()))
        );
        assert_eq!(t.check(&local, &local), Some(TokenOwner::Local));
        assert_eq!(t.check("obt_nope_x", &local), None);
        assert_eq!(t.check(&format!("{secret}x"), &local), None);
        assert_eq!(t.list().unwrap().len(), 1);
        assert!(t.revoke(&info.id).unwrap());
        assert_eq!(t.check(&secret, &local), None);
    }
}
