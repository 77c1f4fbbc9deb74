//! The built-in scaler (ORAN-HAutoscaling §7.1–7.5, DESIGN §4).
//!
//! Pure core first: the decision policy (HPA rules, combined metric, M/M/c
//! sizing, PID on latency) takes its inputs and the time as arguments and
//! returns a decision record. The shell feeds it from the live balancer and
//! hands its decisions to an [`actuator`] — only when this replica leads.

pub mod actuator;
pub mod control;
pub mod pid;
pub mod policy;
pub mod queueing;
pub mod sim;

use std::sync::Arc;

use crate::config::{ActuatorKind, Config};
use actuator::exec::ExecActuator;
use actuator::static_pool::StaticPool;
use actuator::{Actuator, ActuatorError};

/// The actuator `[scale] actuator` names, built from the configuration.
pub async fn build_actuator(cfg: &Config) -> Result<Arc<dyn Actuator>, ActuatorError> {
    Ok(match cfg.scale.actuator {
        ActuatorKind::Static => Arc::new(StaticPool::new(cfg.provisioned(), cfg.standby())),
        ActuatorKind::Exec => Arc::new(ExecActuator::new(cfg.exec(), cfg.provisioned())?),
        ActuatorKind::Kubernetes => {
            let k = cfg.scale.kubernetes.clone().ok_or(ActuatorError::Limit {
                actuator: "kubernetes",
                message: "[scale.kubernetes] is missing".into(),
            })?;
            Arc::new(actuator::kubernetes::KubernetesActuator::connect(k).await?)
        }
    })
}
