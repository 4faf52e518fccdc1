//! Listeners (HTTPS and plain HTTP on one port, one extra port per vault), the request pipeline (faults → auth → throttling → surface → log) and the in-process handle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Extension, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::auth::Audience;
use crate::faults::{Draw, Fault, FaultRule, RequestKind, ThrottleConfig};
use crate::http::{parse_query, percent_decode, Reply, ReplyBody, Req, Surface};
use crate::seed::Seed;
use crate::state::Sim;
use crate::{Shared, SimError};

/// Largest request body accepted (Key Vault's own limit is 25 KB per secret; runbooks are bigger).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Starts simulators.
pub struct Simulator;

/// A running simulator: its URLs, and the test API over its state, faults and tokens.
/// Dropping the handle stops the listeners.
pub struct SimulatorHandle {
    sim: Shared,
    port: u16,
    vault_urls: BTreeMap<String, String>,
    certificate_pem: String,
    stop: watch::Sender<bool>,
    /// How long start-up took (bind, certificate, seed).
    pub startup: Duration,
}

/// What a connection knows about where it arrived.
#[derive(Debug, Clone)]
struct Connection {
    tls: bool,
    /// The vault this listener serves, for per-vault ports.
    vault: Option<String>,
    port: u16,
    /// The client's address (Key Vault's firewall checks it).
    peer: std::net::IpAddr,
}

impl Simulator {
    /// Starts a simulator on a random port of 127.0.0.1.
    pub async fn start(seed: Seed) -> Result<SimulatorHandle, SimError> {
        Simulator::start_on(seed, 0).await
    }

    /// Starts a simulator on `port` (0: random) of 127.0.0.1.
    pub async fn start_on(seed: Seed, port: u16) -> Result<SimulatorHandle, SimError> {
        let started = Instant::now();
        let sim: Shared = Arc::new(Sim::new(seed)?);
        let (tls, certificate_pem) = tls_acceptor()?;
        let main = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(SimError::Bind)?;
        let port = main.local_addr().map_err(SimError::Bind)?.port();
        let mut listeners = vec![(main, None)];
        let vault_names: Vec<String> = sim.lock().vaults.keys().cloned().collect();
        let mut vault_urls = BTreeMap::new();
        for name in vault_names {
            let listener = TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(SimError::Bind)?;
            let vault_port = listener.local_addr().map_err(SimError::Bind)?.port();
            let url = format!("https://127.0.0.1:{vault_port}");
            sim.lock().attach_vault_url(&name, &url);
            vault_urls.insert(name.clone(), url);
            listeners.push((listener, Some(name)));
        }
        let router = Router::new().fallback(pipeline).with_state(sim.clone());
        let (stop, stopped) = watch::channel(false);
        for (listener, vault) in listeners {
            tokio::spawn(accept_loop(
                listener,
                vault,
                tls.clone(),
                router.clone(),
                stopped.clone(),
            ));
        }
        Ok(SimulatorHandle {
            sim,
            port,
            vault_urls,
            certificate_pem,
            stop,
            startup: started.elapsed(),
        })
    }
}

fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), SimError> {
    let tls_error = |error: &dyn std::fmt::Display| SimError::Tls(error.to_string());
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "*.vault.azure.net".to_string(),
        "*.vault.localhost".to_string(),
    ])
    .map_err(|e| tls_error(&e))?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "azure-sim");
    let key = rcgen::KeyPair::generate().map_err(|e| tls_error(&e))?;
    let certificate = params.self_signed(&key).map_err(|e| tls_error(&e))?;
    let pem = certificate.pem();
    let chain = vec![rustls::pki_types::CertificateDer::from(
        certificate.der().to_vec(),
    )];
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(&e))?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|e| tls_error(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

async fn accept_loop(
    listener: TcpListener,
    vault: Option<String>,
    tls: tokio_rustls::TlsAcceptor,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let router = router.clone();
        let vault = vault.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
            let connection = Connection {
                tls: is_tls,
                vault,
                port,
                peer: peer.ip(),
            };
            let service = router.map_request(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(connection.clone());
                request
            });
            let service = TowerToHyperService::new(service);
            let builder = hyper::server::conn::http1::Builder::new();
            if is_tls {
                if let Ok(stream) = tls.accept(stream).await {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            } else {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
    }
}

fn surface_of(connection: &Connection, host: &str, path: &str) -> Surface {
    if let Some(vault) = &connection.vault {
        return Surface::Vault(vault.clone());
    }
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    if let Some((name, rest)) = host.split_once('.') {
        if rest.starts_with("vault.") {
            return Surface::Vault(name.to_string());
        }
    }
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("/_sim/") || lower == "/_sim" {
        Surface::Control
    } else if lower.starts_with("/metadata/identity/oauth2/token")
        || lower.starts_with("/msi/token")
        || lower.contains("/oauth2/v2.0/token")
        || lower.contains("/oauth2/token")
    {
        Surface::Token
    } else if lower.starts_with("/v1.0/") || lower.starts_with("/beta/") {
        Surface::Graph
    } else if lower.starts_with("/api/") {
        Surface::Mde
    } else {
        Surface::Arm
    }
}

async fn pipeline(
    State(sim): State<Shared>,
    Extension(connection): Extension<Connection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is too large.",
        )
        .into_response();
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("127.0.0.1:{}", connection.port));
    let scheme = if connection.tls { "https" } else { "http" };
    let mut req = Req {
        method: parts.method.clone(),
        path: percent_decode(parts.uri.path()),
        query: parse_query(parts.uri.query().unwrap_or("")),
        headers: parts.headers.clone(),
        body: body.to_vec(),
        origin: format!("{scheme}://{host}"),
        caller: None,
        lro_fault: None,
        peer: connection.peer,
    };
    let surface = surface_of(&connection, &host, &req.path);
    if surface == Surface::Control {
        return crate::control::handle(&sim, &req).into_response();
    }
    let reply = serve(&sim, &surface, &mut req).await;
    log(&sim, &surface, &req, &reply);
    reply.into_response()
}

async fn serve(sim: &Sim, surface: &Surface, req: &mut Req) -> Reply {
    let faults = sim.lock().faults.hit(req.method.as_str(), &req.path);
    let mut injected = None;
    for fault in faults {
        match fault {
            Fault::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            Fault::ExpireTokens => sim.lock().tokens.expire_all(),
            Fault::Status { .. } => injected = injected.or(Some(fault)),
            Fault::LroSlow { .. } | Fault::LroFail { .. } => req.lro_fault = Some(fault),
        }
    }
    if let Some(Fault::Status {
        status,
        retry_after,
        code,
        message,
    }) = injected
    {
        let reply = fault_reply(surface, status, code, message);
        let retry_after = retry_after.or(matches!(status, 429 | 503).then_some(1));
        let reply = match retry_after {
            Some(seconds) => reply.with_header("retry-after", seconds.to_string()),
            None => reply,
        };
        return reply.with_header("x-ms-sim-fault", "injected");
    }
    if let Err(reply) = crate::auth::authenticate(sim, surface, req) {
        return reply;
    }
    let mut remaining = None;
    if *surface == Surface::Arm {
        if let (Some(caller), Some(subscription)) = (&req.caller, subscription_of(&req.path)) {
            let kind = RequestKind::of(req.method.as_str());
            match sim.lock().throttle.draw(&subscription, caller, kind) {
                Draw::Allowed(left) => remaining = Some((kind, left)),
                Draw::Throttled(wait) => {
                    return Reply::error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "SubscriptionRequestsThrottled",
                        &format!("Number of '{}' requests for subscription '{subscription}' actor '{caller}' exceeded. Please try again after '{wait}' seconds after the last request or reduce the number of requests.", kind.label()),
                    )
                    .with_header("retry-after", wait.to_string())
                    .with_header(ratelimit_header(kind), "0");
                }
            }
        }
    }
    let segments = crate::http::segments(&req.path);
    let machine_action = *surface == Surface::Mde
        && req.method == axum::http::Method::POST
        && segments.len() == 4
        && segments[1].eq_ignore_ascii_case("machines");
    if machine_action {
        let caller = req.caller.clone().unwrap_or_default();
        if let Draw::Throttled(wait) =
            sim.lock()
                .throttle
                .draw("mde", &caller, RequestKind::MdeActions)
        {
            return Reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                &format!("Rate limit is exceeded. Try again in {wait} seconds."),
            )
            .with_header("retry-after", wait.to_string());
        }
    }
    let answer = match surface {
        Surface::Arm => crate::arm::handle(sim, req),
        Surface::Vault(name) => crate::vault::handle(sim, name, req),
        Surface::Graph => crate::graph::handle(sim, req),
        Surface::Mde => crate::mde::handle(sim, req),
        Surface::Token => crate::auth::token_endpoint(sim, req),
        Surface::Control => Ok(crate::control::handle(sim, req)),
    };
    let mut reply = answer.unwrap_or_else(|reply| reply);
    match surface {
        Surface::Arm => {
            let id = uuid::Uuid::new_v4().to_string();
            reply = reply
                .with_header("x-ms-request-id", id.clone())
                .with_header("x-ms-correlation-request-id", id);
            if let Some((kind, left)) = remaining {
                reply = reply.with_header(ratelimit_header(kind), left.to_string());
            }
        }
        Surface::Vault(_) => {
            reply = reply
                .with_header("x-ms-keyvault-service-version", "1.9.2700.1")
                .with_header("x-ms-request-id", uuid::Uuid::new_v4().to_string());
        }
        Surface::Graph => {
            reply = reply.with_header("request-id", uuid::Uuid::new_v4().to_string());
        }
        _ => {}
    }
    reply
}

