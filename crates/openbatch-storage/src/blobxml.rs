//! The XML of the Azure Blob REST operations the server's blob endpoint speaks: the List
//! Blobs answer and the Put Block List body.

use chrono::{DateTime, Utc};
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::backend::BlobInfo;
use crate::StorageError;

/// One page of `List Blobs` (`?restype=container&comp=list`).
pub fn list_blobs(
    service_endpoint: &str,
    container: &str,
    prefix: &str,
    marker: &str,
    max_results: usize,
    blobs: &[BlobInfo],
    next_marker: Option<&str>,
) -> String {
    let mut out = String::with_capacity(256 + blobs.len() * 256);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    out.push_str(&format!(
        r#"<EnumerationResults ServiceEndpoint="{}" ContainerName="{}">"#,
        escape(service_endpoint),
        escape(container)
    ));
    if !prefix.is_empty() {
        out.push_str(&format!("<Prefix>{}</Prefix>", escape(prefix)));
    }
    if !marker.is_empty() {
        out.push_str(&format!("<Marker>{}</Marker>", escape(marker)));
    }
    out.push_str(&format!("<MaxResults>{max_results}</MaxResults><Blobs>"));
    for b in blobs {
        out.push_str(&format!(
            "<Blob><Name>{}</Name><Properties><Creation-Time>{lm}</Creation-Time><Last-Modified>{lm}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState></Properties></Blob>",
            escape(&b.name),
            escape(etag(b)),
            b.size,
            lm = rfc1123(b.last_modified),
        ));
    }
    out.push_str("</Blobs>");
    match next_marker {
        Some(m) => out.push_str(&format!("<NextMarker>{}</NextMarker>", escape(m))),
        None => out.push_str("<NextMarker />"),
    }
    out.push_str("</EnumerationResults>");
    out
}

/// The ETag the endpoint shows for a blob (quoted, as Azure sends it).
pub fn etag(b: &BlobInfo) -> String {
    match &b.e_tag {
        Some(t) if t.starts_with('"') => t.clone(),
        Some(t) => format!("\"{t}\""),
        None => format!(
            "\"{:x}-{:x}\"",
            b.size,
            b.last_modified.timestamp_nanos_opt().unwrap_or_default()
        ),
    }
}

pub fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Which list a block id of a Put Block List body came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSource {
    Committed,
    Uncommitted,
    Latest,
}

/// The block ids of a Put Block List body, in order.
pub fn parse_block_list(body: &str) -> Result<Vec<(BlockSource, String)>, StorageError> {
    let bad =
        |why: String| StorageError::InvalidInput(format!("the block list is not valid: {why}"));
    let mut reader = Reader::from_str(body);
    let mut out = Vec::new();
    let mut current: Option<BlockSource> = None;
    // An id's text, gathered across entity references (which split a text node).
    let mut text = String::new();
    let mut seen_root = false;
    loop {
        match reader.read_event().map_err(|e| bad(e.to_string()))? {
            Event::Start(e) => {
                text.clear();
                match e.name().as_ref() {
                    b"BlockList" => seen_root = true,
                    b"Committed" => current = Some(BlockSource::Committed),
                    b"Uncommitted" => current = Some(BlockSource::Uncommitted),
                    b"Latest" => current = Some(BlockSource::Latest),
                    other => {
                        return Err(bad(format!(
                            "unexpected element <{}>",
                            String::from_utf8_lossy(other)
                        )))
                    }
                }
            }
            Event::Text(t) => {
                let raw = t.decode().map_err(|e| bad(e.to_string()))?;
                text.push_str(&quick_xml::escape::unescape(&raw).map_err(|e| bad(e.to_string()))?);
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| bad(e.to_string()))?;
                        quick_xml::escape::resolve_xml_entity(&name)
                            .ok_or_else(|| bad(format!("unknown entity &{name};")))?
                            .to_string()
                    }
                };
                text.push_str(&resolved);
            }
            Event::End(e) if e.name().as_ref() != b"BlockList" => {
                if let Some(source) = current.take() {
                    out.push((source, text.trim().to_string()));
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(bad("it has no <BlockList> element".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_keep_their_order_and_sources() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
            <BlockList><Latest>AAA=</Latest><Uncommitted>Qk&#74;C</Uncommitted><Committed>Q0ND</Committed></BlockList>"#;
        assert_eq!(
            parse_block_list(body).unwrap(),
            vec![
                (BlockSource::Latest, "AAA=".to_string()),
                (BlockSource::Uncommitted, "QkJC".to_string()),
                (BlockSource::Committed, "Q0ND".to_string()),
            ]
        );
        assert!(parse_block_list("<Nope/>").is_err());
        assert!(parse_block_list("not xml <").is_err());
    }

    #[test]
    fn listings_escape_names_and_carry_the_next_marker() {
        let b = BlobInfo {
            name: "a&b<c>.txt".into(),
            size: 5,
            last_modified: "2026-01-01T00:00:00Z".parse().unwrap(),
            e_tag: None,
        };
        let xml = list_blobs("http://h/", "c", "a", "", 10, &[b], Some("next"));
        assert!(xml.contains("<Name>a&amp;b&lt;c&gt;.txt</Name>"), "{xml}");
        assert!(xml.contains("<Content-Length>5</Content-Length>"));
        assert!(xml.contains("<NextMarker>next</NextMarker>"));
        assert!(xml.contains("Thu, 01 Jan 2026 00:00:00 GMT"));
    }
}
