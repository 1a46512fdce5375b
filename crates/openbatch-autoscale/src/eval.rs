//! The evaluator: runs a checked [`Program`] against a pool, its metrics and a given `now`,
//! and builds the [`Outcome`]. Pure: no clock, no I/O, and `rand()` is a seeded generator.
//!
//! Semantics chosen where the spec leaves room (all listed in the crate docs):
//! `?:` evaluates only the chosen branch and `&&`/`||` short-circuit; `stop()` anywhere
//! ends evaluation, keeping earlier assignments; a failure keeps the pool's targets.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::ast::{BinaryOp, Expr, ExprKind, Program, Stmt};
use crate::error::{ErrorCode, EvalError, EvalErrorKind, FormulaError, Pos, RunError};
use crate::functions;
use crate::limits::{DEFAULT_SAMPLE_PERCENT, SAMPLE_PERIOD_SECONDS, TICKS_PER_SECOND};
use crate::model::{Applied, NodeDeallocationOption, Outcome, PoolState};
use crate::names::{classify, Function, Member, Method, NameKind, PoolScalar, Target};
use crate::ops::{self, bool_value, truthy};
use crate::results::{format_g, results_string};
use crate::samples::{MetricHistory, Metrics};
use crate::value::{Interval, Timestamp, Value};

/// Everything an evaluation reads besides the formula.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The pool's targets (initial values of the read-write variables) and node counts.
    pub pool: &'a PoolState,
    /// Sample histories of the sampled service variables.
    pub metrics: &'a Metrics,
    /// The evaluation time: what `time()` returns and what sample ages are relative to.
    pub now: DateTime<Utc>,
    /// Seed of `rand()`.
    pub rand_seed: u64,
}

impl<'a> EvalContext<'a> {
    /// A context whose `rand()` seed is derived from `now`, so that an evaluation is a pure
    /// function of its inputs.
    pub fn new(pool: &'a PoolState, metrics: &'a Metrics, now: DateTime<Utc>) -> Self {
        let rand_seed = Timestamp::from_datetime(now).map_or(0, |t| t.ticks() as u64);
        EvalContext {
            pool,
            metrics,
            now,
            rand_seed,
        }
    }
}

impl Program {
    /// Evaluates the formula. Never panics; failures are [`Outcome::Error`].
    pub fn evaluate(&self, ctx: &EvalContext<'_>) -> Outcome {
        let mut evaluator = Evaluator::new(ctx);
        for stmt in &self.statements {
            match evaluator.exec(stmt) {
                Ok(()) => {}
                Err(Halt::Stop) => break,
                Err(Halt::Error(e)) => return evaluator.failure(RunError::from(&e)),
            }
        }
        evaluator.finish()
    }
}

/// The outcome of a formula that did not parse or check.
pub(crate) fn rejected(error: &FormulaError, pool: &PoolState) -> Outcome {
    Outcome::Error {
        error: RunError::from(error),
        applied: Applied::unchanged(pool),
        results: results_string(
            f64::from(pool.target_dedicated_nodes),
            f64::from(pool.target_low_priority_nodes),
            NodeDeallocationOption::default(),
            &BTreeMap::new(),
        ),
    }
}

/// Why evaluation stopped early.
enum Halt {
    Stop,
    Error(EvalError),
}

fn fail<T>(pos: Pos, kind: EvalErrorKind) -> Result<T, Halt> {
    Err(Halt::Error(EvalError { pos, kind }))
}

fn at(pos: Pos) -> impl Fn(EvalErrorKind) -> Halt {
    move |kind| Halt::Error(EvalError { pos, kind })
}

/// A target's assigned values under its full name and its alias; the full name wins.
#[derive(Debug, Default)]
struct TargetSlot {
    full: Option<f64>,
    alias: Option<f64>,
}

impl TargetSlot {
    fn assigned(&self) -> Option<f64> {
        self.full.or(self.alias)
    }
}

/// splitmix64: small, seedable, good enough for `rand()`.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits: uniform in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Evaluator<'a> {
    pool: &'a PoolState,
    metrics: &'a Metrics,
    now: Option<Timestamp>,
    rng: Rng,
    user: BTreeMap<String, Value>,
    dedicated: TargetSlot,
    low_priority: TargetSlot,
    option: Option<NodeDeallocationOption>,
}

impl<'a> Evaluator<'a> {
    fn new(ctx: &EvalContext<'a>) -> Self {
        Evaluator {
            pool: ctx.pool,
            metrics: ctx.metrics,
            now: Timestamp::from_datetime(ctx.now),
            rng: Rng(ctx.rand_seed),
            user: BTreeMap::new(),
            dedicated: TargetSlot::default(),
            low_priority: TargetSlot::default(),
            option: None,
        }
    }

