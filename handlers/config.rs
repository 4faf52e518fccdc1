//! App settings: every name the handler reads, read and validated once at start-up.

pub mod azure;

use std::path::PathBuf;

use ipnet::IpNet;

use crate::adapters::service_bus::keys as sb;
use crate::adapters::{QueueNames, ServiceBusSettings};
use crate::error::Error;
use crate::policy::file::parse_policy;
use crate::policy::Policy;

mod limits;
pub mod workers;
pub use limits::*;

/// One app setting the handler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The app-setting (environment variable) name.
    pub name: &'static str,
    /// The value used when it is unset ("" when none).
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Port the host tells the handler to listen on.
pub const PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// Path of the embedded SQLite store (queues when no Service Bus is set, and the alert ledger).
pub const STORE_PATH: &str = "RESPONDER_STORE_PATH";
/// Global dry run for containment tasks.
pub const DRY_RUN: &str = "RESPONDER_DRY_RUN";
/// The organisation's Entra tenant ids.
pub const TENANT_IDS: &str = "RESPONDER_TENANT_IDS";
/// Trusted address ranges.
pub const TRUSTED_IP_RANGES: &str = "RESPONDER_TRUSTED_IP_RANGES";
/// Who receives notifications.
pub const NOTIFY_RECIPIENTS: &str = "RESPONDER_NOTIFY_RECIPIENTS";
/// Tag naming a resource's owner.
pub const OWNER_TAG: &str = "RESPONDER_OWNER_TAG";
/// The responder's own identities (loop protection).
pub const SELF_OBJECT_IDS: &str = "RESPONDER_SELF_OBJECT_IDS";
/// Path of the optional policy file (JSON; see docs/policy.md).
pub const POLICY_FILE: &str = "RESPONDER_POLICY_FILE";
/// Name of the notification queue.
pub const QUEUE_NOTIFICATION: &str = "RESPONDER_QUEUE_NOTIFICATION";
/// Name of the isolation queue.
pub const QUEUE_ISOLATION: &str = "RESPONDER_QUEUE_ISOLATION";
/// Name of the rotation queue.
pub const QUEUE_ROTATION: &str = "RESPONDER_QUEUE_ROTATION";

/// The port used when the host sets none (running the handler by hand).
pub const DEFAULT_PORT: u16 = 3000;
/// The store path used when none is set.
pub const DEFAULT_STORE_PATH: &str = ".responder/store.sqlite3";

