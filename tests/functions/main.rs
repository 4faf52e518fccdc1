//! The integration test binary; its modules mirror the HTTP functions, the corpus and the manifest.

// Test helpers outside #[test] functions panic on purpose when a fixture is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod command_line;
mod corpus;
mod defender_alert;
mod duplicates;
mod end_to_end;
mod faults;
mod helpers;
mod infra;
mod infra_roles;
mod limits;
mod manifest;
mod readiness;
mod webhook;
