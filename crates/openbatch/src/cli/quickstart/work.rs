//! The quickstart's workload: generated input files, and the command line each task runs on
//! its file, with what the task must report about it.

use std::path::Path;

use anyhow::Context;

/// The task's work on its file, in a shell since Batch command lines run without one: count
/// lines and words, find the most frequent word, checksum the file, and leave a sorted copy
/// in the working directory. Only POSIX tools any Debian has.
pub(super) fn command_line(file: &str) -> String {
    format!(
        "/bin/sh -c \"set -e; set -- $(wc -l -w < {file}); \
         top=$(tr -s ' ' '\\n' < {file} | sort | uniq -c | sort -k1,1nr -k2,2 | head -n 1 | awk '{{print $2}}'); \
         sum=$(sha256sum {file} | cut -c1-16); \
         sort {file} > sorted.txt; \
         echo \\\"{file}: $1 lines, $2 words, most frequent '$top', sha256 $sum...\\\"\""
    )
}

/// One generated input file and what its task must report about it.
pub(super) struct InputFile {
    pub(super) task_id: String,
    pub(super) name: String,
    pub(super) lines: usize,
    pub(super) words: usize,
}

impl InputFile {
    /// The start of the task's first stdout line.
    pub(super) fn expected_report(&self) -> String {
        format!("{}: {} lines, {} words,", self.name, self.lines, self.words)
    }
}

const VOCABULARY: [&str; 32] = [
    "batch",
    "node",
    "pool",
    "task",
    "job",
    "slot",
    "queue",
    "compute",
    "render",
    "frame",
    "genome",
    "sample",
    "sweep",
    "train",
    "score",
    "model",
    "shard",
    "retry",
    "output",
    "input",
    "spot",
    "dedicated",
    "scale",
    "formula",
    "metric",
    "stdout",
    "stderr",
    "shared",
    "start",
    "mount",
    "cluster",
    "quota",
];

/// Writes `taskdata1.txt` ... `taskdataN.txt`: lines of words drawn with a skew toward the
/// start of the vocabulary, so each file has a clear most frequent word. Deterministic.
pub(super) fn write_inputs(dir: &Path, n: u32) -> anyhow::Result<Vec<InputFile>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    (1..=n)
        .map(|i| {
            let (text, lines, words) = generate(i);
            let name = format!("taskdata{i}.txt");
            let path = dir.join(&name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(InputFile {
                task_id: format!("task{i}"),
                name,
                lines,
                words,
            })
        })
        .collect()
}

fn generate(seed: u32) -> (String, usize, usize) {
    let mut rng = SplitMix64(0x5eed_0000_0000_0000 ^ u64::from(seed));
    let lines = 100 + (rng.next() % 150) as usize;
    let mut text = String::new();
    let mut words = 0;
    for _ in 0..lines {
        let n = 4 + (rng.next() % 9) as usize;
        for w in 0..n {
            let a = rng.next() % VOCABULARY.len() as u64;
            let b = rng.next() % VOCABULARY.len() as u64;
            if w > 0 {
                text.push(' ');
            }
            text.push_str(VOCABULARY[a.min(b) as usize]);
        }
        text.push('\n');
        words += n;
    }
    (text, lines, words)
}

/// SplitMix64: a tiny, well-mixed generator; the inputs only need to look varied and be
/// reproducible.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line, split as the node agent splits it (POSIX words, no shell), run by
    /// /bin/sh on a generated file, reports what the quickstart expects.
    #[test]
    fn the_task_command_reports_what_the_quickstart_checks() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = write_inputs(dir.path(), 3).unwrap();
        let input = &inputs[2];
        let argv = shell_words::split(&command_line(&input.name)).unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            stdout.starts_with(&input.expected_report()),
            "{stdout:?} does not start with {:?}",
            input.expected_report()
        );
        assert!(stdout.contains(", most frequent '"), "{stdout}");
        assert!(stdout.contains(", sha256 "), "{stdout}");
        assert!(dir.path().join("sorted.txt").exists());
    }

    #[test]
    fn inputs_are_deterministic_and_varied() {
        assert_eq!(generate(1), generate(1));
        assert_ne!(generate(1).0, generate(2).0);
        let (text, lines, words) = generate(5);
        assert_eq!(text.lines().count(), lines);
        assert_eq!(text.split_whitespace().count(), words);
    }
}
