//! The workers: one task message in, carried out once (or recorded as waiting, dry-run, not
//! automated), and the settlement the queue gets back (complete, or retry after a delay).
//!
//! [`Worker::process`] is the whole loop for one delivery, the same for the Functions host's
//! `serviceBusTrigger` invocations ([`crate::functions::workers`]) and the embedded queues
//! ([`queue_loop`]). The journal is what makes it safe under redelivery and scale-out: every
//! step is a compare-and-set transition, and only one caller wins `begin_run`.

pub mod expiry;
pub mod follow_ups;
pub mod queue_loop;
pub mod sweeper;
pub mod undo;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use crate::adapters::SharedPublisher;
use crate::approval::DecisionDesk;
use crate::domain::parameters::Subject;
use crate::domain::{Action, MessageId, Parameters, Queue, Task, TaskStatus};
use crate::error::Error;
use crate::executors::guards::{self, BlastRadius};
use crate::executors::{
    Executor, ExecutorContext, ExecutorError, ExecutorErrorKind, ExecutorRegistry, Preview,
};
use crate::journal::{
    preview_hash, HeldLease, Journal, JournalEntry, JournalError, Lease, RawJson, RunOutcome,
    TaskState, Verdict,
};
use crate::notify::{Delivery, Notifier, Sent, WebhookChannel};

/// The suffix of the message id an approved task is re-enqueued under: Service Bus duplicate
/// detection (and the embedded queue's tombstones) would drop the original id.
pub const APPROVED_SUFFIX: &str = "-approved";

/// How long a delivery that must wait (another worker runs the task, a decision request whose
/// pending task has no preview yet) is kept away before it is delivered again, when nothing
/// says otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How many of the most recently changed journal entries a starting worker reads to count the
/// last hour's containment changes against the blast-radius budget.
const BLAST_RADIUS_HISTORY: usize = 1000;

/// How long a task waits for its `run_after` tasks before it runs regardless.
pub const RUN_AFTER_WAIT: time::Duration = time::Duration::minutes(10);

/// What the queue should do with the message that was processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Done with it: the outcome is durably recorded (done, waiting, refused for good).
    Complete {
        /// What happened, for the log and the invocation's reply.
        note: String,
    },
    /// Give it back: a later delivery can succeed (the journal or a receiver was unavailable,
    /// another worker is running the task).
    Retry {
        /// Why.
        reason: String,
        /// How long to keep it invisible (embedded queue; the host abandons at once).
        after: Duration,
    },
    /// The message cannot be a task at all; it is kept aside (dead-lettered) with the reason.
    Reject {
        /// What was wrong with it.
        reason: String,
    },
}

impl Settlement {
    fn complete(note: impl Into<String>) -> Self {
        Settlement::Complete { note: note.into() }
    }

    fn retry(reason: impl Into<String>) -> Self {
        Settlement::Retry {
            reason: reason.into(),
            after: DEFAULT_RETRY_DELAY,
        }
    }

    /// Whether the message is given back for a later delivery.
    pub fn is_retry(&self) -> bool {
        matches!(self, Settlement::Retry { .. })
    }

    /// The note, reason or rejection, in words.
    pub fn describe(&self) -> &str {
        match self {
            Settlement::Complete { note } => note,
            Settlement::Retry { reason, .. } => reason,
            Settlement::Reject { reason } => reason,
        }
    }
}

impl From<Error> for Settlement {
    fn from(err: Error) -> Self {
        if err.is_retryable() {
            Settlement::retry(err.to_string())
        } else {
            Settlement::complete(err.to_string())
        }
    }
}

/// Decodes a message body into a task: the task's JSON, or a JSON string holding it (the
/// Functions host hands Service Bus bodies over double-encoded).
pub fn decode_task(body: &Value) -> Result<Task, String> {
    if body.is_object() {
        // The usual body: read in place, not copied first.
        return Task::deserialize(body)
            .map_err(|err| format!("the message body is not a task: {err}"));
    }
    let mut value = body.clone();
    for _ in 0..3 {
        match value {
            Value::String(text) => {
                value = serde_json::from_str(&text)
                    .map_err(|err| format!("the message body is not JSON: {err}"))?;
            }
            Value::Object(_) => {
                return serde_json::from_value(value)
                    .map_err(|err| format!("the message body is not a task: {err}"));
            }
            other => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                return Err(format!("the message body is {kind}, not a task object"));
            }
        }
    }
    Err("the message body is encoded as a string more than twice".to_string())
}

/// The journal id of a delivered task: an approved task travels under `{id}-approved`.
pub fn journal_id(task: &Task) -> (MessageId, bool) {
    match task.message_id.as_str().strip_suffix(APPROVED_SUFFIX) {
        Some(original) => (message_id(original), true),
        None => (task.message_id.clone(), false),
    }
}

fn message_id(text: &str) -> MessageId {
    // MessageId is a transparent string; the task contract gives it no other constructor.
    serde_json::from_value(Value::String(text.to_string())).expect("a string is a message id")
}

