//! Azure Resource Manager: api-version checks, generic GET/PUT/PATCH/DELETE/list by resource id, the provider-specific operations the executors call, and LRO polling.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::faults::Fault;
use crate::http::{is, segments, Answer, Reply, Req};
use crate::state::{public_view, resource_type, Effect, Operation, Outcome, Sim, State};
use crate::time::now_rfc3339;

/// The api-versions each provider namespace accepts (the ones the executors use, and the
/// defaults of the current Azure SDKs).
fn supported_versions(namespace: &str) -> &'static [&'static str] {
    match namespace.to_ascii_lowercase().as_str() {
        "microsoft.keyvault" => &[
            "2019-09-01",
            "2021-10-01",
            "2022-07-01",
            "2023-02-01",
            "2023-07-01",
            "2024-11-01",
            "2025-05-01",
            "2026-02-01",
            "2026-05-15",
        ],
        "microsoft.network" => &[
            "2023-09-01",
            "2023-11-01",
            "2024-01-01",
            "2024-03-01",
            "2024-05-01",
            "2024-07-01",
            "2024-10-01",
            "2025-01-01",
            "2025-03-01",
            "2025-05-01",
            "2026-03-01",
        ],
        "microsoft.compute" => &[
            "2023-09-01",
            "2024-03-01",
            "2024-03-02",
            "2024-07-01",
            "2024-11-01",
            "2025-01-02",
            "2025-04-01",
            "2026-03-02",
            "2026-03-03",
            "2026-04-01",
        ],
        "microsoft.storage" => &[
            "2023-01-01",
            "2023-05-01",
            "2024-01-01",
            "2025-01-01",
            "2025-06-01",
            "2026-09-01",
        ],
        "microsoft.automation" => &[
            "2015-10-31",
            "2019-06-01",
            "2022-08-08",
            "2023-11-01",
            "2024-10-23",
        ],
        "microsoft.authorization" => &[
            "2015-07-01",
            "2018-01-01-preview",
            "2020-10-01",
            "2020-10-01-preview",
            "2021-12-01-preview",
            "2022-04-01",
            "2022-04-01-preview",
            "2024-09-01-preview",
        ],
        "microsoft.security" => &["2019-01-01", "2020-01-01", "2021-01-01", "2022-01-01"],
        "microsoft.resources" => &[
            "2019-10-01",
            "2020-06-01",
            "2021-01-01",
            "2021-04-01",
            "2022-09-01",
            "2022-12-01",
            "2024-03-01",
            "2024-07-01",
            "2024-11-01",
            "2025-01-01",
            "2025-04-01",
        ],
        "microsoft.resourcegraph" => &["2019-04-01", "2021-03-01", "2022-10-01", "2024-04-01"],
        _ => &[],
    }
}

/// Resource types whose writes are long-running (`201/202` + `Azure-AsyncOperation`).
fn is_long_running_put(kind: &str) -> bool {
    let kind = kind.to_ascii_lowercase();
    kind.starts_with("microsoft.network/")
        || kind == "microsoft.compute/snapshots"
        || kind == "microsoft.compute/disks"
        || kind == "microsoft.compute/virtualmachines"
        || kind == "microsoft.compute/virtualmachines/extensions"
        || kind == "microsoft.compute/virtualmachines/runcommands"
}

/// Checks `api-version` against the provider's list, with ARM's three error shapes.
fn check_api_version(req: &Req, namespace: &str, kind: &str, location: &str) -> Result<(), Reply> {
    let Some(version) = req.query("api-version") else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let supported = supported_versions(namespace);
    if supported.contains(&version) {
        return Ok(());
    }
    let list = supported.join(", ");
    let well_formed = version.len() >= 10
        && version.as_bytes()[..10].iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are '{list}'."
            ),
        ));
    }
    Err(Reply::error(
        StatusCode::BAD_REQUEST,
        "NoRegisteredProviderFound",
        &format!(
            "No registered resource provider found for location '{location}' and API version '{version}' for type '{}'. The supported api-versions are '{list}'. The supported locations are 'eastus, westus, westeurope, northeurope, centralus, uksouth'.",
            kind.split_once('/').map(|(_, t)| t).unwrap_or(kind)
        ),
    ))
}

/// Serves one ARM request.
pub(crate) fn handle(sim: &Sim, req: &Req) -> Answer {
    let parts = segments(&req.path);
    let mut state = sim.lock();
    // LRO polling: /subscriptions/{s}/providers/{ns}/locations/{l}/operations|operationResults/{id}
    if parts.len() == 8
        && is(parts[0], "subscriptions")
        && is(parts[2], "providers")
        && is(parts[4], "locations")
        && (is(parts[6], "operations") || is(parts[6], "operationResults"))
        && !is(parts[3], "Microsoft.Security")
    {
        return poll(&mut state, req, parts[7], is(parts[6], "operationResults"));
    }
    let Some(at) = parts.iter().rposition(|s| is(s, "providers")) else {
        return scope_only(&state, req, &parts);
    };
    if at + 1 >= parts.len() {
        return Err(not_found_path(req));
    }
    let namespace = parts[at + 1];
    let rest = &parts[at + 2..];
    let scope = format!("/{}", parts[..at].join("/"));
    let kind = resource_type(&req.path);
    let location = location_of(&state, &scope);
    check_api_version(req, namespace, &kind, &location)?;
    check_scope(&state, &parts[..at])?;
    crate::access::authorize_arm(&state, req, &parts, at)?;

    if is(namespace, "Microsoft.ResourceGraph") && rest.len() == 1 && is(rest[0], "resources") {
        return resource_graph(&state, req);
    }
    if is(namespace, "Microsoft.Resources") && rest.len() == 2 && is(rest[0], "tags") {
        return tags(&mut state, req, &scope);
    }
    if is(namespace, "Microsoft.Security")
        && rest.len() == 1
        && is(rest[0], "alerts")
        && req.method == Method::GET
    {
        return Ok(list_where(&state, |id, value| {
            id.starts_with(&scope.to_ascii_lowercase())
                && type_is(value, "Microsoft.Security/locations/alerts")
        }));
    }
    if is(namespace, "Microsoft.Authorization") {
        if let Some(answer) = authorization(&mut state, req, &scope, rest) {
            return answer;
        }
    }
    let id = format!("/{}", parts.join("/"));
    if rest.len().is_multiple_of(2) {
        if is(namespace, "Microsoft.KeyVault") && rest.len() == 4 && is(rest[2], "accessPolicies") {
            return access_policies(&mut state, req, &id, rest[3]);
        }
        if is(namespace, "Microsoft.Automation")
            && rest.len() == 6
            && is(rest[2], "runbooks")
            && is(rest[4], "draft")
            && is(rest[5], "content")
        {
            // (odd-looking but even: runbooks/{r}/draft/content)
            return runbook_draft_content(&mut state, req, &id);
        }
        if req.method == Method::POST
            && rest.len() >= 4
            && is(rest[rest.len() - 2], "agentRegistrationInformation")
        {
            let account = format!("/{}", parts[..parts.len() - 2].join("/"));
            return action(&mut state, req, &account, rest[rest.len() - 1], &location);
        }
        return match req.method {
            Method::GET => get(&state, &id),
            Method::PUT => put(&mut state, req, &id, &kind, &location),
            Method::PATCH => patch(&mut state, req, &id, &kind, &location),
            Method::DELETE => delete(&mut state, req, &id, &kind, &location),
            _ => Err(method_not_allowed(req)),
        };
    }
    let last = rest[rest.len() - 1];
    let parent = format!("/{}", parts[..parts.len() - 1].join("/"));
    match req.method {
        Method::GET if is(last, "content") => runbook_content(&state, &parent),
        Method::GET if is(last, "draft") => Err(not_found_path(req)),
        Method::GET if rest.len() == 1 && at == 2 && is(parts[0], "subscriptions") => {
            // `/subscriptions/{s}/providers/{ns}/{type}`: every resource of the type in the subscription.
            let prefix = format!("/subscriptions/{}/", parts[1].to_ascii_lowercase());
            Ok(list_where(&state, |key, value| {
                key.starts_with(&prefix) && type_is(value, &kind)
            }))
        }
        Method::GET => {
            let prefix = format!("{}/", id.to_ascii_lowercase());
            Ok(list_where(&state, |key, _| {
                key.strip_prefix(&prefix)
                    .is_some_and(|tail| !tail.contains('/'))
            }))
        }
        Method::POST => action(&mut state, req, &parent, last, &location),
        _ => Err(method_not_allowed(req)),
    }
}

