//! The simulator's in-memory world: ARM resources by id, vault contents, directory objects, MDE machines, operations, tokens, faults and the request log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use crate::auth::TokenBook;
use crate::faults::{FaultBook, Throttle};
use crate::seed::Seed;
use crate::time::{now_rfc3339, now_unix};
use crate::SimError;

/// The default tenant when the seed names none.
pub(crate) const DEFAULT_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// An identity tokens are issued for.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) object_id: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<String>,
    pub(crate) resource_id: Option<String>,
}

/// One version of a secret, key or certificate.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) version: String,
    /// Secret value, key material (`n`), or certificate DER (base64).
    pub(crate) material: String,
    pub(crate) content_type: Option<String>,
    pub(crate) tags: Value,
    pub(crate) enabled: bool,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) created: i64,
    pub(crate) updated: i64,
}

/// A pending certificate operation.
#[derive(Debug, Clone)]
pub(crate) struct PendingCertificate {
    pub(crate) request_id: String,
    pub(crate) polls_left: u32,
    pub(crate) tags: Value,
    pub(crate) status: &'static str,
    pub(crate) target_version: Option<String>,
}

/// One named item of a vault with its versions, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct VaultItem {
    pub(crate) versions: Vec<Version>,
    /// Key rotation policy, certificate policy.
    pub(crate) policy: Option<Value>,
    pub(crate) pending: Option<PendingCertificate>,
}

/// The data plane of one vault.
#[derive(Debug, Clone, Default)]
pub(crate) struct VaultData {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) secrets: BTreeMap<String, VaultItem>,
    pub(crate) keys: BTreeMap<String, VaultItem>,
    pub(crate) certificates: BTreeMap<String, VaultItem>,
    pub(crate) deleted_secrets: BTreeMap<String, (VaultItem, i64)>,
}

/// The directory (Graph).
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory {
    pub(crate) users: Vec<Value>,
    pub(crate) service_principals: Vec<Value>,
    pub(crate) applications: Vec<Value>,
    pub(crate) directory_roles: Vec<Value>,
    pub(crate) role_definitions: Vec<Value>,
    pub(crate) role_assignments: Vec<Value>,
    pub(crate) role_eligibility_schedules: Vec<Value>,
    pub(crate) schedule_requests: Vec<Value>,
    pub(crate) deleted_items: Vec<Value>,
    pub(crate) sent_mail: Vec<Value>,
    pub(crate) revoked_sessions: Vec<Value>,
}

/// Defender for Endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Defender {
    pub(crate) machines: Vec<Value>,
    pub(crate) actions: Vec<Value>,
    /// Polls left before a pending action succeeds.
    pub(crate) polls_left: HashMap<String, u32>,
}

/// How a long-running operation ends.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Succeeded,
    Failed { code: String, message: String },
}

/// What finishing an operation does to the resource it started on.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Nothing more (the change was already applied).
    Nothing,
    /// `provisioningState` of the resource becomes final.
    Provisioned(String),
    /// The resource is removed.
    Delete(String),
}

/// A long-running ARM operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(crate) id: String,
    pub(crate) polls_left: u32,
    pub(crate) outcome: Outcome,
    pub(crate) effect: Effect,
    /// Body of the final `Location` poll (e.g. a run command's output).
    pub(crate) result: Option<Value>,
    pub(crate) started: String,
    pub(crate) finished: Option<String>,
}

/// Everything the simulator knows.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) tenant_id: String,
    pub(crate) default_identity: Identity,
    pub(crate) identities: Vec<Identity>,
    pub(crate) identity_header: String,
    pub(crate) token_lifetime_s: i64,
    pub(crate) tokens: TokenBook,
    pub(crate) faults: FaultBook,
    pub(crate) throttle: Throttle,
    /// ARM resources by lower-case id (subscriptions and resource groups included).
    pub(crate) arm: BTreeMap<String, Value>,
    pub(crate) vaults: BTreeMap<String, VaultData>,
    pub(crate) directory: Directory,
    pub(crate) defender: Defender,
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) resource_changes: Vec<Value>,
    pub(crate) requests: Vec<Value>,
    /// The vault data plane checks firewall, access policies and RBAC.
    pub(crate) enforce_vault_access: bool,
    /// ARM checks role assignments (actions / notActions) for each operation.
    pub(crate) enforce_arm_access: bool,
}

