//! Async executions, their traces and the dead-letter queue.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use ordo_core::Value;
use serde::Deserialize;
use serde_json::json as j;

use super::execute::admit_then_read;
use super::{AppState, body, json, requested_tenant};
use crate::http::ApiError;
use crate::service::{JobInput, MAX_LIST};
use crate::store::traces::{DlqState, Trace, TraceFilter, TraceStatus};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AsyncRequest {
    input: Option<Value>,
    inputs: Option<Vec<Value>>,
}

/// `POST /api/v1/execute/{name}/async`: `{"input"}` or `{"inputs": [...]}`; 202 with
/// the trace id. Rate limits and execution bounds apply to the submission as to an
/// execution; a full queue answers 503 at once and leaves no trace.
pub async fn submit(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let (parts, body) = req.into_parts();
    let svc = &state.service;
    // Admitted like an execution; the slot is held only for the submission, as the
    // job itself runs on a worker.
    let (_permit, bytes) = admit_then_read(svc, &parts, body, Some(&name)).await?;
    let tenant_id = {
        let catalog = svc.catalog();
        let tenant = svc.tenant(&catalog, requested_tenant(&parts.headers, &parts.uri))?;
        tenant.config.id.clone()
    };
    let request: AsyncRequest = body::parse_json(&bytes)?;
    let input = match (request.input, request.inputs) {
        (Some(input), None) => JobInput::One(input),
        (None, Some(inputs)) if !inputs.is_empty() => JobInput::Many(inputs),
        (None, Some(_)) => return Err(ApiError::bad_request("`inputs` is empty")),
        _ => {
            return Err(ApiError::bad_request(
                "send either `input` (one input) or `inputs` (a batch)",
            ));
        }
    };
    let id = svc
        .submit_async(&tenant_id, &name, input, bytes.len() as u64)
        .await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &j!({"trace_id": id, "status": TraceStatus::Pending}),
    ))
}

/// A trace as shown: its fields, with the result as JSON.
fn shown(trace: Trace, with_result: bool) -> serde_json::Value {
    let result = trace
        .result
        .as_deref()
        .filter(|_| with_result)
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
    let mut value = serde_json::to_value(&trace).unwrap_or_default();
    if let (Some(obj), Some(result)) = (value.as_object_mut(), result) {
        obj.insert("result".into(), result);
    }
    value
}

/// `GET /api/v1/traces/{id}`: a trace of the request's tenant.
pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let svc = &state.service;
    let tenant = {
        let catalog = svc.catalog();
        svc.tenant(&catalog, requested_tenant(req.headers(), req.uri()))?
            .config
            .id
            .clone()
    };
    let trace = svc.trace(&tenant, &id).await?;
    Ok(json(StatusCode::OK, &shown(trace, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    #[allow(dead_code)]
    tenant_id: Option<String>,
}

fn limit(q: &ListQuery) -> u32 {
    q.limit.unwrap_or(100).clamp(1, MAX_LIST)
}

/// `GET /api/v1/traces?status=&limit=`: the tenant's traces, newest first, without
/// results.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TraceStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be pending, running, completed or failed, got {s:?}"
            ))
        })?),
    };
    let svc = &state.service;
    let tenant = {
        let catalog = svc.catalog();
        svc.tenant(&catalog, requested_tenant(req.headers(), req.uri()))?
            .config
            .id
            .clone()
    };
    let traces = svc
        .traces(&TraceFilter {
            tenant: Some(tenant),
            status,
            limit: limit(&q),
            ..TraceFilter::default()
        })
        .await?;
    let shown: Vec<_> = traces.into_iter().map(|t| shown(t, false)).collect();
    Ok(json(StatusCode::OK, &j!({"traces": shown})))
}

fn dlq_state(q: &ListQuery) -> Result<Option<DlqState>, ApiError> {
    match q.state.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => DlqState::parse(s).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("state must be retrying or exhausted, got {s:?}"))
        }),
    }
}

/// `GET /api/v1/admin/dlq?state=`: dead-letter entries of every tenant.
pub async fn dlq_list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let entries = state
        .service
        .traces(&TraceFilter {
            dlq_only: true,
            dlq: dlq_state(&q)?,
            limit: limit(&q),
            ..TraceFilter::default()
        })
        .await?;
    let shown: Vec<_> = entries.into_iter().map(|t| shown(t, false)).collect();
    Ok(json(StatusCode::OK, &j!({"entries": shown})))
}

/// `POST /api/v1/admin/dlq/{id}/replay`: the entry runs again, whatever its state.
pub async fn dlq_replay(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let trace = state.service.replay(&id).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &j!({"trace_id": trace.id, "status": trace.status}),
    ))
}

/// `DELETE /api/v1/admin/dlq/{id}`: one entry.
pub async fn dlq_purge_one(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let purged = state.service.purge_dlq(Some(&id), None).await?;
    Ok(json(StatusCode::OK, &j!({"purged": purged})))
}

/// `DELETE /api/v1/admin/dlq?state=`: every entry (in that state).
pub async fn dlq_purge(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let purged = state.service.purge_dlq(None, dlq_state(&q)?).await?;
    Ok(json(StatusCode::OK, &j!({"purged": purged})))
}
