//! Response tasks: what goes on the `notification`, `isolation` and `rotation` queues, and their ids.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::alert::{SecurityAlert, Service};

/// Every step id of the playbook (`shared/spec/playbook.md`) that a task can carry out.
/// `KV-2`, `KV-4` and `ARM-2` are headings whose work is their lettered sub-steps; `DNS-2`
/// is a step of its own (isolate) as well as a heading.
pub const PLAYBOOK_STEPS: &[&str] = &[
    "KV-1", "KV-2a", "KV-2b", "KV-2c", "KV-3", "KV-4a", "KV-4b", "KV-4c", "DNS-1", "DNS-2",
    "DNS-2a", "DNS-2b", "DNS-2c", "DNS-2d", "ARM-1", "ARM-2a", "ARM-2b", "ARM-2c",
];

/// The three task queues of the playbook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Workers carry it out on receipt.
    Ready,
    /// Published for the record; the worker waits for the decision asked in a notification.
    PendingApproval,
}

/// A deterministic task id: the same alert, action and target always give the same id, so a
/// redelivered alert republishes the same ids and Service Bus duplicate detection drops them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// The alert a task came from, carried in every task so a worker needs nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRef {
    /// Defender's `systemAlertId` (the Service Bus correlation id).
    pub system_alert_id: String,
    /// The alert type as sent.
    pub alert_type: String,
    /// The service whose handler planned it.
    pub service: String,
    /// Severity name.
    pub severity: String,
    /// Status name.
    pub status: String,
    /// The resource the alert is about.
    pub resource: String,
    /// Link to the alert in the portal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alert_uri: Option<String>,
}

impl AlertRef {
    /// A Key Vault alert summary for unit tests.
    #[cfg(test)]
    pub(crate) fn sample(system_alert_id: &str) -> Self {
        AlertRef {
            system_alert_id: system_alert_id.to_string(),
            alert_type: "KV_UserAnomaly".into(),
            service: "key_vault".into(),
            severity: "Medium".into(),
            status: "Active".into(),
            resource: "kv".into(),
            alert_uri: None,
        }
    }

    /// Summarises an alert for the tasks planned from it.
    pub fn new(alert: &SecurityAlert, service: Service) -> Self {
        AlertRef {
            system_alert_id: alert.system_alert_id.clone(),
            alert_type: alert.alert_type.clone(),
            service: service.as_str().to_string(),
            severity: alert.severity.as_str().to_string(),
            status: alert.status.as_str().to_string(),
            resource: alert.resource_label(),
            alert_uri: alert.alert_uri.clone(),
        }
    }
}

/// One unit of response work. Serialised as-is into the queue message body.
///
/// Tasks carry identifiers of secrets (vault and name), never secret values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The queue it goes to (derived from the action).
    pub queue: Queue,
    /// What to do.
    pub action: Action,
    /// The playbook step ids it carries out, e.g. `["KV-2a"]`.
    pub steps: Vec<String>,
    /// What it acts on: a resource id, a principal, a secret URI, a person.
    pub target: String,
    /// Why, in words a person can check against the playbook.
    pub reason: String,
    /// Deterministic id (see [`MessageId`]).
    pub message_id: MessageId,
    /// When true, workers only report what they would do.
    pub dry_run: bool,
    /// Ready, or waiting for a decision.
    pub status: TaskStatus,
    /// The facts from the alert behind the task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
    /// Manual steps for a person (notification tasks), never dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checklist: Vec<String>,
    /// Who should receive a notification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// The alert it came from.
    pub alert: AlertRef,
}

impl Task {
    /// A ready, live task for `action` on `target`, carrying out `steps` for `reason`.
    pub fn new(
        alert: &AlertRef,
        action: Action,
        steps: &[&str],
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let target = target.into();
        Task {
            queue: action.queue(),
            action,
            steps: steps.iter().map(|step| step.to_string()).collect(),
            message_id: MessageId::derive(&alert.system_alert_id, action, &target),
            target,
            reason: reason.into(),
            dry_run: false,
            status: TaskStatus::Ready,
            facts: BTreeMap::new(),
            checklist: Vec::new(),
            recipients: Vec::new(),
            alert: alert.clone(),
        }
    }

    /// Adds a fact (skipped when the value is empty).
    pub fn fact(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.trim().is_empty() {
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
}
