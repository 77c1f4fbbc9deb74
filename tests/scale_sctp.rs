//! The scaler with the exec actuator, end to end over kernel SCTP (inside
//! the rig): load rises, the scaler starts a new `e2lb sim ric`,
//! Bull-and-Bear prefers it, load falls, it is drained and stopped.
//!
//! One `e2lb run` (scaler on, `actuator = "exec"`, 1..2 replicas, 1 s tick)
//! in front of one `e2lb sim ric` started by this test (`ric-1`), which
//! burns `WORK` of CPU per indication, so its probed CPU follows the
//! indication load. The exec actuator's command starts another `e2lb sim
//! ric` (same work per indication) on the one address it is given.
//!
//! 1. **Steady.** Two light nodes connect; they stay to the end, on `ric-1`.
//! 2. **Load rises.** `HOT_NODES` nodes arrive, 18 indications/s in all:
//!    `ric-1`'s CPU goes above `HOT_CPU` (0.5 here, see [`config`] for why
//!    not the default 0.8), the balancer enters Bear and the scaler decides
//!    a scale-up (rule `cpu_high`, `pool_c_high` or `bear`; `cpu_high` in
//!    practice). The exec actuator starts `ric-auto-1` (127.0.6.2), which
//!    joins the pool once its metrics URL answers.
//! 3. **New nodes go to the new backend.** `PROBE_NODES` light nodes arrive:
//!    Bear prefers a backend added since Bear began (pick reason
//!    `new_backend`) and never picks the hot `ric-1` while a cool backend
//!    exists, so (nearly) all go to `ric-auto-1`, which then receives their
//!    indications.
//! 4. **Load falls.** The hot and the probe nodes stop. Every CPU is low:
//!    after Bear's `hold` (while in Bear, the `bear` rule holds the pool at
//!    max_replicas) and the scaler's `down_for`, a scale-down (rule
//!    `cpu_low`) drains one backend. It is `ric-auto-1`: the removal order
//!    is "not open first, then fewest associations, then lowest C, then most
//!    recently added", both are open, and `ric-auto-1` has no association
//!    left while `ric-1` keeps the two steady nodes. With no association
//!    left it is removed at the next tick: the exec actuator stops the
//!    process (SIGTERM, clean exit), and its E2 and metrics addresses refuse
//!    connections.
//!
//! Nothing is lost: indications sent by the nodes = forwarded by e2lb =
//! received by `ric-1` (its JSON report) plus `ric-auto-1` (its metrics, read
//! once its associations were gone, before it was stopped — its report goes
//! to the stdout the exec actuator discards). A timeline (balancer
//! transitions, scaler decisions, the exec actuator's log lines, ric-1's CPU)
//! is printed at the end.

