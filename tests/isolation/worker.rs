//! The isolation worker with the real executors against the simulator: the alert read back
//! from Defender before the first write, a forged alert refused, a redelivery running nothing
//! twice, the blast-radius trip to notify-only, a dry run that writes nothing, and an approved
//! change refused when its target changed after the decision.

use std::sync::Arc;

use defender_responder::adapters::{EmbeddedStore, QueueNames, SharedPublisher};
use defender_responder::azure::arm::api_version;
use defender_responder::config::azure::IsolationSettings;
use defender_responder::domain::ids::{Guid, KeyVaultId};
use defender_responder::domain::parameters::{FirewallBypass, FirewallDefault, Parameters};
use defender_responder::domain::task::{Task, TaskStatus};
use defender_responder::domain::Queue;
use defender_responder::executors::ExecutorRegistry;
use defender_responder::journal::{Journal, JournalEntry, SqliteJournal, TaskState, Verdict};
use defender_responder::workers::{Settlement, Worker, APPROVED_SUFFIX};
use serde_json::{json, Value};

use crate::helpers::*;

const SEED_ALERT_ID: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.Security/locations/westeurope/alerts/2575094087140347022_83F891C3-F3FA-4DB4-AACA-DCF4DC5EF7A9";

struct Rig {
    world: World,
    worker: Worker,
    journal: Journal,
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

async fn rig(blast_radius_per_hour: u32) -> Rig {
    let world = world_with(IsolationSettings {
        self_object_ids: vec![Guid::parse(RESPONDER_OID).unwrap()],
        blast_radius_per_hour,
        ..IsolationSettings::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.path().join("journal.sqlite3")).unwrap(),
    ));
    let publisher: SharedPublisher = Arc::new(store.clone());
    let worker = Worker::new(journal.clone(), publisher)
        .with_executors(ExecutorRegistry::standard(), world.ctx.clone())
        .with_instance("isolation-test");
    Rig {
        world,
        worker,
        journal,
        store,
        _dir: dir,
    }
}

fn firewall_on(vault: &str) -> Task {
    task(Parameters::EnableKeyVaultFirewall {
        vault: KeyVaultId::parse(vault).unwrap(),
        default_action: FirewallDefault::Deny,
        bypass: FirewallBypass::AzureServices,
        allow_ip_ranges: vec![],
        allow_virtual_networks: vec![],
        block_addresses: vec![],
    })
}

fn body(task: &Task) -> Value {
    serde_json::to_value(task).unwrap()
}

async fn entry(journal: &Journal, task: &Task) -> JournalEntry {
    journal
        .get(&task.message_id)
        .await
        .unwrap()
        .expect("journaled")
}

fn vault_writes(world: &World, vault: &str) -> usize {
    writes(&world.sim)
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(vault))
        })
        .count()
}

#[tokio::test]
async fn a_live_task_is_authenticated_applied_once_and_marks_the_alert_in_progress() {
    let rig = rig(20).await;
    let task = firewall_on(PAYMENTS_VAULT);
    rig.world.sim.clear_requests();

    let settlement = rig.worker.process(Queue::Isolation, &body(&task)).await;
    assert!(
        matches!(&settlement, Settlement::Complete { note } if note.contains("done and verified")),
        "{settlement:?}"
    );
    let vault = resource(&rig.world.sim, PAYMENTS_VAULT);
    assert_eq!(vault["properties"]["networkAcls"]["defaultAction"], "Deny");
    assert_eq!(
        resource(&rig.world.sim, SEED_ALERT_ID)["properties"]["status"],
        "InProgress",
        "the alert is marked InProgress in Defender for Cloud"
    );
    // The alert was read back before the first write.
    let log = rig.world.sim.requests();
    let read_alert = log
        .iter()
        .position(|r| {
            r["method"] == "GET"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("Microsoft.Security/alerts"))
        })
        .expect("the alert was read back");
    let first_write = log
        .iter()
        .position(|r| r["method"] == "PATCH")
        .expect("the firewall was written");
    assert!(read_alert < first_write, "{log:?}");

    let recorded = entry(&rig.journal, &task).await;
    assert_eq!(recorded.state, TaskState::Done);
    let preview = recorded
        .preview
        .expect("the preview is journaled")
        .to_value();
    assert_eq!(preview["task"]["message_id"], task.message_id.as_str());
    assert_eq!(
        preview["prior_state"]["networkAcls"]["defaultAction"],
        "Allow"
    );

    // Redelivered: nothing runs twice.
    rig.world.sim.clear_requests();
    let again = rig.worker.process(Queue::Isolation, &body(&task)).await;
    assert!(
        matches!(&again, Settlement::Complete { note } if note.contains("nothing more to do")),
        "{again:?}"
    );
    assert!(
        writes(&rig.world.sim).is_empty(),
        "{:?}",
        writes(&rig.world.sim)
    );
}

