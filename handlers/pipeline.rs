//! One event's journey: classify, recognise duplicates and status updates, route, plan,
//! publish, remember. Shared by the HTTP functions and the offline `plan` command.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::adapters::{
    shared_store, AlertCommit, EmbeddedStore, LedgerEntry, MemoryLedger, SharedLedger,
    SharedPublisher,
};
use crate::decode::{EventKind, InboundEvent};
use crate::domain::{
    Action, AlertRef, AlertStatus, Parameters, ResponsePlan, SecurityAlert, ServiceName, Severity,
    Subject, Task, TaskStatus,
};
use crate::error::Error;
use crate::policy::Policy;
use crate::services::{Registry, Route};

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A response was planned (and, when serving, published).
    Planned,
    /// The alert was handled before; nothing new is published.
    Duplicate,
    /// A status change of an alert; no containment starts.
    StatusUpdate,
    /// Well-formed but not something to act on (handshakes, non-alert events).
    Ignored,
    /// Malformed; the reason says what is wrong.
    Rejected,
}

/// The summary of an alert in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertSummary {
    /// Alert type as sent.
    pub alert_type: String,
    /// Defender's systemAlertId.
    pub system_alert_id: String,
    /// The service it routed to.
    pub service: ServiceName,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AlertStatus,
    /// Whether the alert simulator produced it.
    pub simulated: bool,
}

/// The handling of one event, as reported by `plan` and by the webhook.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventReport {
    /// The envelope's event id.
    pub event_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
    /// The alert, when the event carried one.
    pub alert: Option<AlertSummary>,
    /// The tasks planned (empty unless planned or a status notification).
    pub tasks: Vec<Task>,
    /// Survivable problems in the alert, each naming its field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The subscription-validation code, for a handshake event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_code: Option<String>,
}

impl EventReport {
    fn without_alert(event_id: &str, outcome: Outcome, reason: String) -> Self {
        EventReport {
            event_id: event_id.to_string(),
            outcome,
            reason,
            alert: None,
            tasks: Vec::new(),
            warnings: Vec::new(),
            validation_code: None,
        }
    }
}

/// How long a copy of an alert waits, by default, for another delivery of the same alert
/// to finish before it answers retryable.
pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(20);

/// Inputs up to this size are decoded on the async worker that received them (a typical
/// alert invocation is 10–40 KB and decodes in tens of microseconds); larger ones go to the
/// blocking pool so they never stall the other invocations on that worker.
pub const INLINE_CPU_BYTES: usize = 64 * 1024;

/// Routes and plans alerts under a policy.
pub struct Pipeline {
    registry: Registry,
    policy: Policy,
    claim_wait: Duration,
    /// Decoding and planning run on the blocking pool, at most this many at once.
    cpu: Arc<Semaphore>,
}

