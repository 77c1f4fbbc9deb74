//! Proxy scenarios shared by the in-memory and the kernel-SCTP test targets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use e2lb::balance::live::BalanceSettings;
use e2lb::balance::{Backend, Pool};
use e2lb::e2ap::ids::procedure;
use e2lb::e2ap::{Envelope, PduKind};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::transport::{Association, AssociationExt, Connector, Listener, Message};
use tokio_util::sync::CancellationToken;

use super::peers::*;

/// Invokes `$m!(name, …)` with every scenario that takes only a [`Net`], so each
/// transport's test target instantiates all of them (the list lives here once).
macro_rules! for_each_scenario {
    ($m:ident) => {
        $m!(
            relays_setup_subscription_and_10k_indications_in_order_with_stream_and_ppid,
            balancer_follows_load_and_skips_drained_backends,
            first_message_not_setup_closes_only_that_association,
            malformed_pdu_closes_only_its_association_and_its_backend_leg,
            node_close_closes_backend_and_backend_close_closes_node,
            unreachable_backend_is_skipped_and_no_backend_gives_setup_failure,
            silent_backend_times_out_and_setup_moves_to_another,
            shutdown_drains_and_closes_every_association,
            same_node_id_never_twice_on_one_backend,
            request_timeouts_fire_under_sustained_traffic,
        );
    };
}

/// A network the scenarios run on: in-memory or kernel SCTP on loopback.
pub trait Net: Clone + Send + Sync + 'static {
    type L: Listener<Assoc = Self::A>;
    type C: Connector<Assoc = Self::A>;
    type A: Association;
    fn listen(&self, addr: SocketAddr) -> Self::L;
    fn connector(&self) -> Self::C;
    /// Base port of this scenario (scenarios running at once use different ones).
    fn port(&self) -> u16;
    fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }
    fn ric_addr(&self, i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, i + 1], self.port()))
    }
}

pub struct Harness<N: Net> {
    net: N,
    pub metrics: Arc<Metrics>,
    pub shared: Arc<Shared<N::C>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

pub fn start<N: Net>(net: &N, backends: u8, config: ProxyConfig) -> Harness<N> {
    start_with(net, backends, config, BalanceSettings::default())
}

pub fn start_with<N: Net>(
    net: &N,
    backends: u8,
    config: ProxyConfig,
    settings: BalanceSettings,
) -> Harness<N> {
    let listener = net.listen(net.proxy_addr());
    let metrics = Arc::new(Metrics::new().unwrap());
    let pool = Pool::new(
        (0..backends)
            .map(|i| Backend::new(i.into(), format!("ric-{i}"), net.ric_addr(i)))
            .collect(),
    );
    let shared = Arc::new(
        Shared::with_balance(
            config,
            Arc::new(pool),
            settings,
            net.connector(),
            metrics.clone(),
        )
        .unwrap(),
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(proxy::serve(listener, shared.clone(), async move {
        s.cancelled().await
    }));
    Harness {
        net: net.clone(),
        metrics,
        shared,
        stop,
        task,
    }
}

impl<N: Net> Harness<N> {
    pub async fn node(&self) -> N::A {
        self.net
            .connector()
            .connect(self.net.proxy_addr())
            .await
            .unwrap()
    }
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn ric<N: Net>(net: &N, i: u8) -> N::L {
    net.listen(net.ric_addr(i))
}

async fn recv<A: Association>(a: &mut A) -> Message {
    tokio::time::timeout(Duration::from_secs(10), a.recv())
        .await
        .expect("timely")
        .expect("ok")
        .expect("open")
}

async fn closed<A: Association>(a: &mut A) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), a.recv()).await,
        Ok(Ok(None)) | Ok(Err(_))
    )
}

fn proc_of(m: &Message) -> (PduKind, u8) {
    let env = Envelope::parse(&m.payload).unwrap();
    (env.kind(), env.procedure_code())
}

