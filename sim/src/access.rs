//! Key Vault data-plane authorization: the vault's firewall, then its access policies or (RBAC vaults) the caller's role assignments.

use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::faults::glob_match;
use crate::http::{Reply, Req};
use crate::state::State;

/// What a data-plane request needs: the access-policy permission and the RBAC data action.
struct Needed {
    collection: &'static str,
    permission: &'static str,
    data_action: &'static str,
}

fn needed(method: &Method, parts: &[&str]) -> Option<Needed> {
    let first = parts.first()?.to_ascii_lowercase();
    let last = parts
        .last()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let need = |collection, permission, data_action| {
        Some(Needed {
            collection,
            permission,
            data_action,
        })
    };
    match first.as_str() {
        "secrets" => match (method, parts.len()) {
            (&Method::GET, 1) => need(
                "secrets",
                "list",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ),
            (&Method::GET, 3) if last == "versions" => need(
                "secrets",
                "list",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ),
            (&Method::GET, _) => need(
                "secrets",
                "get",
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            ),
            (&Method::PUT, _) => need(
                "secrets",
                "set",
                "Microsoft.KeyVault/vaults/secrets/setSecret/action",
            ),
            (&Method::PATCH, _) => need(
                "secrets",
                "set",
                "Microsoft.KeyVault/vaults/secrets/update/action",
            ),
            (&Method::DELETE, _) => need(
                "secrets",
                "delete",
                "Microsoft.KeyVault/vaults/secrets/delete",
            ),
            _ => None,
        },
        "deletedsecrets" => match *method {
            Method::POST => need(
                "secrets",
                "recover",
                "Microsoft.KeyVault/vaults/deletedSecrets/recover/action",
            ),
            Method::DELETE => need(
                "secrets",
                "purge",
                "Microsoft.KeyVault/vaults/deletedSecrets/delete",
            ),
            _ => need(
                "secrets",
                "list",
                "Microsoft.KeyVault/vaults/deletedSecrets/read",
            ),
        },
        "keys" => match (method, last.as_str()) {
            (&Method::POST, "create") => need(
                "keys",
                "create",
                "Microsoft.KeyVault/vaults/keys/create/action",
            ),
            (&Method::POST, "rotate") => need(
                "keys",
                "rotate",
                "Microsoft.KeyVault/vaults/keys/rotate/action",
            ),
            (&Method::GET, "rotationpolicy") => need(
                "keys",
                "getrotationpolicy",
                "Microsoft.KeyVault/vaults/keys/rotationpolicy/read",
            ),
            (&Method::PUT, "rotationpolicy") => need(
                "keys",
                "setrotationpolicy",
                "Microsoft.KeyVault/vaults/keys/rotationpolicy/write",
            ),
            (&Method::GET, _) if parts.len() == 1 || last == "versions" => {
                need("keys", "list", "Microsoft.KeyVault/vaults/keys/read")
            }
            (&Method::GET, _) => need("keys", "get", "Microsoft.KeyVault/vaults/keys/read"),
            (&Method::PATCH, _) => need(
                "keys",
                "update",
                "Microsoft.KeyVault/vaults/keys/update/action",
            ),
            _ => None,
        },
        "certificates" => match (method, last.as_str()) {
            (&Method::POST, _) => need(
                "certificates",
                "create",
                "Microsoft.KeyVault/vaults/certificates/create/action",
            ),
            (&Method::GET, _) if parts.len() == 1 || last == "versions" => need(
                "certificates",
                "list",
                "Microsoft.KeyVault/vaults/certificates/read",
            ),
            (&Method::GET, _) => need(
                "certificates",
                "get",
                "Microsoft.KeyVault/vaults/certificates/read",
            ),
            (&Method::PATCH, _) => need(
                "certificates",
                "update",
                "Microsoft.KeyVault/vaults/certificates/update/action",
            ),
            _ => None,
        },
        _ => None,
    }
}

fn ipv4_in(address: IpAddr, rule: &str) -> bool {
    let (network, bits) = rule.split_once('/').unwrap_or((rule, "32"));
    let (Ok(network), Ok(bits), IpAddr::V4(address)) = (
        network.parse::<std::net::Ipv4Addr>(),
        bits.parse::<u32>(),
        address,
    ) else {
        return false;
    };
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits.min(32))
    };
    (u32::from(address) & mask) == (u32::from(network) & mask)
}

