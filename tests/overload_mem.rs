//! Overload and limits through the real proxy over the in-memory transport
//! (README "Overload"): bounded queues with back-pressure to fast nodes when
//! the RIC is slow, the association limit at accept, and the per-backend E2
//! Setup pace under a reconnect storm of 200 nodes. Real time, a few seconds
//! each.

#[path = "support/peers.rs"]
mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, Metrics, Pace, ProxyConfig, Shared};
use e2lb::sim::{
    combined_loss, run_nodes, run_ric, NodeLive, NodeSimConfig, RicLive, RicSimConfig, TrafficClass,
};
use e2lb::transport::mem::{MemAssoc, MemConnector, MemNet};
use e2lb::transport::{Association, AssociationExt, Connector, Listener, Message, Options};
use peers::{indication, setup_request, setup_response};
use tokio_util::sync::CancellationToken;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Proxy<C: Connector = MemConnector> {
    shared: Arc<Shared<C>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    fn start(net: &MemNet, listen: SocketAddr, rics: &[SocketAddr], config: ProxyConfig) -> Self {
        let connector = net.connector(addr("127.0.40.100:0"), Options::default());
        Proxy::with_connector(net, listen, rics, config, connector)
    }
}

impl<C: Connector> Proxy<C> {
    fn with_connector(
        net: &MemNet,
        listen: SocketAddr,
        rics: &[SocketAddr],
        config: ProxyConfig,
        connector: C,
    ) -> Self {
        let pool = Pool::new(
            rics.iter()
                .enumerate()
                .map(|(i, a)| Backend::new(i as u32, format!("ric-{i}"), *a))
                .collect(),
        );
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let shared =
            Arc::new(Shared::new(config, pool, connector, metrics.clone()).expect("shared"));
        let l = net.listen(listen, Options::default()).expect("listen");
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(proxy::serve(l, shared.clone(), async move {
            s.cancelled().await
        }));
        Proxy {
            shared,
            metrics,
            stop,
            task,
        }
    }

    /// Sum of the samples of `name` (any labels) in the exposition.
    fn metric(&self, name: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("proxy stops")
            .expect("proxy task");
    }
}

async fn recv<A: Association>(a: &mut A) -> Message {
    tokio::time::timeout(Duration::from_secs(10), a.recv())
        .await
        .expect("timely")
        .expect("ok")
        .expect("open")
}

