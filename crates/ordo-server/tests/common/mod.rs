//! Starts the real `ordo-server` binary on an ephemeral loopback port and talks to it
//! over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "nats-sync")]
pub mod nats;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ordo-server");

pub struct Server {
    child: Option<Child>,
    pub base: String,
    /// `http://HOST:PORT` of the gRPC listener (`https://` with TLS), unless disabled.
    pub grpc: Option<String>,
    pub log: Arc<Mutex<String>>,
    client: Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

impl Server {
    /// Starts the server with `args` (plus a loopback ephemeral port).
    pub fn start(args: &[&str]) -> Server {
        Self::try_start(args).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    /// Starts the server; on failure returns its output. In a test running on
    /// PostgreSQL (see [`postgres::run`]) a server given no `--database-url` gets the
    /// test's database for its rules directory, and is waited for until ready.
    pub fn try_start(args: &[&str]) -> Result<Server, String> {
        Self::try_start_binary(BIN, args, || {})
    }

    /// [`Server::try_start`] with the binary at `bin`, calling `spawned` as soon as the
    /// process runs.
    pub fn try_start_binary(
        bin: &str,
        args: &[&str],
        spawned: impl FnOnce(),
    ) -> Result<Server, String> {
        let database = postgres::database_for(args);
        let mut child = Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--grpc-port",
                "0",
                "--log-level",
                "info",
            ])
            .args(args)
            .args(
                database
                    .iter()
                    .flat_map(|url| ["--database-url", url.as_str(), "--auto-migrate"]),
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ordo-server");
        spawned();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let addr_after = |marker: &str| {
                        line.find(marker).map(|i| {
                            line[i + marker.len()..]
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.'))
                                .collect::<String>()
                        })
                    };
                    // The gRPC line comes first.
                    if let Some(addr) = addr_after("gRPC listening on grpc://") {
                        let _ = tx.send((false, format!("http://{addr}")));
                    } else if let Some(addr) = addr_after("gRPC listening on grpcs://") {
                        let _ = tx.send((false, format!("https://{addr}")));
                    } else if let Some(addr) = addr_after("listening on http://") {
                        let _ = tx.send((true, format!("http://{addr}")));
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut grpc = None;
        loop {
            if let Ok((http, addr)) = rx.recv_timeout(Duration::from_millis(50)) {
                if !http {
                    grpc = Some(addr);
                    continue;
                }
                let server = Server {
                    child: Some(child),
                    base: addr,
                    grpc,
                    log,
                    client: Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap(),
                };
                if database.is_some() {
                    server.wait_ready(Duration::from_secs(20))?;
                }
                return Ok(server);
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("exited with {status}\n{}", log.lock().unwrap()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("no listening line\n{}", log.lock().unwrap()));
            }
        }
    }

    /// Polls `/healthz/ready` until it answers 200.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.get("/healthz/ready");
            if r.status == 200 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready: {}\n{}", r.text, self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().unwrap(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    pub fn get_as(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers, None)
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.send_json_as(method, path, body, &[])
    }

    pub fn send_json_as(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request(method, path, &h, Some(serde_json::to_vec(body).unwrap()))
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send_json("POST", path, body)
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A small valid ruleset: `code` is returned, `x > limit` decides.
pub fn ruleset(name: &str, version: &str, code: &str) -> Value {
    serde_json::json!({
        "config": {"name": name, "version": version, "entry_step": "check"},
        "steps": {
            "check": {"id": "check", "type": "decision",
                       "branches": [{"condition": "x > 10", "next_step": "big"}],
                       "default_next": "small"},
            "big": {"id": "big", "type": "terminal", "result": {"code": code, "output": [["size", "\"big\""]]}},
            "small": {"id": "small", "type": "terminal", "result": {"code": code, "output": [["size", "\"small\""]]}}
        }
    })
}

/// The repository's example rules directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules")
}

/// A fresh temporary directory holding copies of `files` from the examples.
pub fn rules_dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(examples_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Starts `n` executions of `name` that hold their execution slots: each sends its
/// headers and part of its body, then waits. Dropping the streams ends them.
pub fn hold(s: &Server, name: &str, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr = s.base.trim_start_matches("http://").to_string();
    (0..n)
        .map(|_| {
            let mut conn = std::net::TcpStream::connect(&addr).unwrap();
            let head = format!(
                "POST /api/v1/execute/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"input\":"
            );
            conn.write_all(head.as_bytes()).unwrap();
            conn
        })
        .collect()
}
