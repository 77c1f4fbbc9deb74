//! Admin HTTP server (hyper): what operators and Prometheus read, and the
//! run-time control of the backend pool.
//!
//! Routes (every JSON error is `{"error": "..."}`):
//! - `GET /metrics`: Prometheus text exposition of every `e2lb_*` metric.
//! - `GET /healthz`: 200 while the process serves requests (liveness).
//! - `GET /readyz`: 200 once the proxy listens for E2 nodes and at least one
//!   backend takes new associations (healthy, not draining), else 503.
//! - `GET /api/v1/backends`, `GET /api/v1/backends/{name}`: members with
//!   their state, scores, measured latency and probe status.
//! - `POST /api/v1/backends` `{"name","addr","metrics"?}`: add (201; 400 bad
//!   JSON or field; 409 name or address taken).
//! - `DELETE /api/v1/backends/{name}`: remove (200 when gone; 202 when it
//!   still holds associations: drained, gone when they are).
//! - `POST /api/v1/backends/{name}/drain`, `DELETE .../drain`: drain / undrain.
//! - `GET /api/v1/associations`: E2 node id → backend, streams, in flight, age.
//! - `GET /api/v1/balancer`: mode, pool figures, per-backend scores and the
//!   last decisions with their reasons.
//! - `GET /api/v1/scaler`: actuator, leader, desired/actual/pending replicas,
//!   backends being removed, the policy and the last decisions (404 when the
//!   scaler is off).
//! - `GET /api/v1/plan?request=...`: a migration plan (not executed);
//!   `POST /api/v1/plan/execute` plans and runs one; `POST
//!   /api/v1/associations/{id}/migrate` moves one association; `GET
//!   /api/v1/migrations`: the last plan and moves.
//! - Router mode: `GET /api/v1/associations/{id}/router`: the pods a node is
//!   shared by and its subscription table (node-side id, owner pods and
//!   their ids, RAN function, age, indications routed; 409 for a node in
//!   association mode); `POST
//!   /api/v1/associations/{id}/subscriptions/{requestor}-{instance}/move`
//!   `{"to": "ric-2"}` hands one subscription over (202; adopted when that
//!   pod's xApp subscribes alike).
//! - `POST /api/v1/config/reload`: re-read the configuration file (200 with
//!   what was applied and what needs a restart; 400 with the precise error
//!   when invalid, the running configuration kept).
//!
//! Unknown paths are 404, known paths with another method 405.
//!
//! Access control ([`auth`], decision table there): `/metrics`, `/healthz`
//! and `/readyz` are always open; the API needs `Authorization: Bearer
//! <token>` for reads on a non-loopback bind and for every mutating request
//! once a token is configured (401 with `WWW-Authenticate: Bearer` when
//! missing, 403 when wrong). With `[admin] tls_cert`/`tls_key` the server
//! speaks HTTPS only ([`tls`]).

mod api;
pub mod auth;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use self::auth::{Access, Policy, Token, TokenSource, Verdict};

use crate::balance::live::LiveBalancer;
use crate::balance::Pool;
use crate::proxy::{AssocTable, Metrics};
use crate::scale::control::ScaleControl;

/// What the admin routes read and change.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub pool: Arc<Pool>,
    pub balance: Arc<LiveBalancer>,
    pub associations: Arc<AssocTable>,
    /// Set once the proxy's listeners are bound.
    pub ready: AtomicBool,
    /// Port and path of the metrics URL given to a backend added without
    /// one (`None`: such a backend is not probed).
    pub default_metrics: Option<(u16, String)>,
    /// The scaler, when enabled (`/api/v1/scaler`).
    pub scale: Option<Arc<ScaleControl>>,
    /// The migration planner and executor (`/api/v1/plan`, `/api/v1/migrations`).
    pub migrate: Option<Arc<crate::migrate::Executor>>,
    /// Configuration reload (`POST /api/v1/config/reload`).
    pub reload: Option<Arc<crate::reload::Reloader>>,
    /// Bearer token and TLS (none by default: plain HTTP, no token).
    pub security: Security,
    /// Requests refused by access control, by reason (missing, wrong, forbidden).
    auth_refusals: prometheus::IntCounterVec,
}

/// Token and TLS of the admin server (`[admin] token_file`/`token_env`,
/// `tls_cert`/`tls_key`).
#[derive(Clone, Default)]
pub struct Security {
    pub token: Option<Token>,
    pub tls: Option<TlsAcceptor>,
}

/// The admin token or certificate cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Security {
    /// Load what `[admin]` names (the section is validated already). Logs
    /// where a token comes from, never the token.
    pub fn from_config(section: &crate::config::AdminSection) -> Result<Self, SecurityError> {
        let token = match section.token_source() {
            Some(src) => {
                let t = src.load()?;
                info!(source = %src.describe(), "admin API: bearer token configured");
                Some(t)
            }
            None => None,
        };
        let tls = match section.tls_files() {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        Ok(Security { token, tls })
    }

    /// A token from its secret (tests and embedders).
    pub fn with_token(mut self, source: &TokenSource) -> Result<Self, SecurityError> {
        self.token = Some(source.load()?);
        Ok(self)
    }
}

