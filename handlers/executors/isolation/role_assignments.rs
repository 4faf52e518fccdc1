//! `remove_role_assignments`: one named assignment or custom definition, or the assignments
//! in a scope held or created by a principal, matching the scope exactly. Custom role
//! definitions go after their assignments; undo puts definitions back first.

use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::roles::{self, delete_request, list_assignments, saved_assignment, scope_is};
use super::{found, principals, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::http::encode_query;
use crate::azure::Api;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::{Parameters, RoleAssignmentTarget};
use crate::domain::task::{Action, Task};
use crate::executors::guards::refuse_protected_principal;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RemoveRoleAssignments;

const ASSIGNMENT: &str = "Microsoft.Authorization/roleAssignments";
const DEFINITION: &str = "Microsoft.Authorization/roleDefinitions";

fn target(task: &Task) -> Result<&RoleAssignmentTarget, ExecutorError> {
    match &task.parameters {
        Parameters::RemoveRoleAssignments { target } => Ok(target),
        _ => Err(wrong_parameters("remove_role_assignments")),
    }
}

fn saved_definition(definition: &Value) -> Value {
    json!({
        "id": definition.get("id").cloned().unwrap_or(Value::Null),
        "name": definition.get("name").cloned().unwrap_or(Value::Null),
        "properties": definition.get("properties").cloned().unwrap_or(Value::Null),
    })
}

/// The assignments and custom definitions the target selects, as saved for undo.
struct Selection {
    assignments: Vec<Value>,
    definitions: Vec<Value>,
    /// PIM-eligible assignments (role eligibility schedules) at the scope.
    eligible: Vec<Value>,
    lease: String,
}

/// api-version of the PIM role eligibility APIs.
const PIM: &str = "2020-10-01";

async fn selection(task: &Task, ctx: &ExecutorContext) -> Result<Selection, ExecutorError> {
    let mut assignments = Vec::new();
    let mut definitions = Vec::new();
    let mut eligible = Vec::new();
    let lease;
    match target(task)? {
        RoleAssignmentTarget::Named { id } if id.is_type(ASSIGNMENT) => {
            let assignment = found(
                ctx.clients
                    .arm
                    .get_optional(id.as_str(), api_version::AUTHORIZATION)
                    .await?,
                id.as_str(),
            )?;
            refuse_protected_principal(roles::property(&assignment, "principalId"), &ctx.settings)?;
            assignments.push(saved_assignment(&assignment));
            lease = id.normalized();
        }
        RoleAssignmentTarget::Named { id } if id.is_type(DEFINITION) => {
            let definition = found(
                ctx.clients
                    .arm
                    .get_optional(id.as_str(), api_version::AUTHORIZATION)
                    .await?,
                id.as_str(),
            )?;
            if roles::property(&definition, "type") != "CustomRole" {
                return Err(ExecutorError::refused(
                    RefusalReason::UnsupportedTarget,
                    format!(
                        "{} is a built-in role; only custom roles are deleted",
                        id.as_str()
                    ),
                ));
            }
            // Its assignments first, in each scope it can be assigned at (exact id match).
            let scopes: Vec<String> = definition
                .pointer("/properties/assignableScopes")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let guid = id.name().unwrap_or_default().to_ascii_lowercase();
            for scope in scopes {
                for assignment in list_assignments(ctx, &scope, None).await? {
                    let role =
                        roles::property(&assignment, "roleDefinitionId").to_ascii_lowercase();
                    let already = assignments
                        .iter()
                        .any(|a: &Value| a["id"] == assignment["id"]);
                    if role.rsplit('/').next() == Some(guid.as_str()) && !already {
                        refuse_protected_principal(
                            roles::property(&assignment, "principalId"),
                            &ctx.settings,
                        )?;
                        assignments.push(saved_assignment(&assignment));
                    }
                }
            }
            definitions.push(saved_definition(&definition));
            lease = id.normalized();
        }
        RoleAssignmentTarget::Named { id } => {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!(
                    "{} is neither a role assignment nor a role definition",
                    id.as_str()
                ),
            ))
        }
        RoleAssignmentTarget::InScope {
            scope,
            created_by,
            assigned_to,
        } => {
            if created_by.is_none() && assigned_to.is_none() {
                return Err(ExecutorError::refused(
                    RefusalReason::SubscriptionWide,
                    format!(
                        "no principal selects the assignments in {}: refusing to remove them all",
                        scope.as_str()
                    ),
                ));
            }
            let holder = match assigned_to {
                Some(p) => Some(principals::object_id(p, ctx).await?),
                None => None,
            };
            let creator = match created_by {
                Some(p) => Some(principals::object_id(p, ctx).await?),
                None => None,
            };
            let filter = holder.as_ref().map(|oid| format!("principalId eq '{oid}'"));
            for assignment in list_assignments(ctx, scope.as_str(), filter.as_deref()).await? {
                if !scope_is(&assignment, scope.as_str()) {
                    continue;
                }
                let principal = roles::property(&assignment, "principalId");
                let held = holder
                    .as_ref()
                    .is_some_and(|oid| principal.eq_ignore_ascii_case(oid));
                let created = creator.as_ref().is_some_and(|oid| {
                    roles::property(&assignment, "createdBy").eq_ignore_ascii_case(oid)
                });
                if !(held || created) {
                    continue;
                }
                // Never the responder's own or an excluded principal's assignment.
                if refuse_protected_principal(principal, &ctx.settings).is_err() {
                    continue;
                }
                assignments.push(saved_assignment(&assignment));
            }
            if let Some(oid) = &holder {
                let path = format!(
                    "{}/providers/Microsoft.Authorization/roleEligibilitySchedules?$filter={}",
                    scope.as_str(),
                    encode_query(&format!("assignedTo('{oid}')"))
                );
                for schedule in ctx.clients.arm.list(&path, PIM).await? {
                    if scope_is(&schedule, scope.as_str())
                        && roles::property(&schedule, "principalId").eq_ignore_ascii_case(oid)
                    {
                        eligible.push(json!({
                            "id": schedule["id"],
                            "properties": {
                                "principalId": roles::property(&schedule, "principalId"),
                                "roleDefinitionId": roles::property(&schedule, "roleDefinitionId"),
                                "scope": roles::property(&schedule, "scope"),
                            }
                        }));
                    }
                }
            }
            lease = scope.normalized();
        }
    }
    Ok(Selection {
        assignments,
        definitions,
        eligible,
        lease,
    })
}

