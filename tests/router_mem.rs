//! Router mode end to end over the in-memory transport: 10 node simulators
//! shared by 3 RIC simulators that all number their subscriptions the same
//! way (RICrequestIDs collide on purpose), e2lb in router mode between them.
//! Every indication carries its node-side subscription id and sequence
//! number, so loss, duplicates and misroutes are counted at each RIC.

#[path = "common/adminhttp.rs"]
mod adminhttp;
#[path = "support/peers.rs"]
mod peers;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adminhttp::call;
use e2lb::admin::{self, AdminState};
use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::router::group::{NodeGroup, PodChoice, RouterSettings};
use e2lb::router::{PodFailure, RouterConfig};
use e2lb::sim::{
    combined_loss, run_nodes, run_ric, NodeLive, NodeReport, NodeSimConfig, RicLive, RicReport,
    RicSimConfig, TrafficClass,
};
use e2lb::transport::mem::{MemConnector, MemNet};
use e2lb::transport::Options;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const NODES: u32 = 10;
/// RAN functions each node offers; every RIC subscribes to each.
const FUNCTIONS: u64 = 2;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn ric_addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 30, 1 + i as u8], 36421))
}

struct Ric {
    live: Arc<RicLive>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<RicReport>,
}

impl Ric {
    async fn stop(mut self) -> RicReport {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("ric task")
    }
}

fn start_ric(net: &MemNet, i: u16, name: &str) -> Ric {
    let listener = net.listen(ric_addr(i), Options::default()).expect("listen");
    let live = RicLive::new();
    let (tx, rx) = oneshot::channel::<()>();
    let cfg = RicSimConfig {
        name: name.to_owned(),
        ric_id: u32::from(i) + 1,
        // The same numbering everywhere: RICrequestIDs collide at the node.
        requestor_id: 7,
        ids_per_association: true,
        ..RicSimConfig::default()
    };
    let task = tokio::spawn(run_ric(listener, cfg, live.clone(), async {
        let _ = rx.await;
    }));
    Ric {
        live,
        stop: Some(tx),
        task,
    }
}

struct Stack {
    net: MemNet,
    rics: Vec<Option<Ric>>,
    shared: Arc<Shared<MemConnector>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    proxy: tokio::task::JoinHandle<()>,
    nodes: tokio::task::JoinHandle<NodeReport>,
}

fn named() -> PodChoice {
    PodChoice::Named(vec!["ric-0".into(), "ric-1".into(), "ric-2".into()])
}

/// The proxy's shared state with one router group (its backends connect
/// from 127.0.30.100).
fn shared_in_router_mode(
    net: &MemNet,
    pool: Pool,
    metrics: &Arc<Metrics>,
    group: NodeGroup,
    config: RouterConfig,
) -> Arc<Shared<MemConnector>> {
    let config = ProxyConfig {
        router: Arc::new(RouterSettings {
            groups: vec![group],
            config,
        }),
        ..ProxyConfig::default()
    };
    Arc::new(
        Shared::new(
            config,
            pool,
            net.connector(addr("127.0.30.100:0"), Options::default()),
            metrics.clone(),
        )
        .expect("shared"),
    )
}

async fn start(duration: Duration, on_pod_failure: PodFailure, pods: PodChoice) -> Stack {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("e2lb=debug")
        .with_test_writer()
        .try_init();
    let net = MemNet::new();
    let rics: Vec<Option<Ric>> = (0..3)
        .map(|i| Some(start_ric(&net, i, &format!("ric-{i}"))))
        .collect();
    let pool = Pool::new(
        (0..3)
            .map(|i| Backend::new(u32::from(i), format!("ric-{i}"), ric_addr(i)))
            .collect(),
    );
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = shared_in_router_mode(
        &net,
        pool,
        &metrics,
        NodeGroup {
            name: "shared".into(),
            plmn: Some([0x00, 0xf1, 0x10]),
            gnb_ids: Vec::new(),
            pods,
        },
        RouterConfig {
            on_pod_failure,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(400),
            ..RouterConfig::default()
        },
    );
    let listen = addr("127.0.30.50:36421");
    let l = net.listen(listen, Options::default()).expect("listen");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let proxy = tokio::spawn(proxy::serve(l, shared.clone(), async move {
        s.cancelled().await
    }));
    let ncfg = NodeSimConfig {
        target: listen,
        nodes: NODES,
        class: TrafficClass::B,
        duration,
        drain: Duration::from_millis(500),
        ..NodeSimConfig::default()
    };
    assert_eq!(ncfg.ran_functions.len() as u64, FUNCTIONS);
    let nodes = tokio::spawn(run_nodes(
        net.connector(addr("127.0.31.1:0"), Options::default()),
        ncfg,
        NodeLive::new(),
    ));
    Stack {
        net,
        rics,
        shared,
        metrics,
        stop,
        proxy,
        nodes,
    }
}

