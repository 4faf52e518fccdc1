//! Defender for Resource Manager alerts → playbook steps ARM-1 … ARM-2c (and KV-4a for vault dumps).

use super::facts::{self, Principal};
use super::{owner_lookup, PlanInput, ServiceHandler};
use crate::domain::catalog::{entry, CatalogEntry, Traits};
use crate::domain::parameters::{
    KeyRotationTarget, ResourceTarget, RoleAssignmentTarget, ScanType, SecretRotationTarget,
    StorageKeyName,
};
use crate::domain::{
    Action, Activity, AzureResourceId, KeyVaultId, Parameters, ResponsePlan, SecurityAlert,
    ServiceName, Severity, Subject, SubscriptionScope, Task, TimeWindow,
};

/// The Resource Manager handler.
pub struct ResourceManager;

impl ResourceManager {
    /// The name tasks, reports and message properties carry for Resource Manager alerts.
    pub const NAME: ServiceName = ServiceName::new("resource_manager");
}

/// The documented alert types this handler owns (alert-catalog.md).
#[rustfmt::skip]
pub(crate) const CATALOG: &[CatalogEntry] = &[
    entry("ARM_OperationFromSuspiciousIP", ResourceManager::NAME, Severity::Medium, "Execution", "Azure Resource Manager operation from suspicious IP address", Traits::NONE),
    entry("ARM_OperationFromSuspiciousProxyIP", ResourceManager::NAME, Severity::Medium, "Defense Evasion", "Azure Resource Manager operation from suspicious proxy IP address", Traits::NONE),
    entry("ARM_MicroBurst.AzDomainInfo", ResourceManager::NAME, Severity::Low, "-", "MicroBurst exploitation toolkit used to enumerate resources in your subscriptions", Traits::NONE),
    entry("ARM_MicroBurst.AzureDomainInfo", ResourceManager::NAME, Severity::Low, "-", "MicroBurst exploitation toolkit used to enumerate resources in your subscriptions", Traits::NONE),
    entry("ARM_MicroBurst.AzVMBulkCMD", ResourceManager::NAME, Severity::High, "Execution", "MicroBurst exploitation toolkit used to execute code on your virtual machine", Traits::VM_COMPROMISE),
    entry("RM_MicroBurst.AzureRmVMBulkCMD", ResourceManager::NAME, Severity::High, "-", "MicroBurst exploitation toolkit used to execute code on your virtual machine", Traits::VM_COMPROMISE),
    entry("ARM_MicroBurst.AzKeyVaultKeysREST", ResourceManager::NAME, Severity::High, "-", "MicroBurst exploitation toolkit used to extract keys from your Azure key vaults", Traits::KEY_VAULT_DUMP),
    entry("ARM_MicroBurst.AZStorageKeysREST", ResourceManager::NAME, Severity::High, "Collection", "MicroBurst exploitation toolkit used to extract keys to your storage accounts", Traits::STORAGE_KEYS),
    entry("ARM_MicroBurst.AzKeyVaultSecretsREST", ResourceManager::NAME, Severity::High, "-", "MicroBurst exploitation toolkit used to extract secrets from your Azure key vaults", Traits::KEY_VAULT_DUMP),
    entry("ARM_PowerZure.AzureElevatedPrivileges", ResourceManager::NAME, Severity::High, "-", "PowerZure exploitation toolkit used to elevate access from Azure AD to Azure", Traits::ROLE_CHANGE),
    entry("ARM_PowerZure.GetAzureTargets", ResourceManager::NAME, Severity::High, "Collection", "PowerZure exploitation toolkit used to enumerate resources", Traits::NONE),
    entry("ARM_PowerZure.ShowStorageContent", ResourceManager::NAME, Severity::High, "-", "PowerZure exploitation toolkit used to enumerate storage containers, shares, and tables", Traits::NONE),
    entry("ARM_PowerZure.StartRunbook", ResourceManager::NAME, Severity::High, "-", "PowerZure exploitation toolkit used to execute a Runbook in your subscription", Traits::AUTOMATION),
    entry("ARM_PowerZure.AzureRunbookContent", ResourceManager::NAME, Severity::High, "Collection", "PowerZure exploitation toolkit used to extract Runbooks content", Traits::AUTOMATION),
    entry("ARM_Azurite", ResourceManager::NAME, Severity::High, "Collection", "PREVIEW - Azurite toolkit run detected", Traits::NONE),
    entry("ARM_SuspiciousComputeCreation", ResourceManager::NAME, Severity::Medium, "Impact", "PREVIEW - Suspicious creation of compute resources detected", Traits::VM_COMPROMISE),
    entry("Arm_Suspicious_Vault_Recovering", ResourceManager::NAME, Severity::Medium, "Lateral movement", "PREVIEW - Suspicious key vault recovery detected", Traits::KEY_VAULT_DUMP),
    entry("ARM_UnusedAccountPersistence", ResourceManager::NAME, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using an inactive account detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.CredentialAccess", ResourceManager::NAME, Severity::Medium, "Credential access", "PREVIEW - Suspicious invocation of a high-risk 'Credential Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Collection", ResourceManager::NAME, Severity::Medium, "Collection", "PREVIEW - Suspicious invocation of a high-risk 'Data Collection' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.DefenseEvasion", ResourceManager::NAME, Severity::Medium, "Defense Evasion", "PREVIEW - Suspicious invocation of a high-risk 'Defense Evasion' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Execution", ResourceManager::NAME, Severity::Medium, "Defense Execution (sic; doc typo for Execution)", "PREVIEW - Suspicious invocation of a high-risk 'Execution' operation by a service principal detected", Traits::VM_COMPROMISE),
    entry("ARM_AnomalousServiceOperation.Impact", ResourceManager::NAME, Severity::Medium, "Impact", "PREVIEW - Suspicious invocation of a high-risk 'Impact' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.InitialAccess", ResourceManager::NAME, Severity::Medium, "Initial access", "PREVIEW - Suspicious invocation of a high-risk 'Initial Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.LateralMovement", ResourceManager::NAME, Severity::Medium, "Lateral movement", "PREVIEW - Suspicious invocation of a high-risk 'Lateral Movement Access' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.Persistence", ResourceManager::NAME, Severity::Medium, "Persistence", "PREVIEW - Suspicious invocation of a high-risk 'persistence' operation by a service principal detected", Traits::NONE),
    entry("ARM_AnomalousServiceOperation.PrivilegeEscalation", ResourceManager::NAME, Severity::Medium, "Privilege escalation", "PREVIEW - Suspicious invocation of a high-risk 'Privilege Escalation' operation by a service principal detected", Traits::ROLE_CHANGE),
    entry("ARM_UnusedAppPowershellPersistence", ResourceManager::NAME, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using PowerShell detected", Traits::NONE),
    entry("ARM_UnusedAppIbizaPersistence", ResourceManager::NAME, Severity::Medium, "Persistence", "PREVIEW - Suspicious management session using Azure portal detected", Traits::NONE),
    entry("ARM_PrivilegedRoleDefinitionCreation", ResourceManager::NAME, Severity::Informational, "Privilege Escalation, Defense Evasion", "Privileged custom role created for your subscription in a suspicious way (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousRBACRoleAssignment", ResourceManager::NAME, Severity::Low, "Lateral Movement, Defense Evasion", "Suspicious Azure role assignment detected (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousOperation.CredentialAccess", ResourceManager::NAME, Severity::Medium, "Credential Access", "Suspicious invocation of a high-risk 'Credential Access' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.Collection", ResourceManager::NAME, Severity::Medium, "Collection", "Suspicious invocation of a high-risk 'Data Collection' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.DefenseEvasion", ResourceManager::NAME, Severity::Medium, "Defense Evasion", "Suspicious invocation of a high-risk 'Defense Evasion' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.Execution", ResourceManager::NAME, Severity::Medium, "Execution", "Suspicious invocation of a high-risk 'Execution' operation detected (Preview)", Traits::VM_COMPROMISE),
    entry("ARM_AnomalousOperation.Impact", ResourceManager::NAME, Severity::Medium, "Impact", "Suspicious invocation of a high-risk 'Impact' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.InitialAccess", ResourceManager::NAME, Severity::Medium, "Initial Access", "Suspicious invocation of a high-risk 'Initial Access' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.LateralMovement", ResourceManager::NAME, Severity::Medium, "Lateral Movement", "Suspicious invocation of a high-risk 'Lateral Movement' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousElevateAccess", ResourceManager::NAME, Severity::Medium, "Privilege Escalation", "Suspicious elevate access operation (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_AnomalousOperation.Persistence", ResourceManager::NAME, Severity::Medium, "Persistence", "Suspicious invocation of a high-risk 'Persistence' operation detected (Preview)", Traits::NONE),
    entry("ARM_AnomalousOperation.PrivilegeEscalation", ResourceManager::NAME, Severity::Medium, "Privilege Escalation", "Suspicious invocation of a high-risk 'Privilege Escalation' operation detected (Preview)", Traits::ROLE_CHANGE),
    entry("ARM_MicroBurst.RunCodeOnBehalf", ResourceManager::NAME, Severity::High, "Persistence, Credential Access", "Usage of MicroBurst exploitation toolkit to run an arbitrary code or exfiltrate Azure Automation account credentials", Traits::AUTOMATION),
    entry("ARM_NetSPI.MaintainPersistence", ResourceManager::NAME, Severity::High, "-", "Usage of NetSPI techniques to maintain persistence in your Azure environment", Traits::AUTOMATION),
    entry("ARM_PowerZure.RunCodeOnBehalf", ResourceManager::NAME, Severity::High, "-", "Usage of PowerZure exploitation toolkit to run an arbitrary code or exfiltrate Azure Automation account credentials", Traits::AUTOMATION),
    entry("ARM_PowerZure.MaintainPersistence", ResourceManager::NAME, Severity::High, "-", "Usage of PowerZure function to maintain persistence in your Azure environment", Traits::AUTOMATION),
    entry("ARM_AnomalousClassicRoleAssignment", ResourceManager::NAME, Severity::High, "Lateral Movement, Defense Evasion", "Suspicious classic role assignment detected (Preview)", Traits::ROLE_CHANGE),
];

/// The facts the Resource Manager steps need.
struct ArmFacts {
    principal: Principal,
    ips: Vec<String>,
    client_application: Option<String>,
    user_agent: Option<String>,
    window: Option<TimeWindow>,
    subscription: Option<String>,
    /// The scope the alert is about (its resource, else the subscription).
    scope: Option<AzureResourceId>,
    scope_label: String,
    /// The subscription as a scope (`/subscriptions/<id>`), else the alert's scope: where
    /// IAM, Automation accounts and the other ARM-2b reviews happen.
    subscription_label: String,
    operations: Vec<String>,
    vms: Vec<AzureResourceId>,
    automation: Vec<AzureResourceId>,
    role_objects: Vec<AzureResourceId>,
    key_vaults: Vec<AzureResourceId>,
    storage_accounts: Vec<AzureResourceId>,
}

fn contains_segment(id: &AzureResourceId, segment: &str) -> bool {
    id.as_str()
        .to_ascii_lowercase()
        .contains(&segment.to_ascii_lowercase())
}

impl ArmFacts {
    fn from(alert: &SecurityAlert) -> Self {
        let ids = facts::resource_ids(alert);
        let pick = |test: &dyn Fn(&AzureResourceId) -> bool| -> Vec<AzureResourceId> {
            ids.iter().filter(|id| test(id)).cloned().collect()
        };
        let subscription = alert.subscription_id().map(str::to_string);
        let scope = alert.resource_id.clone().or_else(|| {
            subscription
                .as_deref()
                .and_then(|sub| AzureResourceId::parse(&format!("/subscriptions/{sub}")).ok())
        });
        let scope_label = scope
            .as_ref()
            .map(|id| id.as_str().to_string())
            .unwrap_or_else(|| alert.resource_label());
        let subscription_label = subscription
            .as_deref()
            .map(|sub| format!("/subscriptions/{sub}"))
            .unwrap_or_else(|| scope_label.clone());
        let mut principal = facts::principal(
            alert,
            &["Object ID", "Attacker Object ID", "principal ID"],
            &[
                "User principal name",
                "User Principal Name",
                "Client principal name",
            ],
        );
        // `Client principal name` names a service principal (not a UPN): the best label.
        if let (None, Some(name)) = (&principal.upn, alert.extended("Client principal name")) {
            principal.name = Some(name.to_string());
        }
        // The AnomalousServiceOperation types are "by a service principal" by definition.
        principal.service_principal = alert
            .base_alert_type()
            .to_ascii_lowercase()
            .starts_with("arm_anomalousserviceoperation.");
        ArmFacts {
            principal,
            ips: facts::ips(alert, &["Client IP address", "Attacker IP Address"]),
            client_application: alert.extended("Client application").map(str::to_string),
            user_agent: alert.extended("user Agent").map(str::to_string),
            window: TimeWindow::new(alert.start_time.clone(), alert.end_time.clone()),
            subscription,
            scope,
            scope_label,
            subscription_label,
            operations: alert
                .extended("Operations")
                .map(facts::split_list)
                .unwrap_or_default(),
            vms: pick(&|id| id.is_type("Microsoft.Compute/virtualMachines")),
            automation: pick(&|id| id.is_type("Microsoft.Automation/automationAccounts")),
            role_objects: pick(&|id| {
                contains_segment(id, "/providers/Microsoft.Authorization/roleAssignments/")
                    || contains_segment(id, "/providers/Microsoft.Authorization/roleDefinitions/")
            }),
            key_vaults: pick(&|id| id.is_type("Microsoft.KeyVault/vaults")),
            storage_accounts: pick(&|id| id.is_type("Microsoft.Storage/storageAccounts")),
        }
    }

    fn who(&self) -> String {
        self.principal.label()
    }

    fn operations_text(&self) -> String {
        if self.operations.is_empty() {
            "the operations behind the alert".to_string()
        } else {
            self.operations.join(", ")
        }
    }

    fn activity(&self) -> Activity {
        Activity {
            principal: self.principal.reference(),
            application_id: self.principal.app_id.clone(),
            caller_ips: facts::typed_ips(&self.ips),
            operations: self.operations.clone(),
            window: self.window.clone(),
        }
    }

    /// The subscription scope as an id (where IAM and the other ARM-2b reviews happen).
    fn subscription_scope(&self) -> Option<AzureResourceId> {
        AzureResourceId::parse(&self.subscription_label).ok()
    }

    fn facts(&self, task: Task) -> Task {
        task.activity(self.activity())
            .fact("caller", self.principal.label())
            .fact(
                "object_id",
                self.principal
                    .object_id
                    .as_ref()
                    .map(|id| id.as_str().to_string())
                    .unwrap_or_default(),
            )
            .fact(
                "user_principal_name",
                self.principal.upn.clone().unwrap_or_default(),
            )
            .fact(
                "application_id",
                self.principal
                    .app_id
                    .as_ref()
                    .map(|id| id.as_str().to_string())
                    .unwrap_or_default(),
            )
            .fact("user_agent", self.user_agent.clone().unwrap_or_default())
            .fact(
                "tenant_id",
                self.principal.tenant_id.clone().unwrap_or_default(),
            )
            .fact("caller_ips", self.ips.join(", "))
            .fact(
                "client_application",
                self.client_application.clone().unwrap_or_default(),
            )
            .fact(
                "subscription",
                self.subscription.clone().unwrap_or_default(),
            )
            .fact("operations", self.operations.join("; "))
    }
}

impl ServiceHandler for ResourceManager {
    fn service(&self) -> ServiceName {
        ResourceManager::NAME
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        CATALOG
    }

    fn steps(&self) -> &'static [&'static str] {
        &["ARM-1", "ARM-2a", "ARM-2b", "ARM-2c", "KV-4a"]
    }

    fn contact_step(&self) -> &'static str {
        "ARM-1"
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let traits = input.entry.map(|entry| entry.traits).unwrap_or_default();
        let f = ArmFacts::from(alert);
        let mut plan = ResponsePlan::new();
        contact(input, &f, &mut plan);
        accounts(input, &f, &mut plan);
        subscription(input, &f, traits, &mut plan);
        if traits.contains(Traits::VM_COMPROMISE) {
            machines(input, &f, &mut plan);
        }
        plan
    }
}

