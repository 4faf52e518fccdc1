//! Undo of a done change: the task, change and prior state are read back from the journal, the
//! executor writes the prior state back under the same leases the change took, the resource is
//! read back to check it, and the task becomes `undone` (one caller only; what could not be
//! restored is recorded). The `undo` command, an Undo link and the containment expiry all
//! come here.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{release, Worker};
use crate::domain::{Action, MessageId, Queue, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, Preview, SentRequest, Verification,
};
use crate::journal::{JournalEntry, JournalError, RawJson, TaskState};

/// What an undo did: the change it reverted, what it wrote back, what it read back, and what
/// it could not restore. Recorded as the entry's `undo_result`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UndoReport {
    /// The task.
    pub message_id: MessageId,
    /// Its action.
    pub action: Action,
    /// Its target.
    pub target: String,
    /// The change that was reverted, in words.
    pub change: String,
    /// The state before the change, which the undo wrote back.
    pub prior_state: Value,
    /// Every write the undo sent.
    pub sent: Vec<SentRequest>,
    /// The resource read back after the undo, compared with the prior state (`None` when
    /// the action has nothing to read back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What could not be restored, in words (sessions revoked, a mismatch read back).
    pub not_restored: Vec<String>,
    /// Who undid it.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why nothing was undone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UndoError {
    /// No journal entry for the task.
    #[error("no task {0} is recorded in the journal")]
    UnknownTask(MessageId),
    /// The task has no change to undo (not done, a dry run, nothing changed, not automated,
    /// undone already); nothing was written.
    #[error("{0}")]
    Refused(String),
    /// Another caller is changing the task or its resource now, or the journal is
    /// unavailable; nothing was written, try again.
    #[error("{0}")]
    Busy(String),
    /// The undo was tried and failed (recorded; the task stays done and may be undone again).
    #[error("{0}")]
    Failed(String),
}

impl From<JournalError> for UndoError {
    fn from(err: JournalError) -> Self {
        match err {
            JournalError::NotFound(id) => UndoError::UnknownTask(id),
            other => UndoError::Busy(format!("the journal: {other}")),
        }
    }
}

/// Everything an undo needs, rebuilt from a done entry; a refusal says why it cannot be.
fn undoable(entry: &JournalEntry) -> Result<(Task, Preview, Applied), UndoError> {
    let id = &entry.message_id;
    let refuse = |why: String| Err(UndoError::Refused(format!("task {id}: {why}")));
    match entry.state {
        TaskState::Done => {}
        TaskState::Undone => {
            let by = entry
                .history
                .iter()
                .rev()
                .find(|event| event.to == TaskState::Undone)
                .map(|event| format!(" by {}", event.actor))
                .unwrap_or_default();
            return refuse(format!("already undone{by}; nothing more to do"));
        }
        TaskState::NotAutomated => {
            return refuse(
                "not automated: nothing was changed automatically, so there is nothing to undo"
                    .into(),
            )
        }
        state => {
            return refuse(format!(
                "is {state}, not done; only a done change can be undone"
            ))
        }
    }
    if entry.queue == Queue::Notification {
        return refuse("a notification changes nothing to undo".into());
    }
    let result = entry
        .result
        .as_ref()
        .map(RawJson::to_value)
        .unwrap_or(Value::Null);
    if result.get("dry_run") == Some(&Value::Bool(true)) || entry.dry_run {
        return refuse("was a dry run: nothing was changed, so there is nothing to undo".into());
    }
    if result.get("noop") == Some(&Value::Bool(true)) {
        return refuse("changed nothing (the target was already in the contained state)".into());
    }
    let (Some(recorded), Some(prior_state)) = (
        entry.preview.as_ref().map(RawJson::to_value),
        entry.prior_state.as_ref().map(RawJson::to_value),
    ) else {
        return refuse("the journal holds no recorded change and prior state for it".into());
    };
    let task = super::task_of(entry).map_err(|err| UndoError::Refused(err.to_string()))?;
    let read = |what: &str| recorded.get(what).cloned().unwrap_or(Value::Null);
    let change: Change = serde_json::from_value(read("change")).map_err(|err| {
        UndoError::Refused(format!(
            "task {id}: the recorded change cannot be read: {err}"
        ))
    })?;
    let leases: Vec<String> = serde_json::from_value(read("leases")).unwrap_or_default();
    let subscriptions: Vec<String> =
        serde_json::from_value(read("subscriptions")).unwrap_or_default();
    let applied: Applied = serde_json::from_value(result.clone()).map_err(|err| {
        UndoError::Refused(format!(
            "task {id}: the recorded result cannot be read: {err}"
        ))
    })?;
    if applied.sent.is_empty() {
        return refuse("sent no write, so there is nothing to undo".into());
    }
    let preview = Preview {
        change,
        prior_state,
        leases,
        subscriptions,
    };
    Ok((task, preview, applied))
}

