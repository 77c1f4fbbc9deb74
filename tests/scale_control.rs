//! The scaler's shell on the host, in controlled time: probe figures are fed
//! to the live balancer as probe rounds stamped with the simulated `now`, and
//! `ScaleControl::tick` is called with the same `now`, so cooldowns and the
//! 180 s-style windows replay in milliseconds with the real pool, balancer,
//! static actuator and metrics.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2lb::balance::live::{BalanceSettings, LiveBalancer};
use e2lb::balance::{Backend, Pool};
use e2lb::probe::{Figures, ProbeRound};
use e2lb::proxy::Metrics;
use e2lb::scale::actuator::static_pool::StaticPool;
use e2lb::scale::actuator::{Actuator, ActuatorError, Provisioned};
use e2lb::scale::control::{ScaleControl, ScaleSettings};
use e2lb::scale::policy::{Action, Rule, ScalerConfig};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

fn prov(i: u8) -> Provisioned {
    Provisioned {
        name: format!("ric-{i}"),
        addr: std::net::SocketAddr::from(([127, 0, 1, i + 1], 36421)),
        metrics: None,
    }
}

struct Stack {
    pool: Pool,
    live: LiveBalancer,
    metrics: Metrics,
    control: ScaleControl,
    t0: Instant,
}

fn settings() -> ScaleSettings {
    ScaleSettings {
        policy: ScalerConfig {
            min_replicas: 1,
            max_replicas: 3,
            down_for: Duration::from_secs(30),
            up_cooldown: Duration::from_secs(10),
            down_cooldown: Duration::from_secs(30),
            ..ScalerConfig::default()
        },
        tick: Duration::from_secs(5),
        retry_min: Duration::from_secs(2),
        retry_max: Duration::from_secs(8),
        ..ScaleSettings::default()
    }
}

fn stack(actuator: Arc<dyn Actuator>) -> Stack {
    let t0 = Instant::now();
    let pool = Pool::new(vec![Backend::new(0, "ric-0", prov(0).addr)]);
    let metrics = Metrics::new().unwrap();
    let live = LiveBalancer::new(BalanceSettings::default(), &pool, &metrics.registry, t0).unwrap();
    let control = ScaleControl::new(settings(), actuator, &metrics.registry).unwrap();
    Stack {
        pool,
        live,
        metrics,
        control,
        t0,
    }
}

