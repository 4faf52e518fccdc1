//! The journal: every task's life (received, decided, run, done), shared by every instance,
//! with compare-and-set transitions and per-resource leases.
//!
//! [`JournalStore`] is the one storage trait (SQLite for the embedded default, Azure Blob
//! storage deployed); [`Journal`] holds the rules on top of it: which transitions are legal,
//! that only one caller wins [`Journal::begin_run`], and the structured log event every
//! transition emits.

mod blob;
pub mod command;
mod entry;
mod follow_ups;
mod lease;
mod render;
mod sqlite;

#[cfg(test)]
mod follow_ups_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::domain::{MessageId, Task};
use crate::error::Error;

pub(crate) use blob::storage_credential;
pub use blob::{BlobJournal, BlobJournalSettings};
pub use entry::{
    preview_hash, Confirmation, Decision, Escalation, FollowUpClaim, HistoryEvent, JournalEntry,
    Lease, RawJson, ScheduledFollowUp, TaskState, UndoAttempt, Verdict, Version,
};
pub use follow_ups::FollowUpOutcome;
pub use lease::HeldLease;
pub use render::{render_json, render_table};
pub use sqlite::SqliteJournal;

/// How long a run may hold a task before another delivery may take it over (a crashed
/// instance never finishes its run). A live run cannot last longer: the Functions host ends
/// every invocation after `functionTimeout` (5 minutes in host.json).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(6 * 60);

/// How often a transition re-reads and retries after losing a compare-and-set race to a
/// writer whose change still leaves the transition legal.
const CAS_ATTEMPTS: usize = 8;

/// What can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No entry for this task.
    #[error("no journal entry for task {0}")]
    NotFound(MessageId),
    /// The task is not in a state this transition starts from (e.g. a second `begin_run`, or
    /// a decision on a task already decided).
    #[error("task {message_id} is {from}; it cannot become {to}")]
    IllegalTransition {
        /// The task.
        message_id: MessageId,
        /// Its state when the transition was refused.
        from: TaskState,
        /// The state asked for.
        to: TaskState,
    },
    /// A decision was made on a change other than the one now recorded.
    #[error("the change of task {message_id} is not the one decided on (decided on {decided}, now {current})")]
    PreviewChanged {
        /// The task.
        message_id: MessageId,
        /// The hash the decision was made on.
        decided: String,
        /// The hash of the change now recorded (`none` when none is).
        current: String,
    },
    /// Another caller is undoing the task now.
    #[error("task {message_id} is being undone by {by} (started {started})")]
    UndoInProgress {
        /// The task.
        message_id: MessageId,
        /// Who started the undo.
        by: String,
        /// When (RFC 3339).
        started: String,
    },
    /// Another writer kept changing the entry; the caller should retry later.
    #[error("task {0}: too many concurrent writers, try again")]
    Contended(MessageId),
    /// A lease that was renewed or released is no longer held by this caller.
    #[error("the lease on {0} is no longer held")]
    LeaseLost(String),
    /// A lease asked for with a duration the storage cannot give.
    #[error("invalid lease: {0}")]
    InvalidLease(String),
    /// The storage failed (unreachable, throttled, refused); a retry may succeed.
    #[error("journal storage: {0}")]
    Storage(String),
}

impl From<JournalError> for Error {
    fn from(err: JournalError) -> Self {
        match err {
            // The journal must never be skipped: a storage failure is redelivered, never
            // acknowledged without a record.
            JournalError::Storage(_)
            | JournalError::Contended(_)
            | JournalError::LeaseLost(_)
            | JournalError::UndoInProgress { .. } => Error::Transient(err.to_string()),
            JournalError::NotFound(_)
            | JournalError::IllegalTransition { .. }
            | JournalError::PreviewChanged { .. }
            | JournalError::InvalidLease(_) => Error::Permanent(err.to_string()),
        }
    }
}

impl From<rusqlite::Error> for JournalError {
    fn from(err: rusqlite::Error) -> Self {
        JournalError::Storage(format!("sqlite: {err}"))
    }
}

