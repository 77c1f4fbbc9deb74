//! The association proxy end to end over the in-memory transport (the same
//! scenarios run over kernel SCTP in `proxy_sctp`, inside the rig).

#[macro_use]
#[path = "support/proxy_cases.rs"]
mod cases;
#[path = "support/peers.rs"]
mod peers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use e2lb::transport::mem::{MemAssoc, MemConnector, MemListener, MemNet};
use e2lb::transport::Options;

#[derive(Clone)]
struct Mem {
    net: MemNet,
    port: u16,
}

static PORT: AtomicU16 = AtomicU16::new(36421);

impl Mem {
    fn new() -> Self {
        Self::with(MemNet::new())
    }
    fn with(net: MemNet) -> Self {
        Mem {
            net,
            port: PORT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl cases::Net for Mem {
    type L = MemListener;
    type C = MemConnector;
    type A = MemAssoc;
    fn listen(&self, addr: SocketAddr) -> MemListener {
        self.net.listen(addr, Options::default()).unwrap()
    }
    fn connector(&self) -> MemConnector {
        self.net
            .connector(SocketAddr::from(([10, 0, 0, 1], 0)), Options::default())
    }
    fn port(&self) -> u16 {
        self.port
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            cases::$name(Mem::new()).await
        }
    )*};
}

for_each_scenario!(scenarios);

#[tokio::test]
async fn slow_backend_pushes_back_on_the_node_without_loss() {
    // 8 messages per in-memory link: node link 8 + proxy queue 4 + RIC link 8 + 1 in hand.
    cases::slow_backend_pushes_back_on_the_node_without_loss(
        Mem::with(MemNet::with_queue(8)),
        1000,
        10,
        8 + 4 + 8 + 2,
    )
    .await
}

/// Messages e2lb held for a backend that then vanished are counted as dropped
/// (never silently), and the node's association is closed.
#[tokio::test]
async fn messages_for_a_vanished_backend_with_no_other_are_counted() {
    use e2lb::balance::{Backend, Pool};
    use e2lb::proxy::{self, Metrics, ProxyConfig, Shared};
    use e2lb::transport::{AssociationExt, Connector, Listener, Message};
    use std::sync::Arc;
    use std::time::Duration;

    let net = MemNet::with_queue(8);
    let ric_addr: SocketAddr = "127.0.9.1:36421".parse().unwrap();
    let proxy_addr: SocketAddr = "127.0.9.2:36421".parse().unwrap();
    let mut ric_l = net.listen(ric_addr, Options::default()).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let shared = Arc::new(
        Shared::new(
            ProxyConfig {
                queue: 4,
                ..ProxyConfig::default()
            },
            Pool::new(vec![Backend::new(0, "ric-0", ric_addr)]),
            net.connector("127.0.9.2:0".parse().unwrap(), Options::default()),
            metrics.clone(),
        )
        .unwrap(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let l = net.listen(proxy_addr, Options::default()).unwrap();
    let task = tokio::spawn(proxy::serve(l, shared, async move { s.cancelled().await }));

    let mut node = net
        .connector("10.9.0.1:0".parse().unwrap(), Options::default())
        .connect(proxy_addr)
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
    // The RIC stops reading: fill its link (8) and e2lb's queue (4).
    for seq in 0..16 {
        let m = Message::new(0, 70, peers::indication(1, seq, 10));
        if tokio::time::timeout(Duration::from_millis(200), node.send(&m))
            .await
            .is_err()
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The backend vanishes with messages still queued in e2lb; no other
    // backend can take the node, so it is closed and the messages counted.
    drop(ric);
    let closed = tokio::time::timeout(Duration::from_secs(5), node.recv())
        .await
        .unwrap();
    assert!(
        matches!(closed, Ok(None) | Err(_)),
        "node association closed"
    );
    let text = metrics.render();
    let dropped: u64 = text
        .lines()
        .find(|l| l.starts_with("e2lb_messages_dropped_total{to=\"backend\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(dropped >= 1, "{text}");
    stop.cancel();
    task.await.unwrap();
}
