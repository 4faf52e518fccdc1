//! App settings: every name the handler reads, read and validated once at start-up, one struct
//! per area (server, store, queues, policy, identity, Service Bus) in `config/*.rs`.
//!
//! This module is a leaf: it depends on the domain and policy types it builds, never on the
//! adapters that use it. Every setting is validated whenever it is set, whether or not the
//! feature it tunes is in use, and every error names the setting.

pub mod identity;
pub mod policy;
pub mod queues;
pub mod server;
pub mod service_bus;
pub mod store;

pub mod azure;

use std::path::PathBuf;

use crate::error::Error;
use crate::policy::Policy;

mod limits;
pub mod notify;
pub mod workers;
pub use identity::{IdentitySettings, IdentitySource, TokenEndpoint};
pub mod rotation;
pub use limits::*;
pub use policy::{
    DRY_RUN, NOTIFY_RECIPIENTS, OWNER_TAG, POLICY_FILE, SELF_OBJECT_IDS, TENANT_IDS,
    TRUSTED_IP_RANGES,
};
pub use queues::{QueueNames, QUEUE_ISOLATION, QUEUE_NOTIFICATION, QUEUE_ROTATION};
pub use server::{ServerSettings, DEFAULT_PORT, PORT};
pub use service_bus::{BrokerFlavour, ServiceBusAuth, ServiceBusSettings};
pub use store::{StoreSettings, DEFAULT_STORE_PATH, STORE_PATH};

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

/// How an area reads a setting: trimmed, `None` when unset or empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Settings the platform sets for the process; local.settings.json never lists them.
pub const PLATFORM_SETTINGS: &[&str] = &[
    PORT,
    identity::PLATFORM_IDENTITY_ENDPOINT,
    identity::PLATFORM_IDENTITY_HEADER,
];

/// Every setting the handler reads, for documentation and the drift tests.
pub const SETTINGS: &[Setting] = &[
    server::SETTINGS[0],
    store::SETTINGS[0],
    policy::SETTINGS[0],
    policy::SETTINGS[1],
    policy::SETTINGS[2],
    policy::SETTINGS[3],
    policy::SETTINGS[4],
    policy::SETTINGS[5],
    queues::SETTINGS[0],
    queues::SETTINGS[1],
    queues::SETTINGS[2],
    service_bus::SETTINGS[0],
    service_bus::SETTINGS[1],
    service_bus::SETTINGS[2],
    service_bus::SETTINGS[3],
    service_bus::SETTINGS[4],
    service_bus::SETTINGS[5],
    service_bus::SETTINGS[6],
    service_bus::SETTINGS[7],
    service_bus::SETTINGS[8],
    service_bus::SETTINGS[9],
    identity::SETTINGS[0],
    identity::SETTINGS[1],
    identity::SETTINGS[2],
    identity::SETTINGS[3],
    policy::SETTINGS[6],
    limits::LIMIT_SETTINGS[0],
    limits::LIMIT_SETTINGS[1],
    limits::LIMIT_SETTINGS[2],
    limits::LIMIT_SETTINGS[3],
    limits::LIMIT_SETTINGS[4],
    limits::LIMIT_SETTINGS[5],
    workers::SETTINGS[0],
    workers::SETTINGS[1],
    workers::SETTINGS[2],
    workers::SETTINGS[3],
    workers::SETTINGS[4],
    workers::SETTINGS[5],
    workers::SETTINGS[6],
    workers::SETTINGS[7],
    workers::SETTINGS[8],
    workers::SETTINGS[9],
    workers::SETTINGS[10],
    workers::SETTINGS[11],
    workers::SETTINGS[12],
    workers::SETTINGS[13],
    workers::SETTINGS[14],
    workers::SETTINGS[15],
    workers::SETTINGS[16],
    workers::SETTINGS[17],
    workers::SETTINGS[18],
    azure::SETTINGS[0],
    azure::SETTINGS[1],
    azure::SETTINGS[2],
    azure::SETTINGS[3],
    azure::SETTINGS[4],
    azure::SETTINGS[5],
    azure::SETTINGS[6],
    azure::SETTINGS[7],
    azure::SETTINGS[8],
    azure::SETTINGS[9],
    azure::SETTINGS[10],
    azure::SETTINGS[11],
    azure::SETTINGS[12],
    azure::SETTINGS[13],
    azure::SETTINGS[14],
    azure::SETTINGS[15],
    rotation::ROTATION_SETTINGS[0],
    rotation::ROTATION_SETTINGS[1],
    rotation::ROTATION_SETTINGS[2],
    rotation::ROTATION_SETTINGS[3],
    rotation::ROTATION_SETTINGS[4],
    rotation::ROTATION_SETTINGS[5],
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
    /// Where Entra ID tokens come from, for every client that signs in.
    pub identity: IdentitySettings,
    /// Service Bus, when any `ServiceBusConnection*` setting is present; `None`: the embedded
    /// store is the publisher.
    pub service_bus: Option<ServiceBusSettings>,
    /// The workers: journal, channels, decision links.
    pub workers: workers::WorkerSettings,
    /// Timeouts, caps and delivery limits.
    pub limits: Limits,
    /// Where the Azure clients call (endpoints, scopes, budgets).
    pub azure: azure::AzureSettings,
    /// The isolation executors' guard rails.
    pub isolation: azure::IsolationSettings,
    /// The rotation executors' settings (grace window, vault endpoints).
    pub rotation: rotation::RotationSettings,
    /// The secrets of the policy's notification channels.
    pub notify: notify::NotifySettings,
    /// Whether the executors act on Azure: deployed (Service Bus configured) or with
    /// `RESPONDER_ARM_ENDPOINT` set (a simulator, a sovereign cloud). Otherwise every
    /// containment task is recorded as not automated, with a notice.
    pub executors_enabled: bool,
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
        let server = ServerSettings::from_lookup(&get)?;
        let store = StoreSettings::from_lookup(&get)?;
        let queue_names = QueueNames::from_lookup(&get)?;
        let policy = policy::policy_from_lookup(&get, |path| std::fs::read_to_string(path))?;
        let identity = IdentitySettings::from_lookup(&get)?;
        let service_bus =
            ServiceBusSettings::from_parts(&get, queue_names.clone(), identity.clone())?;
        let workers = workers::WorkerSettings::from_lookup(&get, &store.path)?;
        let limits = Limits::from_lookup(&get)?;
        let azure = azure::AzureSettings::from_lookup(&get)?;
        let isolation = azure::IsolationSettings::from_lookup(&get, &policy.self_object_ids)?;
        let rotation = rotation::RotationSettings::from_lookup(&get)?;
        let notify = notify::NotifySettings::from_lookup(&get, &policy.notifications)?;
        let executors_enabled = service_bus.is_some() || get(azure::ARM_ENDPOINT).is_some();
        Ok(Config {
            port: server.port,
            store_path: store.path,
            queue_names,
            policy,
            identity,
            service_bus,
            workers,
            limits,
            azure,
            isolation,
            rotation,
            notify,
            executors_enabled,
        })
    }
}

