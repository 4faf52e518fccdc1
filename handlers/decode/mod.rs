//! The edge: request bodies and Event Grid / CloudEvents envelopes decoded into domain events.
//!
//! This is the only module that looks at raw JSON. Everything after it works on
//! [`InboundEvent`] and [`SecurityAlert`](crate::domain::SecurityAlert).

mod alert;
mod envelope;
mod json;

pub use alert::{decode_alert, DecodedAlert};
pub use envelope::{
    decode_body, decode_event, BodyError, EventKind, InboundEvent, SUBSCRIPTION_VALIDATION,
};

/// Largest Event Grid event we accept (Event Grid's own limit is 1 MiB per event).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Largest request body we accept: Event Grid batches are limited to 1 MiB in total for
/// the Event Grid schema; CloudEvents batches likewise. A little headroom covers the host's
/// invocation envelope around a 1 MiB event.
pub const MAX_BODY_BYTES: usize = MAX_EVENT_BYTES + 64 * 1024;