#[path = "common/rig.rs"]
mod rig;
#[path = "common/rigproc.rs"]
mod rigproc;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use e2lb::sim::{NodeLive, NodeReport};
use e2lb::transport::sctp::SctpConnector;
use e2lb::transport::{Connector, Options};
use rigproc::{
    addr, admin_metrics, api, assert_stream_intact, backends, http, read_json, sample, start_e2lb,
    sum_of, wait_for, Proc, ProcOpts,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How often [`wait_for`] polls.
const POLL: Duration = Duration::from_millis(250);
/// How the child processes are run: at the end (or on a failure) SIGTERM
/// first, so `e2lb run` stops the backends its exec actuator started, then
/// SIGKILL.
const PROC: ProcOpts = ProcOpts {
    env: &[("NO_COLOR", "1")],
    tail: 60,
    term_on_drop: Some(Duration::from_secs(10)),
};
/// Where the E2 nodes connect (e2lb's SCTP listener).
const LISTEN: &str = "127.0.0.1:41421";
/// e2lb's admin HTTP endpoint.
const ADMIN: &str = "127.0.0.1:41090";
/// Port of every RIC simulator's `/metrics` (`[probe] metrics_port`, so the
/// default metrics URL of a backend is its host on this port).
const METRICS_PORT: u16 = 41480;
/// The configured backend, started by the test.
const RIC1: &str = "127.0.6.1:41421";
/// The one address the exec actuator may give a new backend.
const AUTO: &str = "127.0.6.2:41421";
/// The name the exec actuator gives its first backend (`<name_prefix>-1`).
const AUTO_NAME: &str = "ric-auto-1";
/// CPU work per indication of every RIC simulator.
const WORK: &str = "40ms";
/// The scale-up CPU threshold (`[scale] up_cpu`, `[balance] threshold_cpu`;
/// default 0.8, see [`config`] for why 0.5 here).
const HOT_CPU: f64 = 0.5;
/// The load: this many nodes, one subscription each, one indication per
/// `HOT_PERIOD` each: 18 indications/s, 0.72 s of work per second.
const HOT_NODES: u32 = 6;
const HOT_PERIOD: Duration = Duration::from_millis(333);
/// Nodes arriving after the scale-up, one indication every `PROBE_PERIOD`
/// each (at most 2.5/s, 0.1 s of work per second in all).
const PROBE_NODES: u32 = 10;
const PROBE_PERIOD: Duration = Duration::from_secs(4);
/// Nodes that stay connected throughout, one indication every
/// `STEADY_PERIOD` each.
const STEADY_NODES: u32 = 2;
const STEADY_PERIOD: Duration = Duration::from_secs(5);

fn metrics_addr(e2: &str) -> SocketAddr {
    SocketAddr::new(addr(e2).ip(), METRICS_PORT)
}

/// The samples of counter `name` with their label sets, as exposed.
fn series_of(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .map(str::to_owned)
        .collect()
}

/// Associations per backend now.
async fn associations() -> BTreeMap<String, u64> {
    backends(addr(ADMIN))
        .await
        .into_iter()
        .map(|(n, b)| (n, b["associations"].as_u64().expect("associations")))
        .collect()
}

/// `nodes` E2 nodes (gNB-IDs from `first`) connecting one after the other
/// over `spread`, each offering one RAN function (one subscription) and
/// sending a 200-byte indication every `period` once subscribed, until
/// [`NodeLive::stop`].
fn arrive(
    first: u32,
    nodes: u32,
    spread: Duration,
    period: Duration,
) -> (Arc<NodeLive>, JoinHandle<NodeReport>) {
    rigproc::arrive(
        addr(LISTEN),
        first,
        nodes,
        spread,
        period,
        Duration::from_secs(1),
    )
}

async fn all_set_up(live: &NodeLive, nodes: u64, limit: Duration) {
    wait_for(&format!("{nodes} E2 Setups"), limit, POLL, || async {
        live.setups_ok.load(Relaxed) >= nodes && live.subscriptions.load(Relaxed) >= nodes
    })
    .await;
}

/// A node run's end: every node set up once, subscribed once, no error.
async fn finished(what: &str, task: JoinHandle<NodeReport>, nodes: u64) -> u64 {
    let r = task.await.expect("node task");
    assert_eq!(r.setups_ok, nodes, "{what}: {:?}", r.error_samples);
    assert_eq!(
        (
            r.setups_failed,
            r.reconnects,
            r.errors,
            r.dropped_at_close,
            r.connect_failures
        ),
        (0, 0, 0, 0, 0),
        "{what}: {:?}",
        r.error_samples
    );
    assert_eq!(r.subscriptions, nodes, "{what}: one subscription per node");
    println!(
        "{what}: {} nodes sent {} indications",
        r.nodes, r.indications_sent
    );
    r.indications_sent
}

/// One RIC simulator's `/metrics` figure (`None`: it does not answer).
async fn ric_figure(e2: &str, series: &str) -> Option<f64> {
    match http(metrics_addr(e2), "GET", "/metrics").await {
        Some((200, body)) => sample(&body, series),
        _ => None,
    }
}

/// Seconds since the test started of a record's RFC 3339 wall stamp.
fn rel(t0: SystemTime, stamp: &str) -> f64 {
    humantime::parse_rfc3339(stamp)
        .ok()
        .and_then(|t| t.duration_since(t0).ok())
        .map_or(f64::NAN, |d| d.as_secs_f64())
}

/// The scaler's decision records that took action `kind`.
async fn decisions(kind: &str) -> Vec<Value> {
    api(addr(ADMIN), "/api/v1/scaler").await["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|r| r["decision"]["action"]["kind"] == kind)
        .cloned()
        .collect()
}

/// An SCTP association to `e2` is refused (nothing listens there).
async fn sctp_refused(e2: &str) -> bool {
    let connector = SctpConnector::new(Options::default());
    matches!(
        tokio::time::timeout(Duration::from_secs(10), connector.connect(addr(e2))).await,
        Ok(Err(_))
    )
}

/// Waits up to `limit` for a decision record that took action `kind`.
async fn decided(kind: &str, limit: Duration) -> Vec<Value> {
    let end = Instant::now() + limit;
    loop {
        let found = decisions(kind).await;
        if !found.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for a {kind} decision"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// CPU time (user + system) of a process so far, from /proc (the guest's).
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which is in parentheses): state is field 3,
    // utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|h| *h > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// The guest's (user + system, total) jiffies from /proc/stat.
fn guest_busy() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// One sample of the timeline.
#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    /// Per backend: (status, probed CPU, C, associations).
    backends: BTreeMap<String, (String, Option<f64>, f64, u64)>,
    mode: String,
    desired: u64,
    actual: u64,
}

/// Every second: the backends' figures, the balancer's mode and the
/// scaler's counts, printed as one line and kept for the assertions.
fn sampler(started: Instant, e2lb_pid: u32, samples: Arc<Mutex<Vec<Sample>>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (Instant::now(), proc_cpu(e2lb_pid), guest_busy());
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (Some((200, b)), Some((200, bal)), Some((200, sc))) = (
                http(addr(ADMIN), "GET", "/api/v1/backends").await,
                http(addr(ADMIN), "GET", "/api/v1/balancer").await,
                http(addr(ADMIN), "GET", "/api/v1/scaler").await,
            ) else {
                continue;
            };
            let (Ok(b), Ok(bal), Ok(sc)) = (
                serde_json::from_str::<Value>(&b),
                serde_json::from_str::<Value>(&bal),
                serde_json::from_str::<Value>(&sc),
            ) else {
                continue;
            };
            let now = (Instant::now(), proc_cpu(e2lb_pid), guest_busy());
            let dt = now.0.duration_since(last.0).as_secs_f64();
            let e2lb_cpu = match (last.1, now.1) {
                (Some(a), Some(b)) => (b.saturating_sub(a)).as_secs_f64() / dt,
                _ => f64::NAN,
            };
            let guest = match (last.2, now.2) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
                _ => f64::NAN,
            };
            last = now;
            let mut s = Sample {
                t: started.elapsed().as_secs_f64(),
                backends: BTreeMap::new(),
                mode: bal["mode"].as_str().unwrap_or("?").to_owned(),
                desired: sc["desired"].as_u64().unwrap_or(0),
                actual: sc["actual"].as_u64().unwrap_or(0),
            };
            let mut line = format!("[{:6.1} s]", s.t);
            for x in b["backends"].as_array().into_iter().flatten() {
                let name = x["name"].as_str().unwrap_or("?").to_owned();
                let status = x["status"].as_str().unwrap_or("?").to_owned();
                let score = &x["score"];
                let cpu = (score["cpu_source"] == "probed")
                    .then(|| score["cpu"].as_f64())
                    .flatten();
                let c = score["c"].as_f64().unwrap_or(f64::NAN);
                let assoc = x["associations"].as_u64().unwrap_or(0);
                let _ = write!(
                    line,
                    " {name} {status} cpu {} C {c:.2} assoc {assoc} |",
                    cpu.map_or("-".to_owned(), |c| format!("{c:.2}"))
                );
                s.backends.insert(name, (status, cpu, c, assoc));
            }
            let _ = write!(
                line,
                " {} | scaler {}/{} | e2lb cpu {e2lb_cpu:.2}, guest busy {guest:.2}",
                s.mode, s.actual, s.desired
            );
            println!("{line}");
            samples.lock().expect("samples").push(s);
        }
    })
}