fn forbidden(message: String, inner: &str) -> Reply {
    Reply::json(
        StatusCode::FORBIDDEN,
        json!({"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}}),
    )
}

/// The permissions (`actions`/`notActions` or `dataActions`/`notDataActions`) the caller's role
/// assignments at or above `scope` grant, as (allowed, denied) lower-case patterns.
fn granted(
    state: &State,
    caller: &str,
    scope: &str,
    data: bool,
) -> Vec<(Vec<String>, Vec<String>)> {
    let (allow, deny) = if data {
        ("dataActions", "notDataActions")
    } else {
        ("actions", "notActions")
    };
    state
        .arm
        .values()
        .filter(|value| {
            value
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|kind| {
                    kind.eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments")
                })
        })
        .filter(|assignment| {
            assignment
                .pointer("/properties/principalId")
                .and_then(Value::as_str)
                .is_some_and(|p| p.eq_ignore_ascii_case(caller))
        })
        .filter(|assignment| {
            crate::arm::scope_covers(
                assignment
                    .pointer("/properties/scope")
                    .and_then(Value::as_str)
                    .unwrap_or("/"),
                scope,
            )
        })
        .filter_map(|assignment| {
            let role = assignment
                .pointer("/properties/roleDefinitionId")
                .and_then(Value::as_str)?;
            let guid = role.rsplit('/').next()?.to_ascii_lowercase();
            state.arm.iter().find(|(id, value)| {
                value
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| {
                        kind.eq_ignore_ascii_case("Microsoft.Authorization/roleDefinitions")
                    })
                    && id.ends_with(&format!("/{guid}"))
            })
        })
        .filter_map(|(_, definition)| {
            definition
                .pointer("/properties/permissions")
                .and_then(Value::as_array)
        })
        .flatten()
        .map(|permission| {
            let patterns = |key: &str| -> Vec<String> {
                permission
                    .get(key)
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_ascii_lowercase)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            (patterns(allow), patterns(deny))
        })
        .collect()
}

fn allows(grants: &[(Vec<String>, Vec<String>)], action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    grants.iter().any(|(allowed, denied)| {
        allowed.iter().any(|p| glob_match(p, &action))
            && !denied.iter().any(|p| glob_match(p, &action))
    })
}

/// The ARM action a request performs (`Microsoft.KeyVault/vaults/write`, `…/restart/action`) and
/// the scope it acts on.
pub(crate) fn arm_action(method: &Method, parts: &[&str], providers_at: usize) -> (String, String) {
    let kind = crate::state::resource_type(&format!("/{}", parts.join("/")));
    let rest = parts.len() - providers_at - 2;
    let id = format!("/{}", parts.join("/"));
    if parts
        .get(providers_at + 1)
        .is_some_and(|ns| ns.eq_ignore_ascii_case("Microsoft.ResourceGraph"))
    {
        return ("Microsoft.ResourceGraph/resources/read".into(), "/".into());
    }
    if rest % 2 == 1 && *method == Method::POST {
        let (parent_kind, verb) = kind.rsplit_once('/').unwrap_or((&kind, ""));
        let parent = format!("/{}", parts[..parts.len() - 1].join("/"));
        return (format!("{parent_kind}/{verb}/action"), parent);
    }
    let verb = match *method {
        Method::GET | Method::HEAD => "read",
        Method::DELETE => "delete",
        Method::POST => "action",
        _ => "write",
    };
    (format!("{kind}/{verb}"), id)
}

/// Refuses an ARM request whose caller holds no role granting its action at its scope
/// (only when the seed sets `enforceArmAccess`).
pub(crate) fn authorize_arm(
    state: &State,
    req: &Req,
    parts: &[&str],
    providers_at: usize,
) -> Result<(), Reply> {
    if !state.enforce_arm_access {
        return Ok(());
    }
    let caller = req.caller.clone().unwrap_or_default();
    let (action, scope) = arm_action(&req.method, parts, providers_at);
    if allows(&granted(state, &caller, &scope, false), &action) {
        return Ok(());
    }
    Err(Reply::error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        &format!("The client '{caller}' with object id '{caller}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."),
    ))
}

