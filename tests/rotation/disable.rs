//! `disable_secret` against the simulator: nothing before the grace window ends, then the
//! exposed versions disabled by the follow-up; never without a replacement, and stopped when
//! the replacement changed underneath.

use defender_responder::azure::key_vault::SecretValue;
use defender_responder::domain::ids::{SecretUri, VaultObjectUri};
use defender_responder::domain::parameters::Parameters;
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::disable::DisableSecret;
use defender_responder::executors::rotation::secret::RotateSecret;
use defender_responder::executors::rotation::FollowUpStep;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};

use crate::helpers::*;
use crate::secrets::rotate;

fn disable(versions: &[&str]) -> Task {
    task(Parameters::DisableSecret {
        secret: SecretUri::parse(DB_PASSWORD).unwrap(),
        versions_read: versions.iter().map(|v| v.to_string()).collect(),
    })
}

#[tokio::test]
async fn the_exposed_versions_are_disabled_only_after_the_grace_window() {
    let world = world().await;
    let (_, rotated, _) = run(&RotateSecret, &rotate(DB_PASSWORD, &[DB_CURRENT]), &world).await;
    let new_version = rotated.output["new_version"].as_str().unwrap().to_string();

    let task = disable(&[DB_OLD, DB_CURRENT]);
    world.sim.clear_requests();
    let preview = DisableSecret.preview(&task, &world.ctx).await.unwrap();
    assert_eq!(preview.change.requests.len(), 2, "{:?}", preview.change);
    assert_eq!(preview.prior_state["replacement"], new_version.as_str());
    let applied = DisableSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert!(
        writes(&world.sim).is_empty(),
        "nothing is disabled during the grace window"
    );
    let follow_up = applied.follow_up.clone().expect("a scheduled follow-up");
    let created = world.secret_versions("payments-db-password")[2]["created"]
        .as_i64()
        .unwrap();
    assert_eq!(follow_up.not_before, created + GRACE);
    assert!(matches!(
        &follow_up.step,
        FollowUpStep::DisableSecretVersions { versions, replacement: Some(r), .. }
            if versions.len() == 2 && *r == new_version
    ));
    // The follow-up survives as JSON in the journal.
    let journaled: serde_json::Value = serde_json::to_value(&applied).unwrap();
    assert_eq!(
        journaled["follow_up"]["step"]["step"],
        "disable_secret_versions"
    );

    // Called early (a timer that fires too soon): it waits, and says until when.
    let early = DisableSecret
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(early.kind(), ExecutorErrorKind::Retryable);
    assert!(early.retry_after().is_some());
    assert!(writes(&world.sim).is_empty());

    world.advance(GRACE + 1);
    let done = DisableSecret
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert_eq!(done.sent.len(), 2);
    assert!(done.follow_up.is_none());
    let verification = DisableSecret
        .verify(&task, &preview, &done, &world.ctx)
        .await
        .unwrap();
    assert!(verification.passed(), "{:?}", verification.failures());
    let versions = world.secret_versions("payments-db-password");
    assert_eq!(versions[0]["enabled"], false);
    assert_eq!(versions[1]["enabled"], false);
    assert_eq!(versions[2]["enabled"], true);
    assert_eq!(
        tag(&versions[1], "dr-disabled-by"),
        Some(task.message_id.as_str())
    );

    // Run again (a redelivered follow-up): nothing more to send.
    let again = DisableSecret
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert!(again.sent.is_empty());

    // Undo re-enables exactly what this task disabled.
    DisableSecret
        .undo(&task, &preview, &done, &world.ctx)
        .await
        .unwrap();
    let versions = world.secret_versions("payments-db-password");
    assert_eq!(versions[1]["enabled"], true);
    assert_eq!(tag(&versions[1], "dr-disabled-by"), None);
}

#[tokio::test]
async fn without_a_replacement_nothing_is_disabled() {
    let world = world().await;
    let task = disable(&[DB_OLD, DB_CURRENT]);
    let preview = DisableSecret.preview(&task, &world.ctx).await.unwrap();
    assert!(preview.prior_state["replacement"].is_null());
    let applied = DisableSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    let follow_up = applied.follow_up.expect("checked again after the window");
    world.advance(GRACE + 1);
    world.sim.clear_requests();
    let (reason, detail) = refusal(
        DisableSecret
            .follow_up(&task, &follow_up, &world.ctx)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, RefusalReason::ManualRotation);
    assert!(detail.contains("cut its consumers off"), "{detail}");
    assert!(writes(&world.sim).is_empty());
    assert!(world
        .secret_versions("payments-db-password")
        .iter()
        .all(|v| v["enabled"] == true));
}

#[tokio::test]
async fn a_replacement_changed_underneath_stops_the_follow_up() {
    let world = world().await;
    run(&RotateSecret, &rotate(DB_PASSWORD, &[DB_CURRENT]), &world).await;
    let task = disable(&[DB_OLD, DB_CURRENT]);
    let preview = DisableSecret.preview(&task, &world.ctx).await.unwrap();
    let follow_up = DisableSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap()
        .follow_up
        .unwrap();
    // Someone writes yet another version during the window.
    let vault = world
        .ctx
        .rotation
        .key_vault
        .as_ref()
        .unwrap()
        .vault(&VaultObjectUri::parse(DB_PASSWORD).unwrap())
        .unwrap();
    vault
        .set_secret(
            "payments-db-password",
            &SecretValue::new("x"),
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    world.advance(GRACE + 1);
    world.sim.clear_requests();
    let (reason, _) = refusal(
        DisableSecret
            .follow_up(&task, &follow_up, &world.ctx)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, RefusalReason::VersionChanged);
    assert!(writes(&world.sim).is_empty());
}

#[tokio::test]
async fn with_no_grace_window_the_versions_are_disabled_at_once_and_a_dry_run_writes_nothing() {
    let mut world = world().await;
    world.ctx.rotation.settings.grace_seconds = 0;
    run(&RotateSecret, &rotate(DB_PASSWORD, &[DB_CURRENT]), &world).await;
    let task = disable(&[DB_CURRENT]);
    world.sim.clear_requests();
    let preview = DisableSecret.preview(&task, &world.ctx).await.unwrap();
    assert!(writes(&world.sim).is_empty());
    world.advance(5);
    let applied = DisableSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert!(applied.follow_up.is_none());
    assert_eq!(
        write_summary(&world.sim),
        vec![(
            "PATCH".into(),
            "vault".into(),
            format!("/secrets/payments-db-password/{DB_CURRENT}")
        )]
    );
}
