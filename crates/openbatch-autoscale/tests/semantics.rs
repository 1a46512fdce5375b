//! Evaluation semantics beyond the vectors: precedence, laziness, `stop()`, the sample
//! methods, aliases, type errors and the applied targets.

use chrono::{DateTime, TimeZone, Utc};
use openbatch_autoscale::{
    evaluate, parse, ErrorCode, EvalContext, MetricHistory, Metrics, Outcome, PoolState, Sample,
};
use serde_json::{json, Value as Json};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// `$CPUPercent` samples at ages 15, 45, 75, 105 s with values 4, 3, 2, 1.
fn cpu_metrics() -> Metrics {
    let samples = [(15.0, 4.0), (45.0, 3.0), (75.0, 2.0), (105.0, 1.0)]
        .into_iter()
        .map(|(age, value)| Sample::new(age, value))
        .collect();
    [("$CPUPercent", MetricHistory::new(samples))]
        .into_iter()
        .collect()
}

fn run_with(formula: &str, pool: &PoolState, metrics: &Metrics) -> Json {
    let outcome = evaluate(formula, pool, metrics, now());
    serde_json::to_value(&outcome).unwrap_or_default()
}

fn run(formula: &str) -> Json {
    run_with(formula, &PoolState::default(), &cpu_metrics())
}

#[track_caller]
fn vars(formula: &str) -> Json {
    let out = run(formula);
    assert_eq!(out["status"], "success", "{formula:?}: {out}");
    out["variables"].clone()
}

