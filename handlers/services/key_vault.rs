//! Defender for Key Vault alerts → playbook steps KV-1 … KV-4c.

use super::facts::{self, ObjectKind, Principal, VaultObject};
use super::{with_owner_lookup, PlanInput, ServiceHandler};
use crate::domain::catalog::Traits;
use crate::domain::{Action, AzureResourceId, ResponsePlan, SecurityAlert, Service, Task};
use crate::policy::{KnownPrincipal, Policy};

/// The Key Vault handler.
pub struct KeyVault;

/// How many accessed objects the impact report lists by name.
const IMPACT_LIST_LIMIT: usize = 100;

/// The facts the Key Vault steps need.
struct KvFacts {
    vault: Option<AzureResourceId>,
    vault_label: String,
    principal: Principal,
    caller_ips: Vec<String>,
    objects: Vec<VaultObject>,
    suspicious_operations: Option<String>,
    all_operations: Option<String>,
    start: Option<String>,
    end: Option<String>,
    denied: bool,
    reads_shown: bool,
}

impl KvFacts {
    fn from(alert: &SecurityAlert, traits: Traits) -> Self {
        let ids = facts::resource_ids(alert);
        let vault = ids
            .iter()
            .find(|id| id.is_type("Microsoft.KeyVault/vaults"))
            .cloned();
        let objects = facts::vault_objects(alert);
        let vault_label = vault
            .as_ref()
            .map(|id| id.as_str().to_string())
            .or_else(|| alert.compromised_entity.clone())
            .or_else(|| {
                objects
                    .first()
                    .and_then(|object| facts::vault_name_of(&object.uri))
                    .map(str::to_string)
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
            vault,
            vault_label,
            principal: facts::principal(
                alert,
                &["Attacker Object ID", "Object ID"],
                &["User Principal Name"],
            ),
            caller_ips: facts::ips(alert, &["Attacker IP Address", "Client IP address"]),
            objects,
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

    /// Whether KV-4 applies: access succeeded, or a denied alert whose facts still show reads.
    fn exposed(&self) -> bool {
        !self.denied || self.reads_shown
    }
}

impl ServiceHandler for KeyVault {
    fn service(&self) -> Service {
        Service::KeyVault
    }

    fn plan(&self, input: &PlanInput<'_>) -> ResponsePlan {
        let alert = input.alert;
        let policy = input.policy;
        let traits = input.entry.map(|entry| entry.traits).unwrap_or_default();
        let f = KvFacts::from(alert, traits);
        let known = policy.known_principal(f.principal.ids());
        let in_tenant = source_in_tenant(policy, &f.principal, known);
        let mut plan = ResponsePlan::new();
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

fn principal_facts(task: Task, f: &KvFacts) -> Task {
    let app = f.principal.app_id.clone().unwrap_or_default();
    let app_name = facts::first_party_app(&app).unwrap_or_default();
    task.fact("caller", f.principal.label())
        .fact("caller_ips", f.caller_ips.join(", "))
        .fact(
            "object_id",
            f.principal.object_id.clone().unwrap_or_default(),
        )
        .fact(
            "user_principal_name",
            f.principal.upn.clone().unwrap_or_default(),
        )
        .fact("application_id", app)
        .fact("application_name", app_name)
        .fact(
            "tenant_id",
            f.principal.tenant_id.clone().unwrap_or_default(),
        )
        .fact("vault", f.vault_label.clone())
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
        Action::ContactOwner,
        &["KV-1"],
        f.vault_label.clone(),
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
    with_owner_lookup(principal_facts(task, f), policy, f.vault.as_ref())
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
        let task = Task::new(
            input.alert_ref,
            Action::EnableKeyVaultFirewall,
            &["KV-2a"],
            f.vault_label.clone(),
            format!(
                "KV-2a: {why}; enable the firewall of {} (deny by default) and allow only trusted networks.",
                f.vault_label
            ),
        )
        .fact("block_addresses", addresses)
        .fact("default_action", "Deny")
        .fact("allow_ip_ranges", ranges.join(", "))
        .fact("allow_virtual_networks", policy.trusted_virtual_networks.join(", "))
        .fact("bypass", "AzureServices");
        plan.push(principal_facts(task, f));
    }

    // KV-2b: an unknown or unauthorised principal.
    if let Some(target) = f.principal.target() {
        let unauthorised = known.is_some_and(|k| !k.authorized);
        if known.is_none() || unauthorised {
            let why = if unauthorised {
                "is marked unauthorised in the policy"
            } else {
                "is not among the policy's known principals"
            };
            let task = Task::new(
                input.alert_ref,
                Action::RestrictPrincipal,
                &["KV-2b"],
                target,
                format!(
                    "KV-2b: {} {why}; remove it from the access policy of {} (for RBAC vaults: its role \
                     assignments on the vault), or restrict the operations it may perform.",
                    f.principal.label(),
                    f.vault_label
                ),
            )
            .fact(
                "permission_model",
                "read the vault's enableRbacAuthorization: false → remove or reduce the access-policy entry; true → delete the principal's role assignments at the vault scope",
            );
            plan.push(principal_facts(task, f));
        }
    }
    if traits.contains(Traits::POLICY_CHANGE) {
        let task = Task::new(
            input.alert_ref,
            Action::RevertAccessPolicy,
            &["KV-2b"],
            f.vault_label.clone(),
            format!(
                "KV-2b: the access policy of {} was changed (Vault Put) just before secrets were read by {}; \
                 revert the change that widened access.",
                f.vault_label,
                f.principal.label()
            ),
        );
        plan.push(principal_facts(task, f));
    }

    // KV-2c: a principal holding an Entra role (known from the policy), or one of the own
    // tenant the policy does not know (the admin is asked to check).
    let Some(target) = f.principal.target() else {
        return;
    };
    let roles = known.map(|k| k.entra_roles.clone()).unwrap_or_default();
    let admins = policy.admin_recipients();
    if !roles.is_empty() {
        let role_list = roles.join(", ");
        let contact = Task::new(
            input.alert_ref,
            Action::ContactTenantAdmin,
            &["KV-2c"],
            target.clone(),
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
            Action::ReviewEntraRoles,
            &["KV-2c"],
            target,
            format!(
                "KV-2c: reduce or revoke the Entra role(s) {role_list} of {} as the tenant administrator decides.",
                f.principal.label()
            ),
        )
        .fact("entra_roles", role_list);
        plan.push(principal_facts(review, f));
    } else if known.is_none()
        && in_tenant != Some(false)
        && policy.ask_admin_about_unknown_principals
    {
        let contact = Task::new(
            input.alert_ref,
            Action::ContactTenantAdmin,
            &["KV-2c"],
            target,
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
    let mut objects_text = listed.join("\n");
    if f.objects.len() > IMPACT_LIST_LIMIT {
        objects_text.push_str(&format!(
            "\n... and {} more (see the alert's extended properties)",
            f.objects.len() - IMPACT_LIST_LIMIT
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
        f.objects.len(),
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
            .as_deref()
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
        Action::NotifySecurityTeam,
        &["KV-3"],
        f.vault_label.clone(),
        reason,
    )
    .fact("accessed_objects", objects_text)
    .fact("accessed_count", f.objects.len().to_string())
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
    for object in f.objects.iter().take(cap) {
        let action = match object.kind {
            ObjectKind::Secret => Action::RotateSecret,
            ObjectKind::Key => Action::RotateKey,
            ObjectKind::Certificate => Action::RotateCertificate,
        };
        let task = Task::new(
            input.alert_ref,
            action,
            &["KV-4a"],
            object.uri.clone(),
            format!(
                "KV-4a: {who} accessed {} (named in '{}') from {} {}; rotate it immediately.",
                object.uri,
                object.source,
                f.ips_text(),
                f.window()
            ),
        )
        .fact("source_property", object.source.clone());
        plan.push(principal_facts(task, f));
        if object.kind == ObjectKind::Secret {
            let task = Task::new(
                input.alert_ref,
                Action::DisableSecret,
                &["KV-4b"],
                object.uri.clone(),
                format!(
                    "KV-4b: {} was exposed to {who}; disable it (or delete it from the vault) until it is rotated and every consumer is updated.",
                    object.uri
                ),
            );
            plan.push(principal_facts(task, f));
        }
    }
    let remaining = f.objects.len().saturating_sub(cap);
    if f.objects.is_empty() || remaining > 0 {
        let scope = if f.objects.is_empty() {
            format!("all secrets, keys and certificates read by {who}")
        } else {
            format!(
                "the {remaining} further object(s) read by {who} beyond the policy's limit of {cap} per-object tasks (listed in the KV-3 impact report)"
            )
        };
        let task = Task::new(
            input.alert_ref,
            Action::RotateSecret,
            &["KV-4a"],
            f.vault_label.clone(),
            format!(
                "KV-4a: rotate {scope} in {} ({}).",
                f.vault_label,
                f.window()
            ),
        )
        .fact("scope", scope)
        .fact("remaining_objects", remaining.to_string());
        plan.push(principal_facts(task, f));
    }

    // KV-4c: the caller's own application (when it is not a Microsoft client tool), else the
    // applications that consume the exposed credentials.
    let app = f
        .principal
        .app_id
        .clone()
        .filter(|app| facts::first_party_app(app).is_none());
    let (target, subject) = match &app {
        Some(app) => (app.clone(), format!("application {app}")),
        None => (
            f.vault_label.clone(),
            format!(
                "every application that uses credentials from {}",
                f.vault_label
            ),
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
        Action::ContactAppOwner,
        &["KV-4c"],
        target,
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
