//! `disable_account` and `delete_unfamiliar_account` against the simulator's directory.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::{Guid, PersonAddress, PrincipalKind, PrincipalRef};
use defender_responder::domain::parameters::Parameters;
use defender_responder::executors::isolation::accounts::{DeleteUnfamiliarAccount, DisableAccount};
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};
use serde_json::Value;

use crate::helpers::*;

const MALLORY_USER: &str = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a090";

fn by_id(object_id: &str, kind: PrincipalKind) -> PrincipalRef {
    PrincipalRef::ObjectId {
        object_id: Guid::parse(object_id).unwrap(),
        kind,
        user_principal_name: None,
    }
}

fn directory(world: &World, collection: &str, id: &str) -> Option<Value> {
    world.sim.state()["graph"][collection]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .cloned()
}

#[tokio::test]
async fn disables_a_user_revokes_sessions_and_undo_enables_it_again() {
    let world = world().await;
    let task = task(Parameters::DisableAccount {
        principal: PrincipalRef::UserPrincipalName {
            user_principal_name: PersonAddress::parse("mallory@contoso.com").unwrap(),
        },
    });
    let (preview, applied, _) = run(&DisableAccount, &task, &world).await;
    assert_eq!(preview.change.requests.len(), 2);
    assert!(preview.change.requests[1]
        .url
        .ends_with("/revokeSignInSessions"));
    assert_eq!(
        directory(&world, "users", MALLORY_USER).unwrap()["accountEnabled"],
        false
    );
    assert!(DisableAccount
        .preview(&task, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());
    let undone = DisableAccount
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    assert_eq!(
        directory(&world, "users", MALLORY_USER).unwrap()["accountEnabled"],
        true
    );
    assert_eq!(
        undone.not_restored.len(),
        1,
        "sessions are reported as not restorable"
    );
}

#[tokio::test]
async fn disables_a_service_principal_found_without_its_kind() {
    let world = world().await;
    let task = task(Parameters::DisableAccount {
        principal: by_id(MALLORY_SP, PrincipalKind::Unresolved),
    });
    let (preview, _, _) = run(&DisableAccount, &task, &world).await;
    assert_eq!(
        preview.change.requests.len(),
        1,
        "no session revocation for service principals"
    );
    assert!(preview.change.requests[0]
        .url
        .contains("/servicePrincipals/"));
    assert_eq!(
        directory(&world, "servicePrincipals", MALLORY_SP).unwrap()["accountEnabled"],
        false
    );
}

#[tokio::test]
async fn refuses_the_responder_itself_and_throttling_is_retryable() {
    let world = world().await;
    let err = DisableAccount
        .preview(
            &task(Parameters::DisableAccount {
                principal: by_id(RESPONDER_OID, PrincipalKind::ServicePrincipal),
            }),
            &world.ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::OwnIdentity);

    let task = task(Parameters::DisableAccount {
        principal: by_id(MALLORY_USER, PrincipalKind::User),
    });
    let preview = DisableAccount.preview(&task, &world.ctx).await.unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("PATCH".into()),
        path: "/v1.0/users/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(12),
            code: None,
            message: None,
        },
    });
    let err = DisableAccount
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(12)));
}

#[tokio::test]
async fn deletes_after_disabling_and_removing_role_assignments_and_undo_restores_all() {
    let world = world().await;
    let task = task(Parameters::DeleteUnfamiliarAccount {
        principal: by_id(MALLORY_SP, PrincipalKind::ServicePrincipal),
    });
    let assignments = [
        "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/providers/Microsoft.Authorization/roleAssignments/7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d".to_string(),
        format!("{HR_VAULT}/providers/Microsoft.Authorization/roleAssignments/3f2e1d0c-9b8a-4765-a4b3-c2d1e0f9a8b7"),
    ];
    let (preview, applied, _) = run(&DeleteUnfamiliarAccount, &task, &world).await;
    let methods: Vec<&str> = preview
        .change
        .requests
        .iter()
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(
        methods,
        ["PATCH", "DELETE", "DELETE", "DELETE"],
        "disable first, assignments next, the object last"
    );
    assert!(directory(&world, "servicePrincipals", MALLORY_SP).is_none());
    for id in &assignments {
        assert!(world.sim.resource(id).is_none(), "{id} removed");
    }
    DeleteUnfamiliarAccount
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let restored =
        directory(&world, "servicePrincipals", MALLORY_SP).expect("restored from deleted items");
    assert_eq!(restored["accountEnabled"], true);
    for id in &assignments {
        assert!(world.sim.resource(id).is_some(), "{id} re-created");
    }
}
