//! Undo of done containment through the worker against the simulator: the `undo` command's
//! code path restores the exact prior state read back from the simulator, a second undo does
//! nothing, the done notice carries an Undo link whose GET changes nothing and whose POST undoes
//! once, and the containment expiry undoes an unconfirmed change while leaving a confirmed one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::approval::{ApprovalKey, ApprovalSettings, ApproverIdentity, DecisionDesk};
use defender_responder::azure::arm::api_version;
use defender_responder::cli::{undo_outcome, Format};
use defender_responder::domain::ids::{IpAddress, IpRange, KeyVaultId};
use defender_responder::domain::parameters::{FirewallBypass, FirewallDefault, Parameters};
use defender_responder::domain::task::Task;
use defender_responder::domain::{MessageId, Queue};
use defender_responder::executors::ExecutorRegistry;
use defender_responder::journal::command::{self, DecisionArg};
use defender_responder::journal::{Journal, SqliteJournal, TaskState};
use defender_responder::notify::{WebhookChannel, WebhookSecret, WebhookSettings};
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use defender_responder::workers::{sweeper, Settlement, Worker};
use serde_json::{json, Value};
use url::Url;

use crate::helpers::*;

const KEY: &str = "undo-link-key-for-the-isolation-tests-0123456789";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook receiver on loopback that keeps every event it is sent.
async fn receiver() -> (WebhookChannel, Arc<Mutex<Vec<Value>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = events.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str::<Value>(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let channel = WebhookChannel::new(WebhookSettings {
        url,
        secret: WebhookSecret::parse(WEBHOOK_SECRET).unwrap(),
        attempts: 2,
        timeout: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(50),
    })
    .unwrap();
    (channel, events)
}

struct Fixture {
    world: World,
    journal: Journal,
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("store.journal.sqlite3")).unwrap(),
    ));
    Fixture {
        world,
        journal,
        store,
        _dir: dir,
    }
}

impl Fixture {
    fn worker(&self, desk: Option<DecisionDesk>) -> Worker {
        Worker::new(self.journal.clone(), Arc::new(self.store.clone()))
            .with_executors(ExecutorRegistry::standard(), self.world.ctx.clone())
            .with_decisions(desk.map(Arc::new))
            .with_instance("undo-test")
    }

    fn desk(&self, base: &str) -> DecisionDesk {
        DecisionDesk::new(
            self.journal.clone(),
            ApprovalSettings {
                key: ApprovalKey::parse(KEY).unwrap(),
                decision_url: Url::parse(&format!("{base}/api/decide")).unwrap(),
                ttl: Duration::from_secs(3600),
                identity: ApproverIdentity::Link,
                approvers: vec![],
            },
        )
    }

    /// Gives the vault a firewall with rules of its own (one of them covers the attacker's
    /// address, which containment drops), through ARM like any other writer.
    async fn lived_in_firewall(&self, vault: &str) -> Value {
        let arm = &self.world.ctx.clients.arm;
        let body = json!({"properties": {
            "networkAcls": {
                "defaultAction": "Allow",
                "bypass": "None",
                "ipRules": [{"value": "192.0.2.0/24"}, {"value": "203.0.113.0/24"}],
                "virtualNetworkRules": []
            },
            "publicNetworkAccess": "Enabled"
        }});
        arm.write(
            reqwest::Method::PATCH,
            &arm.url(vault, api_version::KEY_VAULT),
            Some(&body),
        )
        .await
        .expect("the vault's own rules are set");
        firewall(&self.world, vault)
    }

    async fn state(&self, id: &MessageId) -> TaskState {
        self.journal.get(id).await.unwrap().unwrap().state
    }

    /// Carries the task out through the worker and checks it is done.
    async fn contain(&self, worker: &Worker, task: &Task) {
        let settlement = worker
            .process(Queue::Isolation, &serde_json::to_value(task).unwrap())
            .await;
        assert!(
            matches!(&settlement, Settlement::Complete { note } if note.contains("done and verified")),
            "{settlement:?}"
        );
        assert_eq!(self.state(&task.message_id).await, TaskState::Done);
    }
}

/// The vault's network state as the simulator holds it.
fn firewall(world: &World, vault: &str) -> Value {
    let properties = resource(&world.sim, vault)["properties"].clone();
    json!({
        "networkAcls": properties["networkAcls"],
        "publicNetworkAccess": properties["publicNetworkAccess"],
    })
}

/// A live firewall task on `vault` from the seed's Key Vault alert (which the worker reads
/// back from Defender before the first write).
fn firewall_task(vault: &str) -> Task {
    task(Parameters::EnableKeyVaultFirewall {
        vault: KeyVaultId::parse(vault).unwrap(),
        default_action: FirewallDefault::Deny,
        bypass: FirewallBypass::AzureServices,
        allow_ip_ranges: vec![IpRange("198.51.100.0/24".parse().unwrap())],
        allow_virtual_networks: vec![],
        block_addresses: vec![IpAddress::parse("203.0.113.9").unwrap()],
    })
}

