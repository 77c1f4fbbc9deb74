//! The E2 source allow-list (`[proxy] allow`) over the in-memory transport,
//! whose connectors pick their source address: a node from an allowed
//! network is relayed end to end (E2 Setup there and back, then an
//! indication); one from elsewhere is closed at accept, never reaches a RIC
//! and is counted as `e2lb_association_closes_total{reason="not_allowed"}`;
//! IPv4-mapped IPv6 sources are judged by the IPv4 address they carry.

#[path = "support/peers.rs"]
mod peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use e2lb::balance::{Backend, Pool};
use e2lb::proxy::{self, AllowList, Metrics, ProxyConfig, Shared};
use e2lb::transport::mem::{MemListener, MemNet};
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options};
use peers::{indication, setup_request, setup_response};
use tokio_util::sync::CancellationToken;

/// Longest wait for anything that must happen.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a RIC waits to be sure a refused node reached nobody.
const QUIET: Duration = Duration::from_millis(300);

const RIC: &str = "127.0.9.1:36421";
const PROXY: &str = "127.0.9.2:36421";

struct Rig {
    net: MemNet,
    ric: MemListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Rig {
    fn start(allow: &[&str]) -> Rig {
        let net = MemNet::new();
        let ric = net
            .listen(RIC.parse().unwrap(), Options::default())
            .unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let shared = Arc::new(
            Shared::new(
                ProxyConfig {
                    allow: AllowList::parse(allow).unwrap(),
                    ..ProxyConfig::default()
                },
                Pool::new(vec![Backend::new(0, "ric-0", RIC.parse().unwrap())]),
                net.connector("127.0.9.2:0".parse().unwrap(), Options::default()),
                metrics.clone(),
            )
            .unwrap(),
        );
        let l = net
            .listen(PROXY.parse().unwrap(), Options::default())
            .unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(proxy::serve(l, shared, async move { s.cancelled().await }));
        Rig {
            net,
            ric,
            metrics,
            stop,
            task,
        }
    }

    fn refused(&self) -> u64 {
        self.metrics
            .closes
            .with_label_values(&["not_allowed"])
            .get()
    }

    /// A node from `source` is relayed: its E2 Setup reaches the RIC, the
    /// answer comes back, an indication follows.
    async fn relayed(&mut self, source: &str, gnb: u32) {
        let src: SocketAddr = format!("{source}:0")
            .parse()
            .or_else(|_| format!("[{source}]:0").parse())
            .unwrap();
        let mut node = self
            .net
            .connector(src, Options::default())
            .connect(PROXY.parse().unwrap())
            .await
            .unwrap();
        node.send(&Message::new(0, 70, setup_request(gnb)))
            .await
            .unwrap();
        let mut leg = tokio::time::timeout(DEADLINE, self.ric.accept())
            .await
            .expect("the RIC gets an association")
            .unwrap();
        let m = tokio::time::timeout(DEADLINE, leg.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("a message");
        assert_eq!(m.payload, setup_request(gnb), "{source}");
        leg.send(&Message::new(0, 70, setup_response()))
            .await
            .unwrap();
        let m = tokio::time::timeout(DEADLINE, node.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("the setup response");
        assert_eq!(m.payload, setup_response(), "{source}");
        node.send(&Message::new(1, 70, indication(1, 0, 100)))
            .await
            .unwrap();
        let m = tokio::time::timeout(DEADLINE, leg.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("the indication");
        assert_eq!(m.payload, indication(1, 0, 100), "{source}");
    }

    /// A node from `source` is closed without a word and reaches no RIC.
    async fn refused_at_accept(&mut self, source: &str) {
        let before = self.refused();
        let src: SocketAddr = format!("{source}:0")
            .parse()
            .or_else(|_| format!("[{source}]:0").parse())
            .unwrap();
        let mut node = self
            .net
            .connector(src, Options::default())
            .connect(PROXY.parse().unwrap())
            .await
            .unwrap();
        // Whatever it sends goes nowhere: the association is gone.
        let _ = node.send(&Message::new(0, 70, setup_request(99))).await;
        let r = tokio::time::timeout(DEADLINE, node.recv())
            .await
            .expect("the proxy closes a refused association");
        assert!(
            !matches!(r, Ok(Some(_))),
            "{source}: a refused node got a message"
        );
        assert_eq!(self.refused(), before + 1, "{source}: counted once");
        assert!(
            tokio::time::timeout(QUIET, self.ric.accept())
                .await
                .is_err(),
            "{source}: a refused node reached the RIC"
        );
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn allowed_sources_are_relayed_and_others_refused_and_counted() {
    let mut rig = Rig::start(&["10.0.0.0/8", "127.0.0.0/8", "::1/128"]);
    rig.relayed("10.20.30.40", 1).await;
    rig.relayed("::1", 2).await;
    rig.refused_at_accept("192.0.2.10").await;
    rig.refused_at_accept("11.0.0.1").await;
    rig.refused_at_accept("2001:db8::1").await;
    // Allowed nodes after refusals still work.
    rig.relayed("127.0.0.5", 3).await;
    assert_eq!(rig.refused(), 3);
    assert_eq!(rig.metrics.associations_total.get(), 3);
    let page = rig.metrics.render();
    assert!(
        page.contains("e2lb_association_closes_total{reason=\"not_allowed\"} 3"),
        "{page}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn ipv4_mapped_sources_are_judged_as_ipv4() {
    let mut rig = Rig::start(&["10.0.0.0/8", "::1/128"]);
    rig.relayed("::ffff:10.1.2.3", 1).await;
    rig.refused_at_accept("::ffff:192.0.2.1").await;
    // The mapped IPv4 loopback is 127.0.0.1, not ::1.
    rig.refused_at_accept("::ffff:127.0.0.1").await;
    assert_eq!(rig.refused(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn an_empty_list_allows_every_source() {
    let mut rig = Rig::start(&[]);
    rig.relayed("192.0.2.10", 1).await;
    rig.relayed("2001:db8::7", 2).await;
    assert_eq!(rig.refused(), 0);
    rig.stop().await;
}
