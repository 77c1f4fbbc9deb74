//! Faults over kernel SCTP (inside the rig), each with explicit loss
//! accounting from the simulators' per-subscription sequence numbers:
//!
//! - **e2lb itself is SIGKILLed and restarted on the same address**
//!   (`e2lb_killed_and_restarted_nodes_reconnect_and_resume`): the E2 node
//!   simulators see their associations end, reconnect with back-off and a
//!   fresh E2 Setup once the new instance listens, are subscribed again and
//!   resume. Lost are only the indications in flight through the killed
//!   instance (counted); every indication sent after the restart is received.
//! - **A backend is SIGSTOPped for 10 s**
//!   (`stopped_backend_goes_stale_and_new_nodes_go_elsewhere`): its probes
//!   time out, it turns unhealthy (no new associations), a second wave of
//!   nodes is placed on the two others only; after SIGCONT it is healthy again
//!   and its held-back indications arrive. Nothing is lost anywhere.
//! - **A multi-homed backend loses one path**
//!   (`multihomed_backend_survives_the_loss_of_a_path`): the RIC is bound to
//!   two addresses (10.91.0.1 and 10.91.0.2 on the guest's loopback), so its
//!   INIT-ACK makes e2lb's association to it multi-homed although e2lb
//!   connects to one address; deleting the primary address fails that path,
//!   SCTP retransmits on the other, and the association survives: no re-home,
//!   no new association, nothing lost.
//! - **A multi-homed backend's primary address is down when e2lb opens its
//!   associations** (`multihomed_backend_is_opened_on_its_secondary_address`):
//!   configured with `secondary_addrs`, e2lb opens each association to all of
//!   its addresses (`sctp_connectx`, RTO.Initial 1 s); the INIT to the dead
//!   primary goes unanswered and is sent to the secondary: every node is set
//!   up, nothing is lost, no connect fails.
//!
//! A backend killed mid-stream is `migrate_sctp`'s
//! `killed_backend_associations_are_rehomed`.

#[path = "common/accounting.rs"]
mod accounting;
#[path = "common/rig.rs"]
mod rig;
#[path = "common/rigproc.rs"]
mod rigproc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accounting::{metric, ric_metrics, spawn_ric, Ric};
use e2lb::sim::{NodeLive, NodeReport, NodeSimConfig, RicLive, RicSimConfig, TrafficClass};
use e2lb::transport::sctp::{SctpConnector, SctpListener};
use e2lb::transport::Options;
use rigproc::{addr, admin_metrics, backends, read_json, start_e2lb, wait_for, ProcOpts};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(200);
const PROC: ProcOpts = ProcOpts {
    env: &[],
    tail: 60,
    term_on_drop: None,
};

