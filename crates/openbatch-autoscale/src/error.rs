//! Errors: rejected formulas ([`FormulaError`]), failed evaluations ([`EvalError`]) and the
//! wire shape both become inside an autoscale run ([`RunError`]).
//!
//! Every error a user can see carries a stable [`ErrorCode`] and, where the formula text is
//! at fault, the 1-based line and column of the offending token ("Line 3, Col 52: ...", the
//! form the real service uses).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_EXPRESSION_DEPTH, MAX_FORMULA_CHARS, MAX_STATEMENTS};

/// A 1-based position in the formula text. Columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column (in characters) within the line.
    pub col: u32,
}

impl Pos {
    /// Builds a position from a 1-based line and column.
    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Line {}, Col {}", self.line, self.col)
    }
}

/// The stable codes of everything this crate reports. They serialize as their Azure Batch
/// spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The formula does not lex, parse or pass the static checks (documented code; also used,
    /// by our choice, for unknown names, bad arity and assignments to read-only variables).
    AutoScalingFormulaSyntaxError,
    /// The formula is longer than 8192 characters. Spelled as the .NET SDK constant's value
    /// (the REST table spells it `AutoScalingFormulaTooLong`).
    AutoScaleFormulaTooLong,
    /// The formula has more than 100 statements (code chosen by vector AS-048).
    InvalidAutoScalingSettings,
    /// A `GetSample` call found fewer samples than its required percentage (documented).
    InsufficientSampleData,
    /// Evaluation failed for another reason (type error, empty list, out-of-range index, ...).
    FormulaEvaluationError,
    /// Evaluation finished but a target node count is NaN or infinite.
    InvalidAutoScaleResult,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AutoScalingFormulaSyntaxError => "AutoScalingFormulaSyntaxError",
            ErrorCode::AutoScaleFormulaTooLong => "AutoScaleFormulaTooLong",
            ErrorCode::InvalidAutoScalingSettings => "InvalidAutoScalingSettings",
            ErrorCode::InsufficientSampleData => "InsufficientSampleData",
            ErrorCode::FormulaEvaluationError => "FormulaEvaluationError",
            ErrorCode::InvalidAutoScaleResult => "InvalidAutoScaleResult",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a formula was rejected before evaluation. Returned by [`crate::parse`]; the server
/// turns it into an HTTP 400 on pool add / enableautoscale.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaError {
    /// Longer than [`MAX_FORMULA_CHARS`] UTF-16 code units.
    #[error(
        "the autoscale formula is {length} characters long; the limit is {MAX_FORMULA_CHARS}, \
         so shorten it (comments count too)"
    )]
    TooLong {
        /// Length in UTF-16 code units, as the .NET service counts.
        length: usize,
    },
    /// More than [`MAX_STATEMENTS`] non-empty statements.
    #[error(
        "{pos}: the autoscale formula has more than {MAX_STATEMENTS} statements; \
         combine or remove statements"
    )]
    TooManyStatements {
        /// Where the first statement over the limit starts.
        pos: Pos,
    },
    /// A lexical, syntactic or static semantic error at a position.
    #[error("{pos}: {kind}")]
    Syntax {
        /// Where the offending token starts.
        pos: Pos,
        /// What is wrong.
        kind: SyntaxErrorKind,
    },
}

impl FormulaError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            FormulaError::TooLong { .. } => ErrorCode::AutoScaleFormulaTooLong,
            FormulaError::TooManyStatements { .. } => ErrorCode::InvalidAutoScalingSettings,
            FormulaError::Syntax { .. } => ErrorCode::AutoScalingFormulaSyntaxError,
        }
    }

    /// Where in the formula the error is, when it has a position.
    pub fn position(&self) -> Option<Pos> {
        match self {
            FormulaError::TooLong { .. } => None,
            FormulaError::TooManyStatements { pos } | FormulaError::Syntax { pos, .. } => {
                Some(*pos)
            }
        }
    }

    pub(crate) fn syntax(pos: Pos, kind: SyntaxErrorKind) -> Self {
        FormulaError::Syntax { pos, kind }
    }
}

