"""Key Vault data plane through azure-keyvault-secrets / -keys / -certificates: challenge, versions, rotation, certificate LRO."""
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient

from conftest import covers, requests_log, state, vault_url

VAULT = "kv-contoso-payments"
KW = dict(verify_challenge_resource=False, connection_verify=False, api_version="2025-07-01")


@pytest.fixture
def secrets(credential):
    return SecretClient(vault_url(VAULT), credential, **KW)


@covers("KV challenge 401 WWW-Authenticate", "KV PUT /secrets/{name}", "KV GET /secrets/{name}/versions", "KV GET /secrets/{name}")
def test_rotate_secret_writes_a_new_version_with_its_marker(secrets):
    from azure.keyvault.secrets._shared import http_challenge_cache
    http_challenge_cache.clear()
    before = [p.version for p in secrets.list_properties_of_secret_versions("payments-db-password")]
    assert before == ["0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5", "9f8e7d6c5b4a43210fedcba987654321"]
    written = secrets.set_secret("payments-db-password", "new-value", content_type="text/plain", tags={"dr-message-id": "m-1"})
    assert written.properties.version not in before and written.properties.tags == {"dr-message-id": "m-1"}
    assert written.id == f"{vault_url(VAULT)}/secrets/payments-db-password/{written.properties.version}"
    assert secrets.get_secret("payments-db-password").value == "new-value"
    assert secrets.get_secret("payments-db-password", before[0]).value == "azure-sim-canary-old-password"
    first = requests_log(surface="vault")[0]
    assert first["status"] == 401 and first["audience"] is None
    assert all(entry["audience"] == "https://vault.azure.net" for entry in requests_log(surface="vault")[1:])


@covers("KV PATCH /secrets/{name}/{version}")
def test_disable_secret_version_then_get_is_forbidden(secrets):
    updated = secrets.update_secret_properties("payments-db-password", "0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5", enabled=False)
    assert updated.enabled is False
    with pytest.raises(HttpResponseError) as refused:
        secrets.get_secret("payments-db-password", "0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5")
    assert refused.value.status_code == 403
    versions = {p.version: p.enabled for p in secrets.list_properties_of_secret_versions("payments-db-password")}
    assert versions == {"0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5": False, "9f8e7d6c5b4a43210fedcba987654321": True}


@covers("KV GET /secrets/{name} 404 SecretNotFound")
def test_missing_secret_is_the_sdk_not_found(secrets):
    with pytest.raises(ResourceNotFoundError) as missing:
        secrets.get_secret("no-such-secret")
    assert missing.value.error.code == "SecretNotFound"


@covers("KV DELETE /secrets/{name} (soft delete, LRO)", "KV POST /deletedsecrets/{name}/recover")
def test_delete_and_recover_secret(secrets):
    deleted = secrets.begin_delete_secret("storage-connection", _polling_interval=0).result()
    assert deleted.recovery_id.endswith("/deletedsecrets/storage-connection")
    secrets.begin_recover_deleted_secret("storage-connection", _polling_interval=0).result()
    assert secrets.get_secret("storage-connection").properties.content_type.startswith("storage-key:")


@covers("KV POST /keys/{name}/rotate", "KV PATCH /keys/{name}/{version}", "KV GET /keys/{name}")
def test_rotate_key_then_disable_the_old_version(credential):
    keys = KeyClient(vault_url(VAULT), credential, **KW)
    old = keys.get_key("payments-cmk")
    rotated = keys.rotate_key("payments-cmk")
    assert rotated.properties.version != old.properties.version and rotated.key_type == "RSA"
    assert keys.get_key("payments-cmk").properties.version == rotated.properties.version
    disabled = keys.update_key_properties("payments-cmk", old.properties.version, enabled=False)
    assert disabled.properties.enabled is False
    assert [p.enabled for p in keys.list_properties_of_key_versions("payments-cmk")] == [False, True]


@covers("KV GET/PUT /keys/{name}/rotationpolicy", "KV POST /keys/{name}/create")
def test_key_rotation_policy_and_create(credential):
    keys = KeyClient(vault_url(VAULT), credential, **KW)
    created = keys.create_rsa_key("fresh-key", size=2048)
    assert created.name == "fresh-key"
    policy = keys.get_key_rotation_policy("payments-cmk")
    assert policy.lifetime_actions


@covers("KV GET /certificates/{name}/policy", "KV POST /certificates/{name}/create (LRO)", "KV GET /certificates/{name}/pending", "KV PATCH /certificates/{name}/{version}")
def test_rotate_certificate_from_its_saved_policy(credential):
    certificates = CertificateClient(vault_url(VAULT), credential, **KW)
    old = certificates.get_certificate("payments-tls")
    policy = certificates.get_certificate_policy("payments-tls")
    assert policy.issuer_name == "Self"
    poller = certificates.begin_create_certificate("payments-tls", policy, tags={"dr-message-id": "m-2"}, _polling_interval=0)
    new = poller.result()
    assert new.properties.version != old.properties.version and new.properties.tags == {"dr-message-id": "m-2"}
    assert len(new.cer) > 100
    pending = [e for e in requests_log(surface="vault", path="/certificates/payments-tls/pending")]
    assert pending and pending[-1]["status"] == 200
    disabled = certificates.update_certificate_properties("payments-tls", old.properties.version, enabled=False)
    assert disabled.properties.enabled is False


