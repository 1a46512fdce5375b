//! Shared Key request signing and verification, for both ends of the wire.
//!
//! Azure Batch authenticates a request with
//! `Authorization: SharedKey <account>:<base64(HMAC-SHA256(key, StringToSign))>`. The client
//! signs; the server rebuilds the same string from what it received and compares. Both sides
//! live here so that they cannot drift apart: `openbatch-client` calls
//! [`authorization_header`], the server calls [`verify`].
//!
//! The string to sign is built exactly as the Python SDK's `BatchSharedKeyAuthPolicy` builds
//! it (azure-batch 15.1.0 `_patch.py`; 14.x is the same), since that SDK is the client we
//! must accept byte for byte:
//!
//! ```text
//! VERB\n
//! content-encoding\n content-language\n content-length\n content-md5\n content-type\n
//! date\n if-modified-since\n if-match\n if-none-match\n if-unmodified-since\n range\n
//! <lowercase name>:<value>\n       for every header whose name contains "ocp-", sorted
//! /<account><raw path>
//! \n<name>:<value>                  for every query parameter, sorted by decoded name
//! ```
//!
//! This module is not for deciding what a failure looks like on the wire: [`AuthError`] gives
//! the detail text and a suggested status, and the server builds the error body.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The headers whose values make up the fixed part of the string to sign, in this order.
/// A missing header contributes an empty line.
const SIGNED_HEADERS: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The replay window the real service enforces on `ocp-date`: 15 minutes either way.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A request as seen for signing: method, the raw (still percent-encoded) path, the raw query
/// string (without '?'), and its headers as (name, value) pairs (names in any case).
#[derive(Debug, Clone, Copy)]
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> RequestToSign<'a> {
    /// The first non-empty value of a header, matching the name case-insensitively.
    ///
    /// Empty values count as absent because the SDK drops them before signing.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, v)| n.eq_ignore_ascii_case(name) && !v.is_empty())
            .map(|&(_, v)| v)
    }

    /// The `content-length` line the SDK signs: the header as given, or `"0"` for a method
    /// other than GET/HEAD that has no Content-Length (the SDK adds that `"0"` itself,
    /// before the transport decides whether to send the header).
    fn signed_content_length(&self) -> &'a str {
        match self.header("content-length") {
            Some(v) => v,
            None if self.method == "GET" || self.method == "HEAD" => "",
            None => "0",
        }
    }
}

/// Why a request failed Shared Key authentication (or could not be signed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all. The server answers 401.
    #[error("the request has no Authorization header")]
    MissingAuthorization,
    /// An `Authorization` header that is not `SharedKey <account>:<signature>`.
    #[error("the Authorization header is not of the form 'SharedKey <account>:<signature>'")]
    MalformedAuthorization { value: String },
    /// The header names an account this server does not serve.
    #[error(
        "the Authorization header names account '{account}', which this server does not serve"
    )]
    UnknownAccount { account: String },
    /// Neither `ocp-date` nor `Date` is present.
    #[error("the request has neither an ocp-date nor a Date header")]
    MissingDate,
    /// `ocp-date` (or `Date`) is not an RFC 1123 date.
    #[error("the request date '{value}' is not an RFC 1123 date")]
    UnparseableDate { value: String },
    /// The request's date is further from the server's clock than the replay window allows.
    #[error("the request date '{value}' is more than {max_skew_secs} s away from the server time")]
    DateOutOfRange {
        value: String,
        server_time: DateTime<Utc>,
        max_skew_secs: u64,
    },
    /// No key produced the signature the request carries.
    #[error("the request signature does not match any computed signature")]
    SignatureMismatch {
        signature: String,
        string_to_sign: String,
    },
    /// A key (the caller's, or one the server was configured with) is not valid base64.
    /// This is a configuration error, not the client's fault, when it comes from [`verify`].
    #[error("the account key is not valid base64")]
    InvalidKey,
}

