//! The shared AMQP connection: opening it (SASL, sessions, `$cbs`), dropping it after a
//! failure, and checking that a queue exists on brokers that would otherwise drop messages.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core_amqp::error::{AmqpDescribedError, AmqpErrorCondition, AmqpErrorKind};
use azure_core_amqp::{
    AmqpClaimsBasedSecurity, AmqpClaimsBasedSecurityApis as _, AmqpConnection,
    AmqpConnectionApis as _, AmqpReceiver, AmqpReceiverApis as _, AmqpReceiverOptions, AmqpSession,
    AmqpSessionApis as _, AmqpSource, ReceiverCreditMode,
};
use tokio::sync::Mutex;

use super::auth::Auth;
use super::errors::{classify, Subject};
use super::sender::QueueLinks;
use super::ServiceBusPublisher;
use crate::error::Error;

/// How long closing a connection (or ending a session) to learn why it failed may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One open connection, its session, its `$cbs` client and its links.
pub(super) struct Live {
    /// Which connection this is (for logs and for dropping only the one that failed).
    pub(super) id: u64,
    pub(super) connection: AmqpConnection,
    /// The session every sender link lives on.
    pub(super) session: AmqpSession,
    pub(super) cbs: Option<AmqpClaimsBasedSecurity>,
    pub(super) queues: Mutex<HashMap<String, QueueLinks>>,
    /// Per queue: when the last existence check that succeeded started (see
    /// [`ServiceBusPublisher::confirm_queue`]); one check per queue runs at a time.
    pub(super) checks: Mutex<HashMap<String, Arc<Mutex<Option<Instant>>>>>,
}

