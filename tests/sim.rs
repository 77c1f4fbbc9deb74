//! Node and RIC simulators against each other over the in-memory transport,
//! with no proxy in between: what the harness measures must be right before
//! it measures e2lb. Real-time runs, each at most a few seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2lb::e2ap::build::{self, ComponentId, GnbId, NodeComponent, RanFunction};
use e2lb::e2ap::{Envelope, PduKind, RicRequestId};
use e2lb::sim::payload::{now_ns, IndicationTemplate};
use e2lb::sim::{
    combined_loss, metrics, run_nodes, run_ric, NodeLive, NodeReport, NodeSimConfig, RicLive,
    RicReport, RicSimConfig, TrafficClass,
};
use e2lb::transport::mem::{MemAssoc, MemNet};
use e2lb::transport::{AssociationExt, Listener, Message, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Start a RIC simulator on `net` at `at`; stop it with the returned sender.
fn start_ric(
    net: &MemNet,
    at: SocketAddr,
    cfg: RicSimConfig,
) -> (
    Arc<RicLive>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<RicReport>,
) {
    let listener = net.listen(at, Options::default()).expect("listen");
    let live = RicLive::new();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_ric(listener, cfg, live.clone(), async {
        let _ = rx.await;
    }));
    (live, tx, task)
}

async fn run_pair(node_cfg: NodeSimConfig, ric_cfg: RicSimConfig) -> (NodeReport, RicReport) {
    let net = MemNet::new();
    let ric_at = node_cfg.target;
    let (_live, stop, ric) = start_ric(&net, ric_at, ric_cfg);
    let connector = net.connector(addr("127.0.0.2:0"), Options::default());
    let nodes = run_nodes(connector, node_cfg, NodeLive::new()).await;
    let _ = stop.send(());
    let ric = ric.await.expect("ric task");
    (nodes, ric)
}

fn check_consistent(n: &NodeReport, r: &RicReport) {
    assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
    assert_eq!(r.errors, 0, "ric errors: {:?}", r.error_samples);
    assert_eq!(n.setups_failed, 0);
    assert_eq!(n.reconnects, 0);
    assert_eq!(u64::from(n.nodes), n.setups_ok);
    assert_eq!(r.setups, n.setups_ok);
    assert_eq!(r.associations, n.setups_ok);
    assert_eq!(r.subscriptions_requested, r.subscriptions);
    assert_eq!(r.subscriptions, n.subscriptions);
    assert!(n.indications_sent > 0);
    assert_eq!(
        r.indications, n.indications_sent,
        "loss between node and RIC"
    );
    assert_eq!(r.indication_bytes, n.indication_bytes);
    assert!(r.lossless(), "{r:#?}");
    assert_eq!((r.gaps, r.foreign, r.unknown_subscriptions), (0, 0, 0));
    assert_eq!(r.dropped(), 0);
    assert_eq!(n.dropped_at_close, 0);
    assert_eq!(
        n.per_node.iter().map(|p| p.indications_sent).sum::<u64>(),
        n.indications_sent
    );
    assert_eq!(r.e2e_latency.count, r.indications);
    assert!(r.e2e_latency.p50_us > 0.0 && r.e2e_latency.p50_us <= r.e2e_latency.p999_us);
    assert_eq!(r.per_subscription.len() as u64, r.subscriptions);
    for s in &r.per_subscription {
        assert!(s.created_here);
        assert!(s.received > 0, "{s:?}");
        assert_eq!(s.first_seq, Some(0));
        assert_eq!(s.max_seq, Some(s.received - 1), "{s:?}");
    }
    let c = combined_loss(&[r]);
    assert_eq!((c.missing, c.excess), (0, 0));
    assert_eq!(c.received, r.indications);
}

