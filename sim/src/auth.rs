//! Tokens: the IMDS / App Service / Entra token endpoints, and the per-surface audience check with each API's real 401.

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::http::{Answer, Reply, Req, Surface};
use crate::state::Sim;
use crate::time::{now_unix, rfc3339};

/// The resource a token is issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// `https://management.azure.com` (ARM).
    Management,
    /// `https://vault.azure.net` (Key Vault data plane).
    Vault,
    /// `https://graph.microsoft.com` (Microsoft Graph).
    Graph,
    /// `https://api.securitycenter.microsoft.com` (Defender for Endpoint).
    Mde,
}

impl Audience {
    /// The canonical `aud` claim of this audience.
    pub fn uri(self) -> &'static str {
        match self {
            Audience::Management => "https://management.azure.com",
            Audience::Vault => "https://vault.azure.net",
            Audience::Graph => "https://graph.microsoft.com",
            Audience::Mde => "https://api.securitycenter.microsoft.com",
        }
    }

    /// Reads a `resource` or `scope` value (`…/.default`, trailing `/`, legacy hosts).
    pub fn parse(resource_or_scope: &str) -> Option<Audience> {
        let first = resource_or_scope.split_whitespace().next().unwrap_or("");
        let trimmed = first.trim_end_matches("/.default").trim_end_matches('/');
        match trimmed.to_ascii_lowercase().as_str() {
            "https://management.azure.com" | "https://management.core.windows.net" => {
                Some(Audience::Management)
            }
            "https://vault.azure.net" => Some(Audience::Vault),
            "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => {
                Some(Audience::Graph)
            }
            "https://api.securitycenter.microsoft.com"
            | "https://api.security.microsoft.com"
            | "https://securitycenter.onmicrosoft.com/windowsatpservice" => Some(Audience::Mde),
            _ => None,
        }
    }

    /// The audience a surface requires.
    pub(crate) fn of(surface: &Surface) -> Option<Audience> {
        match surface {
            Surface::Arm => Some(Audience::Management),
            Surface::Vault(_) => Some(Audience::Vault),
            Surface::Graph => Some(Audience::Graph),
            Surface::Mde => Some(Audience::Mde),
            Surface::Token | Surface::Control => None,
        }
    }
}

/// One issued token, as the simulator remembers it.
#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub(crate) audience: Audience,
    pub(crate) object_id: String,
    pub(crate) sequence: i64,
    pub(crate) expires_at: i64,
}

/// Issued tokens by their `jti`, and the instant before which every token counts as expired.
#[derive(Debug, Default)]
pub(crate) struct TokenBook {
    pub(crate) issued: HashMap<String, IssuedToken>,
    pub(crate) revoked_before: Option<i64>,
    /// Sequence number distinguishing tokens issued in the same second.
    pub(crate) counter: u64,
}

impl TokenBook {
    /// Issues a JWT-shaped token (unsigned: the simulator recognises its own by `jti`).
    pub(crate) fn issue(
        &mut self,
        audience: Audience,
        object_id: &str,
        client_id: &str,
        tenant_id: &str,
        lifetime_s: i64,
    ) -> (String, i64) {
        self.counter += 1;
        let now = now_unix();
        let expires_at = now + lifetime_s;
        let jti = format!("{}-{}", uuid::Uuid::new_v4(), self.counter);
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none","kid":"azure-sim"}"#);
        let claims = json!({
            "aud": audience.uri(),
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": now, "nbf": now, "exp": expires_at,
            "oid": object_id, "sub": object_id, "appid": client_id, "tid": tenant_id,
            "idtyp": "app", "jti": jti,
        });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature = URL_SAFE_NO_PAD.encode(b"azure-sim");
        self.issued.insert(
            jti,
            IssuedToken {
                audience,
                object_id: object_id.to_string(),
                sequence: self.counter as i64,
                expires_at,
            },
        );
        (format!("{header}.{payload}.{signature}"), expires_at)
    }