impl ServiceBusPublisher {
    /// The shared connection, opened if there is none.
    pub(super) async fn live(&self) -> Result<Arc<Live>, Error> {
        if let Some(live) = self.live.read().await.as_ref() {
            return Ok(live.clone());
        }
        let mut slot = self.live.write().await;
        if let Some(live) = slot.as_ref() {
            return Ok(live.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timeout = self.settings.connect_timeout;
        let live = tokio::time::timeout(timeout, self.open(id))
            .await
            .map_err(|_| {
                Error::transient(format!(
                    "connecting to {} timed out after {timeout:?}",
                    self.settings.host()
                ))
            })??;
        let live = Arc::new(live);
        *slot = Some(live.clone());
        tracing::info!(host = %self.settings.host(), connection = id, "service bus connection open");
        Ok(live)
    }

    async fn open(&self, id: u64) -> Result<Live, Error> {
        let settings = &self.settings;
        let connection = AmqpConnection::new();
        let container_id = format!("defender-responder-{}-{id}", std::process::id());
        let connecting = format!("connecting to {}", settings.host());
        connection
            .open(container_id, settings.endpoint().clone(), None)
            .await
            .map_err(|e| classify(settings, &connecting, Subject::Connection, e))?;
        let session = AmqpSession::new();
        if let Err(err) = session.begin(&connection, None).await {
            // A broker that refuses the user closes the connection right after it opened; the
            // reason (e.g. amqp:unauthorized-access) is in the close, not in the begin.
            return Err(self
                .closed_because(&connection, "beginning a session", err)
                .await);
        }
        let cbs = match self.auth {
            Auth::None => None,
            _ => {
                // `$cbs` gets a session of its own, as the Azure SDK's Event Hubs client does.
                let cbs_session = AmqpSession::new();
                if let Err(err) = cbs_session.begin(&connection, None).await {
                    return Err(self
                        .closed_because(&connection, "beginning the $cbs session", err)
                        .await);
                }
                let cbs = AmqpClaimsBasedSecurity::new(cbs_session).map_err(|e| {
                    classify(settings, "creating the $cbs client", Subject::Connection, e)
                })?;
                cbs.attach()
                    .await
                    .map_err(|e| classify(settings, "attaching to $cbs", Subject::Connection, e))?;
                Some(cbs)
            }
        };
        Ok(Live {
            id,
            connection,
            session,
            cbs,
            queues: Mutex::new(HashMap::new()),
            checks: Mutex::new(HashMap::new()),
        })
    }

    /// Closes `connection` after `err` and classifies the remote's reason when it gave one.
    async fn closed_because(
        &self,
        connection: &AmqpConnection,
        what: &str,
        err: azure_core_amqp::AmqpError,
    ) -> Error {
        match tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await {
            Ok(Err(reason)) => classify(&self.settings, what, Subject::Connection, reason),
            _ => classify(&self.settings, what, Subject::Connection, err),
        }
    }

    /// Forgets connection `id` (if it is still the current one) and closes it in the background.
    pub(super) async fn drop_connection(&self, id: u64) {
        let old = {
            let mut slot = self.live.write().await;
            match slot.as_ref() {
                Some(live) if live.id == id => slot.take(),
                _ => None,
            }
        };
        if let Some(old) = old {
            tracing::warn!(host = %self.settings.host(), connection = id, "dropping service bus connection");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, old.connection.close()).await;
            });
        }
    }

    /// Confirms that `queue` existed after `accepted_at`, when the broker accepted messages
    /// for it. Checks are coalesced: one runs per queue at a time, and a check that started
    /// after `accepted_at` and succeeded covers every message accepted before it began, so
    /// concurrent publishes share one check instead of running one each.
    pub(super) async fn confirm_queue(
        &self,
        live: &Live,
        queue: &str,
        accepted_at: Instant,
    ) -> Result<(), Error> {
        let slot = live
            .checks
            .lock()
            .await
            .entry(queue.to_string())
            .or_default()
            .clone();
        let mut last_ok = slot.lock().await;
        if matches!(*last_ok, Some(started) if started >= accepted_at) {
            return Ok(());
        }
        let started = Instant::now();
        self.probe_queue(live, queue).await?;
        *last_ok = Some(started);
        Ok(())
    }

    /// Checks that `queue` exists, for brokers that accept and drop messages sent to a missing
    /// queue (RabbitMQ's `/amq/queue/<name>`): attaches a receiver link without credit (so it
    /// can never take a message) on a session of its own, then detaches it. A missing queue
    /// ends that session with `amqp:not-found`, which is what the error reports.
    pub(super) async fn probe_queue(&self, live: &Live, queue: &str) -> Result<(), Error> {
        let settings = &self.settings;
        let subject = Subject::Queue(queue);
        let checking = format!("checking that queue {queue} exists");
        let work = async {
            let session = AmqpSession::new();
            session
                .begin(&live.connection, None)
                .await
                .map_err(|e| classify(settings, &checking, subject, e))?;
            let receiver = AmqpReceiver::new();
            let options = AmqpReceiverOptions {
                name: Some(format!(
                    "dr-probe-{queue}-{}",
                    self.next_id.fetch_add(1, Ordering::Relaxed)
                )),
                credit_mode: Some(ReceiverCreditMode::Manual),
                ..Default::default()
            };
            let source = AmqpSource::builder()
                .with_address(settings.flavour.address(queue))
                .build();
            match receiver.attach(&session, source, Some(options)).await {
                Ok(()) => {
                    // The attach answered: the queue exists. Detaching and ending need not
                    // hold up the publish.
                    tokio::spawn(async move {
                        let cleanup = async {
                            let _ = receiver.detach().await;
                            let _ = session.end().await;
                        };
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, cleanup).await;
                    });
                    Ok(())
                }
                Err(attach) => {
                    match session.end().await {
                        // The broker's reason, when the session's end is still to be read.
                        Err(reason) => Err(classify(settings, &checking, subject, reason)),
                        // The session already ended, its reason unread. If the connection still
                        // takes a new session, it was this queue the broker refused (RabbitMQ ends
                        // the session with amqp:not-found); otherwise the connection failed.
                        Ok(()) if self.takes_sessions(live).await => {
                            let refused = AmqpDescribedError::new(
                            AmqpErrorCondition::NotFound,
                            Some("the broker ended the session in answer to a consumer on the queue".into()),
                            Default::default(),
                        );
                            Err(classify(
                                settings,
                                &checking,
                                subject,
                                AmqpErrorKind::AmqpDescribedError(refused).into(),
                            ))
                        }
                        Ok(()) => Err(classify(settings, &checking, subject, attach)),
                    }
                }
            }
        };
        let timeout = settings.send_timeout;
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Error::transient(format!("{checking} timed out after {timeout:?}")))?
    }

    /// Whether `live`'s connection still begins (and ends) a session.
    async fn takes_sessions(&self, live: &Live) -> bool {
        let session = AmqpSession::new();
        let work = async {
            session.begin(&live.connection, None).await.is_ok() && session.end().await.is_ok()
        };
        tokio::time::timeout(CLOSE_TIMEOUT, work)
            .await
            .unwrap_or(false)
    }
}
