//! Prometheus metrics of the balancer and the probes (registered in the
//! proxy's registry, so one `/metrics` page shows everything).

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Balancer and probe metrics.
pub struct BalanceMetrics {
    /// `C` per backend.
    pub score: GaugeVec,
    /// Fresh probed CPU / CPU_max per backend (absent when stale).
    pub cpu: GaugeVec,
    /// Measured E2 latency per backend: `stat` = ewma | p99.
    pub latency: GaugeVec,
    /// Backend-reported processing time per backend (fresh only).
    pub proc_time: GaugeVec,
    /// 1 when the backend takes new associations (healthy, not draining).
    pub open: IntGaugeVec,
    pub healthy: IntGaugeVec,
    pub draining: IntGaugeVec,
    /// Age of the last successful probe per backend.
    pub probe_age: GaugeVec,
    pub probes: IntCounterVec,
    pub probe_failures: IntCounterVec,
    pub health_changes: IntCounterVec,
    /// 0 = Bull, 1 = Bear.
    pub mode: IntGauge,
    pub transitions: IntCounterVec,
    pub picks: IntCounterVec,
    pub overloaded: IntCounter,
    pub scale_up: IntCounterVec,
    pub no_backend: IntCounter,
    pub publishes: IntCounter,
    pub pool_c: GaugeVec,
    pub membership: IntCounterVec,
}

impl BalanceMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let igauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let m = BalanceMetrics {
            score: gauge(
                "e2lb_backend_score",
                "Combined load metric C per backend (0 idle, 1 at the maxima)",
                &["backend"],
            )?,
            cpu: gauge(
                "e2lb_backend_cpu_ratio",
                "Fresh probed CPU / CPU_max per backend (removed while stale)",
                &["backend"],
            )?,
            latency: gauge(
                "e2lb_backend_latency_seconds",
                "E2 procedure latency measured at the proxy per backend: EWMA and windowed p99",
                &["backend", "stat"],
            )?,
            proc_time: gauge(
                "e2lb_backend_processing_seconds",
                "Fresh backend-reported processing time per backend",
                &["backend"],
            )?,
            open: igauge(
                "e2lb_backend_open",
                "1 when the backend takes new associations (healthy and not draining)",
                &["backend"],
            )?,
            healthy: igauge(
                "e2lb_backend_healthy",
                "1 unless the backend failed its last probe_unhealthy_after probes",
                &["backend"],
            )?,
            draining: igauge(
                "e2lb_backend_draining",
                "1 while the backend is drained or being removed",
                &["backend"],
            )?,
            probe_age: gauge(
                "e2lb_probe_age_seconds",
                "Age of the last successful probe per backend",
                &["backend"],
            )?,
            probes: counter(
                "e2lb_probes_total",
                "Probes of backend metrics, by outcome (ok, failed)",
                &["backend", "outcome"],
            )?,
            probe_failures: counter(
                "e2lb_probe_failures_total",
                "Failed probes by backend and kind",
                &["backend", "kind"],
            )?,
            health_changes: counter(
                "e2lb_backend_health_changes_total",
                "Backends turning unhealthy or recovering",
                &["backend", "to"],
            )?,
            mode: {
                let g = IntGauge::new("e2lb_bnb_mode", "Balancer mode: 0 Bull, 1 Bear")?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            transitions: counter(
                "e2lb_bnb_transitions_total",
                "Bull/Bear transitions, by new mode and cause",
                &["to", "cause"],
            )?,
            picks: counter(
                "e2lb_bnb_picks_total",
                "Backend picks for new associations, by mode and reason",
                &["mode", "reason"],
            )?,
            overloaded: {
                let c = IntCounter::new(
                    "e2lb_bnb_overload_total",
                    "Picks made while every available backend was above threshold",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            scale_up: counter(
                "e2lb_bnb_scale_up_signals_total",
                "Scale-up signals raised on entering Bear, by cause",
                &["cause"],
            )?,
            no_backend: {
                let c = IntCounter::new(
                    "e2lb_bnb_no_backend_total",
                    "Picks that found no available backend",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            publishes: {
                let c = IntCounter::new(
                    "e2lb_bnb_snapshots_published_total",
                    "Scored pool snapshots published to the data path",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            pool_c: gauge(
                "e2lb_pool_score",
                "Pool figures the Bull/Bear decision is taken on: mean and max C over open backends",
                &["stat"],
            )?,
            membership: counter(
                "e2lb_backend_membership_changes_total",
                "Backends added, drained, undrained and removed at run time",
                &["change"],
            )?,
        };
        Ok(m)
    }

    /// Drops every per-backend series of a removed backend.
    pub fn forget(&self, backend: &str) {
        for g in [&self.score, &self.cpu, &self.proc_time, &self.probe_age] {
            let _ = g.remove_label_values(&[backend]);
        }
        for s in ["ewma", "p99"] {
            let _ = self.latency.remove_label_values(&[backend, s]);
        }
        for g in [&self.open, &self.healthy, &self.draining] {
            let _ = g.remove_label_values(&[backend]);
        }
    }
}
