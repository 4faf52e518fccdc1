//! The workers' machinery against real things: the Blob journal and the intake ledger shared
//! by instances on Azurite, the signed webhook against a receiver that verifies with the
//! reference `standardwebhooks` package, and the decision endpoint over HTTP.

// Test helpers outside #[test] functions panic on purpose when the environment is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod intake_ledger;
mod journal_blob;
mod journal_events;
mod support;
mod sweeper;
mod webhook_channel;
mod worker_loop;