impl Stack {
    /// Every member reports `cpu` in a probe round at `t0 + s`, then the
    /// balancer publishes and the scaler ticks (as leader unless told).
    async fn tick(&self, s: u64, cpu: f64, leader: bool) -> e2lb::scale::policy::Decision {
        let now = self.t0 + Duration::from_secs(s);
        let round = ProbeRound {
            taken_at: now,
            results: self
                .pool
                .members()
                .iter()
                .map(|m| {
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
        self.live.handle_round(&self.pool, &round);
        let _ = self.live.publish(&self.pool, now);
        self.control
            .tick(&self.pool, &self.live, &self.metrics, leader, now)
            .await
    }

    fn names(&self) -> Vec<String> {
        self.pool
            .members()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn scales_up_on_cpu_then_down_after_the_low_window_through_the_static_pool() {
    let actuator = Arc::new(StaticPool::new(vec![prov(0)], vec![prov(1), prov(2)]));
    let st = stack(actuator.clone());

    // Hot: one backend at 95 % CPU → one more.
    let d = st.tick(0, 0.95, true).await;
    assert_eq!(d.rule, Rule::CpuHigh, "{}", d.summary());
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert_eq!(actuator.active().len(), 2, "the standby was activated");
    // Next tick: discovery brings ric-1 into the pool; no second request
    // while it counts as pending / within the cooldown.
    let d = st.tick(5, 0.95, true).await;
    assert_eq!(st.names(), ["ric-0", "ric-1"]);
    assert!(
        !matches!(d.action, Action::ScaleUp { .. }) || d.current == 2,
        "{}",
        d.summary()
    );
    let status = st.control.status(&st.pool);
    assert_eq!(status["actuator"], "static");
    assert_eq!(status["leader"], true);

    // Quiet: CPU 2 % everywhere for the 30 s window (and past the cooldown).
    let mut removed_at = None;
    for s in (10..=120).step_by(5) {
        let d = st.tick(s, 0.02, true).await;
        if let Action::ScaleDown { remove } = &d.action {
            assert_eq!(d.rule, Rule::CpuLow);
            assert_eq!(remove.len(), 1);
            removed_at.get_or_insert(s);
        }
        if st.pool.len() == 1 {
            break;
        }
    }
    let s = removed_at.expect("a scale-down within 120 s");
    assert!(s >= 35, "not before the 30 s low window (decided at {s} s)");
    assert_eq!(st.pool.len(), 1, "the drained backend left once empty");
    assert_eq!(actuator.active().len(), 1);

    let text = st.metrics.render();
    for want in [
        "e2lb_scale_decisions_total{action=\"scale_up\",rule=\"cpu_high\"} 1",
        "e2lb_scale_actuations_total{actuator=\"static\",op=\"scale_up\",outcome=\"ok\"} 1",
        "e2lb_scale_actuations_total{actuator=\"static\",op=\"scale_down\",outcome=\"ok\"} 1",
        "e2lb_scale_desired_replicas 1",
        "e2lb_scale_leader 1",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    // Every decision is a record with its inputs.
    let records = st.control.records();
    assert!(records.iter().any(|r| r["decision"]["rule"] == "cpu_high"
        && r["decision"]["figures"]["max_cpu"]
            .as_f64()
            .is_some_and(|c| c > 0.9)));
    assert!(records
        .iter()
        .any(|r| r["remove"].as_array().is_some_and(|a| !a.is_empty())));
}

#[tokio::test]
async fn a_drained_backend_with_associations_is_removed_only_when_they_are_gone() {
    let actuator = Arc::new(StaticPool::new(vec![prov(0), prov(1)], vec![]));
    let st = stack(actuator.clone());
    st.pool
        .add(Backend::new(0, "ric-1", prov(1).addr), st.t0)
        .unwrap();
    let ric1 = st.pool.find("ric-1").unwrap();
    let ric0 = st.pool.find("ric-0").unwrap();
    let homed0 = ric0.home();
    // ric-1 is the newer one with fewer associations: it is the one chosen.
    let homed1 = ric1.home();
    let _more0 = ric0.home();
    let mut chosen = None;
    for s in (0..=200).step_by(5) {
        let d = st.tick(s, 0.02, true).await;
        if let Action::ScaleDown { remove } = d.action {
            chosen = remove.first().copied();
            break;
        }
    }
    assert_eq!(chosen, Some(ric1.id()));
    assert!(ric1.draining(), "drained at once");
    // It still holds an association: it stays (drained) tick after tick.
    for s in (205..=230).step_by(5) {
        st.tick(s, 0.02, true).await;
        assert!(st.pool.find("ric-1").is_some());
    }
    assert_eq!(
        st.control.status(&st.pool)["removing"][0]["backend"],
        "ric-1"
    );
    drop(homed1);
    st.tick(235, 0.02, true).await;
    assert!(st.pool.find("ric-1").is_none(), "gone once empty");
    assert_eq!(actuator.active().len(), 1);
    drop(homed0);
}

/// Fails the first `n` applies.
struct Flaky {
    inner: StaticPool,
    failures: AtomicU32,
}

impl Actuator for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> BoxFuture<'a, Result<(), ActuatorError>> {
        if self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return std::future::ready(Err(ActuatorError::Failed {
                actuator: "flaky",
                message: "API server said 503".into(),
            }))
            .boxed();
        }
        self.inner.apply(desired, remove)
    }
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
        self.inner.discover()
    }
}

#[tokio::test]
async fn actuator_failures_are_counted_recorded_and_retried_with_back_off() {
    let actuator = Arc::new(Flaky {
        inner: StaticPool::new(vec![prov(0)], vec![prov(1)]),
        failures: AtomicU32::new(2),
    });
    let st = stack(actuator.clone());
    let mut outcomes = Vec::new();
    for s in [0, 1, 3, 7, 8, 15] {
        st.tick(s, 0.95, true).await;
        let r = st.control.records();
        outcomes.push(
            r.last().unwrap()["outcome"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    // 0 s: fails (retry in 2 s); 1 s: held; 3 s: fails again (retry in 4 s);
    // 7 s: applied.
    assert!(outcomes[0].starts_with("failed"), "{outcomes:?}");
    assert!(outcomes[1].starts_with("held"), "{outcomes:?}");
    assert!(outcomes[2].starts_with("failed"), "{outcomes:?}");
    assert!(outcomes[3].starts_with("applied"), "{outcomes:?}");
    assert_eq!(actuator.inner.active().len(), 2);
    let text = st.metrics.render();
    assert!(
        text.contains(
            "e2lb_scale_actuations_total{actuator=\"flaky\",op=\"scale_up\",outcome=\"failed\"} 2"
        ),
        "{text}"
    );
    assert!(st
        .control
        .records()
        .iter()
        .any(|r| r["actuator_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("503"))));
}

#[tokio::test]
async fn a_follower_decides_but_does_not_actuate() {
    let actuator = Arc::new(StaticPool::new(vec![prov(0)], vec![prov(1)]));
    let st = stack(actuator.clone());
    let d = st.tick(0, 0.95, false).await;
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert_eq!(actuator.active().len(), 1, "nothing started");
    let r = st.control.records();
    assert_eq!(r.last().unwrap()["outcome"], "follower: not actuated");
    assert!(st.metrics.render().contains("e2lb_scale_leader 0"));
}

/// Discovery that blips (one list without a backend, as while EndpointSlices
/// are rewritten) changes nothing; missing from two lists in a row, the
/// backend leaves the pool.
#[tokio::test]
async fn a_backend_missing_from_one_discovery_stays_and_from_two_in_a_row_leaves() {
    /// Answers every discovery from a script, then the last list forever.
    struct Scripted(std::sync::Mutex<Vec<Vec<Provisioned>>>);
    impl Actuator for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        fn apply<'a>(
            &'a self,
            _desired: u32,
            _remove: &'a [Provisioned],
        ) -> BoxFuture<'a, Result<(), ActuatorError>> {
            std::future::ready(Ok(())).boxed()
        }
        fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
            let mut lists = self.0.lock().unwrap();
            let list = if lists.len() > 1 {
                lists.remove(0)
            } else {
                lists[0].clone()
            };
            std::future::ready(Ok(list)).boxed()
        }
    }
    let both = vec![prov(0), prov(1)];
    let only0 = vec![prov(0)];
    let script = vec![
        both.clone(),  // ric-1 joins
        only0.clone(), // a blip
        both.clone(),  // back: nothing happened
        only0.clone(), // missing once...
        only0.clone(), // ...and again: it leaves
    ];
    let st = stack(Arc::new(Scripted(std::sync::Mutex::new(script))));
    let mut seen = Vec::new();
    for s in 0..5 {
        // Followers (no actuation): only discovery changes the pool.
        st.tick(s * 5, 0.5, false).await;
        seen.push(st.names());
    }
    let pair = vec!["ric-0".to_owned(), "ric-1".to_owned()];
    assert_eq!(
        seen,
        [
            pair.clone(),
            pair.clone(),
            pair.clone(),
            pair,
            vec!["ric-0".to_owned()]
        ]
    );
}
