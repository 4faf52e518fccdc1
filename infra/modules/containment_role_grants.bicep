// Assigns the given built-in roles to the responder's identity on one protected resource group.
//
// Called by containment_roles.bicep once per protected resource group with the roles the enabled
// actions need (already deduplicated there). Assignment names are guid(scope, principal, role),
// so re-deployments are idempotent.

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@description('Roles to assign: { role: display name, id: built-in role definition GUID, selfGuard: bool }.')
param roles array

@description('ABAC condition put on role-assignment roles (selfGuard): no assignment for the responder itself.')
param selfGuardCondition string

resource grants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in roles: {
  name: guid(resourceGroup().id, principalId, role.id)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'defender-responder containment: ${role.role}'
    condition: role.selfGuard ? selfGuardCondition : null
    conditionVersion: role.selfGuard ? '2.0' : null
  }
}]
