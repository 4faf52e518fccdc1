// The function app identity's Azure roles for containment and rotation, per enabled action.
//
// The catalog below says which built-in role each action needs (docs/deploy.md, "Roles per
// action", explains why each is the least). Only roles an enabled action needs are assigned,
// each once however many actions need it, at the narrowest scope the deployment can name: each
// protected resource group, or the subscription when containmentScope is 'subscription'.
// Security Admin is always at the subscription: the worker reads the alert back from Defender
// for Cloud (a subscription-level list) before any live change, and marks it InProgress.
//
// Graph and Defender for Endpoint permissions are app roles an administrator grants once; they
// cannot be assigned by an ARM deployment. The permissionCatalog is output (filtered by the
// enabled actions) so the admin-consent commands in docs/deploy.md can read it.
//
// The drift test in tests/functions/infra.rs reads the two catalogs between their BEGIN/END
// markers: keep one `role:`/`permission:` line per entry and one quoted action per line.

targetScope = 'subscription'

@description('Object id of the function app\'s system-assigned identity.')
param principalId string

@description('Containment and rotation actions the deployed policy can run (mode auto or approval).')
param enabledActions array

@description('Names of the resource groups, in this subscription, whose resources the responder may contain.')
param protectedResourceGroups array

@description('resourceGroups: roles on each protected resource group. subscription: roles on the whole subscription.')
@allowed([
  'resourceGroups'
  'subscription'
])
param containmentScope string

// BEGIN containment-roles
var roleCatalog = [
  {
    role: 'Security Admin'
    id: 'fb1c8493-542b-48eb-b624-b4c8fea62acd'
    scope: 'subscription'
    selfGuard: false
    actions: [
      'enable_key_vault_firewall'
      'restrict_principal'
      'revert_access_policy'
      'isolate_resource_network'
      'remove_role_assignments'
      'review_entra_roles'
      'disable_account'
      'delete_unfamiliar_account'
      'remove_runbook'
      'run_antimalware_scan'
      'reimage_vm'
      'rotate_secret'
      'disable_secret'
      'rotate_key'
      'rotate_certificate'
      'rotate_storage_keys'
      'reset_credentials'
      'rotate_automation_credentials'
      'change_vm_passwords'
    ]
  }
  {
    role: 'Reader'
    id: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
    scope: 'protected'
    selfGuard: false
    actions: [
      'revert_access_policy'
      'isolate_resource_network'
      'rotate_secret'
      'rotate_storage_keys'
      'rotate_automation_credentials'
    ]
  }
  {
    role: 'Key Vault Contributor'
    id: 'f25e0fa2-a7c8-4377-a976-54943a77a395'
    scope: 'protected'
    selfGuard: false
    actions: [
      'enable_key_vault_firewall'
      'restrict_principal'
      'revert_access_policy'
    ]
  }
  {
    role: 'Key Vault Data Access Administrator'
    id: '8b54135c-b56d-4d72-a534-26097cfdc8d8'
    scope: 'protected'
    selfGuard: false
    actions: [
      'restrict_principal'
    ]
  }
  {
    role: 'Network Contributor'
    id: '4d97b98b-1d4f-4787-a291-c67834d212e7'
    scope: 'protected'
    selfGuard: false
    actions: [
      'isolate_resource_network'
    ]
  }
  {
    role: 'User Access Administrator'
    id: '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9'
    scope: 'protected'
    selfGuard: true
    actions: [
      'remove_role_assignments'
    ]
  }
  {
    role: 'Role Based Access Control Administrator'
    id: 'f58310d9-a9f6-439a-9e8d-f62e7b41a168'
    scope: 'protected'
    selfGuard: true
    actions: [
      'delete_unfamiliar_account'
    ]
  }
  {
    role: 'Automation Contributor'
    id: 'f353d9bd-d4a6-484e-a77a-8050b599b867'
    scope: 'protected'
    selfGuard: false
    actions: [
      'remove_runbook'
    ]
  }
  {
    role: 'Virtual Machine Contributor'
    id: '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'
    scope: 'protected'
    selfGuard: false
    actions: [
      'run_antimalware_scan'
      'reimage_vm'
      'change_vm_passwords'
    ]
  }
  {
    role: 'Disk Snapshot Contributor'
    id: '7efff54f-a5b4-42b5-a1c5-5411624893ce'
    scope: 'protected'
    selfGuard: false
    actions: [
      'reimage_vm'
    ]
  }
  {
    role: 'Key Vault Secrets Officer'
    id: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
    scope: 'protected'
    selfGuard: false
    actions: [
      'rotate_secret'
      'disable_secret'
      'reset_credentials'
      'change_vm_passwords'
    ]
  }
  {
    role: 'Key Vault Crypto Officer'
    id: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
    scope: 'protected'
    selfGuard: false
    actions: [
      'rotate_key'
    ]
  }
  {
    role: 'Key Vault Certificates Officer'
    id: 'a4417e6f-fecd-4de8-b567-7b0420556985'
    scope: 'protected'
    selfGuard: false
    actions: [
      'rotate_certificate'
    ]
  }
  {
    role: 'Storage Account Key Operator Service Role'
    id: '81a9662b-bebf-436f-a333-f67b29880f12'
    scope: 'protected'
    selfGuard: false
    actions: [
      'rotate_secret'
      'rotate_storage_keys'
    ]
  }
]
// END containment-roles

