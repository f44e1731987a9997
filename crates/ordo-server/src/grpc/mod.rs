//! The gRPC transport (tonic): `ordo.v1.OrdoService` over the same service layer as
//! HTTP, the standard `grpc.health.v1` health service and server reflection.

mod deadline;
mod rpc;
mod status;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::Config;
use crate::service::Service;

pub use status::status_of;

/// The service name the health service reports on (besides the whole server, "").
const SERVICE_NAME: &str = "ordo.v1.OrdoService";

/// Why the gRPC server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("gRPC TLS: {0}")]
    Tls(String),
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// The TLS settings of `config`, read now so that a missing or unreadable file stops
/// the start.
pub fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, GrpcError> {
    let (Some(cert), Some(key)) = (&config.grpc_tls_cert, &config.grpc_tls_key) else {
        return Ok(None);
    };
    let read = |what, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| GrpcError::Read {
            what,
            path: path.display().to_string(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read("certificate", cert)?,
        read("key", key)?,
    ));
    if let Some(ca) = &config.grpc_tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
    }
    Ok(Some(tls))
}

/// The services gRPC serves, built once and shared by every serving thread (a health
/// status set once is seen on all of them).
#[derive(Clone)]
struct Services {
    routes: tonic::service::Routes,
    reporter: tonic_health::server::HealthReporter,
}

/// Serves gRPC on `threads` threads, each running a single-threaded runtime of its own
/// that accepts from the same listener, until `stop` turns true; then in-flight calls
/// finish. HTTP/2 runs each call of a connection as a task: on a shared multi-threaded
/// runtime those tasks run on any worker and contend for the connection's lock (under
/// load a single connection cost twice the CPU per call). On one thread, a
/// connection's calls never contend; connections spread over the threads.
pub async fn serve_threads(
    service: Arc<Service>,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    threads: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), GrpcError> {
    let limit = usize::try_from(service.config().max_body_bytes).unwrap_or(usize::MAX);
    let (reporter, health) = tonic_health::server::health_reporter();
    let ordo = ordo_proto::v1::ordo_service_server::OrdoServiceServer::new(rpc::Ordo::new(
        service.clone(),
    ))
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ordo_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| GrpcError::Reflection(e.to_string()))?;
    let services = Services {
        routes: tonic::service::Routes::new(health)
            .add_service(reflection)
            .add_service(ordo),
        reporter: reporter.clone(),
    };
    // Both services are known to the health service before the first call can come.
    let initial = serving_status(&service);
    set_health(&reporter, initial).await;
    tokio::spawn(report_health(service, reporter, initial));
    let listener = listener
        .into_std()
        .map_err(|e| GrpcError::Serve(e.to_string()))?;
    let mut done = Vec::new();
    for i in 0..threads.max(1) {
        let listener = listener
            .try_clone()
            .map_err(|e| GrpcError::Serve(e.to_string()))?;
        let (services, tls, mut stop) = (services.clone(), tls.clone(), stop.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("grpc-{i}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| GrpcError::Serve(e.to_string()))
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)
                                .map_err(|e| GrpcError::Serve(e.to_string()))?;
                            let stopped = async move {
                                while !*stop.borrow() {
                                    if stop.changed().await.is_err() {
                                        break;
                                    }
                                }
                            };
                            serve(services, listener, tls, stopped).await
                        })
                    });
                let _ = tx.send(result);
            })
            .map_err(|e| GrpcError::Serve(e.to_string()))?;
        done.push(rx);
    }
    for rx in done {
        rx.await
            .map_err(|_| GrpcError::Serve("a gRPC thread ended without a result".into()))??;
    }
    Ok(())
}

/// Serves `services` on `listener` until `shutdown` resolves, then lets in-flight calls
/// finish.
async fn serve(
    services: Services,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GrpcError> {
    let Services { routes, reporter } = services;
    // At the signal, before the listener closes: NOT_SERVING to every watcher. (An open
    // `Watch` stream is an in-flight call, so it holds the drain until
    // `shutdown_timeout`.)
    let shutdown = async move {
        shutdown.await;
        set_health(&reporter, tonic_health::ServingStatus::NotServing).await;
    };
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| GrpcError::Tls(e.to_string()))?;
    }
    // Set on each accepted connection (the builder's `tcp_nodelay` applies only to
    // listeners tonic binds itself): without it a response can wait on Nagle's
    // algorithm and the peer's delayed ACK, 40 ms in the tail.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .layer(deadline::DeadlineLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| GrpcError::Serve(e.to_string()))
}

/// Keeps the health service in step with readiness: SERVING only while ready (so
/// NOT_SERVING while starting, syncing or shutting down).
async fn report_health(
    service: Arc<Service>,
    reporter: tonic_health::server::HealthReporter,
    initial: tonic_health::ServingStatus,
) {
    // Watchers are told of changes only: setting the same status again would send
    // them a repeat.
    let mut serving = initial;
    while !service.is_shutting_down() {
        let status = serving_status(&service);
        if serving != status {
            set_health(&reporter, status).await;
            serving = status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SERVING when the service is ready.
fn serving_status(service: &Service) -> tonic_health::ServingStatus {
    if service.not_ready_reasons().is_empty() {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    }
}

/// Sets the status of the whole server ("") and of `ordo.v1.OrdoService`.
async fn set_health(
    reporter: &tonic_health::server::HealthReporter,
    status: tonic_health::ServingStatus,
) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}
