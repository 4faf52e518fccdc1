//! The workers as functions of the app: `NotificationWorker`, `IsolationWorker` and
//! `RotationWorker` (`serviceBusTrigger`), `Decision` (`httpTrigger` on `/api/decide`, served
//! through the host's `Data.req`) and `DecisionSweeper` (`timerTrigger`).
//!
//! Service Bus settles from the reply: 2xx completes the message, non-2xx abandons it (the
//! queue redelivers up to `maxDeliveryCount`, then dead-letters).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use crate::approval::endpoint::{self, DecisionRequest, DecisionResponse};
use crate::approval::{DecisionLink, LinkParams};
use crate::domain::Queue;
use crate::error::Error;
use crate::invoke::{
    reply, HttpMetadata, HttpRequestData, Invocation, InvokeResponse, ServiceBusMetadata,
    HTTP_OUTPUT,
};
use crate::journal::TaskState;
use crate::state::AppState;
use crate::workers::{sweeper, Settlement};

/// The folder (and route) of the notification queue's worker.
pub const NOTIFICATION_WORKER: &str = "NotificationWorker";
/// The folder (and route) of the isolation queue's worker.
pub const ISOLATION_WORKER: &str = "IsolationWorker";
/// The folder (and route) of the rotation queue's worker.
pub const ROTATION_WORKER: &str = "RotationWorker";
/// The folder (and route) of the decision endpoint as an `httpTrigger`.
pub const DECISION: &str = "Decision";
/// The folder (and route) of the decision sweeper's timer.
pub const DECISION_SWEEPER: &str = "DecisionSweeper";

/// The Service Bus trigger's binding name in the workers' function.json.
pub const MESSAGE_BINDING: &str = "message";
/// The `Decision` httpTrigger's binding name.
pub const REQUEST_BINDING: &str = "req";
/// The `DecisionSweeper` timer's binding name.
pub const TIMER_BINDING: &str = "timer";

/// The worker function of a queue.
pub fn worker_function(queue: Queue) -> &'static str {
    match queue {
        Queue::Notification => NOTIFICATION_WORKER,
        Queue::Isolation => ISOLATION_WORKER,
        Queue::Rotation => ROTATION_WORKER,
    }
}

/// The route of `NotificationWorker`.
pub fn notification_handler() -> MethodRouter<AppState> {
    post(
        |State(state): State<AppState>, invocation: Invocation<ServiceBusMetadata>| async move {
            service_bus(state, Queue::Notification, invocation).await
        },
    )
}

/// The route of `IsolationWorker`.
pub fn isolation_handler() -> MethodRouter<AppState> {
    post(
        |State(state): State<AppState>, invocation: Invocation<ServiceBusMetadata>| async move {
            service_bus(state, Queue::Isolation, invocation).await
        },
    )
}

/// The route of `RotationWorker`.
pub fn rotation_handler() -> MethodRouter<AppState> {
    post(
        |State(state): State<AppState>, invocation: Invocation<ServiceBusMetadata>| async move {
            service_bus(state, Queue::Rotation, invocation).await
        },
    )
}

/// The route of `Decision`.
pub fn decision_handler() -> MethodRouter<AppState> {
    post(decision)
}

/// The route of `DecisionSweeper`.
pub fn sweeper_handler() -> MethodRouter<AppState> {
    post(sweep)
}

/// One Service Bus delivery: 2xx completes it, 503 gives it back (abandon, redelivery).
async fn service_bus(
    state: AppState,
    queue: Queue,
    invocation: Invocation<ServiceBusMetadata>,
) -> Response {
    let metadata = &invocation.request.metadata;
    let message_id = metadata.message_id.clone().unwrap_or_default();
    let delivery = metadata.delivery_count.unwrap_or(0);
    let subject = format!(
        "{} message {message_id} (delivery {delivery})",
        queue.as_str()
    );
    let Some(worker) = state.worker.clone() else {
        return reply(
            &subject,
            Err(Error::configuration(
                "the workers are not configured on this instance",
            )),
        );
    };
    let settlement = match invocation.request.binding(MESSAGE_BINDING) {
        Some(message) => {
            worker
                .process(queue, message)
                .instrument(invocation.span(worker_function(queue)))
                .await
        }
        None => Settlement::Reject {
            reason: format!("the invocation has no Data.{MESSAGE_BINDING}"),
        },
    };
    let report = json!({
        "queue": queue.as_str(),
        "message_id": message_id,
        "delivery_count": delivery,
        "retry": settlement.is_retry(),
        "outcome": settlement.describe(),
    });
    let log = format!("{subject}: {}", settlement.describe());
    match settlement {
        Settlement::Retry { reason, after } => reply(
            &subject,
            Err(Error::transient(reason).with_retry_after(after)),
        ),
        Settlement::Reject { .. } => {
            // Completed with the reason logged: redelivering it would fail the same way.
            tracing::error!(%log, "worker: message is not a task; completed");
            reply(&subject, Ok(InvokeResponse::new(log, report)))
        }
        Settlement::Complete { .. } => reply(&subject, Ok(InvokeResponse::new(log, report))),
    }
}