    /// Every token issued so far stops working now.
    pub(crate) fn expire_all(&mut self) {
        self.revoked_before = Some(self.counter as i64);
    }

    fn lookup(&self, token: &str) -> Option<&IssuedToken> {
        let payload = token.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        self.issued.get(claims.get("jti")?.as_str()?)
    }
}

/// Why a token was refused.
enum Refusal {
    Missing,
    Invalid,
    Expired(i64),
    WrongAudience(Audience),
}

/// Checks the bearer token of a request for `surface`; on success records the caller.
pub(crate) fn authenticate(sim: &Sim, surface: &Surface, req: &mut Req) -> Result<(), Reply> {
    let Some(required) = Audience::of(surface) else {
        return Ok(());
    };
    let header = req.header("authorization").unwrap_or("").to_string();
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim);
    let state = sim.lock();
    let outcome = match token {
        None | Some("") => Err(Refusal::Missing),
        Some(token) => match state.tokens.lookup(token) {
            None => Err(Refusal::Invalid),
            Some(issued) => {
                let revoked = state
                    .tokens
                    .revoked_before
                    .is_some_and(|cutoff| issued.sequence <= cutoff);
                if revoked || issued.expires_at <= now_unix() {
                    Err(Refusal::Expired(issued.expires_at.min(now_unix())))
                } else if issued.audience != required {
                    Err(Refusal::WrongAudience(issued.audience))
                } else {
                    Ok(issued.object_id.clone())
                }
            }
        },
    };
    let tenant = state.tenant_id.clone();
    drop(state);
    match outcome {
        Ok(object_id) => {
            req.caller = Some(object_id);
            Ok(())
        }
        Err(refusal) => Err(refuse(surface, &tenant, refusal)),
    }
}

