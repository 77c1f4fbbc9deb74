//! The static-pool actuator: a fixed list of backends, some active, the rest
//! standing by. Scaling up activates standbys in configuration order;
//! scaling down deactivates the backends the scaler chose (or, for any
//! remaining excess, the most recently activated). Nothing is started or
//! stopped: the pods exist already (e.g. a warm standby pool).

use std::sync::Mutex;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::{Actuator, ActuatorError, Provisioned};

#[derive(Debug)]
struct Entry {
    backend: Provisioned,
    /// Activation order (larger = later); `None` = standing by.
    active: Option<u64>,
}

/// See the module doc.
#[derive(Debug)]
pub struct StaticPool {
    entries: Mutex<(Vec<Entry>, u64)>,
}

impl StaticPool {
    /// `active` backends in use from the start, then `standby` ones.
    pub fn new(active: Vec<Provisioned>, standby: Vec<Provisioned>) -> Self {
        let mut n = 0;
        let mut entries = Vec::with_capacity(active.len() + standby.len());
        for b in active {
            n += 1;
            entries.push(Entry {
                backend: b,
                active: Some(n),
            });
        }
        for b in standby {
            entries.push(Entry {
                backend: b,
                active: None,
            });
        }
        StaticPool {
            entries: Mutex::new((entries, n)),
        }
    }

    /// Backends in use now (the same list [`Actuator::discover`] returns).
    pub fn active(&self) -> Vec<Provisioned> {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.0.iter()
            .filter(|e| e.active.is_some())
            .map(|e| e.backend.clone())
            .collect()
    }

    /// Total backends known (active + standby).
    pub fn capacity(&self) -> usize {
        self.entries.lock().map(|g| g.0.len()).unwrap_or(0)
    }

    pub(super) fn apply_now(
        &self,
        desired: u32,
        remove: &[Provisioned],
    ) -> Result<(), ActuatorError> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (entries, counter) = &mut *g;
        // Check everything before changing anything.
        if let Some(r) = remove
            .iter()
            .find(|r| !entries.iter().any(|e| e.backend.name == r.name))
        {
            return Err(ActuatorError::Limit {
                actuator: "static",
                message: format!("{} is not in the static pool", r.name),
            });
        }
        let desired = desired as usize;
        if desired > entries.len() {
            return Err(ActuatorError::Limit {
                actuator: "static",
                message: format!(
                    "{desired} backends wanted but the static pool has {} (backends + standby)",
                    entries.len()
                ),
            });
        }
        for e in entries.iter_mut() {
            if remove.iter().any(|r| r.name == e.backend.name) {
                e.active = None;
            }
        }
        let mut active = entries.iter().filter(|e| e.active.is_some()).count();
        // Activate standbys in configuration order, skipping the ones just removed.
        for e in entries.iter_mut() {
            if active >= desired {
                break;
            }
            if e.active.is_none() && !remove.iter().any(|r| r.name == e.backend.name) {
                *counter += 1;
                e.active = Some(*counter);
                active += 1;
            }
        }
        // Still short: reuse the removed ones rather than fail.
        for e in entries.iter_mut() {
            if active >= desired {
                break;
            }
            if e.active.is_none() {
                *counter += 1;
                e.active = Some(*counter);
                active += 1;
            }
        }
        // Excess: deactivate the most recently activated.
        while active > desired {
            let Some(e) = entries
                .iter_mut()
                .filter(|e| e.active.is_some())
                .max_by_key(|e| e.active)
            else {
                break;
            };
            e.active = None;
            active -= 1;
        }
        Ok(())
    }
}

impl Actuator for StaticPool {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> BoxFuture<'a, Result<(), ActuatorError>> {
        std::future::ready(self.apply_now(desired, remove)).boxed()
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
        std::future::ready(Ok(self.active())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u8) -> Provisioned {
        Provisioned {
            name: format!("ric-{i}"),
            addr: std::net::SocketAddr::from(([127, 0, 1, i], 36421)),
            metrics: None,
        }
    }

    fn names(p: &StaticPool) -> Vec<String> {
        p.active().into_iter().map(|b| b.name).collect()
    }

    #[tokio::test]
    async fn activates_standbys_in_order_and_removes_the_chosen() {
        let p = StaticPool::new(vec![b(1)], vec![b(2), b(3), b(4)]);
        assert_eq!(p.kind(), "static");
        assert_eq!(names(&p), ["ric-1"]);
        p.apply(3, &[]).await.unwrap();
        assert_eq!(names(&p), ["ric-1", "ric-2", "ric-3"]);
        // Idempotent.
        p.apply(3, &[]).await.unwrap();
        assert_eq!(p.discover().await.unwrap().len(), 3);
        // Remove the chosen one, not the newest.
        p.apply(2, &[b(1)]).await.unwrap();
        assert_eq!(names(&p), ["ric-2", "ric-3"]);
        // Excess without a choice: the most recently activated goes.
        p.apply(1, &[]).await.unwrap();
        assert_eq!(names(&p), ["ric-2"]);
        // Scaling up again prefers standbys that were not just removed.
        p.apply(2, &[b(2)]).await.unwrap();
        assert_eq!(names(&p), ["ric-1", "ric-3"]);
    }

    #[tokio::test]
    async fn limits_are_errors() {
        let p = StaticPool::new(vec![b(1)], vec![b(2)]);
        let e = p.apply(3, &[]).await.unwrap_err();
        assert_eq!(e.kind(), "limit");
        assert!(e.to_string().contains("static pool has 2"), "{e}");
        let e = p.apply(1, &[b(9)]).await.unwrap_err();
        assert!(e.to_string().contains("ric-9"), "{e}");
        assert_eq!(
            names(&p),
            ["ric-1"],
            "a failed apply changes nothing visible"
        );
    }
}
