//! The desk's rules: single use, bound to the change, expiring, and the approver's identity.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::domain::{Action, AlertRef, MessageId, Task, TaskStatus};
use crate::journal::SqliteJournal;

const KEY_TEXT: &str = "a-test-key-that-is-long-enough-0123456789";

fn settings(identity: ApproverIdentity) -> ApprovalSettings {
    ApprovalSettings {
        key: ApprovalKey::parse(KEY_TEXT).unwrap(),
        decision_url: Url::parse("https://responder.example/api/decide").unwrap(),
        ttl: DEFAULT_TTL,
        identity,
        approvers: vec!["SecLead@contoso.com".into()],
    }
}

async fn pending(dir: &tempfile::TempDir, identity: ApproverIdentity) -> (DecisionDesk, MessageId) {
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("j.sqlite3")).unwrap(),
    ));
    let mut task = Task::example(
        &AlertRef::sample("sys-approve"),
        Action::EnableKeyVaultFirewall,
        &["KV-2a"],
        "kv",
        "the vault was read from a new address",
    );
    task.status = TaskStatus::PendingApproval;
    task.recipients = vec!["owner@contoso.com".into()];
    journal.receive(&task, "w").await.unwrap();
    journal
        .await_approval(
            &task.message_id,
            json!({"method": "PATCH", "body": {"defaultAction": "Deny"}}),
            "w",
        )
        .await
        .unwrap();
    (
        DecisionDesk::new(journal, settings(identity)),
        task.message_id,
    )
}

fn params(url: &Url) -> LinkParams {
    let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    LinkParams {
        m: pairs.get("m").cloned(),
        d: pairs.get("d").cloned(),
        h: pairs.get("h").cloned(),
        exp: pairs.get("exp").cloned(),
        sig: pairs.get("sig").cloned(),
    }
}

async fn links(
    desk: &DecisionDesk,
    id: &MessageId,
    now: OffsetDateTime,
) -> (LinkParams, LinkParams) {
    let entry = desk.journal().get(id).await.unwrap().unwrap();
    let links = desk.links(&entry, now).unwrap();
    assert_eq!(links[0].0, Verdict::Approve);
    (params(&links[0].1), params(&links[1].1))
}

#[tokio::test]
async fn a_link_decides_once_and_a_second_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (desk, id) = pending(&dir, ApproverIdentity::Link).await;
    let now = OffsetDateTime::now_utc();
    let (approve, reject) = links(&desk, &id, now).await;
    let view = desk.view(&approve, None, now).await.unwrap();
    assert_eq!(view.offers.len(), 2, "an approve link also offers reject");
    assert_eq!(
        desk.view(&reject, None, now).await.unwrap().offers.len(),
        1,
        "a reject link never offers approve"
    );
    // Viewing decides nothing.
    assert_eq!(
        desk.journal().get(&id).await.unwrap().unwrap().state,
        TaskState::PendingApproval
    );

    let entry = desk.decide(&approve, None, now).await.unwrap();
    assert_eq!(entry.state, TaskState::Approved);
    assert_eq!(entry.decision.unwrap().by, "link");
    let again = desk.decide(&approve, None, now).await.unwrap_err();
    assert!(matches!(again, Refusal::NotPending(_)), "{again}");
    assert!(
        again
            .to_string()
            .contains("already decided: approve by link"),
        "{again}"
    );
    let other = desk.decide(&reject, None, now).await.unwrap_err();
    assert_eq!(other.status(), axum::http::StatusCode::CONFLICT);
}

#[tokio::test]
async fn expired_altered_and_outdated_links_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (desk, id) = pending(&dir, ApproverIdentity::Link).await;
    let now = OffsetDateTime::now_utc();
    let (approve, _) = links(&desk, &id, now).await;

    let late = now + DEFAULT_TTL + time::Duration::seconds(1);
    let err = desk.decide(&approve, None, late).await.unwrap_err();
    assert!(matches!(err, Refusal::Link(LinkError::Expired(_))), "{err}");
    assert_eq!(err.status(), axum::http::StatusCode::GONE);

    let mut altered = params(
        &desk
            .links(&desk.journal().get(&id).await.unwrap().unwrap(), now)
            .unwrap()[1]
            .1,
    );
    altered.d = Some("approve".into());
    let err = desk.decide(&altered, None, now).await.unwrap_err();
    assert!(
        matches!(err, Refusal::Link(LinkError::BadSignature)),
        "{err}"
    );

    // The change is recomputed (the task is re-previewed) after the link was sent.
    let store = desk.journal().store().clone();
    let (mut entry, version) = store.load(&id).await.unwrap().unwrap();
    let new_preview =
        json!({"method": "PATCH", "body": {"defaultAction": "Deny", "bypass": "None"}});
    entry.preview_hash = Some(crate::journal::preview_hash(&new_preview));
    entry.preview = Some(new_preview.into());
    store.replace(&entry, &version).await.unwrap().unwrap();
    let err = desk.decide(&approve, None, now).await.unwrap_err();
    assert!(matches!(err, Refusal::ChangeDiffers { .. }), "{err}");
    assert!(err.to_string().contains("recomputed"), "{err}");
    assert_eq!(
        desk.journal().get(&id).await.unwrap().unwrap().state,
        TaskState::PendingApproval
    );
}

