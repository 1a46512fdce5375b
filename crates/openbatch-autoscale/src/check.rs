//! Static checks run after parsing, so that everything detectable before evaluation is
//! rejected when the formula is set (HTTP 400), not at its first evaluation.
//!
//! Because assignments only occur at statement level and statements run in order, "is this
//! user variable assigned before it is read" is decided exactly here, including in the
//! untaken branch of a `?:`.

use std::collections::HashSet;

use crate::ast::{Expr, ExprKind, Program, Stmt};
use crate::error::{FormulaError, SyntaxErrorKind};
use crate::names::{classify, Function, Member, Method, NameKind};
use crate::timefmt;

pub(crate) fn check(program: &Program) -> Result<(), FormulaError> {
    let mut assigned: HashSet<&str> = HashSet::new();
    for stmt in &program.statements {
        match stmt {
            Stmt::Assign { name, pos, value } => {
                let kind = classify(name);
                if kind.is_read_only() {
                    return Err(FormulaError::syntax(
                        *pos,
                        SyntaxErrorKind::ReadOnlyAssignment(name.clone()),
                    ));
                }
                if kind.is_reserved() {
                    return Err(FormulaError::syntax(
                        *pos,
                        SyntaxErrorKind::ReservedName(name.clone()),
                    ));
                }
                if kind == NameKind::Deallocation {
                    check_deallocation_value(value, &assigned)?;
                }
                check_expr(value, &assigned)?;
                if kind == NameKind::User {
                    assigned.insert(name);
                }
            }
            Stmt::Expr(expr) => check_expr(expr, &assigned)?,
        }
    }
    Ok(())
}

/// Rejects right-hand sides of `$NodeDeallocationOption =` that can never be an option:
/// literals, and bare names that are neither keywords nor variables (`= sometimes`).
fn check_deallocation_value(value: &Expr, assigned: &HashSet<&str>) -> Result<(), FormulaError> {
    let bad = match &value.kind {
        ExprKind::Name(name) => {
            classify(name) == NameKind::User && !assigned.contains(name.as_str())
        }
        ExprKind::Number(_) | ExprKind::Str(_) => true,
        _ => false,
    };
    if bad {
        let text = match &value.kind {
            ExprKind::Name(name) => name.clone(),
            ExprKind::Number(n) => crate::results::format_g(*n),
            ExprKind::Str(s) => format!("\"{s}\""),
            _ => String::new(),
        };
        return Err(FormulaError::syntax(
            value.pos,
            SyntaxErrorKind::InvalidDeallocationOption(text),
        ));
    }
    Ok(())
}

fn check_expr(expr: &Expr, assigned: &HashSet<&str>) -> Result<(), FormulaError> {
    let fail = |kind| Err(FormulaError::syntax(expr.pos, kind));
    match &expr.kind {
        ExprKind::Number(_) | ExprKind::Str(_) => Ok(()),
        ExprKind::Name(name) => match classify(name) {
            NameKind::Function(_) => fail(SyntaxErrorKind::FunctionWithoutCall(name.clone())),
            NameKind::User if !assigned.contains(name.as_str()) => {
                fail(SyntaxErrorKind::UndefinedVariable(name.clone()))
            }
            _ => Ok(()),
        },
        ExprKind::Call { name, args } => {
            let Some(function) = Function::from_name(name) else {
                return fail(SyntaxErrorKind::UnknownFunction(name.clone()));
            };
            let arity = function.arity();
            if !arity.accepts(args.len()) {
                return fail(SyntaxErrorKind::WrongArgumentCount {
                    function: name.clone(),
                    expected: arity.words,
                    found: args.len(),
                });
            }
            if let (Function::Time, [arg]) = (function, args.as_slice()) {
                if let ExprKind::Str(text) = &arg.kind {
                    if let Err(reason) = timefmt::parse_time(text) {
                        return Err(FormulaError::syntax(
                            arg.pos,
                            SyntaxErrorKind::InvalidTimeString {
                                text: text.clone(),
                                reason,
                            },
                        ));
                    }
                }
            }
            args.iter().try_for_each(|a| check_expr(a, assigned))
        }
        ExprKind::Method {
            receiver,
            method,
            args,
            ..
        } => {
            let receiver_is_metric = matches!(
                &receiver.kind,
                ExprKind::Name(name) if matches!(classify(name), NameKind::Metric(_))
            );
            if !receiver_is_metric {
                let text = match &receiver.kind {
                    ExprKind::Name(name) => name.clone(),
                    _ => "this expression".to_owned(),
                };
                return Err(FormulaError::syntax(
                    receiver.pos,
                    SyntaxErrorKind::NotAMetric(text),
                ));
            }
            let Some(m) = Method::from_name(method) else {
                return fail(SyntaxErrorKind::UnknownMethod(method.clone()));
            };
            let arity = m.arity();
            if !arity.accepts(args.len()) {
                return fail(SyntaxErrorKind::WrongArgumentCount {
                    function: m.name().to_owned(),
                    expected: arity.words,
                    found: args.len(),
                });
            }
            args.iter().try_for_each(|a| check_expr(a, assigned))
        }
        ExprKind::Member { object, member } => {
            if Member::from_name(member).is_none() {
                return fail(SyntaxErrorKind::UnknownMember(member.clone()));
            }
            check_expr(object, assigned)
        }
        ExprKind::Unary { operand, .. } => check_expr(operand, assigned),
        ExprKind::Binary { left, right, .. } => {
            check_expr(left, assigned)?;
            check_expr(right, assigned)
        }
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => {
            check_expr(cond, assigned)?;
            check_expr(then, assigned)?;
            check_expr(otherwise, assigned)
        }
    }
}
