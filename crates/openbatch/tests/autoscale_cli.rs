//! `openbatch autoscale evaluate`, the real binary: every formula vector of
//! `autoscale-vectors.json` run through it (formula, pool and metrics written to files,
//! `--now` passed), and the ways its inputs can be unusable.
//!
//! The vectors are read from `openbatch-autoscale`'s copy,
//! `crates/openbatch-autoscale/tests/data/autoscale-vectors.json`. Stdout is compared with
//! each vector's `expected` under the rules of that crate's `tests/vectors.rs` (repeated
//! here, since one test crate cannot import another's), and with the library's own
//! serialized `Outcome`, so the command adds nothing to and drops nothing from it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Utc};
use openbatch_autoscale::vectors::mismatches;
use openbatch_autoscale::{evaluate, Metrics, PoolState};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_openbatch");

/// The vectors' `now` when one leaves it out (as in `vectors.rs`).
const DEFAULT_NOW: &str = "2024-01-15T12:00:00.000Z";

fn vectors() -> Vec<Json> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../openbatch-autoscale/tests/data/autoscale-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: Json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    match file.get("vectors") {
        Some(Json::Array(vs)) => vs.clone(),
        _ => panic!("{} has no 'vectors' array", path.display()),
    }
}

fn formula_of(v: &Json) -> Result<String, String> {
    if let Some(f) = v.get("formula").and_then(Json::as_str) {
        return Ok(f.to_owned());
    }
    let generator = v.get("formula_generator").ok_or("no formula")?;
    let repeat = generator["repeat"]
        .as_str()
        .ok_or("generator without 'repeat'")?;
    let times = generator["times"]
        .as_u64()
        .ok_or("generator without 'times'")?;
    Ok(repeat.repeat(usize::try_from(times).map_err(|e| e.to_string())?))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Runs `openbatch autoscale evaluate ARGS`, feeding `stdin`.
fn evaluate_cli(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(["autoscale", "evaluate"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting openbatch");
    // A command that does not read stdin may exit before the write; that is not a failure.
    let _ = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("waiting for openbatch")
}

fn stdout_json(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs one vector through the binary; `Err` describes every mismatch.
fn check(v: &Json, dir: &Path) -> Result<(), String> {
    let formula = formula_of(v)?;
    let pool = v["pool"].clone();
    let metrics = v
        .get("metrics")
        .cloned()
        .unwrap_or_else(|| Json::from(serde_json::Map::new()));
    let now = v.get("now").and_then(Json::as_str).unwrap_or(DEFAULT_NOW);
    let formula_path = write(dir, "formula.txt", &formula);
    let pool_path = write(dir, "pool.json", &pool.to_string());
    let metrics_path = write(dir, "metrics.json", &metrics.to_string());

    let out = evaluate_cli(
        &[
            "--formula",
            formula_path.to_str().unwrap(),
            "--pool",
            pool_path.to_str().unwrap(),
            "--metrics",
            metrics_path.to_str().unwrap(),
            "--now",
            now,
        ],
        "",
    );
    let actual: Json = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "stdout is not JSON ({e}); exit {:?}, stderr: {}",
            out.status.code(),
            stderr(&out)
        )
    })?;
    let expected = &v["expected"];
    let mut problems = mismatches(&actual, expected);

    let wanted_exit = if expected["status"] == "success" {
        0
    } else {
        1
    };
    if out.status.code() != Some(wanted_exit) {
        problems.push(format!(
            "exit code: got {:?}, expected {wanted_exit}; stderr: {}",
            out.status.code(),
            stderr(&out)
        ));
    }

    // Exactly the library's outcome: nothing added, nothing lost.
    let library = evaluate(
        &formula,
        &serde_json::from_value::<PoolState>(pool).map_err(|e| format!("bad pool: {e}"))?,
        &serde_json::from_value::<Metrics>(metrics).map_err(|e| format!("bad metrics: {e}"))?,
        now.parse::<DateTime<Utc>>()
            .map_err(|e| format!("bad now {now:?}: {e}"))?,
    );
    // Through text and back, as stdout went: serde_json's default float parsing can land one
    // ulp away from the printed shortest form, and it must do so on both sides alike.
    let library: Json = serde_json::to_string(&library)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|e| e.to_string())?;
    if actual != library {
        problems.push(format!(
            "stdout differs from the library's outcome:\n     got {actual}\n library {library}"
        ));
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  "))
    }
}

#[test]
fn every_vector_evaluates_through_the_binary_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let all = vectors();
    assert!(!all.is_empty(), "no vectors");
    let failures: Vec<String> = all
        .iter()
        .filter_map(|v| {
            check(v, dir.path()).err().map(|e| {
                format!(
                    "{} ({}):\n  {e}",
                    v["id"].as_str().unwrap_or("?"),
                    v["title"].as_str().unwrap_or_default()
                )
            })
        })
        .collect();
    println!(
        "autoscale vectors through the CLI: {} of {} pass",
        all.len() - failures.len(),
        all.len()
    );
    assert!(
        failures.is_empty(),
        "failed vectors:\n{}",
        failures.join("\n")
    );
}

