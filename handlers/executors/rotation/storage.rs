//! `rotate_storage_keys`: regenerate a storage account's keys one at a time (the first now, the
//! second after the grace window, so consumers can move to the first), never logging a key.
//!
//! The marker is the account's own `keyCreationTime`: a key created after the alert's window
//! was already regenerated (by this task before a crash, or by someone else) and is not
//! regenerated again.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::generator::storage_key_name;
use super::{
    foreign_step, not_yet, reader_of, saved, unix_of, window_of, wrong_parameters, FollowUp,
    FollowUpStep,
};
use crate::azure::key_vault::SecretValue;
use crate::azure::Api;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::{Parameters, ResourceTarget, StorageKeyName};
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, SentRequest, Undone, Verification, WriteMethod,
};

/// `Microsoft.Storage` api-version.
pub const STORAGE_API_VERSION: &str = "2025-01-01";
/// The regenerate action.
pub const REGENERATE: &str = "regenerateKey";
/// The list action.
pub const LIST_KEYS: &str = "listKeys";

/// The `rotate_storage_keys` executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateStorageKeys;

/// A key's `keyCreationTime` as the account reports it.
pub(crate) fn key_created(account: &Value, key: StorageKeyName) -> Option<String> {
    account
        .pointer(&format!(
            "/properties/keyCreationTime/{}",
            storage_key_name(key)
        ))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Regenerates `key` (or, with `regenerate` false, lists the keys) and returns its value, which
/// goes nowhere but the vault: the answer's body is dropped here.
pub(crate) async fn storage_keys(
    ctx: &ExecutorContext,
    account: &AzureResourceId,
    key: StorageKeyName,
    regenerate: bool,
) -> Result<(SecretValue, SentRequest), ExecutorError> {
    let name = storage_key_name(key);
    let (action, body) = if regenerate {
        (REGENERATE, Some(json!({"keyName": name})))
    } else {
        (LIST_KEYS, None)
    };
    let path = format!("{}/{action}", account.as_str());
    let response = ctx
        .clients
        .arm
        .post(&path, STORAGE_API_VERSION, body.as_ref())
        .await?;
    let value = response
        .body
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter().find(|k| {
                k.get("keyName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        })
        .and_then(|k| k.get("value"))
        .and_then(Value::as_str)
        .map(SecretValue::new)
        .ok_or_else(|| {
            ExecutorError::Permanent(format!(
                "{action} on {} answered no {name}",
                account.as_str()
            ))
        })?;
    Ok((
        value,
        SentRequest {
            method: "POST".into(),
            url: ctx.clients.arm.url(&path, STORAGE_API_VERSION),
            status: response.status,
        },
    ))
}

fn target_of(task: &Task) -> Result<(&AzureResourceId, Vec<StorageKeyName>), ExecutorError> {
    let Parameters::RotateStorageKeys { target, key_names } = &task.parameters else {
        return Err(wrong_parameters("rotate_storage_keys"));
    };
    let keys = if key_names.is_empty() {
        vec![StorageKeyName::Key1, StorageKeyName::Key2]
    } else {
        key_names.clone()
    };
    match target {
        ResourceTarget::Resource { resource }
            if resource.is_type("Microsoft.Storage/storageAccounts") =>
        {
            Ok((resource, keys))
        }
        ResourceTarget::Resource { resource } => Err(ExecutorError::refused(
            RefusalReason::UnsupportedTarget,
            format!("{} is not a storage account", resource.as_str()),
        )),
        ResourceTarget::InScope { scope } => Err(ExecutorError::refused(
            RefusalReason::ManualRotation,
            format!(
                "The alert names no storage account: find the accounts whose keys {} listed in {} {} (activity log operation Microsoft.Storage/storageAccounts/listKeys/action), then regenerate key1, move consumers to it, and regenerate key2.",
                reader_of(task),
                scope.as_str(),
                window_of(task)
            ),
        )),
    }
}

/// The end of the alert's window (a key created after it was regenerated since the alert).
fn alert_end(task: &Task) -> Option<i64> {
    task.activity
        .window
        .as_ref()
        .and_then(|w| w.end.as_deref().or(w.start.as_deref()))
        .and_then(unix_of)
}

/// Whether `key` was regenerated since the alert (or since the time saved by the preview).
fn regenerated_since(
    account: &Value,
    key: StorageKeyName,
    task: &Task,
    saved: Option<&str>,
) -> bool {
    let Some(created) = key_created(account, key) else {
        return false;
    };
    if let Some(end) = alert_end(task) {
        if unix_of(&created).is_some_and(|t| t > end) {
            return true;
        }
    }
    saved.is_some_and(|before| before != created)
}

async fn read_account(
    ctx: &ExecutorContext,
    account: &AzureResourceId,
) -> Result<Value, ExecutorError> {
    ctx.clients
        .arm
        .get_optional(account.as_str(), STORAGE_API_VERSION)
        .await?
        .ok_or_else(|| {
            ExecutorError::refused(
                RefusalReason::TargetNotFound,
                format!("{} does not exist", account.as_str()),
            )
        })
}

async fn regenerate(
    ctx: &ExecutorContext,
    account: &AzureResourceId,
    key: StorageKeyName,
) -> Result<SentRequest, ExecutorError> {
    // The answer holds both keys' values: only its status is kept.
    let (_value, sent) = storage_keys(ctx, account, key, true).await?;
    Ok(sent)
}

#[async_trait]
impl Executor for RotateStorageKeys {
    fn action(&self) -> Action {
        Action::RotateStorageKeys
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let (account, keys) = target_of(task)?;
        let resource = read_account(ctx, account).await?;
        let pending: Vec<StorageKeyName> = keys
            .iter()
            .copied()
            .filter(|key| !regenerated_since(&resource, *key, task, None))
            .collect();
        let url = ctx.clients.arm.url(
            &format!("{}/{REGENERATE}", account.as_str()),
            STORAGE_API_VERSION,
        );
        let requests: Vec<PlannedRequest> = pending
            .iter()
            .map(|key| {
                PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Post,
                    url.clone(),
                    Some(json!({"keyName": storage_key_name(*key)})),
                )
            })
            .collect();
        let names: Vec<&str> = pending.iter().map(|k| storage_key_name(*k)).collect();
        let summary = match names.as_slice() {
            [] => format!(
                "the keys of {} were already regenerated since the alert",
                account.as_str()
            ),
            [one] => format!("would regenerate {one} of {}", account.as_str()),
            [first, rest @ ..] => format!(
                "would regenerate {first} of {} now and {} after the grace window of {} s, once consumers use {first}",
                account.as_str(),
                rest.join(", "),
                ctx.rotation.settings.grace_seconds
            ),
        };
        let created: serde_json::Map<String, Value> = keys
            .iter()
            .map(|key| {
                (
                    storage_key_name(*key).to_string(),
                    json!(key_created(&resource, *key)),
                )
            })
            .collect();
        Ok(Preview {
            change: Change::new(summary, requests),
            prior_state: json!({
                "account": account.as_str(),
                "keys": names,
                "key_created": created,
                "allowSharedKeyAccess": resource.pointer("/properties/allowSharedKeyAccess"),
            }),
            leases: vec![account.normalized()],
            subscriptions: account
                .subscription_id()
                .map(|s| vec![s.to_ascii_lowercase()])
                .unwrap_or_default(),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let (account, _) = target_of(task)?;
        let prior = &preview.prior_state;
        let keys: Vec<StorageKeyName> = serde_json::from_value(saved(prior, "keys")?.clone())
            .map_err(|e| {
                ExecutorError::Permanent(format!("the preview's keys do not decode: {e}"))
            })?;
        let Some((first, rest)) = keys.split_first() else {
            return Ok(Applied::default());
        };
        let before = |key: StorageKeyName| {
            prior["key_created"][storage_key_name(key)]
                .as_str()
                .map(str::to_string)
        };
        let resource = read_account(ctx, account).await?;
        let mut applied = Applied::default();
        if regenerated_since(&resource, *first, task, before(*first).as_deref()) {
            applied.output = json!({"already_regenerated": [storage_key_name(*first)]});
        } else {
            applied.sent.push(regenerate(ctx, account, *first).await?);
            applied.output = json!({"regenerated": [storage_key_name(*first)]});
        }
        if let Some(second) = rest.first() {
            applied.follow_up = Some(FollowUp {
                not_before: ctx.rotation.clock.now() + ctx.rotation.settings.grace_seconds,
                step: FollowUpStep::RegenerateStorageKey {
                    account: account.clone(),
                    key: *second,
                    created_before: before(*second),
                },
            });
        }
        Ok(applied)
    }

    async fn verify(
        &self,
        task: &Task,
        preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let (account, _) = target_of(task)?;
        let resource = read_account(ctx, account).await?;
        let mut verification = Verification::default();
        if let Some(first) = preview.prior_state["keys"]
            .as_array()
            .and_then(|k| k.first())
        {
            let key: StorageKeyName = serde_json::from_value(first.clone())
                .map_err(|e| ExecutorError::Permanent(e.to_string()))?;
            let before = preview.prior_state["key_created"][storage_key_name(key)].as_str();
            verification = verification.check(
                format!("{} was regenerated", storage_key_name(key)),
                json!(true),
                json!(regenerated_since(&resource, key, task, before)),
            );
        }
        Ok(verification)
    }

    async fn undo(
        &self,
        task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let (account, _) = target_of(task)?;
        Ok(Undone {
            not_restored: vec![format!(
                "a regenerated key of {} cannot be restored; consumers need the new key (SAS signed with the old one stop working)",
                account.as_str()
            )],
            ..Undone::default()
        })
    }

    async fn follow_up(
        &self,
        task: &Task,
        follow_up: &FollowUp,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let FollowUpStep::RegenerateStorageKey {
            account,
            key,
            created_before,
        } = &follow_up.step
        else {
            return Err(foreign_step(&follow_up.step, "rotate_storage_keys"));
        };
        not_yet(follow_up, ctx.rotation.clock.now())?;
        let resource = read_account(ctx, account).await?;
        if regenerated_since(&resource, *key, task, created_before.as_deref()) {
            return Ok(Applied {
                output: json!({"already_regenerated": [storage_key_name(*key)]}),
                ..Applied::default()
            });
        }
        Ok(Applied {
            sent: vec![regenerate(ctx, account, *key).await?],
            output: json!({"regenerated": [storage_key_name(*key)]}),
            ..Applied::default()
        })
    }
}
