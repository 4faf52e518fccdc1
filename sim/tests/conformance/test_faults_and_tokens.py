"""Faults and tokens as the SDKs see them: 429 retried by the SDK's own policy, slow LROs polled, audiences and expiry refused with the real 401s, ARM's bucket."""
import os

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.network import NetworkManagementClient

from conftest import BASE, HTTP, READY, SUB, SimCredential, add_fault, covers, mgmt, requests_log, token, vault_url

RG_PAY = "rg-payments-prod"


@covers("SDK retry policy honours 429 Retry-After (ARM)")
def test_arm_429_is_retried_by_the_sdk(credential):
    add_fault({"method": "GET", "path": "*/vaults/kv-contoso-payments", "times": 1, "fault": {"kind": "status", "status": 429, "retryAfter": 1}})
    client = mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01")
    assert client.vaults.get(RG_PAY, "kv-contoso-payments").name == "kv-contoso-payments"
    statuses = [e["status"] for e in requests_log(surface="arm", path="*/vaults/kv-contoso-payments")]
    assert statuses == [429, 200]


@covers("SDK retry policy honours 503 (Key Vault)")
def test_vault_503_is_retried_by_the_sdk(credential):
    add_fault({"method": "GET", "path": "/secrets/payments-db-password*", "times": 1, "fault": {"kind": "status", "status": 503, "retryAfter": 1}})
    client = SecretClient(vault_url("kv-contoso-payments"), credential, verify_challenge_resource=False, connection_verify=False, api_version="2025-07-01")
    assert client.get_secret("payments-db-password").value == "azure-sim-canary-current-password"
    statuses = [e["status"] for e in requests_log(surface="vault")]
    assert statuses.count(503) == 1 and statuses[-1] == 200


@covers("ARM 409 conflict reaches the SDK")
def test_arm_409_is_not_retried(credential):
    add_fault({"method": "PATCH", "path": "*/vaults/kv-contoso-payments", "fault": {"kind": "status", "status": 409}})
    client = mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01")
    with pytest.raises(HttpResponseError) as conflict:
        client.vaults.update(RG_PAY, "kv-contoso-payments", {"properties": {"publicNetworkAccess": "Disabled"}})
    assert conflict.value.status_code == 409 and conflict.value.error.code == "AnotherOperationInProgress"


@covers("ARM LRO polled while InProgress (slow LRO)", "ARM LRO Failed (failing LRO)")
def test_slow_and_failing_lros(credential):
    network = mgmt(NetworkManagementClient, credential, SUB, api_version="2025-01-01")
    add_fault({"method": "PUT", "path": "*/networkSecurityGroups/dr-slow", "fault": {"kind": "lroSlow", "polls": 3}})
    poller = network.network_security_groups.begin_create_or_update("rg-web-prod", "dr-slow", {"location": "eastus", "properties": {"securityRules": []}})
    assert poller.result().provisioning_state == "Succeeded"
    polls = [e for e in requests_log(surface="arm", path="*/operations/*")]
    assert len(polls) == 4
    add_fault({"method": "PUT", "path": "*/networkSecurityGroups/dr-broken", "fault": {"kind": "lroFail", "polls": 1, "code": "NetworkSecurityGroupFailed"}})
    with pytest.raises(HttpResponseError) as failed:
        network.network_security_groups.begin_create_or_update("rg-web-prod", "dr-broken", {"location": "eastus", "properties": {}}).result()
    assert "NetworkSecurityGroupFailed" in str(failed.value)


