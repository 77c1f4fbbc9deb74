//! The association proxy end to end over kernel SCTP on loopback. Runs inside
//! the User-Mode-Linux rig (`scripts/rig-test proxy_sctp`); on a host without
//! SCTP each test says it skipped, unless E2LB_REQUIRE_SCTP=1 makes that fatal.

#[macro_use]
#[path = "support/proxy_cases.rs"]
mod cases;
#[path = "support/peers.rs"]
mod peers;
#[path = "common/rig.rs"]
mod rig;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};

use e2lb::transport::sctp::{SctpAssoc, SctpConnector, SctpListener};
use e2lb::transport::Options;

#[derive(Clone)]
struct Sctp {
    port: u16,
}

static PORT: AtomicU16 = AtomicU16::new(38400);

impl Sctp {
    fn new() -> Self {
        Sctp {
            port: PORT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl cases::Net for Sctp {
    type L = SctpListener;
    type C = SctpConnector;
    type A = SctpAssoc;
    fn listen(&self, addr: SocketAddr) -> SctpListener {
        SctpListener::bind(&[addr], &Options::default()).unwrap()
    }
    fn connector(&self) -> SctpConnector {
        SctpConnector::new(Options::default())
    }
    fn port(&self) -> u16 {
        self.port
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        #[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
        async fn $name() {
            if !rig::sctp_or_skip() {
                return;
            }
            cases::$name(Sctp::new()).await
        }
    )*};
}

for_each_scenario!(scenarios);

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn slow_backend_pushes_back_on_the_node_without_loss() {
    if !rig::sctp_or_skip() {
        return;
    }
    // 10,000 × ~330 B = 3.3 MB, well beyond the loopback socket buffers: the node must block.
    cases::slow_backend_pushes_back_on_the_node_without_loss(Sctp::new(), 10_000, 300, 9_999).await
}
