//! Comparing an evaluation with a test vector's `expected` object, under the rules the shared
//! vectors document: `results: null` is not compared; an error code marked
//! "implementation-defined" is compared only where it names our choice; numbers match within
//! a relative 1e-12. Used by the vector tests here and by the CLI's backtest tests, so that
//! both hold the outcome to the same standard.

use serde_json::Value as Json;

/// Numbers compare within a relative 1e-12; everything else exactly; objects need the
/// same keys.
pub fn close(actual: &Json, expected: &Json) -> bool {
    match (actual, expected) {
        (Json::Number(a), Json::Number(e)) => match (a.as_f64(), e.as_f64()) {
            (Some(a), Some(e)) => (a - e).abs() <= 1e-12 * e.abs().max(1.0),
            _ => false,
        },
        (Json::Array(a), Json::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(a, e)| close(a, e))
        }
        (Json::Object(a), Json::Object(e)) => {
            a.len() == e.len()
                && e.iter()
                    .all(|(k, ev)| a.get(k).is_some_and(|av| close(av, ev)))
        }
        _ => actual == expected,
    }
}

/// The mismatches between an outcome and a vector's `expected`, under `vectors.rs`'s rules:
/// `results: null` is not compared, nor an error code marked "implementation-defined"
/// beyond requiring one.
pub fn mismatches(actual: &Json, expected: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    if actual["status"] != expected["status"] {
        problems.push(format!(
            "status: got {}, expected {}",
            actual["status"], expected["status"]
        ));
    }
    if let Some(vars) = expected.get("variables") {
        if !close(&actual["variables"], vars) {
            problems.push(format!(
                "variables: got {}, expected {vars}",
                actual["variables"]
            ));
        }
    }
    if actual["applied"] != expected["applied"] {
        problems.push(format!(
            "applied: got {}, expected {}",
            actual["applied"], expected["applied"]
        ));
    }
    if let Some(results) = expected.get("results").filter(|r| !r.is_null()) {
        if &actual["results"] != results {
            problems.push(format!(
                "results: got {}, expected {results}",
                actual["results"]
            ));
        }
    }
    if let Some(error) = expected.get("error") {
        let code = error["code"].as_str().unwrap_or_default();
        let actual_code = actual["error"]["code"].as_str().unwrap_or_default();
        let wanted = match code.split_once(" (implementation-defined)") {
            Some((chosen, _)) => Some(chosen),
            None if code.contains("implementation-defined") => None,
            None => Some(code),
        };
        match wanted {
            Some(wanted) if actual_code != wanted => problems.push(format!(
                "error code: got {actual_code:?}, expected {wanted:?}"
            )),
            None if actual_code.is_empty() => problems.push("error code: missing".to_owned()),
            _ => {}
        }
        for field in ["message", "values"] {
            if let Some(e) = error.get(field) {
                if &actual["error"][field] != e {
                    problems.push(format!(
                        "error {field}: got {}, expected {e}",
                        actual["error"][field]
                    ));
                }
            }
        }
    }
    problems
}
