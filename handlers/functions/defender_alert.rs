//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use serde_json::Value;
use tracing::Instrument;

use crate::decode::decode_event;
use crate::error::Error;
use crate::invoke::{reply, Invocation, InvokeResponse};
use crate::pipeline::EventReport;
use crate::state::AppState;

/// The route the host posts invocations of the `DefenderAlert` function to.
pub const ROUTE: &str = "/DefenderAlert";
/// The function (folder) name.
pub const FUNCTION_NAME: &str = "DefenderAlert";
/// The trigger binding's name in `DefenderAlert/function.json`.
pub const TRIGGER: &str = "event";

/// The method router of this function (see [`super::FUNCTIONS`]).
pub fn handler() -> MethodRouter<AppState> {
    post(invoke)
}

/// Handles one invocation: exactly one Event Grid event.
pub async fn invoke(State(state): State<AppState>, invocation: Invocation) -> Response {
    let span = invocation.span(FUNCTION_NAME);
    async move {
        let Some(event) = invocation.request.binding(TRIGGER) else {
            return reply(
                "invocation",
                Err(Error::bad_input(format!(
                    "invocation payload has no Data.{TRIGGER} binding"
                ))),
            );
        };
        let event = decode_event(event, 0);
        let subject = format!("event {}", event.event_id);
        let result = state
            .pipeline
            .handle(&event, &state.ledger, state.publisher.as_ref())
            .await
            .map(|report| {
                log_report(&report);
                let return_value = serde_json::to_value(&report).unwrap_or(Value::Null);
                InvokeResponse::new(summary_line(&report), return_value)
            });
        reply(&subject, result)
    }
    .instrument(span)
    .await
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
