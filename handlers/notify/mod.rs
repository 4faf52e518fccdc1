//! Notification channels. The first is a generic webhook signed per Standard Webhooks.

mod signature;
pub mod webhook;

pub use signature::WebhookSecret;
pub use webhook::{Delivery, SendError, WebhookChannel, WebhookSettings};