/// The kinds of [`FormulaError::Syntax`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxErrorKind {
    /// A character that starts no token.
    #[error("unexpected character '{0}'")]
    UnexpectedChar(char),
    /// `/* ... */` is not part of the language.
    #[error("block comments ('/*') are not supported; use '//' line comments")]
    BlockComment,
    /// A `"` with no closing `"`.
    #[error("unterminated string literal; close it with '\"'")]
    UnterminatedString,
    /// A number literal that does not fit a double.
    #[error("number literal '{0}' is out of range")]
    NumberOutOfRange(String),
    /// `$` not followed by a name.
    #[error("'$' must be followed by a variable name")]
    DollarWithoutName,
    /// The parser found one token where it needed another.
    #[error("expected {expected}, found {found}")]
    UnexpectedToken {
        /// What the parser needed.
        expected: &'static str,
        /// The token it found, as written.
        found: String,
    },
    /// Expressions nest deeper than the evaluator allows.
    #[error(
        "expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep; \
         split it into several statements"
    )]
    TooDeep,
    /// A call to a function the language does not have.
    #[error("unknown function '{0}'")]
    UnknownFunction(String),
    /// A function name used without a call.
    #[error("'{0}' is a function; call it with parentheses")]
    FunctionWithoutCall(String),
    /// A call with the wrong number of arguments.
    #[error("{function}() takes {expected} argument(s), but {found} were given")]
    WrongArgumentCount {
        /// The function or method.
        function: String,
        /// The accepted counts, in words.
        expected: &'static str,
        /// How many were passed.
        found: usize,
    },
    /// A method other than the sample methods.
    #[error(
        "unknown method '{0}'; sampled variables have GetSample, GetSamplePercent, \
         GetSamplePeriod, Count and HistoryBeginTime"
    )]
    UnknownMethod(String),
    /// A sample method called on something that is not a sampled service variable.
    #[error("'{0}' is not a sampled service-defined variable, so it has no sample methods")]
    NotAMetric(String),
    /// A member other than the timestamp fields.
    #[error(
        "unknown member '{0}'; timestamps have year, month, day, weekday, hour, minute and \
         second (methods need parentheses)"
    )]
    UnknownMember(String),
    /// Reading a user variable no earlier statement assigned.
    #[error(
        "'{0}' is not a service-defined variable and no earlier statement assigns it; \
         assign it before reading it"
    )]
    UndefinedVariable(String),
    /// Assigning a read-only service variable.
    #[error("'{0}' is a read-only service-defined variable and cannot be assigned")]
    ReadOnlyAssignment(String),
    /// Assigning a reserved name (constant, keyword, function).
    #[error("'{0}' is a reserved name and cannot be assigned")]
    ReservedName(String),
    /// `$NodeDeallocationOption` assigned something that can never be an option.
    #[error(
        "'{0}' is not a node deallocation option; use requeue, terminate, taskcompletion \
         or retaineddata"
    )]
    InvalidDeallocationOption(String),
    /// A `time("...")` literal that is neither W3C-DTF nor RFC 1123.
    #[error("time(\"{text}\"): {reason}")]
    InvalidTimeString {
        /// The literal's contents.
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// A failure while evaluating a formula that parsed, at the position of the expression that
/// failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pos}: {kind}")]
pub struct EvalError {
    /// Where the failing expression is (for `GetSample`, its `(`).
    pub pos: Pos,
    /// What went wrong.
    pub kind: EvalErrorKind,
}

impl EvalError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            EvalErrorKind::InsufficientSampleData { .. } => ErrorCode::InsufficientSampleData,
            _ => ErrorCode::FormulaEvaluationError,
        }
    }
}

