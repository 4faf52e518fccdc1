//! Decodes the `data` of an alert event, in the REST (`properties`, camelCase) or the flat
//! PascalCase shape of workflow automation and continuous export, into a [`SecurityAlert`].
//!
//! Keys match case-insensitively and unknown fields are ignored. Fields that routing needs
//! (the alert type) must be right or the event is rejected with the field named; fields
//! that only enrich the plan degrade with a warning that names them, so a slightly wrong
//! alert is still acted on rather than lost.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::json::{describe, get, get_any, get_str, to_text};
use super::tree::{JsonObject, JsonTree};
use crate::domain::{AlertStatus, AzureResourceId, Entity, Guid, SecurityAlert, Severity};

/// A decoded alert and what was wrong but survivable in it.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAlert {
    /// The alert.
    pub alert: SecurityAlert,
    /// Fields that had the wrong type or form, each naming the field.
    pub warnings: Vec<String>,
}

/// Facts from the envelope that help when the alert itself lacks them.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvelopeHints<'a> {
    pub(crate) subject: Option<&'a str>,
    pub(crate) topic: Option<&'a str>,
}

/// Decodes an alert object. `Err` names the field that makes it undecodable.
pub fn decode_alert(data: &Value) -> Result<DecodedAlert, String> {
    decode_alert_with(&JsonTree::from_value(data), &EnvelopeHints::default())
}

pub(crate) fn decode_alert_with(
    data: &JsonTree<'_>,
    hints: &EnvelopeHints<'_>,
) -> Result<DecodedAlert, String> {
    let JsonTree::Object(root) = data else {
        return Err(format!(
            "data: expected an alert object, got {}",
            describe(data)
        ));
    };
    // REST shape: { id, name, type, properties: {...} }; flat shape: the fields at the top.
    let (props, prefix) = match get(root, "properties") {
        Some(JsonTree::Object(properties))
            if get(properties, "alertType").is_some() || get(properties, "alertName").is_some() =>
        {
            (properties, "data.properties.")
        }
        _ => (root, "data."),
    };
    let mut warnings = Vec::new();

    let alert_type = match get(props, "alertType") {
        Some(JsonTree::String(text)) if !text.trim().is_empty() => text.trim().to_string(),
        Some(other) => {
            return Err(format!(
                "{prefix}alertType: expected the alert type name, got {}",
                describe(other)
            ))
        }
        None => {
            return Err(match get_str(props, "alertName") {
                Some(name) => format!(
                "{prefix}alertType is missing: the alert has only the legacy alertName {name:?}; \
                     send the current Defender alert shape, which names the type in alertType"
            ),
                None => format!("{prefix}alertType is missing: not a Defender security alert"),
            })
        }
    };

    let system_alert_id = get_str(props, "systemAlertId")
        .or_else(|| get_str(root, "name"))
        .map(str::to_string)
        .or_else(|| {
            hints
                .subject
                .and_then(|subject| subject.strip_prefix("/alerts/"))
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            format!(
                "{prefix}systemAlertId is missing: without it redeliveries cannot be recognised"
            )
        })?;

    let severity = match get(props, "severity") {
        None => Severity::Unknown,
        Some(JsonTree::String(text)) => Severity::parse(text).unwrap_or_else(|| {
            warnings.push(format!(
                "{prefix}severity: unknown severity {text:?}; treated as Unknown"
            ));
            Severity::Unknown
        }),
        Some(other) => {
            warnings.push(format!(
                "{prefix}severity: expected Informational, Low, Medium or High, got {}; treated as Unknown",
                describe(other)
            ));
            Severity::Unknown
        }
    };

    let status = match get(props, "status") {
        None => AlertStatus::Active,
        Some(JsonTree::String(text)) => AlertStatus::parse(text).ok_or_else(|| {
            format!("{prefix}status: unknown status {text:?} (expected Active, New, InProgress, Resolved or Dismissed)")
        })?,
        Some(other) => {
            return Err(format!(
                "{prefix}status: expected a status name, got {}",
                describe(other)
            ))
        }
    };

    let intent = match get(props, "intent") {
        Some(JsonTree::String(text)) => split_list(text),
        Some(JsonTree::Array(items)) => items
            .iter()
            .filter_map(JsonTree::as_str)
            .map(str::to_string)
            .collect(),
        Some(other) => {
            warnings.push(format!(
                "{prefix}intent: expected text, got {}; ignored",
                describe(other)
            ));
            Vec::new()
        }
        None => Vec::new(),
    };

    let mut extended_properties = decode_extended_properties(props, prefix, &mut warnings);
    let mut entities = decode_entities(props, prefix, &mut warnings);
    scrub_extended_placeholders(&mut extended_properties, prefix, &mut warnings);
    scrub_entity_placeholders(&mut entities, prefix, &mut warnings);
    let compromised_entity = get_str(props, "compromisedEntity")
        .map(str::to_string)
        .filter(|entity| {
            let id = entity.rsplit(':').next().unwrap_or(entity);
            if Guid::is_nil(id) {
                warnings.push(format!(
                    "{prefix}compromisedEntity: {entity:?} is the nil GUID, Defender's placeholder; treated as absent"
                ));
                false
            } else {
                true
            }
        });
    let resource_identifiers = match get(props, "resourceIdentifiers") {
        Some(JsonTree::Array(items)) => items.iter().filter_map(JsonTree::as_object).collect(),
        Some(other) => {
            warnings.push(format!(
                "{prefix}resourceIdentifiers: expected an array, got {}; ignored",
                describe(other)
            ));
            Vec::new()
        }
        None => Vec::new(),
    };

    let resource_id = find_resource_id(
        props,
        root,
        &resource_identifiers,
        &entities,
        &extended_properties,
        hints,
    );
    let tenant_ids = find_tenant_ids(&resource_identifiers, &entities);

    let alert = SecurityAlert {
        alert_type,
        system_alert_id,
        display_name: get_str(props, "alertDisplayName").map(str::to_string),
        description: get_str(props, "description").map(str::to_string),
        severity,
        status,
        intent,
        resource_id,
        compromised_entity,
        tenant_ids,
        entities,
        extended_properties,
        remediation_steps: decode_text_list(props, "remediationSteps", prefix, &mut warnings),
        alert_uri: get_str(props, "alertUri").map(str::to_string),
        start_time: decode_time(props, "startTimeUtc", prefix, &mut warnings),
        end_time: decode_time(props, "endTimeUtc", prefix, &mut warnings),
    };
    Ok(DecodedAlert { alert, warnings })
}

