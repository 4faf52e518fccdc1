//! `rotate_storage_keys` against the simulator: key1 now, key2 after the grace window, values
//! never kept, and a redelivery regenerating nothing twice.

use defender_responder::domain::ids::AzureResourceId;
use defender_responder::domain::parameters::{Parameters, ResourceTarget, StorageKeyName};
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::storage::RotateStorageKeys;
use defender_responder::executors::{Executor, RefusalReason};

use crate::helpers::*;

fn rotate_keys() -> Task {
    task(Parameters::RotateStorageKeys {
        target: ResourceTarget::Resource {
            resource: AzureResourceId::parse(STORAGE_ACCOUNT).unwrap(),
        },
        key_names: vec![StorageKeyName::Key1, StorageKeyName::Key2],
    })
}

fn created(world: &World, key: &str) -> String {
    world.sim.resource(STORAGE_ACCOUNT).unwrap()["properties"]["keyCreationTime"][key]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn one_key_now_the_other_after_the_grace_window() {
    let world = world().await;
    let task = rotate_keys();
    let key2_before = created(&world, "key2");
    let (preview, applied, _) = run(&RotateStorageKeys, &task, &world).await;
    assert_eq!(preview.change.requests.len(), 2);
    assert_eq!(write_summary(&world.sim).len(), 1, "only key1 now");
    assert_eq!(created(&world, "key2"), key2_before);
    let text = serde_json::to_string(&(&preview, &applied)).unwrap();
    for key in world.storage_keys() {
        assert!(
            !text.contains(key["value"].as_str().unwrap()),
            "a key value leaked"
        );
    }

    let follow_up = applied.follow_up.expect("key2 later");
    assert!(RotateStorageKeys
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .is_err());
    world.advance(GRACE);
    world.sim.clear_requests();
    let done = RotateStorageKeys
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert_eq!(done.sent.len(), 1);
    assert_ne!(created(&world, "key2"), key2_before);
    // A redelivered follow-up regenerates nothing more.
    let again = RotateStorageKeys
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert!(again.sent.is_empty());
    assert_eq!(write_summary(&world.sim).len(), 1);
}

#[tokio::test]
async fn a_redelivery_after_the_regenerate_regenerates_nothing_twice() {
    let world = world().await;
    let task = rotate_keys();
    let preview = RotateStorageKeys.preview(&task, &world.ctx).await.unwrap();
    drop(
        RotateStorageKeys
            .apply(&task, &preview, &world.ctx)
            .await
            .unwrap(),
    );
    let key1 = created(&world, "key1");
    world.sim.clear_requests();
    // Previewed again: key1 was regenerated since the alert; only key2 is left (for later).
    let again = RotateStorageKeys.preview(&task, &world.ctx).await.unwrap();
    assert_eq!(again.change.requests.len(), 1, "{:?}", again.change);
    assert!(RotateStorageKeys
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap()
        .sent
        .is_empty());
    assert_eq!(created(&world, "key1"), key1);
    assert!(writes(&world.sim).is_empty());
}

#[tokio::test]
async fn a_scope_without_named_accounts_becomes_a_notice() {
    let world = world().await;
    let task = task(Parameters::RotateStorageKeys {
        target: ResourceTarget::InScope {
            scope: AzureResourceId::parse("/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7")
                .unwrap(),
        },
        key_names: vec![],
    });
    let (reason, detail) = refusal(
        RotateStorageKeys
            .preview(&task, &world.ctx)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, RefusalReason::ManualRotation);
    assert!(detail.contains("listKeys"), "{detail}");
}