    fn slot(&mut self, target: Target) -> &mut TargetSlot {
        match target {
            Target::Dedicated => &mut self.dedicated,
            Target::LowPriority => &mut self.low_priority,
        }
    }

    fn initial(&self, target: Target) -> f64 {
        f64::from(match target {
            Target::Dedicated => self.pool.target_dedicated_nodes,
            Target::LowPriority => self.pool.target_low_priority_nodes,
        })
    }

    /// The value a target ends with: full name, else alias, else the pool's target.
    fn effective(&self, target: Target) -> f64 {
        let slot = match target {
            Target::Dedicated => &self.dedicated,
            Target::LowPriority => &self.low_priority,
        };
        slot.assigned().unwrap_or_else(|| self.initial(target))
    }

    fn failure(&self, error: RunError) -> Outcome {
        Outcome::Error {
            error,
            applied: Applied::unchanged(self.pool),
            results: results_string(
                self.initial(Target::Dedicated),
                self.initial(Target::LowPriority),
                NodeDeallocationOption::default(),
                &self.user,
            ),
        }
    }

    fn finish(self) -> Outcome {
        let dedicated = self.effective(Target::Dedicated);
        let low_priority = self.effective(Target::LowPriority);
        for (name, value) in [
            ("$TargetDedicatedNodes", dedicated),
            ("$TargetLowPriorityNodes", low_priority),
        ] {
            if !value.is_finite() {
                return self.failure(RunError::new(
                    ErrorCode::InvalidAutoScaleResult,
                    format!(
                        "{name} evaluated to {}; a target must be a finite number, so guard \
                         divisions and sample reads (e.g. max(0, min(x, 10)))",
                        format_g(value)
                    ),
                ));
            }
        }
        let option = self.option.unwrap_or_default();
        let results = results_string(dedicated, low_priority, option, &self.user);
        let mut variables = self.user;
        if let Some(v) = self.dedicated.assigned() {
            variables.insert("$TargetDedicatedNodes".to_owned(), Value::Double(v));
        }
        if let Some(v) = self.low_priority.assigned() {
            variables.insert("$TargetLowPriorityNodes".to_owned(), Value::Double(v));
        }
        Outcome::Success {
            variables,
            applied: Applied {
                target_dedicated_nodes: node_count(dedicated),
                target_low_priority_nodes: node_count(low_priority),
                node_deallocation_option: Some(option),
            },
            results,
        }
    }

    fn exec(&mut self, stmt: &Stmt) -> Result<(), Halt> {
        match stmt {
            Stmt::Expr(expr) => self.eval(expr).map(drop),
            Stmt::Assign { name, pos, value } => {
                let value = self.eval(value)?;
                self.assign(name, *pos, value)
            }
        }
    }

    fn assign(&mut self, name: &str, pos: Pos, value: Value) -> Result<(), Halt> {
        match classify(name) {
            NameKind::Target { target, alias } => {
                let Value::Double(x) = value else {
                    return fail(
                        pos,
                        EvalErrorKind::TargetType {
                            name: name.to_owned(),
                            found: value.type_name(),
                        },
                    );
                };
                let slot = self.slot(target);
                if alias {
                    slot.alias = Some(x);
                } else {
                    slot.full = Some(x);
                }
            }
            NameKind::Deallocation => {
                let Value::Deallocation(option) = value else {
                    return fail(pos, EvalErrorKind::DeallocationType(value.type_name()));
                };
                self.option = Some(option);
            }
            NameKind::User => {
                self.user.insert(name.to_owned(), value);
            }
            _ => return fail(pos, EvalErrorKind::InvalidName(name.to_owned())),
        }
        Ok(())
    }

    fn now(&self, pos: Pos) -> Result<Timestamp, Halt> {
        self.now.ok_or(Halt::Error(EvalError {
            pos,
            kind: EvalErrorKind::TimestampOutOfRange,
        }))
    }

