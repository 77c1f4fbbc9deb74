//! Active probes against real RIC simulators (`e2lb::sim`) and a real
//! Prometheus server.
//!
//! The Prometheus test needs the `prometheus` binary (Debian package
//! `prometheus`: `apt-get install -y prometheus`); it fails, not skips,
//! without it.

#[path = "common/prometheus.rs"]
mod prometheus;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2lb::probe::{
    Figures, HealthChange, ProbeBook, ProbeConfig, ProbeError, ProbeRound, Prober, PromqlConfig,
    Source, Target,
};
use e2lb::session::BackendId;
use e2lb::sim::{metrics, run_ric, RicLive, RicReport, RicSimConfig};
use e2lb::transport::mem::MemNet;
use e2lb::transport::Options;
use prometheus::PromServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A RIC simulator on the in-memory transport plus its `/metrics` server.
struct Ric {
    live: Arc<RicLive>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<RicReport>>,
    metrics_at: SocketAddr,
    metrics: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
}

impl Ric {
    async fn start(net: &MemNet, n: u8) -> Ric {
        let at: SocketAddr = format!("10.0.0.{n}:36422").parse().expect("addr");
        let listener = net.listen(at, Options::default()).expect("listen");
        let live = RicLive::new();
        let (stop, rx) = oneshot::channel::<()>();
        let cfg = RicSimConfig {
            name: format!("ric-{n}"),
            ..RicSimConfig::default()
        };
        let task = tokio::spawn(run_ric(listener, cfg, live.clone(), async {
            let _ = rx.await;
        }));
        let mut ric = Ric {
            live,
            stop: Some(stop),
            task: Some(task),
            metrics_at: "127.0.0.1:0".parse().expect("addr"),
            metrics: None,
        };
        ric.start_metrics().await;
        ric
    }

    /// (Re)starts `/metrics`, on the same port after the first time.
    async fn start_metrics(&mut self) {
        let listener = metrics::bind_metrics(self.metrics_at)
            .await
            .expect("bind metrics");
        self.metrics_at = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics::serve_metrics_on(
            listener,
            self.live.clone(),
            async {
                let _ = rx.await;
            },
        ));
        self.metrics = Some((tx, task));
    }

    async fn stop_metrics(&mut self) {
        if let Some((tx, task)) = self.metrics.take() {
            let _ = tx.send(());
            task.await.expect("join").expect("serve");
        }
    }

    fn target(&self, id: u32) -> Target {
        Target::with_url(
            BackendId(id),
            &format!("http://{}/metrics", self.metrics_at),
        )
        .expect("target")
    }

    async fn stop(mut self) {
        self.stop_metrics().await;
        if let (Some(tx), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = tx.send(());
            task.await.expect("join ric");
        }
    }
}

