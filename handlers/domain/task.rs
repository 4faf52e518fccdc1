//! Response tasks: what goes on the `notification`, `isolation` and `rotation` queues, and their ids.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::alert::{AlertStatus, SecurityAlert, ServiceName, Severity};
use super::ids::AzureResourceId;
use super::parameters::{Activity, Parameters, Subject};

/// The three task queues of the playbook.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Tell a person something.
    Notification,
    /// Cut access.
    Isolation,
    /// Replace credentials.
    Rotation,
}

impl Queue {
    /// Every queue, in a fixed order.
    pub const ALL: [Queue; 3] = [Queue::Notification, Queue::Isolation, Queue::Rotation];

    /// The default queue name.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Notification => "notification",
            Queue::Isolation => "isolation",
            Queue::Rotation => "rotation",
        }
    }

    /// Whether tasks on this queue change the environment (containment) rather than inform.
    pub fn is_containment(self) -> bool {
        !matches!(self, Queue::Notification)
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $queue:ident; )*) => {
        /// What a task asks a worker (or a person) to do. Snake_case in JSON.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Action {
            $( $(#[$doc])* $variant, )*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            /// The snake_case name.
            pub fn as_str(self) -> &'static str {
                match self { $(Action::$variant => $name,)* }
            }

            /// The queue tasks of this action go to.
            pub fn queue(self) -> Queue {
                match self { $(Action::$variant => Queue::$queue,)* }
            }
        }
    };
}

actions! {
    /// Ask the owner of the resource, user or application whether the activity was expected.
    ContactOwner => "contact_owner", Notification;
    /// Ask an application's administrator to audit use of an exposed credential.
    ContactAppOwner => "contact_app_owner", Notification;
    /// Contact the tenant administrator about a principal holding an Entra role.
    ContactTenantAdmin => "contact_tenant_admin", Notification;
    /// Ask a person to approve containment that the policy does not run automatically.
    RequestDecision => "request_decision", Notification;
    /// Tell the security team (the fallback for unknown alert types, and impact reports).
    NotifySecurityTeam => "notify_security_team", Notification;
    /// Tell the people involved that an alert changed status (closed, in progress).
    NotifyStatusChange => "notify_status_change", Notification;
    /// Turn on the Key Vault firewall: deny by default, allow trusted networks only.
    EnableKeyVaultFirewall => "enable_key_vault_firewall", Isolation;
    /// Remove a principal from a vault's access policy or RBAC, or restrict its operations.
    RestrictPrincipal => "restrict_principal", Isolation;
    /// Review (reduce or revoke) the Entra roles of a principal.
    ReviewEntraRoles => "review_entra_roles", Isolation;
    /// Isolate a resource from the network.
    IsolateResourceNetwork => "isolate_resource_network", Isolation;
    /// Remove suspicious role assignments or definitions.
    RemoveRoleAssignments => "remove_role_assignments", Isolation;
    /// Delete an account a threat actor may have created.
    DeleteUnfamiliarAccount => "delete_unfamiliar_account", Isolation;
    /// Disable an account pending investigation.
    DisableAccount => "disable_account", Isolation;
    /// Remove an unfamiliar Automation runbook or webhook.
    RemoveRunbook => "remove_runbook", Isolation;
    /// Revert a widened Key Vault access policy.
    RevertAccessPolicy => "revert_access_policy", Isolation;
    /// Rotate a secret.
    RotateSecret => "rotate_secret", Rotation;
    /// Rotate a key.
    RotateKey => "rotate_key", Rotation;
    /// Rotate a certificate.
    RotateCertificate => "rotate_certificate", Rotation;
    /// Rotate storage account keys.
    RotateStorageKeys => "rotate_storage_keys", Rotation;
    /// Rotate Automation account credentials and variables.
    RotateAutomationCredentials => "rotate_automation_credentials", Rotation;
    /// Disable (or delete) an exposed secret.
    DisableSecret => "disable_secret", Rotation;
    /// Change a familiar account's authentication credentials.
    ResetCredentials => "reset_credentials", Rotation;
    /// Change the passwords of all users on a virtual machine.
    ChangeVmPasswords => "change_vm_passwords", Rotation;
    /// Run a full antimalware scan on a machine.
    RunAntimalwareScan => "run_antimalware_scan", Isolation;
    /// Reimage a machine from a malware-free source.
    ReimageVm => "reimage_vm", Isolation;
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a task may be carried out now or waits for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Workers carry it out on receipt.
    Ready,
    /// Published for the record; the worker waits for the decision asked in a notification.
    PendingApproval,
}

