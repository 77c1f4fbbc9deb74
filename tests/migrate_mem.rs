//! Live re-homing through the real proxy over the in-memory transport: node
//! simulators with class-B subscriptions, three RIC simulators, e2lb between
//! them, and the migration executor. Every indication carries its
//! per-subscription sequence number, so loss, duplicates and gaps are counted
//! over the old and the new RIC together. Real time, a few seconds each.

#[path = "common/adminhttp.rs"]
mod adminhttp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adminhttp::call;
use e2lb::admin::{self, AdminState};
use e2lb::balance::{Backend, Pool};
use e2lb::migrate::{Executor, ExecutorConfig};
use e2lb::probe::{Figures, ProbeError, ProbeRound};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::scale::actuator::static_pool::StaticPool;
use e2lb::scale::actuator::Provisioned;
use e2lb::scale::control::{ScaleControl, ScaleSettings};
use e2lb::scale::policy::ScalerConfig;
use e2lb::session::BackendId;
use e2lb::sim::{
    combined_loss, run_nodes, run_ric, NodeLive, NodeReport, NodeSimConfig, RicLive, RicReport,
    RicSimConfig, TrafficClass,
};
use e2lb::transport::mem::{MemConnector, MemNet};
use e2lb::transport::Options;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const NODES: u32 = 12;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
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

fn start_ric(net: &MemNet, i: u16) -> Ric {
    let listener = net.listen(ric_addr(i), Options::default()).expect("listen");
    let live = RicLive::new();
    let (tx, rx) = oneshot::channel::<()>();
    let cfg = RicSimConfig {
        name: format!("ric-{i}"),
        ric_id: u32::from(i) + 1,
        // Each RIC numbers its subscriptions its own way: hand-over rewrites ids.
        requestor_id: 10 + i,
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

fn ric_addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 20, 1 + i as u8], 36421))
}

struct Stack {
    net: MemNet,
    rics: Vec<Option<Ric>>,
    shared: Arc<Shared<MemConnector>>,
    metrics: Arc<Metrics>,
    executor: Arc<Executor>,
    stop: CancellationToken,
    proxy: tokio::task::JoinHandle<()>,
    nodes: tokio::task::JoinHandle<NodeReport>,
}

