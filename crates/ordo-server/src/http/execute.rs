//! Executions: single, batch, rule tests and expression evaluation.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use ordo_core::Value;
use serde::Deserialize;

use super::body::{self, Accept};
use super::{AppState, ClientIp, json, requested_tenant};
use crate::http::ApiError;
use crate::service::{BatchOptions, Service, TestCase};
use crate::traffic::{Caller, Permit};

#[derive(Deserialize)]
struct ExecuteRequest {
    #[serde(default)]
    input: Value,
    #[serde(default)]
    trace: bool,
}

/// Admission before the body is read, so a rejected request costs no body read: the
/// tenant must exist and be enabled, the ruleset (when named) must exist here, and the
/// rate limits and execution bounds must let the request in. Then the JSON body. The
/// permit counts the request as running until it is dropped: a client slow to send
/// its body holds its slot.
pub(super) async fn admit_then_read(
    svc: &Service,
    parts: &Parts,
    body: Body,
    ruleset: Option<&str>,
) -> Result<(Option<Permit>, Bytes), ApiError> {
    let admitted = (|| {
        let catalog = svc.catalog();
        let tenant = svc.tenant(&catalog, requested_tenant(&parts.headers, &parts.uri))?;
        match ruleset {
            Some(name) => {
                let entry = svc.get(tenant, name)?;
                let caller = Caller {
                    ip: client_ip(parts),
                    headers: &parts.headers,
                };
                svc.admit_execution(tenant, entry, &caller).map(Some)
            }
            None => svc.admit(tenant).map(|()| None),
        }
    })();
    let permit = match admitted {
        Ok(permit) => permit,
        Err(e) => return Err(body::refuse(&parts.headers, body, e.into()).await),
    };
    let limit = svc.config().max_body_bytes();
    let (_, bytes) = body::read(&parts.headers, body, limit, Accept::Json).await?;
    Ok((permit, bytes))
}

/// The client address the API gate found.
fn client_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<ClientIp>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

pub async fn execute(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let (parts, body) = req.into_parts();
    let svc = &state.service;
    let (_permit, bytes) = admit_then_read(svc, &parts, body, Some(&name)).await?;
    let request: ExecuteRequest = body::parse_json(&bytes)?;
    // The snapshot is taken again after the body is read, so the execution runs on the
    // newest rules; nothing is held across the await above.
    let catalog = svc.catalog();
    let tenant = svc.tenant(&catalog, requested_tenant(&parts.headers, &parts.uri))?;
    let entry = svc.get(tenant, &name)?;
    let result = svc.execute(tenant, entry, &request.input, request.trace);
    sample(svc, &parts, &tenant.config.id, &name, &result);
    Ok(json(StatusCode::OK, &result?))
}

static EXECUTIONS: AtomicU64 = AtomicU64::new(0);

/// Logs one execution in every `log_executions_every`: enough to see what traffic looks
/// like without a log line per request.
fn sample(
    svc: &Service,
    parts: &Parts,
    tenant: &str,
    ruleset: &str,
    result: &Result<crate::service::Executed<'_>, crate::error::Error>,
) {
    let every = svc.config().log_executions_every;
    if every == 0
        || !EXECUTIONS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(every)
    {
        return;
    }
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    match result {
        Ok(done) => tracing::info!(
            target: "ordo::execution",
            tenant, ruleset, request_id,
            code = done.outcome.code(),
            duration_us = done.duration_us,
            sampled_one_in = every,
            "execution"
        ),
        Err(e) => tracing::info!(
            target: "ordo::execution",
            tenant, ruleset, request_id,
            error = %e,
            sampled_one_in = every,
            "execution failed"
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    inputs: Vec<Value>,
    #[serde(default)]
    options: BatchOptions,
}

pub async fn batch(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let (parts, body) = req.into_parts();
    let svc = state.service.clone();
    let (_permit, bytes) = admit_then_read(&svc, &parts, body, Some(&name)).await?;
    let request: BatchRequest = body::parse_json(&bytes)?;
    let catalog = svc.catalog_full();
    let tenant = svc
        .tenant(&catalog, requested_tenant(&parts.headers, &parts.uri))?
        .clone();
    let entry = svc.get(&tenant, &name)?.clone();
    // A batch can take milliseconds: it runs on the blocking pool, not an async worker.
    let report = tokio::task::spawn_blocking(move || {
        svc.batch(&tenant, &entry, &request.inputs, request.options)
    })
    .await
    .map_err(|e| ApiError::from(crate::error::Error::Internal(e.to_string())))??;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    tests: Vec<TestCase>,
}

pub async fn test(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let (parts, body) = req.into_parts();
    let svc = &state.service;
    let (_permit, bytes) = admit_then_read(svc, &parts, body, Some(&name)).await?;
    let request: TestRequest = body::parse_json(&bytes)?;
    let catalog = svc.catalog();
    let tenant = svc.tenant(&catalog, requested_tenant(&parts.headers, &parts.uri))?;
    let entry = svc.get(tenant, &name)?;
    let report = svc.run_tests(tenant, entry, &request.tests)?;
    Ok(json(StatusCode::OK, &report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalRequest {
    expression: String,
    #[serde(default)]
    context: Value,
}

pub async fn eval(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let svc = &state.service;
    let (_permit, bytes) = admit_then_read(svc, &parts, body, None).await?;
    let request: EvalRequest = body::parse_json(&bytes)?;
    let result = svc.eval(&request.expression, &request.context)?;
    Ok(json(StatusCode::OK, &result))
}
