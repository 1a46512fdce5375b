//! Property: no input makes `parse` or `evaluate` panic (or overflow the stack), and every
//! outcome serializes. Two generators: arbitrary text, and sequences of formula-shaped
//! fragments that reach deep into the evaluator.

use chrono::{DateTime, TimeZone, Utc};
use openbatch_autoscale::{
    evaluate, parse, ErrorCode, MetricHistory, Metrics, Outcome, PoolState, Sample,
};
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "$TargetDedicatedNodes",
    "$TargetLowPriorityNodes",
    "$TargetDedicated",
    "$NodeDeallocationOption",
    "$PendingTasks",
    "$CPUPercent",
    "$ActiveTasks",
    "$CurrentDedicatedNodes",
    "$TaskSlotsPerNode",
    "$Unknown",
    "x",
    "y",
    "$x",
    ".GetSample(",
    ".GetSamplePercent(",
    ".GetSamplePeriod()",
    ".Count()",
    ".HistoryBeginTime()",
    ".hour",
    ".weekday",
    ".year",
    "TimeInterval_Minute",
    "TimeInterval_Second",
    "TimeInterval_Year",
    "TimeInterval_100ns",
    "time()",
    "time(\"2024-01-15T12:00:00Z\")",
    "time(\"Mon, 15 Jan 2024 12:00:00 GMT\")",
    "time(",
    "\"s\"",
    "avg(",
    "len(",
    "lg(",
    "ln(",
    "log(",
    "max(",
    "min(",
    "norm(",
    "percentile(",
    "rand()",
    "range(",
    "std(",
    "stop()",
    "sum(",
    "val(",
    "ceil(",
    "floor(",
    "round(",
    "requeue",
    "taskcompletion",
    "(",
    ")",
    ",",
    ";",
    "=",
    "?",
    ":",
    "+",
    "-",
    "*",
    "/",
    "<",
    "<=",
    "==",
    ">=",
    ">",
    "!=",
    "&&",
    "||",
    "!",
    "0",
    "1",
    "2.5",
    "70",
    "100",
    "-1",
    "1e308",
    "1e-308",
    "0.0",
    "1/0",
    "0/0",
    "//c\n",
    "\n",
    " ",
];

fn formula_from_fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.concat())
}

const LEAVES: &[&str] = &[
    "0",
    "1",
    "2.5",
    "-1",
    "70",
    "100",
    "1e308",
    "x",
    "y",
    "z",
    "$CPUPercent",
    "$PendingTasks",
    "$ActiveTasks",
    "$CurrentDedicatedNodes",
    "$TaskSlotsPerNode",
    "$TargetDedicatedNodes",
    "$TargetDedicated",
    "$NodeDeallocationOption",
    "TimeInterval_Minute",
    "TimeInterval_Year",
    "TimeInterval_100ns",
    "TimeInterval_Zero",
    "time()",
    "time(\"2024-01-15T12:00:00Z\")",
    "\"s\"",
    "requeue",
    "rand()",
    "$CPUPercent.Count()",
    "$CPUPercent.GetSamplePeriod()",
    "$PendingTasks.HistoryBeginTime()",
];

const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "<", "<=", "==", ">=", ">", "!=", "&&", "||",
];

const CALLS: &[(&str, usize, usize)] = &[
    ("avg", 0, 3),
    ("len", 0, 3),
    ("max", 0, 3),
    ("min", 0, 3),
    ("norm", 0, 3),
    ("range", 0, 3),
    ("std", 0, 3),
    ("sum", 0, 3),
    ("lg", 1, 3),
    ("ln", 1, 2),
    ("log", 1, 2),
    ("ceil", 1, 2),
    ("floor", 1, 2),
    ("round", 1, 2),
    ("percentile", 2, 2),
    ("val", 2, 2),
    ("time", 0, 1),
    ("$CPUPercent.GetSample", 1, 3),
    ("$PendingTasks.GetSample", 1, 3),
    ("$CPUPercent.GetSamplePercent", 1, 2),
];

/// Well-formed expressions of random (often mismatched) types, so that most inputs pass
/// the parser and the static checks and exercise the evaluator.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(LEAVES).prop_map(str::to_owned);
    leaf.prop_recursive(6, 64, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(OPERATORS),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (prop::sample::select(&["-", "!"][..]), inner.clone())
                .prop_map(|(op, a)| format!("{op}{a}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            (
                prop::sample::select(CALLS),
                prop::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|((name, min, max), args)| {
                    let n = args.len().clamp(min, max);
                    let mut args = args;
                    args.resize(n, "1".to_owned());
                    format!("{name}({})", args.join(", "))
                }),
            (
                inner,
                prop::sample::select(&["hour", "weekday", "year", "second"][..])
            )
                .prop_map(|(a, m)| format!("({a}).{m}")),
        ]
    })
}

