// Applies the app settings list built in function_app.bicep to the site.
//
// Microsoft.Web/sites/config 'appsettings' replaces ALL settings with a { NAME: value } object.
// Bicep's toObject() would build that object from the list, but checkov's Bicep parser (pycep)
// cannot parse lambdas and scripts/check-infra.sh depends on it. So the object is built from JSON
// text instead: string([x]) is ARM's JSON serialisation of a one-element array ('["x"]', with
// quotes, backslashes and control characters escaped), and dropping the brackets leaves a valid
// JSON string literal. This runs in its own module because a variable loop may only use values
// known when the deployment starts; module parameters are.

@description('Function app name.')
param functionAppName string

@description('App settings as a list of { name: string, value: string }. Names must be unique.')
param appSettings array

var jsonMembers = [for setting in appSettings: '${substring(string([setting.name]), 1, length(string([setting.name])) - 2)}:${substring(string([setting.value]), 1, length(string([setting.value])) - 2)}']

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// checkov applies its App Service *site config* checks to every Microsoft.Web/sites/config
// resource. This one is 'appsettings' (name/value pairs only), so they cannot apply here; the
// site's TLS/FTP/HTTP2/HTTPS settings are on the site in function_app.bicep. (pycep rejects more
// than 9 comment lines at the top of an object, so the explanation lives here.)
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:Not site config (appsettings). EasyAuth is authsettingsV2 in function_app.bicep (Decision route); the Event Grid webhook is authenticated by the eventgrid_extension system key.
  //checkov:skip=CKV_AZURE_63:Not site config (appsettings). HTTP logging: invocations (the Decision function's too) are logged to Application Insights.
  //checkov:skip=CKV_AZURE_65:Not site config (appsettings). Detailed error pages: the Decision page shows no error details.
  //checkov:skip=CKV_AZURE_66:Not site config (appsettings). Failed request tracing: IIS feature, not used by Linux function apps.
  //checkov:skip=CKV_AZURE_80:Not site config (appsettings). .NET Framework version: the app runs a Rust custom handler.
  //checkov:skip=CKV_AZURE_88:Not site config (appsettings). Azure Files deliberately not mounted: it needs an account key (shared keys are disabled); Flex runs from blob, Elastic Premium from package.
  //checkov:skip=CKV_AZURE_222:Not site config (appsettings). Public network access is set on the site (functionAppPublicNetworkAccess); Event Grid push delivery needs it.
  parent: functionApp
  name: 'appsettings'
  properties: json('{${join(jsonMembers, ',')}}')
}

@description('Names of the settings applied, in order.')
output names array = [for setting in appSettings: setting.name]
