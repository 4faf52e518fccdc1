//! `POST /DefenderAlert`: the Event Grid-triggered function, called by the Functions host with
//! the invocation payload; the event arrives as a JSON object or as a JSON string holding one.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use serde::Serialize;
use tracing::Instrument;

use std::sync::Arc;

use super::{bounded, REPLY_MAX_REASON_BYTES, REPLY_MAX_TASKS, REPLY_MAX_WARNINGS};
use crate::decode::decode_event_json;
use crate::domain::{Action, AlertStatus, Queue, ServiceName, Severity, TaskStatus};
use crate::error::Error;
use crate::invoke::{reply, reply_with, BorrowedInvokeRequest, InvokeResponse, RawInvocation};
use crate::pipeline::{EventReport, Outcome};
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
pub async fn invoke(State(state): State<AppState>, invocation: RawInvocation) -> Response {
    let span = invocation.span(FUNCTION_NAME);
    async move {
        let payload = invocation.payload;
        // Decoding a multi-megabyte event is CPU work: off the async workers. The payload is
        // read in place: the event is decoded from its text, never built as a `Value`.
        let decoded = state
            .pipeline
            .run_cpu_sized(payload.len(), move || {
                let request = BorrowedInvokeRequest::parse(&payload)?;
                request
                    .binding(TRIGGER)
                    .map(|event| decode_event_json(event, 0))
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
        let report = match state
            .pipeline
            .handle(event, &state.ledger, &state.publisher)
            .await
        {
            Ok(report) => report,
            Err(err) => return reply(&subject, Err(err)),
        };
        log_report(&report);
        let response = InvokeResponse::with_return(summary_line(&report), reply_value(&report));
        reply_with(&subject, Ok(response))
    }
    .instrument(span)
    .await
}

// The reply types are serialised straight into the reply. Their fields are in name order:
// the bytes are those of the `serde_json::Value` (whose objects are sorted) that the reply
// was once built as; a test compares the two.

/// One task as a reply lists it: enough to find it on its queue (the message there is the
/// whole task).
#[derive(Serialize)]
struct TaskLine<'a> {
    action: Action,
    message_id: &'a str,
    queue: Queue,
    status: TaskStatus,
    target: &'a str,
}

/// The alert as a reply names it: the report's [`AlertSummary`](crate::pipeline::AlertSummary).
#[derive(Serialize)]
struct AlertLine<'a> {
    alert_type: &'a str,
    service: ServiceName,
    severity: Severity,
    simulated: bool,
    status: AlertStatus,
    system_alert_id: &'a str,
}

/// The `ReturnValue`: a summary of the event's report. The tasks themselves are on their
/// queues; the reply names at most [`REPLY_MAX_TASKS`] of them (message id, queue, action,
/// status, target) and at most [`REPLY_MAX_WARNINGS`] warnings (every warning is in the log),
/// with `task_count` / `warning_count` for the whole.
#[derive(Serialize)]
struct ReplyValue<'a> {
    alert: Option<AlertLine<'a>>,
    event_id: String,
    outcome: Outcome,
    reason: String,
    task_count: usize,
    tasks: Vec<TaskLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_code: Option<&'a str>,
    warning_count: usize,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

fn reply_value(report: &EventReport) -> ReplyValue<'_> {
    ReplyValue {
        alert: report.alert.as_ref().map(|alert| AlertLine {
            alert_type: &alert.alert_type,
            service: alert.service,
            severity: alert.severity,
            simulated: alert.simulated,
            status: alert.status,
            system_alert_id: &alert.system_alert_id,
        }),
        event_id: bounded(&report.event_id, REPLY_MAX_REASON_BYTES),
        outcome: report.outcome,
        reason: bounded(&report.reason, REPLY_MAX_REASON_BYTES),
        task_count: report.tasks.len(),
        tasks: report
            .tasks
            .iter()
            .take(REPLY_MAX_TASKS)
            .map(|task| TaskLine {
                action: task.action,
                message_id: task.message_id.as_str(),
                queue: task.queue,
                status: task.status,
                target: &task.target,
            })
            .collect(),
        validation_code: report.validation_code.as_deref(),
        warning_count: report.warnings.len(),
        warnings: &report.warnings[..report.warnings.len().min(REPLY_MAX_WARNINGS)],
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertRef, Task};
    use crate::pipeline::AlertSummary;

    #[test]
    fn the_reply_value_has_the_bytes_of_the_value_it_was_once_built_as() {
        let alert = AlertRef::sample("sys-1");
        let planned = EventReport {
            event_id: "e1".into(),
            outcome: Outcome::Planned,
            reason: "KV_UserAnomaly routed".into(),
            alert: Some(AlertSummary {
                alert_type: alert.alert_type.clone(),
                system_alert_id: alert.system_alert_id.clone(),
                service: alert.service,
                severity: alert.severity,
                status: alert.status,
                simulated: false,
            }),
            tasks: vec![Task::notice(&alert, "kv", "why \"quoted\"")],
            warnings: vec!["data.severity: odd".into()],
            validation_code: Some("code".into()),
        };
        let rejected = EventReport {
            event_id: "#0".into(),
            outcome: Outcome::Rejected,
            reason: "data is missing".into(),
            alert: None,
            tasks: Vec::new(),
            warnings: Vec::new(),
            validation_code: None,
        };
        for report in [planned, rejected] {
            let direct = serde_json::to_string(&reply_value(&report)).unwrap();
            let via_value = serde_json::to_value(reply_value(&report))
                .unwrap()
                .to_string();
            assert_eq!(direct, via_value);
        }
    }
}
