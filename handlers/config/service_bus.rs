//! Service Bus settings: how to reach the broker, how to sign in, and the sender's bounds.
//! Every `RESPONDER_SB_*` setting is validated even when no connection is configured.

use std::fmt;
use std::time::Duration;

use azure_core::credentials::Secret;
use url::Url;

use super::identity::IdentitySettings;
use super::policy::is_guid;
use super::{parse_bool, Lookup, QueueNames, Setting};
use crate::error::Error;

/// Default size limit of a message body: the Standard tier's 256 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Default number of sender links per queue.
pub const DEFAULT_LINKS_PER_QUEUE: usize = 8;
/// Default connect and send timeouts, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

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

/// The settings of this area, for the documentation and the drift tests.
pub(super) const SETTINGS: &[Setting] = &[
    Setting { name: keys::CONNECTION, default: "", description: "Service Bus connection string (Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...; UseDevelopmentEmulator=true for the emulator) or amqp://user:pass@host:port of a development broker. Any ServiceBusConnection* setting makes Service Bus the publisher instead of the embedded store." },
    Setting { name: keys::NAMESPACE, default: "", description: "Service Bus namespace host (ns.servicebus.windows.net) for Entra ID: managed identity on Azure, the Azure CLI or azd sign-in locally (see RESPONDER_IDENTITY). Used when ServiceBusConnection is unset." },
    Setting { name: keys::CLIENT_ID, default: "", description: "Client id (GUID) of the user-assigned managed identity to use with the namespace (empty: system-assigned)." },
    Setting { name: keys::BROKER, default: "", description: "servicebus or rabbitmq: how queues are addressed and authorised. Empty: rabbitmq for an amqp:// URL, servicebus otherwise." },
    Setting { name: keys::SESSIONS, default: "false", description: "true: each message's session id (group-id) is its task's target, for session-enabled queues." },
    Setting { name: keys::TTL_SECONDS, default: "", description: "Message time-to-live in seconds. Empty: the queue's default." },
    Setting { name: keys::CONNECT_TIMEOUT_SECONDS, default: "10", description: "Bound on opening the AMQP connection, in seconds." },
    Setting { name: keys::SEND_TIMEOUT_SECONDS, default: "10", description: "Bound on sending one message until the broker accepts it, in seconds." },
    Setting { name: keys::MAX_MESSAGE_BYTES, default: "262144", description: "Largest task body sent; a larger one is a permanent failure (Standard tier: 256 KiB)." },
    Setting { name: keys::LINKS_PER_QUEUE, default: "8", description: "Sender links per queue (1 to 64): how many messages to one queue are in flight at once." },
];

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

/// How the sender proves who it is.
#[derive(Clone, PartialEq)]
pub enum ServiceBusAuth {
    /// No `$cbs` (RabbitMQ and other development brokers): SASL PLAIN with the URL's user and
    /// password, or ANONYMOUS.
    Sasl,
    /// SAS tokens signed from the connection string's key, put to `$cbs`.
    SharedKey {
        /// `SharedAccessKeyName`.
        key_name: String,
        /// `SharedAccessKey`: signs SAS tokens, never sent or logged.
        key: Secret,
    },
    /// Entra ID tokens (managed identity or developer sign-in), put to `$cbs` as `jwt`.
    EntraId {
        /// Client id of a user-assigned managed identity.
        client_id: Option<String>,
    },
}

impl fmt::Debug for ServiceBusAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceBusAuth::Sasl => f.write_str("Sasl"),
            ServiceBusAuth::SharedKey { key_name, .. } => f
                .debug_struct("SharedKey")
                .field("key_name", key_name)
                .field("key", &"<redacted>")
                .finish(),
            ServiceBusAuth::EntraId { client_id } => f
                .debug_struct("EntraId")
                .field("client_id", client_id)
                .finish(),
        }
    }
}

/// The sender's tunables, validated whether or not a connection is configured.
#[derive(Clone, Debug, PartialEq)]
struct Tunables {
    flavour: Option<BrokerFlavour>,
    message_ttl: Option<Duration>,
    use_sessions: bool,
    connect_timeout: Duration,
    send_timeout: Duration,
    max_message_bytes: usize,
    links_per_queue: usize,
}

/// Everything the Service Bus sender needs, read from app settings.
#[derive(Clone, PartialEq)]
pub struct ServiceBusSettings {
    /// `amqps://host[:port]` or `amqp://[user:pass@]host:port`. May hold a password: never logged.
    pub(crate) endpoint: Url,
    /// Host (and port) for logs and `$cbs` audiences.
    pub(crate) host: String,
    /// How to sign in.
    pub auth: ServiceBusAuth,
    /// Where Entra ID tokens come from (used with [`ServiceBusAuth::EntraId`]).
    pub identity: IdentitySettings,
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
    /// Largest body sent; a larger task is a permanent failure without reaching the broker.
    pub max_message_bytes: usize,
    /// Sender links per queue (at least 1).
    pub links_per_queue: usize,
}