#[tokio::test]
async fn a_forged_alert_moves_nothing_and_says_why() {
    let rig = rig(20).await;
    let mut forged = firewall_on(PAYMENTS_VAULT);
    forged.alert.system_alert_id =
        "2575094087140347022_00000000-0000-0000-0000-000000000000".into();
    rig.world.sim.clear_requests();

    let settlement = rig.worker.process(Queue::Isolation, &body(&forged)).await;
    assert!(!settlement.is_retry(), "{settlement:?}");
    assert!(
        writes(&rig.world.sim).is_empty(),
        "{:?}",
        writes(&rig.world.sim)
    );
    assert_eq!(
        resource(&rig.world.sim, PAYMENTS_VAULT)["properties"]["networkAcls"]["defaultAction"],
        "Allow"
    );
    let recorded = entry(&rig.journal, &forged).await;
    assert_eq!(recorded.state, TaskState::Failed);
    assert_eq!(recorded.retryable, Some(false));
    let error = recorded.error.unwrap_or_default();
    assert!(error.contains("Defender for Cloud has no alert"), "{error}");
}

#[tokio::test]
async fn the_blast_radius_trips_to_notify_only_and_writes_nothing_more() {
    let rig = rig(1).await;
    let first = firewall_on(PAYMENTS_VAULT);
    let second = firewall_on(HR_VAULT);
    rig.world.sim.clear_requests();

    let done = rig.worker.process(Queue::Isolation, &body(&first)).await;
    assert!(
        matches!(&done, Settlement::Complete { note } if note.contains("done and verified")),
        "{done:?}"
    );
    let tripped = rig.worker.process(Queue::Isolation, &body(&second)).await;
    assert!(!tripped.is_retry(), "{tripped:?}");
    assert_eq!(vault_writes(&rig.world, HR_VAULT), 0);
    let recorded = entry(&rig.journal, &second).await;
    assert_eq!(recorded.state, TaskState::Failed);
    let error = recorded.error.unwrap_or_default();
    assert!(error.contains("blast radius"), "{error}");

    // A restarted worker counts the journal's change of the last hour too.
    let restarted = Worker::new(rig.journal.clone(), Arc::new(rig_store(&rig)))
        .with_executors(ExecutorRegistry::standard(), rig.world.ctx.clone())
        .load_blast_radius()
        .await
        .unwrap();
    let mut third = firewall_on(HR_VAULT);
    third.message_id =
        serde_json::from_value(Value::String(format!("{}-3", third.message_id))).unwrap();
    restarted.process(Queue::Isolation, &body(&third)).await;
    assert_eq!(vault_writes(&rig.world, HR_VAULT), 0);
    let error = entry(&rig.journal, &third).await.error.unwrap_or_default();
    assert!(error.contains("blast radius"), "{error}");
}

