//! Sending: the AMQP message of a task, each queue's pool of sender links (attached and
//! authorised on `$cbs` on demand, tokens renewed at 80% of their lifetime), and one send.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core_amqp::message::{
    AmqpApplicationProperties, AmqpMessageBody, AmqpMessageHeader, AmqpMessageId,
    AmqpMessageProperties,
};
use azure_core_amqp::{
    AmqpClaimsBasedSecurityApis as _, AmqpMessage, AmqpSender, AmqpSenderApis as _,
    AmqpSenderOptions, SenderSettleMode,
};
use sha2::Digest as _;

use super::connection::Live;
use super::errors::{classify, outcome_to_result, Subject};
use super::ServiceBusPublisher;
use crate::config::ServiceBusSettings;
use crate::domain::Task;
use crate::error::Error;

/// Longest Service Bus session id.
const MAX_SESSION_ID: usize = 128;

/// A sender link of a queue's pool.
pub(super) struct Link {
    sender: Arc<AmqpSender>,
    /// Largest message the broker takes on this link (0 or `None`: no limit).
    max_message_size: Option<u64>,
    /// Sends under way on this link (a link carries one at a time; the rest wait for it).
    in_flight: Arc<AtomicUsize>,
}

/// A queue's sender links and its `$cbs` authorisation.
#[derive(Default)]
pub(super) struct QueueLinks {
    /// `(refresh at, expires at)` of the put token; `None` without `$cbs` or before the first.
    authorised: Option<(Instant, Instant)>,
    pub(super) links: Vec<Link>,
}

