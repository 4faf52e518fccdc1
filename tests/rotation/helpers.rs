//! The simulator world the rotation tests share: Azure and Key Vault clients trusting its
//! certificate, a clock the tests move, tasks from the seed's Key Vault alert, and readers of
//! the vault's versions and the request log.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use azure_sim::{Audience, FaultRule, Seed, Simulator, SimulatorHandle};
use defender_responder::azure::credential::StaticTokenCredential;
use defender_responder::azure::key_vault::KeyVaultConnector;
use defender_responder::azure::AzureClients;
use defender_responder::config::azure::{AzureSettings, IsolationSettings};
use defender_responder::config::rotation::RotationSettings;
use defender_responder::domain::alert::{AlertStatus, Severity};
use defender_responder::domain::parameters::{Parameters, TimeWindow};
use defender_responder::domain::task::{AlertRef, PolicyDecision, Task};
use defender_responder::executors::rotation::{Clock, RotationContext};
use defender_responder::executors::{
    Applied, Executor, ExecutorContext, ExecutorError, Preview, RefusalReason, Verification,
};
use defender_responder::services::KeyVault;
use serde_json::{json, Value};

pub(crate) const PAYMENTS: &str = "kv-contoso-payments";
/// Its ARM id.
pub(crate) const PAYMENTS_VAULT_ID: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-payments";
pub(crate) const DB_PASSWORD: &str =
    "https://kv-contoso-payments.vault.azure.net/secrets/payments-db-password";
pub(crate) const DB_OLD: &str = "0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5";
pub(crate) const DB_CURRENT: &str = "9f8e7d6c5b4a43210fedcba987654321";
pub(crate) const STORAGE_SECRET: &str =
    "https://kv-contoso-payments.vault.azure.net/secrets/storage-connection";
pub(crate) const STORAGE_VERSION: &str = "1a2b3c4d5e6f47a8b9c0d1e2f3a4b5c6";
pub(crate) const HR_KEY: &str = "https://kv-contoso-hr.vault.azure.net/secrets/hr-api-key";
pub(crate) const CMK: &str = "https://kv-contoso-payments.vault.azure.net/keys/payments-cmk";
pub(crate) const TLS: &str =
    "https://kv-contoso-payments.vault.azure.net/certificates/payments-tls";
pub(crate) const STORAGE_ACCOUNT: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.Storage/storageAccounts/stcontosopayments";
pub(crate) const MALLORY_SP: &str = "9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4";
pub(crate) const MALLORY_APP: &str = "4d3c2b1a-0f9e-48d7-a6c5-b4a392817065";
pub(crate) const KV_ALERT: &str = "2575094087140347022_83F891C3-F3FA-4DB4-AACA-DCF4DC5EF7A9";
/// The grace window the tests run with.
pub(crate) const GRACE: i64 = 3_600;
/// The end of the alert's window: after the seed's versions, before anything the tests write.
pub(crate) const WINDOW_END: &str = "2026-11-30T23:00:00Z";

pub(crate) struct World {
    pub(crate) sim: SimulatorHandle,
    pub(crate) ctx: ExecutorContext,
    pub(crate) now: Arc<AtomicI64>,
}

