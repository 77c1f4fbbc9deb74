//! The admin HTTP routes over a real TCP socket on loopback.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use e2lb::admin::{self, AdminState};
use e2lb::balance::live::{BalanceSettings, LiveBalancer};
use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{AssocTable, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test]
async fn routes_answer() {
    let metrics = Arc::new(Metrics::new().unwrap());
    metrics.associations_total.inc();
    let pool = Arc::new(Pool::new(vec![Backend::new(
        0,
        "ric-0",
        "127.0.0.1:36421".parse().unwrap(),
    )]));
    let live = Arc::new(
        LiveBalancer::new(
            BalanceSettings::default(),
            &pool,
            &metrics.registry,
            std::time::Instant::now(),
        )
        .unwrap(),
    );
    let state = Arc::new(AdminState::new(
        metrics,
        pool,
        live,
        Arc::new(AssocTable::new()),
    ));
    let l = admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(admin::serve(l, state.clone(), async move {
        s.cancelled().await
    }));

    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("e2lb_associations_accepted_total 1"),
        "{body}"
    );
    assert!(body.contains("# TYPE e2lb_stream_fallbacks_total counter"));
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    state.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (code, body) = get(addr, "/nope").await;
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""));
    stop.cancel();
    task.await.unwrap();
}
