//! `ordo-server`: see `ordo-server --help`.

use std::process::ExitCode;

use clap::Parser;
use ordo_server::config::Config;
use ordo_server::service::StartError;
use ordo_server::{server, telemetry};

/// mimalloc: request handling allocates many small short-lived buffers, where it is
/// markedly faster than the system allocator. Built without transparent huge pages
/// (`no_thp`): zeroing 2 MB pages on first touch stalled requests and doubled RSS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init_logs(&config.log_level, &config.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads.filter(|n| *n > 0) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordo-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let metrics = telemetry::init_metrics();
        let (service, listener) = match server::start(config).await {
            Ok(started) => started,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("ordo-server: {e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        match server::serve(service, listener, metrics, server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ordo-server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
