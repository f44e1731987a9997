//! The expression tree, in Ordo's JSON shape (`{"Binary":{"op":"Add","left":..,"right":..}}`).
//!
//! It is both what the parser produces from expression text and what users may write
//! directly in a ruleset. `Display` prints it back as expression text that parses to the
//! same tree.

use std::fmt::{self, Write};

use serde::{Deserialize, Serialize};

use crate::value::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Expr {
    Literal(Value),
    /// A dotted path into the input (`order.items.0.price`) or a variable (`$rate`).
    Field(String),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Conditional {
        condition: Box<Expr>,
        then_branch: Box<Expr>,
        else_branch: Box<Expr>,
    },
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    /// True when the path resolves to a value (even `null`).
    Exists(String),
    /// The first operand that is present and not null.
    Coalesce(Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    In,
    NotIn,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

impl BinaryOp {
    /// Binding strength, loosest first; every level is left-associative.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => 3,
            BinaryOp::In | BinaryOp::NotIn | BinaryOp::Contains => 4,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 6,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
            BinaryOp::In => "in",
            BinaryOp::NotIn => "not in",
            BinaryOp::Contains => "contains",
        }
    }
}

const UNARY_PRECEDENCE: u8 = 7;

impl Expr {
    pub fn literal(v: impl Into<Value>) -> Expr {
        Expr::Literal(v.into())
    }
    pub fn field(path: impl Into<String>) -> Expr {
        Expr::Field(path.into())
    }
    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary { op, .. } => op.precedence(),
            Expr::Unary { .. } => UNARY_PRECEDENCE,
            // `if` extends as far right as it can, so it binds loosest of all.
            Expr::Conditional { .. } => 0,
            Expr::Literal(Value::Int(i)) if *i < 0 => UNARY_PRECEDENCE,
            Expr::Literal(Value::Float(f)) if f.is_sign_negative() => UNARY_PRECEDENCE,
            _ => u8::MAX,
        }
    }

    fn write_child(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(v) => write_literal(f, v),
            Expr::Field(path) => write_path(f, path),
            Expr::Binary { op, left, right } => {
                let p = op.precedence();
                left.write_child(f, p)?;
                write!(f, " {} ", op.symbol())?;
                // Left-associative: an equal-precedence right operand needs brackets.
                right.write_child(f, p + 1)
            }
            Expr::Unary { op, operand } => {
                f.write_str(match op {
                    UnaryOp::Not => "!",
                    UnaryOp::Neg => "-",
                })?;
                // `- -1` must not print as `--1`, and `-(1)` must not fold into `-1`.
                let needs_brackets = operand.precedence() <= UNARY_PRECEDENCE
                    || matches!(**operand, Expr::Literal(Value::Int(_) | Value::Float(_)));
                if needs_brackets {
                    write!(f, "({operand})")
                } else {
                    write!(f, "{operand}")
                }
            }
            Expr::Call { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args)?;
                f.write_char(')')
            }
            Expr::Conditional {
                condition,
                then_branch,
                else_branch,
            } => write!(f, "if {condition} then {then_branch} else {else_branch}"),
            Expr::Array(items) => {
                f.write_char('[')?;
                write_list(f, items)?;
                f.write_char(']')
            }
            Expr::Object(pairs) => {
                f.write_char('{')?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_string(f, k)?;
                    write!(f, ": {v}")?;
                }
                f.write_char('}')
            }
            Expr::Exists(path) => {
                f.write_str("exists(")?;
                write_path(f, path)?;
                f.write_char(')')
            }
            Expr::Coalesce(items) => {
                f.write_str("coalesce(")?;
                write_list(f, items)?;
                f.write_char(')')
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

fn write_literal(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Null => f.write_str("null"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        // `{:?}` keeps the decimal point (`1.0`) so the literal reads back as a float.
        Value::Float(x) => write!(f, "{x:?}"),
        Value::String(s) => write_string(f, s),
        Value::Array(items) => {
            f.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_literal(f, item)?;
            }
            f.write_char(']')
        }
        Value::Object(map) => {
            f.write_char('{')?;
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_string(f, k)?;
                f.write_str(": ")?;
                write_literal(f, item)?;
            }
            f.write_char('}')
        }
    }
}

pub(crate) fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Prints a path so that it parses back: identifiers after dots, anything else in brackets.
fn write_path(f: &mut fmt::Formatter<'_>, path: &str) -> fmt::Result {
    for (i, seg) in path.split('.').enumerate() {
        if i == 0 {
            f.write_str(seg)?;
        } else if is_identifier(seg) || (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        {
            write!(f, ".{seg}")?;
        } else {
            f.write_char('[')?;
            write_string(f, seg)?;
            f.write_char(']')?;
        }
    }
    Ok(())
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
