//! M/M/c sizing (ORAN-HAutoscaling §7.1): how many backends keep the mean
//! queueing delay under `L_max`.
//!
//! Pure arithmetic on rates; no clock.
//!
//! # Which formula
//!
//! The paper prints the waiting time of its M/M/c model as
//! `W_q = λ / (μ (cμ − λ))`. That is the M/M/1 waiting time `ρ / (μ − λ)`
//! with `cμ` substituted in the denominator only. It is exact for `c = 1`,
//! but for `c > 1` it leaves out the probability that an arrival has to wait
//! at all: with `c` servers an arrival waits only when all `c` are busy. It
//! overstates the wait by the factor `a / C(c, a)` (for `c = 3`, `a = 2.4`:
//! about 3.7×), so sizing with it asks for more backends than needed, and
//! the error grows with `c`.
//!
//! The M/M/c mean waiting time in queue is Erlang's C formula (A. K. Erlang,
//! 1917; Kleinrock, *Queueing Systems* vol. 1, §3.5; Gross & Harris,
//! *Fundamentals of Queueing Theory*, §2.3):
//!
//! ```text
//! a = λ/μ (offered load, Erlangs),  ρ = a/c < 1
//! W_q = C(c, a) / (cμ − λ)
//! C(c, a) = B(c, a) / (1 − ρ (1 − B(c, a)))          (probability of waiting)
//! B(0, a) = 1,  B(k, a) = a·B(k−1, a) / (k + a·B(k−1, a))   (Erlang B)
//! ```
//!
//! The Erlang-B recursion keeps every intermediate value in `[0, 1]`, so it
//! neither overflows (as `a^c / c!` does past `c ≈ 170`) nor loses precision,
//! and it is `O(c)`: fine for `c` in the thousands. [`paper_wait_time`] keeps
//! the printed formula for comparison.
//!
//! # What the model is (and is not)
//!
//! One shared queue in front of `c` identical servers. The proxy pins
//! associations to backends, so the real system is closer to `c` separate
//! queues with a good splitter, which waits somewhat longer at the same load;
//! the latency PID ([`super::pid`]) and the CPU rules cover that gap. The
//! target compared with `W_q` is `L_max` itself, as in the paper; the service
//! time `1/μ` comes on top of it in the response time.

use std::time::Duration;

/// The largest `c` [`servers_for`] callers usually search up to.
pub const MAX_SERVERS: u32 = 1024;

/// Erlang B: the blocking probability of an M/M/c/c loss system with offered
/// load `a` (Erlangs). `1.0` for `c = 0`; `NaN` for a negative or non-finite `a`.
pub fn erlang_b(c: u32, a: f64) -> f64 {
    if !(a.is_finite() && a >= 0.0) {
        return f64::NAN;
    }
    let mut b = 1.0;
    for k in 1..=c {
        let ab = a * b;
        b = ab / (f64::from(k) + ab);
    }
    b
}

/// Erlang C: the probability that an arrival to an M/M/c queue with offered
/// load `a = λ/μ` has to wait. `1.0` when the queue is unstable (`a ≥ c`,
/// including `c = 0`); `0.0` for `a = 0`; `NaN` for a negative or non-finite `a`.
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if !(a.is_finite() && a >= 0.0) {
        return f64::NAN;
    }
    if a >= f64::from(c) {
        return 1.0;
    }
    let b = erlang_b(c, a);
    let rho = a / f64::from(c);
    (b / (1.0 - rho * (1.0 - b))).clamp(0.0, 1.0)
}

/// Checks `λ ≥ 0` and `μ > 0`, both finite.
fn rates_ok(lambda: f64, mu: f64) -> bool {
    lambda.is_finite() && lambda >= 0.0 && mu.is_finite() && mu > 0.0
}

/// Mean time in queue `W_q = C(c, a) / (cμ − λ)` of an M/M/c queue with
/// arrival rate `lambda` and per-server service rate `mu` (both per second).
///
/// `None` when the queue is unstable (`cμ ≤ λ`: the wait grows without
/// bound) or the rates are invalid (negative, non-finite, `μ = 0`).
pub fn wait_time(c: u32, lambda: f64, mu: f64) -> Option<Duration> {
    if !rates_ok(lambda, mu) {
        return None;
    }
    let capacity = f64::from(c) * mu;
    if capacity <= lambda {
        return None;
    }
    let w = erlang_c(c, lambda / mu) / (capacity - lambda);
    Duration::try_from_secs_f64(w).ok()
}

/// The waiting time as the paper prints it, `λ / (μ (cμ − λ))`, kept for
/// comparison (see the module doc). `None` as for [`wait_time`].
pub fn paper_wait_time(c: u32, lambda: f64, mu: f64) -> Option<Duration> {
    if !rates_ok(lambda, mu) {
        return None;
    }
    let capacity = f64::from(c) * mu;
    if capacity <= lambda {
        return None;
    }
    Duration::try_from_secs_f64(lambda / (mu * (capacity - lambda))).ok()
}

