// The function app's own storage account.
//
// Used for: AzureWebJobsStorage (host keys, leases, diagnostic events), the Flex Consumption
// deployment package container, and the Event Grid dead-letter container. Shared-key access is
// off: every client (Functions host, Flex deployment, Event Grid dead-lettering) authenticates with
// a managed identity, so there is no account key anywhere in app settings.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Replication. Standard_ZRS where the region offers it; Standard_LRS is the cheapest.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string

@description('Public network access to the storage endpoints. Flex Consumption without VNet integration and Event Grid dead-lettering reach it over the public endpoint, so Disabled needs private endpoints + VNet integration that this template does not create.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

@description('Create the blob container of the app package (Flex Consumption deploys into it; Elastic Premium runs from a package blob in it).')
param createDeploymentContainer bool

@description('Name of the app package container.')
param deploymentContainerName string

@description('Name of the container that receives Event Grid dead-lettered events.')
param deadLetterContainerName string

@description('Name of the container that holds the workers\' journal (task states, decisions, prior state).')
param journalContainerName string = 'journal'

@description('Days that deleted blobs and containers stay recoverable.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    //checkov:skip=CKV_AZURE_35:Default network action stays Allow: Flex Consumption without VNet integration and Event Grid dead-lettering reach the account over its public endpoint. Data access still requires Entra ID (shared keys disabled). Lock down with private endpoints + publicNetworkAccess=Disabled.
    //checkov:skip=CKV_AZURE_206:Replication is the storageSku parameter. Default Standard_LRS because not every region offers ZRS; choose Standard_ZRS/GZRS where available.
    //checkov:skip=CKV_AZURE_43:False positive: the name is a parameter; main.bicep builds it from lowercase letters and digits only (take('st<prefix><uniqueString>', 24)).
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Identity only: the Functions host (AzureWebJobsStorage__accountName), Flex deployment
    // (SystemAssignedIdentity) and Event Grid dead-lettering (topic identity) all use Entra ID.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (createDeploymentContainer) {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The workers' journal: every task's state, decision and prior state, shared by every instance.
resource journalContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: journalContainerName
  properties: {
    publicAccess: 'None'
  }
}

@description('Storage account resource id.')
output storageAccountId string = storage.id

@description('Storage account name (AzureWebJobsStorage__accountName).')
output storageAccountName string = storage.name

@description('Blob endpoint, e.g. https://<name>.blob.core.windows.net/.')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Flex Consumption deployment container name.')
output deploymentContainerName string = deploymentContainerName

@description('Event Grid dead-letter container name.')
output deadLetterContainerName string = deadLetterContainer.name

@description('The workers\' journal container name.')
output journalContainerName string = journalContainer.name
