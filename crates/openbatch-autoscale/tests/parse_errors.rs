//! `parse` rejects bad formulas with the right code and the 1-based line/column of the
//! offending token, and enforces the documented limits.

use openbatch_autoscale::{
    parse, ErrorCode, FormulaError, Pos, SyntaxErrorKind, MAX_EXPRESSION_DEPTH, MAX_FORMULA_CHARS,
    MAX_STATEMENTS,
};

#[track_caller]
fn rejected_at(formula: &str, line: u32, col: u32, message_part: &str) {
    match parse(formula) {
        Ok(_) => panic!("{formula:?} should be rejected"),
        Err(e) => {
            assert_eq!(
                e.position(),
                Some(Pos::new(line, col)),
                "{formula:?}: wrong position in {e}"
            );
            assert!(
                e.to_string().contains(message_part),
                "{formula:?}: message {e:?} lacks {message_part:?}"
            );
            assert!(e
                .to_string()
                .starts_with(&format!("Line {line}, Col {col}: ")));
        }
    }
}

#[test]
fn syntax_errors_point_at_the_offending_token() {
    rejected_at(
        "$TargetDedicatedNodes = (5 + ;",
        1,
        30,
        "expected an expression, found ';'",
    );
    rejected_at("a = 1;\nb = (2 * 3;", 2, 11, "expected ')'");
    rejected_at(
        "a = 1 b = 2",
        1,
        7,
        "expected ';' or end of formula, found 'b'",
    );
    rejected_at("a = 1 ? 2;", 1, 10, "expected ':'");
    rejected_at("a = max(1 2);", 1, 11, "expected ',' or ')'");
    rejected_at("a = $x.$y;", 1, 8, "method or member name");
    rejected_at("a =", 1, 4, "found end of formula");
    rejected_at("// only a comment\n  = 3", 2, 3, "found '='");
    rejected_at("a = 1;\r\n\tb = 2 % 3;", 2, 8, "unexpected character '%'");
    rejected_at("a = 1 /* no */;", 1, 7, "block comments");
    rejected_at("a = \"never closed;", 1, 5, "unterminated string");
}

#[test]
fn static_errors_point_at_the_offending_name() {
    rejected_at(
        "$TargetDedicatedNodes = median(1, 2, 3);",
        1,
        25,
        "unknown function 'median'",
    );
    rejected_at(
        "x = 1;\n$TargetDedicatedNodes = y + x;",
        2,
        25,
        "'y' is not",
    );
    rejected_at("x = x + 1;", 1, 5, "'x' is not");
    rejected_at("$x = 1; y = x;", 1, 13, "'x' is not");
    rejected_at(
        "a = $PendingTaskz.GetSample(1);",
        1,
        5,
        "'$PendingTaskz' is not a sampled",
    );
    rejected_at("a = $TaskSlotsPerNode.GetSample(1);", 1, 5, "not a sampled");
    rejected_at(
        "a = $CPUPercent.GetSampl(1);",
        1,
        17,
        "unknown method 'GetSampl'",
    );
    rejected_at(
        "a = $CPUPercent.GetSample();",
        1,
        17,
        "GetSample() takes 1 to 3",
    );
    rejected_at("a = $CPUPercent.Count(1);", 1, 17, "Count() takes no");
    rejected_at("a = time().hours;", 1, 12, "unknown member 'hours'");
    rejected_at(
        "a = $CPUPercent.GetSample;",
        1,
        17,
        "unknown member 'GetSample'",
    );
    rejected_at("a = percentile(1);", 1, 5, "percentile() takes 2");
    rejected_at("a = time(1, 2);", 1, 5, "time() takes 0 or 1");
    rejected_at("a = max;", 1, 5, "'max' is a function");
    rejected_at("\n  $CPUPercent = 5;", 2, 3, "read-only");
    rejected_at("$CurrentDedicatedNodes = 5;", 1, 1, "read-only");
    rejected_at("TimeInterval_Hour = 5;", 1, 1, "reserved");
    rejected_at("requeue = 5;", 1, 1, "reserved");
    rejected_at("avg = 5;", 1, 1, "reserved");
    rejected_at(
        "$NodeDeallocationOption = sometimes;",
        1,
        27,
        "not a node deallocation option",
    );
    rejected_at(
        "$NodeDeallocationOption = 5;",
        1,
        27,
        "not a node deallocation option",
    );
    rejected_at(
        "t = time(\"2023-04-14T10:11:12.123456Z\");",
        1,
        10,
        "fractional-second",
    );
    rejected_at("t = time(\"next tuesday\");", 1, 10, "RFC 1123");
}