/// ARM-1, with the manual review items of ARM-2a/2b as the owner's checklist.
fn contact(input: &PlanInput<'_>, f: &ArmFacts, plan: &mut ResponsePlan) {
    let alert = input.alert;
    let what = alert
        .display_name
        .clone()
        .unwrap_or_else(|| alert.alert_type.clone());
    let scope = &f.scope_label;
    let subscription = &f.subscription_label;
    let who = f.who();
    let from = if f.ips.is_empty() {
        String::new()
    } else {
        format!(" from {}", f.ips.join(", "))
    };
    let checklist = vec![
        "ARM-1: if the activity was expected or intentional, dismiss the alert in Defender for Cloud and reject the pending containment tasks.".to_string(),
        "ARM-1: if not, treat the related user accounts, subscriptions and virtual machines as compromised: containment (ARM-2) follows.".to_string(),
        format!("ARM-2a: review every activity {who} performed in the Azure activity log and identify anything suspicious."),
        format!("ARM-2b: review the IAM permissions of {subscription} and remove the permissions of every unfamiliar user account."),
        format!("ARM-2b: review all resources in {subscription} and remove the unfamiliar ones."),
        format!("ARM-2b: review and investigate the Defender for Cloud security alerts for {subscription}."),
        format!("ARM-2b: review every activity in {subscription} in the Azure activity log and identify anything suspicious."),
    ];
    let task = Task::new(
        input.alert_ref,
        Parameters::ContactOwner {
            subject: Subject::from_label(scope),
            owner_lookup: owner_lookup(input.policy, f.scope.as_ref()),
        },
        &["ARM-1", "ARM-2a", "ARM-2b"],
        format!(
            "ARM-1: {who}{from} performed {} ({what}) in {scope}; ask the owner whether this activity was expected or intentional.",
            f.operations_text()
        ),
    )
    .fact("alert_display_name", what.clone())
    .checklist(checklist)
    .recipients(input.policy.recipients_for(f.scope.as_ref()));
    plan.push(f.facts(task));
}

