//! `restrict_principal`: an access-policy vault loses the principal's entries
//! (`accessPolicies/remove`); an RBAC vault loses the principal's role assignments at the
//! vault's own scope, never above it.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::roles::{self, delete_request, list_assignments, saved_assignment, scope_is};
use super::{found, principals, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::{KeyVaultId, PrincipalRef};
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview, Undone,
    Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestrictPrincipal;

fn inputs(task: &Task) -> Result<(&KeyVaultId, &PrincipalRef), ExecutorError> {
    match &task.parameters {
        Parameters::RestrictPrincipal { vault, principal } => Ok((vault, principal)),
        _ => Err(wrong_parameters("restrict_principal")),
    }
}

/// The vault's current grants to `object_id`: access-policy entries or vault-scope assignments.
async fn grants(
    ctx: &ExecutorContext,
    vault_id: &KeyVaultId,
    object_id: &str,
) -> Result<Value, ExecutorError> {
    let vault = found(
        ctx.clients
            .arm
            .get_optional(vault_id.as_str(), api_version::KEY_VAULT)
            .await?,
        vault_id.as_str(),
    )?;
    let rbac = vault
        .pointer("/properties/enableRbacAuthorization")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if rbac {
        let filter = format!("atScope() and assignedTo('{object_id}')");
        let assignments: Vec<Value> = list_assignments(ctx, vault_id.as_str(), Some(&filter))
            .await?
            .iter()
            .filter(|a| scope_is(a, vault_id.as_str()))
            .filter(|a| roles::property(a, "principalId").eq_ignore_ascii_case(object_id))
            .map(saved_assignment)
            .collect();
        Ok(json!({"model": "rbac", "objectId": object_id, "assignments": assignments}))
    } else {
        let entries: Vec<Value> = vault
            .pointer("/properties/accessPolicies")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| {
                        e.get("objectId")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.eq_ignore_ascii_case(object_id))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(json!({"model": "access_policy", "objectId": object_id, "entries": entries}))
    }
}

fn is_empty(grants: &Value) -> bool {
    let list = |name: &str| {
        grants
            .get(name)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    list("entries") == 0 && list("assignments") == 0
}

#[async_trait]
impl Executor for RestrictPrincipal {
    fn action(&self) -> Action {
        Action::RestrictPrincipal
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (vault, principal) = inputs(task)?;
        let object_id = principals::object_id(principal, ctx).await?;
        let prior = grants(ctx, vault, &object_id).await?;
        let mut requests = Vec::new();
        let summary = if prior["model"] == "rbac" {
            for assignment in prior["assignments"].as_array().into_iter().flatten() {
                let id = assignment["id"].as_str().unwrap_or_default();
                requests.push(delete_request(ctx, id));
            }
            format!(
                "would DELETE {} role assignment(s) of {object_id} at {} (assignments above the vault are left alone)",
                requests.len(),
                vault.as_str()
            )
        } else {
            let entries = prior["entries"].clone();
            if !is_empty(&prior) {
                requests.push(PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Put,
                    ctx.clients.arm.url(
                        &format!("{}/accessPolicies/remove", vault.as_str()),
                        api_version::KEY_VAULT,
                    ),
                    Some(json!({"properties": {"accessPolicies": entries}})),
                ));
            }
            format!(
                "would PUT {}/accessPolicies/remove with the {} access-policy entr(y/ies) of {object_id}",
                vault.as_str(),
                prior["entries"].as_array().map_or(0, Vec::len)
            )
        };
        let summary = if requests.is_empty() {
            format!("{object_id} has no access to {} to remove", vault.as_str())
        } else {
            summary
        };
        Ok(Preview {
            change: Change::new(summary, requests),
            prior_state: prior,
            leases: vec![vault.resource_id().normalized()],
            subscriptions: subscriptions_of(vault.resource_id()),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (vault, _) = inputs(task)?;
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        let now = grants(ctx, vault, object_id).await?;
        if now != preview.prior_state {
            return Err(ExecutorError::conflict(
                vault.as_str(),
                format!("the access of {object_id} changed since the preview"),
            ));
        }
        ctx.send_all(&preview.change.requests).await
    }

    async fn verify(
        &self,
        task: &Task,
        preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let (vault, _) = inputs(task)?;
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        let now = grants(ctx, vault, object_id).await?;
        let remaining = |g: &Value| {
            g.get("entries")
                .or_else(|| g.get("assignments"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        Ok(Verification::default().check(
            format!("grants of {object_id} on the vault"),
            json!(0),
            json!(remaining(&now)),
        ))
    }

    async fn undo(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let (vault, _) = inputs(task)?;
        if applied.sent.is_empty() {
            return Ok(Undone::default());
        }
        let prior = &preview.prior_state;
        let sent = if prior["model"] == "rbac" {
            let saved: Vec<Value> = prior["assignments"].as_array().cloned().unwrap_or_default();
            roles::restore_assignments(ctx, &saved).await?
        } else {
            let request = PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(
                    &format!("{}/accessPolicies/add", vault.as_str()),
                    api_version::KEY_VAULT,
                ),
                Some(json!({"properties": {"accessPolicies": prior["entries"]}})),
            );
            vec![ctx.send(&request).await?.0]
        };
        Ok(Undone {
            sent,
            not_restored: Vec::new(),
        })
    }
}
