//! `isolate_resource_network`: each NIC of the machine gets its own quarantine NSG
//! (`dr-quarantine-{hash(nic)}`, deny in and out, forensics allowed from one source); a shared
//! NSG is never edited. Defender for Endpoint isolation where there is no NIC or the settings
//! prefer it. Targets match by exact id only.

use async_trait::async_trait;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{found, subscriptions_of, wrong_parameters};
use crate::azure::arm::api_version;
use crate::azure::Api;
use crate::domain::ids::AzureResourceId;
use crate::domain::parameters::Parameters;
use crate::domain::task::{Action, Task};
use crate::executors::guards::refuse_wide_scope;
use crate::executors::{
    Applied, Change, Executor, ExecutorContext, ExecutorError, PlannedRequest, Preview,
    RefusalReason, Undone, Verification, WriteMethod,
};

/// The executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct IsolateResourceNetwork;

const VM: &str = "Microsoft.Compute/virtualMachines";
const NIC: &str = "Microsoft.Network/networkInterfaces";
const NSG: &str = "Microsoft.Network/networkSecurityGroups";

fn target(task: &Task) -> Result<&AzureResourceId, ExecutorError> {
    match &task.parameters {
        Parameters::IsolateResourceNetwork { resource } => Ok(resource),
        _ => Err(wrong_parameters("isolate_resource_network")),
    }
}

/// The quarantine NSG's id for a NIC: same resource group, deterministic name.
pub fn quarantine_nsg_id(nic: &AzureResourceId) -> String {
    let digest = Sha256::digest(nic.normalized().as_bytes());
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/dr-quarantine-{}",
        nic.subscription_id().unwrap_or_default(),
        nic.resource_group().unwrap_or_default(),
        &hex::encode(digest)[..12]
    )
}

fn quarantine_rules(forensics_source: Option<&str>) -> Value {
    let deny = |name: &str, direction: &str| {
        json!({"name": name, "properties": {
            "priority": 4096, "direction": direction, "access": "Deny", "protocol": "*",
            "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "*",
            "description": "defender-responder quarantine"}})
    };
    let mut rules = Vec::new();
    if let Some(source) = forensics_source {
        rules.push(json!({"name": "dr-allow-forensics", "properties": {
            "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": source, "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRanges": ["22", "3389"],
            "description": "defender-responder: forensic access to the quarantined machine"}}));
    }
    rules.push(deny("dr-deny-in", "Inbound"));
    rules.push(deny("dr-deny-out", "Outbound"));
    json!(rules)
}

