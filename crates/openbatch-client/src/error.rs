//! What can go wrong talking to the service, with the Azure error code kept intact.

use openbatch_api::error::BatchError;

/// An error from a call to the Batch service.
///
/// `Api` is the service's own answer (a non-2xx status with the Azure error body); everything
/// else is about reaching the service or understanding its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error status. `code` is the Azure Batch error code
    /// (`PoolExists`, `JobNotFound`, ...); when the body carries none (a HEAD request, a proxy
    /// page), it is derived from the status (`NotFound`, `BadGateway`, ...).
    #[error("{}", api_display(.code, .message, .values))]
    Api {
        status: u16,
        code: String,
        message: String,
        values: Vec<(String, String)>,
    },
    /// The request could not be sent or its answer not received (connection refused, timeout,
    /// TLS, a connection cut mid-body).
    #[error("could not reach the Batch service at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service answered 2xx with something this client cannot read.
    #[error("unexpected answer from {url}: {detail}")]
    InvalidResponse { url: String, detail: String },
    /// The endpoint given to [`crate::Client::new`] is not an http(s) URL.
    #[error("invalid endpoint '{endpoint}': {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    /// The account key is not base64 (it is the key as the portal or `credentials.json` shows it).
    #[error("the account key is not valid base64; copy it exactly as credentials.json has it")]
    InvalidKey,
    /// A request body could not be encoded as JSON.
    #[error("could not encode the request body as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// An argument that cannot be put in a request (an empty id, a path of only dots).
    #[error("invalid {what} '{value}': {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl ClientError {
    /// The HTTP status of an `Api` error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Azure Batch error code of an `Api` error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True for a 404 answer (the resource does not exist, or no longer does).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Builds an `Api` error from a status and the response body, which may be an Azure error
    /// body, something else, or nothing.
    pub(crate) fn from_response(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let fallback_code = || {
            status
                .canonical_reason()
                .map(|r| r.replace([' ', '-', '\''], ""))
                .unwrap_or_else(|| format!("Http{}", status.as_u16()))
        };
        match serde_json::from_slice::<BatchError>(body) {
            Ok(err) if err.code.is_some() || err.message.is_some() => ClientError::Api {
                status: status.as_u16(),
                code: err.code.unwrap_or_else(fallback_code),
                message: err
                    .message
                    .and_then(|m| m.value)
                    .unwrap_or_else(|| status.to_string()),
                values: err
                    .values
                    .into_iter()
                    .map(|d| (d.key.unwrap_or_default(), d.value.unwrap_or_default()))
                    .collect(),
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    status.to_string()
                } else {
                    // A proxy's HTML page can be long; its start says enough.
                    text.chars().take(300).collect()
                };
                ClientError::Api {
                    status: status.as_u16(),
                    code: fallback_code(),
                    message,
                    values: Vec::new(),
                }
            }
        }
    }
}

/// `Code: first line of the message (key: value, ...)`. Azure appends `RequestId:` and `Time:`
/// lines to every message; they matter in a support ticket, not in a one-line error.
fn api_display(code: &str, message: &str, values: &[(String, String)]) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let mut out = format!("{code}: {first}");
    if !values.is_empty() {
        // Values can span lines (the string to sign of an AuthenticationFailed); keep the
        // error on one line.
        let details: Vec<String> = values
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.replace('\n', "\\n")))
            .collect();
        out.push_str(" (");
        out.push_str(&details.join("; "));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn parses_the_azure_error_body() {
        let body = br#"{"odata.metadata":"x","code":"PoolExists","message":{"lang":"en-US","value":"The specified pool already exists.\nRequestId:abc\nTime:2026-01-01T00:00:00Z"},"values":[{"key":"PoolId","value":"p1"},{"key":"Detail","value":"a\nb"}]}"#;
        let err = ClientError::from_response(StatusCode::CONFLICT, body);
        assert_eq!(err.status(), Some(409));
        assert_eq!(err.code(), Some("PoolExists"));
        assert_eq!(
            err.to_string(),
            "PoolExists: The specified pool already exists. (PoolId: p1; Detail: a\\nb)"
        );
        let ClientError::Api {
            message, values, ..
        } = err
        else {
            panic!("not an Api error");
        };
        assert!(message.contains("RequestId:abc"));
        assert_eq!(values[0], ("PoolId".to_owned(), "p1".to_owned()));
    }

    #[test]
    fn falls_back_to_the_status_without_a_body() {
        let err = ClientError::from_response(StatusCode::NOT_FOUND, b"");
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "NotFound: 404 Not Found");
        let err = ClientError::from_response(StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        assert_eq!(err.to_string(), "BadGateway: <html>oops</html>");
    }
}