/// ARM-2a: delete an unfamiliar account, or change a familiar one's credentials.
fn accounts(input: &PlanInput<'_>, f: &ArmFacts, plan: &mut ResponsePlan) {
    let Some(principal) = f.principal.reference() else {
        return;
    };
    let who = f.who();
    let task = match input.policy.known_principal(f.principal.ids()) {
        Some(known) => Task::new(
            input.alert_ref,
            Parameters::ResetCredentials { principal },
            &["ARM-2a"],
            format!(
                "ARM-2a: {who} is a familiar account (known principal {}); if the activity was not expected, change its authentication credentials.",
                known.name.as_deref().unwrap_or(&known.id)
            ),
        ),
        None => Task::new(
            input.alert_ref,
            Parameters::DeleteUnfamiliarAccount { principal },
            &["ARM-2a"],
            format!(
                "ARM-2a: {who} is not among the policy's known principals; if the activity was not expected, delete the account (a threat actor may have created it)."
            ),
        ),
    };
    plan.push(f.facts(task));
}

/// The named resources of a kind, or the subscription scope when the alert names none.
fn resource_targets(
    f: &ArmFacts,
    found: &[AzureResourceId],
) -> Vec<(Option<ResourceTarget>, String, bool)> {
    if found.is_empty() {
        let target = f
            .subscription_scope()
            .map(|scope| ResourceTarget::InScope { scope });
        vec![(target, f.subscription_label.clone(), false)]
    } else {
        found
            .iter()
            .map(|id| {
                (
                    Some(ResourceTarget::Resource {
                        resource: id.clone(),
                    }),
                    id.as_str().to_string(),
                    true,
                )
            })
            .collect()
    }
}

