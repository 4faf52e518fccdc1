//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use std::sync::Arc;

use super::{bounded, REPLY_MAX_REASON_BYTES, REPLY_MAX_TASKS, REPLY_MAX_WARNINGS};
use crate::decode::decode_event;
use crate::domain::{Action, Queue, TaskStatus};
use crate::error::Error;
use crate::invoke::{reply, Invocation, InvokeResponse};
use crate::pipeline::{AlertSummary, EventReport, Outcome};
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
        let (request, bytes) = (invocation.request, invocation.bytes);
        // Decoding a multi-megabyte event is CPU work: off the async workers.
        let decoded = state
            .pipeline
            .run_cpu_sized(bytes, move || {
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
