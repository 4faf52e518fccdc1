//! `rotate_automation_credentials`: an Automation account's credentials and encrypted
//! variables hold values checked elsewhere (a SQL login, an API token), so a new value written
//! only into Automation revokes nothing and breaks its runbooks. The executor reads what the
//! account holds (names only: the values are write-only) and answers the owner's notice: each
//! credential and variable, where to change it, and the exact request that stores the new value.

use async_trait::async_trait;
use serde_json::Value;

use super::{reader_of, window_of, wrong_parameters};
use crate::azure::arm::api_version::AUTOMATION;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::{Parameters, ResourceTarget};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Executor, ExecutorContext, ExecutorError, Preview, RefusalReason, Undone, Verification,
};

/// The `rotate_automation_credentials` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateAutomationCredentials;

fn target_of(task: &Task) -> Result<&AzureResourceId, ExecutorError> {
    match &task.parameters {
        Parameters::RotateAutomationCredentials {
            target: ResourceTarget::Resource { resource },
        } if resource.is_type("Microsoft.Automation/automationAccounts") => Ok(resource),
        Parameters::RotateAutomationCredentials {
            target: ResourceTarget::Resource { resource },
        } => Err(ExecutorError::refused(
            RefusalReason::UnsupportedTarget,
            format!("{} is not an Automation account", resource.as_str()),
        )),
        Parameters::RotateAutomationCredentials {
            target: ResourceTarget::InScope { scope },
        } => Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!(
                "The alert names no Automation account: find those {} changed in {} {} (activity log), then rotate each account's credentials and encrypted variables at their sources.",
                reader_of(task),
                scope.as_str(),
                window_of(task)
            ),
        )),
        _ => Err(wrong_parameters("rotate_automation_credentials")),
    }
}

fn name_of(item: &Value) -> String {
    item["name"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            item["id"]
                .as_str()
                .and_then(|id| id.rsplit('/').next())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[async_trait]
impl Executor for RotateAutomationCredentials {
    fn action(&self) -> Action {
        Action::RotateAutomationCredentials
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let account = target_of(task)?;
        let credentials = ctx
            .clients
            .arm
            .list(&format!("{}/credentials", account.as_str()), AUTOMATION)
            .await?;
        let variables = ctx
            .clients
            .arm
            .list(&format!("{}/variables", account.as_str()), AUTOMATION)
            .await?;
        let mut lines = Vec::new();
        for credential in &credentials {
            let name = name_of(credential);
            let user = credential
                .pointer("/properties/userName")
                .and_then(Value::as_str)
                .unwrap_or("?");
            lines.push(format!(
                "credential `{name}` (user `{user}`): change the password where `{user}` signs in, then PATCH {}/credentials/{name}?api-version={AUTOMATION} {{\"properties\":{{\"userName\":\"{user}\",\"password\":…}}}}",
                account.as_str()
            ));
        }
        for variable in variables.iter().filter(|v| {
            v.pointer("/properties/isEncrypted")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }) {
            let name = name_of(variable);
            lines.push(format!(
                "encrypted variable `{name}`: replace the value at the service that issued it, then PATCH {}/variables/{name}?api-version={AUTOMATION} {{\"properties\":{{\"value\":\"\\\"…\\\"\",\"isEncrypted\":true}}}}",
                account.as_str()
            ));
        }
        let detail = if lines.is_empty() {
            format!(
                "{} holds no credentials or encrypted variables; check its connections and the identities its runbooks use.",
                account.as_str()
            )
        } else {
            format!(
                "{} was changed by {} {}. Its values are checked elsewhere, so a value written only into Automation would revoke nothing and break its runbooks. Rotate each at its source, then store it:\n- {}",
                account.as_str(),
                reader_of(task),
                window_of(task),
                lines.join("\n- ")
            )
        };
        Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            detail,
        ))
    }

    async fn apply(
        &self,
        task: &Task,
        _preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        // The preview always answers the notice; an apply re-reads and answers it again.
        Err(self.preview(task, ctx).await.err().unwrap_or_else(|| {
            ExecutorError::Permanent("rotate_automation_credentials has nothing to apply".into())
        }))
    }

    async fn verify(
        &self,
        _task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        Ok(Verification::default())
    }

    async fn undo(
        &self,
        _task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        Ok(Undone::default())
    }
}
