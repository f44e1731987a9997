//! Tenant management routes.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::body::{self, Accept};
use super::{AppState, json};
use crate::http::ApiError;
use crate::tenant::TenantConfig;

pub async fn list(State(state): State<AppState>) -> Response {
    json(StatusCode::OK, &state.service.list_tenants())
}

pub async fn get_one(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    Ok(json(StatusCode::OK, &state.service.get_tenant(&id)?))
}

async fn read_tenant(state: &AppState, req: Request) -> Result<TenantConfig, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.service.config().max_body_bytes();
    let (_, bytes) = body::read(&parts.headers, body, limit, Accept::Json).await?;
    body::parse_json(&bytes)
}

pub async fn create(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let tenant = read_tenant(&state, req).await?;
    state.service.put_tenant(tenant.clone(), true).await?;
    Ok(json(
        StatusCode::CREATED,
        &state.service.get_tenant(&tenant.id)?,
    ))
}

pub async fn put(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let tenant = read_tenant(&state, req).await?;
    if tenant.id != id {
        return Err(ApiError::bad_request(format!(
            "the path names tenant '{id}' but the body's id is '{}'",
            tenant.id
        )));
    }
    let created = state.service.put_tenant(tenant, false).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &state.service.get_tenant(&id)?))
}

pub async fn delete(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    state.service.delete_tenant(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
