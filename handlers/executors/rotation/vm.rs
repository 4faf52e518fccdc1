//! `change_vm_passwords`: a new password for the machine's administrator through the VMAccess
//! extension, the password only in `protectedSettings` and stored in the credentials vault
//! first (so a crash never loses it and a redelivery sets the same one again).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::generator::random_value;
use super::{marked, reader_of, saved_str, vault_of, window_of, wrong_parameters, MARKER_TAG};
use crate::azure::arm::api_version::COMPUTE;
use crate::azure::key_vault::SecretValue;
use crate::azure::Api;
use crate::config::rotation::ROTATION_CREDENTIALS_VAULT;
use crate::domain::ids::{AzureResourceId, SecretUri};
use crate::domain::parameters::{Parameters, ResourceTarget};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// The extension's name on the machine.
pub const EXTENSION: &str = "enablevmaccess";

/// Random characters of a new password (a fixed tail adds the character classes Windows asks for).
pub const PASSWORD_LENGTH: usize = 28;

/// The `change_vm_passwords` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChangeVmPasswords;

fn target_of(task: &Task) -> Result<&AzureResourceId, ExecutorError> {
    match &task.parameters {
        Parameters::ChangeVmPasswords {
            target: ResourceTarget::Resource { resource },
        } if resource.is_type("Microsoft.Compute/virtualMachines") => Ok(resource),
        Parameters::ChangeVmPasswords {
            target: ResourceTarget::Resource { resource },
        } => Err(ExecutorError::refused(
            RefusalReason::UnsupportedTarget,
            format!("{} is not a virtual machine", resource.as_str()),
        )),
        Parameters::ChangeVmPasswords {
            target: ResourceTarget::InScope { scope },
        } => Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!(
                "The alert names no machine: find the machines {} created or ran code on in {} {} (activity log), then change their local passwords.",
                reader_of(task),
                scope.as_str(),
                window_of(task)
            ),
        )),
        _ => Err(wrong_parameters("change_vm_passwords")),
    }
}

/// The extension's body for the OS, with the password (or a placeholder) in protectedSettings only.
fn extension_body(location: &Value, linux: bool, user: &str, password: &str) -> Value {
    if linux {
        json!({"location": location, "properties": {
            "publisher": "Microsoft.OSTCExtensions", "type": "VMAccessForLinux",
            "typeHandlerVersion": "1.5", "autoUpgradeMinorVersion": true,
            "settings": {},
            "protectedSettings": {"username": user, "password": password},
        }})
    } else {
        json!({"location": location, "properties": {
            "publisher": "Microsoft.Compute", "type": "VMAccessAgent",
            "typeHandlerVersion": "2.4", "autoUpgradeMinorVersion": true,
            "settings": {"UserName": user},
            "protectedSettings": {"Password": password},
        }})
    }
}

fn secret_for(
    ctx: &ExecutorContext,
    vm: &AzureResourceId,
    user: &str,
    notice: &str,
) -> Result<SecretUri, ExecutorError> {
    let Some(vault) = ctx.rotation.settings.credentials_vault.as_deref() else {
        return Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!("{notice} (Set {ROTATION_CREDENTIALS_VAULT} to a vault the responder may write secrets to, and it does this itself.)"),
        ));
    };
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    };
    let name = format!(
        "dr-vm-{}-{}",
        safe(vm.name().unwrap_or_default()),
        safe(user)
    );
    SecretUri::parse(&format!(
        "https://{}/secrets/{name}",
        vault.trim_start_matches("https://")
    ))
    .map_err(|e| ExecutorError::Permanent(format!("{ROTATION_CREDENTIALS_VAULT}: {e}")))
}

