//! The reference servers run in the same benchmark: a floor (same axum and runtime, returns
//! without parsing) and a parse-only endpoint (`decode_event` and nothing else).

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use defender_responder::decode::{decode_event, EventKind};
use defender_responder::invoke::InvokeRequest;
use serde_json::{json, Value};

/// Serves the floor on `floor_port` and the parse-only endpoint on `parse_port` until killed.
/// Uses the same runtime as `serve` (multi-thread; `TOKIO_WORKER_THREADS` sets the workers).
pub(crate) fn serve(floor_port: u16, parse_port: u16) {
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
        let floor_listener = tokio::net::TcpListener::bind(("127.0.0.1", floor_port))
            .await
            .expect("bind floor");
        let parse_listener = tokio::net::TcpListener::bind(("127.0.0.1", parse_port))
            .await
            .expect("bind parse-only");
        let floor = axum::serve(floor_listener, floor_app);
        let parse = axum::serve(parse_listener, parse_app);
        let _ = tokio::join!(floor, parse);
    });
}

/// Reads the body (the connection must be drained) and answers a fixed host reply.
async fn floor(body: Bytes) -> Json<Value> {
    std::hint::black_box(&body);
    Json(json!({"Outputs": {}, "Logs": [], "ReturnValue": null}))
}

/// Parses the invocation and decodes the event exactly as `/DefenderAlert` does; nothing more.
async fn parse_only(body: Bytes) -> Json<Value> {
    let request: InvokeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return Json(json!({"Outputs": {}, "Logs": ["bad"], "ReturnValue": null})),
    };
    let kind = match request.binding("event").map(|event| decode_event(event, 0)) {
        Some(event) => match event.kind {
            EventKind::Alert(_) => "alert",
            _ => "other",
        },
        None => "none",
    };
    Json(json!({"Outputs": {}, "Logs": [kind], "ReturnValue": null}))
}