trait Dropped {
    fn dropped(&self) -> u64;
}
impl Dropped for RicReport {
    fn dropped(&self) -> u64 {
        self.missing + self.duplicates + self.out_of_order + self.corrupt
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_ric_agree_on_every_indication() {
    let node_cfg = NodeSimConfig {
        target: addr("127.0.0.1:36421"),
        nodes: 6,
        first_node_id: 100,
        ran_functions: vec![1, 2],
        class: TrafficClass::Custom {
            period: Duration::from_millis(20),
            payload: 200,
        },
        duration: Duration::from_millis(1500),
        drain: Duration::from_millis(400),
        connect_spread: Duration::from_millis(100),
        ..NodeSimConfig::default()
    };
    let ric_cfg = RicSimConfig {
        control_period: Some(Duration::from_millis(100)),
        service_time: Duration::from_millis(2),
        ..RicSimConfig::default()
    };
    let (n, r) = run_pair(node_cfg, ric_cfg).await;
    check_consistent(&n, &r);
    assert_eq!(n.setups_ok, 6);
    // every RAN function of every node
    assert_eq!(r.subscriptions, 12);
    let nodes: std::collections::BTreeSet<&str> =
        r.per_subscription.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    assert!(nodes.contains("gnb:00f110:100"), "{nodes:?}");
    // 12 subscriptions, 50/s each, ~1.4 s of sending after setup: about 840
    assert!(n.indications_sent > 400, "{}", n.indications_sent);
    // controls: every one sent was answered or still in flight at close
    assert!(r.controls_acked > 0);
    assert_eq!(r.controls_acked, n.controls_acked);
    assert_eq!(n.controls_received, n.controls_acked);
    assert_eq!(
        r.controls_sent,
        r.controls_acked + r.controls_failed + r.controls_unanswered
    );
    assert_eq!(r.control_rtt.count, r.controls_acked);
    assert!(r.processing.count >= r.indications);
    let json = serde_json::to_value(&r).expect("ric json");
    assert!(json["e2e_latency"]["p999_us"].is_number());
    let json = serde_json::to_value(&n).expect("node json");
    assert_eq!(json["per_node"].as_array().map(Vec::len), Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_indications_arrive_intact() {
    let node_cfg = NodeSimConfig {
        target: addr("127.0.0.1:36422"),
        nodes: 2,
        ran_functions: vec![7],
        class: TrafficClass::D,
        duration: Duration::from_millis(1200),
        drain: Duration::from_millis(400),
        ppid: 0,
        ..NodeSimConfig::default()
    };
    let (n, r) = run_pair(node_cfg, RicSimConfig::default()).await;
    check_consistent(&n, &r);
    assert_eq!(n.payload_bytes, 100_000);
    assert!(n.indications_sent >= 10, "{}", n.indications_sent);
    assert!(r.indication_bytes > 100_000 * r.indications);
    assert_eq!(r.corrupt, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_profile_sends_more_at_the_end() {
    let node_cfg = NodeSimConfig {
        target: addr("127.0.0.1:36423"),
        nodes: 2,
        ran_functions: vec![1],
        class: TrafficClass::Custom {
            period: Duration::from_millis(20),
            payload: 50,
        },
        profile: "ramp:0:2".parse().expect("profile"),
        duration: Duration::from_millis(1000),
        drain: Duration::from_millis(300),
        ..NodeSimConfig::default()
    };
    let (n, r) = run_pair(node_cfg, RicSimConfig::default()).await;
    check_consistent(&n, &r);
    // The mean multiplier is 1: about 2 × 50 indications, a few fewer as the
    // subscriptions start a little after the run.
    assert!(
        n.indications_sent > 60 && n.indications_sent < 120,
        "{}",
        n.indications_sent
    );
}

/// A hand-driven E2 node: set up, accept the RIC's subscription, then send
/// indications with chosen sequence numbers.
async fn fake_node_setup(assoc: &mut MemAssoc, ppid: u32) -> (RicRequestId, u16) {
    let functions = [RanFunction {
        id: 5,
        definition: b"def",
        revision: 1,
        oid: "1.2.3",
    }];
    let components = [NodeComponent {
        id: ComponentId::Ng { amf_name: "amf" },
        request_part: b"q",
        response_part: b"r",
    }];
    let setup = build::E2SetupRequest {
        transaction_id: 3,
        node: GnbId {
            plmn: [0x00, 0xf1, 0x10],
            gnb_id: 77,
            gnb_id_bits: 22,
        },
        ran_functions: &functions,
        components: &components,
    }
    .build()
    .expect("setup");
    assoc
        .send(&Message::new(0, ppid, setup))
        .await
        .expect("send setup");
    let resp = assoc.recv().await.expect("recv").expect("setup response");
    assert_eq!(resp.ppid, ppid, "the RIC answers with the request's PPID");
    let env = Envelope::parse(&resp.payload).expect("parse");
    assert_eq!(env.kind(), PduKind::Successful);
    assert_eq!(env.transaction_id(), Some(3));
    let sub = assoc.recv().await.expect("recv").expect("subscription");
    let env = Envelope::parse(&sub.payload).expect("parse");
    assert_eq!(env.kind(), PduKind::Initiating);
    let request = env.ric_request_id().expect("request id");
    let ran_function = env.ran_function_id().expect("ran function");
    assert_eq!(ran_function, 5);
    let ok = build::SubscriptionResponse {
        request,
        ran_function,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .expect("response");
    assoc
        .send(&Message::new(0, ppid, ok))
        .await
        .expect("send response");
    (request, ran_function)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ric_detects_an_injected_gap_and_duplicate() {
    let net = MemNet::new();
    let at = addr("127.0.0.1:36424");
    let (live, stop, ric) = start_ric(&net, at, RicSimConfig::default());
    let connector = net.connector(addr("127.0.0.3:0"), Options::default());
    let mut assoc = e2lb::transport::Connector::connect(&connector, at)
        .await
        .expect("connect");
    let (request, ran_function) = fake_node_setup(&mut assoc, 0).await;
    let template = IndicationTemplate::new(ran_function, 1, 100, 1).expect("template");
    for seq in [0, 1, 3, 4, 4] {
        let m = template.stamp(request, seq, now_ns());
        assoc
            .send(&Message::new(0, 0, m))
            .await
            .expect("send indication");
    }
    assoc.shutdown().await.expect("shutdown");
    // wait for the RIC to see the close
    for _ in 0..200 {
        if live.associations.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    let r = ric.await.expect("ric task");
    assert_eq!(r.indications, 5);
    assert_eq!((r.gaps, r.missing, r.duplicates), (1, 1, 1), "{r:#?}");
    assert!(!r.lossless());
    let s = &r.per_subscription[0];
    assert_eq!((s.first_seq, s.max_seq, s.missing), (Some(0), Some(4), 1));
    assert_eq!(s.node, "gnb:00f110:77");
    let c = combined_loss(&[&r]);
    assert_eq!((c.expected, c.received, c.missing), (5, 5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_reconnects_with_a_fresh_setup_when_the_association_is_lost() {
    let net = MemNet::new();
    let at = addr("127.0.0.1:36425");
    let mut listener = net.listen(at, Options::default()).expect("listen");
    let node_cfg = NodeSimConfig {
        target: at,
        nodes: 1,
        duration: Duration::from_millis(1200),
        drain: Duration::from_millis(100),
        backoff_min: Duration::from_millis(50),
        ..NodeSimConfig::default()
    };
    let live = NodeLive::new();
    let nodes = tokio::spawn(run_nodes(
        net.connector(addr("127.0.0.4:0"), Options::default()),
        node_cfg,
        live.clone(),
    ));
    let mut setups = 0;
    for round in 0..2 {
        let mut a = listener.accept().await.expect("accept");
        let m = a.recv().await.expect("recv").expect("setup");
        let env = Envelope::parse(&m.payload).expect("parse");
        assert_eq!(env.procedure_code(), 1, "E2 Setup first, round {round}");
        setups += 1;
        let resp = build::E2SetupResponse {
            transaction_id: env.transaction_id().expect("tid"),
            ric: build::GlobalRicId {
                plmn: [0, 0xf1, 0x10],
                ric_id: 1,
            },
            accepted: &[(1, 1), (2, 1)],
            rejected: &[],
            components: &[ComponentId::Ng { amf_name: "amf" }],
        }
        .build()
        .expect("response");
        a.send(&Message::new(m.stream, m.ppid, resp))
            .await
            .expect("send");
        if round == 0 {
            a.shutdown().await.expect("shutdown");
        } else {
            // keep the second association until the node ends it
            while let Ok(Some(_)) = a.recv().await {}
        }
    }
    let n = nodes.await.expect("nodes");
    assert_eq!(setups, 2);
    assert_eq!(n.setups_ok, 2);
    assert_eq!(n.reconnects, 1);
    assert!(n.errors >= 1, "the loss is reported");
}

async fn http_get(at: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(at).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let live = RicLive::new();
    live.indications
        .store(42, std::sync::atomic::Ordering::Relaxed);
    let listener = metrics::bind_metrics(addr("127.0.0.1:0"))
        .await
        .expect("bind");
    let at = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve_metrics_on(listener, live, async {
        let _ = rx.await;
    }));
    let body = http_get(at, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "ric_cpu_utilisation_ratio",
        "ric_processing_latency_seconds{quantile=\"0.99\"}",
        "ric_processing_latency_seconds_mean",
        "ric_associations 0",
        "ric_indications_received_total 42",
        "ric_e2_setups_total",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    assert!(http_get(at, "/nope").await.starts_with("HTTP/1.1 404"));
    assert!(http_get(at, "/healthz").await.starts_with("HTTP/1.1 200"));
    let _ = tx.send(());
    server.await.expect("join").expect("serve");
}

#[path = "common/rig.rs"]
mod rig;

/// The same pairing over kernel SCTP on loopback (inside the rig:
/// `scripts/rig-test sim`; skipped on a host without SCTP).
async fn run_pair_sctp(node_cfg: NodeSimConfig, ric_cfg: RicSimConfig) -> (NodeReport, RicReport) {
    use e2lb::transport::sctp::{SctpConnector, SctpListener};
    let listener = SctpListener::bind(&[node_cfg.target], &Options::default()).expect("bind");
    let live = RicLive::with_cpu_figure(e2lb::sim::CpuFigure::Process);
    let (tx, rx) = oneshot::channel::<()>();
    let ric = tokio::spawn(run_ric(listener, ric_cfg, live, async {
        let _ = rx.await;
    }));
    let nodes = run_nodes(
        SctpConnector::new(Options::default()),
        node_cfg,
        NodeLive::new(),
    )
    .await;
    let _ = tx.send(());
    (nodes, ric.await.expect("ric task"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn over_kernel_sctp_small_and_large_indications() {
    if !rig::sctp_or_skip() {
        return;
    }
    let small = NodeSimConfig {
        target: addr("127.0.0.1:38911"),
        nodes: 3,
        ran_functions: vec![1, 2],
        class: TrafficClass::Custom {
            period: Duration::from_millis(50),
            payload: 200,
        },
        duration: Duration::from_millis(1500),
        drain: Duration::from_millis(500),
        ..NodeSimConfig::default()
    };
    let ric_cfg = RicSimConfig {
        control_period: Some(Duration::from_millis(200)),
        ..RicSimConfig::default()
    };
    let (n, r) = run_pair_sctp(small, ric_cfg).await;
    check_consistent(&n, &r);
    assert_eq!(r.subscriptions, 6);
    assert!(r.controls_acked > 0);

    let large = NodeSimConfig {
        target: addr("127.0.0.1:38912"),
        nodes: 2,
        ran_functions: vec![3],
        class: TrafficClass::C,
        duration: Duration::from_millis(2500),
        drain: Duration::from_millis(500),
        ppid: 0,
        ..NodeSimConfig::default()
    };
    let (n, r) = run_pair_sctp(large, RicSimConfig::default()).await;
    check_consistent(&n, &r);
    assert!(r.indications >= 2 && r.corrupt == 0, "{r:#?}");
}
