//! Container resource files (`storageContainerUrl`, and `autoStorageContainerName` once the
//! server has turned it into a signed container URL): list the blobs under `blobPrefix` with
//! Azure's List Blobs (XML, paged with `NextMarker`), and download each into `filePath`, its
//! blob name kept as the path below it. Azure containers, Azurite and the server's own blob
//! endpoint all answer the same protocol.

use quick_xml::events::Event;
use quick_xml::Reader;
use reqwest::Url;

use super::{with_retries, AttemptError, HttpFile, ResourceFileSpec, ResourceSource};
use crate::runner::download::redact_url;
use crate::runner::failure::{codes, FailureCategory, FailureInfo};

/// Replaces every container source by one file per blob; `httpUrl` files pass unchanged.
pub(super) async fn expand(
    client: &reqwest::Client,
    files: &[ResourceFileSpec],
) -> Result<Vec<HttpFile>, FailureInfo> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        match &f.source {
            ResourceSource::HttpUrl(url) => out.push(HttpFile {
                http_url: url.clone(),
                file_path: f.file_path.clone(),
                file_mode: f.file_mode.clone(),
            }),
            ResourceSource::Container { url, blob_prefix } => {
                let container = parse_container_url(url)?;
                let names = list_blobs(client, &container, blob_prefix).await?;
                let dir = f.file_path.trim_end_matches('/');
                for name in names.into_iter().filter(|n| !n.ends_with('/')) {
                    out.push(HttpFile {
                        http_url: blob_url(&container, &name).to_string(),
                        file_path: if dir.is_empty() {
                            name
                        } else {
                            format!("{dir}/{name}")
                        },
                        file_mode: f.file_mode.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn parse_container_url(raw: &str) -> Result<Url, FailureInfo> {
    let redacted = redact_url(raw);
    let invalid = |why: &str| {
        FailureInfo::user(
            codes::BLOB_DOWNLOAD_MISC_ERROR,
            format!("The resource file storageContainerUrl {redacted} {why}"),
        )
        .with_detail("ContainerUrl", redacted.clone())
    };
    let url = Url::parse(raw).map_err(|_| invalid("is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("is not an http or https URL"));
    }
    if url.cannot_be_a_base() || url.path().trim_matches('/').is_empty() {
        return Err(invalid("does not name a container"));
    }
    Ok(url)
}

/// `{container}/{blob}` with the container URL's query (its SAS), each blob path segment
/// percent-encoded.
pub(in crate::runner) fn blob_url(container: &Url, blob: &str) -> Url {
    let mut url = container.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(blob.split('/'));
    }
    url
}

/// Every blob name under `prefix`, following `NextMarker` pages.
async fn list_blobs(
    client: &reqwest::Client,
    container: &Url,
    prefix: &str,
) -> Result<Vec<String>, FailureInfo> {
    let redacted = redact_url(container.as_str());
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let mut url = container.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("restype", "container")
                .append_pair("comp", "list");
            if !prefix.is_empty() {
                q.append_pair("prefix", prefix);
            }
            if !marker.is_empty() {
                q.append_pair("marker", &marker);
            }
        }
        let page = with_retries("listing a resource container", &redacted, || {
            list_page(client, url.clone())
        })
        .await
        .map_err(|err| list_failure(&redacted, prefix, err))?;
        names.extend(page.names);
        match page.next_marker {
            Some(m) if !m.is_empty() && m != marker => marker = m,
            _ => break,
        }
    }
    Ok(names)
}

fn list_failure(redacted: &str, prefix: &str, err: AttemptError) -> FailureInfo {
    let (code, category) = match err.status.map(|s| s.as_u16()) {
        // The container does not exist.
        Some(404) => (codes::BLOB_NOT_FOUND, FailureCategory::UserError),
        _ => (err.code, err.category),
    };
    let failure = FailureInfo::new(
        category,
        code,
        format!(
            "Failed to list the blobs of resource container {redacted} (blobPrefix '{prefix}'): {}",
            err.detail
        ),
    )
    .with_detail("ContainerUrl", redacted.to_string());
    match err.status {
        Some(s) => failure.with_detail("HttpStatusCode", s.as_u16().to_string()),
        None => failure,
    }
}

struct Page {
    names: Vec<String>,
    next_marker: Option<String>,
}

async fn list_page(client: &reqwest::Client, url: Url) -> Result<Page, AttemptError> {
    let response = client
        .get(url)
        .header("x-ms-version", "2021-08-06")
        .send()
        .await
        .map_err(AttemptError::http)?;
    let status = response.status();
    if !status.is_success() {
        let mut err = AttemptError::status(status);
        if matches!(status.as_u16(), 401 | 403) {
            err.detail = format!(
                "the server answered HTTP {status}; check that the container URL's SAS token grants read and list access and has not expired"
            );
        }
        return Err(err);
    }
    let body = response.text().await.map_err(AttemptError::http)?;
    parse_list(&body).map_err(|why| AttemptError {
        code: codes::BLOB_DOWNLOAD_MISC_ERROR,
        category: FailureCategory::ServerError,
        transient: false,
        detail: format!("the container listing is not a List Blobs answer: {why}"),
        status: None,
    })
}

/// The blob names and `NextMarker` of a List Blobs answer.
fn parse_list(xml: &str) -> Result<Page, String> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    // The text of the innermost element, gathered across entity references (`&amp;` splits a
    // text node in two).
    let mut text = String::new();
    let mut names = Vec::new();
    let mut next_marker = None;
    let mut seen_root = false;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = e.name().as_ref().to_vec();
                if name == b"EnumerationResults" {
                    seen_root = true;
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => {
                let raw = t.decode().map_err(|e| e.to_string())?;
                text.push_str(&quick_xml::escape::unescape(&raw).map_err(|e| e.to_string())?);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                text.push_str(&resolved);
            }
            Event::End(_) => {
                let tail: Vec<&[u8]> = path.iter().rev().take(2).map(Vec::as_slice).collect();
                match tail.as_slice() {
                    [b"Name", b"Blob"] => names.push(std::mem::take(&mut text)),
                    [b"NextMarker", b"EnumerationResults"] => {
                        next_marker = Some(std::mem::take(&mut text))
                    }
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err("it has no <EnumerationResults> element".into());
    }
    Ok(Page { names, next_marker })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_give_names_and_the_next_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://h/" ContainerName="c"><Prefix>in/</Prefix><Blobs><Blob><Name>in/a.txt</Name><Properties><Content-Length>1</Content-Length></Properties></Blob><Blob><Name>in/b&amp;c.txt</Name></Blob></Blobs><NextMarker>in/b&amp;c.txt</NextMarker></EnumerationResults>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(page.names, ["in/a.txt", "in/b&c.txt"]);
        assert_eq!(page.next_marker.as_deref(), Some("in/b&c.txt"));
        let last = parse_list(r#"<EnumerationResults><Blobs/><NextMarker /></EnumerationResults>"#)
            .unwrap();
        assert!(last.names.is_empty());
        assert_eq!(last.next_marker, None);
        assert!(parse_list("<html>nope</html>").is_err());
    }

    #[test]
    fn blob_urls_keep_the_sas_and_encode_names() {
        let c = Url::parse("http://127.0.0.1:1/devstoreaccount1/input?sv=1&sig=S%2B").unwrap();
        assert_eq!(
            blob_url(&c, "dir/a b#.txt").as_str(),
            "http://127.0.0.1:1/devstoreaccount1/input/dir/a%20b%23.txt?sv=1&sig=S%2B"
        );
        let trailing = Url::parse("http://h/c/?sig=x").unwrap();
        assert_eq!(blob_url(&trailing, "f").as_str(), "http://h/c/f?sig=x");
    }
}
