//! Outstanding requests of one session, with their deadlines.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::e2ap::Envelope;

/// Which side sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiator {
    Node,
    Backend,
}

impl Initiator {
    pub fn other(self) -> Self {
        match self {
            Initiator::Node => Initiator::Backend,
            Initiator::Backend => Initiator::Node,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Initiator::Node => "node",
            Initiator::Backend => "backend",
        }
    }
}

/// Identifies a request so its response can be matched: who asked, which
/// procedure, and the RICrequestID (packed) or TransactionID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendingKey {
    pub initiator: Initiator,
    pub procedure: u8,
    pub id: u32,
}

impl PendingKey {
    /// The key of a request or response; `None` if it carries no usable id.
    pub fn of(initiator: Initiator, env: &Envelope<'_>) -> Option<Self> {
        let proc = env.procedure();
        let id = if proc.keyed_by_request_id() {
            let r = env.ric_request_id()?;
            (u32::from(r.requestor) << 16) | u32::from(r.instance)
        } else {
            u32::from(env.transaction_id()?)
        };
        Some(PendingKey {
            initiator,
            procedure: proc.0,
            id,
        })
    }
}

struct Entry {
    since: Instant,
    deadline: Instant,
    request: Option<Bytes>,
}

/// Outstanding requests. Deadlines are queued in insertion order, which is
/// deadline order because every request gets the same time-out; entries that
/// completed are skipped lazily.
#[derive(Default)]
pub struct Pending {
    map: HashMap<PendingKey, Entry>,
    order: VecDeque<(Instant, PendingKey)>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Track a request (a repeated key replaces the older one).
    pub fn insert(
        &mut self,
        since: Instant,
        deadline: Instant,
        key: PendingKey,
        request: Option<Bytes>,
    ) {
        self.map.insert(
            key,
            Entry {
                since,
                deadline,
                request,
            },
        );
        self.order.push_back((deadline, key));
    }

    /// Complete a request: when it was sent and the request kept with it.
    pub fn remove(&mut self, key: &PendingKey) -> Option<(Instant, Option<Bytes>)> {
        let e = self.map.remove(key)?;
        self.purge();
        Some((e.since, e.request))
    }

    /// The earliest live deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(d, _)| *d)
    }

    /// Remove and return one request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Option<PendingKey> {
        while let Some(&(deadline, key)) = self.order.front() {
            if deadline > now {
                return None;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|e| e.deadline == deadline) {
                self.map.remove(&key);
                self.purge();
                return Some(key);
            }
        }
        None
    }

    /// Drop completed entries from the front of the deadline queue.
    fn purge(&mut self) {
        while let Some((deadline, key)) = self.order.front() {
            if self.map.get(key).is_some_and(|e| e.deadline == *deadline) {
                break;
            }
            self.order.pop_front();
        }
    }
}
