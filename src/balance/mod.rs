//! Backend pool and the choice of a backend for a new E2 node association.
//!
//! This is round-robin over the configured backends, skipping the ones this
//! node already tried. The Bull-and-Bear rule replaces the choice later; the
//! pool (membership) stays apart from the choosing, as in tower's `discover`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::session::BackendId;

/// One RIC pod e2lb can send E2 nodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub id: BackendId,
    /// Operator-facing name (metric label), e.g. "ric-0".
    pub name: String,
    /// E2 (SCTP) address of the pod's E2 termination.
    pub addr: SocketAddr,
}

/// The configured backends and the round-robin cursor.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Backend>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(backends: Vec<Backend>) -> Self {
        Pool {
            backends,
            next: AtomicUsize::new(0),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn get(&self, id: BackendId) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
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