/// Pushes a task when its target is exact, else the step as a manual item.
fn push_or_manual(
    plan: &mut ResponsePlan,
    f: &ArmFacts,
    input: &PlanInput<'_>,
    parameters: Option<Parameters>,
    action: Action,
    steps: &[&str],
    reason: String,
) {
    match parameters {
        Some(parameters) => {
            plan.push(f.facts(Task::new(input.alert_ref, parameters, steps, reason)))
        }
        None => plan.push_manual(steps, action, reason),
    }
}

/// ARM-2b: runbooks, role assignments, and the credentials the alert says were taken.
fn subscription(input: &PlanInput<'_>, f: &ArmFacts, traits: Traits, plan: &mut ResponsePlan) {
    let who = f.who();
    let scope = &f.subscription_label;
    let principal = f.principal.reference();
    if traits.contains(Traits::AUTOMATION) {
        for (target, label, named) in resource_targets(f, &f.automation) {
            let subject = if named {
                format!("Automation account {label}")
            } else {
                format!("every Automation account in {label}")
            };
            push_or_manual(
                plan,
                f,
                input,
                target.clone().map(|target| Parameters::RemoveRunbook {
                    target,
                    created_by: principal.clone(),
                }),
                Action::RemoveRunbook,
                &["ARM-2b"],
                format!(
                    "ARM-2b: {who} used Automation ({}); remove the unfamiliar runbooks and webhooks from {subject}.",
                    f.operations_text()
                ),
            );
            push_or_manual(
                plan,
                f,
                input,
                target.map(|target| Parameters::RotateAutomationCredentials { target }),
                Action::RotateAutomationCredentials,
                &["ARM-2b"],
                format!(
                    "ARM-2b: Automation credentials may have been read or used by {who}; rotate the credentials, connections and encrypted variables of {subject}."
                ),
            );
        }
    }
    let unfamiliar =
        f.principal.is_identified() && input.policy.known_principal(f.principal.ids()).is_none();
    if traits.contains(Traits::ROLE_CHANGE) {
        if f.role_objects.is_empty() {
            let subject = format!("the role assignments and definitions {who} created in {scope}");
            push_or_manual(
                plan,
                f,
                input,
                f.subscription_scope().map(|scope| Parameters::RemoveRoleAssignments {
                    target: RoleAssignmentTarget::InScope {
                        scope,
                        created_by: principal.clone(),
                        assigned_to: None,
                    },
                }),
                Action::RemoveRoleAssignments,
                &["ARM-2b"],
                format!(
                    "ARM-2b: {who} changed permissions ({}); remove {subject} if it was not expected.",
                    f.operations_text()
                ),
            );
        }
        for id in &f.role_objects {
            push_or_manual(
                plan,
                f,
                input,
                Some(Parameters::RemoveRoleAssignments {
                    target: RoleAssignmentTarget::Named { id: id.clone() },
                }),
                Action::RemoveRoleAssignments,
                &["ARM-2b"],
                format!(
                    "ARM-2b: {who} changed permissions ({}); remove {id} if it was not expected.",
                    f.operations_text()
                ),
            );
        }
    }
    if unfamiliar {
        push_or_manual(
            plan,
            f,
            input,
            f.subscription_scope()
                .map(|scope| Parameters::RemoveRoleAssignments {
                    target: RoleAssignmentTarget::InScope {
                        scope,
                        created_by: None,
                        assigned_to: principal.clone(),
                    },
                }),
            Action::RemoveRoleAssignments,
            &["ARM-2b"],
            format!("ARM-2b: {who} is an unfamiliar account; remove its permissions in {scope}."),
        );
    }
    if traits.contains(Traits::KEY_VAULT_DUMP) {
        let keys = input.alert.base_alert_type().contains("Keys");
        let (action, kind) = if keys {
            (Action::RotateKey, "keys")
        } else {
            (Action::RotateSecret, "secrets")
        };
        let mut targets: Vec<(Option<Parameters>, String)> = Vec::new();
        if f.key_vaults.is_empty() {
            let subscription = SubscriptionScope::parse(scope).ok();
            let parameters = subscription.map(|subscription| {
                if keys {
                    Parameters::RotateKey {
                        target: KeyRotationTarget::Subscription { subscription },
                        read_by: principal.clone(),
                    }
                } else {
                    Parameters::RotateSecret {
                        target: SecretRotationTarget::Subscription { subscription },
                        read_by: principal.clone(),
                    }
                }
            });
            targets.push((
                parameters,
                format!("every key vault in {scope} that {who} could read"),
            ));
        }
        for id in &f.key_vaults {
            let parameters = KeyVaultId::from_id(id.clone()).map(|vault| {
                if keys {
                    Parameters::RotateKey {
                        target: KeyRotationTarget::Vault {
                            vault,
                            except: Vec::new(),
                        },
                        read_by: principal.clone(),
                    }
                } else {
                    Parameters::RotateSecret {
                        target: SecretRotationTarget::Vault {
                            vault,
                            except: Vec::new(),
                        },
                        read_by: principal.clone(),
                    }
                }
            });
            targets.push((parameters, format!("key vault {id}")));
        }
        for (parameters, subject) in targets {
            push_or_manual(
                plan,
                f,
                input,
                parameters,
                action,
                &["ARM-2b", "KV-4a"],
                format!(
                    "KV-4a: {who} extracted key vault {kind} through Resource Manager ({}); rotate all {kind} of {subject}.",
                    f.operations_text()
                ),
            );
        }
    }
    if traits.contains(Traits::STORAGE_KEYS) {
        for (target, label, named) in resource_targets(f, &f.storage_accounts) {
            let subject = if named {
                format!("storage account {label}")
            } else {
                format!("every storage account in {label} whose keys {who} listed")
            };
            push_or_manual(
                plan,
                f,
                input,
                target.map(|target| Parameters::RotateStorageKeys {
                    target,
                    key_names: vec![StorageKeyName::Key1, StorageKeyName::Key2],
                }),
                Action::RotateStorageKeys,
                &["ARM-2b"],
                format!(
                    "ARM-2b: {who} listed storage account keys ({}); rotate both access keys of {subject} and update their consumers.",
                    f.operations_text()
                ),
            );
        }
    }
}

