//! The Azure Batch autoscale formula language, as specified in
//! `shared/design/reference/autoscale-formula.md`: lexer, parser with line/column errors,
//! static checks, evaluator, the sample system and the `results` string.
//!
//! **What it is for:** validating a formula when a pool gets one ([`parse`]), and computing
//! what an evaluation yields ([`evaluate`], [`Program::evaluate`]) for the scheduled
//! autoscale run, `evaluateautoscale`, and `openbatch autoscale evaluate`.
//!
//! **What it is not for:** it does no I/O and never reads the clock — `now`, the pool and
//! the metric histories are inputs. It does not record metrics, schedule evaluations,
//! enforce the evaluation interval or the enable-autoscale rate limit, nor resize pools;
//! it does not know the REST wire format (the `AutoScaleRun` DTO lives in `openbatch-api`).
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use openbatch_autoscale::{evaluate, parse, MetricHistory, Metrics, Outcome, PoolState, Sample};
//!
//! let formula = "$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 2);\n\
//!                $TargetDedicatedNodes = $samples < 70 ? 1 : max($PendingTasks.GetSample(1));";
//! // Validate when the formula is set (the server answers 400 with the position).
//! assert!(parse(formula).is_ok());
//! assert_eq!(
//!     parse("$TargetDedicatedNodes = (5 + ;").unwrap_err().to_string(),
//!     "Line 1, Col 30: expected an expression, found ';'"
//! );
//!
//! let pool = PoolState { target_dedicated_nodes: 1, ..PoolState::default() };
//! let mut metrics = Metrics::new();
//! metrics.insert(
//!     "$PendingTasks",
//!     MetricHistory::new(vec![Sample::new(15.0, 7.0), Sample::new(45.0, 5.0),
//!                             Sample::new(75.0, 5.0), Sample::new(105.0, 3.0)]),
//! );
//! let now = Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0).unwrap();
//! let outcome = evaluate(formula, &pool, &metrics, now);
//! assert_eq!(outcome.applied().target_dedicated_nodes, 7);
//! assert_eq!(
//!     outcome.results(),
//!     "$TargetDedicatedNodes=7;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;$samples=100"
//! );
//! // The outcome serializes to the JSON the CLI prints.
//! let json = serde_json::to_value(&outcome).unwrap();
//! assert_eq!(json["status"], "success");
//! assert_eq!(json["variables"]["$TargetDedicatedNodes"], 7);
//! assert!(matches!(outcome, Outcome::Success { .. }));
//! ```
//!
//! # Inputs and outputs
//!
//! [`PoolState`], [`Metrics`] and the `now` timestamp deserialize from the `pool`,
//! `metrics` and `now` of `autoscale-vectors.json`; [`Outcome`] serializes as its
//! `expected` object (`status`, `variables` or `error`, `applied`, `results`).
//!
//! # Choices where the spec is silent
//!
//! Each is the spec's recommendation or the behaviour an "ambiguous" vector fixes:
//!
//! * Names are case-sensitive; `x` and `$x` are different user variables (AS-036).
//! * Reading a user variable before any statement assigns it, calling an unknown function
//!   or method, the wrong number of arguments, assigning a read-only or reserved name, a
//!   `$NodeDeallocationOption` value that is not an option keyword, and a malformed
//!   literal `time("...")` are rejected by [`parse`] with `AutoScalingFormulaSyntaxError`
//!   (AS-038..042, AS-049). More than 100 statements is `InvalidAutoScalingSettings`
//!   (AS-048); more than 8192 characters is `AutoScaleFormulaTooLong`.
//! * Other failures happen during evaluation: `InsufficientSampleData` for the sample
//!   percentage check (message in the service's observed wording, pointing at the `(` of
//!   `GetSample`), `FormulaEvaluationError` for type errors and the like, and
//!   `InvalidAutoScaleResult` when a target ends NaN or infinite (AS-044). Any failure
//!   leaves the pool's targets unchanged.
//! * `?:` is lazy and `&&`/`||` short-circuit (AS-003); booleans are 1 and 0; NaN is true.
//! * Doubles follow IEEE-754 without errors (`1/0` is `inf`, AS-043); intervals and
//!   timestamps are whole 100-ns ticks, so their overflow or division by zero is an error.
//! * Operators are exactly the documented table (e.g. `timestamp - interval` is an error;
//!   write `timestamp + (-1 * interval)`), except that `double * interval` commutes as the
//!   table lists it.
//! * Targets applied are `trunc(max(0, x))` (AS-045); the aliases `$TargetDedicated` /
//!   `$TargetLowPriority` lose to the full names when both are assigned (AS-023).
//! * `stop()` ends evaluation wherever it is evaluated; earlier assignments apply (AS-046).
//! * Samples: see the `samples` module docs. Sampled variables used directly in arithmetic
//!   give their newest sample (an error if they have none); `GetSample(n)` never checks a
//!   percentage; vectors are ordered oldest first.
//! * `percentile(v, p)` takes `p` in 0–100, nearest rank; `std` of one element is 0;
//!   `avg`/`min`/`max`/`range`/`std`/`percentile`/`val` of an empty list are errors.
//! * `rand()` is seeded (from `now` by default) so evaluations are reproducible.
//! * In `results`: doubles as C `%g` (`inf`, `nan` for non-finite), vectors `[1,2]`,
//!   timestamps `2024-01-15T12:00:00.000Z`, intervals as .NET `TimeSpan` (`00:30:00`);
//!   targets print as computed (`2.9`), not as applied. After a failure, `results` shows
//!   the pool's targets, `requeue`, and the user variables evaluated before the failure.

