//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use tracing::Instrument;

use super::read_body;
use crate::decode::{decode_event, MAX_INVOCATION_BYTES};
use crate::invoke::{InvokeRequest, InvokeResponse};
use crate::pipeline::EventReport;
use crate::state::AppState;

/// The route the host posts invocations of the `DefenderAlert` function to.
pub const ROUTE: &str = "/DefenderAlert";
/// The function (folder) name.
pub const FUNCTION_NAME: &str = "DefenderAlert";
/// The trigger binding's name in `DefenderAlert/function.json`.
pub const TRIGGER: &str = "event";

/// Handles one invocation: exactly one Event Grid event.
pub async fn invoke(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let span =
        tracing::info_span!("invocation", function = FUNCTION_NAME, invocation_id = %invocation_id);
    async move {
        let body = match read_body(body, MAX_INVOCATION_BYTES).await {
            Ok(body) => body,
            // The host would redeliver the same oversize payload: acknowledge, never loop.
            Err(reason) => return acknowledge_bad_input(reason),
        };
        let request: InvokeRequest = match serde_json::from_slice(&body) {
            Ok(request) => request,
            // A payload the host would send again unchanged: acknowledge, never loop.
            Err(err) => return acknowledge_bad_input(format!("invocation payload is not the host's JSON shape: {err}")),
        };
        let Some(event) = request.binding(TRIGGER) else {
            return acknowledge_bad_input(format!("invocation payload has no Data.{TRIGGER} binding"));
        };
        let event = decode_event(event, 0);
        match state.pipeline.handle(&event, &state.ledger, state.publisher.as_ref()).await {
            Ok(report) => {
                log_report(&report);
                let logs = vec![summary_line(&report)];
                let return_value = serde_json::to_value(&report).unwrap_or(Value::Null);
                (StatusCode::OK, Json(InvokeResponse { logs, return_value, ..Default::default() })).into_response()
            }
            Err(err) => {
                let status = err.status_code();
                // Logs in a non-2xx reply are discarded by the host: write them to stderr too.
                if err.is_retryable() {
                    tracing::error!(event_id = %event.event_id, error = %err, "Invocation failed; the platform will redeliver.");
                } else {
                    tracing::warn!(event_id = %event.event_id, error = %err, "Invocation failed permanently; acknowledged.");
                }
                let logs = vec![format!("event {}: {err}", event.event_id)];
                (status, Json(InvokeResponse { logs, ..Default::default() })).into_response()
            }
        }
    }
    .instrument(span)
    .await
}

fn acknowledge_bad_input(reason: String) -> Response {
    tracing::warn!(reason = %reason, "Invocation payload rejected; acknowledged so it is not redelivered.");
    let logs = vec![format!("rejected: {reason}")];
    (
        StatusCode::OK,
        Json(InvokeResponse {
            logs,
            ..Default::default()
        }),
    )
        .into_response()
}

/// Logs one event's outcome in the project's log style.
pub(crate) fn log_report(report: &EventReport) {
    let alert_id = report
        .alert
        .as_ref()
        .map(|a| a.system_alert_id.as_str())
        .unwrap_or("-");
    tracing::info!(
        event_id = %report.event_id,
        alert_id = %alert_id,
        outcome = ?report.outcome,
        tasks = report.tasks.len(),
        reason = %report.reason,
        "Event handled."
    );
    for warning in &report.warnings {
        tracing::warn!(event_id = %report.event_id, warning = %warning, "Alert field degraded.");
    }
}

/// The one-line summary that goes into the invocation's `Logs`.
pub(crate) fn summary_line(report: &EventReport) -> String {
    format!(
        "event {}: {:?}, {} task(s): {}",
        report.event_id,
        report.outcome,
        report.tasks.len(),
        report.reason
    )
}
