//! Defender for Key Vault alerts → playbook steps KV-1 … KV-4c.

use std::cell::OnceCell;

use super::facts::{self, Principal, VaultObject};
use super::{owner_lookup, PlanInput, ServiceHandler};
use crate::domain::catalog::{entry, CatalogEntry, Traits};
use crate::domain::parameters::{
    FirewallBypass, FirewallDefault, KeyRotationTarget, SecretRotationTarget,
};
use crate::domain::{
    Action, Activity, AzureResourceId, CertificateUri, IpRange, KeyUri, KeyVaultId, Parameters,
    ResponsePlan, SecretUri, SecurityAlert, ServiceName, Severity, Subject, Task, TimeWindow,
    VaultObjectKind,
};
use crate::policy::{KnownPrincipal, Policy};

/// The Key Vault handler.
pub struct KeyVault;

impl KeyVault {
    /// The name tasks, reports and message properties carry for Key Vault alerts.
    pub const NAME: ServiceName = ServiceName::new("key_vault");
}

/// The documented alert types this handler owns (alert-catalog.md).
#[rustfmt::skip]
pub(crate) const CATALOG: &[CatalogEntry] = &[
    entry("KV_SuspiciousIPAccess", KeyVault::NAME, Severity::Medium, "Credential Access", "Access from a suspicious IP address to a key vault", Traits::UNKNOWN_IP_ACCESS),
    entry("KV_TORAccess", KeyVault::NAME, Severity::Medium, "Credential Access", "Access from a TOR exit node to a key vault", Traits::UNKNOWN_IP_ACCESS),
    entry("KV_OperationVolumeAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "High volume of operations in a key vault", Traits::NONE),
    entry("KV_PutGetAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Suspicious policy change and secret query in a key vault", Traits::POLICY_CHANGE),
    entry("KV_ListGetAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Suspicious secret listing and query in a key vault", Traits::NONE),
    entry("KV_AccountVolumeAccessDeniedAnomaly", KeyVault::NAME, Severity::Low, "Discovery", "Unusual access denied - User accessing high volume of key vaults denied", Traits::ACCESS_DENIED),
    entry("KV_UserAccessDeniedAnomaly", KeyVault::NAME, Severity::Low, "Initial Access, Discovery", "Unusual access denied - Unusual user accessing key vault denied", Traits::ACCESS_DENIED),
    entry("KV_AppAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Unusual application accessed a key vault", Traits::NONE),
    entry("KV_OperationPatternAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Unusual operation pattern in a key vault", Traits::NONE),
    entry("KV_UserAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Unusual user accessed a key vault", Traits::NONE),
    entry("KV_UserAppAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "Unusual user-application pair accessed a key vault", Traits::NONE),
    entry("KV_AccountVolumeAnomaly", KeyVault::NAME, Severity::Medium, "Credential Access", "User accessed high volume of key vaults", Traits::NONE),
    entry("KV_SuspiciousIPAccessDenied", KeyVault::NAME, Severity::Low, "Credential Access", "Denied access from a suspicious IP to a key vault", Traits::UNKNOWN_IP_ACCESS.union(Traits::ACCESS_DENIED)),
    entry("KV_UnusualAccessSuspiciousIP", KeyVault::NAME, Severity::Medium, "Credential Access", "Unusual access to the key vault from a suspicious IP (Non-Microsoft or external)", Traits::UNKNOWN_IP_ACCESS),
];

/// How many accessed objects the impact report lists by name.
const IMPACT_LIST_LIMIT: usize = 100;

/// The facts the Key Vault steps need.
struct KvFacts {
    vault: Option<AzureResourceId>,
    vault_id: Option<KeyVaultId>,
    vault_label: String,
    principal: Principal,
    caller_ips: Vec<String>,
    objects: Vec<VaultObject>,
    objects_dropped: usize,
    suspicious_operations: Option<String>,
    all_operations: Option<String>,
    start: Option<String>,
    end: Option<String>,
    denied: bool,
    reads_shown: bool,
    /// What [`principal_facts`] adds to each task, computed for the first and cloned after.
    caller: OnceCell<CallerFacts>,
}

/// The caller's facts and the activity, as every task of the plan carries them.
struct CallerFacts {
    caller: String,
    caller_ips: String,
    object_id: String,
    user_principal_name: String,
    application_id: String,
    application_name: &'static str,
    tenant_id: String,
    activity: Activity,
}

impl KvFacts {
    fn from(alert: &SecurityAlert, traits: Traits) -> Self {
        let ids = facts::resource_ids(alert);
        let vault = ids
            .iter()
            .find(|id| id.is_type("Microsoft.KeyVault/vaults"))
            .cloned();
        let found = facts::vault_objects(alert);
        let objects = found.objects;
        let vault_label = vault
            .as_ref()
            .map(|id| id.as_str().to_string())
            .or_else(|| alert.compromised_entity.clone())
            .or_else(|| {
                objects
                    .first()
                    .map(|object| object.uri.vault_name().to_string())
            })
            .unwrap_or_else(|| alert.resource_label());
        let suspicious_operations = alert.extended("Suspicious Operations").map(str::to_string);
        let signature_denied = alert
            .extended("Result Signature")
            .is_some_and(facts::is_denied_signature);
        let denied = traits.contains(Traits::ACCESS_DENIED) || signature_denied;
        let read_counts = suspicious_operations
            .as_deref()
            .map(facts::operation_counts)
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, count)| facts::is_read_operation(name) && *count > 0)
            .count();
        let accessed_listed = objects.iter().any(|object| object.source != "Target");
        KvFacts {
            vault_id: vault.clone().and_then(KeyVaultId::from_id),
            vault,
            vault_label,
            principal: facts::principal(
                alert,
                &["Attacker Object ID", "Object ID"],
                &["User Principal Name"],
            ),
            caller_ips: facts::ips(alert, &["Attacker IP Address", "Client IP address"]),
            objects,
            objects_dropped: found.dropped,
            suspicious_operations,
            all_operations: alert
                .extended("All vault operations in last 24 hours")
                .map(str::to_string),
            start: alert
                .extended("Start Time UTC")
                .map(str::to_string)
                .or_else(|| alert.start_time.clone()),
            end: alert
                .extended("End Time UTC")
                .map(str::to_string)
                .or_else(|| alert.end_time.clone()),
            denied,
            reads_shown: accessed_listed || (read_counts > 0 && !signature_denied),
            caller: OnceCell::new(),
        }
    }

    fn window(&self) -> String {
        match (&self.start, &self.end) {
            (Some(start), Some(end)) => format!("between {start} and {end} UTC"),
            (Some(start), None) => format!("from {start} UTC"),
            _ => "in the alert's time window".to_string(),
        }
    }

    fn ips_text(&self) -> String {
        if self.caller_ips.is_empty() {
            "an address the alert does not give".to_string()
        } else {
            self.caller_ips.join(", ")
        }
    }

    /// What the alert says happened, for every task.
    fn activity(&self) -> Activity {
        Activity {
            principal: self.principal.reference(),
            application_id: self.principal.app_id.clone(),
            caller_ips: facts::typed_ips(&self.caller_ips),
            operations: self
                .suspicious_operations
                .as_deref()
                .map(facts::operation_counts)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            window: TimeWindow::new(self.start.clone(), self.end.clone()),
        }
    }

    /// The subject of the notifications: the vault by id, else by the name the alert gives.
    fn subject(&self) -> Subject {
        Subject::from_label(&self.vault_label)
    }

    /// Whether KV-4 applies: access succeeded, or a denied alert whose facts still show reads.
    fn exposed(&self) -> bool {
        !self.denied || self.reads_shown
    }
}

