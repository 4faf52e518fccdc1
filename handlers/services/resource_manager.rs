//! Defender for Resource Manager alerts → playbook steps ARM-1 … ARM-2c (and KV-4a for vault dumps).

use super::facts::{self, Principal};
use super::{with_owner_lookup, PlanInput, ServiceHandler};
use crate::domain::catalog::Traits;
use crate::domain::{Action, AzureResourceId, ResponsePlan, SecurityAlert, Service, Task};

/// The Resource Manager handler.
pub struct ResourceManager;

/// The facts the Resource Manager steps need.
struct ArmFacts {
    principal: Principal,
    ips: Vec<String>,
    client_application: Option<String>,
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
                .and_then(|sub| AzureResourceId::parse(&format!("/subscriptions/{sub}")))
        });
        let scope_label = scope
            .as_ref()
            .map(|id| id.as_str().to_string())
            .unwrap_or_else(|| alert.resource_label());
        let subscription_label = subscription
            .as_deref()
            .map(|sub| format!("/subscriptions/{sub}"))
            .unwrap_or_else(|| scope_label.clone());
        ArmFacts {
            principal: facts::principal(
                alert,
                &["Object ID", "Attacker Object ID"],
                &["User principal name", "User Principal Name"],
            ),
            ips: facts::ips(alert, &["Client IP address", "Attacker IP Address"]),
            client_application: alert.extended("Client application").map(str::to_string),
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

    fn facts(&self, task: Task) -> Task {
        task.fact("caller", self.principal.label())
            .fact(
                "object_id",
                self.principal.object_id.clone().unwrap_or_default(),
            )
            .fact(
                "user_principal_name",
                self.principal.upn.clone().unwrap_or_default(),
            )
            .fact(
                "application_id",
                self.principal.app_id.clone().unwrap_or_default(),
            )
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
    fn service(&self) -> Service {
        Service::ResourceManager
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
        Action::ContactOwner,
        &["ARM-1", "ARM-2a", "ARM-2b"],
        scope.clone(),
        format!(
            "ARM-1: {who}{from} performed {} ({what}) in {scope}; ask the owner whether this activity was expected or intentional.",
            f.operations_text()
        ),
    )
    .fact("alert_display_name", what.clone())
    .checklist(checklist)
    .recipients(input.policy.recipients_for(f.scope.as_ref()));
    plan.push(with_owner_lookup(
        f.facts(task),
        input.policy,
        f.scope.as_ref(),
    ));
}

/// ARM-2a: delete an unfamiliar account, or change a familiar one's credentials.
fn accounts(input: &PlanInput<'_>, f: &ArmFacts, plan: &mut ResponsePlan) {
    let Some(target) = f.principal.target() else {
        return;
    };
    let who = f.who();
    let task = match input.policy.known_principal(f.principal.ids()) {
        Some(known) => Task::new(
            input.alert_ref,
            Action::ResetCredentials,
            &["ARM-2a"],
            target,
            format!(
                "ARM-2a: {who} is a familiar account (known principal {}); if the activity was not expected, change its authentication credentials.",
                known.name.as_deref().unwrap_or(&known.id)
            ),
        ),
        None => Task::new(
            input.alert_ref,
            Action::DeleteUnfamiliarAccount,
            &["ARM-2a"],
            target,
            format!(
                "ARM-2a: {who} is not among the policy's known principals; if the activity was not expected, delete the account (a threat actor may have created it)."
            ),
        ),
    };
    plan.push(f.facts(task));
}

/// ARM-2b: runbooks, role assignments, and the credentials the alert says were taken.
fn subscription(input: &PlanInput<'_>, f: &ArmFacts, traits: Traits, plan: &mut ResponsePlan) {
    let who = f.who();
    let scope = &f.subscription_label;
    let targets = |found: &[AzureResourceId]| -> Vec<(String, bool)> {
        if found.is_empty() {
            vec![(scope.clone(), false)]
        } else {
            found
                .iter()
                .map(|id| (id.as_str().to_string(), true))
                .collect()
        }
    };
    if traits.contains(Traits::AUTOMATION) {
        for (target, named) in targets(&f.automation) {
            let subject = if named {
                format!("Automation account {target}")
            } else {
                format!("every Automation account in {target}")
            };
            plan.push(f.facts(
                Task::new(
                    input.alert_ref,
                    Action::RemoveRunbook,
                    &["ARM-2b"],
                    target.clone(),
                    format!(
                        "ARM-2b: {who} used Automation ({}); remove the unfamiliar runbooks and webhooks from {subject}.",
                        f.operations_text()
                    ),
                )
                .fact("scope", format!("runbooks and webhooks created or changed by {who}")),
            ));
            plan.push(f.facts(Task::new(
                input.alert_ref,
                Action::RotateAutomationCredentials,
                &["ARM-2b"],
                target.clone(),
                format!(
                    "ARM-2b: Automation credentials may have been read or used by {who}; rotate the credentials, connections and encrypted variables of {subject}."
                ),
            )));
        }
    }
    let unfamiliar =
        f.principal.is_identified() && input.policy.known_principal(f.principal.ids()).is_none();
    if traits.contains(Traits::ROLE_CHANGE) {
        for (target, named) in targets(&f.role_objects) {
            let subject = if named {
                target.clone()
            } else {
                format!("the role assignments and definitions {who} created in {target}")
            };
            plan.push(f.facts(
                Task::new(
                    input.alert_ref,
                    Action::RemoveRoleAssignments,
                    &["ARM-2b"],
                    target.clone(),
                    format!(
                        "ARM-2b: {} changed permissions ({}); remove {subject} if it was not expected.",
                        who,
                        f.operations_text()
                    ),
                )
                .fact("created_by", f.principal.target().unwrap_or_default()),
            ));
        }
    }
    if unfamiliar {
        plan.push(
            f.facts(
                Task::new(
                    input.alert_ref,
                    Action::RemoveRoleAssignments,
                    &["ARM-2b"],
                    scope.clone(),
                    format!(
                    "ARM-2b: {who} is an unfamiliar account; remove its permissions in {scope}."
                ),
                )
                .fact("principal", f.principal.target().unwrap_or_default()),
            ),
        );
    }
    if traits.contains(Traits::KEY_VAULT_DUMP) {
        let keys = input.alert.base_alert_type().contains("Keys");
        let action = if keys {
            Action::RotateKey
        } else {
            Action::RotateSecret
        };
        let kind = if keys { "keys" } else { "secrets" };
        for (target, named) in targets(&f.key_vaults) {
            let subject = if named {
                format!("key vault {target}")
            } else {
                format!("every key vault in {target} that {who} could read")
            };
            plan.push(f.facts(
                Task::new(
                    input.alert_ref,
                    action,
                    &["ARM-2b", "KV-4a"],
                    target.clone(),
                    format!(
                        "KV-4a: {who} extracted key vault {kind} through Resource Manager ({}); rotate all {kind} of {subject}.",
                        f.operations_text()
                    ),
                )
                .fact("scope", format!("all {kind} read by {who}")),
            ));
        }
    }
    if traits.contains(Traits::STORAGE_KEYS) {
        for (target, named) in targets(&f.storage_accounts) {
            let subject = if named {
                format!("storage account {target}")
            } else {
                format!("every storage account in {target} whose keys {who} listed")
            };
            plan.push(f.facts(Task::new(
                input.alert_ref,
                Action::RotateStorageKeys,
                &["ARM-2b"],
                target.clone(),
                format!(
                    "ARM-2b: {who} listed storage account keys ({}); rotate both access keys of {subject} and update their consumers.",
                    f.operations_text()
                ),
            )));
        }
    }
}

/// ARM-2c: the virtual machines the activity touched.
fn machines(input: &PlanInput<'_>, f: &ArmFacts, plan: &mut ResponsePlan) {
    let who = f.who();
    let targets: Vec<(String, String)> = if f.vms.is_empty() {
        vec![(
            f.scope_label.clone(),
            format!(
                "every virtual machine in {} that {who} ran code on or created",
                f.scope_label
            ),
        )]
    } else {
        f.vms
            .iter()
            .map(|id| (id.as_str().to_string(), format!("virtual machine {id}")))
            .collect()
    };
    for (target, subject) in targets {
        let steps = [
            (
                Action::ChangeVmPasswords,
                format!("ARM-2c: {who} ran {} affecting {subject}; change the passwords of all its users.", f.operations_text()),
            ),
            (
                Action::RunAntimalwareScan,
                format!("ARM-2c: run a full antimalware scan on {subject}."),
            ),
            (
                Action::ReimageVm,
                format!("ARM-2c: if the activity was not expected, reimage {subject} from a malware-free source."),
            ),
        ];
        for (action, reason) in steps {
            plan.push(
                f.facts(
                    Task::new(input.alert_ref, action, &["ARM-2c"], target.clone(), reason)
                        .fact("scope", subject.clone()),
                ),
            );
        }
    }
}