/// The shared simulator: its state behind one lock.
#[derive(Debug)]
pub(crate) struct Sim {
    state: Mutex<State>,
    /// The seed, kept so `/_sim/reset` can start over.
    seed: Seed,
}

impl Sim {
    /// Locks the state (a panicked handler does not poison the simulator).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Builds the state from a seed.
    pub(crate) fn new(seed: Seed) -> Result<Sim, SimError> {
        Ok(Sim {
            state: Mutex::new(State::from_seed(seed.clone())?),
            seed,
        })
    }

    /// Puts the world back to the seed (faults, tokens and the request log included); vault URLs stay.
    pub(crate) fn reset(&self) {
        let Ok(mut fresh) = State::from_seed(self.seed.clone()) else {
            return;
        };
        let mut state = self.lock();
        let urls: Vec<(String, String)> = state
            .vaults
            .iter()
            .map(|(name, vault)| (name.clone(), vault.url.clone()))
            .collect();
        for (name, url) in urls {
            fresh.attach_vault_url(&name, &url);
        }
        *state = fresh;
    }
}

/// A fresh 32-hex-digit version id.
pub(crate) fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The resource type of an ARM id: `Namespace/type/subtype`, read after the last `providers`.
pub(crate) fn resource_type(id: &str) -> String {
    let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    match segments
        .iter()
        .rposition(|segment| segment.eq_ignore_ascii_case("providers"))
    {
        Some(at) if at + 1 < segments.len() => {
            let mut kind = segments[at + 1].to_string();
            let mut index = at + 2;
            while index < segments.len() {
                kind.push('/');
                kind.push_str(segments[index]);
                index += 2;
            }
            kind
        }
        _ if segments.len() == 2 => "Microsoft.Resources/subscriptions".to_string(),
        _ => "Microsoft.Resources/resourceGroups".to_string(),
    }
}

