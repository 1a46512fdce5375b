//! Built-in functions over evaluated arguments (spec §6). `stop()`, `rand()` and `time()`
//! without an argument need the evaluator's state and are handled there.
//!
//! List functions flatten their `doubleVecList` (doubles and doubleVecs) into one list.
//! Where a result is undefined for an empty list (`avg`, `min`, `max`, `range`, `std`,
//! `percentile`, `val`) it is an error; `len`, `sum` and `norm` of nothing are 0. NaN
//! elements propagate (`max(0, NaN)` is NaN) so that a broken metric is never silently
//! hidden, and a NaN target is then rejected.

use crate::error::EvalErrorKind;
use crate::names::Function;
use crate::timefmt;
use crate::value::Value;

const LIST: &str = "a double or doubleVec";

/// Evaluates a pure function. `args` already has the checked arity.
pub(crate) fn call(function: Function, args: &[Value]) -> Result<Value, EvalErrorKind> {
    let name = function.name();
    let list = || flatten(name, args);
    let non_empty = || {
        let values = flatten(name, args)?;
        if values.is_empty() {
            Err(EvalErrorKind::EmptyList(name))
        } else {
            Ok(values)
        }
    };
    let double = |x: f64| Ok(Value::Double(x));
    match function {
        Function::Avg => {
            let v = non_empty()?;
            double(v.iter().sum::<f64>() / v.len() as f64)
        }
        Function::Len => double(list()?.len() as f64),
        Function::Sum => double(list()?.iter().sum()),
        Function::Norm => double(list()?.iter().map(|x| x * x).sum::<f64>().sqrt()),
        Function::Max => double(extreme(&non_empty()?, f64::max)),
        Function::Min => double(extreme(&non_empty()?, f64::min)),
        Function::Range => {
            let v = non_empty()?;
            double(extreme(&v, f64::max) - extreme(&v, f64::min))
        }
        Function::Std => double(sample_std(&non_empty()?)),
        Function::Lg => elementwise(name, args, f64::log2),
        Function::Ln => elementwise(name, args, f64::ln),
        Function::Log => elementwise(name, args, f64::log10),
        Function::Ceil => elementwise(name, args, f64::ceil),
        Function::Floor => elementwise(name, args, f64::floor),
        // Rust's round() rounds halfway cases away from zero, as specified.
        Function::Round => elementwise(name, args, f64::round),
        Function::Percentile => percentile(args),
        Function::Val => val(args),
        Function::Time => {
            match args.first() {
                Some(Value::String(text)) => timefmt::parse_time(text)
                    .map(Value::Timestamp)
                    .map_err(|reason| EvalErrorKind::InvalidTimeString {
                        text: text.clone(),
                        reason,
                    }),
                other => Err(EvalErrorKind::ArgumentType {
                    function: name,
                    index: 1,
                    expected: "a string",
                    found: other.map_or("nothing", Value::type_name),
                }),
            }
        }
        Function::Rand | Function::Stop => Err(EvalErrorKind::InvalidArgument {
            function: name,
            reason: "is evaluated by the evaluator",
        }),
    }
}

fn flatten(function: &'static str, args: &[Value]) -> Result<Vec<f64>, EvalErrorKind> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Value::Double(x) => out.push(*x),
            Value::Vector(v) => out.extend_from_slice(v),
            other => {
                return Err(EvalErrorKind::ArgumentType {
                    function,
                    index: i + 1,
                    expected: LIST,
                    found: other.type_name(),
                })
            }
        }
    }
    Ok(out)
}

/// Folds with `pick` (`f64::max`/`f64::min`), but NaN wins.
fn extreme(values: &[f64], pick: fn(f64, f64) -> f64) -> f64 {
    values
        .iter()
        .copied()
        .fold(None, |acc: Option<f64>, x| {
            Some(match acc {
                None => x,
                Some(a) if a.is_nan() || x.is_nan() => f64::NAN,
                Some(a) => pick(a, x),
            })
        })
        .unwrap_or(f64::NAN)
}

/// Sample standard deviation (n − 1, documented); 0 for a single element (our choice).
fn sample_std(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let squares: f64 = values.iter().map(|x| (x - mean) * (x - mean)).sum();
    (squares / (n - 1) as f64).sqrt()
}

/// `f(double)` returns a double; a doubleVec or several arguments select the vector form.
fn elementwise(
    name: &'static str,
    args: &[Value],
    f: fn(f64) -> f64,
) -> Result<Value, EvalErrorKind> {
    if let [Value::Double(x)] = args {
        return Ok(Value::Double(f(*x)));
    }
    Ok(Value::Vector(
        flatten(name, args)?.into_iter().map(f).collect(),
    ))
}

fn double_arg(function: &'static str, args: &[Value], index: usize) -> Result<f64, EvalErrorKind> {
    match args.get(index) {
        Some(Value::Double(x)) => Ok(*x),
        other => Err(EvalErrorKind::ArgumentType {
            function,
            index: index + 1,
            expected: "a double",
            found: other.map_or("nothing", Value::type_name),
        }),
    }
}

