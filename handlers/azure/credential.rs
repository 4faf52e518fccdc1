//! A `TokenCredential` holding fixed tokens per scope: for local runs against a simulator and
//! for tests. Deployed, the managed-identity credential of the identity module is used.

use std::collections::BTreeMap;
use std::fmt;

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};

/// Fixed bearer tokens by scope (`https://management.azure.com/.default` → token).
pub struct StaticTokenCredential {
    tokens: BTreeMap<String, Secret>,
}

impl StaticTokenCredential {
    /// A credential answering each scope with its token.
    pub fn new<I, S, T>(tokens: I) -> Self
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<String>,
        T: Into<String>,
    {
        StaticTokenCredential {
            tokens: tokens
                .into_iter()
                .map(|(scope, token)| (scope.into(), Secret::new(token.into())))
                .collect(),
        }
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The scopes only: never the tokens.
        f.debug_struct("StaticTokenCredential")
            .field("scopes", &self.tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes.first().copied().unwrap_or_default();
        match self.tokens.get(scope) {
            Some(token) => Ok(AccessToken::new(
                token.clone(),
                OffsetDateTime::now_utc() + Duration::hours(1),
            )),
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("no token configured for scope {scope}"),
            )),
        }
    }
}
