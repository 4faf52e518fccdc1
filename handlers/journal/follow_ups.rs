//! The journal's writes that keep a task's state: claiming and settling a scheduled follow-up
//! (compare-and-set, so two sweepers never run one step at once), and escalating a decision.

use time::OffsetDateTime;

use super::{
    Escalation, FollowUpClaim, HistoryEvent, Journal, JournalEntry, JournalError,
    ScheduledFollowUp, TaskState, CAS_ATTEMPTS,
};
use crate::domain::MessageId;
use crate::executors::FollowUp;

/// How a follow-up attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum FollowUpOutcome {
    /// The step was performed; `next` is the step the executor scheduled after it.
    Done {
        /// A summary of what was sent, for the history.
        summary: String,
        /// The next step, if any.
        next: Option<FollowUp>,
    },
    /// A transient failure: try again at `at` (Unix seconds).
    Retry {
        /// Why.
        error: String,
        /// When to try again.
        at: i64,
    },
    /// A permanent failure: recorded, never tried again.
    Failed {
        /// Why.
        error: String,
    },
}

/// What an amendment does with the entry it read.
enum Amendment {
    /// Nothing to write.
    Skip,
    /// Write it, recording `note` in the history when given.
    Write(Option<String>),
}

impl Journal {
    /// Claims the due follow-up of a task for the caller until `now` plus the run timeout
    /// (all Unix seconds of the caller's clock). Exactly one of several racing callers gets
    /// it; `None` for the others, for a follow-up not due (or claimed by a live sweeper), and
    /// for one whose task was undone since (it is cancelled, and the history says so).
    pub async fn claim_follow_up(
        &self,
        id: &MessageId,
        now: i64,
        actor: &str,
    ) -> Result<Option<ScheduledFollowUp>, JournalError> {
        let claim_id = uuid::Uuid::new_v4().to_string();
        let until = now.saturating_add(self.run_timeout.as_secs() as i64);
        let entry = self
            .amend(id, actor, |entry| {
                let state = entry.state;
                let Some(scheduled) = entry.follow_up.as_mut() else {
                    return Ok(Amendment::Skip);
                };
                if scheduled.due_at.is_none_or(|due| due > now) {
                    return Ok(Amendment::Skip);
                }
                if state != TaskState::Done {
                    let note = format!(
                        "follow-up {} cancelled: the task is {state}",
                        scheduled.step_name()
                    );
                    entry.follow_up = None;
                    return Ok(Amendment::Write(Some(note)));
                }
                scheduled.attempts += 1;
                scheduled.due_at = Some(until);
                scheduled.claim = Some(FollowUpClaim {
                    id: claim_id.clone(),
                    by: actor.to_string(),
                    until,
                });
                Ok(Amendment::Write(None))
            })
            .await?;
        Ok(entry
            .and_then(|entry| entry.follow_up)
            .filter(|f| f.claim.as_ref().is_some_and(|c| c.id == claim_id)))
    }

    /// Records how a claimed follow-up ended, in the history: the next step scheduled, a
    /// retry at its time, or a permanent failure kept with its reason. `None` when the claim
    /// `claim_id` is no longer the follow-up's (it lapsed and another sweeper took it over):
    /// nothing is written.
    pub async fn settle_follow_up(
        &self,
        id: &MessageId,
        claim_id: &str,
        outcome: FollowUpOutcome,
        actor: &str,
    ) -> Result<Option<JournalEntry>, JournalError> {
        self.amend(id, actor, |entry| {
            let Some(scheduled) = entry.follow_up.as_mut() else {
                return Ok(Amendment::Skip);
            };
            if scheduled.claim.as_ref().is_none_or(|c| c.id != claim_id) {
                return Ok(Amendment::Skip);
            }
            let step = scheduled.step_name();
            scheduled.claim = None;
            let note = match &outcome {
                FollowUpOutcome::Done { summary, next } => {
                    let task = scheduled.task.clone();
                    entry.follow_up = next.clone().map(|next| ScheduledFollowUp::new(&task, next));
                    match &entry.follow_up {
                        Some(next) => format!(
                            "follow-up {step} done: {summary}; next: {} from {}",
                            next.step_name(),
                            next.follow_up.not_before
                        ),
                        None => format!("follow-up {step} done: {summary}"),
                    }
                }
                FollowUpOutcome::Retry { error, at } => {
                    scheduled.due_at = Some(*at);
                    scheduled.error = Some(error.clone());
                    format!("follow-up {step} failed, retried from {at}: {error}")
                }
                FollowUpOutcome::Failed { error } => {
                    scheduled.due_at = None;
                    scheduled.error = Some(error.clone());
                    format!("follow-up {step} failed for good: {error}")
                }
            };
            Ok(Amendment::Write(Some(note)))
        })
        .await
    }

    /// Asks the decision on a pending task again of `to`: they become recipients (so they may
    /// decide) and the escalation is recorded; once only. `None` when the task is no longer
    /// pending or was escalated already.
    pub async fn escalate(
        &self,
        id: &MessageId,
        to: &[String],
        actor: &str,
    ) -> Result<Option<JournalEntry>, JournalError> {
        self.amend(id, actor, |entry| {
            if entry.state != TaskState::PendingApproval || entry.escalation.is_some() {
                return Ok(Amendment::Skip);
            }
            for person in to {
                if !entry
                    .recipients
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(person))
                {
                    entry.recipients.push(person.clone());
                }
            }
            entry.escalation = Some(Escalation {
                at: OffsetDateTime::now_utc(),
                to: to.to_vec(),
            });
            Ok(Amendment::Write(Some(format!(
                "no decision in time; asked again of {}",
                to.join(", ")
            ))))
        })
        .await
    }

    /// Changes an entry without changing its state, in one conditional write (re-read and
    /// re-decided after a lost race). A note goes into the history as a `state -> state` event.
    async fn amend(
        &self,
        id: &MessageId,
        actor: &str,
        mutate: impl Fn(&mut JournalEntry) -> Result<Amendment, JournalError>,
    ) -> Result<Option<JournalEntry>, JournalError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut entry, version) = self
                .store
                .load(id)
                .await?
                .ok_or_else(|| JournalError::NotFound(id.clone()))?;
            let note = match mutate(&mut entry)? {
                Amendment::Skip => return Ok(None),
                Amendment::Write(note) => note,
            };
            let now = OffsetDateTime::now_utc();
            entry.updated_at = now;
            if let Some(note) = &note {
                entry.history.push(HistoryEvent {
                    at: now,
                    from: Some(entry.state),
                    to: entry.state,
                    actor: actor.to_string(),
                    note: Some(note.clone()),
                });
            }
            entry.write_id = uuid::Uuid::new_v4().to_string();
            if self.store.replace(&entry, &version).await?.is_some() || self.landed(&entry).await? {
                if let Some(note) = &note {
                    tracing::info!(
                        message_id = %entry.message_id,
                        action = %entry.action,
                        state = entry.state.as_str(),
                        actor,
                        note = note.as_str(),
                        "journal: task amended"
                    );
                }
                return Ok(Some(entry));
            }
        }
        Err(JournalError::Contended(id.clone()))
    }
}
