//! API tokens, checked the same way for HTTP and gRPC.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a request's token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
}

/// The token a request presents, given a lookup of its headers (or gRPC metadata):
/// `authorization: Bearer <token>`, else `x-api-token`.
pub fn presented<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| header("x-api-token"))
}

/// Checks `presented` against the configured tokens; no configured token means none is
/// needed. Digests are compared in constant time: neither the tokens nor their lengths
/// leak.
pub fn check(tokens: &[String], presented: Option<&str>) -> Result<(), Refused> {
    if tokens.is_empty() {
        return Ok(());
    }
    let token = presented.ok_or(Refused::Missing)?;
    let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    let mut ok = subtle::Choice::from(0);
    for known in tokens {
        let known: [u8; 32] = Sha256::digest(known.as_bytes()).into();
        ok |= known.ct_eq(&digest);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(Refused::Invalid)
    }
}
