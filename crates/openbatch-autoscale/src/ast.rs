//! The syntax tree of a formula. Every node keeps its source position for error messages.

use crate::error::Pos;

/// A parsed and checked formula, ready to evaluate any number of times.
///
/// Obtain one with [`crate::parse`]; evaluate it with [`Program::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub(crate) statements: Vec<Stmt>,
}

impl Program {
    /// Number of (non-empty) statements.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stmt {
    Assign {
        /// The variable as written (`$x` and `x` are different variables).
        name: String,
        pos: Pos,
        value: Expr,
    },
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    /// Where the expression starts; for binary operators, the operator.
    pub(crate) pos: Pos,
    /// Height of this subtree (a leaf is 1); bounded by `MAX_EXPRESSION_DEPTH`.
    pub(crate) height: usize,
}

impl Expr {
    pub(crate) fn new(kind: ExprKind, pos: Pos) -> Self {
        let children = match &kind {
            ExprKind::Number(_) | ExprKind::Str(_) | ExprKind::Name(_) => 0,
            ExprKind::Call { args, .. } | ExprKind::Method { args, .. } => {
                args.iter().map(|a| a.height).max().unwrap_or(0)
            }
            ExprKind::Member { object, .. } => object.height,
            ExprKind::Unary { operand, .. } => operand.height,
            ExprKind::Binary { left, right, .. } => left.height.max(right.height),
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => cond.height.max(then.height).max(otherwise.height),
        };
        Expr {
            kind,
            pos,
            height: children.saturating_add(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    Number(f64),
    Str(String),
    Name(String),
    /// `name(args)`; `pos` of the node is the name.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// `receiver.method(args)`; `paren` is the `(`, where sample errors point.
    Method {
        receiver: Box<Expr>,
        method: String,
        args: Vec<Expr>,
        paren: Pos,
    },
    /// `object.member` without parentheses (timestamp fields).
    Member {
        object: Box<Expr>,
        member: String,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `cond ? then : otherwise`, evaluated lazily.
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Neg,
    Not,
}

impl UnaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Not => "!",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    Ne,
    And,
    Or,
}

impl BinaryOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Eq => "==",
            BinaryOp::Ge => ">=",
            BinaryOp::Gt => ">",
            BinaryOp::Ne => "!=",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }
}