#[async_trait]
impl Executor for ChangeVmPasswords {
    fn action(&self) -> Action {
        Action::ChangeVmPasswords
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let vm = target_of(task)?;
        let machine = ctx
            .clients
            .arm
            .get_optional(vm.as_str(), COMPUTE)
            .await?
            .ok_or_else(|| {
                ExecutorError::refused(
                    RefusalReason::TargetNotFound,
                    format!("{} does not exist", vm.as_str()),
                )
            })?;
        let user = machine
            .pointer("/properties/osProfile/adminUsername")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ExecutorError::refused(
                    RefusalReason::UnsupportedTarget,
                    format!(
                        "{} reports no administrator account (osProfile.adminUsername)",
                        vm.as_str()
                    ),
                )
            })?
            .to_string();
        let linux = machine
            .pointer("/properties/storageProfile/osDisk/osType")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("Linux"));
        let notice = format!(
            "Change the password of `{user}` (and every other local account) on {}: the VMAccess extension (Reset password in the portal) or the machine's own tools.",
            vm.as_str()
        );
        let secret = secret_for(ctx, vm, &user, &notice)?;
        let vault = vault_of(ctx, secret.uri())?;
        let extension = format!("{}/extensions/{EXTENSION}", vm.as_str());
        let requests = vec![
            PlannedRequest::new(
                Api::KeyVault,
                WriteMethod::Put,
                vault.url(&format!("secrets/{}", secret.uri().name())),
                Some(
                    json!({"value": "<a new password>", "tags": {MARKER_TAG: task.message_id.as_str(), "machine": vm.as_str(), "user": user}}),
                ),
            ),
            PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(&extension, COMPUTE),
                Some(extension_body(
                    &machine["location"],
                    linux,
                    &user,
                    "<the new password, as stored>",
                )),
            ),
        ];
        Ok(Preview {
            change: Change::new(
                format!(
                    "would store a new password for {user} in {} and set it on {} through VMAccess (protected settings only); other local accounts are listed for a person",
                    secret.as_str(),
                    vm.as_str()
                ),
                requests,
            ),
            prior_state: json!({"vm": vm.as_str(), "user": user, "linux": linux, "location": machine["location"], "secret": secret.as_str()}),
            leases: vec![vm.normalized()],
            subscriptions: vm.subscription_id().map(|s| vec![s.to_ascii_lowercase()]).unwrap_or_default(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let vm = target_of(task)?;
        let prior = &preview.prior_state;
        let user = saved_str(prior, "user")?;
        let secret = SecretUri::parse(saved_str(prior, "secret")?)
            .map_err(|e| ExecutorError::Permanent(e.to_string()))?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let versions = match vault.secret_versions(name).await {
            Ok(versions) => versions,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        let mut applied = Applied::default();
        let password = match marked(&versions, task) {
            // Stored before a crash: the same password is set again.
            Some(version) => vault.secret_value(name, &version.version).await?,
            None => {
                let random =
                    random_value(PASSWORD_LENGTH).map_err(|e| ExecutorError::Retryable {
                        reason: format!("the operating system's random generator failed: {e}"),
                        retry_after: None,
                    })?;
                let password = SecretValue::new(format!("{}aA1!", random.expose()));
                let tags = [
                    (MARKER_TAG.to_string(), task.message_id.as_str().to_string()),
                    ("machine".to_string(), vm.as_str().to_string()),
                    ("user".to_string(), user.to_string()),
                ]
                .into_iter()
                .collect();
                vault.set_secret(name, &password, None, &tags).await?;
                applied.sent.push(SentRequest {
                    method: "PUT".into(),
                    url: vault.url(&format!("secrets/{name}")),
                    status: 200,
                });
                password
            }
        };
        let extension = format!("{}/extensions/{EXTENSION}", vm.as_str());
        let body = extension_body(
            &prior["location"],
            prior["linux"].as_bool().unwrap_or(false),
            user,
            password.expose(),
        );
        let response = ctx.clients.arm.put(&extension, COMPUTE, &body).await?;
        applied.sent.push(SentRequest {
            method: "PUT".into(),
            url: ctx.clients.arm.url(&extension, COMPUTE),
            status: response.status,
        });
        applied.output = json!({"user": user, "secret": secret.as_str()});
        Ok(applied)
    }

    async fn verify(
        &self,
        task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let vm = target_of(task)?;
        let extension = ctx
            .clients
            .arm
            .get_optional(&format!("{}/extensions/{EXTENSION}", vm.as_str()), COMPUTE)
            .await?;
        Ok(Verification::default().check(
            "the VMAccess extension succeeded",
            json!("Succeeded"),
            json!(extension
                .as_ref()
                .and_then(|e| e.pointer("/properties/provisioningState"))
                .cloned()),
        ))
    }

    async fn undo(
        &self,
        _task: &Task,
        preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        Ok(Undone {
            not_restored: vec![format!(
                "the old password of {} is not restored (it is the exposed one); the new one is in {}",
                preview.prior_state["user"].as_str().unwrap_or_default(),
                preview.prior_state["secret"].as_str().unwrap_or_default()
            )],
            ..Undone::default()
        })
    }
}
