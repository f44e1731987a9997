//! `ordo-server`: see `ordo-server --help`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ordo_server::config::{self, Cli, Command, Config, ConfigAction, LogFormat, MigrateAction};
use ordo_server::service::StartError;
use ordo_server::{server, telemetry};

#[global_allocator]
static GLOBAL: ordo_server::memory::Allocator = ordo_server::memory::Allocator;

/// Exit code of a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    ordo_server::service::mark_process_start();
    let cli = Cli::parse();
    let env_names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let loaded = config::load(
        &cli.config_files,
        &|name| std::env::var(name).ok(),
        &env_names,
        &cli.flags,
    );
    match cli.command {
        Some(Command::Config {
            action: ConfigAction::Schema,
        }) => {
            // As the types generate it: what `config.schema.json` is rewritten from.
            print(&serde_json::to_string_pretty(&config::generated_schema()).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Some(Command::Config {
            action: ConfigAction::Docs,
        }) => {
            print(config::docs_table().trim_end());
            ExitCode::SUCCESS
        }
        Some(Command::Config { action }) => match loaded {
            Ok((config, warnings)) => {
                for w in warnings {
                    eprintln!("ordo-server: warning: {w}");
                }
                if matches!(action, ConfigAction::Show) {
                    print(&serde_json::to_string_pretty(&config.redacted()).unwrap_or_default());
                } else {
                    print("configuration is valid");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ordo-server: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Some(Command::Migrate { action }) => match loaded {
            Ok((config, _)) => migrate(&config, action),
            Err(e) => {
                eprintln!("ordo-server: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Some(Command::Import) => match loaded {
            Ok((config, warnings)) => import(config, warnings),
            Err(e) => {
                eprintln!("ordo-server: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        None => match loaded {
            Ok((config, warnings)) => {
                // A large first import runs as `ordo-server <the same arguments> import`.
                ordo_server::service::enable_own_process(std::env::args_os().skip(1).collect());
                let sources = config::watch::Sources {
                    files: cli.config_files,
                    env: std::env::vars()
                        .filter(|(k, _)| k.starts_with("ORDO_"))
                        .collect(),
                    flags: cli.flags,
                };
                run(config, warnings, sources)
            }
            Err(e) => {
                // Nothing is bound or opened before the configuration is known good.
                eprintln!("ordo-server: {e}");
                let _ = std::io::stderr().flush();
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

/// `ordo-server migrate up|status`: exit 0 when the schema is current, 1 when
/// migrations are pending or the schema cannot be used, 2 without a database.
fn migrate(config: &Config, action: MigrateAction) -> ExitCode {
    let location = match config.store_location() {
        Ok(location) => location,
        Err(e) => {
            eprintln!("ordo-server: database_url: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match one_off_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let apply = matches!(action, MigrateAction::Up);
    let status = match runtime.block_on(ordo_server::store::migrate(&location, apply)) {
        Ok(status) => status,
        Err(e @ ordo_server::store::StoreError::NoDatabase) => {
            eprintln!("ordo-server: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("ordo-server: migrate: {e}");
            return ExitCode::FAILURE;
        }
    };
    print(&format!(
        "database: {}",
        location.shown().unwrap_or_default()
    ));
    for m in &status.migrations {
        let state = serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        print(&format!(
            "{:>6}  {:<8}  {}",
            m.version, state, m.description
        ));
    }
    match status.blocker() {
        None => {
            print("schema is up to date");
            ExitCode::SUCCESS
        }
        Some(blocker) => {
            print(&blocker);
            ExitCode::FAILURE
        }
    }
}

/// `ordo-server import`: exit 0 once the rules directory's differences from the log
/// are committed (files that cannot be used are logged and skipped, as by a server), 2
/// for a configuration that cannot import, 1 when the import fails.
fn import(config: Config, warnings: Vec<String>) -> ExitCode {
    telemetry::init_logs(&config.log_level, config.log_format == LogFormat::Json);
    for w in warnings {
        tracing::warn!("{w}");
    }
    // One thread: the scan spreads itself over the cores anyway.
    let runtime = match one_off_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(ordo_server::service::Service::import(config)) {
        Ok(()) => {
            tracing::info!(peak_rss_kb = peak_rss_kb(), "import done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("cannot import: {e}");
            eprintln!("ordo-server: import: {e}");
            match e {
                StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The process's peak resident size (0 where /proc does not tell).
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The single-threaded runtime of a one-off command (`migrate`, `import`).
fn one_off_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("ordo-server: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Prints a line; a closed stdout (`| head`) is not an error worth a panic.
fn print(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn run(config: Config, warnings: Vec<String>, sources: config::watch::Sources) -> ExitCode {
    telemetry::init_logs(&config.log_level, config.log_format == LogFormat::Json);
    for w in warnings {
        tracing::warn!("{w}");
    }
    // Installed first, so nothing recorded by the start is lost; built once it is over.
    let metrics = telemetry::init_metrics();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        builder.worker_threads(n as usize);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ordo-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (service, listeners) = match server::start(config).await {
            Ok(started) => started,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("ordo-server: {e}");
                return match e {
                    StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        config::watch::spawn(service.clone(), sources, tokio::runtime::Handle::current());
        let recorder = metrics.clone();
        let serving = server::serve(service, listeners, metrics, server::shutdown_signal());
        tokio::pin!(serving);
        // This thread ran the start: once the warm-up is done, what the start freed here
        // goes back to the system (an idle thread's free pages are returned by no other),
        // and the metrics recorder is built.
        let served = tokio::select! {
            served = &mut serving => served,
            () = ordo_server::memory::after_warm_up() => {
                if let Some(recorder) = &recorder {
                    recorder.build_in_background();
                }
                serving.await
            }
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ordo-server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