/// Whether an extended property holds IP addresses, by its name (`Client IP address`,
/// `Attacker IP Address`, `IP`).
fn is_ip_property(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "ip"
        || lower.contains("ip address")
        || lower.ends_with(" ip")
        || lower.ends_with("ipaddress")
}

/// Defender's sample alerts (and some real ones) write the nil GUID where there is no id and
/// `00.00.00.00` where there is no address: both are absent, never a target. Each removal is
/// a warning naming the field and the value.
fn scrub_extended_placeholders(
    extended: &mut BTreeMap<String, String>,
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    extended.retain(|key, value| {
        let trimmed = value.trim();
        if Guid::is_nil(trimmed) {
            warnings.push(format!(
                "{prefix}extendedProperties.{key}: {trimmed:?} is the nil GUID, Defender's placeholder for no id; treated as absent"
            ));
            return false;
        }
        if is_ip_property(key) && !trimmed.is_empty() {
            let parts: Vec<&str> = trimmed
                .split([',', ';', ' '])
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .collect();
            let invalid: Vec<&str> = parts
                .iter()
                .copied()
                .filter(|part| part.parse::<std::net::IpAddr>().is_err())
                .collect();
            if !invalid.is_empty() {
                warnings.push(format!(
                    "{prefix}extendedProperties.{key}: {} is not an IP address; treated as absent",
                    invalid.iter().map(|part| format!("{part:?}")).collect::<Vec<_>>().join(", ")
                ));
                let valid: Vec<&str> = parts
                    .iter()
                    .copied()
                    .filter(|part| part.parse::<std::net::IpAddr>().is_ok())
                    .collect();
                if valid.is_empty() {
                    return false;
                }
                *value = valid.join(", ");
            }
        }
        true
    });
}

