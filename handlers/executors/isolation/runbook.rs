//! `remove_runbook`: the runbook's content and properties are saved as evidence first, its
//! running jobs stopped, its webhooks deleted, then the runbook. A named runbook is matched
//! exactly; for an Automation account, the runbooks created or changed since the alert's
//! activity began.

use async_trait::async_trait;
use azure_core::time::{parse_rfc3339, OffsetDateTime};
use serde_json::{json, Value};

use super::{found, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::{Parameters, ResourceTarget};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RemoveRunbook;

const ACCOUNT: &str = "Microsoft.Automation/automationAccounts";
const RUNBOOK: &str = "Microsoft.Automation/automationAccounts/runbooks";

fn target(task: &Task) -> Result<&AzureResourceId, ExecutorError> {
    match &task.parameters {
        Parameters::RemoveRunbook {
            target: ResourceTarget::Resource { resource },
            ..
        } => Ok(resource),
        Parameters::RemoveRunbook {
            target: ResourceTarget::InScope { scope },
            ..
        } => Err(ExecutorError::refused(
            RefusalReason::SubscriptionWide,
            format!(
                "every Automation account in {} is too wide: name the account or the runbook",
                scope.as_str()
            ),
        )),
        _ => Err(wrong_parameters("remove_runbook")),
    }
}

fn account_of(runbook: &str) -> &str {
    runbook
        .rsplit_once("/runbooks/")
        .map_or(runbook, |(account, _)| account)
}

fn time_of(value: &Value, field: &str) -> Option<OffsetDateTime> {
    value
        .pointer(&format!("/properties/{field}"))
        .and_then(Value::as_str)
        .and_then(|t| parse_rfc3339(t).ok())
}

/// The runbook ids the task selects, exactly.
async fn runbooks(task: &Task, ctx: &ExecutorContext) -> Result<Vec<String>, ExecutorError> {
    let resource = target(task)?;
    if resource.is_type(RUNBOOK) {
        return Ok(vec![resource.as_str().to_string()]);
    }
    if !resource.is_type(ACCOUNT) {
        return Err(ExecutorError::refused(
            RefusalReason::UnsupportedTarget,
            format!(
                "{} is neither an Automation account nor a runbook",
                resource.as_str()
            ),
        ));
    }
    let Some(since) = task
        .activity
        .window
        .as_ref()
        .and_then(|w| w.start.as_deref())
        .and_then(|t| parse_rfc3339(t).ok())
    else {
        return Err(ExecutorError::refused(
            RefusalReason::FuzzyMatch,
            format!("the alert names no runbook and no time window in {}: a person must pick the runbooks", resource.as_str()),
        ));
    };
    let listed = ctx
        .clients
        .arm
        .list(
            &format!("{}/runbooks", resource.as_str()),
            api_version::AUTOMATION,
        )
        .await?;
    Ok(listed
        .iter()
        .filter(|r| {
            [time_of(r, "creationTime"), time_of(r, "lastModifiedTime")]
                .into_iter()
                .flatten()
                .any(|t| t >= since)
        })
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
        .collect())
}

/// Each runbook with its content, webhooks and running jobs (the evidence undo and people use).
async fn evidence(ctx: &ExecutorContext, ids: &[String]) -> Result<Vec<Value>, ExecutorError> {
    let mut out = Vec::new();
    for id in ids {
        let Some(runbook) = ctx
            .clients
            .arm
            .get_optional(id, api_version::AUTOMATION)
            .await?
        else {
            continue;
        };
        let name = runbook
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| id.rsplit('/').next().unwrap_or_default())
            .to_string();
        let content = ctx
            .clients
            .arm
            .get_text(&format!("{id}/content"), api_version::AUTOMATION)
            .await?;
        let account = account_of(id);
        let for_runbook = |item: &Value| {
            item.pointer("/properties/runbook/name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
        };
        let webhooks: Vec<Value> = ctx
            .clients
            .arm
            .list(
                &format!("{account}/webhooks"),
                api_version::AUTOMATION_WEBHOOKS,
            )
            .await?
            .into_iter()
            .filter(|w| for_runbook(w))
            .map(|w| json!({"id": w["id"], "name": w["name"], "properties": w["properties"]}))
            .collect();
        let jobs: Vec<Value> = ctx
            .clients
            .arm
            .list(&format!("{account}/jobs"), api_version::AUTOMATION)
            .await?
            .into_iter()
            .filter(|j| for_runbook(j))
            .filter(|j| {
                matches!(
                    j.pointer("/properties/status").and_then(Value::as_str),
                    Some("Running" | "Activating" | "Queued" | "Resuming")
                )
            })
            .map(|j| j["id"].clone())
            .collect();
        out.push(json!({
            "id": id,
            "name": name,
            "location": runbook.get("location").cloned().unwrap_or(Value::Null),
            "tags": runbook.get("tags").cloned().unwrap_or(json!({})),
            "properties": runbook.get("properties").cloned().unwrap_or(Value::Null),
            "content": content,
            "webhooks": webhooks,
            "runningJobs": jobs,
        }))
    }
    Ok(out)
}

#[async_trait]
impl Executor for RemoveRunbook {
    fn action(&self) -> Action {
        Action::RemoveRunbook
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let resource = target(task)?;
        let ids = runbooks(task, ctx).await?;
        if resource.is_type(RUNBOOK) {
            found(
                ctx.clients
                    .arm
                    .get_optional(resource.as_str(), api_version::AUTOMATION)
                    .await?,
                resource.as_str(),
            )?;
        }
        let saved = evidence(ctx, &ids).await?;
        let arm = &ctx.clients.arm;
        let mut requests = Vec::new();
        for runbook in &saved {
            for job in runbook["runningJobs"].as_array().into_iter().flatten() {
                let id = job.as_str().unwrap_or_default();
                requests.push(PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Post,
                    arm.url(&format!("{id}/stop"), api_version::AUTOMATION),
                    None,
                ));
            }
            for webhook in runbook["webhooks"].as_array().into_iter().flatten() {
                let id = webhook["id"].as_str().unwrap_or_default();
                requests.push(PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Delete,
                    arm.url(id, api_version::AUTOMATION_WEBHOOKS),
                    None,
                ));
            }
            let id = runbook["id"].as_str().unwrap_or_default();
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Delete,
                arm.url(id, api_version::AUTOMATION),
                None,
            ));
        }
        let names: Vec<&str> = saved.iter().filter_map(|r| r["name"].as_str()).collect();
        Ok(Preview {
            change: Change::new(
                if saved.is_empty() {
                    format!("no runbook to remove in {}", resource.as_str())
                } else {
                    format!(
                        "would save the content of and DELETE runbook(s) {} with their webhooks, stopping their running jobs",
                        names.join(", ")
                    )
                },
                requests,
            ),
            prior_state: json!({"runbooks": saved}),
            leases: vec![AzureResourceId::parse(account_of(resource.as_str()))
                .map(|a| a.normalized())
                .unwrap_or_else(|_| resource.normalized())],
            subscriptions: subscriptions_of(resource),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let ids: Vec<String> = preview.prior_state["runbooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let now = evidence(ctx, &ids).await?;
        let signature = |list: &[Value]| -> Vec<Value> {
            list.iter()
                .map(|r| {
                    json!([
                        r["id"],
                        r["content"],
                        r["webhooks"]
                            .as_array()
                            .map(|w| w.iter().map(|x| x["id"].clone()).collect::<Vec<_>>())
                    ])
                })
                .collect()
        };
        let saved = preview.prior_state["runbooks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if signature(&now) != signature(&saved) {
            return Err(ExecutorError::conflict(
                target(task)?.as_str(),
                "a runbook, its content or its webhooks changed since the preview",
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
        for runbook in preview.prior_state["runbooks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = runbook["id"].as_str().unwrap_or_default();
            let exists = ctx
                .clients
                .arm
                .get_optional(id, api_version::AUTOMATION)
                .await?
                .is_some();
            verification = verification.check(format!("{id} exists"), json!(false), json!(exists));
            for webhook in runbook["webhooks"].as_array().into_iter().flatten() {
                let id = webhook["id"].as_str().unwrap_or_default();
                let exists = ctx
                    .clients
                    .arm
                    .get_optional(id, api_version::AUTOMATION_WEBHOOKS)
                    .await?
                    .is_some();
                verification =
                    verification.check(format!("{id} exists"), json!(false), json!(exists));
            }
        }
        Ok(verification)
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
        for runbook in preview.prior_state["runbooks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = runbook["id"].as_str().unwrap_or_default();
            let properties = &runbook["properties"];
            let mut writable = json!({});
            for field in [
                "runbookType",
                "description",
                "logVerbose",
                "logProgress",
                "logActivityTrace",
            ] {
                if !properties[field].is_null() {
                    writable[field] = properties[field].clone();
                }
            }
            let put = PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(id, api_version::AUTOMATION),
                Some(
                    json!({"location": runbook["location"], "tags": runbook["tags"], "properties": writable}),
                ),
            );
            undone.sent.push(ctx.send(&put).await?.0);
            let content = runbook["content"].as_str().unwrap_or_default();
            let response = ctx
                .clients
                .arm
                .put_text(
                    &format!("{id}/draft/content"),
                    api_version::AUTOMATION,
                    content,
                )
                .await?;
            undone.sent.push(crate::executors::SentRequest {
                method: "PUT".into(),
                url: ctx
                    .clients
                    .arm
                    .url(&format!("{id}/draft/content"), api_version::AUTOMATION),
                status: response.status,
            });
            if properties["state"] == "Published" {
                let publish = PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Post,
                    ctx.clients
                        .arm
                        .url(&format!("{id}/publish"), api_version::AUTOMATION),
                    None,
                );
                undone.sent.push(ctx.send(&publish).await?.0);
            }
            for webhook in runbook["webhooks"].as_array().into_iter().flatten() {
                undone.not_restored.push(format!(
                    "webhook {} was deleted: a webhook can only be re-created with a new URI",
                    webhook["name"].as_str().unwrap_or_default()
                ));
            }
            for job in runbook["runningJobs"].as_array().into_iter().flatten() {
                undone.not_restored.push(format!(
                    "job {} was stopped",
                    job.as_str().unwrap_or_default()
                ));
            }
        }
        Ok(undone)
    }
}
