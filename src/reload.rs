//! Configuration that changes while running: SIGHUP and `POST
//! /api/v1/config/reload` re-read the configuration file.
//!
//! The new file is parsed and validated completely, and every setting derived
//! from it is built, before anything changes: an invalid file is rejected
//! with the precise error and the running configuration stays. Then each part
//! is swapped atomically (arc-swap) where it lives:
//!
//! - `[proxy]` time-outs, queue bounds, allow-list and `[migrate]` re-homing
//!   knobs: for associations accepted from now on; `[proxy]` association
//!   limit and E2 Setup pace: from the next accept / setup (lowering the
//!   limit closes nobody);
//! - `[balance]` weights, maxima, thresholds, hysteresis, publish interval:
//!   from the next publish (the Bull/Bear mode is kept);
//! - `[probe]`: the probe task restarts with the new settings;
//! - `[scale]` policy and tick: from the next tick (its timers carry on);
//! - `[migrate]` planner and executor: for plans from now on;
//! - `[[backends]]`: backends added to the file join the pool; backends
//!   removed from it are drained (and emptied by migration when
//!   `migrate.on_scale_in`) and leave once empty.
//!
//! What needs a restart is reported, not applied: listener addresses, stream
//! counts, message and socket buffer sizes, the
//! admin server, the log filter, the scaler's actuator and leadership, the
//! per-backend latency summary settings, and a backend whose address changed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::balance::bnb::Balancer;
use crate::balance::live::LiveBalancer;
use crate::balance::Pool;
use crate::config::{Config, ConfigError};
use crate::migrate::Executor;
use crate::probe::Prober;
use crate::proxy::ProxyConfig;
use crate::scale::control::ScaleControl;

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReloadReport {
    /// Sections whose new values are in effect.
    pub applied: Vec<&'static str>,
    /// Settings that changed but take effect only after a restart.
    pub restart_needed: Vec<String>,
    pub backends_added: Vec<String>,
    pub backends_removed: Vec<String>,
    /// The file equals the running configuration.
    pub unchanged: bool,
}

/// Why a reload was refused (the running configuration is kept).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("e2lb runs on its embedded configuration: there is no file to re-read")]
    NoFile,
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    Rejected(String),
}

fn need(r: &mut ReloadReport, what: impl Into<String>) {
    r.restart_needed.push(what.into());
}

/// Applies a new configuration to the running parts (module doc).
pub struct Reloader {
    path: Option<PathBuf>,
    current: ArcSwap<Config>,
    pool: Arc<Pool>,
    balance: Arc<LiveBalancer>,
    probers: watch::Sender<Option<Prober>>,
    proxy: Box<dyn Fn(ProxyConfig) + Send + Sync>,
    executor: Arc<Executor>,
    scale: Option<Arc<ScaleControl>>,
    reloads: IntCounterVec,
    /// One reload at a time.
    serial: Mutex<()>,
}

