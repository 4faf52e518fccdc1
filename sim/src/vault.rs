//! The Key Vault data plane of one vault: secrets, keys and certificates with versions, key rotation, certificate create/pending/merge.

use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::http::{is, segments, Answer, Reply, Req};
use crate::state::{new_version, PendingCertificate, Sim, VaultData, VaultItem, Version};
use crate::time::now_unix;

/// Data-plane api-versions accepted.
const VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-04-01",
];

/// Random bytes (uuid v4 entropy).
fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(count + 16);
    while bytes.len() < count {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    bytes.truncate(count);
    bytes
}

/// A fresh RSA-2048-sized modulus (random bytes; the simulator does no cryptography with it).
pub(crate) fn new_key_material() -> String {
    let mut modulus = random_bytes(256);
    modulus[0] |= 0x80;
    URL_SAFE_NO_PAD.encode(modulus)
}

/// A real self-signed X.509 certificate (DER, base64) for `name`.
pub(crate) fn new_certificate_der(name: &str) -> String {
    let certificate =
        rcgen::CertificateParams::new(vec![format!("{name}.example")]).and_then(|mut params| {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate()?;
            params.self_signed(&key)
        });
    match certificate {
        Ok(certificate) => STANDARD.encode(certificate.der()),
        Err(_) => STANDARD.encode(random_bytes(64)),
    }
}

/// The policy of a self-signed certificate, as Key Vault's default looks.
pub(crate) fn default_certificate_policy(name: &str) -> Value {
    json!({
        "key_props": {"exportable": true, "kty": "RSA", "key_size": 2048, "reuse_key": false},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {"subject": format!("CN={name}"), "sans": {"dns_names": []}, "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], "key_usage": ["digitalSignature", "keyEncipherment"], "validity_months": 12},
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}],
        "issuer": {"name": "Self"},
        "attributes": {"enabled": true},
    })
}

fn attributes(version: &Version) -> Value {
    let mut attributes = json!({
        "enabled": version.enabled, "created": version.created, "updated": version.updated,
        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
    });
    if let Some(exp) = version.exp {
        attributes["exp"] = json!(exp);
    }
    if let Some(nbf) = version.nbf {
        attributes["nbf"] = json!(nbf);
    }
    attributes
}

fn tags_of(version: &Version) -> Value {
    if version.tags.is_null() {
        json!({})
    } else {
        version.tags.clone()
    }
}

fn secret_bundle(url: &str, name: &str, version: &Version, with_value: bool) -> Value {
    let mut bundle = json!({
        "id": format!("{url}/secrets/{name}/{}", version.version),
        "attributes": attributes(version),
        "tags": tags_of(version),
    });
    if let Some(content_type) = &version.content_type {
        bundle["contentType"] = json!(content_type);
    }
    if with_value {
        bundle["value"] = json!(version.material);
    }
    bundle
}

fn key_bundle(url: &str, name: &str, version: &Version) -> Value {
    let kid = format!("{url}/keys/{name}/{}", version.version);
    let key = if version.content_type.as_deref() == Some("EC") {
        let half = &version.material.as_bytes()[..version.material.len() / 2];
        json!({"kid": kid, "kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
               "x": URL_SAFE_NO_PAD.encode(&half[..half.len().min(32)]), "y": URL_SAFE_NO_PAD.encode(random_bytes(32))})
    } else {
        json!({"kid": kid, "kty": "RSA", "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
               "n": version.material, "e": "AQAB"})
    };
    json!({"key": key, "attributes": attributes(version), "tags": tags_of(version)})
}

fn certificate_bundle(url: &str, name: &str, version: &Version, policy: Option<&Value>) -> Value {
    let mut bundle = json!({
        "id": format!("{url}/certificates/{name}/{}", version.version),
        "kid": format!("{url}/keys/{name}/{}", version.version),
        "sid": format!("{url}/secrets/{name}/{}", version.version),
        "x5t": URL_SAFE_NO_PAD.encode(&version.version.as_bytes()[..20]),
        "cer": version.material,
        "attributes": attributes(version),
        "tags": tags_of(version),
    });
    if let Some(policy) = policy {
        bundle["policy"] = policy_view(url, name, policy);
    }
    bundle
}

