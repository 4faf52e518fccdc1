//! `review_entra_roles` against the simulator's role management.

use defender_responder::domain::ids::{Guid, PrincipalKind, PrincipalRef};
use defender_responder::domain::parameters::Parameters;
use defender_responder::executors::isolation::entra_roles::ReviewEntraRoles;
use defender_responder::executors::{Executor, RefusalReason};

use crate::helpers::*;

const MALLORY_USER: &str = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a090";

fn review(mode: &str) -> defender_responder::domain::task::Task {
    task_with(
        Parameters::ReviewEntraRoles {
            principal: PrincipalRef::ObjectId {
                object_id: Guid::parse(MALLORY_USER).unwrap(),
                kind: PrincipalKind::User,
                user_principal_name: None,
            },
            entra_roles: vec![],
        },
        "KV_ListGetAnomaly",
        PAYMENTS_VAULT,
        mode,
    )
}

#[tokio::test]
async fn refuses_automatic_mode() {
    let world = world().await;
    let err = ReviewEntraRoles
        .preview(&review("auto"), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::RequiresApproval);
    assert!(
        world.sim.requests().iter().all(|r| r["surface"] != "graph"),
        "refused before any read"
    );
}

#[tokio::test]
async fn removes_active_and_eligible_roles_and_undo_reassigns_them() {
    let world = world().await;
    let task = review("approval");
    let (preview, applied, _) = run(&ReviewEntraRoles, &task, &world).await;
    assert!(
        preview.change.summary.contains("Application Administrator"),
        "{}",
        preview.change.summary
    );
    assert!(
        preview.change.summary.contains("Global Administrator"),
        "{}",
        preview.change.summary
    );
    let graph = world.sim.state()["graph"].clone();
    assert!(graph["roleAssignments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["principalId"] != MALLORY_USER));
    assert!(graph["roleEligibilitySchedules"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["principalId"] != MALLORY_USER));
    assert!(ReviewEntraRoles
        .preview(&task, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());

    ReviewEntraRoles
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let graph = world.sim.state()["graph"].clone();
    let held = |kind: &str, role: &str| {
        graph[kind]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["principalId"] == MALLORY_USER && a["roleDefinitionId"] == role)
    };
    assert!(held(
        "roleAssignments",
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
    ));
    assert!(held(
        "roleEligibilitySchedules",
        "62e90394-69f5-4237-9190-012177145e10"
    ));
}
