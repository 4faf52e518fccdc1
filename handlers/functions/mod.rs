//! One module per HTTP entry point, and the one list of the app's functions: each function
//! folder (`<Name>/function.json`) has one entry here, which builds its route and which the
//! manifest test checks against the folder. Adding a function is its folder, its module and
//! one line in [`FUNCTIONS`].

pub mod defender_alert;
pub mod webhook;

use axum::body::{to_bytes, Body, Bytes};
use axum::routing::MethodRouter;
use axum::Router;

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
}

impl Trigger {
    /// The binding `type` in function.json.
    pub fn binding_type(self) -> &'static str {
        match self {
            Trigger::EventGrid => "eventGridTrigger",
            Trigger::ServiceBus => "serviceBusTrigger",
            Trigger::Http => "httpTrigger",
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
pub const FUNCTIONS: &[Function] = &[Function {
    name: defender_alert::FUNCTION_NAME,
    trigger: Trigger::EventGrid,
    binding: defender_alert::TRIGGER,
    queue_setting: None,
    handler: defender_alert::handler,
}];

/// The routes of every function in [`FUNCTIONS`].
pub fn router() -> Router<AppState> {
    FUNCTIONS.iter().fold(Router::new(), |router, function| {
        router.route(&function.route(), (function.handler)())
    })
}
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Reads a request body up to `limit` bytes; the error says the limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, String> {
    to_bytes(body, limit).await.map_err(|err| {
        format!("request body is over the limit of {limit} bytes (Event Grid allows 1 MiB per event), or could not be read: {err}")
    })
}

/// The webhook's answer to an oversize body: 413, which Event Grid does not retry.
pub(crate) fn too_large(reason: String) -> Response {
    tracing::warn!(reason = %reason, "Request body refused.");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(json!({ "error": reason })),
    )
        .into_response()
}