impl Pipeline {
    /// A pipeline with the given handlers and policy.
    pub fn new(registry: Registry, policy: Policy) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Pipeline {
            registry,
            policy,
            claim_wait: DEFAULT_CLAIM_WAIT,
            cpu: Arc::new(Semaphore::new(cores.max(2))),
        }
    }

    /// Sets how long a copy of an alert waits for another delivery of it to finish.
    pub fn with_claim_wait(mut self, wait: Duration) -> Self {
        self.claim_wait = wait;
        self
    }

    /// Runs CPU-bound work (decoding, planning) on the blocking pool, a bounded number at a
    /// time, so a multi-megabyte alert never stalls the async workers that answer the others.
    pub async fn run_cpu<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Transient("the planning pool is closed".into()))?;
        // The permit goes with the work: it is held until the work ends, even if the caller
        // stops waiting for it.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|err| Error::Transient(format!("planning did not finish: {err}")))
    }

    /// Runs CPU work sized by `input_bytes`: on the calling async worker when the input is at
    /// most [`INLINE_CPU_BYTES`] (tens of microseconds: a trip to the blocking pool would cost
    /// more than the work), else on the blocking pool like [`Pipeline::run_cpu`].
    pub async fn run_cpu_sized<T: Send + 'static>(
        &self,
        input_bytes: usize,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        if input_bytes <= INLINE_CPU_BYTES {
            return Ok(work());
        }
        self.run_cpu(work).await
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides what an event calls for, reading (never writing) the in-memory ledger of the
    /// offline paths (`plan`, samples, tests).
    pub fn assess(
        &self,
        event: &InboundEvent,
        ledger: &MemoryLedger,
    ) -> Result<EventReport, Error> {
        let known = match &event.kind {
            EventKind::Alert(decoded) => ledger.lookup(&decoded.alert.system_alert_id)?,
            _ => None,
        };
        Ok(self.assess_known(event, known))
    }

    /// Decides what an event calls for, given what the ledger knows of its alert.
    fn assess_known(&self, event: &InboundEvent, known: Option<LedgerEntry>) -> EventReport {
        let decoded = match &event.kind {
            EventKind::Alert(decoded) => decoded,
            EventKind::SubscriptionValidation { code, .. } => {
                let mut report = EventReport::without_alert(
                    &event.event_id,
                    Outcome::Ignored,
                    "Event Grid subscription validation handshake: answered, no alert in it"
                        .to_string(),
                );
                report.validation_code = Some(code.clone());
                return report;
            }
            EventKind::NotAnAlert(reason) => {
                return EventReport::without_alert(
                    &event.event_id,
                    Outcome::Ignored,
                    reason.clone(),
                )
            }
            EventKind::Invalid(reason) => {
                return EventReport::without_alert(
                    &event.event_id,
                    Outcome::Rejected,
                    reason.clone(),
                )
            }
        };
        let alert = &decoded.alert;
        let route = self.registry.route(alert);
        let (service, entry) = (route.service, route.entry);
        let mut warnings = decoded.warnings.clone();
        let summary = AlertSummary {
            alert_type: alert.alert_type.clone(),
            system_alert_id: alert.system_alert_id.clone(),
            service,
            severity: alert.severity,
            status: alert.status,
            simulated: alert.is_simulated(),
        };
        let (outcome, reason, tasks) = if alert.status.is_update() {
            let (reason, tasks) =
                self.status_update(alert, &route, known.is_some_and(|k| k.planned));
            (Outcome::StatusUpdate, reason, tasks)
        } else if known.is_some_and(|k| k.planned) {
            (
                Outcome::Duplicate,
                format!(
                    "alert {} was already planned and published; this redelivery publishes nothing new",
                    alert.system_alert_id
                ),
                Vec::new(),
            )
        } else {
            // The handler plans from the alert's facts; the policy's automation and safety
            // rules are applied afterwards, here, where a reader of the intake sees them.
            let mut plan = route.plan(alert, &self.policy);
            self.policy.finalize(alert, &mut plan);
            warnings.extend(plan.warnings().iter().cloned());
            let reason = match entry {
                Some(entry) => format!(
                    "{} ({}) routed to the {} handler: {} task(s) planned",
                    alert.alert_type,
                    entry.display_name,
                    service,
                    plan.tasks().len()
                ),
                None => format!(
                    "{} is not a Key Vault, DNS or Resource Manager alert type of the playbook: \
                     GEN-1, the security team is told (no containment)",
                    alert.alert_type
                ),
            };
            (Outcome::Planned, reason, plan.into_tasks())
        };
        EventReport {
            event_id: event.event_id.clone(),
            outcome,
            reason,
            alert: Some(summary),
            tasks,
            warnings,
            validation_code: None,
        }
    }

    fn status_update(
        &self,
        alert: &SecurityAlert,
        route: &Route<'_>,
        seen: bool,
    ) -> (String, Vec<Task>) {
        let closed = matches!(alert.status, AlertStatus::Resolved | AlertStatus::Dismissed);
        if !seen {
            return (
                format!(
                    "status update ({}) for an alert this responder has not planned; recorded, nothing to cancel",
                    alert.status
                ),
                Vec::new(),
            );
        }
        if !closed {
            return (
                format!("status update ({}); no containment starts", alert.status),
                Vec::new(),
            );
        }
        let step = route.contact_step();
        let alert_ref = AlertRef::new(alert, route.service);
        // Plans are deterministic, so planning the alert again names the message ids of the
        // decisions that are still pending. Workers also cancel by correlation id
        // (`cancel_pending_for_alert`), which covers a closing update whose details differ.
        let mut replanned = route.plan(alert, &self.policy);
        self.policy.finalize(alert, &mut replanned);
        let pending: Vec<&Task> = replanned
            .tasks()
            .iter()
            .filter(|task| {
                task.status == TaskStatus::PendingApproval || task.action == Action::RequestDecision
            })
            .collect();
        let mut recipients: Vec<String> = Vec::new();
        for task in replanned
            .tasks()
            .iter()
            .filter(|task| !task.queue.is_containment())
        {
            for person in &task.recipients {
                if !recipients.contains(person) {
                    recipients.push(person.clone());
                }
            }
        }
        let mut plan = ResponsePlan::new();
        plan.push(
            Task::new(
                &alert_ref,
                Parameters::NotifyStatusChange {
                    subject: Subject::from_label(&alert.resource_label()),
                    new_status: alert.status,
                    cancel_pending_for_alert: alert.system_alert_id.clone(),
                    cancelled: pending.iter().map(|task| task.message_id.clone()).collect(),
                },
                &[step],
                format!(
                    "{step}: the alert was {} in Defender; its {} pending decision(s) are cancelled and no further containment follows.",
                    alert.status.as_str().to_ascii_lowercase(),
                    pending.len()
                ),
            )
            .checklist(pending.iter().map(|task| {
                format!(
                    "Cancelled: {} on {} (message id {}).",
                    task.action, task.target, task.message_id
                )
            }))
            .recipients(recipients),
        );
        (
            format!(
                "status update ({}): the people involved are told it closed",
                alert.status
            ),
            plan.into_tasks(),
        )
    }

    /// Records the outcome of a handled event, so a redelivery is recognised.
    pub fn remember(&self, report: &EventReport, ledger: &MemoryLedger) -> Result<(), Error> {
        match ledger_entry(report) {
            Some((id, status, planned)) => ledger.record(&id, status, planned),
            None => Ok(()),
        }
    }

    /// Assesses, publishes and remembers one event. A publishing failure returns the error
    /// (and records nothing), so the platform's redelivery plans and publishes again.
    ///
    /// The alert's claim is held from the lookup to the ledger record: a copy of the same
    /// alert arriving meanwhile waits for this outcome (then finds it planned: `duplicate`),
    /// or, past the claim wait, answers retryable. It never answers 2xx before the tasks are
    /// published and never publishes them a second time.
    pub async fn handle(
        self: &Arc<Self>,
        event: Arc<InboundEvent>,
        ledger: &SharedLedger,
        publisher: &SharedPublisher,
    ) -> Result<EventReport, Error> {
        // A task of its own: if the caller goes away (the client disconnects), the claimed
        // work still runs to its outcome, which the copies waiting on the claim then see.
        let (pipeline, ledger, publisher) = (self.clone(), ledger.clone(), publisher.clone());
        tokio::spawn(async move { pipeline.handle_claimed(event, ledger, publisher).await })
            .await
            .map_err(|err| Error::Transient(format!("handling the event did not finish: {err}")))?
    }

    async fn handle_claimed(
        self: Arc<Self>,
        event: Arc<InboundEvent>,
        ledger: SharedLedger,
        publisher: SharedPublisher,
    ) -> Result<EventReport, Error> {
        let started = std::time::Instant::now();
        let _claim = match &event.kind {
            EventKind::Alert(decoded) => Some(
                ledger
                    .claims()
                    .claim(&decoded.alert.system_alert_id, self.claim_wait)
                    .await?,
            ),
            _ => None,
        };
        if let Some(store) = shared_store(ledger.as_ref(), publisher.as_ref()) {
            return self.handle_in_store(event, store.clone()).await;
        }
        // A ledger shared by instances claims the alert there too, within what is left of the
        // claim wait.
        let known = match &event.kind {
            EventKind::Alert(decoded) => {
                let wait = self.claim_wait.saturating_sub(started.elapsed());
                ledger
                    .claim_and_lookup(&decoded.alert.system_alert_id, wait)
                    .await?
            }
            _ => None,
        };
        let report = {
            let pipeline = self.clone();
            self.run_cpu(move || pipeline.assess_known(&event, known))
                .await?
        };
        if !report.tasks.is_empty() {
            if let Err(err) = publisher.publish(&report.tasks).await {
                if let Some(alert) = &report.alert {
                    ledger.release(&alert.system_alert_id).await;
                }
                return Err(err);
            }
        }
        if let Some((id, status, planned)) = ledger_entry(&report) {
            ledger.record(&id, status, planned).await?;
        }
        Ok(report)
    }
}

