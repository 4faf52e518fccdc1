// Event subscription: topic -> DefenderAlert function.
//
// Deployed only in the second step (main.bicep deployEventSubscription): Event Grid validates an
// AzureFunction endpoint when the subscription is created, so the function must already be
// indexed, i.e. the code package must have been published first. On Flex Consumption the
// functions only exist once a package is deployed; the same holds for a fresh Elastic Premium app.

@description('Topic name.')
param topicName string

@description('Function app resource id.')
param functionAppId string

@description('Function (folder) name that has the eventGridTrigger binding.')
param functionName string

@description('Event type the bridge publishes; only this type is delivered.')
param eventType string

@description('Storage account id holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Dead-letter container name.')
param deadLetterContainerName string

@description('Delivery attempts before an event is dead-lettered (1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int

@description('Minutes an event is retried before it is dead-lettered (1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int

@description('Events per delivery. 1 keeps retries per alert: the Functions Event Grid extension answers 500 for the whole batch if any event in it fails.')
@minValue(1)
@maxValue(5000)
param maxEventsPerBatch int

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

resource subscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: 'to-${toLower(functionName)}'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: maxEventsPerBatch
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        eventType
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Undeliverable alerts land in blob storage, written with the topic's own identity.
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

@description('Event subscription resource id.')
output subscriptionId string = subscription.id

@description('Event subscription name.')
output subscriptionName string = subscription.name