/// Node `gnb` connects and completes its E2 Setup through the proxy; returns (node leg, ric leg, ric index).
async fn set_up<N: Net>(h: &Harness<N>, rics: &mut [N::L], gnb: u8) -> (N::A, N::A, usize) {
    let mut node = h.node().await;
    // FlexRIC style: PPID 0 on stream 0.
    node.send(&Message::new(0, 0, setup_request(gnb.into())))
        .await
        .unwrap();
    let (idx, mut ric_leg) = accept_any::<N>(rics).await;
    let m = recv(&mut ric_leg).await;
    assert_eq!(
        m,
        Message::new(0, 0, setup_request(gnb.into())),
        "setup relayed verbatim"
    );
    ric_leg
        .send(&Message::new(0, 0, setup_response()))
        .await
        .unwrap();
    let r = recv(&mut node).await;
    assert_eq!(r, Message::new(0, 0, setup_response()));
    (node, ric_leg, idx)
}

/// Wait until backend `name` shows `want` streams in flight, both at its
/// balancer member and in `e2lb_backend_in_flight`.
async fn in_flight_becomes<N: Net>(h: &Harness<N>, name: &str, want: i64) {
    let now = || {
        let member = h
            .shared
            .pool
            .members()
            .iter()
            .find(|m| m.name() == name)
            .map_or(-1, |m| i64::from(m.in_flight()));
        (member, h.metrics.in_flight.with_label_values(&[name]).get())
    };
    for _ in 0..1000 {
        if now() == (want, want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name}: (member, gauge) in flight {:?}, want {want}", now());
}

async fn accept_any<N: Net>(rics: &mut [N::L]) -> (usize, N::A) {
    let futs = rics
        .iter_mut()
        .enumerate()
        .map(|(i, l)| Box::pin(async move { (i, l.accept().await.unwrap()) }));
    tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::select_all(futs),
    )
    .await
    .expect("a backend association")
    .0
}

pub async fn relays_setup_subscription_and_10k_indications_in_order_with_stream_and_ppid<N: Net>(
    net: N,
) {
    let mut rics = vec![ric(&net, 0)];
    let h = start(&net, 1, ProxyConfig::default());
    let (mut node, mut ric_leg, _) = set_up(&h, &mut rics, 1).await;

    // RIC → node on stream 1 with PPID 70 (e2term style).
    ric_leg
        .send(&Message::new(1, 70, sub_request(1)))
        .await
        .unwrap();
    assert_eq!(recv(&mut node).await, Message::new(1, 70, sub_request(1)));
    // Unanswered, the subscription is a stream in flight at ric-0 (the
    // balancer's F term and e2lb_backend_in_flight), however long it waits.
    in_flight_becomes(&h, "ric-0", 1).await;
    node.send(&Message::new(1, 70, sub_response(1)))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut ric_leg).await,
        Message::new(1, 70, sub_response(1))
    );
    in_flight_becomes(&h, "ric-0", 0).await;

    // 10,000 indications on alternating streams and PPIDs: all arrive unchanged,
    // in order within each stream (SCTP orders per stream, not across streams).
    const N: u64 = 10_000;
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            let m = Message::new(
                (seq % 2) as u16,
                if seq % 3 == 0 { 0 } else { 70 },
                indication(1, seq, 100),
            );
            node.send(&m).await.unwrap();
        }
        node
    });
    let mut next = [0u64, 1];
    for _ in 0..N {
        let m = recv(&mut ric_leg).await;
        let seq = next[usize::from(m.stream)];
        assert_eq!(m.ppid, if seq % 3 == 0 { 0 } else { 70 }, "ppid of {seq}");
        assert_eq!(
            m.payload,
            indication(1, seq, 100),
            "indication {seq} on stream {}",
            m.stream
        );
        next[usize::from(m.stream)] += 2;
    }
    assert_eq!(next, [N, N + 1]);
    let _node = sender.await.unwrap();
    let text = h.metrics.render();
    assert!(text.contains("e2lb_messages_forwarded_total{direction=\"node_to_ric\",procedure=\"RICindication\"} 10000"), "{text}");
    assert!(text.contains("e2lb_associations{backend=\"ric-0\"} 1"));
    h.stop().await;
}

