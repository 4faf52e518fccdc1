//! Event Grid schema events, CloudEvents 1.0 (single and batch) and bare alerts, decoded into
//! [`InboundEvent`]s; one bad event becomes an `Invalid` event and never sinks its batch.

use serde_json::Value;

use super::alert::{decode_alert_with, DecodedAlert, EnvelopeHints};
use super::json::{describe, get, get_str};
use super::tree::{JsonObject, JsonTree};

/// What an absent `data` reads as.
static NULL: JsonTree<'static> = JsonTree::Null;

/// Most events one delivery may hold: Event Grid's own limit for a batch (`maxEventsPerBatch`
/// is 1 to 5,000). A larger array is not an Event Grid delivery and is refused as a whole.
pub const MAX_EVENTS_PER_DELIVERY: usize = 5_000;

/// Event Grid's subscription-validation event type.
pub const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// What one event in a delivery turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// A Defender alert to handle.
    Alert(Box<DecodedAlert>),
    /// Event Grid's subscription-validation handshake.
    SubscriptionValidation {
        /// The code to echo back as `validationResponse`.
        code: String,
        /// The URL to GET instead (newer API versions), when present.
        url: Option<String>,
    },
    /// A well-formed event that is not a Defender alert (acknowledged, logged, not acted on).
    NotAnAlert(String),
    /// A malformed event: the reason names what is wrong.
    Invalid(String),
}

/// One event of a delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundEvent {
    /// The envelope's event id (`#n` for position n when the event has none).
    pub event_id: String,
    /// The envelope's event type, when it has one.
    pub event_type: Option<String>,
    /// What the event is.
    pub kind: EventKind,
}

/// Why a whole body could not be read as events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Nothing was sent.
    #[error("the body is empty")]
    Empty,
    /// A UTF-8 byte order mark precedes the JSON; Event Grid never sends one.
    #[error("the body starts with a UTF-8 byte order mark (EF BB BF); JSON must not")]
    ByteOrderMark,
    /// Larger than a delivery can be.
    #[error("the body is {0} bytes, over the limit of {limit} bytes", limit = super::MAX_BODY_BYTES)]
    TooLarge(usize),
    /// Not JSON.
    #[error("invalid JSON at line {line} column {column}: {message}")]
    InvalidJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// An array of more events than one delivery may hold.
    #[error(
        "the delivery holds more than {max} events; Event Grid delivers at most {max} per batch"
    )]
    TooManyEvents {
        /// The limit.
        max: usize,
    },
    /// JSON, but neither an event, an array of events nor an alert.
    #[error("expected an Event Grid event array, a CloudEvent or a CloudEvents batch, got {0}")]
    NotEvents(String),
}

/// Decodes a request body or file: an array of events (Event Grid schema or a CloudEvents
/// batch), one CloudEvent, one Event Grid event, or one bare alert object.
pub fn decode_body(body: &[u8]) -> Result<Vec<InboundEvent>, BodyError> {
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(BodyError::ByteOrderMark);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    let value = JsonTree::parse_slice(body).map_err(|err| BodyError::InvalidJson {
        line: err.line(),
        column: err.column(),
        message: strip_position(&err.to_string()),
    })?;
    match value {
        JsonTree::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(index, item)| decode_event_json(item, index))
            .collect()),
        // The REST list shape (`GET …/alerts`): {"value": [alert, …], "nextLink": …}.
        JsonTree::Object(ref object) if is_rest_list(object) => match get(object, "value") {
            Some(JsonTree::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(index, item)| decode_event_json(item, index))
                .collect()),
            _ => Ok(Vec::new()),
        },
        JsonTree::Object(_) => Ok(vec![decode_event_json(&value, 0)]),
        other => Err(BodyError::NotEvents(describe(&other))),
    }
}

/// Decodes a delivery like [`decode_body`], refusing an array of more than `max_events`
/// events before decoding any of them (counting costs no allocation per event).
pub fn decode_delivery(body: &[u8], max_events: usize) -> Result<Vec<InboundEvent>, BodyError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first == Some(&b'[') && more_elements_than(body, max_events) {
        return Err(BodyError::TooManyEvents { max: max_events });
    }
    decode_body(body)
}