/// A comma- (or semicolon-) separated list, trimmed, without empty entries.
pub(crate) fn list(value: Option<String>) -> Vec<String> {
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
        Some(_) => Err(Error::configuration(format!(
            "{name}={:?} is not a boolean (true or false)",
            value.unwrap_or_default()
        ))),
    }
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
            (
                TENANT_IDS,
                "C0506A98-9C27-4B6A-9A14-0CC99837071D, 11111111-2222-3333-4444-555555555555",
            ),
        ])
        .unwrap();
        assert_eq!(config.policy.trusted_ip_ranges.len(), 2);
        assert_eq!(
            config.policy.tenant_ids,
            vec![
                "c0506a98-9c27-4b6a-9a14-0cc99837071d",
                "11111111-2222-3333-4444-555555555555"
            ]
        );
    }

    #[test]
    fn ids_that_are_not_guids_fail_start_up_naming_the_setting() {
        let err = config(&[(TENANT_IDS, "contoso.onmicrosoft.com")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RESPONDER_TENANT_IDS: \"contoso.onmicrosoft.com\" is not a GUID"),
            "{err}"
        );
        let err = config(&[(SELF_OBJECT_IDS, "me")]).unwrap_err().to_string();
        assert!(err.contains("RESPONDER_SELF_OBJECT_IDS"), "{err}");
        let err = config(&[("ServiceBusConnection__clientId", "my-identity")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ServiceBusConnection__clientId"), "{err}");
    }

    #[test]
    fn service_bus_settings_are_validated_without_a_connection() {
        for (name, value) in [
            ("RESPONDER_SB_SESSIONS", "maybe"),
            ("RESPONDER_SB_BROKER", "kafka"),
            ("RESPONDER_SB_MESSAGE_TTL_SECONDS", "-1"),
            ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "soon"),
            ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "0"),
            ("RESPONDER_SB_MAX_MESSAGE_BYTES", "0"),
            ("RESPONDER_SB_LINKS_PER_QUEUE", "65"),
            ("RESPONDER_IDENTITY", "magic"),
            ("RESPONDER_IDENTITY_ENDPOINT", "not a url"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Configuration);
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn every_area_setting_is_listed_once() {
        let areas = [
            server::SETTINGS,
            store::SETTINGS,
            policy::SETTINGS,
            queues::SETTINGS,
            service_bus::SETTINGS,
            identity::SETTINGS,
            limits::LIMIT_SETTINGS,
            workers::SETTINGS,
            azure::SETTINGS,
            rotation::ROTATION_SETTINGS,
        ];
        let from_areas: Vec<&str> = areas
            .iter()
            .flat_map(|a| a.iter().map(|s| s.name))
            .collect();
        let mut listed: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(listed.len(), from_areas.len());
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed.len(), from_areas.len(), "a setting is listed twice");
        for name in from_areas {
            assert!(listed.contains(&name), "{name} is missing from SETTINGS");
        }
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