/// The storage under the journal: entries with a version, replaced only when the version
/// still matches, and leases on named resources.
#[async_trait::async_trait]
pub trait JournalStore: Send + Sync {
    /// Short name for logs and the CLI ("sqlite", "blob").
    fn name(&self) -> &'static str;
    /// Stores a new entry; `None` when an entry for the task already exists (left unchanged).
    async fn create(&self, entry: &JournalEntry) -> Result<Option<Version>, JournalError>;
    /// The entry of a task and its version.
    async fn load(&self, id: &MessageId) -> Result<Option<(JournalEntry, Version)>, JournalError>;
    /// Replaces an entry if its version is still `expected`; `Ok(None)` when another writer
    /// changed it first (nothing written).
    async fn replace(
        &self,
        entry: &JournalEntry,
        expected: &Version,
    ) -> Result<Option<Version>, JournalError>;
    /// Reads the entry of a task, applies `update` to it and stores the result if no other
    /// writer changed the entry in between ([`Updated::Conflict`] when one did: nothing
    /// written). An error from `update` writes nothing. The default is [`JournalStore::load`]
    /// then [`JournalStore::replace`]; a store that can read and write in one step (SQLite: one
    /// transaction, one trip off the async threads) does so.
    async fn update(&self, id: &MessageId, update: EntryUpdate) -> Result<Updated, JournalError> {
        let (entry, version) = self
            .load(id)
            .await?
            .ok_or_else(|| JournalError::NotFound(id.clone()))?;
        let entry = update(entry)?;
        Ok(match self.replace(&entry, &version).await? {
            Some(_) => Updated::Written(entry),
            None => Updated::Conflict(entry),
        })
    }
    /// [`JournalStore::update`], giving `leases` back when the entry is written (SQLite: in the
    /// same transaction). Nothing is given back when nothing is written. The default updates,
    /// then releases each lease; a lease that cannot be released is logged (it lapses).
    async fn update_releasing(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        leases: &[Lease],
    ) -> Result<Updated, JournalError> {
        let updated = self.update(id, update).await?;
        if let Updated::Written(_) = &updated {
            release_each(self, leases).await;
        }
        Ok(updated)
    }
    /// [`JournalStore::update`], then, when the entry is written, the leases on `resources`
    /// for `holder` and `ttl`, in order, as [`JournalStore::acquire_lease`] takes them (SQLite:
    /// in the same transaction). [`Leased::Busy`] names the first resource someone else holds;
    /// none of the others is kept then. Nothing is taken when nothing is written.
    async fn update_acquiring(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        resources: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<(Updated, Leased), JournalError> {
        let updated = self.update(id, update).await?;
        if let Updated::Conflict(_) = &updated {
            return Ok((updated, Leased::Taken(Vec::new())));
        }
        let leased = acquire_each(self, resources, holder, ttl).await?;
        Ok((updated, leased))
    }
    /// [`JournalStore::create`], then every entry of the entry's alert as
    /// [`JournalStore::for_alert`] reads them (SQLite: in the same transaction).
    async fn create_listing_alert(
        &self,
        entry: &JournalEntry,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        let created = self.create(entry).await?;
        let entries = self.for_alert(&entry.system_alert_id).await?;
        Ok((created, entries))
    }
    /// [`JournalStore::create`] (then [`JournalStore::create_listing_alert`]'s listing when
    /// `list_alert`) of a run's entry recorded already claimed. The run's next write always
    /// comes before it changes anything outside the journal, and a run lost with this write
    /// has changed nothing, so the store may let this write become durable with that next one
    /// (SQLite: committed without a sync of its own). The default is `create` /
    /// `create_listing_alert`.
    async fn create_claimed(
        &self,
        entry: &JournalEntry,
        list_alert: bool,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        if list_alert {
            return self.create_listing_alert(entry).await;
        }
        Ok((self.create(entry).await?, Vec::new()))
    }
    /// Every entry of an alert, oldest first.
    async fn for_alert(&self, system_alert_id: &str) -> Result<Vec<JournalEntry>, JournalError>;
    /// The most recently changed entries, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError>;
    /// Every entry now in `state`, least recently changed first, however many entries the
    /// journal holds (an index, not a scan of recent ones). Only [`INDEXED_STATES`] are
    /// indexed; other states answer an empty list.
    async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError>;
    /// Up to `limit` entries whose follow-up is due at or before `now` (Unix seconds),
    /// earliest first (an index on the due time).
    async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError>;
    /// Takes the lease on `resource` for `ttl`; `None` while someone else holds it.
    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, JournalError>;
    /// Extends a held lease by its duration; [`JournalError::LeaseLost`] when it was lost.
    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, JournalError>;
    /// Gives a lease back; releasing a lease already lost is [`JournalError::LeaseLost`].
    async fn release_lease(&self, lease: &Lease) -> Result<(), JournalError>;
}

/// Gives each lease back on its own, logging those that cannot be (they lapse by themselves).
async fn release_each<S: JournalStore + ?Sized>(store: &S, leases: &[Lease]) {
    for lease in leases {
        if let Err(err) = store.release_lease(lease).await {
            tracing::warn!(resource = %lease.resource, error = %err, "lease release failed; it lapses by itself");
        }
    }
}

/// Takes the leases on `resources` one by one, in order; when one is held elsewhere (or the
/// storage fails) those taken are given back.
async fn acquire_each<S: JournalStore + ?Sized>(
    store: &S,
    resources: &[String],
    holder: &str,
    ttl: Duration,
) -> Result<Leased, JournalError> {
    let mut taken = Vec::new();
    for resource in resources {
        match store.acquire_lease(resource, holder, ttl).await {
            Ok(Some(lease)) => taken.push(lease),
            Ok(None) => {
                release_each(store, &taken).await;
                return Ok(Leased::Busy(resource.clone()));
            }
            Err(err) => {
                release_each(store, &taken).await;
                return Err(err);
            }
        }
    }
    Ok(Leased::Taken(taken))
}

/// The leases [`JournalStore::update_acquiring`] took.
#[derive(Clone, Debug)]
pub enum Leased {
    /// Every lease asked for, in order.
    Taken(Vec<Lease>),
    /// This resource is held by someone else; no lease is held.
    Busy(String),
}

/// How [`JournalStore::update`] changes an entry: the stored entry in, the entry to store in
/// its place out (or an error: nothing is written). Called again after a lost race.
pub type EntryUpdate =
    Arc<dyn Fn(JournalEntry) -> Result<JournalEntry, JournalError> + Send + Sync + 'static>;

/// What [`JournalStore::update`] did.
#[derive(Clone, Debug)]
pub enum Updated {
    /// The entry is stored as updated.
    Written(JournalEntry),
    /// Another writer changed the entry between the read and the write, or so the storage
    /// answered (see [`Journal::landed`]): the entry that was to be written.
    Conflict(JournalEntry),
}

/// The states [`JournalStore::in_state`] finds: those the sweeper acts on.
pub const INDEXED_STATES: [TaskState; 2] = [TaskState::PendingApproval, TaskState::Approved];

/// Shared handle to a journal store.
pub type SharedJournalStore = Arc<dyn JournalStore>;

/// What [`Journal::receive`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// The entry as it is now.
    pub entry: JournalEntry,
    /// True when this call recorded the task; false for a redelivery of a task already known.
    pub first_time: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// The change was made (or the notification delivered) and verified.
    Done {
        /// What the executor or channel answered.
        result: Value,
        /// What the verifying read found (`null` when the action has nothing to verify).
        verification: Value,
    },
    /// The run failed; `retryable` tells whether a redelivery may run it again.
    Failed {
        /// Why, in words.
        error: String,
        /// Whether the failure was transient.
        retryable: bool,
    },
}

