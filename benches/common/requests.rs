//! Pre-built HTTP/1.1 requests in the Functions host's invocation shape and Event Grid webhook
//! batches, with the offsets of the id markers to patch per send.

use serde_json::{json, Value};

use super::corpus::{with_slot, AlertEvent, MARKER, MARKER_LEN};

/// One request, ready to send after patching its ids.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// Head and body.
    pub(crate) bytes: Vec<u8>,
    /// (offset of the 11 counter digits, slot) for every marker.
    pub(crate) marks: Vec<(usize, u64)>,
    /// Events in the request (1, or the batch size).
    pub(crate) events: u64,
    /// Body length.
    pub(crate) body_len: usize,
}

impl Request {
    fn new(path: &str, extra_headers: &str, body: String, events: u64) -> Request {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json; charset=utf-8\r\n{extra_headers}content-length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        let body_start = bytes.len();
        bytes.extend_from_slice(body.as_bytes());
        let mut marks = Vec::new();
        let needle = MARKER.as_bytes();
        let mut at = body_start;
        while let Some(found) = find(&bytes[at..], needle) {
            let start = at + found;
            let slot = (bytes[start + 5] - b'0') as u64 * 10 + (bytes[start + 6] - b'0') as u64;
            marks.push((start + 7, slot));
            at = start + MARKER_LEN;
        }
        assert!(!marks.is_empty(), "request without id markers");
        Request {
            bytes,
            marks,
            events,
            body_len: body.len(),
        }
    }

    /// Writes ids `base + slot` into the markers of `buffer` (a copy of `self.bytes`).
    pub(crate) fn patch(&self, buffer: &mut [u8], base: u64) {
        for &(offset, slot) in &self.marks {
            let mut id = base + slot;
            for digit in buffer[offset..offset + 11].iter_mut().rev() {
                *digit = b'0' + (id % 10) as u8;
                id /= 10;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The host's invocation: `{"Data":{"event":…},"Metadata":{"sys":…,"data":…}}` as `cli send`
/// builds it; `string_form` sends the event as a JSON string holding it.
pub(crate) fn invocation(alert: &AlertEvent, string_form: bool, index: usize) -> Request {
    let event = &alert.event;
    let event_value = if string_form {
        Value::String(event.to_string())
    } else {
        event.clone()
    };
    let body = json!({
        "Data": {"event": event_value},
        "Metadata": {
            "sys": {"MethodName": "DefenderAlert", "UtcNow": "2025-05-14T07:13:01Z", "RandGuid": format!("bench-{index}")},
            "data": event.get("data").cloned().unwrap_or(Value::Null),
        }
    });
    Request::new(
        "/DefenderAlert",
        &format!("x-azure-functions-invocationid: bench-{index}\r\n"),
        body.to_string(),
        1,
    )
}

/// A plain request with no id markers to patch (readiness probe).
pub(crate) fn probe() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_vec()
}

/// An Event Grid delivery of several events to the webhook.
pub(crate) fn batch(alerts: &[AlertEvent]) -> Request {
    let items: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(slot, alert)| with_slot(&alert.event.to_string(), slot))
        .collect();
    let body = format!("[{}]", items.join(","));
    Request::new(
        "/api/defender-alerts",
        "aeg-event-type: Notification\r\n",
        body,
        alerts.len() as u64,
    )
}
