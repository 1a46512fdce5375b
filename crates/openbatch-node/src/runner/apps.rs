//! Application packages on the node: download each package (a zip file) once, unpack it under
//! `$AZ_BATCH_NODE_ROOT_DIR/applications/`, and give tasks the `AZ_BATCH_APP_PACKAGE_*`
//! variables that point there.
//!
//! The cache: a package is installed in `applications/<id><version>.<digest>` (the first 16 hex
//! digits of the zip's SHA-256, so a new upload of a version is a new directory). The directory
//! only ever appears whole: the zip is downloaded to a temporary file (and its digest checked),
//! unpacked into a temporary directory, then renamed into place. Its existence is the cache,
//! so it survives agent restarts; a reimage empties it with the rest of the node root. Two runs
//! that need the same package at once wait for one install (a lock per directory). Every
//! install appends one line to `applications/installs.log`.
//!
//! Unpacking refuses entries that would land outside the directory (`../x`, absolute paths,
//! symlinks that point out) and keeps the Unix permissions recorded in the zip.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::failure::codes;
use super::FailureInfo;

/// One package a run needs, with a URL it can be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPackageSpec {
    pub application_id: String,
    pub version: String,
    /// The reference named no version: `AZ_BATCH_APP_PACKAGE_<id>` is set too.
    pub is_default: bool,
    /// Hex SHA-256 of the zip file.
    pub sha256: String,
    pub url: String,
}

/// The packages of one run and where the node keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applications {
    /// `$AZ_BATCH_NODE_ROOT_DIR/applications`.
    pub dir: PathBuf,
    pub packages: Vec<AppPackageSpec>,
}

/// The install log's name, in the applications directory.
pub const INSTALL_LOG: &str = "installs.log";

const ATTEMPTS: u32 = 3;
const TEMP_PREFIX: &str = ".tmp-";

/// The name of a package's environment variable on Linux, as Azure Batch forms it: the
/// application id (case kept) and the version, with every character that cannot appear in a
/// variable name (Azure lists `.`, `-` and `#`) turned into `_`. Without a version, the
/// variable of the default version.
pub fn env_name(application_id: &str, version: Option<&str>) -> String {
    let flat = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    match version {
        Some(v) => format!("AZ_BATCH_APP_PACKAGE_{}_{}", flat(application_id), flat(v)),
        None => format!("AZ_BATCH_APP_PACKAGE_{}", flat(application_id)),
    }
}

/// The install directory's name under `applications/`.
pub fn install_dir_name(p: &AppPackageSpec) -> String {
    let digest: String = p.sha256.chars().take(16).collect();
    format!("{}{}.{digest}", p.application_id, p.version)
}

/// Remove what interrupted installs left behind (at agent start, before any run).
pub fn clean_partial(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = e.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// Install every package (each at most once per node) and return the variables that point to
/// them, in the order of the packages.
pub async fn install_all(apps: &Applications) -> Result<Vec<(String, String)>, FailureInfo> {
    let mut env = Vec::new();
    for p in &apps.packages {
        let dir = install(&apps.dir, p).await?;
        let path = dir.display().to_string();
        env.push((env_name(&p.application_id, Some(&p.version)), path.clone()));
        if p.is_default {
            env.push((env_name(&p.application_id, None), path));
        }
    }
    Ok(env)
}

/// Locks per install directory, so concurrent runs install a package once.
static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

async fn install(apps_dir: &Path, p: &AppPackageSpec) -> Result<PathBuf, FailureInfo> {
    let failure = |category_user: bool, code: &str, why: String| {
        let message = format!(
            "Application package '{}' version '{}' could not be installed: {why}",
            p.application_id, p.version
        );
        let f = if category_user {
            FailureInfo::user(code, message)
        } else {
            FailureInfo::server(code, message)
        };
        f.with_detail("ApplicationId", p.application_id.clone())
            .with_detail("Version", p.version.clone())
    };
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(failure(
            false,
            codes::APPLICATION_PACKAGE_DOWNLOAD_FAILED,
            "the server sent no digest for it".into(),
        ));
    }
    let target = apps_dir.join(install_dir_name(p));
    if target.is_dir() {
        return Ok(target);
    }
    let lock = {
        let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(target.clone()).or_default().clone()
    };
    let _guard = lock.lock().await;
    if target.is_dir() {
        return Ok(target);
    }
    std::fs::create_dir_all(apps_dir).map_err(|e| {
        failure(
            false,
            codes::APPLICATION_PACKAGE_INSTALL_FAILED,
            format!("creating {}: {e}", apps_dir.display()),
        )
    })?;
    let unique = format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let zip_path = apps_dir.join(format!("{unique}.zip"));
    let unpack_dir = apps_dir.join(format!("{unique}.d"));
    let result = async {
        download(&p.url, &zip_path, &p.sha256)
            .await
            .map_err(|(user, why)| {
                failure(user, codes::APPLICATION_PACKAGE_DOWNLOAD_FAILED, why)
            })?;
        let (zip, dir) = (zip_path.clone(), unpack_dir.clone());
        tokio::task::spawn_blocking(move || unpack(&zip, &dir))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|why| failure(true, codes::APPLICATION_PACKAGE_INSTALL_FAILED, why))?;
        std::fs::rename(&unpack_dir, &target).map_err(|e| {
            failure(
                false,
                codes::APPLICATION_PACKAGE_INSTALL_FAILED,
                format!("moving it into place: {e}"),
            )
        })?;
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&zip_path);
    if let Err(f) = result {
        let _ = std::fs::remove_dir_all(&unpack_dir);
        return Err(f);
    }
    // One line per install: the node's record that each package was fetched once.
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(apps_dir.join(INSTALL_LOG))
    {
        let _ = writeln!(
            log,
            "{} {} {} {}",
            chrono::Utc::now().to_rfc3339(),
            p.application_id,
            p.version,
            p.sha256
        );
    }
    tracing::info!(application_id = %p.application_id, version = %p.version, dir = %target.display(), "installed an application package");
    Ok(target)
}

