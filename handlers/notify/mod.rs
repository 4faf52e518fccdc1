//! Notification channels: the message a person reads ([`message`]), rendered for Teams
//! ([`teams`]), Slack ([`slack`]), e-mail ([`email`]) and a Standard-Webhooks-signed webhook
//! ([`webhook`]), routed and delivered once per message id by the [`notifier`]; owners found by
//! tag ([`owners`]).

pub mod command;
pub mod delivery;
pub mod email;
pub mod message;
pub mod notifier;
pub mod owners;
pub mod sample;
mod signature;
pub mod slack;
pub mod teams;
pub mod webhook;

pub use message::Notification;
pub use notifier::{Notifier, Outgoing, Sent};
pub use signature::WebhookSecret;
pub use webhook::{Delivery, SendError, WebhookChannel, WebhookSettings};