/// Whether `body`, a JSON array, has more than `max` elements; stops counting at `max + 1`.
/// Invalid JSON answers false: the full decode reports it with its position.
fn more_elements_than(body: &[u8], max: usize) -> bool {
    use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
    use std::cell::Cell;
    struct Counter<'a> {
        max: usize,
        exceeded: &'a Cell<bool>,
    }
    impl<'de> Visitor<'de> for Counter<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut count = 0usize;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                count += 1;
                if count > self.max {
                    // Stop here: the caller refuses the body without reading the rest.
                    self.exceeded.set(true);
                    return Err(serde::de::Error::custom("too many events"));
                }
            }
            Ok(())
        }
    }
    let exceeded = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = (&mut deserializer).deserialize_seq(Counter {
        max,
        exceeded: &exceeded,
    });
    exceeded.get()
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(cut) => message[..cut].to_string(),
        None => message.to_string(),
    }
}

/// Decodes one event value: an Event Grid event, a CloudEvent, or a bare alert. The value may
/// also be a JSON string holding the event, as the Functions host sometimes delivers it.
pub fn decode_event(value: &Value, index: usize) -> InboundEvent {
    decode_event_json(&JsonTree::from_value(value), index)
}

/// [`decode_event`] of an event parsed in place (its strings borrowed from the request body).
pub fn decode_event_json(value: &JsonTree<'_>, index: usize) -> InboundEvent {
    let fallback_id = format!("#{index}");
    let object = match value {
        JsonTree::Object(object) => object,
        JsonTree::String(text) => match JsonTree::parse(text) {
            Ok(inner @ JsonTree::Object(_)) => return decode_event_json(&inner, index),
            Ok(other) => {
                return invalid(
                    fallback_id,
                    format!(
                        "event is a string holding {}, not an event object",
                        describe(&other)
                    ),
                )
            }
            Err(err) => {
                return invalid(
                    fallback_id,
                    format!("event is a string that is not JSON: {err}"),
                )
            }
        },
        other => {
            return invalid(
                fallback_id,
                format!("event is {}, not an object", describe(other)),
            )
        }
    };
    let event_id = get(object, "id")
        .map(super::json::to_text)
        .filter(|id| !id.trim().is_empty())
        .unwrap_or(fallback_id);

    if get(object, "specversion").is_some() {
        decode_cloud_event(object, event_id)
    } else if get(object, "eventType").is_some() {
        decode_event_grid_event(object, event_id)
    } else if looks_like_alert(object) {
        // A bare alert (continuous export to Event Hubs writes these): no envelope to read.
        let event_id = alert_id(object).unwrap_or(event_id);
        alert_event(event_id, None, value, &EnvelopeHints::default())
    } else {
        invalid(
            event_id,
            "event has neither eventType (Event Grid schema) nor specversion (CloudEvents), and is not an alert".to_string(),
        )
    }
}

fn decode_event_grid_event(object: &JsonObject<'_>, event_id: String) -> InboundEvent {
    let event_type = get_str(object, "eventType").map(str::to_string);
    let hints = EnvelopeHints {
        subject: get_str(object, "subject"),
        topic: get_str(object, "topic"),
    };
    // Borrowed: the alert is read in place, never copied (a copy was ~13% of decode+plan).
    let data = get(object, "data").unwrap_or(&NULL);
    classify(event_id, event_type, data, &hints)
}

fn decode_cloud_event(object: &JsonObject<'_>, event_id: String) -> InboundEvent {
    let event_type = get_str(object, "type").map(str::to_string);
    match get_str(object, "specversion") {
        Some("1.0") => {}
        Some(other) => {
            return invalid_typed(
                event_id,
                event_type,
                format!("specversion {other:?} is not supported (expected \"1.0\")"),
            )
        }
        None => {
            return invalid_typed(
                event_id,
                event_type,
                "specversion must be the string \"1.0\"".to_string(),
            )
        }
    }
    let hints = EnvelopeHints {
        subject: get_str(object, "subject"),
        topic: get_str(object, "source"),
    };
    let data = match (get(object, "data"), get_str(object, "data_base64")) {
        (Some(data), _) => data,
        (None, Some(_)) => return invalid_typed(
            event_id,
            event_type,
            "data_base64 (binary CloudEvent data) is not supported: send the alert as JSON data"
                .to_string(),
        ),
        (None, None) => &NULL,
    };
    classify(event_id, event_type, data, &hints)
}

