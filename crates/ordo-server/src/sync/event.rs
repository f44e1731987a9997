//! What the writer publishes for each commit: the deployment specification's envelope
//! (`instance_id`, `event{type, tenant_id, name, ruleset_json, version}`, `timestamp_ms`),
//! plus the commit's `seq` and id, the content hash and the authority (the log) it comes
//! from, so that readers apply strictly by `seq` and notice a different log.
//!
//! Subjects: `{prefix}.{tenant_id}.{name}` for rulesets and `{prefix}.tenants` for tenant
//! configuration. The stream keeps the latest message per subject, so each
//! `TenantConfigChanged` carries every tenant as of its commit: the one kept message is
//! the whole tenant configuration.

use serde::{Deserialize, Serialize};

use crate::store::{Change, Commit, StoredRuleSet, content_hash};
use crate::tenant::TenantConfig;

/// The published message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The publishing instance (echo suppression).
    pub instance_id: String,
    pub event: Event,
    pub timestamp_ms: i64,
    /// The commit's position in its log: readers apply in this order, never by version.
    pub seq: u64,
    /// The commit's id, also the JetStream message id.
    pub commit_id: String,
    /// SHA-256 of `ruleset_json` for `RulePut`, of the tenant list for
    /// `TenantConfigChanged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Identifies the commit log (the id of its first commit): seqs compare only
    /// within one authority.
    pub authority_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    RulePut {
        tenant_id: String,
        name: String,
        ruleset_json: String,
        version: String,
    },
    RuleDeleted {
        tenant_id: String,
        name: String,
    },
    /// `config` is the changed tenant (absent when deleted); `tenants` every stored
    /// tenant after the change.
    TenantConfigChanged {
        tenant_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<TenantConfig>,
        tenants: Vec<TenantConfig>,
    },
}

/// Headers carried beside the payload, so a publisher can find where the stream stands
/// without decoding it.
pub const SEQ_HEADER: &str = "Ordo-Seq";
pub const AUTHORITY_HEADER: &str = "Ordo-Authority";

/// Why a message cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("undecodable event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event {seq}: {reason}")]
    Invalid { seq: u64, reason: String },
}

impl Envelope {
    /// The envelope of `commit`; `tenants` is every stored tenant after it.
    pub fn of(commit: &Commit, tenants: &[TenantConfig], instance: &str, authority: &str) -> Self {
        let (event, hash) = match &commit.change {
            Change::PutRuleSet(r) => (
                Event::RulePut {
                    tenant_id: r.tenant.clone(),
                    name: r.name.clone(),
                    ruleset_json: r.content.to_string(),
                    version: r.version.clone(),
                },
                Some(r.hash.clone()),
            ),
            Change::DeleteRuleSet { tenant, name } => (
                Event::RuleDeleted {
                    tenant_id: tenant.clone(),
                    name: name.clone(),
                },
                None,
            ),
            Change::PutTenant(t) => (
                Event::TenantConfigChanged {
                    tenant_id: t.id.clone(),
                    config: Some(t.clone()),
                    tenants: tenants.to_vec(),
                },
                Some(tenants_hash(tenants)),
            ),
            Change::DeleteTenant { id } => (
                Event::TenantConfigChanged {
                    tenant_id: id.clone(),
                    config: None,
                    tenants: tenants.to_vec(),
                },
                Some(tenants_hash(tenants)),
            ),
        };
        Envelope {
            instance_id: instance.to_string(),
            event,
            timestamp_ms: crate::service::now_ms(),
            seq: commit.seq,
            commit_id: commit.id.clone(),
            hash,
            authority_id: authority.to_string(),
        }
    }

    /// Reads and checks a message: a ruleset whose content does not match its hash, or a
    /// name the server would refuse, is as undecodable as broken JSON.
    pub fn decode(payload: &[u8]) -> Result<Envelope, DecodeError> {
        let envelope: Envelope = serde_json::from_slice(payload)?;
        let invalid = |reason: String| DecodeError::Invalid {
            seq: envelope.seq,
            reason,
        };
        if envelope.seq == 0 {
            return Err(invalid("seq 0".into()));
        }
        match &envelope.event {
            Event::RulePut {
                tenant_id,
                name,
                ruleset_json,
                ..
            } => {
                check_names(tenant_id, name).map_err(invalid)?;
                let expected = content_hash(ruleset_json);
                if envelope.hash.as_deref() != Some(expected.as_str()) {
                    return Err(invalid(format!(
                        "content of {tenant_id}/{name} does not match its hash"
                    )));
                }
            }
            Event::RuleDeleted { tenant_id, name } => {
                check_names(tenant_id, name).map_err(invalid)?
            }
            Event::TenantConfigChanged { tenants, .. } => {
                for t in tenants {
                    t.validate().map_err(invalid)?;
                }
            }
        }
        Ok(envelope)
    }