/// `x`, `y` and `z` are assigned first so that expressions may read them; then random
/// assignments, occasionally a `stop()`.
fn program() -> impl Strategy<Value = String> {
    let target = prop::sample::select(
        &[
            "x",
            "y",
            "z",
            "$TargetDedicatedNodes",
            "$TargetLowPriority",
            "$NodeDeallocationOption",
        ][..],
    );
    let statement = prop_oneof![
        10 => (target, expression()).prop_map(|(n, e)| format!("{n} = {e};\n")),
        1 => Just("stop();".to_owned()),
    ];
    prop::collection::vec(statement, 1..6).prop_map(|statements| {
        format!(
            "x = 1; y = time(); z = $CPUPercent.GetSample(3);\n{}",
            statements.concat()
        )
    })
}

fn metrics() -> impl Strategy<Value = Metrics> {
    let sample = (
        prop_oneof![Just(f64::NAN), Just(-1.0), 0.0..4000.0f64],
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -1e6..1e6f64],
    )
        .prop_map(|(age, value)| Sample::new(age, value));
    let history = prop::collection::vec(sample, 0..40).prop_map(MetricHistory::new);
    (history.clone(), history).prop_map(|(pending, cpu)| {
        [("$PendingTasks", pending), ("$CPUPercent", cpu)]
            .into_iter()
            .collect()
    })
}

fn pool() -> impl Strategy<Value = PoolState> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(d, l, slots)| PoolState {
        target_dedicated_nodes: d,
        target_low_priority_nodes: l,
        current_dedicated_nodes: d / 2,
        current_low_priority_nodes: l / 2,
        task_slots_per_node: slots,
        enable_auto_scale: true,
    })
}

fn now() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        4 => Just(Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0).single().unwrap_or_default()),
        4 => (0i64..4_000_000_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default()),
        1 => Just(DateTime::<Utc>::MIN_UTC),
        1 => Just(DateTime::<Utc>::MAX_UTC),
    ]
}

fn check_outcome(formula: &str, pool: &PoolState, metrics: &Metrics, now: DateTime<Utc>) {
    let parsed = parse(formula);
    let outcome = evaluate(formula, pool, metrics, now);
    if let Err(e) = &parsed {
        let code = outcome.error().map(|error| error.code);
        assert_eq!(
            code,
            Some(e.code()),
            "parse error must surface as the run error"
        );
        // Position, when there is one, is inside the text (or just after it).
        if let Some(pos) = e.position() {
            assert!(pos.line >= 1 && pos.col >= 1);
        }
    }
    if let Outcome::Error { error, applied, .. } = &outcome {
        assert_eq!(applied.target_dedicated_nodes, pool.target_dedicated_nodes);
        assert!(applied.node_deallocation_option.is_none());
        assert!(!error.values.is_empty());
        if parsed.is_ok() {
            assert_ne!(error.code, ErrorCode::AutoScalingFormulaSyntaxError);
        }
    }
    assert!(outcome.results().starts_with("$TargetDedicatedNodes="));
    assert!(serde_json::to_string(&outcome).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(formula in ".{0,200}", pool in pool(), metrics in metrics()) {
        check_outcome(&formula, &pool, &metrics, Utc.timestamp_opt(1_705_320_000, 0).single().unwrap_or_default());
    }

    #[test]
    fn formula_shaped_input_never_panics(
        formula in formula_from_fragments(),
        pool in pool(),
        metrics in metrics(),
        now in now(),
    ) {
        check_outcome(&formula, &pool, &metrics, now);
    }

    #[test]
    fn well_formed_programs_never_panic(
        formula in program(),
        pool in pool(),
        metrics in metrics(),
        now in now(),
    ) {
        check_outcome(&formula, &pool, &metrics, now);
    }
}

/// The deepest accepted expressions evaluate on a default test thread without overflowing
/// its stack.
#[test]
fn deepest_accepted_expressions_evaluate() {
    let depth = openbatch_autoscale::MAX_EXPRESSION_DEPTH;
    let now = Utc
        .with_ymd_and_hms(2024, 1, 15, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let formulas = [
        format!("x = 1{};", "+1".repeat(depth - 1)),
        format!("x = {}1;", "-".repeat(depth - 1)),
        format!("x = {}1;", "0 ? 1 : ".repeat(depth - 2)),
        format!(
            "x = {}1{};",
            "max(".repeat(depth - 2),
            ")".repeat(depth - 2)
        ),
    ];
    for formula in &formulas {
        let outcome = evaluate(formula, &PoolState::default(), &Metrics::default(), now);
        assert!(outcome.is_success(), "{formula}: {outcome:?}");
    }
    let chain = evaluate(
        &formulas[0],
        &PoolState::default(),
        &Metrics::default(),
        now,
    );
    assert!(chain.is_success(), "{chain:?}");
    assert!(chain.results().ends_with(&format!("x={depth}")));
}