impl Stack {
    /// Every RIC has subscribed to every function of every node.
    async fn settled(&self) {
        for _ in 0..300 {
            let all = self
                .rics
                .iter()
                .flatten()
                .all(|r| r.live.metrics().subscriptions >= u64::from(NODES) * FUNCTIONS);
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let figures: Vec<_> = self
            .rics
            .iter()
            .flatten()
            .map(|r| {
                let m = r.live.metrics();
                (m.associations, m.setups, m.subscriptions)
            })
            .collect();
        let router: Vec<String> = self
            .metrics
            .render()
            .lines()
            .filter(|l| {
                l.starts_with("e2lb_router")
                    || l.starts_with("e2lb_setups")
                    || l.starts_with("e2lb_protocol")
            })
            .map(str::to_owned)
            .collect();
        panic!("the RICs did not all subscribe: (associations, setups, subscriptions) {figures:?}; {router:#?}");
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn finish(mut self) -> (NodeReport, Vec<RicReport>) {
        let nodes = self.nodes.await.expect("nodes");
        let mut reports = Vec::new();
        for r in self.rics.iter_mut() {
            if let Some(r) = r.take() {
                reports.push(r.stop().await);
            }
        }
        self.stop.cancel();
        self.proxy.await.expect("proxy");
        drop(self.net);
        (nodes, reports)
    }
}

/// Each RIC saw only its own streams: as many distinct node-side
/// subscriptions as it subscribed, none shared with another RIC, none misrouted.
fn check_ownership(rics: &[&RicReport]) {
    let mut seen = BTreeSet::new();
    for r in rics {
        assert_eq!(r.misrouted, 0, "{}: misrouted indications", r.name);
        assert_eq!(
            r.unknown_subscriptions, 0,
            "{}: unknown subscriptions",
            r.name
        );
        assert_eq!(r.errors, 0, "{}: {:?}", r.name, r.error_samples);
        for s in &r.per_subscription {
            let key = (s.node.clone(), s.origin.unwrap_or(s.request));
            assert!(seen.insert(key.clone()), "{key:?} reached two RICs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_subscriptions_of_three_rics_each_get_exactly_their_own_indications() {
    let st = start(Duration::from_secs(3), PodFailure::Delete, named()).await;
    st.settled().await;
    assert_eq!(st.metric("e2lb_router_nodes"), f64::from(NODES));
    tokio::time::sleep(Duration::from_millis(800)).await;
    // ric-2 dies: its subscriptions are deleted at the nodes; the others flow on.
    let ric2 = st.rics[2].as_ref().map(|r| r.live.clone()).expect("ric-2");
    let st = {
        let mut st = st;
        let r = st.rics[2].take().expect("ric-2");
        let report2 = r.stop().await;
        let deleted = "e2lb_router_subscriptions_total{outcome=\"deleted\"}";
        for _ in 0..200 {
            if st.metric(deleted) >= (u64::from(NODES) * FUNCTIONS) as f64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(st.metric(deleted), (u64::from(NODES) * FUNCTIONS) as f64);
        (st, report2)
    };
    let (st, report2) = st;
    let _ = ric2;
    let (nodes, rics) = st.finish().await;
    assert_eq!(nodes.errors, 0, "{:?}", nodes.error_samples);
    assert_eq!(nodes.setups_ok, u64::from(NODES), "one E2 Setup per node");
    assert_eq!(nodes.reconnects, 0);
    // 3 RICs × 2 functions per node, then ric-2's deleted at the node.
    assert_eq!(nodes.subscriptions, u64::from(NODES) * FUNCTIONS * 3);
    assert_eq!(nodes.subscription_deletes, u64::from(NODES) * FUNCTIONS);
    let mut all: Vec<&RicReport> = rics.iter().collect();
    all.push(&report2);
    check_ownership(&all);
    for r in &rics {
        assert!(r.lossless(), "{r:#?}");
        assert_eq!(
            r.per_subscription.len() as u64,
            u64::from(NODES) * FUNCTIONS
        );
        assert!(r.per_subscription.iter().all(|s| s.created_here));
    }
    // The survivors' streams: complete from sequence 0, nothing twice.
    let survivors: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&survivors);
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
    assert_eq!(report2.duplicates, 0);
    let received: u64 = all.iter().map(|r| r.indications).sum();
    eprintln!(
        "router: {} indications sent, {received} received ({} by the RIC that died); {} subscriptions deleted at the nodes",
        nodes.indications_sent, report2.indications, nodes.subscription_deletes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_handover_a_restarted_ric_adopts_its_streams_and_the_admin_api_shows_the_table() {
    // Every healthy backend (all three: none is probed unhealthy).
    let mut st = start(
        Duration::from_secs(4),
        PodFailure::Handover,
        PodChoice::AllHealthy,
    )
    .await;
    let state = Arc::new(AdminState::new(
        st.metrics.clone(),
        st.shared.pool.clone(),
        st.shared.balance.clone(),
        st.shared.associations.clone(),
    ));
    let l = admin::bind(addr("127.0.0.1:0")).await.expect("bind");
    let at = l.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(admin::serve(l, state, async move { s.cancelled().await }));
    st.settled().await;
    // The subscription table of one node.
    let (code, v) = call(at, "GET", "/api/v1/associations", None).await;
    assert_eq!(code, 200);
    let first = &v["associations"][0];
    assert_eq!(first["mode"], "router");
    assert_eq!(first["pods"].as_array().map(Vec::len), Some(3));
    let id = first["id"].as_u64().expect("id");
    let (code, t) = call(
        at,
        "GET",
        &format!("/api/v1/associations/{id}/router"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{t}");
    assert_eq!(t["pods"].as_array().map(Vec::len), Some(3));
    let subs = t["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(subs.len() as u64, 3 * FUNCTIONS);
    let node_ids: BTreeSet<String> = subs.iter().map(|s| s["node_id"].to_string()).collect();
    assert_eq!(node_ids.len(), subs.len(), "unique node-side ids");
    let pod_ids: BTreeSet<String> = subs
        .iter()
        .map(|s| s["subscribers"][0]["pod_id"].to_string())
        .collect();
    assert_eq!(pod_ids.len() as u64, FUNCTIONS, "the RICs' own ids collide");
    // A move to a pod that already has... an unknown subscription is refused.
    let (code, _) = call(
        at,
        "POST",
        &format!("/api/v1/associations/{id}/subscriptions/9-9/move"),
        Some(r#"{"to":"ric-1"}"#),
    )
    .await;
    assert_eq!(code, 409);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ric-2 dies and comes back at the same address: its xApps subscribe
    // alike, and e2lb hands the node's existing subscriptions to it.
    let old = st.rics[2].take().expect("ric-2").stop().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    st.rics[2] = Some(start_ric(&st.net, 2, "ric-2b"));
    let moved = "e2lb_router_subscriptions_total{outcome=\"moved\"}";
    for _ in 0..300 {
        if st.metric(moved) >= (u64::from(NODES) * FUNCTIONS) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(st.metric(moved), (u64::from(NODES) * FUNCTIONS) as f64);
    let (nodes, rics) = st.finish().await;
    stop.cancel();
    server.await.expect("admin");
    assert_eq!(nodes.errors, 0, "{:?}", nodes.error_samples);
    assert_eq!(
        nodes.subscription_deletes, 0,
        "nothing deleted at the nodes"
    );
    assert_eq!(
        nodes.subscriptions,
        u64::from(NODES) * FUNCTIONS * 3,
        "no new node subscription"
    );
    assert_eq!(nodes.reconnects, 0);
    let mut all: Vec<&RicReport> = rics.iter().collect();
    all.push(&old);
    // ric-2 and ric-2b share streams (by node-side id): check the others alone.
    check_ownership(&all[..2]);
    for r in &rics[..2] {
        assert!(r.lossless(), "{r:#?}");
    }
    let loss = combined_loss(&all);
    assert_eq!(loss.excess, 0, "duplicates: {loss:?}");
    assert_eq!(loss.subscriptions, u64::from(NODES) * FUNCTIONS * 3);
    let received: u64 = all.iter().map(|r| r.indications).sum();
    // Only what ric-2's transport took before it died is missing.
    assert_eq!(received + loss.missing, nodes.indications_sent, "{loss:?}");
    assert_eq!(rics[2].misrouted, 0);
    eprintln!(
        "router hand-over: {} streams adopted by the restarted RIC, {} indications sent, {} lost in the dead RIC's transport",
        u64::from(NODES) * FUNCTIONS,
        nodes.indications_sent,
        loss.missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replicas_each_node_is_shared_by_that_many_pods_chosen_by_bull_and_bear() {
    let st = start(
        Duration::from_secs(2),
        PodFailure::Delete,
        PodChoice::Replicas(2),
    )
    .await;
    let want = u64::from(NODES) * FUNCTIONS * 2;
    for _ in 0..300 {
        let total: u64 = st
            .rics
            .iter()
            .flatten()
            .map(|r| r.live.metrics().subscriptions)
            .sum();
        if total >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for a in st.shared.associations.list() {
        let pods = a.pods().expect("router mode");
        assert_eq!(pods.len(), 2, "{pods:?}");
        assert_ne!(pods[0], pods[1]);
    }
    let (nodes, rics) = st.finish().await;
    assert_eq!(nodes.errors, 0, "{:?}", nodes.error_samples);
    assert_eq!(nodes.subscriptions, want);
    let all: Vec<&RicReport> = rics.iter().collect();
    check_ownership(&all);
    for r in &rics {
        assert!(r.lossless(), "{r:#?}");
    }
    let received: u64 = rics.iter().map(|r| r.indications).sum();
    assert_eq!(received, nodes.indications_sent);
}

/// A pod's streams in flight for a shared node reach the balancer (the F term
/// of its score) and `e2lb_backend_in_flight`: a subscription the node has not
/// answered counts at the pod that asked, and only there; the answer, or the
/// pod's leg going away, takes it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_in_flight_at_each_pod_reach_the_balancer() {
    use e2lb::transport::{AssociationExt, Connector, Listener, Message};
    let net = MemNet::new();
    let mut pods: Vec<_> = (10..12)
        .map(|i| net.listen(ric_addr(i), Options::default()).expect("listen"))
        .collect();
    let pool = Pool::new(
        (10..12)
            .map(|i| Backend::new(u32::from(i), format!("pod-{i}"), ric_addr(i)))
            .collect(),
    );
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = shared_in_router_mode(
        &net,
        pool,
        &metrics,
        NodeGroup {
            name: "shared".into(),
            plmn: None,
            gnb_ids: Vec::new(),
            pods: PodChoice::Named(vec!["pod-10".into(), "pod-11".into()]),
        },
        RouterConfig::default(),
    );
    let listen = addr("127.0.30.60:36421");
    let l = net.listen(listen, Options::default()).expect("listen");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let proxy = tokio::spawn(proxy::serve(l, shared.clone(), async move {
        s.cancelled().await
    }));
    fn within<F: std::future::IntoFuture>(f: F) -> tokio::time::Timeout<F::IntoFuture> {
        tokio::time::timeout(Duration::from_secs(10), f)
    }
    let mut node = net
        .connector(addr("127.0.31.9:0"), Options::default())
        .connect(listen)
        .await
        .expect("node connects");
    node.send(&Message::new(0, 0, peers::setup_request(9)))
        .await
        .expect("setup sent");
    let mut legs = Vec::new();
    for l in pods.iter_mut() {
        let mut leg = within(l.accept()).await.expect("timely").expect("pod leg");
        let m = within(leg.recv()).await.expect("timely").expect("ok");
        assert!(m.is_some(), "the setup reaches every pod");
        leg.send(&Message::new(0, 0, peers::setup_response()))
            .await
            .expect("answered");
        legs.push(leg);
    }
    let m = within(node.recv()).await.expect("timely").expect("ok");
    assert!(m.is_some(), "one merged answer");

    let in_flight = |name: &str| {
        let member = shared
            .pool
            .members()
            .iter()
            .find(|m| m.name() == name)
            .cloned()
            .expect("member");
        let gauge = metrics.in_flight.with_label_values(&[name]).get();
        (i64::from(member.in_flight()), gauge)
    };
    async fn until(what: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
    // pod-10 subscribes; the node has not answered yet.
    legs[0]
        .send(&Message::new(0, 0, peers::sub_request(1)))
        .await
        .expect("subscribe");
    let asked = within(node.recv()).await.expect("timely").expect("ok");
    assert!(asked.is_some(), "the request reaches the node");
    assert!(
        until(|| in_flight("pod-10") == (1, 1)).await,
        "pod-10 has one stream in flight: {:?}",
        in_flight("pod-10")
    );
    assert_eq!(
        in_flight("pod-11"),
        (0, 0),
        "not at the pod that did not ask"
    );
    // The node answers: nothing in flight any more.
    node.send(&Message::new(0, 0, peers::sub_response(1)))
        .await
        .expect("answer");
    let answer = within(legs[0].recv()).await.expect("timely").expect("ok");
    assert!(answer.is_some(), "the answer reaches pod-10");
    assert!(
        until(|| in_flight("pod-10") == (0, 0)).await,
        "answered: {:?}",
        in_flight("pod-10")
    );
    // Another request in flight, then pod-10's leg goes: its share goes with it.
    legs[0]
        .send(&Message::new(0, 0, peers::sub_request(2)))
        .await
        .expect("subscribe");
    let _ = within(node.recv()).await.expect("timely");
    assert!(
        until(|| in_flight("pod-10") == (1, 1)).await,
        "in flight again: {:?}",
        in_flight("pod-10")
    );
    drop(legs.remove(0));
    assert!(
        until(|| in_flight("pod-10") == (0, 0)).await,
        "the pod's leg is gone: {:?}",
        in_flight("pod-10")
    );
    stop.cancel();
    let _ = within(proxy).await;
}
