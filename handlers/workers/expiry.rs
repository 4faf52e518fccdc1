//! Containment expiry: a done isolation change that no person confirmed within the policy's
//! `containment_expiry_hours` is undone by the sweeper, and the recipients are told. A person
//! keeps it with the Keep link of the done notice or `defender-responder decide TASK confirm`.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::undo::UndoError;
use super::Worker;
use crate::domain::Queue;
use crate::error::Error;
use crate::journal::{JournalEntry, TaskState};

/// The actor the journal records for an undo the expiry made.
pub const EXPIRY_ACTOR: &str = "containment-expiry";

impl Worker {
    /// Undoes done isolation changes `expiry` after they were made unless a person confirmed
    /// them (`None`: containment stays until undone by hand; the policy's default).
    pub fn with_containment_expiry(mut self, expiry: Option<Duration>) -> Self {
        self.containment_expiry = expiry;
        self
    }

    /// How long an unconfirmed containment stays, when it expires at all.
    pub fn containment_expiry(&self) -> Option<Duration> {
        self.containment_expiry
    }
}

/// When the change of `entry` expires under `expiry`: only done isolation changes that wrote
/// something and that no person confirmed expire.
pub fn expires_at(entry: &JournalEntry, expiry: Option<Duration>) -> Option<OffsetDateTime> {
    let expiry = expiry?;
    let result = entry.result.as_ref()?.to_value();
    let wrote = result
        .get("sent")
        .and_then(|sent| sent.as_array())
        .is_some_and(|sent| !sent.is_empty());
    if entry.state != TaskState::Done
        || entry.queue != Queue::Isolation
        || entry.dry_run
        || entry.confirmation.is_some()
        || !wrote
    {
        return None;
    }
    Some(entry.done_at()? + expiry)
}

/// One expiry pass (the sweeper runs it): every done, unconfirmed isolation change older than
/// the worker's containment expiry is undone and announced. Answers the ids undone. A change
/// whose undo fails stays done, is announced (`containment_expiry_failed`), and is tried again
/// How many of the most recently changed journal entries one sweep checks for expired
/// containment.
const EXPIRY_WINDOW: usize = 1000;

/// on the next sweep; one another caller is changing is left for the next sweep.
pub async fn expire_containment(worker: &Worker) -> Result<Vec<String>, Error> {
    let Some(expiry) = worker.containment_expiry() else {
        return Ok(Vec::new());
    };
    let now = OffsetDateTime::now_utc();
    let mut undone = Vec::new();
    for entry in worker.journal().recent(EXPIRY_WINDOW).await? {
        let Some(due) = expires_at(&entry, Some(expiry)) else {
            continue;
        };
        if now < due {
            continue;
        }
        let hours = expiry.as_secs_f64() / 3600.0;
        match worker.undo(&entry.message_id, EXPIRY_ACTOR).await {
            Ok(_) => {
                tracing::info!(message_id = %entry.message_id, hours, "containment expired unconfirmed; undone");
                undone.push(entry.message_id.to_string());
            }
            // Confirmed, undone or claimed meanwhile: nothing to do now.
            Err(UndoError::Refused(_) | UndoError::UnknownTask(_) | UndoError::Busy(_)) => {}
            Err(UndoError::Failed(reason)) => {
                if let Ok(task) = super::task_of(&entry) {
                    let note = format!(
                        "no person confirmed this containment within {hours} hours, and undoing it failed: {reason}; it stays in place and is tried again at the next sweep"
                    );
                    worker
                        .announce(&task, "containment_expiry_failed", json!({ "note": note }))
                        .await?;
                }
            }
        }
    }
    Ok(undone)
}
