//! Azure Storage service SAS for a container, signed with the account key: how the server
//! hands nodes a container URL of an Azure (or Azurite) auto-storage account.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sas::canonical_permissions;
use crate::StorageError;

/// The storage service version the SAS is signed for: the first with `ses` (encryption
/// scope) in the string to sign, which every current service and Azurite accept.
const SIGNED_VERSION: &str = "2020-12-06";

/// The query string (without `?`) of a service SAS on `container` (`sr=c`).
pub fn container_sas(
    account: &str,
    key: &str,
    container: &str,
    permissions: &str,
    expiry: DateTime<Utc>,
) -> Result<String, StorageError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| StorageError::Config("the Azure storage key is not base64".into()))?;
    let sp = canonical_permissions(permissions);
    let se = expiry.to_rfc3339_opts(SecondsFormat::Secs, true);
    // The fields of the string to sign, in the order the service defines for this version:
    // permissions, start, expiry, resource, identifier, IP, protocol, version, resource type,
    // snapshot time, encryption scope, then the five response-header overrides.
    let resource = format!("/blob/{account}/{container}");
    let fields = [
        sp.as_str(),
        "",
        se.as_str(),
        resource.as_str(),
        "",
        "",
        "",
        SIGNED_VERSION,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(fields.join("\n").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let enc = crate::encode_query_value;
    Ok(format!(
        "sv={SIGNED_VERSION}&sr=c&sp={sp}&se={}&sig={}",
        enc(&se),
        enc(&sig)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sas_carries_what_it_grants_and_a_signature() {
        let q = container_sas(
            "devstoreaccount1",
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
            "inputs",
            "lr",
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )
        .unwrap();
        assert!(q.starts_with("sv=2020-12-06&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig="));
        assert!(container_sas("a", "not base64!", "c", "r", Utc::now()).is_err());
    }
}
