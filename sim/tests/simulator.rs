//! The simulator from Rust: start-up, state and the request log, the per-surface token checks, fault injection and ARM's bucket.

use azure_sim::{
    Audience, Fault, FaultRule, Seed, Simulator, SimulatorHandle, ThrottleConfig, ThrottleLimit,
};
use serde_json::{json, Value};

const SUB: &str = "4a9d62b4-c70d-4263-9280-1c7fce8ab0e7";
const VAULT_ID: &str = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-payments";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

async fn start() -> (SimulatorHandle, reqwest::Client) {
    (
        Simulator::start(Seed::example())
            .await
            .expect("simulator starts"),
        client(),
    )
}

fn vault_url(sim: &SimulatorHandle) -> String {
    format!("{}{VAULT_ID}?api-version=2025-05-01", sim.http_url())
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn serves_https_and_plain_http_on_one_port_and_each_vault_on_its_own() {
    let (sim, http) = start().await;
    let health = http
        .get(format!("{}/_sim/health", sim.base_url()))
        .send()
        .await
        .expect("https");
    assert_eq!(health.status(), 200);
    let plain = http
        .get(format!("{}/_sim/health", sim.http_url()))
        .send()
        .await
        .expect("http");
    assert_eq!(plain.status(), 200);
    let vault = sim.vault_url("kv-contoso-payments").expect("vault port");
    assert_ne!(vault, sim.base_url());
    let challenge = http
        .get(format!("{vault}/secrets?api-version=2025-07-01"))
        .send()
        .await
        .expect("vault");
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(
        header.contains(r#"resource="https://vault.azure.net""#),
        "{header}"
    );
    assert!(header.contains("authorization=\"https://login.microsoftonline.com/8d3b4c2a-6f1e-4b7a-9c55-3e2f1a0b9d11\""), "{header}");
    assert!(sim
        .certificate_pem()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let (_, arm) = json_of(
        http.get(vault_url(&sim))
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("arm"),
    )
    .await;
    assert_eq!(arm["properties"]["vaultUri"], json!(format!("{vault}/")));
}

#[tokio::test]
async fn every_surface_refuses_a_token_for_another_audience_with_its_own_401() {
    let (sim, http) = start().await;
    let graph_token = sim.token(Audience::Graph);
    let (status, arm) = json_of(
        http.get(vault_url(&sim))
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("arm"),
    )
    .await;
    assert_eq!(
        (status, arm["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationTokenAudience"))
    );
    let (status, missing) = json_of(http.get(vault_url(&sim)).send().await.expect("arm")).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let (status, graph) = json_of(
        http.get(format!("{}/v1.0/users", sim.http_url()))
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("graph"),
    )
    .await;
    assert_eq!(
        (status, graph["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
    assert!(graph["error"]["innerError"]["request-id"].is_string());
    let (status, _) = json_of(
        http.get(format!("{}/api/machines", sim.http_url()))
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("mde"),
    )
    .await;
    assert_eq!(status, 401);
    let vault = sim.vault_url("kv-contoso-payments").expect("vault");
    let (status, kv) = json_of(
        http.get(format!("{vault}/secrets?api-version=2025-07-01"))
            .bearer_auth(&graph_token)
            .send()
            .await
            .expect("kv"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        kv["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("AKV10022"),
        "{kv}"
    );
    let (status, _) = json_of(
        http.get(format!("{}/api/machines", sim.http_url()))
            .bearer_auth(sim.token(Audience::Mde))
            .send()
            .await
            .expect("mde"),
    )
    .await;
    assert_eq!(status, 200);
    let forged = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQuYXp1cmUuY29tIn0.c2ln";
    let (status, body) = json_of(
        http.get(vault_url(&sim))
            .bearer_auth(forged)
            .send()
            .await
            .expect("arm"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken"))
    );
}

#[tokio::test]
async fn the_token_endpoints_issue_per_audience_and_identity() {
    let (sim, http) = start().await;
    let imds = http
        .get(format!(
            "{}?api-version=2018-02-01&resource=https://vault.azure.net",
            sim.imds_endpoint()
        ))
        .header("Metadata", "true")
        .send()
        .await
        .expect("imds");
    let (status, body) = json_of(imds).await;
    assert_eq!(
        (status, body["resource"].as_str()),
        (200, Some("https://vault.azure.net"))
    );
    let no_header = http
        .get(format!(
            "{}?resource=https://vault.azure.net",
            sim.imds_endpoint()
        ))
        .send()
        .await
        .expect("imds");
    assert_eq!(no_header.status(), 400);
    let app_service = http
        .get(format!("{}/msi/token?api-version=2019-08-01&resource=https://graph.microsoft.com&client_id=c0ffee00-1234-4abc-9def-00c0ffee0001", sim.http_url()))
        .header("X-IDENTITY-HEADER", sim.identity_header())
        .send()
        .await
        .expect("msi");
    let (status, body) = json_of(app_service).await;
    assert_eq!(
        (status, body["client_id"].as_str()),
        (200, Some("c0ffee00-1234-4abc-9def-00c0ffee0001"))
    );
    let token = body["access_token"].as_str().expect("token").to_string();
    let (status, _) = json_of(
        http.get(format!("{}/v1.0/users", sim.http_url()))
            .bearer_auth(&token)
            .send()
            .await
            .expect("graph"),
    )
    .await;
    assert_eq!(status, 200);
    let log = sim.requests();
    let last = log.last().expect("logged");
    assert_eq!(
        last["caller"],
        json!("9e8d7c6b-5a49-4382-b1c0-d9e8f7a6b5c4")
    );
    assert_eq!(last["audience"], json!("https://graph.microsoft.com"));
    let unknown = http
        .get(format!(
            "{}?resource=https://example.com",
            sim.imds_endpoint()
        ))
        .header("Metadata", "true")
        .send()
        .await
        .expect("imds");
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn a_write_changes_the_state_and_the_request_log_records_it() {
    let (sim, http) = start().await;
    let body = json!({"properties": {"networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [{"value": "198.51.100.0/24"}]}}});
    let (status, patched) = json_of(
        http.patch(vault_url(&sim))
            .bearer_auth(sim.token(Audience::Management))
            .json(&body)
            .send()
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        patched["properties"]["networkAcls"]["virtualNetworkRules"],
        Value::Null,
        "networkAcls is replaced whole"
    );
    let stored = sim.resource(VAULT_ID).expect("vault");
    assert_eq!(
        stored["properties"]["networkAcls"]["defaultAction"],
        json!("Deny")
    );
    assert_eq!(
        stored["properties"]["accessPolicies"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let entry = sim
        .requests()
        .into_iter()
        .find(|entry| entry["method"] == "PATCH")
        .expect("logged");
    assert_eq!(entry["body"], body);
    assert_eq!(entry["query"]["api-version"], json!("2025-05-01"));
    assert_eq!(entry["audience"], json!("https://management.azure.com"));
    let over_http: Value = http
        .get(format!("{}/_sim/state", sim.http_url()))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    assert!(over_http["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .any(|r| r["properties"]["networkAcls"]["defaultAction"] == "Deny"));
    sim.reset();
    assert_eq!(
        sim.resource(VAULT_ID).expect("vault")["properties"]["networkAcls"]["defaultAction"],
        json!("Allow")
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn an_unknown_api_version_gets_arms_400() {
    let (sim, http) = start().await;
    let url = format!("{}{VAULT_ID}?api-version=2030-01-01", sim.http_url());
    let (status, body) = json_of(
        http.get(url)
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound"))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("2025-05-01"));
    let url = format!("{}{VAULT_ID}", sim.http_url());
    let (status, body) = json_of(
        http.get(url)
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
}

#[tokio::test]
async fn injected_status_faults_hit_a_bounded_number_of_matching_requests() {
    let (sim, http) = start().await;
    sim.add_fault(FaultRule {
        method: Some("GET".into()),
        path: "*/vaults/kv-contoso-payments".into(),
        after: 0,
        times: Some(2),
        fault: Fault::Status {
            status: 429,
            retry_after: Some(7),
            code: None,
            message: None,
        },
    });
    let token = sim.token(Audience::Management);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = http
            .get(vault_url(&sim))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        seen.push((
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_string()),
        ));
    }
    assert_eq!(
        seen,
        vec![
            (429, Some("7".into())),
            (429, Some("7".into())),
            (200, None)
        ]
    );
    sim.add_fault(FaultRule {
        method: None,
        path: "/v1.0/users/*".into(),
        after: 0,
        times: None,
        fault: Fault::Status {
            status: 503,
            retry_after: None,
            code: None,
            message: None,
        },
    });
    let (status, body) = json_of(
        http.get(format!("{}/v1.0/users/x", sim.http_url()))
            .bearer_auth(sim.token(Audience::Graph))
            .send()
            .await
            .expect("graph"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("serviceNotAvailable"))
    );
    let faulted: Vec<bool> = sim
        .requests()
        .iter()
        .map(|entry| entry["fault"] == json!(true))
        .collect();
    assert_eq!(faulted, vec![true, true, false, true]);
    sim.clear_faults();
    let (status, _) = json_of(
        http.get(format!("{}/v1.0/users/x", sim.http_url()))
            .bearer_auth(sim.token(Audience::Graph))
            .send()
            .await
            .expect("graph"),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_slow_lro_stays_in_progress_for_its_polls_and_a_failing_one_ends_failed() {
    let (sim, http) = start().await;
    let nsg = format!("/subscriptions/{SUB}/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkSecurityGroups/dr-q");
    sim.add_fault(FaultRule {
        method: Some("PUT".into()),
        path: nsg.clone(),
        after: 0,
        times: Some(1),
        fault: Fault::LroSlow { polls: 2 },
    });
    let token = sim.token(Audience::Management);
    let put = http
        .put(format!("{}{nsg}?api-version=2025-01-01", sim.http_url()))
        .bearer_auth(&token)
        .json(&json!({"location": "eastus", "properties": {"securityRules": []}}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let poll = put.headers()["azure-asyncoperation"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(poll.starts_with(&sim.http_url()), "{poll}");
    assert_eq!(
        sim.resource(&nsg).expect("nsg")["properties"]["provisioningState"],
        json!("Updating")
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (_, body) = json_of(
            http.get(&poll)
                .bearer_auth(&token)
                .send()
                .await
                .expect("poll"),
        )
        .await;
        statuses.push(body["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["InProgress", "InProgress", "Succeeded"]);
    assert_eq!(
        sim.resource(&nsg).expect("nsg")["properties"]["provisioningState"],
        json!("Succeeded")
    );
    sim.add_fault(FaultRule {
        method: Some("DELETE".into()),
        path: nsg.clone(),
        after: 0,
        times: Some(1),
        fault: Fault::LroFail {
            polls: 0,
            code: Some("Boom".into()),
            message: None,
        },
    });
    let delete = http
        .delete(format!("{}{nsg}?api-version=2025-01-01", sim.http_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), 202);
    let poll = delete.headers()["azure-asyncoperation"]
        .to_str()
        .expect("header")
        .to_string();
    let (_, body) = json_of(
        http.get(&poll)
            .bearer_auth(&token)
            .send()
            .await
            .expect("poll"),
    )
    .await;
    assert_eq!(
        (body["status"].as_str(), body["error"]["code"].as_str()),
        (Some("Failed"), Some("Boom"))
    );
    assert!(
        sim.resource(&nsg).is_some(),
        "a failed delete keeps the resource"
    );
}

#[tokio::test]
async fn tokens_expire_mid_run_and_fresh_ones_work() {
    let (sim, http) = start().await;
    let token = sim.token(Audience::Management);
    assert_eq!(
        http.get(vault_url(&sim))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    sim.expire_tokens();
    let (status, body) = json_of(
        http.get(vault_url(&sim))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("ExpiredAuthenticationToken"))
    );
    assert_eq!(
        http.get(vault_url(&sim))
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    sim.add_fault(FaultRule {
        method: None,
        path: "/v1.0/*".into(),
        after: 1,
        times: Some(1),
        fault: Fault::ExpireTokens,
    });
    let graph = sim.token(Audience::Graph);
    let statuses: Vec<u16> =
        futures_like_sequence(&http, &format!("{}/v1.0/users", sim.http_url()), &graph, 3).await;
    assert_eq!(statuses, vec![200, 401, 401]);
}

async fn futures_like_sequence(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    count: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn arms_write_bucket_is_per_subscription_and_caller() {
    let (sim, http) = start().await;
    sim.set_throttle(ThrottleConfig {
        writes: ThrottleLimit {
            capacity: 2,
            refill_per_second: 0.1,
        },
        ..ThrottleConfig::default()
    });
    let token = sim.token(Audience::Management);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = http
            .patch(vault_url(&sim))
            .bearer_auth(&token)
            .json(&json!({"tags": {}}))
            .send()
            .await
            .expect("patch");
        let remaining = response
            .headers()
            .get("x-ms-ratelimit-remaining-subscription-writes")
            .map(|v| v.to_str().unwrap_or("").to_string());
        seen.push((response.status().as_u16(), remaining));
    }
    assert_eq!(
        seen,
        vec![
            (200, Some("1".into())),
            (200, Some("0".into())),
            (429, Some("0".into()))
        ]
    );
    let reads = http
        .get(vault_url(&sim))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(
        reads.headers()["x-ms-ratelimit-remaining-subscription-reads"],
        "249"
    );
    let other = sim.token_for(Audience::Management, "mallory-app");
    assert_eq!(
        http.patch(vault_url(&sim))
            .bearer_auth(&other)
            .json(&json!({"tags": {}}))
            .send()
            .await
            .expect("patch")
            .status(),
        200
    );
}

#[tokio::test]
async fn mde_actions_go_pending_then_succeeded() {
    let (sim, http) = start().await;
    let token = sim.token(Audience::Mde);
    let machine = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";
    let (status, action) = json_of(
        http.post(format!("{}/api/machines/{machine}/isolate", sim.http_url()))
            .bearer_auth(&token)
            .json(&json!({"Comment": "dr-1", "IsolationType": "Selective"}))
            .send()
            .await
            .expect("isolate"),
    )
    .await;
    assert_eq!((status, action["status"].as_str()), (201, Some("Pending")));
    let url = format!(
        "{}/api/machineactions/{}",
        sim.http_url(),
        action["id"].as_str().expect("id")
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (_, body) = json_of(
            http.get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("poll"),
        )
        .await;
        statuses.push(body["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["Pending", "Succeeded", "Succeeded"]);
    assert_eq!(
        sim.state()["mde"]["machines"][0]["x-sim-isolation"],
        json!("Selective")
    );
    let (status, _) = json_of(
        http.post(format!("{}/api/machines/{machine}/isolate", sim.http_url()))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .expect("isolate"),
    )
    .await;
    assert_eq!(status, 400, "Comment is required");
}

#[test]
fn a_bad_seed_is_refused_naming_what_is_wrong() {
    let missing_id = Seed::from_json(r#"{"resources": [{"type": "x"}]}"#).and_then(|seed| {
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(Simulator::start(seed))
            .map(|_| ())
    });
    assert!(missing_id
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("resources[]: id is required"));
    let unknown = Seed::from_json(r#"{"resourcez": []}"#)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(unknown.contains("resourcez"), "{unknown}");
    let wrong_type = Seed::from_json(r#"{"identities": [{"name": 1}]}"#)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(wrong_type.contains("invalid type"), "{wrong_type}");
}

#[tokio::test]
async fn an_empty_seed_starts_with_one_default_identity() {
    let sim = Simulator::start(Seed::empty()).await.expect("starts");
    assert!(sim.vault_urls().is_empty());
    let state = sim.state();
    assert_eq!(state["identities"].as_array().map(Vec::len), Some(1));
    let (status, body) = json_of(
        client()
            .get(format!(
                "{}/subscriptions/{SUB}?api-version=2022-12-01",
                sim.http_url()
            ))
            .bearer_auth(sim.token(Audience::Management))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("SubscriptionNotFound"))
    );
}

#[tokio::test]
async fn a_vault_is_also_reachable_by_host_name_on_the_main_port() {
    let (sim, http) = start().await;
    let response = http
        .get(format!(
            "{}/secrets/payments-db-password?api-version=2025-07-01",
            sim.http_url()
        ))
        .header(
            "host",
            format!("kv-contoso-payments.vault.azure.net:{}", sim.port()),
        )
        .bearer_auth(sim.token(Audience::Vault))
        .send()
        .await
        .expect("get");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["id"],
        json!(format!("http://kv-contoso-payments.vault.azure.net:{}/secrets/payments-db-password/9f8e7d6c5b4a43210fedcba987654321", sim.port()))
    );
}

#[tokio::test]
async fn mde_machine_actions_are_limited_per_caller() {
    let (sim, http) = start().await;
    sim.set_throttle(ThrottleConfig {
        mde_actions: ThrottleLimit {
            capacity: 2,
            refill_per_second: 100.0 / 60.0,
        },
        ..ThrottleConfig::default()
    });
    let token = sim.token(Audience::Mde);
    let machine = "7b2a1c9d8e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b";
    let mut statuses = Vec::new();
    for action in ["isolate", "unisolate", "runAntiVirusScan"] {
        let response = http
            .post(format!(
                "{}/api/machines/{machine}/{action}",
                sim.http_url()
            ))
            .bearer_auth(&token)
            .json(&json!({"Comment": "dr-2"}))
            .send()
            .await
            .expect("post");
        statuses.push((
            response.status().as_u16(),
            response.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(statuses, vec![(201, false), (201, false), (429, true)]);
    let (status, _) = json_of(
        http.get(format!("{}/api/machines", sim.http_url()))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 200, "reads are not machine actions");
}

#[tokio::test]
async fn client_credentials_check_the_secret_of_the_app() {
    let (sim, http) = start().await;
    let url = format!(
        "{}/8d3b4c2a-6f1e-4b7a-9c55-3e2f1a0b9d11/oauth2/v2.0/token",
        sim.http_url()
    );
    let form = |secret: &str| {
        format!("grant_type=client_credentials&client_id=c0ffee00-1234-4abc-9def-00c0ffee0001&client_secret={secret}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default")
    };
    let ok = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("mallory-secret"))
        .send()
        .await
        .expect("token");
    let (status, body) = json_of(ok).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")));
    let graph = http
        .get(format!("{}/v1.0/users", sim.http_url()))
        .bearer_auth(body["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("graph");
    assert_eq!(graph.status(), 200);
    let wrong = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("guess"))
        .send()
        .await
        .expect("token");
    let (status, body) = json_of(wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(
        sim.requests().iter().all(|entry| entry["body"].is_null()),
        "token bodies are not logged"
    );
}

#[tokio::test]
async fn with_arm_access_enforced_the_callers_roles_decide() {
    let mut seed: Value =
        serde_json::from_str(include_str!("../seeds/example.json")).expect("example");
    seed["enforceArmAccess"] = json!(true);
    let sim = Simulator::start(Seed::from_json(&seed.to_string()).expect("seed"))
        .await
        .expect("starts");
    let http = client();
    let responder = sim.token(Audience::Management);
    assert_eq!(
        http.patch(vault_url(&sim))
            .bearer_auth(&responder)
            .json(&json!({"tags": {}}))
            .send()
            .await
            .expect("patch")
            .status(),
        200
    );
    let assignment = format!("{}/subscriptions/{SUB}/resourceGroups/rg-hr-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-hr/providers/Microsoft.Authorization/roleAssignments/3f2e1d0c-9b8a-4765-a4b3-c2d1e0f9a8b7?api-version=2022-04-01", sim.http_url());
    let (status, body) = json_of(
        http.delete(&assignment)
            .bearer_auth(&responder)
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("'Microsoft.Authorization/roleAssignments/delete'"),
        "{body}"
    );
    let nobody = sim.token_for(Audience::Management, "00000000-0000-0000-0000-00000000dead");
    let (status, body) = json_of(
        http.get(vault_url(&sim))
            .bearer_auth(&nobody)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("'Microsoft.KeyVault/vaults/read'"),
        "{body}"
    );
    let restart = format!("{}/subscriptions/{SUB}/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01/restart?api-version=2024-11-01", sim.http_url());
    assert_eq!(
        http.post(&restart)
            .bearer_auth(&responder)
            .send()
            .await
            .expect("restart")
            .status(),
        202
    );
}

#[tokio::test]
async fn collections_list_by_resource_group_and_by_subscription() {
    let (sim, http) = start().await;
    let token = sim.token(Audience::Management);
    let in_group = format!("{}/subscriptions/{SUB}/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkInterfaces?api-version=2025-01-01", sim.http_url());
    let in_subscription = format!("{}/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces?api-version=2025-01-01", sim.http_url());
    for url in [in_group, in_subscription] {
        let (status, body) = json_of(
            http.get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("list"),
        )
        .await;
        let names: Vec<&str> = body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|nic| nic["name"].as_str())
            .collect();
        assert_eq!((status, names), (200, vec!["nic-vm-web-01"]), "{url}");
    }
    let vaults = format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults?api-version=2025-05-01",
        sim.http_url()
    );
    let (_, body) = json_of(
        http.get(&vaults)
            .bearer_auth(&token)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(2));
}