/// A deterministic task id: the same alert, action and target always give the same id, so a
/// redelivered alert republishes the same ids and Service Bus duplicate detection drops them.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    /// Derives the id from the alert's `systemAlertId`, the action and the target.
    pub fn derive(system_alert_id: &str, action: Action, target: &str) -> Self {
        let mut hasher = Sha256::new();
        for part in [system_alert_id, action.as_str(), target] {
            hasher.update(part.as_bytes());
            // A separator that cannot appear in the parts keeps ("ab","c") apart from ("a","bc").
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        MessageId(format!("dr-{}", hex::encode(&digest[..16])))
    }

    /// The id as text (at most 128 characters, as Service Bus requires).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version of the task message format. A worker refuses a message of a version it does
/// not know rather than guess at its fields.
pub const SCHEMA_VERSION: u32 = 2;

/// The alert a task came from, carried in every task so a worker needs nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRef {
    /// Defender's `systemAlertId` (the Service Bus correlation id).
    pub system_alert_id: String,
    /// The alert type as sent.
    pub alert_type: String,
    /// The service whose handler planned it.
    pub service: ServiceName,
    /// Severity.
    pub severity: Severity,
    /// Status.
    pub status: AlertStatus,
    /// The resource the alert is about.
    pub resource: String,
    /// Link to the alert in the portal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alert_uri: Option<String>,
}

impl AlertRef {
    /// A Key Vault alert summary, for tests and examples.
    pub fn sample(system_alert_id: &str) -> Self {
        AlertRef {
            system_alert_id: system_alert_id.to_string(),
            alert_type: "KV_UserAnomaly".into(),
            service: ServiceName::new("key_vault"),
            severity: Severity::Medium,
            status: AlertStatus::Active,
            resource: "kv".into(),
            alert_uri: None,
        }
    }

    /// Summarises an alert for the tasks planned from it.
    pub fn new(alert: &SecurityAlert, service: ServiceName) -> Self {
        AlertRef {
            system_alert_id: alert.system_alert_id.clone(),
            alert_type: alert.alert_type.clone(),
            service,
            severity: alert.severity,
            status: alert.status,
            resource: alert.resource_label(),
            alert_uri: alert.alert_uri.clone(),
        }
    }
}

/// How the policy decided a containment task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyDecision {
    /// The mode: `auto`, `approval` (or `notify_only`, never published).
    pub mode: String,
    /// The rule that decided: `automation[N]`, `built-in default` or `default_mode`.
    pub rule: String,
    /// True when the responder's own identity caused the alert: never automatic, always a dry run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loop_protection: bool,
}

/// One unit of response work. Serialised as-is into the queue message body; the JSON Schema
/// is `docs/task.schema.json` and `docs/tasks.md` describes each action.
///
/// Tasks carry identifiers of secrets (vault and name), never secret values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "TaskMessage")]
pub struct Task {
    /// The message format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The queue it goes to (derived from the action).
    pub queue: Queue,
    /// What to do (the tag of [`Task::parameters`]; serialised by it).
    #[serde(skip_serializing)]
    pub action: Action,
    /// The action and its typed parameters: `"action": "…", "parameters": {…}`.
    #[serde(flatten)]
    pub parameters: Parameters,
    /// The playbook step ids it carries out, e.g. `["KV-2a"]`.
    pub steps: Vec<String>,
    /// What it acts on, as text: a resource id, a principal, a secret URI. The message id is
    /// derived from it; the typed target is in the parameters.
    pub target: String,
    /// Why, in words a person can check against the playbook.
    pub reason: String,
    /// Deterministic id (see [`MessageId`]).
    pub message_id: MessageId,
    /// When true, workers only report what they would do.
    pub dry_run: bool,
    /// Ready, or waiting for a decision.
    pub status: TaskStatus,
    /// How the policy decided (containment tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDecision>,
    /// What the alert says happened (who, from where, which operations, when).
    #[serde(default, skip_serializing_if = "Activity::is_empty")]
    pub activity: Activity,
    /// Facts for the message a person reads (notification tasks only; never instructions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    /// Manual steps for a person (notification tasks), never dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checklist: Vec<String>,
    /// Who should receive a notification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// Tasks of the same plan to settle before this one runs: a vault's rotations before its
    /// firewall closes (the rotations need to reach the vault).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_after: Vec<MessageId>,
    /// The alert it came from.
    pub alert: AlertRef,
}