#[tokio::test]
async fn the_undo_command_restores_the_exact_prior_state_and_a_second_undo_does_nothing() {
    let f = fixture().await;
    let worker = f.worker(None);
    let before = f.lived_in_firewall(PAYMENTS_VAULT).await;
    let task = firewall_task(PAYMENTS_VAULT);
    f.contain(&worker, &task).await;
    let contained = firewall(&f.world, PAYMENTS_VAULT);
    assert_eq!(contained["networkAcls"]["defaultAction"], "Deny");
    assert_ne!(contained, before);

    f.world.sim.clear_requests();
    let id = task.message_id.as_str();
    // Two operators at once: the journal lets one undo run.
    let (first, second) = tokio::join!(
        undo_outcome(&worker, id, "alice", Format::Json),
        undo_outcome(&worker, id, "bob", Format::Json)
    );
    let (won, lost) = if first.code == 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(won.code, 0, "{won:?}");
    assert_ne!(lost.code, 0, "both undos ran: {lost:?}");
    assert!(lost.text.starts_with("error: not undone"), "{lost:?}");
    assert_eq!(writes(&f.world.sim).len(), 1, "{:?}", writes(&f.world.sim));

    let report: Value = serde_json::from_str(&won.text).unwrap();
    assert_eq!(report["prior_state"], before);
    assert_eq!(report["not_restored"], json!([]), "{report}");
    assert_eq!(report["sent"][0]["method"], "PATCH");
    assert!(report["verification"]["checks"].as_array().unwrap().len() >= 2);
    // Read back from the simulator: exactly the state before the change.
    assert_eq!(firewall(&f.world, PAYMENTS_VAULT), before);
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    assert_eq!(entry.state, TaskState::Undone);
    assert_eq!(entry.undo_result.unwrap().to_value()["prior_state"], before);

    f.world.sim.clear_requests();
    let again = undo_outcome(&worker, id, "alice", Format::Table).await;
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.text.contains("already undone by operator:"),
        "{again:?}"
    );
    assert!(writes(&f.world.sim).is_empty(), "a second undo wrote");
}

#[tokio::test]
async fn undo_refuses_dry_runs_noops_unknown_and_unfinished_tasks_and_writes_nothing() {
    let f = fixture().await;
    let worker = f.worker(None);
    let unknown = undo_outcome(&worker, "dr-0000000000000000", "alice", Format::Json).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.text.contains("no task"), "{unknown:?}");

    let mut dry = firewall_task(PAYMENTS_VAULT);
    dry.dry_run = true;
    let settlement = worker
        .process(Queue::Isolation, &serde_json::to_value(&dry).unwrap())
        .await;
    assert!(settlement.describe().contains("dry run"), "{settlement:?}");
    f.world.sim.clear_requests();
    let refused = undo_outcome(&worker, dry.message_id.as_str(), "alice", Format::Json).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.text.contains("dry run"), "{refused:?}");

    // The same firewall closed under another alert: nothing left to change, nothing to undo.
    let live = firewall_task(HR_VAULT);
    f.contain(&worker, &live).await;
    let mut again = firewall_task(HR_VAULT);
    again.message_id = MessageId::derive("another-alert", again.action, &again.target);
    let settlement = worker
        .process(Queue::Isolation, &serde_json::to_value(&again).unwrap())
        .await;
    assert!(
        settlement.describe().contains("nothing to change"),
        "{settlement:?}"
    );
    f.world.sim.clear_requests();
    let noop = undo_outcome(&worker, again.message_id.as_str(), "alice", Format::Json).await;
    assert_eq!(noop.code, 2, "{noop:?}");
    assert!(noop.text.contains("changed nothing"), "{noop:?}");

    let mut waiting = firewall_task(PAYMENTS_VAULT);
    waiting.message_id = MessageId::derive("waiting-alert", waiting.action, &waiting.target);
    f.journal.receive(&waiting, "test").await.unwrap();
    let pending = undo_outcome(&worker, waiting.message_id.as_str(), "alice", Format::Json).await;
    assert_eq!(pending.code, 2, "{pending:?}");
    assert!(pending.text.contains("not done"), "{pending:?}");
    assert!(writes(&f.world.sim).is_empty(), "a refused undo wrote");
    assert_eq!(f.state(&live.message_id).await, TaskState::Done);
}

