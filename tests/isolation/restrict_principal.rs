//! `restrict_principal` against the simulator: access-policy and RBAC vaults.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::{Guid, KeyVaultId, PrincipalKind, PrincipalRef};
use defender_responder::domain::parameters::Parameters;
use defender_responder::executors::isolation::restrict_principal::RestrictPrincipal;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};
use serde_json::Value;

use crate::helpers::*;

fn restrict(vault: &str, object_id: &str) -> defender_responder::domain::task::Task {
    task(Parameters::RestrictPrincipal {
        vault: KeyVaultId::parse(vault).unwrap(),
        principal: PrincipalRef::ObjectId {
            object_id: Guid::parse(object_id).unwrap(),
            kind: PrincipalKind::ServicePrincipal,
            user_principal_name: None,
        },
    })
}

fn policies(world: &World, vault: &str) -> Value {
    resource(&world.sim, vault)["properties"]["accessPolicies"].clone()
}

#[tokio::test]
async fn removes_the_access_policy_entry_and_undo_puts_it_back() {
    let world = world().await;
    let before = policies(&world, PAYMENTS_VAULT);
    let task = restrict(PAYMENTS_VAULT, MALLORY_SP);
    let (preview, applied, _) = run(&RestrictPrincipal, &task, &world).await;
    assert!(preview.change.requests[0]
        .url
        .contains("/accessPolicies/remove"));
    let after = policies(&world, PAYMENTS_VAULT);
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(
        after[0]["objectId"], RESPONDER_OID,
        "the responder keeps its access"
    );

    let again = RestrictPrincipal.preview(&task, &world.ctx).await.unwrap();
    assert!(again.change.is_noop(), "{}", again.change.summary);

    RestrictPrincipal
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    assert_eq!(policies(&world, PAYMENTS_VAULT), before);
}

#[tokio::test]
async fn removes_role_assignments_at_the_vault_scope_only_and_undo_restores_the_same_guid() {
    let world = world().await;
    let task = restrict(HR_VAULT, MALLORY_SP);
    let assignment = format!(
        "{HR_VAULT}/providers/Microsoft.Authorization/roleAssignments/3f2e1d0c-9b8a-4765-a4b3-c2d1e0f9a8b7"
    );
    let subscription_assignment = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/providers/Microsoft.Authorization/roleAssignments/7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
    let before = resource(&world.sim, &assignment);
    let (preview, applied, _) = run(&RestrictPrincipal, &task, &world).await;
    assert_eq!(
        preview.change.requests.len(),
        1,
        "{}",
        preview.change.summary
    );
    assert!(world.sim.resource(&assignment).is_none());
    assert!(
        world.sim.resource(subscription_assignment).is_some(),
        "the assignment above the vault is not touched"
    );
    RestrictPrincipal
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let restored = resource(&world.sim, &assignment);
    for field in [
        "roleDefinitionId",
        "principalId",
        "principalType",
        "scope",
        "description",
    ] {
        assert_eq!(
            restored["properties"][field], before["properties"][field],
            "{field}"
        );
    }
}

#[tokio::test]
async fn refuses_the_responders_own_identity_and_excluded_principals() {
    let mut world = world().await;
    let err = RestrictPrincipal
        .preview(&restrict(PAYMENTS_VAULT, RESPONDER_OID), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::OwnIdentity);
    world.ctx.settings.excluded_principals = vec![Guid::parse(MALLORY_SP).unwrap()];
    let err = RestrictPrincipal
        .preview(&restrict(PAYMENTS_VAULT, MALLORY_SP), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::ExcludedPrincipal);
}

#[tokio::test]
async fn throttling_and_a_policy_changed_since_the_preview() {
    let world = world().await;
    let task = restrict(PAYMENTS_VAULT, MALLORY_SP);
    let preview = RestrictPrincipal.preview(&task, &world.ctx).await.unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("PUT".into()),
        path: "*/accessPolicies/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(20),
            code: None,
            message: None,
        },
    });
    let err = RestrictPrincipal
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(20)));

    // The entry is widened by someone else after the preview: the approved change is stale.
    world
        .ctx
        .clients
        .arm
        .put(
            &format!("{PAYMENTS_VAULT}/accessPolicies/add"),
            "2025-05-01",
            &serde_json::json!({"properties": {"accessPolicies": [{"tenantId": "8d3b4c2a-6f1e-4b7a-9c55-3e2f1a0b9d11", "objectId": MALLORY_SP, "permissions": {"keys": ["get"]}}]}}),
        )
        .await
        .unwrap();
    let err = RestrictPrincipal
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Conflict, "{err}");
}