impl fmt::Debug for ServiceBusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusSettings")
            .field("scheme", &self.endpoint.scheme())
            .field("host", &self.host)
            .field("auth", &self.auth)
            .field("identity", &self.identity)
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

impl ServiceBusSettings {
    /// Reads the settings through `get` with the identity settings of the process
    /// environment's defaults; see [`ServiceBusSettings::from_parts`].
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        queues: QueueNames,
    ) -> Result<Option<Self>, Error> {
        let get = |key: &str| {
            get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let identity = IdentitySettings::from_lookup(&get)?;
        Self::from_parts(&get, queues, identity)
    }

    /// Reads the settings through `get`; `Ok(None)` when no `ServiceBusConnection*` setting is
    /// present (the embedded store is the publisher then). Every `RESPONDER_SB_*` setting and
    /// the client id are validated either way.
    pub fn from_parts(
        get: Lookup<'_>,
        queues: QueueNames,
        identity: IdentitySettings,
    ) -> Result<Option<Self>, Error> {
        let tunables = Tunables::from_lookup(get)?;
        let client_id = match get(keys::CLIENT_ID) {
            Some(id) if is_guid(&id) => Some(id.to_ascii_lowercase()),
            Some(id) => {
                return Err(Error::configuration(format!(
                    "{}={id:?} is not a client id (GUID)",
                    keys::CLIENT_ID
                )))
            }
            None => None,
        };
        let (endpoint, auth, default_flavour) = match (get(keys::CONNECTION), get(keys::NAMESPACE))
        {
            (None, None) => return Ok(None),
            (Some(text), _) if text.starts_with("amqp://") || text.starts_with("amqps://") => {
                let url = Url::parse(&text).map_err(|e| {
                    // url's error names the fault, not the text (which may hold a password).
                    Error::configuration(format!("{}: not a valid AMQP URL: {e}", keys::CONNECTION))
                })?;
                if url.host_str().is_none() {
                    return Err(Error::configuration(format!(
                        "{}: AMQP URL has no host",
                        keys::CONNECTION
                    )));
                }
                (url, ServiceBusAuth::Sasl, BrokerFlavour::RabbitMq)
            }
            (Some(text), _) => {
                let cs = ConnectionString::parse(&text)?;
                let (scheme, port) = if cs.use_development_emulator {
                    ("amqp", cs.port.unwrap_or(5672))
                } else {
                    ("amqps", cs.port.unwrap_or(5671))
                };
                let url = Url::parse(&format!("{scheme}://{}:{port}", cs.host)).map_err(|e| {
                    Error::configuration(format!("{}: bad Endpoint host: {e}", keys::CONNECTION))
                })?;
                if cs.entity_path.is_some() {
                    tracing::info!(
                        "ServiceBusConnection has an EntityPath: a key scoped to one queue authorises only that queue"
                    );
                }
                let auth = ServiceBusAuth::SharedKey {
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
                    Error::configuration(format!("{}: bad namespace: {e}", keys::NAMESPACE))
                })?;
                (
                    url,
                    ServiceBusAuth::EntraId { client_id },
                    BrokerFlavour::ServiceBus,
                )
            }
        };
        let host = match endpoint.port() {
            Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
            None => endpoint.host_str().unwrap_or_default().to_string(),
        };
        Ok(Some(ServiceBusSettings {
            endpoint,
            host,
            auth,
            identity,
            flavour: tunables.flavour.unwrap_or(default_flavour),
            queues,
            message_ttl: tunables.message_ttl,
            use_sessions: tunables.use_sessions,
            connect_timeout: tunables.connect_timeout,
            send_timeout: tunables.send_timeout,
            max_message_bytes: tunables.max_message_bytes,
            links_per_queue: tunables.links_per_queue,
        }))
    }

    /// The connection's URL (may hold a password: never log it).
    pub(crate) fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Host and port, for logs.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// What logs may say about the broker: scheme, host, authorisation kind and flavour (never
    /// a user name, password, key or token).
    pub fn describe(&self) -> String {
        let auth = match self.auth {
            ServiceBusAuth::Sasl if self.endpoint.password().is_some() => "sasl-plain",
            ServiceBusAuth::Sasl => "sasl-anonymous",
            ServiceBusAuth::SharedKey { .. } => "sas",
            ServiceBusAuth::EntraId { .. } => "entra-id",
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
    pub fn audience(&self, queue: &str) -> String {
        format!(
            "sb://{}/{queue}",
            self.endpoint.host_str().unwrap_or_default()
        )
    }

    /// The setting that holds the credentials in use, for error messages.
    pub fn credential_setting(&self) -> &'static str {
        match self.auth {
            ServiceBusAuth::Sasl | ServiceBusAuth::SharedKey { .. } => keys::CONNECTION,
            ServiceBusAuth::EntraId { .. } => keys::NAMESPACE,
        }
    }
}

