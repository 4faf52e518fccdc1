//! The task contract: `docs/task.schema.json` is what the types generate, and every task any
//! fixture plans (under every example policy) validates against it, reads back unchanged, and
//! is sent as exactly the text serde_json would write.
//!
//! Regenerate with `UPDATE_TASK_SCHEMA=1 cargo test --test playbooks schema`.

use std::path::PathBuf;

use defender_responder::domain::{task_json_schema, Task};

use super::support;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/task.schema.json")
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&task_json_schema())
        .expect("the generated schema compiles")
}

#[test]
fn the_committed_schema_is_the_one_the_types_generate() {
    let generated = serde_json::to_string_pretty(&task_json_schema()).expect("serialisable") + "\n";
    if std::env::var_os("UPDATE_TASK_SCHEMA").is_some() {
        std::fs::write(committed_path(), &generated).expect("docs/task.schema.json written");
        return;
    }
    let committed = std::fs::read_to_string(committed_path()).expect("docs/task.schema.json");
    assert!(
        committed == generated,
        "docs/task.schema.json differs from the types: regenerate it with \
         UPDATE_TASK_SCHEMA=1 cargo test --test playbooks schema"
    );
}

#[test]
fn every_planned_task_of_every_corpus_validates_and_reads_back_unchanged() {
    let validator = validator();
    let mut checked = 0;
    for (policy_name, policy) in support::policies() {
        for (corpus, fixture, reports) in support::plan_all_corpora(&policy) {
            for report in &reports {
                for task in &report.tasks {
                    let context = format!(
                        "{policy_name}/{corpus}/{fixture}: {} on {}",
                        task.action, task.target
                    );
                    // The bodies the store and the publisher send are written by the
                    // encoder: byte for byte serde_json's text of the task.
                    let body = defender_responder::encode::to_string(task).expect("encodable");
                    assert_eq!(
                        body,
                        serde_json::to_string(task).expect("serialisable"),
                        "{context}: the encoder's body differs from serde_json's"
                    );
                    let json = serde_json::to_value(task).expect("serialisable");
                    let errors: Vec<String> = validator
                        .iter_errors(&json)
                        .map(|error| format!("{} at {}", error, error.instance_path()))
                        .collect();
                    assert!(errors.is_empty(), "{context}: {errors:#?}");
                    let back: Task = serde_json::from_value(json)
                        .unwrap_or_else(|err| panic!("{context}: does not read back: {err}"));
                    assert_eq!(&back, task, "{context}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} tasks checked");
}

#[test]
fn a_message_naming_a_malformed_target_is_refused_by_schema_and_reader() {
    let (_, policy) = support::policies().remove(0);
    let corpus = support::plan_corpus(&policy);
    let firewall = corpus
        .iter()
        .flat_map(|(_, result)| result.iter().flatten())
        .flat_map(|report| &report.tasks)
        .find(|task| task.action.as_str() == "enable_key_vault_firewall")
        .expect("some fixture firewalls a vault");
    let validator = validator();
    let good = serde_json::to_value(firewall).expect("serialisable");
    assert!(validator.is_valid(&good));
    for (pointer, bad) in [
        (
            "/parameters/vault",
            serde_json::json!("kv-contoso-payments"),
        ),
        (
            "/parameters/vault",
            serde_json::json!(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
            ),
        ),
        (
            "/parameters/block_addresses",
            serde_json::json!(["00.00.00.00"]),
        ),
        ("/schema_version", serde_json::json!(1)),
        ("/queue", serde_json::json!("rotation")),
    ] {
        let mut tampered = good.clone();
        *tampered.pointer_mut(pointer).expect(pointer) = bad.clone();
        assert!(
            serde_json::from_value::<Task>(tampered.clone()).is_err(),
            "{pointer} = {bad} was read"
        );
        if pointer != "/queue" {
            assert!(
                !validator.is_valid(&tampered),
                "{pointer} = {bad} validated"
            );
        }
    }
}
