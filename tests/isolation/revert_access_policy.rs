//! `revert_access_policy` against the simulator's Resource Graph changes.

use defender_responder::domain::ids::KeyVaultId;
use defender_responder::domain::parameters::Parameters;
use defender_responder::executors::isolation::revert_access_policy::RevertAccessPolicy;
use defender_responder::executors::{Executor, RefusalReason};
use serde_json::json;

use crate::helpers::*;

fn revert(vault: &str) -> defender_responder::domain::task::Task {
    task(Parameters::RevertAccessPolicy {
        vault: KeyVaultId::parse(vault).unwrap(),
        changed_by: None,
    })
}

#[tokio::test]
async fn puts_the_previous_permissions_back_and_undo_rewidens_exactly() {
    let world = world().await;
    let before = resource(&world.sim, PAYMENTS_VAULT)["properties"]["accessPolicies"].clone();
    let task = revert(PAYMENTS_VAULT);
    let (preview, applied, _) = run(&RevertAccessPolicy, &task, &world).await;
    assert!(preview.change.requests[0]
        .url
        .contains("/accessPolicies/replace"));
    let after = resource(&world.sim, PAYMENTS_VAULT)["properties"]["accessPolicies"].clone();
    assert_eq!(after[1]["objectId"], MALLORY_SP);
    assert_eq!(after[1]["permissions"]["secrets"], json!(["get"]));
    assert_eq!(after[0], before[0], "other entries are untouched");
    assert!(RevertAccessPolicy
        .preview(&task, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());

    RevertAccessPolicy
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    assert_eq!(
        resource(&world.sim, PAYMENTS_VAULT)["properties"]["accessPolicies"],
        before
    );
}

#[tokio::test]
async fn a_vault_without_a_recorded_change_is_refused() {
    let world = world().await;
    let err = RevertAccessPolicy
        .preview(&revert(HR_VAULT), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::TargetNotFound);
}
