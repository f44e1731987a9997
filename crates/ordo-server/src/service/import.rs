//! A large import of the rules directory runs as a one-off process of its own
//! (`ordo-server import`), and the server then loads the log it wrote as a restart
//! does. Parsing and compiling a thousand files leaves what outlives it scattered over
//! the allocator's pages of every thread that took part; in a process that ends, that
//! costs nothing, where in the server it kept some 5 MB resident for good.
//!
//! The child shares the server's lock on the directory (it gets the lock file as its
//! standard input) and its configuration sources (the same arguments and environment).
//! Whatever it does or fails to do, the server's own import that follows compares the
//! directory with the log: the child can only save it work, never decide what is served.

use std::ffi::OsString;
use std::fs::File;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::rules_dir::Listing;
use crate::store::State;

/// Files the log does not know, from which an import is worth a process of its own:
/// below it, what the import leaves behind is small, and a process costs some ms.
pub const OWN_PROCESS_FROM: usize = 256;

/// The arguments the server was started with, when it may run its import as a child
/// (only the `ordo-server` binary itself: in a test harness there is no such command).
static SERVER_ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Lets large imports run in a child process started as `current_exe() <args> import`.
pub fn enable_own_process(args: Vec<OsString>) {
    let _ = SERVER_ARGS.set(args);
}

/// Whether the files the log does not know yet are many enough for a process.
pub(super) fn worth_own_process(listing: &Listing, state: &State) -> bool {
    if SERVER_ARGS.get().is_none() {
        return false;
    }
    let known: std::collections::HashSet<(&str, &str)> = state
        .rulesets
        .iter()
        .map(|r| (r.tenant.as_str(), r.name.as_str()))
        .collect();
    listing.rulesets().filter(|r| !known.contains(r)).count() >= OWN_PROCESS_FROM
}

/// Runs `ordo-server <args> import` holding `lock`, and waits for it. Its logs (the
/// audit events of its commits among them) go where the server's go.
pub(super) async fn in_own_process(lock: &File) -> Result<Duration, String> {
    let args = SERVER_ARGS
        .get()
        .ok_or("no command to run the import with")?
        .clone();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let lock = lock
        .try_clone()
        .map_err(|e| format!("cannot hand the directory lock over: {e}"))?;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(args)
            .arg("import")
            .stdin(Stdio::from(lock))
            .status()
    })
    .await
    .map_err(|e| format!("cannot wait for the import process: {e}"))?
    .map_err(|e| format!("cannot start the import process: {e}"))?;
    if status.success() {
        Ok(started.elapsed())
    } else {
        Err(format!("the import process ended with {status}"))
    }
}
