//! The simulator world the executor tests share: clients trusting its certificate, tasks,
//! and the request log's writes.

use std::sync::Arc;
use std::time::Duration;

use azure_sim::{Audience, Seed, Simulator, SimulatorHandle};
use defender_responder::azure::credential::StaticTokenCredential;
use defender_responder::azure::AzureClients;
use defender_responder::config::azure::{AzureSettings, IsolationSettings};
use defender_responder::domain::alert::{AlertStatus, Service, Severity};
use defender_responder::domain::parameters::Parameters;
use defender_responder::domain::task::{AlertRef, PolicyDecision, Task};
use defender_responder::executors::{
    Applied, Executor, ExecutorContext, ExecutorError, Preview, Verification,
};
use serde_json::Value;

pub(crate) const PAYMENTS_VAULT: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-payments";
pub(crate) const HR_VAULT: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-hr-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-hr";
/// The responder's own identity in the example seed.
pub(crate) const RESPONDER_OID: &str = "5b0c9f2e-1d7a-4e3b-8c6f-2a9e4d1b7c30";
/// The attacker's service principal in the example seed.
pub(crate) const MALLORY_SP: &str = "9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4";
/// The Key Vault alert of the example seed.
pub(crate) const KV_ALERT: &str = "2575094087140347022_83F891C3-F3FA-4DB4-AACA-DCF4DC5EF7A9";

pub(crate) struct World {
    pub(crate) sim: SimulatorHandle,
    pub(crate) ctx: ExecutorContext,
}

pub(crate) async fn world() -> World {
    world_with(IsolationSettings {
        self_object_ids: vec![defender_responder::domain::ids::Guid::parse(RESPONDER_OID).unwrap()],
        blast_radius_per_hour: 20,
        ..IsolationSettings::default()
    })
    .await
}

pub(crate) async fn world_with(settings: IsolationSettings) -> World {
    let sim = Simulator::start(Seed::example())
        .await
        .expect("simulator starts");
    let mut azure = AzureSettings::on_one_host(&sim.base_url());
    azure.http.lro_min_poll = Duration::from_millis(5);
    azure.http.lro_deadline = Duration::from_secs(10);
    let credential = StaticTokenCredential::new([
        (azure.arm_scope.clone(), sim.token(Audience::Management)),
        (azure.graph_scope.clone(), sim.token(Audience::Graph)),
        (azure.mde_scope.clone(), sim.token(Audience::Mde)),
    ]);
    let clients = AzureClients::with_root_pem(&azure, Arc::new(credential), sim.certificate_pem())
        .expect("clients");
    World {
        sim,
        ctx: ExecutorContext::new(clients, settings),
    }
}

/// A live task of these parameters from the seed's Key Vault alert (or `alert_type` /
/// `resource` for another), decided `mode` by the policy.
pub(crate) fn task_with(
    parameters: Parameters,
    alert_type: &str,
    resource: &str,
    mode: &str,
) -> Task {
    let alert = AlertRef {
        system_alert_id: KV_ALERT.into(),
        alert_type: alert_type.into(),
        service: Service::KeyVault,
        severity: Severity::High,
        status: AlertStatus::Active,
        resource: resource.into(),
        alert_uri: None,
    };
    let mut task = Task::new(&alert, parameters, &["KV-1"], "test");
    task.policy = Some(PolicyDecision {
        mode: mode.into(),
        rule: "test".into(),
        loop_protection: false,
    });
    task
}

pub(crate) fn task(parameters: Parameters) -> Task {
    task_with(parameters, "KV_ListGetAnomaly", PAYMENTS_VAULT, "auto")
}

/// The writes in the request log: not GETs, not tokens, not Resource Graph queries (a POST
/// that only reads).
pub(crate) fn writes(sim: &SimulatorHandle) -> Vec<Value> {
    sim.requests()
        .into_iter()
        .filter(|r| r["method"] != "GET" && r["surface"] != "token")
        .filter(|r| r["path"] != "/providers/Microsoft.ResourceGraph/resources")
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
    assert!(
        !preview.change.is_noop(),
        "nothing to do: {}",
        preview.change.summary
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

pub(crate) fn refusal_reason(err: ExecutorError) -> defender_responder::executors::RefusalReason {
    match err.refusal() {
        Some(refusal) => refusal.reason,
        None => panic!("expected a refusal, got {err:?}"),
    }
}

pub(crate) fn resource(sim: &SimulatorHandle, id: &str) -> Value {
    sim.resource(id)
        .unwrap_or_else(|| panic!("{id} is in the simulator"))
}
