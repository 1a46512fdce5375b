//! Every formula vector of `autoscale-vectors.json` is a test of its own.
//!
//! The vectors are read from `tests/data/autoscale-vectors.json`, a copy of
//! `shared/design/reference/autoscale-vectors.json` kept in the repository so the tests do
//! not depend on files outside it; `data_copy_matches_the_shared_reference` catches drift
//! when the shared file is present.
//!
//! For vectors marked "ambiguous" the expected object is our chosen behaviour. Where the
//! vector's `expected` cannot be known (`results: null`, an error code marked
//! "implementation-defined"), that part is not compared.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use openbatch_autoscale::vectors::mismatches;
use openbatch_autoscale::{evaluate, Metrics, PoolState};
use serde_json::Value as Json;

const DEFAULT_NOW: &str = "2024-01-15T12:00:00.000Z";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> Json {
    let path = manifest_dir().join("tests/data/autoscale-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn vectors() -> Vec<Json> {
    match load().get("vectors") {
        Some(Json::Array(vs)) => vs.clone(),
        _ => panic!("the vectors file has no 'vectors' array"),
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
    let formula = repeat.repeat(usize::try_from(times).map_err(|e| e.to_string())?);
    if let Some(total) = generator.get("total_chars").and_then(Json::as_u64) {
        if formula.len() as u64 != total {
            return Err(format!(
                "generated {} chars, expected {total}",
                formula.len()
            ));
        }
    }
    Ok(formula)
}

fn check(v: &Json) -> Result<(), String> {
    let formula = formula_of(v)?;
    let pool: PoolState =
        serde_json::from_value(v["pool"].clone()).map_err(|e| format!("bad pool: {e}"))?;
    let metrics: Metrics = match v.get("metrics") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("bad metrics: {e}"))?,
        None => Metrics::default(),
    };
    let now_text = v.get("now").and_then(Json::as_str).unwrap_or(DEFAULT_NOW);
    let now: DateTime<Utc> = now_text
        .parse()
        .map_err(|e| format!("bad now {now_text:?}: {e}"))?;

    let outcome = evaluate(&formula, &pool, &metrics, now);
    let actual = serde_json::to_value(&outcome).map_err(|e| e.to_string())?;
    let expected = &v["expected"];
    let problems = mismatches(&actual, expected);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n  formula: {formula:?}\n  outcome: {actual}",
            problems.join("\n  ")
        ))
    }
}

fn run(id: &str) {
    let all = vectors();
    let v = all
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("vector {id} is not in the vectors file"));
    if let Err(problem) = check(v) {
        panic!(
            "vector {id} ({}) [{}] failed:\n  {problem}",
            v["title"].as_str().unwrap_or_default(),
            v["confidence"].as_str().unwrap_or_default()
        );
    }
}

macro_rules! vectors {
    ($($test:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run($id);
            }
        )*

        const COVERED: &[&str] = &[$($id),*];
    };
}

vectors! {
    as_001_constant_target_and_defaults => "AS-001",
    as_003_pending_tasks_with_lazy_ternary => "AS-003",
    as_005_time_based_documented_example => "AS-005",
    as_007_utc_offset_via_interval => "AS-007",
    as_009_doazureparallel_observed_results => "AS-009",
    as_011_task_based_cap_of_20 => "AS-011",
    as_013_getsample_95_percent_fails => "AS-013",
    as_015_default_70_percent => "AS-015",
    as_017_getsample_two_bounds => "AS-017",
    as_019_aggregate_functions => "AS-019",
    as_021_truthiness_logic_unary => "AS-021",
    as_023_alias_precedence => "AS-023",
    as_025_reassigned_user_variable => "AS-025",
    as_027_example_4_scales_to_zero => "AS-027",
    as_029_count => "AS-029",
    as_031_timestamp_difference => "AS-031",
    as_033_ceil_floor_round => "AS-033",
    as_034_pool_scalars => "AS-034",
    as_036_dollar_prefix_distinct => "AS-036",
    as_037_syntax_error => "AS-037",
    as_038_unknown_function => "AS-038",
    as_039_undefined_variable => "AS-039",
    as_040_unknown_metric => "AS-040",
    as_041_read_only_assignment => "AS-041",
    as_042_invalid_deallocation_option => "AS-042",
    as_043_division_by_zero_off_target => "AS-043",
    as_044_non_finite_target => "AS-044",
    as_045_negative_target_clamped => "AS-045",
    as_046_stop => "AS-046",
    as_048_more_than_100_statements => "AS-048",
    as_049_six_fractional_digits => "AS-049",
}

/// Every vector in the file has a test above, and every test names a vector in the file.
#[test]
fn every_vector_in_the_file_has_a_test() {
    let in_file: BTreeSet<String> = vectors()
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        in_file, covered,
        "vector ids in the file vs. tests in vectors.rs"
    );
}

/// All vectors in one pass, reporting the count (run with `--nocapture` to see it).
#[test]
fn all_vectors_pass_and_are_counted() {
    let all = vectors();
    let failures: Vec<String> = all
        .iter()
        .filter_map(|v| {
            check(v)
                .err()
                .map(|e| format!("{}: {e}", v["id"].as_str().unwrap_or("?")))
        })
        .collect();
    println!(
        "autoscale vectors: {} of {} pass",
        all.len() - failures.len(),
        all.len()
    );
    assert!(
        failures.is_empty(),
        "failed vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn data_copy_matches_the_shared_reference() {
    let shared = manifest_dir().join("../../../shared/design/reference/autoscale-vectors.json");
    let copy = manifest_dir().join("tests/data/autoscale-vectors.json");
    match std::fs::read(&shared) {
        Ok(reference) => assert!(
            std::fs::read(&copy).is_ok_and(|c| c == reference),
            "tests/data/autoscale-vectors.json differs from {}; copy it again",
            shared.display()
        ),
        Err(_) => println!("{} not present; skipping the drift check", shared.display()),
    }
}
