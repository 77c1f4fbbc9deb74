//! Backend pool, live per-backend counters, and the choice of a backend for a
//! new E2 node association.
//!
//! - [`Pool`] is membership (tower's `discover`): the backends, added, drained
//!   and removed at run time, each a [`Member`] carrying the counters the data
//!   path updates (associations, streams in flight, measured E2 latency), and
//!   the per-node placements that keep one node off a backend twice.
//! - The choosing is the Bull-and-Bear rule: the pure core in [`load`],
//!   [`snapshot`] and [`bnb`]; [`live`] is its shell, which publishes scored
//!   snapshots with `arc-swap` and answers picks without a lock.

pub mod bnb;
pub mod latency;
pub mod live;
pub mod load;
pub mod metrics;
pub mod sim;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::session::{BackendId, NodeId};
use latency::LatencyWindow;

/// One RIC pod e2lb can send E2 nodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: BackendId,
    /// Operator-facing name (metric label), e.g. "ric-0".
    pub name: String,
    /// E2 (SCTP) address of the pod's E2 termination (the primary path).
    pub addr: SocketAddr,
    /// Further addresses of a multi-homed E2 termination (same port). An
    /// association is opened to all of them at once (`sctp_connectx`): the
    /// kernel tries the next when the INIT to one goes unanswered.
    pub secondary_addrs: Vec<SocketAddr>,
    /// URL of the pod's Prometheus metrics (probed for CPU and processing
    /// time); `None` leaves it unprobed.
    pub metrics: Option<String>,
}

impl Backend {
    pub fn new(id: u32, name: impl Into<String>, addr: SocketAddr) -> Self {
        Backend {
            id: BackendId(id),
            name: name.into(),
            addr,
            secondary_addrs: Vec::new(),
            metrics: None,
        }
    }

    /// Every address to open an association to, the primary first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.secondary_addrs.iter().copied())
            .collect()
    }

    pub fn with_metrics(mut self, url: impl Into<String>) -> Self {
        self.metrics = Some(url.into());
        self
    }
}

/// How the measured E2 latency is summarised (`[balance] latency_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyConfig {
    /// EWMA weight of a new sample. Default 0.2 (about the last 5 samples).
    pub alpha: f64,
    /// Span of the p99 window. Default 30 s.
    pub window: Duration,
    /// Samples needed before the figure is used. Default 2 (one outlier on a
    /// backend's first E2 Setup must not send the pool into Bear).
    pub min_samples: u32,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            alpha: 0.2,
            window: Duration::from_secs(30),
            min_samples: 2,
        }
    }
}

/// A backend in the pool and what the data path measures about it.
#[derive(Debug)]
pub struct Member {
    pub backend: Backend,
    /// When it joined the pool (Bear prefers recent arrivals).
    pub added_at: Instant,
    draining: AtomicBool,
    removing: AtomicBool,
    associations: AtomicU32,
    in_flight: AtomicI64,
    latency: Mutex<LatencyWindow>,
    min_samples: u32,
}

impl Member {
    fn new(backend: Backend, added_at: Instant, latency: LatencyConfig) -> Self {
        Member {
            backend,
            added_at,
            draining: AtomicBool::new(false),
            removing: AtomicBool::new(false),
            associations: AtomicU32::new(0),
            in_flight: AtomicI64::new(0),
            latency: Mutex::new(LatencyWindow::new(latency.alpha, latency.window)),
            min_samples: latency.min_samples,
        }
    }

    pub fn id(&self) -> BackendId {
        self.backend.id
    }

    pub fn name(&self) -> &str {
        &self.backend.name
    }

    /// Drained by the operator (or being removed): no new associations.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.removing()
    }

    /// Removal requested; leaves the pool when its last association is gone.
    pub fn removing(&self) -> bool {
        self.removing.load(Ordering::Relaxed)
    }

    /// E2 node associations homed here.
    pub fn associations(&self) -> u32 {
        self.associations.load(Ordering::Relaxed)
    }

    /// Streams in flight: outstanding E2AP requests plus messages queued towards it.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.in_flight.load(Ordering::Relaxed).max(0)).unwrap_or(u32::MAX)
    }

    /// Adds `delta` to the streams in flight.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// One E2 procedure answered after `latency`.
    pub fn record_latency(&self, at: Instant, latency: Duration) {
        if let Ok(mut w) = self.latency.lock() {
            w.record(at, latency);
        }
    }

    /// The EWMA latency the balancer uses: `None` until `min_samples` answers.
    pub fn latency(&self) -> Option<load::Sample<Duration>> {
        self.with_latency(|w| {
            w.ewma()
                .filter(|_| w.count() >= u64::from(self.min_samples))
        })
        .flatten()
    }

    /// Runs `f` on the latency figures.
    pub fn with_latency<T>(&self, f: impl FnOnce(&mut LatencyWindow) -> T) -> Option<T> {
        self.latency.lock().ok().map(|mut w| f(&mut w))
    }

    /// Counts one association homed here until the guard drops.
    pub fn home(self: &Arc<Self>) -> Homed {
        self.associations.fetch_add(1, Ordering::Relaxed);
        Homed(self.clone())
    }
}

