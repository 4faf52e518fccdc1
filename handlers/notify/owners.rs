//! Who owns a resource: its owner tag (`RESPONDER_OWNER_TAG`, default `owner`) read through
//! ARM on the resource, then its resource group, then its subscription
//! (`GET {scope}/providers/Microsoft.Resources/tags/default`, any resource type); else the
//! policy's static owners; else the security team.

use serde_json::Value;

use crate::azure::arm::api_version;
use crate::azure::{ArmClient, AzureError};
use crate::domain::AzureResourceId;
use crate::policy::Policy;

/// Where the owners came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// The tag on this scope (the resource, its group or its subscription).
    Tag(String),
    /// The policy's `owners` map.
    Policy,
    /// No owner known: the security team.
    SecurityTeam,
}

/// The owners found and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owners {
    /// Addresses.
    pub people: Vec<String>,
    /// Where they came from.
    pub source: OwnerSource,
}

/// The scopes to read, most specific first: the resource, its resource group, its subscription.
pub fn scopes(resource: &str) -> Vec<String> {
    let trimmed = resource.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    // ["", "subscriptions", s, "resourceGroups", g, "providers", …]
    let mut out = Vec::new();
    if parts.len() < 3 || !parts[1].eq_ignore_ascii_case("subscriptions") {
        return out;
    }
    let subscription = parts[..3].join("/");
    let group = (parts.len() >= 5 && parts[3].eq_ignore_ascii_case("resourceGroups"))
        .then(|| parts[..5].join("/"));
    if parts.len() > 5 || (group.is_none() && parts.len() > 3) {
        out.push(trimmed.to_string());
    }
    if let Some(group) = group {
        if !out.contains(&group) {
            out.push(group);
        }
    }
    if !out.contains(&subscription) {
        out.push(subscription);
    }
    out
}

/// The addresses in a tag value: separated by `,`, `;` or spaces.
pub fn addresses(value: &str) -> Vec<String> {
    value
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|s| s.contains('@'))
        .map(str::to_string)
        .collect()
}

fn tag_value<'a>(body: &'a Value, tag: &str) -> Option<&'a str> {
    body.get("properties")?
        .get("tags")?
        .as_object()?
        .iter()
        // ARM tag names are case-insensitive.
        .find(|(name, _)| name.eq_ignore_ascii_case(tag))
        .and_then(|(_, value)| value.as_str())
}

/// Reads the owner tag on each scope in turn; the first scope whose tag names someone wins.
/// A scope that does not exist (404) is skipped; any other failure is returned.
pub async fn from_tags(
    arm: &ArmClient,
    resource: &str,
    tag: &str,
) -> Result<Option<Owners>, AzureError> {
    for scope in scopes(resource) {
        let path = format!("{scope}/providers/Microsoft.Resources/tags/default");
        let Some(body) = arm.get_optional(&path, api_version::RESOURCES).await? else {
            continue;
        };
        if let Some(value) = tag_value(&body, tag) {
            let people = addresses(value);
            if !people.is_empty() {
                return Ok(Some(Owners {
                    people,
                    source: OwnerSource::Tag(scope),
                }));
            }
        }
    }
    Ok(None)
}

/// The owners of `resource`: its tags (when ARM is configured), then the policy, then the
/// security team; `tag` is the task's `owner_lookup.tag`. A failed tag read is logged and falls through to the policy, so a
/// notification still goes out.
pub async fn resolve(
    arm: Option<&ArmClient>,
    policy: &Policy,
    resource: &str,
    tag: &str,
) -> Owners {
    if let Some(arm) = arm {
        match from_tags(arm, resource, tag).await {
            Ok(Some(owners)) => return owners,
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(resource, error = %err, "owner tag lookup failed; using the policy's owners")
            }
        }
    }
    let id = AzureResourceId::parse(resource).ok();
    let people = policy.owners_of(id.as_ref());
    if !people.is_empty() {
        return Owners {
            people,
            source: OwnerSource::Policy,
        };
    }
    Owners {
        people: policy.notify_recipients.clone(),
        source: OwnerSource::SecurityTeam,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_go_from_the_resource_to_its_subscription() {
        let vault = "/subscriptions/s1/resourceGroups/rg-a/providers/Microsoft.KeyVault/vaults/kv";
        assert_eq!(
            scopes(vault),
            [
                vault,
                "/subscriptions/s1/resourceGroups/rg-a",
                "/subscriptions/s1"
            ]
        );
        assert_eq!(
            scopes("/subscriptions/s1/resourceGroups/rg-a"),
            ["/subscriptions/s1/resourceGroups/rg-a", "/subscriptions/s1"]
        );
        assert_eq!(scopes("/subscriptions/s1"), ["/subscriptions/s1"]);
        assert!(scopes("kv-contoso").is_empty());
    }

    #[test]
    fn tag_values_name_addresses_and_tag_names_ignore_case() {
        assert_eq!(
            addresses("payments@contoso.com; ops@contoso.com, team"),
            ["payments@contoso.com", "ops@contoso.com"]
        );
        let body = serde_json::json!({"properties": {"tags": {"Owner": "a@contoso.com"}}});
        assert_eq!(tag_value(&body, "owner"), Some("a@contoso.com"));
        assert_eq!(tag_value(&body, "team"), None);
    }
}
