// Example parameters for infra/main.bicep. Copy per environment and adjust.
//   First deployment of an environment:  ... -p infra/main.bicepparam -p deployEventSubscription=false
//   After publishing the code, and every time after that: ... -p infra/main.bicepparam
using 'main.bicep'

param namePrefix = 'defresp'

// Flex Consumption. For Elastic Premium use 'EP1' (or EP2/EP3).
param planSku = 'FC1'

// Service Bus tier and queue behaviour.
param serviceBusSku = 'Standard'
param useSessions = false
param duplicateDetectionWindow = 'P1D'
param maxDeliveryCount = 10
param lockDuration = 'PT1M'
param messageTtlSeconds = 86400

// Which Defender alerts are forwarded.
param alertSeverities = [
  'Low'
  'Medium'
  'High'
]
param alertTypePrefixes = [
  'KV_'
  'AzureDNS_'
  'ARM_'
  'RM_'
]

// Sample alerts (SIMULATED_<type>) are forwarded too, for end-to-end tests.
param forwardSimulatedAlerts = true

// Safe first rollout: plans and notifications are real, containment tasks are marked dry-run.
param dryRun = true

// Containment roles: where the responder may act, and which actions the policy can run. Name
// the resource groups of the resources Defender protects; enabledActions defaults to every
// action (the default policy can run each once approved): list only those your policy does not
// make notify_only.
param protectedResourceGroups = []
param containmentScope = 'resourceGroups'

// Responder configuration. tenantIds defaults to this subscription's tenant when omitted.
param trustedIpRanges = ''
param notifyRecipients = ''
param ownerTag = 'owner'

param tags = {
  application: 'defender-responder'
  environment: 'prod'
}
