// Least-privilege role assignments for the function app and the Event Grid topic.
//
// Every assignment is scoped to the narrowest resource that works and named
// guid(scope, principal, role) so re-deployments are idempotent. The bridge Logic App's single
// assignment (EventGrid Data Sender on the topic) lives in defender_bridge.bicep next to the
// Logic App, because that app is only created in the second deployment step.
//
// Deliberately NOT granted:
//  * Azure Service Bus Data Owner, or any role on the namespace: the app sends to and receives
//    from its three queues only (Data Sender and Data Receiver per queue).
//  * Storage Queue Data Contributor: the Functions host only needs queues for blob triggers,
//    Durable Functions or queue triggers, and this app has none.
//  * Storage Account Contributor / keys: shared-key access is disabled on the account.

@description('Object id of the function app\'s system-assigned identity.')
param functionAppPrincipalId string

@description('Object id of the Event Grid topic\'s system-assigned identity.')
param topicPrincipalId string

@description('Function app storage account name.')
param storageAccountName string

@description('Dead-letter container in that account.')
param deadLetterContainerName string

@description('The workers\' journal container in that account.')
param journalContainerName string

@description('Service Bus namespace name.')
param serviceBusNamespaceName string

@description('Queues the function app sends to.')
param queueNames array

@description('Application Insights component name.')
param appInsightsName string

@description('Grant Monitoring Metrics Publisher (only needed when telemetry ingestion uses Entra ID).')
param grantTelemetryPublisher bool

// Built-in role definition ids (same in every Azure cloud).
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource journalContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: journalContainerName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = [for name in queueNames: {
  parent: namespace
  name: name
}]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Function app -> each task queue: send only. Scoped per QUEUE, not the namespace, so the
// identity cannot send to (or create) any other entity in the namespace.
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in queueNames: {
  name: guid(queues[i].id, functionAppPrincipalId, roles.serviceBusDataSender)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'defender-responder publishes ${name} tasks'
  }
}]

// Function app -> each task queue: receive. The NotificationWorker, IsolationWorker and
// RotationWorker functions are triggered by their queue; scoped per QUEUE like the sender role.
resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (name, i) in queueNames: {
  name: guid(queues[i].id, functionAppPrincipalId, roles.serviceBusDataReceiver)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'defender-responder carries out ${name} tasks'
  }
}]

// Function app -> the journal CONTAINER only: Blob Data Contributor (conditional writes and
// blob leases on the journal's entries). Scoped to the container so the journal's access does
// not depend on the host's account-wide role.
resource journalWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(journalContainer.id, functionAppPrincipalId, roles.storageBlobDataContributor)
  scope: journalContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'defender-responder workers journal'
  }
}

// Function app -> its own storage account: Blob Data Owner. Required for identity-based
// AzureWebJobsStorage (host keys, leases/singleton locks) and to read the app package (Flex
// deployment storage; the Elastic Premium WEBSITE_RUN_FROM_PACKAGE blob). Owner, not Contributor: it is the role the Functions documentation
// requires for identity-based AzureWebJobsStorage (the host manages blob leases and containers).
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionAppPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (AzureWebJobsStorage) and the app package'
  }
}

// Function app -> its own storage account: Table Data Contributor. The Functions host writes its
// diagnostic events to Table storage through AzureWebJobsStorage (without it the host logs
// AZFD0003 errors). Nothing else reads or writes tables.
resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionAppPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host diagnostic events (AzureWebJobsStorage tables)'
  }
}

// Function app -> Application Insights: Monitoring Metrics Publisher, required for Entra ID
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD) telemetry ingestion.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantTelemetryPublisher) {
  name: guid(appInsights.id, functionAppPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Entra ID telemetry ingestion for the function app'
  }
}

// Event Grid topic -> dead-letter CONTAINER only: Blob Data Contributor, so undeliverable alerts
// are written with the topic's identity (deadLetterWithResourceIdentity) and no key or SAS.
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topicPrincipalId, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid dead-lettering of undeliverable Defender alerts'
  }
}
