//! Which files an output file's `filePattern` names, and the blob name each gets.
//!
//! Patterns are globs (the `glob` crate): `*` and `?` stay within one path segment, `**`
//! matches any number of directories, `[...]` a set. Relative patterns start at the working
//! directory, so `../std*.txt` names the task's own `stdout.txt` and `stderr.txt`. Blob names
//! follow Azure: a pattern without wildcards uploads one file, to `path` (or its file name);
//! with wildcards, each match keeps its path below the pattern's last literal directory, under
//! the virtual directory `path`.

use std::path::{Component, Path, PathBuf};

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::runner) struct Match {
    pub(in crate::runner) file: PathBuf,
    pub(in crate::runner) blob: String,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `path` with `.` and `a/..` removed, lexically (the directories named before a wildcard
/// are the agent's own, so no symlink games to worry about).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The files `pattern` matches (regular files only), each with its blob name, sorted.
pub(in crate::runner) fn matches(
    working_dir: &Path,
    pattern: &str,
    path: Option<&str>,
) -> Result<Vec<Match>, String> {
    let full = normalize(&working_dir.join(pattern));
    let wildcard = has_wildcard(pattern);
    // The literal directories before the first wildcard: what blob names are relative to.
    let mut base = PathBuf::new();
    for c in full.components() {
        if has_wildcard(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c.as_os_str());
    }
    let text = full
        .to_str()
        .ok_or_else(|| format!("the pattern '{pattern}' is not valid UTF-8"))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let found = glob::glob_with(text, options)
        .map_err(|e| format!("filePattern '{pattern}' is not a valid pattern: {e}"))?;
    let mut out = Vec::new();
    for entry in found {
        // An unreadable directory on the way is skipped, as a shell glob does.
        let Ok(file) = entry else { continue };
        if !file.is_file() {
            continue;
        }
        let blob = if wildcard {
            let rel = file.strip_prefix(&base).unwrap_or(&file);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
                Some(dir) => format!("{dir}/{rel}"),
                None => rel,
            }
        } else {
            match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
                Some(name) => name.to_string(),
                None => file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }
        };
        out.push(Match { file, blob });
    }
    out.sort_by(|a, b| a.blob.cmp(&b.blob));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let wd = dir.path().join("wd");
        for f in [
            "wd/out/a.txt",
            "wd/out/b.log",
            "wd/out/deep/c.txt",
            "wd/out/deep/er/d.txt",
            "wd/top.txt",
            "wd/.hidden.txt",
            "stdout.txt",
            "stderr.txt",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        std::fs::create_dir_all(wd.join("out/dir.txt")).unwrap();
        dir
    }

    fn blobs(wd: &Path, pattern: &str, path: Option<&str>) -> Vec<String> {
        matches(wd, pattern, path)
            .unwrap()
            .into_iter()
            .map(|m| m.blob)
            .collect()
    }

    #[test]
    fn single_star_stays_in_one_directory() {
        let dir = tree();
        let wd = dir.path().join("wd");
        assert_eq!(blobs(&wd, "out/*.txt", None), ["a.txt"]);
        assert_eq!(
            blobs(&wd, "*.txt", Some("res")),
            [".hidden.txt", "top.txt"].map(|b| format!("res/{b}"))
        );
        assert_eq!(blobs(&wd, "out/?.log", None), ["b.log"]);
    }

    #[test]
    fn double_star_keeps_the_tree_below_the_literal_part() {
        let dir = tree();
        let wd = dir.path().join("wd");
        assert_eq!(
            blobs(&wd, "out/**/*.txt", Some("results/")),
            [
                "results/a.txt",
                "results/deep/c.txt",
                "results/deep/er/d.txt"
            ]
        );
        assert_eq!(blobs(&wd, "**/d.txt", None), ["out/deep/er/d.txt"]);
    }

    #[test]
    fn the_task_logs_are_reachable_with_dot_dot() {
        let dir = tree();
        let wd = dir.path().join("wd");
        assert_eq!(
            blobs(&wd, "../std*.txt", Some("logs")),
            ["logs/stderr.txt", "logs/stdout.txt"]
        );
        let m = matches(&wd, "../stdout.txt", None).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(std::fs::read_to_string(&m[0].file).unwrap(), "stdout.txt");
    }

    #[test]
    fn a_literal_pattern_uploads_one_file_to_path() {
        let dir = tree();
        let wd = dir.path().join("wd");
        assert_eq!(blobs(&wd, "out/a.txt", None), ["a.txt"]);
        assert_eq!(
            blobs(&wd, "out/a.txt", Some("x/renamed.txt")),
            ["x/renamed.txt"]
        );
        assert!(blobs(&wd, "out/missing.txt", None).is_empty());
        // Directories never match.
        assert!(blobs(&wd, "out/dir.txt", None).is_empty());
        assert!(matches(&wd, "out/[", None).is_err());
    }
}
