//! In-memory transport: the same message semantics as kernel SCTP (whole
//! messages, stream id, PPID, bounded queues, graceful close), for tests and
//! host benchmarks. Addresses are ordinary `SocketAddr`s in a private
//! namespace owned by a [`MemNet`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::{AssocInfo, Association, Connector, Error, Listener, Message, Options, Result};
use crate::transport::stats::STATS;

/// Depth of each direction's queue, in messages: the in-memory "socket buffer".
pub const DEFAULT_QUEUE: usize = 256;

struct Pending {
    assoc: MemAssoc,
}

/// Where a listener's pending associations go, and the options it was bound with.
type ListenerEntry = (mpsc::Sender<Pending>, Options);

/// A private network of in-memory listeners. Cloning shares the namespace.
#[derive(Clone, Default)]
pub struct MemNet {
    // Control path only (listen/connect), never per message.
    listeners: Arc<Mutex<HashMap<SocketAddr, ListenerEntry>>>,
    next_port: Arc<std::sync::atomic::AtomicU16>,
    queue: Option<usize>,
}

impl MemNet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A network whose associations queue at most `queue` messages per direction.
    pub fn with_queue(queue: usize) -> Self {
        MemNet {
            queue: Some(queue.max(1)),
            ..Self::default()
        }
    }

    /// Listen at `addr`; port 0 picks a free one.
    pub fn listen(&self, mut addr: SocketAddr, opts: Options) -> Result<MemListener> {
        let mut map = self
            .listeners
            .lock()
            .map_err(|_| Error::Lost("mem net poisoned"))?;
        if addr.port() == 0 {
            loop {
                let p = 20000
                    + self
                        .next_port
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        % 40000;
                addr.set_port(p);
                if !map.contains_key(&addr) {
                    break;
                }
            }
        }
        if map.contains_key(&addr) {
            return Err(Error::io(
                "bind",
                std::io::Error::from(std::io::ErrorKind::AddrInUse),
            ));
        }
        let (tx, rx) = mpsc::channel(1024);
        map.insert(addr, (tx, opts.clone()));
        Ok(MemListener {
            net: self.clone(),
            addr,
            rx,
        })
    }

    pub fn connector(&self, local: SocketAddr, opts: Options) -> MemConnector {
        MemConnector {
            net: self.clone(),
            local,
            opts,
        }
    }

    fn queue(&self) -> usize {
        self.queue.unwrap_or(DEFAULT_QUEUE)
    }
}

/// Accepts in-memory associations.
pub struct MemListener {
    net: MemNet,
    addr: SocketAddr,
    rx: mpsc::Receiver<Pending>,
}

impl Drop for MemListener {
    fn drop(&mut self) {
        if let Ok(mut map) = self.net.listeners.lock() {
            map.remove(&self.addr);
        }
    }
}

impl Listener for MemListener {
    type Assoc = MemAssoc;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<MemAssoc>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(p)) => Poll::Ready(Ok(p.assoc)),
            Poll::Ready(None) => Poll::Ready(Err(Error::Lost("listener closed"))),
            Poll::Pending => Poll::Pending,
        }
    }
    fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Opens in-memory associations from a fixed local address (ports are made unique).
#[derive(Clone)]
pub struct MemConnector {
    net: MemNet,
    local: SocketAddr,
    opts: Options,
}

impl Connector for MemConnector {
    type Assoc = MemAssoc;
    async fn connect(&self, addr: SocketAddr) -> Result<MemAssoc> {
        let (accept_tx, peer_opts) = {
            let map = self
                .net
                .listeners
                .lock()
                .map_err(|_| Error::Lost("mem net poisoned"))?;
            map.get(&addr).cloned().ok_or(Error::Refused(addr))?
        };
        let mut local = self.local;
        let port = 40000
            + self
                .net
                .next_port
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % 20000;
        local.set_port(port);
        let q = self.net.queue();
        let (a_tx, a_rx) = mpsc::channel(q);
        let (b_tx, b_rx) = mpsc::channel(q);
        // Like SCTP INIT: each side's outbound streams are capped by the peer's inbound.
        let client_out = self.opts.out_streams.min(peer_opts.in_streams).max(1);
        let server_out = peer_opts.out_streams.min(self.opts.in_streams).max(1);
        let client = MemAssoc {
            tx: PollSender::new(a_tx),
            reserving: false,
            rx: b_rx,
            info: AssocInfo {
                local,
                peer: addr,
                outbound_streams: client_out,
                inbound_streams: server_out,
            },
            max_message: self.opts.max_message,
        };
        let server = MemAssoc {
            tx: PollSender::new(b_tx),
            reserving: false,
            rx: a_rx,
            info: AssocInfo {
                local: addr,
                peer: local,
                outbound_streams: server_out,
                inbound_streams: client_out,
            },
            max_message: peer_opts.max_message,
        };
        accept_tx
            .send(Pending { assoc: server })
            .await
            .map_err(|_| Error::Refused(addr))?;
        Ok(client)
    }
    /// Like SCTP's INIT retransmitted to the next address: the first address
    /// that has a listener takes the association.
    async fn connect_multi(&self, addrs: &[SocketAddr]) -> Result<MemAssoc> {
        let mut first_error = None;
        for &a in addrs {
            match self.connect(a).await {
                Ok(assoc) => return Ok(assoc),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            Error::io(
                "connect",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"),
            )
        }))
    }
}

