//! The OData `$filter` subset and the `$select` list that Batch list operations accept.
//!
//! Batch speaks OData v3 query syntax, and only a small part of it (docs: "Create queries to
//! list Batch resources efficiently", learn.microsoft.com/azure/batch/batch-efficient-list-queries):
//!
//! * comparisons `eq ne gt ge lt le` between a property and a literal, on either side;
//! * `and`, `or`, `not` and parentheses;
//! * `startswith(property, 'prefix')` (also written `startswith(...) eq true`);
//! * literals: `'string'` (a doubled `''` is a quote), integers, `true`, `false`, `null`, and
//!   date/times written `DateTime'2011-05-08T08:49:37Z'` (W3C-DTF) or
//!   `DateTime'Sun, 08 May 2011 08:49:37 GMT'` (RFC 1123), as the docs require.
//!
//! What the docs say, and this module does:
//!
//! * Property names are case-sensitive (`state`, not `State`); keywords and operators are
//!   not (`EQ`, `And`, `DateTime`).
//! * "All property names are case-sensitive, but property values are case insensitive": so
//!   every string comparison here, `startswith` included, ignores case. That also suits
//!   Batch ids, which are case-insensitive, and enum values, which the wire spells lowercase.
//! * "If an invalid property or operator is specified, a 400 (Bad Request) error will
//!   result": [`Filter::parse`] takes the properties each list operation allows and rejects
//!   the rest with an [`ODataError`] that names the position and the offending token.
//!
//! Leniencies beyond the docs, chosen because rejecting them helps nobody: a plain string that
//! reads as a date/time compares as one against a date/time property
//! (`creationTime gt '2024-01-01T00:00:00Z'`), a date/time without an offset is UTC (what .NET's
//! `{0:o}` gives for an unspecified kind), and `DateTimeOffset'...'` is accepted too.
//!
//! Comparing values of different types is not an error; it is simply not equal, so `eq`, `gt`,
//! `ge`, `lt`, `le` are false and `ne` is true. `ne` is always the negation of `eq`, as in
//! OData, where `executionInfo/exitCode ne 0` also holds for a task that has no exit code yet
//! (null). Ordering operators are false when either side is null.
//!
//! This module is not for deciding which properties each resource exposes; callers pass them
//! in and implement [`FilterTarget`] for their own types.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// How deep parentheses and `not` may nest. Real filters nest two or three levels; the limit
/// keeps a hostile query from exhausting the stack of the parser or the evaluator.
const MAX_DEPTH: usize = 64;

/// A literal in a filter, or the value of a property of the resource being filtered.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value: an absent property, or the `null` literal.
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    DateTime(DateTime<Utc>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(t: DateTime<Utc>) -> Self {
        Value::DateTime(t)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A resource that a filter can be evaluated against.
pub trait FilterTarget {
    /// The value of a property path such as `state` or `executionInfo/exitCode`, or
    /// [`Value::Null`] when the resource has none.
    fn property(&self, path: &str) -> Value;
}

/// Why a `$filter` or `$select` value was rejected; the text is meant for a 400
/// `InvalidQueryParameterValue` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The value of {param} is not valid at position {position}: {message}")]
pub struct ODataError {
    param: &'static str,
    position: usize,
    message: String,
}

impl ODataError {
    /// The query parameter: `$filter` or `$select`.
    pub fn param(&self) -> &'static str {
        self.param
    }

    /// Where the problem is: a 0-based offset in characters from the start of the value.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What was wrong, naming the offending token.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn from_keyword(word: &str) -> Option<CmpOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            _ => return None,
        })
    }

    /// The operator that means the same with its operands swapped: `0 lt x` is `x gt 0`.
    fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
        }
    }

    fn holds(self, ordering: Option<Ordering>) -> bool {
        match self {
            CmpOp::Eq => ordering == Some(Ordering::Equal),
            CmpOp::Ne => ordering != Some(Ordering::Equal),
            CmpOp::Gt => ordering == Some(Ordering::Greater),
            CmpOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
            CmpOp::Lt => ordering == Some(Ordering::Less),
            CmpOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        }
    }
}

/// A literal as written in the filter.
#[derive(Debug, Clone, PartialEq)]
struct Literal {
    value: Value,
    /// For a string literal that reads as a date/time, that instant, worked out once at parse
    /// time so that `creationTime gt '2024-01-01T00:00:00Z'` compares as a date/time.
    as_datetime: Option<DateTime<Utc>>,
}

/// The parsed expression. `and`/`or` chains are kept flat, so a long chain does not make a
/// deep tree; only parentheses and `not` add depth, and those are bounded by [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `property op literal`, with the property always on the left.
    Compare {
        property: String,
        op: CmpOp,
        literal: Literal,
    },
    StartsWith {
        property: String,
        prefix: String,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parse, accepting only properties in `allowed` (property paths like "state", "id",
    /// "executionInfo/exitCode", "nodeInfo/nodeId", "name").
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Filter, ODataError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
            allowed,
        };
        if parser.peek().kind == TokKind::End {
            return Err(parser.error_at(
                parser.peek(),
                "the expression is empty; write a condition such as state eq 'active'",
            ));
        }
        let expr = parser.parse_or()?;
        let next = parser.peek();
        if next.kind != TokKind::End {
            let message = format!(
                "unexpected {} after a complete condition; expected 'and', 'or', ')' \
                 or the end of the expression",
                parser.describe(next)
            );
            return Err(parser.error_at(next, &message));
        }
        Ok(Filter { expr })
    }

    /// Whether `target` satisfies the filter.
    pub fn matches(&self, target: &dyn FilterTarget) -> bool {
        eval(&self.expr, target)
    }

    /// If the filter implies `prop eq 'v1' or prop eq 'v2' ...` as a necessary condition (e.g.
    /// `state eq 'completed' and id ne 'x'`), return those values, so a caller can use an index
    /// instead of a scan. None when it can't tell.
    ///
    /// String values come back as the filter spells them. Batch compares values ignoring case,
    /// so an index keyed by lowercase enum values must be looked up with the lowercased value.
    /// An empty list means no resource can match.
    pub fn required_values(&self, prop: &str) -> Option<Vec<Value>> {
        required(&self.expr, prop, false)
    }
}