fn classify(
    event_id: String,
    event_type: Option<String>,
    data: &JsonTree<'_>,
    hints: &EnvelopeHints<'_>,
) -> InboundEvent {
    let kind_of = |name: &str| {
        event_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
    };
    if kind_of(SUBSCRIPTION_VALIDATION) {
        let code = match data {
            JsonTree::Object(fields) => get_str(fields, "validationCode").map(str::to_string),
            _ => None,
        };
        let url = match data {
            JsonTree::Object(fields) => get_str(fields, "validationUrl").map(str::to_string),
            _ => None,
        };
        return match code {
            Some(code) => InboundEvent {
                event_id,
                event_type,
                kind: EventKind::SubscriptionValidation { code, url },
            },
            None => invalid_typed(
                event_id,
                event_type,
                "data.validationCode is missing from the subscription validation event".to_string(),
            ),
        };
    }
    // Azure's own event types are never Defender alerts, except Microsoft.Security ones;
    // custom topics carry publisher-defined types, so those are judged by their data.
    if let Some(kind) = event_type.as_deref().filter(|t| {
        let lower = t.to_ascii_lowercase();
        lower.starts_with("microsoft.") && !lower.starts_with("microsoft.security.")
    }) {
        let reason = if kind.to_ascii_lowercase().starts_with("microsoft.graph.") {
            format!("{kind} is a Microsoft Graph change notification that carries only the alert id; this responder takes full Defender alerts (workflow automation or export), so nothing is planned")
        } else {
            format!("{kind} is an Azure event, not a Defender alert: the subscription should not route it here")
        };
        return InboundEvent {
            event_id,
            event_type,
            kind: EventKind::NotAnAlert(reason),
        };
    }
    alert_event(event_id, event_type, data, hints)
}

fn alert_event(
    event_id: String,
    event_type: Option<String>,
    data: &JsonTree<'_>,
    hints: &EnvelopeHints<'_>,
) -> InboundEvent {
    let parsed;
    let data = match data {
        JsonTree::Null => {
            return invalid_typed(
                event_id,
                event_type,
                "data is missing or null: the event carries no alert".to_string(),
            )
        }
        // Some publishers (and the Functions host) JSON-encode data into a string.
        JsonTree::String(text) => match JsonTree::parse(text) {
            Ok(inner) => {
                parsed = inner;
                &parsed
            }
            Err(err) => {
                return invalid_typed(
                    event_id,
                    event_type,
                    format!("data is a string that is not JSON: {err}"),
                )
            }
        },
        _ => data,
    };
    if let JsonTree::Object(fields) = data {
        if is_activity_log_record(fields) {
            return InboundEvent {
                event_id,
                event_type,
                kind: EventKind::NotAnAlert(
                    "data is an activity-log record (operationName), not a Defender alert: it has no alertType".to_string(),
                ),
            };
        }
    }
    match decode_alert_with(data, hints) {
        Ok(decoded) => InboundEvent {
            event_id,
            event_type,
            kind: EventKind::Alert(Box::new(decoded)),
        },
        Err(reason) => invalid_typed(event_id, event_type, reason),
    }
}

/// Whether an object is the REST list of alerts: a `value` array and no event or alert keys.
fn is_rest_list(object: &JsonObject<'_>) -> bool {
    matches!(get(object, "value"), Some(JsonTree::Array(_)))
        && get(object, "eventType").is_none()
        && get(object, "specversion").is_none()
        && !looks_like_alert(object)
}

/// Whether an object is an alert: it has `alertType`, or the legacy `alertName` (which is
/// then refused with the missing `alertType` named, rather than as "not an alert").
fn looks_like_alert(object: &JsonObject<'_>) -> bool {
    let names_a_type = |fields: &JsonObject<'_>| {
        get(fields, "alertType").is_some() || get(fields, "alertName").is_some()
    };
    names_a_type(object)
        || matches!(get(object, "properties"), Some(JsonTree::Object(props)) if names_a_type(props))
}

fn alert_id(object: &JsonObject<'_>) -> Option<String> {
    let props = match get(object, "properties") {
        Some(JsonTree::Object(props)) => props,
        _ => object,
    };
    get_str(props, "systemAlertId").map(str::to_string)
}

fn is_activity_log_record(fields: &JsonObject<'_>) -> bool {
    get(fields, "operationName").is_some() && !looks_like_alert(fields)
}

fn invalid(event_id: String, reason: String) -> InboundEvent {
    invalid_typed(event_id, None, reason)
}

