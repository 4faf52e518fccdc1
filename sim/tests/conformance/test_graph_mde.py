"""Microsoft Graph v1.0 and Defender for Endpoint, raw HTTPS per their references (no official Python SDK for MDE)."""
from conftest import MALLORY_SP, covers, state

MALLORY = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a090"
ALICE = "2c3d4e5f-6a7b-48c9-9d0e-1f2a3b4c5d6e"
APP_ID = "c0ffee00-1234-4abc-9def-00c0ffee0001"
APP_OBJECT = "4d3c2b1a-0f9e-48d7-a6c5-b4a392817065"
VM_ID = "/subscriptions/4a9d62b4-c70d-4263-9280-1c7fce8ab0e7/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01"


@covers("Graph PATCH /users/{id} accountEnabled", "Graph POST /users/{id}/revokeSignInSessions", "Graph GET /users/{id}?$select")
def test_disable_a_user_and_revoke_sessions(graph):
    default = graph.get(f"/users/{MALLORY}").json()
    assert "accountEnabled" not in default and default["@odata.context"].endswith("#users/$entity")
    assert graph.patch(f"/users/{MALLORY}", json={"accountEnabled": False}).status_code == 204
    selected = graph.get(f"/users/{MALLORY}", params={"$select": "accountEnabled,mail"}).json()
    assert selected["accountEnabled"] is False and selected["mail"] == "mallory@contoso.com"
    revoked = graph.post(f"/users/{MALLORY}/revokeSignInSessions")
    assert revoked.status_code == 200 and revoked.json()["value"] is True


@covers("Graph PATCH /servicePrincipals/{id}", "Graph GET /servicePrincipals(appId='')")
def test_disable_a_service_principal(graph):
    assert graph.patch(f"/servicePrincipals/{MALLORY_SP}", json={"accountEnabled": False}).status_code == 204
    found = graph.get(f"/servicePrincipals(appId='{APP_ID}')", params={"$select": "id,appOwnerOrganizationId,accountEnabled"}).json()
    assert found["id"] == MALLORY_SP and found["accountEnabled"] is False and "displayName" not in found


