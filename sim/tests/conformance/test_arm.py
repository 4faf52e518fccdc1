"""Azure Resource Manager through the official azure-mgmt-* clients: Key Vault, Network, Compute, Storage, Automation, Authorization, Security, Resources."""
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.automation import AutomationClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.security import SecurityCenter
from azure.mgmt.storage import StorageManagementClient

from conftest import BASE, MALLORY_SP, RESPONDER, SUB, TENANT, covers, mgmt, requests_log, state, token

RG_PAY = "rg-payments-prod"
RG_WEB = "rg-web-prod"
RG_AA = "rg-automation"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/{RG_PAY}/providers/Microsoft.KeyVault/vaults/kv-contoso-payments"
HR_VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-hr-prod/providers/Microsoft.KeyVault/vaults/kv-contoso-hr"
NIC_ID = f"/subscriptions/{SUB}/resourceGroups/{RG_WEB}/providers/Microsoft.Network/networkInterfaces/nic-vm-web-01"
DISK_ID = f"/subscriptions/{SUB}/resourceGroups/{RG_WEB}/providers/Microsoft.Compute/disks/vm-web-01_OsDisk_1"


@pytest.fixture
def keyvault(credential):
    return mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01")


@pytest.fixture
def network(credential):
    return mgmt(NetworkManagementClient, credential, SUB, api_version="2025-01-01")


@pytest.fixture
def compute(credential):
    return mgmt(ComputeManagementClient, credential, SUB)


@pytest.fixture
def authorization(credential):
    return mgmt(AuthorizationManagementClient, credential, SUB)


@pytest.fixture
def automation(credential):
    return mgmt(AutomationClient, credential, SUB)


@covers("ARM GET Microsoft.KeyVault/vaults", "ARM PATCH Microsoft.KeyVault/vaults (networkAcls)")
def test_enable_key_vault_firewall(keyvault):
    vault = keyvault.vaults.get(RG_PAY, "kv-contoso-payments")
    assert vault.properties.network_acls.default_action == "Allow"
    assert vault.properties.vault_uri.startswith("https://127.0.0.1:")
    patched = keyvault.vaults.update(RG_PAY, "kv-contoso-payments", {"properties": {
        "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [{"value": "198.51.100.0/24"}], "virtualNetworkRules": []},
        "publicNetworkAccess": "Enabled"}})
    assert patched.properties.network_acls.default_action == "Deny"
    assert [rule.value for rule in keyvault.vaults.get(RG_PAY, "kv-contoso-payments").properties.network_acls.ip_rules] == ["198.51.100.0/24"]
    writes = requests_log(surface="arm", method="PATCH")
    assert writes[-1]["query"]["api-version"] == "2025-05-01" and writes[-1]["audience"] == "https://management.azure.com"


@covers("ARM PUT vaults/accessPolicies/remove", "ARM PUT vaults/accessPolicies/add", "ARM PUT vaults/accessPolicies/replace")
def test_restrict_principal_on_an_access_policy_vault(keyvault):
    entry = {"tenantId": TENANT, "objectId": MALLORY_SP, "permissions": {"secrets": ["get", "list", "set", "delete"], "keys": [], "certificates": []}}
    removed = keyvault.vaults.update_access_policy(RG_PAY, "kv-contoso-payments", "remove", {"properties": {"accessPolicies": [entry]}})
    assert [p.object_id for p in removed.properties.access_policies] == [RESPONDER]
    keyvault.vaults.update_access_policy(RG_PAY, "kv-contoso-payments", "add", {"properties": {"accessPolicies": [entry]}})
    reduced = dict(entry, permissions={"secrets": ["get"], "keys": [], "certificates": []})
    keyvault.vaults.update_access_policy(RG_PAY, "kv-contoso-payments", "replace", {"properties": {"accessPolicies": [reduced]}})
    policies = {p.object_id: p.permissions.secrets for p in keyvault.vaults.get(RG_PAY, "kv-contoso-payments").properties.access_policies}
    assert policies[MALLORY_SP] == ["get"]


