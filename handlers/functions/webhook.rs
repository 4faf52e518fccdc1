//! `POST /api/defender-alerts`: a direct Event Grid webhook (Event Grid schema, CloudEvents
//! single and batch), with both validation handshakes; each event's outcome is reported.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::defender_alert::log_report;
use super::{
    bounded, incomplete, read_body, too_large, BodyReadError, REPLY_MAX_EVENTS,
    REPLY_MAX_REASON_BYTES,
};
use crate::decode::{
    decode_delivery, BodyError, EventKind, MAX_BODY_BYTES, MAX_EVENTS_PER_DELIVERY,
};
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

/// One event's line in a webhook reply: what happened and why, without the plan itself
/// (its tasks are on the queues).
#[derive(Debug, Serialize)]
struct EventLine {
    event_id: String,
    outcome: &'static str,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_alert_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_type: Option<String>,
    task_count: usize,
    #[serde(skip_serializing_if = "is_zero")]
    warning_count: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The reply to a delivery: counts per outcome over every event, the first
/// [`REPLY_MAX_EVENTS`] events in detail, and the ids of the events that failed retryably.
#[derive(Debug, Default, Serialize)]
struct DeliveryReply {
    #[serde(rename = "validationResponse", skip_serializing_if = "Option::is_none")]
    validation_response: Option<String>,
    counts: BTreeMap<&'static str, usize>,
    events: Vec<EventLine>,
    #[serde(skip_serializing_if = "is_zero")]
    events_omitted: usize,
    retry: Vec<String>,
}

impl DeliveryReply {
    fn add(&mut self, line: EventLine) {
        *self.counts.entry(line.outcome).or_default() += 1;
        if self.events.len() < REPLY_MAX_EVENTS {
            self.events.push(line);
        } else {
            self.events_omitted += 1;
        }
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Planned => "planned",
        Outcome::Duplicate => "duplicate",
        Outcome::StatusUpdate => "status_update",
        Outcome::Ignored => "ignored",
        Outcome::Rejected => "rejected",
    }
}

/// Handles one delivery of one or more events. Every event is handled, a subscription
/// validation among them too: its code is answered as `validationResponse` next to the
/// other events' outcomes.
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
        Err(BodyReadError::TooLarge(reason)) => return too_large(reason),
        Err(BodyReadError::Incomplete(reason)) => return incomplete(reason),
    };
    let bytes = body.len();
    let decoded = state
        .pipeline
        .run_cpu(move || decode_delivery(&body, MAX_EVENTS_PER_DELIVERY))
        .await;
    let events = match decoded {
        Ok(Ok(events)) => events,
        Ok(Err(err @ BodyError::TooManyEvents { .. })) => return too_large(err.to_string()),
        Ok(Err(err)) => {
            // Event Grid does not retry a 400: it dead-letters, which is right for a body
            // that will never parse.
            tracing::warn!(error = %err, bytes, "Delivery rejected.");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": err.to_string(), "events": []})),
            )
                .into_response();
        }
        Err(err) => {
            tracing::error!(error = %err, "Decoding the delivery did not finish.");
            return (
                err.status_code(),
                Json(json!({"error": err.to_string(), "events": []})),
            )
                .into_response();
        }
    };

    let only_handshakes = events
        .iter()
        .all(|event| matches!(event.kind, EventKind::SubscriptionValidation { .. }));
    let mut reply = DeliveryReply::default();
    // One event at a time: a redelivered alert later in the same batch must see the ledger
    // entry of the first, and a failure of one event does not stop the others.
    for event in events {
        let event = Arc::new(event);
        if let EventKind::SubscriptionValidation { code, .. } = &event.kind {
            if reply.validation_response.is_none() {
                tracing::info!("Event Grid subscription validated.");
                reply.validation_response = Some(code.clone());
            }
        }
        match state
            .pipeline
            .handle(event.clone(), &state.ledger, &state.publisher)
            .await
        {
            Ok(report) => {
                log_report(&report);
                reply.add(line_of(&report));
            }
            Err(err) => {
                let outcome = if err.is_retryable() {
                    "failed"
                } else {
                    "rejected"
                };
                crate::invoke::log_failure(&format!("event {}", event.event_id), &err);
                if err.is_retryable() {
                    reply.retry.push(event.event_id.clone());
                }
                reply.add(EventLine {
                    event_id: event.event_id.clone(),
                    outcome: outcome_name(Outcome::Rejected),
                    reason: bounded(&format!("{outcome}: {err}"), REPLY_MAX_REASON_BYTES),
                    system_alert_id: None,
                    alert_type: None,
                    task_count: 0,
                    warning_count: 0,
                });
            }
        }
    }
    if only_handshakes && reply.retry.is_empty() {
        if let Some(code) = reply.validation_response {
            // Exactly the handshake's documented answer.
            return (StatusCode::OK, Json(json!({"validationResponse": code}))).into_response();
        }
    }
    // Any retryable failure: answer 503 so Event Grid redelivers the whole batch; the events
    // that succeeded are then recognised as duplicates and publish nothing twice.
    let status = if reply.retry.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(reply)).into_response()
}

fn line_of(report: &EventReport) -> EventLine {
    EventLine {
        event_id: bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        outcome: outcome_name(report.outcome),
        reason: bounded(&report.reason, REPLY_MAX_REASON_BYTES),
        system_alert_id: report
            .alert
            .as_ref()
            .map(|alert| bounded(&alert.system_alert_id, REPLY_MAX_REASON_BYTES)),
        alert_type: report
            .alert
            .as_ref()
            .map(|alert| bounded(&alert.alert_type, REPLY_MAX_REASON_BYTES)),
        task_count: report.tasks.len(),
        warning_count: report.warnings.len(),
    }
}
