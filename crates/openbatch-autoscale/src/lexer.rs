//! The lexer: formula text to tokens with 1-based line/column positions (spec §2).

use std::fmt;

use crate::error::{FormulaError, Pos, SyntaxErrorKind};

/// A token's kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Number(f64),
    /// A string literal's contents (no escapes exist).
    Str(String),
    /// An identifier, with its `$` if it had one.
    Name(String),
    Semi,
    Comma,
    LParen,
    RParen,
    Dot,
    Question,
    Colon,
    Plus,
    Minus,
    Star,
    Slash,
    Lt,
    Le,
    EqEq,
    Ge,
    Gt,
    Ne,
    AndAnd,
    OrOr,
    Bang,
    Assign,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Tok::Number(n) => return write!(f, "number {n}"),
            Tok::Str(s) => return write!(f, "string \"{s}\""),
            Tok::Name(n) => return write!(f, "'{n}'"),
            Tok::Eof => "end of formula",
            Tok::Semi => "';'",
            Tok::Comma => "','",
            Tok::LParen => "'('",
            Tok::RParen => "')'",
            Tok::Dot => "'.'",
            Tok::Question => "'?'",
            Tok::Colon => "':'",
            Tok::Plus => "'+'",
            Tok::Minus => "'-'",
            Tok::Star => "'*'",
            Tok::Slash => "'/'",
            Tok::Lt => "'<'",
            Tok::Le => "'<='",
            Tok::EqEq => "'=='",
            Tok::Ge => "'>='",
            Tok::Gt => "'>'",
            Tok::Ne => "'!='",
            Tok::AndAnd => "'&&'",
            Tok::OrOr => "'||'",
            Tok::Bang => "'!'",
            Tok::Assign => "'='",
        };
        f.write_str(text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Pos,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    /// The character after the next one, without consuming either.
    fn peek2(&self) -> Option<char> {
        let mut ahead = self.chars.clone();
        ahead.next();
        ahead.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, out: &mut String, pred: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !pred(c) {
                break;
            }
            out.push(c);
            self.bump();
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, FormulaError> {
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    loop {
        let pos = cur.pos();
        let Some(c) = cur.peek() else {
            tokens.push(Token { tok: Tok::Eof, pos });
            return Ok(tokens);
        };
        let err = |kind| Err(FormulaError::syntax(pos, kind));
        let tok = match c {
            ' ' | '\t' | '\r' | '\n' => {
                cur.bump();
                continue;
            }
            '/' if cur.peek2() == Some('/') => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            '/' if cur.peek2() == Some('*') => return err(SyntaxErrorKind::BlockComment),
            '0'..='9' => lex_number(&mut cur, pos)?,
            '.' if cur.peek2().is_some_and(|c| c.is_ascii_digit()) => lex_number(&mut cur, pos)?,
            '"' => {
                cur.bump();
                let mut text = String::new();
                loop {
                    match cur.bump() {
                        Some('"') => break,
                        Some(c) => text.push(c),
                        None => return err(SyntaxErrorKind::UnterminatedString),
                    }
                }
                Tok::Str(text)
            }
            '$' => {
                cur.bump();
                if !cur.peek().is_some_and(is_ident_start) {
                    return err(SyntaxErrorKind::DollarWithoutName);
                }
                let mut name = String::from("$");
                cur.take_while(&mut name, is_ident_continue);
                Tok::Name(name)
            }
            c if is_ident_start(c) => {
                let mut name = String::new();
                cur.take_while(&mut name, is_ident_continue);
                Tok::Name(name)
            }
            _ => {
                cur.bump();
                match c {
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '.' => Tok::Dot,
                    '?' => Tok::Question,
                    ':' => Tok::Colon,
                    '+' => Tok::Plus,
                    '-' => Tok::Minus,
                    '*' => Tok::Star,
                    '/' => Tok::Slash,
                    '<' if cur.eat('=') => Tok::Le,
                    '<' => Tok::Lt,
                    '>' if cur.eat('=') => Tok::Ge,
                    '>' => Tok::Gt,
                    '=' if cur.eat('=') => Tok::EqEq,
                    '=' => Tok::Assign,
                    '!' if cur.eat('=') => Tok::Ne,
                    '!' => Tok::Bang,
                    '&' if cur.eat('&') => Tok::AndAnd,
                    '|' if cur.eat('|') => Tok::OrOr,
                    other => return err(SyntaxErrorKind::UnexpectedChar(other)),
                }
            }
        };
        tokens.push(Token { tok, pos });
    }
}

/// `digit+ ['.' digit*] | '.' digit+`, then an optional exponent `e[+-]digit+` (accepted
/// although undocumented). An `e` not followed by digits is left for the next token.
fn lex_number(cur: &mut Cursor<'_>, pos: Pos) -> Result<Tok, FormulaError> {
    let mut text = String::new();
    cur.take_while(&mut text, |c| c.is_ascii_digit());
    if cur.peek() == Some('.') {
        text.push('.');
        cur.bump();
        cur.take_while(&mut text, |c| c.is_ascii_digit());
    }
    if matches!(cur.peek(), Some('e' | 'E')) {
        let after = cur.peek2();
        let signed = matches!(after, Some('+' | '-'));
        let digit_follows = if signed {
            let mut ahead = cur.chars.clone();
            ahead.next();
            ahead.next();
            ahead.next().is_some_and(|c| c.is_ascii_digit())
        } else {
            after.is_some_and(|c| c.is_ascii_digit())
        };
        if digit_follows {
            text.push('e');
            cur.bump();
            if signed {
                if let Some(sign) = cur.bump() {
                    text.push(sign);
                }
            }
            cur.take_while(&mut text, |c| c.is_ascii_digit());
        }
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Tok::Number(value)),
        _ => Err(FormulaError::syntax(
            pos,
            SyntaxErrorKind::NumberOutOfRange(text),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src)
            .map(|ts| ts.into_iter().map(|t| t.tok).collect())
            .unwrap_or_default()
    }

    fn err_at(src: &str) -> (u32, u32, SyntaxErrorKind) {
        match lex(src) {
            Err(FormulaError::Syntax { pos, kind }) => (pos.line, pos.col, kind),
            other => panic!("expected a syntax error for {src:?}, got {other:?}"),
        }
    }

    #[test]
    fn numbers_in_all_documented_and_accepted_forms() {
        assert_eq!(
            toks("0.7 180 1. .5 1e3 2E-2"),
            vec![
                Tok::Number(0.7),
                Tok::Number(180.0),
                Tok::Number(1.0),
                Tok::Number(0.5),
                Tok::Number(1000.0),
                Tok::Number(0.02),
                Tok::Eof
            ]
        );
        // An 'e' without digits is not part of the number.
        assert_eq!(
            toks("2e"),
            vec![Tok::Number(2.0), Tok::Name("e".into()), Tok::Eof]
        );
    }

    #[test]
    fn operators_names_and_comments() {
        assert_eq!(
            toks("$x.GetSample(1) <= y // trailing\n&& !z != 1"),
            vec![
                Tok::Name("$x".into()),
                Tok::Dot,
                Tok::Name("GetSample".into()),
                Tok::LParen,
                Tok::Number(1.0),
                Tok::RParen,
                Tok::Le,
                Tok::Name("y".into()),
                Tok::AndAnd,
                Tok::Bang,
                Tok::Name("z".into()),
                Tok::Ne,
                Tok::Number(1.0),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let tokens = lex("a = 1;\n  é").err();
        assert_eq!(
            tokens,
            Some(FormulaError::syntax(
                Pos::new(2, 3),
                SyntaxErrorKind::UnexpectedChar('é')
            ))
        );
        let ok = lex("a\n\tbb").unwrap_or_default();
        assert_eq!(ok.get(1).map(|t| t.pos), Some(Pos::new(2, 2)));
    }

    #[test]
    fn lexical_errors_point_at_their_start() {
        assert_eq!(
            err_at("x = \"abc"),
            (1, 5, SyntaxErrorKind::UnterminatedString)
        );
        assert_eq!(
            err_at("x = 1 /* c */"),
            (1, 7, SyntaxErrorKind::BlockComment)
        );
        assert_eq!(err_at("\n $ x"), (2, 2, SyntaxErrorKind::DollarWithoutName));
        assert_eq!(
            err_at("a & b"),
            (1, 3, SyntaxErrorKind::UnexpectedChar('&'))
        );
        assert_eq!(
            err_at("a % b"),
            (1, 3, SyntaxErrorKind::UnexpectedChar('%'))
        );
        assert_eq!(
            err_at("x = 1e999"),
            (1, 5, SyntaxErrorKind::NumberOutOfRange("1e999".into()))
        );
    }

    #[test]
    fn strings_have_no_escapes_and_may_span_lines() {
        assert_eq!(
            toks("\"a\\b\nc\""),
            vec![Tok::Str("a\\b\nc".into()), Tok::Eof]
        );
    }
}