fn refusal_counter() -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "e2lb_admin_auth_refusals_total",
            "admin requests refused by access control, by reason (missing, wrong, forbidden)",
        ),
        &["reason"],
    )
    .expect("static metric options are valid")
}

impl AdminState {
    pub fn new(
        metrics: Arc<Metrics>,
        pool: Arc<Pool>,
        balance: Arc<LiveBalancer>,
        associations: Arc<AssocTable>,
    ) -> Self {
        AdminState {
            metrics,
            pool,
            balance,
            associations,
            ready: AtomicBool::new(false),
            default_metrics: None,
            scale: None,
            migrate: None,
            reload: None,
            security: Security::default(),
            auth_refusals: refusal_counter(),
        }
    }

    /// Serve with this token and TLS configuration.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        if let Err(e) = self
            .metrics
            .registry
            .register(Box::new(self.auth_refusals.clone()))
        {
            debug!(error = %e, "admin refusal counter not registered");
        }
        self
    }

    /// Serves `POST /api/v1/config/reload` with this reloader.
    pub fn with_reload(mut self, reloader: Arc<crate::reload::Reloader>) -> Self {
        self.reload = Some(reloader);
        self
    }

    /// Serves the plan and migration endpoints from this executor.
    pub fn with_migrate(mut self, executor: Arc<crate::migrate::Executor>) -> Self {
        self.migrate = Some(executor);
        self
    }

    /// Serves `/api/v1/scaler` from this scaler.
    pub fn with_scale(mut self, scale: Arc<ScaleControl>) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Backends added without a metrics URL get `http://<host>:<port><path>`.
    pub fn with_default_metrics(mut self, port: u16, path: impl Into<String>) -> Self {
        self.default_metrics = Some((port, path.into()));
        self
    }

    /// Listeners bound and at least one backend open.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.balance.has_open_backend()
    }
}

pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const JSON: &str = "application/json";

pub(crate) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = v.to_string();
    body.push('\n');
    reply(status, JSON, body)
}

pub(crate) fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg.to_string() }))
}

/// The answer to a request refused by access control (never echoes a token).
fn refuse(
    state: &AdminState,
    verdict: Verdict,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (reason, status, msg) = match verdict {
        Verdict::Missing => (
            "missing",
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer <token>)",
        ),
        Verdict::Wrong => ("wrong", StatusCode::FORBIDDEN, "wrong bearer token"),
        Verdict::Forbidden | Verdict::Allow => (
            "forbidden",
            StatusCode::FORBIDDEN,
            "this admin server is not bound to loopback and has no token \
             ([admin] token_file or token_env): only /metrics, /healthz and /readyz are served",
        ),
    };
    state.auth_refusals.with_label_values(&[reason]).inc();
    warn!(%peer, method = %req.method(), path = req.uri().path(), reason, "admin request refused");
    let mut r = error(status, msg);
    if verdict == Verdict::Missing {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"e2lb-admin\""),
        );
    }
    r
}

async fn route(
    state: &AdminState,
    policy: &Policy,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let verdict = policy.check(Access::of(req.method(), req.uri().path()), req.headers());
    if verdict != Verdict::Allow {
        return refuse(state, verdict, peer, &req);
    }
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, TEXT, "ok\n"),
        (&Method::GET, "/readyz") if state.is_ready() => reply(StatusCode::OK, TEXT, "ready\n"),
        (&Method::GET, "/readyz") => {
            let why = if state.ready.load(Ordering::Relaxed) {
                "not ready: no backend takes new associations\n"
            } else {
                "not ready: not listening yet\n"
            };
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, why)
        }
        (_, p) if p.starts_with("/api/v1/") => api::route(state, req).await,
        (m, "/metrics" | "/healthz" | "/readyz") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{m} not allowed on {path}"),
        ),
        (m, _) => error(StatusCode::NOT_FOUND, format!("no route {m} {path}")),
    }
}

/// Bind the admin address (errors surface at start-up, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Time a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve HTTP/1.1 (HTTPS when `state.security.tls` is set) on `listener`
/// until `shutdown` completes. Access control follows the bind address:
/// see [`auth`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    let loopback = listener
        .local_addr()
        .is_ok_and(|a| auth::is_loopback(a.ip()));
    let policy = Arc::new(Policy {
        loopback,
        token: state.security.token.clone(),
    });
    let tls = state.security.tls.clone();
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = tls.is_some(), token = policy.token.is_some(), loopback,
              "admin HTTP serving /metrics /healthz /readyz /api/v1");
        if !loopback && policy.token.is_none() {
            warn!(%addr, "admin API bound to a non-loopback address without a token: only /metrics, /healthz and /readyz are served");
        }
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let policy = policy.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, state, policy, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_connection(s, state, policy, peer).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "admin TLS handshake failed"),
                        Err(_) => debug!(%peer, "admin TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(io: I, state: Arc<AdminState>, policy: Arc<Policy>, peer: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let policy = policy.clone();
        async move { Ok::<_, Infallible>(route(&state, &policy, peer, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await
    {
        debug!(%peer, error = %e, "admin connection ended with an error");
    }
}