fn scrub_entity_placeholders(entities: &mut Vec<Entity>, prefix: &str, warnings: &mut Vec<String>) {
    let not_an_ip = |address: &str| address.trim().parse::<std::net::IpAddr>().is_err();
    entities.retain_mut(|entity| match entity {
        Entity::Ip { address, .. } if not_an_ip(address) => {
            warnings.push(format!(
                "{prefix}entities: ip entity address {address:?} is not an IP address; the entity is ignored"
            ));
            false
        }
        Entity::Account {
            name,
            aad_user_id,
            aad_tenant_id,
            ..
        } => {
            let who = name.as_deref().unwrap_or("(unnamed)").to_string();
            if aad_user_id.as_deref().is_some_and(Guid::is_nil) {
                warnings.push(format!(
                    "{prefix}entities: account {who:?} aadUserId {:?} is the nil GUID; treated as absent",
                    aad_user_id.as_deref().unwrap_or_default()
                ));
                *aad_user_id = None;
            }
            if aad_tenant_id.as_deref().is_some_and(Guid::is_nil) {
                warnings.push(format!(
                    "{prefix}entities: account {who:?} aadTenantId {:?} is the nil GUID; treated as absent",
                    aad_tenant_id.as_deref().unwrap_or_default()
                ));
                *aad_tenant_id = None;
            }
            true
        }
        Entity::Dns {
            domain_name,
            ip_addresses,
            host_ip_address,
        } => {
            let before = ip_addresses.len();
            ip_addresses.retain(|address| !not_an_ip(address));
            if ip_addresses.len() != before {
                warnings.push(format!(
                    "{prefix}entities: dns entity {domain_name:?} lists {} answer(s) that are not IP addresses; ignored",
                    before - ip_addresses.len()
                ));
            }
            if host_ip_address.as_deref().is_some_and(not_an_ip) {
                warnings.push(format!(
                    "{prefix}entities: dns entity {domain_name:?} hostIpAddress {:?} is not an IP address; treated as absent",
                    host_ip_address.as_deref().unwrap_or_default()
                ));
                *host_ip_address = None;
            }
            true
        }
        _ => true,
    });
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_string)
        .collect()
}

fn decode_time(
    props: &JsonObject<'_>,
    key: &str,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    match get(props, key) {
        Some(JsonTree::String(text)) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Some(JsonTree::Number(number)) => {
            warnings.push(format!(
                "{prefix}{key}: expected an RFC 3339 time, got number {number}; kept as sent"
            ));
            Some(number.to_string())
        }
        Some(other) => {
            warnings.push(format!(
                "{prefix}{key}: expected a time, got {}; ignored",
                describe(other)
            ));
            None
        }
        None => None,
    }
}

fn decode_text_list(
    props: &JsonObject<'_>,
    key: &str,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    match get(props, key) {
        Some(JsonTree::Array(items)) => items.iter().map(to_text).collect(),
        // The activity-log shape JSON-encodes lists into strings.
        Some(JsonTree::String(text)) => match serde_json::from_str::<Vec<String>>(text) {
            Ok(items) => items,
            Err(_) => vec![text.to_string()],
        },
        Some(other) => {
            warnings.push(format!(
                "{prefix}{key}: expected a list, got {}; ignored",
                describe(other)
            ));
            Vec::new()
        }
        None => Vec::new(),
    }
}

fn decode_extended_properties(
    props: &JsonObject<'_>,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match get(props, "extendedProperties") {
        Some(JsonTree::Object(map)) => {
            for (key, value) in map.iter() {
                match value {
                    JsonTree::Null => {}
                    JsonTree::String(text) => {
                        out.insert(key.to_string(), text.to_string());
                    }
                    other => {
                        warnings.push(format!(
                            "{prefix}extendedProperties.{key}: expected text, got {}; kept as JSON text",
                            describe(other)
                        ));
                        out.insert(key.to_string(), other.to_string());
                    }
                }
            }
        }
        Some(other) => warnings.push(format!(
            "{prefix}extendedProperties: expected an object, got {}; ignored",
            describe(other)
        )),
        None => {}
    }
    out
}

