//! Leader election among e2lb replicas through etcd: exactly one replica
//! actuates scaling decisions.
//!
//! Several e2lb replicas may front the same RIC pool. They all balance, but
//! only the leader may act on the scaler's decisions. [`run`] campaigns in an
//! etcd v3 election (the `v3election` gRPC service, served by etcd 3.4 and
//! later) under a lease, and publishes this replica's [`Role`] on a
//! [`tokio::sync::watch`] channel. The scaler shell reads `*rx.borrow()` right
//! before each actuation and acts only while it says [`Role::Leader`].
//!
//! # Safety argument (never two leaders for longer than the lease allows)
//!
//! - The candidate key is attached to a lease of `lease_ttl`; etcd deletes it
//!   when the lease expires or is revoked, and only then can the next
//!   candidate's key become the oldest one, i.e. the leader (its campaign
//!   returns, or the election's observer reports it: whichever comes first
//!   promotes it).
//! - Every keep-alive that etcd acknowledges extends the lease to at least
//!   *send time + ttl* (etcd starts the TTL when it *receives* the request,
//!   which is after we sent it). So the lease cannot expire before
//!   `last_ok + ttl`, where `last_ok` is the **send** time of the latest
//!   acknowledged keep-alive (or of the grant).
//! - The leader demotes itself once `now - last_ok >= ttl - step_down_margin`,
//!   i.e. at least `step_down_margin` *before* etcd could hand the leadership
//!   to someone else, whether etcd is gone, frozen or partitioned away. The
//!   margin covers an actuation already under way and timer slack.
//! - Any keep-alive error, a TTL-0 answer (lease expired or revoked), an
//!   error of the election stream, or an observation that a newer key leads
//!   the election demotes at once.
//!
//! The one thing this cannot cover is a process whose own timers stall for
//! longer than the margin (a frozen runtime, a suspended VM): keep the margin
//! well above any plausible scheduling hiccup.
//!
//! # Life cycle
//!
//! One *session* = connect, grant a lease, keep it alive every `ttl / 3`,
//! observe the election, revoke the leases that failed sessions could not
//! revoke (after an etcd restart their keys would otherwise block the
//! election for another TTL), and campaign. A session that fails for any reason demotes (if leading),
//! revokes its lease best-effort (so the others need not wait for the TTL)
//! and is retried with jittered exponential back-off (100 ms up to
//! `min(ttl, 5 s)`). On `shutdown` [`run`] demotes first, then revokes the
//! lease, which deletes the candidate key: a clean stop hands over at once.
//!
//! Every role change is logged (`info!` when becoming leader or when the
//! observed leader changes, `warn!` when stepping down, with the reason) and
//! counted in [`LeaderMetrics`].
//!
//! Without etcd configured (the single-replica default), use [`solo`]: a
//! channel that always says [`Role::Leader`]. [`leader_flag`] turns the role
//! channel into the `watch::Receiver<bool>` that `scale::control` takes.
//!
//! `tests/leader_etcd.rs` runs contenders as separate processes against a
//! real etcd: SIGKILL of the leader, clean stop, etcd killed and restarted,
//! etcd frozen; it checks on one clock that no two leaderships overlap.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use futures_util::{FutureExt, StreamExt};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

/// Default lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default timeout for connecting and for each short RPC (grant, revoke).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default election name.
pub const DEFAULT_KEY: &str = "/e2lb/scaler-leader";

/// Shortest back-off between failed sessions.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest back-off between failed sessions (also capped at the TTL).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Leases of failed sessions remembered for a later revoke.
const MAX_STALE_LEASES: usize = 16;

