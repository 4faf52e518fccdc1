//! `enable_key_vault_firewall`: deny by default, merged with the vault's current rules, the
//! untrusted addresses dropped, and the responder's own egress kept while rotations on the
//! vault are pending.

use async_trait::async_trait;
use ipnet::IpNet;
use serde_json::{json, Value};

use super::{found, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::{IpAddress, KeyVaultId};
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview, Undone,
    Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnableKeyVaultFirewall;

struct Inputs<'a> {
    vault: &'a KeyVaultId,
    allow_ip_ranges: Vec<IpNet>,
    allow_virtual_networks: Vec<String>,
    block_addresses: &'a [IpAddress],
}

fn inputs(task: &Task) -> Result<Inputs<'_>, ExecutorError> {
    match &task.parameters {
        Parameters::EnableKeyVaultFirewall {
            vault,
            allow_ip_ranges,
            allow_virtual_networks,
            block_addresses,
            ..
        } => Ok(Inputs {
            vault,
            allow_ip_ranges: allow_ip_ranges.iter().map(|r| r.0).collect(),
            allow_virtual_networks: allow_virtual_networks
                .iter()
                .map(|id| id.as_str().to_string())
                .collect(),
            block_addresses,
        }),
        _ => Err(wrong_parameters("enable_key_vault_firewall")),
    }
}

/// What undo restores and apply compares: the vault's network ACLs and public access.
fn network_state(vault: &Value) -> Value {
    json!({
        "networkAcls": vault.pointer("/properties/networkAcls").cloned().unwrap_or(Value::Null),
        "publicNetworkAccess": vault.pointer("/properties/publicNetworkAccess").cloned().unwrap_or(Value::Null),
    })
}

fn parse_rule(value: &str) -> Option<IpNet> {
    value
        .parse::<IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(IpNet::from))
        .ok()
        .map(|net| net.trunc())
}

/// The responder's own egress, and whether it stays allowed (rotations on the vault pending)
/// or goes (the rotations are done: an earlier containment's egress rules are removed).
struct Egress<'a> {
    ranges: &'a [IpNet],
    subnets: &'a [String],
    keep: bool,
}

/// The networkAcls after containment, from the current ones.
fn contained_acls(current: &Value, inputs: &Inputs<'_>, egress: &Egress<'_>) -> Value {
    let trusted = |net: &IpNet| inputs.allow_ip_ranges.iter().any(|r| r.trunc() == *net);
    let own = |net: &IpNet| egress.ranges.iter().any(|r| r.trunc() == *net);
    let dropped_egress = |net: &IpNet| !egress.keep && own(net) && !trusted(net);
    let blocked = |net: &IpNet| inputs.block_addresses.iter().any(|a| net.contains(&a.0));
    let mut ip_rules: Vec<Value> = Vec::new();
    let mut seen: Vec<IpNet> = Vec::new();
    let existing = current
        .get("ipRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for rule in existing {
        let Some(net) = rule
            .get("value")
            .and_then(Value::as_str)
            .and_then(parse_rule)
        else {
            ip_rules.push(rule);
            continue;
        };
        if blocked(&net) || seen.contains(&net) || dropped_egress(&net) {
            continue;
        }
        seen.push(net);
        ip_rules.push(rule);
    }
    let kept: &[IpNet] = if egress.keep { egress.ranges } else { &[] };
    for net in inputs.allow_ip_ranges.iter().chain(kept) {
        let net = net.trunc();
        if blocked(&net) || seen.contains(&net) {
            continue;
        }
        seen.push(net);
        ip_rules.push(json!({"value": net.to_string()}));
    }
    let own_subnet = |id: &str| {
        !egress.keep
            && egress.subnets.iter().any(|s| s.eq_ignore_ascii_case(id))
            && !inputs
                .allow_virtual_networks
                .iter()
                .any(|s| s.eq_ignore_ascii_case(id))
    };
    let mut vnet_rules: Vec<Value> = current
        .get("virtualNetworkRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|rule| {
            !rule
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(own_subnet)
        })
        .collect();
    let kept_subnets: &[String] = if egress.keep { egress.subnets } else { &[] };
    for subnet in inputs.allow_virtual_networks.iter().chain(kept_subnets) {
        let present = vnet_rules.iter().any(|rule| {
            rule.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.eq_ignore_ascii_case(subnet))
        });
        if !present {
            vnet_rules.push(json!({"id": subnet, "ignoreMissingVnetServiceEndpoint": false}));
        }
    }
    json!({
        "defaultAction": "Deny",
        "bypass": "AzureServices",
        "ipRules": ip_rules,
        "virtualNetworkRules": vnet_rules,
    })
}

