//! Backend pool and the choice of a backend for a new E2 node association.
//!
//! This is round-robin over the configured backends, skipping the ones this
//! node already tried. The Bull-and-Bear rule replaces the choice later; the
//! pool (membership) stays apart from the choosing, as in tower's `discover`.

pub mod bnb;
pub mod load;
pub mod sim;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::session::{BackendId, NodeId};

/// One RIC pod e2lb can send E2 nodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: BackendId,
    /// Operator-facing name (metric label), e.g. "ric-0".
    pub name: String,
    /// E2 (SCTP) address of the pod's E2 termination.
    pub addr: SocketAddr,
}

/// The configured backends, the round-robin cursor, and which backends hold
/// an association for which E2 node.
///
/// Placements exist because two associations carrying the same GlobalE2node-ID
/// on one RIC crash it (DESIGN §2b): a node is never placed on a backend that
/// already holds it, even while an old association of that node is closing.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Backend>,
    next: AtomicUsize,
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

impl Pool {
    pub fn new(backends: Vec<Backend>) -> Self {
        Pool {
            backends,
            next: AtomicUsize::new(0),
            placements: Arc::new(DashMap::new()),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn get(&self, id: BackendId) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    /// Choose a backend for `node` (round-robin, skipping `tried` and every
    /// backend that already holds this node) and claim it, atomically with
    /// respect to other associations of the same node.
    pub fn place(&self, node: &NodeId, tried: &[BackendId]) -> Option<(&Backend, Placement)> {
        let mut held = self.placements.entry(node.clone()).or_default();
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..n)
            .filter_map(|i| self.backends.get((start + i) % n))
            .find(|b| !tried.contains(&b.id) && !held.contains(&b.id));
        let Some(b) = chosen else {
            drop(held);
            self.placements.remove_if(node, |_, held| held.is_empty());
            return None;
        };
        held.push(b.id);
        Some((
            b,
            Placement {
                node: node.clone(),
                backend: b.id,
                placements: self.placements.clone(),
            },
        ))
    }

    /// Backends currently holding an association of `node`.
    pub fn holding(&self, node: &NodeId) -> Vec<BackendId> {
        self.placements
            .get(node)
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The next backend in round-robin order that is not in `tried`.
    pub fn pick(&self, tried: &[BackendId]) -> Option<&Backend> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .find(|b| !tried.contains(&b.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u32) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| Backend {
                    id: BackendId(i),
                    name: format!("ric-{i}"),
                    addr: SocketAddr::from(([127, 0, 0, 1], 36421 + i as u16)),
                })
                .collect(),
        )
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let p = pool(3);
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[p.pick(&[]).unwrap().id.0 as usize] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    fn node(i: u8) -> NodeId {
        NodeId(bytes::Bytes::copy_from_slice(&[i]))
    }

    #[test]
    fn a_node_is_never_placed_twice_on_one_backend() {
        let p = pool(2);
        let (b1, g1) = p.place(&node(1), &[]).map(|(b, g)| (b.id, g)).unwrap();
        let (b2, g2) = p.place(&node(1), &[]).map(|(b, g)| (b.id, g)).unwrap();
        assert_ne!(b1, b2);
        assert!(
            p.place(&node(1), &[]).is_none(),
            "both backends hold node 1"
        );
        // Another node is not affected.
        assert!(p.place(&node(2), &[]).is_some());
        drop(g1);
        let (b3, _g3) = p.place(&node(1), &[]).map(|(b, g)| (b.id, g)).unwrap();
        assert_eq!(b3, b1);
        drop(g2);
        assert_eq!(p.holding(&node(1)), vec![b1]);
    }

    #[test]
    fn placements_are_released_completely() {
        let p = pool(3);
        let g = p.place(&node(7), &[BackendId(0)]).unwrap().1;
        assert_ne!(g.backend(), BackendId(0));
        drop(g);
        assert!(p.holding(&node(7)).is_empty());
        assert!(p.placements.is_empty());
        assert!(p
            .place(&node(7), &[BackendId(0), BackendId(1), BackendId(2)])
            .is_none());
        assert!(p.placements.is_empty());
    }

    #[test]
    fn tried_backends_are_skipped_until_none_left() {
        let p = pool(3);
        let mut tried = vec![];
        for _ in 0..3 {
            let b = p.pick(&tried).unwrap().id;
            assert!(!tried.contains(&b));
            tried.push(b);
        }
        assert!(p.pick(&tried).is_none());
        assert!(pool(0).pick(&[]).is_none());
    }
}