/// Nodes set up one at a time with the scores republished in between: with
/// two open backends power-of-two-choices compares both, so the less loaded
/// one always wins (exact counts); a drained backend gets nothing.
/// No probes here, so associations stand in for CPU; `associations_max = 4`
/// makes one association a difference well outside the tie band.
pub async fn balancer_follows_load_and_skips_drained_backends<N: Net>(net: N) {
    let mut rics: Vec<_> = (0..3).map(|i| ric(&net, i)).collect();
    let mut settings = BalanceSettings::default();
    settings.model.limits.associations_max = 4;
    let h = start_with(&net, 3, ProxyConfig::default(), settings);
    let (pool, live) = (&h.shared.pool, &h.shared.balance);
    let publish = || live.publish(pool, std::time::Instant::now());
    pool.drain("ric-2", true).unwrap();
    let _ = publish();
    let mut counts = [0; 3];
    let mut keep = Vec::new();
    for gnb in 1..=4 {
        let (n, r, idx) = set_up(&h, &mut rics, gnb).await;
        counts[idx] += 1;
        keep.push((n, r));
        let _ = publish();
    }
    assert_eq!(
        counts,
        [2, 2, 0],
        "drained ric-2 got none; the others alternate"
    );
    // Drain ric-0, reopen ric-2: it is the least loaded open backend.
    pool.drain("ric-0", true).unwrap();
    pool.drain("ric-2", false).unwrap();
    let _ = publish();
    for gnb in 5..=6 {
        let (n, r, idx) = set_up(&h, &mut rics, gnb).await;
        counts[idx] += 1;
        keep.push((n, r));
        let _ = publish();
    }
    assert_eq!(counts, [2, 2, 2], "ric-2 took both new nodes");
    let text = h.metrics.render();
    assert!(
        text.contains("e2lb_bnb_picks_total{mode=\"bull\",reason=\"power_of_two\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("e2lb_backend_draining{backend=\"ric-0\"} 1"),
        "{text}"
    );
    h.stop().await;
}

pub async fn first_message_not_setup_closes_only_that_association<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0)];
    let h = start(&net, 1, ProxyConfig::default());
    let (mut good, mut good_ric, _) = set_up(&h, &mut rics, 1).await;

    let mut bad = h.node().await;
    bad.send(&Message::new(0, 70, indication(1, 0, 10)))
        .await
        .unwrap();
    let reply = recv(&mut bad).await;
    assert_eq!(
        proc_of(&reply),
        (PduKind::Initiating, procedure::ERROR_INDICATION)
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), bad.recv())
            .await
            .unwrap()
            .unwrap(),
        None,
        "closed"
    );

    // The other association keeps flowing.
    good.send(&Message::new(0, 70, indication(1, 1, 10)))
        .await
        .unwrap();
    assert_eq!(recv(&mut good_ric).await.payload, indication(1, 1, 10));
    assert!(h
        .metrics
        .render()
        .contains("e2lb_protocol_errors_total{kind=\"first_not_setup\",side=\"node\"} 1"));
    h.stop().await;
}

pub async fn malformed_pdu_closes_only_its_association_and_its_backend_leg<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0)];
    let h = start(&net, 1, ProxyConfig::default());
    let (mut a, mut a_ric, _) = set_up(&h, &mut rics, 1).await;
    let (mut b, mut b_ric, _) = set_up(&h, &mut rics, 2).await;

    a.send(&Message::new(
        0,
        70,
        Bytes::from_static(&[0x00, 0x05, 0x40, 0x7f, 0x00, 0x01]),
    ))
    .await
    .unwrap();
    let reply = recv(&mut a).await;
    assert_eq!(
        proc_of(&reply),
        (PduKind::Initiating, procedure::ERROR_INDICATION)
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), a.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), a_ric.recv())
            .await
            .unwrap()
            .unwrap(),
        None,
        "backend leg closed"
    );

    for seq in 0..100 {
        b.send(&Message::new(0, 70, indication(1, seq, 50)))
            .await
            .unwrap();
    }
    for seq in 0..100 {
        assert_eq!(recv(&mut b_ric).await.payload, indication(1, seq, 50));
    }
    let text = h.metrics.render();
    assert!(
        text.contains("e2lb_protocol_errors_total{kind=\"truncated\",side=\"node\"} 1"),
        "{text}"
    );
    h.stop().await;
}