/// The journal's rules over a [`JournalStore`].
#[derive(Clone)]
pub struct Journal {
    store: SharedJournalStore,
    run_timeout: Duration,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("store", &self.store.name())
            .field("run_timeout", &self.run_timeout)
            .finish()
    }
}

impl Journal {
    /// The journal over `store`, with the default run timeout.
    pub fn new(store: SharedJournalStore) -> Self {
        Journal {
            store,
            run_timeout: DEFAULT_RUN_TIMEOUT,
        }
    }

    /// Changes how long a run may hold a task before another delivery may take it over.
    pub fn with_run_timeout(mut self, run_timeout: Duration) -> Self {
        self.run_timeout = run_timeout;
        self
    }

    /// How long a run may hold a task before another delivery may take it over.
    pub fn run_timeout(&self) -> Duration {
        self.run_timeout
    }

    /// The storage underneath.
    pub fn store(&self) -> &SharedJournalStore {
        &self.store
    }

    /// Takes the lease on `resource` (a normalised resource id) and keeps it renewed until
    /// [`HeldLease::release`]; `None` while another worker holds it.
    pub async fn hold_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, JournalError> {
        HeldLease::acquire(self.store.clone(), resource, holder, ttl).await
    }

    /// Records that a task was received; a redelivery finds the entry already there and
    /// changes nothing.
    pub async fn receive(&self, task: &Task, actor: &str) -> Result<Received, JournalError> {
        let entry = JournalEntry::received(task, actor, OffsetDateTime::now_utc());
        let (entry, first_time) = self.create_or_load(entry).await?;
        if first_time {
            log_transition(&entry, None, TaskState::Received, actor);
        }
        Ok(Received { entry, first_time })
    }

