//! `rotate_certificate` against the simulator: a new version from the saved policy, the pending
//! operation polled (then scheduled again when slow), and a redelivery creating nothing twice.

use defender_responder::domain::ids::CertificateUri;
use defender_responder::domain::parameters::Parameters;
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::certificate::RotateCertificate;
use defender_responder::executors::rotation::FollowUpStep;
use defender_responder::executors::Executor;
use serde_json::json;

use crate::helpers::*;

const TLS_CURRENT: &str = "c3e1f0a9b8d74c6e5f4a3b2c1d0e9f8a";

fn rotate_certificate() -> Task {
    task(Parameters::RotateCertificate {
        certificate: CertificateUri::parse(TLS).unwrap(),
        versions_read: vec![TLS_CURRENT.into()],
    })
}

fn certificate_versions(world: &World) -> Vec<serde_json::Value> {
    world.versions("certificates", "payments-tls", PAYMENTS)
}

#[tokio::test]
async fn a_new_version_is_created_from_the_saved_policy_and_tagged() {
    let world = world().await;
    let task = rotate_certificate();
    let (_, applied, _) = run(&RotateCertificate, &task, &world).await;
    assert_eq!(applied.output["status"], "completed");
    let versions = certificate_versions(&world);
    assert_eq!(versions.len(), 2);
    assert_eq!(
        tag(&versions[1], "dr-message-id"),
        Some(task.message_id.as_str())
    );
    let create = world
        .sim
        .requests()
        .into_iter()
        .find(|r| r["method"] == "POST")
        .unwrap();
    assert!(create["path"].as_str().unwrap().ends_with("/create"));
    assert!(create["body"]["policy"].is_object(), "{create}");

    // Redelivered: nothing is created again.
    let again = RotateCertificate.preview(&task, &world.ctx).await.unwrap();
    assert!(again.change.is_noop());
    RotateCertificate
        .apply(&task, &again, &world.ctx)
        .await
        .unwrap();
    assert_eq!(certificate_versions(&world).len(), 2);
}

#[tokio::test]
async fn a_slow_issuer_is_polled_again_later_and_never_created_twice() {
    let mut world = world().await;
    world.ctx.rotation.settings.certificate_polls = 2;
    world.fault(json!({"method": "POST", "path": "/certificates/payments-tls/create", "times": 1, "fault": {"kind": "lroSlow", "polls": 3}}));
    let task = rotate_certificate();
    let preview = RotateCertificate.preview(&task, &world.ctx).await.unwrap();
    let applied = RotateCertificate
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert_eq!(applied.output["status"], "inProgress");
    let follow_up = applied.follow_up.expect("polled again later");
    assert!(matches!(
        follow_up.step,
        FollowUpStep::PollCertificate { .. }
    ));

    // A redelivery meanwhile polls the pending operation instead of creating another.
    let again = RotateCertificate.preview(&task, &world.ctx).await.unwrap();
    RotateCertificate
        .apply(&task, &again, &world.ctx)
        .await
        .unwrap();
    let creates = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/create"))
        .count();
    assert_eq!(creates, 1);

    let done = RotateCertificate
        .follow_up(&task, &follow_up, &world.ctx)
        .await
        .unwrap();
    assert_eq!(done.output["status"], "completed", "{:?}", done.output);
    let versions = certificate_versions(&world);
    assert_eq!(versions.len(), 2);
    assert_eq!(
        tag(&versions[1], "dr-message-id"),
        Some(task.message_id.as_str())
    );
}