@covers("KV POST /certificates/{name}/pending/merge")
def test_merge_a_signed_certificate(credential):
    certificates = CertificateClient(vault_url(VAULT), credential, **KW)
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=payments-external")
    certificates.begin_create_certificate("payments-external", policy, _polling_interval=0)
    signed = certificates.get_certificate("payments-tls").cer
    merged = certificates.merge_certificate("payments-external", [signed])
    assert merged.name == "payments-external" and merged.cer == signed


@covers("KV api-version check (BadParameter)")
def test_unknown_data_plane_version_is_refused(credential):
    client = SecretClient(vault_url(VAULT), credential, verify_challenge_resource=False, connection_verify=False, api_version="7.6")
    assert client.get_secret("payments-db-password").value == "azure-sim-canary-current-password"
    import requests
    reply = requests.get(f"{vault_url(VAULT)}/secrets/payments-db-password?api-version=1999-01-01", verify=False,
                         headers={"Authorization": "Bearer " + credential.get_token("https://vault.azure.net/.default").token})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "BadParameter"
    assert "payments-db-password" in state()["vaults"]["kv-contoso-payments"]["secrets"]


def _mgmt_vaults(credential):
    from azure.mgmt.keyvault import KeyVaultManagementClient

    from conftest import mgmt, SUB
    return mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01").vaults


@covers("KV firewall: 403 ForbiddenByFirewall after networkAcls Deny")
def test_the_firewall_closes_the_data_plane(secrets, credential):
    vaults = _mgmt_vaults(credential)
    acls = {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [{"value": "198.51.100.0/24"}], "virtualNetworkRules": []}
    vaults.update("rg-payments-prod", VAULT, {"properties": {"networkAcls": acls}})
    with pytest.raises(HttpResponseError) as refused:
        secrets.get_secret("payments-db-password")
    assert refused.value.status_code == 403 and "Client address is not authorized" in refused.value.message
    acls["ipRules"].append({"value": "127.0.0.1"})
    vaults.update("rg-payments-prod", VAULT, {"properties": {"networkAcls": acls}})
    assert secrets.get_secret("payments-db-password").value == "azure-sim-canary-current-password"


@covers("KV access policy enforced: 403 AccessDenied after accessPolicies/remove")
def test_removing_an_access_policy_locks_the_principal_out(credential):
    from conftest import MALLORY_SP, SimCredential, TENANT
    mallory = SecretClient(vault_url(VAULT), SimCredential(MALLORY_SP), **KW)
    assert mallory.get_secret("payments-db-password").value == "azure-sim-canary-current-password"
    with pytest.raises(HttpResponseError) as no_keys:
        KeyClient(vault_url(VAULT), SimCredential(MALLORY_SP), **KW).get_key("payments-cmk")
    assert no_keys.value.status_code == 403 and "does not have keys get permission" in no_keys.value.message
    entry = {"tenantId": TENANT, "objectId": MALLORY_SP, "permissions": {"secrets": ["all"]}}
    _mgmt_vaults(credential).update_access_policy("rg-payments-prod", VAULT, "remove", {"properties": {"accessPolicies": [entry]}})
    with pytest.raises(HttpResponseError) as refused:
        mallory.get_secret("payments-db-password")
    assert refused.value.status_code == 403 and "does not have secrets get permission" in refused.value.message


@covers("KV RBAC enforced: 403 ForbiddenByRbac by data action")
def test_an_rbac_vault_checks_role_assignments(credential):
    from azure.mgmt.authorization import AuthorizationManagementClient

    from conftest import MALLORY_SP, SUB, SimCredential, mgmt
    mallory = SecretClient(vault_url("kv-contoso-hr"), SimCredential(MALLORY_SP), **KW)
    assert mallory.get_secret("hr-api-key").value == "azure-sim-canary-hr-key"
    with pytest.raises(HttpResponseError) as read_only:
        mallory.set_secret("hr-api-key", "overwritten")
    assert read_only.value.status_code == 403 and "secrets/setSecret/action" in read_only.value.message
    responder = SecretClient(vault_url("kv-contoso-hr"), credential, **KW)
    assert responder.set_secret("hr-api-key", "rotated").value == "rotated"
    authorization = mgmt(AuthorizationManagementClient, credential, SUB)
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-hr-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-hr"
    for assignment in authorization.role_assignments.list_for_scope(scope, filter=f"assignedTo('{MALLORY_SP}')"):
        if assignment.scope.lower() == scope.lower():
            authorization.role_assignments.delete_by_id(assignment.id)
    with pytest.raises(HttpResponseError) as revoked:
        mallory.get_secret("hr-api-key")
    assert revoked.value.status_code == 403
