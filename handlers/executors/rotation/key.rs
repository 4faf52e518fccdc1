//! `rotate_key`: the vault's own rotate operation (a new version by the key's rotation policy),
//! the old version disabled after the grace window so dependants can re-wrap first.
//!
//! `POST /keys/{name}/rotate` takes no tags, so the marker goes on both sides of it: the
//! current version is tagged `dr-rotating` before the call and the new one `dr-message-id`
//! after. A redelivery that finds `dr-rotating` with a newer version finishes the tagging
//! instead of rotating again.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use super::{
    already_done, bound_to_alert, carried_tags, current, foreign_step, lease_of, marked,
    not_found_refused, not_yet, reader_of, saved_str, still_current, vault_of, window_of,
    wrong_parameters, FollowUp, FollowUpStep, MARKER_TAG, REPLACES_TAG, ROTATING_TAG,
};
use crate::azure::key_vault::{ObjectVersion, VaultClient};
use crate::azure::Api;
use crate::domain::ids::KeyUri;
use crate::domain::parameters::{KeyRotationTarget, Parameters};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// The `rotate_key` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateKey;

fn target_of(task: &Task) -> Result<(&KeyUri, &[String]), ExecutorError> {
    match &task.parameters {
        Parameters::RotateKey {
            target: KeyRotationTarget::Key { key, versions_read },
            ..
        } => Ok((key, versions_read)),
        Parameters::RotateKey {
            target: KeyRotationTarget::Vault { vault, .. },
            ..
        } => Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!(
                "The alert does not name the keys {} used in {} {}: find them in the vault's diagnostic logs, then rotate each (and re-wrap what depends on it).",
                reader_of(task),
                vault.as_str(),
                window_of(task)
            ),
        )),
        Parameters::RotateKey {
            target: KeyRotationTarget::Subscription { subscription },
            ..
        } => Err(ExecutorError::refused(
            RefusalReason::SubscriptionWide,
            format!(
                "rotating every key {} could use in {} is a subscription-wide change",
                reader_of(task),
                subscription.as_str()
            ),
        )),
        _ => Err(wrong_parameters("rotate_key")),
    }
}

fn new_tags(task: &Task, replaced: &ObjectVersion) -> BTreeMap<String, String> {
    let mut tags = carried_tags(replaced);
    tags.insert(MARKER_TAG.into(), task.message_id.as_str().to_string());
    tags.insert(REPLACES_TAG.into(), replaced.version.clone());
    tags
}

fn rotating_tags(task: &Task, current: &ObjectVersion) -> BTreeMap<String, String> {
    let mut tags = current.tags.clone();
    tags.insert(ROTATING_TAG.into(), task.message_id.as_str().to_string());
    tags
}

fn sent(vault: &VaultClient, method: &str, path: &str) -> SentRequest {
    SentRequest {
        method: method.into(),
        url: vault.url(path),
        status: 200,
    }
}

/// Marks the new version and answers the rotation's result, with the follow-up that
/// disables the replaced version.
async fn finish(
    vault: &VaultClient,
    task: &Task,
    ctx: &ExecutorContext,
    key: &KeyUri,
    replaced: &ObjectVersion,
    new: &ObjectVersion,
    mut sent_so_far: Vec<SentRequest>,
) -> Result<Applied, ExecutorError> {
    let name = key.uri().name();
    vault
        .update_key_version(name, &new.version, None, Some(&new_tags(task, replaced)))
        .await?;
    sent_so_far.push(sent(
        vault,
        "PATCH",
        &format!("keys/{name}/{}", new.version),
    ));
    Ok(Applied {
        sent: sent_so_far,
        output: json!({"new_version": new.version, "replaced_version": replaced.version}),
        follow_up: Some(FollowUp {
            not_before: ctx.rotation.clock.now() + ctx.rotation.settings.grace_seconds,
            step: FollowUpStep::DisableKeyVersions {
                key: key.clone(),
                versions: vec![replaced.version.clone()],
                replacement: new.version.clone(),
            },
        }),
    })
}