fn config(dir: &Path) -> PathBuf {
    // Test settings, each for the test's pace or for robustness in a UML
    // guest whose timing depends on how busy the host is:
    //
    // - [scale]: a 1 s tick, 1..2 replicas, short cooldowns and low-CPU
    //   window (the defaults are minutes), room_cpu 0 (the paper's literal
    //   rule: a hot CPU scales up even while another open backend is cool;
    //   with one backend there is no other anyway).
    // - up_cpu and threshold_cpu 0.5 (default 0.8), exit_cpu 0.3 (default
    //   0.6): the guest has one CPU, shared by ric-1, e2lb (a debug build),
    //   the nodes and the kernel's SCTP. Measured: with nothing else to do
    //   the guest is 5-15 % busy; with ric-1 asked for 0.84 s of work per
    //   second (busy host), ric-1 showed 0.61-0.87 (mostly 0.72-0.76) with
    //   the guest 93-98 % busy, i.e. saturated, and with 0.88 (at 10 ms per
    //   indication) ric-1 fell behind its indications and stopped answering
    //   its probes. So 0.8 is crossed only in a saturated guest, by luck.
    //   With 0.72 s of work per second (this test's load) ric-1 showed
    //   0.58-0.84, mostly 0.64-0.76, with the guest 78-90 % busy (also with
    //   two busy loops on the 2-core host): clearly above 0.5, with room to
    //   spare in the guest.
    // - [balance] hold 5 s (default 60 s): Bear is left 5 s after every
    //   figure fell below the exit thresholds. While the balancer is in
    //   Bear the `bear` scale-up rule fires (capped at max_replicas, so it
    //   holds the pool at 2), which keeps a scale-down from being decided;
    //   the low-CPU timer runs meanwhile.
    // - [balance] latency_max 2 s (default 400 ms): in the guest a single E2
    //   Setup can take several hundred ms when the host is busy; with the
    //   default, such a hiccup alone puts the pool in Bear or drives the
    //   latency PID negative (which holds a scale-down). It is also the
    //   M/M/c model's W_q bound: with 1 s, ric-1 near saturation (88
    //   indications/s at 12 ms each, measured) scaled up on `queueing` at a
    //   CPU of 0.71, before the CPU rule.
    // - [probe] timeout 900 ms (default 500 ms): a RIC simulator busy with
    //   indications answers its metrics later.
    // - [scale.exec] ready_timeout 30 s (default 10 s): a process started in
    //   a guest whose CPU is mostly taken by ric-1 comes up slowly.
    let text = format!(
        r#"
[proxy]
listen = ["{LISTEN}"]
drain_timeout = "3s"

[[backends]]
name = "ric-1"
addr = "{RIC1}"

[balance]
latency_max = "2s"
hold = "5s"
threshold_cpu = {HOT_CPU}
exit_cpu = 0.3

[probe]
tick = "1s"
timeout = "900ms"
unhealthy_after = 3
metrics_port = {METRICS_PORT}

[scale]
enabled = true
actuator = "exec"
tick = "1s"
min_replicas = 1
max_replicas = 2
up_cpu = {HOT_CPU}
up_cooldown = "5s"
down_for = "8s"
down_cooldown = "8s"
room_cpu = 0.0

[scale.exec]
start = ["{{exe}}", "sim", "ric", "--listen", "{{addr}}", "--metrics", "{{metrics_addr}}", "--name", "{{name}}", "--work-per-indication", "{WORK}"]
addresses = ["{AUTO}"]
stop_timeout = "10s"
ready_timeout = "30s"

[admin]
listen = "{ADMIN}"

[log]
level = "info"
"#
    );
    let path = dir.join("e2lb.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn load_scales_up_exec_backend_preferred_then_drained_and_stopped() {
    if !rig::sctp_or_skip() {
        return;
    }
    let started = Instant::now();
    let t0 = SystemTime::now();
    let at = || started.elapsed().as_secs_f64();
    let mut timeline: Vec<(f64, String)> = Vec::new();
    let dir = std::env::temp_dir().join(format!("e2lb-scale-sctp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // ric-1: the configured backend, its own process (its CPU figure is its own).
    let ric1_report = dir.join("ric-1.json");
    let args: Vec<String> = [
        "sim",
        "ric",
        "--listen",
        RIC1,
        "--metrics",
        &metrics_addr(RIC1).to_string(),
        "--name",
        "ric-1",
        "--work-per-indication",
        WORK,
        "--report",
        &ric1_report.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut ric1 = Proc::spawn("ric-1", &args, dir.join("ric-1.log"), PROC);
    wait_for("ric-1 metrics", Duration::from_secs(30), POLL, || async {
        matches!(
            http(metrics_addr(RIC1), "GET", "/healthz").await,
            Some((200, _))
        )
    })
    .await;

    let cfg = config(&dir);
    let mut e2lb = start_e2lb(&cfg, dir.join("e2lb.log"), addr(ADMIN), PROC, POLL).await;
    wait_for("ric-1 probed", Duration::from_secs(30), POLL, || async {
        backends(addr(ADMIN)).await.get("ric-1").is_some_and(|b| {
            b["status"] == "open" && b["probe"]["successes_total"].as_u64().unwrap_or(0) >= 2
        })
    })
    .await;
    let sc = api(addr(ADMIN), "/api/v1/scaler").await;
    assert_eq!(sc["actuator"], "exec", "{sc}");
    assert_eq!(sc["leader"], true, "{sc}");
    assert_eq!(sc["actual"], 1, "{sc}");
    assert!(
        decisions("scale_up").await.is_empty() && decisions("scale_down").await.is_empty(),
        "no scale event before the load: {sc}"
    );
    // Nothing answers on the exec actuator's address yet (the test does not
    // start ric-auto-1; e2lb does).
    assert!(
        TcpStream::connect(metrics_addr(AUTO)).await.is_err(),
        "{AUTO_NAME}'s metrics address answers before the scale-up"
    );
    assert!(
        sctp_refused(AUTO).await,
        "{AUTO_NAME}'s E2 address answers before the scale-up"
    );
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = sampler(started, e2lb.child.id(), samples.clone());
    timeline.push((at(), "e2lb ready, ric-1 probed".into()));

    // 1. Steady nodes: to ric-1, the only backend.
    let (steady, steady_task) = arrive(100, STEADY_NODES, Duration::ZERO, STEADY_PERIOD);
    all_set_up(&steady, STEADY_NODES.into(), Duration::from_secs(60)).await;
    assert_eq!(
        associations().await,
        BTreeMap::from([("ric-1".to_owned(), u64::from(STEADY_NODES))])
    );

    // 2. Load rises.
    timeline.push((at(), format!("{HOT_NODES} hot nodes start arriving")));
    let (hot, hot_task) = arrive(1000, HOT_NODES, Duration::from_secs(4), HOT_PERIOD);
    all_set_up(&hot, HOT_NODES.into(), Duration::from_secs(60)).await;
    timeline.push((at(), format!("{HOT_NODES} hot nodes subscribed")));
    let up = decided("scale_up", Duration::from_secs(90)).await;
    let rec = &up[0];
    let d = &rec["decision"];
    println!("scale-up record: {rec}");
    let rule = d["rule"].as_str().expect("rule").to_owned();
    let t_up = rel(t0, rec["at"].as_str().expect("at"));
    timeline.push((
        t_up,
        format!(
            "scale-up decided: rule {rule}, fired {}, max cpu {:.2}, pool C {:.2}, {} → {}",
            d["fired"],
            d["figures"]["max_cpu"].as_f64().unwrap_or(f64::NAN),
            d["figures"]["pool_c"].as_f64().unwrap_or(f64::NAN),
            d["current"],
            d["desired"]
        ),
    ));
    assert!(
        ["cpu_high", "pool_c_high", "bear"].contains(&rule.as_str()),
        "{rec}"
    );
    assert_eq!(
        (&d["current"], &d["desired"]),
        (&1.into(), &2.into()),
        "{rec}"
    );
    assert_eq!(d["action"]["add"], 1, "{rec}");
    assert_eq!(rec["leader"], true, "{rec}");
    assert!(
        rec["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("applied: exec asked for 1 more")),
        "{rec}"
    );
    if rule == "cpu_high" {
        assert!(
            d["figures"]["max_cpu"]
                .as_f64()
                .is_some_and(|c| c >= HOT_CPU),
            "{rec}"
        );
    }

    // The exec actuator started ric-auto-1; it joins the pool once it answers.
    wait_for(
        &format!("{AUTO_NAME} in the pool"),
        Duration::from_secs(60),
        POLL,
        || async {
            backends(addr(ADMIN))
                .await
                .get(AUTO_NAME)
                .is_some_and(|b| b["status"] == "open")
        },
    )
    .await;
    timeline.push((at(), format!("{AUTO_NAME} seen open in /api/v1/backends")));
    let b = backends(addr(ADMIN)).await;
    let auto = &b[AUTO_NAME];
    assert_eq!(auto["addr"], AUTO, "{auto}");
    assert_eq!(
        auto["metrics"],
        format!("http://{}/metrics", metrics_addr(AUTO)),
        "{auto}"
    );
    assert_eq!(b.len(), 2, "{b:?}");
    // It is a real RIC simulator (its metrics answer), started by the exec
    // actuator with {exe} = this e2lb binary.
    assert_eq!(
        ric_figure(AUTO, "ric_associations").await,
        Some(0.0),
        "{AUTO_NAME}'s metrics"
    );
    let log = e2lb.log_text();
    assert!(
        log.lines().any(|l| l.contains("backend process started")
            && l.contains(AUTO_NAME)
            && l.contains(env!("CARGO_BIN_EXE_e2lb"))
            && l.contains(WORK)),
        "e2lb's log shows the exec actuator starting {AUTO_NAME}"
    );
    let m = admin_metrics(addr(ADMIN)).await;
    assert_eq!(
        sample(
            &m,
            "e2lb_scale_actuations_total{actuator=\"exec\",op=\"scale_up\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("e2lb_scale_decisions_total{{action=\"scale_up\",rule=\"{rule}\"}}")
        ),
        Some(1.0),
        "{:?}",
        series_of(&m, "e2lb_scale_decisions_total")
    );
    wait_for("scaler actual 2", Duration::from_secs(10), POLL, || async {
        let sc = api(addr(ADMIN), "/api/v1/scaler").await;
        sc["actual"] == 2 && sc["desired"] == 2 && sc["pending"] == 0
    })
    .await;

    // 3. New nodes go to the new backend.
    let bal = api(addr(ADMIN), "/api/v1/balancer").await;
    let mode = bal["mode"].as_str().unwrap_or("?").to_owned();
    let m0 = admin_metrics(addr(ADMIN)).await;
    let a0 = associations().await;
    timeline.push((
        at(),
        format!("{PROBE_NODES} probe nodes start arriving (balancer in {mode})"),
    ));
    let (probe, probe_task) = arrive(2000, PROBE_NODES, Duration::from_secs(5), PROBE_PERIOD);
    all_set_up(&probe, PROBE_NODES.into(), Duration::from_secs(60)).await;
    let a1 = associations().await;
    let m1 = admin_metrics(addr(ADMIN)).await;
    let placed: BTreeMap<String, u64> = a1
        .iter()
        .map(|(n, a)| (n.clone(), a - a0.get(n).copied().unwrap_or(0)))
        .collect();
    let picks: BTreeMap<String, u64> = series_of(&m1, "e2lb_bnb_picks_total")
        .iter()
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let before = sample(&m0, series).unwrap_or(0.0);
            let n = v.parse::<f64>().ok()? - before;
            let labels = series.strip_prefix("e2lb_bnb_picks_total")?;
            (n > 0.0).then(|| (labels.to_owned(), n as u64))
        })
        .collect();
    timeline.push((
        at(),
        format!("probe nodes set up: placed {placed:?}, picks {picks:?}"),
    ));
    assert_eq!(
        placed.values().sum::<u64>(),
        u64::from(PROBE_NODES),
        "{placed:?}"
    );
    assert!(
        placed[AUTO_NAME] >= u64::from(PROBE_NODES) - 1,
        "the new backend takes (nearly) every new node: {placed:?} (picks {picks:?})"
    );
    let new_backend: u64 = picks
        .iter()
        .filter(|(s, _)| s.contains("reason=\"new_backend\""))
        .map(|(_, n)| n)
        .sum();
    assert!(
        new_backend >= 1,
        "Bear prefers the backend added since it began: {picks:?}"
    );
    // ric-auto-1 serves them: let some indications reach it.
    wait_for(
        &format!("indications at {AUTO_NAME}"),
        Duration::from_secs(30),
        POLL,
        || async {
            ric_figure(AUTO, "ric_indications_received_total")
                .await
                .is_some_and(|n| n >= 10.0)
        },
    )
    .await;

    // 4. Load falls: the hot and probe nodes leave.
    let a_before_stop = associations().await;
    hot.stop();
    probe.stop();
    let t_stop = at();
    timeline.push((
        t_stop,
        format!("hot and probe nodes stop (associations {a_before_stop:?})"),
    ));
    let hot_sent = finished("hot nodes", hot_task, HOT_NODES.into()).await;
    let probe_sent = finished("probe nodes", probe_task, PROBE_NODES.into()).await;
    // ric-auto-1 has no association left: what it received is final. (Read
    // now: once stopped, its report goes to a discarded stdout.)
    wait_for(
        &format!("{AUTO_NAME} without associations"),
        Duration::from_secs(30),
        POLL,
        || async {
            ric_figure(AUTO, "ric_associations").await == Some(0.0)
                && associations().await.get(AUTO_NAME).is_some_and(|a| *a == 0)
        },
    )
    .await;
    let auto_received = ric_figure(AUTO, "ric_indications_received_total")
        .await
        .expect("ric-auto-1's metrics") as u64;
    let auto_setups = ric_figure(AUTO, "ric_e2_setups_total")
        .await
        .expect("ric-auto-1's metrics") as u64;
    assert_eq!(
        auto_setups, placed[AUTO_NAME],
        "{AUTO_NAME}'s E2 Setups: the probe nodes placed there"
    );

    let down = decided("scale_down", Duration::from_secs(90)).await;
    let rec = &down[0];
    let d = &rec["decision"];
    println!("scale-down record: {rec}");
    let t_down = rel(t0, rec["at"].as_str().expect("at"));
    timeline.push((
        t_down,
        format!(
            "scale-down decided: rule {}, remove {}, max cpu {:.2}, low for {:.1} s, {} → {}",
            d["rule"],
            rec["remove"],
            d["figures"]["max_cpu"].as_f64().unwrap_or(f64::NAN),
            d["figures"]["low_for_s"].as_f64().unwrap_or(f64::NAN),
            d["current"],
            d["desired"]
        ),
    ));
    assert_eq!(d["rule"], "cpu_low", "{rec}");
    assert_eq!(
        (&d["current"], &d["desired"]),
        (&2.into(), &1.into()),
        "{rec}"
    );
    // The removal order: open ones last (both open), then fewest
    // associations: ric-auto-1 has none, ric-1 the steady nodes.
    assert_eq!(rec["remove"], serde_json::json!([AUTO_NAME]), "{rec}");
    assert_eq!(rec["outcome"], format!("draining {AUTO_NAME}"), "{rec}");
    assert!(
        d["figures"]["low_for_s"].as_f64().is_some_and(|s| s >= 8.0)
            && d["figures"]["max_cpu"].as_f64().is_some_and(|c| c <= 0.1),
        "{rec}"
    );
    assert_eq!(up.len(), 1, "one scale-up only");

    // Drained with no association left: removed and stopped.
    wait_for(
        &format!("{AUTO_NAME} removed from the pool"),
        Duration::from_secs(30),
        POLL,
        || async { !backends(addr(ADMIN)).await.contains_key(AUTO_NAME) },
    )
    .await;
    timeline.push((at(), format!("{AUTO_NAME} seen gone from /api/v1/backends")));
    let m = admin_metrics(addr(ADMIN)).await;
    assert_eq!(
        sample(
            &m,
            "e2lb_scale_actuations_total{actuator=\"exec\",op=\"scale_down\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sum_of(&m, "e2lb_scale_actuations_total"),
        2,
        "one scale-up and one scale-down, no failure: {:?}",
        series_of(&m, "e2lb_scale_actuations_total")
    );
    assert_eq!(
        sample(
            &m,
            "e2lb_scale_decisions_total{action=\"scale_down\",rule=\"cpu_low\"}"
        ),
        Some(1.0),
        "{:?}",
        series_of(&m, "e2lb_scale_decisions_total")
    );
    assert_eq!(sample(&m, "e2lb_scale_actual_replicas"), Some(1.0), "{m}");
    assert_eq!(sample(&m, "e2lb_scale_desired_replicas"), Some(1.0), "{m}");
    // The process is gone: its addresses refuse connections.
    wait_for(
        &format!("{AUTO_NAME}'s metrics address refusing connections"),
        Duration::from_secs(15),
        POLL,
        || async {
            matches!(
                TcpStream::connect(metrics_addr(AUTO)).await,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        },
    )
    .await;
    assert!(
        sctp_refused(AUTO).await,
        "{AUTO_NAME}'s E2 address still answers"
    );
    let log = e2lb.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("backend process stopped") && l.contains(AUTO_NAME)),
        "e2lb's log says the exec actuator stopped {AUTO_NAME}"
    );
    assert!(
        !log.contains("did not stop after SIGTERM"),
        "{AUTO_NAME} stopped on SIGTERM"
    );
    assert!(
        !log.contains("exited on its own"),
        "no backend process crashed"
    );
    let b = backends(addr(ADMIN)).await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b["ric-1"]["status"], "open");
    assert_eq!(
        b["ric-1"]["associations"],
        u64::from(STEADY_NODES),
        "the steady nodes stay on ric-1"
    );

    // The end: the steady nodes leave; nothing was lost.
    steady.stop();
    let steady_sent = finished("steady nodes", steady_task, STEADY_NODES.into()).await;
    let sent = hot_sent + probe_sent + steady_sent;
    let forwarded =
        "e2lb_messages_forwarded_total{direction=\"node_to_ric\",procedure=\"RICindication\"}";
    wait_for(
        "every indication forwarded",
        Duration::from_secs(30),
        POLL,
        || async {
            sample(&admin_metrics(addr(ADMIN)).await, forwarded).unwrap_or(0.0) >= sent as f64
        },
    )
    .await;
    let m = admin_metrics(addr(ADMIN)).await;
    assert_eq!(sample(&m, forwarded), Some(sent as f64), "{m}");
    assert_eq!(sum_of(&m, "e2lb_messages_dropped_total"), 0, "{m}");
    sampler.abort();
    let transitions: Vec<(f64, String)> = api(addr(ADMIN), "/api/v1/balancer").await["decisions"]
        .as_array()
        .expect("balancer decisions")
        .iter()
        .filter(|d| d["kind"] == "transition")
        .map(|d| {
            (
                rel(t0, d["at"].as_str().unwrap_or("")),
                format!(
                    "balancer → {} ({}; max cpu {:.2})",
                    d["to"].as_str().unwrap_or("?"),
                    d["cause"].as_str().unwrap_or("?"),
                    d["max_cpu"].as_f64().unwrap_or(f64::NAN)
                ),
            )
        })
        .collect();
    let st = ric1.terminate(Duration::from_secs(20)).await;
    assert!(st.success(), "ric-1: {st:?}");
    let r = read_json(&ric1_report);
    let get = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
    assert_stream_intact("ric-1", &r);
    let ric1_received = get("indications");
    assert_eq!(
        get("setups"),
        u64::from(STEADY_NODES + HOT_NODES + PROBE_NODES) - placed[AUTO_NAME],
        "ric-1's E2 Setups: the steady and hot nodes and the probe nodes placed there"
    );
    println!(
        "indications: sent {sent} (hot {hot_sent}, probe {probe_sent}, steady {steady_sent}), \
         forwarded {sent}, received ric-1 {ric1_received} + {AUTO_NAME} {auto_received}"
    );
    assert_eq!(
        ric1_received + auto_received,
        sent,
        "no indication lost through e2lb"
    );
    let st = e2lb.terminate(Duration::from_secs(20)).await;
    assert!(st.success(), "e2lb run: {st:?}");

    // The timeline: the test's own events, the balancer's transitions, the
    // exec actuator's log lines and ric-1's first CPU sample above the
    // threshold.
    timeline.extend(transitions);
    for l in e2lb.log_text().lines() {
        let what = [
            "backend process started",
            "backend process ready",
            "backend discovered",
            "scale-down: backend drained",
            "stopping backend process",
            "backend process stopped",
            "scale-down complete",
        ]
        .into_iter()
        .find(|w| l.contains(w));
        if let (Some(what), Some(stamp)) = (what, l.split_whitespace().next()) {
            timeline.push((rel(t0, stamp), format!("e2lb log: {what}")));
        }
    }
    let samples = samples.lock().expect("samples").clone();
    let cpu_of = |s: &Sample| s.backends.get("ric-1").and_then(|b| b.1);
    if let Some(s) = samples
        .iter()
        .find(|s| cpu_of(s).is_some_and(|c| c >= HOT_CPU))
    {
        timeline.push((
            s.t,
            format!(
                "ric-1 CPU {:.2} (first sample >= {HOT_CPU})",
                cpu_of(s).unwrap_or(0.0)
            ),
        ));
    }
    if let Some(s) = samples
        .iter()
        .filter(|s| s.t > t_stop)
        .find(|s| cpu_of(s).is_some_and(|c| c <= 0.1))
    {
        timeline.push((
            s.t,
            format!(
                "ric-1 CPU {:.2} (first sample <= 0.1 after the load fell)",
                cpu_of(s).unwrap_or(0.0)
            ),
        ));
    }
    let hot_cpu: Vec<f64> = samples
        .iter()
        .filter(|s| s.t > t_up - 3.0 && s.t < t_stop)
        .filter_map(cpu_of)
        .collect();
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!("timeline (s since the test started):");
    for (t, what) in &timeline {
        println!("  {t:6.1}  {what}");
    }
    println!(
        "ric-1 CPU from 3 s before the scale-up to the load falling: {:?}",
        hot_cpu
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
    );
    println!(
        "load stop → scale-down decision {:.1} s; test took {:.1} s",
        t_down - t_stop,
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