/// A task as the message holds it (the action only as the parameters' tag).
#[derive(Deserialize, JsonSchema)]
#[schemars(title = "Task", description = "One defender-responder task message.")]
struct TaskMessage {
    /// The message format version.
    #[schemars(range(min = 2, max = 2))]
    schema_version: u32,
    /// The queue.
    queue: Queue,
    /// The action and its typed parameters.
    #[serde(flatten)]
    parameters: Parameters,
    /// Playbook step ids.
    steps: Vec<String>,
    /// The target as text.
    target: String,
    /// Why.
    reason: String,
    /// Deterministic id.
    message_id: MessageId,
    /// Dry run.
    dry_run: bool,
    /// Ready or pending approval.
    status: TaskStatus,
    /// How the policy decided.
    #[serde(default)]
    policy: Option<PolicyDecision>,
    /// What happened.
    #[serde(default)]
    activity: Activity,
    /// Facts for people.
    #[serde(default)]
    facts: BTreeMap<String, String>,
    /// Manual steps.
    #[serde(default)]
    checklist: Vec<String>,
    /// Recipients.
    #[serde(default)]
    recipients: Vec<String>,
    /// Tasks to settle first.
    #[serde(default)]
    run_after: Vec<MessageId>,
    /// The alert.
    alert: AlertRef,
}

impl TryFrom<TaskMessage> for Task {
    type Error = String;

    fn try_from(message: TaskMessage) -> Result<Self, Self::Error> {
        if message.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} is not {SCHEMA_VERSION}",
                message.schema_version
            ));
        }
        let action = message.parameters.action();
        if message.queue != action.queue() {
            return Err(format!(
                "queue {} does not carry {action} (it goes to {})",
                message.queue,
                action.queue()
            ));
        }
        Ok(Task {
            schema_version: message.schema_version,
            queue: message.queue,
            action,
            parameters: message.parameters,
            steps: message.steps,
            target: message.target,
            reason: message.reason,
            message_id: message.message_id,
            dry_run: message.dry_run,
            status: message.status,
            policy: message.policy,
            activity: message.activity,
            facts: message.facts,
            checklist: message.checklist,
            recipients: message.recipients,
            run_after: message.run_after,
            alert: message.alert,
        })
    }
}

impl Task {
    /// A ready, live task with these parameters, carrying out `steps` for `reason`. The
    /// target text (and so the message id) comes from the parameters.
    pub fn new(
        alert: &AlertRef,
        parameters: Parameters,
        steps: &[&str],
        reason: impl Into<String>,
    ) -> Self {
        let action = parameters.action();
        let target = parameters.target();
        Task {
            schema_version: SCHEMA_VERSION,
            queue: action.queue(),
            action,
            message_id: MessageId::derive(&alert.system_alert_id, action, &target),
            parameters,
            steps: steps.iter().map(|step| step.to_string()).collect(),
            target,
            reason: reason.into(),
            dry_run: false,
            status: TaskStatus::Ready,
            policy: None,
            activity: Activity::default(),
            facts: BTreeMap::new(),
            checklist: Vec::new(),
            recipients: Vec::new(),
            run_after: Vec::new(),
            alert: alert.clone(),
        }
    }

    /// The Key Vault this task acts on or in, by name (lower case): a vault's ARM id, or the
    /// host of a secret, key or certificate URI (`https://{vault}.vault.azure.net/…`).
    pub fn key_vault_name(&self) -> Option<String> {
        key_vault_name(&self.target)
    }

