//! Named limits and defaults of the formula language, with where each comes from.

/// Longest formula accepted, in UTF-16 code units: "maximum length is 8192 characters"
/// (.NET SDK; the docs say 8 KB). Counted as the .NET service counts.
pub const MAX_FORMULA_CHARS: usize = 8192;

/// Most statements in one formula (documented). Empty statements (`;;`, a trailing `;`) do
/// not count.
pub const MAX_STATEMENTS: usize = 100;

/// Deepest expression tree accepted. Not an Azure limit: it bounds the recursion of the
/// parser, checker, evaluator and destructor so no input can overflow the stack. Real
/// formulas nest a handful of levels; 128 leaves ample room (a 128-term `a+b+...` chain is
/// 128 levels because `+` associates to the left).
pub const MAX_EXPRESSION_DEPTH: usize = 128;

/// Cadence of metric samples: "A sample is 30 seconds worth of metrics data" (documented).
/// It is the unit of the expected sample count in a window and what `GetSamplePeriod()`
/// returns.
pub const SAMPLE_PERIOD_SECONDS: i64 = 30;

/// Percentage an interval-form `GetSample` requires when its `samplePercent` argument is
/// omitted. Observed, not documented: batch-shipyard#138 shows "wanted 70%", and every
/// official example guards interval `GetSample` with `GetSamplePercent(...) < 70`.
pub const DEFAULT_SAMPLE_PERCENT: f64 = 70.0;

/// 100-ns ticks per second; timestamps and intervals are whole ticks, like .NET's.
pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;