    fn eval(&mut self, expr: &Expr) -> Result<Value, Halt> {
        let pos = expr.pos;
        match &expr.kind {
            ExprKind::Number(n) => Ok(Value::Double(*n)),
            ExprKind::Str(s) => Ok(Value::String(s.clone())),
            ExprKind::Name(name) => self.read(name, pos),
            ExprKind::Call { name, args } => self.call(name, args, pos),
            ExprKind::Method {
                receiver,
                method,
                args,
                paren,
            } => self.method(receiver, method, args, *paren),
            ExprKind::Member { object, member } => {
                let value = self.eval(object)?;
                member_of(&value, member).map_err(at(pos))
            }
            ExprKind::Unary { op, operand } => {
                let value = self.eval(operand)?;
                ops::unary(*op, value).map_err(at(pos))
            }
            ExprKind::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                left,
                right,
            } => {
                let left = truthy(&self.eval(left)?).map_err(at(pos))?;
                if left == (*op == BinaryOp::Or) {
                    return Ok(bool_value(left));
                }
                let right = truthy(&self.eval(right)?).map_err(at(pos))?;
                Ok(bool_value(right))
            }
            ExprKind::Binary { op, left, right } => {
                let left = self.eval(left)?;
                let right = self.eval(right)?;
                ops::binary(*op, left, right).map_err(at(pos))
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => {
                let cond = self.eval(cond)?;
                if truthy(&cond).map_err(at(pos))? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
        }
    }

    fn read(&self, name: &str, pos: Pos) -> Result<Value, Halt> {
        let double = |x: u32| Ok(Value::Double(f64::from(x)));
        match classify(name) {
            NameKind::Metric(metric) => self
                .metrics
                .get(metric)
                .and_then(MetricHistory::latest_value)
                .map(Value::Double)
                .ok_or_else(|| at(pos)(EvalErrorKind::NoSamples(name.to_owned()))),
            NameKind::Pool(PoolScalar::CurrentDedicated) => {
                double(self.pool.current_dedicated_nodes)
            }
            NameKind::Pool(PoolScalar::CurrentLowPriority) => {
                double(self.pool.current_low_priority_nodes)
            }
            NameKind::Pool(PoolScalar::TaskSlotsPerNode) => double(self.pool.task_slots_per_node),
            NameKind::Target { target, alias } => {
                let effective = self.effective(target);
                let slot = match target {
                    Target::Dedicated => &self.dedicated,
                    Target::LowPriority => &self.low_priority,
                };
                let value = if alias {
                    slot.alias.unwrap_or(effective)
                } else {
                    effective
                };
                Ok(Value::Double(value))
            }
            NameKind::Deallocation => Ok(Value::Deallocation(self.option.unwrap_or_default())),
            NameKind::Interval(ticks) => Ok(Value::Interval(Interval::from_ticks(ticks))),
            NameKind::Keyword(option) => Ok(Value::Deallocation(option)),
            NameKind::Function(_) => fail(pos, EvalErrorKind::InvalidName(name.to_owned())),
            NameKind::User => self
                .user
                .get(name)
                .cloned()
                .ok_or_else(|| at(pos)(EvalErrorKind::InvalidName(name.to_owned()))),
        }
    }

    fn eval_args(&mut self, args: &[Expr]) -> Result<Vec<Value>, Halt> {
        args.iter().map(|a| self.eval(a)).collect()
    }

    fn call(&mut self, name: &str, args: &[Expr], pos: Pos) -> Result<Value, Halt> {
        let Some(function) = Function::from_name(name) else {
            return fail(pos, EvalErrorKind::InvalidName(name.to_owned()));
        };
        match function {
            Function::Stop => Err(Halt::Stop),
            Function::Rand => Ok(Value::Double(self.rng.next_f64())),
            Function::Time if args.is_empty() => self.now(pos).map(Value::Timestamp),
            _ => {
                let values = self.eval_args(args)?;
                functions::call(function, &values).map_err(at(pos))
            }
        }
    }

    fn method(
        &mut self,
        receiver: &Expr,
        method: &str,
        args: &[Expr],
        paren: Pos,
    ) -> Result<Value, Halt> {
        let metric = match &receiver.kind {
            ExprKind::Name(name) if matches!(classify(name), NameKind::Metric(_)) => name,
            _ => return fail(receiver.pos, EvalErrorKind::InvalidName(method.to_owned())),
        };
        let Some(method) = Method::from_name(method) else {
            return fail(paren, EvalErrorKind::InvalidName(method.to_owned()));
        };
        let values = self.eval_args(args)?;
        let empty = MetricHistory::default();
        let metrics = self.metrics;
        let history = metrics.get(metric).unwrap_or(&empty);
        let name = method.name();
        match method {
            Method::GetSample => self.get_sample(metric, history, &values, paren),
            Method::GetSamplePercent => {
                let (from, to) = match values.as_slice() {
                    [start] => (0.0, self.look_back(name, start, 1, paren)?),
                    [start, end] => (
                        self.look_back(name, start, 1, paren)?,
                        self.look_back(name, end, 2, paren)?,
                    ),
                    _ => return fail(paren, bad_count(name)),
                };
                Ok(Value::Double(history.window(from, to).percent))
            }
            Method::GetSamplePeriod => Ok(Value::Interval(Interval::from_ticks(
                SAMPLE_PERIOD_SECONDS * TICKS_PER_SECOND,
            ))),
            Method::Count => Ok(Value::Double(history.count() as f64)),
            Method::HistoryBeginTime => {
                let Some(age) = history.oldest_age() else {
                    return fail(paren, EvalErrorKind::NoSamples(metric.clone()));
                };
                // `as` saturates; ages are finite and non-negative.
                let age_ticks = (age * TICKS_PER_SECOND as f64).round() as i64;
                self.now(paren)?
                    .ticks()
                    .checked_sub(age_ticks)
                    .map(|t| Value::Timestamp(Timestamp::from_ticks(t)))
                    .ok_or_else(|| at(paren)(EvalErrorKind::TimestampOutOfRange))
            }
        }
    }

    /// `GetSample(count)`, `GetSample(start[, percent])`, `GetSample(start, end[, percent])`.
    fn get_sample(
        &self,
        metric: &str,
        history: &MetricHistory,
        args: &[Value],
        paren: Pos,
    ) -> Result<Value, Halt> {
        let name = "GetSample";
        let percent_arg = |v: &Value, index: usize| match v {
            Value::Double(p) if p.is_finite() => Ok(*p),
            Value::Double(_) => fail(
                paren,
                EvalErrorKind::InvalidArgument {
                    function: name,
                    reason: "the sample percentage must be a finite number",
                },
            ),
            other => fail(
                paren,
                EvalErrorKind::ArgumentType {
                    function: name,
                    index,
                    expected: "a double (sample percentage)",
                    found: other.type_name(),
                },
            ),
        };
        let (from, to, wanted) = match args {
            [Value::Double(count)] => {
                if count.is_nan() || *count < 0.0 {
                    return fail(
                        paren,
                        EvalErrorKind::InvalidArgument {
                            function: name,
                            reason: "the sample count must be a non-negative number",
                        },
                    );
                }
                // `as` truncates and saturates.
                return Ok(Value::Vector(history.latest(*count as usize)));
            }
            [start] => (
                0.0,
                self.look_back(name, start, 1, paren)?,
                DEFAULT_SAMPLE_PERCENT,
            ),
            [start, p @ Value::Double(_)] => (
                0.0,
                self.look_back(name, start, 1, paren)?,
                percent_arg(p, 2)?,
            ),
            [start, end] => (
                self.look_back(name, start, 1, paren)?,
                self.look_back(name, end, 2, paren)?,
                DEFAULT_SAMPLE_PERCENT,
            ),
            [start, end, p] => (
                self.look_back(name, start, 1, paren)?,
                self.look_back(name, end, 2, paren)?,
                percent_arg(p, 3)?,
            ),
            _ => return fail(paren, bad_count(name)),
        };
        let window = history.window(from, to);
        if window.percent < wanted {
            return fail(
                paren,
                EvalErrorKind::InsufficientSampleData {
                    metric: metric.to_owned(),
                    wanted,
                    received: window.percent,
                },
            );
        }
        Ok(Value::Vector(window.values))
    }

    /// A window bound as an age in seconds: an interval is "that long ago"; a timestamp is
    /// converted relative to `now`.
    fn look_back(
        &self,
        function: &'static str,
        value: &Value,
        index: usize,
        pos: Pos,
    ) -> Result<f64, Halt> {
        match value {
            Value::Interval(i) => Ok(i.as_seconds()),
            Value::Timestamp(t) => {
                let now = self.now(pos)?;
                Ok((now.ticks() as f64 - t.ticks() as f64) / TICKS_PER_SECOND as f64)
            }
            other => fail(
                pos,
                EvalErrorKind::ArgumentType {
                    function,
                    index,
                    expected: "a timeinterval or timestamp",
                    found: other.type_name(),
                },
            ),
        }
    }
}

fn bad_count(function: &'static str) -> EvalErrorKind {
    EvalErrorKind::InvalidArgument {
        function,
        reason: "wrong number of arguments",
    }
}

/// Target node count to adopt: negative clamps to 0, fractions truncate toward zero
/// (observed: 2.9 → 2), beyond `u32::MAX` saturates. `value` is finite here.
fn node_count(value: f64) -> u32 {
    if value <= 0.0 {
        0
    } else {
        value.trunc() as u32
    }
}

fn member_of(value: &Value, member: &str) -> Result<Value, EvalErrorKind> {
    let Some(member) = Member::from_name(member) else {
        return Err(EvalErrorKind::InvalidName(member.to_owned()));
    };
    let Value::Timestamp(t) = value else {
        return Err(EvalErrorKind::MemberType {
            member: member.name(),
            found: value.type_name(),
        });
    };
    let dt = t.to_datetime().ok_or(EvalErrorKind::TimestampOutOfRange)?;
    let number = match member {
        Member::Year => f64::from(dt.year()),
        Member::Month => f64::from(dt.month()),
        Member::Day => f64::from(dt.day()),
        // ISO: Monday = 1 ... Sunday = 7.
        Member::Weekday => f64::from(dt.weekday().number_from_monday()),
        Member::Hour => f64::from(dt.hour()),
        Member::Minute => f64::from(dt.minute()),
        Member::Second => f64::from(dt.second()),
    };
    Ok(Value::Double(number))
}
