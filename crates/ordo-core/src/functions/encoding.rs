//! Encodings, digests, identifiers and JSON text.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Digest;

use super::{Args, Builtin, func, string};
use crate::error::EvalError;
use crate::value::Value;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
const URL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("base64_encode", 1, 1, |a| {
        string(a, STANDARD.encode(a.str(0)?))
    }),
    func("base64_decode", 1, 1, |a| {
        let bytes = STANDARD
            .decode(a.str(0)?.trim())
            .map_err(|e| a.err(format!("invalid base64: {e}")))?;
        utf8(a, bytes)
    }),
    func("base64url_encode", 1, 1, |a| {
        string(a, URL_SAFE_NO_PAD.encode(a.str(0)?))
    }),
    func("base64url_decode", 1, 1, |a| {
        let bytes = URL_SAFE_NO_PAD
            .decode(a.str(0)?.trim().trim_end_matches('='))
            .map_err(|e| a.err(format!("invalid base64url: {e}")))?;
        utf8(a, bytes)
    }),
    func("hex_encode", 1, 1, |a| string(a, hex::encode(a.str(0)?))),
    func("hex_decode", 1, 1, |a| {
        let bytes =
            hex::decode(a.str(0)?.trim()).map_err(|e| a.err(format!("invalid hex: {e}")))?;
        utf8(a, bytes)
    }),
    func("url_encode", 1, 1, |a| {
        string(a, utf8_percent_encode(a.str(0)?, URL_ESCAPE).to_string())
    }),
    func("url_decode", 1, 1, |a| {
        let decoded = percent_decode_str(a.str(0)?)
            .decode_utf8()
            .map_err(|_| a.err("decoded bytes are not valid UTF-8"))?;
        Ok(Value::from(decoded.as_ref()))
    }),
    func("md5", 1, 1, |a| {
        Ok(Value::from(hex::encode(md5::Md5::digest(a.str(0)?))))
    }),
    func("sha256", 1, 1, |a| {
        Ok(Value::from(hex::encode(sha2::Sha256::digest(a.str(0)?))))
    }),
    func("hmac_sha256", 2, 2, hmac_sha256),
    Builtin {
        pure: false,
        ..func("uuid_v4", 0, 0, |_| {
            Ok(Value::from(uuid::Uuid::new_v4().to_string()))
        })
    },
    func("json_marshal", 1, 1, |a| {
        string(a, a.get(0).to_json_string())
    }),
    func("json_unmarshal", 1, 1, |a| {
        Value::from_json_str(a.str(0)?).map_err(|e| a.err(format!("invalid JSON: {e}")))
    }),
];

fn utf8(a: &Args<'_, '_>, bytes: Vec<u8>) -> Result<Value, EvalError> {
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| a.err("decoded bytes are not valid UTF-8"))
}

/// `hmac_sha256(key, message)` as lowercase hex.
fn hmac_sha256(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(a.str(0)?.as_bytes())
        .map_err(|_| a.err("invalid key"))?;
    mac.update(a.str(1)?.as_bytes());
    Ok(Value::from(hex::encode(mac.finalize().into_bytes())))
}