    /// The subject it is published on.
    pub fn subject(&self, prefix: &str) -> String {
        match &self.event {
            Event::RulePut {
                tenant_id, name, ..
            }
            | Event::RuleDeleted { tenant_id, name } => rule_subject(prefix, tenant_id, name),
            Event::TenantConfigChanged { .. } => format!("{prefix}.tenants"),
        }
    }

    /// The ruleset a `RulePut` stores.
    pub fn stored(&self) -> Option<StoredRuleSet> {
        match &self.event {
            Event::RulePut {
                tenant_id,
                name,
                ruleset_json,
                version,
            } => Some(StoredRuleSet {
                tenant: tenant_id.clone(),
                name: name.clone(),
                version: version.clone(),
                content: ruleset_json.as_str().into(),
                hash: self.hash.clone().unwrap_or_default(),
                seq: self.seq,
            }),
            _ => None,
        }
    }
}

fn check_names(tenant: &str, name: &str) -> Result<(), String> {
    ordo_core::validate_name(tenant).map_err(|e| format!("tenant id: {e}"))?;
    ordo_core::validate_name(name).map_err(|e| format!("ruleset name: {e}"))
}

/// `{prefix}.{tenant}.{name}`. A `.` inside a tenant id or name (allowed there, but the
/// token separator in subjects) is written `~`, which neither may contain, so distinct
/// rulesets never share a subject and `{prefix}.{tenant}.*` still matches one tenant.
pub fn rule_subject(prefix: &str, tenant: &str, name: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        tenant.replace('.', "~"),
        name.replace('.', "~")
    )
}

/// SHA-256 of the canonical JSON of a tenant list.
pub fn tenants_hash(tenants: &[TenantConfig]) -> String {
    content_hash(&serde_json::to_string(tenants).unwrap_or_default())
}

/// Checks a subject prefix: dot-separated tokens without wildcards or whitespace.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err("has an empty token (leading, trailing or double '.')".into());
        }
        if token
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '*' | '>') || c.is_control())
        {
            return Err(format!(
                "token '{token}' holds a wildcard or whitespace; use letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::store::Source;

    fn put(seq: u64, tenant: &str, name: &str, content: &str) -> Commit {
        Commit {
            seq,
            id: format!("c{seq}"),
            created_at_ms: 1,
            source: Source::Api,
            change: Change::PutRuleSet(StoredRuleSet {
                tenant: tenant.into(),
                name: name.into(),
                version: "1.0.0".into(),
                content: content.into(),
                hash: content_hash(content),
                seq,
            }),
        }
    }

    #[test]
    fn envelope_keeps_the_specified_fields() {
        let env = Envelope::of(&put(7, "default", "payment-check", "{}"), &[], "w-1", "a");
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&env).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(json["instance_id"], "w-1");
        assert_eq!(json["event"]["type"], "RulePut");
        assert_eq!(json["event"]["tenant_id"], "default");
        assert_eq!(json["event"]["name"], "payment-check");
        assert_eq!(json["event"]["ruleset_json"], "{}");
        assert_eq!(json["event"]["version"], "1.0.0");
        assert!(json["timestamp_ms"].as_i64().is_some_and(|t| t > 0));
        assert_eq!(json["seq"], 7);
        assert_eq!(json["authority_id"], "a");
        assert_eq!(
            env.subject("ordo.rules"),
            "ordo.rules.default.payment-check"
        );
    }

    #[test]
    fn decode_round_trips_and_checks_the_hash() {
        let env = Envelope::of(&put(3, "t", "r", "{\"a\":1}"), &[], "w", "a");
        let bytes = serde_json::to_vec(&env).unwrap_or_default();
        assert_eq!(Envelope::decode(&bytes).ok(), Some(env.clone()));
        let mut forged = env;
        if let Event::RulePut { ruleset_json, .. } = &mut forged.event {
            *ruleset_json = "{\"a\":2}".into();
        }
        let bytes = serde_json::to_vec(&forged).unwrap_or_default();
        assert!(Envelope::decode(&bytes).is_err());
        assert!(Envelope::decode(b"not json").is_err());
        assert!(Envelope::decode(b"{}").is_err());
    }

    #[test]
    fn dotted_names_get_distinct_subjects() {
        assert_ne!(rule_subject("p", "a", "b.c"), rule_subject("p", "a.b", "c"));
        assert_eq!(rule_subject("p", "a", "b.c"), "p.a.b~c");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("ordo.rules").is_ok());
        for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
