//! The decoded Defender security alert and its parts (severity, status, entities, resource ids).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::ids::AzureResourceId;

/// Prefix the Defender alert simulator puts before real alert types.
pub const SIMULATED_PREFIX: &str = "SIMULATED_";

/// The name of a service: the Defender plan an alert belongs to, and so the handler that
/// plans it (`key_vault`, `dns`, `resource_manager`; `unknown` for the fallback).
///
/// Each handler declares its own name beside its code (`services/<service>.rs`); nothing in
/// the domain lists the services. The name is snake_case ASCII, checked when it is declared
/// (at compile time for the handlers' constants). It serialises as the bare name; it is read
/// back, and described in the JSON Schema, against the names of the standard registry
/// (`services::Registry::standard`), so a message naming no registered service is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServiceName(&'static str);

impl ServiceName {
    /// Declares a service name.
    ///
    /// # Panics
    /// When `name` is not snake_case ASCII (lower-case letters, digits and `_`, starting with
    /// a letter): in a `const`, that is a compile error.
    pub const fn new(name: &'static str) -> Self {
        assert!(is_snake_case(name), "a service name is snake_case ASCII");
        ServiceName(name)
    }

    /// The snake_case name used in plans, message properties and logs.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Whether `name` is a non-empty snake_case ASCII identifier starting with a letter.
const fn is_snake_case(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut index = 1;
    while index < bytes.len() {
        let byte = bytes[index];
        if !(byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_') {
            return false;
        }
        index += 1;
    }
    true
}

/// Alert severity as Defender reports it; `Unknown` when the alert carries none.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Severity {
    /// No severity in the alert (some types are documented with severity "-").
    Unknown,
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

impl Severity {
    /// Parses Defender's severity names, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "informational" | "information" | "info" => Some(Severity::Informational),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" | "critical" => Some(Severity::High),
            "" | "-" | "unknown" => Some(Severity::Unknown),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle status of an alert. Workflow automation reports new alerts as `New`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AlertStatus {
    /// A new, open alert (`Active` in the REST shape, `New` in workflow automation).
    Active,
    /// Someone is working on it.
    InProgress,
    /// Closed as handled.
    Resolved,
    /// Closed as not relevant.
    Dismissed,
}

impl AlertStatus {
    /// Parses the status names of both alert shapes, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '_'], "")
            .as_str()
        {
            "active" | "new" | "" => Some(AlertStatus::Active),
            "inprogress" => Some(AlertStatus::InProgress),
            "resolved" => Some(AlertStatus::Resolved),
            "dismissed" => Some(AlertStatus::Dismissed),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "Active",
            AlertStatus::InProgress => "InProgress",
            AlertStatus::Resolved => "Resolved",
            AlertStatus::Dismissed => "Dismissed",
        }
    }

