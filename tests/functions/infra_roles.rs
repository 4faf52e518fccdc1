//! Drift guard: every action with an executor has its roles in the Bicep and its row in
//! docs/deploy.md, and the two say the same (roles, role ids, Graph and MDE permissions).

use std::collections::{BTreeMap, BTreeSet};

use defender_responder::domain::alert::Severity;
use defender_responder::domain::task::Action;
use defender_responder::executors::ExecutorRegistry;
use defender_responder::policy::{builtin_rules, Mode, Policy};

use crate::helpers::root;

const CATALOG: &str = "infra/modules/containment_roles.bicep";
const DOC: &str = "docs/deploy.md";
/// The role every containment action needs at the subscription (alert authentication).
const ALERT_ROLE: &str = "Security Admin";

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The lines between `// BEGIN marker` and `// END marker`.
fn block<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines
        .iter()
        .position(|line| line.trim() == format!("// BEGIN {marker}"))
        .unwrap_or_else(|| panic!("no BEGIN {marker} block"));
    let end = lines
        .iter()
        .position(|line| line.trim() == format!("// END {marker}"))
        .unwrap_or_else(|| panic!("no END {marker} block"));
    lines[begin + 1..end].to_vec()
}

/// `key: 'value'` on a trimmed line.
fn quoted_property<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.trim()
        .strip_prefix(&format!("{key}: '"))?
        .strip_suffix('\'')
}

/// One catalog entry: its name (`role:` or `permission:`), its other quoted properties and the
/// quoted actions of its `actions: [ ... ]` list.
#[derive(Debug, Default)]
struct Entry {
    name: String,
    properties: BTreeMap<String, String>,
    actions: BTreeSet<String>,
}

/// The entries of a catalog block, each opened by a `{name_key}: '…'` line.
fn catalog(marker: &str, name_key: &str) -> Vec<Entry> {
    let text = read(CATALOG);
    let mut entries: Vec<Entry> = Vec::new();
    let mut in_actions = false;
    for line in block(&text, marker) {
        let trimmed = line.trim();
        if let Some(name) = quoted_property(trimmed, name_key) {
            entries.push(Entry {
                name: name.to_string(),
                ..Entry::default()
            });
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        if trimmed == "actions: [" {
            in_actions = true;
        } else if in_actions && trimmed == "]" {
            in_actions = false;
        } else if in_actions {
            let action = trimmed.trim_matches('\'');
            assert!(
                trimmed.starts_with('\'') && trimmed.ends_with('\''),
                "{marker}: {} has an unquoted action line {trimmed:?}",
                entry.name
            );
            assert!(
                entry.actions.insert(action.to_string()),
                "{marker}: {} lists {action} twice",
                entry.name
            );
        } else if let Some((key, value)) = trimmed.split_once(": ") {
            entry
                .properties
                .insert(key.to_string(), value.trim_matches('\'').to_string());
        }
    }
    assert!(!entries.is_empty(), "{marker}: no entries parsed");
    entries
}

/// The cells of each row of the table that follows `heading` in the doc, header excluded.
fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = doc.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.trim() == heading)
        .unwrap_or_else(|| panic!("{DOC}: no `{heading}` section"));
    let rows: Vec<Vec<String>> = lines[at + 1..]
        .iter()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{DOC}: the `{heading}` table is empty");
    rows
}

