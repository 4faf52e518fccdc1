//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use serde_json::Value;
use tracing::Instrument;

use std::sync::Arc;

use super::{bounded, REPLY_MAX_REASON_BYTES, REPLY_MAX_TASKS, REPLY_MAX_WARNINGS};
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
        let request = invocation.request;
        // Decoding a multi-megabyte event is CPU work: off the async workers.
        let decoded = state
            .pipeline
            .run_cpu(move || {
                request
                    .binding(TRIGGER)
                    .map(|event| decode_event(event, 0))
                    .ok_or_else(|| format!("invocation payload has no Data.{TRIGGER} binding"))
            })
            .await;
        let event = match decoded {
            Ok(Ok(event)) => Arc::new(event),
            // A payload the host would send again unchanged: acknowledge, never loop.
            Ok(Err(reason)) => return reply("invocation", Err(Error::bad_input(reason))),
            Err(err) => return reply("invocation", Err(err)),
        };
        let subject = format!("event {}", event.event_id);
        let result = state
            .pipeline
            .handle(event, &state.ledger, &state.publisher)
            .await
            .map(|report| {
                log_report(&report);
                InvokeResponse::new(summary_line(&report), reply_value(&report))
            });
        reply(&subject, result)
    }
    .instrument(span)
    .await
}

/// The `ReturnValue`: the event's report with at most [`REPLY_MAX_TASKS`] tasks and
/// [`REPLY_MAX_WARNINGS`] warnings (every task is on its queue, every warning in the log),
/// and `task_count` / `warning_count` for the whole.
fn reply_value(report: &EventReport) -> Value {
    let shown = EventReport {
        event_id: bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        outcome: report.outcome,
        reason: bounded(&report.reason, REPLY_MAX_REASON_BYTES),
        alert: report.alert.clone(),
        tasks: report.tasks.iter().take(REPLY_MAX_TASKS).cloned().collect(),
        warnings: report
            .warnings
            .iter()
            .take(REPLY_MAX_WARNINGS)
            .cloned()
            .collect(),
        validation_code: report.validation_code.clone(),
    };
    let mut value = serde_json::to_value(&shown).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        fields.insert("task_count".into(), report.tasks.len().into());
        fields.insert("warning_count".into(), report.warnings.len().into());
    }
    value
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
        bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        report.outcome,
        report.tasks.len(),
        bounded(&report.reason, REPLY_MAX_REASON_BYTES)
    )
}
