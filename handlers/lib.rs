//! defender-responder: Defender for Cloud alerts in, response plans out, tasks on queues.
//!
//! The crate is the Azure Functions custom handler: [`app`] builds the HTTP server the
//! Functions host calls; [`cli`] holds the offline commands.

pub mod adapters;
pub mod approval;
pub mod azure;
pub mod cli;
pub mod config;
pub mod decode;
pub mod domain;
pub mod encode;
pub mod error;
pub mod executors;
pub mod functions;
pub mod invoke;
pub mod journal;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod server;
pub mod services;
pub mod state;
pub mod tls;
pub mod workers;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// The HTTP application: one route per function folder, the webhook, and the host's probe.
pub fn app(state: AppState) -> Router {
    functions::router()
        .route("/", get(readiness))
        .route(
            functions::webhook::ROUTE,
            post(functions::webhook::deliver).options(functions::webhook::options),
        )
        .route(
            approval::endpoint::ROUTE,
            any(functions::workers::decide_route)
                .layer(DefaultBodyLimit::max(approval::endpoint::MAX_FORM_BYTES)),
        )
        // The functions enforce the delivery limit themselves with a clear error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// `GET /`: 200 when the publisher's last check or publish succeeded, 503 naming the fault
/// (a missing queue, a refused password) otherwise. The Functions host polls this until it
/// gets any HTTP answer and counts a 503 as started too, so a fault never keeps the app from
/// starting: invocations then get retryable replies until it is fixed, and monitoring sees
/// the 503 with the reason.
async fn readiness(State(state): State<AppState>) -> Response {
    match state.publisher.readiness() {
        Ok(()) => Json(json!({"status": "ready", "service": "defender-responder"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "service": "defender-responder", "reason": reason})),
        )
            .into_response(),
    }
}