fn ratelimit_header(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Reads => "x-ms-ratelimit-remaining-subscription-reads",
        RequestKind::Writes => "x-ms-ratelimit-remaining-subscription-writes",
        RequestKind::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        RequestKind::MdeActions => "x-ms-ratelimit-remaining-machine-actions",
    }
}

/// The subscription an ARM path is under, if any.
fn subscription_of(path: &str) -> Option<String> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case("subscriptions") {
            return segments.next().map(str::to_string);
        }
    }
    None
}

fn fault_reply(
    surface: &Surface,
    status: u16,
    code: Option<String>,
    message: Option<String>,
) -> Reply {
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (default_code, default_message) = match (surface, status) {
        (Surface::Arm, 429) => ("TooManyRequests", "The request is being throttled."),
        (Surface::Vault(_), 429) => ("Throttled", "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"),
        (Surface::Graph, 429) => ("TooManyRequests", "Too many requests."),
        (_, 429) => ("TooManyRequests", "Rate limit is exceeded."),
        (Surface::Arm, 409) => ("AnotherOperationInProgress", "Another operation on this or dependent resource is in progress. Retry the request after it completes."),
        (Surface::Graph, 409) => ("Request_MultipleObjectsWithSameKeyValue", "Another object with the same value for property already exists."),
        (_, 409) => ("Conflict", "The request conflicts with the current state of the resource."),
        (Surface::Graph, 503) => ("serviceNotAvailable", "The service is temporarily unavailable."),
        (_, 503) => ("ServiceUnavailable", "The service is temporarily unavailable. Please try again later."),
        (Surface::Graph, 500) => ("generalException", "An unexpected error occurred."),
        (_, 500) => ("InternalServerError", "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''."),
        (_, 401) => ("Unauthorized", "The request is not authorized."),
        (_, 403) => ("AuthorizationFailed", "The client does not have authorization to perform action."),
        (_, 404) => ("ResourceNotFound", "The resource was not found."),
        _ => ("Error", "Injected failure."),
    };
    let code = code.unwrap_or_else(|| default_code.to_string());
    let message = message.unwrap_or_else(|| default_message.to_string());
    match surface {
        Surface::Graph => Reply::graph_error(status_code, &code, &message),
        Surface::Token => Reply::json(
            status_code,
            json!({"error": code, "error_description": message}),
        ),
        _ => Reply::error(status_code, &code, &message),
    }
}

