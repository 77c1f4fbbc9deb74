//! The exec actuator: backends are local processes e2lb starts and stops
//! with configured commands (the embedded default starts `e2lb sim ric`
//! processes on loopback, so the demo really grows and shrinks).
//!
//! - A new backend gets the next free address from `addresses` and the name
//!   `<name_prefix>-<n>`; the `start` command is run with placeholders
//!   replaced (`{exe}` this e2lb binary, `{name}`, `{addr}`, `{host}`,
//!   `{port}`, `{metrics_addr}`, `{metrics_port}`) and the same values in the
//!   environment (`E2LB_BACKEND_NAME`, `E2LB_BACKEND_ADDR`,
//!   `E2LB_BACKEND_METRICS_ADDR`).
//! - It is reported by [`Actuator::discover`] once ready: its metrics URL
//!   answers (or, without one, after a short settling delay), so the pool
//!   never sends an E2 node to a process that is not listening yet.
//! - Children are supervised: an exit that e2lb did not ask for is logged
//!   and counted, and the child is restarted with back-off (or, with
//!   `restart = false`, forgotten, so discovery reports it gone).
//! - Stopping sends SIGTERM, then SIGKILL after `stop_timeout`.
//! - The configured (external) backends are part of the count; removing one
//!   of them only deactivates it (e2lb did not start it, so it does not
//!   stop it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::watch;
use tracing::{info, warn};

use super::static_pool::StaticPool;
use super::{Actuator, ActuatorError, Provisioned};
use crate::probe::http::{metrics_url, url_host};

/// How backends are started (`[scale.exec]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecConfig {
    /// The command and its arguments, with placeholders (see the module doc).
    pub start: Vec<String>,
    /// Addresses new backends take, in order.
    pub addresses: Vec<SocketAddr>,
    /// Names are `<name_prefix>-<n>`.
    pub name_prefix: String,
    /// Port of each backend's metrics endpoint on its host (`None`: none).
    pub metrics_port: Option<u16>,
    pub metrics_path: String,
    /// SIGTERM → SIGKILL delay.
    pub stop_timeout: Duration,
    /// Longest wait for a new backend's metrics URL to answer.
    pub ready_timeout: Duration,
    /// Restart a child that exits on its own.
    pub restart: bool,
    /// First restart delay (doubles per consecutive failure, at most 30 s).
    pub restart_backoff: Duration,
    /// Where each child's stdout and stderr go (`<dir>/<name>.log`,
    /// appended); `None`: discarded.
    pub log_dir: Option<PathBuf>,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            start: [
                "{exe}",
                "sim",
                "ric",
                "--listen",
                "{addr}",
                "--metrics",
                "{metrics_addr}",
                "--name",
                "{name}",
            ]
            .map(String::from)
            .to_vec(),
            addresses: (4..=9)
                .map(|i| SocketAddr::from(([127, 0, 1, i], 36421)))
                .collect(),
            name_prefix: "ric-auto".into(),
            metrics_port: Some(8080),
            metrics_path: "/metrics".into(),
            stop_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(10),
            restart: true,
            restart_backoff: Duration::from_millis(500),
            log_dir: None,
        }
    }
}

/// Life-cycle counters of the children (for metrics).
#[derive(Debug, Default)]
pub struct ExecStats {
    pub started: AtomicU64,
    pub stopped: AtomicU64,
    /// Exits e2lb did not ask for.
    pub crashed: AtomicU64,
    pub restarted: AtomicU64,
}

#[derive(Debug)]
struct Child {
    backend: Provisioned,
    ready: watch::Receiver<bool>,
    /// Set when e2lb asks the child to stop (its exit is then expected).
    stopping: Arc<AtomicBool>,
    /// Current pid (changes on restart); 0 when not running.
    pid: Arc<AtomicU64>,
    /// Completes when the supervisor has finished (child gone for good).
    done: watch::Receiver<bool>,
}

