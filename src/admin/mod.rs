//! Admin HTTP server (hyper): what operators and Prometheus read.
//!
//! Routes:
//! - `GET /metrics`: Prometheus text exposition of every `e2lb_*` metric.
//! - `GET /healthz`: 200 while the process serves requests (liveness).
//! - `GET /readyz`: 200 once the proxy listens for E2 nodes, else 503 (readiness).
//!
//! Anything else is 404 with a JSON error body.

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

use crate::proxy::Metrics;

/// What the admin routes read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Set once the proxy's listeners are bound.
    pub ready: AtomicBool,
}

fn reply(
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

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        (&Method::GET, "/healthz") => reply(StatusCode::OK, TEXT, "ok\n"),
        (&Method::GET, "/readyz") if state.ready.load(Ordering::Relaxed) => {
            reply(StatusCode::OK, TEXT, "ready\n")
        }
        (&Method::GET, "/readyz") => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        (_, path) => reply(
            StatusCode::NOT_FOUND,
            JSON,
            serde_json::json!({ "error": format!("no route {} {path}", req.method()) }).to_string(),
        ),
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
        info!(%addr, "admin HTTP serving /metrics /healthz /readyz");
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = route(&state, &req);
                async move { Ok::<_, Infallible>(resp) }
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
