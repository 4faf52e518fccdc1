//! Follow-up steps (disable the old versions after the grace window, remove old passwords,
//! regenerate the second storage key): scheduled in the journal with the run that answered
//! them, run by the sweeper once due.
//!
//! The sweeper claims each due follow-up with a compare-and-set write, so two sweepers (two
//! instances, a timer that fires twice) never run one at the same time; the claim lapses
//! after the journal's run timeout, so a sweeper that died mid-step is replaced. The result
//! goes into the entry's history; a next step is scheduled; a transient failure is tried
//! again with a growing delay, [`MAX_ATTEMPTS`] times at most; a permanent one is recorded
//! and announced. Only the journal holds any of it, so a restart loses nothing.

use std::time::Duration;

use serde_json::json;

use super::sweeper::{SweepReport, SWEEPER};
use super::Worker;
use crate::domain::Task;
use crate::error::Error;
use crate::executors::{Applied, ExecutorErrorKind};
use crate::journal::{FollowUpOutcome, ScheduledFollowUp};

/// How many due follow-ups one sweep takes on at most (the rest wait for the next sweep).
pub const BATCH: usize = 100;

/// How many times a follow-up is tried before a transient failure counts as permanent.
pub const MAX_ATTEMPTS: u32 = 8;

/// The first retry's delay; each next one doubles, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The longest delay between two tries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

/// What a run that answered `applied` leaves for the sweeper: its follow-up, with the task.
pub(crate) fn scheduled(task: &Task, applied: &Applied) -> Option<ScheduledFollowUp> {
    applied
        .follow_up
        .clone()
        .map(|follow_up| ScheduledFollowUp::new(task, follow_up))
}

/// The delay before try number `attempts + 1`: 1, 2, 4, … minutes, at most an hour.
pub fn retry_delay(attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    FIRST_RETRY_DELAY
        .saturating_mul(factor)
        .min(MAX_RETRY_DELAY)
}

/// Unix seconds on the executors' clock (the one `not_before` was computed with).
fn now(worker: &Worker) -> i64 {
    match &worker.context {
        Some(context) => context.rotation.clock.now(),
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    }
}

/// Runs every due follow-up this sweeper can claim (at most [`BATCH`]).
pub(super) async fn run_due(worker: &Worker, report: &mut SweepReport) -> Result<(), Error> {
    let now = now(worker);
    let journal = worker.journal();
    for entry in journal.follow_ups_due(now, BATCH).await? {
        let id = entry.message_id.clone();
        let Some(claimed) = journal.claim_follow_up(&id, now, SWEEPER).await? else {
            // Another sweeper took it, or it is no longer due (undone, settled meanwhile).
            continue;
        };
        let claim_id = claimed
            .claim
            .as_ref()
            .map(|claim| claim.id.clone())
            .unwrap_or_default();
        let step = claimed.step_name();
        let outcome = attempt(worker, &claimed, now).await;
        let settled = journal
            .settle_follow_up(&id, &claim_id, outcome.clone(), SWEEPER)
            .await?;
        if settled.is_none() {
            tracing::warn!(message_id = %id, step, "follow-up claim lapsed before its result was recorded; the sweeper that took it over records its own");
            continue;
        }
        let label = format!("{id}:{step}");
        match outcome {
            FollowUpOutcome::Done { .. } => report.follow_ups_done.push(label),
            FollowUpOutcome::Retry { .. } => report.follow_ups_retried.push(label),
            FollowUpOutcome::Failed { error } => {
                worker
                    .announce_after(
                        &claimed.task,
                        "follow_up_failed",
                        json!({ "step": step, "error": error }),
                    )
                    .await;
                report.follow_ups_failed.push(label);
            }
        }
    }
    Ok(())
}

/// One try of a claimed follow-up through its task's executor.
async fn attempt(worker: &Worker, claimed: &ScheduledFollowUp, now: i64) -> FollowUpOutcome {
    let retry = |error: String, after: Option<Duration>| {
        if claimed.attempts >= MAX_ATTEMPTS {
            FollowUpOutcome::Failed {
                error: format!("gave up after {} attempts: {error}", claimed.attempts),
            }
        } else {
            let after = after.unwrap_or_else(|| retry_delay(claimed.attempts));
            FollowUpOutcome::Retry {
                error,
                at: now.saturating_add(after.as_secs().max(1) as i64),
            }
        }
    };
    let Some((executor, context)) = worker.executor(&claimed.task) else {
        // This instance cannot reach Azure (or has no executor of the action): another can.
        return retry(
            format!(
                "no executor carries out {} on this instance",
                claimed.task.action
            ),
            None,
        );
    };
    match executor
        .follow_up(&claimed.task, &claimed.follow_up, &context)
        .await
    {
        Ok(applied) => FollowUpOutcome::Done {
            summary: sent_summary(&applied),
            next: applied.follow_up,
        },
        Err(err) if err.kind() == ExecutorErrorKind::Retryable => {
            retry(err.to_string(), err.retry_after())
        }
        Err(err) => FollowUpOutcome::Failed {
            error: err.to_string(),
        },
    }
}

/// What a follow-up sent: `PATCH https://…/secrets/a/v1 (200)`, or `nothing to change`.
fn sent_summary(applied: &Applied) -> String {
    if applied.sent.is_empty() {
        return "nothing to change".to_string();
    }
    applied
        .sent
        .iter()
        .map(|sent| format!("{} {} ({})", sent.method, sent.url, sent.status))
        .collect::<Vec<_>>()
        .join(", ")
}
