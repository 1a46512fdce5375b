//! The parser: tokens to a [`Program`] (spec §3), by precedence climbing with C precedence.
//!
//! It only checks syntax; names, arity and literals are checked afterwards by `check.rs`.
//! Recursion is bounded by [`MAX_EXPRESSION_DEPTH`] so no input can overflow the stack.

use crate::ast::{BinaryOp, Expr, ExprKind, Program, Stmt, UnaryOp};
use crate::error::{FormulaError, Pos, SyntaxErrorKind};
use crate::lexer::{Tok, Token};
use crate::limits::{MAX_EXPRESSION_DEPTH, MAX_STATEMENTS};

pub(crate) fn parse_tokens(tokens: Vec<Token>) -> Result<Program, FormulaError> {
    let eof_pos = tokens.last().map_or(Pos::new(1, 1), |t| t.pos);
    let mut parser = Parser {
        tokens,
        idx: 0,
        nesting: 0,
        eof: Token {
            tok: Tok::Eof,
            pos: eof_pos,
        },
    };
    parser.program()
}

struct Parser {
    tokens: Vec<Token>,
    idx: usize,
    /// Current recursion depth of `expr`/`unary`.
    nesting: usize,
    eof: Token,
}

/// Binding power of binary operators; higher binds tighter (C order).
fn binary_op(tok: &Tok) -> Option<(BinaryOp, u8)> {
    Some(match tok {
        Tok::OrOr => (BinaryOp::Or, 1),
        Tok::AndAnd => (BinaryOp::And, 2),
        Tok::EqEq => (BinaryOp::Eq, 3),
        Tok::Ne => (BinaryOp::Ne, 3),
        Tok::Lt => (BinaryOp::Lt, 4),
        Tok::Le => (BinaryOp::Le, 4),
        Tok::Gt => (BinaryOp::Gt, 4),
        Tok::Ge => (BinaryOp::Ge, 4),
        Tok::Plus => (BinaryOp::Add, 5),
        Tok::Minus => (BinaryOp::Sub, 5),
        Tok::Star => (BinaryOp::Mul, 6),
        Tok::Slash => (BinaryOp::Div, 6),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.idx).unwrap_or(&self.eof)
    }

    fn peek_tok_at(&self, offset: usize) -> &Tok {
        self.tokens
            .get(self.idx.saturating_add(offset))
            .map_or(&Tok::Eof, |t| &t.tok)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.idx < self.tokens.len() {
            self.idx += 1;
        }
        token
    }

    fn unexpected<T>(&self, expected: &'static str) -> Result<T, FormulaError> {
        let token = self.peek();
        Err(FormulaError::syntax(
            token.pos,
            SyntaxErrorKind::UnexpectedToken {
                expected,
                found: token.tok.to_string(),
            },
        ))
    }

    fn expect(&mut self, tok: &Tok, expected: &'static str) -> Result<Token, FormulaError> {
        if &self.peek().tok == tok {
            Ok(self.advance())
        } else {
            self.unexpected(expected)
        }
    }

    fn enter(&mut self, pos: Pos) -> Result<(), FormulaError> {
        self.nesting += 1;
        if self.nesting > MAX_EXPRESSION_DEPTH {
            return Err(FormulaError::syntax(pos, SyntaxErrorKind::TooDeep));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    fn node(&self, kind: ExprKind, pos: Pos) -> Result<Expr, FormulaError> {
        let expr = Expr::new(kind, pos);
        if expr.height > MAX_EXPRESSION_DEPTH {
            return Err(FormulaError::syntax(pos, SyntaxErrorKind::TooDeep));
        }
        Ok(expr)
    }

    /// `formula := [ statement { ';' statement } [ ';' ] ]`, also tolerating empty
    /// statements (`;;`), which do not count toward the limit.
    fn program(&mut self) -> Result<Program, FormulaError> {
        let mut statements = Vec::new();
        loop {
            while self.peek().tok == Tok::Semi {
                self.advance();
            }
            if self.peek().tok == Tok::Eof {
                break;
            }
            if statements.len() >= MAX_STATEMENTS {
                return Err(FormulaError::TooManyStatements {
                    pos: self.peek().pos,
                });
            }
            statements.push(self.statement()?);
            match self.peek().tok {
                Tok::Semi => {
                    self.advance();
                }
                Tok::Eof => break,
                _ => return self.unexpected("';' or end of formula"),
            }
        }
        Ok(Program { statements })
    }

    fn statement(&mut self) -> Result<Stmt, FormulaError> {
        if let Tok::Name(name) = &self.peek().tok {
            if self.peek_tok_at(1) == &Tok::Assign {
                let name = name.clone();
                let pos = self.advance().pos;
                self.advance();
                let value = self.expr()?;
                return Ok(Stmt::Assign { name, pos, value });
            }
        }
        Ok(Stmt::Expr(self.expr()?))
    }

    /// `ternary := or_expr [ '?' expr ':' expr ]` (right-associative).
    fn expr(&mut self) -> Result<Expr, FormulaError> {
        self.enter(self.peek().pos)?;
        let result = self.ternary();
        self.leave();
        result
    }

    fn ternary(&mut self) -> Result<Expr, FormulaError> {
        let cond = self.binary(0)?;
        if self.peek().tok != Tok::Question {
            return Ok(cond);
        }
        let pos = self.advance().pos;
        let then = self.expr()?;
        self.expect(&Tok::Colon, "':' of a '?:' expression")?;
        let otherwise = self.expr()?;
        self.node(
            ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                otherwise: Box::new(otherwise),
            },
            pos,
        )
    }

    /// Left-associative binary operators whose binding power exceeds `min_power`.
    fn binary(&mut self, min_power: u8) -> Result<Expr, FormulaError> {
        let mut left = self.unary()?;
        while let Some((op, power)) = binary_op(&self.peek().tok) {
            if power <= min_power {
                break;
            }
            let pos = self.advance().pos;
            let right = self.binary(power)?;
            left = self.node(
                ExprKind::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                pos,
            )?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FormulaError> {
        let op = match self.peek().tok {
            Tok::Minus => UnaryOp::Neg,
            Tok::Bang => UnaryOp::Not,
            _ => return self.postfix(),
        };
        let pos = self.advance().pos;
        self.enter(pos)?;
        let operand = self.unary();
        self.leave();
        self.node(
            ExprKind::Unary {
                op,
                operand: Box::new(operand?),
            },
            pos,
        )
    }

    /// `postfix := primary { '.' ident [ '(' [ args ] ')' ] }`.
    fn postfix(&mut self) -> Result<Expr, FormulaError> {
        let mut expr = self.primary()?;
        while self.peek().tok == Tok::Dot {
            self.advance();
            let (name, pos) = match &self.peek().tok {
                Tok::Name(name) if !name.starts_with('$') => (name.clone(), self.peek().pos),
                _ => return self.unexpected("a method or member name after '.'"),
            };
            self.advance();
            expr = if self.peek().tok == Tok::LParen {
                let paren = self.peek().pos;
                let args = self.args()?;
                self.node(
                    ExprKind::Method {
                        receiver: Box::new(expr),
                        method: name,
                        args,
                        paren,
                    },
                    pos,
                )?
            } else {
                self.node(
                    ExprKind::Member {
                        object: Box::new(expr),
                        member: name,
                    },
                    pos,
                )?
            };
        }
        Ok(expr)
    }

    fn primary(&mut self) -> Result<Expr, FormulaError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Number(n) => {
                self.advance();
                self.node(ExprKind::Number(n), token.pos)
            }
            Tok::Str(s) => {
                self.advance();
                self.node(ExprKind::Str(s), token.pos)
            }
            Tok::Name(name) => {
                self.advance();
                if self.peek().tok == Tok::LParen {
                    let args = self.args()?;
                    self.node(ExprKind::Call { name, args }, token.pos)
                } else {
                    self.node(ExprKind::Name(name), token.pos)
                }
            }
            Tok::LParen => {
                self.advance();
                let inner = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(inner)
            }
            _ => self.unexpected("an expression"),
        }
    }

    /// `'(' [ expr { ',' expr } ] ')'`, starting at the `(`.
    fn args(&mut self) -> Result<Vec<Expr>, FormulaError> {
        self.expect(&Tok::LParen, "'('")?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.advance();
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.advance();
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(args);
                }
                _ => return self.unexpected("',' or ')'"),
            }
        }
    }
}
