//! `POST /api/defender-alerts`: a direct Event Grid webhook (Event Grid schema, CloudEvents
//! single and batch), with both validation handshakes; each event's outcome is reported.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::defender_alert::log_report;
use super::{read_body, too_large};
use crate::decode::{decode_body, EventKind, MAX_BODY_BYTES};
use crate::pipeline::{EventReport, Outcome};
use crate::state::AppState;

/// The webhook's route.
pub const ROUTE: &str = "/api/defender-alerts";

/// CloudEvents abuse protection (HTTP 1.1 web hooks spec): answer the validation `OPTIONS`
/// request by allowing the requesting origin.
pub async fn options(headers: HeaderMap) -> Response {
    let Some(origin) = headers.get("webhook-request-origin").cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "OPTIONS without a WebHook-Request-Origin header is not a CloudEvents validation request"})),
        )
            .into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert("webhook-allowed-origin", origin);
    if headers.contains_key("webhook-request-rate") {
        response_headers.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
    }
    response_headers.insert("allow", HeaderValue::from_static("POST, OPTIONS"));
    response
}

/// Handles one delivery of one or more events.
pub async fn deliver(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let event_type_header = headers
        .get("aeg-event-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if event_type_header == "unsubscribe" {
        return (StatusCode::OK, Json(json!({"events": []}))).into_response();
    }
    let body = match read_body(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(reason) => return too_large(reason),
    };
    let events = match decode_body(&body) {
        Ok(events) => events,
        Err(err) => {
            // Event Grid does not retry a 400: it dead-letters, which is right for a body
            // that will never parse.
            tracing::warn!(error = %err, bytes = body.len(), "Delivery rejected.");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": err.to_string(), "events": []})),
            )
                .into_response();
        }
    };
    // The subscription-validation handshake answers with the code of the validation event.
    if let Some(code) = events.iter().find_map(|event| match &event.kind {
        EventKind::SubscriptionValidation { code, .. } => Some(code.clone()),
        _ => None,
    }) {
        tracing::info!("Event Grid subscription validated.");
        return (StatusCode::OK, Json(json!({"validationResponse": code}))).into_response();
    }

    let mut reports: Vec<EventReport> = Vec::with_capacity(events.len());
    let mut retry = Vec::new();
    // One event at a time: a redelivered alert later in the same batch must see the ledger
    // entry of the first, and a failure of one event does not stop the others.
    for event in &events {
        match state
            .pipeline
            .handle(event, &state.ledger, state.publisher.as_ref())
            .await
        {
            Ok(report) => {
                log_report(&report);
                reports.push(report);
            }
            Err(err) => {
                let outcome = if err.is_retryable() {
                    "failed"
                } else {
                    "rejected"
                };
                crate::invoke::log_failure(&format!("event {}", event.event_id), &err);
                if err.is_retryable() {
                    retry.push(event.event_id.clone());
                }
                reports.push(EventReport {
                    event_id: event.event_id.clone(),
                    outcome: Outcome::Rejected,
                    reason: format!("{outcome}: {err}"),
                    alert: None,
                    tasks: Vec::new(),
                    warnings: Vec::new(),
                    validation_code: None,
                });
            }
        }
    }
    // Any retryable failure: answer 503 so Event Grid redelivers the whole batch; the events
    // that succeeded are then recognised as duplicates and publish nothing twice.
    let status = if retry.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"events": reports, "retry": retry}))).into_response()
}