fn rig_store(rig: &Rig) -> EmbeddedStore {
    EmbeddedStore::open(
        &rig._dir.path().join("other.sqlite3"),
        QueueNames::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_dry_run_reads_and_records_the_change_but_writes_nothing() {
    let rig = rig(20).await;
    let worker = rig.worker.clone().with_dry_run(true);
    let task = firewall_on(PAYMENTS_VAULT);
    rig.world.sim.clear_requests();

    let settlement = worker.process(Queue::Isolation, &body(&task)).await;
    assert!(
        matches!(&settlement, Settlement::Complete { note } if note.contains("dry run")),
        "{settlement:?}"
    );
    assert!(
        writes(&rig.world.sim).is_empty(),
        "{:?}",
        writes(&rig.world.sim)
    );
    let recorded = entry(&rig.journal, &task).await;
    assert_eq!(recorded.state, TaskState::Done);
    assert_eq!(recorded.result.unwrap().to_value()["dry_run"], true);
    let preview = recorded.preview.unwrap().to_value();
    let requests = &preview["change"]["requests"];
    assert_eq!(requests[0]["method"], "PATCH", "{requests}");
}

#[test]
fn a_planned_firewall_names_the_rotations_on_its_vault_to_run_first() {
    use defender_responder::notify::sample;
    let tasks = sample::plan(
        sample::SAMPLE_ALERT.as_bytes(),
        &defender_responder::policy::Policy::default(),
    )
    .unwrap();
    let firewall = tasks
        .iter()
        .find(|t| t.action == defender_responder::domain::Action::EnableKeyVaultFirewall)
        .expect("the sample plans a firewall");
    let rotations: Vec<_> = tasks
        .iter()
        .filter(|t| t.queue == Queue::Rotation)
        .map(|t| t.message_id.clone())
        .collect();
    assert!(!rotations.is_empty());
    assert_eq!(firewall.run_after, rotations);
}

#[tokio::test]
async fn a_firewall_waits_for_its_vaults_rotations_then_closes() {
    let rig = rig(20).await;
    let mut rotation = task(Parameters::DisableSecret {
        secret: defender_responder::domain::ids::SecretUri::parse(
            "https://kv-contoso-payments.vault.azure.net/secrets/payments-db-password",
        )
        .unwrap(),
        versions_read: vec![],
    });
    rotation.dry_run = true;
    let mut firewall = firewall_on(PAYMENTS_VAULT);
    firewall.run_after = vec![rotation.message_id.clone()];
    rig.world.sim.clear_requests();

    let waiting = rig.worker.process(Queue::Isolation, &body(&firewall)).await;
    assert!(
        matches!(&waiting, Settlement::Retry { reason, .. } if reason.contains("waits for")),
        "{waiting:?}"
    );
    assert!(writes(&rig.world.sim).is_empty());

    rig.worker.process(Queue::Rotation, &body(&rotation)).await;
    let done = rig.worker.process(Queue::Isolation, &body(&firewall)).await;
    assert!(
        matches!(&done, Settlement::Complete { note } if note.contains("done and verified")),
        "{done:?}"
    );
}

#[tokio::test]
async fn an_approved_change_is_refused_when_its_target_changed_after_the_decision() {
    let rig = rig(20).await;
    let mut pending = firewall_on(PAYMENTS_VAULT);
    pending.status = TaskStatus::PendingApproval;

    let waiting = rig.worker.process(Queue::Isolation, &body(&pending)).await;
    assert!(
        matches!(&waiting, Settlement::Complete { note } if note.contains("waits for a decision")),
        "{waiting:?}"
    );
    let recorded = entry(&rig.journal, &pending).await;
    assert_eq!(recorded.state, TaskState::PendingApproval);
    let approved_hash = recorded
        .preview_hash
        .clone()
        .expect("the preview is hashed");
    let decided = rig
        .journal
        .decide(
            &pending.message_id,
            Verdict::Approve,
            Some(&approved_hash),
            "owner@contoso.com",
        )
        .await
        .unwrap();
    rig.worker.enqueue_approved(&decided).await.unwrap();

    // After the decision, someone turns the vault's public access off: the PATCH the worker
    // would send now is not the one the person approved.
    rig.world
        .ctx
        .clients
        .arm
        .patch(
            PAYMENTS_VAULT,
            api_version::KEY_VAULT,
            &json!({"properties": {"publicNetworkAccess": "Disabled"}}),
        )
        .await
        .unwrap();
    rig.world.sim.clear_requests();

    // The copy the decision put back on the queue.
    let approved: Value = rig
        .store
        .peek(Queue::Isolation, 10)
        .unwrap()
        .into_iter()
        .find(|message| message.message_id.ends_with(APPROVED_SUFFIX))
        .map(|message| serde_json::from_str(&message.body).unwrap())
        .expect("the approved copy is queued");
    let settlement = rig.worker.process(Queue::Isolation, &approved).await;
    assert!(
        matches!(&settlement, Settlement::Complete { .. }),
        "a refusal is permanent, not retried: {settlement:?}"
    );
    assert_eq!(vault_writes(&rig.world, PAYMENTS_VAULT), 0);
    let refused = entry(&rig.journal, &pending).await;
    assert_eq!(refused.state, TaskState::Failed);
    assert_eq!(refused.retryable, Some(false));
    let error = refused.error.unwrap_or_default();
    assert!(
        error.contains("the target changed since the approved preview; nothing was changed"),
        "{error}"
    );
}
