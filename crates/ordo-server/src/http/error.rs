//! The one JSON error shape: `{"code": "...", "message": "...", ...details}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the body.
    pub details: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
    /// The reader's 409, whose body the deployment specification fixes:
    /// `{"error":"read_only","message":"...","writer":"..."}` (no `code`).
    read_only: bool,
    /// Answered with `Connection: close`: the request's body was left unread.
    close: bool,
}

/// What a reader answers to every write.
pub const READ_ONLY_MESSAGE: &str =
    "This instance is a read-only reader. Mutations must be sent to the writer.";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after_secs: None,
            read_only: false,
            close: false,
        }
    }

    /// The same error, closing the connection after it.
    pub fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }

    /// The reader's answer to a write; `writer` is `--writer-addr`, else `unknown`.
    pub fn read_only(writer: Option<&str>) -> ApiError {
        let mut e = ApiError::new(StatusCode::CONFLICT, "READ_ONLY", READ_ONLY_MESSAGE)
            .with("writer", json!(writer.unwrap_or("unknown")));
        e.read_only = true;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.details.insert(key.to_string(), value);
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let message = e.to_string();
        match e {
            Error::NotFound(_) => ApiError::not_found(message),
            Error::BadRequest(_) => ApiError::bad_request(message),
            Error::InvalidRuleSet { errors, .. } => {
                let list: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"step": e.step, "field": e.field, "message": e.message}))
                    .collect();
                ApiError::bad_request(message).with("errors", Value::Array(list))
            }
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", message),
            Error::ReadOnly { writer } => ApiError::read_only(writer.as_deref()),
            Error::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message),
            Error::RateLimited {
                retry_after_secs, ..
            } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
                    .with("retry_after_secs", json!(retry_after_secs));
                err.retry_after_secs = Some(retry_after_secs);
                err
            }
            Error::Overloaded(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", message)
            }
            Error::DeadlineExceeded(_) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", message)
            }
            Error::Execution(e) => {
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "EXECUTION_ERROR", message)
                        .with("step", json!(e.step()))
                        .with("error_code", json!(e.code()));
                if let Some(sub) = e.sub_rule() {
                    err = err.with("sub_rule", json!(sub));
                }
                err
            }
            Error::Eval(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "EXECUTION_ERROR", message)
            }
            Error::Store(e) if e.is_unreachable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "STORE_UNAVAILABLE",
                message,
            ),
            Error::NotLeaseHolder(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_LEASE_HOLDER", message)
            }
            Error::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", message)
            }
            Error::Store(_) | Error::Internal(_) => {
                tracing::error!(error = %message, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
            }
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        ApiError::bad_request(format!("invalid path: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("invalid query: {}", e.body_text()))
    }
}

/// The body as written: a struct rather than a built `Map`, so an error costs one
/// serialisation and no allocation per key.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    message: &'a str,
    #[serde(flatten)]
    details: &'a Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.read_only.then_some("read_only"),
            code: (!self.read_only).then_some(self.code),
            message: &self.message,
            details: &self.details,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            super::body::close_after(&mut response);
        }
        response
    }
}