fn policy_view(url: &str, name: &str, policy: &Value) -> Value {
    let mut view = policy.clone();
    view["id"] = json!(format!("{url}/certificates/{name}/policy"));
    view
}

fn item_summary(url: &str, collection: &str, name: &str, version: &Version, latest: bool) -> Value {
    let id = if latest {
        format!("{url}/{collection}/{name}")
    } else {
        format!("{url}/{collection}/{name}/{}", version.version)
    };
    let key = if collection == "keys" { "kid" } else { "id" };
    let mut summary = json!({key: id, "attributes": attributes(version), "tags": tags_of(version)});
    if let Some(content_type) = version
        .content_type
        .as_ref()
        .filter(|_| collection == "secrets")
    {
        summary["contentType"] = json!(content_type);
    }
    if collection == "certificates" {
        summary["x5t"] = json!(URL_SAFE_NO_PAD.encode(&version.version.as_bytes()[..20]));
    }
    summary
}

fn not_found(collection: &str, name: &str) -> Reply {
    let (code, noun) = match collection {
        "keys" => ("KeyNotFound", "key"),
        "certificates" => ("CertificateNotFound", "certificate"),
        _ => ("SecretNotFound", "secret"),
    };
    Reply::error(
        StatusCode::NOT_FOUND,
        code,
        &format!("A {noun} with (name/id) {name} was not found in this key vault. If you recently deleted this {noun} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
    )
}

fn version_not_found(collection: &str, name: &str, version: &str) -> Reply {
    let noun = match collection {
        "keys" => "Key",
        "certificates" => "Certificate",
        _ => "Secret",
    };
    Reply::error(
        StatusCode::NOT_FOUND,
        &format!("{noun}NotFound"),
        &format!(
            "A {} with (name/id) {name}/{version} was not found in this key vault.",
            noun.to_ascii_lowercase()
        ),
    )
}

fn apply_attributes(version: &mut Version, body: &Value) {
    if let Some(attributes) = body.get("attributes") {
        if let Some(enabled) = attributes.get("enabled").and_then(Value::as_bool) {
            version.enabled = enabled;
        }
        if let Some(exp) = attributes.get("exp") {
            version.exp = exp.as_i64();
        }
        if let Some(nbf) = attributes.get("nbf") {
            version.nbf = nbf.as_i64();
        }
    }
    if let Some(tags) = body.get("tags") {
        version.tags = tags.clone();
    }
    if let Some(content_type) = body.get("contentType").and_then(Value::as_str) {
        version.content_type = Some(content_type.to_string());
    }
    version.updated = now_unix();
}

fn new_item_version(material: String, body: &Value) -> Version {
    let now = now_unix();
    let mut version = Version {
        version: new_version(),
        material,
        content_type: None,
        tags: Value::Null,
        enabled: true,
        exp: None,
        nbf: None,
        created: now,
        updated: now,
    };
    apply_attributes(&mut version, body);
    version
}

/// Serves one request to the vault `vault` (lower-case name).
pub(crate) fn handle(sim: &Sim, vault: &str, req: &Req) -> Answer {
    match req.query("api-version") {
        Some(version) if VERSIONS.contains(&version) => {}
        Some(version) => {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!("The specified version ({version}) is not recognized. Consider using the latest supported version (2025-07-01)."),
            ))
        }
        None => {
            return Err(Reply::error(StatusCode::BAD_REQUEST, "BadParameter", "The request URI contains an invalid or missing api-version parameter."))
        }
    }
    let mut state = sim.lock();
    let parts = segments(&req.path);
    crate::access::authorize(&state, vault, req, &parts)?;
    let Some(data) = state.vaults.get_mut(vault) else {
        return Err(Reply::error(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            &format!("The vault '{vault}' does not exist in this simulator."),
        ));
    };
    // Ids name the vault as the client reached it (its own port, or a `{vault}.vault.…` Host).
    let url = req.origin.clone();
    match parts.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("secrets") => secrets(data, &url, req, &parts[1..]),
        Some("deletedsecrets") => deleted_secrets(data, &url, req, &parts[1..]),
        Some("keys") => keys(data, &url, req, &parts[1..]),
        Some("certificates") => certificates(data, &url, req, &parts[1..]),
        _ => Err(Reply::error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("No data-plane operation at {}.", req.path),
        )),
    }
}

