#![allow(dead_code)]
//! Helpers shared by the hostile-input, fault and soak rig tests
//! (`abuse_sctp`, `faults_sctp`, `soak_sctp`): labelled metric lookup,
//! `e2lb sim ric` processes with a report each, loss accounting per
//! node-side subscription over several RIC reports, and `/proc` samples of
//! a process (RSS, open file descriptors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::rigproc::{self, Proc, ProcOpts};

/// Sum of the samples of `name` whose labels include every `(label, value)`
/// of `labels` (in any order; other labels are ignored).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (set, v) = r.split_once('}')?;
                    (set, v)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let have: Vec<(&str, &str)> = set
                .split(',')
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|want| have.contains(want))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum::<f64>()
        // (An empty float sum is -0.0.)
        + 0.0
}

/// One `e2lb sim ric` process: its name, E2 and metrics addresses, and the
/// report it writes when it ends.
pub struct Ric {
    pub name: String,
    pub e2: SocketAddr,
    pub metrics: SocketAddr,
    pub report: PathBuf,
    pub proc: Proc,
}

/// Starts `e2lb sim ric` named `name` (requestor id `requestor`), its report
/// at `dir/<file>.json` and log at `dir/<file>.log`.
pub fn spawn_ric(
    dir: &Path,
    name: &str,
    file: &str,
    e2: SocketAddr,
    metrics: SocketAddr,
    requestor: u16,
    opts: ProcOpts,
) -> Ric {
    let report = dir.join(format!("{file}.json"));
    let mut args: Vec<String> = [
        "sim",
        "ric",
        "--listen",
        &e2.to_string(),
        "--metrics",
        &metrics.to_string(),
        "--name",
        name,
        "--requestor-id",
        &requestor.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push("--report".to_owned());
    args.push(report.display().to_string());
    let proc = Proc::spawn(name, &args, dir.join(format!("{file}.log")), opts);
    Ric {
        name: name.to_owned(),
        e2,
        metrics,
        report,
        proc,
    }
}

/// A RIC simulator's current `/metrics` text (empty when it does not answer).
pub async fn ric_metrics(at: SocketAddr) -> String {
    match rigproc::http(at, "GET", "/metrics").await {
        Some((200, text)) => text,
        _ => String::new(),
    }
}

/// Waits (at most 30 s) until the e2lb whose admin endpoint is `admin` has no
/// node association left: every node closed and e2lb delivered what it still
/// held for the RICs. Stopping a RIC before that loses messages the test
/// would count against e2lb.
pub async fn e2lb_idle(admin: SocketAddr) {
    rigproc::wait_for(
        "e2lb to finish every association",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(200),
        || async {
            metric(
                &rigproc::admin_metrics(admin).await,
                "e2lb_associations_active",
                &[],
            ) == 0.0
        },
    )
    .await;
}

/// Waits (at most 15 s) until the RIC processes whose metrics pages are
/// `metrics` have read what they were sent: their summed
/// `ric_indications_received_total` unchanged for a second. e2lb's
/// associations end once the RICs' kernels hold the data, not once the RIC
/// applications read it; a RIC stopped before that would count the last
/// messages of a stream as lost.
pub async fn rics_settled(metrics: &[SocketAddr]) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (mut last, mut same) = (None, 0);
    while std::time::Instant::now() < end {
        let mut sum = 0.0;
        for at in metrics {
            sum += metric(
                &ric_metrics(*at).await,
                "ric_indications_received_total",
                &[],
            );
        }
        if last == Some(sum) {
            same += 1;
            if same >= 4 {
                return;
            }
        } else {
            (last, same) = (Some(sum), 0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Per node-side subscription stream, summed over every RIC report that saw
/// it (a stream moves between RICs on migrations and re-homes): received,
/// the highest sequence number seen, duplicates.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub received: u64,
    pub max_seq: Option<u64>,
    pub first_seq: Option<u64>,
    pub duplicates: u64,
    /// Reports (by index into the slice given) that saw this stream.
    pub seen_in: Vec<usize>,
}

impl Stream {
    /// Numbers below the highest one seen that never arrived (streams
    /// start at 0).
    pub fn lost(&self) -> u64 {
        self.max_seq
            .map_or(0, |m| (m + 1).saturating_sub(self.received))
    }
}

/// The streams of `reports`, keyed by (node, node-side RICrequestID): a
/// subscription's stream keeps its node-side id when it moves (the RIC that
/// adopted it reports that id as `origin`).
pub fn streams(reports: &[Value]) -> BTreeMap<(String, String), Stream> {
    let mut by: BTreeMap<(String, String), Stream> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        for s in r["per_subscription"].as_array().into_iter().flatten() {
            let received = s["received"].as_u64().unwrap_or(0);
            if received == 0 {
                continue;
            }
            let key = (
                s["node"].to_string(),
                if s["origin"].is_null() {
                    s["request"].to_string()
                } else {
                    s["origin"].to_string()
                },
            );
            let e = by.entry(key).or_default();
            e.received += received;
            if let Some(m) = s["max_seq"].as_u64() {
                e.max_seq = Some(e.max_seq.map_or(m, |x| x.max(m)));
            }
            if let Some(f) = s["first_seq"].as_u64() {
                e.first_seq = Some(e.first_seq.map_or(f, |x| x.min(f)));
            }
            e.duplicates += s["duplicates"].as_u64().unwrap_or(0);
            if !e.seen_in.contains(&i) {
                e.seen_in.push(i);
            }
        }
    }
    by
}

/// Indications the RICs of `reports` received, in total.
pub fn received(reports: &[Value]) -> u64 {
    reports
        .iter()
        .map(|r| r["indications"].as_u64().unwrap_or(0))
        .sum()
}

/// One sample of a process: resident set size (KiB) and open descriptors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// `VmRSS`, `Threads` from `/proc/<pid>/status` and the entries of
/// `/proc/<pid>/fd`; `None` when the process is gone.
pub fn proc_sample(pid: libc::pid_t) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(ProcSample {
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Raise this process's soft limit of open files to `want` (or the hard
/// limit, if lower); the limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want.min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}