    /// Whether this status is an update about an alert rather than a new alert to act on.
    pub fn is_update(self) -> bool {
        !matches!(self, AlertStatus::Active)
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entity Defender attached to the alert, reduced to what responses need.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entity {
    /// An IP address (the caller, a resolved address, ...).
    Ip {
        /// The address as written in the alert.
        address: String,
        /// Threat-intelligence verdicts Defender attached, e.g. `TorExitNode`.
        threat_names: Vec<String>,
    },
    /// A user or service principal.
    Account {
        /// Account name (without the UPN suffix).
        name: Option<String>,
        /// UPN suffix (domain).
        upn_suffix: Option<String>,
        /// Entra object id.
        aad_user_id: Option<String>,
        /// Entra tenant of the account.
        aad_tenant_id: Option<String>,
    },
    /// An Azure resource.
    AzureResource {
        /// Its ARM id.
        resource_id: AzureResourceId,
    },
    /// A machine.
    Host {
        /// Host name.
        host_name: Option<String>,
        /// ARM id of the machine when Defender knows it.
        azure_id: Option<AzureResourceId>,
    },
    /// A DNS lookup.
    Dns {
        /// The queried domain.
        domain_name: String,
        /// The answers (the misspelled `ipAdresses` field in Defender's schema).
        ip_addresses: Vec<String>,
        /// Address of the host that asked.
        host_ip_address: Option<String>,
    },
    /// Any other entity type, kept by name so nothing silently disappears.
    Other {
        /// Defender's entity type name.
        kind: String,
    },
}

impl Entity {
    /// The user principal name of an account entity, when both parts are present.
    pub fn user_principal_name(&self) -> Option<String> {
        match self {
            Entity::Account {
                name: Some(name),
                upn_suffix: Some(suffix),
                ..
            } if !name.contains('@') => Some(format!("{name}@{suffix}")),
            Entity::Account {
                name: Some(name), ..
            } if name.contains('@') => Some(name.clone()),
            _ => None,
        }
    }
}

/// A Defender for Cloud security alert, decoded from either documented shape.
///
/// Identifiers of secrets are kept; values of secrets never reach this type (Defender does
/// not send them). `Debug` is derived because every field here is alert metadata.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecurityAlert {
    /// The alert type exactly as sent (may carry the `SIMULATED_` prefix).
    pub alert_type: String,
    /// Defender's unique id of the alert, stable across redeliveries and status updates.
    pub system_alert_id: String,
    /// Human-readable title.
    pub display_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AlertStatus,
    /// MITRE tactics, split on commas.
    pub intent: Vec<String>,
    /// The resource the alert is about (the vault, the VM, the subscription).
    pub resource_id: Option<AzureResourceId>,
    /// Defender's `compromisedEntity` (a name, not an id).
    pub compromised_entity: Option<String>,
    /// Tenants named by `AAD` resource identifiers and entities.
    pub tenant_ids: Vec<String>,
    /// Entities, with `$ref` references resolved.
    pub entities: Vec<Entity>,
    /// `extendedProperties`, every value as text.
    pub extended_properties: BTreeMap<String, String>,
    /// Defender's own remediation steps.
    pub remediation_steps: Vec<String>,
    /// Link to the alert in the portal.
    pub alert_uri: Option<String>,
    /// When the suspicious activity started (RFC 3339 as sent).
    pub start_time: Option<String>,
    /// When it ended.
    pub end_time: Option<String>,
}

impl SecurityAlert {
    /// Whether the Defender alert simulator produced this alert.
    pub fn is_simulated(&self) -> bool {
        self.alert_type
            .get(..SIMULATED_PREFIX.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(SIMULATED_PREFIX))
    }

    /// The alert type without the simulator prefix.
    pub fn base_alert_type(&self) -> &str {
        if self.is_simulated() {
            &self.alert_type[SIMULATED_PREFIX.len()..]
        } else {
            &self.alert_type
        }
    }

    /// An extended property by name, case-insensitively, ignoring blank values.
    pub fn extended(&self, key: &str) -> Option<&str> {
        self.extended_properties
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The subscription the alert is about.
    pub fn subscription_id(&self) -> Option<&str> {
        self.resource_id
            .as_ref()
            .and_then(|id| id.subscription_id())
            .or_else(|| self.extended("EffectiveSubscriptionId"))
    }

    /// The best single name of the affected resource, for targets and messages.
    pub fn resource_label(&self) -> String {
        self.resource_id
            .as_ref()
            .map(|id| id.as_str().to_string())
            .or_else(|| self.compromised_entity.clone())
            .unwrap_or_else(|| "(resource not named in the alert)".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_snake_case_identifiers() {
        assert_eq!(ServiceName::new("key_vault").as_str(), "key_vault");
        assert_eq!(
            serde_json::to_string(&ServiceName::new("dns2")).unwrap(),
            "\"dns2\""
        );
        for bad in ["", "Key Vault", "key-vault", "_dns", "1dns", "kéy"] {
            assert!(!is_snake_case(bad), "{bad:?}");
        }
    }

    #[test]
    #[should_panic(expected = "a service name is snake_case ASCII")]
    fn a_malformed_service_name_cannot_be_declared() {
        let _ = ServiceName::new("KeyVault");
    }

    #[test]
    fn statuses_and_severities_accept_both_shapes() {
        assert_eq!(AlertStatus::parse("New"), Some(AlertStatus::Active));
        assert_eq!(
            AlertStatus::parse("inProgress"),
            Some(AlertStatus::InProgress)
        );
        assert_eq!(AlertStatus::parse("Closed"), None);
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert_eq!(Severity::parse("-"), Some(Severity::Unknown));
        assert!(Severity::High > Severity::Medium);
    }

    #[test]
    fn account_entities_form_a_user_principal_name() {
        let account = Entity::Account {
            name: Some("alice".into()),
            upn_suffix: Some("contoso.com".into()),
            aad_user_id: None,
            aad_tenant_id: None,
        };
        assert_eq!(
            account.user_principal_name().as_deref(),
            Some("alice@contoso.com")
        );
    }
}
