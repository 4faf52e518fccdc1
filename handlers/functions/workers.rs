//! The workers as functions of the app: `NotificationWorker`, `IsolationWorker` and
//! `RotationWorker` (`serviceBusTrigger`), `Decision` (`httpTrigger` on `/api/decide`, served
//! through the host's `Data.req`) and `DecisionSweeper` (`timerTrigger`).
//!
//! Service Bus settles from the reply: 2xx completes the message, non-2xx abandons it (the
//! queue redelivers up to `maxDeliveryCount`, then dead-letters).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::approval::endpoint::{self, DecisionRequest, DecisionResponse};
use crate::approval::{DecisionLink, LinkParams};
use crate::domain::Queue;
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

/// The worker function of a queue.
pub fn worker_function(queue: Queue) -> &'static str {
    match queue {
        Queue::Notification => NOTIFICATION_WORKER,
        Queue::Isolation => ISOLATION_WORKER,
        Queue::Rotation => ROTATION_WORKER,
    }
}

/// `POST /NotificationWorker`.
pub async fn notification(State(state): State<AppState>, body: Bytes) -> Response {
    service_bus(state, Queue::Notification, &body).await
}

/// `POST /IsolationWorker`.
pub async fn isolation(State(state): State<AppState>, body: Bytes) -> Response {
    service_bus(state, Queue::Isolation, &body).await
}

/// `POST /RotationWorker`.
pub async fn rotation(State(state): State<AppState>, body: Bytes) -> Response {
    service_bus(state, Queue::Rotation, &body).await
}

fn reply(status: StatusCode, logs: Vec<String>, outputs: Value, return_value: Value) -> Response {
    (
        status,
        Json(json!({"Outputs": outputs, "Logs": logs, "ReturnValue": return_value})),
    )
        .into_response()
}

/// A Metadata scalar: the host double-encodes strings (`"\"id\""`) and sends numbers as text.
fn metadata_text(metadata: &Map<String, Value>, key: &str) -> Option<String> {
    let value = metadata
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))?
        .1;
    let text = value.as_str()?;
    Some(match serde_json::from_str::<Value>(text) {
        Ok(Value::String(inner)) => inner,
        _ => text.to_string(),
    })
}

fn object<'a>(value: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    value
        .as_object()?
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))?
        .1
        .as_object()
}

async fn service_bus(state: AppState, queue: Queue, body: &[u8]) -> Response {
    let Some(worker) = state.worker.clone() else {
        let reason = "the workers are not configured on this instance (the journal could not be opened at start-up)";
        tracing::error!(queue = queue.as_str(), reason, "worker: message given back");
        return reply(StatusCode::SERVICE_UNAVAILABLE, vec![reason.into()], json!({}), Value::Null);
    };
    let invocation: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => {
            let reason = format!("the invocation is not JSON: {err}");
            tracing::warn!(%reason, "worker: invocation refused");
            return reply(StatusCode::BAD_REQUEST, vec![reason], json!({}), Value::Null);
        }
    };
    let data = object(&invocation, "Data").cloned().unwrap_or_default();
    let message = data
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(MESSAGE_BINDING))
        .or_else(|| (data.len() == 1).then(|| data.iter().next()).flatten())
        .map(|(_, value)| value.clone());
    let metadata = object(&invocation, "Metadata").cloned().unwrap_or_default();
    let delivery = metadata_text(&metadata, "DeliveryCount").unwrap_or_default();
    let message_id = metadata_text(&metadata, "MessageId").unwrap_or_default();
    let settlement = match message {
        Some(message) => worker.process(queue, &message).await,
        None => Settlement::Reject {
            reason: format!("the invocation has no Data.{MESSAGE_BINDING}"),
        },
    };
    let log = format!(
        "{} message {message_id} (delivery {delivery}): {}",
        queue.as_str(),
        settlement.describe()
    );
    let report = json!({
        "queue": queue.as_str(),
        "message_id": message_id,
        "delivery_count": delivery,
        "retry": settlement.is_retry(),
        "outcome": settlement.describe(),
    });
    match settlement {
        Settlement::Retry { .. } => {
            tracing::warn!(%log, "worker: message given back for redelivery");
            reply(StatusCode::SERVICE_UNAVAILABLE, vec![log], json!({}), report)
        }
        Settlement::Reject { .. } => {
            // Completed with the reason logged: redelivering it would fail the same way.
            tracing::error!(%log, "worker: message is not a task; completed");
            reply(StatusCode::OK, vec![log], json!({}), report)
        }
        Settlement::Complete { .. } => reply(StatusCode::OK, vec![log], json!({}), report),
    }
}

/// The decision endpoint with its follow-up: when a POST approves a task, the approved task
/// goes back on its queue (under `{id}-approved`) to be carried out. Used by both the axum
/// route (`/api/decide`) and the `Decision` httpTrigger.
pub async fn decide(state: &AppState, request: DecisionRequest<'_>) -> DecisionResponse {
    let response = endpoint::handle(state.decisions.as_deref(), request).await;
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
        Err(err) => tracing::warn!(error = %err, "approved task not read back; the sweeper will queue it"),
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
pub async fn decision(State(state): State<AppState>, body: Bytes) -> Response {
    let invocation: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => {
            return reply(
                StatusCode::BAD_REQUEST,
                vec![format!("the invocation is not JSON: {err}")],
                json!({}),
                Value::Null,
            )
        }
    };
    let req = object(&invocation, "Data")
        .and_then(|data| {
            data.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("req"))
                .map(|(_, value)| value.clone())
        })
        .unwrap_or(Value::Null);
    let text = |key: &str| {
        req.as_object().and_then(|map| {
            map.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(key))
                .and_then(|(_, value)| value.as_str())
                .map(str::to_string)
        })
    };
    let method = text("Method")
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or(Method::GET);
    let url = text("Url").unwrap_or_default();
    let query = url.split_once('?').map(|(_, query)| query.to_string());
    let mut headers = HeaderMap::new();
    if let Some(map) = object(&req, "Headers") {
        for (name, value) in map {
            let values: Vec<&str> = match value {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                Value::String(one) => vec![one.as_str()],
                _ => Vec::new(),
            };
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    let form = text("Body").unwrap_or_default();
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
    let res = json!({
        "statusCode": page.status.as_u16(),
        "headers": out_headers,
        "body": page.body,
    });
    reply(StatusCode::OK, Vec::new(), json!({ "res": res }), Value::Null)
}

/// `POST /DecisionSweeper`: one sweep per timer tick. A journal failure answers 503 (the
/// host logs the failed run; the next tick sweeps again).
pub async fn sweep(State(state): State<AppState>) -> Response {
    let Some(worker) = state.worker.clone() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            vec!["the workers are not configured on this instance".into()],
            json!({}),
            Value::Null,
        );
    };
    match sweeper::sweep(&worker, state.decision_timeout).await {
        Ok(report) => {
            let log = format!(
                "sweep: {} expired, {} queued again",
                report.expired.len(),
                report.requeued.len()
            );
            tracing::info!(%log);
            reply(StatusCode::OK, vec![log], json!({}), json!(report))
        }
        Err(err) => {
            tracing::warn!(error = %err, "sweep failed");
            reply(
                err.status_code(),
                vec![err.to_string()],
                json!({}),
                Value::Null,
            )
        }
    }
}