pub async fn node_close_closes_backend_and_backend_close_closes_node<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0)];
    let h = start(&net, 1, ProxyConfig::default());
    let (mut a, mut a_ric, _) = set_up(&h, &mut rics, 1).await;
    a.shutdown().await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), a_ric.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );

    let (mut b, mut b_ric, _) = set_up(&h, &mut rics, 2).await;
    b_ric.shutdown().await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), b.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    let text = h.metrics.render();
    assert!(
        text.contains("e2lb_association_closes_total{reason=\"node_closed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("e2lb_association_closes_total{reason=\"backend_closed\"} 1"),
        "{text}"
    );
    h.stop().await;
}

pub async fn unreachable_backend_is_skipped_and_no_backend_gives_setup_failure<N: Net>(net: N) {
    // Backend 0 is not listening; backend 1 is.
    let mut rics = vec![ric(&net, 1)];
    let h = start(&net, 2, ProxyConfig::default());
    for gnb in 1..=2 {
        let (_n, _r, _) = set_up(&h, &mut rics, gnb).await;
    }
    drop(rics);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Nobody listens now: the node gets E2 Setup Failure and keeps its association.
    let mut n = h.node().await;
    n.send(&Message::new(0, 70, setup_request(9)))
        .await
        .unwrap();
    let r = recv(&mut n).await;
    assert_eq!(proc_of(&r), (PduKind::Unsuccessful, procedure::E2_SETUP));
    // A backend appears; the node's retry on the same association succeeds.
    let mut rics = vec![ric(&net, 0)];
    n.send(&Message::new(0, 70, setup_request(9)))
        .await
        .unwrap();
    let (_, mut leg) = accept_any::<N>(&mut rics).await;
    assert_eq!(recv(&mut leg).await.payload, setup_request(9));
    leg.send(&Message::new(0, 70, setup_response()))
        .await
        .unwrap();
    assert_eq!(
        proc_of(&recv(&mut n).await),
        (PduKind::Successful, procedure::E2_SETUP)
    );
    h.stop().await;
}

pub async fn silent_backend_times_out_and_setup_moves_to_another<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0), ric(&net, 1)];
    let mut cfg = ProxyConfig::default();
    cfg.session.setup_timeout = Duration::from_millis(300);
    let h = start(&net, 2, cfg);
    let mut node = h.node().await;
    node.send(&Message::new(0, 0, setup_request(1)))
        .await
        .unwrap();
    let (first, mut silent) = accept_any::<N>(&mut rics).await;
    assert_eq!(recv(&mut silent).await.payload, setup_request(1));
    // No answer: after the set-up time-out the proxy drops it and tries the other.
    let (second, mut other) = accept_any::<N>(&mut rics).await;
    assert_ne!(first, second);
    assert_eq!(recv(&mut other).await.payload, setup_request(1));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), silent.recv())
            .await
            .unwrap()
            .unwrap(),
        None
    );
    other
        .send(&Message::new(0, 0, setup_response()))
        .await
        .unwrap();
    assert_eq!(recv(&mut node).await.payload, setup_response());
    h.stop().await;
}