fn list(
    items: &std::collections::BTreeMap<String, VaultItem>,
    url: &str,
    collection: &str,
) -> Reply {
    let value: Vec<Value> = items
        .iter()
        .filter_map(|(name, item)| {
            item.versions
                .last()
                .map(|latest| item_summary(url, collection, name, latest, true))
        })
        .collect();
    Reply::ok(json!({"value": value, "nextLink": null}))
}

fn versions(item: &VaultItem, url: &str, collection: &str, name: &str) -> Reply {
    let value: Vec<Value> = item
        .versions
        .iter()
        .map(|version| item_summary(url, collection, name, version, false))
        .collect();
    Reply::ok(json!({"value": value, "nextLink": null}))
}

fn pick<'i>(
    item: &'i mut VaultItem,
    collection: &str,
    name: &str,
    version: Option<&str>,
) -> Result<&'i mut Version, Reply> {
    match version.filter(|v| !v.is_empty()) {
        None => item
            .versions
            .last_mut()
            .ok_or_else(|| not_found(collection, name)),
        Some(wanted) => item
            .versions
            .iter_mut()
            .find(|v| v.version.eq_ignore_ascii_case(wanted))
            .ok_or_else(|| version_not_found(collection, name, wanted)),
    }
}

fn secrets(data: &mut VaultData, url: &str, req: &Req, rest: &[&str]) -> Answer {
    let method = req.method.clone();
    match (method, rest) {
        (Method::GET, []) => Ok(list(&data.secrets, url, "secrets")),
        (Method::PUT, [name]) => {
            let body = req.json()?;
            let Some(value) = body.get("value").and_then(Value::as_str) else {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "Property value is required.",
                ));
            };
            if data
                .deleted_secrets
                .contains_key(&name.to_ascii_lowercase())
            {
                return Err(Reply::error(StatusCode::CONFLICT, "Conflict", &format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.")));
            }
            let version = new_item_version(value.to_string(), &body);
            let bundle = secret_bundle(url, name, &version, true);
            data.secrets
                .entry(name.to_string())
                .or_default()
                .versions
                .push(version);
            Ok(Reply::ok(bundle))
        }
        (Method::GET, [name, v]) if is(v, "versions") => match data.secrets.get(*name) {
            Some(item) => Ok(versions(item, url, "secrets", name)),
            None => Err(not_found("secrets", name)),
        },
        (Method::GET, [name]) | (Method::GET, [name, _]) => {
            let version = rest.get(1).copied();
            let item = data
                .secrets
                .get_mut(*name)
                .ok_or_else(|| not_found("secrets", name))?;
            let found = pick(item, "secrets", name, version)?;
            if !found.enabled {
                return Err(Reply::json(
                    StatusCode::FORBIDDEN,
                    json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.", "innererror": {"code": "SecretDisabled"}}}),
                ));
            }
            Ok(Reply::ok(secret_bundle(url, name, found, true)))
        }
        (Method::PATCH, [name]) | (Method::PATCH, [name, _]) => {
            let body = req.json()?;
            let item = data
                .secrets
                .get_mut(*name)
                .ok_or_else(|| not_found("secrets", name))?;
            let found = pick(item, "secrets", name, rest.get(1).copied())?;
            apply_attributes(found, &body);
            Ok(Reply::ok(secret_bundle(url, name, found, false)))
        }
        (Method::DELETE, [name]) => {
            let item = data
                .secrets
                .remove(*name)
                .ok_or_else(|| not_found("secrets", name))?;
            let now = now_unix();
            let bundle = deleted_secret_bundle(url, name, &item, now);
            data.deleted_secrets
                .insert(name.to_ascii_lowercase(), (item, now));
            Ok(Reply::ok(bundle))
        }
        _ => Err(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            &format!("{} is not supported on {}", req.method, req.path),
        )),
    }
}

fn deleted_secret_bundle(url: &str, name: &str, item: &VaultItem, deleted: i64) -> Value {
    let mut bundle = item
        .versions
        .last()
        .map(|latest| secret_bundle(url, name, latest, false))
        .unwrap_or(json!({}));
    bundle["recoveryId"] = json!(format!("{url}/deletedsecrets/{name}"));
    bundle["deletedDate"] = json!(deleted);
    bundle["scheduledPurgeDate"] = json!(deleted + 90 * 86_400);
    bundle
}