/// An association counted on a backend; dropping it uncounts it.
#[derive(Debug)]
pub struct Homed(Arc<Member>);

impl Homed {
    pub fn member(&self) -> &Arc<Member> {
        &self.0
    }
}

impl Drop for Homed {
    fn drop(&mut self) {
        self.0.associations.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A membership change the operator asked for that cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("no backend named {0:?}")]
    Unknown(String),
    #[error("a backend named {0:?} already exists")]
    DuplicateName(String),
    #[error("backend {name:?} already has the address {addr}")]
    DuplicateAddr { name: String, addr: SocketAddr },
    #[error("invalid backend name {0:?}: use 1-63 characters of a-z, A-Z, 0-9, '-', '_', '.'")]
    BadName(String),
}

/// The outcome of [`Pool::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Gone from the pool.
    Removed,
    /// Draining: it leaves the pool once its `associations` are gone.
    Pending { associations: u32 },
}

/// The backends, and which backends hold an association for which E2 node.
///
/// Placements exist because two associations carrying the same GlobalE2node-ID
/// on one RIC crash it (DESIGN §2b): a node is never placed on a backend that
/// already holds it, even while an old association of that node is closing.
#[derive(Debug)]
pub struct Pool {
    members: ArcSwap<Vec<Arc<Member>>>,
    /// Serialises membership changes (readers never take it).
    write: Mutex<()>,
    next_id: AtomicU32,
    version: AtomicU64,
    changed: tokio::sync::Notify,
    latency: LatencyConfig,
    placements: Arc<DashMap<NodeId, Vec<BackendId>>>,
}

/// A node's claim on a backend; dropping it releases the claim.
#[derive(Debug)]
pub struct Placement {
    node: NodeId,
    backend: BackendId,
    placements: Arc<DashMap<NodeId, Vec<BackendId>>>,
}

impl Placement {
    pub fn backend(&self) -> BackendId {
        self.backend
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(mut held) = self.placements.get_mut(&self.node) {
            if let Some(i) = held.iter().position(|b| *b == self.backend) {
                held.swap_remove(i);
            }
        }
        self.placements
            .remove_if(&self.node, |_, held| held.is_empty());
    }
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Pool {
    /// A pool of `backends`, all added now, with the default latency summary.
    pub fn new(backends: Vec<Backend>) -> Self {
        Self::with_latency(backends, LatencyConfig::default())
    }

    pub fn with_latency(backends: Vec<Backend>, latency: LatencyConfig) -> Self {
        let now = Instant::now();
        let next = backends.iter().map(|b| b.id.0 + 1).max().unwrap_or(0);
        let mut members: Vec<Arc<Member>> = backends
            .into_iter()
            .map(|b| Arc::new(Member::new(b, now, latency)))
            .collect();
        // Kept in id order (new ids are always larger), so lookups by id
        // are binary searches.
        members.sort_by_key(|m| m.id());
        Pool {
            members: ArcSwap::from_pointee(members),
            write: Mutex::new(()),
            next_id: AtomicU32::new(next),
            version: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            latency,
            placements: Arc::new(DashMap::new()),
        }
    }

    /// The current members (a cheap, consistent copy of the list).
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.members.load_full()
    }

