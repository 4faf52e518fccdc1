// defender-responder: everything in one resource group, deployed with
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
// See docs/deploy.md. First deployment of a new environment is two steps (the Event Grid
// subscription needs the DefenderAlert function to exist, i.e. code published):
//   1. deploy with deployEventSubscription=false, 2. publish the zip, 3. deploy again (default).
//
// Flow: Defender for Cloud alert -> workflow automation -> Consumption Logic App -> Event Grid
// custom topic -> event subscription -> DefenderAlert function (Rust custom handler) -> Service
// Bus queues notification / isolation / rotation.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Naming and placement
// ---------------------------------------------------------------------------------------------

@description('Azure region for every resource (must offer Flex Consumption when planSku is FC1: az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short prefix for resource names: 3-11 lowercase letters, digits or hyphens.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'defresp'

@description('Tags applied to every resource.')
param tags object = {
  application: 'defender-responder'
}

// ---------------------------------------------------------------------------------------------
// Function app hosting
// ---------------------------------------------------------------------------------------------

@description('FC1 = Flex Consumption (default, scales to zero). EP1/EP2/EP3 = Elastic Premium (always-ready instances).')
@allowed([
  'FC1'
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'FC1'

@description('Zone-redundant hosting plan (region must support availability zones).')
param zoneRedundant bool = false

@description('Flex Consumption: maximum instances (the platform accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int = 40

@description('Flex Consumption: instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int = 2048

@description('Elastic Premium: maximum burst instances.')
@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int = 3

@description('Elastic Premium: always-ready instances.')
@minValue(1)
@maxValue(20)
param premiumMinimumInstanceCount int = 1

// ---------------------------------------------------------------------------------------------
// Network exposure (see docs/deploy.md "Network access")
// ---------------------------------------------------------------------------------------------

@description('Function app public network access. Event Grid delivers to DefenderAlert over the public endpoint: Disabled stops alert delivery.')
@allowed([
  'Enabled'
  'Disabled'
])
param functionAppPublicNetworkAccess string = 'Enabled'

@description('Storage account public network access. Disabled needs private endpoints and VNet integration (not created here).')
@allowed([
  'Enabled'
  'Disabled'
])
param storagePublicNetworkAccess string = 'Enabled'

@description('Service Bus public network access. Disabled needs Premium + private endpoint + VNet integration (not created here).')
@allowed([
  'Enabled'
  'Disabled'
])
param serviceBusPublicNetworkAccess string = 'Enabled'

@description('Event Grid topic public network access. The Consumption Logic App publishes over the public endpoint: Disabled stops the bridge.')
@allowed([
  'Enabled'
  'Disabled'
])
param eventGridPublicNetworkAccess string = 'Enabled'

// ---------------------------------------------------------------------------------------------
// Storage and monitoring
// ---------------------------------------------------------------------------------------------

@description('Storage replication for the function app account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_LRS'

@description('Days deleted blobs and containers (including dead-lettered alerts) stay recoverable.')
@minValue(1)
@maxValue(365)
param storageSoftDeleteDays int = 7

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Application Insights accepts only Entra ID authenticated telemetry (the app uses its identity).')
param appInsightsDisableLocalAuth bool = true

// ---------------------------------------------------------------------------------------------
// Service Bus
// ---------------------------------------------------------------------------------------------

@description('Service Bus tier.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Premium messaging units (ignored for Standard).')
@allowed([
  1
  2
  4
  8
  16
])
param serviceBusPremiumCapacity int = 1

@description('Session-enabled queues. Also sets RESPONDER_SB_SESSIONS so the code sends session ids. Changing it on existing queues requires deleting them first.')
param useSessions bool = false

@description('Duplicate detection window, ISO 8601 (PT20S..P7D). Message ids are deterministic, so a redelivered alert inside this window produces no second task. Keep it at least eventTimeToLiveInMinutes (Event Grid retries for up to 24 hours): P1D or longer.')
param duplicateDetectionWindow string = 'P1D'

@description('Deliveries before a task message is dead-lettered.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 10

@description('Peek-lock duration, ISO 8601 (max PT5M).')
param lockDuration string = 'PT1M'

@description('Queues\' default message TTL in seconds (14 days). The effective value is never below messageTtlSeconds.')
@minValue(60)
param queueMessageTtlSeconds int = 1209600

@description('TTL the code sets on each task (RESPONDER_SB_MESSAGE_TTL_SECONDS).')
@minValue(60)
param messageTtlSeconds int = 86400

// ---------------------------------------------------------------------------------------------
// Event Grid ingress
// ---------------------------------------------------------------------------------------------

@description('Create the topic -> DefenderAlert subscription and the Defender bridge. Set false on the FIRST deployment of an environment (the function does not exist until code is published), then re-run with true.')
param deployEventSubscription bool = true

@description('Event Grid delivery attempts per event (1-30).')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before dead-lettering it (1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Events per delivery to the function. 1 = one alert per invocation, retried independently.')
@minValue(1)
@maxValue(5000)
param eventMaxEventsPerBatch int = 1

// ---------------------------------------------------------------------------------------------
// Defender for Cloud bridge
// ---------------------------------------------------------------------------------------------

@description('Deploy the workflow automation + Logic App bridge (only when deployEventSubscription is true, so alerts never reach a topic without a subscriber).')
param deployDefenderBridge bool = true

@description('Alert severities forwarded by the workflow automation (Informational, Low, Medium, High).')
@minLength(1)
param alertSeverities array = [
  'Low'
  'Medium'
  'High'
]

@description('AlertType prefixes forwarded: KV_ = Defender for Key Vault, AzureDNS_ = Defender for DNS, ARM_ and RM_ = Defender for Resource Manager. Empty array = all alert types.')
param alertTypePrefixes array = [
  'KV_'
  'AzureDNS_'
  'ARM_'
  'RM_'
]

@description('Also forward Defender sample alerts (AlertType SIMULATED_<type>), so the pipeline can be tested end to end. The responder is expected to treat them as test alerts.')
param forwardSimulatedAlerts bool = true

@description('Scopes the workflow automation watches (subscription or resource group ids in THIS subscription). Empty = this subscription.')
param automationScopePaths array = []

@description('Hide alert content in the Logic App run history.')
param logicAppSecureRunHistory bool = true

// ---------------------------------------------------------------------------------------------
// Responder behaviour (app settings read by the Rust code)
// ---------------------------------------------------------------------------------------------

@description('Safe by default: plan and notify, but mark containment (isolation/rotation) tasks as dry-run. Set false once the plans look right.')
param dryRun bool = true

@description('NCRONTAB schedule of the DecisionSweeper timer (expires stale decisions, queues approved tasks again).')
param sweepSchedule string = '0 */5 * * * *'

@description('Hours a task waits for a decision before it expires.')
@minValue(1)
@maxValue(720)
param decisionTimeoutHours int = 72

@description('Client id of the Entra app registration approvers sign in with (App Service Authentication in front of the decision route). Empty: not configured; see docs/deploy.md.')
param decisionAuthClientId string = ''

@description('Comma-separated Entra tenant ids considered internal (RESPONDER_TENANT_IDS).')
param tenantIds string = subscription().tenantId

@description('Comma-separated trusted CIDRs (RESPONDER_TRUSTED_IP_RANGES).')
param trustedIpRanges string = ''

@description('Comma-separated notification recipients (RESPONDER_NOTIFY_RECIPIENTS).')
param notifyRecipients string = ''

@description('Tag name holding a resource\'s owner (RESPONDER_OWNER_TAG).')
param ownerTag string = 'owner'

@description('Optional policy file path inside the package (RESPONDER_POLICY_FILE); empty = not set.')
param policyFile string = ''

@description('Extra comma-separated object ids whose actions the responder must never act on (added to the app\'s own identity in RESPONDER_SELF_OBJECT_IDS).')
param additionalSelfObjectIds string = ''

@description('RUST_LOG filter.')
param rustLog string = 'info'

// ---------------------------------------------------------------------------------------------
// Containment roles (see docs/deploy.md "Roles per action")
// ---------------------------------------------------------------------------------------------

@description('Containment and rotation actions the deployed policy can run (every action it does not make notify_only). Each gets its least-privilege roles; Security Admin on the subscription is granted whenever the list is not empty. Default: every action, as the default policy (default_mode approval) can run them all once approved.')
@allowed([
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
])
param enabledActions array = [
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

@description('Resource groups in this subscription whose resources the responder may contain: the enabled actions\' roles are assigned on each. Empty: none (only Security Admin on the subscription).')
param protectedResourceGroups array = []

@description('resourceGroups: roles on each of protectedResourceGroups. subscription: roles on the whole subscription (opt in; needed for subscription-level role assignments and resources outside named groups).')
@allowed([
  'resourceGroups'
  'subscription'
])
param containmentScope string = 'resourceGroups'

// ---------------------------------------------------------------------------------------------
// Contract with the code
// ---------------------------------------------------------------------------------------------

// The Event Grid-triggered function folder (DefenderAlert/function.json). The drift test in
// tests/ checks this literal against the code.
var defenderAlertFunctionName = 'DefenderAlert'

// eventType the bridge stamps on events and the subscription filters on.
var alertEventType = 'DefenderResponder.SecurityAlert'

var prefix = toLower(namePrefix)
var token = toLower(uniqueString(subscription().id, resourceGroup().id, prefix))
var names = {
  functionApp: 'func-${prefix}-${token}'
  plan: 'plan-${prefix}-${token}'
  // Storage: 3-24 lowercase letters and digits only.
  storage: take('st${replace(prefix, '-', '')}${token}', 24)
  workspace: 'log-${prefix}-${token}'
  appInsights: 'appi-${prefix}-${token}'
  serviceBus: 'sb-${prefix}-${token}'
  topic: 'evgt-${prefix}-${token}'
  logicApp: 'logic-${prefix}-${token}'
  automation: '${prefix}-alerts-to-eventgrid'
}
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
var isFlex = planSku == 'FC1'
var watchedScopes = empty(automationScopePaths) ? [
  subscription().id
] : automationScopePaths
var bridgeEnabled = deployEventSubscription && deployDefenderBridge

module monitoring 'modules/monitoring.bicep' = {
  name: take('${deployment().name}-monitoring', 64)
  params: {
    location: location
    tags: tags
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    retentionInDays: logRetentionInDays
    disableLocalAuth: appInsightsDisableLocalAuth
  }
}

module storage 'modules/storage.bicep' = {
  name: take('${deployment().name}-storage', 64)
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    skuName: storageSku
    publicNetworkAccess: storagePublicNetworkAccess
    // Flex deploys into it; Elastic Premium runs from the package blob in it.
    createDeploymentContainer: true
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    softDeleteRetentionDays: storageSoftDeleteDays
  }
}

module serviceBus 'modules/service_bus.bicep' = {
  name: take('${deployment().name}-serviceBus', 64)
  params: {
    location: location
    tags: tags
    namespaceName: names.serviceBus
    skuName: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    zoneRedundant: zoneRedundant
    publicNetworkAccess: serviceBusPublicNetworkAccess
    requiresSession: useSessions
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    // Invariant RESPONDER_SB_MESSAGE_TTL_SECONDS <= queue TTL holds by construction.
    defaultMessageTimeToLiveSeconds: max(queueMessageTtlSeconds, messageTtlSeconds)
  }
}

module eventGrid 'modules/event_grid.bicep' = {
  name: take('${deployment().name}-eventGrid', 64)
  params: {
    location: location
    tags: tags
    topicName: names.topic
    publicNetworkAccess: eventGridPublicNetworkAccess
  }
}

module functionApp 'modules/function_app.bicep' = {
  name: take('${deployment().name}-functionApp', 64)
  params: {
    location: location
    tags: tags
    functionAppName: names.functionApp
    planName: names.plan
    planSku: planSku
    zoneRedundant: zoneRedundant
    flexMaximumInstanceCount: flexMaximumInstanceCount
    flexInstanceMemoryMB: flexInstanceMemoryMB
    premiumMaximumElasticWorkerCount: premiumMaximumElasticWorkerCount
    premiumMinimumInstanceCount: premiumMinimumInstanceCount
    publicNetworkAccess: functionAppPublicNetworkAccess
    storageAccountName: storage.outputs.storageAccountName
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    appInsightsEntraIngestion: monitoring.outputs.requiresEntraIngestion
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    notificationQueueName: serviceBus.outputs.notificationQueueName
    isolationQueueName: serviceBus.outputs.isolationQueueName
    rotationQueueName: serviceBus.outputs.rotationQueueName
    useSessions: useSessions
    messageTtlSeconds: messageTtlSeconds
    dryRun: dryRun
    journalContainerName: storage.outputs.journalContainerName
    sweepSchedule: sweepSchedule
    decisionTimeoutHours: decisionTimeoutHours
    decisionAuthClientId: decisionAuthClientId
    tenantIds: tenantIds
    trustedIpRanges: trustedIpRanges
    notifyRecipients: notifyRecipients
    ownerTag: ownerTag
    policyFile: policyFile
    additionalSelfObjectIds: additionalSelfObjectIds
    rustLog: rustLog
  }
}

module roles 'modules/role_assignments.bicep' = {
  name: take('${deployment().name}-roleAssignments', 64)
  params: {
    functionAppPrincipalId: functionApp.outputs.principalId
    topicPrincipalId: eventGrid.outputs.principalId
    storageAccountName: storage.outputs.storageAccountName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    journalContainerName: storage.outputs.journalContainerName
    serviceBusNamespaceName: serviceBus.outputs.namespaceName
    queueNames: serviceBus.outputs.queueNames
    appInsightsName: monitoring.outputs.appInsightsName
    grantTelemetryPublisher: appInsightsDisableLocalAuth
  }
}

// The identity's roles on the resources it contains: per enabled action, at the subscription
// (Security Admin, or everything when containmentScope is 'subscription') and per protected
// resource group. Deployed at subscription scope, so the deployer needs User Access
// Administrator (or Owner) there.
module containmentRoles 'modules/containment_roles.bicep' = {
  name: take('${deployment().name}-containmentRoles', 64)
  scope: subscription()
  params: {
    principalId: functionApp.outputs.principalId
    enabledActions: enabledActions
    protectedResourceGroups: protectedResourceGroups
    containmentScope: containmentScope
  }
}

// App settings are applied after the roles exist, so the host's first start can already reach
// its storage and telemetry with its identity.
module appSettings 'modules/app_settings.bicep' = {
  name: take('${deployment().name}-appSettings', 64)
  params: {
    functionAppName: functionApp.outputs.functionAppName
    appSettings: functionApp.outputs.appSettings
  }
  dependsOn: [
    roles
  ]
}

module eventSubscription 'modules/event_subscription.bicep' = if (deployEventSubscription) {
  name: take('${deployment().name}-eventSubscription', 64)
  params: {
    topicName: eventGrid.outputs.topicName
    functionAppId: functionApp.outputs.functionAppId
    functionName: defenderAlertFunctionName
    eventType: alertEventType
    deadLetterStorageAccountId: storage.outputs.storageAccountId
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    maxEventsPerBatch: eventMaxEventsPerBatch
  }
  dependsOn: [
    // The topic identity must be able to write dead letters before the subscription exists,
    // and the app must be configured before Event Grid starts delivering.
    roles
    appSettings
  ]
}

module defenderBridge 'modules/defender_bridge.bicep' = if (bridgeEnabled) {
  name: take('${deployment().name}-defenderBridge', 64)
  params: {
    location: location
    tags: tags
    logicAppName: names.logicApp
    automationName: names.automation
    topicName: eventGrid.outputs.topicName
    topicEndpoint: eventGrid.outputs.endpoint
    eventType: alertEventType
    alertSeverities: alertSeverities
    alertTypePrefixes: alertTypePrefixes
    forwardSimulatedAlerts: forwardSimulatedAlerts
    automationScopePaths: watchedScopes
    secureRunHistory: logicAppSecureRunHistory
  }
  dependsOn: [
    // Only start forwarding alerts once something is subscribed to the topic.
    eventSubscription
  ]
}

@description('Function app name (publish target).')
output functionAppName string = functionApp.outputs.functionAppName

@description('Plan kind: FlexConsumption or ElasticPremium (selects the publish command in docs/deploy.md).')
output hostingPlan string = isFlex ? 'FlexConsumption' : 'ElasticPremium'

@description('Elastic Premium: the package blob the app runs from (upload dist/defender-responder.zip there); empty on Flex.')
output premiumPackageUrl string = functionApp.outputs.premiumPackageUrl

@description('Object id of the function app identity (also in RESPONDER_SELF_OBJECT_IDS).')
output functionAppPrincipalId string = functionApp.outputs.principalId

@description('Resource id of the DefenderAlert function (the Event Grid destination).')
output defenderAlertFunctionResourceId string = '${functionApp.outputs.functionAppId}/functions/${defenderAlertFunctionName}'

@description('Event Grid topic name.')
output eventGridTopicName string = eventGrid.outputs.topicName

@description('Event Grid topic publish endpoint.')
output eventGridTopicEndpoint string = eventGrid.outputs.endpoint

@description('eventType to use when publishing test events.')
output alertEventType string = alertEventType

@description('Service Bus namespace name.')
output serviceBusNamespaceName string = serviceBus.outputs.namespaceName

@description('Service Bus namespace FQDN.')
output serviceBusNamespaceFqdn string = serviceBus.outputs.fullyQualifiedNamespace

@description('Task queues: notification, isolation, rotation.')
output queueNames array = serviceBus.outputs.queueNames

@description('Bridge Logic App name (empty until deployEventSubscription and deployDefenderBridge are true).')
output logicAppName string = bridgeEnabled ? names.logicApp : ''

@description('Defender workflow automation name (empty until the bridge is deployed).')
output workflowAutomationName string = bridgeEnabled ? names.automation : ''

@description('Function app storage account (dead letters in container eventgrid-deadletter).')
output storageAccountName string = storage.outputs.storageAccountName

@description('Application Insights name.')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Built-in roles assigned to the app identity for the enabled actions (docs/deploy.md "Roles per action").')
output containmentRoleNames array = containmentRoles.outputs.grantedRoleNames

@description('Microsoft Graph application permissions the enabled actions need: grant them once (docs/deploy.md "Admin consent").')
output graphPermissions array = containmentRoles.outputs.graphPermissions

@description('Defender for Endpoint (WindowsDefenderATP) application permissions the enabled actions need.')
output defenderForEndpointPermissions array = containmentRoles.outputs.defenderForEndpointPermissions