impl ServiceHandler for KeyVault {
    fn service(&self) -> ServiceName {
        KeyVault::NAME
    }

    fn catalog(&self) -> &'static [CatalogEntry] {
        CATALOG
    }

    fn steps(&self) -> &'static [&'static str] {
        &[
            "KV-1", "KV-2a", "KV-2b", "KV-2c", "KV-3", "KV-4a", "KV-4b", "KV-4c",
        ]
    }

    fn contact_step(&self) -> &'static str {
        "KV-1"
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let policy = input.policy;
        let traits = input.entry.map(|entry| entry.traits).unwrap_or_default();
        let f = KvFacts::from(alert, traits);
        let known = policy.known_principal(f.principal.ids());
        let in_tenant = source_in_tenant(policy, &f.principal, known);
        let mut plan = ResponsePlan::new();
        if f.objects_dropped > 0 {
            plan.warn(format!(
                "extendedProperties: {} further Key Vault object URI(s) beyond the limit of {} per alert were not read; \
                 the vault-wide rotation covers them",
                f.objects_dropped,
                facts::MAX_VAULT_OBJECTS_PER_ALERT
            ));
        }
        plan.push(contact(input, &f, known, in_tenant, traits));
        mitigate(input, &f, known, in_tenant, traits, &mut plan);
        plan.push(impact(input, &f));
        if f.exposed() {
            take_action(input, &f, &mut plan);
        }
        plan
    }
}

