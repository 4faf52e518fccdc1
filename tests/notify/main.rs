//! The notification channels against real receivers: loopback Teams and Slack webhooks that
//! record the exact payload (the card validated by the official `adaptivecards` package),
//! Graph `sendMail` and ARM owner tags on the Azure simulator, and the signed webhook verified
//! by the reference `standardwebhooks` package; retries, `Retry-After` and the Teams pace.

// Test helpers outside #[test] functions panic on purpose when the environment is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod email;
mod owners;
mod slack;
mod support;
mod teams;
mod webhook;
mod worker;
