//! Publishes tasks to Azure Service Bus queues over AMQP 1.0 (`azure_core_amqp`).
//!
//! Sequence, as the Azure SDK's Event Hubs client does it: open a connection, begin a session,
//! authorise each queue on the `$cbs` node (put-token: an Entra ID `jwt` for
//! `https://servicebus.azure.net/.default`, or a `servicebus.windows.net:sastoken`), then attach
//! sender links to the queue. Development brokers (RabbitMQ) have no `$cbs`: they get SASL
//! PLAIN from the `amqp://user:pass@host:port` URL (or ANONYMOUS) and no put-token.
//!
//! One connection and one session are shared by every call. Each queue has a small pool of
//! sender links (`RESPONDER_SB_LINKS_PER_QUEUE`), attached on demand: a link carries one message
//! at a time until its disposition arrives (fe2o3 holds the link across the send), so the pool is
//! what lets concurrent invocations publish to the same queue in parallel. `$cbs` tokens are put
//! again once 80% of their lifetime has passed (checked on each use of a queue). A failed send
//! drops the connection, reconnects once and retries the tasks that were not accepted; a second
//! failure is `Error::Transient` (task ids are deterministic, so a redelivery is safe).
//!
//! Everything that knows `azure_core_amqp` lives in this file and `service_bus/auth.rs`: another
//! client can replace it behind the [`Publisher`] trait without touching anything else.

mod auth;

pub use auth::sas_token;

use crate::adapters::{Publisher, QueueNames};
use crate::config::parse_bool;
use crate::domain::Task;
use crate::error::Error;
use auth::{Auth, ConnectionString};
use azure_core::http::Url;
use azure_core_amqp::message::{
    AmqpApplicationProperties, AmqpMessageBody, AmqpMessageHeader, AmqpMessageId,
    AmqpMessageProperties,
};
use azure_core_amqp::{
    AmqpClaimsBasedSecurity, AmqpClaimsBasedSecurityApis as _, AmqpConnection,
    AmqpConnectionApis as _, AmqpError, AmqpMessage, AmqpSendOutcome, AmqpSender,
    AmqpSenderApis as _, AmqpSenderOptions, AmqpSession, AmqpSessionApis as _, SenderSettleMode,
};
use sha2::Digest as _;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Default size limit of a message body: the Standard tier's 256 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Default number of sender links per queue.
pub const DEFAULT_LINKS_PER_QUEUE: usize = 8;
/// Default connect and send timeouts, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Longest Service Bus session id.
const MAX_SESSION_ID: usize = 128;

/// Which kind of broker is at the other end; decides addresses and authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerFlavour {
    /// Azure Service Bus (or its emulator): address = queue name, `$cbs` authorisation.
    ServiceBus,
    /// RabbitMQ 3.x with the AMQP 1.0 plugin: address = `/amq/queue/<name>` of a queue that
    /// already exists and is durable; no `$cbs`.
    RabbitMq,
}

impl BrokerFlavour {
    /// The AMQP target address of `queue`.
    pub fn address(self, queue: &str) -> String {
        match self {
            BrokerFlavour::ServiceBus => queue.to_string(),
            BrokerFlavour::RabbitMq => format!("/amq/queue/{queue}"),
        }
    }
}

/// Everything the sender needs, read from app settings.
#[derive(Clone)]
pub struct ServiceBusSettings {
    /// `amqps://host[:port]` or `amqp://[user:pass@]host:port`. May hold a password: never logged.
    endpoint: Url,
    /// Host (and port) for logs and `$cbs` audiences.
    host: String,
    auth: Auth,
    /// Addressing and authorisation style of the broker.
    pub flavour: BrokerFlavour,
    /// Queue names (`RESPONDER_QUEUE_*`).
    pub queues: QueueNames,
    /// Header `ttl`; `None` leaves the queue's default.
    pub message_ttl: Option<Duration>,
    /// Set `group-id` (the Service Bus SessionId) to the task's target, for session-enabled queues.
    pub use_sessions: bool,
    /// Bound on opening the connection (TCP, TLS, SASL, session, `$cbs`).
    pub connect_timeout: Duration,
    /// Bound on one message: link attach, authorisation, transfer and disposition.
    pub send_timeout: Duration,
    /// Largest body sent; a larger task is `Error::Permanent` without reaching the broker.
    pub max_message_bytes: usize,
    /// Sender links per queue (at least 1).
    pub links_per_queue: usize,
}