/// Fast nodes, a slow RIC: e2lb's queues stay within `queue` / `queue_bytes`
/// per direction of each association (sampled from its gauges all along),
/// the nodes are held back instead, the pauses are counted, and every
/// message arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_ric_pushes_back_on_fast_nodes_within_the_queue_bounds_and_loses_nothing() {
    const NODES: u16 = 16;
    const MESSAGES: u64 = 300;
    const PAYLOAD: usize = 200;
    let (queue, queue_bytes) = (16usize, 2048usize);
    let net = MemNet::with_queue(8);
    let ric_addr = addr("127.0.41.1:36421");
    let listen = addr("127.0.41.50:36421");
    let mut ric = net.listen(ric_addr, Options::default()).expect("listen");
    let p = Proxy::start(
        &net,
        listen,
        &[ric_addr],
        ProxyConfig {
            queue,
            queue_bytes,
            ..ProxyConfig::default()
        },
    );
    let msg_len = indication(1, 0, PAYLOAD).len();
    assert!(
        msg_len * queue > queue_bytes,
        "the byte bound must bite first"
    );

    // Set the nodes up one by one: RIC leg i belongs to node i.
    let connector = net.connector(addr("10.41.0.1:0"), Options::default());
    let mut nodes = Vec::new();
    let mut legs = Vec::new();
    for i in 0..NODES {
        let mut n = connector.connect(listen).await.expect("connect");
        n.send(&Message::new(0, 70, setup_request(u32::from(i) + 1)))
            .await
            .expect("send");
        let mut r = tokio::time::timeout(Duration::from_secs(5), ric.accept())
            .await
            .expect("accepted")
            .expect("leg");
        recv(&mut r).await;
        r.send(&Message::new(0, 70, setup_response()))
            .await
            .expect("send");
        recv(&mut n).await;
        nodes.push(n);
        legs.push(r);
    }

    // Sample e2lb's queue gauges while the nodes blast and the RIC crawls.
    let done = CancellationToken::new();
    let sampler = {
        let metrics = p.metrics.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (mut max_msgs, mut max_bytes) = (0i64, 0i64);
            while !done.is_cancelled() {
                let m = metrics
                    .queued_messages
                    .with_label_values(&["backend"])
                    .get();
                let b = metrics.queued_bytes.with_label_values(&["backend"]).get();
                max_msgs = max_msgs.max(m);
                max_bytes = max_bytes.max(b);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            (max_msgs, max_bytes)
        })
    };
    let senders: Vec<_> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, mut n)| {
            tokio::spawn(async move {
                for seq in 0..MESSAGES {
                    n.send(&Message::new(0, 70, indication(i as u16 + 1, seq, PAYLOAD)))
                        .await
                        .expect("node send");
                }
                n
            })
        })
        .collect();
    let readers: Vec<_> = legs
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            tokio::spawn(async move {
                for seq in 0..MESSAGES {
                    let m = recv(&mut r).await;
                    assert_eq!(
                        m.payload,
                        indication(i as u16 + 1, seq, PAYLOAD),
                        "node {i} message {seq}: lost, duplicated or out of order"
                    );
                    // A slow RIC: one message per leg every few hundred µs.
                    if seq % 4 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                r
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut keep = Vec::new();
    for r in readers {
        keep.push(r.await.expect("reader"));
    }
    let took = t0.elapsed();
    for s in senders {
        keep_node(s.await.expect("sender"));
    }
    done.cancel();
    let (max_msgs, max_bytes) = sampler.await.expect("sampler");
    let n = i64::from(NODES);
    let (msg_bound, byte_bound) = (n * queue as i64, n * (queue_bytes + msg_len) as i64);
    let paused = p.metric("e2lb_backpressure_total");
    let paused_s = p.metric("e2lb_backpressure_seconds_total");
    println!(
        "overload: {NODES} nodes x {MESSAGES} msgs of {msg_len} B through a slow RIC in {:.2} s; \
         e2lb queued at most {max_msgs} msgs / {max_bytes} B towards the RIC \
         (bounds {msg_bound} msgs / {byte_bound} B); node reads paused {paused} times, {paused_s:.2} s in all",
        took.as_secs_f64()
    );
    assert!(
        max_bytes <= byte_bound,
        "{max_bytes} B queued > {byte_bound}"
    );
    assert!(
        max_msgs <= msg_bound,
        "{max_msgs} msgs queued > {msg_bound}"
    );
    assert!(max_msgs > 0, "the sampler saw the queues fill");
    assert!(paused >= 1.0, "back-pressure was counted");
    assert!(paused_s > 0.0);
    assert_eq!(p.metric("e2lb_messages_dropped_total"), 0.0);
    drop(keep);
    let metrics = p.metrics.clone();
    p.stop().await;
    // Every association closed: the gauges are back to zero.
    for to in ["node", "backend", "held"] {
        assert_eq!(metrics.queued_messages.with_label_values(&[to]).get(), 0);
        assert_eq!(metrics.queued_bytes.with_label_values(&[to]).get(), 0);
    }
}

fn keep_node(_n: MemAssoc) {}

/// At `max_associations`, a new association is closed at accept and counted;
/// the open ones keep flowing; a slot freed (or a higher limit after a
/// reload) admits again, and a lower limit closes nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_limit_refuses_at_accept_and_spares_the_others() {
    let net = MemNet::new();
    let ric_addr = addr("127.0.42.1:36421");
    let listen = addr("127.0.42.50:36421");
    let mut ric = net.listen(ric_addr, Options::default()).expect("listen");
    let p = Proxy::start(
        &net,
        listen,
        &[ric_addr],
        ProxyConfig {
            max_associations: 2,
            ..ProxyConfig::default()
        },
    );
    let connector = net.connector(addr("10.42.0.1:0"), Options::default());
    let mut open = Vec::new();
    for gnb in 1..=2u32 {
        let mut n = connector.connect(listen).await.expect("connect");
        n.send(&Message::new(0, 70, setup_request(gnb)))
            .await
            .expect("send");
        let mut r = ric.accept().await.expect("leg");
        recv(&mut r).await;
        r.send(&Message::new(0, 70, setup_response()))
            .await
            .expect("send");
        recv(&mut n).await;
        open.push((n, r));
    }
    // The third is closed at once, before anything is read.
    let mut third = connector.connect(listen).await.expect("connect");
    let closed = tokio::time::timeout(Duration::from_secs(5), third.recv())
        .await
        .expect("closed in time");
    assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    assert_eq!(
        p.metric("e2lb_associations_refused_total{reason=\"max_associations\"}"),
        1.0
    );
    // The others are untouched.
    for (i, (n, r)) in open.iter_mut().enumerate() {
        n.send(&Message::new(0, 70, indication(i as u16, 1, 10)))
            .await
            .expect("send");
        assert_eq!(recv(r).await.payload, indication(i as u16, 1, 10));
    }
    // A reload to a lower limit closes nobody; a higher one admits again.
    p.shared.reconfigure(ProxyConfig {
        max_associations: 1,
        ..ProxyConfig::default()
    });
    let mut fourth = connector.connect(listen).await.expect("connect");
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), fourth.recv()).await,
        Ok(Ok(None) | Err(_))
    ));
    let (n0, r0) = &mut open[0];
    n0.send(&Message::new(0, 70, indication(0, 2, 10)))
        .await
        .expect("send");
    assert_eq!(recv(r0).await.payload, indication(0, 2, 10));
    p.shared.reconfigure(ProxyConfig {
        max_associations: 3,
        ..ProxyConfig::default()
    });
    let mut fifth = connector.connect(listen).await.expect("connect");
    fifth
        .send(&Message::new(0, 70, setup_request(5)))
        .await
        .expect("send");
    let mut r5 = ric.accept().await.expect("admitted after the reload");
    assert_eq!(recv(&mut r5).await.payload, setup_request(5));
    assert_eq!(
        p.metric("e2lb_associations_refused_total{reason=\"max_associations\"}"),
        2.0
    );
    p.stop().await;
}