/// `PUT {scope}/…/roleEligibilityScheduleRequests/{guid}` removing (or, for undo, re-adding)
/// one eligibility; the GUID is derived from the task and schedule, so the hash is stable.
fn eligibility_request(
    ctx: &ExecutorContext,
    task: &Task,
    schedule: &Value,
    request_type: &str,
) -> PlannedRequest {
    let scope = schedule["properties"]["scope"].as_str().unwrap_or_default();
    let seed = format!(
        "{}|{}|{request_type}",
        task.message_id,
        schedule["id"].as_str().unwrap_or_default()
    );
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    let guid = format!(
        "{}-{}-4{}-8{}-{}",
        &digest[..8],
        &digest[8..12],
        &digest[13..16],
        &digest[17..20],
        &digest[20..32]
    );
    let mut properties = json!({
        "principalId": schedule["properties"]["principalId"],
        "roleDefinitionId": schedule["properties"]["roleDefinitionId"],
        "requestType": request_type,
        "justification": format!("defender-responder {}", task.message_id),
    });
    if request_type == "AdminAssign" {
        properties["scheduleInfo"] = json!({"expiration": {"type": "NoExpiration"}});
    }
    PlannedRequest::new(
        Api::Arm,
        WriteMethod::Put,
        ctx.clients.arm.url(
            &format!(
                "{scope}/providers/Microsoft.Authorization/roleEligibilityScheduleRequests/{guid}"
            ),
            PIM,
        ),
        Some(json!({"properties": properties})),
    )
}

