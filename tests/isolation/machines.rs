//! `run_antimalware_scan` and `reimage_vm` against the simulator.

use azure_sim::{Fault, FaultRule};
use defender_responder::domain::ids::AzureResourceId;
use defender_responder::domain::parameters::{Parameters, ResourceTarget, ScanType};
use defender_responder::executors::isolation::machines::{ReimageVm, RunAntimalwareScan};
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};

use crate::helpers::*;

const VM: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01";
const OS_DISK: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Compute/disks/vm-web-01_OsDisk_1";

fn machine(resource: &str) -> ResourceTarget {
    ResourceTarget::Resource {
        resource: AzureResourceId::parse(resource).unwrap(),
    }
}

#[tokio::test]
async fn scans_through_defender_for_endpoint_and_a_running_scan_counts_as_started() {
    let world = world().await;
    let task = task(Parameters::RunAntimalwareScan {
        target: machine(VM),
        scan_type: ScanType::Full,
    });
    let (preview, _, _) = run(&RunAntimalwareScan, &task, &world).await;
    assert!(preview.change.requests[0]
        .url
        .ends_with("/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/runAntiVirusScan"));
    // Redelivered while a scan runs: MDE answers 400 "already in progress", which is the scan asked for.
    let preview = RunAntimalwareScan.preview(&task, &world.ctx).await.unwrap();
    let first = RunAntimalwareScan
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert!(first.output["machineActionId"].is_string(), "{first:?}");
    let again = RunAntimalwareScan
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    assert_eq!(again.output["alreadyInProgress"], true, "{again:?}");
    let verification = RunAntimalwareScan
        .verify(&task, &preview, &again, &world.ctx)
        .await
        .unwrap();
    assert!(verification.passed());
}

#[tokio::test]
async fn a_scope_is_refused() {
    let world = world().await;
    let task = task(Parameters::RunAntimalwareScan {
        target: ResourceTarget::InScope {
            scope: AzureResourceId::parse("/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7")
                .unwrap(),
        },
        scan_type: ScanType::Full,
    });
    let err = RunAntimalwareScan
        .preview(&task, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::SubscriptionWide);
}

#[tokio::test]
async fn reimage_snapshots_the_os_disk_first_and_undo_boots_from_the_snapshot() {
    let world = world().await;
    let task = task(Parameters::ReimageVm {
        target: machine(VM),
    });
    let (preview, applied, _) = run(&ReimageVm, &task, &world).await;
    let methods: Vec<(&str, bool)> = preview
        .change
        .requests
        .iter()
        .map(|r| (r.method.as_str(), r.url.contains("/snapshots/")))
        .collect();
    assert_eq!(
        methods[0],
        ("PUT", true),
        "the snapshot comes first: {methods:?}"
    );
    assert!(preview
        .change
        .requests
        .iter()
        .any(|r| r.url.contains("/reimage?")));
    let snapshot = preview.prior_state["snapshotId"].as_str().unwrap();
    assert_eq!(
        resource(&world.sim, snapshot)["properties"]["creationData"]["sourceResourceId"],
        OS_DISK
    );
    assert_eq!(
        resource(&world.sim, VM)["properties"]["storageProfile"]["osDisk"]["deleteOption"],
        "Detach"
    );
    assert!(
        ReimageVm
            .preview(&task, &world.ctx)
            .await
            .unwrap()
            .change
            .is_noop(),
        "a redelivered task does not reimage twice"
    );

    ReimageVm
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let os_disk = resource(&world.sim, VM)["properties"]["storageProfile"]["osDisk"].clone();
    assert!(
        os_disk["managedDisk"]["id"]
            .as_str()
            .unwrap()
            .ends_with("-restored"),
        "{os_disk}"
    );
    assert_eq!(
        os_disk["deleteOption"], "Delete",
        "the saved deleteOption is back"
    );
}

#[tokio::test]
async fn a_throttled_reimage_is_retried_later() {
    let world = world().await;
    let task = task(Parameters::ReimageVm {
        target: machine(VM),
    });
    let preview = ReimageVm.preview(&task, &world.ctx).await.unwrap();
    world.sim.add_fault(FaultRule {
        method: Some("PUT".into()),
        path: "*/snapshots/*".into(),
        after: 0,
        times: Some(1),
        fault: Fault::Status {
            status: 503,
            retry_after: Some(15),
            code: None,
            message: None,
        },
    });
    let err = ReimageVm
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable);
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(15)));
    let log = writes(&world.sim);
    assert!(
        log.iter()
            .all(|r| !r["path"].as_str().unwrap().ends_with("/reimage")),
        "no reimage without its snapshot"
    );
}
