//! e2lb's resident memory per association over kernel SCTP (the in-memory
//! figure is `tests/memory_mem.rs`). A measurement, run on request inside the
//! rig: `scripts/rig-test --release memory_sctp -- --ignored --nocapture measure_`.
//!
//! `e2lb run` is a child process; a scripted RIC (answers the E2 Setup,
//! subscribes once) and scripted nodes (set up, answer the subscription, then
//! idle) live in this process. e2lb's VmRSS is sampled with no node, then
//! after each step of associations; the growth divided by the associations
//! added is its memory per association (heap, stacks and allocator slack; the
//! kernel's socket memory is not in RSS). Steps continue while the guest
//! lets associations open.

#[path = "common/accounting.rs"]
mod accounting;
#[path = "support/peers.rs"]
mod peers;
#[path = "common/rig.rs"]
mod rig;
#[path = "common/rigproc.rs"]
mod rigproc;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accounting::{proc_sample, raise_nofile};
use e2lb::transport::sctp::{SctpConnector, SctpListener};
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options};
use peers::{indication, setup_request, setup_response, sub_request, sub_response};
use rigproc::{addr, start_e2lb, ProcOpts};
use tokio_util::sync::CancellationToken;

const LISTEN: &str = "127.0.0.1:44421";
const ADMIN: &str = "127.0.0.1:44090";
const RIC: &str = "127.0.14.1:44421";
const STEPS: [usize; 5] = [250, 500, 1000, 2000, 4000];

fn config() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2lb-memory-sctp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let text = format!(
        r#"
[proxy]
listen = ["{LISTEN}"]
max_associations = 100000
setup_rate_per_backend = 0
first_message_timeout = "300s"
connect_timeout = "60s"
setup_timeout = "60s"

[[backends]]
name = "ric-0"
addr = "{RIC}"

[probe]
enabled = false

[admin]
listen = "{ADMIN}"
"#
    );
    let path = dir.join("e2lb.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Indications each node sends after its subscription, before it idles
/// (`E2LB_MEM_INDICATIONS`, default 0): with traffic, e2lb's receive chunks
/// fill up (`transport::sctp::RECV_CHUNK`).
fn indications() -> u64 {
    std::env::var("E2LB_MEM_INDICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Opens `n` more nodes (100 handshakes at a time); each sets up, answers
/// its subscription, sends [`indications`] of 300 B and idles until `stop`.
/// Returns how many got there.
async fn add_nodes(first: u32, n: usize, stop: &CancellationToken) -> usize {
    let k = indications();
    let ready = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let (ready, sem, stop) = (ready.clone(), sem.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let mut a = tokio::time::timeout(
                Duration::from_secs(60),
                SctpConnector::new(Options::default()).connect(addr(LISTEN)),
            )
            .await
            .ok()?
            .ok()?;
            a.send(&Message::new(0, 70, setup_request(first + i)))
                .await
                .ok()?;
            let _resp = a.recv().await.ok()??;
            let sub = a.recv().await.ok()??;
            let id = e2lb::e2ap::Envelope::parse(&sub.payload)
                .ok()
                .and_then(|e| e.ric_request_id())
                .map_or(0, |r| r.instance);
            a.send(&Message::new(1, 70, sub_response(id))).await.ok()?;
            for seq in 0..k {
                a.send(&Message::new(1, 70, indication(id, seq, 300)))
                    .await
                    .ok()?;
            }
            ready.fetch_add(1, Ordering::SeqCst);
            drop(permit);
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = async { while let Ok(Some(_)) = a.recv().await {} } => {}
                }
            });
            Some(())
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ready.load(Ordering::SeqCst)
}

/// Raise the hard limit of open files to `want` (needs CAP_SYS_RESOURCE, as
/// root in the rig; a failure leaves it as it was).
fn raise_hard_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_max < want {
            lim.rlim_max = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: a measurement, runs in the rig on request (scripts/rig-test --release memory_sctp -- --ignored --nocapture measure_)"]
async fn measure_rss_per_association_over_kernel_sctp() {
    if !rig::sctp_or_skip() {
        return;
    }
    // Two descriptors per association in e2lb (node, RIC), two here; e2lb
    // inherits the limit. Root in the guest may raise the hard limit too.
    let want = 2 * *STEPS.last().unwrap_or(&0) as u64 + 1024;
    raise_hard_nofile(want);
    let limit = raise_nofile(want);
    let most = (limit as usize).saturating_sub(512) / 2;
    let stop = CancellationToken::new();
    let mut ric = SctpListener::bind(&[addr(RIC)], &Options::default()).expect("RIC listen");
    let ric_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u16;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    a = ric.accept() => {
                        let Ok(mut a) = a else { continue };
                        i = i.wrapping_add(1);
                        let (id, stop) = (i, stop.clone());
                        tokio::spawn(async move {
                            let Ok(Some(_setup)) = a.recv().await else { return };
                            let _ = a.send(&Message::new(0, 70, setup_response())).await;
                            let _ = a.send(&Message::new(1, 70, sub_request(id))).await;
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = async { while let Ok(Some(_)) = a.recv().await {} } => {}
                            }
                        });
                    }
                }
            }
        })
    };
    let cfg = config();
    let log = cfg.with_file_name("e2lb.log");
    let opts = ProcOpts {
        env: &[],
        tail: 40,
        term_on_drop: Some(Duration::from_secs(5)),
    };
    let mut e2lb = start_e2lb(&cfg, log, addr(ADMIN), opts, Duration::from_millis(200)).await;
    let pid = e2lb.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = proc_sample(pid).expect("e2lb alive");
    println!(
        "memory_sctp: open-file limit {limit}; {} indications per node; e2lb idle: RSS {} KiB, {} fds",
        indications(),
        base.rss_kib,
        base.fds
    );
    let (mut open, mut prev) = (0usize, base);
    let mut rows = Vec::new();
    for step in STEPS.into_iter().map(|s| s.min(most)) {
        if step <= open {
            break;
        }
        let t = Instant::now();
        let got = add_nodes(1 + open as u32, step - open, &stop).await;
        open += got;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(s) = proc_sample(pid) else {
            panic!("e2lb died at {open} associations:\n{}", e2lb.log_text());
        };
        let per_total = (s.rss_kib.saturating_sub(base.rss_kib) * 1024) / open.max(1) as u64;
        let per_step = (s.rss_kib.saturating_sub(prev.rss_kib) * 1024) / got.max(1) as u64;
        println!(
            "memory_sctp: {open} associations ({got} added in {:.1} s): RSS {} KiB, {} fds; {per_total} B per association since idle, {per_step} B per association in this step",
            t.elapsed().as_secs_f64(),
            s.rss_kib,
            s.fds
        );
        rows.push((open, s.rss_kib, per_total, per_step));
        prev = s;
        if got < step - (open - got) {
            println!("memory_sctp: the guest allowed {open} associations (wanted {step})");
            break;
        }
    }
    stop.cancel();
    let _ = e2lb.terminate(Duration::from_secs(10)).await;
    let _ = ric_task.await;
    assert!(!rows.is_empty() && rows[0].0 > 0, "no association opened");
}
