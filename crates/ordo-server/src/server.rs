//! Wiring: start the service, serve HTTP and gRPC until a shutdown signal, then drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::service::{Service, StartError};

/// The listeners a server serves on: HTTP and gRPC, each unless disabled.
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub grpc: Option<(TcpListener, Option<ServerTlsConfig>)>,
}

/// Starts the service and binds the listeners (so that a bad configuration or store
/// stops the process before it accepts anything). gRPC TLS files are read first: a
/// missing or unreadable one stops the start as a configuration error.
pub async fn start(config: Config) -> Result<(Arc<Service>, Listeners), StartError> {
    let tls = if config.disable_grpc {
        None
    } else {
        crate::grpc::tls_config(&config).map_err(|e| StartError::Config(e.to_string()))?
    };
    let http_addr = SocketAddr::new(config.host, config.port);
    let grpc_addr = match &config.grpc_addr {
        Some(addr) => addr
            .parse()
            .map_err(|_| StartError::Config(format!("grpc_addr {addr:?} is not HOST:PORT")))?,
        None => SocketAddr::new(config.host, config.grpc_port),
    };
    let (disable_http, disable_grpc) = (config.disable_http, config.disable_grpc);
    let service = Service::start(config).await?;
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let grpc = if disable_grpc {
        None
    } else {
        Some((bind(grpc_addr).await?, tls))
    };
    let http = if disable_http {
        None
    } else {
        Some(bind(http_addr).await?)
    };
    Ok((service, Listeners { http, grpc }))
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish (within `shutdown_timeout`) and closes the store.
pub async fn serve(
    service: Arc<Service>,
    listeners: Listeners,
    metrics: Option<crate::telemetry::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    service.start_jobs();
    // Rate limiters forget idle clients, so memory stays bounded however many there are.
    let svc = service.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(crate::traffic::SWEEP_EVERY).await;
            svc.traffic().sweep();
        }
    });
    // One signal for both transports: readiness goes at once, then both stop accepting.
    let (signalled_tx, signalled_rx) = tokio::sync::watch::channel(false);
    let svc = service.clone();
    tokio::spawn(async move {
        shutdown.await;
        svc.begin_shutdown();
        tracing::info!(
            grace_seconds = svc.config().shutdown_timeout().as_secs_f64(),
            "shutting down: no new connections, finishing in-flight requests"
        );
        let _ = signalled_tx.send(true);
    });
    let signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };

    let grpc = listeners.grpc.map(|(listener, tls)| {
        if let Ok(addr) = listener.local_addr() {
            let scheme = if tls.is_some() { "grpcs" } else { "grpc" };
            tracing::info!("gRPC listening on {scheme}://{addr}");
        }
        let threads = service
            .config()
            .worker_threads
            .map_or_else(crate::parallel::cores, |n| n as usize);
        crate::grpc::serve_threads(
            service.clone(),
            listener,
            tls,
            threads,
            signalled_rx.clone(),
        )
    });
    let http = listeners.http.map(|listener| {
        let app = router(AppState::new(service.clone(), metrics));
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("listening on http://{addr}");
        }
        // Responses go out at once instead of waiting on Nagle's algorithm and the
        // peer's delayed ACK (tens of milliseconds in the tail otherwise).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // The peer address keys the rate limits.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signalled(signalled_rx.clone()))
    });
    let jobs_service = service.clone();
    let serving = async move {
        let (http, grpc) = tokio::join!(
            async move {
                match http {
                    Some(serving) => serving.await,
                    None => Ok(()),
                }
            },
            async move {
                match grpc {
                    Some(serving) => serving.await.map_err(std::io::Error::other),
                    None => Ok(()),
                }
            }
        );
        http.and(grpc)?;
        // The listeners are closed; the async queue drains within what is left of the
        // grace period (jobs still waiting stay pending and are taken back at the
        // next start).
        jobs_service.jobs_drained().await;
        Ok::<(), std::io::Error>(())
    };
    // In-flight requests get `shutdown_timeout` (as configured then) once the signal came.
    let svc = service.clone();
    let deadline = async move {
        signalled(signalled_rx).await;
        let grace = svc.config().shutdown_timeout();
        tokio::time::sleep(grace).await;
        grace
    };
    tokio::select! {
        result = serving => result?,
        grace = deadline => tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "in-flight requests or async jobs did not finish within the shutdown timeout; stopping anyway"
        ),
    }
    service.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
