//! A private `nats-server -js` per test: its own ephemeral port and store directory, so
//! a test can kill it and start it again on the same port with the same data.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
}

/// Whether `nats-server` can be run; prints SKIP (or fails under
/// `ORDO_TEST_REQUIRE_SERVICES=1`) when it cannot.
pub fn available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("ORDO_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "nats-server is required (ORDO_TEST_REQUIRE_SERVICES=1) but is not on PATH"
        );
        println!("SKIP {test}: nats-server is not installed");
    }
    found
}

impl Nats {
    /// Starts a private server, or `None` (after a SKIP line) without `nats-server`.
    pub fn start(test: &str) -> Option<Nats> {
        if !available(test) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut nats = Nats {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
        };
        nats.resume();
        Some(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port with the same store, and waits until it
    /// accepts connections.
    pub fn resume(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new("nats-server")
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(self.store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nats-server");
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port is not free yet: try again
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `f` with a JetStream context on this server (for tests that break things).
    pub fn with_js<T>(&self, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        let url = self.url();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let client = async_nats::connect(url).await.unwrap();
                let js = async_nats::jetstream::new(client.clone());
                let out = f(js).await;
                let _ = client.flush().await;
                out
            })
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
