//! `rotate_secret`: change the value at its source (a storage key regenerated, or a new random
//! value), then write it as a new version tagged with the task's message id; a secret naming no
//! generator becomes a notice to its owner saying what to change where.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::generator::{random_value, storage_key_name, substitute, Generator};
use super::storage::{key_created, storage_keys, REGENERATE, STORAGE_API_VERSION};
use super::{
    already_done, bound_to_alert, carried_tags, current, lease_of, marked, not_found_refused,
    reader_of, saved, saved_str, still_current, vault_of, window_of, wrong_parameters, MARKER_TAG,
    REPLACES_TAG,
};
use crate::azure::key_vault::{ObjectVersion, SecretValue, VaultClient};
use crate::azure::Api;
use crate::domain::ids::SecretUri;
use crate::domain::parameters::{Parameters, SecretRotationTarget};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// The `rotate_secret` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateSecret;

/// The secret and the versions the alert saw, or a refusal for a target the responder
/// cannot enumerate itself.
fn target_of(task: &Task) -> Result<(&SecretUri, &[String]), ExecutorError> {
    match &task.parameters {
        Parameters::RotateSecret {
            target: SecretRotationTarget::Secret {
                secret,
                versions_read,
            },
            ..
        } => Ok((secret, versions_read)),
        Parameters::RotateSecret {
            target: SecretRotationTarget::Vault { vault, .. },
            ..
        } => Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!(
                "The alert does not name the secrets {} read in {} {}. Find them in the vault's diagnostic logs (SecretGet operations by that caller), then rotate each at its source and store the new value as a new version.",
                reader_of(task),
                vault.as_str(),
                window_of(task)
            ),
        )),
        Parameters::RotateSecret {
            target: SecretRotationTarget::Subscription { subscription },
            ..
        } => Err(ExecutorError::refused(
            RefusalReason::SubscriptionWide,
            format!(
                "rotating every secret {} could read in {} is a subscription-wide change: list the vaults and secrets it read, then rotate each",
                reader_of(task),
                subscription.as_str()
            ),
        )),
        _ => Err(wrong_parameters("rotate_secret")),
    }
}

/// The notice for a secret with no generator: what to change where.
fn manual_notice(task: &Task, secret: &SecretUri, version: &ObjectVersion, why: &str) -> String {
    format!(
        "{uri} (current version {v}{ct}) was read by {who} {window}. A new Key Vault version alone revokes nothing, and {why}. \
         Change the value where it is checked (the database login, API key or service credential it holds), then store the new value as a new version of `{name}` in the vault {vault} and update or restart its consumers; disable the old versions once they moved. \
         To have the responder rotate it end to end next time, tag it `generator` with `random` (a value only the vault's consumers use), `storage-key:{{storage account id}}#key1` (or #key2) or `application-password:{{application object id}}`.",
        uri = secret.as_str(),
        v = version.version,
        ct = version
            .content_type
            .as_deref()
            .map(|ct| format!(", content type `{ct}`"))
            .unwrap_or_default(),
        who = reader_of(task),
        window = window_of(task),
        name = secret.uri().name(),
        vault = secret.uri().vault_name(),
    )
}

/// The tags of the new version: the current one's, plus the markers.
fn new_tags(task: &Task, current: &ObjectVersion) -> std::collections::BTreeMap<String, String> {
    let mut tags = carried_tags(current);
    tags.insert(MARKER_TAG.into(), task.message_id.as_str().to_string());
    tags.insert(REPLACES_TAG.into(), current.version.clone());
    tags
}

/// The exact requests of the rotation, with the new value described, never shown.
fn requests(
    vault: &VaultClient,
    ctx: &ExecutorContext,
    secret: &SecretUri,
    current: &ObjectVersion,
    generator: &Generator,
    regenerate: bool,
    task: &Task,
) -> Vec<PlannedRequest> {
    let mut requests = Vec::new();
    let placeholder = match generator {
        Generator::Random { length } => format!("<new random value: {length} characters>"),
        Generator::StorageKey { account, key } => {
            let name = storage_key_name(*key);
            let url = ctx.clients.arm.url(
                &format!("{}/{REGENERATE}", account.as_str()),
                STORAGE_API_VERSION,
            );
            if regenerate {
                requests.push(PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Post,
                    url,
                    Some(json!({"keyName": name})),
                ));
                format!(
                    "<the current value with its AccountKey replaced by the regenerated {name}>"
                )
            } else {
                format!("<the current value with its AccountKey replaced by the current {name}, already regenerated since this version was written>")
            }
        }
        Generator::ApplicationPassword { .. } | Generator::None { .. } => String::new(),
    };
    let mut body = json!({"value": placeholder, "tags": new_tags(task, current)});
    if let Some(content_type) = &current.content_type {
        body["contentType"] = json!(content_type);
    }
    requests.push(PlannedRequest::new(
        Api::KeyVault,
        WriteMethod::Put,
        vault.url(&format!("secrets/{}", secret.uri().name())),
        Some(body),
    ));
    requests
}