impl AuthError {
    /// The human text the server puts in the error body's `AuthenticationErrorDetail` value.
    pub fn detail(&self) -> String {
        match self {
            AuthError::MissingAuthorization => "The request has no Authorization header. Sign \
                 every request with Shared Key: 'Authorization: SharedKey <account>:<signature>'."
                .to_owned(),
            AuthError::MalformedAuthorization { value } => format!(
                "The Authorization header '{value}' is not of the form \
                 'SharedKey <account>:<signature>'."
            ),
            AuthError::UnknownAccount { account } => format!(
                "The account '{account}' named in the Authorization header is not served by \
                 this endpoint. Check the account name the client was configured with."
            ),
            AuthError::MissingDate => "The request has neither an ocp-date nor a Date header. \
                 Send 'ocp-date' with the current time in RFC 1123 format, e.g. \
                 'Sun, 22 Nov 2026 08:35:56 GMT'."
                .to_owned(),
            AuthError::UnparseableDate { value } => format!(
                "The request date '{value}' is not in RFC 1123 format, e.g. \
                 'Sun, 22 Nov 2026 08:35:56 GMT'."
            ),
            AuthError::DateOutOfRange {
                value,
                server_time,
                max_skew_secs,
            } => format!(
                "The request date '{value}' is more than {} away from the server time \
                 '{}'. Check the client's clock.",
                if max_skew_secs % 60 == 0 {
                    format!("{} minutes", max_skew_secs / 60)
                } else {
                    format!("{max_skew_secs} seconds")
                },
                format_ocp_date(*server_time),
            ),
            AuthError::SignatureMismatch {
                signature,
                string_to_sign,
            } => format!(
                "The MAC signature found in the HTTP request '{signature}' is not the same as any \
                 computed signature. Server used following string to sign: '{string_to_sign}'."
            ),
            AuthError::InvalidKey => "The account key is not valid base64.".to_owned(),
        }
    }

    /// The HTTP status a server answers with: 401 when the request carries no credentials
    /// (the SDK maps it to `ClientAuthenticationError`), 500 for a broken server key, and 403
    /// (`AuthenticationFailed`, as the real service does) for everything else.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::MissingAuthorization => 401,
            AuthError::InvalidKey => 500,
            _ => 403,
        }
    }
}

/// Decodes a base64 account key, so a server can reject a bad key at startup rather than on
/// the first request.
pub fn decode_key(key_base64: &str) -> Result<Vec<u8>, AuthError> {
    BASE64
        .decode(key_base64.trim())
        .map_err(|_| AuthError::InvalidKey)
}

/// Formats a time the way `ocp-date` carries it (RFC 1123, e.g. `Sun, 22 Nov 2026 08:35:56 GMT`).
pub fn format_ocp_date(time: DateTime<Utc>) -> String {
    // chrono rather than httpdate: httpdate panics on times before 1970.
    time.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Builds the string to sign for `req`, exactly as the Python SDK does.
///
/// This includes the SDK's rule that a request other than GET/HEAD without a Content-Length
/// header signs `"0"` as its content length.
pub fn string_to_sign(account: &str, req: &RequestToSign<'_>) -> String {
    string_to_sign_with_length(account, req, req.signed_content_length())
}

/// [`string_to_sign`] with the content-length line given explicitly, so the verifier can try
/// the variants a client may have signed.
fn string_to_sign_with_length(
    account: &str,
    req: &RequestToSign<'_>,
    content_length: &str,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    for name in SIGNED_HEADERS {
        let value = if name == "content-length" {
            content_length
        } else {
            req.header(name).unwrap_or("")
        };
        out.push_str(value);
        out.push('\n');
    }

    // The SDK takes every header whose name *contains* "ocp-" (not only a prefix) and has a
    // value, lowercases the name and sorts the (name, value) pairs.
    let mut ocp: Vec<(String, &str)> = req
        .headers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|&(n, v)| (n.to_ascii_lowercase(), v))
        .filter(|(n, _)| n.contains("ocp-"))
        .collect();
    ocp.sort();
    for (name, value) in &ocp {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }

    out.push('/');
    out.push_str(account);
    // The path is signed as sent: still percent-encoded, not normalised.
    out.push_str(req.raw_path);

    for (name, value) in canonical_query(req.raw_query.unwrap_or("")) {
        out.push('\n');
        out.push_str(&name);
        out.push(':');
        out.push_str(&value);
    }
    out
}

/// The query parameters as the SDK signs them (Python's `parse_qs` then `sorted`):
/// form-decoded names and values, pairs without a value dropped, the first remaining value of
/// each name kept, sorted by decoded name in code-point (= UTF-8 byte) order.
fn canonical_query(raw_query: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in raw_query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            // `parse_qs` drops a bare `name` (no '=') unless asked to keep blank values.
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let name = form_decode(name);
        if params.iter().any(|(n, _)| *n == name) {
            continue;
        }
        params.push((name, form_decode(value)));
    }
    // Stable sort is not needed: names are unique by now.
    params.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    params
}