/// A RIC that stops reading holds the node back (at most `bound` messages get
/// out of the node while nothing is read), then everything arrives in order.
pub async fn slow_backend_pushes_back_on_the_node_without_loss<N: Net>(
    net: N,
    total: u64,
    payload: usize,
    bound: u64,
) {
    // 4 messages per direction in the proxy; the transports' own buffers come on top.
    let mut rics = vec![ric(&net, 0)];
    let cfg = ProxyConfig {
        queue: 4,
        ..ProxyConfig::default()
    };
    let h = start(&net, 1, cfg);
    let (mut node, mut ric_leg, _) = set_up(&h, &mut rics, 1).await;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = sent.clone();
    let sender = tokio::spawn(async move {
        for seq in 0..total {
            node.send(&Message::new(0, 70, indication(1, seq, payload)))
                .await
                .unwrap();
            s2.store(seq + 1, std::sync::atomic::Ordering::SeqCst);
        }
        node
    });
    // Let the node send until it is blocked (the count stops moving).
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = sent.load(std::sync::atomic::Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        last <= bound && last < total,
        "node was not held back: {last} of {total} sent"
    );
    for seq in 0..total {
        assert_eq!(
            recv(&mut ric_leg).await.payload,
            indication(1, seq, payload),
            "message {seq}"
        );
    }
    let _ = sender.await.unwrap();
    h.stop().await;
}

pub async fn shutdown_drains_and_closes_every_association<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0)];
    let h = start(&net, 1, ProxyConfig::default());
    let (mut n, mut r, _) = set_up(&h, &mut rics, 1).await;
    n.send(&Message::new(0, 70, indication(1, 0, 10)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.stop().await;
    assert_eq!(recv(&mut r).await.payload, indication(1, 0, 10));
    assert!(closed(&mut r).await);
    assert!(closed(&mut n).await);
}

/// Two associations with one GlobalE2node-ID never share a backend (a RIC
/// crashes on that, DESIGN §2b); when every backend holds the node, the new
/// association gets an E2 Setup Failure instead. Closing frees the backend.
pub async fn same_node_id_never_twice_on_one_backend<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0), ric(&net, 1)];
    let h = start(&net, 2, ProxyConfig::default());
    let (mut first, mut first_ric, a) = set_up(&h, &mut rics, 5).await;
    let (_second, _second_ric, b) = set_up(&h, &mut rics, 5).await;
    assert_ne!(a, b, "same node id placed twice on backend {a}");
    let mut third = h.node().await;
    third
        .send(&Message::new(0, 0, setup_request(5)))
        .await
        .unwrap();
    let r = recv(&mut third).await;
    assert_eq!(proc_of(&r), (PduKind::Unsuccessful, procedure::E2_SETUP));
    assert!(h
        .metrics
        .render()
        .contains("e2lb_e2_setups_total{outcome=\"duplicate_node\"} 1"));
    // The first association goes away; its backend can take the node again.
    first.shutdown().await.unwrap();
    assert!(closed(&mut first_ric).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    third
        .send(&Message::new(0, 0, setup_request(5)))
        .await
        .unwrap();
    let (c, mut leg) = accept_any::<N>(&mut rics).await;
    assert_eq!(c, a);
    assert_eq!(recv(&mut leg).await.payload, setup_request(5));
    h.stop().await;
}

/// Time-outs fire while traffic flows without a pause (the driver must not
/// starve its timers behind always-ready input).
pub async fn request_timeouts_fire_under_sustained_traffic<N: Net>(net: N) {
    let mut rics = vec![ric(&net, 0)];
    let mut cfg = ProxyConfig::default();
    cfg.session.request_timeout = Duration::from_millis(200);
    let h = start(&net, 1, cfg);
    let (mut node, mut ric_leg, _) = set_up(&h, &mut rics, 1).await;
    // A subscription request the node never answers.
    ric_leg
        .send(&Message::new(0, 70, sub_request(7)))
        .await
        .unwrap();
    assert_eq!(recv(&mut node).await.payload, sub_request(7));
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = ric_leg.recv().await {} });
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    let mut seq = 0;
    let mut fired_while_busy = false;
    while tokio::time::Instant::now() < until {
        node.send(&Message::new(0, 70, indication(1, seq, 20)))
            .await
            .unwrap();
        seq += 1;
        if seq % 64 == 0
            && h.metrics
                .render()
                .contains("e2lb_request_timeouts_total{procedure=\"RICsubscription\"} 1")
        {
            fired_while_busy = true;
            break;
        }
    }
    assert!(
        fired_while_busy,
        "the request time-out did not fire during {seq} indications"
    );
    node.shutdown().await.unwrap();
    let _ = reader.await;
    h.stop().await;
}
