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
pub mod workers;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// The HTTP application: one route per function folder, the webhook, and the host's probe.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(readiness))
        .route(
            functions::defender_alert::ROUTE,
            post(functions::defender_alert::invoke),
        )
        .route(
            functions::webhook::ROUTE,
            post(functions::webhook::deliver).options(functions::webhook::options),
        )
        .route(
            "/NotificationWorker",
            post(functions::workers::notification),
        )
        .route("/IsolationWorker", post(functions::workers::isolation))
        .route("/RotationWorker", post(functions::workers::rotation))
        .route(
            "/Decision",
            post(functions::workers::decision)
                .layer(DefaultBodyLimit::max(4 * approval::endpoint::MAX_FORM_BYTES)),
        )
        .route("/DecisionSweeper", post(functions::workers::sweep))
        .route(
            approval::endpoint::ROUTE,
            any(functions::workers::decide_route)
                .layer(DefaultBodyLimit::max(approval::endpoint::MAX_FORM_BYTES)),
        )
        // The functions enforce the delivery limit themselves with a clear error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The host polls `GET /` until it answers; any answer means ready.
async fn readiness() -> Json<serde_json::Value> {
    Json(json!({"status": "ready", "service": "defender-responder"}))
}
