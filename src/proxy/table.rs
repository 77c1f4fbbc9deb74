//! The live associations, for operators (`/api/v1/associations`).
//!
//! Each association task registers one [`AssocRecord`] when it starts and
//! removes it when it ends (the [`Registered`] guard). Fields change only on
//! rare events (E2 Setup, backend attach/detach) except the in-flight count,
//! an atomic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};

use crate::e2ap::RicRequestId;
use crate::session::BackendId;
use crate::transport::AssocInfo;

/// Why an association is asked to move (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// A migration plan (scale-in, consolidation, rebalance, operator).
    Planned,
    /// Its backend stopped answering probes.
    Unhealthy,
}

impl MoveReason {
    pub fn name(self) -> &'static str {
        match self {
            MoveReason::Planned => "planned",
            MoveReason::Unhealthy => "unhealthy",
        }
    }
}

/// How a requested move ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MoveOutcome {
    /// Traffic now flows to `to`.
    Switched {
        from: String,
        to: String,
        took_ms: f64,
        adopted: usize,
        dropped: usize,
    },
    /// The move stopped; the association stayed where it was.
    Aborted { reason: String },
    /// The association could not start a move now.
    Refused { reason: String },
    /// No answer within `migrate.move_timeout`: the executor stopped waiting
    /// (the association may still finish or abort the move on its own).
    TimedOut { after_ms: f64 },
}

/// A request to an association task.
#[derive(Debug)]
pub enum Command {
    /// Re-home onto `target` (or the balancer's pick when `None`).
    Migrate {
        target: Option<BackendId>,
        reason: MoveReason,
        reply: Option<oneshot::Sender<MoveOutcome>>,
    },
    /// Router mode: the pods attached and the subscription table (`None`:
    /// the association is in association mode).
    RouterView {
        reply: oneshot::Sender<Option<serde_json::Value>>,
    },
    /// Router mode: hand node-side subscription `node_id` over to pod `to`
    /// (adopted when that pod's xApp subscribes alike). Replies with the pod
    /// it moves from, or why not.
    MoveSubscription {
        node_id: RicRequestId,
        to: BackendId,
        reply: oneshot::Sender<Result<Option<String>, String>>,
    },
}

/// One E2 node association as the admin API shows it.
#[derive(Debug)]
pub struct AssocRecord {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub streams_in: u16,
    pub streams_out: u16,
    pub accepted_at: Instant,
    pub accepted_wall: SystemTime,
    node: Mutex<Option<String>>,
    backend: Mutex<Option<String>>,
    /// Router mode: the pods the node is shared by.
    pods: Mutex<Option<Vec<String>>>,
    backend_id: AtomicU32,
    in_flight: AtomicI64,
    /// Node → RIC messages and bytes relayed (a load weight for the planner).
    messages: AtomicU64,
    bytes: AtomicU64,
    commands: mpsc::UnboundedSender<Command>,
}

impl AssocRecord {
    pub fn set_node(&self, node: String) {
        if let Ok(mut n) = self.node.lock() {
            *n = Some(node);
        }
    }

    pub fn set_backend(&self, backend: Option<(BackendId, String)>) {
        self.backend_id.store(
            backend.as_ref().map_or(u32::MAX, |(id, _)| id.0),
            Ordering::Relaxed,
        );
        if let Ok(mut b) = self.backend.lock() {
            *b = backend.map(|(_, name)| name);
        }
    }

    /// The backend the association is on.
    pub fn backend_id(&self) -> Option<BackendId> {
        match self.backend_id.load(Ordering::Relaxed) {
            u32::MAX => None,
            id => Some(BackendId(id)),
        }
    }