#[track_caller]
fn error_message(formula: &str) -> (String, String) {
    let out = run(formula);
    assert_eq!(out["status"], "error", "{formula:?}: {out}");
    (
        out["error"]["code"].as_str().unwrap_or_default().to_owned(),
        out["error"]["values"][0]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn c_precedence_and_associativity() {
    let v = vars(
        "a = 1 + 2 * 3; b = 1 || 0 && 0; c = !0 == 1; d = 1 < 2 == 1; \
         e = 0 ? 1 : 0 ? 2 : 3; f = 2 - 1 - 1; g = -2 * 3; h = 8 / 2 / 2; i = (1 + 2) * 3; \
         j = 1 - -1;",
    );
    assert_eq!(
        v,
        json!({"a": 7, "b": 1, "c": 1, "d": 1, "e": 3, "f": 0, "g": -6, "h": 2, "i": 9, "j": 2})
    );
}

#[test]
fn untaken_branches_and_short_circuits_are_not_evaluated() {
    let v = vars(
        "x = 1 ? 2 : avg($PendingTasks.GetSample(TimeInterval_Minute)); \
         y = 0 && max($PendingTasks.GetSample(TimeInterval_Minute)); \
         z = 1 || max($PendingTasks.GetSample(TimeInterval_Minute));",
    );
    assert_eq!(v, json!({"x": 2, "y": 0, "z": 1}));
    let (code, message) =
        error_message("x = 0 ? 2 : avg($PendingTasks.GetSample(TimeInterval_Minute));");
    assert_eq!(code, "InsufficientSampleData");
    assert_eq!(
        message,
        "Line 1, Col 40: Insufficient data from data set: $PendingTasks wanted 70%, received 0%"
    );
}

#[test]
fn stop_ends_evaluation_where_it_is_evaluated() {
    let out = run("$TargetDedicatedNodes = 4; x = 1 ? stop() : 0; $TargetDedicatedNodes = 9;");
    assert_eq!(out["status"], "success");
    assert_eq!(out["variables"], json!({"$TargetDedicatedNodes": 4}));
    assert_eq!(out["applied"]["targetDedicatedNodes"], 4);
    let out = run("x = 0 ? stop() : 1; $TargetDedicatedNodes = 9;");
    assert_eq!(out["applied"]["targetDedicatedNodes"], 9);
}

#[test]
fn sample_methods() {
    let v = vars(
        "a = $CPUPercent.GetSample(time() + (-2 * TimeInterval_Minute), 100); \
         b = $CPUPercent.GetSample(TimeInterval_Minute * 2, TimeInterval_Minute); \
         c = $CPUPercent.GetSamplePercent(TimeInterval_Minute * 4); \
         d = $CPUPercent.GetSamplePercent(TimeInterval_Minute, TimeInterval_Minute * 2); \
         e = $CPUPercent.HistoryBeginTime(); \
         f = $CPUPercent.Count(); \
         g = $CPUPercent; \
         h = $CPUPercent.GetSample(2); \
         i = $CPUPercent.GetSample(TimeInterval_Minute * 4, 50); \
         j = $CPUPercent.GetSamplePeriod(); \
         k = $CPUPercent.GetSample(2) * 2 + 1; \
         l = $CPUPercent.GetSample(99);",
    );
    assert_eq!(
        v,
        json!({
            "a": [1, 2, 3, 4],
            "b": [1, 2],
            "c": 50,
            "d": 100,
            "e": "2024-01-15T11:58:15.000Z",
            "f": 4,
            "g": 4,
            "h": [3, 4],
            "i": [1, 2, 3, 4],
            "j": {"timeinterval_seconds": 30},
            "k": [7, 9],
            "l": [1, 2, 3, 4],
        })
    );
    let (code, message) =
        error_message("\n  i = $CPUPercent.GetSample(TimeInterval_Minute * 4, 51);");
    assert_eq!(code, "InsufficientSampleData");
    assert_eq!(
        message,
        "Line 2, Col 28: Insufficient data from data set: $CPUPercent wanted 51%, received 50%"
    );
}

#[test]
fn received_percentage_is_floored_in_the_message() {
    let samples = (0..29)
        .map(|i| Sample::new(15.0 + 30.0 * f64::from(i), 1.0))
        .collect();
    let metrics: Metrics = [("$ActiveTasks", MetricHistory::new(samples))]
        .into_iter()
        .collect();
    let out = run_with(
        "x = $ActiveTasks.GetSample(TimeInterval_Minute * 15, 97);",
        &PoolState::default(),
        &metrics,
    );
    assert_eq!(
        out["error"]["values"][0]["value"],
        "Line 1, Col 27: Insufficient data from data set: $ActiveTasks wanted 97%, received 96%"
    );
    let out = run_with(
        "s = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);",
        &PoolState::default(),
        &metrics,
    );
    assert_eq!(out["results"], "$TargetDedicatedNodes=0;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;s=96.6667");
}

#[test]
fn timestamps_and_intervals() {
    let v = vars(
        "t = time() + TimeInterval_Day * 6; d = t - time(); w = t.weekday; m = t.month; \
         y = t.year; early = time(\"2024-01-01\") < time(); h = TimeInterval_Hour / 4; \
         neg = -TimeInterval_Second; s = time(\"2024-01-15T12:00:00.5+01:00\").second;",
    );
    assert_eq!(
        v,
        json!({
            "t": "2024-01-21T12:00:00.000Z",
            "d": {"timeinterval_seconds": 518400},
            "w": 7,
            "m": 1,
            "y": 2024,
            "early": 1,
            "h": {"timeinterval_seconds": 900},
            "neg": {"timeinterval_seconds": -1},
            "s": 0,
        })
    );
    let out = run("h = TimeInterval_Hour * 25.5; z = TimeInterval_Zero;");
    assert_eq!(
        out["results"],
        "$TargetDedicatedNodes=0;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;\
         h=1.01:30:00;z=00:00:00"
    );
}

#[test]
fn aliases_read_and_write() {
    let pool = PoolState {
        target_dedicated_nodes: 2,
        target_low_priority_nodes: 1,
        ..PoolState::default()
    };
    let out = run_with(
        "a = $TargetDedicated; $TargetDedicatedNodes = 5; b = $TargetDedicated; \
         $TargetLowPriority = 3; c = $TargetLowPriorityNodes; o = $NodeDeallocationOption;",
        &pool,
        &Metrics::default(),
    );
    assert_eq!(
        out["variables"],
        json!({"a": 2, "b": 5, "c": 3, "o": "requeue",
               "$TargetDedicatedNodes": 5, "$TargetLowPriorityNodes": 3})
    );
    assert_eq!(
        out["applied"],
        json!({"targetDedicatedNodes": 5, "targetLowPriorityNodes": 3,
               "nodeDeallocationOption": "requeue"})
    );
}

#[test]
fn applied_targets_truncate_clamp_and_saturate() {
    let out = run("$TargetDedicatedNodes = 2.9; $TargetLowPriorityNodes = 1e20;");
    assert_eq!(out["applied"]["targetDedicatedNodes"], 2);
    assert_eq!(out["applied"]["targetLowPriorityNodes"], u32::MAX);
    assert_eq!(
        out["results"],
        "$TargetDedicatedNodes=2.9;$TargetLowPriorityNodes=1e+20;$NodeDeallocationOption=requeue"
    );
    let out = run("$TargetLowPriorityNodes = 0 / 0;");
    assert_eq!(out["error"]["code"], "InvalidAutoScaleResult");
}

#[test]
fn runtime_type_errors_have_positions() {
    let cases = [
        ("$TargetDedicatedNodes = time();", "Line 1, Col 1: $TargetDedicatedNodes must be assigned a double, not timestamp"),
        ("x = time(); $NodeDeallocationOption = x;", "Line 1, Col 13: $NodeDeallocationOption must be requeue, terminate, taskcompletion or retaineddata, not timestamp"),
        ("x = time() ? 1 : 2;", "Line 1, Col 12: a condition must be a double, not timestamp"),
        ("x = 1; y = x.hour;", "Line 1, Col 14: '.hour' needs a timestamp, not double"),
        ("x = $CPUPercent.GetSample(4) + $CPUPercent.GetSample(3);", "Line 1, Col 30: operator '+' needs vectors of equal length, got 4 and 3 elements"),
        ("x = val($CPUPercent.GetSample(2), 2);", "Line 1, Col 5: val(): index 2 is outside a vector of 2 element(s)"),
        ("x = avg(time());", "Line 1, Col 5: argument 1 of avg() must be a double or doubleVec, not timestamp"),
        ("x = $CPUPercent.GetSample(-1);", "Line 1, Col 26: GetSample(): the sample count must be a non-negative number"),
        ("x = $CPUPercent.GetSample(1, 2);", "Line 1, Col 26: argument 1 of GetSample() must be a timeinterval or timestamp, not double"),
        ("x = TimeInterval_Hour / 0;", "Line 1, Col 23: time interval divided by zero"),
        ("x = $PendingTasks.HistoryBeginTime();", "Line 1, Col 35: $PendingTasks has no samples yet; use GetSamplePercent() or Count() to guard it"),
        ("s = \"x\"; t = time(s + s);", "Line 1, Col 21: operator '+' cannot be applied to string and string"),
    ];
    for (formula, expected) in cases {
        let (code, message) = error_message(formula);
        assert_eq!(
            code,
            ErrorCode::FormulaEvaluationError.as_str(),
            "{formula:?}"
        );
        assert_eq!(message, expected, "{formula:?}");
    }
}

#[test]
fn failed_runs_report_variables_evaluated_so_far() {
    let pool = PoolState {
        target_dedicated_nodes: 3,
        ..PoolState::default()
    };
    let out = run_with(
        "a = 1; $TargetDedicatedNodes = 8; b = avg();",
        &pool,
        &Metrics::default(),
    );
    assert_eq!(
        out["results"],
        "$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;a=1"
    );
    assert_eq!(
        out["applied"],
        json!({"targetDedicatedNodes": 3, "targetLowPriorityNodes": 0, "nodeDeallocationOption": null})
    );
    assert!(out.get("variables").is_none());
}

#[test]
fn rand_is_seeded_and_in_range() {
    let program = parse("a = rand(); b = rand();");
    let Ok(program) = program else {
        panic!("{program:?}")
    };
    let pool = PoolState::default();
    let metrics = Metrics::default();
    let ctx = EvalContext {
        rand_seed: 42,
        ..EvalContext::new(&pool, &metrics, now())
    };
    let first = program.evaluate(&ctx);
    assert_eq!(first, program.evaluate(&ctx));
    let Outcome::Success { variables, .. } = first else {
        panic!("{first:?}")
    };
    for v in variables.values() {
        let openbatch_autoscale::Value::Double(x) = v else {
            panic!("{v:?}")
        };
        assert!((0.0..1.0).contains(x));
    }
    let other = program.evaluate(&EvalContext {
        rand_seed: 43,
        ..ctx
    });
    assert_ne!(other.results(), program.evaluate(&ctx).results());
}

#[test]
fn pool_and_metrics_deserialize_leniently() {
    let pool: PoolState =
        serde_json::from_str(r#"{"targetDedicatedNodes": 2, "id": "gpu", "vmSize": "x"}"#)
            .unwrap_or_default();
    assert_eq!(pool.target_dedicated_nodes, 2);
    assert_eq!(pool.task_slots_per_node, 1);
    let metrics: Result<Metrics, _> = serde_json::from_str("{}");
    assert_eq!(metrics.ok(), Some(Metrics::default()));
}