impl PartialEq for ServiceBusSettings {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint == other.endpoint
            && self.auth == other.auth
            && self.flavour == other.flavour
            && self.queues == other.queues
            && self.message_ttl == other.message_ttl
            && self.use_sessions == other.use_sessions
            && self.connect_timeout == other.connect_timeout
            && self.send_timeout == other.send_timeout
            && self.max_message_bytes == other.max_message_bytes
            && self.links_per_queue == other.links_per_queue
    }
}

impl fmt::Debug for ServiceBusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusSettings")
            .field("scheme", &self.endpoint.scheme())
            .field("host", &self.host)
            .field("auth", &self.auth)
            .field("flavour", &self.flavour)
            .field("queues", &self.queues)
            .field("message_ttl", &self.message_ttl)
            .field("use_sessions", &self.use_sessions)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("links_per_queue", &self.links_per_queue)
            .finish()
    }
}

/// App setting names (all listed in [`crate::config::SETTINGS`]).
pub mod keys {
    /// Connection string, emulator connection string, or `amqp://user:pass@host:port` URL.
    pub const CONNECTION: &str = "ServiceBusConnection";
    /// Namespace host for Entra ID (managed identity / developer sign-in).
    pub const NAMESPACE: &str = "ServiceBusConnection__fullyQualifiedNamespace";
    /// Client id of a user-assigned managed identity.
    pub const CLIENT_ID: &str = "ServiceBusConnection__clientId";
    /// `servicebus` or `rabbitmq` (default: `rabbitmq` for an `amqp://` URL, else `servicebus`).
    pub const BROKER: &str = "RESPONDER_SB_BROKER";
    /// Message time-to-live in seconds (unset: the queue's default).
    pub const TTL_SECONDS: &str = "RESPONDER_SB_MESSAGE_TTL_SECONDS";
    /// `true`: set the session id (`group-id`) to the task's target.
    pub const SESSIONS: &str = "RESPONDER_SB_SESSIONS";
    /// Connect timeout in seconds.
    pub const CONNECT_TIMEOUT_SECONDS: &str = "RESPONDER_SB_CONNECT_TIMEOUT_SECONDS";
    /// Send timeout in seconds.
    pub const SEND_TIMEOUT_SECONDS: &str = "RESPONDER_SB_SEND_TIMEOUT_SECONDS";
    /// Largest message body sent.
    pub const MAX_MESSAGE_BYTES: &str = "RESPONDER_SB_MAX_MESSAGE_BYTES";
    /// Sender links per queue.
    pub const LINKS_PER_QUEUE: &str = "RESPONDER_SB_LINKS_PER_QUEUE";
}