impl Worker {
    /// Undoes the done change of task `id` as `actor`: restores the prior state recorded
    /// before the change, under a lease on each resource the change leased, reads the
    /// resource back, and records the task `undone`. Two calls never both run: the undo is
    /// claimed in the journal first. Refused, with the reason, for unknown ids, tasks not
    /// done, dry runs, changes that changed nothing, and tasks not automated.
    pub async fn undo(&self, id: &MessageId, actor: &str) -> Result<UndoReport, UndoError> {
        let entry = self
            .journal
            .get(id)
            .await?
            .ok_or_else(|| UndoError::UnknownTask(id.clone()))?;
        let (task, preview, applied) = undoable(&entry)?;
        let Some((executor, context)) = self.executor_for(&task) else {
            return Err(UndoError::Refused(format!(
                "task {id}: no executor for {} is configured on this instance (the Azure clients are needed to undo)",
                task.action
            )));
        };
        match self.journal.claim_undo(id, actor).await {
            Ok(_) => {}
            Err(JournalError::IllegalTransition { .. }) => {
                let entry = self.journal.get(id).await?.unwrap_or(entry);
                return Err(undoable(&entry).err().unwrap_or_else(|| {
                    UndoError::Busy(format!("task {id} changed meanwhile; try again"))
                }));
            }
            Err(err @ JournalError::UndoInProgress { .. }) => {
                return Err(UndoError::Busy(err.to_string()))
            }
            Err(err) => return Err(err.into()),
        }
        let mut leases = Vec::new();
        for resource in &preview.leases {
            match self
                .journal
                .hold_lease(resource, actor, self.lease_ttl)
                .await
            {
                Ok(Some(lease)) => leases.push(lease),
                held => {
                    release(leases).await;
                    let reason = match held {
                        Err(err) => format!("the lease on {resource} cannot be taken: {err}"),
                        _ => format!("{resource} is being changed by another run"),
                    };
                    self.journal.undo_failed(id, &reason, actor).await?;
                    return Err(UndoError::Busy(format!(
                        "task {id}: {reason}; nothing was undone, try again"
                    )));
                }
            }
        }
        let undone = executor.undo(&task, &preview, &applied, &context).await;
        let lost = leases.iter().any(|lease| lease.is_lost());
        let verification = match &undone {
            Ok(_) => read_back(&*executor, &task, &preview, &context).await,
            Err(_) => None,
        };
        release(leases).await;
        let undone = match undone {
            Ok(undone) => undone,
            Err(err) => {
                let reason = format!("the undo of task {id} failed: {err}");
                self.journal.undo_failed(id, &reason, actor).await?;
                return Err(UndoError::Failed(reason));
            }
        };
        let mut not_restored = undone.not_restored;
        let verification = match verification {
            Some(Ok(verification)) => {
                for check in verification.failures() {
                    not_restored.push(format!(
                        "read back after the undo, {} is {} (before the change it was {})",
                        check.what, check.actual, check.expected
                    ));
                }
                Some(verification)
            }
            Some(Err(reason)) => {
                not_restored.push(reason);
                None
            }
            None => None,
        };
        if lost {
            not_restored.push(
                "the lease on the resource was lost during the undo: another change may have run at the same time"
                    .into(),
            );
        }
        let report = UndoReport {
            message_id: id.clone(),
            action: task.action,
            target: task.target.clone(),
            change: preview.change.summary.clone(),
            prior_state: preview.prior_state.clone(),
            sent: undone.sent,
            verification,
            not_restored,
            by: actor.to_string(),
            at: OffsetDateTime::now_utc(),
        };
        let recorded = serde_json::to_value(&report).unwrap_or(Value::Null);
        self.journal.undone(id, recorded, actor).await?;
        tracing::info!(message_id = %id, action = %task.action, by = actor, not_restored = report.not_restored.len(), "worker: change undone");
        self.announce_after(
            &task,
            "undone",
            json!({ "by": actor, "change": report.change, "not_restored": report.not_restored }),
        )
        .await;
        Ok(report)
    }
}

