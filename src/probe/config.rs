//! Probe configuration, its defaults and validation (pure).

use std::time::Duration;

use super::expo::{InvalidSelector, Selector};

/// Which exposition sample carries each figure (`None` disables the figure).
///
/// Each entry is a [`Selector`]: `name` or `name{label="value",...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricNames {
    /// CPU utilisation as a ratio of the backend's allocation.
    /// Default `ric_cpu_utilisation_ratio` (the RIC simulator's).
    pub cpu: Option<String>,
    /// Backend-reported processing / inference time, in seconds.
    /// Default `ric_processing_latency_seconds_mean`.
    pub proc_time: Option<String>,
    /// Backend-reported latency, in seconds.
    /// Default `ric_processing_latency_seconds{quantile="0.99"}`.
    pub latency: Option<String>,
}

impl Default for MetricNames {
    fn default() -> Self {
        MetricNames {
            cpu: Some("ric_cpu_utilisation_ratio".into()),
            proc_time: Some("ric_processing_latency_seconds_mean".into()),
            latency: Some(r#"ric_processing_latency_seconds{quantile="0.99"}"#.into()),
        }
    }
}

/// The parsed form of [`MetricNames`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub cpu: Option<Selector>,
    pub proc_time: Option<Selector>,
    pub latency: Option<Selector>,
}

/// How and how often backends are probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub metrics: MetricNames,
    /// Period of the synchronised tick. Default 1 s (so that the balancer's
    /// default 3 s freshness bound tolerates two missed ticks).
    pub tick: Duration,
    /// Per-request deadline (connect + request + whole body). Default 500 ms;
    /// must not exceed `tick`, so a round ends before the next begins.
    pub timeout: Duration,
    /// Consecutive failures after which a backend is unhealthy. Default 3.
    /// One success makes it healthy again.
    pub unhealthy_after: u32,
    /// Figures older than this are not handed out. Default 3 s (the
    /// balancer's `LoadModel::max_age`); must be at least `tick`.
    pub max_age: Duration,
    /// Largest response body read. Default 1 MiB (the RIC simulator's
    /// exposition is about 2 KiB).
    pub max_body: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            metrics: MetricNames::default(),
            tick: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_after: 3,
            max_age: Duration::from_secs(3),
            max_body: 1 << 20,
        }
    }
}

/// A [`ProbeConfig`] field out of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid probe config: {field} {bound}")]
pub struct InvalidProbeConfig {
    pub field: &'static str,
    pub bound: &'static str,
    /// Set when the field is a selector that did not parse.
    #[source]
    pub selector: Option<InvalidSelector>,
}

impl ProbeConfig {
    /// Checks every bound and parses the metric selectors.
    pub fn validate(&self) -> Result<Selectors, InvalidProbeConfig> {
        let bad = |field, bound| {
            Err(InvalidProbeConfig {
                field,
                bound,
                selector: None,
            })
        };
        if self.tick.is_zero() {
            return bad("tick", "must be > 0");
        }
        if self.timeout.is_zero() || self.timeout > self.tick {
            return bad("timeout", "must be > 0 and <= tick");
        }
        if self.unhealthy_after == 0 {
            return bad("unhealthy_after", "must be >= 1");
        }
        if self.max_age < self.tick {
            return bad("max_age", "must be >= tick");
        }
        if self.max_body == 0 {
            return bad("max_body", "must be > 0");
        }
        let parse = |field: &'static str, s: &Option<String>| match s {
            None => Ok(None),
            Some(s) => Selector::parse(s)
                .map(Some)
                .map_err(|e| InvalidProbeConfig {
                    field,
                    bound: "must be name or name{label=\"value\",...}",
                    selector: Some(e),
                }),
        };
        let m = &self.metrics;
        let sel = Selectors {
            cpu: parse("metrics.cpu", &m.cpu)?,
            proc_time: parse("metrics.proc_time", &m.proc_time)?,
            latency: parse("metrics.latency", &m.latency)?,
        };
        if sel.cpu.is_none() && sel.proc_time.is_none() && sel.latency.is_none() {
            return bad("metrics", "must name at least one figure");
        }
        Ok(sel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_ric_simulators_metrics() {
        let sel = ProbeConfig::default().validate().expect("valid");
        assert_eq!(
            sel.cpu.map(|s| s.name),
            Some("ric_cpu_utilisation_ratio".into())
        );
        let lat = sel.latency.expect("latency");
        assert_eq!(lat.name, "ric_processing_latency_seconds");
        assert_eq!(lat.labels, vec![("quantile".into(), "0.99".into())]);
    }

    #[test]
    fn validate_names_the_field() {
        let field = |f: fn(&mut ProbeConfig)| {
            let mut c = ProbeConfig::default();
            f(&mut c);
            c.validate().expect_err("invalid").field
        };
        assert_eq!(field(|c| c.tick = Duration::ZERO), "tick");
        assert_eq!(field(|c| c.timeout = Duration::from_secs(2)), "timeout");
        assert_eq!(field(|c| c.unhealthy_after = 0), "unhealthy_after");
        assert_eq!(field(|c| c.max_age = Duration::from_millis(10)), "max_age");
        assert_eq!(field(|c| c.max_body = 0), "max_body");
        assert_eq!(field(|c| c.metrics.cpu = Some("1x".into())), "metrics.cpu");
        assert_eq!(
            field(|c| c.metrics = MetricNames {
                cpu: None,
                proc_time: None,
                latency: None
            }),
            "metrics"
        );
    }
}