fn invalid_typed(event_id: String, event_type: Option<String>, reason: String) -> InboundEvent {
    InboundEvent {
        event_id,
        event_type,
        kind: EventKind::Invalid(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_list_shape_is_read_like_an_array_and_legacy_alerts_name_the_missing_field() {
        let listed = kinds(
            r#"{"value": [{"properties": {"alertType": "KV_UserAnomaly", "systemAlertId": "a"}},
                          {"properties": {"alertType": "AzureDNS_DarkWeb", "systemAlertId": "b"}}],
                "nextLink": null}"#,
        );
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .all(|kind| matches!(kind, EventKind::Alert(_))));
        assert!(kinds(r#"{"value": []}"#).is_empty());
        let legacy =
            kinds(r#"{"properties": {"alertName": "KV_UserAnomaly", "systemAlertId": "c"}}"#);
        assert!(
            matches!(&legacy[0], EventKind::Invalid(reason)
                if reason.starts_with("data.properties.alertType is missing") && reason.contains("alertName")),
            "{legacy:?}"
        );
    }

    fn kinds(body: &str) -> Vec<EventKind> {
        decode_body(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|event| event.kind)
            .collect()
    }

    #[test]
    fn malformed_bodies_are_errors_that_say_what_is_wrong() {
        assert_eq!(decode_body(b""), Err(BodyError::Empty));
        assert_eq!(
            decode_body(b"\xEF\xBB\xBF[]"),
            Err(BodyError::ByteOrderMark)
        );
        let err = decode_body(b"[{'id': 1}]").unwrap_err().to_string();
        assert!(err.starts_with("invalid JSON at line 1 column 3"), "{err}");
        let err = decode_body(b"{\"a\":1}\n{\"b\":2}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("trailing characters"), "{err}");
        assert_eq!(
            decode_body(b"7").unwrap_err(),
            BodyError::NotEvents("number 7".into())
        );
        assert_eq!(decode_body(b"[]").unwrap(), vec![]);
    }

    #[test]
    fn one_bad_event_does_not_sink_the_batch() {
        let got = kinds(
            r#"[{"id":"a","eventType":"X","data":null},
            {"id":"b","eventType":"X","data":{"AlertType":"KV_UserAnomaly","SystemAlertId":"s"}}, 5]"#,
        );
        assert!(
            matches!(&got[0], EventKind::Invalid(reason) if reason.contains("data is missing or null"))
        );
        assert!(matches!(&got[1], EventKind::Alert(_)));
        assert!(matches!(&got[2], EventKind::Invalid(reason) if reason.contains("number 5")));
    }

    #[test]
    fn handshakes_graph_events_and_string_data_are_recognised() {
        let got = kinds(
            r#"[{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"C"}},
            {"id":"g","specversion":"1.0","type":"Microsoft.Graph.AlertCreated","source":"s","data":{}},
            {"id":"s","eventType":"X","data":"{\"AlertType\":\"KV_UserAnomaly\",\"SystemAlertId\":\"s\"}"}]"#,
        );
        assert_eq!(
            got[0],
            EventKind::SubscriptionValidation {
                code: "C".into(),
                url: None
            }
        );
        assert!(
            matches!(&got[1], EventKind::NotAnAlert(reason) if reason.contains("Microsoft Graph"))
        );
        assert!(matches!(&got[2], EventKind::Alert(_)));
    }

    #[test]
    fn a_delivery_of_more_events_than_event_grid_sends_is_refused_before_decoding() {
        let body = format!("[{}]", ["{}"; 6].join(","));
        assert_eq!(
            decode_delivery(body.as_bytes(), 5),
            Err(BodyError::TooManyEvents { max: 5 })
        );
        assert_eq!(decode_delivery(body.as_bytes(), 6).unwrap().len(), 6);
        // Bad JSON is still reported with its position, and objects are not counted.
        let err = decode_delivery(b"[{},{},", 5).unwrap_err().to_string();
        assert!(err.starts_with("invalid JSON"), "{err}");
        assert_eq!(decode_delivery(br#"{"id":"x"}"#, 0).unwrap().len(), 1);
    }

    #[test]
    fn an_event_delivered_as_a_json_string_is_decoded() {
        let inner = r#"{"id":"e1","eventType":"X","data":{"AlertType":"KV_UserAnomaly","SystemAlertId":"s"}}"#;
        let event = decode_event(&Value::String(inner.to_string()), 0);
        assert_eq!(event.event_id, "e1");
        assert!(matches!(event.kind, EventKind::Alert(_)));
    }
}
