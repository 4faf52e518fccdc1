//! Drift guard: the Bicep templates use the code's queue names, function name and app settings.

use std::collections::BTreeSet;

use defender_responder::config::{self, SETTINGS};
use defender_responder::domain::Queue;
use defender_responder::functions::defender_alert::FUNCTION_NAME;

use crate::helpers::root;

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The lines between `// BEGIN marker` and `// END marker`.
fn block<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let begin = text
        .lines()
        .position(|line| line.trim_start().starts_with(&format!("// BEGIN {marker}")))
        .unwrap_or_else(|| panic!("no BEGIN {marker} block"));
    let lines: Vec<&str> = text.lines().skip(begin + 1).collect();
    let end = lines
        .iter()
        .position(|line| line.trim_start().starts_with(&format!("// END {marker}")))
        .unwrap_or_else(|| panic!("no END {marker} block"));
    lines[..end].to_vec()
}

/// Every `'literal'` of the given lines, in order.
fn quoted(lines: &[&str], after: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.trim().strip_prefix(after))
        .filter_map(|rest| {
            rest.trim()
                .strip_prefix('\'')?
                .split('\'')
                .next()
                .map(str::to_string)
        })
        .collect()
}

fn bicep_app_settings() -> BTreeSet<String> {
    let text = read("infra/modules/function_app.bicep");
    let mut names: BTreeSet<String> = quoted(&block(&text, "app-settings:responder"), "name:")
        .into_iter()
        .collect();
    // The optional policy-file setting is added only when a path is given.
    for line in text
        .lines()
        .filter(|line| line.trim().starts_with("name: 'RESPONDER_"))
    {
        names.extend(quoted(&[line], "name:"));
    }
    names
}

#[test]
fn bicep_queue_names_are_the_codes_queues_in_order() {
    let text = read("infra/modules/service_bus.bicep");
    let names: Vec<String> = block(&text, "queue-names")
        .iter()
        .map(|line| line.trim())
        .filter(|line| line.starts_with('\''))
        .map(|line| line.trim_matches('\'').to_string())
        .collect();
    let code: Vec<String> = Queue::ALL.iter().map(|q| q.as_str().to_string()).collect();
    assert_eq!(names, code);
}

#[test]
fn bicep_subscribes_the_function_the_code_serves() {
    let main = read("infra/main.bicep");
    assert!(
        main.contains(&format!(
            "var defenderAlertFunctionName = '{FUNCTION_NAME}'"
        )),
        "infra/main.bicep must name the {FUNCTION_NAME} function"
    );
    assert!(root().join(FUNCTION_NAME).join("function.json").is_file());
}

#[test]
fn every_app_setting_bicep_sets_is_one_the_code_reads() {
    let code: BTreeSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
    let bicep = bicep_app_settings();
    assert!(bicep.len() >= 10, "too few settings parsed: {bicep:?}");
    for name in &bicep {
        assert!(
            name == "RUST_LOG" || code.contains(name.as_str()),
            "Bicep sets {name}, which the code never reads"
        );
    }
}

#[test]
fn bicep_sets_every_setting_a_deployment_needs() {
    let bicep = bicep_app_settings();
    for name in [
        config::STORE_PATH,
        config::DRY_RUN,
        config::TENANT_IDS,
        config::TRUSTED_IP_RANGES,
        config::NOTIFY_RECIPIENTS,
        config::OWNER_TAG,
        config::SELF_OBJECT_IDS,
        config::QUEUE_NOTIFICATION,
        config::QUEUE_ISOLATION,
        config::QUEUE_ROTATION,
        "ServiceBusConnection__fullyQualifiedNamespace",
        "RESPONDER_SB_SESSIONS",
        "RESPONDER_SB_MESSAGE_TTL_SECONDS",
        "RESPONDER_POLICY_FILE",
    ] {
        assert!(
            bicep.contains(name),
            "infra/modules/function_app.bicep does not set {name}"
        );
        assert!(
            SETTINGS.iter().any(|s| s.name == name),
            "the code does not read {name}"
        );
    }
}
