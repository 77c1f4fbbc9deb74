//! The built-in scaler (ORAN-HAutoscaling §7.1–7.5, DESIGN §4).
//!
//! Pure core first: the decision policy (HPA rules, combined metric, M/M/c
//! sizing, PID on latency) takes its inputs and the time as arguments and
//! returns a decision record. The shell feeds it from the live balancer and
//! hands its decisions to an [`actuator`] — only when this replica leads.

pub mod actuator;
pub mod pid;
pub mod policy;
pub mod queueing;
