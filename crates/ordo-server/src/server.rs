//! Wiring: start the service, serve HTTP until a shutdown signal, then drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::service::{Service, StartError};

/// Starts the service and binds the listener (so that a bad configuration or store
/// stops the process before it accepts anything).
pub async fn start(config: Config) -> Result<(Arc<Service>, TcpListener), StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    let service = Service::start(config).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((service, listener))
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish and closes the store.
pub async fn serve(
    service: Arc<Service>,
    listener: TcpListener,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(handle) = metrics.clone() {
        // Histograms accumulate samples until drained: drain them often, on a thread of
        // their own, so memory stays flat under load and no request waits for a drain.
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    handle.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
        }
    }
    let app = router(AppState::new(service.clone(), metrics));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let svc = service.clone();
    let (signalled_tx, mut signalled_rx) = tokio::sync::watch::channel(false);
    // Responses go out at once instead of waiting on Nagle's algorithm and the peer's
    // delayed ACK (tens of milliseconds in the tail otherwise).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        // Not ready at once; the listener closes when this future returns.
        svc.begin_shutdown();
        tracing::info!(
            grace_seconds = svc.config().shutdown_timeout().as_secs_f64(),
            "shutting down: no new connections, finishing in-flight requests"
        );
        let _ = signalled_tx.send(true);
    });
    // In-flight requests get `shutdown_timeout` (as configured then) once the signal came.
    let svc = service.clone();
    let deadline = async move {
        while !*signalled_rx.borrow() {
            if signalled_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        let grace = svc.config().shutdown_timeout();
        tokio::time::sleep(grace).await;
        grace
    };
    tokio::select! {
        result = serving => result?,
        grace = deadline => tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "in-flight requests did not finish within the shutdown timeout; stopping anyway"
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