// BEGIN app-permissions
var permissionCatalog = [
  {
    permission: 'User.Read.All'
    api: 'Microsoft Graph'
    actions: [
      'review_entra_roles'
      'disable_account'
      'delete_unfamiliar_account'
    ]
  }
  {
    permission: 'User.EnableDisableAccount.All'
    api: 'Microsoft Graph'
    actions: [
      'disable_account'
      'delete_unfamiliar_account'
    ]
  }
  {
    permission: 'User.RevokeSessions.All'
    api: 'Microsoft Graph'
    actions: [
      'disable_account'
      'delete_unfamiliar_account'
    ]
  }
  {
    permission: 'User.DeleteRestore.All'
    api: 'Microsoft Graph'
    actions: [
      'delete_unfamiliar_account'
    ]
  }
  {
    permission: 'Application.Read.All'
    api: 'Microsoft Graph'
    actions: [
      'review_entra_roles'
      'reset_credentials'
    ]
  }
  {
    permission: 'Application.ReadWrite.OwnedBy'
    api: 'Microsoft Graph'
    actions: [
      'reset_credentials'
    ]
  }
  {
    permission: 'Application.ReadWrite.All'
    api: 'Microsoft Graph'
    actions: [
      'disable_account'
      'delete_unfamiliar_account'
    ]
  }
  {
    permission: 'RoleManagement.ReadWrite.Directory'
    api: 'Microsoft Graph'
    actions: [
      'review_entra_roles'
    ]
  }
  {
    permission: 'Machine.Read.All'
    api: 'WindowsDefenderATP'
    actions: [
      'isolate_resource_network'
      'run_antimalware_scan'
    ]
  }
  {
    permission: 'Machine.Isolate'
    api: 'WindowsDefenderATP'
    actions: [
      'isolate_resource_network'
    ]
  }
  {
    permission: 'Machine.Scan'
    api: 'WindowsDefenderATP'
    actions: [
      'run_antimalware_scan'
    ]
  }
]
// END app-permissions

var atSubscription = containmentScope == 'subscription'
var grantedRoles = filter(roleCatalog, role => !empty(intersection(role.actions, enabledActions)))
var subscriptionRoles = filter(grantedRoles, role => role.scope == 'subscription' || atSubscription)
var resourceGroupRoles = filter(grantedRoles, role => role.scope == 'protected' && !atSubscription)
var grantedPermissions = filter(permissionCatalog, entry => !empty(intersection(entry.actions, enabledActions)))

// Role-assignment roles may create assignments for anyone but the responder itself, so an
// alert can never make the responder widen its own access (ABAC condition, version 2.0).
var selfGuardCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals {${principalId}}))'

resource subscriptionGrants 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in subscriptionRoles: {
  name: guid(subscription().id, principalId, role.id)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'defender-responder containment: ${role.role}'
    condition: role.selfGuard ? selfGuardCondition : null
    conditionVersion: role.selfGuard ? '2.0' : null
  }
}]

module resourceGroupGrants 'containment_role_grants.bicep' = [for group in (atSubscription ? [] : protectedResourceGroups): {
  name: take('${deployment().name}-${group}', 64)
  scope: resourceGroup(group)
  params: {
    principalId: principalId
    roles: resourceGroupRoles
    selfGuardCondition: selfGuardCondition
  }
}]

@description('Built-in roles assigned for the enabled actions (names).')
output grantedRoleNames array = [for role in grantedRoles: role.role]

@description('Microsoft Graph application permissions the enabled actions need (admin consent, docs/deploy.md).')
output graphPermissions array = [for entry in filter(grantedPermissions, p => p.api == 'Microsoft Graph'): entry.permission]

@description('Defender for Endpoint (WindowsDefenderATP) application permissions the enabled actions need.')
output defenderForEndpointPermissions array = [for entry in filter(grantedPermissions, p => p.api == 'WindowsDefenderATP'): entry.permission]
