//! `revert_access_policy`: find the access-policy change that widened a vault (Resource Graph
//! `resourcechanges`, previous and new values) and put the previous permissions back with
//! `accessPolicies/replace`; undo re-applies the widened entry as it was.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use super::{found, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::{KeyVaultId, PrincipalRef};
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::guards::refuse_protected_principal;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RevertAccessPolicy;

/// api-version of Resource Graph.
const RESOURCE_GRAPH: &str = "2022-10-01";

fn inputs(task: &Task) -> Result<(&KeyVaultId, Option<&PrincipalRef>), ExecutorError> {
    match &task.parameters {
        Parameters::RevertAccessPolicy { vault, changed_by } => Ok((vault, changed_by.as_ref())),
        _ => Err(wrong_parameters("revert_access_policy")),
    }
}

/// One widening: the entry index, the permission kind, and the previous and new lists.
#[derive(Debug, PartialEq)]
struct Widening {
    index: usize,
    kind: String,
    previous: Vec<String>,
    new: Vec<String>,
}

fn list(text: Option<&Value>) -> Vec<String> {
    let parsed = match text {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    };
    let mut out: Vec<String> = parsed
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Parses `properties.accessPolicies[N].permissions.{kind}` changes.
fn widenings(row: &Value) -> Vec<Widening> {
    let Some(changes) = row
        .pointer("/properties/changes")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    changes
        .iter()
        .filter_map(|(path, change)| {
            let rest = path.strip_prefix("properties.accessPolicies[")?;
            let (index, rest) = rest.split_once(']')?;
            let kind = rest.strip_prefix(".permissions.")?;
            Some(Widening {
                index: index.parse().ok()?,
                kind: kind.to_string(),
                previous: list(change.get("previousValue")),
                new: list(change.get("newValue")),
            })
        })
        .collect()
}

async fn vault_entries(
    ctx: &ExecutorContext,
    vault: &KeyVaultId,
) -> Result<Vec<Value>, ExecutorError> {
    let body = found(
        ctx.clients
            .arm
            .get_optional(vault.as_str(), api_version::KEY_VAULT)
            .await?,
        vault.as_str(),
    )?;
    Ok(body
        .pointer("/properties/accessPolicies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn permissions_of(entry: &Value, kind: &str) -> Vec<String> {
    list(entry.pointer(&format!("/permissions/{kind}")))
}

#[async_trait]
impl Executor for RevertAccessPolicy {
    fn action(&self) -> Action {
        Action::RevertAccessPolicy
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (vault, changed_by) = inputs(task)?;
        let changer = match changed_by {
            Some(PrincipalRef::ObjectId { object_id, .. }) => {
                Some(object_id.as_str().to_ascii_lowercase())
            }
            _ => None,
        };
        let query = json!({"query": format!(
            "resourcechanges | where properties.targetResourceId =~ '{}' | where properties.changeAttributes.operation =~ 'Microsoft.KeyVault/vaults/accessPolicies/write'",
            vault.as_str()
        )});
        let url = ctx.clients.arm.url(
            "/providers/Microsoft.ResourceGraph/resources",
            RESOURCE_GRAPH,
        );
        let answer = ctx
            .clients
            .arm
            .core()
            .send(Method::POST, &url, Some(&query))
            .await?;
        let rows: Vec<Value> = answer.body["data"].as_array().cloned().unwrap_or_default();
        let rows: Vec<&Value> = rows
            .iter()
            .filter(|row| {
                changer.as_ref().is_none_or(|oid| {
                    row.pointer("/properties/changeAttributes/changedBy")
                        .and_then(Value::as_str)
                        .is_some_and(|by| by.eq_ignore_ascii_case(oid))
                })
            })
            .collect();
        let changes: Vec<Widening> = rows.iter().flat_map(|row| widenings(row)).collect();
        if changes.is_empty() {
            return Err(ExecutorError::refused(
                RefusalReason::TargetNotFound,
                format!(
                    "Resource Graph shows no access-policy change on {} to revert",
                    vault.as_str()
                ),
            ));
        }
        let entries = vault_entries(ctx, vault).await?;
        let mut reverted: Vec<Value> = Vec::new();
        let mut saved: Vec<Value> = Vec::new();
        for change in &changes {
            let Some(entry) = entries.get(change.index) else {
                continue;
            };
            // The entry must still hold exactly the widened permissions, else a person decides.
            if permissions_of(entry, &change.kind) != change.new {
                continue;
            }
            refuse_protected_principal(
                entry["objectId"].as_str().unwrap_or_default(),
                &ctx.settings,
            )?;
            let position = saved
                .iter()
                .position(|s| s["objectId"] == entry["objectId"]);
            let target = match position {
                Some(i) => &mut reverted[i],
                None => {
                    saved.push(entry.clone());
                    reverted.push(entry.clone());
                    reverted.last_mut().unwrap_or_else(|| unreachable!())
                }
            };
            target["permissions"][change.kind.as_str()] = json!(change.previous);
        }
        let requests = if reverted.is_empty() {
            Vec::new()
        } else {
            vec![PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(
                    &format!("{}/accessPolicies/replace", vault.as_str()),
                    api_version::KEY_VAULT,
                ),
                Some(json!({"properties": {"accessPolicies": reverted}})),
            )]
        };
        Ok(Preview {
            change: Change::new(
                if requests.is_empty() {
                    format!(
                        "the access-policy widening on {} is no longer in place",
                        vault.as_str()
                    )
                } else {
                    format!("would PUT {}/accessPolicies/replace putting back the previous permissions of {} entr(y/ies)", vault.as_str(), saved.len())
                },
                requests,
            ),
            prior_state: json!({"entries": saved, "reverted": reverted}),
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
        let entries = vault_entries(ctx, vault).await?;
        for saved in preview.prior_state["entries"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if !entries.contains(saved) {
                return Err(ExecutorError::conflict(
                    vault.as_str(),
                    "the access policy changed since the preview",
                ));
            }
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
        let entries = vault_entries(ctx, vault).await?;
        let mut verification = Verification::default();
        for expected in preview.prior_state["reverted"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let actual = entries
                .iter()
                .find(|e| e["objectId"] == expected["objectId"])
                .cloned()
                .unwrap_or(Value::Null);
            verification = verification.check(
                format!(
                    "permissions of {}",
                    expected["objectId"].as_str().unwrap_or_default()
                ),
                expected["permissions"].clone(),
                actual["permissions"].clone(),
            );
        }
        Ok(verification)
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
        let request = PlannedRequest::new(
            Api::Arm,
            WriteMethod::Put,
            ctx.clients.arm.url(
                &format!("{}/accessPolicies/replace", vault.as_str()),
                api_version::KEY_VAULT,
            ),
            Some(json!({"properties": {"accessPolicies": preview.prior_state["entries"]}})),
        );
        Ok(Undone {
            sent: vec![ctx.send(&request).await?.0],
            not_restored: Vec::new(),
        })
    }
}
