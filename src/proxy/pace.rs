//! Pacing of E2 Setups per backend (`[proxy] setup_rate_per_backend`).
//!
//! When a backend dies or e2lb restarts, every node it served reconnects at
//! once; without a pace, the remaining RIC pods get a storm of E2 Setups (each
//! followed by the subscriptions of every xApp) and may fall over in turn.
//! Each backend has a token bucket: `rate` setups per second, at most `burst`
//! at once. A setup that finds no token:
//!
//! - **waits** for its slot when that comes within `setup_wait_max` (the slot
//!   is reserved now, so waiting setups are served in order and never exceed
//!   the pace), holding the node's association: it only sees a slower E2
//!   Setup Response;
//! - else tries the next backend the balancer offers, and when every backend is
//!   that far behind, the node gets an **E2 Setup Failure with TimeToWait**
//!   (E2AP's way of telling a node to back off). The TimeToWait is the
//!   smallest value at or above the time its slot would come, counting the
//!   nodes already told to come back, so a storm is spread over the
//!   TimeToWait values instead of coming back all at once.
//!
//! Re-homing after a backend failure and planned migrations replay the E2
//! Setup to their target, so they respect the same pace — but they always
//! wait for their slot (no limit): the node must not notice a move, and a
//! failed re-homing would close its association.
//!
//! [`TokenBucket`] is pure (time is an argument) and unit-tested
//! deterministically; [`Pacer`] keeps one per backend behind a mutex taken
//! once per setup, never per message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::session::BackendId;

/// A pace: `rate` setups per second with bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    /// Setups per second per backend; 0 = unpaced.
    pub rate: f64,
    /// Setups allowed back to back after a quiet spell (at least 1).
    pub burst: u32,
}

impl Pace {
    /// No pacing.
    pub const UNPACED: Pace = Pace {
        rate: 0.0,
        burst: 1,
    };

    pub fn is_unpaced(&self) -> bool {
        self.rate <= 0.0 || !self.rate.is_finite()
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }
}

/// What a setup towards one backend may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Go now.
    Now,
    /// A slot is reserved this far ahead: wait, then go.
    Wait(Duration),
    /// No slot within the allowed wait; nothing was reserved. `earliest`:
    /// when its slot would have been (see [`TokenBucket::promise`]).
    Refuse { earliest: Duration },
}

/// One backend's bucket. Tokens may go negative: a reservation by a waiting
/// setup (GCRA style), paid back by the refill.
#[derive(Clone, Debug, Default)]
pub struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
    /// Until when refused nodes have been told to stay away (each refusal
    /// pushes it by one interval).
    promised: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket (the first `burst` setups go at once).
    pub fn new() -> Self {
        TokenBucket::default()
    }

    fn refill(&mut self, pace: Pace, now: Instant) {
        let burst = f64::from(pace.burst.max(1));
        self.tokens = match self.last {
            None => burst,
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                (self.tokens + dt * pace.rate).min(burst)
            }
        };
        // Time never goes back for the bucket.
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Ask for one setup at `now`, waiting at most `max_wait` (`None`: any wait).
    pub fn admit(&mut self, pace: Pace, now: Instant, max_wait: Option<Duration>) -> Admit {
        if pace.is_unpaced() {
            return Admit::Now;
        }
        self.refill(pace, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admit::Now;
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / pace.rate);
        if max_wait.is_none_or(|m| wait <= m) {
            self.tokens -= 1.0;
            return Admit::Wait(wait);
        }
        Admit::Refuse { earliest: wait }
    }

    /// A refused node is told to come back after the nodes already told so:
    /// one interval after the later of its own slot (`earliest` from now)
    /// and the last promise. Returns how long from `now`.
    pub fn promise(&mut self, pace: Pace, now: Instant, earliest: Duration) -> Duration {
        if pace.is_unpaced() {
            return Duration::ZERO;
        }
        let own = now + earliest;
        let at = self.promised.map_or(own, |p| p.max(own)) + pace.interval();
        self.promised = Some(at);
        at.saturating_duration_since(now)
    }

    /// Tokens left at `now` (negative: reservations outstanding), for logs.
    pub fn tokens(&self, pace: Pace, now: Instant) -> f64 {
        let mut b = self.clone();
        b.refill(pace, now);
        b.tokens
    }
}

/// The buckets of every backend.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: Mutex<HashMap<BackendId, TokenBucket>>,
}

impl Pacer {
    pub fn new() -> Self {
        Pacer::default()
    }

    /// [`TokenBucket::admit`] on `backend`'s bucket; also returns the tokens
    /// left after the decision (for the log line).
    pub fn admit(
        &self,
        backend: BackendId,
        pace: Pace,
        now: Instant,
        max_wait: Option<Duration>,
    ) -> (Admit, f64) {
        if pace.is_unpaced() {
            return (Admit::Now, f64::INFINITY);
        }
        let Ok(mut map) = self.buckets.lock() else {
            // A panic elsewhere poisoned the map: do not add a second failure.
            return (Admit::Now, f64::NAN);
        };
        let b = map.entry(backend).or_default();
        let a = b.admit(pace, now, max_wait);
        (a, b.tokens(pace, now))
    }