fn eval(expr: &Expr, target: &dyn FilterTarget) -> bool {
    match expr {
        Expr::Compare {
            property,
            op,
            literal,
        } => compare(&target.property(property), *op, literal),
        Expr::StartsWith { property, prefix } => match target.property(property) {
            Value::Str(s) => starts_with_ignore_case(&s, prefix),
            _ => false,
        },
        Expr::And(terms) => terms.iter().all(|t| eval(t, target)),
        Expr::Or(terms) => terms.iter().any(|t| eval(t, target)),
        Expr::Not(inner) => !eval(inner, target),
    }
}

fn compare(value: &Value, op: CmpOp, literal: &Literal) -> bool {
    let ordering_op = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    if ordering_op && (*value == Value::Null || literal.value == Value::Null) {
        return false;
    }
    op.holds(order(value, literal))
}

/// How a property value orders against a literal, or None when they are not comparable
/// (different types).
fn order(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, &literal.value) {
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Str(a), Value::Str(b)) => Some(cmp_ignore_case(a, b)),
        (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
        (Value::DateTime(a), Value::Str(_)) => literal.as_datetime.map(|b| a.cmp(&b)),
        // A target that reports a date/time as text still compares with a DateTime literal.
        (Value::Str(a), Value::DateTime(b)) => parse_datetime(a).map(|a| a.cmp(b)),
        _ => None,
    }
}

/// Compares two strings ignoring case, without allocating.
fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    let mut rest = s.chars().flat_map(char::to_lowercase);
    prefix
        .chars()
        .flat_map(char::to_lowercase)
        .all(|c| rest.next() == Some(c))
}

/// Values equal in the sense of `eq`.
fn values_equal(a: &Value, b: &Value) -> bool {
    let literal = Literal {
        value: b.clone(),
        as_datetime: None,
    };
    order(a, &literal) == Some(Ordering::Equal)
}

/// The values `prop` must take for `expr` (or, when `negated`, for `not expr`) to hold.
/// `not` is pushed inwards (De Morgan), so `not (state ne 'a')` still yields `['a']`.
fn required(expr: &Expr, prop: &str, negated: bool) -> Option<Vec<Value>> {
    match expr {
        Expr::Compare {
            property,
            op,
            literal,
        } if property == prop => {
            let is_equality = matches!((op, negated), (CmpOp::Eq, false) | (CmpOp::Ne, true));
            is_equality.then(|| vec![literal.value.clone()])
        }
        Expr::Compare { .. } | Expr::StartsWith { .. } => None,
        Expr::Not(inner) => required(inner, prop, !negated),
        Expr::And(terms) | Expr::Or(terms) => {
            // `and` (or a negated `or`) needs every term: any term's set is a necessary
            // condition, and several intersect. `or` (or a negated `and`) needs one term: only
            // when every term pins the property does the union pin it.
            let all_needed = matches!(expr, Expr::And(_)) != negated;
            if all_needed {
                terms
                    .iter()
                    .filter_map(|t| required(t, prop, negated))
                    .reduce(|acc, next| {
                        acc.into_iter()
                            .filter(|v| next.iter().any(|w| values_equal(v, w)))
                            .collect()
                    })
            } else {
                let mut union: Vec<Value> = Vec::new();
                for t in terms {
                    for v in required(t, prop, negated)? {
                        if !union.contains(&v) {
                            union.push(v);
                        }
                    }
                }
                Some(union)
            }
        }
    }
}

/// Parses a date/time literal's text: W3C-DTF / RFC 3339 (offset optional, meaning UTC;
/// fractions of any length), RFC 1123, or a bare date (midnight UTC).
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    /// A name: a keyword, a function or a property path (`executionInfo/exitCode`).
    Word(String),
    Str(String),
    Int(i64),
    DateTime(DateTime<Utc>),
    LParen,
    RParen,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    /// Byte range in the text.
    start: usize,
    end: usize,
}

fn char_position(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or(0, |prefix| prefix.chars().count())
}

fn lex_error(text: &str, byte: usize, message: String) -> ODataError {
    ODataError {
        param: "$filter",
        position: char_position(text, byte),
        message,
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(text: &str) -> Result<Vec<Token>, ODataError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(TokKind::LParen),
            ')' => Some(TokKind::RParen),
            ',' => Some(TokKind::Comma),
            _ => None,
        };
        if let Some(kind) = single {
            chars.next();
            tokens.push(Token {
                kind,
                start,
                end: start + 1,
            });
            continue;
        }

        let kind = if c == '\'' {
            TokKind::Str(lex_string(text, &mut chars)?)
        } else if c.is_ascii_digit() || c == '-' {
            lex_number(text, &mut chars)?
        } else if is_word_start(c) {
            let word = lex_word(text, &mut chars)?;
            let typed_literal = chars.peek().is_some_and(|&(_, c)| c == '\'');
            if typed_literal {
                lex_typed_literal(text, start, &word, &mut chars)?
            } else {
                TokKind::Word(word)
            }
        } else {
            let hint = if c == '"' {
                "; string literals are written in single quotes, e.g. 'active'"
            } else {
                ""
            };
            return Err(lex_error(
                text,
                start,
                format!("unexpected character '{c}'{hint}"),
            ));
        };
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        tokens.push(Token { kind, start, end });
    }
    tokens.push(Token {
        kind: TokKind::End,
        start: text.len(),
        end: text.len(),
    });
    Ok(tokens)
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

