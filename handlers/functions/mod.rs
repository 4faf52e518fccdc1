//! One module per HTTP entry point: the `DefenderAlert` function and the direct webhook.

pub mod defender_alert;
pub mod webhook;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::decode::MAX_BODY_BYTES;

/// Reads a request body up to the delivery limit; over it, a 413 that says the limit.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Response> {
    to_bytes(body, MAX_BODY_BYTES).await.map_err(|err| {
        tracing::warn!(limit = MAX_BODY_BYTES, error = %err, "Request body refused.");
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({
                "error": format!("request body is over the limit of {MAX_BODY_BYTES} bytes (Event Grid allows 1 MiB per event), or could not be read: {err}")
            })),
        )
            .into_response()
    })
}
