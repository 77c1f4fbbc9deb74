//! Data-path throughput through the proxy on the in-memory transport, against a
//! direct node→RIC connection measured in the same run, and heap allocations
//! per forwarded message (counted by a wrapping global allocator).
//!
//! Each iteration batch sends `iters` RIC Indications (100-byte message) from a
//! node leg and waits until the RIC leg has received all of them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::session::BackendId;
use e2lb::transport::mem::{MemAssoc, MemNet};
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[path = "../tests/support/peers.rs"]
mod peers;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A node leg and a RIC leg, either straight or through the proxy.
struct Path {
    node: MemAssoc,
    ric: MemAssoc,
}

async fn direct(net: &MemNet) -> Path {
    let mut l = net
        .listen("127.0.1.1:1".parse().unwrap(), Options::default())
        .unwrap();
    let node = net
        .connector("10.0.0.1:0".parse().unwrap(), Options::default())
        .connect(l.local_addr())
        .await
        .unwrap();
    let ric = l.accept().await.unwrap();
    Path { node, ric }
}

async fn proxied(net: &MemNet) -> Path {
    let ric_addr: SocketAddr = "127.0.1.2:36421".parse().unwrap();
    let mut ric_l = net.listen(ric_addr, Options::default()).unwrap();
    let proxy_l = net
        .listen("127.0.0.1:36421".parse().unwrap(), Options::default())
        .unwrap();
    let shared = Arc::new(
        Shared::new(
            ProxyConfig::default(),
            Pool::new(vec![Backend::new(0, "ric-0", ric_addr)]),
            net.connector("127.0.0.1:0".parse().unwrap(), Options::default()),
            Arc::new(Metrics::new().unwrap()),
        )
        .unwrap(),
    );
    tokio::spawn(proxy::serve(proxy_l, shared, std::future::pending()));
    let mut node = net
        .connector("10.0.0.2:0".parse().unwrap(), Options::default())
        .connect(proxy_l_addr())
        .await
        .unwrap();
    let setup = peers::setup_request(1);
    node.send(&Message::new(0, 70, setup)).await.unwrap();
    let mut ric = ric_l.accept().await.unwrap();
    ric.recv().await.unwrap().unwrap();
    let resp = peers::setup_response();
    ric.send(&Message::new(0, 70, resp)).await.unwrap();
    node.recv().await.unwrap().unwrap();
    Path { node, ric }
}

fn proxy_l_addr() -> SocketAddr {
    "127.0.0.1:36421".parse().unwrap()
}

/// Send `n` indications and wait until all arrived; returns the elapsed time.
async fn pump(path: &mut Path, msg: &Message, n: u64) -> Duration {
    let start = Instant::now();
    let Path { node, ric } = path;
    let send = async {
        for _ in 0..n {
            node.send(msg).await.unwrap();
        }
    };
    let recv = async {
        for _ in 0..n {
            ric.recv().await.unwrap().unwrap();
        }
    };
    tokio::join!(send, recv);
    start.elapsed()
}