fn method_not_allowed(req: &Req) -> Reply {
    Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "HttpMethodNotAllowed",
        &format!(
            "The requested resource does not support http method '{}'.",
            req.method
        ),
    )
}

fn not_found_path(req: &Req) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "NoRegisteredProviderFound",
        &format!(
            "The resource path '{}' is not served by any registered resource provider.",
            req.path
        ),
    )
}

fn type_is(value: &Value, kind: &str) -> bool {
    value
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|got| got.eq_ignore_ascii_case(kind))
}

fn list_where(state: &State, keep: impl Fn(&str, &Value) -> bool) -> Reply {
    let items: Vec<Value> = state
        .arm
        .iter()
        .filter(|(id, value)| keep(id, value))
        .map(|(_, value)| rendered(state, value))
        .collect();
    Reply::ok(json!({"value": items}))
}

/// A resource as GET returns it: private fields dropped, derived fields computed.
fn rendered(state: &State, value: &Value) -> Value {
    let mut view = public_view(value);
    if type_is(value, "Microsoft.Network/networkSecurityGroups") {
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let nics: Vec<Value> = state
            .arm
            .values()
            .filter(|nic| type_is(nic, "Microsoft.Network/networkInterfaces"))
            .filter(|nic| {
                nic.pointer("/properties/networkSecurityGroup/id")
                    .and_then(Value::as_str)
                    .is_some_and(|nsg| nsg.eq_ignore_ascii_case(&id))
            })
            .map(|nic| json!({"id": nic["id"]}))
            .collect();
        if let Some(properties) = view.get_mut("properties").and_then(Value::as_object_mut) {
            if nics.is_empty() {
                properties.remove("networkInterfaces");
            } else {
                properties.insert("networkInterfaces".into(), Value::Array(nics));
            }
        }
    }
    view
}

fn scope_only(state: &State, req: &Req, parts: &[&str]) -> Answer {
    if req.method != Method::GET {
        return Err(method_not_allowed(req));
    }
    let version_namespace = "Microsoft.Resources";
    match parts {
        [s, _] if is(s, "subscriptions") => {
            check_api_version(
                req,
                version_namespace,
                "Microsoft.Resources/subscriptions",
                "global",
            )?;
            check_scope(state, parts)?;
            get(state, &req.path)
        }
        [s, _, g, _] if is(s, "subscriptions") && is(g, "resourceGroups") => {
            check_api_version(
                req,
                version_namespace,
                "Microsoft.Resources/resourceGroups",
                "global",
            )?;
            check_scope(state, parts)?;
            get(state, &req.path)
        }
        _ => Err(not_found_path(req)),
    }
}

/// 404 `SubscriptionNotFound` / `ResourceGroupNotFound` for a scope that does not exist.
fn check_scope(state: &State, scope: &[&str]) -> Result<(), Reply> {
    if scope.len() >= 2 && is(scope[0], "subscriptions") {
        let id = format!("/subscriptions/{}", scope[1]).to_ascii_lowercase();
        if !state.arm.contains_key(&id) {
            return Err(Reply::error(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                &format!("The subscription '{}' could not be found.", scope[1]),
            ));
        }
        if scope.len() >= 4 && is(scope[2], "resourceGroups") {
            let group = format!("{id}/resourcegroups/{}", scope[3].to_ascii_lowercase());
            if !state.arm.contains_key(&group) {
                return Err(Reply::error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{}' could not be found.", scope[3]),
                ));
            }
        }
    }
    Ok(())
}

fn location_of(state: &State, scope: &str) -> String {
    let parts = segments(scope);
    if parts.len() >= 4 {
        let group = format!("/{}", parts[..4].join("/")).to_ascii_lowercase();
        if let Some(location) = state
            .arm
            .get(&group)
            .and_then(|g| g.get("location"))
            .and_then(Value::as_str)
        {
            return location.to_string();
        }
    }
    "westeurope".to_string()
}

fn not_found(id: &str) -> Reply {
    let parts = segments(id);
    let group = parts
        .iter()
        .position(|s| is(s, "resourceGroups"))
        .and_then(|at| parts.get(at + 1))
        .copied()
        .unwrap_or("");
    let at = parts.iter().rposition(|s| is(s, "providers")).unwrap_or(0);
    let tail = parts.get(at + 1..).map(|t| t.join("/")).unwrap_or_default();
    Reply::error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource '{tail}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

fn get(state: &State, id: &str) -> Answer {
    match state.arm.get(&id.to_ascii_lowercase()) {
        Some(value) => Ok(Reply::ok(rendered(state, value))),
        None => Err(not_found(id)),
    }
}

fn new_etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4())
}

