//! The signed-URL contract of the server's own blob endpoint (the local backend, served over
//! HTTP so that nodes on other machines can reach it).
//!
//! A signed container URL looks like an Azure container SAS URL, so that nodes (and the Azure
//! Storage SDKs) treat it the same way:
//!
//! ```text
//! {server}/openbatch/storage/{container}?sv=openbatch1&sr=c&sp=rl&se=2026-01-02T03:04:05Z&sig=...
//! ```
//!
//! * `sp`: the permissions, in Azure's order: `r` read, `c` create, `w` write, `l` list.
//! * `se`: the expiry, UTC, to the second (RFC 3339).
//! * `sig`: base64 of HMAC-SHA256 over `"openbatch-storage-1\n{sp}\n{se}\n{container}"`, keyed
//!   with the server's signing key (derived from the account key). The signature covers the
//!   container, so it authorizes every blob in it, like an Azure container SAS.
//!
//! Everything here is pure: `now` is an argument.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "openbatch1";
const DOMAIN: &str = "openbatch-storage-1";

/// One permission a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Create,
    Write,
    List,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Read => 'r',
            Permission::Create => 'c',
            Permission::Write => 'w',
            Permission::List => 'l',
        }
    }
}

/// Why a signed request was refused. Each maps to Azure Storage's code for the same case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the request is not signed: it needs the sv, sp, se and sig query parameters of a signed container URL")]
    Missing,
    #[error("the signature does not match this container and these parameters")]
    BadSignature,
    #[error("the signed URL expired at {0}")]
    Expired(String),
    #[error("the expiry time '{0}' is not an RFC 3339 UTC time")]
    BadExpiry(String),
    #[error("the signed URL does not grant the '{0}' permission (it grants '{1}')")]
    Permission(char, String),
}

impl SasError {
    /// Azure Storage's error code for this case.
    pub fn code(&self) -> &'static str {
        match self {
            SasError::Permission(..) => "AuthorizationPermissionMismatch",
            _ => "AuthenticationFailed",
        }
    }
}

/// Signs and verifies container URLs of the server's blob endpoint.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

impl UrlSigner {
    /// A signer whose key is derived from `secret` (the account key's bytes), so that the
    /// URL signatures never reveal anything about the account key itself and rotating the
    /// account key also revokes every signed URL.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(DOMAIN.as_bytes());
        UrlSigner {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, permissions: &str, expiry: &str, container: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{DOMAIN}\n{permissions}\n{expiry}\n{container}").as_bytes());
        mac
    }

    /// The query string (without `?`) that authorizes `permissions` on `container` until
    /// `expiry`. Unknown permission letters are dropped; the rest are put in Azure's order.
    pub fn sign(&self, container: &str, permissions: &str, expiry: DateTime<Utc>) -> String {
        let sp = canonical_permissions(permissions);
        let se = expiry.to_rfc3339_opts(SecondsFormat::Secs, true);
        let sig = base64::engine::general_purpose::STANDARD
            .encode(self.mac(&sp, &se, container).finalize().into_bytes());
        format!(
            "sv={VERSION}&sr=c&sp={sp}&se={}&sig={}",
            encode(&se),
            encode(&sig)
        )
    }

    /// Checks a request's (already percent-decoded) query parameters against `container`.
    /// Parameters other than the signed ones (`restype`, `comp`, `prefix`, ...) are ignored.
    pub fn verify<'a>(
        &self,
        container: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: DateTime<Utc>,
        need: Permission,
    ) -> Result<(), SasError> {
        let (mut sp, mut se, mut sig, mut sv) = (None, None, None, None);
        for (k, v) in params {
            match k {
                "sp" => sp = Some(v),
                "se" => se = Some(v),
                "sig" => sig = Some(v),
                "sv" => sv = Some(v),
                _ => {}
            }
        }
        let (Some(sp), Some(se), Some(sig), Some(VERSION)) = (sp, se, sig, sv) else {
            return Err(SasError::Missing);
        };
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|_| SasError::BadSignature)?;
        self.mac(sp, se, container)
            .verify_slice(&sig)
            .map_err(|_| SasError::BadSignature)?;
        let expiry = DateTime::parse_from_rfc3339(se)
            .map_err(|_| SasError::BadExpiry(se.to_string()))?
            .with_timezone(&Utc);
        if now >= expiry {
            return Err(SasError::Expired(se.to_string()));
        }
        if !sp.contains(need.letter()) {
            return Err(SasError::Permission(need.letter(), sp.to_string()));
        }
        Ok(())
    }
}

/// Permission letters in Azure's order (`racwdl`), known ones only, each once.
pub fn canonical_permissions(permissions: &str) -> String {
    "racwdl"
        .chars()
        .filter(|c| permissions.contains(*c))
        .collect()
}

use crate::encode_query_value as encode;

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (
                    k.to_string(),
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8()
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect()
    }

    fn check(
        s: &UrlSigner,
        container: &str,
        query: &str,
        now: DateTime<Utc>,
        need: Permission,
    ) -> Result<(), SasError> {
        let p = params(query);
        s.verify(
            container,
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            now,
            need,
        )
    }

    #[test]
    fn a_signed_url_authorizes_what_it_grants_until_it_expires() {
        let s = UrlSigner::new(b"account key");
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let q = s.sign("inputs", "lr", now + chrono::Duration::hours(1));
        assert!(q.contains("sp=rl"), "{q}");
        assert_eq!(check(&s, "inputs", &q, now, Permission::Read), Ok(()));
        assert_eq!(check(&s, "inputs", &q, now, Permission::List), Ok(()));
        assert_eq!(
            check(&s, "inputs", &q, now, Permission::Write),
            Err(SasError::Permission('w', "rl".into()))
        );
        assert!(matches!(
            check(
                &s,
                "inputs",
                &q,
                now + chrono::Duration::hours(2),
                Permission::Read
            ),
            Err(SasError::Expired(_))
        ));
    }

    #[test]
    fn signatures_are_bound_to_the_container_the_key_and_the_parameters() {
        let s = UrlSigner::new(b"account key");
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let q = s.sign("inputs", "r", now + chrono::Duration::hours(1));
        assert_eq!(
            check(&s, "other", &q, now, Permission::Read),
            Err(SasError::BadSignature)
        );
        assert_eq!(
            check(
                &UrlSigner::new(b"another key"),
                "inputs",
                &q,
                now,
                Permission::Read
            ),
            Err(SasError::BadSignature)
        );
        let widened = q.replace("sp=r", "sp=rwl");
        assert_eq!(
            check(&s, "inputs", &widened, now, Permission::Write),
            Err(SasError::BadSignature)
        );
        assert_eq!(
            check(&s, "inputs", "restype=container", now, Permission::Read),
            Err(SasError::Missing)
        );
        assert_eq!(
            check(
                &s,
                "inputs",
                "sv=openbatch1&sp=r&se=x&sig=%%%",
                now,
                Permission::Read
            ),
            Err(SasError::BadSignature)
        );
    }

    #[test]
    fn permissions_are_put_in_azure_order() {
        assert_eq!(canonical_permissions("lwrx"), "rwl");
        assert_eq!(canonical_permissions(""), "");
    }
}