/// Download `url` to `dest`, checking the SHA-256. Errors: (is it the user's fault, why).
/// The URL carries a signature and is never reported.
async fn download(url: &str, dest: &Path, sha256: &str) -> Result<(), (bool, String)> {
    let client = super::download::client().map_err(|f| (false, f.message))?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let resp = match client.get(url).send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("the download failed: {}", e.without_url());
                continue;
            }
        };
        let status = resp.status();
        if !status.is_success() {
            last = format!("the download answered HTTP {}", status.as_u16());
            if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                return Err((true, last));
            }
            continue;
        }
        match write_body(resp, dest).await {
            Ok(digest) if digest.eq_ignore_ascii_case(sha256) => return Ok(()),
            Ok(digest) => {
                last = format!("its SHA-256 is {digest}, expected {sha256}");
            }
            Err(e) => last = e,
        }
    }
    Err((false, last))
}

async fn write_body(mut resp: reqwest::Response, dest: &Path) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("the download stopped: {}", e.without_url()))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Unpack a zip file into `dir` (created). Refuses entries that would escape `dir`.
pub fn unpack(zip_path: &Path, dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(zip_path).map_err(|e| format!("opening the zip: {e}"))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("it is not a readable zip file: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("reading entry {i}: {e}"))?;
        let raw = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let escapes = raw.starts_with('/')
            || raw.starts_with('\\')
            || raw.split(['/', '\\']).any(|c| c == "..");
        let Some(rel) = entry.enclosed_name().filter(|_| !escapes) else {
            return Err(format!(
                "the entry '{raw}' would be written outside the package's directory"
            ));
        };
        let path = dir.join(&rel);
        let io = |e: std::io::Error| format!("writing '{raw}': {e}");
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            std::io::Read::read_to_string(&mut entry, &mut target).map_err(io)?;
            if !stays_inside(&rel, Path::new(&target)) {
                return Err(format!(
                    "the symlink '{raw}' points outside the package's directory"
                ));
            }
            std::os::unix::fs::symlink(&target, &path).map_err(io)?;
            continue;
        }
        let mut out = std::fs::File::create(&path).map_err(io)?;
        std::io::copy(&mut entry, &mut out).map_err(io)?;
        if let Some(mode) = entry.unix_mode() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(io)?;
        }
    }
    Ok(())
}

