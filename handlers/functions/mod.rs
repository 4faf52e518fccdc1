//! One module per HTTP entry point: the `DefenderAlert` function and the direct webhook.

pub mod defender_alert;
pub mod webhook;

use axum::body::{to_bytes, Body, Bytes};
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
