//! `remove_role_assignments` against the simulator: exact scopes, custom roles after their
//! assignments, undo with the same GUIDs.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::{AzureResourceId, Guid, PrincipalKind, PrincipalRef};
use defender_responder::domain::parameters::{Parameters, RoleAssignmentTarget};
use defender_responder::executors::isolation::role_assignments::RemoveRoleAssignments;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};

use crate::helpers::*;

const SUBSCRIPTION: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7";
const CUSTOM_ROLE: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/providers/Microsoft.Authorization/roleDefinitions/d0c1e2f3-a4b5-4c6d-8e7f-901a2b3c4d5e";
const MALLORY_AT_SUBSCRIPTION: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/providers/Microsoft.Authorization/roleAssignments/7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";
const RESPONDER_AT_SUBSCRIPTION: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/providers/Microsoft.Authorization/roleAssignments/1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b";

fn named(id: &str) -> defender_responder::domain::task::Task {
    task(Parameters::RemoveRoleAssignments {
        target: RoleAssignmentTarget::Named {
            id: AzureResourceId::parse(id).unwrap(),
        },
    })
}

fn mallory() -> PrincipalRef {
    PrincipalRef::ObjectId {
        object_id: Guid::parse(MALLORY_SP).unwrap(),
        kind: PrincipalKind::ServicePrincipal,
        user_principal_name: None,
    }
}

#[tokio::test]
async fn a_custom_role_goes_after_its_assignments_and_undo_puts_both_back() {
    let world = world().await;
    let task = named(CUSTOM_ROLE);
    let role_before = resource(&world.sim, CUSTOM_ROLE);
    let (preview, applied, _) = run(&RemoveRoleAssignments, &task, &world).await;
    let urls: Vec<&str> = preview
        .change
        .requests
        .iter()
        .map(|r| r.url.as_str())
        .collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls[0].contains("/roleAssignments/7a6b5c4d"), "{urls:?}");
    assert!(urls[1].contains("/roleDefinitions/d0c1e2f3"), "{urls:?}");
    assert!(world.sim.resource(CUSTOM_ROLE).is_none());
    RemoveRoleAssignments
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    assert_eq!(
        resource(&world.sim, CUSTOM_ROLE)["properties"]["roleName"],
        role_before["properties"]["roleName"]
    );
    assert_eq!(
        resource(&world.sim, MALLORY_AT_SUBSCRIPTION)["properties"]["principalId"],
        MALLORY_SP
    );
}

#[tokio::test]
async fn in_a_scope_only_assignments_at_exactly_that_scope_are_removed() {
    let world = world().await;
    let task = task(Parameters::RemoveRoleAssignments {
        target: RoleAssignmentTarget::InScope {
            scope: AzureResourceId::parse(SUBSCRIPTION).unwrap(),
            created_by: None,
            assigned_to: Some(mallory()),
        },
    });
    let vault_assignment = format!("{HR_VAULT}/providers/Microsoft.Authorization/roleAssignments/3f2e1d0c-9b8a-4765-a4b3-c2d1e0f9a8b7");
    let (preview, _, _) = run(&RemoveRoleAssignments, &task, &world).await;
    let deletes = preview
        .change
        .requests
        .iter()
        .filter(|r| r.url.contains("/roleAssignments/"))
        .count();
    assert_eq!(deletes, 1, "{}", preview.change.summary);
    assert!(world.sim.resource(MALLORY_AT_SUBSCRIPTION).is_none());
    assert!(
        world.sim.resource(&vault_assignment).is_some(),
        "below the scope: not an exact match"
    );
    assert!(RemoveRoleAssignments
        .preview(&task, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());
}

#[tokio::test]
async fn refusals_and_throttling() {
    let world = world().await;
    let err = RemoveRoleAssignments
        .preview(&named(RESPONDER_AT_SUBSCRIPTION), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::OwnIdentity);
    let every = task(Parameters::RemoveRoleAssignments {
        target: RoleAssignmentTarget::InScope {
            scope: AzureResourceId::parse(SUBSCRIPTION).unwrap(),
            created_by: None,
            assigned_to: None,
        },
    });
    let err = RemoveRoleAssignments
        .preview(&every, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::SubscriptionWide);

    let task = named(MALLORY_AT_SUBSCRIPTION);
    let preview = RemoveRoleAssignments
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("DELETE".into()),
        path: "*/roleAssignments/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(5),
            code: None,
            message: None,
        },
    });
    let err = RemoveRoleAssignments
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(5)));
    assert!(world.sim.resource(MALLORY_AT_SUBSCRIPTION).is_some());
}