/// `application/x-www-form-urlencoded` decoding: '+' is a space, `%xx` is a byte, invalid
/// escapes are kept as written and invalid UTF-8 becomes U+FFFD, as Python's `unquote` does.
fn form_decode(s: &str) -> String {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8_lossy()
        .into_owned()
}

/// `base64(HMAC-SHA256(base64decode(key), utf8(string_to_sign)))`.
pub fn compute_signature(key_base64: &str, string_to_sign: &str) -> Result<String, AuthError> {
    let key = decode_key(key_base64)?;
    Ok(BASE64.encode(mac_for(&key, string_to_sign)?.finalize().into_bytes()))
}

fn mac_for(key: &[u8], string_to_sign: &str) -> Result<HmacSha256, AuthError> {
    // HMAC accepts keys of any length, so this error cannot happen; it is mapped rather than
    // unwrapped so that no input can panic here.
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| AuthError::InvalidKey)?;
    mac.update(string_to_sign.as_bytes());
    Ok(mac)
}

/// The full `Authorization` header value, `SharedKey <account>:<signature>`, for `req`.
///
/// `req` must carry the `ocp-date` header the request will be sent with.
pub fn authorization_header(
    account: &str,
    key_base64: &str,
    req: &RequestToSign<'_>,
) -> Result<String, AuthError> {
    let signature = compute_signature(key_base64, &string_to_sign(account, req))?;
    Ok(format!("SharedKey {account}:{signature}"))
}

/// Splits `SharedKey <account>:<signature>` into account and signature.
fn parse_authorization(value: &str) -> Result<(&str, &str), AuthError> {
    let malformed = || AuthError::MalformedAuthorization {
        value: value.to_owned(),
    };
    let (scheme, credentials) = value.trim().split_once(' ').ok_or_else(malformed)?;
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("SharedKey") {
        return Err(malformed());
    }
    let (account, signature) = credentials.trim().split_once(':').ok_or_else(malformed)?;
    if account.is_empty() || signature.is_empty() {
        return Err(malformed());
    }
    Ok((account, signature))
}

/// Verify an incoming request: parse the Authorization header ("SharedKey <account>:<sig>"),
/// check the account name, check ocp-date (or Date) is present, parseable (RFC 1123) and within
/// `max_skew` of `now`, compute the signature with each candidate key (constant-time compare)
/// and with the content-length variants described in the reference (as signed by the SDK, then
/// "" in place of "0").
pub fn verify(
    req: &RequestToSign<'_>,
    account: &str,
    keys_base64: &[&str],
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), AuthError> {
    let header = req
        .header("authorization")
        .ok_or(AuthError::MissingAuthorization)?;
    let (claimed_account, signature) = parse_authorization(header)?;
    if claimed_account != account {
        return Err(AuthError::UnknownAccount {
            account: claimed_account.to_owned(),
        });
    }

    check_date(req, now, max_skew)?;

    // Decode every configured key before looking at the signature, so that a broken key is
    // reported as such and not as a client's bad signature.
    let keys = keys_base64
        .iter()
        .map(|k| decode_key(k))
        .collect::<Result<Vec<_>, _>>()?;

    let mismatch = || AuthError::SignatureMismatch {
        signature: signature.to_owned(),
        string_to_sign: string_to_sign(account, req),
    };
    // A signature that is not base64 can match nothing; it is still a mismatch, so the client
    // sees the string we would have signed.
    let presented = BASE64.decode(signature).map_err(|_| mismatch())?;

    // The content length a client signed may differ from what arrived: a proxy or transport
    // may add `Content-Length: 0` to a bodyless request, or drop it. Try what the SDK would
    // have signed first, then the empty string in place of "0".
    let signed_length = req.signed_content_length();
    let mut lengths = vec![signed_length];
    if signed_length == "0" {
        lengths.push("");
    }

    for length in lengths {
        let sts = string_to_sign_with_length(account, req, length);
        for key in &keys {
            // `verify_slice` compares in constant time.
            if mac_for(key, &sts)?.verify_slice(&presented).is_ok() {
                return Ok(());
            }
        }
    }
    Err(mismatch())
}

