//! The Functions app files agree with the code: function folders, bindings, host.json, settings.

use std::collections::BTreeSet;

use defender_responder::config::{PLATFORM_SETTINGS, SETTINGS};
use defender_responder::functions::{defender_alert, Trigger, FUNCTIONS, SERVICE_BUS_CONNECTION};
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

#[test]
fn every_function_json_declares_the_trigger_binding_and_queue_of_its_entry() {
    for function in FUNCTIONS {
        let path = format!("{}/function.json", function.name);
        let json = json_file(&path);
        let bindings = json["bindings"].as_array().unwrap();
        let triggers: Vec<&Value> = bindings
            .iter()
            .filter(|b| {
                b["direction"] == "in" && b["type"].as_str().unwrap_or("").ends_with("Trigger")
            })
            .collect();
        assert_eq!(triggers.len(), 1, "{path}: exactly one trigger");
        let trigger = triggers[0];
        assert_eq!(trigger["type"], function.trigger.binding_type(), "{path}");
        assert_eq!(trigger["name"], function.binding, "{path}");
        match function.trigger {
            Trigger::ServiceBus => {
                let setting = function
                    .queue_setting
                    .expect("a Service Bus trigger names its queue setting");
                assert_eq!(trigger["queueName"], format!("%{setting}%"), "{path}");
                assert_eq!(trigger["connection"], SERVICE_BUS_CONNECTION, "{path}");
                assert!(
                    SETTINGS.iter().any(|s| s.name == setting),
                    "{setting} is not a setting the code reads"
                );
            }
            Trigger::Http => {
                assert!(function.queue_setting.is_none(), "{path}");
                assert!(
                    bindings.iter().any(|b| b["type"] == "http"
                        && b["direction"] == "out"
                        && b["name"] == HTTP_OUTPUT),
                    "{path}: an http output binding named {HTTP_OUTPUT}"
                );
            }
            Trigger::EventGrid => assert!(function.queue_setting.is_none(), "{path}"),
        }
    }
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
