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
//!
//! Unknown paths are 404, known paths with another method 405.

mod api;

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
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

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
        }
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

async fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
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

/// Serve HTTP/1.1 on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin HTTP serving /metrics /healthz /readyz /api/v1");
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
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}
