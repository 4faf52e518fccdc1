//! Fact extraction: what the playbook steps need, gathered from every place Defender puts it.
//!
//! Both alert shapes decode to the same [`SecurityAlert`], so the sources here are: the
//! entities (account, ip, azure-resource, host, dns), `extendedProperties` (looked up
//! case-insensitively, plus a scan of every value for resource ids and vault object URIs),
//! the alert's resource id and `compromisedEntity`.

use std::collections::BTreeSet;

use crate::domain::{AzureResourceId, Entity, SecurityAlert};

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
    pub(crate) object_id: Option<String>,
    /// User principal name.
    pub(crate) upn: Option<String>,
    /// Application (client) id.
    pub(crate) app_id: Option<String>,
    /// Entra tenant of the principal.
    pub(crate) tenant_id: Option<String>,
    /// Account name from the account entity.
    pub(crate) name: Option<String>,
}

impl Principal {
    /// Whether the alert names the principal at all.
    pub(crate) fn is_identified(&self) -> bool {
        self.object_id.is_some() || self.upn.is_some()
    }

    /// Every id a policy entry may use for it. The application id counts only when no user
    /// is named: a known application used by an unknown user does not make the user known.
    pub(crate) fn ids(&self) -> Vec<&str> {
        let app = if self.upn.is_none() {
            &self.app_id
        } else {
            &None
        };
        [&self.object_id, &self.upn, app]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// The best id to act on (object id first: role assignments and access policies use it).
    pub(crate) fn target(&self) -> Option<String> {
        self.object_id.clone().or_else(|| self.upn.clone())
    }

    /// A readable label: `alice@contoso.com (objectId 1234…)`.
    pub(crate) fn label(&self) -> String {
        match (&self.upn, &self.object_id, &self.name) {
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

/// Reads the principal from the given extended-property keys and the account entities.
pub(crate) fn principal(
    alert: &SecurityAlert,
    object_keys: &[&str],
    upn_keys: &[&str],
) -> Principal {
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| alert.extended(key))
            .map(str::to_string)
    };
    let account = alert.entities.iter().find_map(|entity| match entity {
        Entity::Account {
            name,
            aad_user_id,
            aad_tenant_id,
            ..
        } => Some((
            name.clone(),
            aad_user_id.clone(),
            aad_tenant_id.clone(),
            entity.user_principal_name(),
        )),
        _ => None,
    });
    let (name, entity_object, tenant, entity_upn) = account.unwrap_or_default();
    Principal {
        object_id: first(object_keys).or(entity_object),
        upn: first(upn_keys).or(entity_upn),
        app_id: alert.extended("Application ID").map(str::to_string),
        tenant_id: tenant,
        name,
    }
}

/// IP addresses from the given extended-property keys, then every ip entity, deduplicated.
pub(crate) fn ips(alert: &SecurityAlert, keys: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |address: &str| {
        let address = address.trim();
        if address.parse::<std::net::IpAddr>().is_ok() && !out.iter().any(|a| a == address) {
            out.push(address.to_string());
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

/// Every Azure resource id the alert mentions anywhere, the alert's own first.
pub(crate) fn resource_ids(alert: &SecurityAlert) -> Vec<AzureResourceId> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut add = |id: AzureResourceId| {
        if seen.insert(id.as_str().to_ascii_lowercase()) {
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
            if let Some(id) = AzureResourceId::parse(token) {
                add(id);
            }
        }
    }
    out
}

/// What kind of object in a vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ObjectKind {
    /// A secret.
    Secret,
    /// A key.
    Key,
    /// A certificate.
    Certificate,
}

impl ObjectKind {
    /// The plural used in vault URIs.
    pub(crate) fn collection(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Key => "keys",
            ObjectKind::Certificate => "certificates",
        }
    }
}

/// One secret, key or certificate, by its version-less URI (never its value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VaultObject {
    /// `https://<vault>.vault.azure.net/<secrets|keys|certificates>/<name>`.
    pub(crate) uri: String,
    /// Its kind.
    pub(crate) kind: ObjectKind,
    /// The property it came from (`Target`, `Accessed secret 001`, ...).
    pub(crate) source: String,
}

/// Parses a vault object URI (any cloud's vault domain); the version is dropped.
pub(crate) fn parse_vault_object(text: &str) -> Option<(String, ObjectKind)> {
    let rest = text.trim().strip_prefix("https://")?;
    let mut parts = rest.split('/');
    let host = parts.next()?.to_ascii_lowercase();
    if !host.contains(".vault.") && !host.contains(".managedhsm.") {
        return None;
    }
    let kind = match parts.next()?.to_ascii_lowercase().as_str() {
        "secrets" => ObjectKind::Secret,
        "keys" => ObjectKind::Key,
        "certificates" => ObjectKind::Certificate,
        _ => return None,
    };
    let name = parts.next().filter(|name| !name.is_empty())?;
    Some((format!("https://{host}/{}/{name}", kind.collection()), kind))
}

/// Every distinct vault object the alert names, `Target` first, in property order.
pub(crate) fn vault_objects(alert: &SecurityAlert) -> Vec<VaultObject> {
    let mut out: Vec<VaultObject> = Vec::new();
    let mut add = |text: &str, source: &str| {
        for token in
            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '[' | ']'))
        {
            if let Some((uri, kind)) = parse_vault_object(token) {
                if !out.iter().any(|o| o.uri == uri) {
                    out.push(VaultObject {
                        uri,
                        kind,
                        source: source.to_string(),
                    });
                }
            }
        }
    };
    if let Some(target) = alert.extended("Target") {
        add(target, "Target");
    }
    for (key, value) in &alert.extended_properties {
        if value.contains("https://") && !key.eq_ignore_ascii_case("Target") {
            add(value, key);
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
    let mut out: Vec<String> = Vec::new();
    for item in text.split([';', ',', '\n']) {
        let item = item.trim();
        if !item.is_empty() && !out.iter().any(|have| have == item) {
            out.push(item.to_string());
        }
    }
    out
}

/// The vault's own name from an object URI host (`kv-hr.vault.azure.net` → `kv-hr`).
pub(crate) fn vault_name_of(uri: &str) -> Option<&str> {
    uri.strip_prefix("https://")?.split('.').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_object_uris_lose_their_version_and_keep_their_kind() {
        assert_eq!(
            parse_vault_object("https://kv-hr.vault.azure.net/secrets/app-1/43f78ef7cca9"),
            Some((
                "https://kv-hr.vault.azure.net/secrets/app-1".to_string(),
                ObjectKind::Secret
            ))
        );
        assert_eq!(
            parse_vault_object("https://KV.vault.azure.cn/keys/signing").map(|(_, k)| k),
            Some(ObjectKind::Key)
        );
        assert!(parse_vault_object("https://example.com/secrets/x").is_none());
        assert!(parse_vault_object("https://kv.vault.azure.net/secrets/").is_none());
    }

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