/// e2lb's connector, recording when it opens an association to each backend
/// (the pace is applied just before: these are the setup start times).
#[derive(Clone)]
struct Recording {
    inner: MemConnector,
    opened: Arc<Mutex<HashMap<SocketAddr, Vec<Instant>>>>,
}

impl Connector for Recording {
    type Assoc = MemAssoc;
    async fn connect(&self, addr: SocketAddr) -> e2lb::transport::Result<MemAssoc> {
        if let Ok(mut m) = self.opened.lock() {
            m.entry(addr).or_default().push(Instant::now());
        }
        self.inner.connect(addr).await
    }
    async fn connect_multi(&self, addrs: &[SocketAddr]) -> e2lb::transport::Result<MemAssoc> {
        if let (Ok(mut m), Some(a)) = (self.opened.lock(), addrs.first()) {
            m.entry(*a).or_default().push(Instant::now());
        }
        self.inner.connect_multi(addrs).await
    }
}

/// Most starts within any window of `w` in sorted `times`.
fn max_in_window(times: &[Instant], w: Duration) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..times.len() {
        while times[i].duration_since(times[j]) >= w {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

/// 20 nodes run; then 200 more connect at once (a backend died elsewhere, or
/// e2lb restarted) against 2 backends paced at 25 setups/s (burst 5): no
/// backend opens more than rate + burst setups in any second (give or take
/// a late timer), the nodes
/// beyond the pace wait or are told TimeToWait (and the simulated nodes
/// honour it), every node ends up set up, and the 20 running ones lose
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_is_paced_per_backend_and_every_node_gets_in() {
    const RATE: u32 = 25;
    const BURST: u32 = 5;
    const RUNNING: u32 = 20;
    const STORM: u32 = 200;
    let net = MemNet::new();
    let listen = addr("127.0.43.50:36421");
    let mut rics = Vec::new();
    let mut ric_addrs = Vec::new();
    for i in 0..2u8 {
        let a = SocketAddr::from(([127, 0, 43, 1 + i], 36421));
        let l = net.listen(a, Options::default()).expect("listen");
        let live = RicLive::new();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let cfg = RicSimConfig {
            name: format!("ric-{i}"),
            ric_id: u32::from(i) + 1,
            requestor_id: 10 + u16::from(i),
            ..RicSimConfig::default()
        };
        let task = tokio::spawn(run_ric(
            l,
            cfg,
            live.clone(),
            async move { s.cancelled().await },
        ));
        rics.push((live, stop, task));
        ric_addrs.push(a);
    }
    let opened = Arc::new(Mutex::new(HashMap::new()));
    let connector = Recording {
        inner: net.connector(addr("127.0.43.100:0"), Options::default()),
        opened: opened.clone(),
    };
    let p = Proxy::with_connector(
        &net,
        listen,
        &ric_addrs,
        ProxyConfig {
            setup_pace: Pace {
                rate: f64::from(RATE),
                burst: BURST,
            },
            setup_wait_max: Duration::from_millis(500),
            ..ProxyConfig::default()
        },
        connector,
    );
    let node_cfg = |first: u32, nodes: u32| NodeSimConfig {
        target: listen,
        nodes,
        first_node_id: first,
        ran_functions: vec![1],
        class: TrafficClass::B,
        duration: Duration::from_secs(120),
        drain: Duration::from_millis(500),
        ..NodeSimConfig::default()
    };
    let running_live = NodeLive::new();
    let running = tokio::spawn(run_nodes(
        net.connector(addr("10.43.0.1:0"), Options::default()),
        node_cfg(1, RUNNING),
        running_live.clone(),
    ));
    let wait_for = |live: Arc<NodeLive>, n: u64, within: Duration| async move {
        let t = Instant::now();
        while live.setups_ok.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(
                t.elapsed() < within,
                "only {} of {n} nodes set up after {within:?}",
                live.setups_ok.load(std::sync::atomic::Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t.elapsed()
    };
    wait_for(
        running_live.clone(),
        u64::from(RUNNING),
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The storm.
    let storm_live = NodeLive::new();
    let storm = tokio::spawn(run_nodes(
        net.connector(addr("10.43.1.1:0"), Options::default()),
        node_cfg(1000, STORM),
        storm_live.clone(),
    ));
    let took = wait_for(
        storm_live.clone(),
        u64::from(STORM),
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    storm_live.stop();
    running_live.stop();
    let storm_report = storm.await.expect("storm nodes");
    let running_report = running.await.expect("running nodes");
    let mut ric_reports = Vec::new();
    let mut per_backend = Vec::new();
    for ((_live, stop, task), a) in rics.into_iter().zip(&ric_addrs) {
        stop.cancel();
        ric_reports.push(task.await.expect("ric"));
        let mut v = opened
            .lock()
            .expect("times")
            .get(a)
            .cloned()
            .unwrap_or_default();
        v.sort();
        per_backend.push(v);
    }
    let waited = p.metric("e2lb_setups_paced_total{outcome=\"waited\"}");
    let told = p.metric("e2lb_setups_paced_total{outcome=\"time_to_wait\"}");
    let windows: Vec<usize> = per_backend
        .iter()
        .map(|v| max_in_window(v, Duration::from_secs(1)))
        .collect();
    let setups: Vec<usize> = per_backend.iter().map(Vec::len).collect();
    println!(
        "pacing: {STORM} nodes at once (+{RUNNING} running), 2 backends at {RATE}/s burst {BURST}: \
         all set up in {:.1} s (ideal {:.1} s); setups per backend {setups:?}, most in any 1 s {windows:?} \
         (bound {}); {waited} waited for a slot, {told} told TimeToWait; storm node retries {}",
        took.as_secs_f64(),
        f64::from(STORM) / f64::from(2 * RATE),
        RATE + BURST,
        storm_report.setups_failed,
    );
    // The pace bounds the slots; a slot's sleep may end late under load
    // (timer granularity, busy cores), so allow two more than rate + burst.
    for w in &windows {
        assert!(
            *w <= (RATE + BURST + 2) as usize,
            "{w} setups within one second on a backend"
        );
    }
    assert!(told >= 1.0, "some nodes were told TimeToWait");
    assert!(waited >= 1.0, "some setups waited for their slot");
    assert_eq!(storm_report.setups_ok, u64::from(STORM));
    assert_eq!(
        storm_report.setups_failed, told as u64,
        "only paced setups failed"
    );
    // The running nodes never noticed.
    assert_eq!(running_report.setups_ok, u64::from(RUNNING));
    assert_eq!(running_report.setups_failed, 0);
    assert_eq!(running_report.reconnects, 0);
    assert_eq!(
        running_report.errors, 0,
        "{:?}",
        running_report.error_samples
    );
    let refs: Vec<_> = ric_reports.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!(
        (loss.missing, loss.excess),
        (0, 0),
        "indications lost or duplicated: {loss:?}"
    );
    assert_eq!(p.metric("e2lb_messages_dropped_total"), 0.0);
    p.stop().await;
}