/// A pool and metrics that a working formula can use, in a fresh directory.
struct Files {
    dir: tempfile::TempDir,
    pool: PathBuf,
    metrics: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pool = write(
            dir.path(),
            "pool.json",
            r#"{"targetDedicatedNodes": 2, "currentDedicatedNodes": 2, "taskSlotsPerNode": 4}"#,
        );
        let metrics = write(
            dir.path(),
            "metrics.json",
            r#"{"$PendingTasks": {"samples": [[10, 9], [40, 7], [70, 5], [100, 3]]}}"#,
        );
        Files { dir, pool, metrics }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn formula_dash_reads_stdin() {
    let f = Files::new();
    let out = evaluate_cli(
        &[
            "--formula",
            "-",
            "--pool",
            s(&f.pool),
            "--metrics",
            s(&f.metrics),
            "--now",
            DEFAULT_NOW,
        ],
        "$TargetDedicatedNodes = max($PendingTasks.GetSample(TimeInterval_Minute * 2)) / $TaskSlotsPerNode;",
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let json = stdout_json(&out);
    assert_eq!(json["status"], "success");
    // max(3, 5, 7, 9) / 4 = 2.25, applied as 2.
    assert_eq!(json["variables"]["$TargetDedicatedNodes"], 2.25);
    assert_eq!(json["applied"]["targetDedicatedNodes"], 2);
    assert!(stderr(&out).is_empty(), "stderr: {}", stderr(&out));
}

#[test]
fn now_defaults_to_the_current_time() {
    let f = Files::new();
    let before = Utc::now();
    let out = evaluate_cli(
        &[
            "--formula",
            "-",
            "--pool",
            s(&f.pool),
            "--metrics",
            s(&f.metrics),
        ],
        "$t = time(); $TargetDedicatedNodes = 1;",
    );
    let after = Utc::now();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let json = stdout_json(&out);
    let t: DateTime<Utc> = json["variables"]["$t"]
        .as_str()
        .expect("$t is a timestamp")
        .parse()
        .unwrap();
    // The output has millisecond precision; allow for the truncation.
    assert!(
        before - chrono::Duration::milliseconds(1) <= t && t <= after,
        "{before} <= {t} <= {after}"
    );
}

#[test]
fn a_syntax_error_prints_the_error_outcome_and_exits_1() {
    let f = Files::new();
    let formula = write(f.dir.path(), "bad.txt", "$TargetDedicatedNodes = (5 + ;");
    let out = evaluate_cli(
        &[
            "--formula",
            s(&formula),
            "--pool",
            s(&f.pool),
            "--metrics",
            s(&f.metrics),
            "--now",
            DEFAULT_NOW,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let json = stdout_json(&out);
    assert_eq!(json["status"], "error");
    assert_eq!(json["error"]["code"], "AutoScalingFormulaSyntaxError");
    assert_eq!(
        json["error"]["values"][0]["value"],
        "Line 1, Col 30: expected an expression, found ';'"
    );
    // The pool keeps its targets.
    assert_eq!(json["applied"]["targetDedicatedNodes"], 2);
    assert!(json["applied"]["nodeDeallocationOption"].is_null());
    let err = stderr(&out);
    assert!(
        err.contains("AutoScalingFormulaSyntaxError") && err.contains("Line 1, Col 30"),
        "stderr: {err}"
    );
}

/// Asserts exit 2, nothing on stdout, and every one of `needles` in stderr.
fn assert_unusable(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in stderr: {err}");
    }
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let f = Files::new();
    let missing = f.path("no-such-formula.txt");
    let out = evaluate_cli(
        &[
            "--formula",
            s(&missing),
            "--pool",
            s(&f.pool),
            "--metrics",
            s(&f.metrics),
        ],
        "",
    );
    assert_unusable(&out, &["--formula", s(&missing), "No such file"]);

    let missing = f.path("no-such-pool.json");
    let out = evaluate_cli(
        &[
            "--formula",
            "-",
            "--pool",
            s(&missing),
            "--metrics",
            s(&f.metrics),
        ],
        "$TargetDedicatedNodes = 1;",
    );
    assert_unusable(&out, &["--pool", s(&missing), "No such file"]);
}

#[test]
fn malformed_json_exits_2_naming_the_file_and_the_fault() {
    let f = Files::new();
    let bad = write(
        f.dir.path(),
        "bad-metrics.json",
        "{\"$PendingTasks\": {\"samples\": [[10, 9],",
    );
    let out = evaluate_cli(
        &["--formula", "-", "--pool", s(&f.pool), "--metrics", s(&bad)],
        "$TargetDedicatedNodes = 1;",
    );
    assert_unusable(&out, &["--metrics", s(&bad), "line 1 column"]);

    // Well-formed JSON of the wrong shape is unusable too.
    let bad = write(
        f.dir.path(),
        "bad-pool.json",
        r#"{"targetDedicatedNodes": -1}"#,
    );
    let out = evaluate_cli(
        &[
            "--formula",
            "-",
            "--pool",
            s(&bad),
            "--metrics",
            s(&f.metrics),
        ],
        "$TargetDedicatedNodes = 1;",
    );
    assert_unusable(&out, &["--pool", s(&bad), "expected u32"]);
}

#[test]
fn a_malformed_now_exits_2() {
    let f = Files::new();
    let out = evaluate_cli(
        &[
            "--formula",
            "-",
            "--pool",
            s(&f.pool),
            "--metrics",
            s(&f.metrics),
            "--now",
            "yesterday",
        ],
        "$TargetDedicatedNodes = 1;",
    );
    assert_unusable(&out, &["--now", "RFC 3339"]);
}

#[test]
fn only_one_input_can_come_from_stdin() {
    let f = Files::new();
    let out = evaluate_cli(
        &["--formula", "-", "--pool", "-", "--metrics", s(&f.metrics)],
        "$TargetDedicatedNodes = 1;",
    );
    assert_unusable(&out, &["stdin"]);
}