#[tokio::test]
async fn behind_app_service_auth_only_recipients_and_approvers_decide() {
    let dir = tempfile::tempdir().unwrap();
    let (desk, id) = pending(&dir, ApproverIdentity::AppServiceAuth).await;
    let now = OffsetDateTime::now_utc();
    let (approve, _) = links(&desk, &id, now).await;
    let err = desk.decide(&approve, None, now).await.unwrap_err();
    assert!(matches!(err, Refusal::SignInRequired), "{err}");
    let mallory = Approver {
        name: "mallory@contoso.com".into(),
    };
    let err = desk.decide(&approve, Some(mallory), now).await.unwrap_err();
    assert!(matches!(err, Refusal::NotAllowed(_)), "{err}");
    let lead = Approver {
        name: "seclead@CONTOSO.com".into(),
    };
    let entry = desk.decide(&approve, Some(lead), now).await.unwrap();
    assert_eq!(entry.decision.unwrap().by, "seclead@CONTOSO.com");
}

#[test]
fn the_approver_comes_from_the_principal_headers() {
    let mut headers = axum::http::HeaderMap::new();
    assert_eq!(Approver::from_headers(&headers), None);
    let principal = json!({"auth_typ": "aad", "claims": [
        {"typ": "name", "val": "Owner"},
        {"typ": "preferred_username", "val": "owner@contoso.com"}]});
    let encoded = base64::engine::general_purpose::STANDARD.encode(principal.to_string());
    headers.insert("x-ms-client-principal", encoded.parse().unwrap());
    assert_eq!(
        Approver::from_headers(&headers).unwrap().name,
        "owner@contoso.com"
    );
    headers.insert(
        "x-ms-client-principal-name",
        "upn@contoso.com".parse().unwrap(),
    );
    assert_eq!(
        Approver::from_headers(&headers).unwrap().name,
        "upn@contoso.com"
    );
}

#[test]
fn settings_are_validated_and_name_the_setting() {
    let lookup = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(ApprovalSettings::from_lookup(&lookup(&[]), false)
        .unwrap()
        .is_none());
    let err =
        ApprovalSettings::from_lookup(&lookup(&[(DECISION_URL, "https://x/api/decide")]), false)
            .unwrap_err();
    assert!(err.to_string().contains(KEY), "{err}");
    let err = ApprovalSettings::from_lookup(&lookup(&[(KEY, KEY_TEXT)]), false).unwrap_err();
    assert!(err.to_string().contains(DECISION_URL), "{err}");
    let err = ApprovalSettings::from_lookup(&lookup(&[(KEY, "short")]), false).unwrap_err();
    assert!(
        err.to_string().contains(KEY) && !err.to_string().contains("short\""),
        "{err}"
    );
    let on_azure = ApprovalSettings::from_lookup(
        &lookup(&[
            (KEY, KEY_TEXT),
            (DECISION_URL, "https://app.azurewebsites.net/api/decide"),
        ]),
        true,
    )
    .unwrap()
    .unwrap();
    assert_eq!(on_azure.identity, ApproverIdentity::AppServiceAuth);
    assert_eq!(on_azure.ttl, DEFAULT_TTL);
    let local = ApprovalSettings::from_lookup(
        &lookup(&[
            (KEY, KEY_TEXT),
            (DECISION_URL, "http://127.0.0.1:3000/api/decide"),
            (TTL_HOURS, "1"),
        ]),
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(local.identity, ApproverIdentity::Link);
    assert_eq!(local.ttl, Duration::from_secs(3600));
    let err = ApprovalSettings::from_lookup(
        &lookup(&[
            (KEY, KEY_TEXT),
            (DECISION_URL, "http://app.example/api/decide"),
        ]),
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("https"), "{err}");
    assert!(!format!("{local:?}").contains("a-test-key"));
}
