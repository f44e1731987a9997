//! Graceful shutdown: SIGTERM stops new connections at once, lets in-flight requests
//! finish within the shutdown timeout, and exits 0.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// Sends the headers and part of an eval request, leaving it in flight.
fn start_slow_request(s: &Server, body: &str, sent: usize) -> TcpStream {
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/eval HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..sent]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn
}

fn listener_closed(s: &Server) -> bool {
    let addr = s.base.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(&addr).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn in_flight_requests_finish_after_sigterm_while_new_ones_are_refused() {
    let mut s = Server::start(&[]);
    let body = r#"{"expression": "1 + 2", "context": {}}"#;
    let mut conn = start_slow_request(&s, body, 10);
    std::thread::sleep(Duration::from_millis(100));
    s.signal_term();
    assert!(
        listener_closed(&s),
        "new connections must be refused after SIGTERM"
    );
    // The request that was in flight still completes.
    conn.write_all(&body.as_bytes()[10..]).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"result\":3"), "{text}");
    let status = s.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
    let log = s.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn a_request_that_never_finishes_does_not_hold_the_shutdown_beyond_its_timeout() {
    let mut s = Server::start(&["--shutdown-timeout-secs", "1", "--request-timeout-ms", "0"]);
    let _stuck = start_slow_request(&s, r#"{"expression": "1"}"#, 5);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    s.signal_term();
    let status = s.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        s.log_text()
            .contains("did not finish within the shutdown timeout")
    );
}

// The same tests with the commit log on PostgreSQL.
on_postgres!(in_flight_requests_finish_after_sigterm_while_new_ones_are_refused,);
