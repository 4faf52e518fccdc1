//! Azure role assignments and definitions: listing with exact scope matching, what to save
//! before a delete, and the PUT that restores one with its original GUID.

use serde_json::{json, Value};

use super::super::{ExecutorContext, ExecutorError, PlannedRequest, WriteMethod};
use crate::azure::arm::api_version;
use crate::azure::http::encode_query;
use crate::azure::Api;

/// The assignments `filter` selects at `scope` (ARM answers at, above and below it).
pub async fn list_assignments(
    ctx: &ExecutorContext,
    scope: &str,
    filter: Option<&str>,
) -> Result<Vec<Value>, ExecutorError> {
    let path = match filter {
        Some(filter) => format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?$filter={}",
            scope.trim_end_matches('/'),
            encode_query(filter)
        ),
        None => format!(
            "{}/providers/Microsoft.Authorization/roleAssignments",
            scope.trim_end_matches('/')
        ),
    };
    Ok(ctx
        .clients
        .arm
        .list(&path, api_version::AUTHORIZATION)
        .await?)
}

/// Whether an assignment's scope is exactly `scope` (case-insensitive, never a prefix).
pub fn scope_is(assignment: &Value, scope: &str) -> bool {
    assignment
        .pointer("/properties/scope")
        .and_then(Value::as_str)
        .is_some_and(|s| {
            s.trim_end_matches('/')
                .eq_ignore_ascii_case(scope.trim_end_matches('/'))
        })
}

/// A text field of an assignment's or definition's properties.
pub fn property<'a>(value: &'a Value, name: &str) -> &'a str {
    value
        .get("properties")
        .and_then(|p| p.get(name))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// What undo needs to re-create an assignment with the same GUID.
pub fn saved_assignment(assignment: &Value) -> Value {
    let properties = assignment.get("properties").cloned().unwrap_or(Value::Null);
    let mut saved = json!({
        "id": assignment.get("id").cloned().unwrap_or(Value::Null),
        "name": assignment.get("name").cloned().unwrap_or(Value::Null),
        "properties": {
            "roleDefinitionId": properties.get("roleDefinitionId").cloned().unwrap_or(Value::Null),
            "principalId": properties.get("principalId").cloned().unwrap_or(Value::Null),
            "principalType": properties.get("principalType").cloned().unwrap_or(Value::Null),
            "scope": properties.get("scope").cloned().unwrap_or(Value::Null),
        }
    });
    for optional in ["condition", "conditionVersion", "description"] {
        if let Some(value) = properties.get(optional).filter(|v| !v.is_null()) {
            saved["properties"][optional] = value.clone();
        }
    }
    saved
}

/// `DELETE {id}`.
pub fn delete_request(ctx: &ExecutorContext, id: &str) -> PlannedRequest {
    PlannedRequest::new(
        Api::Arm,
        WriteMethod::Delete,
        ctx.clients.arm.url(id, api_version::AUTHORIZATION),
        None,
    )
}

/// `PUT {id}` re-creating a saved assignment (same GUID, same properties).
pub fn restore_assignment_request(ctx: &ExecutorContext, saved: &Value) -> PlannedRequest {
    let id = saved.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut properties = saved.get("properties").cloned().unwrap_or(json!({}));
    if let Some(map) = properties.as_object_mut() {
        map.remove("scope");
    }
    PlannedRequest::new(
        Api::Arm,
        WriteMethod::Put,
        ctx.clients.arm.url(id, api_version::AUTHORIZATION),
        Some(json!({"properties": properties})),
    )
}

/// Sends restoring PUTs; an assignment that already exists again (409 `RoleAssignmentExists`)
/// counts as restored.
pub async fn restore_assignments(
    ctx: &ExecutorContext,
    saved: &[Value],
) -> Result<Vec<super::super::SentRequest>, ExecutorError> {
    let mut sent = Vec::new();
    for assignment in saved {
        let request = restore_assignment_request(ctx, assignment);
        match ctx.send(&request).await {
            Ok((record, _)) => sent.push(record),
            Err(ExecutorError::Conflict { detail, .. })
                if detail.contains("RoleAssignmentExists") => {}
            Err(err) => return Err(err),
        }
    }
    Ok(sent)
}

/// The ids of assignments, lower-cased and sorted (for conflict checks).
pub fn ids_of(assignments: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = assignments
        .iter()
        .filter_map(|a| a.get("id").and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    ids.sort();
    ids
}