    /// The backends' static descriptions.
    pub fn backends(&self) -> Vec<Backend> {
        self.members
            .load()
            .iter()
            .map(|m| m.backend.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.members.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: BackendId) -> Option<Arc<Member>> {
        let members = self.members.load();
        members
            .binary_search_by_key(&id, |m| m.id())
            .ok()
            .and_then(|i| members.get(i).cloned())
    }

    pub fn find(&self, name: &str) -> Option<Arc<Member>> {
        self.members
            .load()
            .iter()
            .find(|m| m.name() == name)
            .cloned()
    }

    /// Bumped on every membership change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Completes after the next membership change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn modify(&self, f: impl FnOnce(&mut Vec<Arc<Member>>)) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Arc<Member>> = self.members.load().as_ref().clone();
        f(&mut v);
        self.members.store(Arc::new(v));
        self.bump();
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Adds a backend at `now` (its id is assigned here; `backend.id` is ignored).
    pub fn add(&self, mut backend: Backend, now: Instant) -> Result<Arc<Member>, PoolError> {
        if !valid_name(&backend.name) {
            return Err(PoolError::BadName(backend.name));
        }
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.members.load();
        if cur.iter().any(|m| m.name() == backend.name) {
            return Err(PoolError::DuplicateName(backend.name));
        }
        if let Some(m) = cur.iter().find(|m| m.backend.addr == backend.addr) {
            return Err(PoolError::DuplicateAddr {
                name: m.name().to_owned(),
                addr: backend.addr,
            });
        }
        backend.id = BackendId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let m = Arc::new(Member::new(backend, now, self.latency));
        let mut v: Vec<Arc<Member>> = cur.as_ref().clone();
        v.push(m.clone());
        self.members.store(Arc::new(v));
        self.bump();
        Ok(m)
    }

    /// Stops (or resumes) new associations to `name`; existing ones stay.
    pub fn drain(&self, name: &str, on: bool) -> Result<Arc<Member>, PoolError> {
        let m = self
            .find(name)
            .ok_or_else(|| PoolError::Unknown(name.to_owned()))?;
        if m.draining.swap(on, Ordering::Relaxed) != on {
            self.bump();
        }
        Ok(m)
    }

    /// Removes `name` now if it holds no association, else drains it and
    /// removes it once its associations are gone ([`sweep`](Self::sweep)).
    pub fn remove(&self, name: &str) -> Result<Removal, PoolError> {
        let m = self
            .find(name)
            .ok_or_else(|| PoolError::Unknown(name.to_owned()))?;
        m.removing.store(true, Ordering::Relaxed);
        let n = m.associations();
        if n == 0 {
            let id = m.id();
            self.modify(|v| v.retain(|x| x.id() != id));
            Ok(Removal::Removed)
        } else {
            self.bump();
            Ok(Removal::Pending { associations: n })
        }
    }

    /// Drops members being removed that no longer hold an association;
    /// returns them.
    pub fn sweep(&self) -> Vec<Arc<Member>> {
        let done: Vec<Arc<Member>> = self
            .members
            .load()
            .iter()
            .filter(|m| m.removing() && m.associations() == 0)
            .cloned()
            .collect();
        if !done.is_empty() {
            self.modify(|v| v.retain(|x| !(x.removing() && x.associations() == 0)));
        }
        done
    }

    /// Chooses a backend for `node` with `choose` (given the backends to
    /// leave out: `tried` plus every backend already holding this node) and
    /// claims it, atomically with respect to other associations of the same
    /// node. `None` if `choose` finds nothing or names a backend not in the pool.
    pub fn place(
        &self,
        node: &NodeId,
        tried: &[BackendId],
        choose: impl FnOnce(&[BackendId]) -> Option<BackendId>,
    ) -> Option<(Arc<Member>, Placement)> {
        let mut held = self.placements.entry(node.clone()).or_default();
        let mut exclude: Vec<BackendId> = Vec::with_capacity(tried.len() + held.len());
        exclude.extend_from_slice(tried);
        exclude.extend(held.iter().copied());
        let chosen = choose(&exclude)
            .filter(|id| !exclude.contains(id))
            .and_then(|id| self.get(id));
        let Some(m) = chosen else {
            drop(held);
            self.placements.remove_if(node, |_, held| held.is_empty());
            return None;
        };
        held.push(m.id());
        let placement = Placement {
            node: node.clone(),
            backend: m.id(),
            placements: self.placements.clone(),
        };
        Some((m, placement))
    }

    /// Backends currently holding an association of `node`.
    pub fn holding(&self, node: &NodeId) -> Vec<BackendId> {
        self.placements
            .get(node)
            .map(|h| h.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u32) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| {
                    Backend::new(
                        i,
                        format!("ric-{i}"),
                        SocketAddr::from(([127, 0, 0, 1], 36421 + i as u16)),
                    )
                })
                .collect(),
        )
    }

    fn node(i: u8) -> NodeId {
        NodeId(bytes::Bytes::copy_from_slice(&[i]))
    }

    /// The first backend not excluded, in pool order.
    fn first(p: &Pool) -> impl Fn(&[BackendId]) -> Option<BackendId> + '_ {
        move |ex| {
            p.members()
                .iter()
                .map(|m| m.id())
                .find(|id| !ex.contains(id))
        }
    }

    #[test]
    fn a_node_is_never_placed_twice_on_one_backend() {
        let p = pool(2);
        let (b1, g1) = p
            .place(&node(1), &[], first(&p))
            .map(|(b, g)| (b.id(), g))
            .unwrap();
        let (b2, g2) = p
            .place(&node(1), &[], first(&p))
            .map(|(b, g)| (b.id(), g))
            .unwrap();
        assert_ne!(b1, b2);
        assert!(
            p.place(&node(1), &[], first(&p)).is_none(),
            "both backends hold node 1"
        );
        // A chooser that ignores the exclusions is overruled.
        assert!(p.place(&node(1), &[], |_| Some(b1)).is_none());
        // Another node is not affected.
        assert!(p.place(&node(2), &[], first(&p)).is_some());
        drop(g1);
        let (b3, _g3) = p
            .place(&node(1), &[], first(&p))
            .map(|(b, g)| (b.id(), g))
            .unwrap();
        assert_eq!(b3, b1);
        drop(g2);
        assert_eq!(p.holding(&node(1)), vec![b1]);
    }

    #[test]
    fn placements_are_released_completely() {
        let p = pool(3);
        let g = p.place(&node(7), &[BackendId(0)], first(&p)).unwrap().1;
        assert_ne!(g.backend(), BackendId(0));
        drop(g);
        assert!(p.holding(&node(7)).is_empty());
        assert!(p.placements.is_empty());
        assert!(p
            .place(
                &node(7),
                &[BackendId(0), BackendId(1), BackendId(2)],
                first(&p)
            )
            .is_none());
        assert!(p.placements.is_empty());
    }

    #[test]
    fn add_drain_remove() {
        let p = pool(2);
        let t = Instant::now();
        let v0 = p.version();
        let addr = SocketAddr::from(([127, 0, 0, 9], 1));
        let m = p.add(Backend::new(0, "ric-9", addr), t).expect("added");
        assert_eq!(m.id(), BackendId(2), "ids are never reused");
        assert!(p.version() > v0);
        assert!(matches!(
            p.add(
                Backend::new(0, "ric-9", SocketAddr::from(([127, 0, 0, 8], 1))),
                t
            ),
            Err(PoolError::DuplicateName(_))
        ));
        assert!(matches!(
            p.add(Backend::new(0, "other", addr), t),
            Err(PoolError::DuplicateAddr { .. })
        ));
        assert!(matches!(
            p.add(Backend::new(0, "bad name", addr), t),
            Err(PoolError::BadName(_))
        ));
        assert!(p.drain("ric-9", true).expect("known").draining());
        assert!(!p.drain("ric-9", false).expect("known").draining());
        assert_eq!(
            p.drain("nope", true).err(),
            Some(PoolError::Unknown("nope".into()))
        );

        // Removing a backend with an association waits for it.
        let homed = m.home();
        assert_eq!(p.remove("ric-9"), Ok(Removal::Pending { associations: 1 }));
        assert!(m.draining());
        assert!(p.sweep().is_empty());
        assert_eq!(p.len(), 3);
        drop(homed);
        assert_eq!(p.sweep().len(), 1);
        assert_eq!(p.len(), 2);
        assert_eq!(p.remove("ric-0"), Ok(Removal::Removed));
        assert!(p.find("ric-0").is_none());
        // A member removed while a node was being placed cannot be chosen.
        assert!(p.place(&node(1), &[], |_| Some(BackendId(0))).is_none());
    }

    #[test]
    fn member_counters() {
        let p = pool(1);
        let m = p.get(BackendId(0)).expect("member");
        m.add_in_flight(3);
        m.add_in_flight(-5);
        assert_eq!(m.in_flight(), 0, "never negative");
        m.add_in_flight(4);
        assert_eq!(m.in_flight(), 2);
        let t = Instant::now();
        m.record_latency(t, Duration::from_millis(5));
        assert_eq!(
            m.with_latency(|w| w.ewma().map(|s| s.value)).flatten(),
            Some(Duration::from_millis(5))
        );
    }
}
