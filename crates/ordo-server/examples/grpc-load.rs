//! A small gRPC load client: `Execute` as fast as the server answers, for a while, over
//! a number of HTTP/2 connections with a number of concurrent streams in all.
//!
//!     cargo run --release -p ordo-server --example grpc-load -- \
//!         ADDR RULESET INPUT_JSON_FILE [SECONDS=10] [CONNECTIONS=1] [STREAMS=32]
//!
//! Prints requests per second and the latency percentiles of the calls.

use std::time::{Duration, Instant};

use ordo_proto::v1::ExecuteRequest;
use ordo_proto::v1::ordo_service_client::OrdoServiceClient;
use tonic::transport::Channel;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn arg(n: usize) -> Option<String> {
    std::env::args().nth(n)
}

fn number(n: usize, default: u64) -> Result<u64, Failure> {
    Ok(arg(n).map(|a| a.parse()).transpose()?.unwrap_or(default))
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let usage = "usage: grpc-load ADDR RULESET INPUT_JSON_FILE [SECONDS] [CONNECTIONS] [STREAMS]";
    let (Some(addr), Some(ruleset), Some(input)) = (arg(1), arg(2), arg(3)) else {
        return Err(usage.into());
    };
    let input_json = std::fs::read_to_string(&input)?;
    let seconds = number(4, 10)?;
    let connections = number(5, 1)?.max(1);
    let streams = number(6, 32)?.max(1);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(Channel::from_shared(addr.clone())?.connect().await?);
    }
    let request = ExecuteRequest {
        ruleset_name: ruleset,
        input_json,
        include_trace: false,
    };
    // One call first: a wrong ruleset or input fails here, not 100,000 times.
    let first = channels.first().ok_or("no connection")?.clone();
    OrdoServiceClient::new(first)
        .execute(request.clone())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for channel in channels.iter().cycle().take(usize::try_from(streams)?) {
        let mut client = OrdoServiceClient::new(channel.clone());
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match client.execute(request.clone()).await {
                    Ok(_) => latencies.push(sent.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{connections} connection(s), {streams} stream(s), {seconds} s: {} calls, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {errors} errors",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        at(0.5),
        at(0.99),
        at(1.0),
    );
    Ok(())
}
