//! `remove_runbook` against the simulator's Automation account.

use defender_responder::domain::ids::AzureResourceId;
use defender_responder::domain::parameters::{Activity, Parameters, ResourceTarget, TimeWindow};
use defender_responder::executors::isolation::runbook::RemoveRunbook;
use defender_responder::executors::{Executor, RefusalReason};

use crate::helpers::*;

const ACCOUNT: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-automation/providers/Microsoft.Automation/automationAccounts/aa-contoso-ops";

fn remove(resource: &str) -> defender_responder::domain::task::Task {
    task(Parameters::RemoveRunbook {
        target: ResourceTarget::Resource {
            resource: AzureResourceId::parse(resource).unwrap(),
        },
        created_by: None,
    })
}

#[tokio::test]
async fn saves_the_content_removes_webhooks_and_the_runbook_and_undo_recreates_it() {
    let world = world().await;
    let runbook = format!("{ACCOUNT}/runbooks/Invoke-Persistence");
    let webhook = format!("{ACCOUNT}/webhooks/wh-persistence");
    let task = remove(&runbook);
    let (preview, applied, _) = run(&RemoveRunbook, &task, &world).await;
    let saved = &preview.prior_state["runbooks"][0];
    assert!(
        saved["content"]
            .as_str()
            .unwrap()
            .contains("New-AzRoleAssignment"),
        "content kept as evidence"
    );
    let methods: Vec<&str> = preview
        .change
        .requests
        .iter()
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(
        methods,
        ["POST", "DELETE", "DELETE"],
        "stop the job, delete the webhook, then the runbook"
    );
    assert!(world.sim.resource(&runbook).is_none());
    assert!(world.sim.resource(&webhook).is_none());

    let undone = RemoveRunbook
        .undo(&task, &preview, &applied, &world.ctx)
        .await
        .unwrap();
    let restored = resource(&world.sim, &runbook);
    assert_eq!(restored["properties"]["runbookType"], "PowerShell");
    assert_eq!(restored["properties"]["state"], "Published");
    let content = world
        .ctx
        .clients
        .arm
        .get_text(&format!("{runbook}/content"), "2023-11-01")
        .await
        .unwrap();
    assert_eq!(
        content,
        saved["content"].as_str().unwrap(),
        "the published content is the saved one"
    );
    assert!(
        undone
            .not_restored
            .iter()
            .any(|n| n.contains("wh-persistence")),
        "{:?}",
        undone.not_restored
    );
}

#[tokio::test]
async fn an_account_selects_runbooks_changed_in_the_alert_window_or_is_refused() {
    let world = world().await;
    let err = RemoveRunbook
        .preview(&remove(ACCOUNT), &world.ctx)
        .await
        .unwrap_err();
    assert_eq!(refusal_reason(err), RefusalReason::FuzzyMatch);
    let task = remove(ACCOUNT).activity(Activity {
        window: TimeWindow::new(Some("2026-11-30T22:00:00Z".into()), None),
        ..Activity::default()
    });
    let preview = RemoveRunbook.preview(&task, &world.ctx).await.unwrap();
    assert_eq!(preview.prior_state["runbooks"].as_array().unwrap().len(), 1);
    let later = remove(ACCOUNT).activity(Activity {
        window: TimeWindow::new(Some("2026-12-01T00:00:00Z".into()), None),
        ..Activity::default()
    });
    assert!(RemoveRunbook
        .preview(&later, &world.ctx)
        .await
        .unwrap()
        .change
        .is_noop());
}