impl Pipeline {
    /// The embedded store is both ledger and publisher: one trip to the blocking pool and one
    /// durable write per alert. The plan is made first (planning is pure), then its tasks,
    /// serialised once, and the ledger record go into one savepoint of the next group commit,
    /// which also checks, inside that transaction, that the alert was not planned before; a
    /// redelivery writes nothing and reports `duplicate`. Status updates, whose reply depends
    /// on whether the alert was seen, read the ledger first. The caller holds the claim.
    async fn handle_in_store(
        self: Arc<Self>,
        event: Arc<InboundEvent>,
        store: EmbeddedStore,
    ) -> Result<EventReport, Error> {
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::transient("the planning pool is closed"))?;
        let pipeline = self.clone();
        tokio::task::spawn_blocking(move || {
            let update = match &event.kind {
                EventKind::Alert(decoded) => decoded.alert.status.is_update(),
                _ => false,
            };
            let known = match &event.kind {
                EventKind::Alert(decoded) if update => {
                    store.lookup(&decoded.alert.system_alert_id)?
                }
                _ => None,
            };
            let report = pipeline.assess_known(&event, known);
            let Some((id, status, planned)) = ledger_entry(&report) else {
                return Ok(report);
            };
            let tasks = store.encode(&report.tasks)?;
            // The CPU work is done; waiting for the commit does not hold a planning slot.
            drop(permit);
            match store.commit_alert(tasks, &id, status, planned, !update)? {
                AlertCommit::Committed => Ok(report),
                AlertCommit::AlreadyPlanned => Ok(pipeline.assess_known(
                    &event,
                    Some(LedgerEntry {
                        status,
                        planned: true,
                    }),
                )),
            }
        })
        .await
        .map_err(|err| Error::transient(format!("handling the event did not finish: {err}")))?
    }
}

/// What the ledger records for a handled event: nothing for events without an alert and for
/// duplicates (already recorded), else the alert's id, status and whether it was planned.
fn ledger_entry(report: &EventReport) -> Option<(String, AlertStatus, bool)> {
    let alert = report.alert.as_ref()?;
    if report.outcome == Outcome::Duplicate {
        return None;
    }
    let status = alert.status;
    Some((
        alert.system_alert_id.clone(),
        status,
        report.outcome == Outcome::Planned,
    ))
}
