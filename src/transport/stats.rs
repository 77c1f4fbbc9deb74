//! Process-wide transport counters, exported by the shell's metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters every transport updates. Read them with [`TransportStats::snapshot`].
#[derive(Default)]
pub struct TransportStats {
    stream_fallbacks: AtomicU64,
    send_failures: AtomicU64,
}

pub static STATS: TransportStats = TransportStats {
    stream_fallbacks: AtomicU64::new(0),
    send_failures: AtomicU64::new(0),
};

impl TransportStats {
    /// A message was sent on a lower stream because the peer negotiated fewer.
    pub fn stream_fallback(&self) {
        self.stream_fallbacks.fetch_add(1, Relaxed);
    }
    pub fn stream_fallbacks(&self) -> u64 {
        self.stream_fallbacks.load(Relaxed)
    }
    /// The kernel reported a message it could not deliver (SCTP SEND_FAILED).
    pub fn send_failed(&self) {
        self.send_failures.fetch_add(1, Relaxed);
    }
    pub fn send_failures(&self) -> u64 {
        self.send_failures.load(Relaxed)
    }
}
