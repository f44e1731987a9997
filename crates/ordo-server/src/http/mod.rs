//! The HTTP transport: a thin adapter that reads requests, calls the [`Service`] and
//! writes JSON. The request path is two layers: one for every request (request id,
//! time limit, metrics) and, on `/api/`, the gate (rate limits, API token, read-only).

mod body;
mod error;
mod execute;
mod jobs;
mod ops;
mod rulesets;
mod tenants;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::{Counter, Histogram};
use serde::Serialize;
use tracing::Instrument;

pub use error::ApiError;

use crate::config::Role;
use crate::service::Service;

/// What every handler can reach. One `Arc`, because every layer clones it per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub service: Arc<Service>,
    pub metrics: Option<crate::telemetry::Metrics>,
    request_metrics: RequestMetrics,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(service: Arc<Service>, metrics: Option<crate::telemetry::Metrics>) -> AppState {
        AppState(Arc::new(Shared {
            service,
            metrics,
            request_metrics: RequestMetrics::new(),
        }))
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/rulesets",
            get(rulesets::list).post(rulesets::create_or_update),
        )
        .route(
            "/api/v1/rulesets/{name}",
            get(rulesets::get_one)
                .put(rulesets::put)
                .delete(rulesets::delete),
        )
        .route("/api/v1/rulesets/{name}/versions", get(rulesets::versions))
        .route(
            "/api/v1/rulesets/{name}/versions/{seq}",
            get(rulesets::version),
        )
        .route("/api/v1/rulesets/{name}/rollback", post(rulesets::rollback))
        .route("/api/v1/rulesets/{name}/test", post(execute::test))
        .route("/api/v1/execute/{name}", post(execute::execute))
        .route("/api/v1/execute/{name}/batch", post(execute::batch))
        .route("/api/v1/execute/{name}/async", post(jobs::submit))
        .route("/api/v1/traces", get(jobs::list))
        .route("/api/v1/traces/{id}", get(jobs::get_one))
        .route(
            "/api/v1/admin/dlq",
            get(jobs::dlq_list).delete(jobs::dlq_purge),
        )
        .route(
            "/api/v1/admin/dlq/{id}",
            axum::routing::delete(jobs::dlq_purge_one),
        )
        .route("/api/v1/admin/dlq/{id}/replay", post(jobs::dlq_replay))
        .route("/api/v1/eval", post(execute::eval))
        .route("/api/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/api/v1/tenants/{id}",
            get(tenants::get_one)
                .put(tenants::put)
                .delete(tenants::delete),
        )
        .route("/api/v1/admin/reload", post(ops::reload))
        // Tokens can be added by a configuration reload: the check is always in place
        // and lets everything through while none is configured.
        .route_layer(middleware::from_fn_with_state(state.clone(), api_gate));

    let router = Router::new()
        .merge(api)
        .route("/health", get(ops::health))
        .route("/healthz/live", get(ops::live))
        .route("/healthz/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    router
        .layer(middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}

/// Route templates: request metrics are kept per (route, method, status) slot.
const ROUTES: &[&str] = &[
    "/api/v1/execute/{name}",
    "/api/v1/execute/{name}/batch",
    "/api/v1/execute/{name}/async",
    "/api/v1/traces",
    "/api/v1/traces/{id}",
    "/api/v1/admin/dlq",
    "/api/v1/admin/dlq/{id}",
    "/api/v1/admin/dlq/{id}/replay",
    "/api/v1/eval",
    "/api/v1/rulesets",
    "/api/v1/rulesets/{name}",
    "/api/v1/rulesets/{name}/versions",
    "/api/v1/rulesets/{name}/versions/{seq}",
    "/api/v1/rulesets/{name}/rollback",
    "/api/v1/rulesets/{name}/test",
    "/api/v1/tenants",
    "/api/v1/tenants/{id}",
    "/api/v1/admin/reload",
    "/health",
    "/healthz/live",
    "/healthz/ready",
    "/metrics",
    "unmatched",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "OTHER"];
const STATUSES: &[&str] = &[
    "200", "201", "204", "400", "401", "403", "404", "405", "408", "409", "413", "415", "422",
    "429", "500", "503", "other",
];

/// Request counters and latency histograms, registered on first use of each slot and
/// then reached by index: no key hashing or registry lookup per request.
pub struct RequestMetrics {
    counters: Box<[OnceLock<Counter>]>,
    durations: Box<[OnceLock<Histogram>]>,
}

impl RequestMetrics {
    fn new() -> RequestMetrics {
        let n = ROUTES.len() * METHODS.len();
        RequestMetrics {
            counters: (0..n * STATUSES.len()).map(|_| OnceLock::new()).collect(),
            durations: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    fn record(&self, route: usize, method: usize, status: usize, elapsed: std::time::Duration) {
        let rm = route * METHODS.len() + method;
        let (r, m, st) = (
            ROUTES.get(route).copied().unwrap_or("unmatched"),
            METHODS.get(method).copied().unwrap_or("OTHER"),
            STATUSES.get(status).copied().unwrap_or("other"),
        );
        if let Some(slot) = self.counters.get(rm * STATUSES.len() + status) {
            slot.get_or_init(|| {
                metrics::counter!("ordo_http_requests_total", "route" => r, "method" => m, "status" => st)
            })
            .increment(1);
        }
        if let Some(slot) = self.durations.get(rm) {
            slot.get_or_init(|| {
                metrics::histogram!("ordo_http_request_duration_seconds", "route" => r, "method" => m)
            })
            .record(elapsed);
        }
    }
}

fn position(list: &[&str], item: &str) -> usize {
    list.iter()
        .position(|x| *x == item)
        .unwrap_or(list.len() - 1)
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);
static REQUEST_PREFIX: OnceLock<String> = OnceLock::new();

/// The request's id: the caller's `x-request-id` when it is sane, else a new one
/// (a per-process random prefix and a counter: unique without a random draw per request).
fn request_id_of(req: &Request) -> HeaderValue {
    if let Some(v) = req.headers().get("x-request-id")
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let prefix = REQUEST_PREFIX.get_or_init(|| {
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(12)
            .collect()
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n}")).unwrap_or(HeaderValue::from_static("-"))
}

/// What every request passes through, in one layer (each layer costs a clone of the
/// service stack per request): it is tagged with an id, echoed in the response; it is
/// bounded by the current `request_timeout_ms`; and it is counted by route template,
/// method and status, with its duration. Requests other than executions run inside a
/// span carrying the id, so every log line they cause (audit events of commits
/// included) names the request; executions skip the span to stay cheap.
async fn front(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    // Handlers see the id as the request's own header, generated or not.
    req.headers_mut().insert("x-request-id", id.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(ROUTES.len() - 1, |p| position(ROUTES, p.as_str()));
    let method = position(METHODS, req.method().as_str());
    let is_execution = req.uri().path().starts_with("/api/v1/execute/");
    let span = (!is_execution).then(|| {
        tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or("-"),
            method = %req.method(),
            path = req.uri().path(),
        )
    });
    let timeout = state.service.config().request_timeout();
    let run = async move {
        let Some(timeout) = timeout else {
            return next.run(req).await;
        };
        match tokio::time::timeout(timeout, next.run(req)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!("the request took longer than {} ms", timeout.as_millis()),
            )
            .into_response(),
        }
    };
    let mut response = match span {
        Some(span) => run.instrument(span).await,
        None => run.await,
    };
    let status = position(STATUSES, response.status().as_str());
    state
        .request_metrics
        .record(route, method, status, started.elapsed());
    response.headers_mut().insert("x-request-id", id);
    response
}

/// Guards `/api/`: nothing is served before the commit log is attached (an empty
/// catalog would answer "not found" for rulesets that exist), an API token is required
/// when any is configured, and a reader refuses writes.
async fn api_gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&state.service, &req);
    req.extensions_mut().insert(ClientIp(ip));
    let group = if is_execution(
        req.extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    ) {
        crate::traffic::Group::Execute
    } else {
        crate::traffic::Group::Admin
    };
    // Before the token check: guessing tokens is rate limited too.
    let refused = match state.service.traffic().check_platform(group, ip) {
        Err(e) => Some(ApiError::from(e).into_response()),
        Ok(()) => refusal(&state, &req),
    };
    match refused {
        Some(response) => discard_then(req, response).await,
        None => next.run(req).await,
    }
}

/// `response` to `req`, refused before its body was read: see [`body::discard`].
async fn discard_then(req: Request, mut response: Response) -> Response {
    let (parts, request_body) = req.into_parts();
    if !body::discard(&parts.headers, request_body).await {
        body::close_after(&mut response);
    }
    response
}

/// The client's address, as the rate limits key it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The client of `req`: its socket's peer, or what a trusted proxy forwarded.
fn client_ip(svc: &Service, req: &Request) -> std::net::IpAddr {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    svc.traffic().client_ip(peer, forwarded)
}

/// Routes in the execute group of the platform limits; the rest of `/api/` is admin.
fn is_execution(route: Option<&str>) -> bool {
    route.is_some_and(|r| {
        r.starts_with("/api/v1/execute/") || r == "/api/v1/eval" || r.ends_with("/test")
    })
}

/// Why `/api/` turns a request away, if it does (one look at the configuration).
fn refusal(state: &AppState, req: &Request) -> Option<Response> {
    if !state.service.is_attached() {
        return Some(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "NOT_READY",
                format!("not ready: {}", state.service.not_attached_reason()),
            )
            .into_response(),
        );
    }
    let config = state.service.config();
    let headers = req.headers();
    let presented = crate::auth::presented(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    match crate::auth::check(&config.api_token, presented) {
        Ok(()) => {}
        Err(crate::auth::Refused::Missing) => {
            return Some(unauthorized(
                "an API token is required (Authorization: Bearer <token> or X-API-Token)",
            ));
        }
        Err(crate::auth::Refused::Invalid) => {
            return Some(unauthorized("the API token is not valid"));
        }
    }
    // A reader answers every write with its 409 before the body is read, so that even
    // a malformed write learns where the writer is. Executions (async ones too),
    // evaluations and rule tests are reads, whatever their method; so is a reload,
    // which re-reads the instance's own sources, and so is the management of its own
    // async jobs, which never touch the commit log.
    if config.role == Role::Reader && req.method() != axum::http::Method::GET {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let read = matches!(
            route,
            Some(
                "/api/v1/execute/{name}"
                    | "/api/v1/execute/{name}/batch"
                    | "/api/v1/execute/{name}/async"
                    | "/api/v1/admin/dlq"
                    | "/api/v1/admin/dlq/{id}"
                    | "/api/v1/admin/dlq/{id}/replay"
                    | "/api/v1/eval"
                    | "/api/v1/rulesets/{name}/test"
                    | "/api/v1/admin/reload"
            )
        );
        if !read {
            return Some(ApiError::read_only(config.writer_addr.as_deref()).into_response());
        }
    }
    None
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The tenant a request names: `X-Tenant-ID`, else `?tenant_id=`.
fn requested_tenant<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    if let Some(v) = headers.get("x-tenant-id") {
        return v.to_str().ok();
    }
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("tenant_id="))
}

/// A JSON response.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("could not encode the response: {e}"),
        )
        .into_response(),
    }
}