/// A single-quoted string; `''` inside is one quote.
fn lex_string(text: &str, chars: &mut Chars<'_>) -> Result<String, ODataError> {
    let Some((open, _)) = chars.next() else {
        return Err(lex_error(text, text.len(), "expected a string".to_owned()));
    };
    let mut out = String::new();
    loop {
        match chars.next() {
            Some((_, '\'')) => {
                if chars.peek().is_some_and(|&(_, c)| c == '\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Ok(out);
                }
            }
            Some((_, c)) => out.push(c),
            None => {
                return Err(lex_error(
                    text,
                    open,
                    "the string that starts here has no closing quote; a quote inside a \
                     string is written twice ('')"
                        .to_owned(),
                ))
            }
        }
    }
}

fn lex_number(text: &str, chars: &mut Chars<'_>) -> Result<TokKind, ODataError> {
    let Some((start, first)) = chars.next() else {
        return Err(lex_error(text, text.len(), "expected a number".to_owned()));
    };
    let mut digits = String::from(first);
    while let Some(&(_, c)) = chars.peek() {
        if !c.is_ascii_digit() {
            break;
        }
        digits.push(c);
        chars.next();
    }
    if digits == "-" {
        return Err(lex_error(
            text,
            start,
            "'-' must be followed by digits; only integer literals such as -1 are supported"
                .to_owned(),
        ));
    }
    if let Some(&(_, c)) = chars.peek() {
        let problem = match c {
            '.' => Some("decimal numbers are not supported; use an integer".to_owned()),
            '-' | ':' | 'T' => Some(
                "date/time literals are written DateTime'2011-05-08T08:49:37Z' or \
                 DateTime'Sun, 08 May 2011 08:49:37 GMT'"
                    .to_owned(),
            ),
            c if is_word_char(c) => Some(format!(
                "invalid number: a digit cannot be followed by '{c}'"
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(lex_error(text, start, problem));
        }
    }
    digits.parse::<i64>().map(TokKind::Int).map_err(|_| {
        lex_error(
            text,
            start,
            format!("the integer {digits} is out of range (64-bit signed)"),
        )
    })
}

/// A word, with `/` joining the segments of a property path.
fn lex_word(text: &str, chars: &mut Chars<'_>) -> Result<String, ODataError> {
    let mut word = String::new();
    while let Some(&(at, c)) = chars.peek() {
        if is_word_char(c) {
            word.push(c);
            chars.next();
        } else if c == '/' {
            chars.next();
            match chars.peek() {
                Some(&(_, next)) if is_word_start(next) => word.push('/'),
                _ => {
                    return Err(lex_error(
                        text,
                        at,
                        format!("the property path '{word}/' must continue with a name after '/'"),
                    ))
                }
            }
        } else {
            break;
        }
    }
    Ok(word)
}

/// `DateTime'...'` (or `DateTimeOffset'...'`); other typed literals are rejected.
fn lex_typed_literal(
    text: &str,
    start: usize,
    word: &str,
    chars: &mut Chars<'_>,
) -> Result<TokKind, ODataError> {
    let lower = word.to_ascii_lowercase();
    if lower != "datetime" && lower != "datetimeoffset" {
        return Err(lex_error(
            text,
            start,
            format!(
                "unsupported typed literal {word}'...'; the only typed literal is \
                 DateTime'2011-05-08T08:49:37Z'"
            ),
        ));
    }
    let inner = lex_string(text, chars)?;
    parse_datetime(&inner)
        .map(TokKind::DateTime)
        .ok_or_else(|| {
            lex_error(
                text,
                start,
                format!(
                    "{word}'{inner}' is not a date/time; write W3C-DTF, e.g. \
                 DateTime'2011-05-08T08:49:37Z', or RFC 1123, e.g. \
                 DateTime'Sun, 08 May 2011 08:49:37 GMT'"
                ),
            )
        })
}

// ---------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    allowed: &'a [&'a str],
}

/// One side of a comparison.
enum Operand {
    Property(String),
    Literal(Literal),
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`, and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn peek_is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, TokKind::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_is_keyword(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn error_at(&self, token: &Token, message: &str) -> ODataError {
        lex_error(self.text, token.start, message.to_owned())
    }

    /// A token as the user wrote it, for error messages.
    fn describe(&self, token: &Token) -> String {
        if token.kind == TokKind::End {
            return "the end of the expression".to_owned();
        }
        let written = self.text.get(token.start..token.end).unwrap_or_default();
        let mut shown: String = written.chars().take(40).collect();
        if shown.len() < written.len() {
            shown.push_str("...");
        }
        format!("'{shown}'")
    }

    fn enter(&mut self, token: &Token) -> Result<(), ODataError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                token,
                &format!("the expression nests parentheses or 'not' more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn parse_or(&mut self) -> Result<Expr, ODataError> {
        let mut terms = vec![self.parse_and()?];
        while self.eat_keyword("or") {
            terms.push(self.parse_and()?);
        }
        Ok(flatten(terms, Expr::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, ODataError> {
        let mut terms = vec![self.parse_unary()?];
        while self.eat_keyword("and") {
            terms.push(self.parse_unary()?);
        }
        Ok(flatten(terms, Expr::And))
    }

    fn parse_unary(&mut self) -> Result<Expr, ODataError> {
        if self.peek_is_keyword("not") {
            let not = self.advance();
            self.enter(&not)?;
            let inner = self.parse_unary()?;
            self.leave();
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, ODataError> {
        let token = self.peek().clone();
        if token.kind == TokKind::LParen {
            self.advance();
            self.enter(&token)?;
            let inner = self.parse_or()?;
            self.leave();
            let close = self.peek().clone();
            if close.kind != TokKind::RParen {
                let message = format!(
                    "expected ')' to close the '(' at position {}, found {}",
                    char_position(self.text, token.start),
                    self.describe(&close)
                );
                return Err(self.error_at(&close, &message));
            }
            self.advance();
            return Ok(inner);
        }
        let is_call = matches!(token.kind, TokKind::Word(_))
            && self.tokens.get(self.pos + 1).map(|t| &t.kind) == Some(&TokKind::LParen);
        if is_call {
            return self.parse_call();
        }
        self.parse_comparison()
    }

    /// `startswith(property, 'prefix')`, optionally followed by `eq true|false` or
    /// `ne true|false` (the OData v3 way of writing the same).
    fn parse_call(&mut self) -> Result<Expr, ODataError> {
        let name_token = self.advance();
        let TokKind::Word(name) = &name_token.kind else {
            return Err(self.error_at(&name_token, "expected a function name"));
        };
        if !name.eq_ignore_ascii_case("startswith") {
            let message = format!(
                "unsupported function {}; the only function is startswith(property, 'prefix')",
                self.describe(&name_token)
            );
            return Err(self.error_at(&name_token, &message));
        }
        self.advance(); // '('
        let property_token = self.advance();
        let property = match &property_token.kind {
            TokKind::Word(w) if !is_literal_keyword(w) => {
                self.check_property(&property_token, w)?
            }
            _ => {
                let message = format!(
                    "expected a property name as the first argument of startswith, found {}",
                    self.describe(&property_token)
                );
                return Err(self.error_at(&property_token, &message));
            }
        };
        self.expect(TokKind::Comma, "',' between the arguments of startswith")?;
        let prefix_token = self.advance();
        let TokKind::Str(prefix) = prefix_token.kind.clone() else {
            let message = format!(
                "expected a string such as 'task' as the second argument of startswith, found {}",
                self.describe(&prefix_token)
            );
            return Err(self.error_at(&prefix_token, &message));
        };
        self.expect(TokKind::RParen, "')' after the arguments of startswith")?;
        let call = Expr::StartsWith { property, prefix };

        let op_token = self.peek().clone();
        let op = match &op_token.kind {
            TokKind::Word(w) => CmpOp::from_keyword(w),
            _ => None,
        };
        let Some(op) = op else {
            return Ok(call);
        };
        self.advance();
        let value_token = self.advance();
        let wanted = match &value_token.kind {
            TokKind::Word(w) if w.eq_ignore_ascii_case("true") => true,
            TokKind::Word(w) if w.eq_ignore_ascii_case("false") => false,
            _ => {
                let message = format!(
                    "startswith(...) can only be compared with true or false, found {}",
                    self.describe(&value_token)
                );
                return Err(self.error_at(&value_token, &message));
            }
        };
        match op {
            CmpOp::Eq | CmpOp::Ne => {
                // `eq true` and `ne false` keep the call; the other two negate it.
                if wanted == (op == CmpOp::Eq) {
                    Ok(call)
                } else {
                    Ok(Expr::Not(Box::new(call)))
                }
            }
            _ => Err(self.error_at(
                &op_token,
                "startswith(...) can only be compared with eq or ne",
            )),
        }
    }

    fn expect(&mut self, kind: TokKind, what: &str) -> Result<(), ODataError> {
        let token = self.advance();
        if token.kind == kind {
            Ok(())
        } else {
            let message = format!("expected {what}, found {}", self.describe(&token));
            Err(self.error_at(&token, &message))
        }
    }

    fn parse_comparison(&mut self) -> Result<Expr, ODataError> {
        let left_token = self.peek().clone();
        let left = self.parse_operand()?;

        let op_token = self.advance();
        let op = match &op_token.kind {
            TokKind::Word(w) => CmpOp::from_keyword(w),
            _ => None,
        };
        let Some(op) = op else {
            let message = format!(
                "expected a comparison operator (eq, ne, gt, ge, lt, le) after {}, found {}",
                self.describe(&left_token),
                self.describe(&op_token)
            );
            return Err(self.error_at(&op_token, &message));
        };

        let right_token = self.peek().clone();
        let right = self.parse_operand()?;
        match (left, right) {
            (Operand::Property(property), Operand::Literal(literal)) => Ok(Expr::Compare {
                property,
                op,
                literal,
            }),
            (Operand::Literal(literal), Operand::Property(property)) => Ok(Expr::Compare {
                property,
                op: op.swapped(),
                literal,
            }),
            (Operand::Property(_), Operand::Property(_)) => Err(self.error_at(
                &right_token,
                "a property can only be compared with a value, not with another property",
            )),
            (Operand::Literal(_), Operand::Literal(_)) => Err(self.error_at(
                &left_token,
                "a comparison needs a property on one side; this one compares two values",
            )),
        }
    }

    fn parse_operand(&mut self) -> Result<Operand, ODataError> {
        let token = self.advance();
        let literal = |value: Value| {
            Operand::Literal(Literal {
                value,
                as_datetime: None,
            })
        };
        match &token.kind {
            TokKind::Str(s) => Ok(Operand::Literal(Literal {
                as_datetime: parse_datetime(s),
                value: Value::Str(s.clone()),
            })),
            TokKind::Int(i) => Ok(literal(Value::Int(*i))),
            TokKind::DateTime(t) => Ok(literal(Value::DateTime(*t))),
            TokKind::Word(w) if w.eq_ignore_ascii_case("true") => Ok(literal(Value::Bool(true))),
            TokKind::Word(w) if w.eq_ignore_ascii_case("false") => Ok(literal(Value::Bool(false))),
            TokKind::Word(w) if w.eq_ignore_ascii_case("null") => Ok(literal(Value::Null)),
            TokKind::Word(w) if !is_operator_keyword(w) => {
                Ok(Operand::Property(self.check_property(&token, w)?))
            }
            _ => {
                let message = format!(
                    "expected a property name or a value, found {}",
                    self.describe(&token)
                );
                Err(self.error_at(&token, &message))
            }
        }
    }

    fn check_property(&self, token: &Token, name: &str) -> Result<String, ODataError> {
        if self.allowed.contains(&name) {
            return Ok(name.to_owned());
        }
        let case_hint = self
            .allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(name))
            .map(|a| format!(" (property names are case-sensitive: did you mean '{a}'?)"))
            .unwrap_or_default();
        let choices = if self.allowed.is_empty() {
            "this list cannot be filtered".to_owned()
        } else {
            format!(
                "the properties you can filter on here are {}",
                self.allowed.join(", ")
            )
        };
        Err(self.error_at(
            token,
            &format!("unknown property '{name}'{case_hint}; {choices}"),
        ))
    }
}

fn flatten(mut terms: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        if let Some(only) = terms.pop() {
            return only;
        }
    }
    make(terms)
}

fn is_literal_keyword(word: &str) -> bool {
    ["true", "false", "null"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Words that can never be a property: where a property is expected they mean the user
/// left something out (`state eq and ...`).
fn is_operator_keyword(word: &str) -> bool {
    CmpOp::from_keyword(word).is_some()
        || ["and", "or", "not"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
}

/// Parse `$select` ("id,state,executionInfo") into property names; reject empty names.
///
/// Spaces around names are allowed (the docs write `id, state, stateTransitionTime`);
/// duplicates are dropped, keeping the first.
pub fn parse_select(text: &str) -> Result<Vec<String>, ODataError> {
    let error = |byte: usize, message: String| ODataError {
        param: "$select",
        position: char_position(text, byte),
        message,
    };
    if text.trim().is_empty() {
        return Err(error(
            0,
            "the list is empty; name properties separated by commas, e.g. id,state".to_owned(),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    let mut offset = 0;
    for part in text.split(',') {
        let leading = part.len() - part.trim_start().len();
        let name = part.trim();
        let at = offset + leading;
        if name.is_empty() {
            return Err(error(
                at,
                "empty property name; names are separated by single commas, with none at the \
                 start or end"
                    .to_owned(),
            ));
        }
        if let Some((i, c)) = name
            .char_indices()
            .find(|&(_, c)| !(is_word_char(c) || c == '/'))
        {
            return Err(error(
                at + i,
                format!("unexpected character '{c}' in property name '{name}'"),
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        offset += part.len() + 1;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const TASK_PROPS: &[&str] = &[
        "id",
        "state",
        "creationTime",
        "stateTransitionTime",
        "executionInfo/exitCode",
        "executionInfo/result",
        "nodeInfo/nodeId",
        "isDedicated",
        "name",
    ];

    #[derive(Default)]
    struct Target(HashMap<&'static str, Value>);

    impl Target {
        fn with(mut self, path: &'static str, value: impl Into<Value>) -> Self {
            self.0.insert(path, value.into());
            self
        }
    }

    impl FilterTarget for Target {
        fn property(&self, path: &str) -> Value {
            self.0.get(path).cloned().unwrap_or(Value::Null)
        }
    }

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    }

    fn task() -> Target {
        Target::default()
            .with("id", "renderTask-7")
            .with("state", "completed")
            .with("creationTime", t(2024, 3, 1, 12, 0, 0))
            .with("executionInfo/exitCode", 3i64)
            .with("executionInfo/result", "failure")
            .with("isDedicated", true)
    }

    fn parse(text: &str) -> Filter {
        Filter::parse(text, TASK_PROPS).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn matches(text: &str, target: &Target) -> bool {
        parse(text).matches(target)
    }

    fn reject(text: &str) -> ODataError {
        match Filter::parse(text, TASK_PROPS) {
            Ok(f) => panic!("{text} parsed as {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn examples_from_the_batch_docs() {
        let task = task();
        assert!(matches("state eq 'completed'", &task));
        assert!(!matches(
            "(state eq 'running') and startswith(id, 'renderTask')",
            &task
        ));
        assert!(matches(
            "(state eq 'completed') and startswith(id, 'renderTask')",
            &task
        ));
        assert!(matches(
            "(executionInfo/exitCode lt 0) or (executionInfo/exitCode gt 0)",
            &task
        ));
        assert!(matches(
            "creationTime gt DateTime'2011-05-08T08:49:37Z'",
            &task
        ));
        assert!(matches(
            "creationTime gt DateTime'Sun, 08 May 2011 08:49:37 GMT'",
            &task
        ));
        assert!(matches("startswith(id, 'test') eq false", &task));
    }

    #[test]
    fn every_comparison_operator_on_integers() {
        let task = task(); // exit code 3
        for (op, expected) in [
            ("eq", false),
            ("ne", true),
            ("gt", true),
            ("ge", true),
            ("lt", false),
            ("le", false),
        ] {
            assert_eq!(
                matches(&format!("executionInfo/exitCode {op} 2"), &task),
                expected,
                "{op}"
            );
        }
        assert!(matches("executionInfo/exitCode ge 3", &task));
        assert!(matches("executionInfo/exitCode le 3", &task));
        assert!(matches("executionInfo/exitCode gt -1", &task));
        // Literal on the left: `0 lt x` is `x gt 0`.
        assert!(matches("0 lt executionInfo/exitCode", &task));
        assert!(!matches("3 lt executionInfo/exitCode", &task));
        assert!(matches("3 ge executionInfo/exitCode", &task));
    }

    #[test]
    fn strings_compare_ignoring_case() {
        let task = task();
        assert!(matches("state eq 'Completed'", &task));
        assert!(matches("state ne 'active'", &task));
        assert!(matches("id eq 'RENDERTASK-7'", &task));
        assert!(matches("startswith(id,'RENDER')", &task));
        assert!(matches("state gt 'active'", &task));
        assert!(matches("state lt 'Running'", &task));
        assert!(!matches("startswith(id,'renderTask-77')", &task));
        assert!(matches("startswith(id,'')", &task));
    }

    #[test]
    fn string_literal_escapes() {
        let target = Target::default().with("name", "it's done");
        assert!(matches("name eq 'it''s done'", &target));
        assert!(matches(
            "name eq ''''",
            &Target::default().with("name", "'")
        ));
        assert!(matches("name eq ''", &Target::default().with("name", "")));
        assert!(matches(
            "name eq 'a and b or not c'",
            &Target::default().with("name", "a and b or not c")
        ));
    }

    #[test]
    fn date_time_literals() {
        let task = task(); // created 2024-03-01T12:00:00Z
        assert!(matches(
            "creationTime eq DateTime'2024-03-01T12:00:00Z'",
            &task
        ));
        assert!(matches(
            "creationTime eq datetime'2024-03-01T12:00:00.0000000Z'",
            &task
        ));
        assert!(matches(
            "creationTime eq DATETIME'2024-03-01T13:00:00+01:00'",
            &task
        ));
        assert!(matches(
            "creationTime eq DateTimeOffset'2024-03-01T12:00:00Z'",
            &task
        ));
        // .NET's {0:o} for an unspecified kind has no offset: read as UTC.
        assert!(matches(
            "creationTime eq DateTime'2024-03-01T12:00:00.0000000'",
            &task
        ));
        assert!(matches("creationTime eq DateTime'2024-03-01T12:00'", &task));
        assert!(matches(
            "creationTime eq DateTime'Fri, 01 Mar 2024 12:00:00 GMT'",
            &task
        ));
        assert!(matches("creationTime gt DateTime'2024-03-01'", &task));
        assert!(matches(
            "creationTime lt DateTime'2024-03-01T12:00:00.5Z'",
            &task
        ));
        // A plain string that reads as a date/time compares as one.
        assert!(matches("creationTime gt '2024-01-01T00:00:00Z'", &task));
        assert!(matches("creationTime le '2024-03-01T12:00:00Z'", &task));
        // A plain string that does not is just a different type.
        assert!(!matches("creationTime gt 'yesterday'", &task));
        // A target that reports its time as text still compares.
        let texty = Target::default().with("creationTime", "2024-03-01T12:00:00Z");
        assert!(matches(
            "creationTime ge DateTime'2024-03-01T12:00:00Z'",
            &texty
        ));
    }

    #[test]
    fn booleans_and_null() {
        let task = task();
        assert!(matches("isDedicated eq true", &task));
        assert!(matches("isDedicated ne FALSE", &task));
        assert!(matches("nodeInfo/nodeId eq null", &task));
        assert!(!matches("state eq null", &task));
        assert!(matches("state ne null", &task));
        // Ordering against null is false both ways.
        assert!(!matches("nodeInfo/nodeId gt 'a'", &task));
        assert!(!matches("nodeInfo/nodeId le 'a'", &task));
        assert!(!matches("executionInfo/exitCode ge null", &task));
    }

    #[test]
    fn different_types_are_not_equal_and_do_not_order() {
        let task = task();
        assert!(!matches("executionInfo/exitCode eq '3'", &task));
        assert!(matches("executionInfo/exitCode ne '3'", &task));
        assert!(!matches("executionInfo/exitCode gt '1'", &task));
        assert!(!matches("state eq 1", &task));
        assert!(!matches("isDedicated eq 'true'", &task));
        assert!(!matches("creationTime gt 5", &task));
        assert!(!matches("startswith(executionInfo/exitCode, '3')", &task));
        // A task without an exit code is "not 0" (OData null semantics).
        assert!(matches("executionInfo/exitCode ne 0", &Target::default()));
    }

    #[test]
    fn and_or_not_and_parentheses() {
        let task = task();
        assert!(matches(
            "state eq 'completed' and executionInfo/result eq 'failure'",
            &task
        ));
        assert!(!matches(
            "state eq 'completed' and executionInfo/result eq 'success'",
            &task
        ));
        assert!(matches("state eq 'active' or state eq 'completed'", &task));
        // `and` binds tighter than `or`.
        assert!(matches(
            "state eq 'completed' or state eq 'x' and id eq 'y'",
            &task
        ));
        assert!(!matches(
            "(state eq 'completed' or state eq 'x') and id eq 'y'",
            &task
        ));
        assert!(matches("not state eq 'active'", &task));
        assert!(matches("not (state eq 'active')", &task));
        assert!(!matches("not not state eq 'active'", &task));
        assert!(matches(
            "not (state eq 'active' or state eq 'running') and id ne 'x'",
            &task
        ));
        assert!(matches("((((state eq 'completed'))))", &task));
        assert!(matches(
            "startswith(id,'x') or not startswith(id,'x')",
            &task
        ));
        assert!(!matches("startswith(id,'render') ne true", &task));
        assert!(matches("startswith(id,'nope') ne true", &task));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let task = task();
        assert!(matches(
            "state EQ 'completed' AND NOT id Eq 'x' Or StartsWith(id,'q')",
            &task
        ));
        assert!(matches("isDedicated eq True", &task));
        assert!(matches("nodeInfo/nodeId eq NULL", &task));
    }

    #[test]
    fn whitespace_is_flexible() {
        let task = task();
        assert!(matches("  state\teq\n'completed'  ", &task));
        assert!(matches("(state eq 'completed')and(id ne 'x')", &task));
        assert!(matches("startswith( id , 'render' )", &task));
    }

    #[test]
    fn long_chains_do_not_nest() {
        let chain = vec!["state eq 'x'"; 5000].join(" or ") + " or state eq 'completed'";
        assert!(matches(&chain, &task()));
        let chain = vec!["id ne 'x'"; 5000].join(" and ");
        assert!(matches(&chain, &task()));
    }

    #[test]
    fn rejects_unknown_properties_with_a_hint() {
        let e = reject("State eq 'active'");
        assert_eq!(e.position(), 0);
        assert_eq!(e.param(), "$filter");
        assert!(e.message().contains("unknown property 'State'"), "{e}");
        assert!(e.message().contains("did you mean 'state'"), "{e}");
        assert!(e.message().contains("executionInfo/exitCode"), "{e}");

        let e = reject("state eq 'active' and poolId eq 'p'");
        assert_eq!(e.position(), 22);
        assert!(e.message().contains("'poolId'"), "{e}");

        let e = reject("startswith(commandLine, 'x')");
        assert_eq!(e.position(), 11);
        let e = Filter::parse("id eq 'x'", &[]).unwrap_err();
        assert!(e.message().contains("cannot be filtered"), "{e}");
    }

    #[test]
    fn rejects_trailing_garbage() {
        let e = reject("state eq 'active' foo");
        assert_eq!(e.position(), 18);
        assert!(e.message().contains("'foo'"), "{e}");
        let e = reject("state eq 'active')");
        assert_eq!(e.position(), 17);
        let e = reject("state eq 'active' state eq 'x'");
        assert_eq!(e.position(), 18);
        assert!(e
            .to_string()
            .starts_with("The value of $filter is not valid at position 18"));
    }

    #[test]
    fn rejects_malformed_expressions() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            ("   ", 3, "empty"),
            ("state", 5, "comparison operator"),
            ("state eq", 8, "the end of the expression"),
            ("state equals 'x'", 6, "'equals'"),
            ("state eq and", 9, "'and'"),
            ("eq 'x'", 0, "'eq'"),
            ("state eq 'active' and", 21, "the end of the expression"),
            ("(state eq 'active'", 18, "close the '(' at position 0"),
            ("state eq 'active", 9, "no closing quote"),
            ("state eq \"active\"", 9, "single quotes"),
            ("state eq id", 9, "another property"),
            ("'a' eq 'a'", 0, "two values"),
            ("exitsWith(id, 'x')", 0, "unsupported function"),
            ("startswith('x', id)", 11, "property name"),
            ("startswith(id, 5)", 15, "string"),
            ("startswith(id 'x')", 14, "','"),
            ("startswith(id, 'x'", 18, "')'"),
            ("startswith(id, 'x') gt true", 20, "eq or ne"),
            ("startswith(id, 'x') eq 'yes'", 23, "true or false"),
            ("executionInfo/exitCode eq 1.5", 26, "decimal"),
            ("executionInfo/exitCode eq 12abc", 26, "invalid number"),
            ("executionInfo/exitCode eq -", 26, "'-'"),
            (
                "executionInfo/exitCode eq 99999999999999999999",
                26,
                "out of range",
            ),
            ("creationTime gt 2024-01-01T00:00:00Z", 16, "DateTime'"),
            ("creationTime gt DateTime'yesterday'", 16, "not a date/time"),
            ("creationTime gt guid'x'", 16, "typed literal"),
            ("executionInfo/ eq 1", 13, "continue with a name"),
            ("state eq 'a' && id eq 'b'", 13, "'&'"),
            ("state () eq 'a'", 0, "unsupported function"),
            ("not", 3, "property name or a value"),
            ("()", 1, "')'"),
        ];
        for &(text, position, needle) in cases {
            let e = reject(text);
            assert_eq!(e.position(), position, "{text}: {e}");
            assert!(e.message().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e = reject("id eq 'ééé' bogus");
        assert_eq!(e.position(), 12);
    }

    #[test]
    fn rejects_excessive_nesting() {
        let deep = "(".repeat(MAX_DEPTH + 1) + "state eq 'a'" + &")".repeat(MAX_DEPTH + 1);
        assert!(reject(&deep).message().contains("nests"));
        let nots = "not ".repeat(MAX_DEPTH + 1) + "state eq 'a'";
        assert!(reject(&nots).message().contains("nests"));
        let ok = "(".repeat(MAX_DEPTH) + "state eq 'completed'" + &")".repeat(MAX_DEPTH);
        assert!(matches(&ok, &task()));
    }

    #[test]
    fn required_values_for_index_lookups() {
        let req = |text: &str| parse(text).required_values("state");
        let s = |v: &str| Value::Str(v.to_owned());
        assert_eq!(req("state eq 'completed'"), Some(vec![s("completed")]));
        assert_eq!(
            req("state eq 'completed' and id ne 'x'"),
            Some(vec![s("completed")])
        );
        assert_eq!(
            req("id ne 'x' and (state eq 'a' or state eq 'b')"),
            Some(vec![s("a"), s("b")])
        );
        assert_eq!(req("'a' eq state or state eq 'a'"), Some(vec![s("a")]));
        assert_eq!(req("state eq 'a' or id eq 'x'"), None);
        assert_eq!(req("state ne 'a'"), None);
        assert_eq!(req("state gt 'a'"), None);
        assert_eq!(req("id eq 'x'"), None);
        assert_eq!(req("startswith(id,'x')"), None);
        assert_eq!(req("not (state ne 'a')"), Some(vec![s("a")]));
        assert_eq!(req("not (state ne 'a' or state ne 'b')"), Some(vec![]));
        assert_eq!(
            req("not (state ne 'a' and state ne 'b')"),
            Some(vec![s("a"), s("b")])
        );
        assert_eq!(req("not state eq 'a'"), None);
        assert_eq!(
            req("(state eq 'a' or state eq 'b') and (state eq 'B' or state eq 'c')"),
            Some(vec![s("b")])
        );
        assert_eq!(req("state eq 'a' and state eq 'b'"), Some(vec![]));
        assert_eq!(
            parse("executionInfo/exitCode eq 0").required_values("executionInfo/exitCode"),
            Some(vec![Value::Int(0)])
        );
    }

    #[test]
    fn select_lists() {
        assert_eq!(
            parse_select("id,state,executionInfo").unwrap(),
            ["id", "state", "executionInfo"]
        );
        assert_eq!(
            parse_select("id, state, stateTransitionTime").unwrap(),
            ["id", "state", "stateTransitionTime"]
        );
        assert_eq!(
            parse_select(" id , id,nodeInfo/nodeId ").unwrap(),
            ["id", "nodeInfo/nodeId"]
        );

        let e = parse_select("").unwrap_err();
        assert_eq!(e.param(), "$select");
        assert!(e.message().contains("empty"));
        assert_eq!(parse_select("id,,state").unwrap_err().position(), 3);
        assert_eq!(parse_select("id, state,").unwrap_err().position(), 10);
        assert_eq!(parse_select(",id").unwrap_err().position(), 0);
        let e = parse_select("id,st ate").unwrap_err();
        assert_eq!(e.position(), 5);
        assert!(e.message().contains("' '"), "{e}");
    }

    /// Random filters over `state` and `id` with values from a small set, so that random
    /// targets often match.
    fn filter_text() -> impl Strategy<Value = String> {
        let leaf = (
            prop::sample::select(vec!["state", "id"]),
            prop::sample::select(vec!["eq", "ne", "gt", "le"]),
            prop::sample::select(vec!["a", "B", "c"]),
            any::<bool>(),
        )
            .prop_map(|(p, op, v, call)| {
                if call {
                    format!("startswith({p},'{v}')")
                } else {
                    format!("{p} {op} '{v}'")
                }
            });
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|v| format!("({})", v.join(" and "))),
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|v| format!("({})", v.join(" or "))),
                inner.prop_map(|e| format!("not ({e})")),
            ]
        })
    }

    /// Token soup: fragments that exercise every lexer and parser path.
    fn token_soup() -> impl Strategy<Value = String> {
        let fragment = prop::sample::select(vec![
            "state",
            "id",
            "eq",
            "ne",
            "gt",
            "and",
            "or",
            "not",
            "(",
            ")",
            ",",
            "'x'",
            "'",
            "''",
            "-",
            "-1",
            "12",
            "1.5",
            "true",
            "null",
            "startswith",
            "DateTime'",
            "DateTime'2024-01-01T00:00:00Z'",
            "executionInfo/exitCode",
            "/",
            "é",
            " ",
            "\"",
            "2024-01-01",
        ]);
        prop::collection::vec(fragment, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = Filter::parse(&text, TASK_PROPS);
            let _ = parse_select(&text);
        }

        #[test]
        fn parse_never_panics_on_token_soup(text in token_soup()) {
            if let Ok(filter) = Filter::parse(&text, TASK_PROPS) {
                let _ = filter.matches(&task());
                let _ = filter.required_values("state");
            }
        }

        #[test]
        fn required_values_are_a_necessary_condition(
            text in filter_text(),
            state in prop::sample::select(vec!["a", "b", "C", "d"]),
            id in prop::sample::select(vec!["a", "b", "c"]),
        ) {
            let filter = parse(&text);
            let target = Target::default().with("state", state).with("id", id);
            if filter.matches(&target) {
                if let Some(values) = filter.required_values("state") {
                    let state = Value::Str(state.to_owned());
                    prop_assert!(
                        values.iter().any(|v| values_equal(&state, v)),
                        "{} matched state {:?} but requires {:?}", text, state, values
                    );
                }
            }
            // `not` is exact negation.
            let negated = parse(&format!("not ({text})"));
            prop_assert_eq!(negated.matches(&target), !filter.matches(&target));
        }
    }
}