#[test]
fn all_syntax_and_static_errors_have_the_syntax_error_code() {
    for formula in ["a = (", "a = b;", "a = median(1);", "$CPUPercent = 1;"] {
        assert_eq!(
            parse(formula).err().map(|e| e.code()),
            Some(ErrorCode::AutoScalingFormulaSyntaxError),
            "{formula:?}"
        );
    }
}

#[test]
fn names_that_are_fine() {
    for formula in [
        "",
        ";;",
        "a = 1;",
        "a = 1",
        "$a = 1; b = $a;",
        "$NodeDeallocationOption = retaineddata;",
        "o = terminate; $NodeDeallocationOption = o;",
        "x = 1; $NodeDeallocationOption = x > 0 ? taskcompletion : requeue;",
        "$TargetDedicated = $CurrentDedicated + $TargetLowPriority;",
        "t = time(\"Mon, 15 Jan 2024 12:00:00 GMT\"); h = t.hour + time().weekday;",
        "stop();",
        "v = $UsableNodeCount.GetSample(1); w = $PreemptedNodeCount.HistoryBeginTime();",
        "x = 1.5e3 + .5 - 2. * TimeInterval_100ns / TimeInterval_Microsecond * 0;",
    ] {
        assert!(
            parse(formula).is_ok(),
            "{formula:?}: {:?}",
            parse(formula).err()
        );
    }
}

#[test]
fn formula_length_limit_counts_characters() {
    let at_limit = format!("a = 1;{}", " ".repeat(MAX_FORMULA_CHARS - 6));
    assert!(parse(&at_limit).is_ok());
    let over = format!("{at_limit} ");
    let err = parse(&over).err();
    assert_eq!(
        err,
        Some(FormulaError::TooLong {
            length: MAX_FORMULA_CHARS + 1
        })
    );
    assert_eq!(
        err.map(|e| e.code()),
        Some(ErrorCode::AutoScaleFormulaTooLong)
    );
}

#[test]
fn statement_limit_ignores_empty_statements() {
    let hundred = "a=1;".repeat(MAX_STATEMENTS);
    assert_eq!(
        parse(&hundred).map(|p| p.statement_count()),
        Ok(MAX_STATEMENTS)
    );
    assert!(parse(&format!("{hundred};;\n;")).is_ok());
    let over = format!("{hundred}\n  b=2");
    match parse(&over) {
        Err(e @ FormulaError::TooManyStatements { .. }) => {
            assert_eq!(e.position(), Some(Pos::new(2, 3)));
            assert_eq!(e.code(), ErrorCode::InvalidAutoScalingSettings);
        }
        other => panic!("expected TooManyStatements, got {other:?}"),
    }
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    let deep_parens = format!("a = {}1{};", "(".repeat(4000), ")".repeat(4000));
    assert!(matches!(
        parse(&deep_parens),
        Err(FormulaError::Syntax {
            kind: SyntaxErrorKind::TooDeep,
            ..
        })
    ));
    let deep_unary = format!("a = {}1;", "-".repeat(4000));
    assert!(matches!(
        parse(&deep_unary),
        Err(FormulaError::Syntax {
            kind: SyntaxErrorKind::TooDeep,
            ..
        })
    ));
    let long_chain = format!("a = 1{};", "+1".repeat(4000));
    assert!(matches!(
        parse(&long_chain),
        Err(FormulaError::Syntax {
            kind: SyntaxErrorKind::TooDeep,
            ..
        })
    ));
    let deep_ternary = format!("a = {}1;", "1 ? 2 : ".repeat(1000));
    assert!(matches!(
        parse(&deep_ternary),
        Err(FormulaError::Syntax {
            kind: SyntaxErrorKind::TooDeep,
            ..
        })
    ));
    // Just under the limit parses.
    let fine = format!(
        "a = {}1{};",
        "(".repeat(MAX_EXPRESSION_DEPTH - 2),
        ")".repeat(MAX_EXPRESSION_DEPTH - 2)
    );
    assert!(parse(&fine).is_ok(), "{:?}", parse(&fine).err());
}