/// Refuses the request as Key Vault would, or lets it through.
pub(crate) fn authorize(
    state: &State,
    vault: &str,
    req: &Req,
    parts: &[&str],
) -> Result<(), Reply> {
    if !state.enforce_vault_access {
        return Ok(());
    }
    let Some(resource) = state.arm.values().find(|value| {
        value
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.eq_ignore_ascii_case("Microsoft.KeyVault/vaults"))
            && value
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| name.eq_ignore_ascii_case(vault))
    }) else {
        return Ok(());
    };
    let vault_id = resource.get("id").and_then(Value::as_str).unwrap_or("");
    let location = resource
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or("westeurope");
    let caller = req.caller.clone().unwrap_or_default();
    let client_id = state
        .identity(&caller)
        .map(|identity| identity.client_id)
        .unwrap_or_else(|| caller.clone());
    let who = format!(
        "appid={client_id};oid={caller};iss=https://sts.windows.net/{}/",
        state.tenant_id
    );
    let properties = resource.get("properties").cloned().unwrap_or(Value::Null);
    if properties
        .get("publicNetworkAccess")
        .and_then(Value::as_str)
        .is_some_and(|access| access.eq_ignore_ascii_case("Disabled"))
    {
        return Err(forbidden(
            "Public network access is disabled and request is not from a trusted service nor via an approved private link.".into(),
            "ForbiddenByConnection",
        ));
    }
    let acls = properties
        .get("networkAcls")
        .cloned()
        .unwrap_or(Value::Null);
    if acls
        .get("defaultAction")
        .and_then(Value::as_str)
        .is_some_and(|action| action.eq_ignore_ascii_case("Deny"))
    {
        let allowed = acls
            .get("ipRules")
            .and_then(Value::as_array)
            .is_some_and(|rules| {
                rules
                    .iter()
                    .filter_map(|rule| rule.get("value").and_then(Value::as_str))
                    .any(|rule| ipv4_in(req.peer, rule))
            });
        if !allowed {
            return Err(forbidden(
                format!("Client address is not authorized and caller is not a trusted service.\r\nClient address: {}\r\nCaller: {who}\r\nVault: {vault};location={location}", req.peer),
                "ForbiddenByFirewall",
            ));
        }
    }
    let Some(need) = needed(&req.method, parts) else {
        return Ok(());
    };
    let rbac = properties
        .get("enableRbacAuthorization")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !rbac {
        let granted = properties
            .get("accessPolicies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|entry| {
                entry
                    .get("objectId")
                    .and_then(Value::as_str)
                    .is_some_and(|oid| oid.eq_ignore_ascii_case(&caller))
            })
            .filter_map(|entry| {
                entry
                    .pointer(&format!("/permissions/{}", need.collection))
                    .and_then(Value::as_array)
            })
            .flatten()
            .filter_map(Value::as_str)
            .any(|permission| {
                permission.eq_ignore_ascii_case(need.permission)
                    || permission.eq_ignore_ascii_case("all")
            });
        if granted {
            return Ok(());
        }
        return Err(forbidden(
            format!(
                "The user, group or application '{who}' does not have {} {} permission on key vault '{vault};location={location}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                need.collection, need.permission
            ),
            "AccessDenied",
        ));
    }
    let allowed = allows(&granted(state, &caller, vault_id, true), need.data_action);
    if allowed {
        return Ok(());
    }
    Err(forbidden(
        format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: {who}\r\nAction: '{}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {vault};location={location}\r\n",
            need.data_action,
            vault_id.to_ascii_lowercase()
        ),
        "ForbiddenByRbac",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules_match_addresses_and_ranges() {
        let local = IpAddr::from([127, 0, 0, 1]);
        assert!(ipv4_in(local, "127.0.0.1"));
        assert!(ipv4_in(local, "127.0.0.0/8"));
        assert!(!ipv4_in(local, "198.51.100.0/24"));
        assert!(ipv4_in(local, "0.0.0.0/0"));
        assert!(!ipv4_in(local, "not-an-ip"));
    }

    #[test]
    fn each_operation_names_its_permission() {
        let get = needed(&Method::GET, &["secrets", "a", ""]).map(|n| n.permission);
        assert_eq!(get, Some("get"));
        assert_eq!(
            needed(&Method::GET, &["secrets", "a", "versions"]).map(|n| n.permission),
            Some("list")
        );
        assert_eq!(
            needed(&Method::POST, &["keys", "k", "rotate"]).map(|n| n.permission),
            Some("rotate")
        );
    }
}

#[cfg(test)]
mod arm_tests {
    use super::*;

    fn action(method: Method, path: &str) -> (String, String) {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let at = parts
            .iter()
            .rposition(|s| s.eq_ignore_ascii_case("providers"))
            .unwrap_or(0);
        arm_action(&method, &parts, at)
    }

    #[test]
    fn requests_map_to_arm_actions_and_scopes() {
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        assert_eq!(
            action(Method::PATCH, vault),
            ("Microsoft.KeyVault/vaults/write".into(), vault.into())
        );
        assert_eq!(
            action(Method::GET, vault).0,
            "Microsoft.KeyVault/vaults/read"
        );
        assert_eq!(
            action(Method::PUT, &format!("{vault}/accessPolicies/remove")).0,
            "Microsoft.KeyVault/vaults/accessPolicies/write"
        );
        let vm =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
        assert_eq!(
            action(Method::POST, &format!("{vm}/restart")),
            (
                "Microsoft.Compute/virtualMachines/restart/action".into(),
                vm.into()
            )
        );
        let assignment = format!("{vault}/providers/Microsoft.Authorization/roleAssignments/g");
        assert_eq!(
            action(Method::DELETE, &assignment).0,
            "Microsoft.Authorization/roleAssignments/delete"
        );
        assert_eq!(
            action(
                Method::GET,
                &format!("{vault}/providers/Microsoft.Authorization/roleAssignments")
            )
            .0,
            "Microsoft.Authorization/roleAssignments/read"
        );
    }

    #[test]
    fn not_actions_carve_out_of_actions() {
        let contributor = vec![(
            vec!["*".to_string()],
            vec!["microsoft.authorization/*/delete".to_string()],
        )];
        assert!(allows(&contributor, "Microsoft.KeyVault/vaults/write"));
        assert!(!allows(
            &contributor,
            "Microsoft.Authorization/roleAssignments/delete"
        ));
        assert!(!allows(&[], "Microsoft.KeyVault/vaults/read"));
    }
}