fn refuse(surface: &Surface, tenant: &str, refusal: Refusal) -> Reply {
    let unauthorized = StatusCode::UNAUTHORIZED;
    match surface {
        Surface::Vault(_) => {
            let message = match refusal {
                Refusal::Missing => "AKV10000: Request is missing a Bearer or PoP token.".to_string(),
                Refusal::Invalid => "AKV10019: Token validation failed: the token was not issued by a trusted issuer.".to_string(),
                Refusal::Expired(_) => "AKV10032: Invalid issuer or token expired.".to_string(),
                Refusal::WrongAudience(got) => format!(
                    "AKV10022: Invalid audience. Expected https://vault.azure.net, found: {}.",
                    got.uri()
                ),
            };
            Reply::error(unauthorized, "Unauthorized", &message).with_header(
                "www-authenticate",
                format!(
                    "Bearer authorization=\"https://login.microsoftonline.com/{tenant}\", resource=\"https://vault.azure.net\""
                ),
            )
        }
        Surface::Graph => {
            let (code, message) = match refusal {
                Refusal::Missing => (
                    "InvalidAuthenticationToken",
                    "Access token is empty.".to_string(),
                ),
                Refusal::Invalid => (
                    "InvalidAuthenticationToken",
                    "IDX14100: JWT is not well formed.".to_string(),
                ),
                Refusal::Expired(_) => (
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.".to_string(),
                ),
                Refusal::WrongAudience(_) => (
                    "InvalidAuthenticationToken",
                    "Access token validation failure. Invalid audience.".to_string(),
                ),
            };
            Reply::graph_error(unauthorized, code, &message)
                .with_header("www-authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"")
        }
        Surface::Mde => {
            let message = match refusal {
                Refusal::Missing => "Authorization header is missing.".to_string(),
                Refusal::Invalid => "The token is invalid.".to_string(),
                Refusal::Expired(_) => "The token is expired.".to_string(),
                Refusal::WrongAudience(got) => format!("Invalid audience: {}.", got.uri()),
            };
            Reply::error(unauthorized, "Unauthorized", &message)
        }
        _ => {
            let (code, message, description) = match refusal {
                Refusal::Missing => (
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.".to_string(),
                    "The authentication failed because of missing 'Authorization' header.",
                ),
                Refusal::Invalid => (
                    "InvalidAuthenticationToken",
                    "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant.".to_string(),
                    "The access token is invalid.",
                ),
                Refusal::Expired(at) => (
                    "ExpiredAuthenticationToken",
                    format!(
                        "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                        rfc3339(at),
                        rfc3339(now_unix())
                    ),
                    "The access token has expired.",
                ),
                Refusal::WrongAudience(got) => (
                    "InvalidAuthenticationTokenAudience",
                    format!(
                        "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                        got.uri()
                    ),
                    "The access token audience is invalid.",
                ),
            };
            Reply::error(unauthorized, code, &message).with_header(
                "www-authenticate",
                format!(
                    "Bearer authorization_uri=\"https://login.microsoftonline.com/{tenant}\", error=\"invalid_token\", error_description=\"{description}\""
                ),
            )
        }
    }
}

/// Serves the token endpoints: IMDS (`/metadata/identity/oauth2/token`), App Service
/// (`/msi/token`, the `IDENTITY_ENDPOINT`), and Entra client credentials (`/{tenant}/oauth2/v2.0/token`).
pub(crate) fn token_endpoint(sim: &Sim, req: &Req) -> Answer {
    let path = req.path.to_ascii_lowercase();
    let form: Vec<(String, String)> = crate::http::parse_query(&String::from_utf8_lossy(&req.body));
    let field = |name: &str| -> Option<String> {
        req.query(name).map(str::to_string).or_else(|| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    };
    let oauth_error = |code: &str, description: &str| {
        Reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": code, "error_description": description}),
        )
    };
    let imds = path.starts_with("/metadata/identity/oauth2/token");
    let app_service = path.starts_with("/msi/token");
    if imds
        && !req
            .header("metadata")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    {
        return Err(oauth_error(
            "invalid_request",
            "Required metadata header not specified",
        ));
    }
    if app_service {
        let expected = sim.lock().identity_header.clone();
        if req.header("x-identity-header") != Some(expected.as_str()) {
            return Err(oauth_error(
                "invalid_request",
                "The X-IDENTITY-HEADER is missing or wrong.",
            ));
        }
    }
    let requested = field("resource")
        .or_else(|| field("scope"))
        .unwrap_or_default();
    let Some(audience) = Audience::parse(&requested) else {
        return Err(oauth_error(
            "invalid_resource",
            &format!("AADSTS500011: The resource principal named {requested} was not found in the tenant."),
        ));
    };
    let mut state = sim.lock();
    let wanted = field("client_id")
        .or_else(|| field("object_id"))
        .or_else(|| field("principal_id"))
        .or_else(|| field("msi_res_id").or_else(|| field("mi_res_id")));
    let identity = match wanted {
        None => state.default_identity.clone(),
        Some(wanted) => match state.identity(&wanted) {
            Some(identity) => identity,
            None => {
                return Err(oauth_error(
                    "invalid_request",
                    &format!("Identity not found: no managed identity or app with id '{wanted}'."),
                ))
            }
        },
    };
    if path.contains("/oauth2/v2.0/token") {
        // An app with a secret in the seed must present it; others are accepted as they are.
        if let Some(expected) = identity.client_secret.as_ref() {
            if field("client_secret").as_ref() != Some(expected) {
                return Err(Reply::json(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
                ));
            }
        }
    }
    let lifetime = state.token_lifetime_s;
    let tenant = state.tenant_id.clone();
    let (token, expires_on) = state.tokens.issue(
        audience,
        &identity.object_id,
        &identity.client_id,
        &tenant,
        lifetime,
    );
    drop(state);
    let now = now_unix();
    let body = if path.contains("/oauth2/v2.0/token") {
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})
    } else {
        json!({
            "access_token": token,
            "client_id": identity.client_id,
            "expires_in": lifetime.to_string(),
            "expires_on": expires_on.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "not_before": now.to_string(),
            "resource": audience.uri(),
            "token_type": "Bearer",
        })
    };
    Ok(Reply::ok(body))
}