/// The smallest `c` in `1..=max_c` whose [`wait_time`] is at most `target`.
///
/// `None` when even `max_c` servers do not meet the target, or the rates are
/// invalid. With `λ = 0` the answer is 1 (the caller applies its own floor).
/// `O(max_c)`: Erlang B is carried from one `c` to the next.
pub fn servers_for(lambda: f64, mu: f64, target: Duration, max_c: u32) -> Option<u32> {
    if !rates_ok(lambda, mu) {
        return None;
    }
    let a = lambda / mu;
    let mut b = 1.0;
    for c in 1..=max_c {
        let ab = a * b;
        b = ab / (f64::from(c) + ab);
        let capacity = f64::from(c) * mu;
        if capacity <= lambda {
            continue;
        }
        let rho = a / f64::from(c);
        let wait_c = (b / (1.0 - rho * (1.0 - b))).clamp(0.0, 1.0);
        // Compared as a Duration, exactly as `wait_time` reports it.
        if Duration::try_from_secs_f64(wait_c / (capacity - lambda)).is_ok_and(|w| w <= target) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps * b.abs().max(1.0)
    }

    #[test]
    fn textbook_erlang_c() {
        // c = 3, a = 2: B = 4/19, C = 4/9 (exact).
        assert!(close(erlang_b(3, 2.0), 4.0 / 19.0, 1e-12));
        assert!(close(erlang_c(3, 2.0), 4.0 / 9.0, 1e-12));
        // c = 2, a = 1: B = 1/5, C = 1/3 (exact).
        assert!(close(erlang_c(2, 1.0), 1.0 / 3.0, 1e-12));
        // Call-centre textbook value: 10 agents, 8 Erlangs → C ≈ 0.4092.
        assert!(
            close(erlang_c(10, 8.0), 0.409_19, 1e-4),
            "{}",
            erlang_c(10, 8.0)
        );
    }

    #[test]
    fn one_server_is_mm1() {
        // M/M/1: W_q = ρ / (μ − λ).
        for (lambda, mu) in [(1.0, 2.0), (9.0, 10.0), (0.1, 50.0)] {
            let rho = lambda / mu;
            let want = rho / (mu - lambda);
            let got = wait_time(1, lambda, mu).unwrap().as_secs_f64();
            assert!(close(got, want, 1e-9), "{got} vs {want}");
            // The paper's formula agrees at c = 1 ...
            let paper = paper_wait_time(1, lambda, mu).unwrap().as_secs_f64();
            assert!(close(paper, want, 1e-9));
        }
        // ... and overstates the wait for c > 1.
        let (e, p) = (
            wait_time(3, 2.4, 1.0).unwrap(),
            paper_wait_time(3, 2.4, 1.0).unwrap(),
        );
        assert!(p.as_secs_f64() > 3.0 * e.as_secs_f64(), "{e:?} {p:?}");
    }

    #[test]
    fn unstable_and_invalid() {
        assert_eq!(wait_time(2, 2.0, 1.0), None);
        assert_eq!(wait_time(2, 3.0, 1.0), None);
        assert_eq!(wait_time(0, 0.0, 1.0), None);
        assert_eq!(wait_time(2, 1.0, 0.0), None);
        assert_eq!(wait_time(2, f64::NAN, 1.0), None);
        assert_eq!(wait_time(2, -1.0, 1.0), None);
        assert_eq!(wait_time(2, 0.0, 1.0), Some(Duration::ZERO));
        assert_eq!(erlang_c(0, 0.5), 1.0);
        assert!(erlang_c(3, -1.0).is_nan());
        assert_eq!(
            servers_for(1.0, f64::INFINITY, Duration::from_secs(1), 8),
            None
        );
    }

    #[test]
    fn servers_for_small_cases() {
        let t = Duration::from_millis(400);
        assert_eq!(servers_for(0.0, 10.0, t, 8), Some(1));
        // λ = 300/s, μ = 125/s: 2 servers are unstable, 3 wait ~9 ms.
        assert_eq!(servers_for(300.0, 125.0, t, 8), Some(3));
        // λ just under 2μ: stable with 2 but the wait is long.
        let lambda = 2.0 * 125.0 - 0.5;
        assert!(wait_time(2, lambda, 125.0).unwrap() > t);
        assert_eq!(servers_for(lambda, 125.0, t, 8), Some(3));
        assert_eq!(servers_for(300.0, 125.0, t, 2), None);
    }

    #[test]
    fn large_c_is_stable() {
        // 1,000 servers at 95 % load: finite and in [0, 1].
        let c = erlang_c(1000, 950.0);
        assert!(c.is_finite() && (0.0..=1.0).contains(&c), "{c}");
        let n = servers_for(950.0, 1.0, Duration::from_millis(10), MAX_SERVERS).unwrap();
        assert!((951..=1000).contains(&n), "{n}");
        assert!(wait_time(n, 950.0, 1.0).unwrap() <= Duration::from_millis(10));
        assert!(wait_time(n - 1, 950.0, 1.0).is_none_or(|w| w > Duration::from_millis(10)));
    }

    proptest! {
        #[test]
        fn more_servers_never_wait_longer(
            c in 1u32..400,
            load in 0.0f64..1.0,
            mu in 0.01f64..1000.0,
        ) {
            let lambda = load * f64::from(c) * mu;
            let w1 = wait_time(c, lambda, mu);
            let w2 = wait_time(c + 1, lambda, mu);
            prop_assert!(w2.is_some());
            if let (Some(w1), Some(w2)) = (w1, w2) {
                // Allow for the rounding of Duration (1 ns).
                prop_assert!(w2 <= w1 + Duration::from_nanos(1), "{:?} > {:?}", w2, w1);
            }
            let p = erlang_c(c, lambda / mu);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!(erlang_c(c + 1, lambda / mu) <= p + 1e-12);
        }

        #[test]
        fn servers_for_is_the_smallest(
            lambda in 0.0f64..500.0,
            mu in 1.0f64..100.0,
            target_ms in 1u64..2000,
        ) {
            let target = Duration::from_millis(target_ms);
            if let Some(c) = servers_for(lambda, mu, target, 64) {
                prop_assert!(wait_time(c, lambda, mu).is_some_and(|w| w <= target));
                if c > 1 {
                    prop_assert!(wait_time(c - 1, lambda, mu).is_none_or(|w| w > target));
                }
            } else {
                prop_assert!(wait_time(64, lambda, mu).is_none_or(|w| w > target));
            }
        }
    }
}