mod ast;
mod check;
mod error;
mod eval;
mod functions;
mod lexer;
mod limits;
mod model;
mod names;
mod ops;
mod parser;
mod results;
mod samples;
mod timefmt;
mod value;
pub mod vectors;

use chrono::{DateTime, Utc};

pub use crate::ast::Program;
pub use crate::error::{
    ErrorCode, EvalError, EvalErrorKind, FormulaError, NameValue, Pos, RunError, SyntaxErrorKind,
};
pub use crate::eval::EvalContext;
pub use crate::limits::{
    DEFAULT_SAMPLE_PERCENT, MAX_EXPRESSION_DEPTH, MAX_FORMULA_CHARS, MAX_STATEMENTS,
    SAMPLE_PERIOD_SECONDS,
};
pub use crate::model::{Applied, NodeDeallocationOption, Outcome, PoolState};
pub use crate::results::format_g;
pub use crate::samples::{MetricHistory, Metrics, Sample};
pub use crate::value::{Interval, Timestamp, Value};

/// Parses and statically checks a formula. Everything detectable without data is
/// rejected here, with the 1-based line and column of the offending token.
pub fn parse(formula: &str) -> Result<Program, FormulaError> {
    let length = formula.encode_utf16().count();
    if length > MAX_FORMULA_CHARS {
        return Err(FormulaError::TooLong { length });
    }
    let tokens = lexer::lex(formula)?;
    let program = parser::parse_tokens(tokens)?;
    check::check(&program)?;
    Ok(program)
}

/// Parses and evaluates a formula in one call: the whole of `openbatch autoscale
/// evaluate`. A formula that does not parse yields an [`Outcome::Error`] too.
/// `rand()` is seeded from `now`; use [`Program::evaluate`] with an [`EvalContext`] to
/// choose the seed.
pub fn evaluate(formula: &str, pool: &PoolState, metrics: &Metrics, now: DateTime<Utc>) -> Outcome {
    match parse(formula) {
        Ok(program) => program.evaluate(&EvalContext::new(pool, metrics, now)),
        Err(error) => eval::rejected(&error, pool),
    }
}
