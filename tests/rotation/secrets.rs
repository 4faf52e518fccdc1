//! `rotate_secret` against the simulator: the random and storage-key generators end to end,
//! the dry run, a redelivery after a crash, a version changed underneath, and the notice for a
//! secret without a generator.

use defender_responder::azure::key_vault::SecretValue;
use defender_responder::domain::ids::{SecretUri, VaultObjectUri};
use defender_responder::domain::parameters::{Parameters, SecretRotationTarget};
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::secret::RotateSecret;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};

use crate::helpers::*;

pub(crate) fn rotate(secret: &str, versions_read: &[&str]) -> Task {
    task(Parameters::RotateSecret {
        target: SecretRotationTarget::Secret {
            secret: SecretUri::parse(secret).unwrap(),
            versions_read: versions_read.iter().map(|v| v.to_string()).collect(),
        },
        read_by: None,
    })
}

#[tokio::test]
async fn a_random_secret_gets_a_new_value_tagged_with_the_task() {
    let world = world().await;
    let task = rotate(DB_PASSWORD, &[DB_CURRENT]);
    let (preview, applied, _) = run(&RotateSecret, &task, &world).await;

    assert_eq!(preview.prior_state["current_version"], DB_CURRENT);
    assert_eq!(preview.leases, vec![DB_PASSWORD.to_string()]);
    let versions = world.secret_versions("payments-db-password");
    assert_eq!(versions.len(), 3);
    let new = &versions[2];
    assert_eq!(applied.output["new_version"], new["version"]);
    assert_eq!(tag(new, "dr-message-id"), Some(task.message_id.as_str()));
    assert_eq!(tag(new, "dr-replaces"), Some(DB_CURRENT));
    assert_eq!(tag(new, "generator"), Some("random"), "tags carried over");
    assert_eq!(new["contentType"], "text/plain");
    let value = new["value"].as_str().unwrap();
    assert_eq!(value.len(), 32);
    assert_ne!(value, "azure-sim-canary-current-password");
    assert_eq!(
        write_summary(&world.sim),
        vec![(
            "PUT".into(),
            "vault".into(),
            "/secrets/payments-db-password".into()
        )]
    );
    assert!(
        applied.follow_up.is_none(),
        "disable_secret disables the old versions"
    );
}

#[tokio::test]
async fn the_dry_run_shows_the_exact_request_without_the_value_and_writes_nothing() {
    let world = world().await;
    world.sim.clear_requests();
    let task = rotate(DB_PASSWORD, &[DB_CURRENT]);
    let preview = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    assert!(writes(&world.sim).is_empty(), "{:?}", writes(&world.sim));
    let request = &preview.change.requests[0];
    assert_eq!(request.method.as_str(), "PUT");
    assert!(
        request
            .url
            .ends_with("/secrets/payments-db-password?api-version=2025-07-01"),
        "{}",
        request.url
    );
    let body = request.body.as_ref().unwrap();
    assert_eq!(body["value"], "<new random value: 32 characters>");
    assert_eq!(body["tags"]["dr-message-id"], task.message_id.as_str());
    assert!(preview.change.summary.contains("payments-db-password"));
    // The same state previews the same change (what an approval binds to).
    let again = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    assert_eq!(preview.hash(), again.hash());
    assert_eq!(world.secret_versions("payments-db-password").len(), 2);
}

#[tokio::test]
async fn a_redelivery_after_a_crash_finds_the_rotation_done() {
    let world = world().await;
    let task = rotate(DB_PASSWORD, &[DB_CURRENT]);
    let preview = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    // The write lands; the worker dies before recording the result.
    drop(
        RotateSecret
            .apply(&task, &preview, &world.ctx)
            .await
            .unwrap(),
    );
    world.sim.clear_requests();

    // Redelivered: the preview finds this task's marker and has nothing to send.
    let again = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    assert!(again.change.is_noop(), "{}", again.change.summary);
    let applied = RotateSecret.apply(&task, &again, &world.ctx).await.unwrap();
    assert_eq!(applied.output["already_rotated"], true);
    // Or applied again with the first preview (the journal's copy): still once.
    let applied = RotateSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert_eq!(applied.output["already_rotated"], true);
    assert!(writes(&world.sim).is_empty(), "{:?}", writes(&world.sim));
    let versions = world.secret_versions("payments-db-password");
    assert_eq!(versions.len(), 3, "exactly one new version");
}

