//! Traces across the hop, read by an in-process OTLP collector (OTLP's trace service as a
//! tonic server): both services export to it (`OTEL_EXPORTER_OTLP_ENDPOINT`), and one
//! unlink-with-transfer, sent with a W3C `traceparent`, must leave one trace: identity's RPC
//! span under the caller's span, the saga's steps under that RPC (through the trace context
//! stored with the workflow), and licensing's spans under the steps that called it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use roster_e2e::{Process, TestKeys, authed, free_port, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_proto::operations::v1 as ops;
use sqlx::Connection;

const START: Duration = Duration::from_secs(60);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.clone())
                .map(|v| match v {
                    Value::StringValue(name) => name,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn collector() -> (SocketAddr, Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let collector = Collector::default();
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });
    (addr, collector)
}

/// Whether the trace is whole: identity's UnlinkUser span under the caller's, and every span
/// of the trace under a span of it; returns what is missing otherwise.
fn whole(spans: &[Span]) -> Result<(), String> {
    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let ids: HashSet<&str> = ours.iter().map(|s| s.span_id.as_str()).collect();
    let rpc = ours
        .iter()
        .find(|s| s.service == "roster-identity" && s.name == "/roster.identity.v1.UserService/UnlinkUser")
        .ok_or("no UnlinkUser span yet")?;
    if rpc.parent != CALLER_SPAN {
        return Err(format!("UnlinkUser's parent is {}, not the caller's span", rpc.parent));
    }
    let steps: Vec<&&Span> = ours
        .iter()
        .filter(|s| s.service == "roster-identity" && s.name.contains('/') && !s.name.starts_with('/'))
        .collect();
    if steps.len() < 2 || steps.iter().any(|s| s.parent != rpc.span_id) {
        return Err(format!("saga steps under the RPC: {steps:#?}"));
    }
    let step_ids: HashSet<&str> = steps.iter().map(|s| s.span_id.as_str()).collect();
    let transfer = ours
        .iter()
        .find(|s| s.service == "roster-licensing" && s.name == "/roster.licensing.v1.ContentService/TransferContent")
        .ok_or("no TransferContent span from licensing yet")?;
    if !step_ids.contains(transfer.parent.as_str()) {
        return Err(format!("TransferContent's parent {} is not a saga step", transfer.parent));
    }
    let orphans: Vec<&&Span> =
        ours.iter().filter(|s| s.parent != CALLER_SPAN && !ids.contains(s.parent.as_str())).collect();
    if !orphans.is_empty() {
        return Err(format!("spans whose parent is not in the trace: {orphans:#?}"));
    }
    Ok(())
}

#[tokio::test]
async fn one_unlink_with_transfer_is_one_trace_across_both_services() {
    let (otlp, collected) = collector().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TestKeys::generate(dir.path());
    let user = |id: &str| keys.user(id);
    let operator = keys.operator();

    let endpoint = format!("http://{otlp}");
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let identity_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let licensing_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let identity_db = roster_e2e::identity_sqlite(&dir.path().join("identity"));
    let identity = Process::serve_identity(
        &dir.path().join("identity"),
        identity_addr,
        &identity_db,
        &keys.dir,
        licensing_addr,
        &otel,
    );
    let licensing =
        Process::serve_licensing(&dir.path().join("licensing"), licensing_addr, None, &keys.dir, identity_addr, &otel);
    let channel = wait_serving(identity_addr, START).await.expect("identity serving");
    let licensing_channel = wait_serving(licensing_addr, START).await.expect("licensing serving");

    let (account, owner) = roster_e2e::create_account(&channel, &operator, "Traced", "owner@traces.example").await;
    let mut licenses = lpb::license_service_client::LicenseServiceClient::new(licensing_channel.clone());
    licenses
        .set_seats(authed(
            lpb::SetSeatsRequest {
                request_id: "traces-seats".into(),
                account_id: account.clone(),
                license_type: lpb::LicenseType::Licensed as i32,
                capacity: 2,
            },
            &operator,
        ))
        .await
        .expect("seats");
    let mut users = pb::user_service_client::UserServiceClient::new(channel.clone());
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&identity_db).await.expect("identity's SQLite");
    let mut members = Vec::new();
    for name in ["leaver", "colleague"] {
        let email = format!("{name}@traces.example");
        let member = roster_e2e::join(&channel, &mut db, &account, &email, &user(&owner), user).await;
        licenses
            .assign_license(authed(
                lpb::AssignLicenseRequest {
                    request_id: format!("traces-assign-{name}"),
                    account_id: account.clone(),
                    user_id: member.clone(),
                    license_type: lpb::LicenseType::Licensed as i32,
                },
                &user(&owner),
            ))
            .await
            .expect("assign");
        members.push(member);
    }
    lpb::content_service_client::ContentServiceClient::new(licensing_channel)
        .register_content(authed(
            lpb::RegisterContentRequest {
                request_id: "traces-recording".into(),
                account_id: account.clone(),
                owner_user_id: members[0].clone(),
                kind: lpb::ContentKind::Recording as i32,
                title: "All hands".into(),
                uses_pmi: false,
            },
            &user(&members[0]),
        ))
        .await
        .expect("a recording");

    let mut unlink = authed(
        pb::UnlinkUserRequest {
            request_id: "traces-unlink".into(),
            account_id: account.clone(),
            user_id: members[0].clone(),
            transfer: Some(pb::ContentTransfer {
                target_user_id: members[1].clone(),
                recordings: true,
                ..Default::default()
            }),
            validate_only: false,
        },
        &user(&owner),
    );
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    unlink.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    let started = users.unlink_user(unlink).await.expect("unlink").into_inner();
    let mut operations = ops::operations_client::OperationsClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let operation = operations
            .get_operation(authed(ops::GetOperationRequest { operation_id: started.id.clone() }, &user(&owner)))
            .await
            .expect("operation")
            .into_inner();
        if operation.done || Instant::now() > deadline {
            break operation;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(finished.done && finished.error.is_none(), "{finished:?}");
    let stored: Option<String> = sqlx::query_scalar("SELECT trace_parent FROM workflows WHERE id = $1")
        .bind(&started.id)
        .fetch_one(&mut db)
        .await
        .expect("workflow row");
    assert!(
        stored.as_deref().is_some_and(|t| t.contains(TRACE)),
        "the workflow keeps its trace for a resume elsewhere: {stored:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut verdict = whole(&collected.spans.lock().expect("spans"));
    while verdict.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        verdict = whole(&collected.spans.lock().expect("spans"));
    }
    if let Err(missing) = verdict {
        panic!("{missing}\nall spans: {:#?}", collected.spans.lock().expect("spans"));
    }

    for mut process in [identity, licensing] {
        assert!(process.terminate(Duration::from_secs(15)).expect("stops").success());
    }
}
