//! Leader election (`e2lb::leader`) against a real etcd.
//!
//! The test starts etcd itself (`/usr/bin/etcd`, Debian package
//! `etcd-server`, installed by `scripts/install-deps`) on loopback with
//! random client and peer ports and a temporary data dir, and runs every
//! contender as a separate process: this test binary re-executed in the
//! `leader_contender_helper` mode (an ignored test driven by environment
//! variables). So "kill the leader" is a real SIGKILL, with no resign.
//! The test is skipped, with a message, only when the etcd binary is missing.
//!
//! Each contender prints every role change it sees on its watch channel,
//! stamped with CLOCK_MONOTONIC (one clock for all processes of the host).
//! From those stamps the test rebuilds each process's leadership intervals
//! and checks after every scenario that no two of them overlap: at no moment
//! were two processes leader. A SIGKILLed process's interval ends when the
//! test has reaped it.
//!
//! Scenarios (lease TTL 2 s, step-down margin 0.5 s), one etcd throughout:
//! 1. two contenders: exactly one leader, the other follows it;
//! 2. SIGKILL of the leader: the other takes over after the lease expires
//!    (not before: no resign), within TTL + 1.5 s;
//! 3. clean stop of the leader: it resigns, the other takes over at once;
//! 4. etcd SIGKILLed: the leader demotes within the TTL; etcd restarted on
//!    the same data: one leader again;
//! 5. etcd frozen (SIGSTOP, connections stay open and silent): the leader
//!    demotes by its own deadline, before TTL - margin; SIGCONT: one leader
//!    again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};

use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use e2lb::leader::{run, LeaderConfig, LeaderMetrics, Role};

#[path = "common/etcd.rs"]
mod etcd;
use etcd::{mono_ns, Etcd, ETCD};

const KEY: &str = "/e2lb-test/scaler-leader";
const TTL: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_millis(500);
const HELPER: &str = "leader_contender_helper";
const TAG: &str = "E2LB-LEADER";