#[tokio::test]
async fn the_undo_link_get_changes_nothing_and_its_post_undoes_once() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let desk = f.desk(&base);
    let (channel, events) = receiver().await;
    let worker = f.worker(Some(desk.clone())).with_webhook(Some(channel));
    let state = AppState::new(
        Pipeline::new(Registry::standard(), Policy::default()),
        Arc::new(f.store.clone()),
        Arc::new(f.store.clone()),
    )
    .with_decisions(desk.clone())
    .with_worker(worker.clone(), Duration::from_secs(3600));
    tokio::spawn(async move {
        axum::serve(listener, defender_responder::app(state))
            .await
            .unwrap()
    });

    let before = f.lived_in_firewall(PAYMENTS_VAULT).await;
    let task = firewall_task(PAYMENTS_VAULT);
    f.contain(&worker, &task).await;
    let entry = f.journal.get(&task.message_id).await.unwrap().unwrap();
    let done: Vec<Value> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "defender-responder.notice.done")
        .cloned()
        .collect();
    assert_eq!(done.len(), 1, "one done notice: {done:?}");
    assert_eq!(done[0]["id"], format!("{}-done", task.message_id));
    let detail = &done[0]["data"]["detail"];
    assert!(
        detail.get("confirm").is_none(),
        "no expiry, no Keep link: {detail}"
    );
    let undo = Url::parse(detail["undo"].as_str().unwrap()).unwrap();
    assert!(undo.as_str().contains("d=undo"), "{undo}");
    assert_eq!(
        undo.query_pairs().find(|(k, _)| k == "h").unwrap().1,
        entry.preview_hash.clone().unwrap(),
        "the link is bound to the applied change"
    );

    f.world.sim.clear_requests();
    for _ in 0..2 {
        // A link scanner and then the person: both only look.
        let response = reqwest::get(undo.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        let page = response.text().await.unwrap();
        assert!(page.contains("What undo restores"), "{page}");
        assert!(
            page.contains("203.0.113.0/24"),
            "the prior rules are shown: {page}"
        );
        assert!(page.contains(">Undo the change</button>"), "{page}");
        assert_eq!(page.matches("<form method=\"post\"").count(), 1);
    }
    assert!(writes(&f.world.sim).is_empty(), "GET wrote");
    assert_eq!(f.state(&task.message_id).await, TaskState::Done);

    // A tampered link (an undo turned into a confirm) is refused and changes nothing.
    let tampered = Url::parse(&undo.as_str().replace("d=undo", "d=confirm")).unwrap();
    let (status, _) = post(&base, &tampered).await;
    assert_eq!(status, 403);

    let (status, page) = post(&base, &undo).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Undone"), "{page}");
    assert_eq!(f.state(&task.message_id).await, TaskState::Undone);
    assert_eq!(firewall(&f.world, PAYMENTS_VAULT), before);
    assert_eq!(writes(&f.world.sim).len(), 1);

    let (status, page) = post(&base, &undo).await;
    assert_eq!(status, 409, "the link is single-use: {page}");
    assert!(page.contains("already undone by link"), "{page}");
    assert_eq!(writes(&f.world.sim).len(), 1, "a second POST wrote");
    let undone = events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "defender-responder.notice.undone")
        .count();
    assert_eq!(undone, 1, "the recipients are told once");
}

async fn post(base: &str, link: &Url) -> (u16, String) {
    let form: Vec<(String, String)> = link.query_pairs().into_owned().collect();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/decide"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_expiry_undoes_an_unconfirmed_containment_and_leaves_a_confirmed_one() {
    let f = fixture().await;
    let worker = f
        .worker(None)
        .with_containment_expiry(Some(Duration::from_secs(4)));
    let payments_before = f.lived_in_firewall(PAYMENTS_VAULT).await;
    let unconfirmed = firewall_task(PAYMENTS_VAULT);
    let confirmed = firewall_task(HR_VAULT);
    f.contain(&worker, &unconfirmed).await;
    f.contain(&worker, &confirmed).await;
    // `defender-responder decide TASK confirm`: a person keeps this one.
    let code = command::decide(
        &f.journal,
        confirmed.message_id.as_str(),
        DecisionArg::Confirm,
        "alice",
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let kept = f.journal.get(&confirmed.message_id).await.unwrap().unwrap();
    assert_eq!(kept.confirmation.unwrap().by, "operator:alice");
    let hr_contained = firewall(&f.world, HR_VAULT);

    // Not yet expired: the sweep leaves both.
    let early = sweeper::sweep(&worker, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(early.containment_undone.is_empty(), "{early:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;

    let swept = sweeper::sweep(&worker, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        swept.containment_undone,
        vec![unconfirmed.message_id.to_string()]
    );
    assert_eq!(f.state(&unconfirmed.message_id).await, TaskState::Undone);
    assert_eq!(firewall(&f.world, PAYMENTS_VAULT), payments_before);
    let entry = f
        .journal
        .get(&unconfirmed.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.history.last().unwrap().actor, "containment-expiry");

    assert_eq!(f.state(&confirmed.message_id).await, TaskState::Done);
    assert_eq!(firewall(&f.world, HR_VAULT), hr_contained);
    let later = sweeper::sweep(&worker, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(later.containment_undone.is_empty(), "{later:?}");
}
