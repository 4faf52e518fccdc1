//! Microsoft Graph v1.0: users, service principals, applications and their credentials, directory roles, role management, deleted items and sendMail.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::http::{is, segments, Answer, Reply, Req};
use crate::state::{public_view, Directory, Sim};
use crate::time::now_rfc3339;

const ROOT: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// The properties `GET /users/{id}` returns without `$select`.
const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Which directory collection a path names.
#[derive(Clone, Copy, PartialEq)]
enum Collection {
    Users,
    ServicePrincipals,
    Applications,
}

impl Collection {
    fn name(self) -> &'static str {
        match self {
            Collection::Users => "users",
            Collection::ServicePrincipals => "servicePrincipals",
            Collection::Applications => "applications",
        }
    }

    fn odata_type(self) -> &'static str {
        match self {
            Collection::Users => "#microsoft.graph.user",
            Collection::ServicePrincipals => "#microsoft.graph.servicePrincipal",
            Collection::Applications => "#microsoft.graph.application",
        }
    }

    fn items(self, directory: &mut Directory) -> &mut Vec<Value> {
        match self {
            Collection::Users => &mut directory.users,
            Collection::ServicePrincipals => &mut directory.service_principals,
            Collection::Applications => &mut directory.applications,
        }
    }
}

fn not_found(id: &str) -> Reply {
    Reply::graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn bad_request(message: &str) -> Reply {
    Reply::graph_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// Splits `servicePrincipals(appId='x')` into (`servicePrincipals`, Some((`appId`, `x`))).
fn keyed(segment: &str) -> (&str, Option<(&str, &str)>) {
    match segment.split_once('(') {
        Some((name, rest)) => {
            let inside = rest.trim_end_matches(')');
            let (key, value) = inside.split_once('=').unwrap_or(("id", inside));
            (name, Some((key, value.trim_matches('\''))))
        }
        None => (segment, None),
    }
}

fn field_is(value: &Value, key: &str, wanted: &str) -> bool {
    value
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|got| got.eq_ignore_ascii_case(wanted))
}

/// Projects an entity per `$select` (users get Graph's default set without it).
fn project(collection: Collection, value: &Value, select: Option<&str>) -> Value {
    let view = public_view(value);
    let Some(map) = view.as_object() else {
        return view;
    };
    let chosen: Option<Vec<String>> = match (select, collection) {
        (Some(select), _) => Some(select.split(',').map(|s| s.trim().to_string()).collect()),
        (None, Collection::Users) => Some(USER_DEFAULT.iter().map(|s| s.to_string()).collect()),
        (None, _) => None,
    };
    match chosen {
        None => view,
        Some(fields) => {
            let mut out = Map::new();
            for field in fields {
                if let Some((key, value)) =
                    map.iter().find(|(key, _)| key.eq_ignore_ascii_case(&field))
                {
                    out.insert(key.clone(), value.clone());
                } else if collection == Collection::Users && USER_DEFAULT.contains(&field.as_str())
                {
                    out.insert(field, Value::Null);
                }
            }
            if let Some(id) = map.get("id") {
                out.entry("id").or_insert(id.clone());
            }
            Value::Object(out)
        }
    }
}

fn entity_context(collection: Collection, select: Option<&str>) -> String {
    match select {
        Some(select) => format!("{ROOT}#{}({select})/$entity", collection.name()),
        None => format!("{ROOT}#{}/$entity", collection.name()),
    }
}

fn with_context(mut value: Value, context: String) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("@odata.context".into(), json!(context));
    }
    value
}

/// `field eq 'value'` clauses joined by `and` (what the executors send).
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, Reply> {
    let mut clauses = Vec::new();
    for clause in filter.split(" and ") {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_request(&format!("Invalid filter clause: {clause}")));
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(bad_request(&format!(
                "Invalid filter clause: unsupported operator '{op}'."
            )));
        }
        clauses.push((
            field.to_string(),
            value.trim().trim_matches('\'').to_string(),
        ));
    }
    Ok(clauses)
}

fn matches_filter(value: &Value, clauses: &[(String, String)]) -> bool {
    clauses.iter().all(|(field, wanted)| {
        let pointer = format!("/{field}");
        value.pointer(&pointer).is_some_and(|got| match got {
            Value::String(text) => text.eq_ignore_ascii_case(wanted),
            other => &other.to_string() == wanted,
        })
    })
}