/// The kinds of [`EvalError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalErrorKind {
    /// The service's own wording (observed), with the received percentage floored.
    #[error("Insufficient data from data set: {metric} wanted {}%, received {}%",
        crate::results::format_g(*wanted), received.floor())]
    InsufficientSampleData {
        /// The metric, as written (`$PendingTasks`).
        metric: String,
        /// The required percentage.
        wanted: f64,
        /// The available percentage.
        received: f64,
    },
    /// A binary operator applied to types the operations table does not list.
    #[error("operator '{op}' cannot be applied to {left} and {right}")]
    BinaryType {
        /// The operator.
        op: &'static str,
        /// Left operand type.
        left: &'static str,
        /// Right operand type.
        right: &'static str,
    },
    /// A unary operator applied to a type it does not accept.
    #[error("operator '{op}' cannot be applied to {operand}")]
    UnaryType {
        /// The operator.
        op: &'static str,
        /// Operand type.
        operand: &'static str,
    },
    /// A `?:`, `&&` or `||` operand that is not a double.
    #[error("a condition must be a double, not {0}")]
    ConditionType(&'static str),
    /// Element-wise operation on vectors of different lengths.
    #[error("operator '{op}' needs vectors of equal length, got {left} and {right} elements")]
    LengthMismatch {
        /// The operator.
        op: &'static str,
        /// Left length.
        left: usize,
        /// Right length.
        right: usize,
    },
    /// A function argument of the wrong type.
    #[error("argument {index} of {function}() must be {expected}, not {found}")]
    ArgumentType {
        /// The function or method.
        function: &'static str,
        /// 1-based argument index.
        index: usize,
        /// What it accepts.
        expected: &'static str,
        /// What it got.
        found: &'static str,
    },
    /// A function argument of the right type but an unusable value.
    #[error("{function}(): {reason}")]
    InvalidArgument {
        /// The function or method.
        function: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A function that needs at least one element got none.
    #[error("{0}() of an empty list is undefined; guard it with len() or GetSamplePercent()")]
    EmptyList(&'static str),
    /// `val(v, i)` outside the vector.
    #[error("val(): index {index} is outside a vector of {len} element(s)")]
    IndexOutOfRange {
        /// The requested index.
        index: f64,
        /// The vector length.
        len: usize,
    },
    /// A timestamp member (`.hour`) read on something else.
    #[error("'.{member}' needs a timestamp, not {found}")]
    MemberType {
        /// The member.
        member: &'static str,
        /// What it was applied to.
        found: &'static str,
    },
    /// Interval arithmetic outside about ±29,000 years or producing NaN.
    #[error("time interval out of range")]
    IntervalOutOfRange,
    /// Timestamp arithmetic outside the representable range.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A time interval divided by zero (intervals are whole 100-ns ticks, not IEEE doubles).
    #[error("time interval divided by zero")]
    IntervalDivisionByZero,
    /// A sampled variable used as a number, or `HistoryBeginTime()`, with no samples.
    #[error("{0} has no samples yet; use GetSamplePercent() or Count() to guard it")]
    NoSamples(String),
    /// A target variable assigned something other than a double.
    #[error("{name} must be assigned a double, not {found}")]
    TargetType {
        /// The target variable as written.
        name: String,
        /// The type assigned.
        found: &'static str,
    },
    /// `$NodeDeallocationOption` assigned something other than an option keyword.
    #[error(
        "$NodeDeallocationOption must be requeue, terminate, taskcompletion or retaineddata, \
         not {0}"
    )]
    DeallocationType(&'static str),
    /// `time(s)` with a string that is neither W3C-DTF nor RFC 1123.
    #[error("time(\"{text}\"): {reason}")]
    InvalidTimeString {
        /// The string.
        text: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A name the static checks would have rejected (only reachable by evaluating a
    /// program that bypassed them).
    #[error("'{0}' cannot be used here")]
    InvalidName(String),
}

/// A `{name, value}` pair in [`RunError::values`], as in Azure Batch error bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    /// The name (`Message` for the positioned detail).
    pub name: String,
    /// The value.
    pub value: String,
}

/// The `error` of an autoscale run: Azure Batch's `AutoScaleRunError` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Stable code.
    pub code: ErrorCode,
    /// Short, fixed, human-readable summary for the code.
    pub message: String,
    /// Details; `Message` holds the positioned description.
    pub values: Vec<NameValue>,
}

impl RunError {
    pub(crate) fn new(code: ErrorCode, detail: String) -> Self {
        let message = match code {
            ErrorCode::InsufficientSampleData => {
                "Autoscale evaluation failed due to insufficient sample data"
            }
            ErrorCode::AutoScalingFormulaSyntaxError => "The autoscale formula is not valid",
            ErrorCode::AutoScaleFormulaTooLong => "The autoscale formula is too long",
            ErrorCode::InvalidAutoScalingSettings => "The autoscale settings are not valid",
            ErrorCode::FormulaEvaluationError => "Autoscale formula evaluation failed",
            ErrorCode::InvalidAutoScaleResult => {
                "Autoscale evaluation produced a target node count that is not a finite number"
            }
        };
        RunError {
            code,
            message: message.to_owned(),
            values: vec![NameValue {
                name: "Message".to_owned(),
                value: detail,
            }],
        }
    }
}

impl From<&FormulaError> for RunError {
    fn from(e: &FormulaError) -> Self {
        RunError::new(e.code(), e.to_string())
    }
}

impl From<&EvalError> for RunError {
    fn from(e: &EvalError) -> Self {
        RunError::new(e.code(), e.to_string())
    }
}
