//! The sweeper (the `DecisionSweeper` timer, or a loop in `serve`): one pass of steps over
//! the journal's indexes, never a scan of recent entries. Decisions that did not come in time
//! expire, escalate or proceed as the policy says; approved tasks whose approved copy was
//! never queued are queued again; due follow-ups are run ([`super::follow_ups`]).
//!
//! Each step reads what it needs through a store query (entries in a state, follow-ups due),
//! so it finds its work however many entries the journal holds. A step that fails does not
//! stop the others; the sweep then answers the first error after the report is logged.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use super::{follow_ups, message_id, task_of, Worker};
use crate::domain::{Parameters, Subject, Task};
use crate::error::Error;
use crate::journal::{JournalEntry, JournalError, TaskState, Verdict};
use crate::policy::OnTimeout;

/// How long an approved task may wait for its approved copy to be run before the sweeper
/// queues that copy again (it is deduplicated if it is there).
pub const REQUEUE_AFTER: Duration = Duration::from_secs(120);

/// The actor the sweeper writes into the journal's history.
pub const SWEEPER: &str = "sweeper";

/// Who approved a task that proceeded on its timeout.
pub const TIMEOUT_APPROVER: &str = "timeout";

/// The suffix of the message id of an escalated decision request.
pub const ESCALATION_SUFFIX: &str = "-escalation";

/// What one sweep did, per step (message ids).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Pending tasks whose decision timed out, now `expired`.
    pub expired: Vec<String>,
    /// Pending tasks whose decision was asked again of the escalation recipients.
    pub escalated: Vec<String>,
    /// Pending tasks approved by the timeout (policy `proceed`) and queued.
    pub proceeded: Vec<String>,
    /// Approved tasks queued again.
    pub requeued: Vec<String>,
    /// Done containment no person confirmed in time, now undone ([`super::expiry`]).
    pub containment_undone: Vec<String>,
    /// Follow-up steps performed.
    pub follow_ups_done: Vec<String>,
    /// Follow-up steps that failed and will be tried again later.
    pub follow_ups_retried: Vec<String>,
    /// Follow-up steps that failed for good (recorded, announced).
    pub follow_ups_failed: Vec<String>,
}

impl SweepReport {
    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "{} expired, {} escalated, {} proceeded, {} queued again, follow-ups: {} done, {} retried, {} failed, {} containment change(s) undone at expiry",
            self.expired.len(),
            self.escalated.len(),
            self.proceeded.len(),
            self.requeued.len(),
            self.follow_ups_done.len(),
            self.follow_ups_retried.len(),
            self.follow_ups_failed.len(),
            self.containment_undone.len()
        )
    }
}

/// One sweep: decisions older than `timeout` are settled as the policy says, approved tasks
/// that waited longer than [`REQUEUE_AFTER`] are queued again, due follow-ups are run.
pub async fn sweep(worker: &Worker, timeout: Duration) -> Result<SweepReport, Error> {
    let mut report = SweepReport::default();
    let steps = [
        (
            "decisions",
            settle_timed_out(worker, timeout, &mut report).await,
        ),
        ("requeue", requeue_approved(worker, &mut report).await),
        ("follow-ups", follow_ups::run_due(worker, &mut report).await),
        (
            "containment expiry",
            super::expiry::expire_containment(worker)
                .await
                .map(|undone| report.containment_undone = undone),
        ),
    ];
    let mut first_error = None;
    for (step, result) in steps {
        if let Err(err) = result {
            tracing::warn!(step, error = %err, "sweep step failed; the next sweep tries again");
            first_error.get_or_insert(err);
        }
    }
    tracing::info!(summary = %report.summary(), "sweep done");
    match first_error {
        Some(err) => Err(err),
        None => Ok(report),
    }
}

/// Pending tasks whose decision did not come within `timeout` (counted from the escalation
/// once escalated): expire, escalate once, or proceed, as [`crate::policy::Policy::on_timeout_for`]
/// decides.
async fn settle_timed_out(
    worker: &Worker,
    timeout: Duration,
    report: &mut SweepReport,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    for entry in worker
        .journal()
        .in_state(TaskState::PendingApproval)
        .await?
    {
        let since = entry
            .escalation
            .as_ref()
            .map(|e| e.at)
            .unwrap_or(entry.updated_at);
        if now - since < timeout {
            continue;
        }
        let task = task_of(&entry).ok();
        let decision = match &task {
            Some(task) => worker.timeout_policy.on_timeout_for(task),
            None => Default::default(),
        };
        let id = entry.message_id.to_string();
        match (decision.on_timeout, &task) {
            (OnTimeout::Escalate, Some(task)) if entry.escalation.is_none() => {
                if escalate(worker, &entry, task, &decision.escalate_to, timeout).await? {
                    report.escalated.push(id);
                }
            }
            (OnTimeout::Proceed, Some(task)) => {
                if proceed(worker, &entry, task, &decision.rule, timeout).await? {
                    report.proceeded.push(id);
                }
            }
            _ => {
                if expire(worker, &entry, task.as_ref(), &decision.rule, timeout).await? {
                    report.expired.push(id);
                }
            }
        }
    }
    Ok(())
}

