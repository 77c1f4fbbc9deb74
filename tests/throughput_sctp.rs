//! Messages/s through e2lb vs a direct node→RIC association, over kernel SCTP
//! in the rig, measured in the same run. A measurement, not a pass/fail check
//! (beyond "nothing lost, nothing reordered"):
//!
//!     scripts/rig-test --release throughput_sctp -- --ignored --nocapture measure_
//!
//! The sender is a tight loop of pre-built 100-byte RIC Indications on one
//! association, the receiver counts them on the RIC side. DESIGN §6: the guest
//! traps every syscall, so absolute figures are far below the host's; the
//! ratio is what this shows.

#[path = "support/peers.rs"]
mod peers;
#[path = "common/rig.rs"]
mod rig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
use e2lb::transport::sctp::{SctpConnector, SctpListener};
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options};
use tokio_util::sync::CancellationToken;

const N: u64 = 50_000;

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Direct,
    /// A trivial recv→send relay task (no E2AP logic): the transport's own share.
    Relay,
    Proxy,
}

/// Run a relay on its own thread and runtime, as e2lb runs in its own process.
/// `setup` binds (inside that runtime) and returns the serving future; it has
/// run when this returns.
fn on_own_thread<S, G>(setup: S)
where
    S: FnOnce() -> G + Send + 'static,
    G: std::future::Future<Output = ()>,
{
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let serve = {
            let _in_runtime = rt.enter();
            setup()
        };
        let _ = bound_tx.send(());
        rt.block_on(serve)
    });
    bound_rx.recv().unwrap();
}

async fn measure(path: Path, port: u16) -> f64 {
    let through_proxy = path == Path::Proxy;
    let ric_addr = SocketAddr::from(([127, 0, 3, 1], port));
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let opts = Options::default();
    let mut ric_l = SctpListener::bind(&[ric_addr], &opts).unwrap();
    let stop = CancellationToken::new();
    let target = if through_proxy {
        let shared = Arc::new(
            Shared::new(
                ProxyConfig::default(),
                Pool::new(vec![Backend::new(0, "ric-0", ric_addr)]),
                SctpConnector::new(opts.clone()),
                Arc::new(Metrics::new().unwrap()),
            )
            .unwrap(),
        );
        let s = stop.clone();
        let o = opts.clone();
        on_own_thread(move || {
            let l = SctpListener::bind(&[proxy_addr], &o).unwrap();
            proxy::serve(l, shared, async move { s.cancelled().await })
        });
        proxy_addr
    } else if path == Path::Relay {
        let o = opts.clone();
        on_own_thread(move || {
            let mut l = SctpListener::bind(&[proxy_addr], &o).unwrap();
            async move {
                let mut a = l.accept().await.unwrap();
                let mut b = SctpConnector::new(o).connect(ric_addr).await.unwrap();
                // Setup request forward, response back, then one direction only.
                let m = a.recv().await.unwrap().unwrap();
                b.send(&m).await.unwrap();
                let m = b.recv().await.unwrap().unwrap();
                a.send(&m).await.unwrap();
                while let Ok(Some(m)) = a.recv().await {
                    b.send(&m).await.unwrap();
                }
            }
        });
        proxy_addr
    } else {
        ric_addr
    };
    let mut node = SctpConnector::new(opts.clone())
        .connect(target)
        .await
        .unwrap();
    node.send(&Message::new(0, 70, peers::setup_request(1)))
        .await
        .unwrap();
    let mut ric = ric_l.accept().await.unwrap();
    ric.recv().await.unwrap().unwrap();
    ric.send(&Message::new(0, 70, peers::setup_response()))
        .await
        .unwrap();
    node.recv().await.unwrap().unwrap();

    let msgs: Arc<Vec<Message>> = Arc::new(
        (0..N)
            .map(|i| Message::new(0, 70, peers::indication(1, i, 100)))
            .collect(),
    );
    let expected = msgs.clone();
    let start = Instant::now();
    let send = tokio::spawn(async move {
        for m in msgs.iter() {
            node.send(m).await.unwrap();
        }
        node
    });
    for i in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(30), ric.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, expected[i as usize].payload, "message {i}");
    }
    let rate = N as f64 / start.elapsed().as_secs_f64();
    let _node = send.await.unwrap();
    stop.cancel();
    rate
}

#[tokio::test]
#[ignore = "measurement; run in the rig with --ignored --nocapture"]
async fn measure_proxy_vs_direct_messages_per_second() {
    if !rig::sctp_or_skip() {
        return;
    }
    let d = measure(Path::Direct, 40421).await;
    let r = measure(Path::Relay, 40423).await;
    let p = measure(Path::Proxy, 40422).await;
    println!("direct node→ric : {d:.0} indications/s ({N} × 100 B, one association)");
    println!("trivial relay   : {r:.0} indications/s");
    println!("through e2lb    : {p:.0} indications/s");
    println!("ratio proxy/direct = {:.2}", p / d);
}
