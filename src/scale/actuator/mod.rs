//! Actuators: what turns a scaling decision into RIC pods (backends) that
//! exist, and tells the pool which exist.
//!
//! The contract is the same for every kind, so the scaler's shell does not
//! care which one runs:
//!
//! - [`Actuator::apply`]: bring the number of backends to `desired`. The
//!   backends in `remove` were chosen by the scaler and are already drained
//!   (no association left); an actuator removes those first (stopping
//!   exactly them where it can, or, for a StatefulSet, by choosing them as
//!   the highest ordinals) and starts new ones for any shortfall.
//! - [`Actuator::discover`]: the backends that exist now, as the actuator sees
//!   them. The shell reconciles the pool with this list (adds new ones, which
//!   Bull-and-Bear prefers in Bear; forgets ones that are gone).
//!
//! Both are idempotent; a failure is returned (and retried by the shell with
//! back-off, counted and recorded), never swallowed.

pub mod exec;
pub mod kubernetes;
pub mod static_pool;

use std::net::SocketAddr;

use futures_util::future::BoxFuture;

/// A backend an actuator knows of.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Provisioned {
    /// Pool name (metric label): the pod or process name.
    pub name: String,
    /// E2 (SCTP) address.
    pub addr: SocketAddr,
    /// Metrics URL to probe (`None`: the pool's default for the address).
    pub metrics: Option<String>,
}

/// Why an actuation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActuatorError {
    /// The request could not be made or answered (network, API server, spawn).
    #[error("{actuator}: {message}")]
    Failed {
        actuator: &'static str,
        message: String,
    },
    /// The request is impossible with this actuator's configuration (e.g. more
    /// replicas than standby backends).
    #[error("{actuator}: {message}")]
    Limit {
        actuator: &'static str,
        message: String,
    },
}

impl ActuatorError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorError::Failed { .. } => "failed",
            ActuatorError::Limit { .. } => "limit",
        }
    }
}

/// Removes the backends in `remove` and brings their number to `desired`;
/// reports which exist.
pub trait Actuator: Send + Sync {
    /// Name in logs, metrics and decision records (`static`, `exec`, `kubernetes`).
    fn kind(&self) -> &'static str;

    /// Brings the pool to `desired` backends, removing the named ones first.
    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> BoxFuture<'a, Result<(), ActuatorError>>;

    /// The backends that exist now.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>>;

    /// When this actuator constrains which backends can go (a StatefulSet
    /// removes its highest ordinals), `candidates` in the order they must be
    /// removed; `None` (the default): any choice is fine.
    fn removal_order(&self, _candidates: &[Provisioned]) -> Option<Vec<Provisioned>> {
        None
    }
}