/// Configuration of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// etcd client URLs, e.g. `http://etcd-0.etcd:2379`.
    pub endpoints: Vec<String>,
    /// Election name (a key prefix in etcd), e.g. [`DEFAULT_KEY`]. All
    /// replicas of one pool must use the same name.
    pub key: String,
    /// This replica's identity, published as the leader's value; e.g.
    /// [`LeaderConfig::default_id`] (hostname-pid).
    pub id: String,
    /// Lease TTL: how long a dead leader blocks the election at most. etcd
    /// counts whole seconds: a fraction is rounded up in the request, while
    /// the step-down deadline uses the shorter of this and the granted TTL.
    pub lease_ttl: Duration,
    /// A leader that cannot renew steps down this long before its lease can
    /// expire at the server (at `ttl - margin` after the last acknowledged
    /// keep-alive was sent). At most half the TTL.
    pub step_down_margin: Duration,
    /// Timeout for connecting and for each short RPC (grant, revoke).
    pub connect_timeout: Duration,
}

impl LeaderConfig {
    /// Defaults: TTL 10 s, margin TTL/4 (2.5 s), connect timeout 3 s.
    pub fn new(endpoints: Vec<String>, key: impl Into<String>, id: impl Into<String>) -> Self {
        LeaderConfig {
            endpoints,
            key: key.into(),
            id: id.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            step_down_margin: DEFAULT_LEASE_TTL / 4,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Sets the TTL and the margin to TTL/4.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self.step_down_margin = ttl / 4;
        self
    }

    /// `hostname-pid`: unique per process, readable in logs and in etcd.
    pub fn default_id() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname
        // writes at most that many.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let host = if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        let host = if host.is_empty() { "e2lb" } else { &host };
        format!("{host}-{}", std::process::id())
    }

    /// Checks the configuration; [`run`] does this first.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |m: String| Err(LeaderError::InvalidConfig(m));
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return bad("endpoints: at least one, none empty".into());
        }
        if self.key.is_empty() {
            return bad("key: empty".into());
        }
        if self.id.is_empty() {
            return bad("id: empty".into());
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return bad(format!(
                "lease_ttl {:?}: etcd leases count whole seconds, at least 1 s",
                self.lease_ttl
            ));
        }
        if self.step_down_margin.is_zero() || self.step_down_margin > self.lease_ttl / 2 {
            return bad(format!(
                "step_down_margin {:?}: must be > 0 and at most half of lease_ttl {:?}",
                self.step_down_margin, self.lease_ttl
            ));
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout: zero".into());
        }
        Ok(())
    }

    /// TTL requested from etcd, in whole seconds (rounded up).
    fn ttl_request_secs(&self) -> i64 {
        let s = self.lease_ttl.as_secs() as i64;
        if self.lease_ttl.subsec_nanos() > 0 {
            s + 1
        } else {
            s
        }
    }
}

/// Errors of [`run`]: only a bad configuration; etcd failures are retried.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: invalid configuration: {0}")]
    InvalidConfig(String),
}

/// This replica's leadership state, as published on the watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not the leader. `leader` is the current leader's id as last observed
    /// in etcd (`None` while unknown or while this replica has no session).
    Follower { leader: Option<String> },
    /// This replica holds the election and may actuate.
    Leader,
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader)
    }
}

impl Default for Role {
    fn default() -> Self {
        Role::Follower { leader: None }
    }
}

/// For the single-replica default (no etcd configured): always leader. Keep
/// the sender alive as long as the receiver is used.
pub fn solo() -> (watch::Sender<Role>, watch::Receiver<Role>) {
    watch::channel(Role::Leader)
}

