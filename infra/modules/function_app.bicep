// Linux Function App hosting the defender-responder custom handler (Rust binary), its plan,
// publishing lockdown, and THE list of app settings.
//
// Plans: Flex Consumption (FC1, default) or Elastic Premium (EP1-EP3).
//  * Flex: the runtime is declared in functionAppConfig.runtime ({ name: 'custom', version: '1.0' });
//    FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION / WEBSITE_RUN_FROM_PACKAGE must NOT be
//    set (they are deprecated on Flex). Code is deployed to a blob container read with the app's
//    system identity.
//    siteConfig.ftpsState, http20Enabled and remoteDebuggingEnabled must be null there (Flex
//    rejects them with error 51021).
//  * Elastic Premium: FUNCTIONS_WORKER_RUNTIME=custom, FUNCTIONS_EXTENSION_VERSION=~4, and no Azure
//    Files content share (it would need an account key), so the app runs from a package URL:
//    WEBSITE_RUN_FROM_PACKAGE=<blob in the package container>, read with the system identity
//    (WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID=SystemAssigned).
//
// App settings: the single source of truth is the literal lists between the BEGIN/END markers
// below. The drift test in tests/ parses the `name: '...'` entries of the "responder" block and
// compares them with the code's configuration constants. The list is applied by
// modules/app_settings.bicep (called from main.bicep after the role assignments exist), because
// RESPONDER_SELF_OBJECT_IDS needs this app's own principalId, which is only known after the site
// is created.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Function app name (globally unique, becomes <name>.azurewebsites.net).')
param functionAppName string

@description('Hosting plan name.')
param planName string

@description('FC1 = Flex Consumption (default). EP1/EP2/EP3 = Elastic Premium.')
@allowed([
  'FC1'
  'EP1'
  'EP2'
  'EP3'
])
param planSku string

@description('Zone-redundant plan (needs a region with availability zones; Elastic Premium then runs at least 3 instances).')
param zoneRedundant bool

