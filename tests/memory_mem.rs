//! Proxy memory per association (DESIGN §7: 10,000 associations per instance,
//! at most 16 KiB of proxy memory each), measured on the in-memory transport.
//!
//! Method: a counting global allocator keeps the bytes live on the heap
//! (sizes asked for; the allocator's own overhead is not included). The same
//! population is built twice in this process, one after the other: N E2
//! nodes, each set up (E2 Setup Request / Response) with one subscription
//! (RIC Subscription Request / Response), then idle —
//!
//! 1. *direct*: the nodes connect to the RIC peer itself;
//! 2. *proxied*: the nodes connect to e2lb, which connects to the RIC peer.
//!
//! Each run's figure is the live heap once everything is idle minus the live
//! heap before it started, after which it is torn down. The nodes and the
//! RIC are the same scripted peers in both runs, so
//! `(proxied - direct) / N` is what e2lb adds per association: its task and
//! driver, the session (with its cached E2 Setup Request and subscription),
//! the association record, its share of the proxy's fixed state, and the
//! second in-memory association (e2lb → RIC) — which over kernel SCTP would
//! be kernel socket memory, so the figure is an upper bound for e2lb's own
//! heap. Only allocations are counted (not stacks or the binary), which is
//! what grows with associations.
//!
//! This file holds one test on purpose: the counter is process-wide and
//! tests in one binary run in parallel.

#[path = "support/peers.rs"]
mod peers;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, Metrics, Pace, ProxyConfig, Shared};
use e2lb::session::SessionConfig;
use e2lb::transport::mem::MemNet;
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options};
use peers::{setup_request, setup_response, sub_request, sub_response};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// DESIGN §7.
const TARGET: isize = 16 * 1024;
const BATCH: u32 = 1_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Heap growth of `n` idle, set-up associations with one subscription each,
/// through e2lb or not. Everything is torn down before it returns.
async fn population(n: u32, proxied: bool) -> isize {
    // Let what the previous run freed in the background go first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let net = MemNet::new();
    let ric_addr = addr("127.0.50.1:36421");
    let listen = addr("127.0.50.50:36421");
    let mut ric = net.listen(ric_addr, Options::default()).expect("listen");
    let stop = CancellationToken::new();

    // The RIC peer: answers the setup, subscribes once, then idles.
    let ric_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut legs = tokio::task::JoinSet::new();
            let mut i = 0u16;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    a = ric.accept() => {
                        let Ok(mut a) = a else { break };
                        i = i.wrapping_add(1);
                        let id = i;
                        legs.spawn(async move {
                            let Ok(Some(_setup)) = a.recv().await else { return };
                            let _ = a.send(&Message::new(0, 70, setup_response())).await;
                            let _ = a.send(&Message::new(1, 70, sub_request(id))).await;
                            let _ = a.recv().await; // the subscription response
                            // Idle until the association closes.
                            while let Ok(Some(_)) = a.recv().await {}
                        });
                    }
                }
            }
            legs.shutdown().await;
        })
    };

    let proxy = proxied.then(|| {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let shared = Arc::new(
            Shared::new(
                ProxyConfig {
                    // How fast 10,000 nodes get in is not what is measured
                    // here (nodes come in batches; a busy debug build must
                    // not time a setup out).
                    setup_pace: Pace::UNPACED,
                    connect_timeout: Duration::from_secs(120),
                    session: SessionConfig {
                        setup_timeout: Duration::from_secs(120),
                        ..SessionConfig::default()
                    },
                    ..ProxyConfig::default()
                },
                Pool::new(vec![Backend::new(0, "ric-0", ric_addr)]),
                net.connector(addr("127.0.50.100:0"), Options::default()),
                metrics,
            )
            .expect("shared"),
        );
        let l = net.listen(listen, Options::default()).expect("listen");
        let stop = stop.clone();
        tokio::spawn(proxy::serve(
            l,
            shared,
            async move { stop.cancelled().await },
        ))
    });

    // The nodes: set up, answer the subscription, then idle.
    let target = if proxied { listen } else { ric_addr };
    let ready = Arc::new(AtomicUsize::new(0));
    let all_ready = Arc::new(Notify::new());
    let mut nodes = tokio::task::JoinSet::new();
    let connector = net.connector(addr("10.50.0.1:0"), Options::default());
    let t = Instant::now();
    for gnb in 1..=n {
        // In batches of 1,000: each set up before the next connects.
        if gnb > 1 && (gnb - 1) % BATCH == 0 {
            while ready.load(Ordering::SeqCst) < (gnb - 1) as usize {
                assert!(t.elapsed() < Duration::from_secs(300), "nodes not set up");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let (connector, ready, all_ready, stop) = (
            connector.clone(),
            ready.clone(),
            all_ready.clone(),
            stop.clone(),
        );
        nodes.spawn(async move {
            let Ok(mut a) = connector.connect(target).await else {
                return;
            };
            let _ = a.send(&Message::new(0, 70, setup_request(gnb))).await;
            let Ok(Some(_resp)) = a.recv().await else {
                return;
            };
            let Ok(Some(sub)) = a.recv().await else {
                return;
            };
            let id = e2lb::e2ap::Envelope::parse(&sub.payload)
                .ok()
                .and_then(|e| e.ric_request_id())
                .map_or(0, |r| r.instance);
            let _ = a.send(&Message::new(1, 70, sub_response(id))).await;
            if ready.fetch_add(1, Ordering::SeqCst) + 1 == n as usize {
                all_ready.notify_one();
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = async { while let Ok(Some(_)) = a.recv().await {} } => {}
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(300), all_ready.notified())
        .await
        .expect("every node set up and subscribed");
    // Idle: let the last responses travel and the tasks settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "memory: {n} associations {}: set up in {:.2} s, heap +{} KiB",
        if proxied { "through e2lb" } else { "direct" },
        t.elapsed().as_secs_f64(),
        grown / 1024
    );
    stop.cancel();
    while nodes.join_next().await.is_some() {}
    if let Some(p) = proxy {
        p.await.expect("proxy");
    }
    ric_task.await.expect("ric");
    drop(net);
    grown
}

/// The per-association figure at `n` (bytes).
async fn per_association(n: u32) -> isize {
    let direct = population(n, false).await;
    let proxied = population(n, true).await;
    let per = (proxied - direct) / n as isize;
    println!(
        "memory: e2lb adds {per} B per association at {n} associations ({:.1} KiB; target {} KiB)",
        per as f64 / 1024.0,
        TARGET / 1024
    );
    per
}

#[test]
fn proxy_memory_per_association_at_2k_and_10k_is_within_16_kib() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let at_2k = per_association(2_000).await;
        let at_10k = per_association(10_000).await;
        assert!(
            at_2k <= TARGET && at_10k <= TARGET,
            "e2lb memory per association: {at_2k} B at 2,000, {at_10k} B at 10,000 (target {TARGET} B)"
        );
        // Nothing per association outlives it (nothing grows with the count).
        assert!(
            (at_10k - at_2k).abs() < 2 * 1024,
            "per-association memory depends on the count: {at_2k} B vs {at_10k} B"
        );
    });
}