#[tokio::test]
async fn a_version_written_after_the_preview_stops_the_rotation() {
    let world = world().await;
    let task = rotate(DB_PASSWORD, &[DB_CURRENT]);
    let preview = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    // Someone else rotates in between.
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
            &SecretValue::new("rotated-by-someone-else"),
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    world.sim.clear_requests();
    let err = RotateSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Conflict, "{err}");
    assert!(writes(&world.sim).is_empty());
    // Previewed again, the newer version is after the alert: the task stops and says why.
    let (reason, detail) = refusal(RotateSecret.preview(&task, &world.ctx).await.unwrap_err());
    assert_eq!(reason, RefusalReason::VersionChanged);
    assert!(detail.contains("after the alert's window"), "{detail}");
    assert_eq!(world.secret_versions("payments-db-password").len(), 3);
}

#[tokio::test]
async fn a_current_version_newer_than_the_alert_is_not_rotated_again() {
    let world = world().await;
    // The alert's window ended before the current version was written (and did not read it).
    let task = task_ending(
        Parameters::RotateSecret {
            target: SecretRotationTarget::Secret {
                secret: SecretUri::parse(DB_PASSWORD).unwrap(),
                versions_read: vec![DB_OLD.into()],
            },
            read_by: None,
        },
        "2025-11-20T00:00:00Z",
    );
    let (reason, _) = refusal(RotateSecret.preview(&task, &world.ctx).await.unwrap_err());
    assert_eq!(reason, RefusalReason::VersionChanged);
}

#[tokio::test]
async fn a_secret_without_a_generator_becomes_a_notice_saying_what_to_change_where() {
    let world = world().await;
    world.sim.clear_requests();
    let task = rotate(HR_KEY, &["5e4d3c2b1a0948f7e6d5c4b3a2918070"]);
    let (reason, notice) = refusal(RotateSecret.preview(&task, &world.ctx).await.unwrap_err());
    assert_eq!(reason, RefusalReason::ManualRotation);
    assert!(notice.contains(HR_KEY), "{notice}");
    assert!(notice.contains("kv-contoso-hr"), "{notice}");
    assert!(notice.contains("`generator`"), "{notice}");
    assert!(!notice.contains("azure-sim-canary"), "{notice}");
    assert!(writes(&world.sim).is_empty());
}

#[tokio::test]
async fn a_storage_key_secret_is_rotated_at_the_account_then_in_the_vault() {
    let world = world().await;
    let task = rotate(STORAGE_SECRET, &[STORAGE_VERSION]);
    let (preview, _, _) = run(&RotateSecret, &task, &world).await;
    assert_eq!(preview.change.requests.len(), 2);
    assert!(preview
        .leases
        .contains(&STORAGE_ACCOUNT.to_ascii_lowercase()));
    let summary = write_summary(&world.sim);
    assert_eq!(summary[0].0, "POST");
    assert!(summary[0].2.ends_with("/regenerateKey"), "{summary:?}");
    assert_eq!(summary[1].2, "/secrets/storage-connection");
    assert_eq!(summary.len(), 2);

    let key1 = world.storage_keys()[0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let versions = world.secret_versions("storage-connection");
    let value = versions[1]["value"].as_str().unwrap();
    assert_eq!(
        value,
        format!("DefaultEndpointsProtocol=https;AccountName=stcontosopayments;AccountKey={key1}")
    );
}

#[tokio::test]
async fn a_crash_between_the_regenerate_and_the_vault_write_regenerates_once() {
    let world = world().await;
    let task = rotate(STORAGE_SECRET, &[STORAGE_VERSION]);
    let preview = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    world.fault(serde_json::json!({"method": "PUT", "path": "/secrets/storage-connection", "times": 1, "fault": {"kind": "status", "status": 503}}));
    let err = RotateSecret
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable, "{err}");
    world.sim.clear_requests();

    let again = RotateSecret.preview(&task, &world.ctx).await.unwrap();
    assert!(
        !again
            .change
            .requests
            .iter()
            .any(|r| r.url.contains("regenerateKey")),
        "the key regenerated before the crash is not regenerated again: {:?}",
        again.change
    );
    RotateSecret.apply(&task, &again, &world.ctx).await.unwrap();
    let summary = write_summary(&world.sim);
    assert!(summary[0].2.ends_with("/listKeys"), "{summary:?}");
    assert!(!summary.iter().any(|w| w.2.ends_with("/regenerateKey")));
    let key1 = world.storage_keys()[0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let versions = world.secret_versions("storage-connection");
    assert_eq!(versions.len(), 2);
    assert!(versions[1]["value"].as_str().unwrap().ends_with(&key1));
}

#[test]
fn the_standard_registry_has_every_rotation_executor() {
    use defender_responder::domain::task::{Action, Queue};
    use defender_responder::executors::ExecutorRegistry;
    let registry = ExecutorRegistry::standard();
    for action in Action::ALL.iter().filter(|a| a.queue() == Queue::Rotation) {
        assert!(registry.get(*action).is_some(), "{action} has no executor");
    }
}