fn check_date(
    req: &RequestToSign<'_>,
    now: DateTime<Utc>,
    max_skew: Duration,
) -> Result<(), AuthError> {
    let value = req
        .header("ocp-date")
        .or_else(|| req.header("date"))
        .ok_or(AuthError::MissingDate)?;
    let parsed: DateTime<Utc> = httpdate::parse_http_date(value.trim())
        .map_err(|_| AuthError::UnparseableDate {
            value: value.to_owned(),
        })?
        .into();
    // A skew too large for chrono means "no limit" in practice.
    let in_range = match chrono::Duration::from_std(max_skew) {
        Ok(skew) => (now - parsed).abs() <= skew,
        Err(_) => true,
    };
    if in_range {
        Ok(())
    } else {
        Err(AuthError::DateOutOfRange {
            value: value.to_owned(),
            server_time: now,
            max_skew_secs: max_skew.as_secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const ACCOUNT: &str = "testacct";
    const DATE: &str = "Sun, 22 Nov 2026 08:35:56 GMT";

    fn date() -> DateTime<Utc> {
        httpdate::parse_http_date(DATE).expect("test date").into()
    }

    /// One of the reference test vectors: request parts, expected string to sign, signature.
    struct Vector {
        method: &'static str,
        path: &'static str,
        query: &'static str,
        headers: Vec<(&'static str, &'static str)>,
        sts: &'static str,
        signature: &'static str,
    }

    fn vectors() -> Vec<Vector> {
        vec![
            Vector {
                method: "GET",
                path: "/jobs/j1/tasks",
                query: "api-version=2025-06-01&maxresults=7&$filter=state%20eq%20%27completed%27",
                headers: vec![
                    ("ocp-date", DATE),
                    // Headers the SDK sends but does not sign.
                    ("Accept", "application/json"),
                    ("client-request-id", "0f6c7a56-0000-11f0-0000-000000000000"),
                    ("User-Agent", "azsdk-python-batch/15.1.0"),
                ],
                sts: "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/jobs/j1/tasks\n$filter:state eq 'completed'\napi-version:2025-06-01\nmaxresults:7",
                signature: "8SdGeZqamtlmxJCVfnyHSUKbcC1wLMIy71ilm0VFzIE=",
            },
            Vector {
                method: "POST",
                path: "/jobs",
                query: "api-version=2025-06-01",
                headers: vec![
                    ("Content-Length", "42"),
                    ("Content-Type", "application/json; odata=minimalmetadata"),
                    ("ocp-date", DATE),
                ],
                sts: "POST\n\n\n42\n\napplication/json; odata=minimalmetadata\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/jobs\napi-version:2025-06-01",
                signature: "VKL6L3Q9hdiVmt88wJuB55gUUtrjzhFlNTCQsD6UTVI=",
            },
            Vector {
                method: "DELETE",
                path: "/pools/p1",
                query: "api-version=2025-06-01",
                headers: vec![("Content-Length", "0"), ("ocp-date", DATE)],
                sts: "DELETE\n\n\n0\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\n/testacct/pools/p1\napi-version:2025-06-01",
                signature: "U+NKyooJXPbnp4WR2ZvAlykBSseEquLUVfKO+/qeZMw=",
            },
            Vector {
                method: "GET",
                path: "/jobs/j1/tasks/t0/files/wd%2Fresult.txt",
                query: "api-version=2025-06-01",
                headers: vec![("ocp-range", "bytes=0-4"), ("ocp-date", DATE)],
                sts: "GET\n\n\n\n\n\n\n\n\n\n\n\nocp-date:Sun, 22 Nov 2026 08:35:56 GMT\nocp-range:bytes=0-4\n/testacct/jobs/j1/tasks/t0/files/wd%2Fresult.txt\napi-version:2025-06-01",
                signature: "uhXk3p52cmMdTYLHNvyCavzAi8ibkOV1fp6QXQnrMPQ=",
            },
        ]
    }

    fn request<'a>(v: &'a Vector, headers: &'a [(&'a str, &'a str)]) -> RequestToSign<'a> {
        RequestToSign {
            method: v.method,
            raw_path: v.path,
            raw_query: Some(v.query),
            headers,
        }
    }

    /// The vector's headers plus its (correct) Authorization header.
    fn signed_headers(v: &Vector) -> Vec<(&'static str, String)> {
        let mut h: Vec<(&'static str, String)> =
            v.headers.iter().map(|&(n, v)| (n, v.to_owned())).collect();
        h.push((
            "Authorization",
            format!("SharedKey {ACCOUNT}:{}", v.signature),
        ));
        h
    }

    fn as_refs<'a>(h: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
        h.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    fn verify_at(req: &RequestToSign<'_>, now: DateTime<Utc>) -> Result<(), AuthError> {
        verify(req, ACCOUNT, &[KEY], now, DEFAULT_MAX_SKEW)
    }

    #[test]
    fn test_vectors_string_to_sign_and_signature() {
        for v in vectors() {
            let req = request(&v, &v.headers);
            let sts = string_to_sign(ACCOUNT, &req);
            assert_eq!(sts, v.sts, "{} {}", v.method, v.path);
            assert_eq!(compute_signature(KEY, &sts).unwrap(), v.signature);
            assert_eq!(
                authorization_header(ACCOUNT, KEY, &req).unwrap(),
                format!("SharedKey {ACCOUNT}:{}", v.signature)
            );
        }
    }

    #[test]
    fn verify_accepts_each_test_vector() {
        for v in vectors() {
            let h = signed_headers(&v);
            let h = as_refs(&h);
            let req = request(&v, &h);
            let later = date() + chrono::Duration::minutes(3);
            assert_eq!(verify_at(&req, later), Ok(()), "{} {}", v.method, v.path);
        }
    }

    #[test]
    fn verify_tries_every_key() {
        let v = &vectors()[0];
        let h = signed_headers(v);
        let h = as_refs(&h);
        let other = BASE64.encode(b"another key, rotated out");
        let result = verify(
            &request(v, &h),
            ACCOUNT,
            &[&other, KEY],
            date(),
            DEFAULT_MAX_SKEW,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn verify_rejects_wrong_key() {
        let v = &vectors()[1];
        let h = signed_headers(v);
        let h = as_refs(&h);
        let wrong = BASE64.encode(b"0123456789abcdef0123456789abcdeX");
        let err = verify(
            &request(v, &h),
            ACCOUNT,
            &[&wrong],
            date(),
            DEFAULT_MAX_SKEW,
        )
        .unwrap_err();
        let AuthError::SignatureMismatch {
            signature,
            string_to_sign,
        } = &err
        else {
            panic!("expected a mismatch, got {err:?}");
        };
        assert_eq!(signature, v.signature);
        assert_eq!(string_to_sign, v.sts);
        assert_eq!(err.http_status(), 403);
        assert_eq!(
            err.detail(),
            format!(
                "The MAC signature found in the HTTP request '{}' is not the same as any computed \
                 signature. Server used following string to sign: '{}'.",
                v.signature, v.sts
            )
        );
    }

    #[test]
    fn verify_rejects_stale_and_future_dates() {
        let v = &vectors()[0];
        let h = signed_headers(v);
        let h = as_refs(&h);
        let req = request(v, &h);
        let err = verify_at(&req, date() + chrono::Duration::minutes(16)).unwrap_err();
        assert!(matches!(err, AuthError::DateOutOfRange { .. }), "{err:?}");
        assert!(err.detail().contains("15 minutes"), "{}", err.detail());
        let err = verify_at(&req, date() - chrono::Duration::minutes(16)).unwrap_err();
        assert!(matches!(err, AuthError::DateOutOfRange { .. }), "{err:?}");
        // Exactly at the edge of the window is still accepted.
        assert_eq!(
            verify_at(&req, date() + chrono::Duration::minutes(15)),
            Ok(())
        );
    }

    #[test]
    fn verify_rejects_tampered_path_and_query() {
        let v = &vectors()[3];
        let h = signed_headers(v);
        let h = as_refs(&h);
        let mut req = request(v, &h);
        req.raw_path = "/jobs/j1/tasks/t0/files/wd%2Fsecret.txt";
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
        // The path is signed encoded: decoding it is tampering too.
        req.raw_path = "/jobs/j1/tasks/t0/files/wd/result.txt";
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
        let mut req = request(v, &h);
        req.raw_query = Some("api-version=2024-02-01.19.0");
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
        let mut req = request(v, &h);
        req.method = "DELETE";
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn verify_rejects_missing_or_changed_signed_header() {
        // ocp-range was signed; dropping it must fail.
        let v = &vectors()[3];
        let h = signed_headers(v);
        let h: Vec<_> = as_refs(&h)
            .into_iter()
            .filter(|(n, _)| *n != "ocp-range")
            .collect();
        assert!(matches!(
            verify_at(&request(v, &h), date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
        // Content-Type was signed; changing it must fail.
        let v = &vectors()[1];
        let h = signed_headers(v);
        let mut h = as_refs(&h);
        h[1].1 = "text/plain";
        assert!(matches!(
            verify_at(&request(v, &h), date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn verify_reports_missing_and_malformed_headers() {
        let v = &vectors()[0];
        let req = request(v, &v.headers);
        let err = verify_at(&req, date()).unwrap_err();
        assert_eq!(err, AuthError::MissingAuthorization);
        assert_eq!(err.http_status(), 401);

        for bad in [
            "SharedKey",
            "SharedKey testacct",
            "Bearer abc",
            "SharedKey :sig",
            "SharedKey testacct:",
        ] {
            let h = [("ocp-date", DATE), ("Authorization", bad)];
            let req = RequestToSign {
                headers: &h,
                ..request(v, &[])
            };
            assert!(
                matches!(
                    verify_at(&req, date()),
                    Err(AuthError::MalformedAuthorization { .. })
                ),
                "{bad}"
            );
        }

        let h = [
            ("ocp-date", DATE),
            ("Authorization", "SharedKey other:abc="),
        ];
        let req = RequestToSign {
            headers: &h,
            ..request(v, &[])
        };
        assert_eq!(
            verify_at(&req, date()),
            Err(AuthError::UnknownAccount {
                account: "other".into()
            })
        );

        let auth = format!("SharedKey {ACCOUNT}:{}", v.signature);
        let h = [("Authorization", auth.as_str())];
        let req = RequestToSign {
            headers: &h,
            ..request(v, &[])
        };
        assert_eq!(verify_at(&req, date()), Err(AuthError::MissingDate));

        let h = [
            ("Authorization", auth.as_str()),
            ("ocp-date", "2026-11-22T08:35:56Z"),
        ];
        let req = RequestToSign {
            headers: &h,
            ..request(v, &[])
        };
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::UnparseableDate { .. })
        ));

        let h = [
            ("Authorization", "SharedKey testacct:not base64!"),
            ("ocp-date", DATE),
        ];
        let req = RequestToSign {
            headers: &h,
            ..request(v, &[])
        };
        assert!(matches!(
            verify_at(&req, date()),
            Err(AuthError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn verify_reports_a_broken_server_key() {
        let v = &vectors()[0];
        let h = signed_headers(v);
        let h = as_refs(&h);
        let err = verify(
            &request(v, &h),
            ACCOUNT,
            &["not*base64"],
            date(),
            DEFAULT_MAX_SKEW,
        )
        .unwrap_err();
        assert_eq!(err, AuthError::InvalidKey);
        assert_eq!(compute_signature("%%%", "x"), Err(AuthError::InvalidKey));
    }

    #[test]
    fn date_header_is_used_when_ocp_date_is_absent() {
        let h = [("Date", DATE)];
        let req = RequestToSign {
            method: "GET",
            raw_path: "/pools",
            raw_query: None,
            headers: &h,
        };
        let auth = authorization_header(ACCOUNT, KEY, &req).unwrap();
        let h = [("Date", DATE), ("Authorization", auth.as_str())];
        let req = RequestToSign { headers: &h, ..req };
        assert_eq!(verify_at(&req, date()), Ok(()));
    }

    #[test]
    fn content_length_variants() {
        // The SDK signs "0" for a bodyless POST; a transport that sends no Content-Length
        // still verifies, and so does a client that signed "" but sent "Content-Length: 0".
        let h = [("ocp-date", DATE)];
        let unsent = RequestToSign {
            method: "POST",
            raw_path: "/jobs/j1/terminate",
            raw_query: Some("api-version=2025-06-01"),
            headers: &h,
        };
        assert!(string_to_sign(ACCOUNT, &unsent).starts_with("POST\n\n\n0\n"));
        let auth = authorization_header(ACCOUNT, KEY, &unsent).unwrap();

        let h = [("ocp-date", DATE), ("Authorization", auth.as_str())];
        assert_eq!(
            verify_at(
                &RequestToSign {
                    headers: &h,
                    ..unsent
                },
                date()
            ),
            Ok(())
        );
        let h = [
            ("ocp-date", DATE),
            ("Content-Length", "0"),
            ("Authorization", auth.as_str()),
        ];
        assert_eq!(
            verify_at(
                &RequestToSign {
                    headers: &h,
                    ..unsent
                },
                date()
            ),
            Ok(())
        );

        let empty_sts = string_to_sign_with_length(ACCOUNT, &unsent, "");
        let sig = compute_signature(KEY, &empty_sts).unwrap();
        let auth = format!("SharedKey {ACCOUNT}:{sig}");
        let h = [
            ("ocp-date", DATE),
            ("Content-Length", "0"),
            ("Authorization", auth.as_str()),
        ];
        assert_eq!(
            verify_at(
                &RequestToSign {
                    headers: &h,
                    ..unsent
                },
                date()
            ),
            Ok(())
        );
    }

    #[test]
    fn ocp_date_format() {
        assert_eq!(format_ocp_date(date()), DATE);
    }

    #[test]
    fn query_canonicalisation() {
        assert_eq!(
            canonical_query("b=2&a=1&a=3&empty=&bare&%24filter=x+y%20z&c=%ZZ"),
            vec![
                ("$filter".to_owned(), "x y z".to_owned()),
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
                ("c".to_owned(), "%ZZ".to_owned()),
            ]
        );
        // Names sort case-sensitively in byte order, and a blank first value does not hide
        // a later one (Python's parse_qs drops blanks before we pick the first).
        assert_eq!(
            canonical_query("timeOut=30&Zeta=1&alpha=&alpha=2"),
            vec![
                ("Zeta".to_owned(), "1".to_owned()),
                ("alpha".to_owned(), "2".to_owned()),
                ("timeOut".to_owned(), "30".to_owned()),
            ]
        );
    }

    #[test]
    fn ocp_headers_are_lowercased_sorted_and_matched_anywhere_in_the_name() {
        let h = [
            ("OCP-Range", "bytes=1-2"),
            ("ocp-date", DATE),
            ("x-ocp-extra", "v"),
            ("ocp-empty", ""),
            ("If-Match", "\"etag\""),
        ];
        let req = RequestToSign {
            method: "GET",
            raw_path: "/p",
            raw_query: None,
            headers: &h,
        };
        assert_eq!(
            string_to_sign("a", &req),
            format!(
                "GET\n\n\n\n\n\n\n\n\"etag\"\n\n\n\nocp-date:{DATE}\nocp-range:bytes=1-2\nx-ocp-extra:v\n/a/p"
            )
        );
    }

    /// Characters worth putting in paths and query strings: reserved, unicode, '+', '%'.
    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ./+%&=?$'é✓-]{0,12}").expect("valid regex")
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            segments in prop::collection::vec(text(), 0..4),
            params in prop::collection::vec((text(), text()), 0..5),
            content_type in prop::option::of(text()),
            range in prop::option::of(text()),
            skew_secs in -900i64..=900,
        ) {
            use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
            let raw_path: String = segments
                .iter()
                .map(|s| format!("/{}", utf8_percent_encode(s, NON_ALPHANUMERIC)))
                .collect();
            let raw_query = params
                .iter()
                .map(|(n, v)| format!(
                    "{}={}",
                    utf8_percent_encode(n, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                ))
                .collect::<Vec<_>>()
                .join("&");
            let mut headers: Vec<(&str, &str)> = vec![("ocp-date", DATE)];
            if let Some(ct) = &content_type {
                headers.push(("Content-Type", ct));
            }
            if let Some(r) = &range {
                headers.push(("ocp-range", r));
            }
            let req = RequestToSign {
                method,
                raw_path: &raw_path,
                raw_query: Some(&raw_query),
                headers: &headers,
            };
            let auth = authorization_header(ACCOUNT, KEY, &req).unwrap();
            let mut with_auth = headers.clone();
            with_auth.push(("Authorization", auth.as_str()));
            let signed = RequestToSign { headers: &with_auth, ..req };
            let now = date() + chrono::Duration::seconds(skew_secs);
            prop_assert_eq!(verify_at(&signed, now), Ok(()));

            // Any change to the path is caught.
            let tampered_path = format!("{raw_path}/x");
            let tampered = RequestToSign { raw_path: &tampered_path, ..signed };
            let rejected = matches!(
                verify_at(&tampered, now),
                Err(AuthError::SignatureMismatch { .. })
            );
            prop_assert!(rejected);
        }
    }
}
