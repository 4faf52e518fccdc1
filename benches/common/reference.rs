//! The reference servers run in the same benchmark: a floor (same axum and runtime, returns
//! without parsing), a parse-only endpoint (`decode_event` and nothing else), and a typed-parse
//! server (the invocation into borrowed typed structs, a small plan, a small reply; no store).

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use defender_responder::decode::{decode_event_json, EventKind};
use defender_responder::invoke::BorrowedInvokeRequest;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Serves the floor on `floor_port`, the parse-only endpoint on `parse_port` and the typed-parse
/// server on `typed_port` until killed. Uses the same runtime as `serve` (multi-thread;
/// `TOKIO_WORKER_THREADS` sets the workers).
pub(crate) fn serve(floor_port: u16, parse_port: u16, typed_port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let floor_app = Router::new()
            .route("/", get(|| async { "ready" }))
            .route("/DefenderAlert", post(floor))
            .layer(DefaultBodyLimit::disable());
        let parse_app = Router::new()
            .route("/", get(|| async { "ready" }))
            .route("/DefenderAlert", post(parse_only))
            .layer(DefaultBodyLimit::disable());
        let typed_app = Router::new()
            .route("/", get(|| async { "ready" }))
            .route("/DefenderAlert", post(typed_parse))
            .layer(DefaultBodyLimit::disable());
        let typed_listener = tokio::net::TcpListener::bind(("127.0.0.1", typed_port))
            .await
            .expect("bind typed-parse");
        let floor_listener = tokio::net::TcpListener::bind(("127.0.0.1", floor_port))
            .await
            .expect("bind floor");
        let parse_listener = tokio::net::TcpListener::bind(("127.0.0.1", parse_port))
            .await
            .expect("bind parse-only");
        let floor = axum::serve(floor_listener, floor_app);
        let parse = axum::serve(parse_listener, parse_app);
        let typed = axum::serve(typed_listener, typed_app);
        let _ = tokio::join!(floor, parse, typed);
    });
}

/// Reads the body (the connection must be drained) and answers a fixed host reply.
async fn floor(body: Bytes) -> Json<Value> {
    std::hint::black_box(&body);
    Json(json!({"Outputs": {}, "Logs": [], "ReturnValue": null}))
}

/// Parses the invocation and decodes the event exactly as `/DefenderAlert` does; nothing more.
async fn parse_only(body: Bytes) -> Json<Value> {
    let request = match BorrowedInvokeRequest::parse(&body) {
        Ok(request) => request,
        Err(_) => return Json(json!({"Outputs": {}, "Logs": ["bad"], "ReturnValue": null})),
    };
    let kind = match request
        .binding("event")
        .map(|event| decode_event_json(event, 0))
    {
        Some(event) => match event.kind {
            EventKind::Alert(_) => "alert",
            _ => "other",
        },
        None => "none",
    };
    Json(json!({"Outputs": {}, "Logs": [kind], "ReturnValue": null}))
}

/// The host's invocation, typed: only the event is read; `Metadata` is skipped.
#[derive(Deserialize)]
struct TypedInvocation<'a> {
    #[serde(rename = "Data", borrow)]
    data: TypedData<'a>,
    #[serde(rename = "Metadata", default)]
    _metadata: IgnoredAny,
}

#[derive(Deserialize)]
struct TypedData<'a> {
    #[serde(borrow)]
    event: TypedEvent<'a>,
}

/// An Event Grid event carrying a Defender alert (REST shape: `data.properties`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    data: TypedAlertData<'a>,
}

#[derive(Deserialize)]
struct TypedAlertData<'a> {
    #[serde(borrow)]
    properties: TypedAlert<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedAlert<'a> {
    #[serde(borrow)]
    system_alert_id: Cow<'a, str>,
    #[serde(borrow)]
    alert_type: Cow<'a, str>,
    #[serde(borrow)]
    severity: Cow<'a, str>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    compromised_entity: Option<Cow<'a, str>>,
    #[serde(default)]
    resource_identifiers: Vec<TypedResource>,
    #[serde(default)]
    entities: Vec<IgnoredAny>,
    #[serde(default)]
    extended_properties: Option<std::collections::BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedResource {
    #[serde(default, alias = "AzureResourceId")]
    azure_resource_id: Option<String>,
}

/// One task of the small plan: what a minimal responder would queue.
#[derive(Serialize)]
struct SmallTask<'a> {
    action: &'static str,
    target: &'a str,
    message_id: String,
    reason: String,
}

/// The typed-parse server: the invocation into typed structs (strings borrowed where they
/// need no unescaping), a plan of nine small tasks with SHA-256 message ids, and a reply
/// summarising it. What a minimal typed server does for the same alert, without a store.
async fn typed_parse(body: Bytes) -> Json<Value> {
    let request: TypedInvocation<'_> = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return Json(json!({"Outputs": {}, "Logs": ["bad"], "ReturnValue": null})),
    };
    let event = &request.data.event;
    let alert = &event.data.properties;
    let target = alert
        .resource_identifiers
        .iter()
        .find_map(|resource| resource.azure_resource_id.as_deref())
        .or(alert.compromised_entity.as_deref())
        .unwrap_or("unknown");
    const ACTIONS: [&str; 9] = [
        "notify_security_team",
        "notify_owner",
        "snapshot_access_policy",
        "restrict_network",
        "disable_principal",
        "rotate_secret",
        "rotate_key",
        "review_access",
        "open_incident",
    ];
    let tasks: Vec<SmallTask<'_>> = ACTIONS
        .iter()
        .map(|action| {
            let digest = Sha256::new()
                .chain_update(alert.system_alert_id.as_bytes())
                .chain_update(action.as_bytes())
                .chain_update(target.as_bytes())
                .finalize();
            SmallTask {
                action,
                target,
                message_id: hex::encode(&digest[..16]),
                reason: format!(
                    "{} ({}, {}) on {target}",
                    alert.alert_type, alert.severity, event.event_type
                ),
            }
        })
        .collect();
    let planned = serde_json::to_string(&tasks)
        .map(|text| text.len())
        .unwrap_or(0);
    std::hint::black_box((
        planned,
        &alert.entities,
        &alert.extended_properties,
        &alert.status,
    ));
    Json(json!({
        "Outputs": {},
        "Logs": [format!("event {}: planned, {} task(s)", event.id, tasks.len())],
        "ReturnValue": {
            "event_id": event.id,
            "outcome": "planned",
            "task_count": tasks.len(),
            "tasks": tasks.iter().map(|task| json!({"message_id": task.message_id, "action": task.action})).collect::<Vec<_>>(),
        }
    }))
}