    /// Count a node message relayed (the planner's per-association load weight).
    #[inline]
    pub fn relayed(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Node → RIC messages and bytes relayed so far.
    pub fn relayed_totals(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Age of the association.
    pub fn age(&self) -> Duration {
        self.accepted_at.elapsed()
    }

    /// Ask the association task to move; `false` if it has ended.
    pub fn command(&self, c: Command) -> bool {
        self.commands.send(c).is_ok()
    }

    pub fn node(&self) -> Option<String> {
        self.node.lock().ok().and_then(|n| n.clone())
    }

    pub fn backend(&self) -> Option<String> {
        self.backend.lock().ok().and_then(|b| b.clone())
    }

    /// Router mode: the pods the node is shared by (`None`: association mode).
    pub fn pods(&self) -> Option<Vec<String>> {
        self.pods.lock().ok().and_then(|p| p.clone())
    }

    pub fn set_pods(&self, pods: Option<Vec<String>>) {
        if let Ok(mut p) = self.pods.lock() {
            *p = pods;
        }
    }

    pub fn set_in_flight(&self, n: i64) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Every open E2 node association.
#[derive(Debug, Default)]
pub struct AssocTable {
    next: AtomicU64,
    map: DashMap<u64, Arc<AssocRecord>>,
}

/// Removes its record from the table on drop.
#[derive(Debug)]
pub struct Registered {
    table: Arc<AssocTable>,
    record: Arc<AssocRecord>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Registered {
    pub fn record(&self) -> &Arc<AssocRecord> {
        &self.record
    }

    /// Requests for this association (polled by its task).
    pub fn commands(&mut self) -> &mut mpsc::UnboundedReceiver<Command> {
        &mut self.commands
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.map.remove(&self.record.id);
    }
}

impl AssocTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an accepted association.
    pub fn register(self: &Arc<Self>, info: &AssocInfo) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, commands) = mpsc::unbounded_channel();
        let record = Arc::new(AssocRecord {
            id,
            peer: info.peer,
            local: info.local,
            streams_in: info.inbound_streams,
            streams_out: info.outbound_streams,
            accepted_at: Instant::now(),
            accepted_wall: SystemTime::now(),
            node: Mutex::new(None),
            backend: Mutex::new(None),
            pods: Mutex::new(None),
            backend_id: AtomicU32::new(u32::MAX),
            in_flight: AtomicI64::new(0),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            commands: tx,
        });
        self.map.insert(id, record.clone());
        Registered {
            table: self.clone(),
            record,
            commands,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// One association by id.
    pub fn get(&self, id: u64) -> Option<Arc<AssocRecord>> {
        self.map.get(&id).map(|e| e.value().clone())
    }

    /// The associations on backend `b`.
    pub fn on_backend(&self, b: BackendId) -> Vec<Arc<AssocRecord>> {
        let mut v: Vec<Arc<AssocRecord>> = self
            .map
            .iter()
            .filter(|e| e.value().backend_id() == Some(b))
            .map(|e| e.value().clone())
            .collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// A copy of the records, oldest first.
    pub fn list(&self) -> Vec<Arc<AssocRecord>> {
        let mut v: Vec<Arc<AssocRecord>> = self.map.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|r| r.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_and_go() {
        let t = Arc::new(AssocTable::new());
        let info = AssocInfo {
            local: SocketAddr::from(([127, 0, 0, 1], 36421)),
            peer: SocketAddr::from(([127, 0, 0, 2], 5000)),
            outbound_streams: 2,
            inbound_streams: 3,
        };
        let a = t.register(&info);
        let b = t.register(&info);
        a.record().set_node("0011".into());
        a.record().set_backend(Some((BackendId(0), "ric-0".into())));
        a.record().set_in_flight(4);
        let l = t.list();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].node().as_deref(), Some("0011"));
        assert_eq!(l[0].backend().as_deref(), Some("ric-0"));
        assert_eq!(l[0].in_flight(), 4);
        assert_eq!(l[1].node(), None);
        drop(a);
        assert_eq!(t.list().len(), 1);
        drop(b);
        assert!(t.is_empty());
    }
}
