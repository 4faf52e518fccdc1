//! The seed file: the JSON a simulator's state starts from (decoded once, with errors naming the field).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::faults::ThrottleConfig;
use crate::SimError;

/// The starting state of a simulator. Every section is optional; see `sim/seeds/example.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// The Entra tenant id every token and challenge names.
    #[serde(default)]
    pub(crate) tenant_id: Option<String>,
    /// Identities the token endpoints can issue for; the first is the default.
    #[serde(default)]
    pub(crate) identities: Vec<IdentitySeed>,
    /// The secret App Service's `/msi/token` expects in `X-IDENTITY-HEADER`.
    #[serde(default)]
    pub(crate) identity_header: Option<String>,
    /// Token lifetime (default 3600 s).
    #[serde(default)]
    pub(crate) token_lifetime_seconds: Option<i64>,
    /// `{"subscriptionId","displayName","tags"}`.
    #[serde(default)]
    pub(crate) subscriptions: Vec<Value>,
    /// `{"subscriptionId","name","location","tags"}`.
    #[serde(default)]
    pub(crate) resource_groups: Vec<Value>,
    /// Any ARM resource, as ARM returns it (`id` required). Top-level `x-sim-*` fields are
    /// private state never returned (runbook content, storage keys, webhook URIs).
    #[serde(default)]
    pub(crate) resources: Vec<Value>,
    /// Key Vault data plane contents, by vault name.
    #[serde(default)]
    pub(crate) vaults: BTreeMap<String, VaultSeed>,
    /// Microsoft Graph directory objects.
    #[serde(default)]
    pub(crate) graph: GraphSeed,
    /// Defender for Endpoint machines.
    #[serde(default)]
    pub(crate) mde: MdeSeed,
    /// Resource Graph `resourcechanges` rows.
    #[serde(default)]
    pub(crate) resource_changes: Vec<Value>,
    /// Whether the vault data plane enforces each vault's firewall, access policies or RBAC
    /// role assignments (default true).
    #[serde(default)]
    pub(crate) enforce_vault_access: Option<bool>,
    /// Whether ARM checks the caller's role assignments for each operation's action (default false).
    #[serde(default)]
    pub(crate) enforce_arm_access: Option<bool>,
    /// ARM throttling limits (the documented defaults when absent).
    #[serde(default)]
    pub(crate) throttle: Option<ThrottleConfig>,
}

/// An identity tokens can be issued for.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IdentitySeed {
    pub(crate) name: String,
    pub(crate) object_id: String,
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) client_secret: Option<String>,
    /// A user-assigned identity's ARM id (`msi_res_id`).
    #[serde(default)]
    pub(crate) resource_id: Option<String>,
}

/// One vault's secrets, keys and certificates; each name maps to its versions, oldest first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VaultSeed {
    #[serde(default)]
    pub(crate) secrets: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub(crate) keys: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub(crate) certificates: BTreeMap<String, CertificateSeed>,
}

/// A certificate's policy and versions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CertificateSeed {
    #[serde(default)]
    pub(crate) policy: Option<Value>,
    #[serde(default)]
    pub(crate) versions: Vec<Value>,
}

/// Directory objects, as Graph returns them (`id` required). `x-sim-owners` on an
/// application and `x-sim-members` on a directory role list object ids.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GraphSeed {
    #[serde(default)]
    pub(crate) users: Vec<Value>,
    #[serde(default)]
    pub(crate) service_principals: Vec<Value>,
    #[serde(default)]
    pub(crate) applications: Vec<Value>,
    #[serde(default)]
    pub(crate) directory_roles: Vec<Value>,
    #[serde(default)]
    pub(crate) role_definitions: Vec<Value>,
    #[serde(default)]
    pub(crate) role_assignments: Vec<Value>,
    #[serde(default)]
    pub(crate) role_eligibility_schedules: Vec<Value>,
}

/// Defender for Endpoint machines, as `GET /api/machines` returns them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MdeSeed {
    #[serde(default)]
    pub(crate) machines: Vec<Value>,
}

impl Seed {
    /// An empty world: one default identity, no resources.
    pub fn empty() -> Seed {
        Seed::default()
    }

    /// Decodes a seed; the error names the offending field.
    pub fn from_json(text: &str) -> Result<Seed, SimError> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error(deserializer)
    }

    /// Reads and decodes a seed file.
    pub fn from_file(path: &std::path::Path) -> Result<Seed, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| SimError::Seed(format!("{}: {error}", path.display())))?;
        Seed::from_json(&text).map_err(|error| match error {
            SimError::Seed(message) => SimError::Seed(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// The example world of `sim/seeds/example.json` (used by the demo and the tests).
    pub fn example() -> Seed {
        Seed::from_json(include_str!("../seeds/example.json"))
            .unwrap_or_else(|error| panic!("sim/seeds/example.json is invalid: {error}"))
    }
}

fn serde_path_to_error(
    deserializer: &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
) -> Result<Seed, SimError> {
    Seed::deserialize(deserializer).map_err(|error| SimError::Seed(error.to_string()))
}