#[async_trait]
impl Executor for RotateKey {
    fn action(&self) -> Action {
        Action::RotateKey
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (key, versions_read) = target_of(task)?;
        let vault = vault_of(ctx, key.uri())?;
        let name = key.uri().name();
        let versions = vault
            .key_versions(name)
            .await
            .map_err(not_found_refused(key.as_str()))?;
        let leases = vec![lease_of(key.uri())];
        if let Some(done) = marked(&versions, task) {
            return Ok(already_done("key", key.as_str(), "rotated", done, leases));
        }
        let current = current(&versions, key.as_str())?;
        let interrupted = versions
            .iter()
            .any(|v| v.tag(ROTATING_TAG) == Some(task.message_id.as_str()));
        if !interrupted {
            bound_to_alert(&current, versions_read, task, key.as_str())?;
        }
        let requests = vec![
            PlannedRequest::new(
                Api::KeyVault,
                WriteMethod::Patch,
                vault.url(&format!("keys/{name}/{}", current.version)),
                Some(json!({"tags": rotating_tags(task, &current)})),
            ),
            PlannedRequest::new(
                Api::KeyVault,
                WriteMethod::Post,
                vault.url(&format!("keys/{name}/rotate")),
                None,
            ),
            PlannedRequest::new(
                Api::KeyVault,
                WriteMethod::Patch,
                vault.url(&format!("keys/{name}/<new version>")),
                Some(json!({"tags": new_tags(task, &current)})),
            ),
        ];
        Ok(Preview {
            change: Change::new(
                format!(
                    "would rotate {} (replacing version {}) and disable the replaced version {} s later, once dependants re-wrapped",
                    key.as_str(),
                    current.version,
                    ctx.rotation.settings.grace_seconds
                ),
                requests,
            ),
            prior_state: json!({
                "key": key.as_str(),
                "current_version": current.version,
                "current_created": current.created,
            }),
            leases,
            subscriptions: Vec::new(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (key, _) = target_of(task)?;
        let vault = vault_of(ctx, key.uri())?;
        let name = key.uri().name();
        let versions = vault.key_versions(name).await?;
        if let Some(done) = marked(&versions, task) {
            return Ok(Applied {
                output: json!({"new_version": done.version, "replaced_version": done.tag(REPLACES_TAG), "already_rotated": true}),
                ..Applied::default()
            });
        }
        // A rotate that happened before a crash: its new version follows the first tagged one
        // (a rotate may copy the current version's tags onto the new one).
        if let Some(index) = versions
            .iter()
            .position(|v| v.tag(ROTATING_TAG) == Some(task.message_id.as_str()))
        {
            if let Some(new) = versions.get(index + 1) {
                return finish(&vault, task, ctx, key, &versions[index], new, Vec::new()).await;
            }
        }
        let current = current(&versions, key.as_str())?;
        still_current(
            &current,
            saved_str(&preview.prior_state, "current_version")?,
            key.as_str(),
        )?;
        vault
            .update_key_version(
                name,
                &current.version,
                None,
                Some(&rotating_tags(task, &current)),
            )
            .await?;
        let mut sent_so_far = vec![sent(
            &vault,
            "PATCH",
            &format!("keys/{name}/{}", current.version),
        )];
        let new = vault.rotate_key(name).await?;
        sent_so_far.push(sent(&vault, "POST", &format!("keys/{name}/rotate")));
        finish(&vault, task, ctx, key, &current, &new, sent_so_far).await
    }

    async fn verify(
        &self,
        task: &Task,
        _preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let (key, _) = target_of(task)?;
        let vault = vault_of(ctx, key.uri())?;
        let versions = vault.key_versions(key.uri().name()).await?;
        let newest = versions.last();
        Ok(Verification::default()
            .check(
                "the current version is the one this task made",
                applied.output["new_version"].clone(),
                json!(newest.map(|v| v.version.clone())),
            )
            .check(
                "it carries the task's marker",
                json!(task.message_id.as_str()),
                json!(newest.and_then(|v| v.tag(MARKER_TAG))),
            ))
    }

    async fn undo(
        &self,
        task: &Task,
        _preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let (key, _) = target_of(task)?;
        let vault = vault_of(ctx, key.uri())?;
        let name = key.uri().name();
        let mut undone = Undone {
            not_restored: vec![format!(
                "the new version of {} stays current (a rotation is not reversed); consumers pinned to a version must be re-pointed",
                key.as_str()
            )],
            ..Undone::default()
        };
        if let Some(old) = applied.output["replaced_version"].as_str() {
            let versions = vault.key_versions(name).await?;
            if versions.iter().any(|v| v.version == old && !v.enabled) {
                vault
                    .update_key_version(name, old, Some(true), None)
                    .await?;
                undone
                    .sent
                    .push(sent(&vault, "PATCH", &format!("keys/{name}/{old}")));
            }
        }
        Ok(undone)
    }

    async fn follow_up(
        &self,
        _task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let FollowUpStep::DisableKeyVersions {
            key,
            versions: names,
            replacement,
        } = &follow_up.step
        else {
            return Err(foreign_step(&follow_up.step, "rotate_key"));
        };
        not_yet(follow_up, ctx.rotation.clock.now())?;
        let vault = vault_of(ctx, key.uri())?;
        let name = key.uri().name();
        let versions = vault.key_versions(name).await?;
        match versions.last() {
            Some(newest) if newest.version == *replacement && newest.enabled => {}
            _ => {
                return Err(ExecutorError::refused(
                    RefusalReason::VersionChanged,
                    format!(
                        "{}: version {replacement} is no longer the current enabled version; the old versions were left enabled",
                        key.as_str()
                    ),
                ))
            }
        }
        let mut applied = Applied::default();
        for version in versions
            .iter()
            .filter(|v| v.enabled && names.contains(&v.version))
        {
            vault
                .update_key_version(name, &version.version, Some(false), None)
                .await?;
            applied.sent.push(sent(
                &vault,
                "PATCH",
                &format!("keys/{name}/{}", version.version),
            ));
        }
        applied.output = json!({"disabled": names, "replacement": replacement});
        Ok(applied)
    }
}