/// Serves one Graph request.
pub(crate) fn handle(sim: &Sim, req: &Req) -> Answer {
    let parts = segments(&req.path);
    let parts = &parts[1..];
    let mut state = sim.lock();
    let directory = &mut state.directory;
    let Some(first) = parts.first() else {
        return Err(bad_request("Invalid request: no resource named."));
    };
    let (head, key) = keyed(first);
    let collection = match head.to_ascii_lowercase().as_str() {
        "users" => Some(Collection::Users),
        "serviceprincipals" => Some(Collection::ServicePrincipals),
        "applications" => Some(Collection::Applications),
        _ => None,
    };
    if let Some(collection) = collection {
        return objects(directory, req, collection, key, &parts[1..]);
    }
    match head.to_ascii_lowercase().as_str() {
        "directoryroles" => directory_roles(directory, req, key, &parts[1..]),
        "rolemanagement" if parts.len() >= 3 && is(parts[1], "directory") => {
            role_management(directory, req, &parts[2..])
        }
        "directory" if parts.len() >= 3 && is(parts[1], "deletedItems") => {
            deleted_items(directory, req, &parts[2..])
        }
        _ => Err(Reply::graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{head}'."),
        )),
    }
}

fn find(items: &[Value], key: Option<(&str, &str)>, id: Option<&str>) -> Option<usize> {
    match (key, id) {
        (Some((field, value)), _) => items.iter().position(|item| field_is(item, field, value)),
        (None, Some(id)) => items
            .iter()
            .position(|item| field_is(item, "id", id) || field_is(item, "userPrincipalName", id)),
        (None, None) => None,
    }
}

