//! Each backend against the real thing: the local directory always; Azure Blob against
//! Azurite and S3 against moto's server when they are installed (scripts/test.sh installs
//! both), skipped with the reason printed when they are not.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream;
use openbatch_storage::blobxml::BlockSource;
use openbatch_storage::blocks::BlockStager;
use openbatch_storage::{BackendKind, Container, Storage, StorageConfig, StorageError};

const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed when the test ends, pass or fail.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Put, list by string prefix, read whole and ranged, stream a multi-part blob, commit staged
/// blocks, delete: what the server's blob endpoint and the resolver need from any backend.
async fn exercise(c: &Container, stager: &BlockStager) {
    for (name, data) in [
        ("in/a.txt", "alpha"),
        ("in/sub/b.txt", "beta"),
        ("inx.txt", "x"),
        ("other/c.txt", "gamma"),
    ] {
        c.put(name, Bytes::from(data)).await.unwrap();
    }
    let names =
        |v: Vec<openbatch_storage::BlobInfo>| v.into_iter().map(|b| b.name).collect::<Vec<_>>();
    assert_eq!(
        names(c.list("in").await.unwrap()),
        ["in/a.txt", "in/sub/b.txt", "inx.txt"]
    );
    assert_eq!(
        names(c.list("in/").await.unwrap()),
        ["in/a.txt", "in/sub/b.txt"]
    );
    assert_eq!(names(c.list("in/su").await.unwrap()), ["in/sub/b.txt"]);
    assert_eq!(c.list("").await.unwrap().len(), 4);
    assert!(c.list("nothing/").await.unwrap().is_empty());
    let listed = c.list("other").await.unwrap();
    assert_eq!(listed[0].size, 5);

    assert_eq!(&c.get_bytes("in/a.txt").await.unwrap()[..], b"alpha");
    let (info, range, body) = c.get("other/c.txt", Some(1..3)).await.unwrap();
    assert_eq!((info.size, range), (5, 1..3));
    let parts: Vec<Bytes> = futures_util::TryStreamExt::try_collect(body).await.unwrap();
    assert_eq!(parts.concat(), b"am");
    assert!(matches!(
        c.get_bytes("in/missing.txt").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        c.head("in/missing.txt").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        c.put("a/../b", Bytes::new()).await,
        Err(StorageError::InvalidName(_))
    ));

    // More than one 8 MiB part.
    let chunk = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..3).map(|_| Ok(chunk.clone())).collect();
    let written = c
        .put_stream("big/blob.bin", stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(written, 9 * 1024 * 1024);
    assert_eq!(c.head("big/blob.bin").await.unwrap().size, 9 * 1024 * 1024);

    let id = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (block, data) in [("b1", "hello "), ("b0", "world")] {
        stager
            .stage(
                c.name(),
                "blocks/out.txt",
                &id(block),
                stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]),
            )
            .await
            .unwrap();
    }
    let list = [
        (BlockSource::Latest, id("b1")),
        (BlockSource::Uncommitted, id("b0")),
    ];
    assert_eq!(stager.commit(c, "blocks/out.txt", &list).await.unwrap(), 11);
    assert_eq!(
        &c.get_bytes("blocks/out.txt").await.unwrap()[..],
        b"hello world"
    );
    // The blocks are gone once committed.
    assert!(matches!(
        stager.commit(c, "blocks/out.txt", &list).await,
        Err(StorageError::InvalidInput(_))
    ));

    c.delete("inx.txt").await.unwrap();
    assert_eq!(
        names(c.list("in").await.unwrap()),
        ["in/a.txt", "in/sub/b.txt"]
    );
}

#[tokio::test]
async fn local_directory_backend() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageConfig::default(), dir.path()).unwrap();
    assert_eq!(storage.kind(), BackendKind::Local);
    let c = storage.container("inputs").unwrap();
    exercise(&c, &BlockStager::new(dir.path().join("blocks"))).await;
    // The blobs are plain files under DATA_DIR/storage/<container>.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("storage/inputs/in/sub/b.txt")).unwrap(),
        "beta"
    );
    assert!(storage.container("Bad_Name").is_err());
    assert!(storage.container("ab").is_err());
    assert!(storage
        .azure_container_url("inputs", "r", chrono::Utc::now())
        .unwrap()
        .is_none());
}

// --- Azure Blob, against Azurite ------------------------------------------------------------

fn azurite_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("AZURITE_BLOB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join("tests/conformance/.work/node_modules/.bin/azurite-blob")
        });
    bin.exists().then_some(bin)
}

