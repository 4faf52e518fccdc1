//! The integration test binary; its modules mirror the HTTP functions, the corpus and the manifest.

// Test helpers outside #[test] functions panic on purpose when a fixture is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod defender_alert;
mod end_to_end;
mod helpers;
mod infra;
mod manifest;
mod readiness;
mod webhook;
