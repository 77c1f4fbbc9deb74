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
//! (`e2lb_association_closes_total{reason="not_allowed"}`).
//!
//! Shutdown is injected (mini-redis style): when the `shutdown` future
//! completes, the listener stops, every association closes gracefully after
//! flushing what it holds, and `serve` returns once all of them are done.

pub mod allow;
mod assoc;
pub mod metrics;
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
pub use allow::AllowList;
pub use metrics::Metrics;
pub use table::AssocTable;

/// Proxy knobs (from the `[proxy]` configuration section).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub session: SessionConfig,
    /// Messages queued per direction of one association before reading stops.
    pub queue: usize,
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
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            session: SessionConfig::default(),
            queue: 256,
            connect_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(5),
            first_message_timeout: Duration::from_secs(30),
            max_associations: 10_000,
            allow: AllowList::any(),
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
    let limit = Arc::new(tokio::sync::Semaphore::new(
        shared.config().max_associations,
    ));
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
                        shared.metrics.closes.with_label_values(&["not_allowed"]).inc();
                        drop(node);
                        continue;
                    }
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        warn!(peer = %node.info().peer, max = shared.config().max_associations,
                              "association refused: maximum associations reached");
                        shared.metrics.closes.with_label_values(&["admission_limit"]).inc();
                        drop(node);
                        continue;
                    };
                    let shared = shared.clone();
                    let cancel = cancel.child_token();
                    tracker.spawn(async move {
                        assoc::run(node, shared, cancel).await;
                        drop(permit);
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
