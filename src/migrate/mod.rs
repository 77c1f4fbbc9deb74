//! Migration: the planner (pure) decides which associations move where; the
//! executor re-homes live associations through their sessions.

pub mod executor;
pub mod plan;

pub use executor::{Execution, Executor, ExecutorConfig};
