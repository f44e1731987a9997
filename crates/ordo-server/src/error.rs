//! The service layer's error: what went wrong, independent of the transport.

use ordo_core::{ExecError, ValidationError};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A ruleset that does not validate; every problem is listed.
    #[error("{message}")]
    InvalidRuleSet {
        message: String,
        errors: Vec<ValidationError>,
    },
    #[error("{0}")]
    Conflict(String),
    /// A write sent to a reader.
    #[error("this instance is a read-only reader; mutations must be sent to the writer")]
    ReadOnly { writer: Option<String> },
    /// A quota (such as a tenant's `max_rules`) would be exceeded.
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// Too many executions in flight (globally or for the ruleset): shed at once.
    #[error("{0}")]
    Overloaded(String),
    /// The caller's deadline passed before the work finished.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Execution(#[from] ExecError),
    /// An expression evaluated by `/eval` failed.
    #[error("{0}")]
    Eval(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A writer that does not hold the writer lease (another writer does).
    #[error("{0}")]
    NotLeaseHolder(String),
    /// The instance cannot serve yet (its store is not attached).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
