//! `run_antimalware_scan` (Defender for Endpoint, else a VM run command) and `reimage_vm`
//! (the OS disk snapshotted first; undo swaps a disk made from the snapshot back in).

use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{found, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::{Parameters, ResourceTarget};
use crate::domain::task::{Action, Task};
use crate::executors::guards::refuse_wide_scope;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// `run_antimalware_scan`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunAntimalwareScan;

/// `reimage_vm`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReimageVm;

const VM: &str = "Microsoft.Compute/virtualMachines";

/// The one machine the task names; a scope is refused (a person picks the machines).
fn machine(task: &Task) -> Result<&AzureResourceId, ExecutorError> {
    let target = match &task.parameters {
        Parameters::RunAntimalwareScan { target, .. } | Parameters::ReimageVm { target } => target,
        _ => return Err(wrong_parameters("run_antimalware_scan / reimage_vm")),
    };
    match target {
        ResourceTarget::Resource { resource } => {
            refuse_wide_scope(resource)?;
            Ok(resource)
        }
        ResourceTarget::InScope { scope } => Err(ExecutorError::refused(
            RefusalReason::SubscriptionWide,
            format!(
                "every machine in {} is too wide: name the machine",
                scope.as_str()
            ),
        )),
    }
}

#[async_trait]
impl Executor for RunAntimalwareScan {
    fn action(&self) -> Action {
        Action::RunAntimalwareScan
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let resource = machine(task)?;
        let machines = ctx
            .clients
            .mde
            .machines_for_resource(resource.as_str())
            .await?;
        if machines.len() > 1 {
            return Err(ExecutorError::refused(
                RefusalReason::FuzzyMatch,
                format!(
                    "{} Defender for Endpoint machines claim {}",
                    machines.len(),
                    resource.as_str()
                ),
            ));
        }
        let comment = format!("{}: {}", task.message_id, task.reason);
        if let Some(machine) = machines.first() {
            let id = machine
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Ok(Preview {
                change: Change::new(
                    format!(
                        "would start a full Defender for Endpoint antivirus scan on machine {id}"
                    ),
                    vec![PlannedRequest::new(
                        Api::Mde,
                        WriteMethod::Post,
                        ctx.clients
                            .mde
                            .url(&format!("/machines/{id}/runAntiVirusScan")),
                        Some(json!({"Comment": comment, "ScanType": "Full"})),
                    )],
                ),
                prior_state: json!({"mode": "mde", "machineId": id}),
                leases: vec![resource.normalized()],
                subscriptions: subscriptions_of(resource),
            });
        }
        if !resource.is_type(VM) {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!(
                    "{} is not onboarded to Defender for Endpoint and is not a virtual machine",
                    resource.as_str()
                ),
            ));
        }
        let vm = found(
            ctx.clients
                .arm
                .get_optional(resource.as_str(), api_version::COMPUTE)
                .await?,
            resource.as_str(),
        )?;
        let windows = vm
            .pointer("/properties/storageProfile/osDisk/osType")
            .and_then(Value::as_str)
            .is_some_and(|os| os.eq_ignore_ascii_case("Windows"));
        let body = if windows {
            json!({"commandId": "RunPowerShellScript", "script": ["Start-MpScan -ScanType FullScan"]})
        } else {
            json!({"commandId": "RunShellScript", "script": ["mdatp scan full"]})
        };
        Ok(Preview {
            change: Change::new(
                format!(
                    "would run a full antimalware scan on {} through a VM run command",
                    resource.as_str()
                ),
                vec![PlannedRequest::new(
                    Api::Arm,
                    WriteMethod::Post,
                    ctx.clients.arm.url(
                        &format!("{}/runCommand", resource.as_str()),
                        api_version::COMPUTE,
                    ),
                    Some(body),
                )],
            ),
            prior_state: json!({"mode": "run_command", "vm": resource.as_str()}),
            leases: vec![resource.normalized()],
            subscriptions: subscriptions_of(resource),
        })
    }

    async fn apply(
        &self,
        _task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let mut applied = Applied::default();
        for request in &preview.change.requests {
            match ctx.send(request).await {
                Ok((sent, body)) => {
                    applied.sent.push(sent);
                    applied.output =
                        json!({"machineActionId": body.get("id").cloned().unwrap_or(Value::Null)});
                }
                // A scan already running is the scan this task asks for (MDE answers 400).
                Err(ExecutorError::Permanent(message))
                    if message.contains("already in progress") =>
                {
                    applied.output = json!({"alreadyInProgress": true});
                }
                Err(err) => return Err(err),
            }
        }
        Ok(applied)
    }

    async fn verify(
        &self,
        _task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        if let Some(action_id) = applied.output["machineActionId"].as_str() {
            let action = ctx.clients.mde.wait_for_action(action_id).await?;
            return Ok(Verification::default().check(
                "scan action status",
                json!("Succeeded"),
                action.get("status").cloned().unwrap_or(Value::Null),
            ));
        }
        let started = applied.output["alreadyInProgress"] == json!(true)
            || applied.sent.iter().all(|s| (200..300).contains(&s.status));
        Ok(Verification::default().check(
            format!(
                "scan started ({})",
                preview.prior_state["mode"].as_str().unwrap_or_default()
            ),
            json!(true),
            json!(started),
        ))
    }

    async fn undo(
        &self,
        _task: &Task,
        _preview: &Preview,
        _applied: &Applied,
        _ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        Ok(Undone {
            sent: Vec::new(),
            not_restored: vec!["a scan changes nothing that can be undone".into()],
        })
    }
}