/// Whether a symlink at `link` (relative to the package directory) with this target resolves
/// inside the package directory, by its path alone.
fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use zip::write::SimpleFileOptions;

    fn make_zip(path: &Path, entries: &[(&str, &[u8], u32)]) {
        let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, data, mode) in entries {
            w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn env_names_follow_azure_linux_rules() {
        assert_eq!(
            env_name("blender", Some("2.7")),
            "AZ_BATCH_APP_PACKAGE_blender_2_7"
        );
        assert_eq!(
            env_name("agent-Linux-x64", Some("1.1.46.0")),
            "AZ_BATCH_APP_PACKAGE_agent_Linux_x64_1_1_46_0"
        );
        assert_eq!(env_name("FOO", None), "AZ_BATCH_APP_PACKAGE_FOO");
        assert_eq!(
            env_name("my_app", Some("v1-rc#2")),
            "AZ_BATCH_APP_PACKAGE_my_app_v1_rc_2"
        );
    }

    #[test]
    fn unpack_keeps_modes_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("p.zip");
        make_zip(
            &zip,
            &[
                ("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
                ("README", b"x", 0o644),
            ],
        );
        let out = tmp.path().join("out");
        unpack(&zip, &out).unwrap();
        let mode = std::fs::metadata(out.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read(out.join("README")).unwrap(), b"x");
    }

    #[test]
    fn unpack_refuses_zip_slip() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "../evil.txt",
            "a/../../evil.txt",
            "/etc/evil.txt",
            "a/./../../evil.txt",
        ] {
            let zip = tmp.path().join("p.zip");
            make_zip(&zip, &[("ok.txt", b"ok", 0o644), (name, b"evil", 0o644)]);
            let out = tmp.path().join("out");
            match unpack(&zip, &out) {
                Err(err) => assert!(err.contains("outside"), "{name}: {err}"),
                // The zip writer may have stored an absolute name as a relative one: then it
                // lands inside, which is as safe.
                Ok(()) => assert!(out.join("etc/evil.txt").exists(), "{name}"),
            }
            assert!(!tmp.path().join("evil.txt").exists());
            let _ = std::fs::remove_dir_all(&out);
        }
        // A symlink that points out of the package is refused too.
        let zip = tmp.path().join("s.zip");
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        w.add_symlink("lib/link", "../../..", SimpleFileOptions::default())
            .unwrap();
        w.finish().unwrap();
        let err = unpack(&zip, &tmp.path().join("s")).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        assert!(stays_inside(Path::new("lib/link"), Path::new("../bin/x")));
        assert!(!stays_inside(Path::new("link"), Path::new("../x")));
        assert!(!stays_inside(Path::new("link"), Path::new("/x")));
    }

    /// A tiny HTTP server that serves one body and counts the requests.
    async fn serve(body: Vec<u8>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                });
            }
        });
        (format!("http://{addr}/pkg.zip?sig=secret"), hits)
    }

    /// Two runs asking for the same package at once share one download; a later run finds it
    /// installed; a digest mismatch fails and leaves nothing behind.
    #[tokio::test]
    async fn a_package_is_downloaded_once_per_node() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("src.zip");
        make_zip(&zip, &[("v.txt", b"1", 0o644)]);
        let bytes = std::fs::read(&zip).unwrap();
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (url, hits) = serve(bytes).await;
        let apps = Applications {
            dir: tmp.path().join("applications"),
            packages: vec![AppPackageSpec {
                application_id: "Tool".into(),
                version: "1.0".into(),
                is_default: true,
                sha256: sha.clone(),
                url: url.clone(),
            }],
        };
        let (a, b) = tokio::join!(install_all(&apps), install_all(&apps));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        let dir = apps.dir.join(format!("Tool1.0.{}", &sha[..16]));
        assert_eq!(
            a,
            [
                (
                    "AZ_BATCH_APP_PACKAGE_Tool_1_0".to_string(),
                    dir.display().to_string()
                ),
                (
                    "AZ_BATCH_APP_PACKAGE_Tool".to_string(),
                    dir.display().to_string()
                ),
            ]
        );
        assert_eq!(std::fs::read(dir.join("v.txt")).unwrap(), b"1");
        install_all(&apps).await.unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        let log = std::fs::read_to_string(apps.dir.join(INSTALL_LOG)).unwrap();
        assert_eq!(log.lines().count(), 1);

        let mut wrong = apps.clone();
        wrong.packages[0].version = "2.0".into();
        wrong.packages[0].sha256 = "0".repeat(64);
        let f = install_all(&wrong).await.unwrap_err();
        assert_eq!(f.code, codes::APPLICATION_PACKAGE_DOWNLOAD_FAILED);
        assert!(
            !f.message.contains("secret"),
            "the URL's signature is never reported"
        );
        let left: Vec<_> = std::fs::read_dir(&apps.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left.len(),
            2,
            "only the first install and the log: {left:?}"
        );
    }
}