/// Adapts the role channel to a plain "may actuate" flag (what
/// `scale::control` takes): a task, spawned on the current runtime, mirrors
/// `role.is_leader()` until either side goes away. The flag lags the role by
/// one task wake-up.
pub fn leader_flag(mut roles: watch::Receiver<Role>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(roles.borrow_and_update().is_leader());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = roles.changed() => {
                    if changed.is_err() {
                        // No more elections: never leader again.
                        tx.send_replace(false);
                        return;
                    }
                    let leader = roles.borrow_and_update().is_leader();
                    tx.send_if_modified(|v| std::mem::replace(v, leader) != leader);
                }
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// Metrics of the election (register them in the proxy's registry so one
/// `/metrics` page shows everything).
#[derive(Debug, Clone)]
pub struct LeaderMetrics {
    /// `e2lb_leader_transitions_total{to="leader"|"follower"}`: changes of
    /// this replica's role (not changes of the observed leader).
    pub transitions: IntCounterVec,
    /// `e2lb_leader_is_leader`: 1 while this replica is the leader.
    pub is_leader: IntGauge,
}

impl LeaderMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered();
        registry.register(Box::new(m.transitions.clone()))?;
        registry.register(Box::new(m.is_leader.clone()))?;
        Ok(m)
    }

    /// Creates the metrics without registering them (tests, or a caller
    /// that only reads the counters).
    pub fn unregistered() -> Self {
        let transitions = IntCounterVec::new(
            Opts::new(
                "e2lb_leader_transitions_total",
                "Changes of this replica's leadership role, by the role entered",
            ),
            &["to"],
        )
        .expect("valid metric");
        let is_leader = IntGauge::new(
            "e2lb_leader_is_leader",
            "1 while this replica holds the scaler leadership",
        )
        .expect("valid metric");
        LeaderMetrics {
            transitions,
            is_leader,
        }
    }

    /// Transitions into `to` (`"leader"` or `"follower"`) so far.
    pub fn transitions_to(&self, to: &str) -> u64 {
        self.transitions.with_label_values(&[to]).get()
    }
}