/// Fills what ARM adds to a written resource: ids, provisioning state, etags, defaults.
fn normalize(
    kind: &str,
    id: &str,
    body: &mut Map<String, Value>,
    existing: Option<&Value>,
    location: &str,
    tenant: &str,
) {
    let name = id.rsplit('/').next().unwrap_or_default().to_string();
    body.insert("id".into(), json!(id));
    body.insert("name".into(), json!(name));
    body.insert("type".into(), json!(kind));
    let lower = kind.to_ascii_lowercase();
    // Top-level tracked resources (`Namespace/type`) always carry a location.
    let top_level = lower.matches('/').count() == 1;
    if top_level
        && !lower.starts_with("microsoft.authorization")
        && !lower.starts_with("microsoft.security")
    {
        let fallback = existing
            .and_then(|e| e.get("location"))
            .cloned()
            .unwrap_or(json!(location));
        body.entry("location").or_insert(fallback);
    }
    if let Some(existing) = existing.and_then(Value::as_object) {
        for (key, value) in existing {
            if key.starts_with("x-sim-") {
                body.entry(key.clone()).or_insert(value.clone());
            }
        }
    }
    let properties = body.entry("properties").or_insert(json!({}));
    let Some(properties) = properties.as_object_mut() else {
        return;
    };
    if !lower.starts_with("microsoft.authorization")
        && !lower.starts_with("microsoft.security")
        && !lower.starts_with("microsoft.automation")
    {
        properties.insert("provisioningState".into(), json!("Succeeded"));
    }
    if lower.starts_with("microsoft.network/") {
        let guid = existing
            .and_then(|e| e.pointer("/properties/resourceGuid"))
            .cloned()
            .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string()));
        properties.insert("resourceGuid".into(), guid);
        body.insert("etag".into(), json!(new_etag()));
        let properties = body.get_mut("properties").and_then(Value::as_object_mut);
        if let Some(properties) = properties {
            let children = if lower == "microsoft.network/networksecuritygroups" {
                Some((
                    "securityRules",
                    "Microsoft.Network/networkSecurityGroups/securityRules",
                ))
            } else if lower == "microsoft.network/networkinterfaces" {
                Some((
                    "ipConfigurations",
                    "Microsoft.Network/networkInterfaces/ipConfigurations",
                ))
            } else {
                None
            };
            if let Some((field, child_kind)) = children {
                if let Some(Value::Array(items)) = properties.get_mut(field) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        let child = item
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("default")
                            .to_string();
                        item.insert("id".into(), json!(format!("{id}/{field}/{child}")));
                        item.insert("etag".into(), json!(new_etag()));
                        item.insert("type".into(), json!(child_kind));
                        let inner = item.entry("properties").or_insert(json!({}));
                        if let Some(inner) = inner.as_object_mut() {
                            inner.insert("provisioningState".into(), json!("Succeeded"));
                        }
                    }
                }
            }
            if lower == "microsoft.network/networksecuritygroups" {
                properties.entry("securityRules").or_insert(json!([]));
                properties.insert("defaultSecurityRules".into(), default_security_rules(id));
            }
        }
    }
    if lower == "microsoft.keyvault/vaults" {
        if let Some(properties) = body.get_mut("properties").and_then(Value::as_object_mut) {
            properties.entry("tenantId").or_insert(json!(tenant));
            properties
                .entry("sku")
                .or_insert(json!({"family": "A", "name": "standard"}));
            properties.entry("accessPolicies").or_insert(json!([]));
            properties
                .entry("enableRbacAuthorization")
                .or_insert(json!(false));
            if let Some(uri) = existing.and_then(|e| e.pointer("/properties/vaultUri")) {
                properties.insert("vaultUri".into(), uri.clone());
            }
        }
    }
    if lower == "microsoft.compute/snapshots" || lower == "microsoft.compute/disks" {
        if let Some(properties) = body.get_mut("properties").and_then(Value::as_object_mut) {
            properties
                .entry("timeCreated")
                .or_insert(json!(now_rfc3339()));
            properties
                .entry("diskState")
                .or_insert(json!(if lower.ends_with("snapshots") {
                    "Unattached"
                } else {
                    "Attached"
                }));
            properties
                .entry("uniqueId")
                .or_insert(json!(uuid::Uuid::new_v4().to_string()));
        }
    }
}

fn default_security_rules(nsg: &str) -> Value {
    let rule = |name: &str,
                priority: u32,
                direction: &str,
                access: &str,
                source: &str,
                destination: &str| {
        json!({
            "name": name, "id": format!("{nsg}/defaultSecurityRules/{name}"), "etag": new_etag(),
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {"provisioningState": "Succeeded", "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                "sourceAddressPrefix": source, "destinationAddressPrefix": destination, "access": access, "priority": priority, "direction": direction,
                "sourcePortRanges": [], "destinationPortRanges": [], "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}
        })
    };
    json!([
        rule(
            "AllowVnetInBound",
            65000,
            "Inbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork"
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "Inbound",
            "Allow",
            "AzureLoadBalancer",
            "*"
        ),
        rule("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*"),
        rule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork"
        ),
        rule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            "Internet"
        ),
        rule("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*"),
    ])
}

/// Validates a write body's references (a NIC's NSG must exist; a snapshot's source too).
fn check_references(state: &State, kind: &str, body: &Map<String, Value>) -> Result<(), Reply> {
    let lower = kind.to_ascii_lowercase();
    let reference = if lower == "microsoft.network/networkinterfaces" {
        body.get("properties")
            .and_then(|p| p.pointer("/networkSecurityGroup/id"))
    } else if lower == "microsoft.compute/snapshots" {
        body.get("properties")
            .and_then(|p| p.pointer("/creationData/sourceResourceId"))
    } else {
        None
    };
    if let Some(target) = reference.and_then(Value::as_str) {
        if !state.arm.contains_key(&target.to_ascii_lowercase()) {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "InvalidResourceReference",
                &format!("Resource {target} referenced by resource {} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", body.get("id").and_then(Value::as_str).unwrap_or("")),
            ));
        }
    }
    Ok(())
}

