//! Fact extraction: what the playbook steps need, gathered from every place Defender puts it.
//!
//! Both alert shapes decode to the same [`SecurityAlert`], so the sources here are: the
//! entities (account, ip, azure-resource, host, dns), `extendedProperties` (looked up
//! case-insensitively, plus a scan of every value for resource ids and vault object URIs),
//! the alert's resource id and `compromisedEntity`.

use std::collections::{HashMap, HashSet};

use crate::domain::{
    AzureResourceId, Entity, Guid, IpAddress, PersonAddress, PrincipalKind, PrincipalRef,
    SecurityAlert, VaultObjectKind, VaultObjectUri,
};

/// Microsoft first-party client applications: a caller using them is a person at a
/// command line or portal, not an application whose administrator could audit anything.
pub(crate) const FIRST_PARTY_APPS: &[(&str, &str)] = &[
    ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Azure CLI"),
    ("1950a258-227b-4e31-a9cf-717495945fc2", "Azure PowerShell"),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure portal"),
];

/// The name of a Microsoft first-party client application id, if it is one.
pub(crate) fn first_party_app(app_id: &str) -> Option<&'static str> {
    FIRST_PARTY_APPS
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(app_id.trim()))
        .map(|(_, name)| *name)
}

/// The security principal behind the activity, as far as the alert names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Entra object id.
    pub(crate) object_id: Option<Guid>,
    /// User principal name.
    pub(crate) upn: Option<String>,
    /// Application (client) id.
    pub(crate) app_id: Option<Guid>,
    /// Entra tenant of the principal.
    pub(crate) tenant_id: Option<String>,
    /// Account name from the account entity.
    pub(crate) name: Option<String>,
    /// Whether the alert type says the caller is a service principal.
    pub(crate) service_principal: bool,
}

impl Principal {
    /// Whether the alert names the principal at all.
    pub(crate) fn is_identified(&self) -> bool {
        self.object_id.is_some() || self.upn.is_some()
    }

    /// Every id a policy entry may use for it. The application id counts only when no user
    /// is named: a known application used by an unknown user does not make the user known.
    pub(crate) fn ids(&self) -> Vec<&str> {
        let mut ids = Vec::new();
        if let Some(id) = &self.object_id {
            ids.push(id.as_str());
        }
        if let Some(upn) = &self.upn {
            ids.push(upn.as_str());
        }
        if let (None, Some(app)) = (&self.upn, &self.app_id) {
            ids.push(app.as_str());
        }
        ids
    }

    /// What kind of Entra object the principal is, as far as the alert tells.
    pub(crate) fn kind(&self) -> PrincipalKind {
        if self.upn.is_some() {
            PrincipalKind::User
        } else if self.service_principal
            || self
                .app_id
                .as_ref()
                .is_some_and(|app| first_party_app(app.as_str()).is_none())
        {
            PrincipalKind::ServicePrincipal
        } else {
            PrincipalKind::Unresolved
        }
    }

    /// The principal as the contract names it: by object id, else by user principal name.
    pub(crate) fn reference(&self) -> Option<PrincipalRef> {
        let upn = self
            .upn
            .as_deref()
            .and_then(|upn| PersonAddress::parse(upn).ok());
        match (&self.object_id, upn) {
            (Some(object_id), upn) => Some(PrincipalRef::ObjectId {
                object_id: object_id.clone(),
                kind: self.kind(),
                user_principal_name: upn,
            }),
            (None, Some(upn)) => Some(PrincipalRef::UserPrincipalName {
                user_principal_name: upn,
            }),
            (None, None) => None,
        }
    }

    /// A readable label: `alice@contoso.com (objectId 1234…)`.
    pub(crate) fn label(&self) -> String {
        let id = self.object_id.as_ref().map(Guid::as_str);
        match (&self.upn, id, &self.name) {
            (Some(upn), Some(id), _) => format!("{upn} (object id {id})"),
            (Some(upn), None, _) => upn.clone(),
            (None, Some(id), Some(name)) => format!("{name} (object id {id})"),
            (None, Some(id), None) => format!("object id {id}"),
            (None, None, _) => match &self.app_id {
                Some(app) => format!("application {app}"),
                None => "an unidentified caller".to_string(),
            },
        }
    }
}

/// The object id a `compromisedEntity` of the form `Principal:<id>` names.
fn principal_in_compromised_entity(alert: &SecurityAlert) -> Option<Guid> {
    let text = alert.compromised_entity.as_deref()?.trim();
    let (head, id) = text.split_once(':')?;
    head.trim()
        .eq_ignore_ascii_case("principal")
        .then(|| Guid::parse(id).ok())
        .flatten()
}