/// Starts Azurite's blob service on a port it picks; returns the process and the port.
fn start_azurite(bin: &Path, location: &Path) -> (Proc, u16) {
    let mut child = Command::new(bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
        .arg(location)
        .args(["--skipApiVersionCheck", "--disableTelemetry", "--silent"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting azurite-blob");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line
                .split("successfully listens on http://127.0.0.1:")
                .nth(1)
            {
                let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                let _ = tx.send(port.parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("azurite-blob did not say which port it listens on within 60 s");
    (proc, port)
}

/// Create Container with Shared Key (Azurite's well-known account): `object_store` does not
/// create containers, and a container SAS cannot.
async fn create_azurite_container(port: u16, container: &str) {
    use hmac::Mac;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/devstoreaccount1/devstoreaccount1/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let resp = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{port}/devstoreaccount1/{container}?restype=container"
        ))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header("authorization", format!("SharedKey devstoreaccount1:{sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

#[tokio::test]
async fn azure_backend_against_azurite() {
    let Some(bin) = azurite_bin() else {
        eprintln!("SKIPPED azure_backend_against_azurite: azurite-blob is not installed (scripts/test.sh installs it into tests/conformance/.work; or set AZURITE_BLOB_BIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_azurite, port) = start_azurite(&bin, dir.path());
    create_azurite_container(port, "inputs").await;
    let cfg = StorageConfig {
        backend: BackendKind::Azure,
        account: Some("devstoreaccount1".into()),
        key: Some(AZURITE_KEY.into()),
        endpoint: Some(format!("http://127.0.0.1:{port}/devstoreaccount1")),
        ..StorageConfig::default()
    };
    let storage = Storage::open(&cfg, dir.path()).unwrap();
    let c = storage.container("inputs").unwrap();
    exercise(&c, &BlockStager::new(dir.path().join("blocks"))).await;

    // The container SAS the server hands nodes lists and reads, and only until it expires.
    let expiry = chrono::Utc::now() + chrono::Duration::hours(1);
    let url = storage
        .azure_container_url("inputs", "rl", expiry)
        .unwrap()
        .unwrap();
    let (base, sas) = url.split_once('?').unwrap();
    let http = reqwest::Client::new();
    let list = http
        .get(format!(
            "{base}?restype=container&comp=list&prefix=in/&{sas}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let xml = list.text().await.unwrap();
    assert!(xml.contains("<Name>in/a.txt</Name>"), "{xml}");
    let blob = http
        .get(format!("{base}/in/a.txt?{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.text().await.unwrap(), "alpha");
    // Read and list only: a write is refused.
    let put = http
        .put(format!("{base}/in/new.txt?{sas}"))
        .header("x-ms-blob-type", "BlockBlob")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    let expired = storage
        .azure_container_url(
            "inputs",
            "rl",
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .unwrap()
        .unwrap();
    let (base, sas) = expired.split_once('?').unwrap();
    let resp = http
        .get(format!("{base}/in/a.txt?{sas}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

// --- S3, against moto ----------------------------------------------------------------------

fn moto_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("MOTO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-conformance/bin/moto_server"));
    bin.exists().then_some(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn s3_backend_against_moto() {
    let Some(bin) = moto_bin() else {
        eprintln!("SKIPPED s3_backend_against_moto: moto_server is not installed (scripts/test.sh installs moto[server] into .venv-conformance; or set MOTO_SERVER_BIN)");
        return;
    };
    let port = free_port();
    let _moto = Proc(
        Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server"),
    );
    let http = reqwest::Client::new();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // moto does not check signatures: an unsigned Create Bucket is enough.
        match http.put(format!("{endpoint}/obtest")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() > deadline => panic!("moto_server did not start within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        backend: BackendKind::S3,
        bucket: Some("obtest".into()),
        endpoint: Some(endpoint),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing-secret".into()),
        ..StorageConfig::default()
    };
    let storage = Storage::open(&cfg, dir.path()).unwrap();
    let c = storage.container("inputs").unwrap();
    exercise(&c, &BlockStager::new(dir.path().join("blocks"))).await;
    // Containers are prefixes of one bucket: another container sees none of these blobs.
    assert!(storage
        .container("outputs")
        .unwrap()
        .list("")
        .await
        .unwrap()
        .is_empty());

    // Per-object presigned URLs are what nodes get for S3 auto-storage.
    let url = c
        .presigned_get_url("in/a.txt", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let body = http.get(&url).send().await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.text().await.unwrap(), "alpha");
}
