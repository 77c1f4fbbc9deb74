//! Active probes of backend load figures (issue 3).
//!
//! Layout, pure core first:
//! - [`expo`]: tolerant Prometheus text-exposition parser and [`Selector`]s.
//! - [`config`]: [`ProbeConfig`], defaults matching the RIC simulator, validation.
//! - [`state`]: [`ProbeState`] per backend (samples, age, failures, health)
//!   and [`ProbeBook`] for a pool, fed one [`ProbeRound`] at a time.
//! - [`error`]: [`ProbeError`], one typed reason per failed probe.
//! - [`promql`]: [`PromqlConfig`] and the parsing of `/api/v1/query` answers.
//!
//! Shell:
//! - [`http`]: the hyper 1 GET with a deadline, and [`Target`] (backend + URL).
//! - [`prober`]: [`Prober::round`] (one synchronised round) and [`run`] (every tick).

pub mod config;
pub mod error;
pub mod expo;
pub mod http;
pub mod prober;
pub mod promql;
pub mod state;

pub use config::{InvalidProbeConfig, MetricNames, ProbeConfig, Selectors};
pub use error::ProbeError;
pub use expo::Selector;
pub use http::Target;
pub use prober::{run, ProbeStats, Prober, Source};
pub use promql::PromqlConfig;
pub use state::{Figures, HealthChange, ProbeBook, ProbeRound, ProbeSamples, ProbeState};
