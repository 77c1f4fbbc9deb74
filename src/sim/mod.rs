//! The load-test harness: E2 node and near-RT RIC simulators.
//!
//! Both are library code generic over the transport traits, so tests and the
//! demo run them in-process over the in-memory transport and the CLI runs
//! them over kernel SCTP:
//!
//! - [`node::run_nodes`] (`e2lb sim node`): N E2 nodes, one association
//!   each, sending RIC Indications open-loop at a [`TrafficClass`] rate shaped
//!   by a [`RateProfile`]; live counters in [`node::NodeLive`], totals in
//!   [`node::NodeReport`].
//! - [`ric::run_ric`] (`e2lb sim ric`): a RIC backend that answers E2 Setup,
//!   subscribes, checks every indication (sequence gaps, integrity, end-to-end
//!   latency) and times RIC Control round trips; live figures in
//!   [`ric::RicLive`], served by [`metrics::serve_metrics`]; totals in
//!   [`ric::RicReport`].
//!
//! Layout: [`traffic`] (classes, profiles: pure), [`payload`] (the indication
//! header both sides agree on), [`seq`] (gap/duplicate/reorder checking:
//! pure), [`latency`] (HdrHistogram helpers and the JSON summary), [`cpu`]
//! (CPU time sources), `pump` (one association driven by one task).
//!
//! Real E2 stacks behave differently from these simulators (DESIGN §2b); the
//! simulators only exercise e2lb's message relay, balancing and scaling.

pub mod cpu;
pub mod latency;
pub mod metrics;
pub mod node;
pub mod payload;
mod pump;
pub mod ric;
pub mod seq;
pub mod traffic;

pub use latency::LatencySummary;
pub use metrics::{bind_metrics, serve_metrics, serve_metrics_on};
pub use node::{run_nodes, NodeLive, NodeReport, NodeSimConfig};
pub use ric::{combined_loss, run_ric, CpuFigure, RicLive, RicReport, RicSimConfig};
pub use traffic::{RateProfile, TrafficClass, TrafficError};
