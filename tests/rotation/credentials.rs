//! `reset_credentials` against the simulator: a service principal's new password stored
//! straight into the credentials vault, the old ones removed after the grace window, a
//! redelivery adding nothing twice, and users only where the settings allow.

use defender_responder::config::rotation::RotationSettings;
use defender_responder::domain::ids::{Guid, PrincipalKind, PrincipalRef};
use defender_responder::domain::parameters::Parameters;
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::credentials::ResetCredentials;
use defender_responder::executors::{Executor, RefusalReason};
use serde_json::json;

use crate::helpers::*;

const OLD_KEY_ID: &str = "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f";

fn reset(object_id: &str, kind: PrincipalKind) -> Task {
    task(Parameters::ResetCredentials {
        principal: PrincipalRef::ObjectId {
            object_id: Guid::parse(object_id).unwrap(),
            kind,
            user_principal_name: None,
        },
    })
}

fn app_passwords(world: &World) -> Vec<serde_json::Value> {
    world.sim.state()["graph"]["applications"][0]["passwordCredentials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_service_principal_gets_a_new_password_in_the_vault_and_loses_the_old_after_the_window() {
    let world = world().await;
    let task = reset(MALLORY_SP, PrincipalKind::ServicePrincipal);
    let (preview, applied, _) = run(&ResetCredentials, &task, &world).await;
    assert_eq!(
        preview.prior_state["owner"],
        format!("/applications/{MALLORY_APP}")
    );
    let passwords = app_passwords(&world);
    assert_eq!(passwords.len(), 2);
    let new = passwords
        .iter()
        .find(|p| p["displayName"] == task.message_id.as_str())
        .expect("the marker is the display name");
    let stored = world.versions(
        "secrets",
        "dr-app-c0ffee00-1234-4abc-9def-00c0ffee0001",
        "kv-contoso-hr",
    );
    assert_eq!(stored.len(), 1);
    assert_eq!(
        tag(&stored[0], "dr-message-id"),
        Some(task.message_id.as_str())
    );
    assert_eq!(
        &stored[0]["value"].as_str().unwrap()[..3],
        new["hint"].as_str().unwrap(),
        "the vault holds the new password's text"
    );
    let text = serde_json::to_string(&(&preview, &applied)).unwrap();
    assert!(
        !text.contains(stored[0]["value"].as_str().unwrap()),
        "the new password leaked"
    );

    let follow_up = applied.follow_up.expect("old passwords removed later");
    world.advance(GRACE);
    ResetCredentials
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    let passwords = app_passwords(&world);
    assert_eq!(passwords.len(), 1);
    assert_ne!(passwords[0]["keyId"], OLD_KEY_ID);
}

#[tokio::test]
async fn a_redelivery_adds_no_second_password() {
    let world = world().await;
    let task = reset(MALLORY_SP, PrincipalKind::ServicePrincipal);
    let preview = ResetCredentials.preview(&task, &world.ctx).await.unwrap();
    drop(
        ResetCredentials
            .apply(&task, &preview, &world.ctx)
            .await
            .unwrap(),
    );
    let again = ResetCredentials.preview(&task, &world.ctx).await.unwrap();
    assert!(again.change.is_noop(), "{}", again.change.summary);
    let applied = ResetCredentials
        .apply(&task, &again, &world.ctx)
        .await
        .unwrap();
    assert_eq!(applied.output["already_rotated"], true);
    assert!(
        applied.follow_up.is_some(),
        "the removal is scheduled again"
    );
    assert_eq!(app_passwords(&world).len(), 2);
}

#[tokio::test]
async fn a_password_added_but_never_stored_is_replaced_once() {
    let world = world().await;
    let task = reset(MALLORY_SP, PrincipalKind::ServicePrincipal);
    let preview = ResetCredentials.preview(&task, &world.ctx).await.unwrap();
    world.fault(json!({"method": "PUT", "path": "/secrets/*", "times": 1, "fault": {"kind": "status", "status": 503}}));
    assert!(ResetCredentials
        .apply(&task, &preview, &world.ctx)
        .await
        .is_err());
    assert_eq!(app_passwords(&world).len(), 2, "added, text lost");
    let again = ResetCredentials.preview(&task, &world.ctx).await.unwrap();
    ResetCredentials
        .apply(&task, &again, &world.ctx)
        .await
        .unwrap();
    let passwords = app_passwords(&world);
    assert_eq!(
        passwords.len(),
        2,
        "the orphan was removed before the new one: {passwords:?}"
    );
    let stored = world.versions(
        "secrets",
        "dr-app-c0ffee00-1234-4abc-9def-00c0ffee0001",
        "kv-contoso-hr",
    );
    let new = passwords
        .iter()
        .find(|p| p["displayName"] == task.message_id.as_str())
        .unwrap();
    assert_eq!(
        &stored[0]["value"].as_str().unwrap()[..3],
        new["hint"].as_str().unwrap()
    );
}

#[tokio::test]
async fn users_are_reset_only_where_the_settings_allow() {
    let world = world().await;
    let users = world.sim.state()["graph"]["users"].clone();
    let user = users[0]["id"].as_str().unwrap().to_string();
    let task = reset(&user, PrincipalKind::User);
    let (reason, notice) = refusal(
        ResetCredentials
            .preview(&task, &world.ctx)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, RefusalReason::ManualRotation);
    assert!(notice.contains("revokeSignInSessions"), "{notice}");

    let world = world_with(RotationSettings {
        reset_users: true,
        credentials_vault: Some("https://kv-contoso-hr.vault.azure.net".into()),
        ..RotationSettings::default()
    })
    .await;
    let (_, applied, _) = run(&ResetCredentials, &task, &world).await;
    assert_eq!(applied.sent.len(), 3);
    let summary = write_summary(&world.sim);
    assert_eq!(
        summary[0].1, "vault",
        "the password is stored before it is set: {summary:?}"
    );
    assert!(summary[2].2.ends_with("/revokeSignInSessions"));
}
