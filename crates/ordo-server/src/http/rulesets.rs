//! Ruleset CRUD, versions and rollback.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordo_core::RuleSet;
use serde::Deserialize;

use super::body::{self, Accept, Format};
use super::{AppState, json, requested_tenant};
use crate::http::ApiError;
use crate::service::PutStatus;

/// The `{name}` of a ruleset route, checked by the same rule as `config.name`.
pub struct RuleName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RuleName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state).await?;
        check_name(&name)?;
        Ok(RuleName(name))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    ordo_core::validate_name(name).map_err(|e| ApiError::bad_request(format!("ruleset name: {e}")))
}

/// The id of the (existing, enabled) tenant a request acts for.
fn tenant_id(state: &AppState, req: &Request) -> Result<String, ApiError> {
    let catalog = state.service.catalog();
    let tenant = state
        .service
        .tenant(&catalog, requested_tenant(req.headers(), req.uri()))?;
    Ok(tenant.config.id.clone())
}

pub async fn list(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let catalog = state.service.catalog();
    let tenant = state
        .service
        .tenant(&catalog, requested_tenant(req.headers(), req.uri()))?;
    Ok(json(StatusCode::OK, &state.service.list(tenant)))
}

pub async fn get_one(
    State(state): State<AppState>,
    RuleName(name): RuleName,
    req: Request,
) -> Result<Response, ApiError> {
    let catalog = state.service.catalog();
    let tenant = state
        .service
        .tenant(&catalog, requested_tenant(req.headers(), req.uri()))?;
    let entry = state.service.get(tenant, &name)?.clone();
    drop(catalog);
    // The stored canonical JSON is the ruleset exactly as written: served as is.
    let content = state.service.content(&entry).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        content.to_string(),
    )
        .into_response())
}

async fn read_ruleset(state: &AppState, req: Request) -> Result<(String, RuleSet), ApiError> {
    let tenant = tenant_id(state, &req)?;
    let (parts, body) = req.into_parts();
    let limit = state.service.config().max_body_bytes();
    let (format, bytes) = body::read(&parts.headers, body, limit, Accept::JsonOrYaml).await?;
    let ruleset = match format {
        Format::Json => body::parse_json::<RuleSet>(&bytes)?,
        Format::Yaml => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            RuleSet::from_yaml(text).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
    };
    Ok((tenant, ruleset))
}

fn put_response(out: crate::service::PutOutcome) -> Response {
    let status = match out.status {
        PutStatus::Created => StatusCode::CREATED,
        PutStatus::Updated | PutStatus::Unchanged => StatusCode::OK,
    };
    json(status, &out)
}

pub async fn create_or_update(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (tenant, ruleset) = read_ruleset(&state, req).await?;
    let out = state.service.put_ruleset(tenant, ruleset, None).await?;
    Ok(put_response(out))
}

pub async fn put(
    State(state): State<AppState>,
    RuleName(name): RuleName,
    req: Request,
) -> Result<Response, ApiError> {
    let (tenant, ruleset) = read_ruleset(&state, req).await?;
    let out = state
        .service
        .put_ruleset(tenant, ruleset, Some(name))
        .await?;
    Ok(put_response(out))
}

pub async fn delete(
    State(state): State<AppState>,
    RuleName(name): RuleName,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&state, &req)?;
    state.service.delete_ruleset(tenant, name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn versions(
    State(state): State<AppState>,
    RuleName(name): RuleName,
    req: Request,
) -> Result<Response, ApiError> {
    let catalog = state.service.catalog_full();
    let tenant = state
        .service
        .tenant(&catalog, requested_tenant(req.headers(), req.uri()))?;
    let versions = state.service.versions(tenant, &name).await?;
    Ok(json(StatusCode::OK, &versions))
}

pub async fn version(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path((name, seq)) = path?;
    check_name(&name)?;
    let seq: u64 = seq.parse().map_err(|_| {
        ApiError::bad_request(format!("'{seq}' is not a commit seq (a positive integer)"))
    })?;
    let catalog = state.service.catalog_full();
    let tenant = state
        .service
        .tenant(&catalog, requested_tenant(req.headers(), req.uri()))?;
    let stored = state.service.version(tenant, &name, seq).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        stored.content.to_string(),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    seq: u64,
}

pub async fn rollback(
    State(state): State<AppState>,
    RuleName(name): RuleName,
    req: Request,
) -> Result<Response, ApiError> {
    let tenant = tenant_id(&state, &req)?;
    let (parts, body) = req.into_parts();
    let limit = state.service.config().max_body_bytes();
    let (_, bytes) = body::read(&parts.headers, body, limit, Accept::Json).await?;
    let request: RollbackRequest = body::parse_json(&bytes)?;
    let out = state.service.rollback(tenant, name, request.seq).await?;
    Ok(json(StatusCode::OK, &out))
}
