//! Turning an Azure Batch command line into an argv.
//!
//! Azure Batch runs command lines without a shell ("The command lines executed by tasks on
//! compute nodes don't run under a shell"): no `$VAR` expansion, no globbing, no pipes. Users who
//! want those write `/bin/sh -c "..."`. We split with POSIX shell quoting rules (single quotes,
//! double quotes, backslash escapes; a word starting with `#` begins a comment) and exec the
//! first word.

use std::path::{Path, PathBuf};

use super::failure::{codes, FailureInfo};

/// Splits `command_line` into a non-empty argv.
pub(super) fn parse(command_line: &str) -> Result<Vec<String>, FailureInfo> {
    // The command line itself stays out of the message: it is already visible on the task, and
    // users sometimes put credentials in it that should not be copied into more places.
    let argv = shell_words::split(command_line).map_err(|_| {
        FailureInfo::user(
            codes::COMMAND_LAUNCH_FAILED,
            "The command line could not be parsed: it has an unterminated quote or a trailing \
             backslash. Command lines are split like a POSIX shell would split them, without \
             running one; close the quote or escape it",
        )
    })?;
    if argv.is_empty() {
        return Err(FailureInfo::user(
            codes::COMMAND_LAUNCH_FAILED,
            "The command line is empty (or only a comment); give the program to run",
        ));
    }
    Ok(argv)
}

/// Where to exec `program` from: a relative path with a slash (`./run.sh`, `bin/tool`) means the
/// task's working directory, where resource files land, whatever the agent's own directory is.
/// A bare name is looked up on `PATH`; an absolute path is used as is.
pub(super) fn resolve_program(program: &str, working_dir: &Path) -> PathBuf {
    let path = Path::new(program);
    if program.contains('/') && path.is_relative() {
        working_dir.join(path)
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_shell_quoting_and_no_expansion() {
        assert_eq!(
            parse(r#"/bin/sh -c "echo 'a b' > out.txt""#).unwrap(),
            vec!["/bin/sh", "-c", "echo 'a b' > out.txt"]
        );
        assert_eq!(
            parse(r#"echo $HOME "x\"y" 'z'"#).unwrap(),
            vec!["echo", "$HOME", "x\"y", "z"]
        );
    }

    #[test]
    fn rejects_unbalanced_quotes_and_empty_lines() {
        for bad in [r#"echo "abc"#, "echo 'abc", "", "   ", "# only a comment"] {
            let failure = parse(bad).unwrap_err();
            assert_eq!(failure.code, codes::COMMAND_LAUNCH_FAILED, "{bad:?}");
        }
    }

    #[test]
    fn relative_programs_resolve_against_the_working_dir() {
        let wd = Path::new("/tasks/t1/wd");
        assert_eq!(
            resolve_program("./run.sh", wd),
            Path::new("/tasks/t1/wd/./run.sh")
        );
        assert_eq!(
            resolve_program("bin/tool", wd),
            Path::new("/tasks/t1/wd/bin/tool")
        );
        assert_eq!(resolve_program("python3", wd), Path::new("python3"));
        assert_eq!(resolve_program("/bin/sh", wd), Path::new("/bin/sh"));
    }
}
