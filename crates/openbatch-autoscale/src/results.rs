//! The `AutoScaleRun.results` string (spec §8.3), e.g.
//! `$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;$NodeDeallocationOption=taskcompletion;$samples=96.6667`.
//!
//! The three read-write variables come first in that fixed order, then every assigned user
//! variable by name as written, sorted ordinally, separated by `;` without spaces.

use std::collections::BTreeMap;

use crate::model::NodeDeallocationOption;
use crate::timefmt::{format_interval, format_timestamp};
use crate::value::Value;

/// Formats a double like C's `printf("%g")`: 6 significant digits, trailing zeros removed,
/// exponent form (`1e+06`) below 1e-4 or from 1e6. Non-finite values print as C prints
/// them: `inf`, `-inf`, `nan`.
pub fn format_g(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Round to 6 significant digits first; the exponent of the *rounded* value decides the
    // style (999999.5 prints as 1e+06).
    let scientific = format!("{x:.5e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return scientific;
    };
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{}e{sign}{:02}",
            strip_fraction_zeros(mantissa),
            exponent.unsigned_abs()
        )
    } else {
        let decimals = usize::try_from(5 - exponent).unwrap_or(0);
        strip_fraction_zeros(&format!("{x:.decimals$}")).to_owned()
    }
}

fn strip_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A value as it appears after `name=`.
pub(crate) fn render_value(value: &Value) -> String {
    match value {
        Value::Double(x) => format_g(*x),
        Value::Vector(v) => {
            let items: Vec<String> = v.iter().map(|x| format_g(*x)).collect();
            format!("[{}]", items.join(","))
        }
        Value::String(s) => s.clone(),
        Value::Timestamp(t) => format_timestamp(*t),
        Value::Interval(i) => format_interval(*i),
        Value::Deallocation(option) => option.keyword().to_owned(),
    }
}

/// Builds the results string from the final read-write values and the user variables.
pub(crate) fn results_string(
    dedicated: f64,
    low_priority: f64,
    option: NodeDeallocationOption,
    user_variables: &BTreeMap<String, Value>,
) -> String {
    let mut parts = vec![
        format!("$TargetDedicatedNodes={}", format_g(dedicated)),
        format!("$TargetLowPriorityNodes={}", format_g(low_priority)),
        format!("$NodeDeallocationOption={}", option.keyword()),
    ];
    // BTreeMap<String> iterates in byte order, which for ASCII names is ordinal order
    // ('$' < digits < uppercase < '_' < lowercase).
    parts.extend(
        user_variables
            .iter()
            .map(|(name, value)| format!("{name}={}", render_value(value))),
    );
    parts.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_g_matches_c() {
        let cases = [
            (96.666_666_666_666_67, "96.6667"),
            (0.5, "0.5"),
            (100.0, "100"),
            (2.25, "2.25"),
            (66.666_666_666_666_66, "66.6667"),
            (5.222_222_222_222_222, "5.22222"),
            (15.231_546_211_727_817, "15.2315"),
            (-10.0, "-10"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.23457e+06"),
            (999_999.5, "1e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.000_012_345, "1.2345e-05"),
            (1e-300, "1e-300"),
            (1.5e300, "1.5e+300"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (x, expected) in cases {
            assert_eq!(format_g(x), expected, "format_g({x:e})");
        }
    }

    #[test]
    fn results_string_layout() {
        let mut vars = BTreeMap::new();
        vars.insert("cappedPoolSize".to_owned(), Value::Double(3.0));
        vars.insert("$samples".to_owned(), Value::Double(96.666_666_666_666_67));
        vars.insert("$v".to_owned(), Value::Vector(vec![1.0, 2.5]));
        assert_eq!(
            results_string(1.0, 0.0, NodeDeallocationOption::TaskCompletion, &vars),
            "$TargetDedicatedNodes=1;$TargetLowPriorityNodes=0;\
             $NodeDeallocationOption=taskcompletion;$samples=96.6667;$v=[1,2.5];cappedPoolSize=3"
        );
    }
}
