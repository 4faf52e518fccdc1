//! `rotate_certificate`: a new version from the certificate's saved policy, tagged with the
//! task's message id; the pending operation is polled a bounded number of times, then again as
//! a scheduled follow-up rather than waited on.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{
    already_done, bound_to_alert, carried_tags, current, foreign_step, lease_of, marked,
    not_found_refused, saved_str, still_current, vault_of, wrong_parameters, FollowUp,
    FollowUpStep, MARKER_TAG, REPLACES_TAG,
};
use crate::azure::key_vault::{ObjectVersion, PendingCertificate, VaultClient};
use crate::azure::Api;
use crate::domain::ids::CertificateUri;
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    SentRequest, Undone, Verification, WriteMethod,
};

/// Seconds before a still-pending creation is polled again.
pub const POLL_AGAIN_SECONDS: i64 = 60;

/// The `rotate_certificate` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateCertificate;

fn target_of(task: &Task) -> Result<(&CertificateUri, &[String]), ExecutorError> {
    match &task.parameters {
        Parameters::RotateCertificate {
            certificate,
            versions_read,
        } => Ok((certificate, versions_read)),
        _ => Err(wrong_parameters("rotate_certificate")),
    }
}

fn new_tags(task: &Task, replaced: &ObjectVersion) -> BTreeMap<String, String> {
    let mut tags = carried_tags(replaced);
    tags.insert(MARKER_TAG.into(), task.message_id.as_str().to_string());
    tags.insert(REPLACES_TAG.into(), replaced.version.clone());
    tags
}

/// The pending creation, `None` when there is none.
async fn pending(
    vault: &VaultClient,
    name: &str,
) -> Result<Option<PendingCertificate>, ExecutorError> {
    match vault.certificate_operation(name).await {
        Ok(operation) => Ok(Some(operation)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Polls up to `polls` times; answers the outcome (a follow-up when still pending).
async fn poll(
    vault: &VaultClient,
    ctx: &ExecutorContext,
    task: &Task,
    certificate: &CertificateUri,
    polls: u32,
    mut applied: Applied,
) -> Result<Applied, ExecutorError> {
    let name = certificate.uri().name();
    for attempt in 0..polls.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(operation) = pending(vault, name).await? else {
            break;
        };
        if operation.completed() {
            let versions = vault.certificate_versions(name).await?;
            let new = marked(&versions, task).map(|v| v.version.clone());
            applied.output["new_version"] = json!(new);
            applied.output["status"] = json!("completed");
            return Ok(applied);
        }
        if !operation.in_progress() {
            return Err(ExecutorError::Permanent(format!(
                "the new version of {} was not issued: the pending operation ended {}{}",
                certificate.as_str(),
                operation.status,
                operation
                    .error
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )));
        }
    }
    applied.output["status"] = json!("inProgress");
    applied.follow_up = Some(FollowUp {
        not_before: ctx.rotation.clock.now() + POLL_AGAIN_SECONDS,
        step: FollowUpStep::PollCertificate {
            certificate: certificate.clone(),
        },
    });
    Ok(applied)
}

#[async_trait]
impl Executor for RotateCertificate {
    fn action(&self) -> Action {
        Action::RotateCertificate
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (certificate, versions_read) = target_of(task)?;
        let vault = vault_of(ctx, certificate.uri())?;
        let name = certificate.uri().name();
        let versions = vault
            .certificate_versions(name)
            .await
            .map_err(not_found_refused(certificate.as_str()))?;
        let leases = vec![lease_of(certificate.uri())];
        if let Some(done) = marked(&versions, task) {
            return Ok(already_done(
                "certificate",
                certificate.as_str(),
                "renewed",
                done,
                leases,
            ));
        }
        let current = current(&versions, certificate.as_str())?;
        bound_to_alert(&current, versions_read, task, certificate.as_str())?;
        let requests = vec![PlannedRequest::new(
            Api::KeyVault,
            WriteMethod::Post,
            vault.url(&format!("certificates/{name}/create")),
            Some(
                json!({"policy": "<the certificate's saved policy, as read>", "tags": new_tags(task, &current)}),
            ),
        )];
        Ok(Preview {
            change: Change::new(
                format!(
                    "would create a new version of {} from its saved policy (replacing {}); the old certificate is not revoked at its CA",
                    certificate.as_str(),
                    current.version
                ),
                requests,
            ),
            prior_state: json!({"certificate": certificate.as_str(), "current_version": current.version}),
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
        let (certificate, _) = target_of(task)?;
        let vault = vault_of(ctx, certificate.uri())?;
        let name = certificate.uri().name();
        let versions = vault.certificate_versions(name).await?;
        if let Some(done) = marked(&versions, task) {
            return Ok(Applied {
                output: json!({"new_version": done.version, "replaced_version": done.tag(REPLACES_TAG), "status": "completed", "already_rotated": true}),
                ..Applied::default()
            });
        }
        let polls = ctx.rotation.settings.certificate_polls;
        let current = current(&versions, certificate.as_str())?;
        let mut applied = Applied {
            output: json!({"replaced_version": current.version}),
            ..Applied::default()
        };
        // A creation still pending (this task's, before a crash) is polled, not started twice.
        if pending(&vault, name)
            .await?
            .is_some_and(|p| p.in_progress())
        {
            return poll(&vault, ctx, task, certificate, polls, applied).await;
        }
        still_current(
            &current,
            saved_str(&preview.prior_state, "current_version")?,
            certificate.as_str(),
        )?;
        vault
            .create_certificate_version(name, &new_tags(task, &current))
            .await?;
        applied.sent.push(SentRequest {
            method: "POST".into(),
            url: vault.url(&format!("certificates/{name}/create")),
            status: 202,
        });
        poll(&vault, ctx, task, certificate, polls, applied).await
    }

    async fn verify(
        &self,
        task: &Task,
        _preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let (certificate, _) = target_of(task)?;
        let vault = vault_of(ctx, certificate.uri())?;
        let versions = vault.certificate_versions(certificate.uri().name()).await?;
        let newest = versions.last();
        Ok(Verification::default().check(
            "the current version carries the task's marker",
            json!(applied.output["new_version"]
                .as_str()
                .map(|_| task.message_id.as_str())),
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
        let (certificate, _) = target_of(task)?;
        let vault = vault_of(ctx, certificate.uri())?;
        let name = certificate.uri().name();
        let mut undone = Undone {
            not_restored: vec![format!(
                "the old certificate of {} is the exposed one; it was never revoked at its CA",
                certificate.as_str()
            )],
            ..Undone::default()
        };
        if let Some(new) = applied.output["new_version"].as_str() {
            vault
                .update_certificate_version(name, new, Some(false), None)
                .await?;
            undone.sent.push(SentRequest {
                method: "PATCH".into(),
                url: vault.url(&format!("certificates/{name}/{new}")),
                status: 200,
            });
        }
        Ok(undone)
    }

    async fn follow_up(
        &self,
        task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let FollowUpStep::PollCertificate { certificate } = &follow_up.step else {
            return Err(foreign_step(&follow_up.step, "rotate_certificate"));
        };
        let vault = vault_of(ctx, certificate.uri())?;
        poll(&vault, ctx, task, certificate, 1, Applied::default()).await
    }
}
