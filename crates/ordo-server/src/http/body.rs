//! Reading request bodies: content type, size limit and JSON depth, each with its own
//! clear error, before anything is acted on.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// What a body may be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    /// JSON or YAML (ruleset uploads).
    JsonOrYaml,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

fn content_format(headers: &HeaderMap, accept: Accept) -> Result<Format, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "{what}; send Content-Type: application/json{}",
                if accept == Accept::JsonOrYaml {
                    " (or application/yaml)"
                } else {
                    ""
                }
            ),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("the request has no Content-Type"));
    };
    let value = value.to_str().unwrap_or_default();
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(Format::Json);
    }
    if accept == Accept::JsonOrYaml
        && matches!(
            essence.as_str(),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
        )
    {
        return Ok(Format::Yaml);
    }
    Err(unsupported(&format!(
        "Content-Type '{value}' is not supported"
    )))
}

/// The most a refusal reads of the body it refuses, and how long it waits for it.
const DISCARD_LIMIT: usize = 64 * 1024;
const DISCARD_WAIT: Duration = Duration::from_millis(500);

/// The body's declared length, if it declares one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads and drops the body of a request refused before its body was read. hyper
/// closes a connection whose request body is left unread (it may still be on its
/// way), and a keep-alive client's next request on that connection then fails for no
/// fault of its own. A refusal is answered on a reusable connection when the body is
/// small and arrives promptly; otherwise this says no, and the answer must carry
/// `Connection: close`.
pub async fn discard(headers: &HeaderMap, body: Body) -> bool {
    if content_length(headers).is_some_and(|len| len > DISCARD_LIMIT as u64) {
        return false;
    }
    matches!(
        tokio::time::timeout(DISCARD_WAIT, axum::body::to_bytes(body, DISCARD_LIMIT)).await,
        Ok(Ok(_))
    )
}

/// Marks `response` as the last on its connection: the request's body was left unread.
pub fn close_after(response: &mut axum::response::Response) {
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
}

/// `error`, answered after the refused request's body is discarded.
pub async fn refuse(headers: &HeaderMap, body: Body, error: ApiError) -> ApiError {
    if discard(headers, body).await {
        error
    } else {
        error.closing()
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    accept: Accept,
) -> Result<(Format, axum::body::Bytes), ApiError> {
    let format = match content_format(headers, accept) {
        Ok(format) => format,
        Err(e) => return Err(refuse(headers, body, e).await),
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than the {limit} bytes allowed"),
        )
    };
    if content_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large().closing());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else {
            ApiError::bad_request(format!("could not read the request body: {inner}"))
        }
    })?;
    Ok((format, bytes))
}

/// Parses JSON, naming the problem and its position. serde_json refuses nesting deeper
/// than 128 levels, which is the documented limit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(json_error)
}

pub fn json_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    if text.contains("recursion limit exceeded") {
        ApiError::bad_request(format!(
            "JSON is nested deeper than 128 levels (line {}, column {})",
            e.line(),
            e.column()
        ))
    } else if e.is_syntax() || e.is_eof() {
        ApiError::bad_request(format!("invalid JSON: {text}"))
    } else {
        ApiError::bad_request(format!("invalid request: {text}"))
    }
}