/// See the module doc.
#[derive(Debug)]
pub struct ExecActuator {
    cfg: ExecConfig,
    exe: PathBuf,
    external: StaticPool,
    children: Mutex<Vec<Child>>,
    next: AtomicU64,
    stats: Arc<ExecStats>,
}

impl ExecActuator {
    /// `external` are the configured backends (counted, never started or stopped).
    pub fn new(cfg: ExecConfig, external: Vec<Provisioned>) -> Result<Self, ActuatorError> {
        let bad = |m: String| ActuatorError::Limit {
            actuator: "exec",
            message: m,
        };
        if cfg.start.is_empty() {
            return Err(bad("start: the command is empty".into()));
        }
        let exe = std::env::current_exe()
            .map_err(|e| bad(format!("locating the e2lb binary for {{exe}}: {e}")))?;
        Ok(ExecActuator {
            cfg,
            exe,
            external: StaticPool::new(external, Vec::new()),
            children: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            stats: Arc::default(),
        })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Arc<ExecStats> {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pid of a running child (for operators and tests).
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.lock()
            .iter()
            .find(|c| c.backend.name == name)
            .and_then(|c| u32::try_from(c.pid.load(Ordering::Relaxed)).ok())
            .filter(|p| *p > 0)
    }

    /// Children currently supervised (started, ready or not).
    pub fn children(&self) -> Vec<Provisioned> {
        self.lock().iter().map(|c| c.backend.clone()).collect()
    }

    fn metrics_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.cfg.metrics_port.map(|p| SocketAddr::new(addr.ip(), p))
    }

    fn argv(&self, name: &str, addr: SocketAddr) -> Vec<String> {
        let m = self.metrics_addr(addr);
        self.cfg
            .start
            .iter()
            .map(|a| {
                a.replace("{exe}", &self.exe.to_string_lossy())
                    .replace("{name}", name)
                    .replace("{addr}", &addr.to_string())
                    .replace("{host}", &url_host(addr.ip()))
                    .replace("{port}", &addr.port().to_string())
                    .replace(
                        "{metrics_addr}",
                        &m.map(|m| m.to_string()).unwrap_or_default(),
                    )
                    .replace(
                        "{metrics_port}",
                        &m.map(|m| m.port().to_string()).unwrap_or_default(),
                    )
            })
            .collect()
    }