fn deleted_secrets(data: &mut VaultData, url: &str, req: &Req, rest: &[&str]) -> Answer {
    let method = req.method.clone();
    match (method, rest) {
        (Method::GET, [name]) => match data.deleted_secrets.get(&name.to_ascii_lowercase()) {
            Some((item, deleted)) => {
                Ok(Reply::ok(deleted_secret_bundle(url, name, item, *deleted)))
            }
            None => Err(Reply::error(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                &format!("Deleted Secret not found: {name}"),
            )),
        },
        (Method::POST, [name, action]) if is(action, "recover") => {
            let (item, _) = data
                .deleted_secrets
                .remove(&name.to_ascii_lowercase())
                .ok_or_else(|| {
                    Reply::error(
                        StatusCode::NOT_FOUND,
                        "SecretNotFound",
                        &format!("Deleted Secret not found: {name}"),
                    )
                })?;
            let bundle = item
                .versions
                .last()
                .map(|latest| secret_bundle(url, name, latest, false))
                .unwrap_or(json!({}));
            data.secrets.insert(name.to_string(), item);
            Ok(Reply::ok(bundle))
        }
        (Method::DELETE, [name]) => {
            data.deleted_secrets.remove(&name.to_ascii_lowercase());
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            &format!("{} is not supported on {}", req.method, req.path),
        )),
    }
}

fn default_rotation_policy(url: &str, name: &str) -> Value {
    json!({
        "id": format!("{url}/keys/{name}/rotationpolicy"),
        "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
        "attributes": {"expiryTime": null, "created": null, "updated": null},
    })
}

fn keys(data: &mut VaultData, url: &str, req: &Req, rest: &[&str]) -> Answer {
    let method = req.method.clone();
    match (method, rest) {
        (Method::GET, []) => Ok(list(&data.keys, url, "keys")),
        (Method::POST, [name, action]) if is(action, "create") => {
            let body = req.json()?;
            let mut version = new_item_version(new_key_material(), &body);
            if body
                .get("kty")
                .and_then(Value::as_str)
                .is_some_and(|kty| kty.starts_with("EC"))
            {
                version.content_type = Some("EC".into());
            }
            let bundle = key_bundle(url, name, &version);
            data.keys
                .entry(name.to_string())
                .or_default()
                .versions
                .push(version);
            Ok(Reply::ok(bundle))
        }
        (Method::POST, [name, action]) if is(action, "rotate") => {
            let item = data
                .keys
                .get_mut(*name)
                .ok_or_else(|| not_found("keys", name))?;
            let Some(latest) = item.versions.last().cloned() else {
                return Err(not_found("keys", name));
            };
            let now = now_unix();
            let version = Version {
                version: new_version(),
                material: new_key_material(),
                created: now,
                updated: now,
                enabled: true,
                ..latest
            };
            let bundle = key_bundle(url, name, &version);
            item.versions.push(version);
            Ok(Reply::ok(bundle))
        }
        (Method::GET, [name, policy]) if is(policy, "rotationpolicy") => {
            let item = data
                .keys
                .get(*name)
                .ok_or_else(|| not_found("keys", name))?;
            Ok(Reply::ok(
                item.policy
                    .clone()
                    .unwrap_or_else(|| default_rotation_policy(url, name)),
            ))
        }
        (Method::PUT, [name, policy]) if is(policy, "rotationpolicy") => {
            let body = req.json()?;
            let item = data
                .keys
                .get_mut(*name)
                .ok_or_else(|| not_found("keys", name))?;
            let now = now_unix();
            let mut stored = body.clone();
            stored["id"] = json!(format!("{url}/keys/{name}/rotationpolicy"));
            let expiry = body
                .pointer("/attributes/expiryTime")
                .cloned()
                .unwrap_or(Value::Null);
            stored["attributes"] = json!({"expiryTime": expiry, "created": now, "updated": now});
            item.policy = Some(stored.clone());
            Ok(Reply::ok(stored))
        }
        (Method::GET, [name, v]) if is(v, "versions") => match data.keys.get(*name) {
            Some(item) => Ok(versions(item, url, "keys", name)),
            None => Err(not_found("keys", name)),
        },
        (Method::GET, [name]) | (Method::GET, [name, _]) => {
            let item = data
                .keys
                .get_mut(*name)
                .ok_or_else(|| not_found("keys", name))?;
            let found = pick(item, "keys", name, rest.get(1).copied())?;
            Ok(Reply::ok(key_bundle(url, name, found)))
        }
        (Method::PATCH, [name]) | (Method::PATCH, [name, _]) => {
            let body = req.json()?;
            let item = data
                .keys
                .get_mut(*name)
                .ok_or_else(|| not_found("keys", name))?;
            let found = pick(item, "keys", name, rest.get(1).copied())?;
            apply_attributes(found, &body);
            Ok(Reply::ok(key_bundle(url, name, found)))
        }
        _ => Err(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            &format!("{} is not supported on {}", req.method, req.path),
        )),
    }
}

