//! The transparent association proxy: the tokio shell around [`Session`].
//!
//! [`serve`] accepts E2 node associations from a [`Listener`] and spawns one
//! task per association ([`assoc`]), which owns the node leg, the backend leg
//! and the session, and drives them from one future: it never blocks one
//! direction on the other, stops reading a leg when the queue towards the other
//! is full (so back-pressure reaches the sender's SCTP window), and feeds the
//! session the clock.
//!
//! A node whose source address is outside `[proxy] allow` ([`AllowList`]) is
//! refused at accept, before anything is read from it, and counted
//! (`e2lb_association_closes_total{reason="not_allowed"}`). So is a node
//! beyond `[proxy] max_associations` ([`admit`]); E2 Setups towards each
//! backend are paced ([`pace`]).
//!
//! Overload policy (README "Overload"): every queue is bounded. Each
//! direction of an association queues at most `queue` messages and
//! `queue_bytes` bytes (one message may cross the byte bound); when the queue
//! towards a leg is full, e2lb stops reading the other leg, so the sender's
//! SCTP receive window closes and it slows down — nothing is dropped, and the
//! pauses are counted (`e2lb_backpressure_total`, `..._seconds_total`).
//!
//! Shutdown is injected (mini-redis style): when the `shutdown` future
//! completes, the listener stops, every association closes gracefully after
//! flushing what it holds, and `serve` returns once all of them are done.

pub mod admit;
pub mod allow;
mod assoc;
pub mod metrics;
pub mod pace;
mod router;
pub mod table;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::balance::live::{BalanceSettings, LiveBalancer, LiveError};
use crate::balance::Pool;
use crate::session::SessionConfig;
use crate::transport::{Association, Connector, Listener};
use admit::{Admission, Throttle};
pub use allow::AllowList;
pub use metrics::Metrics;
pub use pace::{Pace, Pacer};
pub use table::AssocTable;

/// Proxy knobs (from the `[proxy]` configuration section).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub session: SessionConfig,
    /// Messages queued per direction of one association before reading stops.
    pub queue: usize,
    /// Payload bytes queued per direction of one association before reading
    /// stops (the message that crosses it is still queued).
    pub queue_bytes: usize,
    /// Time allowed to open an association to a backend.
    pub connect_timeout: Duration,
    /// Time allowed to flush queued messages when an association closes.
    pub drain_timeout: Duration,
    /// Time allowed for an E2 node to send its first message.
    pub first_message_timeout: Duration,
    /// Most E2 node associations served at once (more are refused on accept).
    pub max_associations: usize,
    /// Source networks nodes may connect from (others are refused on accept).
    pub allow: AllowList,
    /// E2 Setups per second (and burst) towards each backend.
    pub setup_pace: Pace,
    /// Longest a node's setup waits for its slot before it is answered
    /// E2 Setup Failure with TimeToWait (re-homing always waits).
    pub setup_wait_max: Duration,
    /// Router mode: which nodes are shared by several pods, and how.
    pub router: Arc<crate::router::group::RouterSettings>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            session: SessionConfig::default(),
            queue: 256,
            queue_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(5),
            first_message_timeout: Duration::from_secs(30),
            max_associations: 10_000,
            allow: AllowList::any(),
            setup_pace: Pace {
                rate: 100.0,
                burst: 50,
            },
            setup_wait_max: Duration::from_secs(1),
            router: Arc::default(),
        }
    }
}

/// What every association task shares (read-only or internally synchronised).
pub struct Shared<C> {
    /// Swapped on a configuration reload; each association reads it once, when it starts.
    config: arc_swap::ArcSwap<ProxyConfig>,
    pub pool: Arc<Pool>,
    /// Picks backends for new associations (Bull-and-Bear).
    pub balance: Arc<LiveBalancer>,
    pub connector: C,
    pub metrics: Arc<Metrics>,
    pub associations: Arc<AssocTable>,
    /// E2 Setup pace per backend.
    pub pacer: Pacer,
    /// Rate limit of the "setup paced" warning.
    pub(crate) paced_log: Throttle,
}

impl<C> Shared<C> {
    /// The proxy settings new associations use.
    pub fn config(&self) -> Arc<ProxyConfig> {
        self.config.load_full()
    }

    /// Settings for associations accepted from now on (a configuration reload).
    pub fn reconfigure(&self, config: ProxyConfig) {
        self.config.store(Arc::new(config));
    }

    /// Shared state with the default balancer settings (no probes: the
    /// balancer runs on local counters until its owner task publishes).
    pub fn new(
        config: ProxyConfig,
        pool: Pool,
        connector: C,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LiveError> {
        Self::with_balance(
            config,
            Arc::new(pool),
            BalanceSettings::default(),
            connector,
            metrics,
        )
    }

    pub fn with_balance(
        config: ProxyConfig,
        pool: Arc<Pool>,
        settings: BalanceSettings,
        connector: C,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LiveError> {
        let balance = Arc::new(LiveBalancer::new(
            settings,
            &pool,
            &metrics.registry,
            std::time::Instant::now(),
        )?);
        Ok(Shared {
            config: arc_swap::ArcSwap::from_pointee(config),
            pool,
            balance,
            connector,
            metrics,
            associations: Arc::new(AssocTable::new()),
            pacer: Pacer::new(),
            paced_log: Throttle::new(Duration::from_secs(10)),
        })
    }
}

/// Serve E2 node associations until `shutdown` completes, then drain.
pub async fn serve<L, C>(
    mut listener: L,
    shared: Arc<Shared<C>>,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    C: Connector,
{
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let admission = Admission::new();
    let refused_log = Throttle::new(Duration::from_secs(10));
    info!(listen = %listener.local_addr(), backends = shared.pool.len(), "e2lb proxy serving");
    if !shared.config().allow.is_any() {
        info!(allow = ?shared.config().allow.nets(), "E2 node sources restricted to proxy.allow");
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(node) => {
                    let peer = node.info().peer;
                    if !shared.config().allow.permits(peer.ip()) {
                        // Refused before anything is read from it.
                        warn!(%peer, "association refused: source not in proxy.allow");
                        shared.metrics.refused.with_label_values(&["not_allowed"]).inc();
                        shared.metrics.closes.with_label_values(&["not_allowed"]).inc();
                        drop(node);
                        continue;
                    }
                    let max = shared.config().max_associations;
                    let Some(slot) = admission.try_admit(max) else {
                        // Closed before anything is read; the others are untouched.
                        if let Some(suppressed) = refused_log.check(std::time::Instant::now()) {
                            warn!(%peer, open = admission.open(), max, suppressed,
                                  "association refused: proxy.max_associations reached (one line per 10 s)");
                        }
                        shared.metrics.refused.with_label_values(&["max_associations"]).inc();
                        shared.metrics.closes.with_label_values(&["admission_limit"]).inc();
                        drop(node);
                        continue;
                    };
                    let shared = shared.clone();
                    let cancel = cancel.child_token();
                    tracker.spawn(async move {
                        assoc::run(node, shared, cancel).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    shared.metrics.transport_errors.with_label_values(&["node", "accept"]).inc();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    info!(open = tracker.len(), "shutting down: draining associations");
    drop(listener);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    info!("all associations closed");
}