@covers("ARM GET roleAssignments $filter=atScope() and assignedTo()", "ARM DELETE roleAssignments/{id}", "ARM PUT roleAssignments/{id} (undo)")
def test_restrict_principal_on_an_rbac_vault_and_undo(authorization):
    found = list(authorization.role_assignments.list_for_scope(HR_VAULT_ID, filter=f"atScope() and assignedTo('{MALLORY_SP}')"))
    at_vault = [a for a in found if a.scope.lower() == HR_VAULT_ID.lower()]
    assert len(at_vault) == 1 and len(found) == 2
    saved = at_vault[0]
    deleted = authorization.role_assignments.delete_by_id(saved.id)
    assert deleted.principal_id == MALLORY_SP
    assert authorization.role_assignments.delete_by_id(saved.id) is None
    with pytest.raises(ResourceNotFoundError):
        authorization.role_assignments.get_by_id(saved.id)
    restored = authorization.role_assignments.create(HR_VAULT_ID, saved.name, {"properties": {
        "roleDefinitionId": saved.role_definition_id, "principalId": saved.principal_id, "principalType": saved.principal_type,
        "description": saved.description}})
    assert restored.id.lower() == saved.id.lower()
    with pytest.raises(HttpResponseError) as conflict:
        authorization.role_assignments.create(HR_VAULT_ID, "00000000-1111-4222-8333-444444444444", {"properties": {
            "roleDefinitionId": saved.role_definition_id, "principalId": saved.principal_id}})
    assert conflict.value.status_code == 409 and conflict.value.error.code == "RoleAssignmentExists"


@covers("ARM GET roleAssignments $filter=principalId eq", "ARM DELETE roleDefinitions/{id}", "ARM PUT roleEligibilityScheduleRequests/{id} AdminRemove")
def test_remove_role_assignments_and_custom_role(authorization):
    scope = f"/subscriptions/{SUB}"
    mine = list(authorization.role_assignments.list_for_subscription(filter=f"principalId eq '{MALLORY_SP}'"))
    assert {a.scope for a in mine} == {scope, HR_VAULT_ID}
    custom = "d0c1e2f3-a4b5-4c6d-8e7f-901a2b3c4d5e"
    with pytest.raises(HttpResponseError) as in_use:
        authorization.role_definitions.delete(scope, custom)
    assert in_use.value.status_code == 409
    for assignment in mine:
        authorization.role_assignments.delete_by_id(assignment.id)
    assert authorization.role_definitions.delete(scope, custom).role_name == "Totally Normal Operator"
    owner = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
    request = authorization.role_eligibility_schedule_requests.create(scope, "6f5e4d3c-2b1a-4098-8765-43210fedcba9", {"properties": {
        "principalId": MALLORY_SP, "roleDefinitionId": owner, "requestType": "AdminRemove", "justification": "dr-m-3"}})
    assert request.status == "Revoked"
    assert not any(r.get("type") == "Microsoft.Authorization/roleEligibilitySchedules" for r in state()["resources"])


