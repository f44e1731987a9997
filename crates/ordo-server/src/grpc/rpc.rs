//! `ordo.v1.OrdoService`: each RPC admits the call (store attached, API token, reader
//! refusal of writes), then calls the same service method as the HTTP route.

use std::sync::Arc;

use ordo_core::{RuleSet, Value};
use ordo_proto::v1 as pb;
use ordo_proto::v1::ordo_service_server::OrdoService;
use tonic::{Request, Response, Status};

use super::deadline::Deadline;
use super::status::{read_only, status_of};
use crate::config::Role;
use crate::projection::TenantView;
use crate::service::{BatchOptions, Service};
use crate::tenant::TenantConfig;
use crate::traffic::{Caller, Group};
use std::net::IpAddr;

pub struct Ordo {
    service: Arc<Service>,
}

impl Ordo {
    pub fn new(service: Arc<Service>) -> Ordo {
        Ordo { service }
    }

    /// Admits a call and returns the tenant it names (`x-tenant-id`), as the HTTP gate
    /// does: nothing before the log is attached, the API token when one is configured,
    /// and on a reader no write.
    fn admit<T>(
        &self,
        request: &Request<T>,
        write: bool,
        group: Group,
    ) -> Result<Option<String>, Status> {
        let svc = &self.service;
        // Before the token check: guessing tokens is rate limited too.
        svc.traffic()
            .check_platform(group, client_ip(svc, request))
            .map_err(status_of)?;
        if !svc.is_attached() {
            return Err(Status::unavailable(format!(
                "not ready: {}",
                svc.not_attached_reason()
            )));
        }
        let config = svc.config();
        let metadata = request.metadata();
        let presented =
            crate::auth::presented(|name| metadata.get(name).and_then(|v| v.to_str().ok()));
        match crate::auth::check(&config.api_token, presented) {
            Ok(()) => {}
            Err(crate::auth::Refused::Missing) => {
                return Err(Status::unauthenticated(
                    "an API token is required (authorization: Bearer <token>)",
                ));
            }
            Err(crate::auth::Refused::Invalid) => {
                return Err(Status::unauthenticated("the API token is not valid"));
            }
        }
        if write && config.role == Role::Reader {
            return Err(read_only(config.writer_addr.as_deref()));
        }
        Ok(metadata
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// The (existing, enabled) tenant a call acts for, with its rulesets.
    fn view(&self, requested: Option<&str>) -> Result<Arc<TenantView>, Status> {
        let catalog = self.service.catalog();
        self.service
            .tenant(&catalog, requested)
            .cloned()
            .map_err(status_of)
    }

    /// The id of the (existing, enabled) tenant a call acts for.
    fn tenant_id(&self, requested: Option<&str>) -> Result<String, Status> {
        let catalog = self.service.catalog();
        let tenant = self
            .service
            .tenant(&catalog, requested)
            .map_err(status_of)?;
        Ok(tenant.config.id.clone())
    }
}

/// The client of a call: its peer, or what a trusted proxy forwarded.
fn client_ip<T>(svc: &Service, request: &Request<T>) -> IpAddr {
    let peer = request
        .remote_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let forwarded = request
        .metadata()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    svc.traffic().client_ip(peer, forwarded)
}

/// A JSON object from a `*_json` field; empty means absent.
fn json_value(field: &str, text: &str) -> Result<Value, Status> {
    if text.trim().is_empty() {
        return Ok(Value::default());
    }
    serde_json::from_str(text).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value).map_err(|e| Status::internal(e.to_string()))
}

fn check_name(name: &str) -> Result<(), Status> {
    ordo_core::validate_name(name)
        .map_err(|e| Status::invalid_argument(format!("ruleset name: {e}")))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl OrdoService for Ordo {
    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        let requested = self.admit(&request, false, Group::Execute)?;
        let deadline = Deadline::of(&request);
        let svc = &self.service;
        let call = request.get_ref();
        let catalog = svc.catalog();
        let tenant = svc
            .tenant(&catalog, requested.as_deref())
            .map_err(status_of)?;
        let entry = svc.get(tenant, &call.ruleset_name).map_err(status_of)?;
        let caller = Caller {
            ip: client_ip(svc, &request),
            headers: request.metadata(),
        };
        let _permit = svc
            .admit_execution(tenant, entry, &caller)
            .map_err(status_of)?;
        let input = json_value("input_json", &call.input_json)?;
        let done = svc
            .execute_by(tenant, entry, &input, call.include_trace, deadline)
            .map_err(status_of)?;
        let outcome = &done.outcome;
        Ok(Response::new(pb::ExecuteResponse {
            code: outcome.code().to_string(),
            message: outcome.message().to_string(),
            output_json: to_json(&outcome.output())?,
            duration_us: done.duration_us,
            trace_json: match outcome.trace() {
                Some(trace) => to_json(trace)?,
                None => String::new(),
            },
        }))
    }

    async fn batch_execute(
        &self,
        request: Request<pb::BatchExecuteRequest>,
    ) -> Result<Response<pb::BatchExecuteResponse>, Status> {
        let requested = self.admit(&request, false, Group::Execute)?;
        let deadline = Deadline::of(&request);
        let svc = self.service.clone();
        let tenant = self.view(requested.as_deref())?;
        let entry = svc
            .get(&tenant, &request.get_ref().ruleset_name)
            .map_err(status_of)?
            .clone();
        let permit = svc
            .admit_execution(
                &tenant,
                &entry,
                &Caller {
                    ip: client_ip(&svc, &request),
                    headers: request.metadata(),
                },
            )
            .map_err(status_of)?;
        let call = request.into_inner();
        let inputs = call
            .inputs_json
            .iter()
            .enumerate()
            .map(|(i, text)| json_value(&format!("inputs_json[{i}]"), text))
            .collect::<Result<Vec<_>, _>>()?;
        let given = call.options.unwrap_or_default();
        let options = BatchOptions {
            parallel: given.parallel,
            trace: given.include_trace,
            stop_on_error: given.stop_on_error,
            deadline,
        };
        // A batch can take milliseconds: it runs on the blocking pool.
        let report = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            svc.batch(&tenant, &entry, &inputs, options)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(status_of)?;
        let results = report
            .results
            .iter()
            .map(|item| {
                let text = |key: &str| {
                    item.get(key)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let json = |key: &str| item.get(key).map(ToString::to_string).unwrap_or_default();
                let error = text("error");
                pb::BatchItem {
                    ok: error.is_empty(),
                    code: text("code"),
                    message: text("message"),
                    output_json: json("output"),
                    duration_us: item
                        .get("duration_us")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0),
                    error,
                    trace_json: json("trace"),
                }
            })
            .collect();
        let s = &report.summary;
        Ok(Response::new(pb::BatchExecuteResponse {
            results,
            total: count(s.total),
            success: count(s.success),
            failed: count(s.failed),
            skipped: count(s.skipped),
            total_duration_us: s.total_duration_us,
        }))
    }

    async fn get_rule_set(
        &self,
        request: Request<pb::GetRuleSetRequest>,
    ) -> Result<Response<pb::GetRuleSetResponse>, Status> {
        let requested = self.admit(&request, false, Group::Admin)?;
        let tenant = self.view(requested.as_deref())?;
        let entry = self
            .service
            .get(&tenant, &request.get_ref().name)
            .map_err(status_of)?
            .clone();
        let content = self.service.content(&entry).await.map_err(status_of)?;
        let stored = &entry.stored;
        Ok(Response::new(pb::GetRuleSetResponse {
            name: stored.name.clone(),
            version: stored.version.clone(),
            ruleset_json: content.to_string(),
            hash: stored.hash.clone(),
            seq: stored.seq,
        }))
    }

    async fn list_rule_sets(
        &self,
        request: Request<pb::ListRuleSetsRequest>,
    ) -> Result<Response<pb::ListRuleSetsResponse>, Status> {
        let requested = self.admit(&request, false, Group::Admin)?;
        let call = request.get_ref();
        let tenant = self.view(requested.as_deref())?;
        let matching: Vec<_> = self
            .service
            .list(&tenant)
            .into_iter()
            .filter(|r| r.name.starts_with(&call.name_prefix))
            .collect();
        let total = count(matching.len());
        let limit = match call.limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let rulesets = matching
            .into_iter()
            .take(limit)
            .map(|r| pb::RuleSetSummary {
                name: r.name,
                version: r.version,
                description: r.description,
                seq: r.seq,
            })
            .collect();
        Ok(Response::new(pb::ListRuleSetsResponse { rulesets, total }))
    }

    async fn eval(
        &self,
        request: Request<pb::EvalRequest>,
    ) -> Result<Response<pb::EvalResponse>, Status> {
        self.admit(&request, false, Group::Execute)?;
        let call = request.get_ref();
        let context = json_value("context_json", &call.context_json)?;
        let result = self
            .service
            .eval(&call.expression, &context)
            .map_err(status_of)?;
        Ok(Response::new(pb::EvalResponse {
            result_json: to_json(&result.result)?,
            parsed: result.parsed,
        }))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        // Like /health: answered without a token, before the log is attached.
        let svc = &self.service;
        let reasons = svc.not_ready_reasons();
        let catalog = svc.catalog();
        let rulesets: usize = catalog.tenants.values().map(|t| t.rulesets.len()).sum();
        let status = if reasons.is_empty() {
            pb::health_response::Status::Serving
        } else {
            pb::health_response::Status::NotServing
        };
        Ok(Response::new(pb::HealthResponse {
            status: status.into(),
            role: svc.config().role.as_str().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            // Whole seconds: the fraction is of no use to a health check.
            uptime_seconds: svc.uptime_seconds().max(0.0).floor() as u64,
            applied_seq: catalog.seq,
            rulesets: count(rulesets),
            reasons,
        }))
    }

    async fn put_rule_set(
        &self,
        request: Request<pb::PutRuleSetRequest>,
    ) -> Result<Response<pb::PutRuleSetResponse>, Status> {
        let requested = self.admit(&request, true, Group::Admin)?;
        let tenant = self.tenant_id(requested.as_deref())?;
        let text = &request.get_ref().ruleset_json;
        let ruleset = if text.trim_start().starts_with('{') {
            RuleSet::from_json(text)
        } else {
            RuleSet::from_yaml(text)
        }
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let out = self
            .service
            .put_ruleset(tenant, ruleset, None)
            .await
            .map_err(status_of)?;
        let status = match out.status {
            crate::service::PutStatus::Created => "created",
            crate::service::PutStatus::Updated => "updated",
            crate::service::PutStatus::Unchanged => "unchanged",
        };
        Ok(Response::new(pb::PutRuleSetResponse {
            name: out.name,
            version: out.version,
            status: status.to_string(),
            seq: out.seq,
        }))
    }

    async fn delete_rule_set(
        &self,
        request: Request<pb::DeleteRuleSetRequest>,
    ) -> Result<Response<pb::DeleteRuleSetResponse>, Status> {
        let requested = self.admit(&request, true, Group::Admin)?;
        let name = request.into_inner().name;
        check_name(&name)?;
        let tenant = self.tenant_id(requested.as_deref())?;
        let seq = self
            .service
            .delete_ruleset(tenant, name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeleteRuleSetResponse { seq }))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let requested = self.admit(&request, false, Group::Admin)?;
        let name = request.into_inner().name;
        check_name(&name)?;
        let tenant = self.view(requested.as_deref())?;
        let versions = self
            .service
            .versions(&tenant, &name)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::ListVersionsResponse {
            name: versions.name,
            versions: versions
                .versions
                .into_iter()
                .map(|v| pb::VersionInfo {
                    seq: v.seq,
                    version: v.version,
                    created_at: v.created_at,
                    source: v.source.as_str().to_string(),
                    hash: v.hash,
                })
                .collect(),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let requested = self.admit(&request, true, Group::Admin)?;
        let call = request.into_inner();
        check_name(&call.name)?;
        let tenant = self.tenant_id(requested.as_deref())?;
        let out = self
            .service
            .rollback(tenant, call.name, call.seq)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::RollbackResponse {
            name: out.name,
            version: out.to_version,
            seq: out.seq,
            from_seq: out.from_seq.unwrap_or(0),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.admit(&request, false, Group::Admin)?;
        let tenants = self
            .service
            .list_tenants()
            .iter()
            .map(|t| to_json(t).map(|tenant_json| pb::Tenant { tenant_json }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.admit(&request, false, Group::Admin)?;
        let tenant = self
            .service
            .get_tenant(&request.get_ref().id)
            .map_err(status_of)?;
        Ok(Response::new(pb::Tenant {
            tenant_json: to_json(&tenant)?,
        }))
    }

    async fn put_tenant(
        &self,
        request: Request<pb::PutTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.admit(&request, true, Group::Admin)?;
        let config: TenantConfig = serde_json::from_str(&request.get_ref().tenant_json)
            .map_err(|e| Status::invalid_argument(format!("tenant_json: {e}")))?;
        self.service
            .put_tenant(config.clone(), false)
            .await
            .map_err(status_of)?;
        let stored = self.service.get_tenant(&config.id).map_err(status_of)?;
        Ok(Response::new(pb::Tenant {
            tenant_json: to_json(&stored)?,
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        self.admit(&request, true, Group::Admin)?;
        let seq = self
            .service
            .delete_tenant(request.into_inner().id)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::DeleteTenantResponse { seq }))
    }
}