/// Whether the source is inside the organisation's tenant(s): `Some(true)` for a known
/// principal or a principal of an own tenant, `Some(false)` for another tenant, `None` when
/// the alert or the policy cannot tell.
fn source_in_tenant(
    policy: &Policy,
    principal: &Principal,
    known: Option<&KnownPrincipal>,
) -> Option<bool> {
    if known.is_some() {
        return Some(true);
    }
    if policy.tenant_ids.is_empty() || !principal.is_identified() {
        return None;
    }
    principal
        .tenant_id
        .as_deref()
        .map(|tenant| policy.is_own_tenant(tenant))
}

impl CallerFacts {
    fn of(f: &KvFacts) -> Self {
        let application_id = f
            .principal
            .app_id
            .as_ref()
            .map(|id| id.as_str().to_string())
            .unwrap_or_default();
        CallerFacts {
            caller: f.principal.label(),
            caller_ips: f.caller_ips.join(", "),
            object_id: f
                .principal
                .object_id
                .as_ref()
                .map(|id| id.as_str().to_string())
                .unwrap_or_default(),
            user_principal_name: f.principal.upn.clone().unwrap_or_default(),
            application_name: facts::first_party_app(&application_id).unwrap_or_default(),
            application_id,
            tenant_id: f.principal.tenant_id.clone().unwrap_or_default(),
            activity: f.activity(),
        }
    }
}

/// The caller's facts (notification tasks) and the activity (every task).
fn principal_facts(task: Task, f: &KvFacts) -> Task {
    let caller = f.caller.get_or_init(|| CallerFacts::of(f));
    // Containment tasks carry no facts (`Task::fact` skips them): nothing to copy.
    let task = if task.queue.is_containment() {
        task
    } else {
        task.fact("caller", caller.caller.as_str())
            .fact("caller_ips", caller.caller_ips.as_str())
            .fact("object_id", caller.object_id.as_str())
            .fact("user_principal_name", caller.user_principal_name.as_str())
            .fact("application_id", caller.application_id.as_str())
            .fact("application_name", caller.application_name)
            .fact("tenant_id", caller.tenant_id.as_str())
            .fact("vault", f.vault_label.as_str())
    };
    task.activity(caller.activity.clone())
}

