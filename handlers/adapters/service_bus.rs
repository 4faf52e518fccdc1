//! Publishes tasks to Azure Service Bus queues over AMQP 1.0 (`azure_core_amqp`).
//!
//! Sequence, as the Azure SDK's Event Hubs client does it: open a connection, begin a session,
//! authorise each queue on the `$cbs` node (put-token: an Entra ID `jwt` for
//! `https://servicebus.azure.net/.default`, or a `servicebus.windows.net:sastoken`), then attach
//! sender links to the queue. Development brokers (RabbitMQ) have no `$cbs`: they get SASL
//! PLAIN from the `amqp://user:pass@host:port` URL (or ANONYMOUS) and no put-token.
//!
//! One connection and one session are shared by every call ([`connection`]). Each queue has a
//! small pool of sender links (`RESPONDER_SB_LINKS_PER_QUEUE`, [`sender`]). A failed send drops
//! the connection, reconnects once and retries the tasks that were not accepted; a second
//! transient failure is returned (task ids are deterministic, so a redelivery is safe). What
//! the broker answers is sorted by its condition codes ([`errors`]): a missing queue or a
//! missing role is a configuration fault, retried by the platform until it is fixed and never
//! retried here. RabbitMQ accepts and drops messages sent to a queue that does not exist, so on
//! that broker every publish checks afterwards that each queue it used still exists.
//!
//! Everything that knows `azure_core_amqp` lives in this module: another client can replace it
//! behind the [`Publisher`] trait without touching anything else.

mod auth;
mod connection;
mod errors;
mod sender;

pub use auth::sas_token;
pub use sender::{build_message, session_id};

pub use crate::config::service_bus::{
    keys, DEFAULT_LINKS_PER_QUEUE, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT_SECS,
};
pub use crate::config::{BrokerFlavour, ServiceBusSettings};

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::RwLock;

use crate::adapters::Publisher;
use crate::domain::Task;
use crate::error::{Error, ErrorKind};
use auth::Auth;
use connection::Live;
use sender::{prepare, Prepared};

/// The Service Bus publisher. Share it behind an `Arc`; it connects on first use (or on
/// [`ServiceBusPublisher::connect_now`]) and reconnects by itself after a failure.
pub struct ServiceBusPublisher {
    settings: Arc<ServiceBusSettings>,
    auth: Auth,
    live: RwLock<Option<Arc<Live>>>,
    next_id: AtomicU64,
    /// The last fault seen (start-up check or publish), `None` once a check or publish succeeds.
    fault: std::sync::Mutex<Option<String>>,
}