/// Campaigns for the leadership until `shutdown` resolves, publishing this
/// replica's role on `tx` (see the module docs for the guarantees).
///
/// Returns `Err` only for an invalid configuration, at once. etcd failures
/// are logged and retried with back-off; the role is
/// `Follower { leader: None }` meanwhile. On return the role is `Follower`
/// and the lease has been revoked if etcd could be reached.
pub async fn run(
    cfg: LeaderConfig,
    tx: watch::Sender<Role>,
    metrics: LeaderMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError> {
    cfg.validate()?;
    let mut shutdown = pin!(shutdown);
    let backoff_max = cfg.lease_ttl.min(BACKOFF_MAX);
    let mut el = Elector {
        cfg,
        tx,
        metrics,
        client: None,
        lease: None,
        stale: Stale::default(),
    };
    el.set_role(Role::default(), "starting");
    info!(
        id = %el.cfg.id,
        key = %el.cfg.key,
        endpoints = ?el.cfg.endpoints,
        lease_ttl = ?el.cfg.lease_ttl,
        step_down_margin = ?el.cfg.step_down_margin,
        "leader election: starting"
    );
    let mut backoff = BACKOFF_MIN;
    loop {
        let outcome = tokio::select! {
            o = el.session() => o,
            _ = shutdown.as_mut() => break,
        };
        // Demote first, then release: never leader without a live session.
        el.set_role(Role::default(), &outcome.reason);
        el.release(false).await;
        if outcome.granted {
            backoff = BACKOFF_MIN;
        }
        // Full jitter in [backoff/2, backoff], so replicas do not retry in step.
        let wait = backoff.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        backoff = (backoff * 2).min(backoff_max);
        warn!(
            id = %el.cfg.id,
            key = %el.cfg.key,
            reason = %outcome.reason,
            retry_in = ?wait,
            "leader election: session ended; retrying"
        );
        tokio::select! {
            _ = sleep(wait) => {}
            _ = shutdown.as_mut() => break,
        }
    }
    el.set_role(Role::default(), "shutdown");
    el.release(true).await;
    info!(id = %el.cfg.id, key = %el.cfg.key, "leader election: stopped");
    Ok(())
}

/// Why a session ended.
struct Outcome {
    reason: String,
    /// A lease was granted (etcd was reachable): resets the back-off.
    granted: bool,
}

/// A leader key seen by the observer.
#[derive(Debug)]
struct Seen {
    /// The leader's id (the key's value).
    id: String,
    /// The key's create revision (election order).
    rev: i64,
    /// The key's lease (ours if it is our key).
    lease: i64,
}

type Observed = Result<Seen, String>;

/// Leases of failed sessions whose revoke failed, shared with the session's
/// cleanup (revoked as soon as etcd answers again, so a restarted etcd does
/// not keep our old key for another TTL).
type Stale = Arc<Mutex<Vec<i64>>>;

struct Elector {
    cfg: LeaderConfig,
    tx: watch::Sender<Role>,
    metrics: LeaderMetrics,
    /// Client of the current (or last) session.
    client: Option<Client>,
    /// Lease of the current (or last) session, until revoked.
    lease: Option<i64>,
    stale: Stale,
}

impl Elector {
    /// Publishes `new` if it differs; logs and counts the change.
    fn set_role(&self, new: Role, reason: &str) {
        let old = self.tx.borrow().clone();
        if old == new {
            return;
        }
        let (id, key) = (&self.cfg.id, &self.cfg.key);
        match (old.is_leader(), &new) {
            (false, Role::Leader) => {
                self.metrics
                    .transitions
                    .with_label_values(&["leader"])
                    .inc();
                self.metrics.is_leader.set(1);
                info!(%id, %key, %reason, "leader election: this replica is now the LEADER");
            }
            (true, Role::Follower { leader }) => {
                self.metrics
                    .transitions
                    .with_label_values(&["follower"])
                    .inc();
                self.metrics.is_leader.set(0);
                warn!(%id, %key, %reason, ?leader, "leader election: STEPPED DOWN to follower");
            }
            (_, Role::Follower { leader }) => {
                info!(%id, %key, %reason, ?leader, "leader election: follower; observed leader changed");
            }
            (true, Role::Leader) => {}
        }
        self.tx.send_replace(new);
    }

    /// Revokes the session's lease (deleting our candidate key: a resign),
    /// best-effort within the connect timeout. A failed revoke is remembered
    /// for the next session unless `last`.
    async fn release(&mut self, last: bool) {
        let (Some(lease), Some(mut client)) = (self.lease.take(), self.client.take()) else {
            return;
        };
        match timeout(self.cfg.connect_timeout, client.lease_revoke(lease)).await {
            Ok(Ok(_)) => info!(
                id = %self.cfg.id,
                lease = format_args!("{lease:x}"),
                "leader election: lease revoked (resigned)"
            ),
            Ok(Err(e)) if is_lease_not_found(&e) => debug!(
                lease = format_args!("{lease:x}"),
                "leader election: lease already gone"
            ),
            r => {
                let err = match r {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                warn!(
                    id = %self.cfg.id,
                    lease = format_args!("{lease:x}"),
                    %err,
                    "leader election: could not revoke the lease; it expires after its TTL"
                );
                let mut stale = self.stale.lock().expect("stale leases");
                if !last && stale.len() < MAX_STALE_LEASES {
                    stale.push(lease);
                }
            }
        }
    }

    /// One session: connect, lease, keep-alive, observe, clean up, campaign.
    /// Returns only on failure (the caller races it against shutdown).
    ///
    /// Nothing in the loop's arms awaits: the step-down deadline is always
    /// polled in time.
    async fn session(&mut self) -> Outcome {
        let fail = |reason: String, granted: bool| Outcome { reason, granted };
        let ct = self.cfg.connect_timeout;
        let opts = ConnectOptions::new()
            .with_connect_timeout(ct)
            // A member cut off from its cluster refuses instead of hanging.
            .with_require_leader(true);
        let client = match timeout(ct, Client::connect(&self.cfg.endpoints, Some(opts))).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return fail(format!("connect: {e}"), false),
            Err(_) => return fail("connect: timed out".into(), false),
        };
        self.client = Some(client.clone());
        let mut client = client;

        // The lease: its expiry cannot come before `last_ok + ttl`.
        let mut last_ok = Instant::now();
        let granted = match timeout(ct, client.lease_grant(self.cfg.ttl_request_secs(), None)).await
        {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return fail(format!("lease grant: {e}"), false),
            Err(_) => return fail("lease grant: timed out".into(), false),
        };
        let lease = granted.id();
        self.lease = Some(lease);
        let ttl = self
            .cfg
            .lease_ttl
            .min(Duration::from_secs(granted.ttl().max(0) as u64));
        let margin = self.cfg.step_down_margin.min(ttl / 2);
        let hold = ttl - margin;
        let every = ttl / 3;
        info!(
            id = %self.cfg.id,
            key = %self.cfg.key,
            lease = format_args!("{lease:x}"),
            granted_ttl_s = granted.ttl(),
            hold = ?hold,
            keepalive_every = ?every,
            "leader election: lease granted; campaigning"
        );

        let sent = Instant::now();
        let (mut keeper, mut acks) = match timeout(ct, client.lease_keep_alive(lease)).await {
            Ok(Ok(k)) => k,
            Ok(Err(e)) => return fail(format!("keep-alive: {e}"), true),
            Err(_) => return fail("keep-alive: timed out".into(), true),
        };
        last_ok = last_ok.max(sent);
        // Send times of the keep-alives not answered yet, oldest first
        // (etcd answers them in order).
        let mut inflight: VecDeque<Instant> = VecDeque::new();
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let (obs_tx, mut observed) = mpsc::channel::<Observed>(16);
        let _observer = AbortOnDrop(tokio::spawn(observe(
            client.clone(),
            self.cfg.key.clone(),
            obs_tx,
        )));

        // Revoke the leases of earlier failed sessions (etcd answers again:
        // the grant worked), then campaign. The campaign must not be dropped
        // while leading: the server resigns a cancelled campaign's key.
        let campaign = {
            let (mut c, stale) = (client.clone(), self.stale.clone());
            let (key, id) = (self.cfg.key.clone(), self.cfg.id.clone());
            async move {
                revoke_stale(&mut c, &stale, ct, &id).await;
                c.campaign(key, id, lease).await
            }
        };
        let mut campaign = pin!(campaign);
        let mut campaigning = true;
        // Create revision of our key, once it leads.
        let mut our_rev: Option<i64> = None;

        loop {
            let deadline = last_ok + hold;
            tokio::select! {
                biased;
                _ = sleep_until(deadline) => {
                    return fail(
                        format!(
                            "no keep-alive acknowledged for {:?} (>= ttl {ttl:?} - margin {margin:?}): \
                             stepping down before the lease can expire",
                            Instant::now() - last_ok
                        ),
                        true,
                    );
                }
                ack = acks.next() => match ack {
                    Some(Ok(r)) if r.ttl() > 0 => {
                        if let Some(t) = inflight.pop_front() {
                            last_ok = last_ok.max(t);
                        }
                    }
                    Some(Ok(_)) => {
                        return fail("lease expired or revoked at the server (keep-alive TTL 0)".into(), true)
                    }
                    Some(Err(e)) => return fail(format!("keep-alive stream: {e}"), true),
                    None => return fail("keep-alive stream closed by the server".into(), true),
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    // A queue slot is free unless etcd stopped reading; never wait here.
                    match keeper.keep_alive().now_or_never() {
                        Some(Ok(())) => inflight.push_back(now),
                        Some(Err(e)) => return fail(format!("keep-alive send: {e}"), true),
                        None => return fail("keep-alive send: queue full".into(), true),
                    }
                }
                r = &mut campaign, if campaigning => {
                    campaigning = false;
                    let resp = match r {
                        Ok(resp) => resp,
                        Err(e) => return fail(format!("campaign: {e}"), true),
                    };
                    let rev = resp.leader().map(|k| k.rev());
                    debug!(?rev, "leader election: campaign returned");
                    if our_rev.is_none() {
                        if Instant::now() >= last_ok + hold {
                            return fail("campaign won after the lease hold ran out".into(), true);
                        }
                        our_rev = Some(rev.unwrap_or(0));
                        self.set_role(Role::Leader, "won the campaign");
                    }
                }
                o = observed.recv() => match o {
                    // Our key leads (the oldest key of the election): leader,
                    // even before the campaign call returns.
                    Some(Ok(seen)) if seen.lease == lease => {
                        if our_rev.is_none() {
                            if Instant::now() >= last_ok + hold {
                                return fail("elected after the lease hold ran out".into(), true);
                            }
                            our_rev = Some(seen.rev);
                            self.set_role(Role::Leader, "our key leads the election");
                        }
                    }
                    Some(Ok(seen)) => match our_rev {
                        // A key newer than ours leads: ours was deleted.
                        Some(rev) if seen.rev > rev => {
                            return fail(
                                format!(
                                    "observed {} (key rev {}) leading after our key (rev {rev}) vanished",
                                    seen.id, seen.rev
                                ),
                                true,
                            );
                        }
                        // An older event delivered late.
                        Some(_) => {}
                        None => self.set_role(Role::Follower { leader: Some(seen.id) }, "observed leader"),
                    },
                    Some(Err(e)) => return fail(format!("observe: {e}"), true),
                    None => return fail("observer ended".into(), true),
                },
            }
        }
    }
}

/// Revokes the stale leases in parallel (within `ct`); drops the revoked and
/// the already expired ones from the list.
async fn revoke_stale(client: &mut Client, stale: &Stale, ct: Duration, id: &str) {
    let leases = stale.lock().expect("stale leases").clone();
    if leases.is_empty() {
        return;
    }
    let attempts = leases.iter().map(|&lease| {
        let mut c = client.clone();
        async move { (lease, timeout(ct, c.lease_revoke(lease)).await) }
    });
    let mut done = Vec::new();
    for (lease, r) in futures_util::future::join_all(attempts).await {
        match r {
            Ok(Ok(_)) => {
                info!(
                    %id,
                    lease = format_args!("{lease:x}"),
                    "leader election: revoked the lease of an earlier session"
                );
                done.push(lease);
            }
            Ok(Err(e)) if is_lease_not_found(&e) => done.push(lease),
            Ok(Err(e)) => {
                debug!(lease = format_args!("{lease:x}"), %e, "leader election: earlier lease not revoked yet")
            }
            Err(_) => debug!(
                lease = format_args!("{lease:x}"),
                "leader election: earlier lease not revoked yet (timed out)"
            ),
        }
    }
    stale
        .lock()
        .expect("stale leases")
        .retain(|l| !done.contains(l));
}

/// Streams the election's leader key into `tx`; an error ends the stream
/// with `Err`.
async fn observe(mut client: Client, key: String, tx: mpsc::Sender<Observed>) {
    let mut stream = match client.observe(key).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e.to_string())).await;
            return;
        }
    };
    loop {
        let item = match stream.message().await {
            Ok(Some(resp)) => match resp.kv() {
                Some(kv) => Ok(Seen {
                    id: String::from_utf8_lossy(kv.value()).into_owned(),
                    rev: kv.create_revision(),
                    lease: kv.lease(),
                }),
                None => continue,
            },
            Ok(None) => Err("stream closed by the server".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let end = item.is_err();
        if tx.send(item).await.is_err() || end {
            return;
        }
    }
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("lease not found"))
}