fn check_ric_figures(f: &Figures) {
    let cpu = f.cpu.expect("cpu figure");
    assert!((0.0..=4.0).contains(&cpu), "cpu {cpu}");
    let lat = f.latency.expect("latency figure");
    assert!(lat.is_finite() && lat >= 0.0, "latency {lat}");
    assert!(f.proc_time.is_some(), "processing time figure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_probes_every_ric_and_health_follows_failures() {
    let net = MemNet::new();
    let mut rics = vec![Ric::start(&net, 1).await, Ric::start(&net, 2).await];
    let targets: Vec<Target> = (0u32..).zip(&rics).map(|(i, r)| r.target(i)).collect();
    let cfg = ProbeConfig {
        unhealthy_after: 2,
        ..ProbeConfig::default()
    };
    let max_age = cfg.max_age;
    let prober = Prober::new(cfg, Source::Exposition).expect("config");
    let mut book = ProbeBook::new();

    // One round: both answer, same taken_at, figures fresh.
    let t0 = Instant::now();
    let round = prober.round(&targets, t0).await;
    assert_eq!(round.taken_at, t0);
    assert_eq!(round.results.len(), 2);
    for (id, r) in &round.results {
        check_ric_figures(r.as_ref().unwrap_or_else(|e| panic!("{id}: {e}")));
    }
    assert!(book.handle_round(&round, 2).is_empty());
    for i in 0..2 {
        let st = book.get(BackendId(i)).expect("state");
        let s = st.fresh_samples(t0 + Duration::from_secs(1), max_age);
        assert_eq!(s.cpu.map(|c| c.at), Some(t0), "stamped with the round");
        assert!(st
            .fresh_samples(t0 + max_age + Duration::from_millis(1), max_age)
            .cpu
            .is_none());
    }

    // Backend 1's metrics go away: counted failures, unhealthy at the 2nd.
    rics[1].stop_metrics().await;
    let mut flips = Vec::new();
    for k in 1..=3u64 {
        let round = prober.round(&targets, t0 + Duration::from_secs(k)).await;
        assert!(round.results[0].1.is_ok());
        assert!(
            matches!(round.results[1].1, Err(ProbeError::Connect(_))),
            "{:?}",
            round.results[1].1
        );
        flips.push(book.handle_round(&round, 2));
    }
    assert_eq!(flips[0], vec![]);
    assert_eq!(
        flips[1],
        vec![(BackendId(1), HealthChange::BecameUnhealthy { failures: 2 })]
    );
    assert_eq!(flips[2], vec![]);
    let st1 = book.get(BackendId(1)).expect("state");
    assert!(!st1.healthy());
    assert_eq!(st1.failures_total(), 3);
    assert!(st1.samples().cpu.is_none(), "stale after a failure");
    assert_eq!(
        st1.age(t0 + Duration::from_secs(3)),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        prober
            .stats()
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );

    // Restarted on the same port: one success recovers it.
    rics[1].start_metrics().await;
    let t4 = t0 + Duration::from_secs(4);
    let round = prober.round(&targets, t4).await;
    assert_eq!(
        book.handle_round(&round, 2),
        vec![(BackendId(1), HealthChange::Recovered)]
    );
    let st1 = book.get(BackendId(1)).expect("state");
    assert!(st1.healthy());
    assert_eq!(st1.samples().cpu.map(|c| c.at), Some(t4));

    for r in rics {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_times_out_and_run_ticks_in_rounds() {
    // Accepts, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_at = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let net = MemNet::new();
    let ric = Ric::start(&net, 3).await;
    let targets = vec![
        ric.target(0),
        Target::with_url(BackendId(1), &format!("http://{silent_at}/metrics")).expect("t"),
    ];
    let cfg = ProbeConfig {
        tick: Duration::from_millis(200),
        timeout: Duration::from_millis(150),
        max_age: Duration::from_millis(600),
        ..ProbeConfig::default()
    };
    let prober = Prober::new(cfg, Source::Exposition).expect("config");
    let (_targets_tx, targets_rx) = tokio::sync::watch::channel(targets);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ProbeRound>(4);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let runner = tokio::spawn(e2lb::probe::run(prober, targets_rx, tx, async {
        let _ = stop_rx.await;
    }));
    let a = rx.recv().await.expect("round 1");
    let b = rx.recv().await.expect("round 2");
    assert!(b.taken_at > a.taken_at);
    for round in [&a, &b] {
        check_ric_figures(round.results[0].1.as_ref().expect("ric answers"));
        assert!(
            matches!(round.results[1].1, Err(ProbeError::Timeout)),
            "{:?}",
            round.results[1].1
        );
    }
    let _ = stop.send(());
    runner.await.expect("join run");

    // A wrong path is a typed status error; a page without the figures is
    // `NoFigures`.
    let prober = Prober::new(ProbeConfig::default(), Source::Exposition).expect("config");
    let wrong = |id, path: &str| {
        Target::with_url(BackendId(id), &format!("http://{}{path}", ric.metrics_at)).expect("t")
    };
    let round = prober
        .round(&[wrong(0, "/nope"), wrong(1, "/healthz")], Instant::now())
        .await;
    assert!(
        matches!(round.results[0].1, Err(ProbeError::Status(404))),
        "{:?}",
        round.results[0].1
    );
    assert!(
        matches!(round.results[1].1, Err(ProbeError::NoFigures { .. })),
        "{:?}",
        round.results[1].1
    );
    hold.abort();
    ric.stop().await;
}

/// Repeats rounds (every 250 ms, up to `limit`) until `done` holds.
async fn round_until(
    prober: &Prober,
    targets: &[Target],
    limit: Duration,
    done: impl Fn(&ProbeRound) -> bool,
) -> ProbeRound {
    let start = Instant::now();
    loop {
        let round = prober.round(targets, Instant::now()).await;
        if done(&round) {
            return round;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}; last round {round:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_source_reads_figures_from_a_real_prometheus() {
    let started = Instant::now();
    let net = MemNet::new();
    let mut rics = vec![Ric::start(&net, 4).await, Ric::start(&net, 5).await];
    let targets: Vec<Target> = (0u32..).zip(&rics).map(|(i, r)| r.target(i)).collect();
    let scrape: Vec<SocketAddr> = rics.iter().map(|r| r.metrics_at).collect();
    let mut prom = {
        assert!(prometheus::installed(), "{}", prometheus::MISSING);
        PromServer::start(&scrape, "probe")
    };
    let prober = Prober::new(
        ProbeConfig::default(),
        Source::Promql(PromqlConfig {
            base_url: prom.base_url.clone(),
            ..PromqlConfig::default()
        }),
    )
    .expect("config");

    // Prometheus starts, scrapes both RICs, answers for both.
    let round = round_until(&prober, &targets, Duration::from_secs(30), |r| {
        r.results.iter().all(|(_, r)| r.is_ok())
    })
    .await;
    for (_, r) in &round.results {
        check_ric_figures(r.as_ref().expect("figures"));
    }
    eprintln!("prometheus answered for both after {:?}", started.elapsed());

    // A RIC whose endpoint stops is marked stale by Prometheus at its next
    // scrape and drops out of the answer; the other is unaffected.
    rics[1].stop_metrics().await;
    let round = round_until(&prober, &targets, Duration::from_secs(10), |r| {
        r.results[1].1.is_err()
    })
    .await;
    assert!(round.results[0].1.is_ok());
    assert!(
        matches!(round.results[1].1, Err(ProbeError::NoFigures { .. })),
        "{:?}",
        round.results[1].1
    );

    // Prometheus gone: every backend fails with the query's error.
    let _ = prom.child.kill();
    let _ = prom.child.wait();
    let round = prober.round(&targets, Instant::now()).await;
    for (_, r) in &round.results {
        assert!(matches!(r, Err(ProbeError::Connect(_))), "{r:?}");
    }
    drop(prom);
    for r in rics {
        r.stop().await;
    }
    eprintln!("promql test took {:?}", started.elapsed());
}