@covers("ARM PUT networkSecurityGroups (LRO Azure-AsyncOperation)", "ARM GET networkInterfaces", "ARM PUT networkInterfaces (LRO)", "ARM DELETE networkSecurityGroups (LRO)", "ARM etag on network resources")
def test_isolate_a_nic_with_a_quarantine_nsg_and_undo(network):
    rules = [
        {"name": "dr-allow-forensics", "properties": {"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "10.9.0.0/26", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRanges": ["22", "3389"]}},
        {"name": "dr-deny-in", "properties": {"priority": 4096, "direction": "Inbound", "access": "Deny", "protocol": "*", "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "sourcePortRange": "*", "destinationPortRange": "*"}},
        {"name": "dr-deny-out", "properties": {"priority": 4096, "direction": "Outbound", "access": "Deny", "protocol": "*", "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "sourcePortRange": "*", "destinationPortRange": "*"}},
    ]
    nsg = network.network_security_groups.begin_create_or_update(RG_WEB, "dr-quarantine-1a2b", {"location": "eastus", "properties": {"securityRules": rules}}).result()
    assert nsg.provisioning_state == "Succeeded" and len(nsg.security_rules) == 3 and len(nsg.default_security_rules) == 6
    nic = network.network_interfaces.get(RG_WEB, "nic-vm-web-01")
    old_etag = nic.etag
    assert nic.network_security_group is None
    nic.network_security_group = {"id": nsg.id}
    updated = network.network_interfaces.begin_create_or_update(RG_WEB, "nic-vm-web-01", nic).result()
    assert updated.network_security_group.id == nsg.id and updated.etag != old_etag
    assert [n.id for n in network.network_security_groups.get(RG_WEB, "dr-quarantine-1a2b").network_interfaces] == [NIC_ID]
    with pytest.raises(HttpResponseError) as in_use:
        network.network_security_groups.begin_delete(RG_WEB, "dr-quarantine-1a2b").result()
    assert in_use.value.error.code == "InUseNetworkSecurityGroupCannotBeDeleted"
    updated.network_security_group = None
    network.network_interfaces.begin_create_or_update(RG_WEB, "nic-vm-web-01", updated).result()
    network.network_security_groups.begin_delete(RG_WEB, "dr-quarantine-1a2b").result()
    with pytest.raises(ResourceNotFoundError) as gone:
        network.network_security_groups.get(RG_WEB, "dr-quarantine-1a2b")
    assert gone.value.error.code == "ResourceNotFound"
    polls = requests_log(surface="arm", path="*/operations/*")
    assert polls and all(p["status"] == 200 for p in polls)


@covers("ARM POST virtualMachines/restart (LRO)", "ARM POST virtualMachines/runCommand (LRO with result)", "ARM POST virtualMachines/reimage (LRO)", "ARM PATCH virtualMachines (osDisk deleteOption, LRO)", "ARM PUT snapshots (LRO)")
def test_vm_actions(compute):
    compute.virtual_machines.begin_restart(RG_WEB, "vm-web-01").result()
    result = compute.virtual_machines.begin_run_command(RG_WEB, "vm-web-01", {"commandId": "RunShellScript", "script": ["echo scan"]}).result()
    assert result.value[0].code == "ComponentStatus/StdOut/succeeded"
    snapshot = compute.snapshots.begin_create_or_update(RG_WEB, "vm-web-01-os-dr-m-4", {"location": "eastus", "properties": {
        "creationData": {"createOption": "Copy", "sourceResourceId": DISK_ID}}}).result()
    assert snapshot.provisioning_state == "Succeeded" and snapshot.disk_size_gb == 30
    vm = compute.virtual_machines.begin_update(RG_WEB, "vm-web-01", {"properties": {"storageProfile": {"osDisk": {"deleteOption": "Detach"}}}}).result()
    assert vm.storage_profile.os_disk.delete_option == "Detach"
    assert vm.storage_profile.os_disk.managed_disk.id == DISK_ID
    compute.virtual_machines.begin_reimage(RG_WEB, "vm-web-01", {"tempDisk": False}).result()
    actions = [a["action"] for r in state()["resources"] if r["id"].endswith("/vm-web-01") for a in r.get("x-sim-actions", [])]
    assert actions == ["restart", "runcommand", "reimage"]


@covers("ARM PUT virtualMachines/extensions (VMAccess, LRO)", "ARM PUT virtualMachines/runCommands (LRO)")
def test_change_vm_passwords(compute):
    extension = compute.virtual_machine_extensions.begin_create_or_update(RG_WEB, "vm-web-01", "enablevmaccess", {"location": "eastus", "properties": {
        "publisher": "Microsoft.OSTCExtensions", "type": "VMAccessForLinux", "typeHandlerVersion": "1.5", "autoUpgradeMinorVersion": True,
        "settings": {}, "protectedSettings": {"username": "azureuser", "password": "azure-sim-canary-vm-password"}}}).result()
    assert extension.provisioning_state == "Succeeded"
    run = compute.virtual_machine_run_commands.begin_create_or_update(RG_WEB, "vm-web-01", "dr-reset-all", {"location": "eastus", "properties": {
        "source": {"script": "reset-users.sh"}, "protectedParameters": [{"name": "secret", "value": "x"}]}}).result()
    assert run.provisioning_state == "Succeeded"


@covers("ARM POST storageAccounts/regenerateKey", "ARM PATCH storageAccounts (allowSharedKeyAccess)")
def test_rotate_storage_keys(credential):
    storage = mgmt(StorageManagementClient, credential, SUB, api_version="2025-01-01")
    before = {k.key_name: k.value for k in storage.storage_accounts.list_keys(RG_PAY, "stcontosopayments")["keys"]}
    after = {k.key_name: k.value for k in storage.storage_accounts.regenerate_key(RG_PAY, "stcontosopayments", {"keyName": "key1"})["keys"]}
    assert after["key1"] != before["key1"] and after["key2"] == before["key2"]
    account = storage.storage_accounts.update(RG_PAY, "stcontosopayments", {"properties": {"allowSharedKeyAccess": False}})
    assert account.allow_shared_key_access is False
    assert storage.storage_accounts.get_properties(RG_PAY, "stcontosopayments").key_creation_time.key1 is not None


@covers("ARM GET runbooks/{r}/content", "ARM DELETE runbooks/{r}", "ARM GET webhooks (list)", "ARM DELETE webhooks/{w}", "ARM POST jobs/{j}/stop", "ARM PUT runbooks/{r}", "ARM PUT runbooks/{r}/draft/content (LRO)", "ARM POST runbooks/{r}/publish (LRO)")
def test_remove_runbook_keeping_evidence_and_undo(automation):
    content = automation.runbook.get_content(RG_AA, "aa-contoso-ops", "Invoke-Persistence")
    text = b"".join(content).decode() if not isinstance(content, (str, bytes)) else content
    assert "New-AzRoleAssignment" in (text.decode() if isinstance(text, bytes) else text)
    saved = automation.runbook.get(RG_AA, "aa-contoso-ops", "Invoke-Persistence")
    hooks = list(automation.webhook.list_by_automation_account(RG_AA, "aa-contoso-ops"))
    assert [h.name for h in hooks] == ["wh-persistence"] and hooks[0].uri is None
    automation.job.stop(RG_AA, "aa-contoso-ops", "5d4c3b2a-1908-4f7e-a6d5-c4b3a2918070")
    automation.webhook.delete(RG_AA, "aa-contoso-ops", "wh-persistence")
    automation.runbook.delete(RG_AA, "aa-contoso-ops", "Invoke-Persistence")
    with pytest.raises(ResourceNotFoundError):
        automation.runbook.get(RG_AA, "aa-contoso-ops", "Invoke-Persistence")
    automation.runbook.create_or_update(RG_AA, "aa-contoso-ops", "Invoke-Persistence", {"location": "westeurope", "properties": {
        "runbookType": saved.runbook_type, "description": saved.description}})
    automation.runbook_draft.begin_replace_content(RG_AA, "aa-contoso-ops", "Invoke-Persistence", "Write-Output restored").result()
    automation.runbook.begin_publish(RG_AA, "aa-contoso-ops", "Invoke-Persistence").result()
    assert automation.runbook.get(RG_AA, "aa-contoso-ops", "Invoke-Persistence").state == "Published"
    jobs = [r for r in state()["resources"] if r["id"].endswith("/jobs/5d4c3b2a-1908-4f7e-a6d5-c4b3a2918070")]
    assert jobs[0]["properties"]["status"] == "Stopped"


@covers("ARM PATCH automationAccounts/credentials", "ARM PATCH automationAccounts/variables", "ARM PUT automationAccounts/certificates", "ARM POST agentRegistrationInformation/regenerateKey")
def test_rotate_automation_credentials(automation):
    credential = automation.credential.update(RG_AA, "aa-contoso-ops", "sql-admin", {"properties": {"userName": "sqladmin", "password": "azure-sim-canary-new"}})
    assert credential.user_name == "sqladmin"
    variable = automation.variable.update(RG_AA, "aa-contoso-ops", "api-token", {"properties": {"value": "\"rotated\"", "isEncrypted": True}})
    assert variable.is_encrypted is True and variable.value is None
    certificate = automation.certificate.create_or_update(RG_AA, "aa-contoso-ops", "signing", {"name": "signing", "properties": {"base64Value": "TUlJ", "isExportable": False}})
    assert certificate.name == "signing"
    keys = automation.agent_registration_information.regenerate_key(RG_AA, "aa-contoso-ops", {"keyName": "primary"})
    assert keys["keys"]["primary"] and keys["keys"]["secondary"]
    stored = [r for r in state()["resources"] if r["id"].endswith("/credentials/sql-admin")][0]
    assert stored["x-sim-password"] == "azure-sim-canary-new" and "password" not in stored["properties"]


@covers("ARM GET Microsoft.Resources/tags/default (resource, group, subscription)", "ARM GET subscriptions/{s}", "ARM GET resourceGroups/{rg}")
def test_contact_owner_reads_tags_at_every_scope(credential):
    resources = mgmt(ResourceManagementClient, credential, SUB)
    assert resources.tags.get_at_scope(VAULT_ID).properties.tags == {"owner": "payments-oncall@contoso.com"}
    assert resources.tags.get_at_scope(f"/subscriptions/{SUB}/resourceGroups/{RG_PAY}").properties.tags["owner"] == "payments-team@contoso.com"
    assert resources.tags.get_at_scope(f"/subscriptions/{SUB}").properties.tags["owner"] == "platform-team@contoso.com"
    assert resources.resource_groups.get(RG_WEB).location == "eastus"
    tags_call = requests_log(surface="arm", path="*/providers/Microsoft.Resources/tags/default")[0]
    assert tags_call["status"] == 200


@covers("ARM GET Microsoft.Security/locations/{loc}/alerts/{name}", "ARM POST alerts/{name}/inProgress|resolve|dismiss|activate")
def test_defender_alert_read_back_and_status(credential):
    security = mgmt(SecurityCenter, credential, SUB)
    alert = security.alerts.get_resource_group_level(RG_PAY, "westeurope", "2575094087140347022_83F891C3-F3FA-4DB4-AACA-DCF4DC5EF7A9")
    assert alert.alert_type == "KV_ListGetAnomaly" and alert.status == "Active"
    security.alerts.update_resource_group_level_state_to_in_progress(RG_PAY, "westeurope", alert.name)
    assert security.alerts.get_resource_group_level(RG_PAY, "westeurope", alert.name).status == "InProgress"
    sub_alert = "2520510593516293824_D79D8605-7C7F-44CA-82AF-197288C54AB2"
    security.alerts.update_subscription_level_state_to_resolve("centralus", sub_alert)
    assert security.alerts.get_subscription_level("centralus", sub_alert).status == "Resolved"
    security.alerts.update_subscription_level_state_to_dismiss("centralus", sub_alert)
    security.alerts.update_subscription_level_state_to_activate("centralus", sub_alert)
    assert security.alerts.get_subscription_level("centralus", sub_alert).status == "Active"
    with pytest.raises(ResourceNotFoundError):
        security.alerts.get_subscription_level("westeurope", "forged-alert")


@covers("ARM POST Microsoft.ResourceGraph/resources (resourcechanges)")
def test_revert_access_policy_finds_the_widening():
    reply = requests.post(f"{BASE}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01", verify=False,
                          headers={"Authorization": f"Bearer {token('https://management.azure.com')}"},
                          json={"subscriptions": [SUB], "query": f"resourcechanges | where properties.targetResourceId =~ '{VAULT_ID}'"})
    assert reply.status_code == 200
    rows = reply.json()["data"]
    assert len(rows) == 1 and rows[0]["properties"]["changeAttributes"]["operation"] == "Microsoft.KeyVault/vaults/accessPolicies/write"


@covers("ARM api-version check (NoRegisteredProviderFound / InvalidApiVersionParameter)", "ARM 404 ResourceNotFound / ResourceGroupNotFound")
def test_arm_errors_reach_the_sdk_with_their_codes(credential):
    wrong = mgmt(KeyVaultManagementClient, credential, SUB, api_version="2014-01-01")
    with pytest.raises(HttpResponseError) as unknown:
        wrong.vaults.get(RG_PAY, "kv-contoso-payments")
    assert unknown.value.status_code == 400 and unknown.value.error.code == "NoRegisteredProviderFound"
    bad = mgmt(KeyVaultManagementClient, credential, SUB, api_version="latest")
    with pytest.raises(HttpResponseError) as invalid:
        bad.vaults.get(RG_PAY, "kv-contoso-payments")
    assert invalid.value.error.code == "InvalidApiVersionParameter"
    right = mgmt(KeyVaultManagementClient, credential, SUB, api_version="2025-05-01")
    with pytest.raises(ResourceNotFoundError) as missing:
        right.vaults.get(RG_PAY, "kv-nope")
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_group:
        right.vaults.get("rg-nope", "kv-nope")
    assert no_group.value.error.code == "ResourceGroupNotFound"


@covers("ARM PUT disks from a snapshot (LRO)", "ARM PATCH virtualMachines osDisk.managedDisk.id (undo of reimage)")
def test_swap_back_to_the_saved_os_disk(compute):
    snapshot = compute.snapshots.begin_create_or_update(RG_WEB, "vm-web-01-os-saved", {"location": "eastus", "properties": {
        "creationData": {"createOption": "Copy", "sourceResourceId": DISK_ID}}}).result()
    disk = compute.disks.begin_create_or_update(RG_WEB, "vm-web-01-os-restored", {"location": "eastus", "properties": {
        "creationData": {"createOption": "Copy", "sourceResourceId": snapshot.id}}}).result()
    assert disk.provisioning_state == "Succeeded"
    compute.virtual_machines.begin_deallocate(RG_WEB, "vm-web-01").result()
    vm = compute.virtual_machines.begin_update(RG_WEB, "vm-web-01", {"properties": {"storageProfile": {"osDisk": {"managedDisk": {"id": disk.id}}}}}).result()
    assert vm.storage_profile.os_disk.managed_disk.id == disk.id
    assert compute.virtual_machines.get(RG_WEB, "vm-web-01").storage_profile.os_disk.managed_disk.id == disk.id
