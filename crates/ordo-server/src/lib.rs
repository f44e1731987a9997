//! # ordo-server: the Ordo rule engine server
//!
//! Stores rulesets durably and executes them over HTTP and gRPC. Map of the modules:
//! - [`config`]: flags and `ORDO_*` variables.
//! - [`store`]: the commit log (SQLite embedded, or in memory) and the state it adds up to.
//! - [`rules_dir`]: rulesets as files: crash-safe writes, recovery and import.
//! - [`projection`]: the catalog of compiled rulesets executions read, behind an `ArcSwap`.
//! - [`service`]: every operation, independent of the transport; the single write path.
//! - [`tenant`]: tenant configuration and rate limiters.
//! - [`http`]: the HTTP transport (axum).
//! - [`grpc`]: the gRPC transport (tonic), over the same service layer.
//! - [`auth`]: API tokens, checked alike by both transports.
//! - [`telemetry`]: logs and metrics.
//! - [`server`]: wiring: start, serve, shut down.
//! - [`parallel`]: independent work (files to read and compile) spread over the cores.

pub mod auth;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod memory;
pub mod parallel;
pub mod projection;
pub mod rules_dir;
pub mod server;
pub mod service;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenant;
pub mod traffic;
