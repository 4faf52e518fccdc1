//! No secret value anywhere but the vault: the simulator's canary values (and the new values
//! the rotations write) never appear in a preview, an applied or verification record, the
//! captured tracing output, or the request log (except the vault's own PUT bodies).

use std::io::Write;
use std::sync::{Arc, Mutex};

use defender_responder::domain::ids::{CertificateUri, KeyUri, SecretUri};
use defender_responder::domain::parameters::{KeyRotationTarget, Parameters};
use defender_responder::executors::rotation::certificate::RotateCertificate;
use defender_responder::executors::rotation::credentials::ResetCredentials;
use defender_responder::executors::rotation::disable::DisableSecret;
use defender_responder::executors::rotation::key::RotateKey;
use defender_responder::executors::rotation::secret::RotateSecret;
use defender_responder::executors::Executor;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::secrets::rotate;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every value the simulator's state holds as secret material.
fn secret_values(world: &World) -> Vec<String> {
    let state = world.sim.state();
    let mut values = Vec::new();
    for vault in state["vaults"].as_object().unwrap().values() {
        for item in vault["secrets"].as_object().unwrap().values() {
            for version in item["versions"].as_array().unwrap() {
                values.extend(version["value"].as_str().map(str::to_string));
            }
        }
    }
    for resource in state["resources"].as_array().cloned().unwrap_or_default() {
        for key in resource["x-sim-keys"].as_array().into_iter().flatten() {
            values.extend(key["value"].as_str().map(str::to_string));
        }
        values.extend(resource["x-sim-password"].as_str().map(str::to_string));
    }
    values.retain(|v| v.len() >= 8);
    values
}

#[tokio::test]
async fn no_secret_value_leaves_the_vault() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let world = world().await;
    let canaries = secret_values(&world);
    assert!(
        canaries.iter().any(|c| c.contains("azure-sim-canary")),
        "{canaries:?}"
    );

    let mut records: Vec<Value> = Vec::new();
    let tasks = [
        (
            rotate(DB_PASSWORD, &[DB_CURRENT]),
            &RotateSecret as &dyn Executor,
        ),
        (rotate(STORAGE_SECRET, &[STORAGE_VERSION]), &RotateSecret),
        (
            task(Parameters::DisableSecret {
                secret: SecretUri::parse(DB_PASSWORD).unwrap(),
                versions_read: vec![DB_CURRENT.into()],
            }),
            &DisableSecret,
        ),
        (
            task(Parameters::RotateKey {
                target: KeyRotationTarget::Key {
                    key: KeyUri::parse(CMK).unwrap(),
                    versions_read: vec![],
                },
                read_by: None,
            }),
            &RotateKey,
        ),
        (
            task(Parameters::RotateCertificate {
                certificate: CertificateUri::parse(TLS).unwrap(),
                versions_read: vec!["c3e1f0a9b8d74c6e5f4a3b2c1d0e9f8a".into()],
            }),
            &RotateCertificate,
        ),
        (
            task(Parameters::ResetCredentials {
                principal: defender_responder::domain::ids::PrincipalRef::ObjectId {
                    object_id: defender_responder::domain::ids::Guid::parse(MALLORY_SP).unwrap(),
                    kind: defender_responder::domain::ids::PrincipalKind::ServicePrincipal,
                    user_principal_name: None,
                },
            }),
            &ResetCredentials,
        ),
    ];
    for (task, executor) in &tasks {
        let preview = executor.preview(task, &world.ctx).await.expect("preview");
        let applied = executor
            .apply(task, &preview, &world.ctx)
            .await
            .expect("apply");
        let verification = executor
            .verify(task, &preview, &applied, &world.ctx)
            .await
            .expect("verify");
        records.push(json!({"task": task, "preview": preview, "applied": applied, "verification": verification}));
        if let Some(follow_up) = &applied.follow_up {
            world.advance(GRACE * 2);
            let later = executor
                .follow_up(task, follow_up, &world.ctx)
                .await
                .expect("follow-up");
            records.push(json!({"follow_up": follow_up, "applied": later}));
        }
        // A refusal's notice is what a person is sent: it must be clean too.
        if let Err(err) = executor
            .preview(
                &rotate(HR_KEY, &["5e4d3c2b1a0948f7e6d5c4b3a2918070"]),
                &world.ctx,
            )
            .await
        {
            records.push(json!({"refusal": err.to_string()}));
        }
    }
    // Every value now in the vaults (old canaries and the new values), storage keys included.
    let mut values = canaries;
    values.extend(secret_values(&world));
    values.sort();
    values.dedup();

    let records = text_of(&records);
    let tracing_output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!tracing_output.is_empty(), "tracing was captured");
    let log: Vec<Value> = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| !(r["surface"] == "vault" && r["method"] == "PUT"))
        .collect();
    let log = text_of(&log);
    for value in &values {
        assert!(
            !records.contains(value.as_str()),
            "a secret value is in the records"
        );
        assert!(
            !tracing_output.contains(value.as_str()),
            "a secret value is in the logs"
        );
        assert!(
            !log.contains(value.as_str()),
            "a secret value is in the request log"
        );
    }
}
