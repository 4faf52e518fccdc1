//! `disable_secret`: disable the exposed versions of a secret, but only once the grace window
//! after their replacement has passed, so consumers that refresh daily keep working.
//!
//! Apply before the window's end writes nothing and answers a [`FollowUp`]; the follow-up
//! checks again that a replacement is current and enabled (never leaving a secret without a
//! usable version) and disables the versions, tagging each `dr-disabled-by`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use super::{
    foreign_step, lease_of, not_found_refused, not_yet, rfc3339_of, saved, vault_of,
    wrong_parameters, FollowUp, FollowUpStep, DISABLED_BY_TAG, MARKER_TAG,
};
use crate::azure::key_vault::{ObjectVersion, VaultClient};
use crate::azure::Api;
use crate::domain::ids::SecretUri;
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// The `disable_secret` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisableSecret;

fn target_of(task: &Task) -> Result<(&SecretUri, &[String]), ExecutorError> {
    match &task.parameters {
        Parameters::DisableSecret {
            secret,
            versions_read,
        } => Ok((secret, versions_read)),
        _ => Err(wrong_parameters("disable_secret")),
    }
}

/// The enabled versions to disable: those read (when the alert lists them), else every
/// enabled version older than the newest rotation (a version carrying a rotation marker), or
/// every enabled version when none was rotated yet.
fn to_disable(versions: &[ObjectVersion], versions_read: &[String]) -> Vec<ObjectVersion> {
    if !versions_read.is_empty() {
        return versions
            .iter()
            .filter(|v| v.enabled)
            .filter(|v| {
                versions_read
                    .iter()
                    .any(|read| read.eq_ignore_ascii_case(&v.version))
            })
            .cloned()
            .collect();
    }
    let rotated = versions
        .iter()
        .rposition(|v| v.tags.contains_key(MARKER_TAG))
        .unwrap_or(versions.len());
    versions[..rotated]
        .iter()
        .filter(|v| v.enabled)
        .cloned()
        .collect()
}

/// The version consumers move to: the newest, when it is enabled and not one to disable.
fn replacement_of<'v>(
    versions: &'v [ObjectVersion],
    disabling: &[String],
) -> Option<&'v ObjectVersion> {
    versions
        .last()
        .filter(|v| v.enabled && !disabling.contains(&v.version))
}

fn disabled_tags(version: &ObjectVersion, task: &Task) -> BTreeMap<String, String> {
    let mut tags = version.tags.clone();
    tags.insert(DISABLED_BY_TAG.into(), task.message_id.as_str().to_string());
    tags
}

/// Disables `versions` (those still enabled), tagging each.
async fn disable(
    vault: &VaultClient,
    secret: &SecretUri,
    versions: &[ObjectVersion],
    names: &[String],
    task: &Task,
) -> Result<Vec<SentRequest>, ExecutorError> {
    let name = secret.uri().name();
    let mut sent = Vec::new();
    for version in versions
        .iter()
        .filter(|v| v.enabled && names.contains(&v.version))
    {
        vault
            .update_secret_version(
                name,
                &version.version,
                Some(false),
                Some(&disabled_tags(version, task)),
            )
            .await?;
        sent.push(SentRequest {
            method: "PATCH".into(),
            url: vault.url(&format!("secrets/{name}/{}", version.version)),
            status: 200,
        });
    }
    Ok(sent)
}

/// Runs the disable step at `now`: re-reads the versions, checks the replacement, and either
/// disables or answers when to come back.
async fn run_step(
    task: &Task,
    ctx: &ExecutorContext,
    secret: &SecretUri,
    names: &[String],
    replacement: Option<&str>,
    first_run: bool,
) -> Result<Applied, ExecutorError> {
    let vault = vault_of(ctx, secret.uri())?;
    let versions = vault.secret_versions(secret.uri().name()).await?;
    let grace = ctx.rotation.settings.grace_seconds;
    let now = ctx.rotation.clock.now();
    let current = replacement_of(&versions, names);
    let current = match (replacement, current) {
        (Some(expected), Some(found)) if found.version.eq_ignore_ascii_case(expected) => found,
        (Some(expected), _) => {
            return Err(ExecutorError::refused(
                RefusalReason::VersionChanged,
                format!(
                    "{}: version {expected}, which consumers were to move to, is no longer the current enabled version; nothing was disabled (disabling now could leave consumers without a working value)",
                    secret.as_str()
                ),
            ))
        }
        (None, Some(found)) => found,
        (None, None) if first_run => {
            // Not rotated yet (its rotation may still be on the queue): look again once the
            // grace window has passed.
            return Ok(Applied {
                output: json!({"scheduled_for": rfc3339_of(now + grace), "replacement": null}),
                follow_up: Some(FollowUp {
                    not_before: now + grace,
                    step: FollowUpStep::DisableSecretVersions {
                        secret: secret.clone(),
                        versions: names.to_vec(),
                        replacement: None,
                    },
                }),
                ..Applied::default()
            });
        }
        (None, None) => {
            return Err(ExecutorError::refused(
                RefusalReason::ManualRotation,
                format!(
                    "{} has no newer enabled version than the exposed ones ({}); disabling them would cut its consumers off. Rotate it at its source and store the new value first; then disable the exposed versions.",
                    secret.as_str(),
                    names.join(", ")
                ),
            ))
        }
    };
    let not_before = current.created.unwrap_or(now) + grace;
    if now < not_before {
        return Ok(Applied {
            output: json!({"scheduled_for": rfc3339_of(not_before), "replacement": current.version}),
            follow_up: Some(FollowUp {
                not_before,
                step: FollowUpStep::DisableSecretVersions {
                    secret: secret.clone(),
                    versions: names.to_vec(),
                    replacement: Some(current.version.clone()),
                },
            }),
            ..Applied::default()
        });
    }
    let sent = disable(&vault, secret, &versions, names, task).await?;
    Ok(Applied {
        sent,
        output: json!({"disabled": names, "replacement": current.version}),
        ..Applied::default()
    })
}