fn objects(
    directory: &mut Directory,
    req: &Req,
    collection: Collection,
    key: Option<(&str, &str)>,
    rest: &[&str],
) -> Answer {
    let select = req.query("$select");
    if key.is_none() && rest.is_empty() {
        return match req.method {
            Method::GET => {
                let clauses = match req.query("$filter") {
                    Some(filter) => parse_filter(filter)?,
                    None => Vec::new(),
                };
                let value: Vec<Value> = collection
                    .items(directory)
                    .iter()
                    .filter(|item| matches_filter(item, &clauses))
                    .map(|item| project(collection, item, select))
                    .collect();
                Ok(Reply::ok(
                    json!({"@odata.context": format!("{ROOT}#{}", collection.name()), "value": value}),
                ))
            }
            Method::POST => {
                let mut body = req.json_object()?;
                let id = uuid::Uuid::new_v4().to_string();
                body.insert("id".into(), json!(id));
                body.entry("accountEnabled").or_insert(json!(true));
                collection
                    .items(directory)
                    .push(Value::Object(body.clone()));
                Ok(Reply::json(
                    StatusCode::CREATED,
                    with_context(Value::Object(body), entity_context(collection, None)),
                ))
            }
            _ => Err(bad_request("Unsupported method on a collection.")),
        };
    }
    let (id, rest) = match key {
        Some(_) => (None, rest),
        None => (rest.first().copied(), &rest[1..]),
    };
    let display = key.map(|(_, v)| v).or(id).unwrap_or("").to_string();
    let Some(index) = find(collection.items(directory), key, id) else {
        return Err(not_found(&display));
    };
    let object_id = collection.items(directory)[index]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    match (&req.method, rest) {
        (&Method::GET, []) => {
            let item = &collection.items(directory)[index];
            Ok(Reply::ok(with_context(
                project(collection, item, select),
                entity_context(collection, select),
            )))
        }
        (&Method::PATCH, []) => {
            let body = req.json_object()?;
            let item = &mut collection.items(directory)[index];
            let Some(map) = item.as_object_mut() else {
                return Err(not_found(&display));
            };
            for (field, value) in body {
                if field == "id" {
                    return Err(bad_request("Property 'id' is read-only and cannot be set."));
                }
                if field == "passwordProfile" {
                    map.insert("x-sim-passwordProfile".into(), value);
                    map.insert("lastPasswordChangeDateTime".into(), json!(now_rfc3339()));
                } else {
                    map.insert(field, value);
                }
            }
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (&Method::DELETE, []) => {
            let mut removed = collection.items(directory).remove(index);
            if let Some(map) = removed.as_object_mut() {
                map.insert("@odata.type".into(), json!(collection.odata_type()));
                map.insert("deletedDateTime".into(), json!(now_rfc3339()));
            }
            directory.deleted_items.push(removed);
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (&Method::POST, [action])
            if is(action, "revokeSignInSessions") && collection == Collection::Users =>
        {
            directory
                .revoked_sessions
                .push(json!({"userId": object_id, "at": now_rfc3339()}));
            Ok(Reply::ok(
                json!({"@odata.context": format!("{ROOT}#Edm.Boolean"), "value": true}),
            ))
        }
        (&Method::POST, [action]) if is(action, "sendMail") && collection == Collection::Users => {
            let body = req.json()?;
            let recipients = body
                .pointer("/message/toRecipients")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            if recipients == 0 {
                return Err(Reply::graph_error(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRecipients",
                    "At least one recipient isn't valid., Recipient is missing.",
                ));
            }
            directory
                .sent_mail
                .push(json!({"from": object_id, "at": now_rfc3339(), "request": body}));
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        (&Method::POST, [action])
            if is(action, "addPassword") && collection != Collection::Users =>
        {
            let body = req.json()?;
            let requested = body.get("passwordCredential").cloned().unwrap_or(json!({}));
            let secret = format!(
                "{}~{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8],
                uuid::Uuid::new_v4().simple()
            );
            let now = now_rfc3339();
            let credential = json!({
                "customKeyIdentifier": null,
                "displayName": requested.get("displayName").cloned().unwrap_or(Value::Null),
                "endDateTime": requested.get("endDateTime").cloned().unwrap_or(json!("2028-12-01T00:00:00Z")),
                "hint": &secret[..3],
                "keyId": uuid::Uuid::new_v4().to_string(),
                "secretText": null,
                "startDateTime": requested.get("startDateTime").cloned().unwrap_or(json!(now)),
            });
            let item = &mut collection.items(directory)[index];
            if let Some(map) = item.as_object_mut() {
                let list = map.entry("passwordCredentials").or_insert(json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(credential.clone());
                }
            }
            let mut reply = credential;
            reply["secretText"] = json!(secret);
            Ok(Reply::ok(with_context(
                reply,
                format!("{ROOT}#microsoft.graph.passwordCredential"),
            )))
        }
        (&Method::POST, [action])
            if is(action, "removePassword") && collection != Collection::Users =>
        {
            let body = req.json()?;
            let key_id = body
                .get("keyId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let item = &mut collection.items(directory)[index];
            let list = item
                .get_mut("passwordCredentials")
                .and_then(Value::as_array_mut);
            let Some(list) = list else {
                return Err(Reply::graph_error(
                    StatusCode::BAD_REQUEST,
                    "CannotDeleteNonexistentCredential",
                    &format!("No password credential found with keyId {key_id}."),
                ));
            };
            let before = list.len();
            list.retain(|credential| !field_is(credential, "keyId", &key_id));
            if list.len() == before {
                return Err(Reply::graph_error(
                    StatusCode::BAD_REQUEST,
                    "CannotDeleteNonexistentCredential",
                    &format!("No password credential found with keyId {key_id}."),
                ));
            }
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (&Method::GET, [owners]) if is(owners, "owners") => {
            let ids: Vec<String> = collection.items(directory)[index]
                .get("x-sim-owners")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let members = members_of(directory, &ids);
            Ok(Reply::ok(
                json!({"@odata.context": format!("{ROOT}#directoryObjects"), "value": members}),
            ))
        }
        (&Method::GET, [fic]) if is(fic, "federatedIdentityCredentials") => {
            let list = collection.items(directory)[index]
                .get("x-sim-federatedIdentityCredentials")
                .cloned()
                .unwrap_or(json!([]));
            Ok(Reply::ok(
                json!({"@odata.context": format!("{ROOT}#applications('{object_id}')/federatedIdentityCredentials"), "value": list}),
            ))
        }
        (&Method::DELETE, [fic, name]) if is(fic, "federatedIdentityCredentials") => {
            let item = &mut collection.items(directory)[index];
            let list = item
                .get_mut("x-sim-federatedIdentityCredentials")
                .and_then(Value::as_array_mut);
            let Some(list) = list else {
                return Err(not_found(name));
            };
            let before = list.len();
            list.retain(|credential| {
                !field_is(credential, "id", name) && !field_is(credential, "name", name)
            });
            if list.len() == before {
                return Err(not_found(name));
            }
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(bad_request(&format!(
            "Unsupported request {} {}.",
            req.method, req.path
        ))),
    }
}

/// Directory objects by id, each with its `@odata.type`.
fn members_of(directory: &Directory, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .filter_map(|id| {
            let pairs = [
                (&directory.users, Collection::Users),
                (&directory.service_principals, Collection::ServicePrincipals),
                (&directory.applications, Collection::Applications),
            ];
            pairs.iter().find_map(|(items, collection)| {
                items
                    .iter()
                    .find(|item| field_is(item, "id", id))
                    .map(|item| {
                        let mut view = project(*collection, item, None);
                        if *collection == Collection::Users {
                            for extra in ["mail", "userPrincipalName"] {
                                if let Some(value) = item.get(extra) {
                                    view[extra] = value.clone();
                                }
                            }
                        }
                        view["@odata.type"] = json!(collection.odata_type());
                        view
                    })
            })
        })
        .collect()
}

fn directory_roles(
    directory: &mut Directory,
    req: &Req,
    key: Option<(&str, &str)>,
    rest: &[&str],
) -> Answer {
    if req.method != Method::GET {
        return Err(bad_request("Only GET is supported on directoryRoles."));
    }
    let (index, rest) = match key {
        Some((field, value)) => (
            directory
                .directory_roles
                .iter()
                .position(|role| field_is(role, field, value)),
            rest,
        ),
        None if rest.is_empty() => {
            let value: Vec<Value> = directory.directory_roles.iter().map(public_view).collect();
            return Ok(Reply::ok(
                json!({"@odata.context": format!("{ROOT}#directoryRoles"), "value": value}),
            ));
        }
        None => (
            directory
                .directory_roles
                .iter()
                .position(|role| field_is(role, "id", rest[0])),
            &rest[1..],
        ),
    };
    let Some(index) = index else {
        return Err(not_found(
            key.map(|(_, v)| v)
                .unwrap_or(rest.first().copied().unwrap_or("")),
        ));
    };
    let role = directory.directory_roles[index].clone();
    match rest {
        [] => Ok(Reply::ok(with_context(
            public_view(&role),
            format!("{ROOT}#directoryRoles/$entity"),
        ))),
        [members] if is(members, "members") => {
            let ids: Vec<String> = role
                .get("x-sim-members")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Ok(Reply::ok(
                json!({"@odata.context": format!("{ROOT}#directoryObjects"), "value": members_of(directory, &ids)}),
            ))
        }
        _ => Err(bad_request("Unsupported directoryRoles request.")),
    }
}

fn role_management(directory: &mut Directory, req: &Req, rest: &[&str]) -> Answer {
    let kind = rest[0].to_ascii_lowercase();
    let clauses = match req.query("$filter") {
        Some(filter) => parse_filter(filter)?,
        None => Vec::new(),
    };
    let expand_definition = req
        .query("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("roleDefinition"));
    let context = |name: &str| format!("{ROOT}#roleManagement/directory/{name}");
    match (kind.as_str(), &req.method, &rest[1..]) {
        ("roleassignments", &Method::GET, [])
        | ("roleeligibilityschedules", &Method::GET, [])
        | ("roledefinitions", &Method::GET, []) => {
            let items = match kind.as_str() {
                "roleassignments" => &directory.role_assignments,
                "roleeligibilityschedules" => &directory.role_eligibility_schedules,
                _ => &directory.role_definitions,
            };
            let value: Vec<Value> = items
                .iter()
                .filter(|item| matches_filter(item, &clauses))
                .map(|item| {
                    let mut view = public_view(item);
                    if expand_definition {
                        let definition = item
                            .get("roleDefinitionId")
                            .and_then(Value::as_str)
                            .and_then(|id| {
                                directory.role_definitions.iter().find(|d| {
                                    field_is(d, "id", id) || field_is(d, "templateId", id)
                                })
                            });
                        view["roleDefinition"] = definition.map(public_view).unwrap_or(Value::Null);
                    }
                    view
                })
                .collect();
            Ok(Reply::ok(
                json!({"@odata.context": context(rest[0]), "value": value}),
            ))
        }
        ("roleassignments", &Method::GET, [id]) => directory
            .role_assignments
            .iter()
            .find(|item| field_is(item, "id", id))
            .map(|item| {
                Reply::ok(with_context(
                    public_view(item),
                    format!("{}/$entity", context("roleAssignments")),
                ))
            })
            .ok_or_else(|| not_found(id)),
        ("roleassignments", &Method::POST, []) => {
            let mut body = req.json_object()?;
            for required in ["principalId", "roleDefinitionId", "directoryScopeId"] {
                if !body.contains_key(required) {
                    return Err(bad_request(&format!("The request must name {required}.")));
                }
            }
            body.insert(
                "id".into(),
                json!(uuid::Uuid::new_v4().simple().to_string()),
            );
            directory.role_assignments.push(Value::Object(body.clone()));
            Ok(Reply::json(
                StatusCode::CREATED,
                with_context(
                    Value::Object(body),
                    format!("{}/$entity", context("roleAssignments")),
                ),
            ))
        }
        ("roleassignments", &Method::DELETE, [id]) => {
            let before = directory.role_assignments.len();
            directory
                .role_assignments
                .retain(|item| !field_is(item, "id", id));
            if directory.role_assignments.len() == before {
                return Err(not_found(id));
            }
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        ("roleassignmentschedulerequests", &Method::POST, [])
        | ("roleeligibilityschedulerequests", &Method::POST, []) => {
            let body = req.json()?;
            let action = body
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            let principal = body
                .get("principalId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let role = body
                .get("roleDefinitionId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let scope = body
                .get("directoryScopeId")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            let active = kind == "roleassignmentschedulerequests";
            let items = if active {
                &mut directory.role_assignments
            } else {
                &mut directory.role_eligibility_schedules
            };
            let same = |item: &Value| {
                field_is(item, "principalId", &principal)
                    && field_is(item, "roleDefinitionId", &role)
                    && field_is(item, "directoryScopeId", &scope)
            };
            let status = match action.as_str() {
                "adminremove" => {
                    let before = items.len();
                    items.retain(|item| !same(item));
                    if items.len() == before {
                        return Err(Reply::graph_error(
                            StatusCode::BAD_REQUEST,
                            "RoleAssignmentDoesNotExist",
                            "The Role assignment does not exist.",
                        ));
                    }
                    "Revoked"
                }
                "adminassign" => {
                    if items.iter().any(same) {
                        return Err(Reply::graph_error(
                            StatusCode::BAD_REQUEST,
                            "RoleAssignmentExists",
                            "The Role assignment already exists.",
                        ));
                    }
                    items.push(json!({"id": uuid::Uuid::new_v4().simple().to_string(), "principalId": principal, "roleDefinitionId": role, "directoryScopeId": scope, "memberType": "Direct", "status": "Provisioned"}));
                    "Provisioned"
                }
                other => {
                    return Err(bad_request(&format!(
                        "The action '{other}' is not supported."
                    )))
                }
            };
            let mut reply = body.clone();
            reply["id"] = json!(uuid::Uuid::new_v4().to_string());
            reply["status"] = json!(status);
            reply["createdDateTime"] = json!(now_rfc3339());
            directory.schedule_requests.push(reply.clone());
            Ok(Reply::json(
                StatusCode::CREATED,
                with_context(reply, format!("{}/$entity", context(rest[0]))),
            ))
        }
        _ => Err(bad_request(&format!(
            "Unsupported request {} {}.",
            req.method, req.path
        ))),
    }
}

fn deleted_items(directory: &mut Directory, req: &Req, rest: &[&str]) -> Answer {
    let id = rest[0];
    let Some(index) = directory
        .deleted_items
        .iter()
        .position(|item| field_is(item, "id", id))
    else {
        return Err(not_found(id));
    };
    match (&req.method, &rest[1..]) {
        (&Method::GET, []) => Ok(Reply::ok(with_context(
            public_view(&directory.deleted_items[index]),
            format!("{ROOT}#directoryObjects/$entity"),
        ))),
        (&Method::POST, [restore]) if is(restore, "restore") => {
            let mut item = directory.deleted_items.remove(index);
            let kind = item
                .get("@odata.type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(map) = item.as_object_mut() {
                map.remove("deletedDateTime");
            }
            let view = public_view(&item);
            if let Some(map) = item.as_object_mut() {
                map.remove("@odata.type");
            }
            match kind.as_str() {
                "#microsoft.graph.servicePrincipal" => directory.service_principals.push(item),
                "#microsoft.graph.application" => directory.applications.push(item),
                _ => directory.users.push(item),
            }
            Ok(Reply::ok(with_context(
                view,
                format!("{ROOT}#directoryObjects/$entity"),
            )))
        }
        _ => Err(bad_request("Unsupported deletedItems request.")),
    }
}