impl World {
    /// Moves the clock the executors read.
    pub(crate) fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    /// The executors' now.
    pub(crate) fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// The versions of a vault object in the simulator's state (values included).
    pub(crate) fn versions(&self, collection: &str, name: &str, vault: &str) -> Vec<Value> {
        self.sim.state()["vaults"][vault][collection][name]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn secret_versions(&self, name: &str) -> Vec<Value> {
        self.versions("secrets", name, PAYMENTS)
    }

    /// The storage account's keys as the simulator keeps them (values included).
    pub(crate) fn storage_keys(&self) -> Vec<Value> {
        self.sim.state()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["id"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(STORAGE_ACCOUNT)
            })
            .map(|r| r["x-sim-keys"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub(crate) fn fault(&self, rule: Value) {
        let rule: FaultRule = serde_json::from_value(rule).expect("fault rule");
        self.sim.add_fault(rule);
    }
}

pub(crate) async fn world() -> World {
    world_with(RotationSettings {
        grace_seconds: GRACE,
        credentials_vault: Some("https://kv-contoso-hr.vault.azure.net".into()),
        ..RotationSettings::default()
    })
    .await
}

pub(crate) async fn world_with(settings: RotationSettings) -> World {
    let sim = Simulator::start(Seed::example())
        .await
        .expect("simulator starts");
    let mut azure = AzureSettings::on_one_host(&sim.base_url());
    azure.http.lro_min_poll = Duration::from_millis(5);
    azure.http.lro_deadline = Duration::from_secs(10);
    let credential = Arc::new(StaticTokenCredential::new([
        (azure.arm_scope.clone(), sim.token(Audience::Management)),
        (azure.graph_scope.clone(), sim.token(Audience::Graph)),
        (azure.mde_scope.clone(), sim.token(Audience::Mde)),
        (
            "https://vault.azure.net/.default".to_string(),
            sim.token(Audience::Vault),
        ),
    ]));
    let clients = AzureClients::with_root_pem(&azure, credential.clone(), sim.certificate_pem())
        .expect("clients");
    let mut connector = KeyVaultConnector::new(credential)
        .trusting_certificate(sim.certificate_pem())
        .expect("certificate")
        .without_challenge_resource_check();
    for (name, url) in sim.vault_urls() {
        connector = connector.with_endpoint(name, url);
    }
    let now = Arc::new(AtomicI64::new(
        azure_core::time::OffsetDateTime::now_utc().unix_timestamp(),
    ));
    let clock_now = now.clone();
    let rotation = RotationContext::new(connector, settings)
        .with_clock(Clock::from_fn(move || clock_now.load(Ordering::SeqCst)));
    World {
        sim,
        ctx: ExecutorContext::new(clients, IsolationSettings::default()).with_rotation(rotation),
        now,
    }
}

/// A live task of these parameters from the seed's Key Vault alert, its activity ending at
/// [`WINDOW_END`].
pub(crate) fn task(parameters: Parameters) -> Task {
    task_ending(parameters, WINDOW_END)
}

pub(crate) fn task_ending(parameters: Parameters, end: &str) -> Task {
    let alert = AlertRef {
        system_alert_id: KV_ALERT.into(),
        alert_type: "KV_ListGetAnomaly".into(),
        service: KeyVault::NAME,
        severity: Severity::High,
        status: AlertStatus::Active,
        // The vault as the alert names it: the worker reads the alert back from Defender in
        // the vault's subscription before any live rotation.
        resource: PAYMENTS_VAULT_ID.into(),
        alert_uri: None,
    };
    let mut task = Task::new(&alert, parameters, &["KV-4a"], "test");
    task.policy = Some(PolicyDecision {
        mode: "auto".into(),
        rule: "test".into(),
        loop_protection: false,
    });
    task.activity.window = TimeWindow::new(Some("2026-11-30T22:00:00Z".into()), Some(end.into()));
    task
}

/// The writes (not GETs, not tokens) in the request log.
pub(crate) fn writes(sim: &SimulatorHandle) -> Vec<Value> {
    sim.requests()
        .into_iter()
        .filter(|r| r["method"] != "GET" && r["surface"] != "token")
        .collect()
}

/// `(method, surface, path)` of each write.
pub(crate) fn write_summary(sim: &SimulatorHandle) -> Vec<(String, String, String)> {
    writes(sim)
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_string(),
                r["surface"].as_str().unwrap_or_default().to_string(),
                r["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// preview → apply → verify, asserting the preview wrote nothing and the verification passed.
pub(crate) async fn run(
    executor: &dyn Executor,
    task: &Task,
    world: &World,
) -> (Preview, Applied, Verification) {
    world.sim.clear_requests();
    let preview = executor.preview(task, &world.ctx).await.expect("preview");
    assert!(
        writes(&world.sim).is_empty(),
        "preview wrote: {:?}",
        writes(&world.sim)
    );
    let applied = executor
        .apply(task, &preview, &world.ctx)
        .await
        .expect("apply");
    let verification = executor
        .verify(task, &preview, &applied, &world.ctx)
        .await
        .expect("verify");
    assert!(
        verification.passed(),
        "verification failed: {:?}",
        verification.failures()
    );
    (preview, applied, verification)
}

pub(crate) fn refusal(err: ExecutorError) -> (RefusalReason, String) {
    match err.refusal() {
        Some(refusal) => (refusal.reason, refusal.detail.clone()),
        None => panic!("expected a refusal, got {err:?}"),
    }
}

/// The tags of a version in the state.
pub(crate) fn tag<'v>(version: &'v Value, name: &str) -> Option<&'v str> {
    version["tags"][name].as_str()
}

/// What the state says about a JSON-serialisable record, for the canary scans.
pub(crate) fn text_of(records: &[Value]) -> String {
    json!(records).to_string()
}