/// Every `` `code` `` span of a cell.
fn code_spans(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A comma-separated list of names; `—` is none.
fn names(cell: &str) -> BTreeSet<String> {
    if cell == "—" {
        return BTreeSet::new();
    }
    cell.split(',')
        .map(|name| name.trim().to_string())
        .collect()
}

/// The actions that have an executor, by name.
fn executor_actions() -> BTreeSet<String> {
    let actions: BTreeSet<String> = ExecutorRegistry::standard()
        .actions()
        .iter()
        .map(|action| action.as_str().to_string())
        .collect();
    assert!(actions.len() >= 19, "too few executors: {actions:?}");
    actions
}

/// Action → the set of names of the catalog entries that list it.
fn by_action(entries: &[Entry], skip: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in entries.iter().filter(|e| Some(e.name.as_str()) != skip) {
        for action in &entry.actions {
            map.entry(action.clone())
                .or_default()
                .insert(entry.name.clone());
        }
    }
    map
}

/// The per-action table: action → (Azure roles, Graph/MDE permissions).
type ActionRows = BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>;

fn doc_actions() -> ActionRows {
    let doc = read(DOC);
    let mut rows = ActionRows::new();
    for cells in table(&doc, "### Roles per action") {
        assert_eq!(
            cells.len(),
            6,
            "{DOC}: a row of `Roles per action` has {cells:?}"
        );
        let action = cells[0].trim_matches('`').to_string();
        let previous = rows.insert(action.clone(), (names(&cells[2]), code_spans(&cells[4])));
        assert!(previous.is_none(), "{DOC}: two rows for {action}");
    }
    rows
}

#[test]
fn every_executor_has_its_roles_in_bicep_and_its_row_in_the_deploy_doc_and_they_agree() {
    let actions = executor_actions();
    let roles = catalog("containment-roles", "role");
    let permissions = catalog("app-permissions", "permission");
    let doc = doc_actions();
    let bicep_roles = by_action(&roles, Some(ALERT_ROLE));
    let bicep_permissions = by_action(&permissions, None);

    // Every catalog action is a real action with an executor (no typo grants nothing).
    for entry in roles.iter().chain(&permissions) {
        for action in &entry.actions {
            assert!(
                actions.contains(action),
                "{CATALOG}: {} names {action}, which has no executor",
                entry.name
            );
        }
    }
    // Security Admin: whenever any containment action is enabled.
    let alert_role = roles
        .iter()
        .find(|e| e.name == ALERT_ROLE)
        .unwrap_or_else(|| panic!("{CATALOG}: no {ALERT_ROLE}"));
    assert_eq!(
        alert_role.actions, actions,
        "{ALERT_ROLE} must be assigned for every containment action"
    );
    assert_eq!(alert_role.properties["scope"], "subscription");

    for action in &actions {
        let Some((doc_roles, doc_permissions)) = doc.get(action) else {
            panic!("{DOC}: `Roles per action` has no row for {action}");
        };
        let roles_in_bicep = bicep_roles.get(action).cloned().unwrap_or_default();
        let permissions_in_bicep = bicep_permissions.get(action).cloned().unwrap_or_default();
        assert!(
            !roles_in_bicep.is_empty() || !permissions_in_bicep.is_empty(),
            "{CATALOG}: {action} has neither a role nor an application permission"
        );
        assert_eq!(
            &roles_in_bicep, doc_roles,
            "{action}: the roles {CATALOG} grants differ from those {DOC} lists"
        );
        assert_eq!(
            &permissions_in_bicep, doc_permissions,
            "{action}: the application permissions of {CATALOG} differ from {DOC}'s"
        );
    }
    for action in doc.keys() {
        assert!(
            actions.contains(action),
            "{DOC}: a row for {action}, which has no executor"
        );
    }
}

#[test]
fn the_deploy_doc_lists_each_granted_role_with_its_built_in_id_and_each_permission_with_its_api() {
    let doc = read(DOC);
    let roles = catalog("containment-roles", "role");
    let documented: BTreeMap<String, (String, String, BTreeSet<String>)> =
        table(&doc, "### Built-in roles")
            .into_iter()
            .map(|cells| {
                (
                    cells[0].clone(),
                    (
                        cells[1].trim_matches('`').to_string(),
                        cells[2].clone(),
                        code_spans(&cells[3]),
                    ),
                )
            })
            .collect();
    let mut seen_ids = BTreeSet::new();
    for role in &roles {
        let id = &role.properties["id"];
        assert!(seen_ids.insert(id.clone()), "{CATALOG}: role id {id} twice");
        assert!(
            id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "{CATALOG}: {} has no GUID id: {id}",
            role.name
        );
        let Some((doc_id, doc_where, doc_actions)) = documented.get(&role.name) else {
            panic!(
                "{CATALOG} grants {}, which {DOC}'s `Built-in roles` does not list",
                role.name
            );
        };
        assert_eq!(doc_id, id, "{}: role definition id", role.name);
        assert_eq!(
            doc_where.contains("no-self condition"),
            role.properties["selfGuard"] == "true",
            "{}: {DOC} and {CATALOG} disagree on the no-self condition",
            role.name
        );
        if role.name != ALERT_ROLE {
            assert_eq!(
                doc_actions, &role.actions,
                "{}: actions in {DOC}",
                role.name
            );
        }
    }
    let granted: BTreeSet<&String> = roles.iter().map(|r| &r.name).collect();
    for name in documented.keys() {
        assert!(
            granted.contains(name),
            "{DOC} lists {name}, which {CATALOG} never grants"
        );
    }

    let permissions = catalog("app-permissions", "permission");
    let documented: BTreeMap<String, (String, BTreeSet<String>)> =
        table(&doc, "### Application permissions (admin consent)")
            .into_iter()
            .map(|cells| {
                (
                    cells[0].trim_matches('`').to_string(),
                    (cells[1].clone(), code_spans(&cells[2])),
                )
            })
            .collect();
    assert_eq!(
        documented.keys().collect::<BTreeSet<_>>(),
        permissions.iter().map(|p| &p.name).collect::<BTreeSet<_>>(),
        "{DOC}'s permission table and {CATALOG}'s app-permissions differ"
    );
    for permission in &permissions {
        let (api, actions) = &documented[&permission.name];
        assert_eq!(
            api, &permission.properties["api"],
            "{}: API",
            permission.name
        );
        assert_eq!(actions, &permission.actions, "{}: actions", permission.name);
    }
}

/// The quoted items of the array after `param NAME array = [` (or of its `@allowed([`).
fn param_array(text: &str, name: &str, allowed: bool) -> BTreeSet<String> {
    let lines: Vec<&str> = text.lines().collect();
    let declaration = lines
        .iter()
        .position(|line| line.starts_with(&format!("param {name} array")))
        .unwrap_or_else(|| panic!("no param {name} array"));
    let start = if allowed {
        lines[..declaration]
            .iter()
            .rposition(|line| line.trim() == "@allowed([")
            .unwrap_or_else(|| panic!("param {name} has no @allowed list"))
    } else {
        declaration
    };
    lines[start + 1..]
        .iter()
        .map(|line| line.trim())
        .take_while(|line| !line.starts_with(']'))
        .map(|line| line.trim_matches('\'').to_string())
        .collect()
}

/// Whether the policy runs `action` at all (a mode other than notify_only) for a High alert,
/// judged by the rules that name only an action.
fn enables(policy: &Policy, action: Action) -> bool {
    let rule = policy
        .automation
        .iter()
        .chain(builtin_rules().iter())
        .find(|rule| rule.action == Some(action) && rule.step.is_none())
        .map(|rule| rule.mode_for(Severity::High));
    rule.unwrap_or(policy.default_mode) != Mode::NotifyOnly
}

#[test]
fn enabled_actions_accepts_every_executor_and_defaults_to_what_the_default_policy_runs() {
    let main = read("infra/main.bicep");
    let actions = executor_actions();
    assert_eq!(
        param_array(&main, "enabledActions", true),
        actions,
        "infra/main.bicep: enabledActions' @allowed list must be the actions with an executor"
    );
    let policy = Policy::default();
    assert!(
        policy.automation.iter().all(|rule| rule.step.is_none()),
        "the default policy has step rules: judge enabledActions' default by step too"
    );
    let enabled: BTreeSet<String> = Action::ALL
        .iter()
        .filter(|action| actions.contains(action.as_str()) && enables(&policy, **action))
        .map(|action| action.as_str().to_string())
        .collect();
    assert_eq!(
        param_array(&main, "enabledActions", false),
        enabled,
        "infra/main.bicep: enabledActions' default must be the actions the default policy runs"
    );
    // The module receives the parameter, and its roles are only for enabled actions.
    let roles = read(CATALOG);
    assert!(main.contains("    enabledActions: enabledActions\n"));
    assert!(roles.contains(
        "var grantedRoles = filter(roleCatalog, role => !empty(intersection(role.actions, enabledActions)))"
    ));
    assert!(roles.contains("[for role in subscriptionRoles: {"));
    assert!(roles.contains("roles: resourceGroupRoles"));
}