impl Reloader {
    /// `path`: the file the running `config` came from (`None`: embedded).
    /// `proxy` hands new proxy settings to the proxy (`Shared::reconfigure`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: Option<PathBuf>,
        config: Config,
        pool: Arc<Pool>,
        balance: Arc<LiveBalancer>,
        probers: watch::Sender<Option<Prober>>,
        proxy: Box<dyn Fn(ProxyConfig) + Send + Sync>,
        executor: Arc<Executor>,
        scale: Option<Arc<ScaleControl>>,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "e2lb_config_reloads_total",
                "Configuration reloads, by outcome (applied, unchanged, invalid)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Reloader {
            path,
            current: ArcSwap::from_pointee(config),
            pool,
            balance,
            probers,
            proxy,
            executor,
            scale,
            reloads,
            serial: Mutex::new(()),
        })
    }

    /// The configuration in effect.
    pub fn current(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Re-read the file and apply it (module doc).
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _one = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let out = self.try_reload();
        let outcome = match &out {
            Ok(r) if r.unchanged => "unchanged",
            Ok(_) => "applied",
            Err(_) => "invalid",
        };
        self.reloads.with_label_values(&[outcome]).inc();
        match &out {
            Ok(r) => info!(applied = ?r.applied, restart_needed = ?r.restart_needed,
                           added = ?r.backends_added, removed = ?r.backends_removed,
                           "configuration reloaded"),
            Err(e) => {
                warn!(error = %e, "configuration reload refused: the running configuration stays")
            }
        }
        out
    }

    fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let new = Config::load(path)?;
        let old = self.current.load_full();
        if *old == new {
            return Ok(ReloadReport {
                unchanged: true,
                ..ReloadReport::default()
            });
        }
        // Everything fallible first: nothing changes unless all of it is valid.
        let balance = new.balance_settings()?;
        Balancer::new(balance.model, balance.bnb)
            .map_err(|e| ReloadError::Rejected(e.to_string()))?;
        let prober = new.prober()?;
        let scale = new.scale_settings()?;
        let executor = new.executor();
        executor.planner.check().map_err(ReloadError::Rejected)?;
        let proxy = new.proxy();
        let added: Vec<_> = new
            .backends()
            .into_iter()
            .filter(|b| !old.backends.iter().any(|o| o.name == b.name))
            .collect();
        for b in &added {
            if let Some(m) = self.pool.find(&b.name) {
                return Err(ReloadError::Rejected(format!(
                    "backends: {} is already in the pool (added at run time, at {})",
                    b.name, m.backend.addr
                )));
            }
        }

        let mut r = ReloadReport::default();
        let (op, np) = (&old.proxy, &new.proxy);
        if op.listen != np.listen {
            need(&mut r, "proxy.listen");
        }
        if (op.out_streams, op.in_streams) != (np.out_streams, np.in_streams) {
            need(&mut r, "proxy.out_streams / proxy.in_streams");
        }
        if (op.max_message, op.socket_buffer) != (np.max_message, np.socket_buffer) {
            need(&mut r, "proxy.max_message / proxy.socket_buffer");
        }
        if old.admin != new.admin {
            need(&mut r, "admin");
        }
        if old.log != new.log {
            need(&mut r, "log.level");
        }
        let (os, ns) = (&old.scale, &new.scale);
        if os.enabled != ns.enabled
            || os.actuator != ns.actuator
            || os.exec != ns.exec
            || os.kubernetes != ns.kubernetes
            || os.leader != ns.leader
            || os.standby != ns.standby
        {
            need(
                &mut r,
                "scale (enabled, actuator, exec, kubernetes, leader, standby)",
            );
        }
        let (ob, nb) = (&old.balance, &new.balance);
        if (ob.latency_ewma, ob.latency_window, ob.latency_min_samples)
            != (nb.latency_ewma, nb.latency_window, nb.latency_min_samples)
        {
            need(
                &mut r,
                "balance.latency_ewma / latency_window / latency_min_samples",
            );
        }
        for b in &new.backends {
            if let Some(o) = old.backends.iter().find(|o| o.name == b.name) {
                if o != b {
                    need(&mut r, format!(
                        "backends.{}: addresses or metrics changed (remove and re-add it, or restart)",
                        b.name
                    ));
                }
            }
        }

        // Apply.
        if old.proxy != new.proxy || old.migrate != new.migrate {
            (self.proxy)(proxy);
            r.applied.push("proxy");
        }
        if old.balance != new.balance {
            self.balance
                .reconfigure(balance)
                .map_err(|e| ReloadError::Rejected(e.to_string()))?;
            r.applied.push("balance");
        }
        if old.probe != new.probe || old.backends != new.backends {
            self.probers.send_replace(prober);
            r.applied.push("probe");
        }
        if old.migrate != new.migrate {
            self.executor
                .reconfigure(executor)
                .map_err(ReloadError::Rejected)?;
            r.applied.push("migrate");
        }
        if old.scale != new.scale {
            if let Some(s) = &self.scale {
                s.reconfigure(scale)
                    .map_err(|e| ReloadError::Rejected(e.to_string()))?;
                r.applied.push("scale");
            }
        }
        let now = Instant::now();
        for b in added {
            let name = b.name.clone();
            match self.pool.add(b, now) {
                Ok(_) => r.backends_added.push(name),
                Err(e) => need(&mut r, format!("backends.{name}: not added ({e})")),
            }
        }
        for o in &old.backends {
            if new.backends.iter().any(|b| b.name == o.name) {
                continue;
            }
            let Some(m) = self.pool.find(&o.name) else {
                continue;
            };
            let _ = self.pool.remove(&o.name);
            r.backends_removed.push(o.name.clone());
            if new.migrate.on_scale_in && m.associations() > 0 {
                let (executor, id) = (self.executor.clone(), m.id());
                tokio::spawn(async move {
                    executor.evacuate(id).await;
                });
            }
        }
        if !r.backends_added.is_empty() || !r.backends_removed.is_empty() {
            r.applied.push("backends");
        }
        self.current.store(Arc::new(new));
        Ok(r)
    }
}
