//! e2lb: an E2AP-aware SCTP load balancer and xApp router for near-RT RIC pods.
//!
//! Layout (sans-IO core inside a thin tokio shell):
//! - [`e2ap`]: envelope peek (zero-copy, tolerant) and the full APER codec.
//! - [`transport`]: message-oriented associations: kernel SCTP and in-memory.
//! - [`session`]: per-E2-node state machine (pure).
//! - [`proxy`]: the tokio shell that relays associations through sessions.
//! - [`balance`]: backend pool and the Bull-and-Bear rule; [`probe`]: backend probes.
//! - [`scale`]: the scaler (pure policy) and its actuators.
//! - [`migrate`]: the migration planner (pure) and the re-homing of live associations.
//! - [`sim`]: E2 node and RIC simulators, the load-test harness.
//! - [`top`]: `e2lb top`, a live terminal view of a running instance.
//! - [`config`]: TOML configuration and its validation; [`reload`]: applying a new one while running.

pub mod admin;
pub mod balance;
pub mod config;
pub mod demo;
pub mod e2ap;
pub mod leader;
pub mod migrate;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod scale;
pub mod session;
pub mod sim;
pub mod top;
pub mod transport;