/// The vector argument of `percentile`/`val` (a double counts as a one-element vector).
fn vector_arg(function: &'static str, args: &[Value]) -> Result<Vec<f64>, EvalErrorKind> {
    flatten(function, args.get(..1).unwrap_or_default())
}

/// Nearest rank: sort ascending, take index ⌈p/100 · n⌉ − 1 clamped to the vector
/// (`p` is a percentage; undocumented, our choice).
fn percentile(args: &[Value]) -> Result<Value, EvalErrorKind> {
    let name = "percentile";
    let mut v = vector_arg(name, args)?;
    let p = double_arg(name, args, 1)?;
    if p.is_nan() {
        return Err(EvalErrorKind::InvalidArgument {
            function: name,
            reason: "the percentile is NaN",
        });
    }
    if v.is_empty() {
        return Err(EvalErrorKind::EmptyList(name));
    }
    v.sort_by(f64::total_cmp);
    let last = (v.len() - 1) as f64;
    let rank = ((p / 100.0) * v.len() as f64).ceil() - 1.0;
    let index = rank.clamp(0.0, last) as usize;
    v.get(index)
        .copied()
        .map(Value::Double)
        .ok_or(EvalErrorKind::EmptyList(name))
}

/// Element at a zero-based index (fractional indices truncate).
fn val(args: &[Value]) -> Result<Value, EvalErrorKind> {
    let name = "val";
    let v = vector_arg(name, args)?;
    let i = double_arg(name, args, 1)?;
    let out_of_range = EvalErrorKind::IndexOutOfRange {
        index: i,
        len: v.len(),
    };
    if i.is_nan() || i < 0.0 || i >= v.len() as f64 {
        return Err(out_of_range);
    }
    v.get(i as usize)
        .copied()
        .map(Value::Double)
        .ok_or(out_of_range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: f64) -> Value {
        Value::Double(x)
    }

    fn v(xs: &[f64]) -> Value {
        Value::Vector(xs.to_vec())
    }

    #[test]
    fn list_functions_flatten_their_arguments() {
        let x = v(&[1.0, 2.0, 3.0]);
        assert_eq!(call(Function::Avg, &[x.clone(), d(7.0)]), Ok(d(3.25)));
        assert_eq!(call(Function::Len, &[x.clone(), d(7.0)]), Ok(d(4.0)));
        assert_eq!(call(Function::Max, &[d(25.0), x.clone()]), Ok(d(25.0)));
        assert_eq!(call(Function::Min, &[d(25.0), x.clone()]), Ok(d(1.0)));
        assert_eq!(call(Function::Range, std::slice::from_ref(&x)), Ok(d(2.0)));
        assert_eq!(call(Function::Std, &[d(4.0)]), Ok(d(0.0)));
        assert_eq!(call(Function::Sum, &[]), Ok(d(0.0)));
        assert_eq!(call(Function::Norm, &[v(&[3.0, 4.0])]), Ok(d(5.0)));
        assert_eq!(
            call(Function::Avg, &[]),
            Err(EvalErrorKind::EmptyList("avg"))
        );
        assert!(matches!(
            call(Function::Max, &[d(0.0), d(f64::NAN)]),
            Ok(Value::Double(x)) if x.is_nan()
        ));
    }

    #[test]
    fn elementwise_forms() {
        assert_eq!(call(Function::Lg, &[d(8.0)]), Ok(d(3.0)));
        assert_eq!(
            call(Function::Log, &[v(&[10.0, 100.0])]),
            Ok(v(&[1.0, 2.0]))
        );
        assert_eq!(call(Function::Ceil, &[d(1.0), d(2.5)]), Ok(v(&[1.0, 3.0])));
        assert_eq!(call(Function::Round, &[d(-2.5)]), Ok(d(-3.0)));
    }

    #[test]
    fn percentile_and_val() {
        let x = v(&[15.0, 20.0, 35.0, 40.0, 50.0]);
        assert_eq!(
            call(Function::Percentile, &[x.clone(), d(30.0)]),
            Ok(d(20.0))
        );
        assert_eq!(
            call(Function::Percentile, &[x.clone(), d(100.0)]),
            Ok(d(50.0))
        );
        assert_eq!(
            call(Function::Percentile, &[x.clone(), d(0.0)]),
            Ok(d(15.0))
        );
        assert_eq!(
            call(Function::Percentile, &[x.clone(), d(1e308)]),
            Ok(d(50.0))
        );
        assert_eq!(call(Function::Val, &[x.clone(), d(1.9)]), Ok(d(20.0)));
        assert!(matches!(
            call(Function::Val, &[x.clone(), d(5.0)]),
            Err(EvalErrorKind::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            call(Function::Val, &[x, d(f64::NAN)]),
            Err(EvalErrorKind::IndexOutOfRange { .. })
        ));
    }
}