/// Counts a send on a link while it lasts.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which link of a pool the next send uses: an idle one, else a new one while the pool is not
/// full, else the least busy. `busy` holds the sends under way on each existing link.
pub(super) fn choose_link(busy: &[usize], capacity: usize) -> usize {
    if let Some(idle) = busy.iter().position(|n| *n == 0) {
        return idle;
    }
    if busy.len() < capacity.max(1) {
        return busy.len();
    }
    busy.iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// When to put a fresh token (80% of the lifetime) and when the current one lapses.
pub(super) fn renewal_schedule(now: Instant, lifetime: Duration) -> (Instant, Instant) {
    (now + lifetime.mul_f64(0.8), now + lifetime)
}

/// A built message and what logs may say about it.
pub(super) struct Prepared {
    pub(super) queue: String,
    pub(super) message_id: String,
    message: AmqpMessage,
    /// Body plus a generous allowance for header and properties.
    encoded_estimate: usize,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("queue", &self.queue)
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// The Service Bus session id of a target: the target itself, or `sha256:<hex>` when longer
/// than Service Bus's 128 characters.
pub fn session_id(target: &str) -> String {
    if target.len() <= MAX_SESSION_ID {
        target.to_string()
    } else {
        let digest = sha2::Sha256::digest(target.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// Builds the AMQP message of a task: the task JSON as one data section; `message-id` = the
/// task's deterministic id, `correlation-id` = the alert's `systemAlertId`, `subject` = the
/// action, `content-type` = `application/json`, `group-id` = the session id when sessions are
/// on; header durable with the configured ttl; application properties `alert_type`, `service`,
/// `severity`, `steps` (comma-separated) and `dry_run` (bool).
pub fn build_message(task: &Task, settings: &ServiceBusSettings) -> Result<AmqpMessage, Error> {
    Ok(prepare(task, settings)?.message)
}

pub(super) fn prepare(task: &Task, settings: &ServiceBusSettings) -> Result<Prepared, Error> {
    let body = crate::encode::to_string(task)
        .map_err(|e| {
            Error::permanent(format!(
                "task {} cannot be serialised: {e}",
                task.message_id.as_str()
            ))
        })?
        .into_bytes();
    let message_id = task.message_id.as_str().to_string();
    if body.len() > settings.max_message_bytes {
        return Err(Error::permanent(format!(
            "message {message_id} body is {} bytes, over the {} byte limit (RESPONDER_SB_MAX_MESSAGE_BYTES)",
            body.len(),
            settings.max_message_bytes
        )));
    }
    let header = AmqpMessageHeader {
        durable: true,
        time_to_live: settings.message_ttl.map(|ttl| {
            // The header ttl is a u32 of milliseconds.
            azure_core::time::Duration::milliseconds(ttl.as_millis().min(u32::MAX as u128) as i64)
        }),
        ..Default::default()
    };
    let properties = AmqpMessageProperties {
        message_id: Some(AmqpMessageId::String(message_id.clone())),
        correlation_id: Some(AmqpMessageId::String(task.alert.system_alert_id.clone())),
        subject: Some(task.action.as_str().to_string()),
        content_type: Some("application/json".into()),
        group_id: settings.use_sessions.then(|| session_id(&task.target)),
        ..Default::default()
    };
    let mut application = AmqpApplicationProperties::new();
    application.insert("alert_type".into(), task.alert.alert_type.clone());
    application.insert("service".into(), task.alert.service.as_str().to_string());
    application.insert("severity".into(), task.alert.severity.as_str().to_string());
    application.insert("steps".into(), task.steps.join(","));
    application.insert("dry_run".into(), task.dry_run);
    let encoded_estimate = body.len() + 1024 + task.steps.iter().map(String::len).sum::<usize>();
    let message = AmqpMessage::builder()
        .with_body(AmqpMessageBody::Binary(vec![body]))
        .with_header(header)
        .with_properties(properties)
        .with_application_properties(application)
        .build();
    Ok(Prepared {
        queue: settings.queues.name(task.queue).to_string(),
        message_id,
        message,
        encoded_estimate,
    })
}

impl ServiceBusPublisher {
    /// A sender link of `queue` on `live` (authorised again when due, attached if needed),
    /// counted as busy until the returned guard is dropped.
    pub(super) async fn sender(
        &self,
        live: &Live,
        queue: &str,
    ) -> Result<(Arc<AmqpSender>, Option<u64>, InFlight), Error> {
        let mut queues = live.queues.lock().await;
        let entry = queues.entry(queue.to_string()).or_default();
        let now = Instant::now();
        let needs_token = live.cbs.is_some()
            && match entry.authorised {
                None => true,
                Some((refresh_at, _)) => now >= refresh_at,
            };
        if needs_token {
            // An expired token means the broker may have detached the links: attach new ones.
            let expired = matches!(entry.authorised, Some((_, expires_at)) if now >= expires_at);
            if expired {
                for old in entry.links.drain(..) {
                    if let Ok(sender) = Arc::try_unwrap(old.sender) {
                        tokio::spawn(async move {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(2), sender.detach()).await;
                        });
                    }
                }
            }
            entry.authorised = self.authorise(live, queue).await?;
        }
        let busy: Vec<usize> = entry
            .links
            .iter()
            .map(|l| l.in_flight.load(Ordering::Relaxed))
            .collect();
        let index = choose_link(&busy, self.settings.links_per_queue);
        if index == entry.links.len() {
            let link = self.attach(live, queue, index).await?;
            entry.links.push(link);
        }
        let link = &entry.links[index];
        link.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok((
            link.sender.clone(),
            link.max_message_size,
            InFlight(link.in_flight.clone()),
        ))
    }

    /// Attaches a new sender link to `queue`.
    async fn attach(&self, live: &Live, queue: &str, index: usize) -> Result<Link, Error> {
        let sender = AmqpSender::new();
        let name = format!(
            "dr-{queue}-{}-{index}-{}",
            live.id,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let options = AmqpSenderOptions {
            sender_settle_mode: Some(SenderSettleMode::Unsettled),
            ..Default::default()
        };
        sender
            .attach(
                &live.session,
                name,
                self.settings.flavour.address(queue),
                Some(options),
            )
            .await
            .map_err(|e| {
                classify(
                    &self.settings,
                    "attaching a sender",
                    Subject::Queue(queue),
                    e,
                )
            })?;
        let max_message_size = sender
            .max_message_size()
            .await
            .ok()
            .flatten()
            .filter(|m| *m > 0);
        tracing::debug!(
            queue,
            connection = live.id,
            link = index,
            ?max_message_size,
            "sender link attached"
        );
        Ok(Link {
            sender: Arc::new(sender),
            max_message_size,
            in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Puts a token for `queue` to `$cbs`; returns when to renew it and when it expires.
    async fn authorise(
        &self,
        live: &Live,
        queue: &str,
    ) -> Result<Option<(Instant, Instant)>, Error> {
        let Some(cbs) = live.cbs.as_ref() else {
            return Ok(None);
        };
        let audience = self.settings.audience(queue);
        let Some(token) = self
            .auth
            .token(&audience, self.settings.credential_setting())
            .await?
        else {
            return Ok(None);
        };
        cbs.authorize_path(
            audience,
            Some(token.token_type.to_string()),
            &token.token,
            token.expires_on,
        )
        .await
        .map_err(|e| {
            classify(
                &self.settings,
                "authorising on $cbs",
                Subject::Queue(queue),
                e,
            )
        })?;
        let lifetime = (token.expires_on - azure_core::time::OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        Ok(Some(renewal_schedule(Instant::now(), lifetime)))
    }

    /// Sends one message on `live` and waits for its outcome, within the send timeout.
    pub(super) async fn send_one(
        &self,
        live: &Live,
        queue: &str,
        message: &Prepared,
    ) -> Result<(), Error> {
        let timeout = self.settings.send_timeout;
        let work = async {
            let (sender, max, _in_flight) = self.sender(live, queue).await?;
            if let Some(max) = max {
                if message.encoded_estimate as u64 > max {
                    return Err(Error::permanent(format!(
                        "message {} is about {} bytes, over the {max} bytes queue {queue} accepts",
                        message.message_id, message.encoded_estimate
                    )));
                }
            }
            let sending = format!("sending message {}", message.message_id);
            let outcome = sender
                .send_ref(&message.message, None)
                .await
                .map_err(|e| classify(&self.settings, &sending, Subject::Queue(queue), e))?;
            outcome_to_result(&self.settings, outcome, queue, &message.message_id)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Error::transient(format!(
                "sending message {} to queue {queue} timed out after {timeout:?}",
                message.message_id
            ))
        })?
    }
}