@covers("ARM 401 InvalidAuthenticationTokenAudience", "Graph 401 InvalidAuthenticationToken", "MDE 401 wrong audience")
def test_each_surface_checks_the_token_audience():
    vault_token = token("https://vault.azure.net")
    arm = requests.get(f"{BASE}/subscriptions/{SUB}?api-version=2022-12-01", headers={"Authorization": f"Bearer {vault_token}"}, verify=False)
    assert arm.status_code == 401 and arm.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert 'error="invalid_token"' in arm.headers["WWW-Authenticate"]
    graph = requests.get(f"{BASE}/v1.0/users", headers={"Authorization": f"Bearer {vault_token}"}, verify=False)
    assert graph.status_code == 401 and graph.json()["error"]["code"] == "InvalidAuthenticationToken"
    mde = requests.get(f"{BASE}/api/machines", headers={"Authorization": f"Bearer {token('https://graph.microsoft.com')}"}, verify=False)
    assert mde.status_code == 401
    kv = requests.get(f"{vault_url('kv-contoso-payments')}/secrets?api-version=2025-07-01", headers={"Authorization": f"Bearer {token('https://management.azure.com')}"}, verify=False)
    assert kv.status_code == 401 and 'resource="https://vault.azure.net"' in kv.headers["WWW-Authenticate"]


@covers("ARM 401 ExpiredAuthenticationToken (token expiry mid-run)")
def test_token_expiry_mid_run(credential):
    client = mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01")
    client.vaults.get(RG_PAY, "kv-contoso-payments")
    add_fault({"path": "*/vaults/kv-contoso-payments", "times": 1, "fault": {"kind": "expireTokens"}})
    with pytest.raises(ClientAuthenticationError) as expired:
        client.vaults.get(RG_PAY, "kv-contoso-payments")
    assert expired.value.error.code == "ExpiredAuthenticationToken"
    fresh = mgmt(KeyVaultManagementClient, SimCredential(), SUB, api_version="2025-05-01")
    assert fresh.vaults.get(RG_PAY, "kv-contoso-payments").name == "kv-contoso-payments"


@covers("Token endpoint: App Service IDENTITY_ENDPOINT via azure-identity", "Token endpoint: IMDS via azure-identity")
def test_azure_identity_gets_tokens_from_the_simulator(monkeypatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{HTTP}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", READY["identityHeader"])
    app_service = ManagedIdentityCredential()
    client = mgmt(KeyVaultManagementClient, app_service, SUB, api_version="2025-05-01")
    assert client.vaults.get(RG_PAY, "kv-contoso-payments").name == "kv-contoso-payments"
    assert requests_log(surface="token", path="/msi/token")[0]["status"] == 200
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", HTTP)
    imds = ManagedIdentityCredential()
    secrets = SecretClient(vault_url("kv-contoso-payments"), imds, verify_challenge_resource=False, connection_verify=False, api_version="2025-07-01")
    assert secrets.get_secret("payments-db-password").value
    assert any(e["path"] == "/metadata/identity/oauth2/token" and e["status"] == 200 for e in requests_log(surface="token"))


@covers("ARM write bucket: x-ms-ratelimit-remaining-subscription-writes, 429 SubscriptionRequestsThrottled")
def test_arm_write_bucket(credential):
    requests.put(f"{HTTP}/_sim/throttle", json={"reads": {"capacity": 250, "refillPerSecond": 25}, "writes": {"capacity": 2, "refillPerSecond": 0.5},
                                               "deletes": {"capacity": 200, "refillPerSecond": 10}}).raise_for_status()
    headers = {"Authorization": f"Bearer {token('https://management.azure.com')}"}
    url = f"{BASE}/subscriptions/{SUB}/resourceGroups/{RG_PAY}/providers/Microsoft.KeyVault/vaults/kv-contoso-payments?api-version=2025-05-01"
    replies = [requests.patch(url, json={"tags": {"n": str(i)}}, headers=headers, verify=False) for i in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert [r.headers.get("x-ms-ratelimit-remaining-subscription-writes") for r in replies] == ["1", "0", "0"]
    assert replies[2].json()["error"]["code"] == "SubscriptionRequestsThrottled" and int(replies[2].headers["Retry-After"]) >= 1
    other = {"Authorization": f"Bearer {token('https://management.azure.com', 'mallory-app')}"}
    assert requests.patch(url, json={"tags": {}}, headers=other, verify=False).status_code == 200
