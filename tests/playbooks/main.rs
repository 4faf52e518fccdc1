//! Snapshots of the plan of every fixture under the default, strict and permissive policies.
//!
//! Review changes with `INSTA_UPDATE=always INSTA_FORCE_PASS=1 cargo test --test playbooks`
//! and `git diff tests/playbooks/snapshots`; CI runs with `INSTA_UPDATE=no`.

mod message_ids;
mod support;

fn snapshot_corpus(policy_name: &str) {
    let (_, policy) = support::policies()
        .into_iter()
        .find(|(name, _)| *name == policy_name)
        .expect("policy");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for (fixture, result) in support::plan_corpus(&policy) {
            let value = match result {
                Ok(reports) => serde_json::json!({ "events": reports }),
                Err(error) => serde_json::json!({ "error": error }),
            };
            insta::assert_json_snapshot!(format!("{policy_name}__{fixture}"), value);
        }
    });
}

#[test]
fn plans_under_the_default_policy() {
    snapshot_corpus("default");
}

#[test]
fn plans_under_the_strict_policy() {
    snapshot_corpus("strict");
}

#[test]
fn plans_under_the_permissive_policy() {
    snapshot_corpus("permissive");
}
