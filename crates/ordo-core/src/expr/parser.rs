//! Recursive-descent parser: expression text to [`Expr`].
//!
//! Precedence, loosest first: `||`/`or`; `&&`/`and`; `== != < <= > >=`; `in`, `not in`,
//! `contains`; `+ -`; `* / %`; unary `! not -`; primary. Every binary level is
//! left-associative. Recursion is bounded by [`MAX_EXPR_NESTING`] and the tree's depth by
//! [`MAX_EXPR_DEPTH`], so no input can overflow the stack here or in later passes.

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::lexer::{Tok, Token, tokenize};
use crate::error::ParseError;
use crate::limits::{MAX_EXPR_DEPTH, MAX_EXPR_LEN, MAX_EXPR_NESTING};
use crate::value::Value;

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_EXPR_LEN {
        return Err(ParseError {
            position: 1,
            message: format!("expression is longer than the limit of {MAX_EXPR_LEN} bytes"),
        });
    }
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        nesting: 0,
    };
    let (expr, _) = p.expr()?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(p.error("an operator or end of input"));
    }
    Ok(expr)
}

/// An expression and the depth of its tree.
type Parsed = (Expr, u32);

const KEYWORDS: &[&str] = &[
    "true", "false", "null", "and", "or", "not", "in", "if", "then", "else",
];

