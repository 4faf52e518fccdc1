//! The official Rust Key Vault client (`azure_security_keyvault_secrets` 1.x on `azure_core`'s pipeline) against the simulator: the 401 challenge, set, get, versions, disable.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_security_keyvault_secrets::models::{
    SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use azure_sim::{Audience, Seed, Simulator, SimulatorHandle};

/// Tokens straight from the simulator, for whatever audience the client's scope names.
struct SimCredential(Arc<SimulatorHandle>);

impl std::fmt::Debug for SimCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimCredential")
    }
}

#[async_trait::async_trait]
impl TokenCredential for SimCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let audience = scopes
            .first()
            .and_then(|scope| Audience::parse(scope))
            .unwrap_or(Audience::Vault);
        Ok(AccessToken::new(
            Secret::new(self.0.token(audience)),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

fn client(sim: &Arc<SimulatorHandle>, vault: &str) -> SecretClient {
    // azure_core's bearer-token policy requires HTTPS: trust the simulator's own certificate.
    let certificate =
        reqwest_for_azure_core::Certificate::from_pem(sim.certificate_pem().as_bytes())
            .expect("pem");
    let http = reqwest_for_azure_core::Client::builder()
        .tls_certs_merge([certificate])
        .build()
        .expect("reqwest");
    let options = SecretClientOptions {
        api_version: "2025-07-01".into(),
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            ..ClientOptions::default()
        },
        verify_challenge_resource: Some(false),
    };
    SecretClient::new(
        &sim.vault_url(vault).expect("vault"),
        Arc::new(SimCredential(sim.clone())),
        Some(options),
    )
    .expect("client")
}

#[tokio::test]
async fn the_rust_secret_client_rotates_and_disables_versions() {
    let sim = Arc::new(Simulator::start(Seed::example()).await.expect("starts"));
    let secrets = client(&sim, "kv-contoso-payments");
    let current = secrets
        .get_secret("payments-db-password", None)
        .await
        .expect("get")
        .into_model()
        .expect("model");
    assert_eq!(
        current.value.as_deref(),
        Some("azure-sim-canary-current-password")
    );
    let parameters = SetSecretParameters {
        value: Some("rotated".into()),
        tags: Some([("dr-message-id".to_string(), "m-1".to_string())].into()),
        ..Default::default()
    };
    let written = secrets
        .set_secret(
            "payments-db-password",
            parameters.try_into().expect("body"),
            None,
        )
        .await
        .expect("set")
        .into_model()
        .expect("model");
    assert_eq!(written.value.as_deref(), Some("rotated"));
    let old = "0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5";
    let disable = UpdateSecretPropertiesParameters {
        secret_attributes: Some(azure_security_keyvault_secrets::models::SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options =
        azure_security_keyvault_secrets::models::SecretClientUpdateSecretPropertiesOptions {
            secret_version: Some(old.into()),
            ..Default::default()
        };
    secrets
        .update_secret_properties(
            "payments-db-password",
            disable.try_into().expect("body"),
            Some(options),
        )
        .await
        .expect("update");
    let log = sim.requests();
    let vault_calls: Vec<(String, u64)> = log
        .iter()
        .filter(|entry| entry["surface"] == "vault")
        .map(|entry| {
            (
                entry["method"].as_str().unwrap_or("").to_string(),
                entry["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        vault_calls[0],
        ("GET".to_string(), 401),
        "the client starts with the challenge round-trip"
    );
    assert!(
        vault_calls[1..].iter().all(|(_, status)| *status == 200),
        "{vault_calls:?}"
    );
    let state = sim.state();
    let versions = state["vaults"]["kv-contoso-payments"]["secrets"]["payments-db-password"]
        ["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["enabled"], false);
    assert_eq!(versions[2]["tags"]["dr-message-id"], "m-1");
}
