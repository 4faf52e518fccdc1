//! The workers: one task message in, carried out once (or recorded as waiting, dry-run, not
//! automated), and the settlement the queue gets back (complete, or retry after a delay).
//!
//! [`Worker::process`] is the whole loop for one delivery, the same for the Functions host's
//! `serviceBusTrigger` invocations ([`crate::functions::workers`]) and the embedded queues
//! ([`queue_loop`]). The journal is what makes it safe under redelivery and scale-out: every
//! step is a compare-and-set transition, and only one caller wins `begin_run`.

pub mod follow_ups;
pub mod queue_loop;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use crate::adapters::SharedPublisher;
use crate::approval::DecisionDesk;
use crate::domain::{MessageId, Parameters, Queue, Task, TaskStatus};
use crate::error::Error;
use crate::executors::{
    Executor, ExecutorContext, ExecutorError, ExecutorErrorKind, ExecutorRegistry,
};
use crate::journal::{
    preview_hash, HeldLease, Journal, JournalEntry, JournalError, RunOutcome, TaskState, Verdict,
};
use crate::notify::{Delivery, WebhookChannel};

/// The suffix of the message id an approved task is re-enqueued under: Service Bus duplicate
/// detection (and the embedded queue's tombstones) would drop the original id.
pub const APPROVED_SUFFIX: &str = "-approved";

