// Service Bus namespace and the three task queues the responder publishes to.
//
// The queue names below are a contract with the Rust code (RESPONDER_QUEUE_* settings default to
// them, and tests/ parses this file to check it). Keep them a literal array, one name per line.
//
// Idempotency: the responder sets deterministic MessageIds, so duplicate detection turns Event Grid
// redeliveries and Logic App retries into no-ops on the broker. Local (SAS) auth is disabled; the
// function app sends with its managed identity (role_assignments.bicep, scoped per queue).

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Namespace name (6-50 characters, globally unique).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Standard (default) or Premium (isolated capacity, VNet/private endpoints, 100 MB messages).')
@allowed([
  'Standard'
  'Premium'
])
param skuName string

@description('Messaging units when skuName is Premium.')
@allowed([
  1
  2
  4
  8
  16
])
param premiumCapacity int

@description('Zone redundancy (Premium only; the region must have availability zones).')
param zoneRedundant bool

@description('Public network access to the namespace.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

@description('Session-enabled queues. MUST match RESPONDER_SB_SESSIONS (main.bicep wires both from useSessions). Cannot be changed on an existing queue: the queue has to be deleted and recreated.')
param requiresSession bool

@description('Duplicate detection window (ISO 8601 duration, PT20S to P7D).')
param duplicateDetectionHistoryTimeWindow string

@description('Deliveries before a message is dead-lettered.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int

@description('Peek-lock duration (ISO 8601, at most PT5M).')
param lockDuration string

@description('Queue default message time to live, in seconds. main.bicep passes max(queue TTL, RESPONDER_SB_MESSAGE_TTL_SECONDS) so a message TTL set by the code is never cut short by the queue.')
@minValue(60)
param defaultMessageTimeToLiveSeconds int

// BEGIN queue-names (parsed by the drift test in tests/; order: notification, isolation, rotation)
var queueNames = [
  'notification'
  'isolation'
  'rotation'
]
// END queue-names

var isPremium = skuName == 'Premium'
var ttl = defaultMessageTimeToLiveSeconds
// ISO 8601 duration, normalised to days/hours/minutes/seconds.
var defaultMessageTimeToLive = 'P${ttl / 86400}DT${(ttl % 86400) / 3600}H${(ttl % 3600) / 60}M${ttl % 60}S'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
    capacity: isPremium ? premiumCapacity : null
  }
  properties: {
    // Identity only: no SAS keys, no connection strings.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: publicNetworkAccess
    zoneRedundant: isPremium && zoneRedundant
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for name in queueNames: {
  parent: namespace
  name: name
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionHistoryTimeWindow
    requiresSession: requiresSession
    maxDeliveryCount: maxDeliveryCount
    lockDuration: lockDuration
    defaultMessageTimeToLive: defaultMessageTimeToLive
    // Expired tasks go to the dead-letter queue instead of vanishing: an operator must see them.
    deadLetteringOnMessageExpiration: true
    enableBatchedOperations: true
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}]

@description('Namespace resource id.')
output namespaceId string = namespace.id

@description('Namespace name.')
output namespaceName string = namespace.name

@description('Fully qualified namespace, <name>.servicebus.windows.net (ServiceBusConnection__fullyQualifiedNamespace).')
// Derived from the endpoint the service reports (https://<ns>.servicebus.windows.net:443/), so it is
// also right in sovereign clouds.
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]

@description('All queue names, in the order notification, isolation, rotation.')
output queueNames array = queueNames

@description('Queue for notification tasks (RESPONDER_QUEUE_NOTIFICATION).')
output notificationQueueName string = queues[0].name

@description('Queue for isolation tasks (RESPONDER_QUEUE_ISOLATION).')
output isolationQueueName string = queues[1].name

@description('Queue for rotation tasks (RESPONDER_QUEUE_ROTATION).')
output rotationQueueName string = queues[2].name

@description('The queue TTL actually applied, ISO 8601.')
output defaultMessageTimeToLive string = defaultMessageTimeToLive
