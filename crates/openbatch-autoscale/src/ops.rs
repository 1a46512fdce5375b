//! Operators over values, exactly the documented operations table (spec §4); any other
//! combination is a type error. Doubles follow IEEE-754 (`1/0 = inf`, `0/0 = NaN`, no
//! error); intervals and timestamps are whole ticks, so their overflow is an error.

use std::cmp::Ordering;

use crate::ast::{BinaryOp, UnaryOp};
use crate::error::EvalErrorKind;
use crate::value::{Interval, Timestamp, Value};

/// 2^63: the first magnitude outside `i64`.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

pub(crate) fn bool_value(b: bool) -> Value {
    Value::Double(if b { 1.0 } else { 0.0 })
}

/// Truthiness for `?:`, `&&`, `||`: a double is true when nonzero (so NaN is true, as in C).
pub(crate) fn truthy(v: &Value) -> Result<bool, EvalErrorKind> {
    match v {
        Value::Double(x) => Ok(*x != 0.0),
        other => Err(EvalErrorKind::ConditionType(other.type_name())),
    }
}

pub(crate) fn unary(op: UnaryOp, v: Value) -> Result<Value, EvalErrorKind> {
    match (op, v) {
        (UnaryOp::Neg, Value::Double(x)) => Ok(Value::Double(-x)),
        (UnaryOp::Neg, Value::Interval(i)) => i
            .ticks()
            .checked_neg()
            .map(|t| Value::Interval(Interval::from_ticks(t)))
            .ok_or(EvalErrorKind::IntervalOutOfRange),
        (UnaryOp::Not, Value::Double(x)) => Ok(bool_value(x == 0.0)),
        (op, other) => Err(EvalErrorKind::UnaryType {
            op: op.symbol(),
            operand: other.type_name(),
        }),
    }
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        }
    }
}

