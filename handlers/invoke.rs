//! The Functions host's custom-handler contract: the invocation payload in, the result out.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"Data": {<binding>: …}, "Metadata": {…}}` as the host posts it to `/<FunctionName>`.
#[derive(Clone, Debug, Deserialize)]
pub struct InvokeRequest {
    /// One entry per input binding, keyed by binding name.
    #[serde(rename = "Data", alias = "data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata. Not read: for Event Grid it holds only `sys` and a second copy of
    /// the event's `data`, so it is skipped without building it (half the parsing work).
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: IgnoredAny,
}

impl InvokeRequest {
    /// The value of an input binding, case-insensitively. When the payload holds exactly one
    /// binding under another name, that one (function.json may name it differently).
    pub fn binding(&self, name: &str) -> Option<&Value> {
        self.data
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .or_else(|| {
                (self.data.len() == 1)
                    .then(|| self.data.values().next())
                    .flatten()
            })
    }
}

/// `{"Outputs": …, "Logs": […], "ReturnValue": …}`: always a JSON object, even on failure,
/// because the host waits forever on an empty 2xx body.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InvokeResponse {
    /// Output bindings (none: tasks are published by the adapters, not by bindings).
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to the invocation's log.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The invocation's result: the event report.
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}