fn put(state: &mut State, req: &Req, id: &str, kind: &str, location: &str) -> Answer {
    let mut body = req.json_object()?;
    let key = id.to_ascii_lowercase();
    let existing = state.arm.get(&key).cloned();
    body.insert("id".into(), json!(id));
    check_references(state, kind, &body)?;
    if kind.eq_ignore_ascii_case("Microsoft.Compute/snapshots") {
        if let Some(source) = body
            .get("properties")
            .and_then(|p| p.pointer("/creationData/sourceResourceId"))
            .and_then(Value::as_str)
            .and_then(|source| state.arm.get(&source.to_ascii_lowercase()))
        {
            let size = source
                .pointer("/properties/diskSizeGB")
                .cloned()
                .unwrap_or(json!(30));
            let os = source.pointer("/properties/osType").cloned();
            if let Some(properties) = body.get_mut("properties").and_then(Value::as_object_mut) {
                properties.entry("diskSizeGB").or_insert(size);
                if let Some(os) = os {
                    properties.entry("osType").or_insert(os);
                }
            }
        }
    }
    let tenant = state.tenant_id.clone();
    normalize(kind, id, &mut body, existing.as_ref(), location, &tenant);
    if kind.eq_ignore_ascii_case("Microsoft.Automation/automationAccounts/credentials") {
        stash_secret(&mut body, "password");
    }
    if kind.eq_ignore_ascii_case("Microsoft.Automation/automationAccounts/runbooks")
        && existing.is_none()
    {
        body.insert("x-sim-content".into(), json!(""));
    }
    let created = existing.is_none();
    let lower = kind.to_ascii_lowercase();
    let status = if lower == "microsoft.compute/snapshots" || lower == "microsoft.compute/disks" {
        // Managed disks and snapshots answer 202 (Azure-AsyncOperation + Location) to a create or update.
        StatusCode::ACCEPTED
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if is_long_running_put(kind) {
        return Ok(start_write_lro(
            state,
            req,
            key,
            Value::Object(body),
            status,
            location,
        ));
    }
    state.arm.insert(key.clone(), Value::Object(body));
    let view = rendered(state, &state.arm[&key]);
    Ok(Reply::json(status, view))
}

/// Moves a write-only property into a private field (credential passwords, variable values).
fn stash_secret(body: &mut Map<String, Value>, field: &str) {
    let secret = body
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .and_then(|properties| properties.remove(field));
    if let Some(secret) = secret {
        body.insert(format!("x-sim-{field}"), secret);
    }
}

fn merge(target: &mut Value, patch: &Value, replace: &[&str], path: &str) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                let child = format!("{path}/{key}");
                if value.is_null() {
                    target.remove(key);
                } else if replace.contains(&child.as_str()) {
                    target.insert(key.clone(), value.clone());
                } else {
                    merge(
                        target.entry(key.clone()).or_insert(Value::Null),
                        value,
                        replace,
                        &child,
                    );
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn patch(state: &mut State, req: &Req, id: &str, kind: &str, location: &str) -> Answer {
    let body = req.json()?;
    let key = id.to_ascii_lowercase();
    let Some(existing) = state.arm.get(&key).cloned() else {
        return Err(not_found(id));
    };
    let mut updated = existing.clone();
    let lower = kind.to_ascii_lowercase();
    let replace: &[&str] = if lower == "microsoft.keyvault/vaults" {
        &["/properties/networkAcls", "/properties/accessPolicies"]
    } else {
        &[]
    };
    let mut body = body;
    if lower == "microsoft.automation/automationaccounts/credentials" {
        if let Some(password) = body
            .pointer_mut("/properties")
            .and_then(Value::as_object_mut)
            .and_then(|p| p.remove("password"))
        {
            updated
                .as_object_mut()
                .map(|u| u.insert("x-sim-password".into(), password));
        }
    }
    if lower == "microsoft.automation/automationaccounts/variables" {
        let encrypted = body
            .pointer("/properties/isEncrypted")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| {
                existing
                    .pointer("/properties/isEncrypted")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            });
        if encrypted {
            if let Some(value) = body
                .pointer_mut("/properties")
                .and_then(Value::as_object_mut)
                .and_then(|p| p.remove("value"))
            {
                updated
                    .as_object_mut()
                    .map(|u| u.insert("x-sim-value".into(), value));
            }
        }
    }
    merge(&mut updated, &body, replace, "");
    let Value::Object(mut map) = updated else {
        return Err(not_found(id));
    };
    check_references(state, kind, &map)?;
    let tenant = state.tenant_id.clone();
    normalize(kind, id, &mut map, Some(&existing), location, &tenant);
    if lower.starts_with("microsoft.automation/") {
        if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("lastModifiedTime".into(), json!(now_rfc3339()));
        }
    }
    if is_long_running_put(kind) {
        return Ok(start_write_lro(
            state,
            req,
            key,
            Value::Object(map),
            StatusCode::OK,
            location,
        ));
    }
    state.arm.insert(key.clone(), Value::Object(map));
    Ok(Reply::ok(rendered(state, &state.arm[&key])))
}

fn delete(state: &mut State, req: &Req, id: &str, kind: &str, location: &str) -> Answer {
    let key = id.to_ascii_lowercase();
    if !state.arm.contains_key(&key) {
        return Ok(Reply::empty(StatusCode::NO_CONTENT));
    }
    let lower = kind.to_ascii_lowercase();
    if lower == "microsoft.network/networksecuritygroups" {
        let users: Vec<String> = state
            .arm
            .values()
            .filter(|nic| {
                nic.pointer("/properties/networkSecurityGroup/id")
                    .and_then(Value::as_str)
                    .is_some_and(|nsg| nsg.eq_ignore_ascii_case(id))
            })
            .filter_map(|nic| nic.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        if !users.is_empty() {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "InUseNetworkSecurityGroupCannotBeDeleted",
                &format!("Network security group {id} cannot be deleted because it is in use by the following resources: {}. In order to delete the Network security group, remove the association with the resource(s).", users.join(", ")),
            ));
        }
    }
    if lower == "microsoft.authorization/roledefinitions" {
        let guid = id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let in_use = state.arm.values().any(|assignment| {
            type_is(assignment, "Microsoft.Authorization/roleAssignments")
                && assignment
                    .pointer("/properties/roleDefinitionId")
                    .and_then(Value::as_str)
                    .is_some_and(|definition| definition.to_ascii_lowercase().ends_with(&guid))
        });
        if in_use {
            return Err(Reply::error(
                StatusCode::CONFLICT,
                "RoleDefinitionHasAssignments",
                "There are existing role assignments referencing role (code: RoleDefinitionHasAssignments).",
            ));
        }
    }
    if lower.starts_with("microsoft.network/") || lower == "microsoft.compute/snapshots" {
        let lro_fault = req.lro_fault.clone();
        if lro_fault.is_none() {
            remove_with_children(state, &key);
            let (async_url, location_url) = new_operation(
                state,
                req,
                &namespace_of(kind),
                location,
                0,
                Outcome::Succeeded,
                Effect::Nothing,
                None,
            );
            return Ok(accepted(async_url, location_url));
        }
        if let Some(value) = state
            .arm
            .get_mut(&key)
            .and_then(|v| v.pointer_mut("/properties"))
            .and_then(Value::as_object_mut)
        {
            value.insert("provisioningState".into(), json!("Deleting"));
        }
        let (polls, outcome) = lro_plan(&lro_fault);
        let (async_url, location_url) = new_operation(
            state,
            req,
            &namespace_of(kind),
            location,
            polls,
            outcome,
            Effect::Delete(key),
            None,
        );
        return Ok(accepted(async_url, location_url));
    }
    let removed = state.arm.get(&key).map(public_view);
    remove_with_children(state, &key);
    if lower == "microsoft.authorization/roleassignments"
        || lower == "microsoft.authorization/roledefinitions"
    {
        return Ok(Reply::ok(removed.unwrap_or(Value::Null)));
    }
    Ok(Reply::empty(StatusCode::OK))
}

fn remove_with_children(state: &mut State, key: &str) {
    let prefix = format!("{key}/");
    state
        .arm
        .retain(|id, _| id != key && !id.starts_with(&prefix));
}

fn accepted(async_url: String, location_url: String) -> Reply {
    Reply::empty(StatusCode::ACCEPTED)
        .with_header("azure-asyncoperation", async_url)
        .with_header("location", location_url)
        .with_header("retry-after", "0")
}

fn namespace_of(kind: &str) -> String {
    kind.split('/')
        .next()
        .unwrap_or("Microsoft.Resources")
        .to_string()
}

fn lro_plan(fault: &Option<Fault>) -> (u32, Outcome) {
    match fault {
        Some(Fault::LroSlow { polls }) => (*polls, Outcome::Succeeded),
        Some(Fault::LroFail {
            polls,
            code,
            message,
        }) => (
            *polls,
            Outcome::Failed {
                code: code.clone().unwrap_or_else(|| "InternalServerError".into()),
                message: message
                    .clone()
                    .unwrap_or_else(|| "The operation failed (injected by azure-sim).".into()),
            },
        ),
        _ => (0, Outcome::Succeeded),
    }
}

