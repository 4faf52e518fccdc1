//! The rotation executors against the in-process Azure simulator: success, dry run, a
//! redelivery after a crash between the write and the journal update, a version changed
//! underneath, the grace-window follow-up, and canary secrets absent everywhere but the vault.

// Test helpers outside #[test] functions panic on purpose when the simulator's seed is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canaries;
mod certificates;
mod credentials;
mod disable;
mod follow_ups;
mod helpers;
mod keys;
mod machines;
mod secrets;
mod storage;