/// The scenarios take the guest's CPU each: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn e2lb_config(
    dir: &Path,
    listen: &str,
    admin: &str,
    backends: &[(&str, String, Option<String>)],
    metrics_port: u16,
) -> PathBuf {
    let backends: String = backends
        .iter()
        .map(|(name, e2, metrics)| {
            let m = metrics
                .as_ref()
                .map(|m| format!("metrics = \"{m}\"\n"))
                .unwrap_or_default();
            format!("[[backends]]\nname = \"{name}\"\naddr = \"{e2}\"\n{m}")
        })
        .collect();
    // [probe] tick 1 s, timeout 900 ms, unhealthy after 3 failures: a
    // stopped backend is unhealthy ~3-4 s after its last answer.
    let text = format!(
        r#"
[proxy]
listen = ["{listen}"]
drain_timeout = "3s"

{backends}
[balance]
latency_max = "2s"
max_age = "3s"

[probe]
tick = "1s"
timeout = "900ms"
unhealthy_after = 3
metrics_port = {metrics_port}

[migrate]
handover_timeout = "10s"

[admin]
listen = "{admin}"
"#
    );
    let path = dir.join("e2lb.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn nodes(
    target: &str,
    count: u32,
    first: u32,
    spread: Duration,
) -> (Arc<NodeLive>, JoinHandle<NodeReport>) {
    let cfg = NodeSimConfig {
        target: addr(target),
        nodes: count,
        first_node_id: first,
        ran_functions: vec![1],
        class: TrafficClass::B,
        duration: Duration::from_secs(900),
        drain: Duration::from_secs(2),
        connect_spread: spread,
        // Real agents come back within seconds (FlexRIC ~3 s, DESIGN §2b).
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        ..NodeSimConfig::default()
    };
    let live = NodeLive::new();
    let task = tokio::spawn(e2lb::sim::run_nodes(
        SctpConnector::new(Options::default()),
        cfg,
        live.clone(),
    ));
    (live, task)
}

async fn subscribed(live: &Arc<NodeLive>, want: u64, limit: Duration) {
    wait_for("nodes subscribed", limit, POLL, || {
        let live = live.clone();
        async move { live.subscriptions.load(Relaxed) >= want }
    })
    .await;
}

async fn ric_sum(rics: &[Ric], series: &str) -> u64 {
    let mut sum = 0.0;
    for r in rics {
        sum += metric(&ric_metrics(r.metrics).await, series, &[]);
    }
    sum as u64
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Streams over `reports`: (lost inside streams, duplicates).
fn stream_faults(reports: &[Value]) -> (u64, u64, usize) {
    let s = accounting::streams(reports);
    (
        s.values().map(accounting::Stream::lost).sum(),
        s.values().map(|x| x.duplicates).sum(),
        s.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn e2lb_killed_and_restarted_nodes_reconnect_and_resume() {
    if !rig::sctp_or_skip() {
        return;
    }
    let _one = SERIAL.lock().await;
    const LISTEN: &str = "127.0.0.1:45421";
    const ADMIN: &str = "127.0.0.1:45090";
    const MPORT: u16 = 45480;
    const NODES: u32 = 10;
    let dir = std::env::temp_dir().join(format!("e2lb-faults-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rics: Vec<Ric> = [("ric-p", "127.0.14.1:45421"), ("ric-q", "127.0.14.2:45421")]
        .iter()
        .enumerate()
        .map(|(i, (name, e2))| {
            let e2 = addr(e2);
            spawn_ric(
                &dir,
                name,
                name,
                e2,
                SocketAddr::new(e2.ip(), MPORT),
                110 + i as u16,
                PROC,
            )
        })
        .collect();
    for r in &rics {
        rigproc::metrics_up(&r.name, r.metrics, POLL).await;
    }
    let pool: Vec<(&str, String, Option<String>)> = rics
        .iter()
        .map(|r| (r.name.as_str(), r.e2.to_string(), None))
        .collect();
    let cfg = e2lb_config(&dir, LISTEN, ADMIN, &pool, MPORT);
    let admin = addr(ADMIN);
    let mut e2lb = start_e2lb(&cfg, dir.join("e2lb-1.log"), admin, PROC, POLL).await;
    let (live, task) = nodes(LISTEN, NODES, 8000, Duration::from_secs(2));
    subscribed(&live, u64::from(NODES), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGKILL: no drain, no SHUTDOWN of its own; the kernel closes its sockets.
    let killed_at = Instant::now();
    signal(e2lb.pid(), libc::SIGKILL);
    let _ = e2lb.child.wait();
    wait_for(
        "every node to notice",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let live = live.clone();
            async move { live.connected.load(Relaxed) == 0 }
        },
    )
    .await;
    let noticed = killed_at.elapsed();
    // What the RICs got before the kill: their counters, once settled
    // (nothing reaches them while no e2lb runs).
    let mut r_pre = ric_sum(&rics, "ric_indications_received_total").await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = ric_sum(&rics, "ric_indications_received_total").await;
        if now == r_pre {
            break;
        }
        r_pre = now;
    }
    let s_pre = live.indications_sent.load(Relaxed);
    let subs_pre = ric_sum(&rics, "ric_subscriptions_total").await;
    let down_for = killed_at.elapsed();

    // The same configuration, the same address.
    let restarted_at = Instant::now();
    let e2lb2 = start_e2lb(&cfg, dir.join("e2lb-2.log"), admin, PROC, POLL).await;
    let ready_in = restarted_at.elapsed();
    wait_for(
        "every node reconnected and subscribed again",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let rics = &rics;
            async move {
                ric_sum(rics, "ric_subscriptions_total").await >= subs_pre + u64::from(NODES)
            }
        },
    )
    .await;
    let resumed_in = restarted_at.elapsed();
    let m = admin_metrics(admin).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    live.stop();
    let n = task.await.expect("nodes");
    accounting::e2lb_idle(admin).await;
    let mut reports = Vec::new();
    for r in rics.iter_mut() {
        r.proc.terminate(Duration::from_secs(10)).await;
        reports.push(read_json(&r.report));
    }
    let mut e2lb2 = e2lb2;
    e2lb2.terminate(Duration::from_secs(10)).await;

    let r_total = accounting::received(&reports);
    let (s_post, r_post) = (n.indications_sent - s_pre, r_total - r_pre);
    let lost_at_kill = s_pre.saturating_sub(r_pre);
    let (gaps, dups, streams) = stream_faults(&reports);
    println!(
        "e2lb SIGKILL: {NODES} nodes noticed in {:.2} s; e2lb down {:.2} s, ready {:.2} s after the restart, every node subscribed again {:.2} s after it ({} reconnects, {} setups)",
        noticed.as_secs_f64(),
        down_for.as_secs_f64(),
        ready_in.as_secs_f64(),
        resumed_in.as_secs_f64(),
        n.reconnects,
        n.setups_ok
    );
    println!(
        "e2lb SIGKILL: before the kill {s_pre} sent, {r_pre} received ({lost_at_kill} lost with the killed instance); after the restart {s_post} sent, {r_post} received; {streams} streams, {gaps} gaps inside them, {dups} duplicates; accepted by the new instance: {}",
        metric(&m, "e2lb_associations_accepted_total", &[])
    );
    assert_eq!(n.reconnects, u64::from(NODES), "each node reconnected once");
    assert_eq!(n.setups_ok, 2 * u64::from(NODES), "a fresh E2 Setup each");
    assert_eq!(n.setups_failed, 0);
    assert_eq!(
        r_post, s_post,
        "every indication sent after the restart received"
    );
    assert_eq!(
        (gaps, dups),
        (0, 0),
        "losses only at the end of the killed streams"
    );
    assert!(
        lost_at_kill <= u64::from(NODES) * 20,
        "{lost_at_kill} lost with the killed instance"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn stopped_backend_goes_stale_and_new_nodes_go_elsewhere() {
    if !rig::sctp_or_skip() {
        return;
    }
    let _one = SERIAL.lock().await;
    const LISTEN: &str = "127.0.0.1:46421";
    const ADMIN: &str = "127.0.0.1:46090";
    const MPORT: u16 = 46480;
    const WAVE1: u32 = 12;
    const WAVE2: u32 = 6;
    const STOP_FOR: Duration = Duration::from_secs(10);
    let dir = std::env::temp_dir().join(format!("e2lb-faults-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rics: Vec<Ric> = [
        ("ric-s1", "127.0.15.1:46421"),
        ("ric-s2", "127.0.15.2:46421"),
        ("ric-s3", "127.0.15.3:46421"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, e2))| {
        let e2 = addr(e2);
        spawn_ric(
            &dir,
            name,
            name,
            e2,
            SocketAddr::new(e2.ip(), MPORT),
            120 + i as u16,
            PROC,
        )
    })
    .collect();
    for r in &rics {
        rigproc::metrics_up(&r.name, r.metrics, POLL).await;
    }
    let pool: Vec<(&str, String, Option<String>)> = rics
        .iter()
        .map(|r| (r.name.as_str(), r.e2.to_string(), None))
        .collect();
    let cfg = e2lb_config(&dir, LISTEN, ADMIN, &pool, MPORT);
    let admin = addr(ADMIN);
    let mut e2lb = start_e2lb(&cfg, dir.join("e2lb.log"), admin, PROC, POLL).await;
    let (live1, task1) = nodes(LISTEN, WAVE1, 9000, Duration::from_secs(3));
    subscribed(&live1, u64::from(WAVE1), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = backends(admin).await;
    let assocs = |b: &Value| b["associations"].as_u64().unwrap_or(u64::MAX);
    let (vi, victim) = rics
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| assocs(&before[&r.name]))
        .map(|(i, r)| (i, r.name.clone()))
        .expect("a backend");
    let held = assocs(&before[&victim]);
    assert!(held > 0);
    let healthy = |m: &str| metric(m, "e2lb_backend_healthy", &[("backend", victim.as_str())]);
    let picks = |m: &str| {
        metric(
            m,
            "e2lb_backend_picks_total",
            &[("backend", victim.as_str())],
        )
    };

    let stopped_at = Instant::now();
    signal(rics[vi].proc.pid(), libc::SIGSTOP);
    wait_for(
        "the stopped backend to turn unhealthy",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async { healthy(&admin_metrics(admin).await) == 0.0 },
    )
    .await;
    let unhealthy_in = stopped_at.elapsed();
    let m = admin_metrics(admin).await;
    let picks_before = picks(&m);
    let stale_cpu = metric(
        &m,
        "e2lb_backend_cpu_ratio",
        &[("backend", victim.as_str())],
    );
    // A second wave while it is stopped.
    let (live2, task2) = nodes(LISTEN, WAVE2, 9100, Duration::from_secs(1));
    subscribed(&live2, u64::from(WAVE2), Duration::from_secs(30)).await;
    let wave2_in = stopped_at.elapsed();
    let during = backends(admin).await;
    let m = admin_metrics(admin).await;
    assert_eq!(picks(&m), picks_before, "no pick of the stopped backend");
    assert_eq!(assocs(&during[&victim]), held, "its associations stay");
    let others: u64 = during
        .iter()
        .filter(|(n, _)| **n != victim)
        .map(|(_, b)| assocs(b))
        .sum();
    assert_eq!(others + held, u64::from(WAVE1 + WAVE2));
    if let Some(rest) = STOP_FOR.checked_sub(stopped_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    signal(rics[vi].proc.pid(), libc::SIGCONT);
    let stopped_for = stopped_at.elapsed();
    let cont_at = Instant::now();
    wait_for(
        "the backend healthy again",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async { healthy(&admin_metrics(admin).await) == 1.0 },
    )
    .await;
    let healthy_in = cont_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    live1.stop();
    live2.stop();
    let (n1, n2) = (task1.await.expect("wave 1"), task2.await.expect("wave 2"));
    accounting::e2lb_idle(admin).await;
    let m = admin_metrics(admin).await;
    let mut reports = Vec::new();
    for r in rics.iter_mut() {
        r.proc.terminate(Duration::from_secs(10)).await;
        reports.push(read_json(&r.report));
    }
    e2lb.terminate(Duration::from_secs(10)).await;
    let sent = n1.indications_sent + n2.indications_sent;
    let received = accounting::received(&reports);
    let (gaps, dups, streams) = stream_faults(&reports);
    println!(
        "SIGSTOP {victim} ({held} associations) for {:.1} s: unhealthy after {:.2} s (probe CPU figure then {}), wave 2 ({WAVE2} nodes) set up by {:.1} s, all on the others; healthy {:.2} s after SIGCONT",
        stopped_for.as_secs_f64(),
        unhealthy_in.as_secs_f64(),
        if stale_cpu == 0.0 { "absent (stale)".to_owned() } else { format!("{stale_cpu}") },
        wave2_in.as_secs_f64(),
        healthy_in.as_secs_f64()
    );
    println!(
        "SIGSTOP: {sent} sent, {received} received, {streams} streams, {gaps} gaps, {dups} duplicates; late sends {} (nodes held back by the stopped backend); setups timed out {}, rehomes {}",
        n1.late + n2.late,
        metric(&m, "e2lb_e2_setups_total", &[("outcome", "timeout")]),
        metric(&m, "e2lb_rehomes_total", &[])
    );
    for n in [&n1, &n2] {
        assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
        assert_eq!(n.reconnects, 0);
        assert_eq!(n.setups_failed, 0);
    }
    assert_eq!(
        metric(&m, "e2lb_e2_setups_total", &[("outcome", "timeout")]),
        0.0
    );
    assert_eq!(received, sent, "nothing lost, towards any backend");
    assert_eq!((gaps, dups), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Addresses added to the guest's loopback for the multi-homing test,
/// removed again when dropped.
struct LoAddrs(Vec<&'static str>);

impl LoAddrs {
    fn add(addrs: &[&'static str]) -> LoAddrs {
        for a in addrs {
            ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        LoAddrs(addrs.to_vec())
    }
}

impl Drop for LoAddrs {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A RIC simulator bound to several addresses (sctp_bindx): one multi-homed
/// SCTP endpoint, with its metrics page.
struct MultiHomedRic {
    live: Arc<RicLive>,
    stop: CancellationToken,
    task: JoinHandle<e2lb::sim::RicReport>,
}

impl MultiHomedRic {
    async fn start(
        name: &str,
        addrs: &[SocketAddr],
        metrics_at: SocketAddr,
        requestor_id: u16,
    ) -> MultiHomedRic {
        let stop = CancellationToken::new();
        let listener = SctpListener::bind(addrs, &Options::default()).expect("multi-homed RIC");
        let live = RicLive::new();
        let s = stop.clone();
        tokio::spawn(e2lb::sim::serve_metrics(
            metrics_at,
            live.clone(),
            async move { s.cancelled().await },
        ));
        let s = stop.clone();
        let task = tokio::spawn(e2lb::sim::run_ric(
            listener,
            RicSimConfig {
                name: name.to_owned(),
                requestor_id,
                ..RicSimConfig::default()
            },
            live.clone(),
            async move { s.cancelled().await },
        ));
        rigproc::metrics_up(name, metrics_at, POLL).await;
        MultiHomedRic { live, stop, task }
    }

    /// Stop the nodes, let e2lb finish every association, then stop the RIC
    /// and e2lb: the nodes' report, the RIC's report and e2lb's metrics.
    async fn wind_down(
        self,
        nodes: (Arc<NodeLive>, JoinHandle<NodeReport>),
        admin: SocketAddr,
        mut e2lb: rigproc::Proc,
    ) -> (NodeReport, Value, String) {
        let m = admin_metrics(admin).await;
        nodes.0.stop();
        let n = nodes.1.await.expect("nodes");
        accounting::e2lb_idle(admin).await;
        self.stop.cancel();
        let report = serde_json::to_value(self.task.await.expect("ric")).expect("report");
        e2lb.terminate(Duration::from_secs(10)).await;
        (n, report, m)
    }
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kernel's view of the peer addresses starting with `prefix` over every
/// SCTP association (`/proc/net/sctp/remaddr`: address, association id,
/// heartbeat, RTO, path retransmissions, …, state), counted by (address,
/// path state).
fn path_states(prefix: &str) -> std::collections::BTreeMap<(String, &'static str), usize> {
    let mut by = std::collections::BTreeMap::new();
    let text = std::fs::read_to_string("/proc/net/sctp/remaddr").unwrap_or_default();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(a), Some(st)) = (f.first(), f.last()) else {
            continue;
        };
        if !a.starts_with(prefix) {
            continue;
        }
        // enum sctp_transport_state (include/net/sctp/structs.h).
        let state = match *st {
            "0" => "inactive",
            "1" => "potentially-failed",
            "2" => "active",
            "3" => "unconfirmed",
            _ => "unknown",
        };
        *by.entry(((*a).to_owned(), state)).or_insert(0) += 1;
    }
    by
}

fn show(paths: &std::collections::BTreeMap<(String, &'static str), usize>) -> String {
    paths
        .iter()
        .map(|((a, st), n)| format!("{a} {st} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn multihomed_backend_survives_the_loss_of_a_path() {
    if !rig::sctp_or_skip() {
        return;
    }
    let _one = SERIAL.lock().await;
    const LISTEN: &str = "127.0.0.1:47421";
    const ADMIN: &str = "127.0.0.1:47090";
    const PATH_A: &str = "10.91.0.1";
    const PATH_B: &str = "10.91.0.2";
    const PORT: u16 = 47421;
    const NODES: u32 = 6;
    let metrics_at: SocketAddr = addr("127.0.16.1:47480");
    let dir = std::env::temp_dir().join(format!("e2lb-faults-mh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lo = LoAddrs::add(&[PATH_A, PATH_B]);
    let a: SocketAddr = SocketAddr::new(PATH_A.parse().expect("ip"), PORT);
    let b: SocketAddr = SocketAddr::new(PATH_B.parse().expect("ip"), PORT);

    // The RIC, bound to both addresses (sctp_bindx): one multi-homed endpoint.
    let ric = MultiHomedRic::start("ric-mh", &[a, b], metrics_at, 300).await;
    let ric_live = ric.live.clone();
    // e2lb knows the backend by its first address only.
    let cfg = e2lb_config(
        &dir,
        LISTEN,
        ADMIN,
        &[(
            "ric-mh",
            a.to_string(),
            Some(format!("http://{metrics_at}/metrics")),
        )],
        1,
    );
    let admin = addr(ADMIN);
    let e2lb = start_e2lb(&cfg, dir.join("e2lb.log"), admin, PROC, POLL).await;
    let (live, task) = nodes(LISTEN, NODES, 9500, Duration::from_secs(1));
    subscribed(&live, u64::from(NODES), Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paths_before = path_states("10.91.0.");
    println!("multi-homing: peer paths before: {}", show(&paths_before));
    let on_b: usize = paths_before
        .iter()
        .filter(|((a, _), _)| a == PATH_B)
        .map(|(_, n)| n)
        .sum();
    assert!(
        on_b >= 2 * NODES as usize,
        "both ends of each association to the RIC know its second address"
    );
    let assocs_before = ric_live.associations_total.load(Relaxed);

    // The primary path goes: its address leaves the host.
    let dropped_at = Instant::now();
    ip(&["addr", "del", &format!("{PATH_A}/32"), "dev", "lo"]);
    // Longest stretch without an indication arriving at the RIC.
    let mut last = (ric_live.indications.load(Relaxed), Instant::now());
    let mut longest = Duration::ZERO;
    while dropped_at.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = ric_live.indications.load(Relaxed);
        if n != last.0 {
            longest = longest.max(last.1.elapsed());
            last = (n, Instant::now());
        }
    }
    longest = longest.max(last.1.elapsed());
    let paths_after = path_states("10.91.0.");
    println!("multi-homing: peer paths after: {}", show(&paths_after));
    let failed_a: usize = paths_after
        .iter()
        .filter(|((a, st), _)| a == PATH_A && matches!(*st, "potentially-failed" | "inactive"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        failed_a >= NODES as usize,
        "the kernel saw the primary path of each association to the RIC fail"
    );
    // (A busy guest may mark a path potentially-failed for a moment.)
    let active_b: usize = paths_after
        .iter()
        .filter(|((a, st), _)| a == PATH_B && *st == "active")
        .map(|(_, n)| n)
        .sum();
    assert!(
        active_b >= NODES as usize,
        "the second path carries the traffic"
    );
    let (n, report, m) = ric.wind_down((live, task), admin, e2lb).await;
    drop(lo);
    let reports = [report];
    let received = accounting::received(&reports);
    let (gaps, dups, streams) = stream_faults(&reports);
    let snmp = std::fs::read_to_string("/proc/net/sctp/snmp").unwrap_or_default();
    let snmp_of = |k: &str| {
        snmp.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "multi-homing: primary path {PATH_A} deleted; longest pause at the RIC {:.2} s; {} sent, {received} received, {streams} streams, {gaps} gaps, {dups} duplicates; RIC associations {assocs_before} → {}; e2lb rehomes {}; kernel: T3 retransmits {}, fast retransmits {}",
        longest.as_secs_f64(),
        n.indications_sent,
        ric_live.associations_total.load(Relaxed),
        metric(&m, "e2lb_rehomes_total", &[]),
        snmp_of("SctpT3RetransmitsCount"),
        snmp_of("SctpFastRetransmits"),
    );
    assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
    assert_eq!(n.reconnects, 0);
    assert_eq!(
        ric_live.associations_total.load(Relaxed),
        assocs_before,
        "no new association to the RIC"
    );
    assert_eq!(
        metric(&m, "e2lb_rehomes_total", &[]),
        0.0,
        "nothing re-homed"
    );
    assert_eq!(received, n.indications_sent, "nothing lost");
    assert_eq!((gaps, dups), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn multihomed_backend_is_opened_on_its_secondary_address() {
    if !rig::sctp_or_skip() {
        return;
    }
    let _one = SERIAL.lock().await;
    const LISTEN: &str = "127.0.0.1:47521";
    const ADMIN: &str = "127.0.0.1:47590";
    const PRIMARY: &str = "10.92.0.1";
    const SECONDARY: &str = "10.92.0.2";
    const PORT: u16 = 47521;
    const NODES: u32 = 4;
    let metrics_at: SocketAddr = addr("127.0.16.2:47580");
    let dir = std::env::temp_dir().join(format!("e2lb-faults-mh2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lo = LoAddrs::add(&[PRIMARY, SECONDARY]);
    let a: SocketAddr = SocketAddr::new(PRIMARY.parse().expect("ip"), PORT);
    let b: SocketAddr = SocketAddr::new(SECONDARY.parse().expect("ip"), PORT);
    // The RIC is bound to both addresses; then the primary leaves the host
    // (a dead interface) before any association is opened.
    let ric = MultiHomedRic::start("ric-mh2", &[a, b], metrics_at, 301).await;
    ip(&["addr", "del", &format!("{PRIMARY}/32"), "dev", "lo"]);
    let cfg = e2lb_config(
        &dir,
        LISTEN,
        ADMIN,
        &[(
            "ric-mh2",
            a.to_string(),
            Some(format!("http://{metrics_at}/metrics")),
        )],
        1,
    );
    let text = std::fs::read_to_string(&cfg).expect("config");
    let primary_line = format!("addr = \"{a}\"\n");
    assert!(text.contains(&primary_line));
    std::fs::write(
        &cfg,
        text.replace(
            &primary_line,
            &format!("{primary_line}secondary_addrs = [\"{b}\"]\n"),
        ),
    )
    .expect("write config");
    let admin = addr(ADMIN);
    let e2lb = start_e2lb(&cfg, dir.join("e2lb.log"), admin, PROC, POLL).await;
    let opened = Instant::now();
    let (live, task) = nodes(LISTEN, NODES, 9600, Duration::ZERO);
    subscribed(&live, u64::from(NODES), Duration::from_secs(60)).await;
    let took = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paths = path_states("10.92.0.");
    let ric_live = ric.live.clone();
    let (n, report, m) = ric.wind_down((live, task), admin, e2lb).await;
    drop(lo);
    let reports = [report];
    let received = accounting::received(&reports);
    let (gaps, dups, streams) = stream_faults(&reports);
    println!(
        "multi-homing at open: primary {PRIMARY} down; {NODES} nodes subscribed {:.2} s after they started; paths {}; {} sent, {received} received, {streams} streams; connect failures {}",
        took.as_secs_f64(),
        show(&paths),
        n.indications_sent,
        metric(&m, "e2lb_backend_connect_failures_total", &[]),
    );
    assert_eq!(n.errors, 0, "node errors: {:?}", n.error_samples);
    assert_eq!(n.reconnects, 0, "no node association restarted");
    assert_eq!(n.setups_failed, 0, "every E2 Setup answered");
    assert_eq!(
        ric_live.associations_total.load(Relaxed),
        u64::from(NODES),
        "one association per node reached the RIC"
    );
    assert_eq!(
        metric(&m, "e2lb_backend_connect_failures_total", &[]),
        0.0,
        "no connect failed"
    );
    let active_b: usize = paths
        .iter()
        .filter(|((p, st), _)| p == SECONDARY && *st == "active")
        .map(|(_, n)| n)
        .sum();
    assert!(
        active_b >= NODES as usize,
        "the secondary path carries the associations: {}",
        show(&paths)
    );
    assert!(n.indications_sent > 0);
    assert_eq!(received, n.indications_sent, "nothing lost");
    assert_eq!((gaps, dups), (0, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