fn decode_entities(
    props: &JsonObject<'_>,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Vec<Entity> {
    let raw: Vec<&JsonObject<'_>> = match get(props, "entities") {
        Some(JsonTree::Array(items)) => items.iter().filter_map(JsonTree::as_object).collect(),
        Some(JsonTree::Object(single)) => {
            warnings.push(format!(
                "{prefix}entities: expected an array, got a single object; read as a list of one"
            ));
            vec![single]
        }
        Some(other) => {
            warnings.push(format!(
                "{prefix}entities: expected an array, got {}; ignored",
                describe(other)
            ));
            Vec::new()
        }
        None => Vec::new(),
    };
    // Entities reference each other with {"$ref": "n"} pointing at another's "$id".
    let mut by_id: HashMap<&str, &JsonObject<'_>> = HashMap::new();
    for object in &raw {
        collect_ids(object, &mut by_id);
    }
    let mut entities = Vec::new();
    for object in raw {
        let resolved = match get_str(object, "$ref") {
            Some(reference) => match by_id.get(reference) {
                Some(target) => *target,
                None => {
                    warnings.push(format!(
                        "{prefix}entities: $ref {reference:?} names no entity; ignored"
                    ));
                    continue;
                }
            },
            None => object,
        };
        if let Some(entity) = decode_entity(resolved) {
            if !entities.contains(&entity) {
                entities.push(entity);
            }
        }
    }
    entities
}

fn collect_ids<'o, 'j>(
    object: &'o JsonObject<'j>,
    by_id: &mut HashMap<&'o str, &'o JsonObject<'j>>,
) {
    if let Some(id) = get_str(object, "$id") {
        by_id.insert(id, object);
    }
    // Nested entities (an ip inside a host, say) may be referenced from elsewhere.
    for value in object.values() {
        match value {
            JsonTree::Object(inner) if get_str(inner, "$id").is_some() => collect_ids(inner, by_id),
            JsonTree::Array(items) => {
                for inner in items
                    .iter()
                    .filter_map(JsonTree::as_object)
                    .filter(|inner| get_str(inner, "$id").is_some())
                {
                    collect_ids(inner, by_id);
                }
            }
            _ => {}
        }
    }
}

fn decode_entity(object: &JsonObject<'_>) -> Option<Entity> {
    let kind = get_str(object, "type")?.to_ascii_lowercase();
    let text = |key: &str| get_str(object, key).map(str::to_string);
    let entity = match kind.as_str() {
        "ip" => Entity::Ip {
            address: text("address")?,
            threat_names: match get(object, "threatIntelligence") {
                Some(JsonTree::Array(items)) => items
                    .iter()
                    .filter_map(JsonTree::as_object)
                    .filter_map(|item| {
                        get_str(item, "threatName").or_else(|| get_str(item, "threatType"))
                    })
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            },
        },
        "account" => Entity::Account {
            name: text("name"),
            upn_suffix: text("upnSuffix"),
            aad_user_id: text("aadUserId").or_else(|| text("objectGuid")),
            aad_tenant_id: text("aadTenantId"),
        },
        "azure-resource" => Entity::AzureResource {
            resource_id: AzureResourceId::parse(get_str(object, "resourceId")?).ok()?,
        },
        "host" => Entity::Host {
            host_name: text("hostName"),
            azure_id: get_str(object, "azureID").and_then(|id| AzureResourceId::parse(id).ok()),
        },
        "dns" => Entity::Dns {
            domain_name: text("domainName")?,
            // Defender's schema misspells it `ipAdresses`; accept the correct spelling too.
            ip_addresses: match get_any(object, &["ipAdresses", "ipAddresses"]) {
                Some(JsonTree::Array(items)) => items
                    .iter()
                    .filter_map(|item| match item {
                        JsonTree::String(address) => Some(address.to_string()),
                        JsonTree::Object(ip) => get_str(ip, "address").map(str::to_string),
                        _ => None,
                    })
                    .collect(),
                Some(JsonTree::String(list)) => split_list(list),
                _ => Vec::new(),
            },
            host_ip_address: match get(object, "hostIpAddress") {
                Some(JsonTree::String(address)) => Some(address.to_string()),
                Some(JsonTree::Object(ip)) => get_str(ip, "address").map(str::to_string),
                _ => None,
            },
        },
        _ => Entity::Other { kind },
    };
    Some(entity)
}

