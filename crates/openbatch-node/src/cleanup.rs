//! Deleting the task and job directories the server asks for (`ServerMsg::DeleteTaskDirs`).
//!
//! The agent only ever deletes under `<root>/workitems/`: a directory is named by a job id and
//! an optional task id, each checked against the Azure id rule (so no `/`, no `..`), and its
//! parent must resolve to where it should be (no symbolic link on the way out of the root). A
//! directory that a run on this node uses is left alone. Deleting is two steps: the directory
//! is renamed into `<root>/volatile/deleting/` at once (cheap, and in message order, so a run
//! of the same task that arrives next starts in a fresh directory), and the trash is removed
//! on a blocking thread, off the agent's loop. Trash left by an agent that died is removed
//! when the next one starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use openbatch_api::agent::TaskDirRef;

/// Where directories wait to be removed, relative to the node root.
pub(crate) const TRASH: &str = "volatile/deleting";

/// What became of one requested directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Moved to the trash (removed in the background).
    Taken,
    /// It was not there (already deleted, or never created on this node).
    Missing,
    /// A run on this node uses it: left alone.
    InUse,
    /// Not a directory the agent may delete.
    Refused(String),
}

/// The Azure id rule: letters, digits, hyphens and underscores, 1 to 64 characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A job id: an Azure id, or the `<schedule>:job-<n>` id of a job a job schedule created.
fn valid_job_id(id: &str) -> bool {
    match id.split_once(':') {
        None => valid_id(id),
        Some((schedule, run)) => {
            valid_id(schedule)
                && run
                    .strip_prefix("job-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

/// The directory's path relative to the node root, if the request names one under
/// `workitems/` the agent may delete.
pub(crate) fn checked_path(dir: &TaskDirRef) -> Result<String, String> {
    if !valid_job_id(&dir.job_id) {
        return Err(format!("'{}' is not a job id", dir.job_id));
    }
    if let Some(t) = &dir.task_id {
        if !valid_id(t) {
            return Err(format!("'{t}' is not a task id"));
        }
    }
    let path = dir.path();
    // Belt and braces: the ids above cannot make anything else.
    let ok = path.starts_with("workitems/")
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(format!("'{path}' is not under workitems/"));
    }
    Ok(path)
}

/// Move each requested directory into the trash, unless `in_use` says a run uses it or it
/// is not one the agent may delete. Returns each directory's outcome, and what the caller
/// removes in the background ([`remove_all`]). `root` is the canonical node root.
pub(crate) fn take_dirs(
    root: &Path,
    dirs: &[TaskDirRef],
    in_use: &dyn Fn(&TaskDirRef) -> bool,
) -> (Vec<Outcome>, Vec<PathBuf>) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let trash = root.join(TRASH);
    let mut outcomes = Vec::with_capacity(dirs.len());
    let mut taken = Vec::new();
    for d in dirs {
        let outcome = match checked_path(d) {
            Err(why) => Outcome::Refused(why),
            Ok(_) if in_use(d) => Outcome::InUse,
            Ok(rel) => {
                let path = root.join(&rel);
                let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                match (parent.canonicalize(), path.symlink_metadata()) {
                    (Err(_), _) | (_, Err(_)) => Outcome::Missing,
                    (Ok(real), Ok(_)) if real != parent => Outcome::Refused(format!(
                        "'{rel}' leads out of the node root through a symbolic link"
                    )),
                    (Ok(_), Ok(_)) => {
                        let _ = std::fs::create_dir_all(&trash);
                        let n = NEXT.fetch_add(1, Ordering::Relaxed);
                        let to = trash.join(format!("{}-{n}", std::process::id()));
                        match std::fs::rename(&path, &to) {
                            Ok(()) => {
                                taken.push(to);
                                Outcome::Taken
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Missing,
                            Err(e) => {
                                // Another file system under the root (a mount): removed in
                                // place instead.
                                tracing::debug!(path = %path.display(), error = %e, "a directory could not be moved to the trash; removing it in place");
                                taken.push(path);
                                Outcome::Taken
                            }
                        }
                    }
                }
            }
        };
        outcomes.push(outcome);
    }
    (outcomes, taken)
}

/// Remove what [`take_dirs`] took (blocking).
pub(crate) fn remove_all(paths: &[PathBuf]) {
    for p in paths {
        let result = match p.symlink_metadata() {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
            Ok(_) => std::fs::remove_file(p),
            Err(_) => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(path = %p.display(), error = %e, "a task directory could not be removed");
        }
    }
}

/// Remove trash left by an earlier agent (blocking).
pub(crate) fn clean_trash(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join(TRASH)) else {
        return;
    };
    let paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    remove_all(&paths);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(job: &str, task: Option<&str>) -> TaskDirRef {
        TaskDirRef {
            job_id: job.into(),
            task_id: task.map(Into::into),
        }
    }

    fn root() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("workitems")).unwrap();
        (tmp, root)
    }

    fn make_task_dir(root: &Path, job: &str, task: &str) -> PathBuf {
        let d = root.join(openbatch_api::agent::task_dir(job, task));
        std::fs::create_dir_all(d.join("wd")).unwrap();
        std::fs::write(d.join("stdout.txt"), "hi").unwrap();
        std::fs::write(d.join("wd/out.bin"), "data").unwrap();
        d
    }

    #[test]
    fn deletes_task_and_job_directories_and_missing_ones_are_fine() {
        let (_tmp, root) = root();
        let t1 = make_task_dir(&root, "j", "t1");
        let t2 = make_task_dir(&root, "j", "t2");
        let s = make_task_dir(&root, "nightly:job-3", "t");
        let other = make_task_dir(&root, "nightly:job-4", "t");
        let (out, taken) = take_dirs(
            &root,
            &[
                dir("j", Some("t1")),
                dir("j", Some("gone")),
                dir("nightly:job-3", None),
            ],
            &|_| false,
        );
        assert_eq!(out, vec![Outcome::Taken, Outcome::Missing, Outcome::Taken]);
        // Out of the way at once; the trash goes in the background.
        assert!(!t1.exists() && t2.exists() && !s.exists() && other.exists());
        assert_eq!(taken.len(), 2);
        assert!(taken.iter().all(|p| p.starts_with(root.join(TRASH))));
        remove_all(&taken);
        assert_eq!(std::fs::read_dir(root.join(TRASH)).unwrap().count(), 0);
        let (out, taken) = take_dirs(&root, &[dir("j", None)], &|_| false);
        assert_eq!(out, vec![Outcome::Taken]);
        remove_all(&taken);
        assert!(!root.join("workitems/j").exists());
        assert!(root.join("workitems/nightly/job-4/t").exists());
    }

    #[test]
    fn refuses_anything_outside_workitems() {
        let (_tmp, root) = root();
        let victim = root.join("shared/keep");
        std::fs::create_dir_all(&victim).unwrap();
        let bad = [
            dir("..", None),
            dir("../shared", None),
            dir("/etc", None),
            dir("j/../../shared", None),
            dir("", None),
            dir("j", Some("..")),
            dir("j", Some("../../../shared")),
            dir("j", Some("/abs")),
            dir("j", Some("")),
            dir("s:job-x", None),
            dir("s:../x", None),
        ];
        let (out, taken) = take_dirs(&root, &bad, &|_| false);
        assert!(taken.is_empty());
        for (d, o) in bad.iter().zip(&out) {
            assert!(matches!(o, Outcome::Refused(_)), "{d:?} was {o:?}");
        }
        assert!(victim.exists());
    }

    #[test]
    fn refuses_a_path_through_a_symbolic_link() {
        let (_tmp, root) = root();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("job-1/t");
        std::fs::create_dir_all(&target).unwrap();
        // A task replaced its job's directory with a link out of the root.
        std::os::unix::fs::symlink(outside.path(), root.join("workitems/j")).unwrap();
        let (out, taken) = take_dirs(&root, &[dir("j", Some("t"))], &|_| false);
        assert!(matches!(out[0], Outcome::Refused(_)), "{out:?}");
        assert!(taken.is_empty());
        assert!(target.exists());
        // The link itself, as the job's directory, goes (not what it points to).
        let (out, taken) = take_dirs(&root, &[dir("j", None)], &|_| false);
        assert_eq!(out, vec![Outcome::Taken]);
        remove_all(&taken);
        assert!(target.exists());
        assert!(root.join("workitems/j").symlink_metadata().is_err());
    }

    #[test]
    fn leaves_directories_that_a_run_uses() {
        let (_tmp, root) = root();
        let busy = make_task_dir(&root, "j", "busy");
        let idle = make_task_dir(&root, "j", "idle");
        let running = [("j".to_string(), "busy".to_string())];
        let in_use = |d: &TaskDirRef| {
            running.iter().any(|(j, t)| {
                j.eq_ignore_ascii_case(&d.job_id)
                    && d.task_id
                        .as_deref()
                        .is_none_or(|x| x.eq_ignore_ascii_case(t))
            })
        };
        let (out, taken) = take_dirs(
            &root,
            &[
                dir("j", Some("busy")),
                dir("j", Some("idle")),
                dir("J", None),
            ],
            &in_use,
        );
        assert_eq!(out, vec![Outcome::InUse, Outcome::Taken, Outcome::InUse]);
        remove_all(&taken);
        assert!(busy.join("wd/out.bin").exists());
        assert!(!idle.exists());
    }

    #[test]
    fn trash_of_an_earlier_agent_is_cleaned() {
        let (_tmp, root) = root();
        let left = root.join(TRASH).join("123-0/wd");
        std::fs::create_dir_all(&left).unwrap();
        std::fs::write(left.join("f"), "x").unwrap();
        clean_trash(&root);
        assert_eq!(std::fs::read_dir(root.join(TRASH)).unwrap().count(), 0);
    }
}
