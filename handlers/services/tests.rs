//! Unit tests of each decision branch of the three playbooks, on real-shaped fixtures.

use std::collections::BTreeMap;

use super::{Dns, Fallback, KeyVault, Registry, ResourceManager};
use crate::decode::{decode_body, EventKind};
use crate::domain::parameters::SecretRotationTarget;
use crate::domain::{
    Action, Entity, Parameters, PrincipalKind, PrincipalRef, SecurityAlert, Task, TaskStatus,
};
use crate::policy::{KnownPrincipal, Policy};

mod adding_a_service;

/// Parses a policy file as start-up does: rules may name the standard registry's steps.
fn parse_policy(text: &str) -> Result<Policy, String> {
    crate::policy::file::parse_policy(text, &Registry::standard().steps())
}

const TENANT: &str = "c0506a98-9c27-4b6a-9a14-0cc99837071d";

fn fixture(name: &str) -> SecurityAlert {
    let path = format!(
        "{}/tests/fixtures/alerts/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).expect("fixture exists");
    let events = decode_body(&bytes).expect("fixture decodes");
    events
        .into_iter()
        .find_map(|event| match event.kind {
            EventKind::Alert(decoded) => Some(decoded.alert),
            _ => None,
        })
        .expect("fixture holds an alert")
}

/// Routes and plans like the pipeline does: the handler's plan, then the policy.
fn plan(alert: &SecurityAlert, policy: &Policy) -> Vec<Task> {
    let registry = Registry::standard();
    let mut plan = registry.route(alert).plan(alert, policy);
    policy.finalize(alert, &mut plan);
    plan.into_tasks()
}

fn with_action(tasks: &[Task], action: Action) -> Vec<&Task> {
    tasks.iter().filter(|task| task.action == action).collect()
}

fn one(tasks: &[Task], action: Action) -> &Task {
    let found = with_action(tasks, action);
    assert_eq!(found.len(), 1, "expected one {action}: {tasks:#?}");
    found[0]
}

fn known(id: &str) -> KnownPrincipal {
    KnownPrincipal {
        id: id.to_string(),
        name: Some(format!("known {id}")),
        owners: vec![format!("owner-of-{id}")],
        entra_roles: Vec::new(),
        authorized: true,
    }
}

fn in_tenant() -> Policy {
    Policy {
        tenant_ids: vec![TENANT.to_string()],
        ..Policy::default()
    }
}

// ---- Key Vault ----

#[test]
fn kv1_known_principal_is_inside_the_tenant_and_its_owner_is_contacted() {
    let alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let mut policy = in_tenant();
    policy.known_principals = vec![known("bob.ops@contoso.com")];
    let tasks = plan(&alert, &policy);
    let contact = one(&tasks, Action::ContactOwner);
    assert_eq!(contact.steps, vec!["KV-1"]);
    assert_eq!(contact.facts["source_in_tenant"], "yes");
    assert!(contact.reason.contains("inside the organisation's tenant"));
    assert!(contact
        .recipients
        .contains(&"owner-of-bob.ops@contoso.com".to_string()));
    // Recognised and authorised: no KV-2b, and no KV-2c question either.
    assert!(with_action(&tasks, Action::RestrictPrincipal).is_empty());
    assert!(with_action(&tasks, Action::ContactTenantAdmin).is_empty());
}

#[test]
fn kv1_principal_of_another_tenant_goes_straight_to_kv2() {
    let alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let policy = Policy {
        tenant_ids: vec!["11111111-2222-3333-4444-555555555555".into()],
        ..Policy::default()
    };
    let tasks = plan(&alert, &policy);
    let contact = one(&tasks, Action::ContactOwner);
    assert_eq!(contact.facts["source_in_tenant"], "no");
    assert!(contact.reason.contains("KV-2 mitigation follows"));
    one(&tasks, Action::RestrictPrincipal);
    // Not in the own tenant: the tenant admin is not asked about Entra roles.
    assert!(with_action(&tasks, Action::ContactTenantAdmin).is_empty());
}

#[test]
fn kv2a_follows_the_trusted_ranges() {
    let alert = fixture("keyvault-KV_SuspiciousIPAccess-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let firewall = one(&tasks, Action::EnableKeyVaultFirewall);
    assert_eq!(firewall.steps, vec!["KV-2a"]);
    assert!(firewall
        .reason
        .starts_with("KV-2a: 203.0.113.45 is outside"));
    let Parameters::EnableKeyVaultFirewall {
        vault,
        block_addresses,
        ..
    } = &firewall.parameters
    else {
        panic!("firewall parameters: {:?}", firewall.parameters);
    };
    assert_eq!(vault.resource_id().name(), Some("kv-contoso-payments"));
    assert_eq!(block_addresses.len(), 1);
    assert!(
        firewall.facts.is_empty(),
        "containment carries no prose facts"
    );
    assert!(firewall.target.ends_with("/vaults/kv-contoso-payments"));

    let trusting = Policy {
        trusted_ip_ranges: vec!["203.0.113.0/24".parse().unwrap()],
        ..Policy::default()
    };
    let tasks = plan(&alert, &trusting);
    assert!(with_action(&tasks, Action::EnableKeyVaultFirewall).is_empty());
    let contact = one(&tasks, Action::ContactOwner);
    assert!(contact
        .checklist
        .iter()
        .any(|item| item.contains("which the policy trusts")));
}

#[test]
fn kv2a_private_addresses_are_own_networks_unless_the_policy_says_otherwise() {
    let alert = fixture("keyvault-KV_AppAnomaly-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    assert!(with_action(&tasks, Action::EnableKeyVaultFirewall).is_empty());
    let strict = Policy {
        trust_private_addresses: false,
        ..Policy::default()
    };
    let tasks = plan(&alert, &strict);
    one(&tasks, Action::EnableKeyVaultFirewall);
}

#[test]
fn kv2a_ip_comes_from_extended_properties_when_there_are_no_entities() {
    let alert = fixture("keyvault-KV_TORAccess-missingoptional.json");
    let tasks = plan(&alert, &Policy::default());
    let firewall = one(&tasks, Action::EnableKeyVaultFirewall);
    assert!(matches!(
        &firewall.parameters,
        Parameters::EnableKeyVaultFirewall { block_addresses, .. } if !block_addresses.is_empty()
    ));
}

#[test]
fn kv2b_restricts_unknown_and_unauthorised_principals_only() {
    let alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let tasks = plan(&alert, &in_tenant());
    let restrict = one(&tasks, Action::RestrictPrincipal);
    assert_eq!(restrict.target, "2baf6728-97b7-4bc0-8ee1-3c0944ad79b2");
    assert!(restrict
        .reason
        .contains("not among the policy's known principals"));
    let Parameters::RestrictPrincipal { vault, principal } = &restrict.parameters else {
        panic!("restrict parameters: {:?}", restrict.parameters);
    };
    assert!(vault.as_str().ends_with("/vaults/kv-contoso-hr"));
    assert!(matches!(
        principal,
        PrincipalRef::ObjectId {
            kind: PrincipalKind::User,
            ..
        }
    ));

    let mut policy = in_tenant();
    let mut bob = known("bob.ops@contoso.com");
    bob.authorized = false;
    policy.known_principals = vec![bob];
    let tasks = plan(&alert, &policy);
    assert!(one(&tasks, Action::RestrictPrincipal)
        .reason
        .contains("marked unauthorised"));
}

#[test]
fn kv2b_without_a_principal_is_a_checklist_item() {
    let mut alert = fixture("keyvault-KV_SuspiciousIPAccessDenied-egrest.json");
    alert
        .entities
        .retain(|e| !matches!(e, Entity::Account { .. }));
    alert
        .extended_properties
        .retain(|key, _| !key.contains("Object ID") && !key.contains("Principal"));
    let tasks = plan(&alert, &Policy::default());
    assert!(with_action(&tasks, Action::RestrictPrincipal).is_empty());
    let contact = one(&tasks, Action::ContactOwner);
    assert!(contact
        .checklist
        .iter()
        .any(|item| item.starts_with("KV-2b:")));
}

#[test]
fn kv2b_reverts_a_widened_access_policy() {
    let alert = fixture("keyvault-KV_PutGetAnomaly-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let revert = one(&tasks, Action::RevertAccessPolicy);
    assert_eq!(revert.steps, vec!["KV-2b"]);
}

#[test]
fn kv2c_known_entra_roles_go_to_the_tenant_admin_and_a_review() {
    let alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let mut policy = in_tenant();
    policy.tenant_admins = vec!["entra-admins@contoso.com".into()];
    let mut bob = known("bob.ops@contoso.com");
    bob.entra_roles = vec!["Global Reader".into()];
    policy.known_principals = vec![bob];
    let tasks = plan(&alert, &policy);
    let admin = one(&tasks, Action::ContactTenantAdmin);
    assert_eq!(admin.recipients, vec!["entra-admins@contoso.com"]);
    assert!(admin.reason.contains("Global Reader"));
    let review = one(&tasks, Action::ReviewEntraRoles);
    assert_eq!(review.steps, vec!["KV-2c"]);
    assert_eq!(review.status, TaskStatus::PendingApproval);
}

#[test]
fn kv2c_unknown_principal_of_the_own_tenant_is_a_question_for_the_admin() {
    let alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let tasks = plan(&alert, &in_tenant());
    let admin = one(&tasks, Action::ContactTenantAdmin);
    assert!(admin
        .reason
        .contains("ask the tenant administrator to check"));
    assert!(with_action(&tasks, Action::ReviewEntraRoles).is_empty());
    let quiet = Policy {
        ask_admin_about_unknown_principals: false,
        ..in_tenant()
    };
    assert!(with_action(&plan(&alert, &quiet), Action::ContactTenantAdmin).is_empty());
}

#[test]
fn kv3_reports_the_objects_the_window_and_the_log_review() {
    let alert = fixture("keyvault-KV_ListGetAnomaly-egwfa.json");
    let tasks = plan(&alert, &Policy::default());
    let report = one(&tasks, Action::NotifySecurityTeam);
    assert_eq!(report.steps, vec!["KV-3"]);
    assert_eq!(
        report.facts["accessed_objects"],
        "https://kv-contoso-payments.vault.azure.net/secrets/db-conn-primary"
    );
    assert_eq!(
        report.facts["suspicious_operations"],
        "[SecretList:4, SecretGet:11]"
    );
    assert_eq!(report.facts["start_time_utc"], "05/14/2025 07:03:00");
    assert!(report.checklist[0].contains("192.0.2.5"));
    assert!(report.checklist[0].contains("svc-deploy@contoso.com"));
}

#[test]
fn kv4_denied_access_rotates_nothing_unless_facts_show_reads() {
    let alert = fixture("keyvault-KV_UserAccessDeniedAnomaly-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    for action in [
        Action::RotateSecret,
        Action::DisableSecret,
        Action::ContactAppOwner,
    ] {
        assert!(with_action(&tasks, action).is_empty(), "{action}");
    }
    let report = one(&tasks, Action::NotifySecurityTeam);
    assert_eq!(
        report.facts["access_result"],
        "access was denied and no read is shown"
    );

    let mut read = alert.clone();
    read.extended_properties.insert(
        "Accessed secret 000".into(),
        "https://kv-contoso-hr.vault.azure.net/secrets/payroll-api/0123".into(),
    );
    let tasks = plan(&read, &Policy::default());
    let rotations = with_action(&tasks, Action::RotateSecret);
    assert_eq!(rotations.len(), 2, "Target and the accessed secret");
    assert!(rotations
        .iter()
        .any(|t| t.target == "https://kv-contoso-hr.vault.azure.net/secrets/payroll-api"));
}

#[test]
fn kv4a_caps_per_object_tasks_and_covers_the_rest_vault_wide() {
    let alert = fixture("keyvault-KV_OperationVolumeAnomaly-hugeextprops.json");
    let policy = Policy {
        max_rotation_tasks: 10,
        ..Policy::default()
    };
    let tasks = plan(&alert, &policy);
    let rotations = with_action(&tasks, Action::RotateSecret);
    // 10 per-object tasks plus one vault-wide task for the remainder.
    assert_eq!(rotations.len(), 11);
    let vault_wide = rotations
        .iter()
        .find(|t| t.target.starts_with("/subscriptions/"))
        .expect("vault-wide task");
    assert!(vault_wide.reason.contains("the 391 further object(s)"));
    let Parameters::RotateSecret {
        target: SecretRotationTarget::Vault { except, .. },
        ..
    } = &vault_wide.parameters
    else {
        panic!("vault-wide parameters: {:?}", vault_wide.parameters);
    };
    assert_eq!(
        except.len(),
        10,
        "the objects with their own task are excepted"
    );
    assert_eq!(with_action(&tasks, Action::DisableSecret).len(), 10);
    let report = one(&tasks, Action::NotifySecurityTeam);
    assert_eq!(report.facts["accessed_count"], "401");
    assert!(report.facts["accessed_objects"].contains("and 301 more"));
    // Versions are dropped: the URIs name the secret, never a value or version.
    assert!(rotations
        .iter()
        .all(|t| !t.target.contains("/secrets/app-secret-000/")));
}

#[test]
fn kv4a_without_named_objects_rotates_what_the_caller_read_in_the_vault() {
    let mut alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    alert.extended_properties.remove("Target");
    let tasks = plan(&alert, &Policy::default());
    let rotation = one(&tasks, Action::RotateSecret);
    assert!(rotation.target.ends_with("/vaults/kv-contoso-hr"));
    assert!(rotation
        .reason
        .contains("rotate all secrets, keys and certificates read by"));
    assert!(matches!(
        &rotation.parameters,
        Parameters::RotateSecret {
            target: SecretRotationTarget::Vault { .. },
            ..
        }
    ));
}

#[test]
fn kv4c_contacts_the_callers_application_unless_it_is_a_microsoft_tool() {
    let alert = fixture("keyvault-KV_UserAppAnomaly-egwfa.json");
    let policy = Policy {
        known_principals: vec![known("345b52d1-3dc1-45bf-8987-80e8bf872c77")],
        ..Policy::default()
    };
    let tasks = plan(&alert, &policy);
    let app = one(&tasks, Action::ContactAppOwner);
    assert_eq!(app.target, "345b52d1-3dc1-45bf-8987-80e8bf872c77");
    assert_eq!(
        app.recipients,
        vec!["owner-of-345b52d1-3dc1-45bf-8987-80e8bf872c77"]
    );
    // The known application does not make the unknown user known.
    one(&tasks, Action::RestrictPrincipal);

    let cli = fixture("keyvault-KV_UserAnomaly-egrest.json");
    let tasks = plan(&cli, &Policy::default());
    let app = one(&tasks, Action::ContactAppOwner);
    assert!(
        app.target.ends_with("/vaults/kv-contoso-hr"),
        "Azure CLI caller"
    );
}

// ---- DNS ----

#[test]
fn dns_contacts_the_owner_with_the_queries_and_plans_isolation_and_a_scan() {
    let alert = fixture("dns-AzureDNS_CurrencyMining-egrest.json");
    let policy = Policy {
        owners: BTreeMap::from([(
            "/subscriptions/0f0fc553-4fc4-49b5-a8d7-146d155a577a/resourceGroups/rg-build-dev"
                .into(),
            vec!["build-team@contoso.com".into()],
        )]),
        notify_recipients: vec!["secops@contoso.com".into()],
        ..Policy::default()
    };
    let tasks = plan(&alert, &policy);
    let contact = one(&tasks, Action::ContactOwner);
    assert_eq!(contact.steps, vec!["DNS-1", "DNS-2b", "DNS-2c", "DNS-2d"]);
    assert_eq!(
        contact.facts["queried_domains"],
        "xmr-pool-eu.miner.example"
    );
    assert_eq!(contact.facts["answers"], "203.0.113.23, 198.51.100.34");
    assert_eq!(contact.facts["source_ips"], "10.40.2.9");
    assert!(matches!(
        &contact.parameters,
        Parameters::ContactOwner { owner_lookup: Some(lookup), .. } if lookup.tag == "owner"
    ));
    assert_eq!(
        contact.recipients,
        vec!["build-team@contoso.com", "secops@contoso.com"]
    );
    let isolate = one(&tasks, Action::IsolateResourceNetwork);
    assert!(isolate
        .target
        .ends_with("/virtualMachines/vm-buildagent-03"));
    assert_eq!(isolate.status, TaskStatus::PendingApproval);
    let scan = one(&tasks, Action::RunAntimalwareScan);
    assert_eq!(scan.steps, vec!["DNS-2a"]);
    assert_eq!(
        scan.status,
        TaskStatus::Ready,
        "the scan is auto by default"
    );
}

#[test]
fn dns_on_a_resource_that_is_not_a_machine_keeps_the_scan_as_a_checklist_item() {
    let mut alert = fixture("dns-AzureDNS_CurrencyMining-egrest.json");
    alert.entities.retain(|e| !matches!(e, Entity::Host { .. }));
    alert.resource_id = crate::domain::AzureResourceId::parse(
        "/subscriptions/0f0fc553-4fc4-49b5-a8d7-146d155a577a/resourceGroups/rg-web/providers/Microsoft.Web/sites/app-web",
    )
    .ok();
    let tasks = plan(&alert, &Policy::default());
    assert!(with_action(&tasks, Action::RunAntimalwareScan).is_empty());
    let contact = one(&tasks, Action::ContactOwner);
    assert!(contact.steps.contains(&"DNS-2a".to_string()));
    one(&tasks, Action::IsolateResourceNetwork);
}

// ---- Resource Manager ----

#[test]
fn arm2a_deletes_unfamiliar_accounts_and_resets_familiar_ones() {
    let alert = fixture("arm-ARM_OperationFromSuspiciousIP-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let contact = one(&tasks, Action::ContactOwner);
    assert_eq!(contact.steps, vec!["ARM-1", "ARM-2a", "ARM-2b"]);
    let delete = one(&tasks, Action::DeleteUnfamiliarAccount);
    assert_eq!(delete.steps, vec!["ARM-2a"]);
    assert!(with_action(&tasks, Action::ResetCredentials).is_empty());
    // An unfamiliar account also loses its permissions (ARM-2b).
    one(&tasks, Action::RemoveRoleAssignments);

    let upn = contact.facts["user_principal_name"].clone();
    let policy = Policy {
        known_principals: vec![known(&upn)],
        ..Policy::default()
    };
    let tasks = plan(&alert, &policy);
    one(&tasks, Action::ResetCredentials);
    assert!(with_action(&tasks, Action::DeleteUnfamiliarAccount).is_empty());
    assert!(with_action(&tasks, Action::RemoveRoleAssignments).is_empty());
}

#[test]
fn arm2b_automation_alerts_remove_runbooks_and_rotate_automation_credentials() {
    let alert = fixture("arm-ARM_PowerZure.StartRunbook-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let runbook = one(&tasks, Action::RemoveRunbook);
    assert_eq!(
        runbook.target,
        "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7"
    );
    one(&tasks, Action::RotateAutomationCredentials);
}

#[test]
fn arm2b_role_changes_remove_the_assignments() {
    let alert = fixture("arm-ARM_AnomalousRBACRoleAssignment-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let remove = one(&tasks, Action::RemoveRoleAssignments);
    assert!(remove
        .reason
        .contains("Microsoft.Authorization/roleAssignments/write"));
}

#[test]
fn arm_key_vault_dumps_rotate_through_the_key_vault_playbook() {
    let alert = fixture("arm-ARM_MicroBurst.AzKeyVaultSecretsREST-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    let rotate = one(&tasks, Action::RotateSecret);
    assert_eq!(rotate.steps, vec!["ARM-2b", "KV-4a"]);
    let keys = fixture("arm-ARM_MicroBurst.AzKeyVaultKeysREST-egwfa.json");
    one(&plan(&keys, &Policy::default()), Action::RotateKey);
    let storage = fixture("arm-ARM_MicroBurst.AZStorageKeysREST-egrest.json");
    one(
        &plan(&storage, &Policy::default()),
        Action::RotateStorageKeys,
    );
}

#[test]
fn arm2c_targets_each_affected_vm() {
    let alert = fixture("arm-ARM_AnomalousServiceOperation.Execution-egrest.json");
    let tasks = plan(&alert, &Policy::default());
    for action in [
        Action::ChangeVmPasswords,
        Action::RunAntimalwareScan,
        Action::ReimageVm,
    ] {
        let task = one(&tasks, action);
        assert!(
            task.target.ends_with("/virtualMachines/vm-batch-07"),
            "{action}"
        );
        assert_eq!(task.steps, vec!["ARM-2c"]);
    }
}

#[test]
fn every_policy_example_parses() {
    for text in [
        include_str!("../../examples/policy/default.json"),
        include_str!("../../examples/policy/strict.json"),
        include_str!("../../examples/policy/permissive.json"),
    ] {
        parse_policy(text).expect("example policy is valid");
    }
}

#[test]
fn containment_without_a_target_becomes_a_checklist_item_not_a_task() {
    let mut alert = fixture("dns-AzureDNS_CurrencyMining-egrest.json");
    alert.entities.clear();
    alert.resource_id = None;
    alert.compromised_entity = None;
    alert.extended_properties.clear();
    let tasks = plan(&alert, &Policy::default());
    assert!(
        tasks.iter().all(|t| !t.queue.is_containment()),
        "{tasks:#?}"
    );
    let contact = one(&tasks, Action::ContactOwner);
    assert!(contact.steps.contains(&"DNS-2".to_string()));
    assert!(contact
        .checklist
        .iter()
        .any(|item| item
            .starts_with("DNS-2: the alert names no target for isolate_resource_network")));
}

// ---- Bounds ----

#[test]
fn an_alert_with_125k_vault_uris_is_capped_with_a_warning_and_plans_quickly() {
    let mut alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    for index in 0..125_000 {
        alert.extended_properties.insert(
            format!("Accessed secret {index:06}"),
            format!("https://kv-contoso-hr.vault.azure.net/secrets/s-{index}/0a1b2c{index}"),
        );
    }
    let started = std::time::Instant::now();
    let registry = Registry::standard();
    let route = registry.route(&alert);
    let mut plan = route.plan(&alert, &Policy::default());
    Policy::default().finalize(&alert, &mut plan);
    println!(
        "planned an alert with 125,000 Key Vault object URIs in {:?}",
        started.elapsed()
    );
    let dropped = 125_000 + 1 - super::MAX_VAULT_OBJECTS_PER_ALERT;
    assert!(
        plan.warnings()
            .iter()
            .any(|warning| warning.contains(&format!("{dropped} further Key Vault object URI(s)"))),
        "{:?}",
        plan.warnings()
    );
    let tasks = plan.into_tasks();
    let report = one(&tasks, Action::NotifySecurityTeam);
    assert_eq!(report.facts["accessed_count"], "125001");
    // The per-object tasks stop at the policy's cap; one vault-wide task covers the rest.
    assert_eq!(
        with_action(&tasks, Action::DisableSecret).len(),
        crate::policy::DEFAULT_MAX_ROTATION_TASKS
    );
    assert!(with_action(&tasks, Action::RotateSecret)
        .iter()
        .any(|task| task.reason.contains("further object(s)")));
}

// ---- Registry ----

#[test]
fn registry_routes_all_73_documented_types_once_each_to_its_handler() {
    let registry = Registry::standard();
    let rows: Vec<_> = registry.catalog().collect();
    assert_eq!(rows.len(), 73);
    let count = |service| rows.iter().filter(|row| row.service == service).count();
    assert_eq!(count(KeyVault::NAME), 14);
    assert_eq!(count(Dns::NAME), 13);
    assert_eq!(count(ResourceManager::NAME), 46);
    for row in &rows {
        let mut alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
        alert.alert_type = format!("SIMULATED_{}", row.alert_type.to_ascii_uppercase());
        let route = registry.route(&alert);
        assert_eq!(route.service, row.service, "{}", row.alert_type);
        assert_eq!(route.entry.map(|e| e.alert_type), Some(row.alert_type));
    }
    // Prefixes are not routes.
    let mut alert = fixture("keyvault-KV_UserAnomaly-egrest.json");
    alert.alert_type = "KV_FutureDetectionV2".into();
    assert_eq!(registry.route(&alert).service, Fallback::NAME);
    assert_eq!(registry.route(&alert).contact_step(), "GEN-1");
}

#[test]
fn registry_names_the_services_and_their_steps_on_the_wire_as_before() {
    let registry = Registry::standard();
    let names: Vec<&str> = registry.services().map(|name| name.as_str()).collect();
    assert_eq!(names, ["key_vault", "dns", "resource_manager", "unknown"]);
    // The steps are the handlers' own, in registration order, then GEN-1.
    let steps: Vec<&str> = registry.steps().iter().collect();
    assert_eq!(
        steps,
        [
            "KV-1", "KV-2a", "KV-2b", "KV-2c", "KV-3", "KV-4a", "KV-4b", "KV-4c", "DNS-1", "DNS-2",
            "DNS-2a", "DNS-2b", "DNS-2c", "DNS-2d", "ARM-1", "ARM-2a", "ARM-2b", "ARM-2c", "GEN-1",
        ]
    );
    assert_eq!(
        registry.steps().headings(),
        ["KV-2", "KV-4", "DNS-2", "ARM-2"]
    );
    // A message's service is read back against the registry, and refused when unknown.
    for name in names {
        let json = format!("\"{name}\"");
        let read: crate::domain::ServiceName = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }
    let err = serde_json::from_str::<crate::domain::ServiceName>("\"storage\"").unwrap_err();
    assert!(
        err.to_string().contains(
            "\"storage\" is not a registered service (one of key_vault, dns, resource_manager, unknown)"
        ),
        "{err}"
    );
}

#[test]
fn registry_every_handler_declares_rows_its_contact_step_and_steps_the_docs_describe() {
    let registry = Registry::standard();
    let docs = include_str!("../../docs/playbooks.md");
    for handler in registry.handlers().chain([registry.fallback()]) {
        let service = handler.service();
        let is_fallback = service == Fallback::NAME;
        assert_eq!(
            handler.catalog().is_empty(),
            is_fallback,
            "the {service} handler declares no catalogue rows (only the fallback has none)"
        );
        assert!(
            handler.steps().contains(&handler.contact_step()),
            "the {service} handler's contact step {} is not among its steps",
            handler.contact_step()
        );
        for step in handler.steps() {
            assert!(
                is_step_id(step),
                "the {service} handler cites {step:?}, which is not a step id like KV-2a"
            );
            assert!(
                mentions(docs, step),
                "docs/playbooks.md does not describe step {step} of the {service} handler"
            );
        }
    }
    // And the other way round: every step the docs' tables describe is a handler's (or heads
    // some of a handler's lettered steps).
    let steps = registry.steps();
    for step in documented_steps(docs) {
        assert!(
            steps.rule_step(step) == Some(step),
            "docs/playbooks.md describes step {step}, which no registered handler cites in steps()"
        );
    }
}

/// The step ids in the first column of the docs' tables (`| KV-2a |`, `| DNS-2b, DNS-2c |`).
fn documented_steps(docs: &str) -> Vec<&str> {
    let mut steps = Vec::new();
    for line in docs.lines() {
        let Some(first) = line
            .strip_prefix('|')
            .and_then(|rest| rest.split('|').next())
        else {
            continue;
        };
        for word in first.split(|c: char| c == ',' || c == '+' || c.is_whitespace()) {
            if is_step_id(word) && !steps.contains(&word) {
                steps.push(word);
            }
        }
    }
    steps
}

/// Whether a word has the shape of a step id: upper-case letters, `-`, digits, optionally
/// one lower-case letter (`KV-2a`, `GEN-1`).
fn is_step_id(word: &str) -> bool {
    let Some((prefix, number)) = word.split_once('-') else {
        return false;
    };
    let number = number
        .strip_suffix(|c: char| c.is_ascii_lowercase())
        .unwrap_or(number);
    !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_uppercase())
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

/// Whether a text names a step id as a word (`DNS-2` is not named by `DNS-2a`).
fn mentions(text: &str, step: &str) -> bool {
    text.match_indices(step).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + step.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[test]
fn the_task_schema_lists_exactly_the_registered_service_names() {
    let schema = crate::domain::task_json_schema();
    let names: Vec<&str> = schema["$defs"]["Service"]["enum"]
        .as_array()
        .expect("the service schema is an enum")
        .iter()
        .map(|name| name.as_str().expect("names are strings"))
        .collect();
    let registered: Vec<&str> = Registry::standard()
        .services()
        .map(|name| name.as_str())
        .collect();
    assert_eq!(names, registered);
}