/// Reads the resource back after an undo, where the action allows it: the executor's preview
/// (which writes nothing) reads the state it would change, which must be the recorded prior
/// state again, key by key. `None` when the action has nothing to compare; `Err` says why it
/// could not be read.
async fn read_back(
    executor: &dyn Executor,
    task: &Task,
    recorded: &Preview,
    context: &ExecutorContext,
) -> Option<Result<Verification, String>> {
    if task.queue != Queue::Isolation {
        // A rotation's undo leaves new versions in place by design; its prior state is not
        // what a read finds afterwards.
        return None;
    }
    let now = match executor.preview(task, context).await {
        Ok(now) => now,
        Err(err) => {
            return Some(Err(format!(
                "the resource could not be read back after the undo: {err}"
            )))
        }
    };
    let mut verification = Verification::default();
    match (&recorded.prior_state, &now.prior_state) {
        (Value::Object(before), Value::Object(after)) => {
            for (key, value) in before {
                verification = verification.check(
                    key.clone(),
                    value.clone(),
                    after.get(key).cloned().unwrap_or(Value::Null),
                );
            }
        }
        (before, after) => {
            verification = verification.check("state", before.clone(), after.clone());
        }
    }
    Some(Ok(verification))
}

impl Worker {
    /// The completion notice of a done change (kind `done`): what was changed, and the signed
    /// Undo link (and, when a containment expiry applies, the Keep link and when it expires).
    /// Called after a verified run is recorded `done`; a failure to send is logged (the journal
    /// holds the outcome).
    pub async fn announce_done(&self, task: &Task) {
        let entry = match self.journal.get(&task.message_id).await {
            Ok(Some(entry)) if entry.state == TaskState::Done => entry,
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(message_id = %task.message_id, error = %err, "done notice not sent: the journal entry cannot be read");
                return;
            }
        };
        let expires_at = super::expiry::expires_at(&entry, self.containment_expiry);
        let mut detail = json!({
            "summary": entry.preview.as_ref().and_then(|p| p.to_value().get_mut("summary").map(Value::take)).unwrap_or(Value::Null),
            "undo_command": format!("defender-responder undo {}", entry.message_id),
        });
        if let Some(at) = expires_at {
            detail["expires_at"] = json!(at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default());
        }
        if let Some(desk) = &self.desk {
            match desk.change_links(&entry, OffsetDateTime::now_utc()) {
                Ok(links) => {
                    for (kind, url) in links {
                        if kind == crate::approval::LinkKind::Undo || expires_at.is_some() {
                            detail[kind.as_str()] = json!(url.as_str());
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(message_id = %task.message_id, error = %err, "done notice without an undo link")
                }
            }
        }
        self.announce_after(task, "done", detail).await;
    }
}
