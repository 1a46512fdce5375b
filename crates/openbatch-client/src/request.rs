//! Building and signing requests: URLs encoded as the Python SDK encodes them, and the Shared
//! Key `Authorization` header over exactly the headers that are sent.
//!
//! Kept free of I/O so that URL building and signing are unit-tested against the server's own
//! verifier ([`openbatch_api::auth::verify`]).

use chrono::{DateTime, Utc};
use openbatch_api::auth::{authorization_header, format_ocp_date, RequestToSign};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

use crate::error::ClientError;

/// The API version this client speaks.
pub const API_VERSION: &str = "2025-06-01";

/// The body content type the SDK sends.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; odata=minimalmetadata";

/// Python's `quote(s, safe='')`, which the SDK applies to path parameters and query values:
/// everything but `A-Za-z0-9_.-~` is escaped, `/` included (a file path `wd/out.txt` travels
/// as the single segment `wd%2Fout.txt`).
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One path segment: a literal (`"pools"`) or a caller-supplied value to encode.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Lit(&'static str),
    Val(&'static str, &'a str),
}

/// Builds `<endpoint>/<segments>?api-version=...&<query>`.
///
/// `base` is the endpoint without a trailing slash (it may carry a path prefix). Values are
/// percent-encoded with [`STRICT`]; empty values and the dot segments `.` and `..` are refused,
/// since URL normalisation would silently change which resource they address.
pub(crate) fn build_url(
    base: &str,
    segments: &[Seg<'_>],
    query: &[(&str, String)],
) -> Result<Url, ClientError> {
    let mut s = String::from(base);
    for seg in segments {
        s.push('/');
        match *seg {
            Seg::Lit(lit) => s.push_str(lit),
            Seg::Val(what, value) => {
                let reason = if value.is_empty() {
                    Some("it must not be empty")
                } else if value == "." || value == ".." {
                    Some("'.' and '..' cannot be addressed")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(ClientError::InvalidArgument {
                        what,
                        value: value.to_owned(),
                        reason,
                    });
                }
                s.extend(utf8_percent_encode(value, STRICT));
            }
        }
    }
    s.push_str("?api-version=");
    s.push_str(API_VERSION);
    for (name, value) in query {
        s.push('&');
        // Names are ours and literal (`$filter`, `maxresults`): the SDK does not escape `$`.
        s.push_str(name);
        s.push('=');
        s.extend(utf8_percent_encode(value, STRICT));
    }
    Url::parse(&s).map_err(|e| ClientError::InvalidEndpoint {
        endpoint: base.to_owned(),
        reason: e.to_string(),
    })
}

/// Who signs: the account name and its base64 key.
#[derive(Clone)]
pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) key: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: keep it out of logs and panic messages.
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A JSON request body (every body this client sends is JSON).
pub(crate) struct Body {
    pub(crate) bytes: Vec<u8>,
}