/// How long a delivery that must wait (another worker runs the task, a decision request whose
/// pending task has no preview yet) is kept away before it is delivered again, when nothing
/// says otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);

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
    desk: Option<Arc<DecisionDesk>>,
    publisher: SharedPublisher,
    executors: ExecutorRegistry,
    context: Option<Arc<ExecutorContext>>,
    dry_run: bool,
    instance: String,
    lease_ttl: Duration,
    timeout_policy: Arc<crate::policy::Policy>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("journal", &self.journal)
            .field("webhook", &self.webhook.is_some())
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
            desk: None,
            publisher,
            executors: ExecutorRegistry::empty(),
            context: None,
            dry_run: false,
            lease_ttl: Duration::from_secs(60),
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

    /// Builds decision links with `desk` for `request_decision` notifications.
    pub fn with_decisions(mut self, desk: Option<Arc<DecisionDesk>>) -> Self {
        self.desk = desk;
        self
    }

    /// Carries containment tasks out with `executors` in `context` (the Azure clients and
    /// guard rails). Without a context every containment task is recorded as not automated.
    pub fn with_executors(mut self, executors: ExecutorRegistry, context: ExecutorContext) -> Self {
        self.executors = executors;
        self.context = Some(Arc::new(context));
        self
    }

    /// The executor of a task's action and the context it runs in (`None` without either):
    /// for the sweeper's follow-ups and undo.
    pub(crate) fn executor(
        &self,
        task: &Task,
    ) -> Option<(Arc<dyn Executor>, Arc<ExecutorContext>)> {
        Some((self.executors.get(task.action)?, self.context.clone()?))
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
        let received = self.journal.receive(&task, &actor).await?;
        let entry = received.entry;
        if task.queue == Queue::Notification {
            return self.notify(&task, &actor).await;
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
            Some((executor, context)) => match executor.preview(task, &context).await {
                Ok(preview) => json!({
                    "task": task,
                    "change": preview.change,
                    "prior_state": preview.prior_state,
                    "summary": preview.change.summary,
                }),
                Err(err) => return Ok(self.preview_failed(task, err)),
            },
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
        if let Err(err) = self.journal.begin_run(id, actor).await {
            return already_moved_on(err, id);
        }
        let preview = match executor.preview(task, &context).await {
            Ok(preview) => preview,
            Err(err) => return self.fail(task, err, actor).await,
        };
        if let Some(decided) = entry.preview.as_ref().and_then(|p| p.get("change")) {
            let now = serde_json::to_value(&preview.change).unwrap_or(Value::Null);
            if entry.decision.is_some() && !decided.is_null() && *decided != now {
                let reason = format!(
                    "the target changed since the approved preview; nothing was changed (approved: {}, now: {})",
                    preview_hash(decided),
                    preview_hash(&now)
                );
                return self.finish_failed(task, reason, false, None, actor).await;
            }
        }
        let change = serde_json::to_value(&preview.change).unwrap_or(Value::Null);
        self.journal
            .record_prior_state(id, preview.prior_state.clone(), change.clone())
            .await?;
        if dry_run || preview.change.is_noop() {
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
            return Ok(Settlement::complete(format!(
                "task {id}: {} ({})",
                if dry_run {
                    "dry run, would"
                } else {
                    "nothing to change"
                },
                preview.change.summary
            )));
        }
        let mut leases = Vec::new();
        for resource in &preview.leases {
            match self
                .journal
                .hold_lease(resource, actor, self.lease_ttl)
                .await?
            {
                Some(lease) => leases.push(lease),
                None => {
                    release(leases).await;
                    let reason = format!("{resource} is being changed by another run");
                    return self
                        .finish_failed(task, reason, true, Some(DEFAULT_RETRY_DELAY), actor)
                        .await;
                }
            }
        }
        let outcome = async {
            let applied = executor.apply(task, &preview, &context).await?;
            let verification = executor.verify(task, &preview, &applied, &context).await?;
            Ok::<_, ExecutorError>((applied, verification))
        }
        .await;
        let lost = leases.iter().any(|lease| lease.is_lost());
        release(leases).await;
        match outcome {
            Ok((applied, verification)) if verification.passed() && !lost => {
                self.journal
                    .finish_scheduling(
                        id,
                        RunOutcome::Done {
                            result: serde_json::to_value(&applied).unwrap_or(Value::Null),
                            verification: serde_json::to_value(&verification)
                                .unwrap_or(Value::Null),
                        },
                        follow_ups::scheduled(task, &applied),
                        actor,
                    )
                    .await?;
                Ok(Settlement::complete(format!("task {id} done and verified")))
            }
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
        let retryable = err.kind() == ExecutorErrorKind::Retryable;
        let after = err.retry_after();
        self.finish_failed(
            task,
            err.to_string(),
            retryable,
            after.or(Some(DEFAULT_RETRY_DELAY)),
            actor,
        )
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
        self.journal
            .finish(
                &task.message_id,
                RunOutcome::Failed {
                    error: reason.clone(),
                    retryable,
                },
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

    /// A notification task: delivered once through the webhook channel, with the decision
    /// links of its pending tasks when it asks for a decision.
    async fn notify(&self, task: &Task, actor: &str) -> Result<Settlement, Error> {
        let Some(channel) = &self.webhook else {
            let note = "no notification channel is configured (RESPONDER_WEBHOOK_URL)";
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
        };
        let links = match self.decision_links(task).await? {
            Ok(links) => links,
            Err(waiting) => return Ok(Settlement::retry(waiting)),
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

    /// Sends a notice about a task (`not_automated`, `expired`, a dry run's "would …") through
    /// the webhook channel, under the id `{message id}-{kind}` so receivers dedupe repeats.
    /// Without a channel the notice is only logged.
    pub async fn announce(&self, task: &Task, kind: &str, detail: Value) -> Result<(), Error> {
        let id = format!("{}-{kind}", task.message_id);
        tracing::info!(message_id = %task.message_id, kind, %detail, "worker: notice");
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

/// The task a pending entry recorded in its preview.
pub fn task_of(entry: &JournalEntry) -> Result<Task, Error> {
    let task = entry
        .preview
        .as_ref()
        .and_then(|preview| preview.get("task"))
        .ok_or_else(|| {
            Error::Permanent(format!(
                "task {} has no recorded task to carry out",
                entry.message_id
            ))
        })?;
    serde_json::from_value(task.clone()).map_err(|err| {
        Error::Permanent(format!(
            "task {}: the recorded task cannot be read: {err}",
            entry.message_id
        ))
    })
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

async fn release(leases: Vec<HeldLease>) {
    for lease in leases {
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "lease release failed; it lapses by itself");
        }
    }
}
