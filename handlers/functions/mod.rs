//! One module per HTTP entry point: the `DefenderAlert` function and the direct webhook, and
//! what they share: reading a bounded body and keeping replies small.

pub mod defender_alert;
pub mod webhook;
pub mod workers;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::server::BodyTimeout;

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
