//! Client deadlines (`grpc-timeout`): answered with DEADLINE_EXCEEDED, and passed to the
//! engine as a time limit.
//!
//! tonic enforces the header itself, but answers CANCELLED when it expires. This layer,
//! inside tonic's, ends the call with DEADLINE_EXCEEDED a millisecond sooner, so its
//! answer is the one sent; the deadline also goes into the request's extensions, where
//! the handlers find it and cap each execution by it (an execution is synchronous: no
//! timer can cut it short, only the engine's own clock).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;

/// How much sooner than the client's deadline the call is ended.
const MARGIN: Duration = Duration::from_millis(1);

/// When a call must be answered by, as found in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// The deadline of `request`, if its client set one.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Instant> {
        request.extensions().get::<Deadline>().map(|d| d.0)
    }
}

fn expired() -> Status {
    Status::deadline_exceeded("the call's deadline (grpc-timeout) passed before it finished")
}

/// Parses `grpc-timeout`: an ASCII integer of at most 8 digits and a unit
/// (H, M, S, m, u, n).
fn parse(value: &str) -> Option<Duration> {
    let (unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The layer, for `Server::layer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadlines<S>;
    fn layer(&self, inner: S) -> Deadlines<S> {
        Deadlines { inner }
    }
}

/// The service the layer wraps around the routes.
#[derive(Debug, Clone)]
pub struct Deadlines<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Deadlines<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse);
        let Some(timeout) = timeout else {
            return Box::pin(self.inner.call(request));
        };
        let deadline = Instant::now() + timeout.saturating_sub(MARGIN);
        request.extensions_mut().insert(Deadline(deadline));
        let call = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), call).await {
                Ok(answer) => answer,
                Err(_) => Ok(expired().into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_as_specified() {
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse("99999999S"), Some(Duration::from_secs(99_999_999)));
        for bad in [
            "",
            "m",
            "100",
            "100x",
            "123456789m",
            "-1m",
            "1.5S",
            "１m",
            "m１",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
