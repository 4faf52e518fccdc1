//! The workers on the embedded SQLite queues: receive under a peek-lock, process, then
//! complete, abandon (with the retry delay) or dead-letter; a background loop per queue for
//! `serve`, and one drain of every queue for `work --once`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::{Settlement, Worker};
use crate::adapters::{EmbeddedStore, LockToken, ReceivedMessage};
use crate::domain::Queue;
use crate::error::Error;

/// How long a received message stays locked: longer than any run may last (the journal's run
/// take-over is 6 minutes), so a message is never handed to a second receiver mid-run.
pub const LOCK: Duration = Duration::from_secs(7 * 60);

/// How many messages one receive takes.
const BATCH: usize = 8;

/// How long a processed message may wait for the batch's other messages before it is
/// completed: completions are committed together (one fsync for the batch), but never kept
/// waiting long under the lock.
const COMPLETE_WITHIN: Duration = Duration::from_secs(30);

/// The order a drain visits the queues in: containment first, so a decision request finds the
/// changes of its pending tasks recorded; rotations before isolation, so a vault's firewall
/// closes after its rotations ran.
pub const DRAIN_ORDER: [Queue; 3] = [Queue::Rotation, Queue::Isolation, Queue::Notification];

/// What one drain did, per queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Messages completed.
    pub completed: usize,
    /// Messages given back for a later delivery.
    pub retried: usize,
    /// Messages dead-lettered (not a task, or delivered too often).
    pub dead_lettered: usize,
    /// What happened to each message: `message id: outcome`.
    pub outcomes: Vec<String>,
}

impl DrainReport {
    fn add(&mut self, other: DrainReport) {
        self.completed += other.completed;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.outcomes.extend(other.outcomes);
    }
}

/// The workers of the embedded queues.
#[derive(Clone, Debug)]
pub struct EmbeddedWorkers {
    store: EmbeddedStore,
    worker: Arc<Worker>,
    retry_delay: Option<Duration>,
}

impl EmbeddedWorkers {
    /// Workers taking messages from `store`.
    pub fn new(store: EmbeddedStore, worker: Arc<Worker>) -> Self {
        EmbeddedWorkers {
            store,
            worker,
            retry_delay: None,
        }
    }

    /// Overrides how long a retried message stays invisible (tests use zero).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = Some(delay);
        self
    }

    /// Processes every message visible now on `queue`, batch by batch, until none is left
    /// (a retried message becomes visible again only after its delay).
    pub async fn drain(&self, queue: Queue) -> Result<DrainReport, Error> {
        let mut report = DrainReport::default();
        loop {
            let store = self.store.clone();
            let batch = blocking(move || store.receive(queue, BATCH, LOCK)).await?;
            if batch.is_empty() {
                return Ok(report);
            }
            // Messages done with, completed together once the batch is through (or when the
            // first has waited `COMPLETE_WITHIN`): each one's outcome is durable in the journal
            // already, so a crash before the completion only redelivers what is recorded done.
            let mut done = Completions::default();
            for message in batch {
                let settled = self.settle(queue, message, &mut done).await;
                if settled.is_err() || done.due() {
                    done.flush(&self.store).await?;
                }
                report.add(settled?);
            }
            done.flush(&self.store).await?;
        }
    }

    /// Drains every queue once, containment first.
    pub async fn drain_all(&self) -> Result<DrainReport, Error> {
        let mut report = DrainReport::default();
        for queue in DRAIN_ORDER {
            report.add(self.drain(queue).await?);
        }
        Ok(report)
    }

    /// Drains `queue` every `poll` until `stop` turns true. A failing store is logged and
    /// retried at the next poll.
    pub async fn run(
        self,
        queue: Queue,
        poll: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match self.drain(queue).await {
                Ok(report) if report.outcomes.is_empty() => {}
                Ok(report) => tracing::info!(
                    queue = queue.as_str(),
                    completed = report.completed,
                    retried = report.retried,
                    dead_lettered = report.dead_lettered,
                    "embedded worker: drained"
                ),
                Err(err) => {
                    tracing::warn!(queue = queue.as_str(), error = %err, "embedded worker: queue unavailable")
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    async fn settle(
        &self,
        queue: Queue,
        received: ReceivedMessage,
        done: &mut Completions,
    ) -> Result<DrainReport, Error> {
        let mut report = DrainReport::default();
        let id = received.message.message_id.clone();
        let body: Value = serde_json::from_str(&received.message.body)
            .unwrap_or(Value::String(received.message.body.clone()));
        let settlement = self.worker.process(queue, &body).await;
        let token = received.lock_token.clone();
        let store = self.store.clone();
        let line = format!(
            "{id} (delivery {}): {}",
            received.delivery_count,
            settlement.describe()
        );
        match settlement {
            Settlement::Complete { .. } => {
                done.add(token);
                report.completed += 1;
            }
            Settlement::Retry { after, .. } => {
                let delay = self.retry_delay.unwrap_or(after);
                blocking(move || store.abandon(&token, delay)).await?;
                report.retried += 1;
            }
            Settlement::Reject { reason } => {
                blocking(move || store.dead_letter(&token, &reason)).await?;
                report.dead_lettered += 1;
            }
        }
        report.outcomes.push(line);
        Ok(report)
    }
}

/// Lock tokens of processed messages waiting to be completed in one transaction.
#[derive(Default)]
struct Completions {
    tokens: Vec<LockToken>,
    since: Option<Instant>,
}

impl Completions {
    fn add(&mut self, token: LockToken) {
        self.since.get_or_insert_with(Instant::now);
        self.tokens.push(token);
    }

    fn due(&self) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= COMPLETE_WITHIN)
    }

    async fn flush(&mut self, store: &EmbeddedStore) -> Result<(), Error> {
        self.since = None;
        let tokens = std::mem::take(&mut self.tokens);
        if tokens.is_empty() {
            return Ok(());
        }
        let store = store.clone();
        blocking(move || store.complete_all(&tokens)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::Transient(format!("embedded store worker thread: {err}")))?
}