/// The NICs to quarantine: the target itself, or the VM's NICs by exact id.
async fn nics_of(
    ctx: &ExecutorContext,
    resource: &AzureResourceId,
) -> Result<Vec<AzureResourceId>, ExecutorError> {
    if resource.is_type(NIC) {
        return Ok(vec![resource.clone()]);
    }
    let vm = found(
        ctx.clients
            .arm
            .get_optional(resource.as_str(), api_version::COMPUTE)
            .await?,
        resource.as_str(),
    )?;
    Ok(vm
        .pointer("/properties/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .map(|nics| {
            nics.iter()
                .filter_map(|n| n.get("id").and_then(Value::as_str))
                .filter_map(|id| AzureResourceId::parse(id).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// The one Defender for Endpoint machine whose `vmMetadata.resourceId` is exactly the target.
async fn mde_machine(
    ctx: &ExecutorContext,
    resource: &AzureResourceId,
) -> Result<Option<Value>, ExecutorError> {
    let machines = ctx
        .clients
        .mde
        .machines_for_resource(resource.as_str())
        .await?;
    match machines.len() {
        0 => Ok(None),
        1 => Ok(machines.into_iter().next()),
        n => Err(ExecutorError::refused(
            RefusalReason::FuzzyMatch,
            format!(
                "{n} Defender for Endpoint machines claim {}; refusing to guess",
                resource.as_str()
            ),
        )),
    }
}

/// Each NIC's NSG as it is now (what undo restores).
async fn nic_states(
    ctx: &ExecutorContext,
    nics: &[AzureResourceId],
) -> Result<Vec<(Value, Value)>, ExecutorError> {
    let mut out = Vec::new();
    for nic in nics {
        let body = found(
            ctx.clients
                .arm
                .get_optional(nic.as_str(), api_version::NETWORK)
                .await?,
            nic.as_str(),
        )?;
        let state = json!({
            "id": nic.as_str(),
            "networkSecurityGroup": body.pointer("/properties/networkSecurityGroup/id").cloned().unwrap_or(Value::Null),
            "etag": body.get("etag").cloned().unwrap_or(Value::Null),
        });
        out.push((state, body));
    }
    Ok(out)
}

fn nic_put(
    ctx: &ExecutorContext,
    nic_id: &str,
    mut body: Value,
    nsg: Option<&str>,
) -> PlannedRequest {
    if let Some(map) = body.as_object_mut() {
        map.remove("etag");
    }
    body["properties"]["networkSecurityGroup"] = match nsg {
        Some(id) => json!({"id": id}),
        None => Value::Null,
    };
    PlannedRequest::new(
        Api::Arm,
        WriteMethod::Put,
        ctx.clients.arm.url(nic_id, api_version::NETWORK),
        Some(body),
    )
}

#[async_trait]
impl Executor for IsolateResourceNetwork {
    fn action(&self) -> Action {
        Action::IsolateResourceNetwork
    }

    async fn preview(&self, task: &Task, ctx: &ExecutorContext) -> Result<Preview, ExecutorError> {
        let resource = target(task)?;
        refuse_wide_scope(resource)?;
        if resource.is_type(NSG) {
            return Err(ExecutorError::refused(
                RefusalReason::SharedNetworkSecurityGroup,
                format!("{} is a network security group: its rules are shared by everything attached to it, so the responder quarantines NICs instead", resource.as_str()),
            ));
        }
        let is_machine = resource.is_type(VM) || resource.is_type(NIC);
        let machine = if !is_machine || ctx.settings.prefer_mde_isolation {
            mde_machine(ctx, resource).await?
        } else {
            None
        };
        if let Some(machine) = machine {
            let id = machine
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let body = json!({
                "Comment": format!("{}: {}", task.message_id, task.reason),
                "IsolationType": "Full",
            });
            let request = PlannedRequest::new(
                Api::Mde,
                WriteMethod::Post,
                ctx.clients.mde.url(&format!("/machines/{id}/isolate")),
                Some(body),
            );
            return Ok(Preview {
                change: Change::new(
                    format!(
                        "would isolate Defender for Endpoint machine {id} ({}) fully",
                        resource.as_str()
                    ),
                    vec![request],
                ),
                prior_state: json!({"mode": "mde", "machineId": id, "resource": resource.as_str()}),
                leases: vec![resource.normalized()],
                subscriptions: subscriptions_of(resource),
            });
        }
        if !is_machine {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!("{} has no network interface and no Defender for Endpoint machine matches its id exactly; isolate it with its own firewall", resource.as_str()),
            ));
        }
        let nics = nics_of(ctx, resource).await?;
        if nics.is_empty() {
            return Err(ExecutorError::refused(
                RefusalReason::UnsupportedTarget,
                format!("{} has no network interface", resource.as_str()),
            ));
        }
        let states = nic_states(ctx, &nics).await?;
        let mut requests = Vec::new();
        let mut leases = vec![resource.normalized()];
        for ((state, body), nic) in states.iter().zip(&nics) {
            let nsg_id = quarantine_nsg_id(nic);
            leases.push(nic.normalized());
            if state["networkSecurityGroup"]
                .as_str()
                .is_some_and(|current| current.eq_ignore_ascii_case(&nsg_id))
            {
                continue; // already quarantined
            }
            if let Some(existing) = ctx
                .clients
                .arm
                .get_optional(&nsg_id, api_version::NETWORK)
                .await?
            {
                let others = existing
                    .pointer("/properties/networkInterfaces")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|n| n.get("id").and_then(Value::as_str))
                            .any(|id| !id.eq_ignore_ascii_case(nic.as_str()))
                    })
                    .unwrap_or(false);
                if others {
                    return Err(ExecutorError::refused(
                        RefusalReason::SharedNetworkSecurityGroup,
                        format!("{nsg_id} is attached to other interfaces; refusing to reuse it"),
                    ));
                }
            }
            let location = body.get("location").cloned().unwrap_or(json!("westeurope"));
            requests.push(PlannedRequest::new(
                Api::Arm,
                WriteMethod::Put,
                ctx.clients.arm.url(&nsg_id, api_version::NETWORK),
                Some(json!({
                    "location": location,
                    "tags": {"dr-quarantine-for": nic.as_str(), "dr-message-id": task.message_id.as_str()},
                    "properties": {"securityRules": quarantine_rules(ctx.settings.forensics_source.as_deref())},
                })),
            ));
            requests.push(nic_put(ctx, nic.as_str(), body.clone(), Some(&nsg_id)));
        }
        let saved: Vec<Value> = states.into_iter().map(|(state, _)| state).collect();
        Ok(Preview {
            change: Change::new(
                if requests.is_empty() {
                    format!(
                        "every interface of {} is already quarantined",
                        resource.as_str()
                    )
                } else {
                    format!(
                        "would PUT a quarantine NSG (deny in and out) for each of {} interface(s) of {} and attach it to the interface; no shared NSG is edited",
                        requests.len() / 2,
                        resource.as_str()
                    )
                },
                requests,
            ),
            prior_state: json!({"mode": "nsg", "nics": saved}),
            leases,
            subscriptions: subscriptions_of(resource),
        })
    }

    async fn apply(
        &self,
        task: &Task,
        preview: &Preview,
        ctx: &ExecutorContext,
    ) -> Result<Applied, ExecutorError> {
        let resource = target(task)?;
        if preview.prior_state["mode"] == "mde" {
            let mut applied = Applied::default();
            for request in &preview.change.requests {
                let (sent, body) = ctx.send(request).await?;
                applied.sent.push(sent);
                applied.output =
                    json!({"machineActionId": body.get("id").cloned().unwrap_or(Value::Null)});
            }
            return Ok(applied);
        }
        let nics: Vec<AzureResourceId> = saved_nics(preview)
            .iter()
            .filter_map(|n| {
                n["id"]
                    .as_str()
                    .and_then(|id| AzureResourceId::parse(id).ok())
            })
            .collect();
        let now: Vec<Value> = nic_states(ctx, &nics)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        if now != saved_nics(preview) {
            return Err(ExecutorError::conflict(
                resource.as_str(),
                "a network interface changed since the preview (its etag or NSG differs)",
            ));
        }
        ctx.send_all(&preview.change.requests).await
    }

    async fn verify(
        &self,
        _task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Verification, ExecutorError> {
        if preview.prior_state["mode"] == "mde" {
            let Some(action_id) = applied.output["machineActionId"].as_str() else {
                return Ok(Verification::default());
            };
            let action = ctx.clients.mde.wait_for_action(action_id).await?;
            return Ok(Verification::default().check(
                "machine action status",
                json!("Succeeded"),
                action.get("status").cloned().unwrap_or(Value::Null),
            ));
        }
        let mut verification = Verification::default();
        for nic in saved_nics(preview) {
            let id = nic["id"].as_str().unwrap_or_default();
            let Ok(parsed) = AzureResourceId::parse(id) else {
                continue;
            };
            let body = ctx.clients.arm.get(id, api_version::NETWORK).await?;
            let expected = quarantine_nsg_id(&parsed);
            let actual = body
                .pointer("/properties/networkSecurityGroup/id")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            verification = verification.check(
                format!("NSG of {id}"),
                json!(expected.to_ascii_lowercase()),
                json!(actual),
            );
        }
        Ok(verification)
    }

    async fn undo(
        &self,
        _task: &Task,
        preview: &Preview,
        applied: &Applied,
        ctx: &ExecutorContext,
    ) -> Result<Undone, ExecutorError> {
        let mut undone = Undone::default();
        if applied.sent.is_empty() {
            return Ok(undone);
        }
        if preview.prior_state["mode"] == "mde" {
            let id = preview.prior_state["machineId"]
                .as_str()
                .unwrap_or_default();
            let request = PlannedRequest::new(
                Api::Mde,
                WriteMethod::Post,
                ctx.clients.mde.url(&format!("/machines/{id}/unisolate")),
                Some(json!({"Comment": "defender-responder undo"})),
            );
            undone.sent.push(ctx.send(&request).await?.0);
            return Ok(undone);
        }
        for nic in saved_nics(preview) {
            let id = nic["id"].as_str().unwrap_or_default();
            let Ok(parsed) = AzureResourceId::parse(id) else {
                continue;
            };
            let body = ctx.clients.arm.get(id, api_version::NETWORK).await?;
            let request = nic_put(ctx, id, body, nic["networkSecurityGroup"].as_str());
            undone.sent.push(ctx.send(&request).await?.0);
            let nsg = quarantine_nsg_id(&parsed);
            let delete = PlannedRequest::new(
                Api::Arm,
                WriteMethod::Delete,
                ctx.clients.arm.url(&nsg, api_version::NETWORK),
                None,
            );
            undone.sent.push(ctx.send(&delete).await?.0);
        }
        undone.not_restored.push(
            "connections cut while the machine was quarantined are not re-established".into(),
        );
        Ok(undone)
    }
}

fn saved_nics(preview: &Preview) -> Vec<Value> {
    preview.prior_state["nics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}
