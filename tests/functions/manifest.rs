//! The Functions app files agree with the code: function folders, bindings, host.json, settings.

use std::collections::BTreeSet;

use defender_responder::config::{PLATFORM_SETTINGS, SETTINGS};
use defender_responder::functions::{
    defender_alert, Function, Trigger, FUNCTIONS, SERVICE_BUS_CONNECTION,
};
use defender_responder::invoke::HTTP_OUTPUT;
use serde_json::Value;

use crate::helpers::root;

fn json_file(relative: &str) -> Value {
    let text = std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn every_function_folder_has_an_entry_in_the_list_and_every_entry_a_folder() {
    let folders: BTreeSet<String> = std::fs::read_dir(root())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("function.json").is_file())
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .collect();
    let listed: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(
        folders, listed,
        "function folders and functions::FUNCTIONS differ"
    );
    assert_eq!(
        defender_alert::ROUTE,
        format!("/{}", defender_alert::FUNCTION_NAME)
    );
}

/// What is wrong with `json` as the function.json of `function`, if anything.
fn function_json_problems(function: &Function, json: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let bindings = json["bindings"].as_array().cloned().unwrap_or_default();
    let triggers: Vec<&Value> = bindings
        .iter()
        .filter(|b| b["direction"] == "in" && b["type"].as_str().unwrap_or("").ends_with("Trigger"))
        .collect();
    let [trigger] = triggers.as_slice() else {
        return vec![format!("{} triggers, expected exactly one", triggers.len())];
    };
    if trigger["type"] != function.trigger.binding_type() {
        problems.push(format!(
            "trigger type {} is not {}",
            trigger["type"],
            function.trigger.binding_type()
        ));
    }
    if trigger["name"] != function.binding {
        problems.push(format!(
            "trigger name {} is not {}",
            trigger["name"], function.binding
        ));
    }
    match (function.trigger, function.queue_setting) {
        (Trigger::ServiceBus, Some(setting)) => {
            if trigger["queueName"] != format!("%{setting}%") {
                problems.push(format!(
                    "queueName {} is not %{setting}%",
                    trigger["queueName"]
                ));
            }
            if trigger["connection"] != SERVICE_BUS_CONNECTION {
                problems.push(format!(
                    "connection {} is not {SERVICE_BUS_CONNECTION}",
                    trigger["connection"]
                ));
            }
            if !SETTINGS.iter().any(|s| s.name == setting) {
                problems.push(format!("{setting} is not a setting the code reads"));
            }
        }
        (Trigger::ServiceBus, None) => {
            problems.push("a Service Bus trigger names no queue setting".into())
        }
        (_, Some(setting)) => problems.push(format!(
            "only Service Bus triggers have a queue setting ({setting})"
        )),
        (Trigger::Http, None) => {
            let answered = bindings.iter().any(|b| {
                b["type"] == "http" && b["direction"] == "out" && b["name"] == HTTP_OUTPUT
            });
            if !answered {
                problems.push(format!("no http output binding named {HTTP_OUTPUT}"));
            }
        }
        (Trigger::Timer, None) => {
            let schedule = trigger["schedule"].as_str().unwrap_or("");
            let setting = schedule.trim_matches('%');
            if !schedule.starts_with('%') || !SETTINGS.iter().any(|s| s.name == setting) {
                problems.push(format!(
                    "schedule {schedule:?} is not %SETTING% of a setting the code reads"
                ));
            }
        }
        (Trigger::EventGrid, None) => {}
    }
    problems
}

#[test]
fn every_function_json_declares_the_trigger_binding_and_queue_of_its_entry() {
    for function in FUNCTIONS {
        let path = format!("{}/function.json", function.name);
        let problems = function_json_problems(function, &json_file(&path));
        assert!(problems.is_empty(), "{path}: {problems:?}");
    }
}

