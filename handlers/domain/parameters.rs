//! The typed parameters of each task action: the exact target and the inputs its executor needs.
//!
//! [`Parameters`] is tagged by action (`"action": "rotate_secret", "parameters": {…}` in the
//! message), so a worker reads one struct per action and never interprets prose. Targets are
//! the newtypes of [`super::ids`]; a task is planned only when its target parses, so no
//! message names a malformed id. `docs/tasks.md` describes each action.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alert::AlertStatus;
use super::ids::{
    AzureResourceId, CertificateUri, Guid, IpAddress, IpRange, KeyUri, KeyVaultId, PrincipalRef,
    SecretUri, SubscriptionScope,
};
use super::task::{Action, MessageId};

/// The time window of the suspicious activity, RFC 3339 as Defender sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimeWindow {
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

impl TimeWindow {
    /// A window, `None` when the alert gives neither end.
    pub fn new(start: Option<String>, end: Option<String>) -> Option<Self> {
        (start.is_some() || end.is_some()).then_some(TimeWindow { start, end })
    }
}

/// What the alert says happened: who, from where, which operations, when. Carried by every
/// task; empty parts are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Activity {
    /// The principal behind the activity, when the alert names one by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalRef>,
    /// The application (client) id the caller used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<Guid>,
    /// The caller's IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller_ips: Vec<IpAddress>,
    /// The operations the alert reports (`SecretGet`, `Microsoft.Compute/virtualMachines/runCommand/action`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
}

impl Activity {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

/// What a notification is about: a resource by id, or a name when the alert gives no id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// An Azure resource (or a subscription scope).
    Resource(AzureResourceId),
    /// A name the alert gives without an id (a host name, a vault name, a label).
    Name(String),
}

impl Subject {
    /// A subject from a label: a resource id when it parses as one.
    pub fn from_label(label: &str) -> Self {
        match AzureResourceId::parse(label) {
            Ok(id) => Subject::Resource(id),
            Err(_) => Subject::Name(label.trim().to_string()),
        }
    }

    /// The text tasks use as their target.
    pub fn target(&self) -> &str {
        match self {
            Subject::Resource(id) => id.as_str(),
            Subject::Name(name) => name,
        }
    }
}

/// Where the notification worker reads the resource's owner (a tag) before sending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwnerLookup {
    /// The tag that names the owner.
    pub tag: String,
    /// The resource to read it from (then its resource group and subscription).
    pub resource: AzureResourceId,
}

/// A containment step the policy leaves to people (`notify_only`): what and on what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ManualStep {
    /// The action a person should take if the activity was not expected.
    pub action: Action,
    /// Its target.
    pub target: String,
}

/// The secrets or keys a rotation covers: one object, a vault, or a subscription's vaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SecretRotationTarget {
    /// One secret named by the alert (the version-less URI; the versions read are listed).
    Secret {
        /// The secret.
        secret: SecretUri,
        /// The versions the alert shows were read (empty: the alert names none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions_read: Vec<String>,
    },
    /// Every secret in the vault the activity read, beyond those with their own task.
    Vault {
        /// The vault.
        vault: KeyVaultId,
        /// Secrets that have their own task and are not part of this one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<SecretUri>,
    },
    /// Every key vault of the subscription the activity could read.
    Subscription {
        /// The subscription.
        subscription: SubscriptionScope,
    },
}

/// The keys a rotation covers: one key, a vault, or a subscription's vaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyRotationTarget {
    /// One key named by the alert.
    Key {
        /// The key.
        key: KeyUri,
        /// The versions the alert shows were used.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions_read: Vec<String>,
    },
    /// Every key in the vault the activity used.
    Vault {
        /// The vault.
        vault: KeyVaultId,
        /// Keys that have their own task.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<KeyUri>,
    },
    /// Every key vault of the subscription the activity could read.
    Subscription {
        /// The subscription.
        subscription: SubscriptionScope,
    },
}

/// A resource named by the alert, or every resource of the kind in a scope that the
/// activity's principal touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResourceTarget {
    /// One resource the alert names.
    Resource {
        /// Its id.
        resource: AzureResourceId,
    },
    /// Every resource of the action's kind in the scope that the activity's principal
    /// created, changed or ran code on (the worker lists them from the activity log).
    InScope {
        /// The scope (a subscription, or the alert's resource).
        scope: AzureResourceId,
    },
}

impl ResourceTarget {
    /// The text tasks use as their target.
    pub fn target(&self) -> &str {
        match self {
            ResourceTarget::Resource { resource } => resource.as_str(),
            ResourceTarget::InScope { scope } => scope.as_str(),
        }
    }
}

/// Which role assignments and definitions to remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoleAssignmentTarget {
    /// One role assignment or definition the alert names.
    Named {
        /// Its id (`…/providers/Microsoft.Authorization/roleAssignments/{guid}` or `roleDefinitions/{guid}`).
        id: AzureResourceId,
    },
    /// Assignments in a scope, selected by principal.
    InScope {
        /// The scope (filter the listing on `scope`, never wider).
        scope: AzureResourceId,
        /// Remove the assignments and custom definitions this principal created.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_by: Option<PrincipalRef>,
        /// Remove the assignments held by this (unfamiliar) principal.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assigned_to: Option<PrincipalRef>,
    },
}

