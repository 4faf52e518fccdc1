//! `disable_account` and `delete_unfamiliar_account`: users, service principals and
//! applications in Entra. Delete always disables first, removes the principal's Azure role
//! assignments (Entra's restore does not bring those back), and saves the object for undo.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::principals::{self, DirectoryCollection, DirectoryObject};
use super::roles::{self, delete_request, list_assignments, saved_assignment};
use super::wrong_parameters;
use crate::azure::Api;
use crate::domain::ids::PrincipalRef;
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::guards::alert_subscription;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview, Undone,
    Verification, WriteMethod,
};

/// `disable_account`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisableAccount;

/// `delete_unfamiliar_account`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteUnfamiliarAccount;

fn principal(task: &Task) -> Result<&PrincipalRef, ExecutorError> {
    match &task.parameters {
        Parameters::DisableAccount { principal }
        | Parameters::DeleteUnfamiliarAccount { principal } => Ok(principal),
        _ => Err(wrong_parameters(
            "disable_account / delete_unfamiliar_account",
        )),
    }
}

/// The object whose `accountEnabled` signs in: the user or service principal itself, or an
/// application's service principal.
async fn sign_in_object(
    ctx: &ExecutorContext,
    object: DirectoryObject,
) -> Result<DirectoryObject, ExecutorError> {
    if object.collection != DirectoryCollection::Applications {
        return Ok(object);
    }
    let app_id = object
        .body
        .get("appId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path =
        format!("/servicePrincipals(appId='{app_id}')?$select=id,appId,displayName,accountEnabled");
    let body = super::found(
        ctx.clients.graph.get_optional(&path).await?,
        &format!("the service principal of application {app_id}"),
    )?;
    let object_id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    crate::executors::guards::refuse_protected_principal(&object_id, &ctx.settings)?;
    Ok(DirectoryObject {
        object_id,
        collection: DirectoryCollection::ServicePrincipals,
        body,
    })
}

fn enabled(body: &Value) -> Value {
    body.get("accountEnabled").cloned().unwrap_or(Value::Null)
}

async fn read_enabled(ctx: &ExecutorContext, path: &str) -> Result<Option<Value>, ExecutorError> {
    Ok(ctx
        .clients
        .graph
        .get_optional(&format!("{path}?$select=id,accountEnabled"))
        .await?
        .map(|body| enabled(&body)))
}

fn patch_enabled(ctx: &ExecutorContext, path: &str, value: bool) -> PlannedRequest {
    PlannedRequest::new(
        Api::Graph,
        WriteMethod::Patch,
        ctx.clients.graph.url(path),
        Some(json!({"accountEnabled": value})),
    )
}

#[async_trait]
impl Executor for DisableAccount {
    fn action(&self) -> Action {
        Action::DisableAccount
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let object = sign_in_object(ctx, principals::resolve(principal(task)?, ctx).await?).await?;
        let path = object.path();
        let was = enabled(&object.body);
        let mut requests = Vec::new();
        if was != json!(false) {
            requests.push(patch_enabled(ctx, &path, false));
            if object.collection == DirectoryCollection::Users {
                requests.push(PlannedRequest::new(
                    Api::Graph,
                    WriteMethod::Post,
                    ctx.clients
                        .graph
                        .url(&format!("{path}/revokeSignInSessions")),
                    None,
                ));
            }
        }
        let summary = if requests.is_empty() {
            format!("{path} is already disabled")
        } else if object.collection == DirectoryCollection::Users {
            format!("would PATCH {path} accountEnabled=false and revoke its sign-in sessions")
        } else {
            format!("would PATCH {path} accountEnabled=false")
        };
        Ok(Preview {
            change: Change::new(summary, requests),
            prior_state: json!({"path": path, "accountEnabled": was}),
            leases: vec![format!("entra:{}", object.object_id.to_ascii_lowercase())],
            subscriptions: alert_subscription(task)
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
        })
    }

    async fn apply(
        &self,
        _task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let path = preview.prior_state["path"].as_str().unwrap_or_default();
        let now = read_enabled(ctx, path).await?.unwrap_or(Value::Null);
        if now != preview.prior_state["accountEnabled"] {
            return Err(ExecutorError::conflict(
                path,
                "accountEnabled changed since the preview",
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
        let path = preview.prior_state["path"].as_str().unwrap_or_default();
        let now = read_enabled(ctx, path).await?.unwrap_or(Value::Null);
        Ok(Verification::default().check(format!("{path} accountEnabled"), json!(false), now))
    }

    async fn undo(
        &self,
        _task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        let path = preview.prior_state["path"].as_str().unwrap_or_default();
        let was = preview.prior_state["accountEnabled"]
            .as_bool()
            .unwrap_or(true);
        undone
            .sent
            .push(ctx.send(&patch_enabled(ctx, path, was)).await?.0);
        if path.starts_with("/users/") {
            undone.not_restored.push(
                "revoked sign-in sessions cannot be restored: the user signs in again".into(),
            );
        }
        Ok(undone)
    }
}

/// The object's Azure role assignments in the alert's subscription.
async fn assignments_of(
    ctx: &ExecutorContext,
    task: &Task,
    object_id: &str,
) -> Result<Vec<Value>, ExecutorError> {
    let Some(subscription) = alert_subscription(task) else {
        return Ok(Vec::new());
    };
    let filter = format!("principalId eq '{object_id}'");
    Ok(list_assignments(
        ctx,
        &format!("/subscriptions/{subscription}"),
        Some(&filter),
    )
    .await?
    .iter()
    .filter(|a| roles::property(a, "principalId").eq_ignore_ascii_case(object_id))
    .map(saved_assignment)
    .collect())
}

#[async_trait]
impl Executor for DeleteUnfamiliarAccount {
    fn action(&self) -> Action {
        Action::DeleteUnfamiliarAccount
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let object = principals::resolve(principal(task)?, ctx).await?;
        let path = object.path();
        let sign_in = sign_in_object(ctx, object.clone()).await?;
        let assignments = assignments_of(ctx, task, &sign_in.object_id).await?;
        let was = enabled(&sign_in.body);
        let mut requests = Vec::new();
        if was != json!(false) {
            requests.push(patch_enabled(ctx, &sign_in.path(), false));
        }
        for assignment in &assignments {
            requests.push(delete_request(
                ctx,
                assignment["id"].as_str().unwrap_or_default(),
            ));
        }
        requests.push(PlannedRequest::new(
            Api::Graph,
            WriteMethod::Delete,
            ctx.clients.graph.url(&path),
            None,
        ));
        Ok(Preview {
            change: Change::new(
                format!(
                    "would disable {}, DELETE its {} Azure role assignment(s), then DELETE {path} (restorable from deleted items for 30 days)",
                    sign_in.path(),
                    assignments.len()
                ),
                requests,
            ),
            prior_state: json!({
                "path": path,
                "objectId": object.object_id,
                "object": object.body,
                "signIn": {"path": sign_in.path(), "accountEnabled": was},
                "roleAssignments": assignments,
            }),
            leases: vec![format!("entra:{}", object.object_id.to_ascii_lowercase())],
            subscriptions: alert_subscription(task).into_iter().map(|s| s.to_ascii_lowercase()).collect(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let path = preview.prior_state["path"].as_str().unwrap_or_default();
        let sign_in = preview.prior_state["signIn"]["path"]
            .as_str()
            .unwrap_or_default();
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        let now = read_enabled(ctx, sign_in).await?;
        let Some(now) = now else {
            return Err(ExecutorError::conflict(
                path,
                "the account no longer exists",
            ));
        };
        let sign_in_id = sign_in.rsplit('/').next().unwrap_or(object_id);
        let assignments = assignments_of(ctx, task, sign_in_id).await?;
        if now != preview.prior_state["signIn"]["accountEnabled"]
            || roles::ids_of(&assignments)
                != roles::ids_of(
                    preview.prior_state["roleAssignments"]
                        .as_array()
                        .map_or(&[], |v| v.as_slice()),
                )
        {
            return Err(ExecutorError::conflict(
                path,
                "the account or its role assignments changed since the preview",
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
        let path = preview.prior_state["path"].as_str().unwrap_or_default();
        let exists = ctx.clients.graph.get_optional(path).await?.is_some();
        Ok(Verification::default().check(format!("{path} exists"), json!(false), json!(exists)))
    }

    async fn undo(
        &self,
        _task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        let object_id = preview.prior_state["objectId"].as_str().unwrap_or_default();
        let restore = PlannedRequest::new(
            Api::Graph,
            WriteMethod::Post,
            ctx.clients
                .graph
                .url(&format!("/directory/deletedItems/{object_id}/restore")),
            None,
        );
        undone.sent.push(ctx.send(&restore).await?.0);
        let sign_in = preview.prior_state["signIn"]["path"]
            .as_str()
            .unwrap_or_default();
        let was = preview.prior_state["signIn"]["accountEnabled"]
            .as_bool()
            .unwrap_or(true);
        undone
            .sent
            .push(ctx.send(&patch_enabled(ctx, sign_in, was)).await?.0);
        let saved = preview.prior_state["roleAssignments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        undone
            .sent
            .extend(roles::restore_assignments(ctx, &saved).await?);
        if sign_in.starts_with("/users/") {
            undone
                .not_restored
                .push("the user's sign-in sessions ended with the delete".into());
        }
        Ok(undone)
    }
}