/// The checks a worker's folder will meet, on the function.json shapes of functions-host §3.
#[test]
fn the_function_json_check_covers_service_bus_and_http_triggers() {
    fn no_route() -> axum::routing::MethodRouter<defender_responder::state::AppState> {
        axum::routing::post(|| async { "" })
    }
    let worker = Function {
        name: "NotificationWorker",
        trigger: Trigger::ServiceBus,
        binding: "task",
        queue_setting: Some("RESPONDER_QUEUE_NOTIFICATION"),
        handler: no_route,
    };
    let good = serde_json::json!({"bindings": [{"type": "serviceBusTrigger", "direction": "in", "name": "task",
        "queueName": "%RESPONDER_QUEUE_NOTIFICATION%", "connection": "ServiceBusConnection"}]});
    assert!(function_json_problems(&worker, &good).is_empty());
    let literal_queue = serde_json::json!({"bindings": [{"type": "serviceBusTrigger", "direction": "in", "name": "task",
        "queueName": "notification", "connection": "ServiceBusConnection"}]});
    assert_eq!(function_json_problems(&worker, &literal_queue).len(), 1);
    let other_connection = serde_json::json!({"bindings": [{"type": "serviceBusTrigger", "direction": "in", "name": "msg",
        "queueName": "%RESPONDER_QUEUE_NOTIFICATION%", "connection": "Other"}]});
    assert_eq!(function_json_problems(&worker, &other_connection).len(), 2);

    let decision = Function {
        name: "Decision",
        trigger: Trigger::Http,
        binding: "req",
        queue_setting: None,
        handler: no_route,
    };
    let good = serde_json::json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req", "methods": ["get", "post"]},
        {"type": "http", "direction": "out", "name": "res"}]});
    assert!(function_json_problems(&decision, &good).is_empty());
    let unanswered = serde_json::json!({"bindings": [
        {"type": "httpTrigger", "direction": "in", "name": "req"}]});
    assert_eq!(function_json_problems(&decision, &unanswered).len(), 1);
}

#[test]
fn the_decision_function_is_the_decide_route_and_service_bus_settles_from_the_reply() {
    let decision = json_file("Decision/function.json");
    assert_eq!(decision["bindings"][0]["route"], "decide");
    assert_eq!(decision["bindings"][0]["authLevel"], "anonymous");
    assert_eq!(
        defender_responder::approval::endpoint::ROUTE,
        "/api/decide",
        "the host serves the Decision function under /api/<route>"
    );
    let host = json_file("host.json");
    assert_eq!(
        host["extensions"]["serviceBus"]["autoCompleteMessages"],
        true
    );
}

#[test]
fn host_json_starts_the_release_binary_with_the_bundle_range() {
    let host = json_file("host.json");
    assert_eq!(host["version"], "2.0");
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    let path = host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .unwrap();
    assert_eq!(path, format!("target/release/{}", env!("CARGO_PKG_NAME")));
    assert_eq!(
        host["customHandler"]["description"]["arguments"][0],
        "serve"
    );
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], false);
}

#[test]
fn local_settings_sample_lists_every_setting_the_code_reads() {
    let sample = json_file("local.settings.sample.json");
    let values = sample["Values"].as_object().unwrap();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    for setting in SETTINGS {
        // The platform sets these itself.
        if PLATFORM_SETTINGS.contains(&setting.name) {
            continue;
        }
        assert!(
            values.contains_key(setting.name),
            "local.settings.sample.json lacks {}",
            setting.name
        );
    }
    for (name, value) in values {
        let text = value.as_str().unwrap_or_default().to_ascii_lowercase();
        assert!(
            !text.contains("sharedaccesskey=") || text.contains("sas_key_value"),
            "{name} holds a secret"
        );
    }
}

#[test]
fn local_settings_json_is_ignored_by_git() {
    let ignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignore
        .lines()
        .any(|line| line.trim() == "local.settings.json"));
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for setting in SETTINGS {
        assert!(
            readme.contains(&format!("| `{}` |", setting.name)),
            "README lacks {}",
            setting.name
        );
    }
}