/// Every setting the handler reads, for documentation and the drift tests.
pub const SETTINGS: &[Setting] = &[
    Setting { name: PORT, default: "3000", description: "Port to listen on (127.0.0.1); the Functions host sets it." },
    Setting { name: STORE_PATH, default: DEFAULT_STORE_PATH, description: "SQLite file of the embedded queues and the alert ledger." },
    Setting { name: DRY_RUN, default: "false", description: "true: containment tasks are published as dry runs (workers only report)." },
    Setting { name: TENANT_IDS, default: "", description: "Comma-separated Entra tenant ids of the organisation." },
    Setting { name: TRUSTED_IP_RANGES, default: "", description: "Comma-separated CIDR ranges the organisation trusts." },
    Setting { name: NOTIFY_RECIPIENTS, default: "", description: "Comma-separated addresses that receive notifications." },
    Setting { name: OWNER_TAG, default: "owner", description: "Resource tag that names a resource's owner." },
    Setting { name: SELF_OBJECT_IDS, default: "", description: "Comma-separated object ids of the responder's own identities; alerts they cause are never acted on automatically." },
    Setting { name: QUEUE_NOTIFICATION, default: "notification", description: "Name of the notification queue." },
    Setting { name: QUEUE_ISOLATION, default: "isolation", description: "Name of the isolation queue." },
    Setting { name: QUEUE_ROTATION, default: "rotation", description: "Name of the rotation queue." },
    Setting { name: sb::CONNECTION, default: "", description: "Service Bus connection string (Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...; UseDevelopmentEmulator=true for the emulator) or amqp://user:pass@host:port of a development broker. Any ServiceBusConnection* setting makes Service Bus the publisher instead of the embedded store." },
    Setting { name: sb::NAMESPACE, default: "", description: "Service Bus namespace host (ns.servicebus.windows.net) for Entra ID: managed identity on Azure, the Azure CLI or azd sign-in locally. Used when ServiceBusConnection is unset." },
    Setting { name: sb::CLIENT_ID, default: "", description: "Client id of the user-assigned managed identity to use with the namespace (empty: system-assigned)." },
    Setting { name: sb::BROKER, default: "", description: "servicebus or rabbitmq: how queues are addressed and authorised. Empty: rabbitmq for an amqp:// URL, servicebus otherwise." },
    Setting { name: sb::SESSIONS, default: "false", description: "true: each message's session id (group-id) is its task's target, for session-enabled queues." },
    Setting { name: sb::TTL_SECONDS, default: "", description: "Message time-to-live in seconds. Empty: the queue's default." },
    Setting { name: sb::CONNECT_TIMEOUT_SECONDS, default: "10", description: "Bound on opening the AMQP connection, in seconds." },
    Setting { name: sb::SEND_TIMEOUT_SECONDS, default: "10", description: "Bound on sending one message until the broker accepts it, in seconds." },
    Setting { name: sb::MAX_MESSAGE_BYTES, default: "262144", description: "Largest task body sent; a larger one is a permanent failure (Standard tier: 256 KiB)." },
    Setting { name: sb::LINKS_PER_QUEUE, default: "8", description: "Sender links per queue (1 to 64): how many messages to one queue are in flight at once." },
    Setting { name: POLICY_FILE, default: "", description: "Path of the JSON policy file (automation modes, known principals, owners, trusted networks); the other RESPONDER_* policy settings are applied on top of it." },
];

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Port to listen on.
    pub port: u16,
    /// Path of the embedded store.
    pub store_path: PathBuf,
    /// Queue names.
    pub queue_names: QueueNames,
    /// The response policy.
    pub policy: Policy,
    /// Service Bus, when any `ServiceBusConnection*` setting is present; `None`: the embedded
    /// store is the publisher.
    pub service_bus: Option<ServiceBusSettings>,
    /// The workers: journal, channels, decision links.
    pub workers: workers::WorkerSettings,
    /// Timeouts, caps and delivery limits.
    pub limits: Limits,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let port = match get(PORT) {
            Some(text) => text
                .parse::<u16>()
                .map_err(|_| Error::Config(format!("{PORT}={text:?} is not a port number")))?,
            None => DEFAULT_PORT,
        };
        let queue = |name: &str, default: &str| -> Result<String, Error> {
            let value = get(name).unwrap_or_else(|| default.to_string());
            // Service Bus entity names: letters, digits, '.', '-', '_' and '/', up to 260.
            let valid = value.len() <= 260
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
            if valid {
                Ok(value)
            } else {
                Err(Error::Config(format!(
                    "{name}={value:?} is not a valid queue name"
                )))
            }
        };
        let queue_names = QueueNames {
            notification: queue(QUEUE_NOTIFICATION, "notification")?,
            isolation: queue(QUEUE_ISOLATION, "isolation")?,
            rotation: queue(QUEUE_ROTATION, "rotation")?,
        };
        let policy = policy_from(&get, |path| std::fs::read_to_string(path))?;
        let service_bus = ServiceBusSettings::from_lookup(&get, queue_names.clone())?;
        let store_path = get(STORE_PATH)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
        let workers = workers::WorkerSettings::from_lookup(&get, &store_path)?;
        let limits = Limits::from_lookup(&get)?;
        Ok(Config {
            port,
            store_path,
            queue_names,
            policy,
            service_bus,
            workers,
            limits,
        })
    }
}