/// KV-1: contact the owner (always: the vault owner hears of every alert on the vault).
fn contact(
    input: &PlanInput<'_>,
    f: &KvFacts,
    known: Option<&KnownPrincipal>,
    in_tenant: Option<bool>,
    traits: Traits,
) -> Task {
    let policy = input.policy;
    let who = f.principal.label();
    let reason = match in_tenant {
        Some(true) => format!(
            "KV-1: {who} is inside the organisation's tenant{}; ask the owner of that user or application \
             and the vault owner whether access to {} from {} was expected.",
            known
                .and_then(|k| k.name.as_deref())
                .map(|name| format!(" (known principal {name})"))
                .unwrap_or_default(),
            f.vault_label,
            f.ips_text()
        ),
        Some(false) => format!(
            "KV-1: {who} is not in the organisation's tenant(s); the source cannot be identified inside the \
             tenant, so KV-2 mitigation follows; the vault owner of {} is told.",
            f.vault_label
        ),
        None => format!(
            "KV-1: {who} accessed {} from {}; whether the source is inside the organisation's tenant cannot be \
             established from the alert and the policy, so the vault owner is asked whether it was expected and \
             KV-2 mitigation is planned.",
            f.vault_label,
            f.ips_text()
        ),
    };
    let mut recipients = policy.recipients_for(f.vault.as_ref());
    if let Some(known) = known {
        for person in &known.owners {
            if !recipients.contains(person) {
                recipients.insert(0, person.clone());
            }
        }
    }
    let mut checklist = vec![
        "KV-1: if the access was expected, dismiss the alert in Defender for Cloud and reject the pending containment tasks.".to_string(),
        format!(
            "KV-1: if the vault firewall is enabled, find the firewall rule that lets {} in.",
            f.ips_text()
        ),
    ];
    if traits.contains(Traits::UNKNOWN_IP_ACCESS) {
        for ip in f
            .caller_ips
            .iter()
            .filter(|ip| input.policy.is_trusted_ip(ip))
        {
            checklist.push(format!(
                "KV-2a: threat intelligence flags {ip}, which the policy trusts: check that trusted range."
            ));
        }
    }
    if !f.principal.is_identified() {
        checklist.push(format!(
            "KV-2b: the alert names no user or application; find the caller in the vault's diagnostic logs by IP {} and remove or restrict it.",
            f.ips_text()
        ));
    }
    let task = Task::new(
        input.alert_ref,
        Parameters::ContactOwner {
            subject: f.subject(),
            owner_lookup: owner_lookup(policy, f.vault.as_ref()),
        },
        &["KV-1"],
        reason,
    )
    .fact(
        "source_in_tenant",
        match in_tenant {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        },
    )
    .fact(
        "known_principal",
        known
            .map(|k| k.name.clone().unwrap_or_else(|| k.id.clone()))
            .unwrap_or_default(),
    )
    .fact(
        "alert_reasons",
        input.alert.extended("Alert Reasons").unwrap_or_default(),
    )
    .fact(
        "client_information",
        input
            .alert
            .extended("Client Information")
            .unwrap_or_default(),
    )
    .checklist(checklist)
    .recipients(recipients);
    principal_facts(task, f)
}

