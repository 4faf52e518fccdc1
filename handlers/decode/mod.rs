//! The edge: request bodies and Event Grid / CloudEvents envelopes decoded into domain events.
//!
//! This is the only module that looks at raw JSON. Everything after it works on
//! [`InboundEvent`] and [`SecurityAlert`](crate::domain::SecurityAlert).

mod alert;
mod envelope;
mod json;
mod tree;

pub use alert::{decode_alert, DecodedAlert};
pub use envelope::{
    decode_body, decode_delivery, decode_event, decode_event_json, BodyError, EventKind,
    InboundEvent, MAX_EVENTS_PER_DELIVERY, SUBSCRIPTION_VALIDATION,
};
pub use tree::{JsonObject, JsonTree};

/// Largest Event Grid event we accept (Event Grid's own limit is 1 MiB per event).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Largest webhook body we accept: Event Grid limits a delivery (one event or a batch) to
/// 1 MiB; a little headroom covers envelope fields.
pub const MAX_BODY_BYTES: usize = MAX_EVENT_BYTES + 64 * 1024;

/// Largest Functions host invocation we accept. The host repeats the event's `data` in
/// `Metadata.data` and may send the event as an escaped JSON string, so a 1 MiB event can
/// arrive as well over 2 MiB.
pub const MAX_INVOCATION_BYTES: usize = 4 * MAX_EVENT_BYTES;