    /// [`Journal::receive`] for a task its worker runs at once: a first delivery is recorded
    /// already claimed for the run (`received`, then `running`, both in its history) in one
    /// write, as [`Journal::begin_run`] right after [`Journal::receive`] would leave it. A
    /// redelivery finds the entry as it is, not claimed: the caller goes on as after
    /// [`Journal::receive`]. The second value tells whether the run is claimed.
    ///
    /// The write may become durable only with the entry's next write
    /// ([`JournalStore::create_claimed`]): the caller changes nothing outside the journal
    /// before that write (a preview reads; the prior state is recorded before the change).
    pub async fn receive_claiming_run(
        &self,
        task: &Task,
        actor: &str,
    ) -> Result<(Received, bool), JournalError> {
        let (received, claimed, _) = self.receive_claiming(task, actor, false).await?;
        Ok((received, claimed))
    }

    /// [`Journal::receive_claiming_run`], also reading every entry of the task's alert right
    /// after the write, as [`Journal::for_alert`] would (SQLite: in the same transaction, one
    /// trip instead of two).
    pub async fn receive_claiming_run_listing_alert(
        &self,
        task: &Task,
        actor: &str,
    ) -> Result<(Received, bool, Vec<JournalEntry>), JournalError> {
        self.receive_claiming(task, actor, true).await
    }

    async fn receive_claiming(
        &self,
        task: &Task,
        actor: &str,
        list_alert: bool,
    ) -> Result<(Received, bool, Vec<JournalEntry>), JournalError> {
        let now = OffsetDateTime::now_utc();
        let received = JournalEntry::received(task, actor, now);
        let entry = moved(
            received,
            &task.message_id,
            TaskState::Running,
            actor,
            &claim_run(self.run_timeout, actor.to_string()),
        )?;
        let (created, alert_entries) = self.store.create_claimed(&entry, list_alert).await?;
        let (entry, landed) = self.created_or_loaded(entry, created).await?;
        if landed {
            log_transition(&entry, None, TaskState::Received, actor);
            log_transition(&entry, Some(TaskState::Received), TaskState::Running, actor);
        }
        Ok((
            Received {
                entry,
                first_time: landed,
            },
            landed,
            alert_entries,
        ))
    }

    /// Creates `entry`, or loads the entry already there. The flag is true when the stored
    /// entry is `entry`: created now, or by a retried create whose first attempt landed.
    async fn create_or_load(
        &self,
        entry: JournalEntry,
    ) -> Result<(JournalEntry, bool), JournalError> {
        let created = self.store.create(&entry).await?;
        self.created_or_loaded(entry, created).await
    }

    /// After [`JournalStore::create`] answered `created` for `entry`: `entry` when it was
    /// created, else the entry already there (see [`Journal::create_or_load`]).
    async fn created_or_loaded(
        &self,
        entry: JournalEntry,
        created: Option<Version>,
    ) -> Result<(JournalEntry, bool), JournalError> {
        if created.is_some() {
            return Ok((entry, true));
        }
        let (stored, _) = self
            .store
            .load(&entry.message_id)
            .await?
            .ok_or_else(|| JournalError::NotFound(entry.message_id.clone()))?;
        let landed = stored.write_id == entry.write_id;
        Ok((stored, landed))
    }

    /// The entry of one task.
    pub async fn get(&self, id: &MessageId) -> Result<Option<JournalEntry>, JournalError> {
        Ok(self.store.load(id).await?.map(|(entry, _)| entry))
    }

    /// Every entry of one alert, oldest first.
    pub async fn for_alert(
        &self,
        system_alert_id: &str,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.store.for_alert(system_alert_id).await
    }

    /// The most recently changed entries, newest first.
    pub async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError> {
        self.store.recent(limit).await
    }

