//! The RIC simulator's HTTP endpoint: the figures e2lb probes.
//!
//! Routes:
//! - `GET /metrics`: Prometheus text format (0.0.4):
//!   - `ric_cpu_utilisation_ratio` (gauge): CPU time / wall time since the
//!     previous scrape, in cores (0..1 per core); which CPU time is set by
//!     [`super::ric::CpuFigure`] (handler threads by default, or the process);
//!     `ric_process_cpu_utilisation_ratio` is always the process's.
//!   - `ric_processing_latency_seconds{quantile="0.99"}` and
//!     `ric_processing_latency_seconds_mean` (gauges) over the last 10–20 s;
//!   - `ric_associations` (gauge), `ric_indications_received_total`,
//!     `ric_e2_setups_total`, `ric_subscriptions_total`,
//!     `ric_indications_missing` (counters/gauges).
//! - `GET /healthz`: `ok`.
//!
//! Anything else is 404.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounter, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use super::ric::{RicLive, RicMetrics};

/// Render the Prometheus text for one scrape.
pub fn render(m: &RicMetrics) -> Result<String, prometheus::Error> {
    let reg = Registry::new();
    let gauge = |name: &str, help: &str, v: f64| -> Result<(), prometheus::Error> {
        let g = Gauge::with_opts(Opts::new(name, help))?;
        g.set(v);
        reg.register(Box::new(g))
    };
    let counter = |name: &str, help: &str, v: u64| -> Result<(), prometheus::Error> {
        let c = IntCounter::with_opts(Opts::new(name, help))?;
        c.inc_by(v);
        reg.register(Box::new(c))
    };
    gauge(
        "ric_cpu_utilisation_ratio",
        "CPU time over wall time since the previous scrape, in cores (0..1 per core)",
        m.cpu_ratio,
    )?;
    gauge(
        "ric_process_cpu_utilisation_ratio",
        "CPU time of the whole process over wall time since the previous scrape, in cores",
        m.process_cpu_ratio,
    )?;
    let q = GaugeVec::new(
        Opts::new(
            "ric_processing_latency_seconds",
            "Message processing latency quantiles over the last 10-20 s",
        ),
        &["quantile"],
    )?;
    q.with_label_values(&["0.99"]).set(m.processing_p99_s);
    reg.register(Box::new(q))?;
    gauge(
        "ric_processing_latency_seconds_mean",
        "Mean message processing latency over the last 10-20 s",
        m.processing_mean_s,
    )?;
    let assoc = IntGauge::with_opts(Opts::new(
        "ric_associations",
        "E2 associations currently open",
    ))?;
    assoc.set(i64::try_from(m.associations).unwrap_or(i64::MAX));
    reg.register(Box::new(assoc))?;
    counter(
        "ric_indications_received_total",
        "RIC Indications received",
        m.indications,
    )?;
    counter(
        "ric_e2_setups_total",
        "E2 Setup Requests answered",
        m.setups,
    )?;
    counter(
        "ric_subscriptions_total",
        "RIC subscriptions confirmed by nodes",
        m.subscriptions,
    )?;
    gauge(
        "ric_indications_missing",
        "Indication sequence numbers currently missing (gaps)",
        m.missing as f64,
    )?;
    let mut out = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

fn respond(req: &Request<Incoming>, live: &RicLive) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ctype),
        );
        r
    };
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"GET only\n"),
        );
    }
    match req.uri().path() {
        "/metrics" => match render(&live.metrics()) {
            Ok(text) => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                Bytes::from(text),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                Bytes::from(format!("{e}\n")),
            ),
        },
        "/healthz" => reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    }
}

/// Bind `addr` (port 0 picks one; read it with `local_addr`).
pub async fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `/metrics` on a bound listener until `shutdown` completes.
pub async fn serve_metrics_on(
    listener: TcpListener,
    live: Arc<RicLive>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let live = live.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = respond(&req, &live);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
    conns.shutdown().await;
    Ok(())
}

/// Bind `addr` and serve `/metrics` until `shutdown` completes.
pub async fn serve_metrics(
    addr: SocketAddr,
    live: Arc<RicLive>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = bind_metrics(addr).await?;
    serve_metrics_on(listener, live, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_text_has_every_name() {
        let text = render(&RicMetrics {
            cpu_ratio: 0.25,
            processing_p99_s: 0.002,
            associations: 3,
            indications: 10,
            ..Default::default()
        })
        .expect("render");
        for name in [
            "ric_cpu_utilisation_ratio 0.25",
            "ric_process_cpu_utilisation_ratio",
            "ric_processing_latency_seconds{quantile=\"0.99\"} 0.002",
            "ric_processing_latency_seconds_mean",
            "ric_associations 3",
            "ric_indications_received_total 10",
            "ric_e2_setups_total",
            "# HELP ric_cpu_utilisation_ratio",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
