//! The live associations, for operators (`/api/v1/associations`).
//!
//! Each association task registers one [`AssocRecord`] when it starts and
//! removes it when it ends (the [`Registered`] guard). Fields change only on
//! rare events (E2 Setup, backend attach/detach) except the in-flight count,
//! an atomic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use dashmap::DashMap;

use crate::transport::AssocInfo;

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
    in_flight: AtomicI64,
}

impl AssocRecord {
    pub fn set_node(&self, node: String) {
        if let Ok(mut n) = self.node.lock() {
            *n = Some(node);
        }
    }

    pub fn set_backend(&self, backend: Option<String>) {
        if let Ok(mut b) = self.backend.lock() {
            *b = backend;
        }
    }

    pub fn node(&self) -> Option<String> {
        self.node.lock().ok().and_then(|n| n.clone())
    }

    pub fn backend(&self) -> Option<String> {
        self.backend.lock().ok().and_then(|b| b.clone())
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
}

impl Registered {
    pub fn record(&self) -> &Arc<AssocRecord> {
        &self.record
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
            in_flight: AtomicI64::new(0),
        });
        self.map.insert(id, record.clone());
        Registered {
            table: self.clone(),
            record,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
        a.record().set_backend(Some("ric-0".into()));
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
