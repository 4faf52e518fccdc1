//! Microsoft Graph client (`https://graph.microsoft.com/v1.0`): directory objects and role
//! management, by path relative to the configured base.

use reqwest::Method;
use serde_json::Value;

use super::error::AzureError;
use super::http::{ApiClient, ApiResponse};

/// Most pages of a listing followed (`@odata.nextLink`).
const MAX_PAGES: usize = 50;

/// The Graph client.
#[derive(Clone, Debug)]
pub struct GraphClient {
    core: ApiClient,
}

impl GraphClient {
    /// A client over `core`.
    pub fn new(core: ApiClient) -> Self {
        GraphClient { core }
    }

    /// The absolute URL of a Graph path (`/users/{id}`).
    pub fn url(&self, path: &str) -> String {
        self.core.url(path)
    }

    /// `GET` an entity.
    pub async fn get(&self, path: &str) -> Result<Value, AzureError> {
        Ok(self
            .core
            .send(Method::GET, &self.url(path), None)
            .await?
            .body)
    }

    /// `GET` an entity; `None` when it does not exist.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, AzureError> {
        match self.get(path).await {
            Ok(body) => Ok(Some(body)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// `GET` a collection, following `@odata.nextLink`.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, AzureError> {
        let mut url = self.url(path);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.core.send(Method::GET, &url, None).await?.body;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => url = next.to_string(),
                _ => return Ok(items),
            }
        }
        Ok(items)
    }

    /// Sends a write to an absolute URL.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, AzureError> {
        self.core.send(method, url, body).await
    }
}
