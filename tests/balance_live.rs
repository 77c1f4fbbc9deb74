//! Probes feeding the live Bull-and-Bear balancer (`balance::live::run`):
//!
//! - exposition probes of RIC simulators' `/metrics` on loopback TCP: probed
//!   CPU reaches the scores, a backend whose endpoint goes away turns
//!   unhealthy after `unhealthy_after` failures and is never picked, and
//!   recovers when it answers again;
//! - the PromQL source against a real Prometheus server scraping the
//!   simulators (needs the `prometheus` binary, Debian package `prometheus`,
//!   installed by `scripts/install-deps`; skipped with a message when it is
//!   missing outside CI, a failure in CI);
//! - CPU skew: a backend reporting 95 % CPU sends the pool into Bear and
//!   gets no new node while a cool backend exists; once it cools down the
//!   pool leaves Bear after the hold time and it is picked again.

#[path = "common/prometheus.rs"]
mod prometheus;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2lb::balance::bnb::{BnbConfig, Mode, Pick, PickReason, TIE_BAND};
use e2lb::balance::live::{self, BalanceSettings, LiveBalancer};
use e2lb::balance::load::CpuSource;
use e2lb::balance::{Backend, Pool};
use e2lb::probe::{ProbeConfig, Prober, PromqlConfig, Source};
use e2lb::proxy::Metrics;
use e2lb::session::{BackendId, NodeId};
use e2lb::sim::{bind_metrics, serve_metrics_on, RicLive};
use prometheus::PromServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Polls the (synchronous) condition every 20 ms until it yields `Some`,
/// failing after `limit`.
async fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A RIC simulator's `/metrics` endpoint on loopback TCP (the figures only:
/// no E2 traffic is needed for probing).
struct RicMetrics {
    live: Arc<RicLive>,
    at: SocketAddr,
    server: Option<(CancellationToken, JoinHandle<std::io::Result<()>>)>,
}

impl RicMetrics {
    async fn start() -> RicMetrics {
        let mut m = RicMetrics {
            live: RicLive::new(),
            at: "127.0.0.1:0".parse().expect("addr"),
            server: None,
        };
        m.serve().await;
        m
    }

    /// (Re)starts serving, on the same port after the first time.
    async fn serve(&mut self) {
        let l = bind_metrics(self.at).await.expect("bind metrics");
        self.at = l.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(serve_metrics_on(l, self.live.clone(), async move {
            s.cancelled().await
        }));
        self.server = Some((stop, task));
    }

    /// Stops serving; the port refuses connections afterwards.
    async fn stop(&mut self) {
        if let Some((stop, task)) = self.server.take() {
            stop.cancel();
            task.await.expect("join").expect("serve");
        }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.at)
    }
}

/// A tiny HTTP server answering every request with a fixed exposition text
/// (which the test may change).
struct FixedExpo {
    text: Arc<Mutex<String>>,
    at: SocketAddr,
    task: JoinHandle<()>,
}