impl Tunables {
    fn from_lookup(get: Lookup<'_>) -> Result<Self, Error> {
        let flavour = match get(keys::BROKER).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => None,
            Some("servicebus" | "service_bus") => Some(BrokerFlavour::ServiceBus),
            Some("rabbitmq") => Some(BrokerFlavour::RabbitMq),
            Some(other) => {
                return Err(Error::configuration(format!(
                    "{}={other:?}: expected servicebus or rabbitmq",
                    keys::BROKER
                )));
            }
        };
        let seconds = |key: &str| -> Result<Option<Duration>, Error> {
            get(key)
                .map(|v| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && *s < 1e9)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| {
                            Error::configuration(format!(
                                "{key}={v:?}: expected a positive number of seconds"
                            ))
                        })
                })
                .transpose()
        };
        let default_timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
        let number =
            |key: &str, range: std::ops::RangeInclusive<usize>, default: usize| match get(key) {
                None => Ok(default),
                Some(v) => v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                    Error::configuration(format!(
                        "{key}={v:?}: expected a number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                }),
            };
        Ok(Tunables {
            flavour,
            message_ttl: seconds(keys::TTL_SECONDS)?,
            use_sessions: parse_bool(keys::SESSIONS, get(keys::SESSIONS))?.unwrap_or(false),
            connect_timeout: seconds(keys::CONNECT_TIMEOUT_SECONDS)?.unwrap_or(default_timeout),
            send_timeout: seconds(keys::SEND_TIMEOUT_SECONDS)?.unwrap_or(default_timeout),
            max_message_bytes: number(
                keys::MAX_MESSAGE_BYTES,
                1..=100 * 1024 * 1024,
                DEFAULT_MAX_MESSAGE_BYTES,
            )?,
            links_per_queue: number(keys::LINKS_PER_QUEUE, 1..=64, DEFAULT_LINKS_PER_QUEUE)?,
        })
    }
}

/// A parsed `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…` connection string.
#[derive(Clone)]
pub(crate) struct ConnectionString {
    /// Host of the `Endpoint`.
    pub(crate) host: String,
    /// Port of the `Endpoint`, when it names one.
    pub(crate) port: Option<u16>,
    /// `SharedAccessKeyName`.
    pub(crate) key_name: String,
    /// `SharedAccessKey`: signs SAS tokens, never sent or logged.
    pub(crate) key: Secret,
    /// `EntityPath`, when the key is scoped to one queue.
    pub(crate) entity_path: Option<String>,
    /// `UseDevelopmentEmulator=true`: plain AMQP on 5672 (the Service Bus emulator).
    pub(crate) use_development_emulator: bool,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity_path", &self.entity_path)
            .field("use_development_emulator", &self.use_development_emulator)
            .finish()
    }
}

impl ConnectionString {
    /// Parses the `;`-separated `Key=Value` pairs (keys case-insensitive; a value may hold `=`).
    /// Errors never quote the string (it holds the key).
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let bad = |what: &str| Error::configuration(format!("{}: {what}", keys::CONNECTION));
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut entity_path = None;
        let mut emulator = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(bad("a part of the connection string has no '='"));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.to_string()),
                "sharedaccesskeyname" => key_name = Some(value.to_string()),
                "sharedaccesskey" => key = Some(value.to_string()),
                "entitypath" => entity_path = Some(value.to_string()).filter(|v| !v.is_empty()),
                "usedevelopmentemulator" => emulator = value.eq_ignore_ascii_case("true"),
                "sharedaccesssignature" => {
                    return Err(bad("SharedAccessSignature connection strings are not supported; use SharedAccessKeyName/SharedAccessKey"));
                }
                _ => {} // e.g. TransportType: ignored
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("connection string has no Endpoint"))?;
        let url = Url::parse(&endpoint).map_err(|e| bad(&format!("Endpoint is not a URL: {e}")))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("Endpoint has no host"))?
            .to_string();
        Ok(ConnectionString {
            host,
            port: url.port(),
            key_name: key_name
                .ok_or_else(|| bad("connection string has no SharedAccessKeyName"))?,
            key: Secret::new(key.ok_or_else(|| bad("connection string has no SharedAccessKey"))?),
            entity_path,
            use_development_emulator: emulator,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_parses_and_hides_the_key() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc/def+g==;EntityPath=notification",
        )
        .unwrap();
        assert_eq!(cs.host, "ns.servicebus.windows.net");
        assert_eq!(cs.key_name, "send");
        assert_eq!(cs.key.secret(), "abc/def+g==");
        assert_eq!(cs.entity_path.as_deref(), Some("notification"));
        assert!(!cs.use_development_emulator);
        let debug = format!("{cs:?}");
        assert!(!debug.contains("abc/def"), "{debug}");
    }

    #[test]
    fn emulator_connection_string() {
        let cs = ConnectionString::parse(
            "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        )
        .unwrap();
        assert_eq!(cs.host, "localhost");
        assert_eq!(cs.port, None);
        assert!(cs.use_development_emulator);
    }

    #[test]
    fn connection_string_errors_do_not_quote_the_key() {
        let err =
            ConnectionString::parse("SharedAccessKeyName=a;SharedAccessKey=topsecret").unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
        assert!(err.to_string().contains("ServiceBusConnection"), "{err}");
    }
}
