//! Checks and conversions on resource file specs, with no I/O: where a file may go, what its
//! mode is, and how its URL may be shown.

use std::path::{Component, Path, PathBuf};

use reqwest::Url;

/// The URL without its query string (SAS tokens are secrets), fragment or credentials, fit for
/// messages and logs. A URL that had a query string shows `?<redacted>` so that readers know.
pub(in crate::runner) fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            let had_query = url.query().is_some();
            url.set_query(None);
            url.set_fragment(None);
            // Both fail only for URLs without a host, which have no credentials to hide.
            let _ = url.set_password(None);
            let _ = url.set_username("");
            let mut text = url.to_string();
            if had_query {
                text.push_str("?<redacted>");
            }
            text
        }
        Err(_) => {
            let end = raw.find(['?', '#']).unwrap_or(raw.len());
            let base = &raw[..end];
            if base.contains('@') {
                "<invalid URL>".to_owned()
            } else if end < raw.len() {
                format!("{base}?<redacted>")
            } else {
                base.to_owned()
            }
        }
    }
}

/// The last segment of the URL's path, percent-decoded: the file name a download gets when its
/// filePath does not give one.
pub(super) fn url_file_name(url: &Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let name = percent_decode(last);
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

fn percent_decode(text: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        char::from(byte)
            .to_digit(16)
            .and_then(|digit| u8::try_from(digit).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// `file_path` made relative and normalised, or why it may not be used: absolute, or climbing
/// out of the working directory with `..` (`a/../b` is fine, `a/../../b` is not). The check is
/// lexical; the working directory is the agent's own creation, so no symlinks lead out of it
/// unless a task made them.
pub(super) fn contained_relative_path(file_path: &str) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in Path::new(file_path).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err("is an absolute path"),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("climbs out of the task working directory with '..'");
                }
            }
            Component::Normal(part) => out.push(part),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("does not name a file");
    }
    Ok(out)
}

/// Parses an Azure `fileMode` ("0755", "755", "0o755"): octal permission bits, at most 0o7777.
pub(super) fn parse_file_mode(mode: &str) -> Option<u32> {
    let digits = mode.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_working_dir() {
        assert_eq!(
            contained_relative_path("a.txt").unwrap(),
            Path::new("a.txt")
        );
        assert_eq!(
            contained_relative_path("./in/a.txt").unwrap(),
            Path::new("in/a.txt")
        );
        assert_eq!(
            contained_relative_path("in/../b.txt").unwrap(),
            Path::new("b.txt")
        );
        for bad in ["/etc/passwd", "../x", "in/../../x", "..", ".", "", "a/.."] {
            assert!(
                contained_relative_path(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn file_modes_are_octal() {
        assert_eq!(parse_file_mode("0755"), Some(0o755));
        assert_eq!(parse_file_mode("644"), Some(0o644));
        assert_eq!(parse_file_mode("0o600"), Some(0o600));
        assert_eq!(parse_file_mode("04755"), Some(0o4755));
        for bad in ["", "rwx", "0789", "-1", "077777", "0x1ff"] {
            assert_eq!(parse_file_mode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn redaction_hides_query_strings_and_credentials() {
        assert_eq!(
            redact_url("https://acct.blob.core.windows.net/c/a%20b.txt?sv=2024&sig=SECRET"),
            "https://acct.blob.core.windows.net/c/a%20b.txt?<redacted>"
        );
        assert_eq!(redact_url("http://user:pw@host/x"), "http://host/x");
        assert_eq!(redact_url("http://host/x"), "http://host/x");
        assert_eq!(redact_url("not a url?sig=SECRET"), "not a url?<redacted>");
        assert!(!redact_url("::bad@host?sig=SECRET").contains("SECRET"));
    }

    #[test]
    fn file_names_come_from_the_last_url_segment() {
        let name = |u: &str| url_file_name(&Url::parse(u).unwrap());
        assert_eq!(
            name("http://h/dir/data%20set.txt?sig=x").as_deref(),
            Some("data set.txt")
        );
        assert_eq!(name("http://h/dir/"), None);
        assert_eq!(name("http://h/"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