#[async_trait]
impl Executor for DisableSecret {
    fn action(&self) -> Action {
        Action::DisableSecret
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (secret, versions_read) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let versions = vault
            .secret_versions(name)
            .await
            .map_err(not_found_refused(secret.as_str()))?;
        let disabling = to_disable(&versions, versions_read);
        let names: Vec<String> = disabling.iter().map(|v| v.version.clone()).collect();
        let replacement = replacement_of(&versions, &names);
        let requests: Vec<PlannedRequest> = disabling
            .iter()
            .map(|version| {
                PlannedRequest::new(
                    Api::KeyVault,
                    WriteMethod::Patch,
                    vault.url(&format!("secrets/{name}/{}", version.version)),
                    Some(json!({"attributes": {"enabled": false}, "tags": disabled_tags(version, task)})),
                )
            })
            .collect();
        let grace = ctx.rotation.settings.grace_seconds;
        let summary = if names.is_empty() {
            format!(
                "the exposed versions of {} are already disabled",
                secret.as_str()
            )
        } else {
            match replacement {
                Some(current) => format!(
                    "would disable versions {} of {} from {} ({} s after version {} replaced them)",
                    names.join(", "),
                    secret.as_str(),
                    rfc3339_of(current.created.unwrap_or_default() + grace),
                    grace,
                    current.version
                ),
                None => format!(
                    "would disable versions {} of {} {} s after a new version replaces them (none has yet: rotate it first)",
                    names.join(", "),
                    secret.as_str(),
                    grace
                ),
            }
        };
        Ok(Preview {
            change: Change::new(summary, requests),
            prior_state: json!({
                "secret": secret.as_str(),
                "versions": disabling.iter().map(|v| json!({"version": v.version, "enabled": v.enabled})).collect::<Vec<_>>(),
                "replacement": replacement.map(|v| v.version.clone()),
            }),
            leases: vec![lease_of(secret.uri())],
            subscriptions: Vec::new(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (secret, _) = target_of(task)?;
        let names: Vec<String> = saved(&preview.prior_state, "versions")?
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v["version"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(Applied::default());
        }
        let replacement = preview.prior_state["replacement"].as_str();
        run_step(task, ctx, secret, &names, replacement, true).await
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
        let mut verification = Verification::default();
        for name in applied.output["disabled"].as_array().into_iter().flatten() {
            let enabled = versions
                .iter()
                .find(|v| Some(v.version.as_str()) == name.as_str())
                .map(|v| v.enabled);
            verification = verification.check(
                format!("version {} is disabled", name.as_str().unwrap_or_default()),
                json!(Some(false)),
                json!(enabled),
            );
        }
        if let Some(replacement) = applied.output["replacement"].as_str() {
            let enabled = versions
                .iter()
                .find(|v| v.version == replacement)
                .map(|v| v.enabled);
            verification = verification.check(
                format!("the replacement {replacement} is enabled"),
                json!(Some(true)),
                json!(enabled),
            );
        }
        Ok(verification)
    }

    async fn undo(
        &self,
        task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let (secret, _) = target_of(task)?;
        let vault = vault_of(ctx, secret.uri())?;
        let name = secret.uri().name();
        let versions = vault.secret_versions(name).await?;
        let mut undone = Undone::default();
        for version in versions
            .iter()
            .filter(|v| v.tag(DISABLED_BY_TAG) == Some(task.message_id.as_str()))
        {
            let mut tags = version.tags.clone();
            tags.remove(DISABLED_BY_TAG);
            vault
                .update_secret_version(name, &version.version, Some(true), Some(&tags))
                .await?;
            undone.sent.push(SentRequest {
                method: "PATCH".into(),
                url: vault.url(&format!("secrets/{name}/{}", version.version)),
                status: 200,
            });
        }
        undone.not_restored.push(format!(
            "re-enabled versions of {} hold the exposed value",
            secret.as_str()
        ));
        Ok(undone)
    }

    async fn follow_up(
        &self,
        task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let FollowUpStep::DisableSecretVersions {
            secret,
            versions,
            replacement,
        } = &follow_up.step
        else {
            return Err(foreign_step(&follow_up.step, "disable_secret"));
        };
        not_yet(follow_up, ctx.rotation.clock.now())?;
        run_step(task, ctx, secret, versions, replacement.as_deref(), false).await
    }
}