    /// An example task of `action` with valid parameters named after `label` (any text:
    /// it is reduced to letters, digits and `-`), for tests and benchmarks of the adapters.
    pub fn example(
        alert: &AlertRef,
        action: Action,
        steps: &[&str],
        label: &str,
        reason: impl Into<String>,
    ) -> Self {
        use super::ids::{
            CertificateUri, Guid, KeyUri, KeyVaultId, PersonAddress, PrincipalKind, PrincipalRef,
            SecretUri,
        };
        use super::parameters::{
            FirewallBypass, FirewallDefault, KeyRotationTarget, ResourceTarget,
            RoleAssignmentTarget, ScanType, SecretRotationTarget,
        };
        let name: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let name = if name.trim_matches('-').is_empty() {
            "x".to_string()
        } else {
            name
        };
        let digest = Sha256::digest(label.as_bytes());
        let hex = hex::encode(&digest[..16]);
        let guid = format!(
            "{}-{}-4{}-8{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32]
        );
        let sub = "/subscriptions/00000000-0000-0000-0000-00000000e1a0";
        let parse = |text: &str| AzureResourceId::parse(text).unwrap_or_else(|err| panic!("{err}"));
        let vault = KeyVaultId::parse(&format!(
            "{sub}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{name}"
        ))
        .unwrap_or_else(|err| panic!("{err}"));
        let vm = parse(&format!(
            "{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"
        ));
        let principal = PrincipalRef::ObjectId {
            object_id: Guid::parse(&guid).unwrap_or_else(|err| panic!("{err}")),
            kind: PrincipalKind::User,
            user_principal_name: PersonAddress::parse(&format!("{name}@example.com")).ok(),
        };
        let secret = SecretUri::parse(&format!("https://kv.vault.azure.net/secrets/{name}"))
            .unwrap_or_else(|err| panic!("{err}"));
        let machine = ResourceTarget::Resource {
            resource: vm.clone(),
        };
        let parameters = match action {
            Action::ContactOwner => Parameters::ContactOwner { subject: Subject::Name(label.to_string()), owner_lookup: None },
            Action::ContactAppOwner => Parameters::ContactAppOwner { application_id: None, subject: Subject::Name(label.to_string()) },
            Action::ContactTenantAdmin => Parameters::ContactTenantAdmin { principal, entra_roles: Vec::new() },
            Action::RequestDecision => Parameters::RequestDecision { subject: Subject::Name(label.to_string()), pending: Vec::new(), notify_only: Vec::new() },
            Action::NotifySecurityTeam => Parameters::NotifySecurityTeam { subject: Subject::Name(label.to_string()) },
            Action::NotifyStatusChange => Parameters::NotifyStatusChange { subject: Subject::Name(label.to_string()), new_status: AlertStatus::Resolved, cancel_pending_for_alert: alert.system_alert_id.clone(), cancelled: Vec::new() },
            Action::EnableKeyVaultFirewall => Parameters::EnableKeyVaultFirewall { vault, default_action: FirewallDefault::Deny, bypass: FirewallBypass::AzureServices, allow_ip_ranges: Vec::new(), allow_virtual_networks: Vec::new(), block_addresses: Vec::new() },
            Action::RestrictPrincipal => Parameters::RestrictPrincipal { vault, principal },
            Action::ReviewEntraRoles => Parameters::ReviewEntraRoles { principal, entra_roles: vec!["Global Reader".into()] },
            Action::IsolateResourceNetwork => Parameters::IsolateResourceNetwork { resource: vm },
            Action::RemoveRoleAssignments => Parameters::RemoveRoleAssignments { target: RoleAssignmentTarget::Named { id: parse(&format!("{sub}/providers/Microsoft.Authorization/roleAssignments/{guid}")) } },
            Action::DeleteUnfamiliarAccount => Parameters::DeleteUnfamiliarAccount { principal },
            Action::DisableAccount => Parameters::DisableAccount { principal },
            Action::RemoveRunbook => Parameters::RemoveRunbook { target: ResourceTarget::Resource { resource: parse(&format!("{sub}/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/{name}")) }, created_by: None },
            Action::RevertAccessPolicy => Parameters::RevertAccessPolicy { vault, changed_by: None },
            Action::RotateSecret => Parameters::RotateSecret { target: SecretRotationTarget::Secret { secret, versions_read: Vec::new() }, read_by: None },
            Action::RotateKey => Parameters::RotateKey { target: KeyRotationTarget::Key { key: KeyUri::parse(&format!("https://kv.vault.azure.net/keys/{name}")).unwrap_or_else(|err| panic!("{err}")), versions_read: Vec::new() }, read_by: None },
            Action::RotateCertificate => Parameters::RotateCertificate { certificate: CertificateUri::parse(&format!("https://kv.vault.azure.net/certificates/{name}")).unwrap_or_else(|err| panic!("{err}")), versions_read: Vec::new() },
            Action::RotateStorageKeys => Parameters::RotateStorageKeys { target: ResourceTarget::Resource { resource: parse(&format!("{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{}", name.replace('-', ""))) }, key_names: Vec::new() },
            Action::RotateAutomationCredentials => Parameters::RotateAutomationCredentials { target: ResourceTarget::Resource { resource: parse(&format!("{sub}/resourceGroups/rg/providers/Microsoft.Automation/automationAccounts/{name}")) } },
            Action::DisableSecret => Parameters::DisableSecret { secret, versions_read: Vec::new() },
            Action::ResetCredentials => Parameters::ResetCredentials { principal },
            Action::ChangeVmPasswords => Parameters::ChangeVmPasswords { target: machine },
            Action::RunAntimalwareScan => Parameters::RunAntimalwareScan { target: machine, scan_type: ScanType::Full },
            Action::ReimageVm => Parameters::ReimageVm { target: machine },
        };
        Task::new(alert, parameters, steps, reason)
    }