/// Builds the policy: the policy file (when `RESPONDER_POLICY_FILE` names one), then the
/// `RESPONDER_*` app settings on top. Lists from settings are added to the file's; a set
/// `RESPONDER_DRY_RUN` or `RESPONDER_OWNER_TAG` replaces the file's value.
fn policy_from(
    get: &dyn Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Policy, Error> {
    let mut policy = match get(POLICY_FILE) {
        Some(path) => {
            let text = read(&path).map_err(|err| {
                Error::Config(format!("{POLICY_FILE}={path:?}: cannot read: {err}"))
            })?;
            parse_policy(&text)
                .map_err(|problems| Error::Config(format!("{POLICY_FILE}={path:?}: {problems}")))?
        }
        None => Policy::default(),
    };
    if let Some(dry_run) = parse_bool(DRY_RUN, get(DRY_RUN))? {
        policy.dry_run = dry_run;
    }
    let extend = |into: &mut Vec<String>, items: Vec<String>| {
        for item in items {
            if !into.iter().any(|have| have.eq_ignore_ascii_case(&item)) {
                into.push(item);
            }
        }
    };
    extend(
        &mut policy.tenant_ids,
        list(get(TENANT_IDS))
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect(),
    );
    for range in list(get(TRUSTED_IP_RANGES)) {
        let range = parse_range(&range)?;
        if !policy.trusted_ip_ranges.contains(&range) {
            policy.trusted_ip_ranges.push(range);
        }
    }
    extend(&mut policy.notify_recipients, list(get(NOTIFY_RECIPIENTS)));
    if let Some(tag) = get(OWNER_TAG) {
        policy.owner_tag = tag;
    }
    extend(&mut policy.self_object_ids, list(get(SELF_OBJECT_IDS)));
    Ok(policy)
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|text| {
            text.split([',', ';'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a boolean setting; `None` when unset.
pub fn parse_bool(name: &str, value: Option<String>) -> Result<Option<bool>, Error> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("true" | "1" | "yes" | "on") => Ok(Some(true)),
        Some("false" | "0" | "no" | "off") => Ok(Some(false)),
        Some(_) => Err(Error::Config(format!(
            "{name}={:?} is not a boolean (true or false)",
            value.unwrap_or_default()
        ))),
    }
}

fn parse_range(text: &str) -> Result<IpNet, Error> {
    crate::policy::file::parse_range(text).ok_or_else(|| {
        Error::Config(format!(
            "{TRUSTED_IP_RANGES}: {text:?} is not a CIDR range or an address"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = config(&[]).unwrap();
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.store_path, PathBuf::from(DEFAULT_STORE_PATH));
        assert_eq!(config.queue_names, QueueNames::default());
        assert!(!config.policy.dry_run);
        assert!(config.service_bus.is_none(), "the embedded store publishes");
    }

    #[test]
    fn a_service_bus_connection_selects_service_bus_with_the_configured_queue_names() {
        let config = config(&[
            ("ServiceBusConnection", "amqp://guest:guest@127.0.0.1:5672"),
            (QUEUE_ROTATION, "rot-2"),
            ("RESPONDER_SB_SESSIONS", "yes"),
        ])
        .unwrap();
        let sb = config.service_bus.expect("Service Bus settings");
        assert_eq!(sb.queues.rotation, "rot-2");
        assert!(sb.use_sessions);
        let err = self::config(&[
            ("ServiceBusConnection", "amqp://127.0.0.1:5672"),
            ("RESPONDER_SB_SESSIONS", "maybe"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("RESPONDER_SB_SESSIONS"), "{err}");
    }

    #[test]
    fn bad_values_are_errors_that_name_the_setting() {
        let err = config(&[(PORT, "http")]).unwrap_err().to_string();
        assert!(
            err.contains("FUNCTIONS_CUSTOMHANDLER_PORT=\"http\""),
            "{err}"
        );
        let err = config(&[(TRUSTED_IP_RANGES, "10.0.0.0/8, 300.1.1.1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"300.1.1.1\" is not a CIDR"), "{err}");
        let err = config(&[(DRY_RUN, "maybe")]).unwrap_err().to_string();
        assert!(err.contains("RESPONDER_DRY_RUN=\"maybe\""), "{err}");
        let err = config(&[(QUEUE_ROTATION, "rot ation")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RESPONDER_QUEUE_ROTATION"), "{err}");
    }

    #[test]
    fn lists_and_ranges_parse() {
        let config = config(&[
            (TRUSTED_IP_RANGES, "10.0.0.0/8; 192.0.2.7"),
            (TENANT_IDS, "ABC, def"),
        ])
        .unwrap();
        assert_eq!(config.policy.trusted_ip_ranges.len(), 2);
        assert_eq!(config.policy.tenant_ids, vec!["abc", "def"]);
    }

    #[test]
    fn the_policy_file_is_read_and_app_settings_apply_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(
            &path,
            r#"{"tenant_ids": ["c0506a98-9c27-4b6a-9a14-0cc99837071d"],
                "notify_recipients": ["secops@contoso.com"],
                "owner_tag": "team",
                "automation": [{"action": "reimage_vm", "mode": "notify_only"}]}"#,
        )
        .unwrap();
        let path = path.display().to_string();
        let config = config(&[
            (POLICY_FILE, &path),
            (NOTIFY_RECIPIENTS, "soc@contoso.com"),
            (DRY_RUN, "true"),
        ])
        .unwrap();
        let policy = config.policy;
        assert_eq!(
            policy.tenant_ids,
            vec!["c0506a98-9c27-4b6a-9a14-0cc99837071d"]
        );
        assert_eq!(
            policy.notify_recipients,
            vec!["secops@contoso.com", "soc@contoso.com"]
        );
        assert_eq!(policy.owner_tag, "team");
        assert_eq!(policy.automation.len(), 1);
        assert!(policy.dry_run);
    }

    #[test]
    fn a_bad_policy_file_fails_start_up_naming_the_setting_and_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(
            &path,
            r#"{"automation": [{"action": "nuke", "mode": "auto"}]}"#,
        )
        .unwrap();
        let path = path.display().to_string();
        let err = config(&[(POLICY_FILE, &path)]).unwrap_err().to_string();
        assert!(err.contains("RESPONDER_POLICY_FILE"), "{err}");
        assert!(
            err.contains("automation[0].action: \"nuke\" is not an action"),
            "{err}"
        );
        let err = config(&[(POLICY_FILE, "/nonexistent/policy.json")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
