//! Health, readiness, metrics and admin routes. None of them is tenant-gated or
//! rate-limited; only reload (under `/api/`) needs the API token.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, json};
use crate::http::ApiError;

pub async fn health(State(state): State<AppState>) -> Response {
    let svc = &state.service;
    let catalog = svc.catalog_full();
    let not_ready = svc.not_ready_reasons();
    let degraded = svc.degraded_reasons();
    let status = if !not_ready.is_empty() {
        "not_ready"
    } else if !degraded.is_empty() {
        "degraded"
    } else {
        "ok"
    };
    let storage = svc.storage_info();
    let body = json!({
        "status": status,
        "role": svc.config().role.as_str(),
        "instance_id": svc.instance_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": svc.uptime_seconds(),
        "storage": {
            "backend": storage.backend,
            "durable": storage.durable,
            "path": storage.path,
            "url": storage.url,
            "rules_dir": svc.rules_dir(),
            "last_seq": catalog.seq,
            "rulesets": catalog.ruleset_count(),
            "tenants": catalog.tenants.len(),
        },
        "sync": {
            "applied_seq": catalog.seq,
            "rules_dir": svc.rules_sync(),
            "nats": svc.nats().map(|n| n.to_json(svc.is_reader(), &svc.consumer_name())),
            "catalog_hash": catalog.content_hash(),
        },
        "checks": {
            "ready": not_ready.is_empty(),
            "not_ready_reasons": not_ready,
            "degraded_reasons": degraded,
            "rules_dir_problems": svc.file_problems(),
        },
    });
    json(StatusCode::OK, &body)
}

pub async fn live() -> Response {
    json(StatusCode::OK, &json!({"status": "alive"}))
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let reasons = state.service.not_ready_reasons();
    if reasons.is_empty() {
        json(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "not_ready", "reasons": reasons}),
        )
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    // Gauges read when scraped rather than kept up to date on every request.
    let svc = &state.service;
    metrics::gauge!("ordo_executions_in_flight").set(f64::from(svc.traffic().inflight()));
    let jobs = svc.jobs();
    metrics::gauge!("ordo_queue_depth").set(jobs.depth() as f64);
    metrics::gauge!("ordo_queue_memory_bytes").set(jobs.queued_bytes() as f64);
    metrics::gauge!("ordo_queue_workers_busy").set(f64::from(jobs.busy()));
    if let Ok(counts) = svc.trace_counts().await {
        metrics::gauge!("ordo_dlq_entries", "state" => "retrying").set(counts.dlq_retrying as f64);
        metrics::gauge!("ordo_dlq_entries", "state" => "exhausted")
            .set(counts.dlq_exhausted as f64);
        for (status, n) in &counts.by_status {
            metrics::gauge!("ordo_traces", "status" => status.as_str()).set(*n as f64);
        }
        let age_secs = counts.oldest_pending_ms.map_or(0.0, |created| {
            (crate::service::now_ms().saturating_sub(created)) as f64 / 1000.0
        });
        metrics::gauge!("ordo_trace_oldest_pending_seconds").set(age_secs);
    }
    let text = match &state.metrics {
        Some(metrics) => metrics.render().await,
        None => String::new(),
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let report = state.service.reload().await?;
    Ok(json(StatusCode::OK, &report))
}