#[allow(clippy::too_many_arguments)]
fn new_operation(
    state: &mut State,
    req: &Req,
    namespace: &str,
    location: &str,
    polls: u32,
    outcome: Outcome,
    effect: Effect,
    result: Option<Value>,
) -> (String, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let subscription = segments(&req.path)
        .get(1)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let version = req.query("api-version").unwrap_or("2025-01-01");
    let base = format!(
        "{}/subscriptions/{subscription}/providers/{namespace}/locations/{location}",
        req.origin
    );
    let operation = Operation {
        id: id.clone(),
        polls_left: polls,
        outcome,
        effect,
        result,
        started: now_rfc3339(),
        finished: None,
    };
    let finished_now = polls == 0;
    state.operations.insert(id.clone(), operation);
    if finished_now {
        finish(state, &id);
    }
    (
        format!("{base}/operations/{id}?api-version={version}"),
        format!("{base}/operationResults/{id}?api-version={version}"),
    )
}

/// Stores a long-running write: applied now (still `Updating` while a slow / failing fault holds it).
fn start_write_lro(
    state: &mut State,
    req: &Req,
    key: String,
    mut value: Value,
    status: StatusCode,
    location: &str,
) -> Reply {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Microsoft.Resources")
        .to_string();
    let (polls, outcome) = lro_plan(&req.lro_fault);
    if req.lro_fault.is_some() {
        if let Some(properties) = value
            .pointer_mut("/properties")
            .and_then(Value::as_object_mut)
        {
            properties.insert("provisioningState".into(), json!("Updating"));
        }
    }
    state.arm.insert(key.clone(), value);
    let (async_url, _) = new_operation(
        state,
        req,
        &namespace_of(&kind),
        location,
        polls,
        outcome,
        Effect::Provisioned(key.clone()),
        None,
    );
    let view = rendered(state, &state.arm[&key]);
    let reply = Reply::json(status, view)
        .with_header("azure-asyncoperation", async_url.clone())
        .with_header("retry-after", "0");
    if status == StatusCode::ACCEPTED {
        reply.with_header(
            "location",
            async_url.replace("/operations/", "/operationResults/"),
        )
    } else {
        reply
    }
}

/// Applies an operation's effect once, when it completes.
fn finish(state: &mut State, id: &str) {
    let Some(operation) = state.operations.get_mut(id) else {
        return;
    };
    if operation.finished.is_some() {
        return;
    }
    operation.finished = Some(now_rfc3339());
    let failed = matches!(operation.outcome, Outcome::Failed { .. });
    let effect = operation.effect.clone();
    match effect {
        Effect::Nothing => {}
        Effect::Provisioned(key) => {
            if let Some(properties) = state
                .arm
                .get_mut(&key)
                .and_then(|v| v.pointer_mut("/properties"))
                .and_then(Value::as_object_mut)
            {
                properties.insert(
                    "provisioningState".into(),
                    json!(if failed { "Failed" } else { "Succeeded" }),
                );
            }
        }
        Effect::Delete(key) => {
            if failed {
                if let Some(properties) = state
                    .arm
                    .get_mut(&key)
                    .and_then(|v| v.pointer_mut("/properties"))
                    .and_then(Value::as_object_mut)
                {
                    properties.insert("provisioningState".into(), json!("Succeeded"));
                }
            } else {
                remove_with_children(state, &key);
            }
        }
    }
}

fn poll(state: &mut State, req: &Req, id: &str, location_style: bool) -> Answer {
    let Some(operation) = state.operations.get_mut(id) else {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            &format!("The operation '{id}' was not found."),
        ));
    };
    if operation.finished.is_none() && operation.polls_left > 0 {
        operation.polls_left -= 1;
        if location_style {
            let url = format!(
                "{}{}?{}",
                req.origin,
                req.path,
                req.query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            );
            return Ok(Reply::empty(StatusCode::ACCEPTED)
                .with_header("location", url)
                .with_header("retry-after", "0"));
        }
        return Ok(Reply::ok(
            json!({"id": id, "name": id, "status": "InProgress", "startTime": operation.started}),
        )
        .with_header("retry-after", "0"));
    }
    let operation_id = operation.id.clone();
    finish(state, &operation_id);
    let Some(operation) = state.operations.get(id) else {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            "gone",
        ));
    };
    match (&operation.outcome, location_style) {
        (Outcome::Succeeded, false) => {
            let mut body = json!({"id": id, "name": id, "status": "Succeeded", "startTime": operation.started, "endTime": operation.finished});
            if let Some(result) = &operation.result {
                body["properties"] = json!({"output": result});
            }
            Ok(Reply::ok(body))
        }
        (Outcome::Succeeded, true) => Ok(match &operation.result {
            Some(result) => Reply::ok(result.clone()),
            None => Reply::empty(StatusCode::NO_CONTENT),
        }),
        (Outcome::Failed { code, message }, false) => Ok(Reply::ok(json!({
            "id": id, "name": id, "status": "Failed", "startTime": operation.started, "endTime": operation.finished,
            "error": {"code": code, "message": message},
        }))),
        (Outcome::Failed { code, message }, true) => Err(Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            message,
        )),
    }
}