    /// Starts one child on the first free address.
    fn start_one(&self, children: &mut Vec<Child>) -> Result<(), ActuatorError> {
        let taken: Vec<SocketAddr> = children
            .iter()
            .map(|c| c.backend.addr)
            .chain(self.external.active().into_iter().map(|b| b.addr))
            .collect();
        let Some(addr) = self
            .cfg
            .addresses
            .iter()
            .copied()
            .find(|a| !taken.contains(a))
        else {
            return Err(ActuatorError::Limit {
                actuator: "exec",
                message: format!(
                    "no free address left in scale.exec.addresses ({} configured)",
                    self.cfg.addresses.len()
                ),
            });
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}", self.cfg.name_prefix);
        let metrics = self
            .metrics_addr(addr)
            .map(|m| metrics_url(m.ip(), m.port(), &self.cfg.metrics_path));
        let argv = self.argv(&name, addr);
        let backend = Provisioned {
            name: name.clone(),
            addr,
            metrics: metrics.clone(),
        };
        let (ready_tx, ready) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        let stopping = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicU64::new(0));
        let sup = Supervisor {
            argv,
            env: vec![
                ("E2LB_BACKEND_NAME", name.clone()),
                ("E2LB_BACKEND_ADDR", addr.to_string()),
                (
                    "E2LB_BACKEND_METRICS_ADDR",
                    self.metrics_addr(addr)
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                ),
            ],
            name,
            metrics,
            cfg: self.cfg.clone(),
            stopping: stopping.clone(),
            pid: pid.clone(),
            stats: self.stats.clone(),
        };
        // Spawn now, so a command that cannot start is an error of this apply.
        let child = sup.spawn()?;
        tokio::spawn(sup.run(child, ready_tx, done_tx));
        children.push(Child {
            backend,
            ready,
            stopping,
            pid,
            done,
        });
        Ok(())
    }

    /// Asks a child to stop; returns a future that completes when it is gone.
    fn stop(&self, c: Child) -> impl std::future::Future<Output = ()> {
        c.stopping.store(true, Ordering::Relaxed);
        let pid = c.pid.load(Ordering::Relaxed);
        signal(pid, libc::SIGTERM);
        let timeout = self.cfg.stop_timeout;
        let name = c.backend.name.clone();
        let mut done = c.done;
        let pid_now = c.pid;
        async move {
            let finished = matches!(
                tokio::time::timeout(timeout, done.wait_for(|d| *d)).await,
                Ok(Ok(_))
            );
            if !finished {
                warn!(backend = %name, "backend did not stop after SIGTERM: SIGKILL");
                signal(pid_now.load(Ordering::Relaxed), libc::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
            }
        }
    }

    async fn apply_now(&self, desired: u32, remove: &[Provisioned]) -> Result<(), ActuatorError> {
        let mut stops = Vec::new();
        {
            let mut children = self.lock();
            // Removals: our children are stopped; external backends deactivated.
            let external_removed: Vec<Provisioned> = remove
                .iter()
                .filter(|r| !children.iter().any(|c| c.backend.name == r.name))
                .cloned()
                .collect();
            let ext_now = self.external.active().len();
            let ext_left = ext_now.saturating_sub(external_removed.len());
            self.external
                .apply_now(ext_left as u32, &external_removed)?;
            let mut i = 0;
            while i < children.len() {
                if remove.iter().any(|r| r.name == children[i].backend.name) {
                    let c = children.remove(i);
                    info!(backend = %c.backend.name, "stopping backend process (scale-down)");
                    stops.push(self.stop(c));
                } else {
                    i += 1;
                }
            }
            let desired = desired as usize;
            let mut have = self.external.active().len() + children.len();
            // Excess: stop the newest children.
            while have > desired {
                let Some(c) = children.pop() else { break };
                info!(backend = %c.backend.name, "stopping backend process (scale-down)");
                stops.push(self.stop(c));
                have -= 1;
            }
            while have < desired {
                self.start_one(&mut children)?;
                have += 1;
            }
        }
        for s in stops {
            s.await;
        }
        Ok(())
    }
}

fn signal(pid: u64, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        if p > 0 {
            // SAFETY: kill(2) on a pid this actuator spawned.
            unsafe {
                libc::kill(p, sig);
            }
        }
    }
}

/// Owns one child process: spawns it, waits for it, restarts it.
struct Supervisor {
    argv: Vec<String>,
    env: Vec<(&'static str, String)>,
    name: String,
    metrics: Option<String>,
    cfg: ExecConfig,
    stopping: Arc<AtomicBool>,
    pid: Arc<AtomicU64>,
    stats: Arc<ExecStats>,
}

impl Supervisor {
    fn spawn(&self) -> Result<tokio::process::Child, ActuatorError> {
        let (prog, args) = self.argv.split_first().ok_or(ActuatorError::Limit {
            actuator: "exec",
            message: "start: the command is empty".into(),
        })?;
        let (out, err) = self.output()?;
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| ActuatorError::Failed {
            actuator: "exec",
            message: format!("starting {}: {prog}: {e}", self.name),
        })?;
        self.pid
            .store(u64::from(child.id().unwrap_or(0)), Ordering::Relaxed);
        self.stats.started.fetch_add(1, Ordering::Relaxed);
        info!(backend = %self.name, pid = child.id(), command = ?self.argv, "backend process started");
        Ok(child)
    }