/// One end of an in-memory association.
pub struct MemAssoc {
    tx: PollSender<Message>,
    /// A reservation is pending in `tx` (the queue was full): the next send
    /// must go through it, in order.
    reserving: bool,
    rx: mpsc::Receiver<Message>,
    info: AssocInfo,
    max_message: usize,
}

impl Association for MemAssoc {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) if m.payload.len() > self.max_message => {
                Poll::Ready(Err(Error::TooLarge {
                    size: m.payload.len(),
                    max: self.max_message,
                }))
            }
            Poll::Ready(m) => Poll::Ready(Ok(m)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, msg: &Message) -> Poll<Result<()>> {
        let mut m = msg.clone();
        if m.stream >= self.info.outbound_streams {
            STATS.stream_fallback();
            m.stream = self.info.outbound_streams.saturating_sub(1);
        }
        // Fast path: room in the queue and no reservation waiting (one sender
        // per direction, so nothing can overtake a waiting reservation).
        if !self.reserving {
            match self.tx.get_ref().map(|tx| tx.try_send(m)) {
                Some(Ok(())) => return Poll::Ready(Ok(())),
                Some(Err(mpsc::error::TrySendError::Full(back))) => m = back,
                Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                    return Poll::Ready(Err(Error::Lost("peer closed")))
                }
            }
        }
        // Full: wait for room (back-pressure), woken when the peer reads.
        match self.tx.poll_reserve(cx) {
            Poll::Pending => {
                self.reserving = true;
                Poll::Pending
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Lost("peer closed"))),
            Poll::Ready(Ok(())) => {
                self.reserving = false;
                Poll::Ready(self.tx.send_item(m).map_err(|_| Error::Lost("peer closed")))
            }
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }

    fn info(&self) -> &AssocInfo {
        &self.info
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::AssociationExt;

    #[tokio::test]
    async fn messages_keep_stream_ppid_and_boundaries() {
        let net = MemNet::new();
        let opts = Options::default();
        let mut l = net
            .listen("127.0.0.1:36421".parse().unwrap(), opts.clone())
            .unwrap();
        let c = net.connector("127.0.0.9:0".parse().unwrap(), opts);
        let mut a = c.connect(l.local_addr()).await.unwrap();
        let mut b = l.accept().await.unwrap();
        a.send(&Message::new(1, 70, &b"abc"[..])).await.unwrap();
        a.send(&Message::new(0, 0, &b"de"[..])).await.unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::new(1, 70, &b"abc"[..]))
        );
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::new(0, 0, &b"de"[..]))
        );
        a.shutdown().await.unwrap();
        assert_eq!(b.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn stream_above_negotiated_falls_back_to_highest() {
        let net = MemNet::new();
        let mut l = net
            .listen(
                "127.0.0.1:1".parse().unwrap(),
                Options {
                    in_streams: 1,
                    ..Options::default()
                },
            )
            .unwrap();
        let c = net.connector("127.0.0.2:0".parse().unwrap(), Options::default());
        let mut a = c.connect(l.local_addr()).await.unwrap();
        let mut b = l.accept().await.unwrap();
        assert_eq!(a.info().outbound_streams, 1);
        a.send(&Message::new(1, 70, &b"x"[..])).await.unwrap();
        assert_eq!(b.recv().await.unwrap().unwrap().stream, 0);
    }

    #[tokio::test]
    async fn full_queue_is_back_pressure_not_loss() {
        let net = MemNet::with_queue(2);
        let mut l = net
            .listen("127.0.0.1:2".parse().unwrap(), Options::default())
            .unwrap();
        let c = net.connector("127.0.0.2:0".parse().unwrap(), Options::default());
        let mut a = c.connect(l.local_addr()).await.unwrap();
        let mut b = l.accept().await.unwrap();
        let m = Message::new(0, 70, &b"x"[..]);
        a.send(&m).await.unwrap();
        a.send(&m).await.unwrap();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(a.poll_send(&mut cx, &m).is_pending());
        b.recv().await.unwrap();
        a.send(&m).await.unwrap();
    }

    #[tokio::test]
    async fn connect_to_nobody_is_refused() {
        let net = MemNet::new();
        let c = net.connector("127.0.0.2:0".parse().unwrap(), Options::default());
        assert!(matches!(
            c.connect("127.0.0.1:9".parse().unwrap()).await,
            Err(Error::Refused(_))
        ));
    }

    #[tokio::test]
    async fn connect_multi_takes_the_first_address_that_answers() {
        let net = MemNet::new();
        let second: SocketAddr = "127.0.0.4:9".parse().unwrap();
        let mut l = net.listen(second, Options::default()).unwrap();
        let c = net.connector("127.0.0.2:0".parse().unwrap(), Options::default());
        let first: SocketAddr = "127.0.0.3:9".parse().unwrap();
        let a = c.connect_multi(&[first, second]).await.unwrap();
        assert_eq!(a.info().peer, second);
        assert_eq!(l.accept().await.unwrap().info().local, second);
        assert!(matches!(
            c.connect_multi(&[first]).await,
            Err(Error::Refused(a)) if a == first
        ));
    }
}