fn find_resource_id(
    props: &JsonObject<'_>,
    root: &JsonObject<'_>,
    resource_identifiers: &[&JsonObject<'_>],
    entities: &[Entity],
    extended: &BTreeMap<String, String>,
    hints: &EnvelopeHints<'_>,
) -> Option<AzureResourceId> {
    let from_identifiers = resource_identifiers.iter().find_map(|identifier| {
        get_str(identifier, "azureResourceId").and_then(|id| AzureResourceId::parse(id).ok())
    });
    let from_flat =
        get_str(props, "azureResourceId").and_then(|id| AzureResourceId::parse(id).ok());
    let from_extended = extended
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("EffectiveAzureResourceId"))
        .and_then(|(_, value)| AzureResourceId::parse(value).ok());
    let from_entities = entities.iter().find_map(|entity| match entity {
        Entity::AzureResource { resource_id } => Some(resource_id.clone()),
        Entity::Host {
            azure_id: Some(id), ..
        } => Some(id.clone()),
        _ => None,
    });
    // The REST id names the alert itself under Microsoft.Security; its scope is the subscription
    // or resource group the alert belongs to, a last resort before the envelope.
    let from_alert_scope = get_str(root, "id").and_then(|id| {
        let lower = id.to_ascii_lowercase();
        let cut = lower.find("/providers/microsoft.security/")?;
        AzureResourceId::parse(&id[..cut]).ok()
    });
    // Event Grid subjects name the resource for system topics; the topic of our own custom
    // topic names the topic, which is never the affected resource.
    let from_envelope = hints
        .subject
        .and_then(|id| AzureResourceId::parse(id).ok())
        .or_else(|| {
            hints
                .topic
                .and_then(|id| AzureResourceId::parse(id).ok())
                .filter(|id| {
                    !id.as_str()
                        .to_ascii_lowercase()
                        .contains("/microsoft.eventgrid/")
                })
        });
    from_identifiers
        .or(from_flat)
        .or(from_extended)
        .or(from_entities)
        .or(from_alert_scope)
        .or(from_envelope)
}

