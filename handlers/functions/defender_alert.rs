//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use std::sync::Arc;

use super::{
    bounded, incomplete, read_body, BodyReadError, REPLY_MAX_REASON_BYTES, REPLY_MAX_TASKS,
    REPLY_MAX_WARNINGS,
};
use crate::decode::{decode_event, InboundEvent, MAX_INVOCATION_BYTES};
use crate::error::Error;
use crate::invoke::{InvokeRequest, InvokeResponse};
use crate::domain::{Action, Queue, TaskStatus};
use crate::pipeline::{AlertSummary, EventReport, Outcome};
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
            Err(BodyReadError::TooLarge(reason)) => return acknowledge_bad_input(reason),
            // A body that did not arrive is not the event's fault: non-2xx, the host retries.
            Err(BodyReadError::Incomplete(reason)) => return incomplete(reason),
        };
        // Parsing and decoding a multi-megabyte invocation is CPU work: off the async workers.
        let decoded = state
            .pipeline
            .run_cpu_sized(body.len(), move || decode_invocation(&body))
            .await;
        let event = match decoded {
            Ok(Ok(event)) => Arc::new(event),
            // A payload the host would send again unchanged: acknowledge, never loop.
            Ok(Err(reason)) => return acknowledge_bad_input(reason),
            Err(err) => return failed(&err, "-"),
        };
        match state
            .pipeline
            .handle(event.clone(), &state.ledger, &state.publisher)
            .await
        {
            Ok(report) => {
                log_report(&report);
                let logs = vec![summary_line(&report)];
                let return_value = reply_value(&report);
                (
                    StatusCode::OK,
                    Json(InvokeResponse {
                        logs,
                        return_value,
                        ..Default::default()
                    }),
                )
                    .into_response()
            }
            Err(err) => failed(&err, &event.event_id),
        }
    }
    .instrument(span)
    .await
}

/// The host's payload decoded into the one event it carries, or why it cannot be.
fn decode_invocation(body: &[u8]) -> Result<InboundEvent, String> {
    let request: InvokeRequest = serde_json::from_slice(body)
        .map_err(|err| format!("invocation payload is not the host's JSON shape: {err}"))?;
    let event = request
        .binding(TRIGGER)
        .ok_or_else(|| format!("invocation payload has no Data.{TRIGGER} binding"))?;
    Ok(decode_event(event, 0))
}

/// One task as a reply lists it: enough to find it on its queue (the message there is the
/// whole task).
#[derive(Serialize)]
struct TaskLine<'a> {
    message_id: &'a str,
    queue: Queue,
    action: Action,
    status: TaskStatus,
    target: &'a str,
}

/// The `ReturnValue`: a summary of the event's report. The tasks themselves are on their
/// queues; the reply names at most [`REPLY_MAX_TASKS`] of them (message id, queue, action,
/// status, target) and at most [`REPLY_MAX_WARNINGS`] warnings (every warning is in the log),
/// with `task_count` / `warning_count` for the whole.
#[derive(Serialize)]
struct ReplyValue<'a> {
    event_id: String,
    outcome: Outcome,
    reason: String,
    alert: Option<&'a AlertSummary>,
    tasks: Vec<TaskLine<'a>>,
    task_count: usize,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    warning_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_code: Option<&'a str>,
}

fn reply_value(report: &EventReport) -> Value {
    let shown = ReplyValue {
        event_id: bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        outcome: report.outcome,
        reason: bounded(&report.reason, REPLY_MAX_REASON_BYTES),
        alert: report.alert.as_ref(),
        tasks: report
            .tasks
            .iter()
            .take(REPLY_MAX_TASKS)
            .map(|task| TaskLine {
                message_id: task.message_id.as_str(),
                queue: task.queue,
                action: task.action,
                status: task.status,
                target: &task.target,
            })
            .collect(),
        task_count: report.tasks.len(),
        warnings: &report.warnings[..report.warnings.len().min(REPLY_MAX_WARNINGS)],
        warning_count: report.warnings.len(),
        validation_code: report.validation_code.as_deref(),
    };
    serde_json::to_value(&shown).unwrap_or(Value::Null)
}

fn failed(err: &Error, event_id: &str) -> Response {
    let status = err.status_code();
    // Logs in a non-2xx reply are discarded by the host: write them to stderr too.
    if err.is_retryable() {
        tracing::error!(event_id = %event_id, error = %err, "Invocation failed; the platform will redeliver.");
    } else {
        tracing::warn!(event_id = %event_id, error = %err, "Invocation failed permanently; acknowledged.");
    }
    let logs = vec![format!("event {event_id}: {err}")];
    (
        status,
        Json(InvokeResponse {
            logs,
            ..Default::default()
        }),
    )
        .into_response()
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
        bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        report.outcome,
        report.tasks.len(),
        bounded(&report.reason, REPLY_MAX_REASON_BYTES)
    )
}