fn action(state: &mut State, req: &Req, parent: &str, action: &str, location: &str) -> Answer {
    let key = parent.to_ascii_lowercase();
    let Some(resource) = state.arm.get(&key).cloned() else {
        return Err(not_found(parent));
    };
    let kind = resource
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = req.json()?;
    let record = |state: &mut State, entry: Value| {
        if let Some(map) = state.arm.get_mut(&key).and_then(Value::as_object_mut) {
            let history = map.entry("x-sim-actions").or_insert(json!([]));
            if let Some(history) = history.as_array_mut() {
                history.push(entry);
            }
        }
    };
    match (kind.as_str(), action.to_ascii_lowercase().as_str()) {
        (
            "microsoft.compute/virtualmachines",
            verb @ ("restart" | "reimage" | "runcommand" | "start" | "poweroff" | "deallocate"
            | "redeploy"),
        ) => {
            record(
                state,
                json!({"action": verb, "at": now_rfc3339(), "body": body}),
            );
            let result = (verb == "runcommand").then(|| {
                json!({"value": [
                    {"code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": format!("azure-sim ran {}", body.get("commandId").and_then(Value::as_str).unwrap_or("a command"))},
                    {"code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": ""}
                ]})
            });
            let (polls, outcome) = lro_plan(&req.lro_fault);
            let (async_url, location_url) = new_operation(
                state,
                req,
                "Microsoft.Compute",
                location,
                polls,
                outcome,
                Effect::Nothing,
                result,
            );
            Ok(accepted(async_url, location_url))
        }
        ("microsoft.storage/storageaccounts", "listkeys") => {
            Ok(Reply::ok(storage_keys(state, &key, None)))
        }
        ("microsoft.storage/storageaccounts", "regeneratekey") => {
            let name = body.get("keyName").and_then(Value::as_str).unwrap_or("");
            if !matches!(name.to_ascii_lowercase().as_str(), "key1" | "key2") {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidValuesForRequestParameters",
                    &format!("Values for request parameters are invalid: keyName '{name}'."),
                ));
            }
            Ok(Reply::ok(storage_keys(state, &key, Some(name))))
        }
        ("microsoft.automation/automationaccounts/runbooks", "publish") => {
            if let Some(map) = state.arm.get_mut(&key).and_then(Value::as_object_mut) {
                let draft = map.get("x-sim-draft").cloned();
                if let Some(draft) = draft {
                    map.insert("x-sim-content".into(), draft);
                }
                if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
                    properties.insert("state".into(), json!("Published"));
                    properties.insert("lastModifiedTime".into(), json!(now_rfc3339()));
                }
            }
            let (polls, outcome) = lro_plan(&req.lro_fault);
            let (_, location_url) = new_operation(
                state,
                req,
                "Microsoft.Automation",
                location,
                polls,
                outcome,
                Effect::Nothing,
                None,
            );
            Ok(Reply::empty(StatusCode::ACCEPTED)
                .with_header("location", location_url)
                .with_header("retry-after", "0"))
        }
        ("microsoft.automation/automationaccounts/jobs", "stop") => {
            if let Some(properties) = state
                .arm
                .get_mut(&key)
                .and_then(|v| v.pointer_mut("/properties"))
                .and_then(Value::as_object_mut)
            {
                properties.insert("status".into(), json!("Stopped"));
            }
            Ok(Reply::empty(StatusCode::OK))
        }
        (
            "microsoft.automation/automationaccounts/agentregistrationinformation",
            "regeneratekey",
        )
        | ("microsoft.automation/automationaccounts", "regeneratekey") => {
            let which = body
                .get("keyName")
                .and_then(Value::as_str)
                .unwrap_or("primary")
                .to_ascii_lowercase();
            let mut keys = resource
                .get("x-sim-registrationKeys")
                .cloned()
                .unwrap_or(json!({"primary": new_secret(), "secondary": new_secret()}));
            keys[which.as_str()] = json!(new_secret());
            if let Some(map) = state.arm.get_mut(&key).and_then(Value::as_object_mut) {
                map.insert("x-sim-registrationKeys".into(), keys.clone());
            }
            Ok(Reply::ok(
                json!({"id": parent, "endpoint": format!("{}/agentsvc", req.origin), "keys": {"primary": keys["primary"], "secondary": keys["secondary"]}}),
            ))
        }
        (
            "microsoft.security/locations/alerts",
            verb @ ("activate" | "inprogress" | "resolve" | "dismiss"),
        ) => {
            let status = match verb {
                "activate" => "Active",
                "inprogress" => "InProgress",
                "resolve" => "Resolved",
                _ => "Dismissed",
            };
            if let Some(properties) = state
                .arm
                .get_mut(&key)
                .and_then(|v| v.pointer_mut("/properties"))
                .and_then(Value::as_object_mut)
            {
                properties.insert("status".into(), json!(status));
            }
            record(state, json!({"action": verb, "at": now_rfc3339()}));
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            &format!("The resource type '{kind}' does not support the action '{action}'."),
        )),
    }
}

fn new_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    base64::engine::general_purpose::STANDARD.encode(&bytes[..48])
}