/// Reads the principal from the given extended-property keys, `compromisedEntity`
/// (`Principal:<id>`) and every account entity (the first that carries each part: an Entra
/// account often follows a local one).
pub(crate) fn principal(
    alert: &SecurityAlert,
    object_keys: &[&str],
    upn_keys: &[&str],
) -> Principal {
    let first = |keys: &[&str]| keys.iter().find_map(|key| alert.extended(key));
    let accounts: Vec<&Entity> = alert
        .entities
        .iter()
        .filter(|entity| matches!(entity, Entity::Account { .. }))
        .collect();
    let entity_object = accounts.iter().find_map(|entity| match entity {
        Entity::Account {
            aad_user_id: Some(id),
            ..
        } => Guid::parse(id).ok(),
        _ => None,
    });
    let entity_upn = accounts
        .iter()
        .find_map(|entity| entity.user_principal_name());
    // The account that gave the object id (else the first) names the tenant and the name.
    let main_account = accounts
        .iter()
        .find(|entity| matches!(entity, Entity::Account { aad_user_id: Some(id), .. } if Guid::parse(id).is_ok()))
        .or(accounts.first());
    let (name, tenant) = match main_account {
        Some(Entity::Account {
            name,
            aad_tenant_id,
            ..
        }) => (name.clone(), aad_tenant_id.clone()),
        _ => (None, None),
    };
    Principal {
        object_id: first(object_keys)
            .and_then(|id| Guid::parse(id).ok())
            .or(entity_object)
            .or_else(|| principal_in_compromised_entity(alert)),
        upn: first(upn_keys)
            .filter(|upn| PersonAddress::parse(upn).is_ok())
            .map(str::to_string)
            .or(entity_upn),
        app_id: alert
            .extended("Application ID")
            .and_then(|id| Guid::parse(id).ok()),
        tenant_id: tenant,
        name,
        service_principal: false,
    }
}

/// IP addresses from the given extended-property keys, then every ip entity, deduplicated.
/// Text that is not an address (`00.00.00.00`) is skipped; the decoder already warned.
pub(crate) fn ips(alert: &SecurityAlert, keys: &[&str]) -> Vec<String> {
    let mut seen: HashSet<std::net::IpAddr> = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    let mut add = |address: &str| {
        let address = address.trim();
        if let Ok(ip) = address.parse::<std::net::IpAddr>() {
            if seen.insert(ip) {
                out.push(address.to_string());
            }
        }
    };
    for key in keys {
        if let Some(value) = alert.extended(key) {
            for part in value.split([',', ';', ' ']) {
                add(part);
            }
        }
    }
    for entity in &alert.entities {
        if let Entity::Ip { address, .. } = entity {
            add(address);
        }
    }
    out
}

/// The addresses as the contract carries them.
pub(crate) fn typed_ips(ips: &[String]) -> Vec<IpAddress> {
    ips.iter()
        .filter_map(|ip| IpAddress::parse(ip).ok())
        .collect()
}

/// Every Azure resource id the alert mentions anywhere, the alert's own first.
pub(crate) fn resource_ids(alert: &SecurityAlert) -> Vec<AzureResourceId> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |id: AzureResourceId| {
        if seen.insert(id.normalized()) {
            out.push(id);
        }
    };
    if let Some(id) = &alert.resource_id {
        add(id.clone());
    }
    for entity in &alert.entities {
        match entity {
            Entity::AzureResource { resource_id } => add(resource_id.clone()),
            Entity::Host {
                azure_id: Some(id), ..
            } => add(id.clone()),
            _ => {}
        }
    }
    for value in alert.extended_properties.values() {
        if !value.contains("/subscriptions/") && !value.contains("/SUBSCRIPTIONS/") {
            continue;
        }
        for token in value
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '[' | ']' | '\''))
        {
            if let Ok(id) = AzureResourceId::parse(token) {
                add(id);
            }
        }
    }
    out
}

/// At most this many distinct vault objects are read from one alert; the rest are counted
/// and reported in a warning (a real alert names tens; 125,000 is an attack on the planner).
pub const MAX_VAULT_OBJECTS_PER_ALERT: usize = 1000;

/// One secret, key or certificate, by its version-less URI (never its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VaultObject {
    /// The version-less URI.
    pub(crate) uri: VaultObjectUri,
    /// The versions the alert names.
    pub(crate) versions: Vec<String>,
    /// The property it came from (`Target`, `Accessed secret 001`, ...).
    pub(crate) source: String,
}