@description('Flex Consumption: maximum instances the app scales out to (the platform accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param flexMaximumInstanceCount int

@description('Flex Consumption: instance memory size in MB.')
@allowed([
  512
  2048
  4096
])
param flexInstanceMemoryMB int

@description('Elastic Premium: maximum instances (plan burst limit).')
@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int

@description('Elastic Premium: always-ready instances.')
@minValue(1)
@maxValue(20)
param premiumMinimumInstanceCount int

@description('Public network access to the app. Event Grid pushes to the DefenderAlert function over the public endpoint, so Disabled breaks alert delivery unless you re-route ingress yourself.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string

@description('Storage account used by the host (identity-based AzureWebJobsStorage).')
param storageAccountName string

@description('Blob endpoint of that account (https://<name>.blob.core.windows.net/).')
param blobEndpoint string

@description('App package container in that account (Flex deployment storage; Elastic Premium package blob).')
param deploymentContainerName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Send telemetry with the app identity (Application Insights has local auth disabled).')
param appInsightsEntraIngestion bool

@description('<namespace>.servicebus.windows.net')
param serviceBusFullyQualifiedNamespace string

@description('Queue receiving notification tasks.')
param notificationQueueName string

@description('Queue receiving isolation tasks.')
param isolationQueueName string

@description('Queue receiving rotation tasks.')
param rotationQueueName string

@description('Queues are session-enabled (must equal the queues\' requiresSession).')
param useSessions bool

@description('TTL the code puts on each task message, in seconds (<= queue default TTL).')
@minValue(60)
param messageTtlSeconds int

@description('Plan and notify, but mark containment tasks as dry-run.')
param dryRun bool

@description('The workers\' journal container.')
param journalContainerName string

@description('NCRONTAB schedule of the DecisionSweeper timer.')
param sweepSchedule string

@description('Hours a task waits for a decision before the sweeper expires it.')
@minValue(1)
@maxValue(720)
param decisionTimeoutHours int

@description('Client id of the Entra app registration approvers sign in with (App Service Authentication on the decision route); empty = authentication not configured.')
param decisionAuthClientId string

@description('Comma-separated Entra tenant ids treated as "our" tenants.')
param tenantIds string

@description('Comma-separated CIDRs treated as trusted sources.')
param trustedIpRanges string

@description('Comma-separated notification recipients.')
param notifyRecipients string

@description('Resource tag that names a resource owner.')
param ownerTag string

@description('Optional path (inside the package) of a policy file; empty = not set.')
param policyFile string

@description('Extra comma-separated object ids to treat as "self" besides this app\'s identity.')
param additionalSelfObjectIds string

@description('RUST_LOG filter for the handler.')
param rustLog string

var isFlex = planSku == 'FC1'
// Elastic Premium runs from this blob; publishing uploads dist/defender-responder.zip there.
var premiumPackageUrl = '${blobEndpoint}${deploymentContainerName}/defender-responder.zip'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: planSku
    tier: 'ElasticPremium'
    family: 'EP'
    capacity: zoneRedundant ? 3 : 1
  }
  properties: {
    //checkov:skip=CKV_AZURE_225:Zone redundancy is the zoneRedundant parameter (default false: not every region has zones, and for Elastic Premium it triples the always-on cost).
    // Linux.
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : premiumMaximumElasticWorkerCount
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    //checkov:skip=CKV_AZURE_17:Client certificates would be demanded from Event Grid, which does not present one when delivering to an AzureFunction endpoint; the app exposes no HTTP functions of its own.
    //checkov:skip=CKV_AZURE_222:publicNetworkAccess is a parameter (functionAppPublicNetworkAccess); Event Grid push delivery needs the public endpoint. Publishing is Entra-only (basic auth off below).
    //checkov:skip=CKV_AZURE_212:Instance floor is plan-specific: Flex Consumption scales from zero by design; Elastic Premium uses premiumMinimumInstanceCount. Three always-on instances for failover is a cost decision left to the operator (zoneRedundant).
    //checkov:skip=CKV_AZURE_213:No HTTP health endpoint: the one HTTP-triggered function is the Decision page behind sign-in, and the Functions host restarts the custom handler itself when it dies.
    //checkov:skip=CKV_AZURE_78:ftpsState is 'Disabled' on Elastic Premium and not sent on Flex Consumption, which rejects it (error 51021) and has no FTP; FTP basic-auth publishing is off on both plans (ftpPublishing below).
    //checkov:skip=CKV_AZURE_67:http20Enabled is true on Elastic Premium and not sent on Flex Consumption, which rejects it (error 51021); checkov cannot read the plan condition.
    //checkov:skip=CKV_AZURE_18:http20Enabled is true on Elastic Premium and not sent on Flex Consumption, which rejects it (error 51021); checkov cannot read the plan condition.
    //checkov:skip=CKV_AZURE_72:remoteDebuggingEnabled is false on Elastic Premium and not sent on Flex Consumption, which rejects it (error 51021) and offers no remote debugging.
    //checkov:skip=CKV_AZURE_155:remoteDebuggingEnabled is false on Elastic Premium and not sent on Flex Consumption, which rejects it (error 51021); the app has no deployment slots.
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: publicNetworkAccess
    // No app settings here: see the header. Scale settings exist only on Elastic Premium; Flex
    // scale is functionAppConfig.scaleAndConcurrency (null = property not sent).
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // Flex Consumption rejects these three (error 51021): null = property not sent.
      ftpsState: isFlex ? null : 'Disabled'
      http20Enabled: isFlex ? null : true
      remoteDebuggingEnabled: isFlex ? null : false
      use32BitWorkerProcess: isFlex ? null : false
      functionAppScaleLimit: isFlex ? null : premiumMaximumElasticWorkerCount
      minimumElasticInstanceCount: isFlex ? null : premiumMinimumInstanceCount
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: flexMaximumInstanceCount
        instanceMemoryMB: flexInstanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    } : null
  }
}

// Publishing with FTP or SCM basic (user/password) credentials is off; deploy with Entra ID
// (az CLI / Core Tools use your login token).
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

var principalId = functionApp.identity.principalId

// BEGIN app-settings:platform (read by the Functions host, not by the Rust code)
var platformAppSettings = [
  {
    // Identity-based host storage: no account key. The system identity holds Storage Blob Data
    // Owner + Storage Table Data Contributor on this account (role_assignments.bicep).
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
]
var entraTelemetryAppSettings = appInsightsEntraIngestion ? [
  {
    // System-assigned identity: no ClientId part (a user-assigned one would add ;ClientId=<id>).
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
] : []
var premiumOnlyAppSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    // No Azure Files content share: run from the package blob, mounted read-only.
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: premiumPackageUrl
  }
  {
    // Fetch that blob with the system identity (Storage Blob Data Owner on the account).
    name: 'WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID'
    value: 'SystemAssigned'
  }
]
// END app-settings:platform