/// The account's keys (regenerating one first, if asked); kept in the private `x-sim-keys`.
fn storage_keys(state: &mut State, key: &str, regenerate: Option<&str>) -> Value {
    let Some(map) = state.arm.get_mut(key).and_then(Value::as_object_mut) else {
        return json!({"keys": []});
    };
    // Keys made on first use keep the creation times the account's seed gives them.
    let seeded = |name: &str| {
        map.get("properties")
            .and_then(|p| p.pointer(&format!("/keyCreationTime/{name}")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(now_rfc3339)
    };
    let (created1, created2) = (seeded("key1"), seeded("key2"));
    let keys = map.entry("x-sim-keys").or_insert_with(|| {
        json!([
            {"keyName": "key1", "value": new_secret(), "permissions": "FULL", "creationTime": created1},
            {"keyName": "key2", "value": new_secret(), "permissions": "FULL", "creationTime": created2},
        ])
    });
    if let (Some(name), Some(list)) = (regenerate, keys.as_array_mut()) {
        for entry in list.iter_mut() {
            if entry["keyName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                entry["value"] = json!(new_secret());
                entry["creationTime"] = json!(now_rfc3339());
            }
        }
    }
    let keys = keys.clone();
    let creation: Map<String, Value> = keys
        .as_array()
        .map(|list| {
            list.iter()
                .map(|entry| {
                    (
                        entry["keyName"].as_str().unwrap_or("").to_string(),
                        entry["creationTime"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("keyCreationTime".into(), Value::Object(creation));
    }
    json!({"keys": keys})
}

fn runbook_content(state: &State, runbook: &str) -> Answer {
    match state.arm.get(&runbook.to_ascii_lowercase()) {
        Some(value) => Ok(Reply::text(
            StatusCode::OK,
            value
                .get("x-sim-content")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            "text/powershell",
        )),
        None => Err(not_found(runbook)),
    }
}

fn runbook_draft_content(state: &mut State, req: &Req, id: &str) -> Answer {
    let lower = id.to_ascii_lowercase();
    let runbook = lower
        .strip_suffix("/draft/content")
        .unwrap_or(&lower)
        .to_string();
    if !state.arm.contains_key(&runbook) {
        return Err(not_found(id));
    }
    match req.method {
        Method::PUT => {
            let text = String::from_utf8_lossy(&req.body).into_owned();
            if let Some(map) = state.arm.get_mut(&runbook).and_then(Value::as_object_mut) {
                map.insert("x-sim-draft".into(), json!(text));
                if let Some(properties) = map.get_mut("properties").and_then(Value::as_object_mut) {
                    properties.insert("state".into(), json!("Edit"));
                }
            }
            let (polls, outcome) = lro_plan(&req.lro_fault);
            let location = location_of(state, id);
            let (_, location_url) = new_operation(
                state,
                req,
                "Microsoft.Automation",
                &location,
                polls,
                outcome,
                Effect::Nothing,
                None,
            );
            Ok(Reply::empty(StatusCode::ACCEPTED)
                .with_header("location", location_url)
                .with_header("retry-after", "0"))
        }
        Method::GET => {
            let value = &state.arm[&runbook];
            let text = value
                .get("x-sim-draft")
                .or_else(|| value.get("x-sim-content"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(Reply::text(
                StatusCode::OK,
                text.to_string(),
                "text/powershell",
            ))
        }
        _ => Err(method_not_allowed(req)),
    }
}

fn access_policies(state: &mut State, req: &Req, id: &str, operation: &str) -> Answer {
    if req.method != Method::PUT {
        return Err(method_not_allowed(req));
    }
    let vault = id
        .rsplit_once("/accessPolicies/")
        .map(|(v, _)| v.to_string())
        .unwrap_or_default();
    let key = vault.to_ascii_lowercase();
    let Some(existing) = state.arm.get(&key).cloned() else {
        return Err(not_found(&vault));
    };
    let body = req.json()?;
    let Some(entries) = body
        .pointer("/properties/accessPolicies")
        .and_then(Value::as_array)
        .cloned()
    else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The parameter properties.accessPolicies is required.",
        ));
    };
    let mut current: Vec<Value> = existing
        .pointer("/properties/accessPolicies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        let field = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        field(a, "tenantId") == field(b, "tenantId")
            && field(a, "objectId") == field(b, "objectId")
            && field(a, "applicationId") == field(b, "applicationId")
    };
    let kinds = ["keys", "secrets", "certificates", "storage"];
    match operation.to_ascii_lowercase().as_str() {
        "add" => {
            for entry in &entries {
                match current.iter_mut().find(|c| same(c, entry)) {
                    Some(found) => {
                        for kind in kinds {
                            let mut union: Vec<String> = permissions(found, kind);
                            for permission in permissions(entry, kind) {
                                if !union.iter().any(|p| p.eq_ignore_ascii_case(&permission)) {
                                    union.push(permission);
                                }
                            }
                            found["permissions"][kind] = json!(union);
                        }
                    }
                    None => current.push(entry.clone()),
                }
            }
        }
        "replace" => {
            for entry in &entries {
                match current.iter_mut().find(|c| same(c, entry)) {
                    Some(found) => found["permissions"] = entry["permissions"].clone(),
                    None => current.push(entry.clone()),
                }
            }
        }
        "remove" => {
            for entry in &entries {
                let Some(found) = current.iter_mut().find(|c| same(c, entry)) else {
                    continue;
                };
                for kind in kinds {
                    let removing = permissions(entry, kind);
                    let kept: Vec<String> = permissions(found, kind)
                        .into_iter()
                        .filter(|p| {
                            !removing
                                .iter()
                                .any(|r| r.eq_ignore_ascii_case(p) || r.eq_ignore_ascii_case("all"))
                        })
                        .collect();
                    found["permissions"][kind] = json!(kept);
                }
            }
            current.retain(|entry| {
                kinds
                    .iter()
                    .any(|kind| !permissions(entry, kind).is_empty())
            });
        }
        other => {
            return Err(Reply::error(StatusCode::BAD_REQUEST, "BadRequest", &format!("The access policy update kind '{other}' is invalid: use add, replace or remove.")));
        }
    }
    if let Some(properties) = state
        .arm
        .get_mut(&key)
        .and_then(|v| v.pointer_mut("/properties"))
        .and_then(Value::as_object_mut)
    {
        properties.insert("accessPolicies".into(), json!(current.clone()));
    }
    let location = existing
        .get("location")
        .cloned()
        .unwrap_or(json!("westeurope"));
    Ok(Reply::ok(json!({
        "id": id, "name": operation, "type": "Microsoft.KeyVault/vaults/accessPolicies", "location": location,
        "properties": {"accessPolicies": current},
    })))
}

fn permissions(entry: &Value, kind: &str) -> Vec<String> {
    entry
        .pointer(&format!("/permissions/{kind}"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn tags(state: &mut State, req: &Req, scope: &str) -> Answer {
    let key = scope.to_ascii_lowercase();
    if !state.arm.contains_key(&key) {
        return Err(not_found(scope));
    }
    match req.method {
        Method::GET => {}
        Method::PUT | Method::PATCH => {
            let body = req.json()?;
            let new_tags = body
                .pointer("/properties/tags")
                .cloned()
                .unwrap_or(json!({}));
            let operation = body
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("Replace")
                .to_string();
            if let Some(map) = state.arm.get_mut(&key).and_then(Value::as_object_mut) {
                let current = map.entry("tags").or_insert(json!({}));
                if req.method == Method::PUT || operation.eq_ignore_ascii_case("Replace") {
                    *current = new_tags;
                } else if let (Some(current), Some(new_tags)) =
                    (current.as_object_mut(), new_tags.as_object())
                {
                    for (name, value) in new_tags {
                        if operation.eq_ignore_ascii_case("Delete") {
                            current.remove(name);
                        } else {
                            current.insert(name.clone(), value.clone());
                        }
                    }
                }
            }
        }
        _ => return Err(method_not_allowed(req)),
    }
    let tags = state.arm[&key].get("tags").cloned().unwrap_or(json!({}));
    Ok(Reply::ok(json!({
        "id": format!("{scope}/providers/Microsoft.Resources/tags/default"),
        "name": "default", "type": "Microsoft.Resources/tags",
        "properties": {"tags": tags},
    })))
}

fn resource_graph(state: &State, req: &Req) -> Answer {
    if req.method != Method::POST {
        return Err(method_not_allowed(req));
    }
    let body = req.json()?;
    let query = body.get("query").and_then(Value::as_str).unwrap_or("");
    let lower = query.to_ascii_lowercase();
    let target = lower
        .split("=~")
        .nth(1)
        .and_then(|rest| rest.split('\'').nth(1))
        .map(str::to_string);
    let rows: Vec<Value> = if lower.trim_start().starts_with("resourcechanges") {
        state
            .resource_changes
            .iter()
            .filter(|row| {
                target.as_ref().is_none_or(|target| {
                    row.pointer("/properties/targetResourceId")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.eq_ignore_ascii_case(target))
                })
            })
            .cloned()
            .collect()
    } else {
        state
            .arm
            .iter()
            .filter(|(id, _)| target.as_ref().is_none_or(|target| *id == target))
            .map(|(_, value)| public_view(value))
            .collect()
    };
    Ok(Reply::ok(json!({
        "totalRecords": rows.len(), "count": rows.len(), "data": rows, "facets": [], "resultTruncated": "false",
    })))
}

/// Role assignments, role definitions and eligibility requests; `None` falls through to the generic handlers.
fn authorization(state: &mut State, req: &Req, scope: &str, rest: &[&str]) -> Option<Answer> {
    let kind = rest.first()?.to_ascii_lowercase();
    match (kind.as_str(), rest.len(), &req.method) {
        ("roleassignments", 1, &Method::GET) => Some(list_assignments(state, req, scope)),
        ("roleassignments", 2, &Method::GET) => {
            let id = format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
                rest[1]
            )
            .replace("//", "/");
            Some(match state.arm.get(&id.to_ascii_lowercase()) {
                Some(value) => Ok(Reply::ok(public_view(value))),
                None => Err(Reply::error(
                    StatusCode::NOT_FOUND,
                    "RoleAssignmentNotFound",
                    &format!("The role assignment '{}' is not found.", rest[1]),
                )),
            })
        }
        ("roleassignments", 2, &Method::PUT) => Some(put_assignment(state, req, scope, rest[1])),
        ("roledefinitions", 1, &Method::GET) => Some(Ok(list_where(state, |_, value| {
            type_is(value, "Microsoft.Authorization/roleDefinitions")
        }))),
        ("roledefinitions", 2, &Method::GET) => {
            let guid = rest[1].to_ascii_lowercase();
            let found = state.arm.iter().find(|(id, value)| {
                type_is(value, "Microsoft.Authorization/roleDefinitions")
                    && id.ends_with(&format!("/{guid}"))
            });
            Some(match found {
                Some((_, value)) => Ok(Reply::ok(public_view(value))),
                None => Err(Reply::error(
                    StatusCode::NOT_FOUND,
                    "RoleDefinitionDoesNotExist",
                    "The specified role definition with ID '{guid}' does not exist."
                        .replace("{guid}", &guid)
                        .as_str(),
                )),
            })
        }
        ("roleeligibilityschedulerequests", 2, &Method::PUT) => {
            Some(eligibility_request(state, req, scope, rest[1]))
        }
        ("roleeligibilityschedules", 1, &Method::GET) => {
            let prefix = scope.to_ascii_lowercase();
            Some(Ok(list_where(state, |id, value| {
                type_is(value, "Microsoft.Authorization/roleEligibilitySchedules")
                    && id.starts_with(&prefix)
            })))
        }
        _ => None,
    }
}

pub(crate) fn scope_covers(outer: &str, inner: &str) -> bool {
    let outer = outer.trim_end_matches('/').to_ascii_lowercase();
    let inner = inner.trim_end_matches('/').to_ascii_lowercase();
    outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}/"))
}

fn list_assignments(state: &State, req: &Req, scope: &str) -> Answer {
    let filter = req.query("$filter").unwrap_or("").to_string();
    let lower = filter.to_ascii_lowercase();
    let at_scope = lower.contains("atscope()");
    let quoted = |marker: &str| -> Option<String> {
        let at = lower.find(marker)?;
        filter[at + marker.len()..]
            .split('\'')
            .nth(1)
            .map(str::to_string)
    };
    let principal = quoted("principalid eq").or_else(|| quoted("assignedto("));
    if !filter.is_empty() && !at_scope && principal.is_none() {
        return Err(Reply::error(StatusCode::BAD_REQUEST, "InvalidFilterParameter", &format!("The filter '{filter}' is not supported: use atScope(), principalId eq '{{id}}' or assignedTo('{{id}}').")));
    }
    let items: Vec<Value> = state
        .arm
        .values()
        .filter(|value| type_is(value, "Microsoft.Authorization/roleAssignments"))
        .filter(|value| {
            let assignment_scope = value
                .pointer("/properties/scope")
                .and_then(Value::as_str)
                .unwrap_or("/");
            let above_or_at = scope_covers(assignment_scope, scope);
            let below = scope_covers(scope, assignment_scope);
            if at_scope {
                above_or_at
            } else {
                above_or_at || below
            }
        })
        .filter(|value| {
            principal.as_ref().is_none_or(|principal| {
                value
                    .pointer("/properties/principalId")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.eq_ignore_ascii_case(principal))
            })
        })
        .map(public_view)
        .collect();
    Ok(Reply::ok(json!({"value": items})))
}

fn put_assignment(state: &mut State, req: &Req, scope: &str, name: &str) -> Answer {
    let body = req.json()?;
    let properties = body.get("properties").cloned().unwrap_or(json!({}));
    let role = properties
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let principal = properties
        .get("principalId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if role.is_empty() || principal.is_empty() {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentRequest",
            "The request must name properties.roleDefinitionId and properties.principalId.",
        ));
    }
    let role_guid = role.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let defined = state.arm.iter().any(|(id, value)| {
        type_is(value, "Microsoft.Authorization/roleDefinitions")
            && id.ends_with(&format!("/{role_guid}"))
    });
    if !defined {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            &format!("The specified role definition with ID '{role_guid}' does not exist."),
        ));
    }
    let scope = if scope.is_empty() {
        "/".to_string()
    } else {
        scope.to_string()
    };
    let id = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
        scope.trim_end_matches('/')
    );
    let key = id.to_ascii_lowercase();
    let duplicate = state.arm.iter().any(|(other, value)| {
        other != &key
            && type_is(value, "Microsoft.Authorization/roleAssignments")
            && value
                .pointer("/properties/scope")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(&scope))
            && value
                .pointer("/properties/principalId")
                .and_then(Value::as_str)
                .is_some_and(|p| p.eq_ignore_ascii_case(&principal))
            && value
                .pointer("/properties/roleDefinitionId")
                .and_then(Value::as_str)
                .is_some_and(|r| r.to_ascii_lowercase().ends_with(&role_guid))
    });
    if duplicate {
        return Err(Reply::error(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    if let Some(existing) = state.arm.get(&key) {
        let existing_role = existing
            .pointer("/properties/roleDefinitionId")
            .and_then(Value::as_str)
            .unwrap_or("");
        let existing_principal = existing
            .pointer("/properties/principalId")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !existing_role.to_ascii_lowercase().ends_with(&role_guid)
            || !existing_principal.eq_ignore_ascii_case(&principal)
        {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            ));
        }
        return Ok(Reply::json(StatusCode::CREATED, public_view(existing)));
    }
    let now = now_rfc3339();
    let caller = req.caller.clone().unwrap_or_default();
    let value = json!({
        "id": id, "name": name, "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": role, "principalId": principal,
            "principalType": properties.get("principalType").cloned().unwrap_or(json!("User")),
            "scope": scope,
            "condition": properties.get("condition").cloned().unwrap_or(Value::Null),
            "conditionVersion": properties.get("conditionVersion").cloned().unwrap_or(Value::Null),
            "description": properties.get("description").cloned().unwrap_or(Value::Null),
            "createdOn": now, "updatedOn": now, "createdBy": caller, "updatedBy": caller,
            "delegatedManagedIdentityResourceId": Value::Null,
        }
    });
    state.arm.insert(key, value.clone());
    Ok(Reply::json(StatusCode::CREATED, value))
}