fn certificate_operation(url: &str, name: &str, pending: &PendingCertificate) -> Value {
    let mut operation = json!({
        "id": format!("{url}/certificates/{name}/pending"),
        "issuer": {"name": "Self"},
        "csr": STANDARD.encode(format!("azure-sim CSR for {name}")),
        "cancellation_requested": false,
        "status": pending.status,
        "status_details": if pending.status == "completed" { "" } else { "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later." },
        "request_id": pending.request_id,
    });
    if pending.status == "completed" {
        operation["target"] = json!(format!("{url}/certificates/{name}"));
    }
    operation
}

fn complete_certificate(item: &mut VaultItem, name: &str) {
    let Some(pending) = item.pending.as_mut() else {
        return;
    };
    if pending.status == "completed" {
        return;
    }
    let now = now_unix();
    let version = Version {
        version: new_version(),
        material: new_certificate_der(name),
        content_type: Some("application/x-pkcs12".into()),
        tags: pending.tags.clone(),
        enabled: true,
        exp: Some(now + 365 * 86_400),
        nbf: Some(now),
        created: now,
        updated: now,
    };
    pending.status = "completed";
    pending.target_version = Some(version.version.clone());
    item.versions.push(version);
}

fn certificates(data: &mut VaultData, url: &str, req: &Req, rest: &[&str]) -> Answer {
    let method = req.method.clone();
    match (method, rest) {
        (Method::GET, []) => Ok(list(&data.certificates, url, "certificates")),
        (Method::POST, [name, action]) if is(action, "create") => {
            let body = req.json()?;
            let item = data.certificates.entry(name.to_string()).or_default();
            if let Some(policy) = body.get("policy").filter(|p| p.is_object()) {
                let mut policy = policy.clone();
                if let Some(map) = policy.as_object_mut() {
                    map.remove("id");
                }
                item.policy = Some(policy);
            } else if item.policy.is_none() {
                item.policy = Some(default_certificate_policy(name));
            }
            let polls = match &req.lro_fault {
                Some(crate::faults::Fault::LroSlow { polls }) => *polls,
                _ => 0,
            };
            let failing = matches!(req.lro_fault, Some(crate::faults::Fault::LroFail { .. }));
            let pending = PendingCertificate {
                request_id: new_version(),
                polls_left: if failing { u32::MAX } else { polls },
                tags: body.get("tags").cloned().unwrap_or(Value::Null),
                status: "inProgress",
                target_version: None,
            };
            let operation = certificate_operation(url, name, &pending);
            item.pending = Some(pending);
            let version = req.query("api-version").unwrap_or("2025-07-01");
            Ok(Reply::json(StatusCode::ACCEPTED, operation)
                .with_header(
                    "location",
                    format!("{url}/certificates/{name}/pending?api-version={version}"),
                )
                .with_header("retry-after", "0"))
        }
        (Method::GET, [name, pending]) if is(pending, "pending") => {
            let item = data
                .certificates
                .get_mut(*name)
                .ok_or_else(|| not_found("certificates", name))?;
            let Some(state) = item.pending.as_mut() else {
                return Err(Reply::error(
                    StatusCode::NOT_FOUND,
                    "PendingCertificateNotFound",
                    &format!("Pending certificate not found: {name}"),
                ));
            };
            if state.polls_left == u32::MAX {
                state.status = "failed";
                let mut operation = certificate_operation(url, name, state);
                operation["error"] = json!({"code": "CertificateIssuanceFailed", "message": "The certificate issuance failed (injected by azure-sim)."});
                return Ok(Reply::ok(operation));
            }
            if state.polls_left > 0 {
                state.polls_left -= 1;
            } else {
                complete_certificate(item, name);
            }
            let Some(state) = item.pending.as_ref() else {
                return Err(not_found("certificates", name));
            };
            Ok(Reply::ok(certificate_operation(url, name, state)))
        }
        (Method::POST, [name, pending, merge]) if is(pending, "pending") && is(merge, "merge") => {
            let body = req.json()?;
            let item = data
                .certificates
                .get_mut(*name)
                .ok_or_else(|| not_found("certificates", name))?;
            if item.pending.is_none() {
                return Err(Reply::error(
                    StatusCode::NOT_FOUND,
                    "PendingCertificateNotFound",
                    &format!("Pending certificate not found: {name}"),
                ));
            }
            let chain = body
                .get("x5c")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .and_then(Value::as_str)
                .map(str::to_string);
            complete_certificate(item, name);
            if let (Some(der), Some(latest)) = (chain, item.versions.last_mut()) {
                latest.material = der;
            }
            apply_attributes(
                item.versions
                    .last_mut()
                    .ok_or_else(|| not_found("certificates", name))?,
                &body,
            );
            let policy = item.policy.clone();
            let latest = item
                .versions
                .last()
                .ok_or_else(|| not_found("certificates", name))?;
            Ok(Reply::json(
                StatusCode::CREATED,
                certificate_bundle(url, name, latest, policy.as_ref()),
            ))
        }
        (Method::GET, [name, policy]) if is(policy, "policy") => {
            let item = data
                .certificates
                .get(*name)
                .ok_or_else(|| not_found("certificates", name))?;
            let policy = item
                .policy
                .clone()
                .unwrap_or_else(|| default_certificate_policy(name));
            Ok(Reply::ok(policy_view(url, name, &policy)))
        }
        (Method::GET, [name, v]) if is(v, "versions") => match data.certificates.get(*name) {
            Some(item) => Ok(versions(item, url, "certificates", name)),
            None => Err(not_found("certificates", name)),
        },
        (Method::GET, [name]) | (Method::GET, [name, _]) => {
            let item = data
                .certificates
                .get_mut(*name)
                .ok_or_else(|| not_found("certificates", name))?;
            let policy = item.policy.clone();
            let found = pick(item, "certificates", name, rest.get(1).copied())?;
            Ok(Reply::ok(certificate_bundle(
                url,
                name,
                found,
                policy.as_ref(),
            )))
        }
        (Method::PATCH, [name]) | (Method::PATCH, [name, _]) => {
            let body = req.json()?;
            let item = data
                .certificates
                .get_mut(*name)
                .ok_or_else(|| not_found("certificates", name))?;
            let policy = item.policy.clone();
            let found = pick(item, "certificates", name, rest.get(1).copied())?;
            apply_attributes(found, &body);
            Ok(Reply::ok(certificate_bundle(
                url,
                name,
                found,
                policy.as_ref(),
            )))
        }
        _ => Err(Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            &format!("{} is not supported on {}", req.method, req.path),
        )),
    }
}