/// What a worker needs: the journal, the channel, the decision desk and where approved tasks
/// go back to.
#[derive(Clone)]
pub struct Worker {
    journal: Journal,
    webhook: Option<WebhookChannel>,
    notifier: Option<Arc<Notifier>>,
    desk: Option<Arc<DecisionDesk>>,
    publisher: SharedPublisher,
    executors: ExecutorRegistry,
    context: Option<Arc<ExecutorContext>>,
    blast_radius: Option<Arc<BlastRadius>>,
    security_team: Vec<String>,
    authenticate_alerts: bool,
    dry_run: bool,
    instance: String,
    lease_ttl: Duration,
    containment_expiry: Option<Duration>,
    timeout_policy: Arc<crate::policy::Policy>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("journal", &self.journal)
            .field("webhook", &self.webhook.is_some())
            .field(
                "channels",
                &self.notifier.as_ref().map_or(0, |n| n.channels().len()),
            )
            .field("decision_links", &self.desk.is_some())
            .field("executors", &self.executors)
            .field("dry_run", &self.dry_run)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Worker {
    /// A worker over `journal` that re-enqueues approved tasks through `publisher`.
    pub fn new(journal: Journal, publisher: SharedPublisher) -> Self {
        Worker {
            journal,
            webhook: None,
            notifier: None,
            desk: None,
            publisher,
            executors: ExecutorRegistry::empty(),
            context: None,
            blast_radius: None,
            security_team: Vec::new(),
            authenticate_alerts: true,
            dry_run: false,
            lease_ttl: Duration::from_secs(60),
            containment_expiry: None,
            instance: format!("worker:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            timeout_policy: Arc::default(),
        }
    }

    /// Settles timed-out decisions as `policy` says (`on_timeout`; default: expire).
    pub fn with_timeout_policy(mut self, policy: crate::policy::Policy) -> Self {
        self.timeout_policy = Arc::new(policy);
        self
    }

    /// Delivers notifications through `channel`.
    pub fn with_webhook(mut self, channel: Option<WebhookChannel>) -> Self {
        self.webhook = channel;
        self
    }

    /// Delivers notifications through the policy's channels (Teams, Slack, e-mail, signed
    /// webhooks): one message per alert and channel. A notifier without channels is ignored
    /// (the webhook channel of `RESPONDER_WEBHOOK_URL`, when set, delivers instead).
    pub fn with_notifier(mut self, notifier: Option<Notifier>) -> Self {
        self.notifier = notifier.filter(|n| !n.channels().is_empty()).map(Arc::new);
        self
    }

    /// Skips reading the alert back from Defender for Cloud before a live change. Only for
    /// tests of the worker's own machinery, whose executors do not act on Azure: a deployed
    /// responder always authenticates (there is no setting for this).
    pub fn trusting_alerts(mut self) -> Self {
        self.authenticate_alerts = false;
        self
    }

    /// Who hears of a task whose own recipients are none (the policy's notify recipients).
    pub fn with_security_team(mut self, recipients: Vec<String>) -> Self {
        self.security_team = recipients;
        self
    }

    /// Builds decision links with `desk` for `request_decision` notifications.
    pub fn with_decisions(mut self, desk: Option<Arc<DecisionDesk>>) -> Self {
        self.desk = desk;
        self
    }

    /// Carries containment tasks out with `executors` in `context` (the Azure clients and
    /// guard rails). Without a context every containment task is recorded as not automated.
    pub fn with_executors(mut self, executors: ExecutorRegistry, context: ExecutorContext) -> Self {
        self.blast_radius = Some(Arc::new(BlastRadius::new(
            context.settings.blast_radius_per_hour,
        )));
        self.executors = executors;
        self.context = Some(Arc::new(context));
        self
    }

    /// Counts the containment changes the journal holds from the last hour against the
    /// blast-radius budget, so a restart (or a new instance) starts where the last one was.
    pub async fn load_blast_radius(mut self) -> Result<Self, Error> {
        let Some(context) = &self.context else {
            return Ok(self);
        };
        let since = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let history: Vec<(String, std::time::SystemTime)> = self
            .journal
            .recent(BLAST_RADIUS_HISTORY)
            .await?
            .into_iter()
            .filter(|entry| entry.queue == Queue::Isolation && entry.updated_at >= since)
            .filter(counts_against_budget)
            .filter_map(|entry| {
                let task = task_of(&entry).ok()?;
                let at =
                    std::time::SystemTime::from(entry.run_started_at.unwrap_or(entry.updated_at));
                Some((guards::alert_subscription(&task)?, at))
            })
            .collect();
        self.blast_radius = Some(Arc::new(BlastRadius::with_history(
            context.settings.blast_radius_per_hour,
            history,
        )));
        Ok(self)
    }

    /// The executor of a task's action and the context it runs in (`None` without either):
    /// for the sweeper's follow-ups and undo.
    pub(crate) fn executor(
        &self,
        task: &Task,
    ) -> Option<(Arc<dyn Executor>, Arc<ExecutorContext>)> {
        Some((self.executors.get(task.action)?, self.context.clone()?))
    }

    /// The executor of a task's action and the context it runs in (undo, expiry).
    pub(crate) fn executor_for(
        &self,
        task: &Task,
    ) -> Option<(Arc<dyn Executor>, Arc<ExecutorContext>)> {
        self.executor(task)
    }

    /// `true`: every containment task only reports what it would do, whatever it says
    /// (the global `RESPONDER_DRY_RUN`, read again when the task is carried out).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Names this worker in the journal's history (default: `worker:<random>`).
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn actor(&self, queue: Queue) -> String {
        format!("{}:{}", self.instance, queue.as_str())
    }

    /// Processes one delivery of a message body from `queue`.
    pub async fn process(&self, queue: Queue, body: &Value) -> Settlement {
        let task = match decode_task(body) {
            Ok(task) => task,
            Err(reason) => {
                tracing::warn!(queue = queue.as_str(), %reason, "worker: message refused");
                return Settlement::Reject { reason };
            }
        };
        if task.queue != queue {
            let reason = format!(
                "task {} belongs on the {} queue, not {}",
                task.message_id, task.queue, queue
            );
            tracing::warn!(%reason, "worker: message refused");
            return Settlement::Reject { reason };
        }
        let settlement = match self.process_task(task.clone()).await {
            Ok(settlement) => settlement,
            Err(err) => Settlement::from(err),
        };
        tracing::info!(
            message_id = %task.message_id,
            action = %task.action,
            retry = settlement.is_retry(),
            outcome = settlement.describe(),
            "worker: message processed"
        );
        settlement
    }

    async fn process_task(&self, mut task: Task) -> Result<Settlement, Error> {
        let (id, approved_delivery) = journal_id(&task);
        task.message_id = id.clone();
        let actor = self.actor(task.queue);
        // A ready task this worker carries out with nothing to wait for: its first delivery is
        // recorded already claimed for the run, one journal write where there would be two.
        let runs_at_once = task.queue != Queue::Notification
            && task.status != TaskStatus::PendingApproval
            && task.run_after.is_empty()
            && self.executor(&task).is_some();
        let (entry, claimed, alert_entries) = if runs_at_once && reads_its_alert(&task) {
            // The run reads the alert's other tasks first (`context_for`): read in the same
            // trip as the write.
            let (received, claimed, entries) = self
                .journal
                .receive_claiming_run_listing_alert(&task, &actor)
                .await?;
            (received.entry, claimed, Some(entries))
        } else if runs_at_once {
            let (received, claimed) = self.journal.receive_claiming_run(&task, &actor).await?;
            (received.entry, claimed, None)
        } else {
            (
                self.journal.receive(&task, &actor).await?.entry,
                false,
                None,
            )
        };
        if task.queue == Queue::Notification {
            return self.notify(&task, &actor).await;
        }
        if let (true, Some((executor, context))) = (claimed, self.executor(&task)) {
            return self
                .run_claimed(&task, &entry, &actor, executor, context, alert_entries)
                .await;
        }
        match entry.state {
            TaskState::Received if task.status == TaskStatus::PendingApproval => {
                self.await_decision(&task, &actor).await
            }
            TaskState::Received | TaskState::Approved => self.run(&task, &entry, &actor).await,
            TaskState::Failed if entry.retryable == Some(true) => {
                self.run(&task, &entry, &actor).await
            }
            TaskState::Running => self.run(&task, &entry, &actor).await,
            TaskState::PendingApproval if approved_delivery => Ok(Settlement::complete(format!(
                "task {id} is still waiting for a decision; this approved copy is stale"
            ))),
            state => Ok(Settlement::complete(format!(
                "task {id} is {state}; nothing more to do"
            ))),
        }
    }

    /// A containment task that waits for a person: the change it would make is recorded (its
    /// hash binds the decision links) and the message is completed; the decision re-enqueues
    /// the task under [`APPROVED_SUFFIX`].
    async fn await_decision(&self, task: &Task, actor: &str) -> Result<Settlement, Error> {
        let preview = match self.executor(task) {
            // The exact change a person decides on: resolved and read now, writing nothing.
            Some((executor, context)) => {
                let context = self.context_for(task, &context, None).await?;
                match executor.preview(task, &context).await {
                    Ok(preview) => recorded_preview(task, &preview),
                    Err(err) => return Ok(self.preview_failed(task, err)),
                }
            }
            None => pending_preview(task),
        };
        self.journal
            .await_approval(&task.message_id, preview, actor)
            .await
            .map(|_| {
                Settlement::complete(format!(
                    "task {} waits for a decision on its recorded change",
                    task.message_id
                ))
            })
            .or_else(|err| already_moved_on(err, &task.message_id))
    }

    /// Carries a ready (or approved) containment task out: the run is claimed in the journal
    /// (one caller wins), the change is previewed, its prior state journaled before the first
    /// write, then applied under a lease on each resource it touches, and verified. A dry run
    /// stops after the journaled preview; an action without an executor is recorded as
    /// `not_automated` and announced, never dropped.
    async fn run(
        &self,
        task: &Task,
        entry: &JournalEntry,
        actor: &str,
    ) -> Result<Settlement, Error> {
        let id = &task.message_id;
        let dry_run = task.dry_run || self.dry_run;
        let Some((executor, context)) = self.executor(task) else {
            return self.not_automated(task, dry_run, actor).await;
        };
        if let Some(waiting) = self.waits_for(task, entry).await? {
            return Ok(waiting);
        }
        if let Err(err) = self.journal.begin_run(id, actor).await {
            return already_moved_on(err, id);
        }
        self.run_claimed(task, entry, actor, executor, context, None)
            .await
    }

    /// The rest of [`Worker::run`] once the run is claimed in the journal (`entry` is the task's
    /// entry before the claim, or the claimed entry itself when it was recorded claimed;
    /// `alert_entries`, the alert's entries when they were read with the claim).
    async fn run_claimed(
        &self,
        task: &Task,
        entry: &JournalEntry,
        actor: &str,
        executor: Arc<dyn Executor>,
        context: Arc<ExecutorContext>,
        alert_entries: Option<Vec<JournalEntry>>,
    ) -> Result<Settlement, Error> {
        let id = &task.message_id;
        let dry_run = task.dry_run || self.dry_run;
        let context = self.context_for(task, &context, alert_entries).await?;
        let preview = match executor.preview(task, &context).await {
            Ok(preview) => preview,
            Err(err) => return self.fail(task, err, actor).await,
        };
        // Only a decided task is bound to the change it recorded; no other run reads it.
        let recorded = entry
            .decision
            .as_ref()
            .and(entry.preview.as_ref())
            .map(RawJson::to_value);
        if let Some(decided) = recorded.as_ref().and_then(|p| p.get("change")) {
            let now = serde_json::to_value(&preview.change).unwrap_or(Value::Null);
            if !decided.is_null() && *decided != now {
                let reason = format!(
                    "the target changed since the approved preview; nothing was changed (approved: {}, now: {})",
                    preview_hash(decided),
                    preview_hash(&now)
                );
                return self.finish_failed(task, reason, false, None, actor).await;
            }
        }
        let live = !dry_run && !preview.change.is_noop();
        if live {
            // A live change takes its leases in the write that records its prior state: one
            // durable write before the change, where there were two. Another run holding a
            // resource is told once the guard rails have passed, as before.
            let (_, leased) = self
                .journal
                .record_prior_state_leasing(
                    id,
                    preview.prior_state.clone(),
                    recorded_preview(task, &preview),
                    &preview.leases,
                    actor,
                    self.lease_ttl,
                )
                .await?;
            return self
                .run_live(task, &preview, actor, executor, context, leased)
                .await;
        }
        self.journal
            .record_prior_state(
                id,
                preview.prior_state.clone(),
                recorded_preview(task, &preview),
            )
            .await?;
        let result = if dry_run {
            json!({ "dry_run": true, "would": preview.change.summary, "requests": preview.change.requests })
        } else {
            json!({ "noop": true, "summary": preview.change.summary })
        };
        self.journal
            .finish(
                id,
                RunOutcome::Done {
                    result: result.clone(),
                    verification: Value::Null,
                },
                actor,
            )
            .await?;
        if dry_run {
            self.announce_after(task, "dry_run", result).await;
        }
        Ok(Settlement::complete(format!(
            "task {id}: {} ({})",
            if dry_run {
                "dry run, would"
            } else {
                "nothing to change"
            },
            preview.change.summary
        )))
    }

    /// The live change of a run whose prior state is recorded, with the leases taken in that
    /// write (`Err`: the resource another run holds): the guard rails, then apply and verify
    /// under the leases, and `done` (the leases given back in the same write) or `failed`.
    async fn run_live(
        &self,
        task: &Task,
        preview: &Preview,
        actor: &str,
        executor: Arc<dyn Executor>,
        context: Arc<ExecutorContext>,
        leased: Result<Vec<HeldLease>, String>,
    ) -> Result<Settlement, Error> {
        let id = &task.message_id;
        if let Some(refused) = self.guard_live_change(task, preview, &context).await {
            // Refused: the leases are given back in the write that records the failure.
            let leases = leased.unwrap_or_default();
            return match refused {
                Err(err) => {
                    let (reason, retryable, after) = failure_of(&err);
                    self.finish_failed_releasing(task, reason, retryable, after, leases, actor)
                        .await
                }
                Ok(reason) => {
                    self.finish_failed_releasing(task, reason, false, None, leases, actor)
                        .await
                }
            };
        }
        let leases = match leased {
            Ok(leases) => leases,
            Err(resource) => {
                let reason = format!("{resource} is being changed by another run");
                return self
                    .finish_failed(task, reason, true, Some(DEFAULT_RETRY_DELAY), actor)
                    .await;
            }
        };
        let outcome = async {
            let applied = executor.apply(task, preview, &context).await?;
            let verification = executor.verify(task, preview, &applied, &context).await?;
            Ok::<_, ExecutorError>((applied, verification))
        }
        .await;
        let lost = leases.iter().any(|lease| lease.is_lost());
        let outcome = match outcome {
            Ok((applied, verification)) if verification.passed() && !lost => {
                // Done: the leases are given back in the same write that records it.
                let held = stopped(leases).await;
                self.journal
                    .finish_releasing(
                        id,
                        RunOutcome::Done {
                            result: serde_json::to_value(&applied).unwrap_or(Value::Null),
                            verification: serde_json::to_value(&verification)
                                .unwrap_or(Value::Null),
                        },
                        follow_ups::scheduled(task, &applied),
                        held,
                        actor,
                    )
                    .await?;
                self.announce_done(task).await;
                return Ok(Settlement::complete(format!("task {id} done and verified")));
            }
            other => other,
        };
        release(leases).await;
        match outcome {
            Ok((_, verification)) if !verification.passed() => {
                let failed: Vec<String> = verification
                    .failures()
                    .iter()
                    .map(|check| {
                        format!(
                            "{}: expected {}, found {}",
                            check.what, check.expected, check.actual
                        )
                    })
                    .collect();
                let reason = format!(
                    "the change was applied but did not verify: {}",
                    failed.join("; ")
                );
                self.finish_failed(task, reason, false, None, actor).await
            }
            Ok(_) => {
                let reason = "the lease on the resource was lost during the run".to_string();
                self.finish_failed(task, reason, true, Some(DEFAULT_RETRY_DELAY), actor)
                    .await
            }
            Err(err) => self.fail(task, err, actor).await,
        }
    }

    /// The context a task runs in: for a vault's firewall, whether the alert's rotations of
    /// that vault (or their follow-ups) are still due (the firewall then keeps the
    /// responder's own egress open). `alert_entries`: the alert's entries, when read already.
    async fn context_for(
        &self,
        task: &Task,
        context: &Arc<ExecutorContext>,
        alert_entries: Option<Vec<JournalEntry>>,
    ) -> Result<Arc<ExecutorContext>, Error> {
        if !reads_its_alert(task) {
            return Ok(context.clone());
        }
        let Some(name) = task.key_vault_name() else {
            return Ok(context.clone());
        };
        let alert_entries = match alert_entries {
            Some(entries) => entries,
            None => {
                self.journal
                    .for_alert(task.alert.system_alert_id.as_str())
                    .await?
            }
        };
        let rotation_pending = alert_entries
            .into_iter()
            // A rotation still to run, or with a follow-up still due (disabling the old
            // versions after the grace window), needs the vault reachable.
            .filter(|entry| {
                entry.queue == Queue::Rotation
                    && (!rotation_settled(entry) || entry.follow_up.is_some())
            })
            // A rotation not previewed yet names no vault: it may be this one's.
            .any(|entry| {
                task.run_after.contains(&entry.message_id)
                    || task_of(&entry)
                        .ok()
                        .and_then(|rotation| rotation.key_vault_name())
                        .is_none_or(|other| other == name)
            });
        if !rotation_pending {
            return Ok(context.clone());
        }
        let pending = [task.target.clone()];
        Ok(Arc::new((**context).clone().with_rotation_pending(pending)))
    }

    /// A task whose `run_after` tasks (a vault's rotations, before its firewall closes) have
    /// not settled yet is given back to wait for them; tasks waiting for a decision do not
    /// hold it up, and after [`RUN_AFTER_WAIT`] it runs regardless (a lost or dead-lettered
    /// rotation must not keep a vault open), saying so.
    async fn waits_for(
        &self,
        task: &Task,
        entry: &JournalEntry,
    ) -> Result<Option<Settlement>, Error> {
        if task.run_after.is_empty() {
            return Ok(None);
        }
        let mut unsettled = Vec::new();
        for id in &task.run_after {
            match self.journal.get(id).await? {
                Some(other) if rotation_settled(&other) => {}
                Some(other) if other.state == TaskState::PendingApproval => {}
                _ => unsettled.push(id.to_string()),
            }
        }
        if unsettled.is_empty() {
            return Ok(None);
        }
        let waited = OffsetDateTime::now_utc() - entry.received_at;
        if waited >= RUN_AFTER_WAIT {
            tracing::warn!(message_id = %task.message_id, waiting_for = ?unsettled, "run_after tasks did not settle in time; running anyway");
            return Ok(None);
        }
        Ok(Some(Settlement::retry(format!(
            "task {} waits for {} to finish first",
            task.message_id,
            unsettled.join(", ")
        ))))
    }

    /// The guard rails every live change passes after its preview and before its first
    /// write: the alert read back from Defender for Cloud (a forged alert moves nothing) and
    /// marked `InProgress`, and, for containment, the blast-radius budget of its
    /// subscriptions. `None`: go ahead; `Some(Ok(reason))`: refused for good, with the
    /// reason; `Some(Err(_))`: Defender could not be asked (retried).
    async fn guard_live_change(
        &self,
        task: &Task,
        preview: &Preview,
        context: &ExecutorContext,
    ) -> Option<Result<String, ExecutorError>> {
        let alert = if self.authenticate_alerts {
            match guards::authenticate_alert(task, context).await {
                Ok(alert) => Some(alert),
                Err(err) if err.refusal().is_some() => {
                    return Some(Ok(format!("refused, nothing was changed: {err}")))
                }
                Err(err) => return Some(Err(err)),
            }
        } else {
            None
        };
        if task.queue == Queue::Isolation {
            if let Some(budget) = &self.blast_radius {
                let mut subscriptions = preview.subscriptions.clone();
                if subscriptions.is_empty() {
                    subscriptions.extend(guards::alert_subscription(task));
                }
                if let Err(err) = budget.try_consume(&subscriptions, std::time::SystemTime::now()) {
                    tracing::warn!(message_id = %task.message_id, error = %err, "blast radius reached: notify only");
                    return Some(Ok(format!(
                        "refused, nothing was changed: blast radius reached, the responder only notifies: {err}"
                    )));
                }
            }
        }
        if let Some(alert) = alert {
            if let Err(err) = guards::mark_alert_in_progress(&alert, context).await {
                // The change is still right to make; the alert's status is a courtesy.
                tracing::warn!(alert = %alert.id, error = %err, "could not mark the alert InProgress in Defender for Cloud");
            }
        }
        None
    }

    /// No executor for the action (or no Azure clients): recorded and announced.
    async fn not_automated(
        &self,
        task: &Task,
        dry_run: bool,
        actor: &str,
    ) -> Result<Settlement, Error> {
        let note = format!(
            "no executor carries out {} here; a person must do it{}",
            task.action,
            if dry_run {
                " (dry run: nothing would be changed automatically)"
            } else {
                ""
            }
        );
        self.announce(task, "not_automated", json!({ "note": note }))
            .await?;
        match self
            .journal
            .not_automated(&task.message_id, &note, actor)
            .await
        {
            Ok(_) => Ok(Settlement::complete(format!(
                "task {} recorded as not automated",
                task.message_id
            ))),
            Err(err) => already_moved_on(err, &task.message_id),
        }
    }

    /// A preview that failed before a decision was asked: retried when retryable; otherwise
    /// the task stays `received` and the reason is logged (no decision can be asked on it).
    fn preview_failed(&self, task: &Task, err: ExecutorError) -> Settlement {
        match err.kind() {
            ExecutorErrorKind::Retryable => Settlement::Retry {
                reason: format!("task {}: preview failed: {err}", task.message_id),
                after: err.retry_after().unwrap_or(DEFAULT_RETRY_DELAY),
            },
            _ => Settlement::complete(format!(
                "task {}: no decision can be asked, the preview failed for good: {err}",
                task.message_id
            )),
        }
    }

    async fn fail(
        &self,
        task: &Task,
        err: ExecutorError,
        actor: &str,
    ) -> Result<Settlement, Error> {
        let (reason, retryable, after) = failure_of(&err);
        self.finish_failed(task, reason, retryable, after, actor)
            .await
    }

    /// Records a failed run; a retryable one gives the message back, a permanent one is
    /// completed with the reason recorded (no poison loop).
    async fn finish_failed(
        &self,
        task: &Task,
        reason: String,
        retryable: bool,
        after: Option<Duration>,
        actor: &str,
    ) -> Result<Settlement, Error> {
        self.finish_failed_releasing(task, reason, retryable, after, Vec::new(), actor)
            .await
    }

    /// [`Worker::finish_failed`], giving `leases` back in the write that records the failure.
    async fn finish_failed_releasing(
        &self,
        task: &Task,
        reason: String,
        retryable: bool,
        after: Option<Duration>,
        leases: Vec<HeldLease>,
        actor: &str,
    ) -> Result<Settlement, Error> {
        let held = stopped(leases).await;
        self.journal
            .finish_releasing(
                &task.message_id,
                RunOutcome::Failed {
                    error: reason.clone(),
                    retryable,
                },
                None,
                held,
                actor,
            )
            .await?;
        if retryable {
            Ok(Settlement::Retry {
                reason: format!("task {}: {reason}", task.message_id),
                after: after.unwrap_or(DEFAULT_RETRY_DELAY),
            })
        } else {
            self.announce_after(task, "failed", json!({ "error": reason }))
                .await;
            Ok(Settlement::complete(format!(
                "task {} failed: {reason}",
                task.message_id
            )))
        }
    }

    /// A notification task: delivered once through the policy's channels (one message per
    /// alert and channel), or the signed webhook of `RESPONDER_WEBHOOK_URL`, with the decision
    /// links of its pending tasks when it asks for a decision.
    async fn notify(&self, task: &Task, actor: &str) -> Result<Settlement, Error> {
        if self.notifier.is_none() && self.webhook.is_none() {
            let note = "no notification channel is configured (the policy's notifications.channels, or RESPONDER_WEBHOOK_URL)";
            return match self
                .journal
                .not_automated(&task.message_id, note, actor)
                .await
            {
                Ok(_) => Ok(Settlement::complete(format!(
                    "task {}: {note}; recorded as not automated",
                    task.message_id
                ))),
                Err(err) => already_moved_on(err, &task.message_id),
            };
        }
        let links = match self.decision_links(task).await? {
            Ok(links) => links,
            Err(waiting) => return Ok(Settlement::retry(waiting)),
        };
        if let Some(notifier) = &self.notifier {
            let sent = notifier
                .deliver(std::slice::from_ref(task), &self.journal, actor)
                .await?;
            let new = sent
                .iter()
                .filter(|(_, sent)| matches!(sent, Sent::Delivered { .. }))
                .count();
            let channels: Vec<String> = sent
                .iter()
                .map(|(outgoing, _)| format!("{} ({})", outgoing.channel, outgoing.destination))
                .collect();
            return Ok(Settlement::complete(if sent.is_empty() {
                format!("task {} was delivered already", task.message_id)
            } else {
                format!(
                    "task {} delivered: {} message(s), {new} sent now: {}",
                    task.message_id,
                    sent.len(),
                    channels.join(", ")
                )
            }));
        }
        let Some(channel) = &self.webhook else {
            unreachable!("a notifier or a webhook channel is configured");
        };
        match channel.deliver(task, &links, &self.journal, actor).await? {
            Delivery::Sent { status, attempts } => Ok(Settlement::complete(format!(
                "task {} delivered (HTTP {status}, {attempts} attempt(s))",
                task.message_id
            ))),
            Delivery::AlreadyDelivered => Ok(Settlement::complete(format!(
                "task {} was delivered already",
                task.message_id
            ))),
        }
    }

    /// The links of a `request_decision` task's pending tasks; `Err` (wait) while one of them
    /// has not recorded its change yet (its worker has not seen it): the links bind the hash.
    async fn decision_links(
        &self,
        task: &Task,
    ) -> Result<Result<Vec<(Verdict, Url)>, String>, Error> {
        let Parameters::RequestDecision { pending, .. } = &task.parameters else {
            return Ok(Ok(Vec::new()));
        };
        let Some(desk) = &self.desk else {
            return Ok(Ok(Vec::new()));
        };
        let now = OffsetDateTime::now_utc();
        let mut links = Vec::new();
        for id in pending {
            match self.journal.get(id).await? {
                None
                | Some(JournalEntry {
                    state: TaskState::Received,
                    ..
                }) => {
                    return Ok(Err(format!(
                        "pending task {id} has not recorded its change yet; the decision request waits for it"
                    )))
                }
                Some(entry) if entry.state == TaskState::PendingApproval => {
                    links.extend(desk.links(&entry, now)?);
                }
                // Decided, expired or run already: nothing left to decide on.
                Some(_) => {}
            }
        }
        Ok(Ok(links))
    }

    /// Sends a notice about a task (`not_automated`, `expired`, `failed`, a dry run's
    /// "would …") under the id `{message id}-{kind}`, so a repeat is never sent twice: through
    /// the policy's channels as a notification of the task's alert (which also shows where
    /// its other tasks stand), and through the webhook of `RESPONDER_WEBHOOK_URL` as the event
    /// `defender-responder.notice.{kind}`. Without a channel the notice is only logged.
    pub async fn announce(&self, task: &Task, kind: &str, detail: Value) -> Result<(), Error> {
        let id = format!("{}-{kind}", task.message_id);
        tracing::info!(message_id = %task.message_id, kind, %detail, "worker: notice");
        if let Some(notifier) = &self.notifier {
            let mut notice = notice_task(task, kind, &detail);
            if notice.recipients.is_empty() {
                notice.recipients = self.security_team.clone();
            }
            notifier
                .deliver(&[notice], &self.journal, &self.actor(Queue::Notification))
                .await?;
        }
        let Some(channel) = &self.webhook else {
            return Ok(());
        };
        let event = json!({
            "id": id,
            "type": format!("defender-responder.notice.{kind}"),
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            "data": { "task": task, "detail": detail },
        });
        channel
            .send(&id, event.to_string().as_bytes())
            .await
            .map(|_| ())
            .map_err(|err| Error::Transient(err.to_string()))
    }

    /// A notice about an outcome already recorded: a failure to send it is logged (the
    /// journal holds the outcome; redelivering the message would not run it again).
    async fn announce_after(&self, task: &Task, kind: &str, detail: Value) {
        if let Err(err) = self.announce(task, kind, detail).await {
            tracing::warn!(message_id = %task.message_id, kind, error = %err, "notice not delivered; the journal holds the outcome");
        }
    }

    /// After a decision approved `entry`: the task (recorded in its preview) goes back on its
    /// queue under `{id}-approved`, so the worker that receives it carries it out. Repeating it
    /// is harmless (the derived id is deduplicated, the journal lets one run win).
    pub async fn enqueue_approved(&self, entry: &JournalEntry) -> Result<(), Error> {
        let mut task = task_of(entry)?;
        task.message_id = message_id(&format!("{}{APPROVED_SUFFIX}", entry.message_id));
        task.status = TaskStatus::Ready;
        self.publisher.publish(&[task]).await
    }
}

/// The notification task a notice about `task` travels as: to the task's recipients, about
/// its target, under `{message id}-{kind}`, saying what happened in its reason.
pub fn notice_task(task: &Task, kind: &str, detail: &Value) -> Task {
    let said = ["note", "error", "would", "summary"]
        .iter()
        .find_map(|key| detail.get(*key).and_then(Value::as_str))
        .unwrap_or("");
    let what = match kind {
        "not_automated" => "not automated",
        "dry_run" => "dry run, nothing was changed",
        "failed" => "failed",
        "expired" => "decision expired",
        "done" => "done",
        other => other,
    };
    let steps: Vec<&str> = task.steps.iter().map(String::as_str).collect();
    let mut notice = Task::new(
        &task.alert,
        Parameters::NotifySecurityTeam {
            subject: Subject::from_label(&task.target),
        },
        &steps,
        format!(
            "{} on {}: {what}{}{said}",
            task.action,
            task.target,
            if said.is_empty() { "" } else { ": " }
        ),
    );
    // The rest of what the notice carries (the undo command, the Undo and Keep links, the
    // expiry) as facts the reader sees.
    if let Value::Object(fields) = detail {
        for (key, value) in fields {
            if let Some(text) = value.as_str().filter(|text| *text != said) {
                notice.facts.insert(key.replace('_', " "), text.to_string());
            }
        }
    }
    notice.message_id = message_id(&format!("{}-{kind}", task.message_id));
    notice.recipients = task.recipients.clone();
    notice.dry_run = task.dry_run;
    notice
}

/// What the journal records of a preview: the task as delivered (what `undo`, the sweeper
/// and the decision page read back), the exact change (what a decision's hash binds), the
/// prior state, and the resources and subscriptions it touches.
pub fn recorded_preview(task: &Task, preview: &Preview) -> Value {
    json!({
        "task": task,
        "change": preview.change,
        "prior_state": preview.prior_state,
        "summary": preview.change.summary,
        "leases": preview.leases,
        "subscriptions": preview.subscriptions,
    })
}

/// Whether an isolation entry's change counts against the blast-radius budget: a live change
/// that was attempted (done, failed after its writes began, or undone since).
fn counts_against_budget(entry: &JournalEntry) -> bool {
    /// The two keys of a result that say nothing was written.
    #[derive(Deserialize)]
    struct Wrote {
        dry_run: Option<serde::de::IgnoredAny>,
        noop: Option<serde::de::IgnoredAny>,
    }
    let live = !entry.dry_run
        && entry.result.as_ref().is_none_or(|r| {
            r.decode::<Wrote>()
                .is_ok_and(|w| w.dry_run.is_none() && w.noop.is_none())
        });
    live && matches!(entry.state, TaskState::Done | TaskState::Undone)
}

/// Whether a task's run reads its alert's other entries first ([`Worker::context_for`]): a
/// vault's firewall, to know whether the alert's rotations of that vault are still due.
fn reads_its_alert(task: &Task) -> bool {
    task.action == Action::EnableKeyVaultFirewall && task.key_vault_name().is_some()
}

/// Whether a rotation task no longer needs its vault reachable.
fn rotation_settled(entry: &JournalEntry) -> bool {
    entry.state.is_final() || (entry.state == TaskState::Failed && entry.retryable != Some(true))
}

/// The task a pending entry recorded in its preview.
pub fn task_of(entry: &JournalEntry) -> Result<Task, Error> {
    /// The part of a recorded preview that holds the task.
    #[derive(Deserialize)]
    struct Recorded {
        task: Option<Task>,
    }
    let missing = || {
        Error::Permanent(format!(
            "task {} has no recorded task to carry out",
            entry.message_id
        ))
    };
    let preview = entry.preview.as_ref().ok_or_else(missing)?;
    preview
        .decode::<Recorded>()
        .map_err(|err| {
            Error::Permanent(format!(
                "task {}: the recorded task cannot be read: {err}",
                entry.message_id
            ))
        })?
        .task
        .ok_or_else(missing)
}

/// The change a pending task asks a person to decide on: the task exactly as published (what,
/// on which target, with which parameters) and what approving does with it.
pub fn pending_preview(task: &Task) -> Value {
    json!({
        "task": task,
        "change": Value::Null,
        "summary": format!(
            "{} on {}: no executor carries this action out here; approving records it as not automated and tells the recipients",
            task.action, task.target
        ),
    })
}

/// A transition refused because another delivery moved the task on first: not a failure.
fn already_moved_on(err: JournalError, id: &MessageId) -> Result<Settlement, Error> {
    match err {
        JournalError::IllegalTransition {
            from: TaskState::Running,
            ..
        } => Ok(Settlement::retry(format!(
            "task {id} is being run by another worker"
        ))),
        JournalError::IllegalTransition { from, .. } => Ok(Settlement::complete(format!(
            "task {id} is {from} already; nothing more to do"
        ))),
        other => Err(other.into()),
    }
}

/// A failed executor call as a run's failure: the reason, whether a retry may succeed, and
/// when to retry.
fn failure_of(err: &ExecutorError) -> (String, bool, Option<Duration>) {
    let retryable = err.kind() == ExecutorErrorKind::Retryable;
    (
        err.to_string(),
        retryable,
        err.retry_after().or(Some(DEFAULT_RETRY_DELAY)),
    )
}

/// Stops renewing `leases`, handing over those still held to be given back in a journal
/// write; a lost one is logged (it lapses by itself).
async fn stopped(leases: Vec<HeldLease>) -> Vec<Lease> {
    let mut held = Vec::new();
    for lease in leases {
        match lease.stop().await {
            Ok(lease) => held.push(lease),
            Err(err) => {
                tracing::warn!(error = %err, "lease release failed; it lapses by itself")
            }
        }
    }
    held
}

async fn release(leases: Vec<HeldLease>) {
    for lease in leases {
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "lease release failed; it lapses by itself");
        }
    }
}
