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
        config::workers::JOURNAL_CONTAINER,
        config::workers::SWEEP_SCHEDULE,
        config::workers::DECISION_TIMEOUT_HOURS,
        defender_responder::approval::DECISION_URL,
        defender_responder::approval::IDENTITY,
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

/// The lines of the object that opens on the first line starting with `opening` (e.g.
/// `siteConfig: {`), up to its closing brace.
fn object<'a>(text: &'a str, opening: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_start().starts_with(opening))
        .unwrap_or_else(|| panic!("no `{opening}` object"));
    let mut depth = 0i32;
    for (offset, line) in lines[start..].iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        depth += code.matches(['{', '[']).count() as i32;
        depth -= code.matches(['}', ']']).count() as i32;
        if depth == 0 {
            return lines[start..=start + offset].to_vec();
        }
    }
    panic!("`{opening}` is never closed")
}

/// The expression after `key:` in the given lines.
fn property<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| {
        line.trim()
            .strip_prefix(&format!("{key}:"))
            .map(|value| value.trim())
    })
}

/// The `value:` of the `{ name: 'NAME' ... value: ... }` entry in the given lines.
fn setting_value<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    let at = lines
        .iter()
        .position(|line| line.trim() == format!("name: '{name}'"))?;
    property(&lines[at..], "value")
}

/// The decorators (`@minValue(40)`, ...) and the default of `param NAME`.
fn param<'a>(text: &'a str, name: &str) -> (Vec<&'a str>, Option<&'a str>) {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with(&format!("param {name} ")))
        .unwrap_or_else(|| panic!("no param {name}"));
    let decorators = lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('@'))
        .copied()
        .collect();
    let default = lines[at].split_once(" = ").map(|(_, value)| value.trim());
    (decorators, default)
}

/// The value `infra/main.bicepparam` gives a parameter, when it sets one.
fn bicepparam(name: &str) -> Option<String> {
    read("infra/main.bicepparam").lines().find_map(|line| {
        line.strip_prefix(&format!("param {name} = "))
            .map(|value| value.trim().to_string())
    })
}

fn decorator_number(decorators: &[&str], decorator: &str) -> Option<i64> {
    decorators.iter().find_map(|line| {
        line.strip_prefix(&format!("@{decorator}("))?
            .strip_suffix(')')?
            .parse()
            .ok()
    })
}

/// Seconds in an ISO 8601 duration of days, hours, minutes and seconds (`P1D`, `PT1H30M`).
fn iso_duration_seconds(duration: &str) -> u64 {
    let duration = duration.trim_matches('\'');
    let rest = duration
        .strip_prefix('P')
        .unwrap_or_else(|| panic!("not an ISO 8601 duration: {duration}"));
    let (mut seconds, mut number, mut in_time) = (0u64, String::new(), false);
    for c in rest.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' => number.push(c),
            unit => {
                let value: u64 = number.parse().unwrap_or_else(|_| panic!("bad {duration}"));
                number.clear();
                seconds += value
                    * match (unit, in_time) {
                        ('D', false) => 86_400,
                        ('H', true) => 3_600,
                        ('M', true) => 60,
                        ('S', true) => 1,
                        _ => panic!("unsupported unit {unit} in {duration}"),
                    };
            }
        }
    }
    seconds
}

#[test]
fn flex_consumption_is_never_sent_the_site_config_it_rejects() {
    // Flex Consumption fails the deployment with error 51021 when these are set.
    let text = read("infra/modules/function_app.bicep");
    let site_config = object(&text, "siteConfig: {");
    for (key, premium_value) in [
        ("ftpsState", "'Disabled'"),
        ("http20Enabled", "true"),
        ("remoteDebuggingEnabled", "false"),
    ] {
        let value = property(&site_config, key)
            .unwrap_or_else(|| panic!("siteConfig.{key} is missing (Elastic Premium needs it)"));
        assert_eq!(
            value,
            format!("isFlex ? null : {premium_value}"),
            "siteConfig.{key} must be null on Flex Consumption and {premium_value} on Elastic Premium"
        );
    }
    assert!(text.contains("var isFlex = planSku == 'FC1'"));
}

#[test]
fn elastic_premium_runs_from_a_package_url_read_with_the_managed_identity() {
    let text = read("infra/modules/function_app.bicep");
    let premium = object(&text, "var premiumOnlyAppSettings = [");
    let package = setting_value(&premium, "WEBSITE_RUN_FROM_PACKAGE")
        .expect("Elastic Premium sets WEBSITE_RUN_FROM_PACKAGE");
    assert_eq!(package, "premiumPackageUrl", "a package URL, not '1'");
    assert!(
        text.contains(
            "var premiumPackageUrl = '${blobEndpoint}${deploymentContainerName}/defender-responder.zip'"
        ),
        "the package URL is a blob in the package container"
    );
    assert_eq!(
        setting_value(&premium, "WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID"),
        Some("'SystemAssigned'"),
        "the blob is read with the app's system identity, no SAS"
    );
    // No Azure Files content share: it would need an account key, and keys are off.
    for share in [
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    ] {
        assert!(!text.contains(share), "function_app.bicep sets {share}");
    }
    // The container exists on every plan, and the identity may read it.
    let main = read("infra/main.bicep");
    assert_eq!(
        property(
            &object(&main, "module storage "),
            "createDeploymentContainer"
        ),
        Some("true")
    );
    let roles = read("infra/modules/role_assignments.bicep");
    let owner = object(&roles, "resource hostBlobOwner ");
    assert_eq!(property(&owner, "scope"), Some("storage"));
    assert!(owner
        .iter()
        .any(|line| line.contains("roles.storageBlobDataOwner)")));
}