/// The headers to send with a request, `Authorization` last, signed over exactly these.
///
/// Like the SDK: `ocp-date` and `client-request-id` always; `Content-Type` and `Content-Length`
/// with a body; `Content-Length: 0` (signed as `"0"`) for a body-less request other than
/// GET/HEAD; `extra` headers (`ocp-range`, `Accept`) as given.
pub(crate) fn signed_headers(
    account: &Account,
    method: &str,
    url: &Url,
    body: Option<&Body>,
    extra: &[(&'static str, String)],
    now: DateTime<Utc>,
    request_id: &str,
) -> Result<Vec<(&'static str, String)>, ClientError> {
    let content = body.map(|b| (JSON_CONTENT_TYPE, b.bytes.len() as u64));
    signed_headers_for(account, method, url, content, extra, now, request_id)
}

/// [`signed_headers`] for a body of any type: its content type and length.
pub(crate) fn signed_headers_for(
    account: &Account,
    method: &str,
    url: &Url,
    content: Option<(&str, u64)>,
    extra: &[(&'static str, String)],
    now: DateTime<Utc>,
    request_id: &str,
) -> Result<Vec<(&'static str, String)>, ClientError> {
    let mut headers: Vec<(&'static str, String)> = vec![
        ("ocp-date", format_ocp_date(now)),
        ("client-request-id", request_id.to_owned()),
    ];
    match content {
        Some((content_type, len)) => {
            headers.push(("content-type", content_type.to_owned()));
            headers.push(("content-length", len.to_string()));
        }
        None if method != "GET" && method != "HEAD" => {
            headers.push(("content-length", "0".to_owned()));
        }
        None => {}
    }
    headers.extend(extra.iter().cloned());
    let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let auth = authorization_header(
        &account.name,
        &account.key,
        &RequestToSign {
            method,
            raw_path: url.path(),
            raw_query: url.query(),
            headers: &refs,
        },
    )
    .map_err(|_| ClientError::InvalidKey)?;
    headers.push(("authorization", auth));
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openbatch_api::auth::{verify, DEFAULT_MAX_SKEW};

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const ACCOUNT: &str = "testacct";
    const BASE: &str = "http://127.0.0.1:8771";

    fn date() -> DateTime<Utc> {
        DateTime::parse_from_rfc2822("Sun, 22 Nov 2026 08:35:56 GMT")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid test date")
    }

    fn acct() -> Account {
        Account {
            name: ACCOUNT.into(),
            key: KEY.into(),
        }
    }

    fn verify_sent(
        method: &str,
        url: &Url,
        headers: &[(&'static str, String)],
    ) -> Result<(), openbatch_api::auth::AuthError> {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        verify(
            &RequestToSign {
                method,
                raw_path: url.path(),
                raw_query: url.query(),
                headers: &refs,
            },
            ACCOUNT,
            &[KEY],
            date(),
            DEFAULT_MAX_SKEW,
        )
    }

    #[test]
    fn file_paths_are_one_fully_encoded_segment() {
        let url = build_url(
            BASE,
            &[
                Seg::Lit("jobs"),
                Seg::Val("job id", "j1"),
                Seg::Lit("tasks"),
                Seg::Val("task id", "t0"),
                Seg::Lit("files"),
                Seg::Val("file path", "wd/result.txt"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8771/jobs/j1/tasks/t0/files/wd%2Fresult.txt?api-version=2025-06-01"
        );
        assert_eq!(url.path(), "/jobs/j1/tasks/t0/files/wd%2Fresult.txt");
    }

    #[test]
    fn odd_characters_are_escaped_like_pythons_quote() {
        let url = build_url(
            BASE,
            &[
                Seg::Lit("pools"),
                Seg::Val("pool id", "a b/c?d#e%f~g_h.i-j"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(url.path(), "/pools/a%20b%2Fc%3Fd%23e%25f~g_h.i-j");
        let url = build_url(BASE, &[Seg::Lit("jobs"), Seg::Val("job id", "é✓")], &[]).unwrap();
        assert_eq!(url.path(), "/jobs/%C3%A9%E2%9C%93");
    }

    #[test]
    fn query_matches_the_sdk_trace() {
        let url = build_url(
            BASE,
            &[
                Seg::Lit("jobs"),
                Seg::Val("job id", "j1"),
                Seg::Lit("tasks"),
            ],
            &[
                ("maxresults", "7".to_owned()),
                ("$filter", "state eq 'completed'".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(
            url.query(),
            Some("api-version=2025-06-01&maxresults=7&$filter=state%20eq%20%27completed%27")
        );
    }

    #[test]
    fn empty_and_dot_segments_are_refused() {
        for bad in ["", ".", ".."] {
            let err =
                build_url(BASE, &[Seg::Lit("pools"), Seg::Val("pool id", bad)], &[]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::InvalidArgument {
                        what: "pool id",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
        // Dots inside a file path are fine: the whole path is one encoded segment.
        let url = build_url(
            BASE,
            &[Seg::Lit("files"), Seg::Val("file path", "../x")],
            &[],
        )
        .unwrap();
        assert_eq!(url.path(), "/files/..%2Fx");
    }

    #[test]
    fn endpoint_path_prefix_is_kept() {
        let url = build_url("https://example.test/batch", &[Seg::Lit("pools")], &[]).unwrap();
        assert_eq!(url.path(), "/batch/pools");
    }

    #[test]
    fn signatures_match_the_sdk_test_vectors() {
        // The list vector of the reference: same string to sign, same signature.
        let url = Url::parse(
            "http://h/jobs/j1/tasks?api-version=2025-06-01&maxresults=7&$filter=state%20eq%20%27completed%27",
        )
        .unwrap();
        let h = signed_headers(&acct(), "GET", &url, None, &[], date(), "id").unwrap();
        assert_eq!(
            h.last().map(|(_, v)| v.as_str()),
            Some("SharedKey testacct:8SdGeZqamtlmxJCVfnyHSUKbcC1wLMIy71ilm0VFzIE=")
        );
        assert!(!h.iter().any(|(n, _)| *n == "content-length"));

        // DELETE without a body: Content-Length 0 is sent and signed.
        let url = Url::parse("http://h/pools/p1?api-version=2025-06-01").unwrap();
        let h = signed_headers(&acct(), "DELETE", &url, None, &[], date(), "id").unwrap();
        assert!(h.contains(&("content-length", "0".to_owned())));
        assert_eq!(
            h.last().map(|(_, v)| v.as_str()),
            Some("SharedKey testacct:U+NKyooJXPbnp4WR2ZvAlykBSseEquLUVfKO+/qeZMw=")
        );

        // File read with a range.
        let url =
            Url::parse("http://h/jobs/j1/tasks/t0/files/wd%2Fresult.txt?api-version=2025-06-01")
                .unwrap();
        let extra = [("ocp-range", "bytes=0-4".to_owned())];
        let h = signed_headers(&acct(), "GET", &url, None, &extra, date(), "id").unwrap();
        assert_eq!(
            h.last().map(|(_, v)| v.as_str()),
            Some("SharedKey testacct:uhXk3p52cmMdTYLHNvyCavzAi8ibkOV1fp6QXQnrMPQ=")
        );
    }

    #[test]
    fn every_request_shape_verifies_on_the_server_side() {
        let body = Body {
            bytes: br#"{"id":"j1","poolInfo":{"poolId":"p1"}}"#.to_vec(),
        };
        let file_url = build_url(
            BASE,
            &[
                Seg::Lit("pools"),
                Seg::Val("pool id", "p 1"),
                Seg::Lit("nodes"),
                Seg::Val("node id", "n1"),
                Seg::Lit("files"),
                Seg::Val("file path", "startup/std out.txt"),
            ],
            &[],
        )
        .unwrap();
        let list_url = build_url(
            BASE,
            &[Seg::Lit("pools")],
            &[("$filter", "id eq 'a+b'".to_owned())],
        )
        .unwrap();
        let post_url = build_url(BASE, &[Seg::Lit("jobs")], &[]).unwrap();
        let range = [("ocp-range", "bytes=10-20".to_owned())];
        type Case<'a> = (
            &'a str,
            &'a Url,
            Option<&'a Body>,
            &'a [(&'static str, String)],
        );
        let cases: [Case<'_>; 6] = [
            ("GET", &list_url, None, &[]),
            ("POST", &post_url, Some(&body), &[]),
            ("POST", &post_url, None, &[]),
            ("DELETE", &file_url, None, &[]),
            ("HEAD", &file_url, None, &[]),
            ("GET", &file_url, None, &range),
        ];
        for (method, url, body, extra) in cases {
            let h = signed_headers(&acct(), method, url, body, extra, date(), "rid").unwrap();
            assert_eq!(verify_sent(method, url, &h), Ok(()), "{method} {url}");
            // And a tampered request does not.
            let mut tampered = h.clone();
            tampered.retain(|(n, _)| *n != "client-request-id");
            tampered[0].1 = format_ocp_date(date() + chrono::Duration::seconds(1));
            assert!(
                verify_sent(method, url, &tampered).is_err(),
                "{method} {url}"
            );
        }
    }

    #[test]
    fn a_broken_key_is_an_error_not_a_panic() {
        let url = build_url(BASE, &[Seg::Lit("pools")], &[]).unwrap();
        let err = signed_headers(
            &Account {
                name: ACCOUNT.into(),
                key: "not base64!".into(),
            },
            "GET",
            &url,
            None,
            &[],
            date(),
            "id",
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::InvalidKey));
    }
}
