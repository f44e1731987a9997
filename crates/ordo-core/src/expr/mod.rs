//! The expression language: tokens, parser, tree, compiler and evaluator.
//!
//! Text is parsed into an [`Expr`] (Ordo's AST shape), which is compiled into a private
//! `Node` tree that evaluates without parsing, hashing identifiers or looking up functions.

pub mod ast;
pub(crate) mod compile;
mod lexer;
pub(crate) mod node;
pub(crate) mod ops;
mod parser;
pub(crate) mod set;

pub use ast::{BinaryOp, Expr, UnaryOp};
pub use node::FieldMissing;
pub use parser::parse;

use crate::error::{EvalError, ExprError};
use crate::value::Value;
use node::{Env, Node};

/// A standalone compiled expression, evaluated against a context value (the `eval`
/// endpoint). Variables (`$name`) are not available outside a ruleset.
#[derive(Debug)]
pub struct Expression {
    ast: Expr,
    node: Node,
}

impl Expression {
    /// Parses and compiles expression text.
    pub fn parse(text: &str) -> Result<Expression, ExprError> {
        Self::build(parse(text)?, Some(text))
    }

    /// Compiles an expression tree.
    pub fn from_ast(ast: Expr) -> Result<Expression, ExprError> {
        Self::build(ast, None)
    }

    fn build(ast: Expr, text: Option<&str>) -> Result<Expression, ExprError> {
        let node = compile::compile(&ast, &compile::Vars::default()).map_err(|issue| {
            ExprError::Compile {
                position: text
                    .zip(issue.needle.as_deref())
                    .and_then(|(t, n)| locate(t, n)),
                message: issue.message,
            }
        })?;
        Ok(Expression { ast, node })
    }

    /// The parsed tree.
    pub fn ast(&self) -> &Expr {
        &self.ast
    }

    /// Evaluates against `context`; a missing field is an error.
    pub fn eval(&self, context: &Value) -> Result<Value, EvalError> {
        self.eval_with(context, FieldMissing::Strict)
    }

    pub fn eval_with(&self, context: &Value, missing: FieldMissing) -> Result<Value, EvalError> {
        let env = Env {
            input: context,
            overlay: &[],
            vars: &[],
            missing,
        };
        self.node.eval(&env).map(|v| v.into_owned())
    }
}

/// 1-based character position of the first occurrence of `needle` in `text`.
pub(crate) fn locate(text: &str, needle: &str) -> Option<usize> {
    let byte = text.find(needle)?;
    Some(text.get(..byte)?.chars().count() + 1)
}