/// The decision endpoint with its follow-up: when a POST approves a task, the approved task
/// goes back on its queue (under `{id}-approved`) to be carried out. Used by both the axum
/// route (`/api/decide`) and the `Decision` httpTrigger.
pub async fn decide(state: &AppState, request: DecisionRequest<'_>) -> DecisionResponse {
    let response =
        endpoint::handle(state.decisions.as_deref(), state.worker.as_deref(), request).await;
    if *request.method != Method::POST || response.status != StatusCode::OK {
        return response;
    }
    let (Some(desk), Some(worker)) = (state.decisions.as_deref(), state.worker.as_deref()) else {
        return response;
    };
    let Ok(params) = serde_urlencoded::from_bytes::<LinkParams>(request.body) else {
        return response;
    };
    let Ok(link) = DecisionLink::parse(&params) else {
        return response;
    };
    match desk.journal().get(&link.message_id).await {
        Ok(Some(entry)) if entry.state == TaskState::Approved => {
            if let Err(err) = worker.enqueue_approved(&entry).await {
                // The decision is recorded; the sweeper queues the task again later.
                tracing::warn!(message_id = %entry.message_id, error = %err, "approved task not queued yet; the sweeper will retry");
            }
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %err, "approved task not read back; the sweeper will queue it")
        }
    }
    response
}

/// `/api/decide` served directly (the route when the host forwards HTTP, and locally).
pub async fn decide_route(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: Bytes,
) -> DecisionResponse {
    let request = DecisionRequest {
        method: &method,
        query: query.as_deref(),
        headers: &headers,
        body: &body,
    };
    decide(&state, request).await
}

/// `POST /Decision`: the host's `Data.req` (Method, Url, Headers, Body) mapped to the
/// decision endpoint; the page goes back as the `res` output binding.
pub async fn decision(
    State(state): State<AppState>,
    invocation: Invocation<HttpMetadata>,
) -> Response {
    let req: HttpRequestData = match invocation.request.binding_as(REQUEST_BINDING) {
        Ok(req) => req,
        Err(err) => return reply("decision request", Err(err)),
    };
    let method =
        Method::from_bytes(req.method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
    let query = req.url.split_once('?').map(|(_, query)| query.to_string());
    let mut headers = HeaderMap::new();
    for (name, values) in &req.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(name.clone(), value);
            }
        }
    }
    let form = req.body.unwrap_or_default();
    let request = DecisionRequest {
        method: &method,
        query: query.as_deref(),
        headers: &headers,
        body: form.as_bytes(),
    };
    let page = decide(&state, request).await;
    let mut out_headers = Map::new();
    for (name, value) in &page.headers {
        if let Ok(value) = value.to_str() {
            out_headers.insert(name.as_str().to_string(), Value::String(value.to_string()));
        }
    }
    let mut outputs = Map::new();
    outputs.insert(
        HTTP_OUTPUT.to_string(),
        json!({
            "statusCode": page.status.as_u16(),
            "headers": out_headers,
            "body": page.body,
        }),
    );
    reply(
        "decision request",
        Ok(InvokeResponse {
            outputs,
            ..Default::default()
        }),
    )
}

/// `POST /DecisionSweeper`: one sweep per timer tick. A journal failure answers 503 (the
/// host logs the failed run; the next tick sweeps again).
pub async fn sweep(State(state): State<AppState>, _invocation: Invocation) -> Response {
    let Some(worker) = state.worker.clone() else {
        return reply(
            "sweep",
            Err(Error::configuration(
                "the workers are not configured on this instance",
            )),
        );
    };
    let result = sweeper::sweep(&worker, state.decision_timeout)
        .await
        .map(|report| {
            let log = format!("sweep: {}", report.summary());
            tracing::info!(%log);
            InvokeResponse::new(log, json!(report))
        });
    reply("sweep", result)
}
