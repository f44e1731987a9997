//! gRPC black-box tests: a tonic client against the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Server, ruleset};
use ordo_proto::v1 as pb;
use ordo_proto::v1::ordo_service_client::OrdoServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// Runs `f` to completion on a runtime of its own: the servers' blocking HTTP client
/// must be made and dropped outside any runtime.
fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn client(server: &Server) -> OrdoServiceClient<Channel> {
    let addr = server.grpc.clone().expect("the server serves gRPC");
    OrdoServiceClient::connect(addr).await.unwrap()
}

/// A request carrying `metadata` (key, value) pairs.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> Request<T> {
    let mut request = Request::new(message);
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    request
}

fn put(name: &str, version: &str, code: &str) -> pb::PutRuleSetRequest {
    pb::PutRuleSetRequest {
        ruleset_json: ruleset(name, version, code).to_string(),
    }
}

fn execute(name: &str, input: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        ruleset_name: name.into(),
        input_json: input.into(),
        include_trace: false,
    }
}

#[test]
fn every_rpc_answers_and_errors_map_to_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--rules-dir", dir.path().to_str().unwrap()]);
    let created = run(async {
        let mut c = client(&server).await;
        c.put_rule_set(put("grpc-r", "1.0.0", "ONE"))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(
        (created.status.as_str(), created.name.as_str()),
        ("created", "grpc-r")
    );
    let first_seq = created.seq;
    // Written through gRPC, visible to HTTP and in the rules directory: one write path.
    assert_eq!(server.get("/api/v1/rulesets/grpc-r").status, 200);
    assert!(dir.path().join("grpc-r.json").exists());
    run(async {
        let mut c = client(&server).await;

        let out = c
            .execute(execute("grpc-r", r#"{"x": 20}"#))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.code, "ONE");
        let output: serde_json::Value = serde_json::from_str(&out.output_json).unwrap();
        assert_eq!(output["size"], "big");
        assert!(out.trace_json.is_empty());
        let traced = c
            .execute(pb::ExecuteRequest {
                include_trace: true,
                ..execute("grpc-r", r#"{"x": 1}"#)
            })
            .await
            .unwrap()
            .into_inner();
        assert!(traced.trace_json.contains("check"), "{}", traced.trace_json);

        let batch = c
            .batch_execute(pb::BatchExecuteRequest {
                ruleset_name: "grpc-r".into(),
                inputs_json: vec![r#"{"x": 20}"#.into(), r#"{"x": 1}"#.into()],
                options: Some(pb::BatchOptions {
                    parallel: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((batch.total, batch.success, batch.failed), (2, 2, 0));
        let sizes: Vec<String> = batch
            .results
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.output_json).unwrap()["size"]
                    .to_string()
            })
            .collect();
        assert_eq!(sizes, ["\"big\"", "\"small\""]);

        let got = c
            .get_rule_set(pb::GetRuleSetRequest {
                name: "grpc-r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((got.version.as_str(), got.seq), ("1.0.0", first_seq));
        let parsed: serde_json::Value = serde_json::from_str(&got.ruleset_json).unwrap();
        assert_eq!(parsed["config"]["name"], "grpc-r");

        c.put_rule_set(put("grpc-other", "1", "X")).await.unwrap();
        c.put_rule_set(put("another", "1", "X")).await.unwrap();
        let listed = c
            .list_rule_sets(pb::ListRuleSetsRequest {
                name_prefix: "grpc-".into(),
                limit: 1,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.total, 2);
        let names: Vec<&str> = listed.rulesets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["grpc-other"]);

        let eval = c
            .eval(pb::EvalRequest {
                expression: "a + b * 2".into(),
                context_json: r#"{"a": 1, "b": 3}"#.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(eval.result_json, "7");

        // A new version, the versions, and a rollback to the first.
        let updated = c
            .put_rule_set(put("grpc-r", "2.0.0", "TWO"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.status, "updated");
        let versions = c
            .list_versions(pb::ListVersionsRequest {
                name: "grpc-r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let listed: Vec<&str> = versions
            .versions
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(listed, ["2.0.0", "1.0.0"]);
        let back = c
            .rollback(pb::RollbackRequest {
                name: "grpc-r".into(),
                seq: first_seq,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (back.version.as_str(), back.from_seq),
            ("1.0.0", updated.seq)
        );
        let out = c
            .execute(execute("grpc-r", r#"{"x": 20}"#))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.code, "ONE");

        let health = c
            .health(pb::HealthRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status(), pb::health_response::Status::Serving);
        assert_eq!((health.role.as_str(), health.rulesets), ("standalone", 3));
        assert_eq!(health.applied_seq, back.seq);

        // Errors, each with the status the HTTP status maps to.
        let code =
            |r: Result<tonic::Response<pb::ExecuteResponse>, tonic::Status>| r.unwrap_err().code();
        assert_eq!(
            code(c.execute(execute("missing", "{}")).await),
            Code::NotFound
        );
        assert_eq!(
            code(c.execute(execute("grpc-r", "{not json")).await),
            Code::InvalidArgument
        );
        let invalid = c
            .put_rule_set(pb::PutRuleSetRequest {
                ruleset_json:
                    r#"{"config": {"name": "bad", "entry_step": "nowhere"}, "steps": {}}"#.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
        let bad_eval = c
            .eval(pb::EvalRequest {
                expression: "1 +".into(),
                context_json: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_eval.code(), Code::InvalidArgument);
        let rollback_nowhere = c
            .rollback(pb::RollbackRequest {
                name: "grpc-r".into(),
                seq: 9999,
            })
            .await
            .unwrap_err();
        assert_eq!(rollback_nowhere.code(), Code::NotFound);

        let deleted = c
            .delete_rule_set(pb::DeleteRuleSetRequest {
                name: "grpc-r".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(deleted.seq > back.seq);
        let gone = c
            .get_rule_set(pb::GetRuleSetRequest {
                name: "grpc-r".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    });
    assert!(!dir.path().join("grpc-r.json").exists());
}

#[test]
fn a_reader_refuses_every_write_rpc_naming_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Server::start(&[
        "--role",
        "writer",
        "--rules-dir",
        dir.path().to_str().unwrap(),
    ]);
    run(async {
        let mut w = client(&writer).await;
        w.put_rule_set(put("shared", "1", "W")).await.unwrap();
    });
    let reader = Server::start(&[
        "--role",
        "reader",
        "--rules-dir",
        dir.path().to_str().unwrap(),
        "--writer-addr",
        "http://writer.example:8080",
    ]);
    let anonymous = Server::start(&[
        "--role",
        "reader",
        "--rules-dir",
        dir.path().to_str().unwrap(),
    ]);
    run(async {
        let mut w = client(&writer).await;
        let mut r = client(&reader).await;

        let refusals = [
            r.put_rule_set(put("shared", "2", "R")).await.map(|_| ()),
            r.delete_rule_set(pb::DeleteRuleSetRequest {
                name: "shared".into(),
            })
            .await
            .map(|_| ()),
            r.rollback(pb::RollbackRequest {
                name: "shared".into(),
                seq: 1,
            })
            .await
            .map(|_| ()),
            r.put_tenant(pb::PutTenantRequest {
                tenant_json: r#"{"id": "acme"}"#.into(),
            })
            .await
            .map(|_| ()),
            r.delete_tenant(pb::DeleteTenantRequest {
                id: "default".into(),
            })
            .await
            .map(|_| ()),
        ];
        for refused in refusals {
            let status = refused.unwrap_err();
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(
                status.message().contains("http://writer.example:8080"),
                "{status:?}"
            );
            assert_eq!(
                status
                    .metadata()
                    .get("x-ordo-writer")
                    .unwrap()
                    .to_str()
                    .unwrap(),
                "http://writer.example:8080"
            );
        }
        // Reads and executions work on the reader.
        let out = r
            .execute(execute("shared", r#"{"x": 1}"#))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.code, "W");
        let listed = r
            .list_rule_sets(pb::ListRuleSetsRequest::default())
            .await
            .unwrap();
        assert_eq!(listed.into_inner().total, 1);
        // Nothing changed on the writer.
        let versions = w
            .list_versions(pb::ListVersionsRequest {
                name: "shared".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(versions.versions.len(), 1);

        // Without --writer-addr the writer is "unknown".
        let status = client(&anonymous)
            .await
            .put_rule_set(put("x", "1", "X"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.metadata().get("x-ordo-writer").unwrap(), "unknown");
    });
}

#[test]
fn tokens_come_from_metadata_and_tenants_stay_apart() {
    let server = Server::start(&["--api-token", "s3cret", "--multi-tenancy-enabled"]);
    run(async {
        let mut c = client(&server).await;
        let auth = [("authorization", "Bearer s3cret")];

        let missing = c
            .list_rule_sets(pb::ListRuleSetsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        let wrong = c
            .list_rule_sets(with(
                pb::ListRuleSetsRequest::default(),
                &[("authorization", "Bearer nope")],
            ))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated);
        assert!(!server.log_text().contains("s3cret"));

        let tenant = c
            .put_tenant(with(
                pb::PutTenantRequest {
                    tenant_json: r#"{"id": "acme", "name": "Acme"}"#.into(),
                },
                &auth,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(
            tenant.tenant_json.contains("\"acme\""),
            "{}",
            tenant.tenant_json
        );
        let acme = [("authorization", "Bearer s3cret"), ("x-tenant-id", "acme")];
        c.put_rule_set(with(put("only-acme", "1", "ACME"), &acme))
            .await
            .unwrap();
        let out = c
            .execute(with(execute("only-acme", r#"{"x": 1}"#), &acme))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.code, "ACME");
        // The default tenant does not see it; an unknown tenant is not found.
        let elsewhere = c
            .execute(with(execute("only-acme", r#"{"x": 1}"#), &auth))
            .await
            .unwrap_err();
        assert_eq!(elsewhere.code(), Code::NotFound);
        let unknown = c
            .execute(with(
                execute("only-acme", "{}"),
                &[
                    ("authorization", "Bearer s3cret"),
                    ("x-tenant-id", "nobody"),
                ],
            ))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let tenants = c
            .list_tenants(with(pb::ListTenantsRequest {}, &auth))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(tenants.tenants.len(), 2);
    });
}

#[test]
fn the_standard_health_service_and_reflection_are_served() {
    let server = Server::start(&[]);
    run(async {
        let channel = Channel::from_shared(server.grpc.clone().unwrap())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "ordo.v1.OrdoService"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status();
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving
            );
        }

        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(channel);
        let request = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a service list: {answer:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"ordo.v1.OrdoService".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
    });
}

#[test]
fn a_server_with_nothing_to_serve_or_half_a_tls_setup_refuses_to_start() {
    for args in [
        &["--disable-grpc", "--disable-http"][..],
        &["--grpc-tls-cert", "/nonexistent/cert.pem"][..],
        &["--grpc-tls-client-ca", "/nonexistent/ca.pem"][..],
    ] {
        let out = std::process::Command::new(common::BIN)
            .args(["--port", "0", "--grpc-port", "0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("grpc") || stderr.contains("disable"),
            "{args:?}: {stderr}"
        );
    }
}

/// A test CA, a server certificate for localhost/127.0.0.1 and a client certificate,
/// written as PEM files into `dir`.
struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

fn pki(dir: &std::path::Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ordo test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();

    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca: ca.pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// Connects to `server` over TLS trusting `pki`'s CA, presenting its client
/// certificate when `identify`, and asks for the server's health.
async fn tls_health(server: &Server, pki: &Pki, identify: bool) -> Result<(), String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if identify {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let url = server.grpc.clone().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let channel = Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    OrdoServiceClient::new(channel)
        .health(pb::HealthRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

#[test]
fn grpc_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));

    let tls = Server::start(&["--grpc-tls-cert", &cert, "--grpc-tls-key", &key]);
    run(async {
        tls_health(&tls, &pki, false).await.unwrap();
        // A plaintext client gets no answer from a TLS listener.
        let plain = tls.grpc.clone().unwrap().replace("https://", "http://");
        let refused = match Channel::from_shared(plain).unwrap().connect().await {
            Ok(channel) => OrdoServiceClient::new(channel)
                .health(pb::HealthRequest::default())
                .await
                .is_err(),
            Err(_) => true,
        };
        assert!(refused, "a plaintext call was answered over TLS");
    });

    let mutual = Server::start(&[
        "--grpc-tls-cert",
        &cert,
        "--grpc-tls-key",
        &key,
        "--grpc-tls-client-ca",
        &ca,
    ]);
    run(async {
        tls_health(&mutual, &pki, true).await.unwrap();
        let anonymous = tls_health(&mutual, &pki, false).await;
        assert!(
            anonymous.is_err(),
            "a client without a certificate was served"
        );
    });
}

#[test]
fn health_is_not_serving_before_the_log_is_reached_and_from_the_shutdown_signal() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let request = || HealthCheckRequest {
        service: "ordo.v1.OrdoService".into(),
    };

    // A database that does not answer: the server listens but is not ready.
    let waiting = Server::start(&["--database-url", "postgres://ordo@127.0.0.1:1/ordo"]);
    run(async {
        let channel = Channel::from_shared(waiting.grpc.clone().unwrap())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let status = HealthClient::new(channel.clone())
            .check(request())
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::NotServing);
        // The API itself answers UNAVAILABLE meanwhile.
        let refused = OrdoServiceClient::new(channel)
            .list_rule_sets(pb::ListRuleSetsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    });

    // A ready server watched until it stops: SERVING, then NOT_SERVING at SIGTERM.
    let server = Server::start(&["--shutdown-timeout-secs", "1"]);
    let pid = server.pid();
    run(async {
        let channel = Channel::from_shared(server.grpc.clone().unwrap())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut watch = HealthClient::new(channel)
            .watch(request())
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status(), ServingStatus::Serving);
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let next = watch.message().await.unwrap().unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing);
    });
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn messages_are_bounded_by_the_body_limit() {
    let server = Server::start(&["--max-body-bytes", "4096"]);
    run(async {
        let mut c = client(&server).await;
        let big = format!(r#"{{"x": 1, "pad": "{}"}}"#, "p".repeat(8192));
        let refused = c
            .eval(pb::EvalRequest {
                expression: "x".into(),
                context_json: big,
            })
            .await
            .unwrap_err();
        // tonic's status for an oversized message, with the limit in its message.
        assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
        assert!(refused.message().contains("4096"), "{refused:?}");
        // Under the limit it is served.
        let small = c
            .eval(pb::EvalRequest {
                expression: "x + 1".into(),
                context_json: r#"{"x": 1}"#.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(small.result_json, "2");
    });
}

#[test]
fn a_tenants_rate_limit_answers_resource_exhausted() {
    let server = Server::start(&["--default-tenant-qps", "1", "--default-tenant-burst", "1"]);
    run(async {
        let mut c = client(&server).await;
        c.put_rule_set(put("limited", "1", "L")).await.unwrap();
        let first = c.execute(execute("limited", r#"{"x": 1}"#)).await;
        assert!(first.is_ok(), "{first:?}");
        let second = c
            .execute(execute("limited", r#"{"x": 1}"#))
            .await
            .unwrap_err();
        assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
        assert!(second.metadata().get("retry-after").is_some(), "{second:?}");
    });
}

/// A ruleset that loops through a decision until its step or time limit: each round
/// scans `text`, so a long text makes it slow.
fn spin() -> serde_json::Value {
    serde_json::json!({
        "config": {"name": "spin", "entry_step": "d", "max_depth": 100000, "timeout_ms": 20000},
        "steps": {
            "d": {"id": "d", "type": "decision",
                   "branches": [{"condition": "len(regex_find_all('a+', text)) >= 0", "next_step": "a"}]},
            "a": {"id": "a", "type": "action", "actions": [], "next_step": "d"}
        }
    })
}

/// One unary call over a bare HTTP/2 connection with `grpc-timeout: {timeout}`, so no
/// client-side timer can answer for the server (tonic's client ends an expired call
/// itself, as CANCELLED). Returns the `grpc-status` and `grpc-message` the server sent.
async fn call_with_timeout<M: prost::Message>(
    server: &Server,
    method: &str,
    message: &M,
    timeout: &str,
) -> (String, String) {
    let addr = server.grpc.clone().unwrap();
    let host = addr.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("{addr}/ordo.v1.OrdoService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(())
        .unwrap();
    let (response, mut send) = h2.send_request(request, false).unwrap();
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&body);
    send.send_data(frame.into(), true).unwrap();
    let response = response.await.unwrap();
    let header = |map: &http::HeaderMap, key: &str| {
        map.get(key)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    // A call that fails before any message carries its status in the headers
    // ("trailers-only"); otherwise it comes in the trailers.
    let (mut status, mut message) = (
        header(response.headers(), "grpc-status"),
        header(response.headers(), "grpc-message"),
    );
    if status.is_empty() {
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.unwrap().unwrap_or_default();
        status = header(&trailers, "grpc-status");
        message = header(&trailers, "grpc-message");
    }
    (status, message)
}

#[test]
fn a_client_deadline_stops_the_execution_with_deadline_exceeded() {
    let server = Server::start(&["--worker-threads", "1"]);
    assert_eq!(server.post("/api/v1/rulesets", &spin()).status, 201);
    assert_eq!(
        server
            .post("/api/v1/rulesets", &ruleset("quick", "1", "Q"))
            .status,
        201
    );
    let text = "a b ".repeat(2000);
    let input = serde_json::json!({"text": text}).to_string();
    let deadline_exceeded = (Code::DeadlineExceeded as i32).to_string();
    run(async {
        // Without a deadline the execution would run for the ruleset's 20 s.
        let started = std::time::Instant::now();
        let (status, message) =
            call_with_timeout(&server, "Execute", &execute("spin", &input), "200m").await;
        let took = started.elapsed();
        assert_eq!(status, deadline_exceeded, "{message}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "answered after {took:?}"
        );

        // The execution stopped too: on the one serving thread, the next call is
        // answered at once rather than after the spin.
        let mut c = client(&server).await;
        let started = std::time::Instant::now();
        let out = c
            .execute(execute("quick", "{}"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(out.code, "Q");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        // A batch is bounded by the deadline as a whole.
        let batch = pb::BatchExecuteRequest {
            ruleset_name: "spin".into(),
            inputs_json: vec![input.clone(); 50],
            options: None,
        };
        let started = std::time::Instant::now();
        let (status, message) = call_with_timeout(&server, "BatchExecute", &batch, "300m").await;
        assert_eq!(status, deadline_exceeded, "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(3));

        // A generous deadline changes nothing.
        let (status, message) =
            call_with_timeout(&server, "Execute", &execute("quick", "{}"), "10S").await;
        assert_eq!(status, "0", "{message}");
    });
}

#[test]
fn rate_limits_answer_resource_exhausted_and_shedding_unavailable() {
    let server = Server::start(&[
        "--rate-limit.enabled",
        "--rate-limit.default-rps",
        "1",
        "--rate-limit.default-burst",
        "1000",
        "--rate-limit.endpoints.execute-burst",
        "6",
    ]);
    let mut limited = ruleset("limited", "1", "L");
    limited["config"]["rate_limit"] = serde_json::json!({"requests_per_second": 1, "burst": 2});
    let mut bounded = ruleset("bounded", "1", "B");
    bounded["config"]["backpressure"] = serde_json::json!({"max_concurrent": 1});
    assert_eq!(server.post("/api/v1/rulesets", &limited).status, 201);
    assert_eq!(server.post("/api/v1/rulesets", &bounded).status, 201);
    let held = common::hold(&server, "bounded", 1);
    common::wait_for("the slot held", std::time::Duration::from_secs(10), || {
        server
            .get("/metrics")
            .text
            .contains("ordo_executions_in_flight 1")
    });
    run(async {
        let mut c = client(&server).await;
        // The ruleset's own limit: two, then RESOURCE_EXHAUSTED with a retry hint.
        for _ in 0..2 {
            c.execute(execute("limited", "{}")).await.unwrap();
        }
        let e = c.execute(execute("limited", "{}")).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.metadata().get("retry-after").is_some());
        // Shedding: the one slot is held by the HTTP request above.
        let e = c.execute(execute("bounded", "{}")).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(e.message().contains("bounded"), "{e:?}");
        // The platform limit of the execute group: 6 calls in all, 3 made so far
        // (refusals count), then RESOURCE_EXHAUSTED whatever the ruleset.
        for _ in 0..3 {
            let _ = c.execute(execute("bounded", "{}")).await;
        }
        let e = c.execute(execute("limited", "{}")).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("client"), "{e:?}");
        // Admin calls have their own bucket.
        c.list_rule_sets(pb::ListRuleSetsRequest::default())
            .await
            .unwrap();
    });
    drop(held);
}