/// Aborts the task when dropped (the observer dies with its session).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LeaderConfig {
        LeaderConfig::new(vec!["http://127.0.0.1:2379".into()], DEFAULT_KEY, "a")
    }

    #[test]
    fn defaults_validate() {
        let c = cfg();
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.step_down_margin, Duration::from_millis(2500));
        c.validate().expect("defaults are valid");
        assert_eq!(c.ttl_request_secs(), 10);
        let c = cfg().with_lease_ttl(Duration::from_millis(2500));
        assert_eq!(c.ttl_request_secs(), 3);
        c.validate().expect("valid");
    }

    #[test]
    fn invalid_configs_are_refused() {
        type Edit = Box<dyn Fn(&mut LeaderConfig)>;
        let cases: Vec<Edit> = vec![
            Box::new(|c| c.endpoints.clear()),
            Box::new(|c| c.endpoints.push(" ".into())),
            Box::new(|c| c.key.clear()),
            Box::new(|c| c.id.clear()),
            Box::new(|c| c.lease_ttl = Duration::from_millis(500)),
            Box::new(|c| c.step_down_margin = Duration::ZERO),
            Box::new(|c| c.step_down_margin = Duration::from_secs(6)),
            Box::new(|c| c.connect_timeout = Duration::ZERO),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut c = cfg();
            f(&mut c);
            assert!(c.validate().is_err(), "case {i}: {c:?}");
        }
    }

    #[test]
    fn solo_is_always_leader() {
        let (_tx, rx) = solo();
        assert!(rx.borrow().is_leader());
    }

    #[tokio::test]
    async fn leader_flag_mirrors_the_role() {
        let (tx, rx) = watch::channel(Role::default());
        let mut flag = leader_flag(rx);
        assert!(!*flag.borrow_and_update());
        tx.send_replace(Role::Leader);
        timeout(Duration::from_secs(1), flag.changed())
            .await
            .expect("in time")
            .expect("open");
        assert!(*flag.borrow_and_update());
        tx.send_replace(Role::Follower {
            leader: Some("b".into()),
        });
        timeout(Duration::from_secs(1), flag.changed())
            .await
            .expect("in time")
            .expect("open");
        assert!(!*flag.borrow_and_update());
        tx.send_replace(Role::Leader);
        timeout(Duration::from_secs(1), flag.changed())
            .await
            .expect("in time")
            .expect("open");
        drop(tx);
        // The election is gone: the flag drops to false.
        timeout(Duration::from_secs(1), flag.changed())
            .await
            .expect("in time")
            .ok();
        assert!(!*flag.borrow());
    }

    #[test]
    fn default_id_names_host_and_pid() {
        let id = LeaderConfig::default_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() > 2);
    }

    #[test]
    fn role_changes_are_counted_once() {
        let (tx, rx) = watch::channel(Role::default());
        let metrics = LeaderMetrics::unregistered();
        let el = Elector {
            cfg: cfg(),
            tx,
            metrics: metrics.clone(),
            client: None,
            lease: None,
            stale: Stale::default(),
        };
        el.set_role(Role::Leader, "test");
        el.set_role(Role::Leader, "test");
        assert!(rx.borrow().is_leader());
        assert_eq!(metrics.is_leader.get(), 1);
        el.set_role(Role::default(), "test");
        el.set_role(
            Role::Follower {
                leader: Some("b".into()),
            },
            "test",
        );
        assert_eq!(metrics.transitions_to("leader"), 1);
        assert_eq!(metrics.transitions_to("follower"), 1);
        assert_eq!(metrics.is_leader.get(), 0);
    }

    #[tokio::test]
    async fn invalid_config_returns_at_once() {
        let (tx, _rx) = watch::channel(Role::default());
        let mut c = cfg();
        c.key.clear();
        let r = run(c, tx, LeaderMetrics::unregistered(), std::future::pending()).await;
        assert!(matches!(r, Err(LeaderError::InvalidConfig(_))));
    }

    #[tokio::test]
    async fn unreachable_etcd_stays_follower_and_stops_on_shutdown() {
        // A port nobody listens on: sessions fail, the role stays Follower,
        // and shutdown ends `run` promptly.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut c = LeaderConfig::new(vec![format!("http://127.0.0.1:{port}")], "/t", "a")
            .with_lease_ttl(Duration::from_secs(2));
        c.connect_timeout = Duration::from_millis(200);
        let (tx, rx) = watch::channel(Role::Leader);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(c, tx, LeaderMetrics::unregistered(), async {
            let _ = stopped.await;
        }));
        sleep(Duration::from_millis(700)).await;
        assert_eq!(*rx.borrow(), Role::Follower { leader: None });
        stop.send(()).expect("send");
        timeout(Duration::from_secs(2), task)
            .await
            .expect("run ends on shutdown")
            .expect("join")
            .expect("valid config");
    }
}
