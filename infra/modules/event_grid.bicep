// Event Grid custom topic that carries Defender alerts to the DefenderAlert function.
//
// Publishers authenticate with Entra ID only (disableLocalAuth): the bridge Logic App's identity
// holds "EventGrid Data Sender" on this topic (defender_bridge.bicep) and nothing else can publish.
// The topic's own system identity is used for dead-lettering to blob storage
// (deadLetterWithResourceIdentity), so no storage key or SAS is involved.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Topic name.')
@minLength(3)
@maxLength(50)
param topicName string

@description('Public network access. The Consumption Logic App publishes over the public endpoint (it has no VNet integration), so keep Enabled unless you replace the bridge.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: topicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    //checkov:skip=CKV_AZURE_193:publicNetworkAccess is the eventGridPublicNetworkAccess parameter; the Consumption Logic App bridge has no VNet integration and publishes over the public endpoint. Publishing still requires an Entra token with EventGrid Data Sender (local auth disabled).
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: publicNetworkAccess
    dataResidencyBoundary: 'WithinRegion'
  }
}

@description('Topic resource id.')
output topicId string = topic.id

@description('Topic name.')
output topicName string = topic.name

@description('Publish endpoint, https://<topic>.<region>-1.eventgrid.azure.net/api/events.')
output endpoint string = topic.properties.endpoint

@description('Object id of the topic\'s system identity (dead-letter writer).')
output principalId string = topic.identity.principalId