impl ServiceBusSettings {
    /// Reads the settings through `get`; `Ok(None)` when no `ServiceBusConnection*` setting is
    /// present (the embedded store is the publisher then). Queue names come from the caller.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        queues: QueueNames,
    ) -> Result<Option<Self>, Error> {
        let get = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let connection = get(keys::CONNECTION);
        let namespace = get(keys::NAMESPACE);

        let (endpoint, auth, default_flavour) = match (connection, namespace) {
            (None, None) => return Ok(None),
            (Some(text), _) if text.starts_with("amqp://") || text.starts_with("amqps://") => {
                let url = Url::parse(&text).map_err(|e| {
                    // url's error names the fault, not the text (which may hold a password).
                    Error::Config(format!("{}: not a valid AMQP URL: {e}", keys::CONNECTION))
                })?;
                if url.host_str().is_none() {
                    return Err(Error::Config(format!(
                        "{}: AMQP URL has no host",
                        keys::CONNECTION
                    )));
                }
                (url, Auth::None, BrokerFlavour::RabbitMq)
            }
            (Some(text), _) => {
                let cs = ConnectionString::parse(&text)?;
                let (scheme, port) = if cs.use_development_emulator {
                    ("amqp", cs.port.unwrap_or(5672))
                } else {
                    ("amqps", cs.port.unwrap_or(5671))
                };
                let url = Url::parse(&format!("{scheme}://{}:{port}", cs.host)).map_err(|e| {
                    Error::Config(format!("{}: bad Endpoint host: {e}", keys::CONNECTION))
                })?;
                if cs.entity_path.is_some() {
                    tracing::info!(
                        "ServiceBusConnection has an EntityPath: a key scoped to one queue authorises only that queue"
                    );
                }
                let auth = Auth::SharedKey {
                    key_name: cs.key_name,
                    key: cs.key,
                };
                (url, auth, BrokerFlavour::ServiceBus)
            }
            (None, Some(namespace)) => {
                let host = namespace
                    .trim_start_matches("sb://")
                    .trim_start_matches("amqps://")
                    .trim_end_matches('/');
                let url = Url::parse(&format!("amqps://{host}")).map_err(|e| {
                    Error::Config(format!("{}: bad namespace: {e}", keys::NAMESPACE))
                })?;
                let credential = auth::entra_credential(&get, get(keys::CLIENT_ID))?;
                (url, Auth::Credential(credential), BrokerFlavour::ServiceBus)
            }
        };

        let flavour = match get(keys::BROKER).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => default_flavour,
            Some("servicebus") | Some("service_bus") => BrokerFlavour::ServiceBus,
            Some("rabbitmq") => BrokerFlavour::RabbitMq,
            Some(other) => {
                return Err(Error::Config(format!(
                    "{}: expected servicebus or rabbitmq, got {other:?}",
                    keys::BROKER
                )));
            }
        };

        let seconds = |key: &str, default: u64| -> Result<Duration, Error> {
            match get(key) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        Error::Config(format!("{key}: expected a positive number of seconds"))
                    }),
            }
        };
        let message_ttl = match get(keys::TTL_SECONDS) {
            None => None,
            Some(_) => Some(seconds(keys::TTL_SECONDS, 0)?),
        };
        let use_sessions = parse_bool(keys::SESSIONS, get(keys::SESSIONS))?.unwrap_or(false);
        let max_message_bytes = match get(keys::MAX_MESSAGE_BYTES) {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::Config(format!(
                    "{}: expected a positive number",
                    keys::MAX_MESSAGE_BYTES
                ))
            })?,
        };
        let links_per_queue = match get(keys::LINKS_PER_QUEUE) {
            None => DEFAULT_LINKS_PER_QUEUE,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{}: expected a number from 1 to 64",
                        keys::LINKS_PER_QUEUE
                    ))
                })?,
        };
        let host = match endpoint.port() {
            Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
            None => endpoint.host_str().unwrap_or_default().to_string(),
        };
        Ok(Some(ServiceBusSettings {
            endpoint,
            host,
            auth,
            flavour,
            queues,
            message_ttl,
            use_sessions,
            connect_timeout: seconds(keys::CONNECT_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECS)?,
            send_timeout: seconds(keys::SEND_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECS)?,
            max_message_bytes,
            links_per_queue,
        }))
    }

    /// Fetches a token (Entra ID or SAS) without using it, to check credentials at start-up.
    /// Returns its expiry; `None` when this broker takes no token. The token itself is dropped.
    pub async fn check_credentials(
        &self,
    ) -> Result<Option<azure_core::time::OffsetDateTime>, Error> {
        Ok(self
            .auth
            .token(&self.audience(&self.queues.notification))
            .await?
            .map(|t| t.expires_on))
    }

    /// What logs may say about the broker: scheme, host, authorisation kind and flavour (never
    /// a user name, password, key or token).
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            Auth::None if self.endpoint.password().is_some() => "sasl-plain",
            Auth::None => "sasl-anonymous",
            Auth::SharedKey { .. } => "sas",
            Auth::Credential(_) => "entra-id",
        };
        format!(
            "{}://{} ({:?}, {auth}, {} links per queue)",
            self.endpoint.scheme(),
            self.host,
            self.flavour,
            self.links_per_queue
        )
    }

    /// The `$cbs` audience (and SAS resource) of a queue: `sb://<host>/<queue>`.
    fn audience(&self, queue: &str) -> String {
        format!(
            "sb://{}/{queue}",
            self.endpoint.host_str().unwrap_or_default()
        )
    }
}

