//! The alert authentication guard and the registry, against the simulator.

use defender_responder::domain::ids::KeyVaultId;
use defender_responder::domain::parameters::{FirewallBypass, FirewallDefault, Parameters};
use defender_responder::domain::task::Action;
use defender_responder::executors::guards::{authenticate_alert, mark_alert_in_progress};
use defender_responder::executors::{ExecutorRegistry, RefusalReason};

use crate::helpers::*;

fn firewall(alert_type: &str, resource: &str) -> defender_responder::domain::task::Task {
    task_with(
        Parameters::EnableKeyVaultFirewall {
            vault: KeyVaultId::parse(PAYMENTS_VAULT).unwrap(),
            default_action: FirewallDefault::Deny,
            bypass: FirewallBypass::AzureServices,
            allow_ip_ranges: vec![],
            allow_virtual_networks: vec![],
            block_addresses: vec![],
        },
        alert_type,
        resource,
        "auto",
    )
}

#[tokio::test]
async fn a_real_alert_authenticates_and_is_marked_in_progress() {
    let world = world().await;
    let alert = authenticate_alert(&firewall("KV_ListGetAnomaly", PAYMENTS_VAULT), &world.ctx)
        .await
        .expect("the seed's alert authenticates");
    assert!(
        alert.id.contains("/locations/westeurope/alerts/"),
        "{}",
        alert.id
    );
    mark_alert_in_progress(&alert, &world.ctx).await.unwrap();
    assert_eq!(
        resource(&world.sim, &alert.id)["properties"]["status"],
        "InProgress"
    );
}

#[tokio::test]
async fn a_forged_alert_is_refused() {
    let world = world().await;
    // Unknown id.
    let mut forged = firewall("KV_ListGetAnomaly", PAYMENTS_VAULT);
    forged.alert.system_alert_id =
        "2575094087140347022_00000000-0000-0000-0000-000000000000".into();
    let err = authenticate_alert(&forged, &world.ctx).await.unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::AlertNotAuthenticated);
    // The real id with another type.
    let err = authenticate_alert(&firewall("KV_TORAccess", PAYMENTS_VAULT), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::AlertNotAuthenticated);
    // The real id about another resource.
    let err = authenticate_alert(&firewall("KV_ListGetAnomaly", HR_VAULT), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::AlertNotAuthenticated);
}

#[test]
fn the_standard_registry_has_the_isolation_executors() {
    let registry = ExecutorRegistry::standard();
    assert!(registry.get(Action::EnableKeyVaultFirewall).is_some());
    assert!(
        registry.get(Action::ContactOwner).is_none(),
        "recorded as not_automated"
    );
}
