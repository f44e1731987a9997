//! Errors, one type per stage: loading a ruleset, parsing an expression, validating and
//! compiling a ruleset, evaluating an expression, executing a ruleset.

use std::fmt;

use crate::value::Str;

/// A ruleset document that could not be read as JSON or YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ruleset {format}: {message}")]
pub struct LoadError {
    pub format: &'static str,
    pub message: String,
}

/// An expression that does not parse: what was expected and where (1-based character).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {position}")]
pub struct ParseError {
    /// 1-based character (not byte) position in the expression text.
    pub position: usize,
    pub message: String,
}

/// A standalone expression that does not parse or compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{message}{}", position.map(|p| format!(" at character {p}")).unwrap_or_default())]
    Compile {
        message: String,
        position: Option<usize>,
    },
}

/// One problem found while validating and compiling a ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The step the problem is in, when it is in one.
    pub step: Option<String>,
    /// Where in the document, e.g. `steps.check.branches[0].condition`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a ruleset; compilation reports them all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    pub errors: Vec<ValidationError>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid ruleset ({} error", self.errors.len())?;
        if self.errors.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("): ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What went wrong while evaluating an expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalErrorKind {
    #[error("missing field '{0}'")]
    MissingField(Str),
    #[error("type error: {0}")]
    Type(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("integer overflow in {0}")]
    Overflow(&'static str),
    #[error("{0} produced a non-finite number")]
    NonFinite(&'static str),
    #[error("{func}: {message}")]
    Function { func: &'static str, message: String },
    #[error("limit exceeded: {0}")]
    Limit(String),
}

/// A failure while evaluating an expression. Boxed: errors are rare, and a one-word
/// error keeps the evaluator's results small enough to travel in registers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(transparent)]
pub struct EvalError(Box<EvalErrorKind>);

impl From<EvalErrorKind> for EvalError {
    fn from(kind: EvalErrorKind) -> Self {
        EvalError(Box::new(kind))
    }
}

impl EvalError {
    pub fn kind(&self) -> &EvalErrorKind {
        &self.0
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match *self.0 {
            EvalErrorKind::MissingField(_) => "MISSING_FIELD",
            EvalErrorKind::Type(_) => "TYPE_ERROR",
            EvalErrorKind::DivisionByZero => "DIVISION_BY_ZERO",
            EvalErrorKind::Overflow(_) | EvalErrorKind::NonFinite(_) => "ARITHMETIC_OVERFLOW",
            EvalErrorKind::Function { .. } => "FUNCTION_ERROR",
            EvalErrorKind::Limit(_) => "LIMIT_EXCEEDED",
        }
    }

    pub(crate) fn is_missing_field(&self) -> bool {
        matches!(*self.0, EvalErrorKind::MissingField(_))
    }

    pub(crate) fn missing(path: Str) -> EvalError {
        EvalErrorKind::MissingField(path).into()
    }
    pub(crate) fn type_error(message: String) -> EvalError {
        EvalErrorKind::Type(message).into()
    }
    pub(crate) fn division_by_zero() -> EvalError {
        EvalErrorKind::DivisionByZero.into()
    }
    pub(crate) fn overflow(op: &'static str) -> EvalError {
        EvalErrorKind::Overflow(op).into()
    }
    pub(crate) fn non_finite(op: &'static str) -> EvalError {
        EvalErrorKind::NonFinite(op).into()
    }
    pub(crate) fn limit(message: String) -> EvalError {
        EvalErrorKind::Limit(message).into()
    }
    pub(crate) fn func(func: &'static str, message: impl Into<String>) -> EvalError {
        EvalErrorKind::Function {
            func,
            message: message.into(),
        }
        .into()
    }
}

/// Why an execution failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecErrorKind {
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("no branch matched and the step has no default_next")]
    NoMatchingBranch,
    #[error("execution exceeded max_depth of {limit} steps")]
    MaxDepthExceeded { limit: u32 },
    #[error("execution exceeded its timeout of {limit_ms} ms")]
    Timeout { limit_ms: u64 },
}

/// A failed execution, with the step it failed in.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(transparent)]
pub struct ExecError(Box<ExecErrorInner>);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
struct ExecErrorInner {
    step: String,
    sub_rule: Option<String>,
    kind: ExecErrorKind,
}

impl ExecError {
    pub(crate) fn new(step: String, sub_rule: Option<String>, kind: ExecErrorKind) -> ExecError {
        ExecError(Box::new(ExecErrorInner {
            step,
            sub_rule,
            kind,
        }))
    }

    /// Id of the step that failed.
    pub fn step(&self) -> &str {
        &self.0.step
    }

    /// Name of the sub-rule the step belongs to, when it is not in the main flow.
    pub fn sub_rule(&self) -> Option<&str> {
        self.0.sub_rule.as_deref()
    }

    pub fn kind(&self) -> &ExecErrorKind {
        &self.0.kind
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match &self.0.kind {
            ExecErrorKind::Eval(e) => e.code(),
            ExecErrorKind::NoMatchingBranch => "NO_MATCHING_BRANCH",
            ExecErrorKind::MaxDepthExceeded { .. } => "MAX_DEPTH_EXCEEDED",
            ExecErrorKind::Timeout { .. } => "TIMEOUT",
        }
    }
}

impl fmt::Display for ExecErrorInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sub_rule {
            Some(sub) => write!(
                f,
                "step '{}' of sub-rule '{}': {}",
                self.step, sub, self.kind
            ),
            None => write!(f, "step '{}': {}", self.step, self.kind),
        }
    }
}