fn eligibility_request(state: &mut State, req: &Req, scope: &str, name: &str) -> Answer {
    let body = req.json()?;
    let properties = body.get("properties").cloned().unwrap_or(json!({}));
    let request_type = properties
        .get("requestType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let principal = properties
        .get("principalId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let role = properties
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let status = if request_type.eq_ignore_ascii_case("AdminRemove") {
        let before = state.arm.len();
        state.arm.retain(|id, value| {
            !(type_is(value, "Microsoft.Authorization/roleEligibilitySchedules")
                && id.starts_with(&scope.to_ascii_lowercase())
                && value
                    .pointer("/properties/principalId")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.eq_ignore_ascii_case(&principal))
                && value
                    .pointer("/properties/roleDefinitionId")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.eq_ignore_ascii_case(&role)))
        });
        if state.arm.len() == before {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "RoleAssignmentDoesNotExist",
                "The Role assignment does not exist.",
            ));
        }
        "Revoked"
    } else if request_type.eq_ignore_ascii_case("AdminAssign") {
        let schedule =
            format!("{scope}/providers/Microsoft.Authorization/roleEligibilitySchedules/{name}");
        state.arm.insert(schedule.to_ascii_lowercase(), json!({
            "id": schedule, "name": name, "type": "Microsoft.Authorization/roleEligibilitySchedules",
            "properties": {"principalId": principal, "roleDefinitionId": properties.get("roleDefinitionId"), "scope": scope, "status": "Provisioned", "memberType": "Direct"}
        }));
        "Provisioned"
    } else {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestType",
            &format!("The request type '{request_type}' is not supported."),
        ));
    };
    let id =
        format!("{scope}/providers/Microsoft.Authorization/roleEligibilityScheduleRequests/{name}");
    let mut stored = properties.clone();
    stored["status"] = json!(status);
    stored["scope"] = json!(scope);
    stored["createdOn"] = json!(now_rfc3339());
    let value = json!({"id": id, "name": name, "type": "Microsoft.Authorization/roleEligibilityScheduleRequests", "properties": stored});
    state.arm.insert(id.to_ascii_lowercase(), value.clone());
    Ok(Reply::json(StatusCode::CREATED, value))
}