impl FixedExpo {
    async fn start(text: &str) -> FixedExpo {
        let text = Arc::new(Mutex::new(text.to_owned()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let at = l.local_addr().expect("addr");
        let t = text.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = t.lock().expect("text").clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        FixedExpo { text, at, task }
    }

    fn set(&self, text: &str) {
        *self.text.lock().expect("text") = text.to_owned();
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.at)
    }
}

impl Drop for FixedExpo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live balancer on `pool`, its owner task running with `prober`.
struct Live {
    pool: Arc<Pool>,
    live: Arc<LiveBalancer>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Live {
    fn start(backends: Vec<Backend>, settings: BalanceSettings, prober: Prober) -> Live {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let pool = Arc::new(Pool::new(backends));
        let live = Arc::new(
            LiveBalancer::new(settings, &pool, &metrics.registry, Instant::now())
                .expect("balancer"),
        );
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(live::run(
            live.clone(),
            pool.clone(),
            Some(prober),
            async move { s.cancelled().await },
        ));
        Live {
            pool,
            live,
            metrics,
            stop,
            task,
        }
    }

    /// CPU source of backend `id` in the published view.
    fn cpu_source(&self, id: u32) -> Option<CpuSource> {
        let v = self.live.view();
        let i = v.snapshot.index_of(BackendId(id))?;
        Some(v.snapshot.scores()[i].cpu_source)
    }

    fn healthy(&self, id: u32) -> Option<bool> {
        let v = self.live.view();
        let i = v.snapshot.index_of(BackendId(id))?;
        Some(v.snapshot.backends()[i].healthy)
    }

    fn probes_ok(&self, name: &str) -> u64 {
        self.live
            .metrics()
            .probes
            .with_label_values(&[name, "ok"])
            .get()
    }

    fn decisions(&self) -> Vec<Value> {
        self.live
            .decisions()
            .iter()
            .map(|d| serde_json::to_value(d).expect("decision JSON"))
            .collect()
    }

    /// Places `n` new nodes (ids `first..first+n`) on the published view,
    /// dropping each claim at once; returns the picks per backend id and
    /// the picks themselves.
    fn place_many(&self, first: u32, n: u32, backends: usize) -> (Vec<u32>, Vec<Pick>) {
        let mut count = vec![0u32; backends];
        let mut picks = Vec::new();
        for k in first..first + n {
            let node = NodeId(Bytes::from(k.to_be_bytes().to_vec()));
            let (member, placement, pick) = self
                .live
                .place(&self.pool, &node, &[], Instant::now())
                .unwrap_or_else(|| panic!("no backend for node {k}"));
            assert_eq!(member.id(), pick.backend);
            assert_eq!(placement.backend(), pick.backend);
            count[member.id().0 as usize] += 1;
            picks.push(pick);
        }
        (count, picks)
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.expect("owner task");
    }
}

/// Bull over two open backends: both compared, the less loaded won.
#[track_caller]
fn assert_both_compared(picks: &[Pick]) {
    for p in picks {
        assert_eq!(p.mode, Mode::Bull, "{p:?}");
        assert_eq!(p.reason, PickReason::PowerOfTwo, "{p:?}");
        assert_eq!(p.candidates.available, 2, "{p:?}");
        let [Some(win), Some(lose)] = p.candidates.compared else {
            panic!("two candidates compared: {p:?}");
        };
        assert_eq!(win.id, p.backend, "{p:?}");
        assert_ne!(win.id, lose.id, "{p:?}");
        // The less loaded wins, unless they are within the tie band.
        assert!(
            win.c <= lose.c || (win.c - lose.c).abs() < TIE_BAND,
            "the less loaded wins: {p:?}"
        );
    }
}

fn probe_config(tick_ms: u64, unhealthy_after: u32) -> ProbeConfig {
    ProbeConfig {
        tick: Duration::from_millis(tick_ms),
        timeout: Duration::from_millis(tick_ms),
        max_age: Duration::from_secs(3),
        unhealthy_after,
        ..ProbeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_probes_feed_scores_and_health() {
    let t0 = Instant::now();
    let mut rics = vec![RicMetrics::start().await, RicMetrics::start().await];
    let backends: Vec<Backend> = (0u32..)
        .zip(&rics)
        .map(|(i, r)| {
            Backend::new(
                i,
                format!("ric-{i}"),
                SocketAddr::from(([10, 0, 1, i as u8 + 1], 36422)),
            )
            .with_metrics(r.url())
        })
        .collect();
    let unhealthy_after = 2;
    let settings = BalanceSettings {
        publish_interval: Duration::from_millis(50),
        unhealthy_after,
        ..BalanceSettings::default()
    };
    let prober = Prober::new(probe_config(150, unhealthy_after), Source::Exposition).expect("p");
    let lb = Live::start(backends, settings, prober);

    // Before any probe round the CPU term is the association proxy.
    // Within a few ticks both are scored on probed CPU.
    eventually("both backends probed", Duration::from_secs(10), || {
        (lb.cpu_source(0) == Some(CpuSource::Probed) && lb.cpu_source(1) == Some(CpuSource::Probed))
            .then_some(())
    })
    .await;
    let ok0 = lb.probes_ok("ric-0");
    assert!(ok0 >= 1);
    eventually("probes keep counting", Duration::from_secs(5), || {
        (lb.probes_ok("ric-0") >= ok0 + 2 && lb.probes_ok("ric-1") >= 3).then_some(())
    })
    .await;
    let text = lb.metrics.render();
    for want in [
        r#"e2lb_probes_total{backend="ric-0",outcome="ok"}"#,
        r#"e2lb_probes_total{backend="ric-1",outcome="ok"}"#,
        r#"e2lb_backend_healthy{backend="ric-1"} 1"#,
        r#"e2lb_backend_cpu_ratio{backend="ric-1"}"#,
        r#"e2lb_probe_age_seconds{backend="ric-1"}"#,
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    let st = lb
        .live
        .probe_status(BackendId(1), Instant::now())
        .expect("probe status");
    assert!(st.healthy && st.successes_total >= 3 && st.consecutive_failures == 0);
    assert!(lb.healthy(0) == Some(true) && lb.healthy(1) == Some(true));
    // Both healthy and idle: power of two choices uses both.
    // Both healthy: every pick compares both (power of two choices over a
    // pool of two) and takes the less loaded.
    let (_, picks) = lb.place_many(0, 100, 2);
    assert_both_compared(&picks);

    // ric-1's endpoint goes away: unhealthy after `unhealthy_after` failures.
    rics[1].stop().await;
    let gone_at = Instant::now();
    eventually("ric-1 unhealthy", Duration::from_secs(10), || {
        (lb.healthy(1) == Some(false)).then_some(())
    })
    .await;
    eprintln!(
        "ric-1 unhealthy {:?} after its endpoint went away",
        gone_at.elapsed()
    );
    assert_eq!(lb.healthy(0), Some(true));
    assert_eq!(
        lb.cpu_source(1),
        Some(CpuSource::Associations),
        "figures stale"
    );
    assert_eq!(lb.cpu_source(0), Some(CpuSource::Probed));
    let view = lb.live.view();
    assert_eq!(view.snapshot.pool().open, 1);
    assert!(lb.live.has_open_backend());
    drop(view);
    let st = lb
        .live
        .probe_status(BackendId(1), Instant::now())
        .expect("probe status");
    assert!(!st.healthy);
    assert!(st.consecutive_failures >= unhealthy_after, "{st:?}");
    let health: Vec<Value> = lb
        .decisions()
        .into_iter()
        .filter(|d| d["kind"] == "health")
        .collect();
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0]["backend"], "ric-1");
    assert_eq!(health[0]["to"], "unhealthy");
    assert_eq!(health[0]["failures"], unhealthy_after);
    let text = lb.metrics.render();
    for want in [
        r#"e2lb_backend_healthy{backend="ric-1"} 0"#,
        r#"e2lb_backend_open{backend="ric-1"} 0"#,
        r#"e2lb_backend_healthy{backend="ric-0"} 1"#,
        r#"e2lb_probes_total{backend="ric-1",outcome="failed"}"#,
        r#"e2lb_probe_failures_total{backend="ric-1",kind="connect"}"#,
        r#"e2lb_backend_health_changes_total{backend="ric-1",to="unhealthy"} 1"#,
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    assert!(
        !text.contains(r#"e2lb_backend_cpu_ratio{backend="ric-1"}"#),
        "a stale CPU figure is not exported:\n{text}"
    );
    // Never picked while unhealthy.
    let (picks, _) = lb.place_many(1000, 300, 2);
    assert_eq!(picks, [300, 0], "the unhealthy ric-1 was picked");
    let reasons: Vec<Value> = lb
        .decisions()
        .into_iter()
        .rev()
        .take(50)
        .filter(|d| d["kind"] == "pick")
        .collect();
    assert!(
        reasons
            .iter()
            .all(|d| d["backend"] == "ric-0" && d["reason"] == "only" && d["available"] == 1),
        "{reasons:?}"
    );

    // The endpoint comes back: one success makes it healthy and picked again.
    rics[1].serve().await;
    eventually("ric-1 healthy again", Duration::from_secs(10), || {
        (lb.healthy(1) == Some(true) && lb.cpu_source(1) == Some(CpuSource::Probed)).then_some(())
    })
    .await;
    let last_health = lb
        .decisions()
        .into_iter()
        .rfind(|d| d["kind"] == "health")
        .expect("health decision");
    assert_eq!(last_health["to"], "healthy");
    assert!(lb
        .metrics
        .render()
        .contains(r#"e2lb_backend_health_changes_total{backend="ric-1",to="healthy"} 1"#));
    let (_, picks) = lb.place_many(2000, 100, 2);
    assert_both_compared(&picks);

    lb.shutdown().await;
    for mut r in rics {
        r.stop().await;
    }
    eprintln!("exposition test took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_skew_keeps_new_nodes_off_the_hot_backend() {
    let t0 = Instant::now();
    let hot = FixedExpo::start("ric_cpu_utilisation_ratio 0.95\n").await;
    let cool = FixedExpo::start(
        "# TYPE ric_cpu_utilisation_ratio gauge\nric_cpu_utilisation_ratio 0.10\n",
    )
    .await;
    let mut sim = RicMetrics::start().await;
    let urls = [hot.url(), cool.url(), sim.url()];
    let backends: Vec<Backend> = (0u32..)
        .zip(["hot", "cool", "sim"])
        .zip(&urls)
        .map(|((i, name), url)| {
            Backend::new(i, name, SocketAddr::from(([10, 0, 1, i as u8 + 1], 36422)))
                .with_metrics(url)
        })
        .collect();
    let hold = Duration::from_millis(300);
    let settings = BalanceSettings {
        publish_interval: Duration::from_millis(50),
        bnb: BnbConfig {
            hold,
            ..BnbConfig::default()
        },
        ..BalanceSettings::default()
    };
    let prober = Prober::new(probe_config(100, 3), Source::Exposition).expect("prober");
    let lb = Live::start(backends, settings, prober);

    // The hot backend's fresh 95 % CPU sends the pool into Bear.
    eventually("all probed and Bear", Duration::from_secs(10), || {
        let all = (0..3).all(|i| lb.cpu_source(i) == Some(CpuSource::Probed));
        (all && lb.live.view().balancer.mode() == Mode::Bear).then_some(())
    })
    .await;
    {
        let v = lb.live.view();
        let snap = &v.snapshot;
        let hot_score = snap.scores()[snap.index_of(BackendId(0)).expect("hot")];
        assert!((hot_score.cpu - 0.95).abs() < 1e-9, "{hot_score:?}");
        assert!(hot_score.hot.any(), "{hot_score:?}");
        let cool_score = snap.scores()[snap.index_of(BackendId(1)).expect("cool")];
        assert!((cool_score.cpu - 0.10).abs() < 1e-9, "{cool_score:?}");
        assert!(!cool_score.hot.any(), "{cool_score:?}");
        assert_eq!(snap.pool().hottest, Some(BackendId(0)));
        assert_eq!(snap.pool().hot, 1);
        assert_eq!(v.last_scale_up.map(|(_, c)| c), Some("cpu"));
    }
    let transitions: Vec<Value> = lb
        .decisions()
        .into_iter()
        .filter(|d| d["kind"] == "transition")
        .collect();
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    assert_eq!(transitions[0]["to"], "bear");
    assert_eq!(transitions[0]["cause"], "cpu");
    let text = lb.metrics.render();
    for want in [
        "e2lb_bnb_mode 1",
        r#"e2lb_bnb_transitions_total{cause="cpu",to="bear"} 1"#,
        r#"e2lb_bnb_scale_up_signals_total{cause="cpu"} 1"#,
        r#"e2lb_backend_cpu_ratio{backend="hot"} 0.95"#,
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }

    // 50 nodes, each kept (claimed and homed, as the proxy does) and the
    // view republished between them: the hot backend gets none.
    let mut held = Vec::new();
    let mut count = [0u32; 3];
    for k in 0..50u32 {
        let node = NodeId(Bytes::from(k.to_be_bytes().to_vec()));
        let (m, placement, pick) = lb
            .live
            .place(&lb.pool, &node, &[], Instant::now())
            .expect("a backend");
        assert_eq!(pick.mode, Mode::Bear);
        assert_eq!(
            pick.reason.as_str(),
            "below_threshold",
            "Bear with two cool backends: {pick:?}"
        );
        assert_eq!(pick.candidates.available, 3, "{pick:?}");
        count[m.id().0 as usize] += 1;
        held.push((m.home(), placement));
        lb.live.publish(&lb.pool, Instant::now());
    }
    assert_eq!(count[0], 0, "the hot backend was picked: {count:?}");
    assert_eq!(count[1] + count[2], 50);
    assert_eq!(lb.pool.get(BackendId(0)).expect("hot").associations(), 0);
    let text = lb.metrics.render();
    assert!(
        text.contains(r#"e2lb_bnb_picks_total{mode="bear",reason="below_threshold"} 50"#),
        "{text}"
    );
    drop(held);

    // It cools down: the pool leaves Bear once calm for `hold`, and the
    // former hot backend takes nodes again.
    hot.set("ric_cpu_utilisation_ratio 0.05\n");
    let cooled = Instant::now();
    eventually("back to Bull", Duration::from_secs(10), || {
        (lb.live.view().balancer.mode() == Mode::Bull).then_some(())
    })
    .await;
    assert!(cooled.elapsed() >= hold, "left Bear before the hold time");
    let last = lb
        .decisions()
        .into_iter()
        .rfind(|d| d["kind"] == "transition")
        .expect("transition");
    assert_eq!(last["to"], "bull");
    assert_eq!(last["cause"], "calm");
    let (again, _) = lb.place_many(100, 100, 3);
    assert!(
        again[0] > 0,
        "the cooled backend is picked again: {again:?}"
    );

    lb.shutdown().await;
    sim.stop().await;
    eprintln!("cpu skew test took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_source_feeds_the_balancer_from_a_real_prometheus() {
    let t0 = Instant::now();
    let mut rics = vec![RicMetrics::start().await, RicMetrics::start().await];
    if !prometheus::installed() {
        // Outside CI a missing binary skips; in CI it is installed.
        assert!(std::env::var_os("CI").is_none(), "{}", prometheus::MISSING);
        eprintln!("SKIPPED: {}", prometheus::MISSING);
        return;
    }
    let prom = PromServer::start(&[rics[0].at, rics[1].at], "balance-live");
    let backends: Vec<Backend> = (0u32..)
        .zip(&rics)
        .map(|(i, r)| {
            Backend::new(
                i,
                format!("ric-{i}"),
                SocketAddr::from(([10, 0, 1, i as u8 + 1], 36422)),
            )
            .with_metrics(r.url())
        })
        .collect();
    let settings = BalanceSettings {
        publish_interval: Duration::from_millis(100),
        unhealthy_after: 2,
        ..BalanceSettings::default()
    };
    let prober = Prober::new(
        probe_config(250, 2),
        Source::Promql(PromqlConfig {
            base_url: prom.base_url.clone(),
            label: "instance".into(),
            value_template: "{authority}".into(),
            ..PromqlConfig::default()
        }),
    )
    .expect("prober");
    let lb = Live::start(backends, settings, prober);

    // Prometheus starts, scrapes both simulators, and the balancer's scores
    // use the CPU figures it answers with.
    eventually(
        "both backends probed through Prometheus",
        Duration::from_secs(30),
        || {
            (lb.cpu_source(0) == Some(CpuSource::Probed)
                && lb.cpu_source(1) == Some(CpuSource::Probed))
            .then_some(())
        },
    )
    .await;
    eprintln!("both probed through Prometheus after {:?}", t0.elapsed());
    for i in 0..2u32 {
        let st = lb
            .live
            .probe_status(BackendId(i), Instant::now())
            .expect("status");
        assert!(st.healthy && st.successes_total >= 1, "{st:?}");
        let v = lb.live.view();
        let s = v.snapshot.scores()[v.snapshot.index_of(BackendId(i)).expect("index")];
        assert!(s.cpu.is_finite() && s.cpu >= 0.0, "{s:?}");
        assert!(s.proc_time.is_some(), "processing time from PromQL: {s:?}");
    }
    assert!(lb
        .metrics
        .render()
        .contains(r#"e2lb_probes_total{backend="ric-1",outcome="ok"}"#));

    // ric-1's endpoint goes away: Prometheus marks its series stale at the
    // next scrape, the query no longer answers for it, and it turns unhealthy.
    rics[1].stop().await;
    eventually(
        "ric-1 unhealthy through Prometheus",
        Duration::from_secs(15),
        || (lb.healthy(1) == Some(false)).then_some(()),
    )
    .await;
    assert_eq!(lb.healthy(0), Some(true));
    assert!(lb
        .metrics
        .render()
        .contains(r#"e2lb_probe_failures_total{backend="ric-1",kind="no_figures"}"#));
    let (picks, _) = lb.place_many(0, 100, 2);
    assert_eq!(picks, [100, 0]);

    lb.shutdown().await;
    drop(prom);
    for mut r in rics {
        r.stop().await;
    }
    eprintln!("promql test took {:?}", t0.elapsed());
}

/// Two idle backends and a balancer that has published once (as at start-up).
fn two_backends() -> (Pool, LiveBalancer, Metrics) {
    let metrics = Metrics::new().expect("metrics");
    let pool = Pool::new(
        (0..2u32)
            .map(|i| {
                Backend::new(
                    i,
                    format!("ric-{i}"),
                    SocketAddr::from(([10, 0, 1, i as u8 + 1], 36422)),
                )
            })
            .collect(),
    );
    let lb = LiveBalancer::new(
        BalanceSettings::default(),
        &pool,
        &metrics.registry,
        Instant::now(),
    )
    .expect("balancer");
    (pool, lb, metrics)
}

// Membership changes reach placement only when the owner task publishes
// (every `publish_interval`, or on its next wake-up after the change). The
// data path should still never pick a backend the operator has drained or
// removed in the meantime. These two tests show it does; they are ignored
// until `src/` is fixed (see the report that came with them).

#[tokio::test]
async fn a_backend_drained_since_the_last_publish_is_not_picked() {
    let (pool, lb, _m) = two_backends();
    pool.drain("ric-0", true).expect("drain");
    let mut on_drained = 0;
    for k in 0..100u32 {
        let node = NodeId(Bytes::from(k.to_be_bytes().to_vec()));
        let (m, _, _) = lb
            .place(&pool, &node, &[], Instant::now())
            .expect("ric-1 is open");
        on_drained += u32::from(m.id() == BackendId(0));
    }
    assert_eq!(on_drained, 0, "picked the drained ric-0");
}

#[tokio::test]
async fn a_backend_removed_since_the_last_publish_does_not_fail_the_pick() {
    let (pool, lb, _m) = two_backends();
    // No associations: gone from the pool at once, still in the view.
    assert_eq!(pool.remove("ric-0"), Ok(e2lb::balance::Removal::Removed));
    for k in 0..100u32 {
        let node = NodeId(Bytes::from(k.to_be_bytes().to_vec()));
        let (m, _, _) = lb
            .place(&pool, &node, &[], Instant::now())
            .unwrap_or_else(|| panic!("no backend for node {k} although ric-1 is open"));
        assert_eq!(m.id(), BackendId(1));
    }
}

/// Bull over exactly two open backends whose `C` are within [`TIE_BAND`]:
/// the tie goes to "the first draw (random, headroom-weighted)", so a burst
/// of setups on one snapshot should be spread over both.
#[tokio::test]
async fn two_tied_backends_share_a_burst() {
    let (pool, lb, _m) = two_backends();
    let mut count = [0u32; 2];
    for k in 0..100u32 {
        let node = NodeId(Bytes::from(k.to_be_bytes().to_vec()));
        let (m, _, pick) = lb
            .place(&pool, &node, &[], Instant::now())
            .expect("a backend");
        assert_eq!(pick.reason, PickReason::PowerOfTwo);
        count[m.id().0 as usize] += 1;
    }
    assert!(
        count.iter().all(|&n| n >= 20),
        "a burst on two idle backends herded onto one: {count:?}"
    );
}