impl VaultObject {
    /// Its kind.
    pub(crate) fn kind(&self) -> VaultObjectKind {
        self.uri.kind()
    }
}

/// The vault objects an alert names, and how many beyond the cap were dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VaultObjects {
    /// Distinct objects, `Target` first, then in property order.
    pub(crate) objects: Vec<VaultObject>,
    /// Distinct objects not kept because of [`MAX_VAULT_OBJECTS_PER_ALERT`] (a lower bound
    /// when URIs repeat past the cap).
    pub(crate) dropped: usize,
}

/// Every distinct vault object the alert names, `Target` first, in property order. Linear in
/// the size of the alert; at most [`MAX_VAULT_OBJECTS_PER_ALERT`] are kept.
pub(crate) fn vault_objects(alert: &SecurityAlert) -> VaultObjects {
    let mut out = VaultObjects::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut dropped: HashSet<String> = HashSet::new();
    let mut add = |text: &str, source: &str, out: &mut VaultObjects| {
        for token in
            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '[' | ']'))
        {
            if !token.starts_with("https://") && !token.starts_with("HTTPS://") {
                continue;
            }
            let Ok(uri) = VaultObjectUri::parse(token) else {
                continue;
            };
            let bare = uri.without_version();
            match index.get(bare.as_str()) {
                Some(&at) => {
                    if let Some(version) = uri.version() {
                        let versions = &mut out.objects[at].versions;
                        if !versions.iter().any(|have| have == version) {
                            versions.push(version.to_string());
                        }
                    }
                }
                None if out.objects.len() < MAX_VAULT_OBJECTS_PER_ALERT => {
                    index.insert(bare.as_str().to_string(), out.objects.len());
                    out.objects.push(VaultObject {
                        versions: uri.version().map(str::to_string).into_iter().collect(),
                        uri: bare,
                        source: source.to_string(),
                    });
                }
                None => {
                    if dropped.insert(bare.as_str().to_string()) {
                        out.dropped += 1;
                    }
                }
            }
        }
    };
    if let Some(target) = alert.extended("Target") {
        add(target, "Target", &mut out);
    }
    for (key, value) in &alert.extended_properties {
        if value.contains("https://") && !key.eq_ignore_ascii_case("Target") {
            add(value, key, &mut out);
        }
    }
    out
}

/// Parses an operation list such as `[SecretGet:3, SecretList:5]` (or `{"SecretGet": 3}`).
pub(crate) fn operation_counts(text: &str) -> Vec<(String, u64)> {
    text.split(',')
        .filter_map(|part| {
            let cleaned: String = part
                .chars()
                .filter(|c| !matches!(c, '[' | ']' | '{' | '}' | '"' | '\''))
                .collect();
            let (name, count) = cleaned.split_once(':')?;
            let name = name.trim();
            let count = count.trim().parse::<u64>().ok()?;
            (!name.is_empty()).then(|| (name.to_string(), count))
        })
        .collect()
}

/// Whether an operation name reads object contents (values, key material, backups).
pub(crate) fn is_read_operation(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["get", "backup", "export", "decrypt", "unwrap", "sign"]
        .iter()
        .any(|verb| lower.ends_with(verb))
        && !lower.starts_with("vault")
}

/// Whether a result signature says the request was refused.
pub(crate) fn is_denied_signature(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    ["forbidden", "unauthorized", "401", "403", "accessdenied"]
        .iter()
        .any(|word| lower.contains(word))
}

/// Splits a list property (`a; b`, `a, b`) into distinct items.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for item in text.split([';', ',', '\n']) {
        let item = item.trim();
        if !item.is_empty() && seen.insert(item) {
            out.push(item.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_lists_parse_in_both_spellings() {
        assert_eq!(
            operation_counts("[SecretGet:3, SecretList:5]"),
            vec![("SecretGet".to_string(), 3), ("SecretList".to_string(), 5)]
        );
        assert_eq!(
            operation_counts("{\"SecretGet\": 3}"),
            vec![("SecretGet".to_string(), 3)]
        );
        assert!(is_read_operation("SecretGet"));
        assert!(is_read_operation("KeyBackup"));
        assert!(!is_read_operation("SecretList"));
        assert!(!is_read_operation("VaultGet"));
        assert!(is_denied_signature("Forbidden"));
        assert!(!is_denied_signature("OK"));
    }
}
