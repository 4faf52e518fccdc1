//! One module per HTTP entry point, and the one list of the app's functions: each function
//! folder (`<Name>/function.json`) has one entry here, which builds its route and which the
//! manifest test checks against the folder. Adding a function is its folder, its module and
//! one line in [`FUNCTIONS`].
//! Also what the HTTP entry points share: reading a bounded body and keeping replies small.

pub mod defender_alert;
pub mod webhook;
pub mod workers;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde_json::json;

use crate::server::BodyTimeout;
use crate::state::AppState;

/// The connection setting every Service Bus trigger names (`connection` in function.json).
pub const SERVICE_BUS_CONNECTION: &str = "ServiceBusConnection";

/// The trigger of a function, as function.json types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `eventGridTrigger`: one event per invocation; Metadata is skipped unparsed.
    EventGrid,
    /// `serviceBusTrigger` on a queue named by an app setting, connection
    /// [`SERVICE_BUS_CONNECTION`]; Metadata is [`crate::invoke::ServiceBusMetadata`].
    ServiceBus,
    /// `httpTrigger` without forwarding, answered through the `res` output binding.
    Http,
    /// `timerTrigger` on a schedule named by an app setting (`%SETTING%`).
    Timer,
}

impl Trigger {
    /// The binding `type` in function.json.
    pub fn binding_type(self) -> &'static str {
        match self {
            Trigger::EventGrid => "eventGridTrigger",
            Trigger::ServiceBus => "serviceBusTrigger",
            Trigger::Http => "httpTrigger",
            Trigger::Timer => "timerTrigger",
        }
    }
}

/// One function of the app: what its folder declares and what serves it.
#[derive(Clone, Copy)]
pub struct Function {
    /// The folder name, which is also the route the host posts invocations to.
    pub name: &'static str,
    /// The trigger type.
    pub trigger: Trigger,
    /// The trigger binding's `name`.
    pub binding: &'static str,
    /// For a Service Bus trigger: the app setting its `queueName` refers to (`%SETTING%`).
    pub queue_setting: Option<&'static str>,
    /// The handler: the method router serving `/<name>`.
    pub handler: fn() -> MethodRouter<AppState>,
}

impl Function {
    /// The route the host posts this function's invocations to.
    pub fn route(&self) -> String {
        format!("/{}", self.name)
    }
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("trigger", &self.trigger)
            .field("binding", &self.binding)
            .field("queue_setting", &self.queue_setting)
            .finish_non_exhaustive()
    }
}

/// Every function of the app, one line each.
#[rustfmt::skip]
pub const FUNCTIONS: &[Function] = &[
    Function { name: defender_alert::FUNCTION_NAME, trigger: Trigger::EventGrid, binding: defender_alert::TRIGGER, queue_setting: None, handler: defender_alert::handler },
    Function { name: workers::NOTIFICATION_WORKER, trigger: Trigger::ServiceBus, binding: workers::MESSAGE_BINDING, queue_setting: Some(crate::config::QUEUE_NOTIFICATION), handler: workers::notification_handler },
    Function { name: workers::ISOLATION_WORKER, trigger: Trigger::ServiceBus, binding: workers::MESSAGE_BINDING, queue_setting: Some(crate::config::QUEUE_ISOLATION), handler: workers::isolation_handler },
    Function { name: workers::ROTATION_WORKER, trigger: Trigger::ServiceBus, binding: workers::MESSAGE_BINDING, queue_setting: Some(crate::config::QUEUE_ROTATION), handler: workers::rotation_handler },
    Function { name: workers::DECISION, trigger: Trigger::Http, binding: workers::REQUEST_BINDING, queue_setting: None, handler: workers::decision_handler },
    Function { name: workers::DECISION_SWEEPER, trigger: Trigger::Timer, binding: workers::TIMER_BINDING, queue_setting: None, handler: workers::sweeper_handler },
];

/// The routes of every function in [`FUNCTIONS`].
pub fn router() -> Router<AppState> {
    FUNCTIONS.iter().fold(Router::new(), |router, function| {
        router.route(&function.route(), (function.handler)())
    })
}

/// How many event reports a webhook reply lists (the counts cover every event).
pub const REPLY_MAX_EVENTS: usize = 100;
/// How many tasks a report in a reply lists in full (the count covers every task; all of
/// them are on the queues).
pub const REPLY_MAX_TASKS: usize = 100;
/// How many warnings a report in a reply lists (every warning is logged).
pub const REPLY_MAX_WARNINGS: usize = 20;
/// Longest reason (in bytes) a reply repeats; longer ones are cut with an ellipsis.
pub const REPLY_MAX_REASON_BYTES: usize = 1024;

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum BodyReadError {
    /// Larger than the limit: the same body would fail the same way again.
    TooLarge(String),
    /// Did not arrive in time, or the connection failed: a resend can succeed.
    Incomplete(String),
}

/// Reads a request body up to `limit` bytes; the error says which limit was hit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyReadError> {
    to_bytes(body, limit).await.map_err(|err| {
        let err = err.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
        while let Some(current) = cause {
            if current.is::<http_body_util::LengthLimitError>() {
                return BodyReadError::TooLarge(format!(
                    "request body is over the limit of {limit} bytes (Event Grid allows 1 MiB per event)"
                ));
            }
            if let Some(timeout) = current.downcast_ref::<BodyTimeout>() {
                return BodyReadError::Incomplete(timeout.to_string());
            }
            cause = current.source();
        }
        BodyReadError::Incomplete(format!("request body could not be read: {err}"))
    })
}

/// The webhook's answer to an oversize delivery: 413, which Event Grid does not retry.
pub(crate) fn too_large(reason: String) -> Response {
    tracing::warn!(reason = %reason, "Request body refused.");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({ "error": reason })),
    )
        .into_response()
}

/// The answer to a body that did not arrive: 408, which the sender retries.
pub(crate) fn incomplete(reason: String) -> Response {
    tracing::warn!(reason = %reason, "Request body incomplete; the sender will retry.");
    (
        StatusCode::REQUEST_TIMEOUT,
        Json(json!({ "error": reason })),
    )
        .into_response()
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded("ééééé", 3);
        assert_eq!(cut, "é… (10 bytes)");
    }
}
