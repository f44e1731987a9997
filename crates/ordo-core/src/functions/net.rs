//! Network ranges and semantic versions.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Args, Builtin, Prepared, func};
use crate::error::EvalError;
use crate::value::Value;

pub(super) const FUNCTIONS: &[Builtin] = &[
    Builtin {
        name: "cidr_contains",
        min: 2,
        max: 2,
        pure: true,
        call: |a| {
            let net = match a.prepared() {
                Some(Prepared::Net(n)) => Cow::Borrowed(n),
                _ => Cow::Owned(network(a.str(0)?).map_err(|e| a.err(e))?),
            };
            let ip: IpAddr = a
                .str(1)?
                .trim()
                .parse()
                .map_err(|_| a.err(format!("invalid IP address \"{}\"", a.get(1).to_text())))?;
            Ok(Value::Bool(net.contains(&ip)))
        },
        prepare: Some(|v| match v {
            Value::String(s) => network(s).map(Prepared::Net),
            other => Err(format!("expects a CIDR string, got {}", other.type_name())),
        }),
    },
    func("cidr_intersects", 2, 2, |a| {
        let x = network(a.str(0)?).map_err(|e| a.err(e))?;
        let y = network(a.str(1)?).map_err(|e| a.err(e))?;
        Ok(Value::Bool(
            x.contains(&y.network()) || y.contains(&x.network()),
        ))
    }),
    func("semver_compare", 2, 2, |a| {
        let x = version(a, 0)?;
        let y = version(a, 1)?;
        Ok(Value::Int(match x.cmp(&y) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }))
    }),
    func("semver_is_valid", 1, 1, |a| {
        Ok(Value::Bool(
            semver::Version::parse(a.str(0)?.trim()).is_ok(),
        ))
    }),
];

/// A CIDR range; a bare address means that single host.
fn network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid CIDR range \"{s}\""))
}

fn version(a: &Args<'_, '_>, i: usize) -> Result<semver::Version, EvalError> {
    let s = a.str(i)?;
    semver::Version::parse(s.trim()).map_err(|e| a.err(format!("invalid version \"{s}\": {e}")))
}