@covers("Graph DELETE /users/{id}", "Graph POST /directory/deletedItems/{id}/restore", "Graph DELETE /servicePrincipals/{id}", "Graph DELETE /applications/{id}", "Graph 404 Request_ResourceNotFound")
def test_delete_and_restore_accounts(graph):
    assert graph.delete(f"/users/{MALLORY}").status_code == 204
    missing = graph.get(f"/users/{MALLORY}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert "innerError" in missing.json()["error"]
    restored = graph.post(f"/directory/deletedItems/{MALLORY}/restore")
    assert restored.status_code == 200 and restored.json()["@odata.type"] == "#microsoft.graph.user"
    assert graph.get(f"/users/{MALLORY}").status_code == 200
    assert graph.delete(f"/servicePrincipals/{MALLORY_SP}").status_code == 204
    assert graph.delete(f"/applications/{APP_OBJECT}").status_code == 204
    assert len(state()["graph"]["deletedItems"]) == 2


@covers("Graph GET roleManagement/directory/roleAssignments $filter $expand", "Graph GET roleManagement/directory/roleEligibilitySchedules", "Graph DELETE roleManagement/directory/roleAssignments/{id}", "Graph POST roleEligibilityScheduleRequests adminRemove", "Graph POST roleManagement/directory/roleAssignments", "Graph POST roleAssignmentScheduleRequests adminRemove")
def test_review_entra_roles(graph):
    active = graph.get("/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{MALLORY}'", "$expand": "roleDefinition"}).json()["value"]
    assert [a["roleDefinition"]["displayName"] for a in active] == ["Application Administrator"]
    eligible = graph.get("/roleManagement/directory/roleEligibilitySchedules", params={"$filter": f"principalId eq '{MALLORY}'"}).json()["value"]
    assert [e["roleDefinitionId"] for e in eligible] == ["62e90394-69f5-4237-9190-012177145e10"]
    assert graph.delete(f"/roleManagement/directory/roleAssignments/{active[0]['id']}").status_code == 204
    request = graph.post("/roleManagement/directory/roleEligibilityScheduleRequests", json={
        "action": "adminRemove", "principalId": MALLORY, "roleDefinitionId": eligible[0]["roleDefinitionId"], "directoryScopeId": "/", "justification": "dr-m-5"})
    assert request.status_code == 201 and request.json()["status"] == "Revoked"
    again = graph.post("/roleManagement/directory/roleAssignments", json={"principalId": MALLORY, "roleDefinitionId": active[0]["roleDefinitionId"], "directoryScopeId": "/"})
    assert again.status_code == 201
    active_pim = graph.post("/roleManagement/directory/roleAssignmentScheduleRequests", json={
        "action": "adminRemove", "principalId": MALLORY, "roleDefinitionId": active[0]["roleDefinitionId"], "directoryScopeId": "/"})
    assert active_pim.status_code == 201 and active_pim.json()["status"] == "Revoked"
    assert graph.get("/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{MALLORY}'"}).json()["value"] == []
    bad = graph.get("/roleManagement/directory/roleAssignments", params={"$filter": "principalId ne 'x'"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"


@covers("Graph POST /applications/{id}/addPassword", "Graph POST /applications/{id}/removePassword", "Graph POST /servicePrincipals/{id}/addPassword", "Graph DELETE /applications/{id}/federatedIdentityCredentials/{fic}")
def test_reset_service_principal_credentials(graph):
    added = graph.post(f"/applications/{APP_OBJECT}/addPassword", json={"passwordCredential": {"displayName": "dr-m-6", "endDateTime": "2027-06-01T00:00:00Z"}}).json()
    assert added["secretText"] and added["displayName"] == "dr-m-6" and added["hint"] == added["secretText"][:3]
    app = graph.get(f"/applications/{APP_OBJECT}").json()
    assert {c["displayName"] for c in app["passwordCredentials"]} == {"ci", "dr-m-6"}
    assert all(c["secretText"] is None for c in app["passwordCredentials"])
    assert graph.post(f"/applications/{APP_OBJECT}/removePassword", json={"keyId": "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f"}).status_code == 204
    assert graph.post(f"/applications/{APP_OBJECT}/removePassword", json={"keyId": "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f"}).status_code == 400
    assert graph.post(f"/servicePrincipals/{MALLORY_SP}/addPassword", json={"passwordCredential": {"displayName": "dr-m-7"}}).status_code == 200
    fics = graph.get(f"/applications/{APP_OBJECT}/federatedIdentityCredentials").json()["value"]
    assert graph.delete(f"/applications/{APP_OBJECT}/federatedIdentityCredentials/{fics[0]['id']}").status_code == 204


@covers("Graph PATCH /users/{id} passwordProfile")
def test_reset_a_user_password(graph):
    reply = graph.patch(f"/users/{MALLORY}", json={"passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "azure-sim-canary-user-pw"}})
    assert reply.status_code == 204
    stored = [u for u in state()["graph"]["users"] if u["id"] == MALLORY][0]
    assert "passwordProfile" not in graph.get(f"/users/{MALLORY}", params={"$select": "passwordProfile,id"}).json()
    assert stored["x-sim-passwordProfile"]["forceChangePasswordNextSignIn"] is True


@covers("Graph GET /applications(appId='')/owners", "Graph GET /directoryRoles(roleTemplateId='')/members", "Graph POST /users/{id}/sendMail")
def test_notification_reads_and_mail(graph):
    owners = graph.get(f"/applications(appId='{APP_ID}')/owners").json()["value"]
    assert [(o["@odata.type"], o["mail"]) for o in owners] == [("#microsoft.graph.user", "alice@contoso.com")]
    admins = graph.get("/directoryRoles(roleTemplateId='62e90394-69f5-4237-9190-012177145e10')/members").json()["value"]
    assert [a["userPrincipalName"] for a in admins] == ["alice@contoso.com"]
    sent = graph.post(f"/users/{ALICE}/sendMail", json={"message": {"subject": "Key Vault alert", "body": {"contentType": "HTML", "content": "<p>hi</p>"},
        "toRecipients": [{"emailAddress": {"address": "payments-team@contoso.com"}}],
        "internetMessageHeaders": [{"name": "X-DR-Message-Id", "value": "m-8"}]}, "saveToSentItems": False})
    assert sent.status_code == 202
    assert state()["graph"]["sentMail"][0]["request"]["message"]["subject"] == "Key Vault alert"
    no_recipient = graph.post(f"/users/{ALICE}/sendMail", json={"message": {"subject": "x"}})
    assert no_recipient.status_code == 400


@covers("MDE GET /api/machines?$filter", "MDE POST /api/machines/{id}/isolate", "MDE GET /api/machineactions/{id} Pending->Succeeded", "MDE POST /api/machines/{id}/unisolate")
def test_mde_isolation(mde):
    machines = mde.get("/machines", params={"$filter": f"vmMetadata/resourceId eq '{VM_ID}'"}).json()["value"]
    assert [m["computerDnsName"] for m in machines] == ["vm-web-01.contoso.internal"]
    action = mde.post(f"/machines/{machines[0]['id']}/isolate", json={"Comment": "dr-m-9: isolate", "IsolationType": "Full"})
    assert action.status_code == 201 and action.json()["status"] == "Pending" and action.json()["type"] == "Isolate"
    statuses = [mde.get(f"/machineactions/{action.json()['id']}").json()["status"] for _ in range(2)]
    assert statuses == ["Pending", "Succeeded"]
    assert state()["mde"]["machines"][0]["x-sim-isolation"] == "Full"
    undo = mde.post(f"/machines/{machines[0]['id']}/unisolate", json={"Comment": "dr-m-9: undo"})
    assert undo.status_code == 201


@covers("MDE POST /api/machines/{id}/runAntiVirusScan (400 already in progress)")
def test_mde_scan_is_naturally_idempotent(mde):
    machine = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
    first = mde.post(f"/machines/{machine}/runAntiVirusScan", json={"Comment": "dr-m-10", "ScanType": "Full"})
    assert first.status_code == 201
    second = mde.post(f"/machines/{machine}/runAntiVirusScan", json={"Comment": "dr-m-10", "ScanType": "Full"})
    assert second.status_code == 400 and second.json()["error"]["message"] == "Action is already in progress"