/// The scan a machine gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanType {
    /// A full scan.
    Full,
}

/// The default action of a vault firewall after containment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FirewallDefault {
    /// Deny what no rule allows.
    Deny,
}

/// Which trusted services pass the vault firewall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FirewallBypass {
    /// Trusted Microsoft services.
    AzureServices,
}

/// The storage account key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageKeyName {
    /// `key1`.
    Key1,
    /// `key2`.
    Key2,
}

macro_rules! parameters {
    ($( $(#[$doc:meta])* $variant:ident $body:tt )*) => {
        /// The typed parameters of a task, tagged by its action.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "action", content = "parameters", rename_all = "snake_case")]
        pub enum Parameters {
            $( $(#[$doc])* $variant $body, )*
        }

        impl Parameters {
            /// The action these parameters are for.
            pub fn action(&self) -> Action {
                match self { $(Parameters::$variant { .. } => Action::$variant,)* }
            }
        }
    };
}

parameters! {
    /// Ask the owner of a resource whether the activity was expected.
    ContactOwner {
        /// What it is about.
        subject: Subject,
        /// Where to read the owner tag, when the subject is a resource.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner_lookup: Option<OwnerLookup>,
    }
    /// Ask an application's administrator to audit the use of exposed credentials.
    ContactAppOwner {
        /// The application (its owners are read from Entra), when the caller used one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        application_id: Option<Guid>,
        /// Else the vault whose credentials' consumers are asked.
        subject: Subject,
    }
    /// Contact the tenant administrator about a principal's Entra roles.
    ContactTenantAdmin {
        /// The principal.
        principal: PrincipalRef,
        /// The roles the policy knows it holds (empty: the administrator is asked to check).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        entra_roles: Vec<String>,
    }
    /// Ask a person to approve or reject the containment that waits.
    RequestDecision {
        /// What the alert is about.
        subject: Subject,
        /// The message ids of the pending tasks.
        pending: Vec<MessageId>,
        /// Steps the policy leaves to people.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notify_only: Vec<ManualStep>,
    }
    /// Tell the security team.
    NotifySecurityTeam {
        /// What it is about.
        subject: Subject,
    }
    /// Tell the people involved that the alert changed status.
    NotifyStatusChange {
        /// What the alert is about.
        subject: Subject,
        /// The new status.
        new_status: AlertStatus,
        /// Cancel every pending task whose correlation id is this `systemAlertId`.
        cancel_pending_for_alert: String,
        /// The pending tasks' message ids as planned (covered by the correlation id too).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cancelled: Vec<MessageId>,
    }
    /// Turn on a vault's firewall: deny by default, allow the trusted networks.
    EnableKeyVaultFirewall {
        /// The vault.
        vault: KeyVaultId,
        /// The default action to set.
        default_action: FirewallDefault,
        /// Trusted services that pass.
        bypass: FirewallBypass,
        /// Address ranges to allow (merged with the vault's current rules).
        #[serde(default)]
        allow_ip_ranges: Vec<IpRange>,
        /// Subnets to allow.
        #[serde(default)]
        allow_virtual_networks: Vec<AzureResourceId>,
        /// The untrusted addresses that reached the vault (never allowed).
        #[serde(default)]
        block_addresses: Vec<IpAddress>,
    }
    /// Remove a principal from a vault's access policy (or its role assignments at the vault).
    RestrictPrincipal {
        /// The vault.
        vault: KeyVaultId,
        /// The principal.
        principal: PrincipalRef,
    }
    /// Reduce or revoke a principal's Entra roles, as the tenant administrator decides.
    ReviewEntraRoles {
        /// The principal.
        principal: PrincipalRef,
        /// The roles the policy knows it holds.
        entra_roles: Vec<String>,
    }
    /// Isolate a resource from the network.
    IsolateResourceNetwork {
        /// The resource.
        resource: AzureResourceId,
    }
    /// Remove role assignments or definitions.
    RemoveRoleAssignments {
        /// Which.
        target: RoleAssignmentTarget,
    }
    /// Delete an account a threat actor may have created.
    DeleteUnfamiliarAccount {
        /// The account.
        principal: PrincipalRef,
    }
    /// Disable an account pending investigation.
    DisableAccount {
        /// The account.
        principal: PrincipalRef,
    }
    /// Remove unfamiliar runbooks and webhooks from Automation accounts.
    RemoveRunbook {
        /// One Automation account, or every one in a scope.
        target: ResourceTarget,
        /// Remove what this principal created or changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_by: Option<PrincipalRef>,
    }
    /// Revert the access-policy change that widened a vault's access.
    RevertAccessPolicy {
        /// The vault.
        vault: KeyVaultId,
        /// Who changed it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changed_by: Option<PrincipalRef>,
    }
    /// Rotate secrets.
    RotateSecret {
        /// Which.
        target: SecretRotationTarget,
        /// Who read them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_by: Option<PrincipalRef>,
    }
    /// Rotate keys.
    RotateKey {
        /// Which.
        target: KeyRotationTarget,
        /// Who used them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_by: Option<PrincipalRef>,
    }
    /// Rotate a certificate.
    RotateCertificate {
        /// The certificate.
        certificate: CertificateUri,
        /// The versions read.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions_read: Vec<String>,
    }
    /// Regenerate storage account keys.
    RotateStorageKeys {
        /// One account, or every account in a scope whose keys the principal listed.
        target: ResourceTarget,
        /// The keys to regenerate, in order.
        key_names: Vec<StorageKeyName>,
    }
    /// Rotate Automation credentials, connections and encrypted variables.
    RotateAutomationCredentials {
        /// One Automation account, or every one in a scope.
        target: ResourceTarget,
    }
    /// Disable an exposed secret's versions after consumers have the new one.
    DisableSecret {
        /// The secret (version-less).
        secret: SecretUri,
        /// The versions read (empty: every enabled version older than the rotation).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions_read: Vec<String>,
    }
    /// Change a familiar account's credentials.
    ResetCredentials {
        /// The account.
        principal: PrincipalRef,
    }
    /// Change the passwords of every user on the machines.
    ChangeVmPasswords {
        /// One machine, or every machine in a scope the principal ran code on or created.
        target: ResourceTarget,
    }
    /// Run a full antimalware scan.
    RunAntimalwareScan {
        /// One machine, or every machine in a scope the principal touched.
        target: ResourceTarget,
        /// The scan.
        scan_type: ScanType,
    }
    /// Reimage machines from a malware-free source.
    ReimageVm {
        /// One machine, or every machine in a scope the principal touched.
        target: ResourceTarget,
    }
}

impl Parameters {
    /// The text of the target these parameters act on: what the message id is derived from.
    pub fn target(&self) -> String {
        match self {
            Parameters::ContactOwner { subject, .. }
            | Parameters::NotifySecurityTeam { subject }
            | Parameters::RequestDecision { subject, .. }
            | Parameters::NotifyStatusChange { subject, .. } => subject.target().to_string(),
            Parameters::ContactAppOwner {
                application_id,
                subject,
            } => application_id
                .as_ref()
                .map(|id| id.as_str().to_string())
                .unwrap_or_else(|| subject.target().to_string()),
            Parameters::ContactTenantAdmin { principal, .. }
            | Parameters::RestrictPrincipal { principal, .. }
            | Parameters::ReviewEntraRoles { principal, .. }
            | Parameters::DeleteUnfamiliarAccount { principal }
            | Parameters::DisableAccount { principal }
            | Parameters::ResetCredentials { principal } => principal.target().to_string(),
            Parameters::EnableKeyVaultFirewall { vault, .. }
            | Parameters::RevertAccessPolicy { vault, .. } => vault.as_str().to_string(),
            Parameters::IsolateResourceNetwork { resource } => resource.as_str().to_string(),
            Parameters::RemoveRoleAssignments { target } => match target {
                RoleAssignmentTarget::Named { id } => id.as_str().to_string(),
                RoleAssignmentTarget::InScope { scope, .. } => scope.as_str().to_string(),
            },
            Parameters::RemoveRunbook { target, .. }
            | Parameters::RotateStorageKeys { target, .. }
            | Parameters::RotateAutomationCredentials { target }
            | Parameters::ChangeVmPasswords { target }
            | Parameters::RunAntimalwareScan { target, .. }
            | Parameters::ReimageVm { target } => target.target().to_string(),
            Parameters::RotateSecret { target, .. } => match target {
                SecretRotationTarget::Secret { secret, .. } => secret.as_str().to_string(),
                SecretRotationTarget::Vault { vault, .. } => vault.as_str().to_string(),
                SecretRotationTarget::Subscription { subscription } => {
                    subscription.as_str().to_string()
                }
            },
            Parameters::RotateKey { target, .. } => match target {
                KeyRotationTarget::Key { key, .. } => key.as_str().to_string(),
                KeyRotationTarget::Vault { vault, .. } => vault.as_str().to_string(),
                KeyRotationTarget::Subscription { subscription } => {
                    subscription.as_str().to_string()
                }
            },
            Parameters::RotateCertificate { certificate, .. } => certificate.as_str().to_string(),
            Parameters::DisableSecret { secret, .. } => secret.as_str().to_string(),
        }
    }

    /// Joins what a second task with the same action and target adds (role assignments
    /// selected both by creator and by holder); everything else is the same by construction.
    pub fn absorb(&mut self, other: Parameters) {
        if let (
            Parameters::RemoveRoleAssignments {
                target:
                    RoleAssignmentTarget::InScope {
                        created_by,
                        assigned_to,
                        ..
                    },
            },
            Parameters::RemoveRoleAssignments {
                target:
                    RoleAssignmentTarget::InScope {
                        created_by: other_created,
                        assigned_to: other_assigned,
                        ..
                    },
            },
        ) = (self, other)
        {
            if created_by.is_none() {
                *created_by = other_created;
            }
            if assigned_to.is_none() {
                *assigned_to = other_assigned;
            }
        }
    }
}