/// KV-2a/b/c: immediate mitigation.
fn mitigate(
    input: &PlanInput<'_>,
    f: &KvFacts,
    known: Option<&KnownPrincipal>,
    in_tenant: Option<bool>,
    traits: Traits,
    plan: &mut ResponsePlan,
) {
    let policy = input.policy;
    // KV-2a: an address outside the trusted ranges (or a flagged one the alert does not give).
    let untrusted: Vec<&String> = f
        .caller_ips
        .iter()
        .filter(|ip| !policy.is_trusted_ip(ip))
        .collect();
    let flagged_without_ip = traits.contains(Traits::UNKNOWN_IP_ACCESS) && f.caller_ips.is_empty();
    if !untrusted.is_empty() || flagged_without_ip {
        let ranges: Vec<String> = policy
            .trusted_ip_ranges
            .iter()
            .map(ToString::to_string)
            .collect();
        let addresses = untrusted
            .iter()
            .map(|ip| ip.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let why = if flagged_without_ip {
            "threat intelligence flagged the caller's address (the alert does not give it)"
                .to_string()
        } else if ranges.is_empty() {
            format!("{addresses} is outside the trusted ranges (the policy trusts none)")
        } else {
            format!(
                "{addresses} is outside the trusted ranges ({})",
                ranges.join(", ")
            )
        };
        let reason = format!(
            "KV-2a: {why}; enable the firewall of {} (deny by default) and allow only trusted networks.",
            f.vault_label
        );
        match &f.vault_id {
            Some(vault) => {
                let task = Task::new(
                    input.alert_ref,
                    Parameters::EnableKeyVaultFirewall {
                        vault: vault.clone(),
                        default_action: FirewallDefault::Deny,
                        bypass: FirewallBypass::AzureServices,
                        allow_ip_ranges: policy
                            .trusted_ip_ranges
                            .iter()
                            .copied()
                            .map(IpRange)
                            .collect(),
                        allow_virtual_networks: policy
                            .trusted_virtual_networks
                            .iter()
                            .filter_map(|id| AzureResourceId::parse(id).ok())
                            .collect(),
                        block_addresses: facts::typed_ips(
                            &untrusted
                                .iter()
                                .map(|ip| ip.to_string())
                                .collect::<Vec<_>>(),
                        ),
                    },
                    &["KV-2a"],
                    reason,
                );
                plan.push(principal_facts(task, f));
            }
            None => plan.push_manual(&["KV-2a"], Action::EnableKeyVaultFirewall, reason),
        }
    }

    // KV-2b: an unknown or unauthorised principal.
    if let Some(target) = f.principal.reference() {
        let unauthorised = known.is_some_and(|k| !k.authorized);
        if known.is_none() || unauthorised {
            let why = if unauthorised {
                "is marked unauthorised in the policy"
            } else {
                "is not among the policy's known principals"
            };
            let reason = format!(
                "KV-2b: {} {why}; remove it from the access policy of {} (for RBAC vaults: its role \
                 assignments on the vault), or restrict the operations it may perform.",
                f.principal.label(),
                f.vault_label
            );
            match &f.vault_id {
                Some(vault) => {
                    let task = Task::new(
                        input.alert_ref,
                        Parameters::RestrictPrincipal {
                            vault: vault.clone(),
                            principal: target,
                        },
                        &["KV-2b"],
                        reason,
                    );
                    plan.push(principal_facts(task, f));
                }
                None => plan.push_manual(&["KV-2b"], Action::RestrictPrincipal, reason),
            }
        }
    }
    if traits.contains(Traits::POLICY_CHANGE) {
        let reason = format!(
            "KV-2b: the access policy of {} was changed (Vault Put) just before secrets were read by {}; \
             revert the change that widened access.",
            f.vault_label,
            f.principal.label()
        );
        match &f.vault_id {
            Some(vault) => {
                let task = Task::new(
                    input.alert_ref,
                    Parameters::RevertAccessPolicy {
                        vault: vault.clone(),
                        changed_by: f.principal.reference(),
                    },
                    &["KV-2b"],
                    reason,
                );
                plan.push(principal_facts(task, f));
            }
            None => plan.push_manual(&["KV-2b"], Action::RevertAccessPolicy, reason),
        }
    }

    // KV-2c: a principal holding an Entra role (known from the policy), or one of the own
    // tenant the policy does not know (the admin is asked to check).
    let Some(target) = f.principal.reference() else {
        return;
    };
    let roles = known.map(|k| k.entra_roles.clone()).unwrap_or_default();
    let admins = policy.admin_recipients();
    if !roles.is_empty() {
        let role_list = roles.join(", ");
        let contact = Task::new(
            input.alert_ref,
            Parameters::ContactTenantAdmin {
                principal: target.clone(),
                entra_roles: roles.clone(),
            },
            &["KV-2c"],
            format!(
                "KV-2c: {} holds the Entra role(s) {role_list}; contact the tenant administrator to decide \
                 whether those permissions must be reduced or revoked.",
                f.principal.label()
            ),
        )
        .fact("entra_roles", role_list.clone())
        .checklist([format!(
            "KV-2c: decide whether {} keeps {role_list}.",
            f.principal.label()
        )])
        .recipients(admins);
        plan.push(principal_facts(contact, f));
        let review = Task::new(
            input.alert_ref,
            Parameters::ReviewEntraRoles {
                principal: target,
                entra_roles: roles.clone(),
            },
            &["KV-2c"],
            format!(
                "KV-2c: reduce or revoke the Entra role(s) {role_list} of {} as the tenant administrator decides.",
                f.principal.label()
            ),
        );
        plan.push(principal_facts(review, f));
    } else if known.is_none()
        && in_tenant != Some(false)
        && policy.ask_admin_about_unknown_principals
    {
        let contact = Task::new(
            input.alert_ref,
            Parameters::ContactTenantAdmin {
                principal: target,
                entra_roles: Vec::new(),
            },
            &["KV-2c"],
            format!(
                "KV-2c: {} is not a known principal and the alert cannot show whether it holds a Microsoft \
                 Entra role; ask the tenant administrator to check, and to reduce or revoke its Entra \
                 permissions if it does.",
                f.principal.label()
            ),
        )
        .checklist([format!(
            "KV-2c: check the Entra role assignments of {}; if it holds any, decide whether to reduce or revoke them.",
            f.principal.label()
        )])
        .recipients(admins);
        plan.push(principal_facts(contact, f));
    }
}

/// KV-3: the impact report (accessed objects, time window, and the log review to do).
fn impact(input: &PlanInput<'_>, f: &KvFacts) -> Task {
    let listed: Vec<&str> = f
        .objects
        .iter()
        .take(IMPACT_LIST_LIMIT)
        .map(|object| object.uri.as_str())
        .collect();
    let total = f.objects.len() + f.objects_dropped;
    let mut objects_text = listed.join("\n");
    if total > IMPACT_LIST_LIMIT {
        objects_text.push_str(&format!(
            "\n... and {} more (see the alert's extended properties)",
            total - listed.len()
        ));
    }
    let outcome = if !f.denied {
        "the access succeeded"
    } else if f.reads_shown {
        "access was partly denied but the facts show reads"
    } else {
        "access was denied and no read is shown"
    };
    let reason = format!(
        "KV-3: {} touched {} object(s) of {} {} ({outcome}); list everything the caller read.",
        f.principal.label(),
        total,
        f.vault_label,
        f.window()
    );
    let mut checklist = vec![format!(
        "KV-3: review the vault's diagnostic logs (AuditEvent) {} for operations from IP {}{}{}, and add every other secret, key or certificate read to the rotation list.",
        f.window(),
        f.ips_text(),
        f.principal
            .upn
            .as_deref()
            .map(|upn| format!(", UPN {upn}"))
            .unwrap_or_default(),
        f.principal
            .object_id
            .as_ref()
            .map(|id| format!(", object id {id}"))
            .unwrap_or_default(),
    )];
    checklist.push(
        "KV-3: if diagnostic logging is not enabled on the vault, enable it now.".to_string(),
    );
    if !f.exposed() {
        checklist.push(
            "KV-4: access was denied, so nothing is rotated; rotate (KV-4a) only what the logs show was read successfully."
                .to_string(),
        );
    }
    let task = Task::new(
        input.alert_ref,
        Parameters::NotifySecurityTeam {
            subject: f.subject(),
        },
        &["KV-3"],
        reason,
    )
    .fact("accessed_objects", objects_text)
    .fact("accessed_count", total.to_string())
    .fact("access_result", outcome)
    .fact(
        "suspicious_operations",
        f.suspicious_operations.clone().unwrap_or_default(),
    )
    .fact(
        "all_operations_24h",
        f.all_operations.clone().unwrap_or_default(),
    )
    .fact("start_time_utc", f.start.clone().unwrap_or_default())
    .fact("end_time_utc", f.end.clone().unwrap_or_default())
    .checklist(checklist)
    .recipients(input.policy.recipients_for(f.vault.as_ref()));
    principal_facts(task, f)
}

/// KV-4a/b/c: rotate, disable, and have application owners audit.
fn take_action(input: &PlanInput<'_>, f: &KvFacts, plan: &mut ResponsePlan) {
    let cap = input.policy.max_rotation_tasks.max(1);
    let who = f.principal.label();
    let read_by = f.principal.reference();
    let mut own_secrets: Vec<SecretUri> = Vec::new();
    for object in f.objects.iter().take(cap) {
        let reason = format!(
            "KV-4a: {who} accessed {} (named in '{}') from {} {}; rotate it immediately.",
            object.uri,
            object.source,
            f.ips_text(),
            f.window()
        );
        let parameters = match object.kind() {
            VaultObjectKind::Secret => SecretUri::from_uri(object.uri.clone()).map(|secret| {
                own_secrets.push(secret.clone());
                Parameters::RotateSecret {
                    target: SecretRotationTarget::Secret {
                        secret,
                        versions_read: object.versions.clone(),
                    },
                    read_by: read_by.clone(),
                }
            }),
            VaultObjectKind::Key => {
                KeyUri::from_uri(object.uri.clone()).map(|key| Parameters::RotateKey {
                    target: KeyRotationTarget::Key {
                        key,
                        versions_read: object.versions.clone(),
                    },
                    read_by: read_by.clone(),
                })
            }
            VaultObjectKind::Certificate => {
                CertificateUri::from_uri(object.uri.clone()).map(|certificate| {
                    Parameters::RotateCertificate {
                        certificate,
                        versions_read: object.versions.clone(),
                    }
                })
            }
        };
        let Some(parameters) = parameters else {
            continue;
        };
        let task = Task::new(input.alert_ref, parameters, &["KV-4a"], reason)
            .fact("source_property", object.source.clone());
        plan.push(principal_facts(task, f));
        if let Some(secret) = SecretUri::from_uri(object.uri.clone()) {
            let task = Task::new(
                input.alert_ref,
                Parameters::DisableSecret {
                    secret,
                    versions_read: object.versions.clone(),
                },
                &["KV-4b"],
                format!(
                    "KV-4b: {} was exposed to {who}; disable it (or delete it from the vault) until it is rotated and every consumer is updated.",
                    object.uri
                ),
            );
            plan.push(principal_facts(task, f));
        }
    }
    let remaining = (f.objects.len() + f.objects_dropped).saturating_sub(cap);
    if f.objects.is_empty() || remaining > 0 {
        let scope = if f.objects.is_empty() {
            format!("all secrets, keys and certificates read by {who}")
        } else {
            format!(
                "the {remaining} further object(s) read by {who} beyond the policy's limit of {cap} per-object tasks (listed in the KV-3 impact report)"
            )
        };
        let reason = format!(
            "KV-4a: rotate {scope} in {} ({}).",
            f.vault_label,
            f.window()
        );
        match &f.vault_id {
            Some(vault) => {
                let task = Task::new(
                    input.alert_ref,
                    Parameters::RotateSecret {
                        target: SecretRotationTarget::Vault {
                            vault: vault.clone(),
                            except: own_secrets,
                        },
                        read_by: read_by.clone(),
                    },
                    &["KV-4a"],
                    reason,
                );
                plan.push(principal_facts(task, f));
            }
            None => plan.push_manual(&["KV-4a"], Action::RotateSecret, reason),
        }
    }

    // KV-4c: the caller's own application (when it is not a Microsoft client tool), else the
    // applications that consume the exposed credentials.
    let app = f
        .principal
        .app_id
        .clone()
        .filter(|app| facts::first_party_app(app.as_str()).is_none());
    let subject = match &app {
        Some(app) => format!("application {app}"),
        None => format!(
            "every application that uses credentials from {}",
            f.vault_label
        ),
    };
    let mut recipients = input.policy.recipients_for(f.vault.as_ref());
    if let Some(app) = &app {
        if let Some(owner) = input.policy.known_principal([app.as_str()]) {
            for person in owner.owners.iter().rev() {
                if !recipients.contains(person) {
                    recipients.insert(0, person.clone());
                }
            }
        }
    }
    let task = Task::new(
        input.alert_ref,
        Parameters::ContactAppOwner {
            application_id: app.clone(),
            subject: f.subject(),
        },
        &["KV-4c"],
        format!(
            "KV-4c: credentials read by {who} may be used by {subject}; its administrator must audit their \
             environment for use of the compromised credentials after {}.",
            f.start.as_deref().unwrap_or("the alert's start time")
        ),
    )
    .checklist([
        format!(
            "KV-4c: audit {subject} for any use of the exposed credentials after {}.",
            f.start.as_deref().unwrap_or("the alert's start time")
        ),
        "KV-4c: if they were used, identify what information was accessed and mitigate.".to_string(),
    ])
    .recipients(recipients);
    plan.push(principal_facts(task, f));
}