/// Removes the `x-sim-*` private fields of a stored resource.
pub(crate) fn public_view(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with("x-sim-"))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn take_str(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

fn version_from_seed(seed: &Value, material: String) -> Version {
    let now = now_unix();
    let attributes = seed.get("attributes").cloned().unwrap_or(Value::Null);
    let attribute = |key: &str| seed.get(key).or_else(|| attributes.get(key)).cloned();
    Version {
        version: take_str(seed, "version").unwrap_or_else(new_version),
        material,
        content_type: take_str(seed, "contentType"),
        tags: seed.get("tags").cloned().unwrap_or(Value::Null),
        enabled: attribute("enabled")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        exp: attribute("exp").and_then(|v| v.as_i64()),
        nbf: attribute("nbf").and_then(|v| v.as_i64()),
        created: attribute("created").and_then(|v| v.as_i64()).unwrap_or(now),
        updated: attribute("updated").and_then(|v| v.as_i64()).unwrap_or(now),
    }
}

impl State {
    fn from_seed(seed: Seed) -> Result<State, SimError> {
        let tenant_id = seed
            .tenant_id
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT.to_string());
        let mut identities: Vec<Identity> = seed
            .identities
            .iter()
            .map(|identity| Identity {
                name: identity.name.clone(),
                object_id: identity.object_id.clone(),
                client_id: identity.client_id.clone(),
                client_secret: identity.client_secret.clone(),
                resource_id: identity.resource_id.clone(),
            })
            .collect();
        if identities.is_empty() {
            identities.push(Identity {
                name: "responder".into(),
                object_id: "00000000-0000-0000-0000-0000000000aa".into(),
                client_id: "00000000-0000-0000-0000-0000000000ab".into(),
                client_secret: None,
                resource_id: None,
            });
        }
        let mut state = State {
            tenant_id: tenant_id.clone(),
            default_identity: identities[0].clone(),
            identities,
            identity_header: seed
                .identity_header
                .clone()
                .unwrap_or_else(|| "azure-sim-identity-header".into()),
            token_lifetime_s: seed.token_lifetime_seconds.unwrap_or(3600),
            tokens: TokenBook::default(),
            faults: FaultBook::default(),
            throttle: Throttle::default(),
            arm: BTreeMap::new(),
            vaults: BTreeMap::new(),
            directory: Directory::default(),
            defender: Defender::default(),
            operations: HashMap::new(),
            resource_changes: seed.resource_changes.clone(),
            requests: Vec::new(),
            enforce_vault_access: seed.enforce_vault_access.unwrap_or(true),
            enforce_arm_access: seed.enforce_arm_access.unwrap_or(false),
        };
        if let Some(throttle) = seed.throttle {
            state.throttle.configure(throttle);
        }
        for subscription in &seed.subscriptions {
            let id = take_str(subscription, "subscriptionId").ok_or_else(|| {
                SimError::Seed("subscriptions[]: subscriptionId is required".into())
            })?;
            let mut value = subscription.clone();
            let map = object(&mut value, "subscriptions[]")?;
            map.insert("id".into(), json!(format!("/subscriptions/{id}")));
            map.entry("displayName").or_insert(json!(id));
            map.entry("state").or_insert(json!("Enabled"));
            map.insert("tenantId".into(), json!(tenant_id));
            map.entry("tags").or_insert(json!({}));
            state
                .arm
                .insert(format!("/subscriptions/{id}").to_ascii_lowercase(), value);
        }
        for group in &seed.resource_groups {
            let subscription = take_str(group, "subscriptionId").ok_or_else(|| {
                SimError::Seed("resourceGroups[]: subscriptionId is required".into())
            })?;
            let name = take_str(group, "name")
                .ok_or_else(|| SimError::Seed("resourceGroups[]: name is required".into()))?;
            let id = format!("/subscriptions/{subscription}/resourceGroups/{name}");
            let value = json!({
                "id": id, "name": name, "type": "Microsoft.Resources/resourceGroups",
                "location": group.get("location").cloned().unwrap_or(json!("westeurope")),
                "tags": group.get("tags").cloned().unwrap_or(json!({})),
                "properties": {"provisioningState": "Succeeded"},
            });
            state.arm.insert(id.to_ascii_lowercase(), value);
        }
        for resource in &seed.resources {
            let id = take_str(resource, "id")
                .ok_or_else(|| SimError::Seed("resources[]: id is required".into()))?;
            let mut value = resource.clone();
            let map = object(&mut value, "resources[]")?;
            let name = id.rsplit('/').next().unwrap_or_default().to_string();
            map.entry("name").or_insert(json!(name));
            map.entry("type").or_insert(json!(resource_type(&id)));
            state.arm.insert(id.to_ascii_lowercase(), value);
        }
        for (name, vault) in seed.vaults {
            let mut data = VaultData {
                name: name.clone(),
                ..VaultData::default()
            };
            for (secret, versions) in vault.secrets {
                let item = VaultItem {
                    versions: versions
                        .iter()
                        .map(|v| version_from_seed(v, take_str(v, "value").unwrap_or_default()))
                        .collect(),
                    ..VaultItem::default()
                };
                data.secrets.insert(secret, item);
            }
            for (key, versions) in vault.keys {
                let item = VaultItem {
                    versions: versions
                        .iter()
                        .map(|v| version_from_seed(v, crate::vault::new_key_material()))
                        .collect(),
                    ..VaultItem::default()
                };
                data.keys.insert(key, item);
            }
            for (certificate, seed) in vault.certificates {
                let item = VaultItem {
                    versions: seed
                        .versions
                        .iter()
                        .map(|v| {
                            version_from_seed(v, crate::vault::new_certificate_der(&certificate))
                        })
                        .collect(),
                    policy: Some(
                        seed.policy.clone().unwrap_or_else(|| {
                            crate::vault::default_certificate_policy(&certificate)
                        }),
                    ),
                    pending: None,
                };
                data.certificates.insert(certificate, item);
            }
            state.vaults.insert(name.to_ascii_lowercase(), data);
        }
        let vault_names: Vec<String> = state
            .arm
            .values()
            .filter(|value| {
                take_str(value, "type")
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("Microsoft.KeyVault/vaults"))
            })
            .filter_map(|value| take_str(value, "name"))
            .collect();
        for name in vault_names {
            state
                .vaults
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| VaultData {
                    name: name.clone(),
                    ..VaultData::default()
                });
        }
        let graph = seed.graph;
        state.directory = Directory {
            users: graph.users,
            service_principals: graph.service_principals,
            applications: graph.applications,
            directory_roles: graph.directory_roles,
            role_definitions: graph.role_definitions,
            role_assignments: graph.role_assignments,
            role_eligibility_schedules: graph.role_eligibility_schedules,
            ..Directory::default()
        };
        state.defender.machines = seed.mde.machines;
        Ok(state)
    }

    /// The identity with this object id, client id, name or resource id.
    pub(crate) fn identity(&self, wanted: &str) -> Option<Identity> {
        self.identities
            .iter()
            .find(|identity| {
                identity.object_id.eq_ignore_ascii_case(wanted)
                    || identity.client_id.eq_ignore_ascii_case(wanted)
                    || identity.name == wanted
                    || identity
                        .resource_id
                        .as_deref()
                        .is_some_and(|id| id.eq_ignore_ascii_case(wanted))
            })
            .cloned()
    }

    /// Records a vault's data-plane URL, and points its ARM `vaultUri` there.
    pub(crate) fn attach_vault_url(&mut self, name: &str, url: &str) {
        if let Some(vault) = self.vaults.get_mut(&name.to_ascii_lowercase()) {
            vault.url = url.to_string();
        }
        for value in self.arm.values_mut() {
            let is_vault = take_str(value, "type")
                .is_some_and(|kind| kind.eq_ignore_ascii_case("Microsoft.KeyVault/vaults"));
            let same = take_str(value, "name").is_some_and(|n| n.eq_ignore_ascii_case(name));
            if is_vault && same {
                if let Some(map) = value.as_object_mut() {
                    let properties = map.entry("properties").or_insert(json!({}));
                    if let Some(properties) = properties.as_object_mut() {
                        properties.insert("vaultUri".into(), json!(format!("{url}/")));
                    }
                }
            }
        }
    }

    /// Appends one entry to the request log.
    pub(crate) fn log_request(&mut self, mut entry: Map<String, Value>) {
        entry.insert("seq".into(), json!(self.requests.len() + 1));
        entry.insert("time".into(), json!(now_rfc3339()));
        self.requests.push(Value::Object(entry));
    }

    /// The whole world as JSON (`GET /_sim/state`); secret values included, tokens not.
    pub(crate) fn snapshot(&self) -> Value {
        let vaults: Map<String, Value> = self
            .vaults
            .values()
            .map(|vault| (vault.name.clone(), crate::vault::snapshot(vault)))
            .collect();
        json!({
            "tenantId": self.tenant_id,
            "identities": self.identities.iter().map(|identity| json!({
                "name": identity.name, "objectId": identity.object_id, "clientId": identity.client_id,
            })).collect::<Vec<_>>(),
            "resources": self.arm.values().cloned().collect::<Vec<_>>(),
            "vaults": vaults,
            "graph": {
                "users": self.directory.users,
                "servicePrincipals": self.directory.service_principals,
                "applications": self.directory.applications,
                "directoryRoles": self.directory.directory_roles,
                "roleDefinitions": self.directory.role_definitions,
                "roleAssignments": self.directory.role_assignments,
                "roleEligibilitySchedules": self.directory.role_eligibility_schedules,
                "scheduleRequests": self.directory.schedule_requests,
                "deletedItems": self.directory.deleted_items,
                "sentMail": self.directory.sent_mail,
                "revokedSessions": self.directory.revoked_sessions,
            },
            "mde": {"machines": self.defender.machines, "machineActions": self.defender.actions},
            "operations": self.operations.values().map(|operation| json!({
                "id": operation.id,
                "pollsLeft": operation.polls_left,
                "outcome": match &operation.outcome { Outcome::Succeeded => "Succeeded", Outcome::Failed { .. } => "Failed" },
                "started": operation.started,
                "finished": operation.finished,
            })).collect::<Vec<_>>(),
            "throttle": self.throttle.config,
            "faults": self.faults.rules,
        })
    }
}

fn object<'v>(value: &'v mut Value, what: &str) -> Result<&'v mut Map<String, Value>, SimError> {
    value
        .as_object_mut()
        .ok_or_else(|| SimError::Seed(format!("{what}: an object is required")))
}