/// ACLs compared as sets (ARM may reorder rules and spell addresses `/32` or not).
fn acl_signature(acls: &Value) -> Value {
    let mut ips: Vec<String> = acls
        .get("ipRules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r.get("value").and_then(Value::as_str))
                .map(|v| {
                    parse_rule(v)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    let mut subnets: Vec<String> = acls
        .get("virtualNetworkRules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r.get("id").and_then(Value::as_str))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    subnets.sort();
    json!({
        "defaultAction": acls.get("defaultAction").cloned().unwrap_or(json!("Allow")),
        "bypass": acls.get("bypass").cloned().unwrap_or(json!("AzureServices")),
        "ipRules": ips,
        "virtualNetworkRules": subnets,
    })
}

async fn read_vault(
    ctx: &ExecutorContext,
    vault: &KeyVaultId,
) -> Result<Option<Value>, ExecutorError> {
    Ok(ctx
        .clients
        .arm
        .get_optional(vault.as_str(), api_version::KEY_VAULT)
        .await?)
}

#[async_trait]
impl Executor for EnableKeyVaultFirewall {
    fn action(&self) -> Action {
        Action::EnableKeyVaultFirewall
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let inputs = inputs(task)?;
        let vault = found(read_vault(ctx, inputs.vault).await?, inputs.vault.as_str())?;
        let prior = network_state(&vault);
        let pending = ctx
            .rotation_pending
            .contains(&inputs.vault.resource_id().normalized());
        let egress_subnets: Vec<String> = ctx
            .settings
            .egress_subnets
            .iter()
            .map(|id| id.as_str().to_string())
            .collect();
        let egress = Egress {
            ranges: &ctx.settings.egress_ip_ranges,
            subnets: &egress_subnets,
            keep: pending,
        };
        let current_acls = prior["networkAcls"].clone();
        let acls = contained_acls(&current_acls, &inputs, &egress);
        // Disabled public access is stricter than any firewall: keep it.
        let public_access = if prior["publicNetworkAccess"] == json!("Disabled") {
            "Disabled"
        } else {
            "Enabled"
        };
        let already = acl_signature(&current_acls) == acl_signature(&acls)
            && prior["publicNetworkAccess"] == json!(public_access);
        let requests = if already {
            Vec::new()
        } else {
            vec![PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                ctx.clients
                    .arm
                    .url(inputs.vault.as_str(), api_version::KEY_VAULT),
                Some(
                    json!({"properties": {"networkAcls": acls, "publicNetworkAccess": public_access}}),
                ),
            )]
        };
        let kept = if pending && !(egress.ranges.is_empty() && egress.subnets.is_empty()) {
            " (the responder's own egress stays allowed until the vault's rotations are done)"
        } else {
            ""
        };
        let summary = if already {
            format!(
                "the firewall of {} already denies by default with these rules",
                inputs.vault.as_str()
            )
        } else {
            format!(
                "would PATCH {} networkAcls: defaultAction Deny, bypass AzureServices, {} IP rule(s), {} subnet rule(s){kept}",
                inputs.vault.as_str(),
                acls["ipRules"].as_array().map_or(0, Vec::len),
                acls["virtualNetworkRules"].as_array().map_or(0, Vec::len),
            )
        };
        Ok(Preview {
            change: Change::new(summary, requests),
            prior_state: prior,
            leases: vec![inputs.vault.resource_id().normalized()],
            subscriptions: subscriptions_of(inputs.vault.resource_id()),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let inputs = inputs(task)?;
        let vault = found(read_vault(ctx, inputs.vault).await?, inputs.vault.as_str())?;
        let now = network_state(&vault);
        if acl_signature(&now["networkAcls"]) != acl_signature(&preview.prior_state["networkAcls"])
            || now["publicNetworkAccess"] != preview.prior_state["publicNetworkAccess"]
        {
            return Err(ExecutorError::conflict(
                inputs.vault.as_str(),
                "the vault's network rules changed since the preview",
            ));
        }
        ctx.send_all(&preview.change.requests).await
    }

    async fn verify(
        &self,
        task: &Task,
        preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let inputs = inputs(task)?;
        let vault = found(read_vault(ctx, inputs.vault).await?, inputs.vault.as_str())?;
        let now = network_state(&vault);
        let expected = match preview
            .change
            .requests
            .first()
            .and_then(|r| r.body.as_ref())
        {
            Some(body) => json!({
                "networkAcls": body.pointer("/properties/networkAcls").cloned().unwrap_or(Value::Null),
                "publicNetworkAccess": body.pointer("/properties/publicNetworkAccess").cloned().unwrap_or(Value::Null),
            }),
            None => preview.prior_state.clone(),
        };
        Ok(Verification::default()
            .check(
                "networkAcls",
                acl_signature(&expected["networkAcls"]),
                acl_signature(&now["networkAcls"]),
            )
            .check(
                "publicNetworkAccess",
                expected["publicNetworkAccess"].clone(),
                now["publicNetworkAccess"].clone(),
            ))
    }

    async fn undo(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let inputs = inputs(task)?;
        if applied.sent.is_empty() {
            return Ok(Undone::default());
        }
        let prior = &preview.prior_state;
        let acls = if prior["networkAcls"].is_null() {
            json!({"defaultAction": "Allow", "bypass": "AzureServices", "ipRules": [], "virtualNetworkRules": []})
        } else {
            prior["networkAcls"].clone()
        };
        let mut properties = json!({"networkAcls": acls});
        if !prior["publicNetworkAccess"].is_null() {
            properties["publicNetworkAccess"] = prior["publicNetworkAccess"].clone();
        }
        let request = PlannedRequest::new(
            Api::Arm,
            WriteMethod::Patch,
            ctx.clients
                .arm
                .url(inputs.vault.as_str(), api_version::KEY_VAULT),
            Some(json!({"properties": properties})),
        );
        let (sent, _) = ctx.send(&request).await?;
        Ok(Undone {
            sent: vec![sent],
            not_restored: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::IpRange;

    #[test]
    fn rules_are_merged_deduplicated_and_the_attacker_dropped() {
        let vault = KeyVaultId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
        )
        .unwrap();
        let blocked = [IpAddress::parse("203.0.113.9").unwrap()];
        let inputs = Inputs {
            vault: &vault,
            allow_ip_ranges: vec![
                "198.51.100.0/24".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            allow_virtual_networks: vec![],
            block_addresses: &blocked,
        };
        let current = json!({"defaultAction": "Allow", "ipRules": [{"value": "10.0.0.0/8"}, {"value": "203.0.113.0/24"}], "virtualNetworkRules": []});
        let egress: Vec<IpNet> = vec!["192.0.2.1/32".parse().unwrap()];
        let keep = Egress {
            ranges: &egress,
            subnets: &[],
            keep: true,
        };
        let acls = contained_acls(&current, &inputs, &keep);
        assert_eq!(acls["defaultAction"], "Deny");
        assert_eq!(
            acls["ipRules"],
            json!([{"value": "10.0.0.0/8"}, {"value": "198.51.100.0/24"}, {"value": "192.0.2.1/32"}])
        );
        let _ = IpRange("10.0.0.0/8".parse().unwrap());
        // Once the rotations are done, the responder's own egress rule goes.
        let closing = Egress {
            ranges: &egress,
            subnets: &[],
            keep: false,
        };
        let closed = contained_acls(&acls, &inputs, &closing);
        assert_eq!(
            closed["ipRules"],
            json!([{"value": "10.0.0.0/8"}, {"value": "198.51.100.0/24"}])
        );
    }
}