/// Applies a binary operator to evaluated operands. `&&` and `||` are applied strictly
/// here; the evaluator short-circuits them before calling this.
pub(crate) fn binary(op: BinaryOp, left: Value, right: Value) -> Result<Value, EvalErrorKind> {
    let mismatch = EvalErrorKind::BinaryType {
        op: op.symbol(),
        left: left.type_name(),
        right: right.type_name(),
    };
    let arith = match op {
        BinaryOp::Add => Arith::Add,
        BinaryOp::Sub => Arith::Sub,
        BinaryOp::Mul => Arith::Mul,
        BinaryOp::Div => Arith::Div,
        BinaryOp::And | BinaryOp::Or => {
            let (Value::Double(_), Value::Double(_)) = (&left, &right) else {
                return Err(mismatch);
            };
            let (l, r) = (truthy(&left)?, truthy(&right)?);
            return Ok(bool_value(if op == BinaryOp::And {
                l && r
            } else {
                l || r
            }));
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ge | BinaryOp::Gt | BinaryOp::Ne => {
            return compare(op, &left, &right).ok_or(mismatch)
        }
    };
    arithmetic(arith, op.symbol(), left, right, mismatch)
}

fn arithmetic(
    op: Arith,
    symbol: &'static str,
    left: Value,
    right: Value,
    mismatch: EvalErrorKind,
) -> Result<Value, EvalErrorKind> {
    use Value::{Double, Interval as Iv, Timestamp as Ts, Vector};
    match (op, left, right) {
        (op, Double(a), Double(b)) => Ok(Double(op.apply(a, b))),
        (op, Vector(a), Double(b)) => Ok(Vector(a.iter().map(|x| op.apply(*x, b)).collect())),
        (op, Vector(a), Vector(b)) => {
            if a.len() != b.len() {
                return Err(EvalErrorKind::LengthMismatch {
                    op: symbol,
                    left: a.len(),
                    right: b.len(),
                });
            }
            Ok(Vector(
                a.iter().zip(&b).map(|(x, y)| op.apply(*x, *y)).collect(),
            ))
        }
        (Arith::Mul, Double(a), Iv(i)) | (Arith::Mul, Iv(i), Double(a)) => {
            interval_from_ticks(i.ticks() as f64 * a).map(Iv)
        }
        (Arith::Div, Iv(i), Double(a)) => {
            if a == 0.0 {
                return Err(EvalErrorKind::IntervalDivisionByZero);
            }
            interval_from_ticks(i.ticks() as f64 / a).map(Iv)
        }
        (Arith::Add, Iv(a), Iv(b)) => checked_interval(a.ticks().checked_add(b.ticks())),
        (Arith::Sub, Iv(a), Iv(b)) => checked_interval(a.ticks().checked_sub(b.ticks())),
        (Arith::Add, Iv(i), Ts(t)) | (Arith::Add, Ts(t), Iv(i)) => t
            .ticks()
            .checked_add(i.ticks())
            .map(|ticks| Ts(Timestamp::from_ticks(ticks)))
            .ok_or(EvalErrorKind::TimestampOutOfRange),
        (Arith::Sub, Ts(a), Ts(b)) => checked_interval(a.ticks().checked_sub(b.ticks())),
        _ => Err(mismatch),
    }
}

fn checked_interval(ticks: Option<i64>) -> Result<Value, EvalErrorKind> {
    ticks
        .map(|t| Value::Interval(Interval::from_ticks(t)))
        .ok_or(EvalErrorKind::IntervalOutOfRange)
}

/// Rounds a scaled tick count to the nearest tick.
fn interval_from_ticks(ticks: f64) -> Result<Interval, EvalErrorKind> {
    let rounded = ticks.round();
    if rounded > -I64_LIMIT && rounded < I64_LIMIT {
        // In range and not NaN, so the conversion is exact.
        Ok(Interval::from_ticks(rounded as i64))
    } else {
        Err(EvalErrorKind::IntervalOutOfRange)
    }
}

/// Comparisons; `None` for types that do not compare. Doubles follow IEEE (NaN compares
/// false except with `!=`); strings compare ordinally by UTF-16 code unit, as .NET does.
fn compare(op: BinaryOp, left: &Value, right: &Value) -> Option<Value> {
    let ordering: Option<Ordering> = match (left, right) {
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::String(a), Value::String(b)) => Some(a.encode_utf16().cmp(b.encode_utf16())),
        (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
        (Value::Interval(a), Value::Interval(b)) => Some(a.cmp(b)),
        _ => return None,
    };
    let result = match ordering {
        None => op == BinaryOp::Ne,
        Some(o) => match op {
            BinaryOp::Lt => o.is_lt(),
            BinaryOp::Le => o.is_le(),
            BinaryOp::Eq => o.is_eq(),
            BinaryOp::Ge => o.is_ge(),
            BinaryOp::Gt => o.is_gt(),
            _ => o.is_ne(),
        },
    };
    Some(bool_value(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: f64) -> Value {
        Value::Double(x)
    }

    fn iv(seconds: i64) -> Value {
        Value::Interval(Interval::from_ticks(seconds * 10_000_000))
    }

    #[test]
    fn doubles_follow_ieee() {
        assert_eq!(binary(BinaryOp::Div, d(1.0), d(0.0)), Ok(d(f64::INFINITY)));
        let nan = binary(BinaryOp::Div, d(0.0), d(0.0));
        assert!(matches!(nan, Ok(Value::Double(x)) if x.is_nan()));
        assert_eq!(binary(BinaryOp::Eq, d(f64::NAN), d(f64::NAN)), Ok(d(0.0)));
        assert_eq!(binary(BinaryOp::Ne, d(f64::NAN), d(f64::NAN)), Ok(d(1.0)));
    }

    #[test]
    fn interval_arithmetic_and_errors() {
        assert_eq!(binary(BinaryOp::Mul, d(-6.0), iv(3600)), Ok(iv(-21_600)));
        assert_eq!(binary(BinaryOp::Div, iv(60), d(2.0)), Ok(iv(30)));
        assert_eq!(
            binary(BinaryOp::Div, iv(60), d(0.0)),
            Err(EvalErrorKind::IntervalDivisionByZero)
        );
        assert_eq!(
            binary(BinaryOp::Mul, iv(60), d(1e300)),
            Err(EvalErrorKind::IntervalOutOfRange)
        );
        assert_eq!(
            binary(BinaryOp::Mul, iv(60), d(f64::NAN)),
            Err(EvalErrorKind::IntervalOutOfRange)
        );
        assert_eq!(
            unary(
                UnaryOp::Neg,
                Value::Interval(Interval::from_ticks(i64::MIN))
            ),
            Err(EvalErrorKind::IntervalOutOfRange)
        );
    }

    #[test]
    fn combinations_outside_the_table_are_type_errors() {
        let ts = Value::Timestamp(Timestamp::from_ticks(0));
        for (op, l, r) in [
            (BinaryOp::Sub, ts.clone(), iv(1)),
            (BinaryOp::Sub, ts.clone(), d(1.0)),
            (BinaryOp::Div, iv(1), iv(1)),
            (BinaryOp::Add, d(1.0), Value::Vector(vec![1.0])),
            (BinaryOp::Lt, Value::Vector(vec![]), Value::Vector(vec![])),
            (BinaryOp::And, iv(1), d(1.0)),
        ] {
            assert!(
                matches!(binary(op, l, r), Err(EvalErrorKind::BinaryType { .. })),
                "{op:?}"
            );
        }
        assert_eq!(
            binary(
                BinaryOp::Add,
                Value::Vector(vec![1.0]),
                Value::Vector(vec![1.0, 2.0])
            ),
            Err(EvalErrorKind::LengthMismatch {
                op: "+",
                left: 1,
                right: 2
            })
        );
    }
}
