#![allow(dead_code)]
//! Helpers shared by the kernel-SCTP rig tests (`balance_sctp`,
//! `scale_sctp`): child `e2lb` processes that print their log tail on a
//! failure, a raw HTTP/1.1 client, the admin API and Prometheus text.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2lb::sim::{run_nodes, NodeLive, NodeReport, NodeSimConfig, TrafficClass};
use e2lb::transport::sctp::SctpConnector;
use e2lb::transport::Options;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// How a [`Proc`] is run and ended.
#[derive(Clone, Copy, Debug)]
pub struct ProcOpts {
    /// Extra environment variables (besides `RUST_LOG=info`).
    pub env: &'static [(&'static str, &'static str)],
    /// Lines of the log printed on a failure.
    pub tail: usize,
    /// On drop, SIGTERM first and wait up to this long before SIGKILL.
    pub term_on_drop: Option<Duration>,
}

/// A child `e2lb` process, killed when the test ends (or fails). On a
/// failure the end of its log is printed, so a rig run explains itself.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    opts: ProcOpts,
}

impl Proc {
    pub fn spawn(name: &str, args: &[String], log: PathBuf, opts: ProcOpts) -> Proc {
        let err = File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_e2lb"))
            .args(args)
            .env("RUST_LOG", "info")
            .envs(opts.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn e2lb");
        Proc {
            name: name.to_owned(),
            child,
            log,
            opts,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid")
    }

    /// SIGTERM, then wait up to `limit` for the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGTERM) }, 0);
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit after SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        // (The simulators' progress lines end in '\r'.)
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace('\r', "\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(limit) = self.opts.term_on_drop {
            if matches!(self.child.try_wait(), Ok(None)) {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(self.pid(), libc::SIGTERM) };
                let end = Instant::now() + limit;
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(self.opts.tail)..];
            eprintln!("--- last lines of {} ({})", self.name, self.log.display());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub async fn http(at: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(at).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let out = String::from_utf8_lossy(&out).into_owned();
        let code = out.split(' ').nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// GET `path` on the admin endpoint `admin`: the JSON body of a 200.
pub async fn api(admin: SocketAddr, path: &str) -> Value {
    let (code, body) = http(admin, "GET", path)
        .await
        .unwrap_or_else(|| panic!("GET {path}: no answer"));
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The admin endpoint's `/metrics` text.
pub async fn admin_metrics(admin: SocketAddr) -> String {
    let (code, body) = http(admin, "GET", "/metrics").await.expect("GET /metrics");
    assert_eq!(code, 200);
    body
}

/// `/api/v1/backends`, by name.
pub async fn backends(admin: SocketAddr) -> BTreeMap<String, Value> {
    let v = api(admin, "/api/v1/backends").await;
    v["backends"]
        .as_array()
        .expect("backends array")
        .iter()
        .map(|b| (b["name"].as_str().expect("name").to_owned(), b.clone()))
        .collect()
}

/// The value of the sample `series` (name with its labels, as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every sample of counter `name` (any labels).
pub fn sum_of(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Polls `cond` every `poll` until it holds; fails after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, poll: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(poll).await;
    }
}

/// Waits (at most 30 s) until `name`'s metrics endpoint `at` answers `/healthz`.
pub async fn metrics_up(name: &str, at: SocketAddr, poll: Duration) {
    wait_for(
        &format!("{name} metrics"),
        Duration::from_secs(30),
        poll,
        || async { matches!(http(at, "GET", "/healthz").await, Some((200, _))) },
    )
    .await;
}

/// `nodes` E2 nodes (gNB-IDs from `first`) connecting to `target` one after
/// the other over `spread`, each offering one RAN function (one
/// subscription) and sending a 200-byte indication every `period` once
/// subscribed, until [`NodeLive::stop`]; `drain` after the stop.
pub fn arrive(
    target: SocketAddr,
    first: u32,
    nodes: u32,
    spread: Duration,
    period: Duration,
    drain: Duration,
) -> (Arc<NodeLive>, JoinHandle<NodeReport>) {
    let cfg = NodeSimConfig {
        target,
        nodes,
        first_node_id: first,
        ran_functions: vec![1],
        class: TrafficClass::Custom {
            period,
            payload: 200,
        },
        // Ended by NodeLive::stop.
        duration: Duration::from_secs(600),
        drain,
        connect_spread: spread,
        ..NodeSimConfig::default()
    };
    let live = NodeLive::new();
    let task = tokio::spawn(run_nodes(
        SctpConnector::new(Options::default()),
        cfg,
        live.clone(),
    ));
    (live, task)
}

/// Starts `e2lb run --config cfg` (log in `log`) and waits until its admin
/// endpoint `admin` answers `/readyz` with 200.
pub async fn start_e2lb(
    cfg: &Path,
    log: PathBuf,
    admin: SocketAddr,
    opts: ProcOpts,
    poll: Duration,
) -> Proc {
    let e2lb = Proc::spawn(
        "e2lb run",
        &[
            "run".to_owned(),
            "--config".to_owned(),
            cfg.display().to_string(),
        ],
        log,
        opts,
    );
    wait_for("e2lb /readyz", Duration::from_secs(30), poll, || async {
        matches!(http(admin, "GET", "/readyz").await, Some((200, _)))
    })
    .await;
    e2lb
}

/// A RIC simulator's report `r` shows an intact indication stream: no gaps,
/// losses, duplicates, reordering, corruption or errors.
pub fn assert_stream_intact(who: &str, r: &Value) {
    let get = |k: &str| r[k].as_u64().unwrap_or(u64::MAX);
    for k in [
        "gaps",
        "missing",
        "duplicates",
        "out_of_order",
        "corrupt",
        "errors",
    ] {
        assert_eq!(get(k), 0, "{who}: {k}");
    }
}
