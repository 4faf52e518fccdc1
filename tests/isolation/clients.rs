//! The Azure clients against the simulator: LRO polling, in-process retry of short throttling,
//! the responder's own ARM write budget, and expired tokens.

use std::sync::Arc;
use std::time::Duration;

use azure_sim::{Audience, Fault, FaultRule, Seed, Simulator};
use defender_responder::azure::budget::BucketLimit;
use defender_responder::azure::credential::StaticTokenCredential;
use defender_responder::azure::{AzureClients, AzureErrorKind};
use defender_responder::config::azure::AzureSettings;
use serde_json::json;

use crate::helpers::*;

const NSG: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkSecurityGroups/dr-test";

fn nsg_body() -> serde_json::Value {
    json!({"location": "eastus", "properties": {"securityRules": []}})
}

fn fault(method: &str, path: &str, fault: Fault) -> FaultRule {
    FaultRule {
        method: Some(method.into()),
        path: path.into(),
        after: 0,
        times: Some(1),
        fault,
    }
}

#[tokio::test]
async fn long_running_operations_are_polled_to_the_end_and_failures_surface() {
    let world = world().await;
    world.sim.add_fault(fault(
        "PUT",
        "*/networkSecurityGroups/*",
        Fault::LroSlow { polls: 3 },
    ));
    let arm = &world.ctx.clients.arm;
    arm.put(NSG, "2025-01-01", &nsg_body())
        .await
        .expect("slow LRO completes");
    let polls = world
        .sim
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains("/operations/"))
        .count();
    assert!(polls >= 4, "polled until Succeeded: {polls}");

    world.sim.add_fault(fault(
        "DELETE",
        "*/networkSecurityGroups/*",
        Fault::LroFail {
            polls: 1,
            code: Some("InternalServerError".into()),
            message: None,
        },
    ));
    let err = arm.delete(NSG, "2025-01-01").await.unwrap_err();
    assert_eq!(err.kind, AzureErrorKind::OperationFailed, "{err}");
}

#[tokio::test]
async fn a_short_retry_after_is_waited_in_process_once() {
    let world = world().await;
    world.sim.add_fault(fault(
        "PUT",
        "*/networkSecurityGroups/*",
        Fault::Status {
            status: 429,
            retry_after: Some(1),
            code: None,
            message: None,
        },
    ));
    world.sim.clear_requests();
    world
        .ctx
        .clients
        .arm
        .put(NSG, "2025-01-01", &nsg_body())
        .await
        .expect("retried after 1 s");
    let puts = writes(&world.sim)
        .iter()
        .filter(|r| r["method"] == "PUT")
        .count();
    assert_eq!(puts, 2, "one 429, one success");
}

#[tokio::test]
async fn the_write_budget_stops_a_burst_before_arm_throttles_it() {
    let sim = Simulator::start(Seed::example()).await.unwrap();
    let mut settings = AzureSettings::on_one_host(&sim.base_url());
    settings.arm_write_budget = BucketLimit {
        capacity: 2.0,
        refill_per_second: 0.01,
    };
    let credential =
        StaticTokenCredential::new([(settings.arm_scope.clone(), sim.token(Audience::Management))]);
    let clients =
        AzureClients::with_root_pem(&settings, Arc::new(credential), sim.certificate_pem())
            .unwrap();
    let patch = json!({"tags": {"burst": "yes"}});
    clients
        .arm
        .patch(PAYMENTS_VAULT, "2025-05-01", &patch)
        .await
        .unwrap();
    clients
        .arm
        .patch(PAYMENTS_VAULT, "2025-05-01", &patch)
        .await
        .unwrap();
    let err = clients
        .arm
        .patch(PAYMENTS_VAULT, "2025-05-01", &patch)
        .await
        .unwrap_err();
    assert_eq!(err.kind, AzureErrorKind::Throttled);
    assert_eq!(err.code.as_deref(), Some("ResponderWriteBudget"));
    assert!(err.retry_after.unwrap() > Duration::from_secs(60), "{err}");
    let sent = sim
        .requests()
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .count();
    assert_eq!(sent, 2, "the third write never left the responder");
}

#[tokio::test]
async fn an_expired_token_is_retryable_and_no_token_is_in_the_error() {
    let world = world().await;
    world.sim.expire_tokens();
    let err = world
        .ctx
        .clients
        .arm
        .get(PAYMENTS_VAULT, "2025-05-01")
        .await
        .unwrap_err();
    assert_eq!(err.kind, AzureErrorKind::Unauthorized);
    assert!(err.is_retryable());
    let token = world.sim.token(Audience::Management);
    assert!(!format!("{err} {err:?}").contains(&token[..20]));
}