fn dur(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

// ---------------------------------------------------------------------------
// The contender process.

/// A contender: runs `e2lb::leader::run` until "stop" (or EOF) on stdin and
/// prints `E2LB-LEADER <mono_ns> leader | follower <leader|-> | exit <to_leader>
/// <to_follower>` on stdout. Does nothing unless started by the test below.
#[test]
#[ignore = "a contender process of leader_election_against_real_etcd, driven by env vars"]
fn leader_contender_helper() {
    let Ok(endpoint) = std::env::var("E2LB_LEADER_HELPER_ENDPOINT") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} unset"));
    let id = var("E2LB_LEADER_HELPER_ID");
    let key = var("E2LB_LEADER_HELPER_KEY");
    let ttl = Duration::from_millis(var("E2LB_LEADER_HELPER_TTL_MS").parse().expect("ttl"));
    let margin = Duration::from_millis(var("E2LB_LEADER_HELPER_MARGIN_MS").parse().expect("ms"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("e2lb=debug,warn"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();

    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{TAG} {line}");
        let _ = out.flush();
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = LeaderConfig::new(vec![endpoint], key, id).with_lease_ttl(ttl);
        cfg.step_down_margin = margin;
        cfg.connect_timeout = Duration::from_secs(1);
        let (tx, mut rx) = tokio::sync::watch::channel(Role::default());
        let metrics = LeaderMetrics::unregistered();
        let watcher = tokio::spawn(async move {
            loop {
                let role = rx.borrow_and_update().clone();
                let t = mono_ns();
                match role {
                    Role::Leader => say(format!("{t} leader")),
                    Role::Follower { leader } => {
                        say(format!("{t} follower {}", leader.as_deref().unwrap_or("-")))
                    }
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            // "stop", or EOF (the test is gone): a clean shutdown.
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "stop" => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = stop_tx.send(());
        });
        run(cfg, tx, metrics.clone(), async {
            let _ = stop_rx.await;
        })
        .await
        .expect("valid config");
        watcher.await.expect("watcher");
        say(format!(
            "{} exit {} {}",
            mono_ns(),
            metrics.transitions_to("leader"),
            metrics.transitions_to("follower")
        ));
    });
}

// ---------------------------------------------------------------------------
// What the test has seen of the contenders.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Follower(Option<String>),
    Leader,
    Exited,
}

#[derive(Default)]
struct Board {
    /// Latest role per contender (not updated once Exited).
    roles: HashMap<String, Seen>,
    /// Every report: (contender, mono_ns, role).
    events: Vec<(String, u64, Seen)>,
    /// Transition counters reported at a clean exit: (to leader, to follower).
    exits: HashMap<String, (u64, u64)>,
}

impl Board {
    fn record(&mut self, who: &str, t: u64, seen: Seen) {
        self.events.push((who.to_string(), t, seen.clone()));
        if self.roles.get(who) != Some(&Seen::Exited) {
            self.roles.insert(who.to_string(), seen);
        }
    }

    fn role(&self, who: &str) -> Option<&Seen> {
        self.roles.get(who)
    }

    /// `Some(leader)` when exactly one of `ids` leads and the others follow it.
    fn settled(&self, ids: &[&str]) -> Option<String> {
        let leaders: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| self.role(id) == Some(&Seen::Leader))
            .collect();
        let [leader] = leaders[..] else {
            return None;
        };
        let want = Seen::Follower(Some(leader.to_string()));
        ids.iter()
            .all(|id| *id == leader || self.role(id) == Some(&want))
            .then(|| leader.to_string())
    }

    /// Leadership intervals [start, end) per contender, on the shared clock.
    fn intervals(&self) -> Vec<(String, u64, u64)> {
        let mut by: HashMap<&str, Vec<(u64, &Seen)>> = HashMap::new();
        for (who, t, s) in &self.events {
            by.entry(who).or_default().push((*t, s));
        }
        let mut out = Vec::new();
        for (who, mut evs) in by {
            evs.sort_by_key(|(t, _)| *t);
            let mut open = None;
            for (t, s) in evs {
                match (s, open) {
                    (Seen::Leader, None) => open = Some(t),
                    (Seen::Leader, Some(_)) => {}
                    (_, Some(start)) => {
                        out.push((who.to_string(), start, t));
                        open = None;
                    }
                    (_, None) => {}
                }
            }
            if let Some(start) = open {
                out.push((who.to_string(), start, u64::MAX));
            }
        }
        out.sort_by_key(|i| i.1);
        out
    }

    /// Panics if two contenders' leadership intervals overlap.
    fn assert_never_two_leaders(&self) {
        let iv = self.intervals();
        for (i, a) in iv.iter().enumerate() {
            for b in &iv[i + 1..] {
                assert!(
                    a.0 == b.0 || !(a.1 < b.2 && b.1 < a.2),
                    "two leaders at once: {a:?} and {b:?}\nall intervals: {iv:?}"
                );
            }
        }
    }
}

type Shared = Arc<(Mutex<Board>, Condvar)>;

fn record(board: &Shared, who: &str, t: u64, seen: Seen) {
    let (m, cv) = &**board;
    m.lock().expect("board").record(who, t, seen);
    cv.notify_all();
}

/// Waits until `pred` holds; returns its value and the mono time it was seen.
fn wait_for<T>(
    board: &Shared,
    what: &str,
    within: Duration,
    pred: impl Fn(&Board) -> Option<T>,
) -> (T, u64) {
    let (m, cv) = &**board;
    let end = Instant::now() + within;
    let mut b = m.lock().expect("board");
    loop {
        if let Some(v) = pred(&b) {
            return (v, mono_ns());
        }
        let now = Instant::now();
        assert!(
            now < end,
            "timed out after {within:?} waiting for: {what}\nroles: {:?}\nevents: {:?}",
            b.roles,
            b.events
        );
        b = cv.wait_timeout(b, end - now).expect("board").0;
    }
}

fn with_board<T>(board: &Shared, f: impl FnOnce(&Board) -> T) -> T {
    f(&board.0.lock().expect("board"))
}

// ---------------------------------------------------------------------------
// Processes.

/// A contender process (this binary in helper mode); killed on drop.
struct Contender {
    id: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Contender {
    fn spawn(id: &str, endpoint: &str, board: &Shared) -> Contender {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .args(["--exact", HELPER, "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("E2LB_LEADER_HELPER_ENDPOINT", endpoint)
            .env("E2LB_LEADER_HELPER_ID", id)
            .env("E2LB_LEADER_HELPER_KEY", KEY)
            .env("E2LB_LEADER_HELPER_TTL_MS", TTL.as_millis().to_string())
            .env(
                "E2LB_LEADER_HELPER_MARGIN_MS",
                MARGIN.as_millis().to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn contender");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (who, b) = (id.to_string(), board.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix(TAG) else {
                    continue;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                let t: u64 = f[0].parse().expect("stamp");
                match f[1] {
                    "leader" => record(&b, &who, t, Seen::Leader),
                    "follower" => {
                        let l = (f[2] != "-").then(|| f[2].to_string());
                        record(&b, &who, t, Seen::Follower(l));
                    }
                    "exit" => {
                        let n = (f[2].parse().expect("n"), f[3].parse().expect("n"));
                        b.0.lock().expect("board").exits.insert(who.clone(), n);
                        record(&b, &who, t, Seen::Exited);
                    }
                    other => panic!("unexpected report {other:?}"),
                }
            }
        });
        let who = id.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{who}] {line}");
            }
        });
        let stdin = child.stdin.take();
        Contender {
            id: id.to_string(),
            child,
            stdin,
        }
    }

    /// SIGKILL (no resign); returns the mono time once the process is reaped.
    fn kill(&mut self, board: &Shared) -> u64 {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        let t = mono_ns();
        record(board, &self.id, t, Seen::Exited);
        t
    }

    /// Asks for a clean shutdown (the helper resigns); returns the mono time.
    fn stop(&mut self) -> u64 {
        let t = mono_ns();
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "stop").expect("write stop");
        stdin.flush().expect("flush");
        t
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit in {within:?}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The scenarios.