fn snapshot_id(vm: &AzureResourceId, task: &Task) -> String {
    let digest = Sha256::digest(format!("{}|{}", vm.normalized(), task.message_id).as_bytes());
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/snapshots/dr-{}-{}",
        vm.subscription_id().unwrap_or_default(),
        vm.resource_group().unwrap_or_default(),
        vm.name().unwrap_or("vm"),
        &hex::encode(digest)[..10]
    )
}

#[async_trait]
impl Executor for ReimageVm {
    fn action(&self) -> Action {
        Action::ReimageVm
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let resource = machine(task)?;
        if !resource.is_type(VM) {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!(
                    "{} is not a virtual machine; reimage it by hand",
                    resource.as_str()
                ),
            ));
        }
        let vm = found(
            ctx.clients
                .arm
                .get_optional(resource.as_str(), api_version::COMPUTE)
                .await?,
            resource.as_str(),
        )?;
        let os_disk = vm
            .pointer("/properties/storageProfile/osDisk")
            .cloned()
            .unwrap_or(Value::Null);
        let Some(disk_id) = os_disk.pointer("/managedDisk/id").and_then(Value::as_str) else {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!("{} has no managed OS disk to snapshot", resource.as_str()),
            ));
        };
        let snapshot = snapshot_id(resource, task);
        let existing = ctx
            .clients
            .arm
            .get_optional(&snapshot, api_version::COMPUTE)
            .await?;
        let prior = json!({
            "vm": resource.as_str(),
            "osDiskId": disk_id,
            "osDiskName": os_disk.get("name").cloned().unwrap_or(Value::Null),
            "deleteOption": os_disk.get("deleteOption").cloned().unwrap_or(Value::Null),
            "location": vm.get("location").cloned().unwrap_or(Value::Null),
            "snapshotId": snapshot,
        });
        let arm = &ctx.clients.arm;
        let mut requests = Vec::new();
        // The snapshot is the marker: it exists only when this task already started.
        if existing.is_none() {
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                arm.url(&snapshot, api_version::COMPUTE),
                Some(json!({
                    "location": vm.get("location").cloned().unwrap_or(Value::Null),
                    "tags": {"dr-message-id": task.message_id.as_str(), "dr-source-vm": resource.as_str()},
                    "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}},
                })),
            ));
        }
        if os_disk.get("deleteOption").and_then(Value::as_str) != Some("Detach") {
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                arm.url(resource.as_str(), api_version::COMPUTE),
                Some(json!({"properties": {"storageProfile": {"osDisk": {"deleteOption": "Detach"}}}})),
            ));
        }
        let done = existing
            .as_ref()
            .and_then(|s| s.pointer("/tags/dr-reimaged"))
            .is_some();
        if !done {
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Post,
                arm.url(
                    &format!("{}/reimage", resource.as_str()),
                    api_version::COMPUTE,
                ),
                Some(json!({})),
            ));
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                arm.url(&snapshot, api_version::COMPUTE),
                Some(json!({"tags": {"dr-message-id": task.message_id.as_str(), "dr-source-vm": resource.as_str(), "dr-reimaged": "true"}})),
            ));
        } else {
            requests.clear();
        }
        Ok(Preview {
            change: Change::new(
                if requests.is_empty() {
                    format!(
                        "{} was already reimaged by this task (snapshot {snapshot})",
                        resource.as_str()
                    )
                } else {
                    format!("would snapshot the OS disk of {} to {snapshot}, keep the old disk (deleteOption Detach), then reimage the VM", resource.as_str())
                },
                requests,
            ),
            prior_state: prior,
            leases: vec![resource.normalized()],
            subscriptions: subscriptions_of(resource),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let resource = machine(task)?;
        let vm = found(
            ctx.clients
                .arm
                .get_optional(resource.as_str(), api_version::COMPUTE)
                .await?,
            resource.as_str(),
        )?;
        let disk = vm
            .pointer("/properties/storageProfile/osDisk/managedDisk/id")
            .cloned()
            .unwrap_or(Value::Null);
        if disk != preview.prior_state["osDiskId"] {
            return Err(ExecutorError::conflict(
                resource.as_str(),
                "the VM's OS disk changed since the preview",
            ));
        }
        ctx.send_all(&preview.change.requests).await
    }

    async fn verify(
        &self,
        _task: &Task,
        preview: &Preview,
        _applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        let snapshot = preview.prior_state["snapshotId"]
            .as_str()
            .unwrap_or_default();
        let saved = ctx
            .clients
            .arm
            .get_optional(snapshot, api_version::COMPUTE)
            .await?;
        let source = saved
            .as_ref()
            .and_then(|s| {
                s.pointer("/properties/creationData/sourceResourceId")
                    .cloned()
            })
            .unwrap_or(Value::Null);
        let vm = ctx
            .clients
            .arm
            .get(
                preview.prior_state["vm"].as_str().unwrap_or_default(),
                api_version::COMPUTE,
            )
            .await?;
        Ok(Verification::default()
            .check(
                "snapshot of the old OS disk",
                preview.prior_state["osDiskId"].clone(),
                source,
            )
            .check(
                "reimage recorded on the snapshot",
                json!("true"),
                saved
                    .as_ref()
                    .and_then(|s| s.pointer("/tags/dr-reimaged").cloned())
                    .unwrap_or(Value::Null),
            )
            .check(
                "VM provisioning state",
                json!("Succeeded"),
                vm.pointer("/properties/provisioningState")
                    .cloned()
                    .unwrap_or(Value::Null),
            ))
    }

    async fn undo(
        &self,
        task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        let resource = machine(task)?;
        let prior = &preview.prior_state;
        let snapshot = prior["snapshotId"].as_str().unwrap_or_default();
        let disk = format!("{}-restored", snapshot.replace("/snapshots/", "/disks/"));
        let arm = &ctx.clients.arm;
        let steps = [
            PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                arm.url(&disk, api_version::COMPUTE),
                Some(
                    json!({"location": prior["location"], "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": snapshot}}}),
                ),
            ),
            PlannedRequest::new(
                Api::Arm,
                WriteMethod::Post,
                arm.url(
                    &format!("{}/deallocate", resource.as_str()),
                    api_version::COMPUTE,
                ),
                None,
            ),
            PlannedRequest::new(
                Api::Arm,
                WriteMethod::Patch,
                arm.url(resource.as_str(), api_version::COMPUTE),
                Some(json!({"properties": {"storageProfile": {"osDisk": {
                    "managedDisk": {"id": disk},
                    "name": disk.rsplit('/').next().unwrap_or_default(),
                    "deleteOption": prior["deleteOption"],
                }}}})),
            ),
            PlannedRequest::new(
                Api::Arm,
                WriteMethod::Post,
                arm.url(
                    &format!("{}/start", resource.as_str()),
                    api_version::COMPUTE,
                ),
                None,
            ),
        ];
        for step in &steps {
            undone.sent.push(ctx.send(step).await?.0);
        }
        undone.not_restored.push(format!(
            "the VM now boots from {disk}, made from the pre-reimage snapshot; the reimaged disk and the original {} are kept for forensics",
            prior["osDiskId"].as_str().unwrap_or_default()
        ));
        Ok(undone)
    }
}