    /// [`TokenBucket::promise`] on `backend`'s bucket.
    pub fn promise(
        &self,
        backend: BackendId,
        pace: Pace,
        now: Instant,
        earliest: Duration,
    ) -> Duration {
        match self.buckets.lock() {
            Ok(mut map) => map.entry(backend).or_default().promise(pace, now, earliest),
            Err(_) => earliest,
        }
    }

    /// Forget a backend that left the pool.
    pub fn forget(&self, backend: BackendId) {
        if let Ok(mut map) = self.buckets.lock() {
            map.remove(&backend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pace(rate: f64, burst: u32) -> Pace {
        Pace { rate, burst }
    }

    #[test]
    fn unpaced_always_admits() {
        let mut b = TokenBucket::new();
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(b.admit(Pace::UNPACED, t, Some(Duration::ZERO)), Admit::Now);
        }
    }

    #[test]
    fn burst_then_reservations_in_order_then_refusals() {
        // 10/s, burst 3, at most 500 ms of waiting.
        let p = pace(10.0, 3);
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        let max = Some(500 * MS);
        for _ in 0..3 {
            assert_eq!(b.admit(p, t0, max), Admit::Now);
        }
        // Slots every 100 ms, reserved in order.
        for k in 1..=5u64 {
            match b.admit(p, t0, max) {
                Admit::Wait(w) => assert!(
                    (w.as_millis() as i64 - (k as i64 * 100)).abs() <= 1,
                    "{k}: {w:?}"
                ),
                a => panic!("{k}: {a:?}"),
            }
        }
        // The 6th slot would be 600 ms away: refused, nothing reserved; the
        // refused are promised times one interval apart beyond the queue.
        let mut last = Duration::ZERO;
        for _ in 0..4 {
            match b.admit(p, t0, max) {
                Admit::Refuse { earliest } => {
                    assert!(
                        (earliest.as_millis() as i64 - 600).abs() <= 1,
                        "{earliest:?}"
                    );
                    let retry_in = b.promise(p, t0, earliest);
                    assert!(retry_in > earliest && retry_in > last, "{retry_in:?}");
                    last = retry_in;
                }
                a => panic!("{a:?}"),
            }
        }
        assert!((last.as_millis() as i64 - 1000).abs() <= 1, "{last:?}");
        // 100 ms later one reserved slot is paid back: a new one fits again.
        assert!(matches!(b.admit(p, t0 + 100 * MS, max), Admit::Wait(_)));
    }

    #[test]
    fn refill_is_capped_at_burst() {
        let p = pace(100.0, 5);
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        for _ in 0..5 {
            assert_eq!(b.admit(p, t0, Some(Duration::ZERO)), Admit::Now);
        }
        // A long quiet spell refills only `burst`.
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(b.admit(p, t1, Some(Duration::ZERO)), Admit::Now);
        }
        assert!(matches!(
            b.admit(p, t1, Some(Duration::ZERO)),
            Admit::Refuse { .. }
        ));
    }

    #[test]
    fn unbounded_wait_never_refuses() {
        let p = pace(2.0, 1);
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        assert_eq!(b.admit(p, t0, None), Admit::Now);
        for k in 1..=20u64 {
            assert_eq!(
                b.admit(p, t0, None),
                Admit::Wait(Duration::from_millis(500 * k))
            );
        }
    }

    /// The property the pace promises: in any window of length `w`, at most
    /// `burst + rate·w` setups start (admitted at `now + wait`), whatever the
    /// arrival pattern.
    #[test]
    fn never_more_than_rate_times_window_plus_burst() {
        let p = pace(20.0, 5);
        let t0 = Instant::now();
        let mut b = TokenBucket::new();
        let mut starts = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut t = t0;
        for _ in 0..5000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Bursty arrivals: mostly simultaneous, sometimes a pause.
            if rng % 8 == 0 {
                t += Duration::from_millis(rng % 700);
            }
            match b.admit(p, t, Some(Duration::from_millis(300))) {
                Admit::Now => starts.push(t),
                Admit::Wait(w) => starts.push(t + w),
                Admit::Refuse { earliest } => assert!(earliest > Duration::from_millis(300)),
            }
        }
        starts.sort();
        let w = Duration::from_secs(1);
        let bound = p.burst as usize + (p.rate * w.as_secs_f64()) as usize;
        let mut j = 0;
        for i in 0..starts.len() {
            while starts[i] - starts[j] >= w {
                j += 1;
            }
            assert!(i - j < bound, "{} starts within 1 s", i - j + 1);
        }
        assert!(starts.len() > 100);
    }

    #[test]
    fn pacer_keeps_one_bucket_per_backend() {
        let p = pace(1.0, 1);
        let t = Instant::now();
        let pacer = Pacer::new();
        let z = Some(Duration::ZERO);
        assert_eq!(pacer.admit(BackendId(0), p, t, z).0, Admit::Now);
        assert_eq!(pacer.admit(BackendId(1), p, t, z).0, Admit::Now);
        assert!(matches!(
            pacer.admit(BackendId(0), p, t, z).0,
            Admit::Refuse { .. }
        ));
        pacer.forget(BackendId(0));
        assert_eq!(pacer.admit(BackendId(0), p, t, z).0, Admit::Now);
    }
}