    /// A notification to the security team about `subject`, for tests and examples.
    pub fn notice(alert: &AlertRef, subject: &str, reason: impl Into<String>) -> Self {
        Task::new(
            alert,
            Parameters::NotifySecurityTeam {
                subject: Subject::from_label(subject),
            },
            &["GEN-1"],
            reason,
        )
    }

    /// Sets what the alert says happened.
    pub fn activity(mut self, activity: Activity) -> Self {
        self.activity = activity;
        self
    }

    /// Adds a fact for the people a notification goes to (skipped when the value is empty,
    /// and on containment tasks, which carry typed parameters only).
    pub fn fact(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.trim().is_empty() && !self.queue.is_containment() {
            self.facts.insert(name.to_string(), value);
        }
        self
    }

    /// Adds manual checklist items.
    pub fn checklist<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.checklist.extend(items.into_iter().map(Into::into));
        self
    }

    /// Adds notification recipients.
    pub fn recipients<I, S>(mut self, people: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.recipients.extend(people.into_iter().map(Into::into));
        self
    }
}

/// The JSON Schema of a task message, generated from the types (committed as
/// `docs/task.schema.json`; a test keeps the two equal).
pub fn task_json_schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Task>();
    schema.to_value()
}

/// The Key Vault a target text names, by name (lower case): a vault's ARM id (or an id below
/// it), or the host of a vault object URI.
pub fn key_vault_name(target: &str) -> Option<String> {
    let lower = target.to_ascii_lowercase();
    let marker = "/providers/microsoft.keyvault/vaults/";
    if let Some(start) = lower.find(marker) {
        let rest = &lower[start + marker.len()..];
        return Some(rest.split('/').next().unwrap_or("").to_string()).filter(|n| !n.is_empty());
    }
    let host = lower.strip_prefix("https://")?.split(['/', ':']).next()?;
    let (name, domain) = host.split_once('.')?;
    domain.starts_with("vault.").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_deterministic_and_distinct() {
        let a = MessageId::derive("sys-1", Action::RotateSecret, "https://kv/secrets/a");
        assert_eq!(
            a,
            MessageId::derive("sys-1", Action::RotateSecret, "https://kv/secrets/a")
        );
        assert_ne!(
            a,
            MessageId::derive("sys-2", Action::RotateSecret, "https://kv/secrets/a")
        );
        assert_ne!(
            a,
            MessageId::derive("sys-1", Action::RotateKey, "https://kv/secrets/a")
        );
        assert_ne!(
            a,
            MessageId::derive("sys-1", Action::RotateSecret, "https://kv/secrets/b")
        );
        assert_eq!(a.as_str().len(), 35);
        // Pinned against python3: sha256(b"x\0contact_owner\0y\0")[:16]. Changing the derivation
        // would republish every redelivered task under new ids.
        assert_eq!(
            MessageId::derive("x", Action::ContactOwner, "y").as_str(),
            "dr-8b880f9a2ab09913323835abda24d666"
        );
    }

    #[test]
    fn every_action_names_its_queue_and_round_trips() {
        for action in Action::ALL {
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            let back: Action = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *action);
        }
        assert_eq!(Action::EnableKeyVaultFirewall.queue(), Queue::Isolation);
        assert_eq!(Action::RotateSecret.queue(), Queue::Rotation);
        assert_eq!(Action::ContactOwner.queue(), Queue::Notification);
    }

    #[test]
    fn the_key_vault_of_a_target_is_found_by_id_or_uri() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/KV-Pay";
        assert_eq!(key_vault_name(id).as_deref(), Some("kv-pay"));
        assert_eq!(
            key_vault_name("https://kv-pay.vault.azure.net/secrets/db").as_deref(),
            Some("kv-pay")
        );
        assert_eq!(key_vault_name("https://example.com/secrets/db"), None);
        assert_eq!(key_vault_name("mallory@fabrikam.com"), None);
    }
}
