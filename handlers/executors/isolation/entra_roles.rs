//! `review_entra_roles`: remove a principal's active Entra role assignments and its
//! PIM-eligible schedules (those the task names, or all). Directory roles are the tenant's
//! keys: the executor refuses unless the policy decided `approval`.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{principals, wrong_parameters};
use crate::azure::http::encode_query;
use crate::azure::Api;
use crate::domain::ids::PrincipalRef;
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::guards::alert_subscription;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReviewEntraRoles;

fn inputs(task: &Task) -> Result<(&PrincipalRef, &[String]), ExecutorError> {
    match &task.parameters {
        Parameters::ReviewEntraRoles {
            principal,
            entra_roles,
        } => Ok((principal, entra_roles)),
        _ => Err(wrong_parameters("review_entra_roles")),
    }
}

fn role_name(item: &Value) -> &str {
    item.pointer("/roleDefinition/displayName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The principal's active assignments and eligible schedules, as saved for undo.
async fn roles_of(
    ctx: &ExecutorContext,
    object_id: &str,
    names: &[String],
) -> Result<Value, ExecutorError> {
    let filter = encode_query(&format!("principalId eq '{object_id}'"));
    let keep = |item: &Value| {
        names.is_empty()
            || names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(role_name(item)))
    };
    let saved = |item: &Value| {
        json!({
            "id": item.get("id").cloned().unwrap_or(Value::Null),
            "principalId": object_id,
            "roleDefinitionId": item.get("roleDefinitionId").cloned().unwrap_or(Value::Null),
            "directoryScopeId": item.get("directoryScopeId").cloned().unwrap_or(json!("/")),
            "roleName": role_name(item),
        })
    };
    let list = |path: String| async move { ctx.clients.graph.list(&path).await };
    let active: Vec<Value> = list(format!(
        "/roleManagement/directory/roleAssignments?$filter={filter}&$expand=roleDefinition"
    ))
    .await?
    .iter()
    .filter(|i| keep(i))
    .map(saved)
    .collect();
    let eligible: Vec<Value> = list(format!("/roleManagement/directory/roleEligibilitySchedules?$filter={filter}&$expand=roleDefinition"))
        .await?
        .iter()
        .filter(|i| keep(i))
        .map(saved)
        .collect();
    Ok(json!({"objectId": object_id, "active": active, "eligible": eligible}))
}

fn schedule_request(
    ctx: &ExecutorContext,
    item: &Value,
    action: &str,
    message_id: &str,
) -> PlannedRequest {
    let mut body = json!({
        "action": action,
        "principalId": item["principalId"],
        "roleDefinitionId": item["roleDefinitionId"],
        "directoryScopeId": item["directoryScopeId"],
        "justification": format!("defender-responder {message_id}"),
    });
    if action == "adminAssign" {
        body["scheduleInfo"] = json!({"expiration": {"type": "noExpiration"}});
    }
    PlannedRequest::new(
        Api::Graph,
        WriteMethod::Post,
        ctx.clients
            .graph
            .url("/roleManagement/directory/roleEligibilityScheduleRequests"),
        Some(body),
    )
}

fn items(state: &Value, kind: &str) -> Vec<Value> {
    state[kind].as_array().cloned().unwrap_or_default()
}

#[async_trait]
impl Executor for ReviewEntraRoles {
    fn action(&self) -> Action {
        Action::ReviewEntraRoles
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let approved_by_policy = task.policy.as_ref().is_some_and(|p| p.mode == "approval");
        if !approved_by_policy {
            return Err(ExecutorError::refused(
                RefusalReason::RequiresApproval,
                "Entra directory roles are only changed with a person's approval (policy mode `approval`)",
            ));
        }
        let (principal, names) = inputs(task)?;
        let object_id = principals::object_id(principal, ctx).await?;
        let prior = roles_of(ctx, &object_id, names).await?;
        let mut requests = Vec::new();
        for item in items(&prior, "active") {
            let id = item["id"].as_str().unwrap_or_default();
            requests.push(PlannedRequest::new(
                Api::Graph,
                WriteMethod::Delete,
                ctx.clients
                    .graph
                    .url(&format!("/roleManagement/directory/roleAssignments/{id}")),
                None,
            ));
        }
        for item in items(&prior, "eligible") {
            requests.push(schedule_request(
                ctx,
                &item,
                "adminRemove",
                task.message_id.as_str(),
            ));
        }
        let roles: Vec<String> = items(&prior, "active")
            .iter()
            .chain(items(&prior, "eligible").iter())
            .map(|i| i["roleName"].as_str().unwrap_or("?").to_string())
            .collect();
        Ok(Preview {
            change: Change::new(
                if requests.is_empty() {
                    format!("{object_id} holds none of these Entra roles")
                } else {
                    format!(
                        "would remove {} active and {} eligible Entra role assignment(s) of {object_id}: {}",
                        items(&prior, "active").len(),
                        items(&prior, "eligible").len(),
                        roles.join(", ")
                    )
                },
                requests,
            ),
            prior_state: prior,
            leases: vec![format!("entra:{object_id}")],
            subscriptions: alert_subscription(task)
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (_, names) = inputs(task)?;
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        if roles_of(ctx, object_id, names).await? != preview.prior_state {
            return Err(ExecutorError::conflict(
                format!("entra:{object_id}"),
                "the principal's Entra roles changed since the preview",
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
        let (_, names) = inputs(task)?;
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        let now = roles_of(ctx, object_id, names).await?;
        Ok(Verification::default()
            .check(
                "active Entra roles left",
                json!(0),
                json!(items(&now, "active").len()),
            )
            .check(
                "eligible Entra roles left",
                json!(0),
                json!(items(&now, "eligible").len()),
            ))
    }

    async fn undo(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        for item in items(&preview.prior_state, "active") {
            let request = PlannedRequest::new(
                Api::Graph,
                WriteMethod::Post,
                ctx.clients
                    .graph
                    .url("/roleManagement/directory/roleAssignments"),
                Some(json!({
                    "principalId": item["principalId"],
                    "roleDefinitionId": item["roleDefinitionId"],
                    "directoryScopeId": item["directoryScopeId"],
                })),
            );
            undone.sent.push(ctx.send(&request).await?.0);
        }
        for item in items(&preview.prior_state, "eligible") {
            let request = schedule_request(ctx, &item, "adminAssign", task.message_id.as_str());
            undone.sent.push(ctx.send(&request).await?.0);
        }
        if !items(&preview.prior_state, "active").is_empty() {
            undone
                .not_restored
                .push("re-created active assignments get new ids; eligible ones get a new schedule without expiry".into());
        }
        Ok(undone)
    }
}
