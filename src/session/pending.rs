//! Outstanding requests of one session, with their deadlines.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::BackendId;
use crate::e2ap::{Envelope, RicRequestId};

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
    /// The key of a request matched by RICrequestID `id`.
    pub fn by_request_id(initiator: Initiator, procedure: u8, id: RicRequestId) -> Self {
        PendingKey {
            initiator,
            procedure,
            id: (u32::from(id.requestor) << 16) | u32::from(id.instance),
        }
    }

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

/// What the session keeps with an outstanding request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The backend leg that sent the request (RIC-initiated) or was sent it
    /// (node-initiated); `None`: the proxy itself asked (RIC-initiated).
    pub leg: Option<BackendId>,
    /// The RICrequestID the asking backend used, when the node sees another.
    pub ric_id: Option<RicRequestId>,
    /// The request itself, when it must be kept (RIC Subscription Requests).
    pub request: Option<Bytes>,
}

struct Entry {
    since: Instant,
    deadline: Instant,
    meta: Meta,
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
    pub fn insert(&mut self, since: Instant, deadline: Instant, key: PendingKey, meta: Meta) {
        self.map.insert(
            key,
            Entry {
                since,
                deadline,
                meta,
            },
        );
        self.order.push_back((deadline, key));
    }

    /// Complete a request: when it was sent and what was kept with it.
    pub fn remove(&mut self, key: &PendingKey) -> Option<(Instant, Meta)> {
        let e = self.map.remove(key)?;
        self.purge();
        Some((e.since, e.meta))
    }

    /// Whether a request with this key is outstanding.
    pub fn contains(&self, key: &PendingKey) -> bool {
        self.map.contains_key(key)
    }

    /// Outstanding requests that involve backend leg `leg`.
    pub fn involving(&self, leg: BackendId) -> usize {
        self.map
            .values()
            .filter(|e| e.meta.leg == Some(leg))
            .count()
    }

    /// The earliest live deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(d, _)| *d)
    }

    /// Remove and return one request whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Option<(PendingKey, Meta)> {
        while let Some(&(deadline, key)) = self.order.front() {
            if deadline > now {
                return None;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|e| e.deadline == deadline) {
                let meta = self.map.remove(&key).map(|e| e.meta).unwrap_or_default();
                self.purge();
                return Some((key, meta));
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
