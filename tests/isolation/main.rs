//! The isolation executors against the in-process Azure simulator: success, dry run, undo,
//! throttling, conflicts and the guard rails, one module per executor; and undo through the
//! worker (the command, the Undo link, the containment expiry).

// Test helpers outside #[test] functions panic on purpose when the simulator's seed is broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod clients;
mod entra_roles;
mod guards;
mod helpers;
mod key_vault_firewall;
mod machines;
mod network;
mod restrict_principal;
mod revert_access_policy;
mod role_assignments;
mod runbook;
mod undo;
mod worker;