/// Whether a storage key must be regenerated: only while it is the key the alert exposed,
/// i.e. created before the alert's window ended (without a window: not after the vault's
/// current version was written). A key regenerated since (by this task before a crash, or by
/// someone else) is stored as it is, not regenerated twice.
async fn must_regenerate(
    ctx: &ExecutorContext,
    task: &Task,
    generator: &Generator,
    current: &ObjectVersion,
) -> Result<Option<Value>, ExecutorError> {
    let Generator::StorageKey { account, key } = generator else {
        return Ok(None);
    };
    let resource = ctx
        .clients
        .arm
        .get_optional(account.as_str(), STORAGE_API_VERSION)
        .await?
        .ok_or_else(|| {
            ExecutorError::refused(
                RefusalReason::TargetNotFound,
                format!(
                    "the storage account {} the secret's generator names does not exist",
                    account.as_str()
                ),
            )
        })?;
    let created = key_created(&resource, *key);
    let alert_end = task
        .activity
        .window
        .as_ref()
        .and_then(|w| w.end.as_deref().or(w.start.as_deref()))
        .and_then(super::unix_of);
    let key_time = created.as_deref().and_then(super::unix_of);
    let regenerate = match (key_time, alert_end, current.created) {
        (Some(key_time), Some(end), _) => key_time <= end,
        (Some(key_time), None, Some(version_time)) => key_time <= version_time,
        _ => true,
    };
    Ok(Some(
        json!({"regenerate": regenerate, "key_created": created}),
    ))
}