fn find_tenant_ids(resource_identifiers: &[&JsonObject<'_>], entities: &[Entity]) -> Vec<String> {
    let mut tenants: Vec<String> = Vec::new();
    let mut add = |tenant: &str| {
        let tenant = tenant.trim().to_ascii_lowercase();
        if !tenant.is_empty() && !tenants.contains(&tenant) {
            tenants.push(tenant);
        }
    };
    for identifier in resource_identifiers {
        for key in ["aadTenantId", "azureResourceTenantId"] {
            if let Some(tenant) = get_str(identifier, key) {
                add(tenant);
            }
        }
    }
    for entity in entities {
        if let Entity::Account {
            aad_tenant_id: Some(tenant),
            ..
        } = entity
        {
            add(tenant);
        }
    }
    tenants
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nil_guids_and_invalid_addresses_are_absent_with_a_warning_naming_field_and_value() {
        let decoded = decode_alert(&json!({"properties": {
            "alertType": "KV_UserAnomaly",
            "systemAlertId": "s",
            "compromisedEntity": "Principal:00000000-0000-0000-0000-000000000000",
            "extendedProperties": {
                "Attacker Object ID": "00000000-0000-0000-0000-000000000000",
                "Client IP address": "00.00.00.00, 203.0.113.9",
                "Attacker IP Address": "00.00.00.00"
            },
            "entities": [
                {"type": "account", "name": "x", "aadUserId": "{00000000-0000-0000-0000-000000000000}"},
                {"type": "ip", "address": "00.00.00.00"}
            ]
        }}))
        .expect("decodes");
        let alert = &decoded.alert;
        assert!(alert.extended("Attacker Object ID").is_none());
        assert!(alert.extended("Attacker IP Address").is_none());
        assert_eq!(alert.extended("Client IP address"), Some("203.0.113.9"));
        assert!(alert.compromised_entity.is_none());
        assert!(!alert
            .entities
            .iter()
            .any(|e| matches!(e, Entity::Ip { .. })));
        assert!(alert.entities.iter().any(|e| matches!(
            e,
            Entity::Account {
                aad_user_id: None,
                ..
            }
        )));
        for expected in [
            "data.properties.extendedProperties.Attacker Object ID: \"00000000-0000-0000-0000-000000000000\"",
            "data.properties.extendedProperties.Client IP address: \"00.00.00.00\"",
            "data.properties.extendedProperties.Attacker IP Address: \"00.00.00.00\"",
            "data.properties.compromisedEntity: \"Principal:00000000",
            "account \"x\" aadUserId",
            "ip entity address \"00.00.00.00\"",
        ] {
            assert!(
                decoded.warnings.iter().any(|w| w.contains(expected)),
                "no warning {expected}: {:#?}",
                decoded.warnings
            );
        }
    }

    #[test]
    fn rest_and_flat_shapes_decode_to_the_same_fields() {
        let rest = json!({"id": "/subscriptions/s/providers/Microsoft.Security/locations/w/alerts/a1",
            "name": "a1", "properties": {"alertType": "KV_UserAnomaly", "systemAlertId": "a1",
            "severity": "Medium", "status": "Active",
            "resourceIdentifiers": [{"type": "AzureResource", "azureResourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv"},
                                    {"type": "AAD", "aadTenantId": "T1"}]}});
        let flat = json!({"AlertType": "KV_UserAnomaly", "SystemAlertId": "a1", "Severity": "Medium",
            "Status": "New", "AzureResourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv",
            "ResourceIdentifiers": [{"Type": "AAD", "AadTenantId": "t1"}]});
        let rest = decode_alert(&rest).unwrap().alert;
        let flat = decode_alert(&flat).unwrap().alert;
        assert_eq!(rest.alert_type, flat.alert_type);
        assert_eq!(rest.system_alert_id, flat.system_alert_id);
        assert_eq!(rest.status, AlertStatus::Active);
        assert_eq!(flat.status, AlertStatus::Active);
        assert_eq!(rest.resource_id, flat.resource_id);
        assert_eq!(rest.tenant_ids, vec!["t1"]);
        assert_eq!(flat.tenant_ids, vec!["t1"]);
    }

    #[test]
    fn a_missing_alert_type_is_an_error_naming_the_field() {
        let err = decode_alert(&json!({"properties": {"systemAlertId": "x"}})).unwrap_err();
        assert!(err.contains("alertType is missing"), "{err}");
        let err = decode_alert(&json!({"AlertType": 7, "SystemAlertId": "x"})).unwrap_err();
        assert!(
            err.contains("data.alertType: expected the alert type name, got number 7"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_in_enrichment_fields_degrade_with_warnings() {
        let decoded = decode_alert(&json!({"properties": {"alertType": "KV_AppAnomaly",
            "systemAlertId": "x", "severity": 2, "startTimeUtc": 1747206720,
            "entities": {"$id": "2", "type": "ip", "address": "203.0.113.7"},
            "extendedProperties": {"Suspicious Operations": {"SecretGet": 3}}}}))
        .unwrap();
        assert_eq!(decoded.alert.severity, Severity::Unknown);
        assert_eq!(decoded.alert.entities.len(), 1);
        assert_eq!(
            decoded.alert.extended("Suspicious Operations"),
            Some("{\"SecretGet\":3}")
        );
        let joined = decoded.warnings.join("\n");
        assert!(
            joined.contains("data.properties.severity: expected"),
            "{joined}"
        );
        assert!(
            joined.contains("data.properties.entities: expected an array"),
            "{joined}"
        );
        assert!(
            joined.contains("extendedProperties.Suspicious Operations"),
            "{joined}"
        );
        assert!(joined.contains("startTimeUtc"), "{joined}");
    }

    #[test]
    fn entity_references_resolve_and_dns_answers_read_the_misspelled_field() {
        let decoded = decode_alert(&json!({"AlertType": "AzureDNS_DarkWeb", "SystemAlertId": "d",
            "Entities": [{"$id": "1", "Type": "dns", "DomainName": "x.onion.test", "IpAdresses": ["192.0.2.1"]},
                         {"$ref": "1"}, {"$id": "3", "Type": "process"}]}))
        .unwrap();
        assert_eq!(decoded.alert.entities.len(), 2);
        assert_eq!(
            decoded.alert.entities[0],
            Entity::Dns {
                domain_name: "x.onion.test".into(),
                ip_addresses: vec!["192.0.2.1".into()],
                host_ip_address: None
            }
        );
        assert_eq!(
            decoded.alert.entities[1],
            Entity::Other {
                kind: "process".into()
            }
        );
    }

    #[test]
    fn an_unknown_status_is_rejected_with_its_value() {
        let err = decode_alert(
            &json!({"AlertType": "KV_UserAnomaly", "SystemAlertId": "x", "Status": "Closed"}),
        )
        .unwrap_err();
        assert!(
            err.contains("data.status: unknown status \"Closed\""),
            "{err}"
        );
    }
}
