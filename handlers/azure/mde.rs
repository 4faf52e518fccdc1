//! Microsoft Defender for Endpoint client (`https://api.security.microsoft.com/api`):
//! machines and machine actions, within MDE's 100-actions-a-minute budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::budget::TokenBuckets;
use super::error::{AzureError, AzureErrorKind};
use super::http::{encode_query, ApiClient, ApiResponse};

/// The Defender for Endpoint client.
#[derive(Clone, Debug)]
pub struct MdeClient {
    core: ApiClient,
    actions: Arc<TokenBuckets>,
}

impl MdeClient {
    /// A client over `core` with this machine-action budget.
    pub fn new(core: ApiClient, actions: Arc<TokenBuckets>) -> Self {
        MdeClient { core, actions }
    }

    /// The absolute URL of an MDE path (`/machines/{id}`).
    pub fn url(&self, path: &str) -> String {
        self.core.url(path)
    }

    /// `GET` an entity or a collection.
    pub async fn get(&self, path: &str) -> Result<Value, AzureError> {
        Ok(self
            .core
            .send(Method::GET, &self.url(path), None)
            .await?
            .body)
    }

    /// The machines whose `vmMetadata.resourceId` is exactly `resource_id` (case-insensitive
    /// as ARM ids are; never a substring match).
    pub async fn machines_for_resource(&self, resource_id: &str) -> Result<Vec<Value>, AzureError> {
        let quoted = resource_id.replace('\'', "''");
        let filter = format!("vmMetadata/resourceId eq '{quoted}'");
        let path = format!("/machines?$filter={}", encode_query(&filter));
        let body = self.get(&path).await?;
        Ok(body
            .get("value")
            .and_then(Value::as_array)
            .map(|machines| {
                machines
                    .iter()
                    .filter(|m| {
                        m.pointer("/vmMetadata/resourceId")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.eq_ignore_ascii_case(resource_id))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Sends a machine action (`POST /machines/{id}/isolate`, …) within the budget.
    pub async fn write(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, AzureError> {
        if let Err(wait) = self.actions.try_take("mde") {
            return Err(AzureError {
                code: Some("ResponderMdeBudget".into()),
                retry_after: Some(wait),
                ..AzureError::local(
                    AzureErrorKind::Throttled,
                    method.as_str(),
                    url,
                    "the responder's Defender for Endpoint action budget is spent",
                )
            });
        }
        self.core.send(method, url, body).await
    }

    /// Polls `GET /machineactions/{id}` until it is `Succeeded`, `Failed` or `Cancelled`,
    /// within the client's LRO deadline; answers the final action.
    pub async fn wait_for_action(&self, action_id: &str) -> Result<Value, AzureError> {
        let started = Instant::now();
        let policy = self.core.policy().clone();
        let url = self.url(&format!("/machineactions/{action_id}"));
        loop {
            let action = self.core.send(Method::GET, &url, None).await?.body;
            let status = action.get("status").and_then(Value::as_str).unwrap_or("");
            match status {
                "Succeeded" => return Ok(action),
                "Failed" | "Cancelled" | "TimeOut" => {
                    return Err(AzureError {
                        code: Some(status.to_string()),
                        ..AzureError::local(
                            AzureErrorKind::OperationFailed,
                            "GET",
                            &url,
                            format!("the machine action ended {status}"),
                        )
                    })
                }
                _ => {}
            }
            let delay = policy.lro_min_poll.max(Duration::from_millis(100));
            if started.elapsed() + delay > policy.lro_deadline {
                return Err(AzureError {
                    retry_after: Some(Duration::from_secs(30)),
                    ..AzureError::local(
                        AzureErrorKind::Timeout,
                        "GET",
                        &url,
                        "the machine action is still pending",
                    )
                });
            }
            tokio::time::sleep(delay).await;
        }
    }
}
