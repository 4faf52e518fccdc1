//! Azure Resource Manager client: api-versioned URLs, reads, writes within the subscription's
//! write budget, and long-running operations.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::budget::TokenBuckets;
use super::error::{AzureError, AzureErrorKind};
use super::http::{ApiClient, ApiResponse, Body};

/// api-versions the executors use (checked in `Azure/azure-rest-api-specs`).
pub mod api_version {
    /// `Microsoft.KeyVault`.
    pub const KEY_VAULT: &str = "2025-05-01";
    /// `Microsoft.Network`.
    pub const NETWORK: &str = "2025-01-01";
    /// `Microsoft.Authorization`.
    pub const AUTHORIZATION: &str = "2022-04-01";
    /// `Microsoft.Compute`.
    pub const COMPUTE: &str = "2024-11-01";
    /// `Microsoft.Automation` (runbooks).
    pub const AUTOMATION: &str = "2023-11-01";
    /// `Microsoft.Automation` webhooks.
    pub const AUTOMATION_WEBHOOKS: &str = "2015-10-31";
    /// `Microsoft.Security` alerts.
    pub const SECURITY_ALERTS: &str = "2022-01-01";
    /// `Microsoft.Resources` (tags, resource groups).
    pub const RESOURCES: &str = "2021-04-01";
}

/// Most pages of a listing followed before giving up (`nextLink`).
const MAX_PAGES: usize = 50;

/// The ARM client. Writes (PUT, PATCH, POST) and deletes draw from per-subscription token
/// buckets sized below ARM's own, so a burst of containment does not run into 429s.
#[derive(Clone, Debug)]
pub struct ArmClient {
    core: ApiClient,
    writes: Arc<TokenBuckets>,
    deletes: Arc<TokenBuckets>,
}

impl ArmClient {
    /// A client over `core` with these write and delete budgets.
    pub fn new(core: ApiClient, writes: Arc<TokenBuckets>, deletes: Arc<TokenBuckets>) -> Self {
        ArmClient {
            core,
            writes,
            deletes,
        }
    }

    /// The shared core.
    pub fn core(&self) -> &ApiClient {
        &self.core
    }

    /// The absolute URL of a resource path (or id) at an api-version.
    pub fn url(&self, path: &str, api_version: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.core
            .url(&format!("{path}{separator}api-version={api_version}"))
    }

    /// `GET` a resource.
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Value, AzureError> {
        let url = self.url(path, api_version);
        Ok(self.core.send(Method::GET, &url, None).await?.body)
    }

    /// `GET` a resource; `None` when it does not exist.
    pub async fn get_optional(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Value>, AzureError> {
        match self.get(path, api_version).await {
            Ok(body) => Ok(Some(body)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `GET` a collection, following `nextLink`: every element of `value`.
    pub async fn list(&self, path: &str, api_version: &str) -> Result<Vec<Value>, AzureError> {
        let mut url = self.url(path, api_version);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.core.send(Method::GET, &url, None).await?.body;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => url = next.to_string(),
                _ => return Ok(items),
            }
        }
        Ok(items)
    }

    /// Sends a write (`PUT`, `PATCH`, `POST`, `DELETE`) to an absolute URL within the
    /// subscription's budget, waiting for its long-running operation.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, AzureError> {
        self.take_budget(&method, url).await?;
        self.core.send_lro(method, url, body.into()).await
    }

    /// `PUT` a text body (runbook content) within the budget, waiting for its operation.
    pub async fn put_text(
        &self,
        path: &str,
        api_version: &str,
        text: &str,
    ) -> Result<ApiResponse, AzureError> {
        let url = self.url(path, api_version);
        self.take_budget(&Method::PUT, &url).await?;
        self.core
            .send_lro(Method::PUT, &url, Body::Text(text, "text/powershell"))
            .await
    }

    /// `GET` a text resource (runbook content).
    pub async fn get_text(&self, path: &str, api_version: &str) -> Result<String, AzureError> {
        let url = self.url(path, api_version);
        let body = self.core.send(Method::GET, &url, None).await?.body;
        Ok(match body {
            Value::String(text) => text,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// `PUT` a resource.
    pub async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<ApiResponse, AzureError> {
        self.write(Method::PUT, &self.url(path, api_version), Some(body))
            .await
    }

    /// `PATCH` a resource.
    pub async fn patch(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<ApiResponse, AzureError> {
        self.write(Method::PATCH, &self.url(path, api_version), Some(body))
            .await
    }

    /// `POST` an action.
    pub async fn post(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, AzureError> {
        self.write(Method::POST, &self.url(path, api_version), body)
            .await
    }

    /// `DELETE` a resource (a missing one is not an error: ARM answers 204).
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<ApiResponse, AzureError> {
        self.write(Method::DELETE, &self.url(path, api_version), None)
            .await
    }

    async fn take_budget(&self, method: &Method, url: &str) -> Result<(), AzureError> {
        let buckets = if *method == Method::DELETE {
            &self.deletes
        } else {
            &self.writes
        };
        let key = subscription_of(url).unwrap_or("tenant").to_string();
        let max_wait = self.core.policy().max_inline_wait;
        match buckets.try_take(&key) {
            Ok(()) => Ok(()),
            Err(wait) if wait <= max_wait => {
                tokio::time::sleep(wait).await;
                buckets
                    .try_take(&key)
                    .map_err(|wait| budget_error(method, url, wait))
            }
            Err(wait) => Err(budget_error(method, url, wait)),
        }
    }
}

fn budget_error(method: &Method, url: &str, wait: Duration) -> AzureError {
    AzureError {
        code: Some("ResponderWriteBudget".into()),
        retry_after: Some(wait),
        ..AzureError::local(
            AzureErrorKind::Throttled,
            method.as_str(),
            url,
            "the responder's ARM write budget for the subscription is spent",
        )
    }
}

/// The subscription id in an ARM URL or id (`…/subscriptions/{s}/…`).
pub fn subscription_of(url: &str) -> Option<&str> {
    let mut parts = url.split(['/', '?']);
    while let Some(part) = parts.next() {
        if part.eq_ignore_ascii_case("subscriptions") {
            return parts.next().filter(|s| !s.is_empty());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_is_read_from_any_arm_url() {
        assert_eq!(
            subscription_of(
                "https://management.azure.com/subscriptions/abc/resourceGroups/rg?api-version=1"
            ),
            Some("abc")
        );
        assert_eq!(subscription_of("/providers/Microsoft.Management/x"), None);
    }
}