fn subscription_of(task: &Task) -> Vec<String> {
    let id: Option<&AzureResourceId> = match target(task) {
        Ok(RoleAssignmentTarget::Named { id }) => Some(id),
        Ok(RoleAssignmentTarget::InScope { scope, .. }) => Some(scope),
        Err(_) => None,
    };
    id.map(subscriptions_of).unwrap_or_default()
}

#[async_trait]
impl Executor for RemoveRoleAssignments {
    fn action(&self) -> Action {
        Action::RemoveRoleAssignments
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let Selection {
            assignments,
            definitions,
            eligible,
            lease,
        } = selection(task, ctx).await?;
        let mut requests: Vec<PlannedRequest> = assignments
            .iter()
            .map(|a| delete_request(ctx, a["id"].as_str().unwrap_or_default()))
            .collect();
        requests.extend(
            definitions
                .iter()
                .map(|d| delete_request(ctx, d["id"].as_str().unwrap_or_default())),
        );
        requests.extend(
            eligible
                .iter()
                .map(|e| eligibility_request(ctx, task, e, "AdminRemove")),
        );
        Ok(Preview {
            change: Change::new(
                if requests.is_empty() {
                    "no role assignment matches exactly; nothing to remove".to_string()
                } else {
                    format!(
                        "would DELETE {} role assignment(s) and {} custom role definition(s) (definitions after their assignments) and remove {} PIM-eligible assignment(s)",
                        assignments.len(),
                        definitions.len(),
                        eligible.len()
                    )
                },
                requests,
            ),
            prior_state: json!({"assignments": assignments, "definitions": definitions, "eligible": eligible}),
            leases: vec![lease],
            subscriptions: subscription_of(task),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let Selection {
            assignments,
            definitions,
            eligible,
            lease,
        } = selection(task, ctx).await?;
        let saved = |name: &str| {
            preview.prior_state[name]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        if roles::ids_of(&assignments) != roles::ids_of(&saved("assignments"))
            || roles::ids_of(&definitions) != roles::ids_of(&saved("definitions"))
            || roles::ids_of(&eligible) != roles::ids_of(&saved("eligible"))
        {
            return Err(ExecutorError::conflict(
                lease,
                "the role assignments changed since the preview",
            ));
        }
        ctx.send_all(&preview.change.requests).await
    }

    async fn verify(
        &self,
        _task: &Task,
        preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let mut verification = Verification::default();
        for kind in ["assignments", "definitions", "eligible"] {
            let version = if kind == "eligible" {
                PIM
            } else {
                api_version::AUTHORIZATION
            };
            for saved in preview.prior_state[kind].as_array().into_iter().flatten() {
                let id = saved["id"].as_str().unwrap_or_default();
                let exists = ctx.clients.arm.get_optional(id, version).await?.is_some();
                verification =
                    verification.check(format!("{id} exists"), json!(false), json!(exists));
            }
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
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        for definition in preview.prior_state["definitions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let request = PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(
                    definition["id"].as_str().unwrap_or_default(),
                    api_version::AUTHORIZATION,
                ),
                Some(json!({"properties": definition["properties"]})),
            );
            undone.sent.push(ctx.send(&request).await?.0);
        }
        let saved = preview.prior_state["assignments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        undone
            .sent
            .extend(roles::restore_assignments(ctx, &saved).await?);
        for schedule in preview.prior_state["eligible"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let request = eligibility_request(ctx, task, schedule, "AdminAssign");
            undone.sent.push(ctx.send(&request).await?.0);
        }
        if preview.prior_state["eligible"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
        {
            undone
                .not_restored
                .push("eligible assignments come back as new schedules without an expiry".into());
        }
        Ok(undone)
    }
}