// BEGIN app-settings:responder (read by the Rust code; names must equal its constants)
var responderAppSettings = [
  {
    // Identity-based: no connection string. The code authenticates as this app's system identity,
    // so ServiceBusConnection__clientId is not set (it is only for a user-assigned identity).
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusFullyQualifiedNamespace
  }
  {
    name: 'RESPONDER_QUEUE_NOTIFICATION'
    value: notificationQueueName
  }
  {
    name: 'RESPONDER_QUEUE_ISOLATION'
    value: isolationQueueName
  }
  {
    name: 'RESPONDER_QUEUE_ROTATION'
    value: rotationQueueName
  }
  {
    // Same parameter as the queues' requiresSession (main.bicep useSessions).
    name: 'RESPONDER_SB_SESSIONS'
    value: useSessions ? 'true' : 'false'
  }
  {
    name: 'RESPONDER_SB_MESSAGE_TTL_SECONDS'
    value: string(messageTtlSeconds)
  }
  {
    // Local duplicate ledger. Per instance and not persistent: Service Bus duplicate detection is
    // the cross-instance guarantee; this only saves work on one instance.
    name: 'RESPONDER_STORE_PATH'
    value: '/tmp/defender-responder/store.sqlite3'
  }
  {
    name: 'RESPONDER_DRY_RUN'
    value: dryRun ? 'true' : 'false'
  }
  {
    // The journal lives in this app's own storage account (AzureWebJobsStorage__accountName).
    name: 'RESPONDER_JOURNAL_CONTAINER'
    value: journalContainerName
  }
  {
    name: 'RESPONDER_SWEEP_SCHEDULE'
    value: sweepSchedule
  }
  {
    name: 'RESPONDER_DECISION_TIMEOUT_HOURS'
    value: string(decisionTimeoutHours)
  }
  {
    name: 'RESPONDER_DECISION_URL'
    value: 'https://${functionApp.properties.defaultHostName}/api/decide'
  }
  {
    // Approvers sign in (App Service Authentication) and must be a recipient or an approver.
    name: 'RESPONDER_APPROVER_IDENTITY'
    value: 'app_service_auth'
  }
  {
    name: 'RESPONDER_TENANT_IDS'
    value: tenantIds
  }
  {
    name: 'RESPONDER_TRUSTED_IP_RANGES'
    value: trustedIpRanges
  }
  {
    name: 'RESPONDER_NOTIFY_RECIPIENTS'
    value: notifyRecipients
  }
  {
    name: 'RESPONDER_OWNER_TAG'
    value: ownerTag
  }
  {
    // Loop protection: alerts caused by this identity are never auto-remediated.
    name: 'RESPONDER_SELF_OBJECT_IDS'
    value: empty(additionalSelfObjectIds) ? principalId : '${principalId},${additionalSelfObjectIds}'
  }
  {
    name: 'RUST_LOG'
    value: rustLog
  }
]
// Optional: only present when a policy file is configured.
var responderOptionalAppSettings = empty(policyFile) ? [] : [
  {
    name: 'RESPONDER_POLICY_FILE'
    value: policyFile
  }
]
// END app-settings:responder

var appSettings = concat(platformAppSettings, entraTelemetryAppSettings, isFlex ? [] : premiumOnlyAppSettings, responderAppSettings, responderOptionalAppSettings)

// App Service Authentication (Entra): approvers sign in before a decision page is shown or a
// decision recorded; the handler reads X-MS-CLIENT-PRINCIPAL-NAME. Every other route keeps its
// own protection (function keys, the Event Grid system key), so those paths are excluded.
resource decisionAuth 'Microsoft.Web/sites/config@2023-12-01' = if (!empty(decisionAuthClientId)) {
  //checkov:skip=CKV_AZURE_13:Not site config (authsettingsV2). This resource IS App Service Authentication, in front of the Decision route.
  //checkov:skip=CKV_AZURE_63:Not site config (authsettingsV2). Invocations, decisions included, are logged to Application Insights.
  //checkov:skip=CKV_AZURE_65:Not site config (authsettingsV2). The decision page shows no error details.
  //checkov:skip=CKV_AZURE_66:Not site config (authsettingsV2). Failed request tracing: IIS feature, not used by Linux function apps.
  //checkov:skip=CKV_AZURE_80:Not site config (authsettingsV2). .NET Framework version: the app runs a Rust custom handler.
  //checkov:skip=CKV_AZURE_88:Not site config (authsettingsV2). Azure Files deliberately not mounted: it needs an account key (shared keys are disabled).
  //checkov:skip=CKV_AZURE_222:Not site config (authsettingsV2). Public network access is set on the site (functionAppPublicNetworkAccess); approvers open decision links from mail and chat.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
        '/admin/host/status'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: decisionAuthClientId
          openIdIssuer: 'https://sts.windows.net/${subscription().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${decisionAuthClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

@description('Function app resource id.')
output functionAppId string = functionApp.id

@description('Function app name.')
output functionAppName string = functionApp.name

@description('Default host name.')
output defaultHostName string = functionApp.properties.defaultHostName

@description('Object id of the app\'s system-assigned identity.')
output principalId string = principalId

@description('Whether the app runs on Flex Consumption.')
output isFlexConsumption bool = isFlex

@description('Elastic Premium: the blob the app runs from (upload the package there); empty on Flex.')
output premiumPackageUrl string = isFlex ? '' : premiumPackageUrl

@description('The complete app settings list ({ name, value }), applied by app_settings.bicep. Contains no secrets: every connection is identity-based.')
output appSettings array = appSettings
