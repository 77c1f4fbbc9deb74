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
