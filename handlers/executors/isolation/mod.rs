//! The isolation-queue executors (one file each) and what they share.

pub mod accounts;
pub mod entra_roles;
pub mod key_vault_firewall;
pub mod machines;
pub mod network;
pub mod principals;
pub mod restrict_principal;
pub mod revert_access_policy;
pub mod role_assignments;
pub mod roles;
pub mod runbook;

use std::sync::Arc;

use serde_json::Value;

use super::{ExecutorError, ExecutorRegistry, RefusalReason};
use crate::domain::ids::AzureResourceId;

/// Registers every isolation executor: one line per action.
pub fn register(registry: &mut ExecutorRegistry) {
    registry.register(Arc::new(key_vault_firewall::EnableKeyVaultFirewall));
    registry.register(Arc::new(restrict_principal::RestrictPrincipal));
    registry.register(Arc::new(network::IsolateResourceNetwork));
    registry.register(Arc::new(accounts::DisableAccount));
    registry.register(Arc::new(accounts::DeleteUnfamiliarAccount));
    registry.register(Arc::new(role_assignments::RemoveRoleAssignments));
    registry.register(Arc::new(entra_roles::ReviewEntraRoles));
    registry.register(Arc::new(runbook::RemoveRunbook));
    registry.register(Arc::new(machines::RunAntimalwareScan));
    registry.register(Arc::new(machines::ReimageVm));
    registry.register(Arc::new(revert_access_policy::RevertAccessPolicy));
}

/// The subscription of a resource id, as the blast-radius budget counts it.
pub(crate) fn subscriptions_of(id: &AzureResourceId) -> Vec<String> {
    id.subscription_id()
        .map(|s| vec![s.to_ascii_lowercase()])
        .unwrap_or_default()
}

/// Refuses when the target does not exist.
pub(crate) fn found(value: Option<Value>, what: &str) -> Result<Value, ExecutorError> {
    value.ok_or_else(|| {
        ExecutorError::refused(
            RefusalReason::TargetNotFound,
            format!("{what} does not exist"),
        )
    })
}

/// The wrong parameters reached an executor: a bug in the worker's dispatch, never retried.
pub(crate) fn wrong_parameters(expected: &str) -> ExecutorError {
    ExecutorError::Permanent(format!("the task's parameters are not those of {expected}"))
}