#[test]
fn leader_election_against_real_etcd() {
    if !Path::new(ETCD).exists() {
        println!(
            "SKIPPED leader_election_against_real_etcd: {ETCD} is missing \
             (Debian package etcd-server; scripts/install-deps installs it)"
        );
        return;
    }
    let started = Instant::now();
    let mut etcd = Etcd::start();
    let ep = etcd.endpoint();
    let board: Shared = Arc::default();
    let mut cs: HashMap<&str, Contender> = HashMap::new();
    let settled = |ids: [&'static str; 2]| move |b: &Board| b.settled(&ids);

    // 1. Two contenders: exactly one leads, the other follows it.
    let t0 = mono_ns();
    cs.insert("a", Contender::spawn("a", &ep, &board));
    cs.insert("b", Contender::spawn("b", &ep, &board));
    let (l1, t) = wait_for(
        &board,
        "a leader among a, b",
        Duration::from_secs(20),
        settled(["a", "b"]),
    );
    let f1: &str = if l1 == "a" { "b" } else { "a" };
    println!(
        "1. {l1} leads, {f1} follows; {:?} after spawning both",
        dur(t - t0)
    );

    // 2. SIGKILL the leader: no resign, so the other waits for the lease.
    let t_kill = cs.get_mut(l1.as_str()).expect("leader").kill(&board);
    let (_, t) = wait_for(
        &board,
        "takeover after SIGKILL",
        TTL + Duration::from_secs(3),
        |b| (b.role(f1) == Some(&Seen::Leader)).then_some(()),
    );
    let takeover = dur(t - t_kill);
    println!("2. SIGKILL of {l1}: {f1} leads after {takeover:?} (lease ttl {TTL:?})");
    // The dead leader's lease was renewed at most ttl/3 before the kill.
    assert!(
        takeover >= TTL * 2 / 3 - Duration::from_millis(100),
        "took over before the lease could expire: {takeover:?}"
    );
    // etcd revokes expired leases in rounds every 500 ms.
    assert!(
        takeover <= TTL + Duration::from_millis(1500),
        "takeover too slow: {takeover:?}"
    );
    with_board(&board, Board::assert_never_two_leaders);

    // 3. A clean stop of the leader resigns: the other takes over at once.
    cs.insert("c", Contender::spawn("c", &ep, &board));
    let (l, _) = wait_for(&board, "c follows", Duration::from_secs(10), move |b| {
        b.settled(&[f1, "c"])
    });
    assert_eq!(l, f1);
    let t_stop = cs.get_mut(f1).expect("leader").stop();
    let (_, t) = wait_for(&board, "handover after a clean stop", TTL, |b| {
        (b.role("c") == Some(&Seen::Leader)).then_some(())
    });
    let handover = dur(t - t_stop);
    println!("3. clean stop of {f1}: c leads after {handover:?}");
    assert!(
        handover < TTL / 2,
        "a clean stop should hand over at once: {handover:?}"
    );
    let leader = cs.get_mut(f1).expect("stopped");
    assert!(leader.wait_exit(Duration::from_secs(5)).success());
    let (to_leader, to_follower) =
        with_board(&board, |b| b.exits.get(f1).copied()).expect("exit report");
    assert!(
        to_leader >= 1 && to_follower >= 1,
        "{f1}'s counters: {to_leader} {to_follower}"
    );
    with_board(&board, Board::assert_never_two_leaders);

    // 4. etcd killed: the leader demotes within the TTL; back: one leader.
    cs.insert("d", Contender::spawn("d", &ep, &board));
    wait_for(
        &board,
        "c leads, d follows",
        Duration::from_secs(10),
        settled(["c", "d"]),
    );
    let t_down = etcd.kill();
    let (_, t) = wait_for(&board, "c demotes without etcd", TTL, |b| {
        matches!(b.role("c"), Some(Seen::Follower(_))).then_some(())
    });
    println!(
        "4. etcd SIGKILLed: c demoted after {:?}",
        dur(t.saturating_sub(t_down))
    );
    std::thread::sleep(TTL / 2); // let them retry against a dead endpoint
    assert!(with_board(&board, |b| b.role("c") != Some(&Seen::Leader)
        && b.role("d") != Some(&Seen::Leader)));
    etcd.spawn().expect("etcd restart");
    let t_up = mono_ns();
    let (l, t) = wait_for(
        &board,
        "one leader after etcd restart",
        TTL * 3 + Duration::from_secs(5),
        settled(["c", "d"]),
    );
    println!(
        "   etcd restarted: {l} leads {:?} after etcd was healthy again",
        dur(t - t_up)
    );
    with_board(&board, Board::assert_never_two_leaders);

    // 5. etcd frozen: no error, just silence; the leader's own deadline demotes it.
    let t_freeze = etcd.signal(libc::SIGSTOP);
    let (_, t) = wait_for(&board, "leader demotes with etcd frozen", TTL, move |b| {
        matches!(b.role(&l), Some(Seen::Follower(_))).then_some(())
    });
    let demote = dur(t - t_freeze);
    println!(
        "5. etcd frozen: the leader demoted after {demote:?} (ttl {TTL:?} - margin {MARGIN:?})"
    );
    assert!(
        demote <= TTL - MARGIN + Duration::from_millis(200),
        "demoted too late: {demote:?}"
    );
    // No error to react to: it waited for its deadline (last ack at most ttl/3 old).
    assert!(
        demote >= TTL - MARGIN - TTL / 3 - Duration::from_millis(100),
        "{demote:?}"
    );
    std::thread::sleep(TTL); // the leases expire meanwhile (on etcd's clock, once it runs)
    etcd.signal(libc::SIGCONT);
    let t_thaw = mono_ns();
    let (l, t) = wait_for(
        &board,
        "one leader after SIGCONT",
        TTL * 3 + Duration::from_secs(5),
        settled(["c", "d"]),
    );
    println!("   etcd resumed: {l} leads {:?} later", dur(t - t_thaw));
    with_board(&board, Board::assert_never_two_leaders);

    // Clean stop of all; every report accounted for.
    for id in ["c", "d"] {
        cs.get_mut(id).expect("contender").stop();
    }
    for id in ["c", "d"] {
        assert!(cs
            .get_mut(id)
            .expect("contender")
            .wait_exit(Duration::from_secs(5))
            .success());
    }
    wait_for(&board, "exit reports", Duration::from_secs(2), |b| {
        (b.exits.contains_key("c") && b.exits.contains_key("d")).then_some(())
    });
    with_board(&board, |b| {
        b.assert_never_two_leaders();
        let iv = b.intervals();
        println!(
            "leadership intervals (ms since start): {:?}",
            iv.iter()
                .map(|(w, s, e)| {
                    let ms = |t: u64| {
                        if t == u64::MAX {
                            -1
                        } else {
                            (t - t0) as i64 / 1_000_000
                        }
                    };
                    (w.clone(), ms(*s), ms(*e))
                })
                .collect::<Vec<_>>()
        );
        for (who, (to_leader, _)) in &b.exits {
            let seen = iv.iter().filter(|(w, ..)| w == who).count() as u64;
            assert!(
                *to_leader >= seen,
                "{who}: counter {to_leader} < {seen} leader intervals seen"
            );
        }
    });
    println!("total {:?}", started.elapsed());
}
