//! `isolate_resource_network` against the simulator: quarantine NSG per NIC, MDE isolation,
//! and the refusals.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::AzureResourceId;
use defender_responder::domain::parameters::Parameters;
use defender_responder::executors::isolation::network::{
    quarantine_nsg_id, IsolateResourceNetwork,
};
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};
use serde_json::Value;

use crate::helpers::*;

const VM: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01";
const NIC: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkInterfaces/nic-vm-web-01";
const SHARED_NSG: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkSecurityGroups/nsg-web-subnet";
const VM_ALERT: &str = "2579866760551769764_84359D44-EFBC-4D8D-BFB2-685A3FFA5D7D";

fn isolate(resource: &str) -> defender_responder::domain::task::Task {
    let mut task = task_with(
        Parameters::IsolateResourceNetwork {
            resource: AzureResourceId::parse(resource).unwrap(),
        },
        "VM_SuspiciousCommandLine",
        VM,
        "auto",
    );
    task.alert.system_alert_id = VM_ALERT.into();
    task
}

#[tokio::test]
async fn quarantines_each_nic_with_its_own_nsg_and_undo_restores_it() {
    let mut world = world().await;
    world.ctx.settings.forensics_source = Some("10.9.0.0/24".into());
    let before = resource(&world.sim, NIC);
    let shared_before = resource(&world.sim, SHARED_NSG)["properties"]["securityRules"].clone();
    let task = isolate(VM);
    let (preview, applied, _) = run(&IsolateResourceNetwork, &task, &world).await;
    let nsg = quarantine_nsg_id(&AzureResourceId::parse(NIC).unwrap());
    assert!(
        nsg.contains("/networkSecurityGroups/dr-quarantine-"),
        "{nsg}"
    );
    assert_eq!(preview.change.requests.len(), 2);
    let after = resource(&world.sim, NIC);
    assert!(after["properties"]["networkSecurityGroup"]["id"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case(&nsg));
    let rules: Vec<String> = resource(&world.sim, &nsg)["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ["dr-allow-forensics", "dr-deny-in", "dr-deny-out"]);
    assert_eq!(
        resource(&world.sim, SHARED_NSG)["properties"]["securityRules"],
        shared_before,
        "the shared subnet NSG is never edited"
    );
    assert!(IsolateResourceNetwork
        .preview(&task, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());

    IsolateResourceNetwork
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let restored = resource(&world.sim, NIC);
    assert_eq!(
        restored["properties"]["networkSecurityGroup"],
        before["properties"]["networkSecurityGroup"]
    );
    assert!(
        world.sim.resource(&nsg).is_none(),
        "the quarantine NSG is deleted"
    );
}

#[tokio::test]
async fn uses_defender_for_endpoint_when_preferred_matching_the_exact_resource_id() {
    let mut world = world().await;
    world.ctx.settings.prefer_mde_isolation = true;
    let task = isolate(VM);
    let (preview, applied, _) = run(&IsolateResourceNetwork, &task, &world).await;
    // vm-web-010 is also onboarded: an exact match picks vm-web-01 only.
    assert!(preview.change.requests[0]
        .url
        .ends_with("/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/isolate"));
    assert_eq!(
        preview.change.requests[0].body.as_ref().unwrap()["IsolationType"],
        "Full"
    );
    IsolateResourceNetwork
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let log = writes(&world.sim);
    assert!(
        log.last().unwrap()["path"]
            .as_str()
            .unwrap()
            .ends_with("/unisolate"),
        "{log:?}"
    );
}

#[tokio::test]
async fn refuses_a_shared_nsg_a_subscription_and_an_unknown_resource() {
    let world = world().await;
    let err = IsolateResourceNetwork
        .preview(&isolate(SHARED_NSG), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(
        refusal_reason(err),
        RefusalReason::SharedNetworkSecurityGroup
    );
    let err = IsolateResourceNetwork
        .preview(
            &isolate("/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7"),
            &world.ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::SubscriptionWide);
    // A storage account: no NIC, no MDE machine with exactly its id.
    let err = IsolateResourceNetwork
        .preview(&isolate("/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.Storage/storageAccounts/stcontosopayments"), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::UnsupportedTarget);
    assert!(writes(&world.sim).is_empty());
}

#[tokio::test]
async fn throttled_nsg_put_and_a_nic_changed_since_the_preview() {
    let world = world().await;
    let task = isolate(VM);
    let preview = IsolateResourceNetwork
        .preview(&task, &world.ctx)
        .await
        .unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("PUT".into()),
        path: "*/networkSecurityGroups/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(9),
            code: None,
            message: None,
        },
    });
    let err = IsolateResourceNetwork
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(9)));

    // Someone rewrites the NIC: its etag changes, the approved change is stale.
    let mut nic: Value = resource(&world.sim, NIC);
    nic.as_object_mut().unwrap().remove("etag");
    nic["tags"] = serde_json::json!({"touched": "yes"});
    world
        .ctx
        .clients
        .arm
        .put(NIC, "2025-01-01", &nic)
        .await
        .unwrap();
    let err = IsolateResourceNetwork
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Conflict, "{err}");
}
