//! The server's blob endpoint over HTTP, against a real server on 127.0.0.1:0 with the
//! default (local directory) auto-storage: signed URLs, List Blobs paging, ranged reads, Put
//! Blob, Put Block and Put Block List, and refusals.

use base64::Engine as _;
use chrono::{Duration, Utc};
use openbatch_server::{start, ServerConfig};
use openbatch_storage::UrlSigner;

#[tokio::test]
async fn blob_endpoint_speaks_the_azure_blob_subset_nodes_need() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        agent_program: Some("/bin/false".into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let key = openbatch_api::auth::decode_key(&server.credentials().account_key).unwrap();
    let signer = UrlSigner::new(&key);
    let base = format!("{}/openbatch/storage/work", server.endpoint());
    let sas = |perms: &str| signer.sign("work", perms, Utc::now() + Duration::hours(1));
    let http = reqwest::Client::new();

    // Put Blob, then read it back whole and by range.
    let put = http
        .put(format!("{base}/in/a.txt?{}", sas("cw")))
        .header("x-ms-blob-type", "BlockBlob")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert!(put.headers().contains_key("etag"));
    let get = http
        .get(format!("{base}/in/a.txt?{}", sas("r")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.text().await.unwrap(), "hello world");
    let ranged = http
        .get(format!("{base}/in/a.txt?{}", sas("r")))
        .header("x-ms-range", "bytes=6-")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"].to_str().unwrap(),
        "bytes 6-10/11"
    );
    assert_eq!(ranged.text().await.unwrap(), "world");
    // The blob is a plain file of the local backend.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("storage/work/in/a.txt")).unwrap(),
        "hello world"
    );

    // Put Block twice, then Put Block List in another order.
    let id = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (block, data) in [("0001", "second"), ("0000", "first-")] {
        let r = http
            .put(format!(
                "{base}/in/blocks.txt?comp=block&blockid={}&{}",
                urlencode(&id(block)),
                sas("w")
            ))
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let list = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
        id("0000"),
        id("0001")
    );
    let r = http
        .put(format!("{base}/in/blocks.txt?comp=blocklist&{}", sas("w")))
        .body(list)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let text = http
        .get(format!("{base}/in/blocks.txt?{}", sas("r")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "first-second");

    // List Blobs, one per page, following NextMarker.
    let mut names = Vec::new();
    let mut marker = String::new();
    for _ in 0..5 {
        let xml = http
            .get(format!(
                "{base}?restype=container&comp=list&prefix=in/&maxresults=1&marker={}&{}",
                urlencode(&marker),
                sas("l")
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        names.extend(between_all(&xml, "<Name>", "</Name>"));
        match between_all(&xml, "<NextMarker>", "</NextMarker>").pop() {
            Some(m) if !m.is_empty() => marker = m,
            _ => break,
        }
    }
    assert_eq!(names, ["in/a.txt", "in/blocks.txt"]);

    // Refusals: no signature, a signature for another container, missing permission, expired.
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let r = status(format!("{base}/in/a.txt")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ms-error-code"], "AuthenticationFailed");
    let other = signer.sign("other", "r", Utc::now() + Duration::hours(1));
    assert_eq!(
        status(format!("{base}/in/a.txt?{other}")).await.status(),
        403
    );
    let r = status(format!("{base}/in/a.txt?{}", sas("l"))).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-ms-error-code"],
        "AuthorizationPermissionMismatch"
    );
    let expired = signer.sign("work", "r", Utc::now() - Duration::minutes(1));
    assert_eq!(
        status(format!("{base}/in/a.txt?{expired}")).await.status(),
        403
    );
    let r = http
        .put(format!("{base}/in/c.txt?{}", sas("rl")))
        .header("x-ms-blob-type", "BlockBlob")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        status(format!("{base}/in/none.txt?{}", sas("r")))
            .await
            .status(),
        404
    );

    server.shutdown().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between_all(text: &str, open: &str, close: &str) -> Vec<String> {
    text.split(open)
        .skip(1)
        .filter_map(|s| s.split(close).next().map(str::to_string))
        .collect()
}
