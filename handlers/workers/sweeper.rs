//! The decision sweeper (the `DecisionSweeper` timer, or a loop in `serve`): expires
//! decisions that did not come in time, and re-enqueues approved tasks whose approved copy was
//! never queued (the decision was recorded but publishing it failed).

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{task_of, Worker};
use crate::error::Error;
use crate::journal::{JournalError, TaskState};

/// How many of the most recently changed journal entries one sweep looks at.
pub const SWEEP_WINDOW: usize = 1000;

/// How long an approved task may wait for its approved copy to be run before the sweeper
/// queues that copy again (it is deduplicated if it is there).
pub const REQUEUE_AFTER: Duration = Duration::from_secs(120);

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Pending tasks whose decision timed out, now `expired`.
    pub expired: Vec<String>,
    /// Approved tasks queued again.
    pub requeued: Vec<String>,
    /// Done containment no person confirmed in time, now undone ([`super::expiry`]).
    pub containment_undone: Vec<String>,
}

/// Expires every pending task older than `timeout` (and tells its recipients), and queues
/// again every approved task that has waited longer than [`REQUEUE_AFTER`].
pub async fn sweep(worker: &Worker, timeout: Duration) -> Result<SweepReport, Error> {
    let now = OffsetDateTime::now_utc();
    let mut report = SweepReport::default();
    for entry in worker.journal().recent(SWEEP_WINDOW).await? {
        let waited = now - entry.updated_at;
        match entry.state {
            TaskState::PendingApproval if waited >= timeout => {
                let note = format!(
                    "no decision within {} hours; expired, nothing was changed",
                    timeout.as_secs() / 3600
                );
                if let Ok(task) = task_of(&entry) {
                    worker
                        .announce(&task, "expired", json!({ "note": note }))
                        .await?;
                }
                match worker.journal().expire(&entry.message_id, "sweeper").await {
                    Ok(_) => report.expired.push(entry.message_id.to_string()),
                    // Decided in the meantime: the decision stands.
                    Err(JournalError::IllegalTransition { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            TaskState::Approved if waited >= REQUEUE_AFTER => {
                worker.enqueue_approved(&entry).await?;
                report.requeued.push(entry.message_id.to_string());
            }
            _ => {}
        }
    }
    report.containment_undone = super::expiry::expire_containment(worker).await?;
    Ok(report)
}
