//! `change_vm_passwords` and `rotate_automation_credentials` against the simulator.

use defender_responder::domain::ids::AzureResourceId;
use defender_responder::domain::parameters::{Parameters, ResourceTarget};
use defender_responder::domain::task::Task;
use defender_responder::executors::rotation::automation::RotateAutomationCredentials;
use defender_responder::executors::rotation::vm::ChangeVmPasswords;
use defender_responder::executors::{Executor, ExecutorErrorKind, RefusalReason};
use serde_json::json;

use crate::helpers::*;

const VM: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01";
const AUTOMATION: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-automation/providers/Microsoft.Automation/automationAccounts/aa-contoso-ops";
const VM_SECRET: &str = "dr-vm-vm-web-01-azureuser";

fn change_passwords() -> Task {
    task(Parameters::ChangeVmPasswords {
        target: ResourceTarget::Resource {
            resource: AzureResourceId::parse(VM).unwrap(),
        },
    })
}

#[tokio::test]
async fn the_admin_password_is_stored_first_and_sent_only_in_protected_settings() {
    let world = world().await;
    let task = change_passwords();
    let (preview, applied, _) = run(&ChangeVmPasswords, &task, &world).await;
    let summary = write_summary(&world.sim);
    assert_eq!(
        summary[0].1, "vault",
        "stored before it is set: {summary:?}"
    );
    assert!(
        summary[1].2.ends_with("/extensions/enablevmaccess"),
        "{summary:?}"
    );
    let stored = world.versions("secrets", VM_SECRET, "kv-contoso-hr");
    let password = stored[0]["value"].as_str().unwrap().to_string();
    let put = world
        .sim
        .requests()
        .into_iter()
        .find(|r| r["surface"] == "arm" && r["method"] == "PUT")
        .unwrap();
    assert_eq!(put["body"]["properties"]["type"], "VMAccessForLinux");
    assert_eq!(
        put["body"]["properties"]["protectedSettings"]["password"],
        password.as_str()
    );
    assert!(!put["body"]["properties"]["settings"]
        .to_string()
        .contains(&password));
    let records = json!([preview, applied]).to_string();
    assert!(
        !records.contains(&password),
        "the password is in the records"
    );

    // A redelivery sets the stored password again rather than making another.
    let again = ChangeVmPasswords.preview(&task, &world.ctx).await.unwrap();
    ChangeVmPasswords
        .apply(&task, &again, &world.ctx)
        .await
        .unwrap();
    assert_eq!(
        world.versions("secrets", VM_SECRET, "kv-contoso-hr").len(),
        1
    );
}

#[tokio::test]
async fn a_crash_after_the_vault_write_sets_the_same_password() {
    let world = world().await;
    let task = change_passwords();
    let preview = ChangeVmPasswords.preview(&task, &world.ctx).await.unwrap();
    world.fault(json!({"method": "PUT", "path": "*/extensions/*", "times": 1, "fault": {"kind": "status", "status": 503}}));
    let err = ChangeVmPasswords
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ExecutorErrorKind::Retryable, "{err}");
    ChangeVmPasswords
        .apply(&task, &preview, &world.ctx)
        .await
        .unwrap();
    let stored = world.versions("secrets", VM_SECRET, "kv-contoso-hr");
    assert_eq!(stored.len(), 1);
    let put = world
        .sim
        .requests()
        .into_iter()
        .rfind(|r| r["surface"] == "arm" && r["method"] == "PUT")
        .unwrap();
    assert_eq!(
        put["body"]["properties"]["protectedSettings"]["password"],
        stored[0]["value"]
    );
}

#[tokio::test]
async fn automation_credentials_become_a_notice_naming_each_without_its_value() {
    let world = world().await;
    world.sim.clear_requests();
    let task = task(Parameters::RotateAutomationCredentials {
        target: ResourceTarget::Resource {
            resource: AzureResourceId::parse(AUTOMATION).unwrap(),
        },
    });
    let (reason, notice) = refusal(
        RotateAutomationCredentials
            .preview(&task, &world.ctx)
            .await
            .unwrap_err(),
    );
    assert_eq!(reason, RefusalReason::ManualRotation);
    assert!(
        notice.contains("credential `sql-admin` (user `sqladmin`)"),
        "{notice}"
    );
    assert!(
        notice.contains("encrypted variable `api-token`"),
        "{notice}"
    );
    assert!(!notice.contains("azure-sim-canary"), "{notice}");
    assert!(writes(&world.sim).is_empty());
}
