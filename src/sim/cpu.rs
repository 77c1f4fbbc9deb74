//! CPU time, for the RIC simulator's `ric_cpu_utilisation_ratio`.
//!
//! Two figures, both "cores busy" (0..1 per core; 2.0 = two cores fully busy):
//! - process: `getrusage(RUSAGE_SELF)` user + system time of the whole process
//!   over wall time. Right when one RIC simulator runs per process (`e2lb sim ric`).
//! - handlers: thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) spent inside this
//!   simulator's message handlers, summed, over wall time. Right when several
//!   simulators share a process (the in-process demo and tests), where the
//!   process figure would be the same for all of them.

use std::time::{Duration, Instant};

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros.into())
}

/// User + system CPU time of this process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: `rusage` is plain data, zero is a valid value, and getrusage only
    // writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a properly sized, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    timeval(ru.ru_utime) + timeval(ru.ru_stime)
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos.min(999_999_999))
}

/// Spin on the CPU for `d` (the simulated per-message work). Busy, not asleep,
/// so it shows in CPU figures.
pub fn busy_work(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Ratio of a CPU-time counter's growth to wall time, between two samples.
/// A sample younger than `min_interval` returns the previous ratio, so two
/// scrapes in quick succession do not see noise.
#[derive(Debug)]
pub struct CpuRate {
    at: Instant,
    cpu: Duration,
    last: f64,
    min_interval: Duration,
}

impl CpuRate {
    pub fn new(now: Instant, cpu: Duration, min_interval: Duration) -> Self {
        CpuRate {
            at: now,
            cpu,
            last: 0.0,
            min_interval,
        }
    }

    pub fn sample(&mut self, now: Instant, cpu: Duration) -> f64 {
        let wall = now.saturating_duration_since(self.at);
        if wall < self.min_interval || wall.is_zero() {
            return self.last;
        }
        let used = cpu.saturating_sub(self.cpu);
        self.last = used.as_secs_f64() / wall.as_secs_f64();
        self.at = now;
        self.cpu = cpu;
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_cpu_over_wall() {
        let t0 = Instant::now();
        let mut r = CpuRate::new(t0, Duration::from_secs(10), Duration::from_millis(500));
        assert_eq!(
            r.sample(t0 + Duration::from_millis(100), Duration::from_secs(11)),
            0.0
        );
        let v = r.sample(t0 + Duration::from_secs(2), Duration::from_secs(11));
        assert!((v - 0.5).abs() < 1e-9, "{v}");
        // too soon: previous figure
        let v = r.sample(t0 + Duration::from_millis(2100), Duration::from_secs(20));
        assert!((v - 0.5).abs() < 1e-9, "{v}");
    }

    #[test]
    fn clocks_move_with_work() {
        let p0 = process_cpu();
        let t0 = thread_cpu();
        busy_work(Duration::from_millis(20));
        assert!(thread_cpu() > t0);
        assert!(process_cpu() > p0);
    }
}
