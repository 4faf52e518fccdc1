//! Defender for Endpoint: machines (with `$filter`), machine actions (isolate, unisolate, antivirus scan) that go `Pending → Succeeded` as they are polled.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::http::{is, segments, Answer, Reply, Req};
use crate::state::{public_view, Sim};
use crate::time::now_rfc3339;

const CONTEXT: &str = "https://api.security.microsoft.com/api/$metadata";

fn field_is(value: &Value, key: &str, wanted: &str) -> bool {
    value
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|got| got.eq_ignore_ascii_case(wanted))
}

fn not_found(what: &str, id: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("{what} {id} was not found"),
    )
}

/// `a eq 'x' and b/c eq 'y'` as (pointer, value) pairs.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, Reply> {
    filter
        .split(" and ")
        .map(|clause| {
            let mut parts = clause.trim().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(field), Some(op), Some(value)) if op.eq_ignore_ascii_case("eq") => Ok((
                    format!("/{field}"),
                    value.trim().trim_matches('\'').to_string(),
                )),
                _ => Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    &format!("Invalid filter clause: {clause}"),
                )),
            }
        })
        .collect()
}

/// Serves one Defender for Endpoint request.
pub(crate) fn handle(sim: &Sim, req: &Req) -> Answer {
    let parts = segments(&req.path);
    let rest = &parts[1..];
    let mut state = sim.lock();
    let defender = &mut state.defender;
    match (&req.method, rest) {
        (&Method::GET, [machines]) if is(machines, "machines") => {
            let clauses = match req.query("$filter") {
                Some(filter) => parse_filter(filter)?,
                None => Vec::new(),
            };
            let value: Vec<Value> = defender
                .machines
                .iter()
                .filter(|machine| {
                    clauses.iter().all(|(pointer, wanted)| {
                        machine
                            .pointer(pointer)
                            .and_then(Value::as_str)
                            .is_some_and(|got| got.eq_ignore_ascii_case(wanted))
                    })
                })
                .map(public_view)
                .collect();
            Ok(Reply::ok(
                json!({"@odata.context": format!("{CONTEXT}#Machines"), "value": value}),
            ))
        }
        (&Method::GET, [machines, id]) if is(machines, "machines") => defender
            .machines
            .iter()
            .find(|machine| field_is(machine, "id", id))
            .map(|machine| {
                let mut view = public_view(machine);
                view["@odata.context"] = json!(format!("{CONTEXT}#Machines/$entity"));
                Reply::ok(view)
            })
            .ok_or_else(|| not_found("Machine", id)),
        (&Method::POST, [machines, id, action]) if is(machines, "machines") => {
            let Some(machine) = defender
                .machines
                .iter()
                .find(|machine| field_is(machine, "id", id))
                .cloned()
            else {
                return Err(not_found("Machine", id));
            };
            let body = req.json()?;
            let Some(comment) = body.get("Comment").and_then(Value::as_str) else {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    "Request body is invalid: Comment is required.",
                ));
            };
            let (kind, scope) = match action.to_ascii_lowercase().as_str() {
                "isolate" => (
                    "Isolate",
                    body.get("IsolationType")
                        .and_then(Value::as_str)
                        .unwrap_or("Full")
                        .to_string(),
                ),
                "unisolate" => ("Unisolate", "Full".to_string()),
                "runantivirusscan" => (
                    "RunAntiVirusScan",
                    body.get("ScanType")
                        .and_then(Value::as_str)
                        .unwrap_or("Quick")
                        .to_string(),
                ),
                _ => {
                    return Err(Reply::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestBody",
                        &format!("Unknown machine action '{action}'."),
                    ))
                }
            };
            let busy = defender.actions.iter().any(|existing| {
                field_is(existing, "machineId", id)
                    && field_is(existing, "type", kind)
                    && matches!(existing["status"].as_str(), Some("Pending" | "InProgress"))
            });
            if busy {
                return Err(Reply::error(
                    StatusCode::BAD_REQUEST,
                    "ActiveRequestAlreadyExists",
                    "Action is already in progress",
                ));
            }
            let action_id = uuid::Uuid::new_v4().to_string();
            let now = now_rfc3339();
            let requestor = req.caller.clone().unwrap_or_default();
            let record = json!({
                "id": action_id, "type": kind, "scope": scope, "requestor": requestor,
                "requestorComment": comment, "status": "Pending", "machineId": id,
                "computerDnsName": machine.get("computerDnsName").cloned().unwrap_or(Value::Null),
                "creationDateTimeUtc": now, "lastUpdateDateTimeUtc": now,
                "cancellationRequestor": null, "cancellationComment": null, "cancellationDateTimeUtc": null,
                "errorHResult": 0, "relatedFileInfo": null, "commands": [], "troubleshootInfo": null,
            });
            let (polls, fails) = match &req.lro_fault {
                Some(Fault::LroSlow { polls }) => (*polls, false),
                Some(Fault::LroFail { polls, .. }) => (*polls, true),
                _ => (1, false),
            };
            defender.polls_left.insert(
                action_id.clone(),
                if fails { polls | 0x8000_0000 } else { polls },
            );
            defender.actions.push(record.clone());
            let mut reply = record;
            reply["@odata.context"] = json!(format!("{CONTEXT}#MachineActions/$entity"));
            Ok(Reply::json(StatusCode::CREATED, reply))
        }
        (&Method::GET, [actions]) if is(actions, "machineactions") => {
            let clauses = match req.query("$filter") {
                Some(filter) => parse_filter(filter)?,
                None => Vec::new(),
            };
            let value: Vec<Value> = defender
                .actions
                .iter()
                .filter(|action| {
                    clauses.iter().all(|(pointer, wanted)| {
                        action
                            .pointer(pointer)
                            .and_then(Value::as_str)
                            .is_some_and(|got| got.eq_ignore_ascii_case(wanted))
                    })
                })
                .cloned()
                .collect();
            Ok(Reply::ok(
                json!({"@odata.context": format!("{CONTEXT}#MachineActions"), "value": value}),
            ))
        }
        (&Method::GET, [actions, id]) if is(actions, "machineactions") => {
            let Some(index) = defender
                .actions
                .iter()
                .position(|action| field_is(action, "id", id))
            else {
                return Err(not_found("MachineAction", id));
            };
            let left = defender.polls_left.get(*id).copied().unwrap_or(0);
            let fails = left & 0x8000_0000 != 0;
            let count = left & 0x7fff_ffff;
            if defender.actions[index]["status"] == "Pending" {
                if count > 0 {
                    defender
                        .polls_left
                        .insert(id.to_string(), (count - 1) | (left & 0x8000_0000));
                } else {
                    let status = if fails { "Failed" } else { "Succeeded" };
                    defender.actions[index]["status"] = json!(status);
                    defender.actions[index]["lastUpdateDateTimeUtc"] = json!(now_rfc3339());
                    let machine_id = defender.actions[index]["machineId"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let kind = defender.actions[index]["type"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let scope = defender.actions[index]["scope"].clone();
                    if !fails {
                        if let Some(machine) = defender
                            .machines
                            .iter_mut()
                            .find(|m| field_is(m, "id", &machine_id))
                        {
                            match kind.as_str() {
                                "Isolate" => machine["x-sim-isolation"] = scope,
                                "Unisolate" => machine["x-sim-isolation"] = Value::Null,
                                _ => machine["x-sim-lastScan"] = json!(now_rfc3339()),
                            }
                        }
                    }
                }
            }
            let mut view = defender.actions[index].clone();
            view["@odata.context"] = json!(format!("{CONTEXT}#MachineActions/$entity"));
            Ok(Reply::ok(view))
        }
        _ => Err(Reply::error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!(
                "No Defender for Endpoint API at {} {}",
                req.method, req.path
            ),
        )),
    }
}
