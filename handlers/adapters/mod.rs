//! Outbound I/O behind small traits: publishing tasks and remembering alerts already handled.

mod claims;
mod embedded_store;
pub mod identity;
mod memory_ledger;
pub mod service_bus;

use std::sync::Arc;

use crate::domain::{AlertStatus, Task};
use crate::error::Error;

pub use crate::config::QueueNames;
pub use claims::{ClaimGuard, Claims};
pub use embedded_store::{
    DeadLetteredMessage, EmbeddedStore, LockToken, QueueOptions, ReceivedMessage, StoredMessage,
    MAX_DELIVERY_COUNT_EXCEEDED,
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
/// Checking and claiming is atomic per ledger: a delivery first takes the alert's claim from
/// [`AlertLedger::claims`], then looks it up, publishes and records, and only then lets the
/// next copy of the same alert in, which finds it planned. A ledger belongs to one process
/// (the embedded store is held exclusively), so claims in memory cover every delivery that
/// can see that ledger; across instances, deterministic message ids and Service Bus duplicate
/// detection keep a task from being queued twice.
pub trait AlertLedger: Send + Sync {
    /// What is known of an alert.
    fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error>;
    /// Records an alert's latest status; `planned` is sticky once true.
    fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error>;
    /// The alerts some delivery of this process is handling right now.
    fn claims(&self) -> &Claims;
}

/// Shared handles to the adapters.
pub type SharedPublisher = Arc<dyn Publisher>;
/// Shared handle to the ledger.
pub type SharedLedger = Arc<dyn AlertLedger>;