    /// The child's stdout and stderr: its log file, or nowhere.
    fn output(&self) -> Result<(Stdio, Stdio), ActuatorError> {
        let Some(dir) = &self.cfg.log_dir else {
            return Ok((Stdio::null(), Stdio::null()));
        };
        let path = dir.join(format!("{}.log", self.name));
        let open = || -> std::io::Result<(Stdio, Stdio)> {
            std::fs::create_dir_all(dir)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
        };
        open().map_err(|e| ActuatorError::Failed {
            actuator: "exec",
            message: format!("opening {}: {e}", path.display()),
        })
    }

    async fn wait_ready(&self) -> bool {
        let Some(url) = self.metrics.as_deref().and_then(|u| u.parse().ok()) else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            return true;
        };
        let deadline = tokio::time::Instant::now() + self.cfg.ready_timeout;
        while tokio::time::Instant::now() < deadline {
            if crate::probe::http::get(&url, Duration::from_millis(500), 1 << 20)
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn run(
        self,
        mut child: tokio::process::Child,
        ready: watch::Sender<bool>,
        done: watch::Sender<bool>,
    ) {
        let mut backoff = self.cfg.restart_backoff;
        loop {
            let ready_fut = self.wait_ready();
            tokio::pin!(ready_fut);
            let mut checked = false;
            let status = loop {
                tokio::select! {
                    st = child.wait() => break st,
                    ok = &mut ready_fut, if !checked => {
                        checked = true;
                        if ok {
                            info!(backend = %self.name, "backend process ready");
                            ready.send_replace(true);
                            backoff = self.cfg.restart_backoff;
                        } else {
                            warn!(backend = %self.name, timeout = ?self.cfg.ready_timeout,
                                  "backend process does not answer on its metrics URL: not used");
                        }
                    }
                }
            };
            if self.finish(&status, &ready) {
                break;
            }
            match self.restart(&mut backoff).await {
                Some(c) => child = c,
                None => break,
            }
        }
        self.pid.store(0, Ordering::Relaxed);
        done.send_replace(true);
    }

    /// Handles an exit; true when supervision ends.
    fn finish(
        &self,
        status: &std::io::Result<std::process::ExitStatus>,
        ready: &watch::Sender<bool>,
    ) -> bool {
        ready.send_replace(false);
        self.pid.store(0, Ordering::Relaxed);
        if self.stopping.load(Ordering::Relaxed) {
            self.stats.stopped.fetch_add(1, Ordering::Relaxed);
            info!(backend = %self.name, ?status, "backend process stopped");
            return true;
        }
        self.stats.crashed.fetch_add(1, Ordering::Relaxed);
        warn!(backend = %self.name, ?status, restart = self.cfg.restart, "backend process exited on its own");
        !self.cfg.restart
    }

    async fn restart(&self, backoff: &mut Duration) -> Option<tokio::process::Child> {
        loop {
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(Duration::from_secs(30));
            if self.stopping.load(Ordering::Relaxed) {
                return None;
            }
            match self.spawn() {
                Ok(c) => {
                    self.stats.restarted.fetch_add(1, Ordering::Relaxed);
                    return Some(c);
                }
                Err(e) => warn!(backend = %self.name, error = %e, "restart failed"),
            }
        }
    }
}

impl Actuator for ExecActuator {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> BoxFuture<'a, Result<(), ActuatorError>> {
        self.apply_now(desired, remove).boxed()
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
        let mut out = self.external.active();
        {
            let mut children = self.lock();
            // A child whose supervisor gave up (no restart) is gone.
            children.retain(|c| !*c.done.borrow());
            out.extend(
                children
                    .iter()
                    .filter(|c| *c.ready.borrow())
                    .map(|c| c.backend.clone()),
            );
        }
        std::future::ready(Ok(out)).boxed()
    }
}

impl Drop for ExecActuator {
    fn drop(&mut self) {
        // Children are also killed when their handles drop (kill_on_drop);
        // ask them to stop cleanly first.
        for c in self.lock().iter() {
            c.stopping.store(true, Ordering::Relaxed);
            signal(c.pid.load(Ordering::Relaxed), libc::SIGTERM);
        }
    }
}