/// A sender link of a queue's pool.
struct Link {
    sender: Arc<AmqpSender>,
    /// Largest message the broker takes on this link (0 or `None`: no limit).
    max_message_size: Option<u64>,
    /// Sends under way on this link (a link carries one at a time; the rest wait for it).
    in_flight: Arc<AtomicUsize>,
}

/// A queue's sender links and its `$cbs` authorisation.
#[derive(Default)]
struct QueueLinks {
    /// `(refresh at, expires at)` of the put token; `None` without `$cbs` or before the first.
    authorised: Option<(Instant, Instant)>,
    links: Vec<Link>,
}

/// Counts a send on a link while it lasts.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open connection, its session, its `$cbs` client and its links.
struct Live {
    id: u64,
    connection: AmqpConnection,
    session: AmqpSession,
    cbs: Option<AmqpClaimsBasedSecurity>,
    queues: Mutex<HashMap<String, QueueLinks>>,
}

/// Which link of a pool the next send uses: an idle one, else a new one while the pool is not
/// full, else the least busy. `busy` holds the sends under way on each existing link.
fn choose_link(busy: &[usize], capacity: usize) -> usize {
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

/// The Service Bus publisher. Share it behind an `Arc`; it connects on first use (or on
/// [`ServiceBusPublisher::connect_now`]) and reconnects by itself after a failure.
pub struct ServiceBusPublisher {
    settings: Arc<ServiceBusSettings>,
    live: RwLock<Option<Arc<Live>>>,
    next_id: AtomicU64,
}

impl fmt::Debug for ServiceBusPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusPublisher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServiceBusPublisher {
    /// A publisher that connects on its first `publish`.
    pub fn new(settings: ServiceBusSettings) -> Self {
        // rustls has two crypto providers compiled in (ring for fe2o3's amqps, aws-lc-rs through
        // azure_core's reqwest); fe2o3 asks for the process default, so choose one. An error only
        // means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ServiceBusPublisher {
            settings: Arc::new(settings),
            live: RwLock::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// Connects now and attaches one link per queue, so the first publish finds them ready;
    /// later calls reuse the connection.
    pub async fn connect_now(&self) -> Result<(), Error> {
        let live = self.live().await?;
        let queues = [
            self.settings.queues.notification.clone(),
            self.settings.queues.isolation.clone(),
            self.settings.queues.rotation.clone(),
        ];
        for queue in &queues {
            let timeout = self.settings.send_timeout;
            tokio::time::timeout(timeout, self.sender(&live, queue))
                .await
                .map_err(|_| {
                    Error::Transient(format!(
                        "attaching a sender to queue {queue} timed out after {timeout:?}"
                    ))
                })??;
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

    /// The shared connection, opened if there is none.
    async fn live(&self) -> Result<Arc<Live>, Error> {
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
                Error::Transient(format!(
                    "connecting to {} timed out after {timeout:?}",
                    self.settings.host
                ))
            })??;
        let live = Arc::new(live);
        *slot = Some(live.clone());
        tracing::info!(host = %self.settings.host, connection = id, "service bus connection open");
        Ok(live)
    }

    async fn open(&self, id: u64) -> Result<Live, Error> {
        let settings = &self.settings;
        let connection = AmqpConnection::new();
        let container_id = format!("defender-responder-{}-{id}", std::process::id());
        connection
            .open(container_id, settings.endpoint.clone(), None)
            .await
            .map_err(|e| classify(&format!("connecting to {}", settings.host), &e))?;
        let session = AmqpSession::new();
        session
            .begin(&connection, None)
            .await
            .map_err(|e| classify("beginning a session", &e))?;
        let cbs = match settings.auth {
            Auth::None => None,
            _ => {
                // `$cbs` gets a session of its own, as the Azure SDK's Event Hubs client does.
                let cbs_session = AmqpSession::new();
                cbs_session
                    .begin(&connection, None)
                    .await
                    .map_err(|e| classify("beginning the $cbs session", &e))?;
                let cbs = AmqpClaimsBasedSecurity::new(cbs_session)
                    .map_err(|e| classify("creating the $cbs client", &e))?;
                cbs.attach()
                    .await
                    .map_err(|e| classify("attaching to $cbs", &e))?;
                Some(cbs)
            }
        };
        Ok(Live {
            id,
            connection,
            session,
            cbs,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets connection `id` (if it is still the current one) and closes it in the background.
    async fn drop_connection(&self, id: u64) {
        let old = {
            let mut slot = self.live.write().await;
            match slot.as_ref() {
                Some(live) if live.id == id => slot.take(),
                _ => None,
            }
        };
        if let Some(old) = old {
            tracing::warn!(host = %self.settings.host, connection = id, "dropping service bus connection");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), old.connection.close()).await;
            });
        }
    }

    /// A sender link of `queue` on `live` (authorised again when due, attached if needed),
    /// counted as busy until the returned guard is dropped.
    async fn sender(
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
            .map_err(|e| classify(&format!("attaching a sender to queue {queue}"), &e))?;
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
        let Some(token) = self.settings.auth.token(&audience).await? else {
            return Ok(None);
        };
        cbs.authorize_path(
            audience,
            Some(token.token_type.to_string()),
            &token.token,
            token.expires_on,
        )
        .await
        .map_err(|e| classify(&format!("authorising queue {queue} on $cbs"), &e))?;
        let lifetime = (token.expires_on - azure_core::time::OffsetDateTime::now_utc())
            .try_into()
            .unwrap_or(Duration::ZERO);
        Ok(Some(renewal_schedule(Instant::now(), lifetime)))
    }

    /// Sends one message on `live` and waits for its outcome, within the send timeout.
    async fn send_one(&self, live: &Live, queue: &str, message: &Prepared) -> Result<(), Error> {
        let timeout = self.settings.send_timeout;
        let work = async {
            let (sender, max, _in_flight) = self.sender(live, queue).await?;
            if let Some(max) = max {
                if message.encoded_estimate as u64 > max {
                    return Err(Error::Permanent(format!(
                        "message {} is about {} bytes, over the {max} bytes queue {queue} accepts",
                        message.message_id, message.encoded_estimate
                    )));
                }
            }
            let outcome = sender.send_ref(&message.message, None).await.map_err(|e| {
                classify(
                    &format!("sending message {} to queue {queue}", message.message_id),
                    &e,
                )
            })?;
            outcome_to_result(outcome, queue, &message.message_id)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Error::Transient(format!(
                "sending message {} to queue {queue} timed out after {timeout:?}",
                message.message_id
            ))
        })?
    }
}