async fn start(duration: Duration) -> Stack {
    let net = MemNet::new();
    let rics: Vec<Option<Ric>> = (0..3).map(|i| Some(start_ric(&net, i))).collect();
    let pool = Pool::new(
        (0..3)
            .map(|i| Backend::new(u32::from(i), format!("ric-{i}"), ric_addr(i)))
            .collect(),
    );
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = Arc::new(
        Shared::new(
            ProxyConfig::default(),
            pool,
            net.connector(addr("127.0.20.100:0"), Options::default()),
            metrics.clone(),
        )
        .expect("shared"),
    );
    let executor = Arc::new(
        Executor::new(
            ExecutorConfig::default(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
            &metrics.registry,
        )
        .expect("executor"),
    );
    let listen = addr("127.0.20.50:36421");
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
    let nodes = tokio::spawn(run_nodes(
        net.connector(addr("127.0.21.1:0"), Options::default()),
        ncfg,
        NodeLive::new(),
    ));
    Stack {
        net,
        rics,
        shared,
        metrics,
        executor,
        stop,
        proxy,
        nodes,
    }
}

impl Stack {
    /// Wait until every node is set up and its subscriptions confirmed.
    async fn settled(&self) {
        let subs = u64::from(NODES) * 2;
        for _ in 0..200 {
            let confirmed: u64 = self
                .rics
                .iter()
                .flatten()
                .map(|r| r.live.metrics().subscriptions)
                .sum();
            if confirmed >= subs {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the nodes did not settle");
    }

    /// The backend the balancer gave the most associations. Which one that is
    /// depends on measured setup latencies, so tests never assume `ric-0`.
    fn busiest(&self) -> (BackendId, usize) {
        (0..3u32)
            .map(|i| {
                let id = BackendId(i);
                (id, self.shared.associations.on_backend(id).len())
            })
            .max_by_key(|(_, n)| *n)
            .expect("three backends")
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

fn check_nodes(n: &NodeReport) {
    assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
    // The nodes never noticed: one E2 Setup each, no reconnect.
    assert_eq!(
        n.setups_ok,
        u64::from(NODES),
        "repeated E2 Setups at a node"
    );
    assert_eq!(n.reconnects, 0, "a node association restarted");
    assert_eq!(n.setups_failed, 0);
    assert_eq!(n.dropped_at_close, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_evacuation_moves_every_association_without_loss() {
    let st = start(Duration::from_secs(4)).await;
    st.settled().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (gone, on0) = st.busiest();
    assert!(on0 > 0, "the balancer placed nothing");
    let plan = st.executor.plan(&e2lb::migrate::plan::Request::Remove {
        backends: vec![gone],
    });
    assert!(plan.feasible, "{plan:?}");
    assert_eq!(plan.moves.len(), on0);
    let done = st.executor.evacuate(gone).await;
    assert!(done.complete(), "{done:?}");
    assert_eq!(done.switched, on0);
    assert!(st.shared.associations.on_backend(gone).is_empty());
    assert_eq!(
        st.metric("e2lb_subscriptions_adopted_total"),
        2.0 * on0 as f64
    );
    assert_eq!(st.metric("e2lb_subscriptions_dropped_total"), 0.0);
    let (nodes, rics) = st.finish().await;
    check_nodes(&nodes);
    for r in &rics {
        assert_eq!(r.errors, 0, "{}: {:?}", r.name, r.error_samples);
        assert!(r.lossless(), "{r:#?}");
    }
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    let received: u64 = rics.iter().map(|r| r.indications).sum();
    assert_eq!(
        received, nodes.indications_sent,
        "sent by nodes != received by rics"
    );
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
    assert_eq!(loss.subscriptions, u64::from(NODES) * 2);
    // The emptied RIC got the first part of the moved streams, the others the rest.
    let moved: Vec<_> = rics
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u32 != gone.0)
        .map(|(_, r)| r)
        .flat_map(|r| r.per_subscription.iter())
        .filter(|s| s.origin.is_some() && !s.created_here)
        .collect();
    assert_eq!(
        moved.len(),
        on0 * 2,
        "every moved stream continued elsewhere"
    );
    assert!(moved.iter().all(|s| s.first_seq.is_some_and(|f| f > 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_goes_away_has_its_associations_rehomed() {
    let mut st = start(Duration::from_secs(4)).await;
    st.settled().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (gone, on0) = st.busiest();
    assert!(on0 > 0, "the balancer placed nothing");
    // That RIC goes away: its associations end under e2lb's feet.
    let ric0 = st.rics[gone.0 as usize].take().expect("the busiest ric");
    let report0 = ric0.stop().await;
    for _ in 0..100 {
        if st.shared.associations.on_backend(gone).is_empty()
            && st.metric("e2lb_migrations_total{kind=\"failover\",outcome=\"switched\"")
                >= on0 as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        st.metric("e2lb_migrations_total{kind=\"failover\",outcome=\"switched\""),
        on0 as f64
    );
    assert_eq!(st.metric("e2lb_rehomes_total"), on0 as f64);
    let (nodes, mut rics) = st.finish().await;
    check_nodes(&nodes);
    rics.push(report0);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!(loss.excess, 0, "duplicates: {loss:?}");
    assert_eq!(loss.subscriptions, u64::from(NODES) * 2);
    let received: u64 = rics.iter().map(|r| r.indications).sum();
    // What ric-0's transport took but ric-0 never processed is lost; nothing else.
    assert_eq!(received + loss.missing, nodes.indications_sent, "{loss:?}");
    for r in &rics[..2] {
        assert_eq!(r.duplicates, 0);
        assert_eq!(r.out_of_order, 0);
        assert_eq!(r.missing, 0, "{}: gaps after the switch", r.name);
    }
    eprintln!(
        "failover: {on0} associations re-homed, {} indications sent, {} lost in ric-0's transport",
        nodes.indications_sent, loss.missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_plans_executes_and_moves_one_association() {
    let st = start(Duration::from_secs(4)).await;
    let state = Arc::new(
        AdminState::new(
            st.metrics.clone(),
            st.shared.pool.clone(),
            st.shared.balance.clone(),
            st.shared.associations.clone(),
        )
        .with_migrate(st.executor.clone()),
    );
    let l = admin::bind(addr("127.0.0.1:0")).await.expect("bind");
    let at = l.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(admin::serve(l, state, async move { s.cancelled().await }));
    st.settled().await;
    // A plan only: nothing moves.
    let (code, p) = call(
        at,
        "GET",
        "/api/v1/plan?request=remove&backends=ric-1",
        None,
    )
    .await;
    assert_eq!(code, 200, "{p}");
    let on1 = st.shared.associations.on_backend(BackendId(1)).len();
    assert_eq!(p["moves"].as_array().map(Vec::len), Some(on1));
    assert_eq!(p["feasible"], true);
    assert!(p["moves"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|m| m["from"] == 1 && m["to"] != 1 && m["reason"] == "empty_backend"));
    assert_eq!(st.shared.associations.on_backend(BackendId(1)).len(), on1);
    for (q, what) in [
        ("request=remove", "remove without backends"),
        ("request=remove&backends=nope", "unknown backend"),
        ("request=remove_count&count=0", "count 0"),
        ("request=teleport", "unknown request"),
        ("colour=blue", "unknown parameter"),
    ] {
        let (code, v) = call(at, "GET", &format!("/api/v1/plan?{q}"), None).await;
        assert_eq!(code, 400, "{what}: {v}");
    }
    // One association, by hand, to a named backend.
    let (from, _) = st.busiest();
    let one = st.shared.associations.on_backend(from)[0].id;
    let to = if from.0 == 2 { "ric-1" } else { "ric-2" };
    let (code, v) = call(
        at,
        "POST",
        &format!("/api/v1/associations/{one}/migrate"),
        Some(&format!(r#"{{"target":"{to}"}}"#)),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["outcome"].as_str(), v["to"].as_str()),
        (Some("switched"), Some(to))
    );
    assert_eq!(
        st.shared.associations.get(one).and_then(|r| r.backend_id()),
        Some(BackendId(if from.0 == 2 { 1 } else { 2 }))
    );
    let (code, v) = call(
        at,
        "POST",
        &format!("/api/v1/associations/{one}/migrate"),
        Some(&format!(r#"{{"target":"{to}"}}"#)),
    )
    .await;
    assert_eq!((code, v["outcome"].as_str()), (409, Some("refused")), "{v}");
    let (code, _) = call(at, "POST", "/api/v1/associations/999999/migrate", None).await;
    assert_eq!(code, 404);
    // Execute a plan emptying ric-1.
    let (code, v) = call(
        at,
        "POST",
        "/api/v1/plan/execute",
        Some(r#"{"request":"remove","backends":["ric-1"]}"#),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["execution"]["switched"], v["execution"]["planned"]);
    assert!(st.shared.associations.on_backend(BackendId(1)).is_empty());
    let (code, v) = call(at, "GET", "/api/v1/migrations", None).await;
    assert_eq!(code, 200);
    let moves = v["moves"].as_array().map_or(0, Vec::len);
    assert!(moves > on1, "{moves} moves recorded");
    // `e2lb top` shows the same from outside.
    let top = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2lb"))
        .args(["top", "--once", "--admin", &format!("http://{at}")])
        .output()
        .await
        .expect("e2lb top");
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{screen}{}",
        String::from_utf8_lossy(&top.stderr)
    );
    for want in [
        "balancer BULL",
        "ric-0",
        "ric-1",
        "ric-2",
        "scaler off",
        "switched",
    ] {
        assert!(screen.contains(want), "{want}: {screen}");
    }
    assert!(
        screen.contains(&format!("migrations: {moves} recorded")),
        "{screen}"
    );
    let (nodes, rics) = st.finish().await;
    stop.cancel();
    server.await.expect("admin");
    check_nodes(&nodes);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
}

/// RIC `i` as the static actuator knows it.
fn prov(i: u16) -> Provisioned {
    Provisioned {
        name: format!("ric-{i}"),
        addr: ric_addr(i),
        metrics: None,
    }
}

/// 3 to 4 backends.
fn three_to_four() -> ScalerConfig {
    ScalerConfig {
        min_replicas: 3,
        max_replicas: 4,
        ..ScalerConfig::default()
    }
}

/// A scaler on the stack's pool whose scale-ins migrate live (and, with
/// `rebalance`, whose scale-ups in Bear get associations moved onto them).
fn scaler(
    st: &Stack,
    actuator: Arc<StaticPool>,
    policy: ScalerConfig,
    rebalance: bool,
) -> ScaleControl {
    ScaleControl::new(
        ScaleSettings {
            policy,
            ..ScaleSettings::default()
        },
        actuator,
        &st.metrics.registry,
    )
    .expect("scaler")
    .with_migrate(st.executor.clone(), true, rebalance)
}

/// Every member reports `cpu` in a probe round, then the balancer publishes.
fn probe_all(st: &Stack, cpu: f64) {
    probe_round(st, cpu, None);
}

/// A probe round in which `failing` (if any) does not answer.
fn probe_round(st: &Stack, cpu: f64, failing: Option<BackendId>) {
    let now = std::time::Instant::now();
    let round = ProbeRound {
        taken_at: now,
        results: st
            .shared
            .pool
            .members()
            .iter()
            .map(|m| {
                if Some(m.id()) == failing {
                    return (m.id(), Err(ProbeError::Timeout));
                }
                (
                    m.id(),
                    Ok(Figures {
                        cpu: Some(cpu),
                        proc_time: None,
                        latency: None,
                    }),
                )
            })
            .collect(),
    };
    st.shared.balance.handle_round(&st.shared.pool, &round);
    let _ = st.shared.balance.publish(&st.shared.pool, now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_in_bear_gets_associations_rebalanced_onto_it() {
    let mut st = start(Duration::from_secs(5)).await;
    // A fourth RIC, on standby for the static actuator.
    st.rics.push(Some(start_ric(&st.net, 3)));
    st.settled().await;
    let actuator = Arc::new(StaticPool::new((0..3).map(prov).collect(), vec![prov(3)]));
    let control = scaler(
        &st,
        actuator,
        ScalerConfig {
            room_cpu: 0.0,
            ..three_to_four()
        },
        true,
    );
    // Every RIC is hot: Bear, and the scaler adds ric-3.
    probe_all(&st, 0.95);
    assert_eq!(st.shared.balance.view().balancer.mode().as_str(), "bear");
    let now = std::time::Instant::now();
    control
        .tick(&st.shared.pool, &st.shared.balance, &st.metrics, true, now)
        .await;
    control
        .tick(&st.shared.pool, &st.shared.balance, &st.metrics, true, now)
        .await;
    let added = st.shared.pool.find("ric-3").expect("ric-3 joined the pool");
    // The rebalance plan moves associations onto it, live.
    for _ in 0..200 {
        if st.metric("e2lb_migrate_moves_running") == 0.0
            && !st.shared.associations.on_backend(added.id()).is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = st.shared.associations.on_backend(added.id()).len();
    assert!(moved > 0, "nothing was rebalanced onto ric-3");
    let plan = st.executor.last_plan().expect("a plan");
    assert!(plan.moves.iter().all(|m| m.to == added.id()), "{plan:?}");
    assert_eq!(moved, plan.moves.len());
    let (nodes, rics) = st.finish().await;
    check_nodes(&nodes);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
    eprintln!("rebalance: {moved} associations moved onto ric-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_associations_of_a_backend_turning_unhealthy_are_rehomed() {
    let st = start(Duration::from_secs(4)).await;
    st.executor
        .reconfigure(ExecutorConfig {
            rehome_on_unhealthy: true,
            ..ExecutorConfig::default()
        })
        .expect("executor settings");
    let stop = CancellationToken::new();
    let watch = tokio::spawn(st.executor.clone().watch(stop.clone()));
    st.settled().await;
    probe_all(&st, 0.1);
    let (sick, on0) = st.busiest();
    assert!(on0 > 0);
    // Its probe stops answering: unhealthy after `unhealthy_after` (3) rounds.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        probe_round(&st, 0.1, Some(sick));
    }
    let switched = "e2lb_migrations_total{kind=\"unhealthy\",outcome=\"switched\"";
    for _ in 0..200 {
        if st.metric(switched) >= on0 as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(st.metric(switched), on0 as f64);
    assert!(st.shared.associations.on_backend(sick).is_empty());
    stop.cancel();
    watch.await.expect("watch");
    let (nodes, rics) = st.finish().await;
    check_nodes(&nodes);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!(loss.excess, 0, "{loss:?}");
    // ric-0 still read what it was sent before its association was shut down.
    assert_eq!(loss.missing, 0, "{loss:?}");
}

/// A move the association does not finish within `move_timeout` (its target
/// accepts the association but never answers the replayed E2 Setup) is
/// reported as `timed_out`, counted apart from aborted moves, and changes
/// nothing for the node: it stays where it was and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_outlasts_move_timeout_is_reported_timed_out() {
    use e2lb::proxy::table::{MoveOutcome, MoveReason};
    use e2lb::transport::Listener;
    let st = start(Duration::from_secs(4)).await;
    st.settled().await;
    // A backend that takes associations and never says a word.
    let mut silent = st
        .net
        .listen(ric_addr(3), Options::default())
        .expect("listen");
    let held = tokio::spawn(async move {
        let mut legs = Vec::new();
        while let Ok(a) = silent.accept().await {
            legs.push(a);
        }
    });
    st.shared
        .pool
        .add(
            Backend::new(3, "ric-silent", ric_addr(3)),
            std::time::Instant::now(),
        )
        .expect("added");
    st.executor
        .reconfigure(ExecutorConfig {
            move_timeout: Duration::from_millis(300),
            ..ExecutorConfig::default()
        })
        .expect("reconfigured");
    let (from, _) = st.busiest();
    let one = st.shared.associations.on_backend(from)[0].id;
    let out = st
        .executor
        .move_one(one, Some(BackendId(3)), MoveReason::Planned, 1)
        .await;
    assert!(
        matches!(out, Some(MoveOutcome::TimedOut { after_ms }) if after_ms == 300.0),
        "{out:?}"
    );
    assert_eq!(
        st.metric("e2lb_migrate_moves_total{outcome=\"timed_out\",reason=\"planned\"}"),
        1.0,
        "{}",
        st.metrics.render()
    );
    assert_eq!(
        st.shared.associations.get(one).and_then(|r| r.backend_id()),
        Some(from),
        "the association stays on its backend"
    );
    let (nodes, rics) = st.finish().await;
    held.abort();
    check_nodes(&nodes);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
}

/// Another replica's scaler removed a backend (here: the static actuator is
/// told to, as the leader would), so discovery stops reporting it while it
/// still answers — a pod in its termination grace period. This replica is a
/// follower: it does not actuate, but once the backend is missing from two
/// discoveries in a row its reconcile drains it and migrates every
/// association it holds there live, before the pod dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_migrates_its_associations_off_a_backend_discovery_no_longer_reports() {
    use e2lb::proxy::table::MoveReason;
    use e2lb::scale::actuator::Actuator;
    let mut st = start(Duration::from_secs(12)).await;
    st.rics.push(Some(start_ric(&st.net, 3)));
    st.settled().await;
    let actuator = Arc::new(StaticPool::new((0..4).map(prov).collect(), Vec::new()));
    let control = scaler(&st, actuator.clone(), three_to_four(), false);
    // One scaler period of this replica, which does not lead.
    let follower_tick = || {
        control.tick(
            &st.shared.pool,
            &st.shared.balance,
            &st.metrics,
            false,
            std::time::Instant::now(),
        )
    };
    // ric-3 is discovered and joins; a few associations are moved onto it.
    follower_tick().await;
    let ric3 = st.shared.pool.find("ric-3").expect("ric-3 joined").id();
    let (from, _) = st.busiest();
    let some: Vec<u64> = st
        .shared
        .associations
        .on_backend(from)
        .iter()
        .take(3)
        .map(|r| r.id)
        .collect();
    for id in &some {
        let out = st
            .executor
            .move_one(*id, Some(ric3), MoveReason::Planned, 1)
            .await;
        assert!(
            matches!(out, Some(e2lb::proxy::table::MoveOutcome::Switched { .. })),
            "{out:?}"
        );
    }
    assert_eq!(st.shared.associations.on_backend(ric3).len(), some.len());
    // The leader (elsewhere) removes ric-3: discovery no longer lists it.
    actuator.apply(3, &[prov(3)]).await.expect("removed");
    assert_eq!(actuator.active().len(), 3);
    // One discovery without it may be a blip: nothing happens yet.
    follower_tick().await;
    let still = st.shared.pool.find("ric-3").expect("still in the pool");
    assert!(!still.removing());
    assert_eq!(st.shared.associations.on_backend(ric3).len(), some.len());
    // The second one in a row: it leaves, and what is on it moves.
    follower_tick().await;
    let switched = "e2lb_migrate_moves_total{outcome=\"switched\",reason=\"planned\"}";
    let evacuated = || st.metric(switched) as usize - some.len();
    // Well before the nodes stop (12 s): these moves are the evacuation's.
    for _ in 0..150 {
        if evacuated() == some.len() && st.shared.associations.on_backend(ric3).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (evacuated(), st.shared.associations.on_backend(ric3).len()),
        (some.len(), 0),
        "ric-3's associations were migrated off live"
    );
    assert_eq!(
        st.shared.associations.on_backend(ric3).len()
            + (0..3u32)
                .map(|b| st.shared.associations.on_backend(BackendId(b)).len())
                .sum::<usize>(),
        NODES as usize,
        "every node still connected"
    );
    st.shared.pool.sweep();
    assert!(
        st.shared.pool.find("ric-3").is_none(),
        "ric-3 left the pool"
    );
    let (nodes, rics) = st.finish().await;
    check_nodes(&nodes);
    let refs: Vec<&RicReport> = rics.iter().collect();
    let loss = combined_loss(&refs);
    assert_eq!((loss.missing, loss.excess), (0, 0), "{loss:?}");
}
