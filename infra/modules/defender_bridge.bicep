// The bridge from Microsoft Defender for Cloud to the Event Grid topic.
//
// Defender has no native Event Grid topic for security alerts. Its workflow automation
// (Microsoft.Security/automations) can call a Logic App, so:
//   Defender alert -> workflow automation (rules: severity, alert type prefix)
//     -> Consumption Logic App, Request trigger "manual" (the trigger the automation calls;
//        body = the alert in the PascalCase workflow-automation shape)
//     -> HTTP POST to the topic's /api/events with the Logic App's managed identity
//        (audience https://eventgrid.azure.net), one EventGridSchema event per alert.
// The Logic App identity holds exactly one role: EventGrid Data Sender on that topic.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Logic App (Consumption) name.')
param logicAppName string

@description('Workflow automation name.')
param automationName string

@description('Topic name (role assignment scope).')
param topicName string

@description('Topic publish endpoint (https://<topic>.<region>-1.eventgrid.azure.net/api/events).')
param topicEndpoint string

@description('eventType stamped on every published event; the event subscription filters on it.')
param eventType string

@description('Alert severities that trigger the automation (Informational, Low, Medium, High).')
@minLength(1)
param alertSeverities array

@description('AlertType prefixes to forward (e.g. KV_, AzureDNS_, ARM_). Empty = every alert type.')
param alertTypePrefixes array

@description('Also forward Defender sample alerts, whose AlertType is SIMULATED_<type> (e.g. SIMULATED_KV_ListGetAnomaly).')
param forwardSimulatedAlerts bool

@description('Resource ids (subscription or resource groups in it) the automation watches.')
param automationScopePaths array

@description('Hide alert content in the Logic App run history (secure inputs/outputs).')
param secureRunHistory bool

var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'

// Event Grid REST publish API version for EventGridSchema events.
var publishUri = '${topicEndpoint}?api-version=2018-01-01'

var secureData = secureRunHistory ? {
  secureData: {
    properties: [
      'inputs'
      'outputs'
    ]
  }
} : {}

// Workflow automation rule sets: OR between rule sets, AND inside one. One rule set per
// (severity, prefix) pair; without prefixes, one per severity.
// Sample alerts from the alert simulator carry AlertType SIMULATED_<type>, which a plain prefix
// would not match.
var simulatedPrefixes = [for prefix in alertTypePrefixes: 'SIMULATED_${prefix}']
var prefixes = concat(alertTypePrefixes, forwardSimulatedAlerts ? simulatedPrefixes : [])
var prefixCount = length(prefixes)
var prefixSlots = prefixCount == 0 ? 1 : prefixCount
var ruleSets = [for i in range(0, length(alertSeverities) * prefixSlots): {
  rules: concat([
    {
      propertyJPath: 'Severity'
      propertyType: 'String'
      expectedValue: alertSeverities[i / prefixSlots]
      operator: 'Equals'
    }
  ], prefixCount == 0 ? [] : [
    {
      // The rule engine compares strings case-insensitively, so ARM_ also matches Arm_ types.
      propertyJPath: 'AlertType'
      propertyType: 'String'
      expectedValue: prefixes[i % prefixSlots]
      operator: 'StartsWith'
    }
  ])
}]

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

resource logicApp 'Microsoft.Logic/workflows@2019-05-01' = {
  name: logicAppName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    state: 'Enabled'
    definition: {
      '$schema': 'https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#'
      contentVersion: '1.0.0.0'
      parameters: {}
      triggers: {
        // Called by Microsoft.Security/automations with the alert as the JSON body. This is the
        // request trigger behind Defender's "When a Microsoft Defender for Cloud alert is created
        // or triggered" workflow automation action.
        manual: {
          type: 'Request'
          kind: 'Http'
          inputs: {
            method: 'POST'
            schema: {
              type: 'object'
              properties: {
                SystemAlertId: {
                  type: 'string'
                }
                AlertType: {
                  type: 'string'
                }
                Severity: {
                  type: 'string'
                }
              }
              required: [
                'SystemAlertId'
              ]
            }
          }
          // Ignore calls that are not alerts (no run, no event).
          conditions: [
            {
              expression: '@not(empty(triggerBody()?[\'SystemAlertId\']))'
            }
          ]
          runtimeConfiguration: secureData
        }
      }
      actions: {
        Publish_alert_to_Event_Grid: {
          type: 'Http'
          runAfter: {}
          inputs: {
            method: 'POST'
            uri: publishUri
            headers: {
              'Content-Type': 'application/json'
            }
            body: [
              {
                // The run id: stable across this action's retries, so a retried publish is the
                // same event, and unique per automation call.
                id: '@{workflow()?[\'run\']?[\'name\']}'
                subject: '@{concat(\'/alerts/\', triggerBody()?[\'SystemAlertId\'])}'
                eventType: eventType
                dataVersion: '1.0'
                eventTime: '@{utcNow()}'
                data: '@triggerBody()'
              }
            ]
            authentication: {
              type: 'ManagedServiceIdentity'
              audience: 'https://eventgrid.azure.net'
            }
          }
          retryPolicy: {
            type: 'exponential'
            count: 8
            interval: 'PT15S'
            minimumInterval: 'PT10S'
            maximumInterval: 'PT1H'
          }
          runtimeConfiguration: secureData
        }
      }
      outputs: {}
    }
    parameters: {}
  }
}

// Logic App -> topic: EventGrid Data Sender, its only role. Scoped to the one topic. The name uses
// the Logic App's resource id in the principal slot: a role assignment name must be known when
// the deployment starts, and the identity's object id is not.
resource logicAppSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, logicApp.id, eventGridDataSenderRoleId)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: logicApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Defender alert bridge publishes alerts to the topic'
  }
}

resource automation 'Microsoft.Security/automations@2023-12-01-preview' = {
  name: automationName
  location: location
  tags: tags
  properties: {
    description: 'Forwards Microsoft Defender for Cloud alerts to defender-responder (Logic App ${logicAppName} -> Event Grid topic ${topicName}).'
    isEnabled: true
    scopes: [for scopePath in automationScopePaths: {
      description: 'defender-responder watched scope'
      scopePath: scopePath
    }]
    sources: [
      {
        eventSource: 'Alerts'
        ruleSets: ruleSets
      }
    ]
    actions: [
      {
        actionType: 'LogicApp'
        logicAppResourceId: logicApp.id
        // Callback URL with its SAS signature; write-only on the automation (never returned).
        uri: listCallbackUrl('${logicApp.id}/triggers/manual', '2019-05-01').value
      }
    ]
  }
  dependsOn: [
    logicAppSender
  ]
}

@description('Logic App name.')
output logicAppName string = logicApp.name

@description('Logic App resource id.')
output logicAppId string = logicApp.id

@description('Object id of the Logic App identity.')
output logicAppPrincipalId string = logicApp.identity.principalId

@description('Workflow automation resource id.')
output automationId string = automation.id

@description('Number of rule sets generated.')
output ruleSetCount int = length(ruleSets)