fn hours(timeout: Duration) -> u64 {
    timeout.as_secs() / 3600
}

/// Expires a pending task and tells its recipients; `false` when it was decided meanwhile.
async fn expire(
    worker: &Worker,
    entry: &JournalEntry,
    task: Option<&Task>,
    rule: &str,
    timeout: Duration,
) -> Result<bool, Error> {
    let note = match &entry.escalation {
        Some(escalation) => format!(
            "no decision within {} hours, also after asking {}; expired, nothing was changed",
            hours(timeout),
            escalation.to.join(", ")
        ),
        None => format!(
            "no decision within {} hours; expired, nothing was changed",
            hours(timeout)
        ),
    };
    if let Some(task) = task {
        worker
            .announce(task, "expired", json!({ "note": note, "rule": rule }))
            .await?;
    }
    match worker.journal().expire(&entry.message_id, SWEEPER).await {
        Ok(_) => Ok(true),
        // Decided in the meantime: the decision stands.
        Err(JournalError::IllegalTransition { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Asks the decision again of `to`, once: a `request_decision` notification for this task
/// alone (its worker builds fresh links when it delivers it), published before the journal
/// records the escalation, so a failure in between only repeats the request (its id is
/// deduplicated), never loses it.
async fn escalate(
    worker: &Worker,
    entry: &JournalEntry,
    task: &Task,
    to: &[String],
    timeout: Duration,
) -> Result<bool, Error> {
    let steps: Vec<&str> = task.steps.iter().map(String::as_str).collect();
    let reason = format!(
        "{}: no decision within {} hours on {} on {}; you are asked to decide (the task expires after another {} hours without one)",
        steps.join(", "),
        hours(timeout),
        task.action,
        task.target,
        hours(timeout)
    );
    let mut request = Task::new(
        &task.alert,
        Parameters::RequestDecision {
            subject: Subject::from_label(&task.alert.resource),
            pending: vec![entry.message_id.clone()],
            notify_only: Vec::new(),
        },
        &steps,
        reason,
    )
    .checklist(vec![format!(
        "Approve or reject {} on {} (message id {}): {}",
        task.action, task.target, task.message_id, task.reason
    )])
    .recipients(to.to_vec());
    request.message_id = message_id(&format!("{}{ESCALATION_SUFFIX}", entry.message_id));
    worker.publisher.publish(&[request]).await?;
    Ok(worker
        .journal()
        .escalate(&entry.message_id, to, SWEEPER)
        .await?
        .is_some())
}

/// Approves a pending task as `timeout` (the policy's `proceed`) and queues it.
async fn proceed(
    worker: &Worker,
    entry: &JournalEntry,
    task: &Task,
    rule: &str,
    timeout: Duration,
) -> Result<bool, Error> {
    let approved = match worker
        .journal()
        .decide(&entry.message_id, Verdict::Approve, None, TIMEOUT_APPROVER)
        .await
    {
        Ok(approved) => approved,
        Err(JournalError::IllegalTransition { .. }) => return Ok(false),
        Err(err) => return Err(err.into()),
    };
    let note = format!(
        "no decision within {} hours; carried out as the policy says for its tasks ({rule}: on_timeout proceed)",
        hours(timeout)
    );
    worker
        .announce_after(task, "proceeded", json!({ "note": note, "rule": rule }))
        .await;
    // Not queued now: the requeue step queues it on a later sweep.
    if let Err(err) = worker.enqueue_approved(&approved).await {
        tracing::warn!(message_id = %entry.message_id, error = %err, "task approved by its timeout not queued yet; a later sweep queues it");
    }
    Ok(true)
}

/// Queues again every approved task that waited longer than [`REQUEUE_AFTER`].
async fn requeue_approved(worker: &Worker, report: &mut SweepReport) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    for entry in worker.journal().in_state(TaskState::Approved).await? {
        if now - entry.updated_at >= REQUEUE_AFTER {
            worker.enqueue_approved(&entry).await?;
            report.requeued.push(entry.message_id.to_string());
        }
    }
    Ok(())
}