#[async_trait]
impl Executor for RotateSecret {
    fn action(&self) -> Action {
        Action::RotateSecret
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (secret, versions_read) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let versions = vault
            .secret_versions(name)
            .await
            .map_err(not_found_refused(secret.as_str()))?;
        let leases = vec![lease_of(secret.uri())];
        if let Some(done) = marked(&versions, task) {
            // A redelivery after the write: the rotation is done; nothing more to send.
            return Ok(already_done(
                "secret",
                secret.as_str(),
                "rotated",
                done,
                leases,
            ));
        }
        let current = current(&versions, secret.as_str())?;
        bound_to_alert(&current, versions_read, task, secret.as_str())?;
        let generator = Generator::of(&current).map_err(|error| {
            ExecutorError::refused(
                RefusalReason::ManualRotation,
                manual_notice(
                    task,
                    secret,
                    &current,
                    &format!("its generator cannot be used: {}", error.0),
                ),
            )
        })?;
        match &generator {
            Generator::None { .. } => {
                return Err(ExecutorError::refused(
                    RefusalReason::ManualRotation,
                    manual_notice(task, secret, &current, "the secret names no generator the responder could change it with"),
                ))
            }
            Generator::ApplicationPassword { .. } => {
                return Err(ExecutorError::refused(
                    RefusalReason::ManualRotation,
                    manual_notice(task, secret, &current, "an application password is rotated by the reset_credentials task of the application's service principal, not from the secret"),
                ))
            }
            Generator::Random { .. } | Generator::StorageKey { .. } => {}
        }
        let storage = must_regenerate(ctx, task, &generator, &current).await?;
        let regenerate = storage
            .as_ref()
            .and_then(|s| s["regenerate"].as_bool())
            .unwrap_or(false);
        let requests = requests(&vault, ctx, secret, &current, &generator, regenerate, task);
        let mut leases = leases;
        let mut subscriptions = Vec::new();
        if let Generator::StorageKey { account, .. } = &generator {
            leases.push(account.normalized());
            subscriptions.extend(account.subscription_id().map(|s| s.to_ascii_lowercase()));
        }
        Ok(Preview {
            change: Change::new(
                format!(
                    "would write {} as a new version of {} (replacing {}), tagged {MARKER_TAG}={}",
                    generator.describe(),
                    secret.as_str(),
                    current.version,
                    task.message_id
                ),
                requests,
            ),
            prior_state: json!({
                "secret": secret.as_str(),
                "current_version": current.version,
                "current_created": current.created,
                "content_type": current.content_type,
                "generator": generator,
                "storage": storage,
            }),
            leases,
            subscriptions,
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (secret, _) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let versions = vault.secret_versions(name).await?;
        if let Some(done) = marked(&versions, task) {
            return Ok(Applied {
                output: json!({
                    "new_version": done.version,
                    "replaced_version": done.tag(REPLACES_TAG),
                    "already_rotated": true,
                }),
                ..Applied::default()
            });
        }
        let prior = &preview.prior_state;
        let current = current(&versions, secret.as_str())?;
        still_current(
            &current,
            saved_str(prior, "current_version")?,
            secret.as_str(),
        )?;
        let generator: Generator = serde_json::from_value(saved(prior, "generator")?.clone())
            .map_err(|e| {
                ExecutorError::Permanent(format!("the preview's generator does not decode: {e}"))
            })?;
        let mut sent = Vec::new();
        let value = match &generator {
            Generator::Random { length } => {
                random_value(*length).map_err(|e| ExecutorError::Retryable {
                    reason: format!("the operating system's random generator failed: {e}"),
                    retry_after: None,
                })?
            }
            Generator::StorageKey { account, key } => {
                // Decided again now: a key regenerated since the preview is not regenerated twice.
                let regenerate = must_regenerate(ctx, task, &generator, &current)
                    .await?
                    .and_then(|s| s["regenerate"].as_bool())
                    .unwrap_or(true);
                let (source, request) = storage_keys(ctx, account, *key, regenerate).await?;
                sent.push(request);
                let present = vault.secret_value(name, &current.version).await?;
                substitute(&present, "AccountKey", &source)
            }
            Generator::ApplicationPassword { .. } | Generator::None { .. } => {
                return Err(ExecutorError::Permanent(
                    "the preview named no generator this executor runs".into(),
                ))
            }
        };
        let written = write_version(&vault, secret, &value, &current, task).await?;
        sent.push(SentRequest {
            method: "PUT".into(),
            url: vault.url(&format!("secrets/{name}")),
            status: 200,
        });
        Ok(Applied {
            sent,
            output: json!({
                "new_version": written.version,
                "replaced_version": current.version,
            }),
            ..Applied::default()
        })
    }

    async fn verify(
        &self,
        task: &Task,
        _preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let (secret, _) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let versions = vault.secret_versions(secret.uri().name()).await?;
        let newest = versions.last();
        Ok(Verification::default()
            .check(
                "the current version is the one this task wrote",
                applied.output["new_version"].clone(),
                json!(newest.map(|v| v.version.clone())),
            )
            .check(
                "it carries the task's marker",
                json!(task.message_id.as_str()),
                json!(newest.and_then(|v| v.tag(MARKER_TAG))),
            )
            .check(
                "it is enabled",
                json!(true),
                json!(newest.map(|v| v.enabled)),
            ))
    }

    async fn undo(
        &self,
        task: &Task,
        _preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let (secret, _) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let mut undone = Undone {
            not_restored: vec![format!(
                "the rotation of {} is not reversed: the old value is the exposed one. The new version stays current; a consumer pinned to the old version keeps working while it is enabled.",
                secret.as_str()
            )],
            ..Undone::default()
        };
        if let Some(old) = applied.output["replaced_version"].as_str() {
            let versions = vault.secret_versions(name).await?;
            if versions.iter().any(|v| v.version == old && !v.enabled) {
                vault
                    .update_secret_version(name, old, Some(true), None)
                    .await?;
                undone.sent.push(SentRequest {
                    method: "PATCH".into(),
                    url: vault.url(&format!("secrets/{name}/{old}")),
                    status: 200,
                });
            }
        }
        Ok(undone)
    }
}

/// Writes the new version with the markers and the current content type.
pub(crate) async fn write_version(
    vault: &VaultClient,
    secret: &SecretUri,
    value: &SecretValue,
    current: &ObjectVersion,
    task: &Task,
) -> Result<ObjectVersion, ExecutorError> {
    Ok(vault
        .set_secret(
            secret.uri().name(),
            value,
            current.content_type.as_deref(),
            &new_tags(task, current),
        )
        .await?)
}
