// Log Analytics workspace + workspace-based Application Insights for the function app.
//
// Ingestion uses Microsoft Entra ID only (DisableLocalAuth): the function app sends telemetry with
// its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD) and holds
// "Monitoring Metrics Publisher" on this component (see role_assignments.bicep). The connection
// string is therefore not a secret that grants write access on its own.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Log Analytics workspace name.')
param workspaceName string

@description('Application Insights component name.')
param appInsightsName string

@description('Days of log retention in the workspace.')
@minValue(30)
@maxValue(730)
param retentionInDays int

@description('Refuse instrumentation-key-only ingestion; only Entra ID authenticated telemetry is accepted.')
param disableLocalAuth bool

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Shared-key agents are not used by this deployment; App Insights ingests through its own pipeline.
      disableLocalAuth: true
      enableLogAccessUsingOnlyResourcePermissions: true
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('Application Insights resource id (scope of the Monitoring Metrics Publisher assignment).')
output appInsightsId string = appInsights.id

@description('Application Insights name.')
output appInsightsName string = appInsights.name

@description('Connection string (identifies the component; ingestion still needs an Entra token when local auth is disabled).')
output connectionString string = appInsights.properties.ConnectionString

@description('Whether telemetry must be sent with an Entra ID token.')
output requiresEntraIngestion bool = disableLocalAuth