#[test]
fn duplicate_detection_outlasts_event_grid_retries() {
    let main = read("infra/main.bicep");
    let (retry_decorators, retry_default) = param(&main, "eventTimeToLiveInMinutes");
    let longest_retry_minutes = decorator_number(&retry_decorators, "maxValue")
        .expect("eventTimeToLiveInMinutes has a @maxValue");
    assert!(retry_default.unwrap().parse::<i64>().unwrap() <= longest_retry_minutes);
    let (_, window) = param(&main, "duplicateDetectionWindow");
    let mut windows = vec![window
        .expect("duplicateDetectionWindow has a default")
        .to_string()];
    windows.extend(bicepparam("duplicateDetectionWindow"));
    for window in windows {
        assert!(
            iso_duration_seconds(&window) >= longest_retry_minutes as u64 * 60,
            "duplicate detection window {window} is shorter than Event Grid's {longest_retry_minutes} minutes of retries"
        );
    }
    assert_eq!(
        property(
            &object(&main, "module serviceBus "),
            "duplicateDetectionHistoryTimeWindow"
        ),
        Some("duplicateDetectionWindow")
    );
    let service_bus = read("infra/modules/service_bus.bicep");
    assert!(service_bus.contains("requiresDuplicateDetection: true"));
    assert_eq!(iso_duration_seconds("PT1H30M"), 5_400);
    assert_eq!(iso_duration_seconds("P1DT1S"), 86_401);
}

#[test]
fn flex_maximum_instance_count_is_never_below_the_platform_minimum_of_40() {
    for file in ["infra/main.bicep", "infra/modules/function_app.bicep"] {
        let text = read(file);
        let (decorators, default) = param(&text, "flexMaximumInstanceCount");
        let minimum = decorator_number(&decorators, "minValue")
            .unwrap_or_else(|| panic!("{file}: flexMaximumInstanceCount has no @minValue"));
        assert!(minimum >= 40, "{file}: @minValue({minimum}) is below 40");
        if let Some(default) = default {
            assert!(
                default.parse::<i64>().unwrap() >= 40,
                "{file}: default {default}"
            );
        }
    }
    if let Some(value) = bicepparam("flexMaximumInstanceCount") {
        assert!(
            value.parse::<i64>().unwrap() >= 40,
            "main.bicepparam: {value}"
        );
    }
}

#[test]
fn every_setting_a_function_folder_names_is_set_by_bicep() {
    let bicep = bicep_app_settings();
    for function in defender_responder::functions::FUNCTIONS {
        let text = read(&format!("{}/function.json", function.name));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for binding in json["bindings"].as_array().unwrap() {
            for value in binding.as_object().unwrap().values() {
                let Some(text) = value.as_str() else { continue };
                if let Some(setting) = text.strip_prefix('%').and_then(|t| t.strip_suffix('%')) {
                    assert!(
                        bicep.contains(setting),
                        "{}/function.json names %{setting}%, which Bicep does not set",
                        function.name
                    );
                }
            }
        }
    }
}

#[test]
fn the_workers_may_receive_from_each_queue_and_write_only_the_journal_container() {
    let roles = read("infra/modules/role_assignments.bicep");
    // Azure Service Bus Data Receiver, per queue (the same loop as the sender role).
    assert!(roles.contains("serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'"));
    let receiver = object(&roles, "resource queueReceiver").join("\n");
    assert!(
        receiver.contains("for (name, i) in queueNames"),
        "{receiver}"
    );
    assert!(receiver.contains("scope: queues[i]"), "{receiver}");
    let journal = object(&roles, "resource journalWriter").join("\n");
    assert!(journal.contains("scope: journalContainer"), "{journal}");
    assert!(
        journal.contains("roles.storageBlobDataContributor"),
        "{journal}"
    );
    let storage = read("infra/modules/storage.bicep");
    assert!(storage.contains("param journalContainerName string = 'journal'"));
    assert_eq!(config::workers::DEFAULT_CONTAINER, "journal");
}

#[test]
fn decisions_are_behind_app_service_authentication_and_dry_run_is_the_default() {
    let app = read("infra/modules/function_app.bicep");
    let auth = object(&app, "resource decisionAuth").join("\n");
    assert!(auth.contains("name: 'authsettingsV2'"), "{auth}");
    assert!(auth.contains("requireAuthentication: true"), "{auth}");
    assert!(auth.contains("'/runtime/webhooks/eventgrid'"), "{auth}");
    assert!(
        !auth.contains("/api/decide"),
        "the decision route must not be excluded: {auth}"
    );
    let main = read("infra/main.bicep");
    assert!(main.contains("param dryRun bool = true"));
    assert!(main.contains("param sweepSchedule string = '0 */5 * * * *'"));
    let default = config::workers::SETTINGS
        .iter()
        .find(|s| s.name == config::workers::SWEEP_SCHEDULE)
        .unwrap()
        .default;
    assert_eq!(default, "0 */5 * * * *");
}