    /// Every entry now in `state` (one of [`INDEXED_STATES`]), least recently changed first.
    pub async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError> {
        self.store.in_state(state).await
    }

    /// Up to `limit` entries whose follow-up is due at `now` (Unix seconds), earliest first.
    pub async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        self.store.follow_ups_due(now, limit).await
    }

    /// A task that waits for a person: records the exact change it would make (the preview)
    /// and its hash, which every decision link is bound to.
    pub async fn await_approval(
        &self,
        id: &MessageId,
        preview: Value,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let hash = preview_hash(&preview);
        let preview = RawJson::from_value(&preview);
        self.transition(id, TaskState::PendingApproval, actor, move |entry, _| {
            entry.preview = Some(preview.clone());
            entry.preview_hash = Some(hash.clone());
            Ok(())
        })
        .await
    }

    /// Records a person's decision, once. `decided_hash` is the hash of the change the person
    /// saw; a decision on any other change is refused with [`JournalError::PreviewChanged`].
    pub async fn decide(
        &self,
        id: &MessageId,
        verdict: Verdict,
        decided_hash: Option<&str>,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let to = match verdict {
            Verdict::Approve => TaskState::Approved,
            Verdict::Reject => TaskState::Rejected,
        };
        let decided_hash = decided_hash.map(str::to_string);
        let actor_owned = actor.to_string();
        self.transition(id, to, actor, move |entry, now| {
            if let Some(decided) = &decided_hash {
                if entry.preview_hash.as_deref() != Some(decided.as_str()) {
                    return Err(JournalError::PreviewChanged {
                        message_id: entry.message_id.clone(),
                        decided: decided.clone(),
                        current: entry
                            .preview_hash
                            .clone()
                            .unwrap_or_else(|| "none".to_string()),
                    });
                }
            }
            entry.decision = Some(Decision {
                verdict,
                by: actor_owned.clone(),
                at: now,
            });
            Ok(())
        })
        .await
    }

    /// A pending task whose decision did not come in time.
    pub async fn expire(&self, id: &MessageId, actor: &str) -> Result<JournalEntry, JournalError> {
        self.transition(id, TaskState::Expired, actor, |_, _| Ok(()))
            .await
    }

    /// Claims a task for running. Exactly one caller wins: every other concurrent or later
    /// caller gets [`JournalError::IllegalTransition`] naming the state it found (`running`,
    /// `done`, …). A run left `running` longer than the run timeout (a crashed instance) may
    /// be claimed again; a run that failed retryably may be retried, one that failed for good
    /// may not.
    pub async fn begin_run(
        &self,
        id: &MessageId,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let claim = claim_run(self.run_timeout, actor.to_string());
        self.transition(id, TaskState::Running, actor, claim).await
    }

    /// Saves what the running task is about to change: the state before the change (for
    /// `undo`) and the exact requests. Only while `running`, before the first write.
    pub async fn record_prior_state(
        &self,
        id: &MessageId,
        prior_state: Value,
        preview: Value,
    ) -> Result<JournalEntry, JournalError> {
        self.update(id, prior_state_update(id, prior_state, preview))
            .await
    }

    /// [`Journal::record_prior_state`] for a live change, taking the leases on `resources`
    /// (held by `holder`, renewed every third of `ttl` until released) in the same write: the
    /// prior state and the leases are durable together, before the change's first write.
    /// `Err(resource)` as the second value: another run holds `resource`, and this caller
    /// holds no lease (the prior state is recorded all the same).
    pub async fn record_prior_state_leasing(
        &self,
        id: &MessageId,
        prior_state: Value,
        preview: Value,
        resources: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<(JournalEntry, Result<Vec<HeldLease>, String>), JournalError> {
        let update = prior_state_update(id, prior_state, preview);
        for _ in 0..CAS_ATTEMPTS {
            let (updated, leased) = self
                .store
                .update_acquiring(id, update.clone(), resources, holder, ttl)
                .await?;
            let leased = match updated {
                Updated::Written(entry) => (entry, leased),
                Updated::Conflict(entry) => {
                    if !self.landed(&entry).await? {
                        continue;
                    }
                    // Written by a retried request whose answer was lost: its leases were not
                    // taken with it.
                    let leased = acquire_each(self.store.as_ref(), resources, holder, ttl).await?;
                    (entry, leased)
                }
            };
            return Ok(match leased {
                (entry, Leased::Taken(leases)) => (
                    entry,
                    Ok(leases
                        .into_iter()
                        .map(|lease| HeldLease::hold(self.store.clone(), lease))
                        .collect()),
                ),
                (entry, Leased::Busy(resource)) => (entry, Err(resource)),
            });
        }
        Err(JournalError::Contended(id.clone()))
    }

    /// Ends a run: `done` with the result and the verification, or `failed` with the reason.
    pub async fn finish(
        &self,
        id: &MessageId,
        outcome: RunOutcome,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        self.finish_scheduling(id, outcome, None, actor).await
    }

    /// [`Journal::finish`], scheduling `follow_up` in the same conditional write when the run
    /// is done (the sweeper runs it once due; see [`Journal::claim_follow_up`]).
    pub async fn finish_scheduling(
        &self,
        id: &MessageId,
        outcome: RunOutcome,
        follow_up: Option<ScheduledFollowUp>,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        self.finish_releasing(id, outcome, follow_up, Vec::new(), actor)
            .await
    }

    /// [`Journal::finish_scheduling`], giving the run's `leases` back (stopped, still held:
    /// [`HeldLease::stop`]) in the same write; when the entry cannot be written they are
    /// given back on their own.
    pub async fn finish_releasing(
        &self,
        id: &MessageId,
        outcome: RunOutcome,
        follow_up: Option<ScheduledFollowUp>,
        leases: Vec<Lease>,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let to = match &outcome {
            RunOutcome::Done { .. } => TaskState::Done,
            RunOutcome::Failed { .. } => TaskState::Failed,
        };
        // Encoded once, however many times a conflict makes the update run.
        let outcome = match outcome {
            RunOutcome::Done {
                result,
                verification,
            } => Ok((
                RawJson::from_value(&result),
                RawJson::from_value(&verification),
            )),
            RunOutcome::Failed { error, retryable } => Err((error, retryable)),
        };
        let finish = move |entry: &mut JournalEntry, _| {
            match &outcome {
                Ok((result, verification)) => {
                    entry.result = Some(result.clone());
                    entry.verification = Some(verification.clone());
                    entry.error = None;
                    entry.retryable = None;
                    entry.follow_up = follow_up.clone();
                }
                Err((error, retryable)) => {
                    entry.error = Some(error.clone());
                    entry.retryable = Some(*retryable);
                }
            }
            Ok(())
        };
        self.transition_releasing(id, to, actor, finish, leases)
            .await
    }

    /// A task no executor carries out yet: recorded, never silently dropped.
    pub async fn not_automated(
        &self,
        id: &MessageId,
        note: &str,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let result = RawJson::from_value(&serde_json::json!({ "note": note }));
        self.transition(id, TaskState::NotAutomated, actor, move |entry, _| {
            entry.result = Some(result.clone());
            Ok(())
        })
        .await
    }

    /// A done task whose change was reverted; `result` is what the undo answered.
    pub async fn undone(
        &self,
        id: &MessageId,
        result: Value,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let result = RawJson::from_value(&result);
        self.transition(id, TaskState::Undone, actor, move |entry, _| {
            entry.undo_result = Some(result.clone());
            if let Some(undo) = &mut entry.undo {
                undo.error = None;
            }
            Ok(())
        })
        .await
    }

    /// Claims the undo of a done task. Exactly one caller wins: a concurrent caller gets
    /// [`JournalError::UndoInProgress`], a later one (the task is `undone`)
    /// [`JournalError::IllegalTransition`]. An undo that failed may be claimed again, and so
    /// may one left unfinished longer than the run timeout (a crashed instance).
    pub async fn claim_undo(
        &self,
        id: &MessageId,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let run_timeout = self.run_timeout;
        let actor = actor.to_string();
        self.update_in(id, TaskState::Done, TaskState::Undone, move |entry, now| {
            if let Some(undo) = &entry.undo {
                if undo.error.is_none() && now - undo.started_at < run_timeout {
                    return Err(JournalError::UndoInProgress {
                        message_id: entry.message_id.clone(),
                        by: undo.by.clone(),
                        started: undo
                            .started_at
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                    });
                }
            }
            entry.undo = Some(UndoAttempt {
                by: actor.clone(),
                started_at: now,
                error: None,
            });
            Ok(())
        })
        .await
    }

    /// Records why a claimed undo failed; the task stays `done` and the undo may be tried
    /// again.
    pub async fn undo_failed(
        &self,
        id: &MessageId,
        error: &str,
        actor: &str,
    ) -> Result<JournalEntry, JournalError> {
        let error = error.to_string();
        let actor = actor.to_string();
        self.update_in(id, TaskState::Done, TaskState::Undone, move |entry, now| {
            let undo = entry.undo.get_or_insert_with(|| UndoAttempt {
                by: actor.clone(),
                started_at: now,
                error: None,
            });
            undo.error = Some(error.clone());
            Ok(())
        })
        .await
    }

    /// Records a person's word that a done containment stays (no expiry undoes it). The
    /// first confirmation stands; a later one changes nothing.
    pub async fn confirm(&self, id: &MessageId, actor: &str) -> Result<JournalEntry, JournalError> {
        let actor = actor.to_string();
        self.update_in(id, TaskState::Done, TaskState::Done, move |entry, now| {
            if entry.confirmation.is_none() {
                entry.confirmation = Some(Confirmation {
                    by: actor.clone(),
                    at: now,
                });
            }
            Ok(())
        })
        .await
    }

    /// Applies `mutate` to an entry in state `expected` without changing its state; an entry
    /// in any other state is refused as the transition to `to` it would have been.
    async fn update_in(
        &self,
        id: &MessageId,
        expected: TaskState,
        to: TaskState,
        mutate: impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError>
            + Send
            + Sync
            + 'static,
    ) -> Result<JournalEntry, JournalError> {
        self.update(id, in_state_update(id, expected, to, mutate))
            .await
    }

    /// One read-modify-write through [`JournalStore::update`], re-read and re-decided after a
    /// lost race (up to [`CAS_ATTEMPTS`] times).
    async fn update(
        &self,
        id: &MessageId,
        update: EntryUpdate,
    ) -> Result<JournalEntry, JournalError> {
        self.update_releasing(id, update, Vec::new()).await
    }

    /// [`Journal::update`], giving `leases` back in the write that lands (or on their own when
    /// none does).
    async fn update_releasing(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        leases: Vec<Lease>,
    ) -> Result<JournalEntry, JournalError> {
        let mut result = Err(JournalError::Contended(id.clone()));
        for _ in 0..CAS_ATTEMPTS {
            match self
                .store
                .update_releasing(id, update.clone(), &leases)
                .await
            {
                Ok(Updated::Written(entry)) => return Ok(entry),
                Ok(Updated::Conflict(entry)) => match self.landed(&entry).await {
                    Ok(true) => {
                        result = Ok(entry);
                        break;
                    }
                    Ok(false) => {}
                    Err(err) => {
                        result = Err(err);
                        break;
                    }
                },
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        release_each(self.store.as_ref(), &leases).await;
        result
    }

    /// After a refused conditional write: whether the stored entry is exactly the one this
    /// caller wrote. The storage client retries a request whose answer was lost; the retry of a
    /// write that did land is refused (the version moved on, by this very write), and without
    /// this check the winner of a race would believe it lost and nobody would run the task.
    async fn landed(&self, written: &JournalEntry) -> Result<bool, JournalError> {
        Ok(self
            .store
            .load(&written.message_id)
            .await?
            .is_some_and(|(stored, _)| stored.write_id == written.write_id))
    }

    /// Moves a task to `to` if its current state allows it, applying `mutate` in the same
    /// conditional write. A lost race re-reads and re-checks, so the loser sees the winner's
    /// state and is refused when the transition no longer applies.
    async fn transition(
        &self,
        id: &MessageId,
        to: TaskState,
        actor: &str,
        mutate: impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError>
            + Send
            + Sync
            + 'static,
    ) -> Result<JournalEntry, JournalError> {
        self.transition_releasing(id, to, actor, mutate, Vec::new())
            .await
    }

    /// [`Journal::transition`], giving `leases` back in the same write.
    async fn transition_releasing(
        &self,
        id: &MessageId,
        to: TaskState,
        actor: &str,
        mutate: impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError>
            + Send
            + Sync
            + 'static,
        leases: Vec<Lease>,
    ) -> Result<JournalEntry, JournalError> {
        let id_owned = id.clone();
        let actor_owned = actor.to_string();
        let entry = self
            .update_releasing(
                id,
                Arc::new(move |entry: JournalEntry| {
                    moved(entry, &id_owned, to, &actor_owned, &mutate)
                }),
                leases,
            )
            .await?;
        let from = entry.history.last().and_then(|event| event.from);
        log_transition(&entry, from, to, actor);
        Ok(entry)
    }
}

/// The update that applies `mutate` to an entry in state `expected` without changing its
/// state; an entry in any other state is refused as the transition to `to` it would have been.
fn in_state_update(
    id: &MessageId,
    expected: TaskState,
    to: TaskState,
    mutate: impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError>
        + Send
        + Sync
        + 'static,
) -> EntryUpdate {
    let id = id.clone();
    Arc::new(move |mut entry: JournalEntry| {
        if entry.state != expected {
            return Err(JournalError::IllegalTransition {
                message_id: id.clone(),
                from: entry.state,
                to,
            });
        }
        let now = OffsetDateTime::now_utc();
        mutate(&mut entry, now)?;
        entry.updated_at = now;
        entry.write_id = uuid::Uuid::new_v4().to_string();
        Ok(entry)
    })
}

/// What [`Journal::record_prior_state`] changes in a `running` entry: the preview, its hash
/// and the prior state.
fn prior_state_update(id: &MessageId, prior_state: Value, preview: Value) -> EntryUpdate {
    let hash = preview_hash(&preview);
    let preview = RawJson::from_value(&preview);
    let prior_state = RawJson::from_value(&prior_state);
    in_state_update(
        id,
        TaskState::Running,
        TaskState::Running,
        move |entry, _| {
            entry.preview_hash = Some(hash.clone());
            entry.preview = Some(preview.clone());
            entry.prior_state = Some(prior_state.clone());
            Ok(())
        },
    )
}

/// What [`Journal::begin_run`] changes in an entry it claims, refusing a run that may not
/// start (failed for good, or running and not timed out).
fn claim_run(
    run_timeout: Duration,
    actor: String,
) -> impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError> + Send + Sync + 'static
{
    move |entry, now| {
        if entry.state == TaskState::Failed && entry.retryable != Some(true) {
            // A permanent failure was acknowledged; a stray duplicate must not run it again.
            return Err(JournalError::IllegalTransition {
                message_id: entry.message_id.clone(),
                from: TaskState::Failed,
                to: TaskState::Running,
            });
        }
        if entry.state == TaskState::Running {
            let started = entry.run_started_at.unwrap_or(entry.updated_at);
            if now - started < run_timeout {
                return Err(JournalError::IllegalTransition {
                    message_id: entry.message_id.clone(),
                    from: TaskState::Running,
                    to: TaskState::Running,
                });
            }
        }
        entry.attempts += 1;
        entry.run_started_at = Some(now);
        entry.run_by = Some(actor.clone());
        entry.error = None;
        Ok(())
    }
}

/// `entry` moved to `to` by `actor` with `mutate` applied, if its state allows it.
fn moved(
    mut entry: JournalEntry,
    id: &MessageId,
    to: TaskState,
    actor: &str,
    mutate: &impl Fn(&mut JournalEntry, OffsetDateTime) -> Result<(), JournalError>,
) -> Result<JournalEntry, JournalError> {
    let from = entry.state;
    if !from.may_become(to) {
        return Err(JournalError::IllegalTransition {
            message_id: id.clone(),
            from,
            to,
        });
    }
    let now = OffsetDateTime::now_utc();
    mutate(&mut entry, now)?;
    entry.state = to;
    entry.updated_at = now;
    entry.history.push(HistoryEvent {
        at: now,
        from: Some(from),
        to,
        actor: actor.to_string(),
        note: None,
    });
    entry.write_id = uuid::Uuid::new_v4().to_string();
    Ok(entry)
}

/// The structured log event of a transition (Application Insights receives it as a trace
/// with these custom dimensions).
fn log_transition(entry: &JournalEntry, from: Option<TaskState>, to: TaskState, actor: &str) {
    tracing::info!(
        message_id = %entry.message_id,
        action = %entry.action,
        system_alert_id = %entry.system_alert_id,
        from = from.map(TaskState::as_str).unwrap_or("none"),
        to = to.as_str(),
        actor,
        "journal: task state changed"
    );
}