impl fmt::Debug for ServiceBusPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusPublisher")
            .field("settings", &self.settings)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl ServiceBusPublisher {
    /// A publisher that connects on its first `publish`.
    pub fn new(settings: ServiceBusSettings) -> Self {
        // fe2o3's amqps asks rustls for the process default provider.
        crate::tls::install_crypto_provider();
        let auth = Auth::from_settings(&settings);
        ServiceBusPublisher {
            settings: Arc::new(settings),
            auth,
            live: RwLock::new(None),
            next_id: AtomicU64::new(1),
            fault: std::sync::Mutex::new(None),
        }
    }

    /// Connects now, attaches one link per queue and checks that every queue exists, so the
    /// first publish finds them ready and a missing queue or role is reported at start-up;
    /// later calls reuse the connection. The outcome is what readiness reports.
    pub async fn connect_now(&self) -> Result<(), Error> {
        let result = self.check_queues().await;
        self.record(&result);
        result
    }

    async fn check_queues(&self) -> Result<(), Error> {
        let live = self.live().await?;
        for (_, queue) in self.settings.queues.iter() {
            let timeout = self.settings.send_timeout;
            tokio::time::timeout(timeout, self.sender(&live, queue))
                .await
                .map_err(|_| {
                    Error::transient(format!(
                        "attaching a sender to queue {queue} timed out after {timeout:?}"
                    ))
                })??;
            if self.settings.flavour == BrokerFlavour::RabbitMq {
                self.probe_queue(&live, queue).await?;
            }
        }
        Ok(())
    }

    /// How many sender links `queue` has on the current connection (0 when not connected).
    pub async fn link_count(&self, queue: &str) -> usize {
        let live = self.live.read().await.clone();
        match live {
            Some(live) => live
                .queues
                .lock()
                .await
                .get(queue)
                .map_or(0, |q| q.links.len()),
            None => 0,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ServiceBusSettings {
        &self.settings
    }

    /// Fetches a token (Entra ID or SAS) without using it, to check credentials at start-up.
    /// Returns its expiry; `None` when this broker takes no token. The token itself is dropped.
    pub async fn check_credentials(
        &self,
    ) -> Result<Option<azure_core::time::OffsetDateTime>, Error> {
        Ok(self
            .auth
            .token(
                &self.settings.audience(&self.settings.queues.notification),
                self.settings.credential_setting(),
            )
            .await?
            .map(|t| t.expires_on))
    }

    /// Remembers the outcome of a check or a publish for readiness.
    fn record<T>(&self, result: &Result<T, Error>) {
        if let Ok(mut fault) = self.fault.lock() {
            *fault = result.as_ref().err().map(|err| err.to_string());
        }
    }

    /// Publishes `prepared`, reconnecting once after a transient failure.
    async fn publish_prepared(&self, prepared: &[Prepared]) -> Result<(), Error> {
        let mut pending: Vec<&Prepared> = prepared.iter().collect();
        let mut last_error = None;
        for attempt in 0..2 {
            let live = match self.live().await {
                Ok(live) => live,
                // A refused password or a missing role will not change on a second try now.
                Err(e) if e.kind() != ErrorKind::Transient => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "service bus connect failed");
                    last_error = Some(e);
                    continue;
                }
            };
            // Every task of the alert in flight at once, each awaiting the broker's disposition.
            let results = futures::future::join_all(
                pending.iter().map(|m| self.send_one(&live, &m.queue, m)),
            )
            .await;
            let accepted_at = Instant::now();
            let mut failed = Vec::new();
            let mut transient = None;
            for (message, result) in pending.iter().zip(results) {
                match result {
                    Ok(()) => {
                        tracing::debug!(queue = %message.queue, message_id = %message.message_id, "accepted")
                    }
                    Err(e) if e.kind() == ErrorKind::Configuration => {
                        // The broker may have detached the links (a queue deleted, a role
                        // removed): start afresh on the next publish.
                        self.drop_connection(live.id).await;
                        return Err(e);
                    }
                    Err(e) if e.kind() != ErrorKind::Transient => return Err(e),
                    Err(e) => {
                        tracing::warn!(attempt, queue = %message.queue, message_id = %message.message_id, error = %e, "send failed");
                        failed.push(*message);
                        transient.get_or_insert(e);
                    }
                }
            }
            if failed.is_empty() {
                let confirmed = self.confirm_queues(&live, prepared, accepted_at).await;
                if confirmed.is_err() {
                    self.drop_connection(live.id).await;
                }
                return confirmed;
            }
            // The connection may be broken: drop it and retry the rest on a fresh one.
            self.drop_connection(live.id).await;
            pending = failed;
            last_error = transient;
        }
        Err(last_error.unwrap_or_else(|| Error::transient("service bus publish failed")))
    }

    /// On RabbitMQ, checks after the broker accepted the messages that every queue they went
    /// to exists: there, a message sent to a missing queue is accepted and dropped, and this
    /// check turns that into a retryable failure instead of a lost task.
    async fn confirm_queues(
        &self,
        live: &Live,
        prepared: &[Prepared],
        accepted_at: Instant,
    ) -> Result<(), Error> {
        if self.settings.flavour != BrokerFlavour::RabbitMq {
            return Ok(());
        }
        let mut queues: Vec<&str> = prepared.iter().map(|m| m.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        let checks = futures::future::join_all(
            queues
                .iter()
                .map(|queue| self.confirm_queue(live, queue, accepted_at)),
        )
        .await;
        checks.into_iter().collect()
    }
}

#[async_trait::async_trait]
impl Publisher for ServiceBusPublisher {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        let prepared = tasks
            .iter()
            .map(|t| prepare(t, &self.settings))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self.publish_prepared(&prepared).await;
        // A permanent refusal concerns one message, not the broker: it leaves readiness alone.
        if !matches!(&result, Err(e) if e.kind() == ErrorKind::Permanent) {
            self.record(&result);
        }
        result
    }

    fn name(&self) -> &'static str {
        "service_bus"
    }

    fn readiness(&self) -> Result<(), String> {
        match self.fault.lock() {
            Ok(fault) => match fault.as_ref() {
                Some(reason) => Err(reason.clone()),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