/// The sans-IO share of the cost: one indication through an established session.
fn session_only(c: &mut Criterion) {
    use e2lb::session::{Session, SessionConfig};
    // Establish a session by feeding it a setup exchange.
    let mut s = Session::new(SessionConfig::default());
    let t0 = Instant::now();
    let setup = peers::setup_request(1);
    s.handle_node(t0, Message::new(0, 70, setup));
    s.backend_attached(t0, BackendId(0));
    let resp = peers::setup_response();
    s.handle_backend(t0, BackendId(0), Message::new(0, 70, resp));
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
    let msg = Message::new(0, 70, peers::indication(1, 1, 100));
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("indication_node_to_ric", |b| {
        b.iter(|| {
            s.handle_node(t0, msg.clone());
            s.poll_transmit()
        })
    });
    // The same indication for a subscription handed over to another backend
    // under another RICrequestID: the id is rewritten in a copy.
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, Message::new(0, 70, peers::setup_request(1)));
    s.backend_attached(t0, BackendId(0));
    s.handle_backend(
        t0,
        BackendId(0),
        Message::new(0, 70, peers::setup_response()),
    );
    s.handle_backend(t0, BackendId(0), Message::new(0, 70, peers::sub_request(1)));
    s.handle_node(t0, Message::new(0, 70, peers::sub_response(1)));
    s.migrate_to(t0, BackendId(1)).expect("migrate");
    s.handle_backend(
        t0,
        BackendId(1),
        Message::new(0, 70, peers::setup_response()),
    );
    let mut theirs = peers::sub_request(1).to_vec();
    e2lb::e2ap::peek::rewrite_ric_request_id(
        &mut theirs,
        e2lb::e2ap::RicRequestId {
            requestor: 7,
            instance: 7,
        },
    )
    .expect("rewrite");
    s.handle_backend(
        t0,
        BackendId(1),
        Message::new(0, 70, bytes::Bytes::from(theirs)),
    );
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
    assert_eq!(s.backend(), Some(BackendId(1)), "switched");
    g.bench_function("indication_node_to_ric_handed_over", |b| {
        b.iter(|| {
            s.handle_node(t0, msg.clone());
            s.poll_transmit()
        })
    });
    // Router mode: the node shared by three pods; peek, owner lookup, and
    // (for a pod whose id collided at the node) the id restored in a copy.
    for (name, renumbered) in [
        ("indication_node_to_ric_router", false),
        ("indication_node_to_ric_router_id_restored", true),
    ] {
        let (mut r, node_id) = router_with_subscriptions(t0, renumbered);
        let msg = Message::new(0, 70, peers::indication(node_id.instance, 1, 100));
        g.bench_function(name, |b| {
            b.iter(|| {
                r.handle_node(t0, msg.clone());
                r.poll_transmit()
            })
        });
    }
    g.finish();
}

/// A router-mode node set up over three pods, each subscribed with the same
/// RICrequestID; returns the node-side id of pod 0's subscription (its own
/// id) or, `renumbered`, of pod 2's (a fresh one, restored on the way back).
fn router_with_subscriptions(
    t0: Instant,
    renumbered: bool,
) -> (e2lb::router::Router, e2lb::e2ap::RicRequestId) {
    use e2lb::e2ap::Envelope;
    use e2lb::router::{Router, RouterConfig};
    let pods = [BackendId(0), BackendId(1), BackendId(2)];
    let mut r = Router::new(RouterConfig::default());
    r.handle_node(t0, Message::new(0, 70, peers::setup_request(1)));
    r.pods_chosen(t0, &pods);
    for p in pods {
        r.pod_attached(t0, p);
    }
    for p in pods {
        r.handle_pod(t0, p, Message::new(0, 70, peers::setup_response()));
    }
    while r.poll_transmit().is_some() {}
    let mut ids = Vec::new();
    for p in pods {
        r.handle_pod(t0, p, Message::new(0, 70, peers::sub_request(1)));
        let sent = r.poll_transmit().expect("to the node");
        let n = Envelope::parse(&sent.msg.payload)
            .expect("parse")
            .ric_request_id()
            .expect("id");
        let mut resp = peers::sub_response(1).to_vec();
        e2lb::e2ap::peek::rewrite_ric_request_id(&mut resp, n).expect("rewrite");
        r.handle_node(t0, Message::new(0, 70, bytes::Bytes::from(resp)));
        while r.poll_transmit().is_some() {}
        ids.push(n);
    }
    while r.poll_transmit().is_some() {}
    while r.poll_event().is_some() {}
    assert_eq!(r.routes().len(), 3);
    let n = if renumbered { ids[2] } else { ids[0] };
    (r, n)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let msg = Message::new(0, 70, peers::indication(1, 1, 100));
    let net = MemNet::new();
    let mut direct_path = rt.block_on(direct(&net));
    let mut proxy_path = rt.block_on(proxied(&net));

    session_only(c);

    let mut g = c.benchmark_group("forward_indication_100B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("direct", |b| {
        b.iter_custom(|n| rt.block_on(pump(&mut direct_path, &msg, n)))
    });
    g.bench_function("proxy", |b| {
        b.iter_custom(|n| rt.block_on(pump(&mut proxy_path, &msg, n)))
    });
    g.finish();

    // Allocations per forwarded message in steady state (after the warm-up above).
    let n = 100_000;
    for (name, path) in [("direct", &mut direct_path), ("proxy", &mut proxy_path)] {
        let before = ALLOCS.load(Ordering::Relaxed);
        rt.block_on(pump(path, &msg, n));
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        println!(
            "allocations per forwarded message ({name}): {:.4}",
            allocs as f64 / n as f64
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
