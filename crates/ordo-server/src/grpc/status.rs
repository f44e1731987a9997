//! Service errors as gRPC statuses, matching the HTTP API's status codes.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::error::Error;

/// The trailing metadata key that carries the writer's address on a reader's refusal.
pub const WRITER_KEY: &str = "x-ordo-writer";

/// A reader's answer to a write: FAILED_PRECONDITION naming the writer, in the message
/// and as `x-ordo-writer` trailing metadata.
pub fn read_only(writer: Option<&str>) -> Status {
    let shown = writer.unwrap_or("unknown");
    let mut metadata = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(shown) {
        metadata.insert(WRITER_KEY, value);
    }
    Status::with_metadata(
        Code::FailedPrecondition,
        format!("this instance is a read-only reader; send writes to the writer at {shown}"),
        metadata,
    )
}

/// The status of a service error.
pub fn status_of(e: Error) -> Status {
    let message = e.to_string();
    match e {
        Error::NotFound(_) => Status::not_found(message),
        Error::BadRequest(_) | Error::InvalidRuleSet { .. } => Status::invalid_argument(message),
        Error::Conflict(_) => Status::already_exists(message),
        Error::ReadOnly { writer } => read_only(writer.as_deref()),
        Error::Forbidden(_) => Status::permission_denied(message),
        Error::RateLimited {
            retry_after_secs, ..
        } => {
            let mut metadata = MetadataMap::new();
            metadata.insert("retry-after", MetadataValue::from(retry_after_secs));
            Status::with_metadata(Code::ResourceExhausted, message, metadata)
        }
        Error::Overloaded(_) => Status::unavailable(message),
        Error::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        Error::Execution(e) if e.code() == "TIMEOUT" => Status::deadline_exceeded(message),
        Error::Execution(_) | Error::Eval(_) => Status::invalid_argument(message),
        Error::Store(e) if e.is_unreachable() => Status::unavailable(message),
        Error::NotLeaseHolder(_) | Error::Unavailable(_) => Status::unavailable(message),
        Error::Store(_) | Error::Internal(_) => {
            tracing::error!(error = %message, "gRPC call failed");
            Status::internal(message)
        }
    }
}
