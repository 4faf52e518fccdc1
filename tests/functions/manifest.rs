//! The Functions app files agree with the code: function folders, bindings, host.json, settings.

use std::collections::BTreeSet;

use defender_responder::config::{self, SETTINGS};
use defender_responder::config::workers::SWEEP_SCHEDULE;
use defender_responder::domain::Queue;
use defender_responder::functions::{defender_alert, workers};
use serde_json::Value;

use crate::helpers::root;

fn json_file(relative: &str) -> Value {
    let text = std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn every_function_folder_has_a_route_and_the_trigger_name_the_code_reads() {
    let folders: BTreeSet<String> = std::fs::read_dir(root())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("function.json").is_file())
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        folders,
        BTreeSet::from(
            [
                defender_alert::FUNCTION_NAME,
                workers::NOTIFICATION_WORKER,
                workers::ISOLATION_WORKER,
                workers::ROTATION_WORKER,
                workers::DECISION,
                workers::DECISION_SWEEPER,
            ]
            .map(str::to_string)
        )
    );
    assert_eq!(
        defender_alert::ROUTE,
        format!("/{}", defender_alert::FUNCTION_NAME)
    );

    let function = json_file("DefenderAlert/function.json");
    let bindings = function["bindings"].as_array().unwrap();
    let trigger = bindings.iter().find(|b| b["direction"] == "in").unwrap();
    assert_eq!(trigger["type"], "eventGridTrigger");
    assert_eq!(trigger["name"], defender_alert::TRIGGER);
}

#[test]
fn the_workers_folders_trigger_on_the_queues_the_settings_name() {
    for (queue, setting) in [
        (Queue::Notification, config::QUEUE_NOTIFICATION),
        (Queue::Isolation, config::QUEUE_ISOLATION),
        (Queue::Rotation, config::QUEUE_ROTATION),
    ] {
        let name = workers::worker_function(queue);
        let function = json_file(&format!("{name}/function.json"));
        let trigger = &function["bindings"][0];
        assert_eq!(trigger["type"], "serviceBusTrigger", "{name}");
        assert_eq!(trigger["name"], workers::MESSAGE_BINDING, "{name}");
        assert_eq!(trigger["connection"], "ServiceBusConnection", "{name}");
        assert_eq!(trigger["queueName"], format!("%{setting}%"), "{name}");
        assert!(SETTINGS.iter().any(|s| s.name == setting));
    }
    let decision = json_file(&format!("{}/function.json", workers::DECISION));
    assert_eq!(decision["bindings"][0]["type"], "httpTrigger");
    assert_eq!(decision["bindings"][0]["name"], "req");
    assert_eq!(decision["bindings"][0]["route"], "decide");
    assert_eq!(
        defender_responder::approval::endpoint::ROUTE,
        "/api/decide",
        "the host serves the Decision function under /api/<route>"
    );
    assert_eq!(decision["bindings"][1]["type"], "http");
    assert_eq!(decision["bindings"][1]["name"], "res");
    let sweeper = json_file(&format!("{}/function.json", workers::DECISION_SWEEPER));
    assert_eq!(sweeper["bindings"][0]["type"], "timerTrigger");
    assert_eq!(sweeper["bindings"][0]["schedule"], format!("%{SWEEP_SCHEDULE}%"));
    let host = json_file("host.json");
    assert_eq!(host["extensions"]["serviceBus"]["autoCompleteMessages"], true);
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
    for setting in SETTINGS
        .iter()
        .chain(defender_responder::config::LIMIT_SETTINGS)
    {
        // The host sets the port itself.
        if setting.name == defender_responder::config::PORT {
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