/// ARM-2c: the virtual machines the activity touched.
fn machines(input: &PlanInput<'_>, f: &ArmFacts, plan: &mut ResponsePlan) {
    let who = f.who();
    let targets: Vec<(Option<ResourceTarget>, String)> = if f.vms.is_empty() {
        vec![(
            AzureResourceId::parse(&f.scope_label)
                .ok()
                .map(|scope| ResourceTarget::InScope { scope }),
            format!(
                "every virtual machine in {} that {who} ran code on or created",
                f.scope_label
            ),
        )]
    } else {
        f.vms
            .iter()
            .map(|id| {
                (
                    Some(ResourceTarget::Resource {
                        resource: id.clone(),
                    }),
                    format!("virtual machine {id}"),
                )
            })
            .collect()
    };
    for (target, subject) in targets {
        let steps = [
            (
                Action::ChangeVmPasswords,
                target
                    .clone()
                    .map(|target| Parameters::ChangeVmPasswords { target }),
                format!("ARM-2c: {who} ran {} affecting {subject}; change the passwords of all its users.", f.operations_text()),
            ),
            (
                Action::RunAntimalwareScan,
                target.clone().map(|target| Parameters::RunAntimalwareScan {
                    target,
                    scan_type: ScanType::Full,
                }),
                format!("ARM-2c: run a full antimalware scan on {subject}."),
            ),
            (
                Action::ReimageVm,
                target.clone().map(|target| Parameters::ReimageVm { target }),
                format!("ARM-2c: if the activity was not expected, reimage {subject} from a malware-free source."),
            ),
        ];
        for (action, parameters, reason) in steps {
            push_or_manual(plan, f, input, parameters, action, &["ARM-2c"], reason);
        }
    }
}
