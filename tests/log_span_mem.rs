//! The association's log span stays the same size however often it moves.
//!
//! tracing-subscriber's fmt layer appends every record of a span field, so a
//! `backend` field recorded on each re-homing grew the span (and every log
//! line of that association) without bound; the soak rig test showed lines
//! carrying dozens of `backend=` after half an hour of live migrations. Over
//! the in-memory transport: one node, two RIC simulators, twelve moves.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2lb::balance::{Backend, Pool};
use e2lb::migrate::{Executor, ExecutorConfig};
use e2lb::proxy::table::{MoveOutcome, MoveReason};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::session::BackendId;
use e2lb::sim::{run_nodes, run_ric, NodeLive, NodeSimConfig, RicLive, RicSimConfig, TrafficClass};
use e2lb::transport::mem::MemNet;
use e2lb::transport::Options;
use tokio_util::sync::CancellationToken;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_association_does_not_grow_its_log_span() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

    let net = MemNet::new();
    let stop = CancellationToken::new();
    let mut rics = Vec::new();
    for i in 0..2u8 {
        let l = net
            .listen(
                addr(&format!("127.0.30.{}:36421", i + 1)),
                Options::default(),
            )
            .expect("listen");
        let live = RicLive::new();
        let cfg = RicSimConfig {
            name: format!("ric-{i}"),
            requestor_id: 10 + u16::from(i),
            ..RicSimConfig::default()
        };
        let s = stop.clone();
        rics.push((
            live.clone(),
            tokio::spawn(run_ric(l, cfg, live, async move { s.cancelled().await })),
        ));
    }
    let pool = Pool::new(
        (0..2u8)
            .map(|i| {
                Backend::new(
                    u32::from(i),
                    format!("ric-{i}"),
                    addr(&format!("127.0.30.{}:36421", i + 1)),
                )
            })
            .collect(),
    );
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = Arc::new(
        Shared::new(
            ProxyConfig::default(),
            pool,
            net.connector(addr("127.0.30.100:0"), Options::default()),
            metrics.clone(),
        )
        .expect("shared"),
    );
    let executor = Executor::new(
        ExecutorConfig::default(),
        shared.pool.clone(),
        shared.balance.clone(),
        shared.associations.clone(),
        &metrics.registry,
    )
    .expect("executor");
    let listen = addr("127.0.30.50:36421");
    let l = net.listen(listen, Options::default()).expect("listen");
    let s = stop.clone();
    let proxy = tokio::spawn(proxy::serve(l, shared.clone(), async move {
        s.cancelled().await
    }));
    let live = NodeLive::new();
    let nodes = tokio::spawn(run_nodes(
        net.connector(addr("127.0.31.1:0"), Options::default()),
        NodeSimConfig {
            target: listen,
            nodes: 1,
            ran_functions: vec![1],
            class: TrafficClass::B,
            duration: Duration::from_secs(60),
            drain: Duration::from_millis(200),
            ..NodeSimConfig::default()
        },
        live.clone(),
    ));
    for _ in 0..500 {
        if live
            .subscriptions
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (id, mut on) = (0..2u32)
        .find_map(|b| {
            let v = shared.associations.on_backend(BackendId(b));
            v.first().map(|r| (r.id, b))
        })
        .expect("the node is placed");
    // Back and forth; a move back waits until the backend has let go of the
    // node's previous association (one GlobalE2node-ID per backend).
    let mut moves = 0;
    for _ in 0..500 {
        let to = 1 - on;
        match executor
            .move_one(id, Some(BackendId(to)), MoveReason::Planned, 1)
            .await
        {
            Some(MoveOutcome::Switched { .. }) => {
                on = to;
                moves += 1;
                if moves == 12 {
                    break;
                }
            }
            Some(MoveOutcome::Aborted { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("move: {other:?}"),
        }
    }
    assert_eq!(moves, 12);
    live.stop();
    nodes.await.expect("nodes");
    stop.cancel();
    proxy.await.expect("proxy");
    for (_, r) in rics {
        r.await.expect("ric");
    }
    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8");
    let moved: Vec<&str> = text.lines().filter(|l| l.contains("re-homed")).collect();
    assert_eq!(moved.len(), 12, "{text}");
    for l in &moved {
        let span = l.split_once("assoc{").map_or("", |(_, r)| r);
        let span = span.split_once('}').map_or(span, |(s, _)| s);
        assert!(
            span.matches("backend=").count() <= 1,
            "the span grew with the moves: {l}"
        );
    }
}
