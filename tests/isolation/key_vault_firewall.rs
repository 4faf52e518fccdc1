//! `enable_key_vault_firewall` against the simulator.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::{IpAddress, IpRange, KeyVaultId};
use defender_responder::domain::parameters::{FirewallBypass, FirewallDefault, Parameters};
use defender_responder::executors::isolation::key_vault_firewall::EnableKeyVaultFirewall;
use defender_responder::executors::{Executor, ExecutorErrorKind};
use serde_json::json;

use crate::helpers::*;

fn firewall_task() -> defender_responder::domain::task::Task {
    task(Parameters::EnableKeyVaultFirewall {
        vault: KeyVaultId::parse(PAYMENTS_VAULT).unwrap(),
        default_action: FirewallDefault::Deny,
        bypass: FirewallBypass::AzureServices,
        allow_ip_ranges: vec![IpRange("198.51.100.0/24".parse().unwrap())],
        allow_virtual_networks: vec![],
        block_addresses: vec![IpAddress::parse("203.0.113.9").unwrap()],
    })
}

#[tokio::test]
async fn closes_the_firewall_verifies_and_undo_restores_the_exact_prior_state() {
    let world = world().await;
    let before = resource(&world.sim, PAYMENTS_VAULT)["properties"].clone();
    let task = firewall_task();
    let (preview, applied, _) = run(&EnableKeyVaultFirewall, &task, &world).await;

    assert_eq!(preview.change.requests.len(), 1);
    assert_eq!(preview.leases, vec![PAYMENTS_VAULT.to_ascii_lowercase()]);
    assert_eq!(preview.prior_state["networkAcls"], before["networkAcls"]);
    let after = resource(&world.sim, PAYMENTS_VAULT)["properties"].clone();
    assert_eq!(after["networkAcls"]["defaultAction"], "Deny");
    assert_eq!(
        after["networkAcls"]["ipRules"],
        json!([{"value": "198.51.100.0/24"}])
    );
    let log = writes(&world.sim);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["method"], "PATCH");

    // Redelivered after success: the preview finds nothing to do.
    let again = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    assert!(again.change.is_noop(), "{}", again.change.summary);

    EnableKeyVaultFirewall
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .expect("undo");
    let restored = resource(&world.sim, PAYMENTS_VAULT)["properties"].clone();
    assert_eq!(restored["networkAcls"], before["networkAcls"]);
    assert_eq!(
        restored["publicNetworkAccess"],
        before["publicNetworkAccess"]
    );
}

#[tokio::test]
async fn keeps_the_responders_egress_while_rotations_on_the_vault_are_pending() {
    let mut world = world().await;
    world.ctx.settings.egress_ip_ranges = vec!["192.0.2.10/32".parse().unwrap()];
    let task = firewall_task();
    let without = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    let body = without.change.requests[0].body.clone().unwrap();
    assert_eq!(
        body["properties"]["networkAcls"]["ipRules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    world.ctx = world
        .ctx
        .clone()
        .with_rotation_pending([PAYMENTS_VAULT.to_uppercase()]);
    let with = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    let body = with.change.requests[0].body.clone().unwrap();
    assert_eq!(
        body["properties"]["networkAcls"]["ipRules"],
        json!([{"value": "198.51.100.0/24"}, {"value": "192.0.2.10/32"}])
    );
    assert_ne!(
        with.hash(),
        without.hash(),
        "the approval binds to the exact body"
    );
}

#[tokio::test]
async fn throttling_surfaces_retry_after_and_writes_nothing_more() {
    let world = world().await;
    let task = firewall_task();
    let preview = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("PATCH".into()),
        path: "*/vaults/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(30),
            code: None,
            message: None,
        },
    });
    let err = EnableKeyVaultFirewall
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable, "{err}");
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(30)));
    assert_eq!(
        resource(&world.sim, PAYMENTS_VAULT)["properties"]["networkAcls"]["defaultAction"],
        "Allow"
    );
}

#[tokio::test]
async fn a_vault_changed_since_the_preview_is_a_conflict_and_a_busy_vault_is_retried() {
    let world = world().await;
    let task = firewall_task();
    let preview = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap();

    world.sim.add_fault(FaultRule {
        method: Some("PATCH".into()),
        path: "*/vaults/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 409,
            retry_after: None,
            code: None,
            message: None,
        },
    });
    let err = EnableKeyVaultFirewall
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ExecutorErrorKind::Retryable,
        "409 AnotherOperationInProgress: {err}"
    );

    // Someone adds a rule between the preview and the apply.
    world
        .ctx
        .clients
        .arm
        .patch(
            PAYMENTS_VAULT,
            "2025-05-01",
            &json!({"properties": {"networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices", "ipRules": [{"value": "192.0.2.99/32"}], "virtualNetworkRules": []}}}),
        )
        .await
        .unwrap();
    world.sim.clear_requests();
    let err = EnableKeyVaultFirewall
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Conflict, "{err}");
    assert!(writes(&world.sim).is_empty());
}

#[tokio::test]
async fn a_missing_vault_is_refused() {
    let world = world().await;
    let task = task(Parameters::EnableKeyVaultFirewall {
        vault: KeyVaultId::parse(&PAYMENTS_VAULT.replace("kv-contoso-payments", "kv-gone"))
            .unwrap(),
        default_action: FirewallDefault::Deny,
        bypass: FirewallBypass::AzureServices,
        allow_ip_ranges: vec![],
        allow_virtual_networks: vec![],
        block_addresses: vec![],
    });
    let err = EnableKeyVaultFirewall
        .preview(&task, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(
        refusal_reason(err),
        defender_responder::executors::RefusalReason::TargetNotFound
    );
}
