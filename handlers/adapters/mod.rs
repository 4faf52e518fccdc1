//! Outbound I/O behind small traits: publishing tasks and remembering alerts already handled.

mod blob_ledger;
mod claims;
mod embedded_store;
pub mod identity;
mod memory_ledger;
pub mod service_bus;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{AlertStatus, Task};
use crate::error::Error;

pub use crate::config::QueueNames;
pub use blob_ledger::{BlobLedger, DEFAULT_CLAIM_TTL};
pub use claims::{ClaimGuard, Claims};
pub use embedded_store::{
    AlertCommit, CheckpointStats, DeadLetteredMessage, EmbeddedStore, EncodedTasks, LockToken,
    QueueOptions, ReceivedMessage, StoredMessage, MAX_DELIVERY_COUNT_EXCEEDED,
};
pub use memory_ledger::MemoryLedger;
pub use service_bus::{ServiceBusPublisher, ServiceBusSettings};

/// Publishes tasks to their queues.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes every task and returns once each is durably accepted. Republishing a task
    /// with a message id already accepted is a no-op, so redeliveries are safe.
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error>;
    /// Short name for logs ("embedded", "service_bus").
    fn name(&self) -> &'static str;
    /// What the readiness probe reports: `Err` with the fault seen by the last check or
    /// publish (a missing queue, a refused password), `Ok` otherwise. Answers from memory,
    /// never by calling the broker (the host polls it every 25 ms at start-up).
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
    /// The embedded store, when this publisher is one: when it is also the ledger, an alert's
    /// tasks and its ledger record are committed in one transaction.
    fn embedded_store(&self) -> Option<&EmbeddedStore> {
        None
    }
}

/// What the responder remembers of an alert it has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The last status seen.
    pub status: AlertStatus,
    /// Whether a response was planned and published for it.
    pub planned: bool,
}

/// Remembers which alerts were already handled, so redeliveries publish nothing new.
///
/// Checking and claiming is atomic: a delivery first takes the alert's claim in this process
/// from [`AlertLedger::claims`], then [`AlertLedger::claim_and_lookup`] (which, for a ledger
/// shared by instances, also claims the alert in the shared storage), publishes and records,
/// and only then lets the next copy of the same alert in, which finds it planned. The
/// embedded store belongs to one process, so its in-process claims cover every delivery that
/// can see it; the Blob ledger ([`BlobLedger`]) is shared by every instance of the function
/// app and claims each alert there too, with a claim that expires if its holder dies.
#[async_trait::async_trait]
pub trait AlertLedger: Send + Sync {
    /// What is known of an alert.
    async fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error>;
    /// Claims the alert for the delivery holding its claim in [`AlertLedger::claims`] across
    /// every instance sharing this ledger (waiting up to `wait` for another instance's claim
    /// to end; past it, a retryable error), then says what is known of it. An alert already
    /// planned is not claimed: there is nothing left to decide. A ledger of one process has
    /// nothing more to claim: this is [`AlertLedger::lookup`].
    async fn claim_and_lookup(
        &self,
        system_alert_id: &str,
        wait: Duration,
    ) -> Result<Option<LedgerEntry>, Error> {
        let _ = wait;
        self.lookup(system_alert_id).await
    }
    /// Records an alert's latest status; `planned` is sticky once true. Ends this delivery's
    /// claim on the alert. Returns once the record is durable.
    async fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error>;
    /// Gives back a claim taken by [`AlertLedger::claim_and_lookup`] without recording
    /// anything (publishing failed), so the redelivery need not wait for the claim to expire.
    /// Best effort: a claim that cannot be given back expires.
    async fn release(&self, system_alert_id: &str) {
        let _ = system_alert_id;
    }
    /// The alerts some delivery of this process is handling right now.
    fn claims(&self) -> &Claims;
    /// Short name for logs ("embedded", "memory", "blob").
    fn name(&self) -> &'static str;
    /// The embedded store, when this ledger is one (see [`Publisher::embedded_store`]).
    fn embedded_store(&self) -> Option<&EmbeddedStore> {
        None
    }
}

/// The store that is both the ledger and the publisher, when they are one embedded store.
pub fn shared_store<'a>(
    ledger: &'a dyn AlertLedger,
    publisher: &dyn Publisher,
) -> Option<&'a EmbeddedStore> {
    let store = ledger.embedded_store()?;
    publisher
        .embedded_store()
        .is_some_and(|other| other.is_same(store))
        .then_some(store)
}

/// Shared handles to the adapters.
pub type SharedPublisher = Arc<dyn Publisher>;
/// Shared handle to the ledger.
pub type SharedLedger = Arc<dyn AlertLedger>;