struct Parser {
    toks: Vec<Token>,
    i: usize,
    nesting: u32,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks.get(self.i + ahead).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn pos(&self) -> usize {
        self.toks
            .get(self.i)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.pos)
    }
    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }
    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn error(&self, expected: &str) -> ParseError {
        ParseError {
            position: self.pos(),
            message: format!("expected {expected}, found {}", self.peek().describe()),
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<(), ParseError> {
        if self.is_word(word) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("'{word}'")))
        }
    }

    /// Runs `f` one nesting level deeper, refusing to go past the limit.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= MAX_EXPR_NESTING {
            return Err(ParseError {
                position: self.pos(),
                message: format!(
                    "expression is nested deeper than the limit of {MAX_EXPR_NESTING}"
                ),
            });
        }
        self.nesting += 1;
        let r = f(self);
        self.nesting -= 1;
        r
    }

    /// Checks the depth of a node about to be built from children of the given depths.
    fn depth(&self, children: impl IntoIterator<Item = u32>) -> Result<u32, ParseError> {
        let d = 1 + children.into_iter().max().unwrap_or(0);
        if d > MAX_EXPR_DEPTH {
            return Err(ParseError {
                position: self.pos(),
                message: format!("expression tree is deeper than the limit of {MAX_EXPR_DEPTH}"),
            });
        }
        Ok(d)
    }

    fn binary(&self, op: BinaryOp, l: Parsed, r: Parsed) -> Result<Parsed, ParseError> {
        let d = self.depth([l.1, r.1])?;
        Ok((Expr::binary(op, l.0, r.0), d))
    }

    fn expr(&mut self) -> Result<Parsed, ParseError> {
        self.or()
    }

    fn or(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Tok::OrOr) || self.is_word("or") {
            self.i += 1;
            let right = self.and()?;
            left = self.binary(BinaryOp::Or, left, right)?;
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.comparison()?;
        while matches!(self.peek(), Tok::AndAnd) || self.is_word("and") {
            self.i += 1;
            let right = self.comparison()?;
            left = self.binary(BinaryOp::And, left, right)?;
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.membership()?;
        loop {
            let op = match self.peek() {
                Tok::EqEq => BinaryOp::Eq,
                Tok::NotEq => BinaryOp::Ne,
                Tok::Lt => BinaryOp::Lt,
                Tok::Le => BinaryOp::Le,
                Tok::Gt => BinaryOp::Gt,
                Tok::Ge => BinaryOp::Ge,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.membership()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn membership(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.additive()?;
        loop {
            let op = if self.is_word("in") {
                self.i += 1;
                BinaryOp::In
            } else if self.is_word("not") && matches!(self.peek_at(1), Tok::Ident(w) if w == "in") {
                self.i += 2;
                BinaryOp::NotIn
            } else if self.is_word("contains") {
                self.i += 1;
                BinaryOp::Contains
            } else {
                return Ok(left);
            };
            let right = self.additive()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn additive(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinaryOp::Add,
                Tok::Minus => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.multiplicative()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinaryOp::Mul,
                Tok::Slash => BinaryOp::Div,
                Tok::Percent => BinaryOp::Mod,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.unary()?;
            left = self.binary(op, left, right)?;
        }
    }

    fn unary(&mut self) -> Result<Parsed, ParseError> {
        let op = match self.peek() {
            Tok::Bang => UnaryOp::Not,
            Tok::Ident(w) if w == "not" => UnaryOp::Not,
            Tok::Minus => {
                // A minus directly before a number is part of the literal, so that
                // -9223372036854775808 and -1.5 read as the values they spell.
                if let Tok::Num(text) = self.peek_at(1).clone() {
                    let pos = self.pos();
                    self.i += 2;
                    return Ok((number(&text, true, pos)?, 1));
                }
                UnaryOp::Neg
            }
            _ => return self.primary(),
        };
        self.i += 1;
        let operand = self.nested(|p| p.unary())?;
        let d = self.depth([operand.1])?;
        Ok((
            Expr::Unary {
                op,
                operand: Box::new(operand.0),
            },
            d,
        ))
    }

    fn primary(&mut self) -> Result<Parsed, ParseError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Num(text) => {
                self.i += 1;
                Ok((number(&text, false, pos)?, 1))
            }
            Tok::Str(s) => {
                self.i += 1;
                Ok((Expr::Literal(Value::from(s)), 1))
            }
            Tok::LParen => {
                self.i += 1;
                let inner = self.nested(|p| p.expr())?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::LBracket => {
                self.i += 1;
                let items = self.nested(|p| p.list(Tok::RBracket, "']'"))?;
                let d = self.depth(items.iter().map(|x| x.1))?;
                Ok((Expr::Array(items.into_iter().map(|x| x.0).collect()), d))
            }
            Tok::LBrace => {
                self.i += 1;
                self.nested(|p| p.object())
            }
            Tok::Var(name) => {
                self.i += 1;
                let path = self.path_rest(format!("${name}"))?;
                Ok((Expr::Field(path), 1))
            }
            Tok::Ident(word) => self.word(word),
            _ => Err(self.error("an expression")),
        }
    }

    /// A primary that starts with an identifier: literal keyword, `if`, call or path.
    fn word(&mut self, word: String) -> Result<Parsed, ParseError> {
        let call = matches!(self.peek_at(1), Tok::LParen);
        match word.as_str() {
            "true" => {
                self.i += 1;
                Ok((Expr::Literal(Value::Bool(true)), 1))
            }
            "false" => {
                self.i += 1;
                Ok((Expr::Literal(Value::Bool(false)), 1))
            }
            "null" => {
                self.i += 1;
                Ok((Expr::Literal(Value::Null), 1))
            }
            "if" => {
                self.i += 1;
                self.nested(|p| {
                    let c = p.expr()?;
                    p.expect_word("then")?;
                    let t = p.expr()?;
                    p.expect_word("else")?;
                    let e = p.expr()?;
                    let d = p.depth([c.1, t.1, e.1])?;
                    Ok((
                        Expr::Conditional {
                            condition: Box::new(c.0),
                            then_branch: Box::new(t.0),
                            else_branch: Box::new(e.0),
                        },
                        d,
                    ))
                })
            }
            "exists" if call => {
                self.i += 2;
                let path = match self.bump() {
                    Tok::Ident(root) if !KEYWORDS.contains(&root.as_str()) => {
                        self.path_rest(root)?
                    }
                    Tok::Var(name) => self.path_rest(format!("${name}"))?,
                    _ => {
                        self.i -= 1;
                        return Err(self.error("a field path or variable"));
                    }
                };
                self.expect(Tok::RParen, "')'")?;
                Ok((Expr::Exists(path), 1))
            }
            _ if call => {
                self.i += 2;
                let args = self.nested(|p| p.list(Tok::RParen, "')'"))?;
                let d = self.depth(args.iter().map(|x| x.1))?;
                let args = args.into_iter().map(|x| x.0).collect();
                let expr = if word == "coalesce" {
                    Expr::Coalesce(args)
                } else {
                    Expr::Call { name: word, args }
                };
                Ok((expr, d))
            }
            w if KEYWORDS.contains(&w) => Err(self.error("an expression")),
            _ => {
                self.i += 1;
                let path = self.path_rest(word)?;
                Ok((Expr::Field(path), 1))
            }
        }
    }

    /// Comma-separated expressions up to `close` (consumed); a trailing comma is allowed.
    fn list(&mut self, close: Tok, what: &str) -> Result<Vec<Parsed>, ParseError> {
        let mut items = Vec::new();
        loop {
            if *self.peek() == close {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.expr()?);
            if matches!(self.peek(), Tok::Comma) {
                self.i += 1;
            } else if *self.peek() != close {
                return Err(self.error(&format!("',' or {what}")));
            }
        }
    }

    fn object(&mut self) -> Result<Parsed, ParseError> {
        let mut pairs = Vec::new();
        let mut depth = 0;
        loop {
            let key = match self.bump() {
                Tok::RBrace => break,
                Tok::Str(k) | Tok::Ident(k) => k,
                _ => {
                    self.i -= 1;
                    return Err(self.error("an object key or '}'"));
                }
            };
            self.expect(Tok::Colon, "':'")?;
            let (value, d) = self.expr()?;
            depth = depth.max(d);
            pairs.push((key, value));
            match self.peek() {
                Tok::Comma => self.i += 1,
                Tok::RBrace => {}
                _ => return Err(self.error("',' or '}'")),
            }
        }
        let d = self.depth([depth])?;
        Ok((Expr::Object(pairs), d))
    }

    /// The rest of a path after its root: `.name`, `.0`, `[0]`, `["key"]`.
    fn path_rest(&mut self, mut path: String) -> Result<String, ParseError> {
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.i += 1;
                    match self.bump() {
                        Tok::Ident(seg) => path.push_str(&format!(".{seg}")),
                        // `a.0.1` lexes its tail as the number 0.1: two index segments.
                        Tok::Num(n) if n.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                            path.push('.');
                            path.push_str(&n);
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.error("a field name or index after '.'"));
                        }
                    }
                }
                Tok::LBracket => {
                    self.i += 1;
                    match self.bump() {
                        Tok::Num(n) if n.bytes().all(|b| b.is_ascii_digit()) => {
                            path.push('.');
                            path.push_str(&n);
                        }
                        Tok::Str(key) if !key.contains('.') => {
                            path.push('.');
                            path.push_str(&key);
                        }
                        Tok::Str(_) => {
                            self.i -= 1;
                            return Err(ParseError {
                                position: self.pos(),
                                message: "a key containing '.' cannot be used in a path"
                                    .to_string(),
                            });
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.error("a non-negative integer index or a quoted key"));
                        }
                    }
                    self.expect(Tok::RBracket, "']'")?;
                }
                _ => return Ok(path),
            }
        }
    }
}

fn number(text: &str, negative: bool, position: usize) -> Result<Expr, ParseError> {
    let err = |message: &str| ParseError {
        position,
        message: message.to_string(),
    };
    if text.contains(['.', 'e']) {
        let f: f64 = text.parse().map_err(|_| err("invalid number"))?;
        if !f.is_finite() {
            return Err(err("number is out of range"));
        }
        return Ok(Expr::Literal(Value::Float(if negative { -f } else { f })));
    }
    let u: u64 = text.parse().map_err(|_| err("integer is out of range"))?;
    let i = if negative {
        0i64.checked_sub_unsigned(u)
    } else {
        i64::try_from(u).ok()
    };
    i.map(|i| Expr::Literal(Value::Int(i)))
        .ok_or_else(|| err("integer is out of range"))
}