/// When to put a fresh token (80% of the lifetime) and when the current one lapses.
fn renewal_schedule(now: Instant, lifetime: Duration) -> (Instant, Instant) {
    (now + lifetime.mul_f64(0.8), now + lifetime)
}

/// A built message and what logs may say about it.
struct Prepared {
    queue: String,
    message_id: String,
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

fn prepare(task: &Task, settings: &ServiceBusSettings) -> Result<Prepared, Error> {
    let body = serde_json::to_vec(task).map_err(|e| {
        Error::Permanent(format!(
            "task {} cannot be serialised: {e}",
            task.message_id.as_str()
        ))
    })?;
    let message_id = task.message_id.as_str().to_string();
    if body.len() > settings.max_message_bytes {
        return Err(Error::Permanent(format!(
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

/// Conditions after which sending the same message again cannot succeed.
const PERMANENT_CONDITIONS: &[&str] = &[
    "message-size-exceeded",
    "amqp:not-found",
    "notfound",
    "unauthorized-access",
    "unauthorized",
    "precondition-failed",
    "precondition_failed",
    "amqp:not-allowed",
    "status code: 401",
    "status code: 404",
    "code: 401",
    "code: 404",
];

fn is_permanent_text(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    PERMANENT_CONDITIONS.iter().any(|c| lower.contains(c))
}

/// Sorts an AMQP error into permanent (nothing a retry can fix) or transient.
fn classify(context: &str, error: &AmqpError) -> Error {
    // Debug shows the condition (e.g. amqp:not-found) where Display may not; neither holds a token.
    let text = format!("{error} ({error:?})");
    if is_permanent_text(&text) {
        Error::Permanent(format!("{context}: {text}"))
    } else {
        Error::Transient(format!("{context}: {text}"))
    }
}

fn outcome_to_result(outcome: AmqpSendOutcome, queue: &str, message_id: &str) -> Result<(), Error> {
    match outcome {
        AmqpSendOutcome::Accepted => Ok(()),
        AmqpSendOutcome::Rejected(error) => {
            let text = format!("{error:?}");
            let lower = text.to_ascii_lowercase();
            if lower.contains("resource-limit-exceeded") || lower.contains("server-busy") {
                Err(Error::Transient(format!(
                    "queue {queue} rejected message {message_id}: {text}"
                )))
            } else {
                Err(Error::Permanent(format!(
                    "queue {queue} rejected message {message_id}: {text}"
                )))
            }
        }
        AmqpSendOutcome::Released => Err(Error::Transient(format!(
            "queue {queue} released message {message_id}"
        ))),
        AmqpSendOutcome::Modified(m) => Err(Error::Transient(format!(
            "queue {queue} modified message {message_id} (delivery_failed {:?}, undeliverable_here {:?})",
            m.delivery_failed, m.undeliverable_here
        ))),
    }
}

#[async_trait::async_trait]
impl Publisher for ServiceBusPublisher {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        let prepared = tasks
            .iter()
            .map(|t| prepare(t, &self.settings))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pending: Vec<&Prepared> = prepared.iter().collect();
        let mut last_error = None;
        for attempt in 0..2 {
            let live = match self.live().await {
                Ok(live) => live,
                Err(Error::Permanent(reason)) => return Err(Error::Permanent(reason)),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "service bus connect failed");
                    last_error = Some(e);
                    continue;
                }
            };
            // Every task of the alert in flight at once (one link per queue), each awaiting
            // the broker's disposition.
            let results = futures::future::join_all(
                pending.iter().map(|m| self.send_one(&live, &m.queue, m)),
            )
            .await;
            let mut failed = Vec::new();
            let mut transient = None;
            for (message, result) in pending.iter().zip(results) {
                match result {
                    Ok(()) => {
                        tracing::debug!(queue = %message.queue, message_id = %message.message_id, "accepted")
                    }
                    Err(Error::Permanent(reason)) => return Err(Error::Permanent(reason)),
                    Err(e) => {
                        tracing::warn!(attempt, queue = %message.queue, message_id = %message.message_id, error = %e, "send failed");
                        failed.push(*message);
                        transient.get_or_insert(e);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            // The connection may be broken: drop it and retry the rest on a fresh one.
            self.drop_connection(live.id).await;
            pending = failed;
            last_error = transient;
        }
        Err(match last_error {
            Some(Error::Transient(reason)) => Error::Transient(reason),
            Some(other) => Error::Transient(other.to_string()),
            None => Error::Transient("service bus publish failed".into()),
        })
    }

    fn name(&self) -> &'static str {
        "service_bus"
    }
}

#[cfg(test)]
mod tests;
