//! Admission at accept: the association limit (`[proxy] max_associations`)
//! and log lines that a flood cannot turn into a flood of logs.
//!
//! The limit is read from the current configuration at every accept, so a
//! reload changes it for the next association (lowering it closes nobody:
//! existing associations stay; new ones are refused until the count is
//! below the new limit). Only the accept loop takes slots, so checking and
//! taking cannot race; a slot is given back when its association task ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Open E2 node associations, counted by [`Slot`] guards.
#[derive(Debug, Default)]
pub struct Admission {
    open: Arc<AtomicUsize>,
}

/// One admitted association; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new() -> Self {
        Admission::default()
    }

    /// Associations admitted and not yet ended.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A slot if fewer than `max` associations are open.
    pub fn try_admit(&self, max: usize) -> Option<Slot> {
        if self.open() >= max {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            open: self.open.clone(),
        })
    }
}

/// Lets a warning through at most once per `every`; counts what it held back.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)`: log now, `n` occurrences were suppressed since the last
    /// line. `None`: stay quiet (this one is counted for the next line).
    pub fn check(&self, now: Instant) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return Some(0);
        };
        let (last, suppressed) = &mut *s;
        if last.is_none_or(|l| now.saturating_duration_since(l) >= self.every) {
            *last = Some(now);
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_given_back() {
        let a = Admission::new();
        let s1 = a.try_admit(2).unwrap();
        let s2 = a.try_admit(2).unwrap();
        assert!(a.try_admit(2).is_none());
        assert_eq!(a.open(), 2);
        // A higher limit (a reload) admits more at once; a lower one closes nobody.
        let s3 = a.try_admit(3).unwrap();
        assert!(a.try_admit(1).is_none());
        drop((s1, s2));
        assert_eq!(a.open(), 1);
        assert!(a.try_admit(2).is_some());
        drop(s3);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let t0 = Instant::now();
        let th = Throttle::new(Duration::from_secs(10));
        assert_eq!(th.check(t0), Some(0));
        for s in 1..=5 {
            assert_eq!(th.check(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(th.check(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(th.check(t0 + Duration::from_secs(11)), None);
        assert_eq!(th.check(t0 + Duration::from_secs(25)), Some(1));
    }
}