/// A vault's contents for `GET /_sim/state` (secret values included: the state is a test aid).
pub(crate) fn snapshot(vault: &VaultData) -> Value {
    let section = |items: &std::collections::BTreeMap<String, VaultItem>,
                   with_material: bool|
     -> Value {
        let map: Map<String, Value> = items
            .iter()
            .map(|(name, item)| {
                let versions: Vec<Value> = item
                    .versions
                    .iter()
                    .map(|version| {
                        let mut entry = json!({
                            "version": version.version, "enabled": version.enabled, "tags": version.tags,
                            "contentType": version.content_type, "created": version.created, "updated": version.updated,
                            "exp": version.exp, "nbf": version.nbf,
                        });
                        if with_material {
                            entry["value"] = json!(version.material);
                        }
                        entry
                    })
                    .collect();
                (name.clone(), json!({"versions": versions, "policy": item.policy, "pending": item.pending.as_ref().map(|p| p.status)}))
            })
            .collect();
        Value::Object(map)
    };
    json!({
        "url": vault.url,
        "secrets": section(&vault.secrets, true),
        "keys": section(&vault.keys, false),
        "certificates": section(&vault.certificates, false),
        "deletedSecrets": vault.deleted_secrets.keys().collect::<Vec<_>>(),
    })
}