fn log(sim: &Sim, surface: &Surface, req: &Req, reply: &Reply) {
    // Token requests may carry a client secret: their bodies are not kept.
    let body: Value = if req.body.is_empty() || *surface == Surface::Token {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()))
    };
    let query: Map<String, Value> = req
        .query
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    let audience = Audience::of(surface)
        .filter(|_| req.caller.is_some())
        .map(Audience::uri);
    let mut entry = Map::new();
    entry.insert("surface".into(), json!(surface.label()));
    if let Surface::Vault(name) = surface {
        entry.insert("vault".into(), json!(name));
    }
    entry.insert("method".into(), json!(req.method.as_str()));
    entry.insert("path".into(), json!(req.path));
    entry.insert("query".into(), Value::Object(query));
    entry.insert("body".into(), body);
    entry.insert("audience".into(), json!(audience));
    entry.insert("caller".into(), json!(req.caller));
    entry.insert("status".into(), json!(reply.status.as_u16()));
    let faulted = reply
        .headers
        .iter()
        .any(|(name, _)| name.as_str() == "x-ms-sim-fault");
    entry.insert("fault".into(), json!(faulted));
    if let (true, ReplyBody::Json(error)) = (reply.status.as_u16() >= 400, &reply.body) {
        entry.insert(
            "error".into(),
            error.get("error").cloned().unwrap_or(Value::Null),
        );
    }
    sim.lock().log_request(entry);
}

impl SimulatorHandle {
    /// `https://127.0.0.1:{port}`: ARM, Graph (`/v1.0`), MDE (`/api`) and the token endpoints.
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:{port}`: the same routes over plain HTTP (for Rust clients).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port of the main listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address of the main listener.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The data-plane URL of a vault (`https://127.0.0.1:{its port}`), as its `vaultUri` says.
    pub fn vault_url(&self, name: &str) -> Option<String> {
        self.vault_urls.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Every vault's data-plane URL, by lower-case name.
    pub fn vault_urls(&self) -> &BTreeMap<String, String> {
        &self.vault_urls
    }

    /// The IMDS-style token endpoint (`IDENTITY_ENDPOINT` for App Service is `{base}/msi/token`).
    pub fn imds_endpoint(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.http_url())
    }

    /// The secret `/msi/token` expects in `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
    pub fn identity_header(&self) -> String {
        self.sim.lock().identity_header.clone()
    }

    /// The PEM of the self-signed certificate served on HTTPS.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A token for the default identity.
    pub fn token(&self, audience: Audience) -> String {
        let object_id = self.sim.lock().default_identity.object_id.clone();
        self.token_for(audience, &object_id)
    }

    /// A token for the identity with this object id, client id or name (any object id is accepted).
    pub fn token_for(&self, audience: Audience, identity: &str) -> String {
        let mut state = self.sim.lock();
        let (object_id, client_id) = match state.identity(identity) {
            Some(found) => (found.object_id, found.client_id),
            None => (identity.to_string(), identity.to_string()),
        };
        let tenant = state.tenant_id.clone();
        let lifetime = state.token_lifetime_s;
        state
            .tokens
            .issue(audience, &object_id, &client_id, &tenant, lifetime)
            .0
    }

    /// Every token issued so far stops working (requests get the API's "expired" 401).
    pub fn expire_tokens(&self) {
        self.sim.lock().tokens.expire_all();
    }

    /// Adds a fault rule; returns its id.
    pub fn add_fault(&self, rule: FaultRule) -> u64 {
        self.sim.lock().faults.add(rule)
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.sim.lock().faults.rules.clear();
    }

    /// Replaces ARM's throttling limits (and refills every bucket).
    pub fn set_throttle(&self, config: ThrottleConfig) {
        self.sim.lock().throttle.configure(config);
    }

    /// The request log, oldest first (`GET /_sim/requests`).
    pub fn requests(&self) -> Vec<Value> {
        self.sim.lock().requests.clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.sim.lock().requests.clear();
    }

    /// The whole state (`GET /_sim/state`).
    pub fn state(&self) -> Value {
        self.sim.lock().snapshot()
    }

    /// The stored ARM resource with this id (private `x-sim-*` fields removed).
    pub fn resource(&self, id: &str) -> Option<Value> {
        self.sim
            .lock()
            .arm
            .get(&id.to_ascii_lowercase())
            .map(crate::state::public_view)
    }

    /// Puts the world back to the seed: state, faults, tokens and the request log.
    pub fn reset(&self) {
        self.sim.reset();
    }

    /// Stops the listeners.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
