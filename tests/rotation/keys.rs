//! `rotate_key` against the simulator: the vault's rotate with markers on both sides, the old
//! version disabled by the follow-up after the grace window, a crash on either side of the
//! rotate, and a rotation by someone else.

use defender_responder::domain::ids::KeyUri;
use defender_responder::domain::parameters::{KeyRotationTarget, Parameters};
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::key::RotateKey;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};
use serde_json::json;

use crate::helpers::*;

const CMK_CURRENT: &str = "aa11bb22cc33dd44ee55ff6677889900";

fn rotate_key() -> Task {
    task(Parameters::RotateKey {
        target: KeyRotationTarget::Key {
            key: KeyUri::parse(CMK).unwrap(),
            versions_read: vec![CMK_CURRENT.into()],
        },
        read_by: None,
    })
}

fn key_versions(world: &World) -> Vec<serde_json::Value> {
    world.versions("keys", "payments-cmk", PAYMENTS)
}

#[tokio::test]
async fn the_key_is_rotated_and_its_old_version_disabled_after_the_grace_window() {
    let world = world().await;
    let task = rotate_key();
    let (preview, applied, _) = run(&RotateKey, &task, &world).await;
    assert_eq!(preview.change.requests.len(), 3);
    let summary = write_summary(&world.sim);
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert_eq!(summary[1].2, "/keys/payments-cmk/rotate");
    let versions = key_versions(&world);
    assert_eq!(versions.len(), 2);
    assert_eq!(
        tag(&versions[1], "dr-message-id"),
        Some(task.message_id.as_str())
    );
    assert_eq!(tag(&versions[1], "dr-replaces"), Some(CMK_CURRENT));
    assert_eq!(tag(&versions[1], "dr-rotating"), None);

    let follow_up = applied
        .follow_up
        .expect("the old version is disabled later");
    assert_eq!(follow_up.not_before, world.now() + GRACE);
    assert!(RotateKey
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .is_err());
    assert_eq!(key_versions(&world)[0]["enabled"], true);
    world.advance(GRACE);
    let done = RotateKey
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert_eq!(done.sent.len(), 1);
    let versions = key_versions(&world);
    assert_eq!(versions[0]["enabled"], false);
    assert_eq!(versions[1]["enabled"], true);
}

#[tokio::test]
async fn a_redelivery_after_the_rotation_rotates_nothing() {
    let world = world().await;
    let task = rotate_key();
    let preview = RotateKey.preview(&task, &world.ctx).await.unwrap();
    drop(RotateKey.apply(&task, &preview, &world.ctx).await.unwrap());
    let again = RotateKey.preview(&task, &world.ctx).await.unwrap();
    assert!(again.change.is_noop(), "{}", again.change.summary);
    let applied = RotateKey.apply(&task, &preview, &world.ctx).await.unwrap();
    assert_eq!(applied.output["already_rotated"], true);
    assert_eq!(key_versions(&world).len(), 2);
}

#[tokio::test]
async fn a_crash_between_the_rotate_and_the_marker_is_finished_not_rotated_again() {
    let world = world().await;
    let task = rotate_key();
    let preview = RotateKey.preview(&task, &world.ctx).await.unwrap();
    // The PATCH that marks the new version fails (the worker dies there).
    world.fault(json!({"method": "PATCH", "path": "/keys/payments-cmk/*", "after": 1, "times": 1, "fault": {"kind": "status", "status": 503}}));
    assert!(RotateKey.apply(&task, &preview, &world.ctx).await.is_err());
    assert_eq!(key_versions(&world).len(), 2);
    world.sim.clear_requests();

    let again = RotateKey.preview(&task, &world.ctx).await.unwrap();
    let applied = RotateKey.apply(&task, &again, &world.ctx).await.unwrap();
    assert!(applied.follow_up.is_some());
    let summary = write_summary(&world.sim);
    assert!(
        !summary.iter().any(|w| w.2.ends_with("/rotate")),
        "{summary:?}"
    );
    let versions = key_versions(&world);
    assert_eq!(versions.len(), 2, "rotated once");
    assert_eq!(
        tag(&versions[1], "dr-message-id"),
        Some(task.message_id.as_str())
    );
}

#[tokio::test]
async fn a_key_rotated_by_someone_else_stops_the_task() {
    let world = world().await;
    let task = rotate_key();
    let preview = RotateKey.preview(&task, &world.ctx).await.unwrap();
    world
        .ctx
        .rotation
        .key_vault
        .as_ref()
        .unwrap()
        .vault(KeyUri::parse(CMK).unwrap().uri())
        .unwrap()
        .rotate_key("payments-cmk")
        .await
        .unwrap();
    world.sim.clear_requests();
    let err = RotateKey
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Conflict);
    assert!(writes(&world.sim).is_empty());
    let (reason, _) = refusal(RotateKey.preview(&task, &world.ctx).await.unwrap_err());
    assert_eq!(reason, RefusalReason::VersionChanged);
}
