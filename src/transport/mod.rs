//! Message-oriented transports: kernel SCTP and an in-memory twin.
//!
//! E2AP is carried over SCTP as whole messages, each tagged with the stream it
//! travelled on and a payload protocol identifier (PPID). Every transport in
//! e2lb moves [`Message`]s, never byte streams: a message received is a
//! message sent, never coalesced or split.
//!
//! The traits are poll-based so that one association task can drive both of
//! its legs from a single future without ever blocking one direction on the
//! other (see `proxy`). `poll_send` leaves the message with the caller when
//! the peer is slow, so back-pressure reaches the sender's queue and, through
//! it, the far side's SCTP receive window.

pub mod mem;
pub mod sctp;
pub mod stats;

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;

/// The IANA payload protocol identifier registered for E2AP (E2-CP).
pub const PPID_E2CP: u32 = 70;

/// One SCTP user message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// SCTP stream id the message travelled (or will travel) on.
    pub stream: u16,
    /// Payload protocol identifier, host byte order.
    pub ppid: u32,
    /// The whole message.
    pub payload: Bytes,
}

impl Message {
    pub fn new(stream: u16, ppid: u32, payload: impl Into<Bytes>) -> Self {
        Message {
            stream,
            ppid,
            payload: payload.into(),
        }
    }
}

/// Static facts about an established association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssocInfo {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Outbound streams negotiated with the peer.
    pub outbound_streams: u16,
    /// Inbound streams negotiated with the peer.
    pub inbound_streams: u16,
}

/// Transport failures. `Side` is decided by the caller, who knows which leg failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no SCTP (EPROTONOSUPPORT on `socket(…, IPPROTO_SCTP)`).
    #[error(
        "this kernel has no SCTP support (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) failed: {0}); \
         load it with `modprobe sctp`, or run inside the User-Mode-Linux rig: scripts/uml-run <command>"
    )]
    NoKernelSctp(#[source] io::Error),
    /// Nobody listens at the address (connection refused / in-memory address unknown).
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    /// The association was lost (COMM_LOST, ABORT from peer, or reset).
    #[error("association lost: {0}")]
    Lost(&'static str),
    /// A message larger than the configured maximum arrived; the association must be closed.
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// Any other socket error.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(context: &'static str, source: io::Error) -> Self {
        Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One established association (either leg of the proxy).
pub trait Association: Send + Unpin + 'static {
    /// Receive the next whole message. `Ok(None)`: the peer shut down gracefully.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>>;

    /// Send one whole message. `Pending` means back-pressure: the message was not
    /// taken and must be offered again. A stream id the peer did not negotiate is
    /// mapped onto the highest available stream (and counted by the transport).
    fn poll_send(&mut self, cx: &mut Context<'_>, msg: &Message) -> Poll<Result<()>>;

    /// Graceful close (SCTP SHUTDOWN, never ABORT): queued data is still delivered.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>>;

    /// Addresses and negotiated stream counts.
    fn info(&self) -> &AssocInfo;
}

/// Convenience async wrappers over the poll methods.
pub trait AssociationExt: Association {
    fn recv(&mut self) -> impl Future<Output = Result<Option<Message>>> + Send + '_ {
        poll_fn(move |cx| self.poll_recv(cx))
    }
    fn send<'a>(&'a mut self, msg: &'a Message) -> impl Future<Output = Result<()>> + Send + 'a {
        poll_fn(move |cx| self.poll_send(cx, msg))
    }
    fn shutdown(&mut self) -> impl Future<Output = Result<()>> + Send + '_ {
        poll_fn(move |cx| self.poll_shutdown(cx))
    }
}
impl<A: Association + ?Sized> AssociationExt for A {}

/// Accepts associations from E2 nodes (or, in the RIC simulator, from e2lb).
pub trait Listener: Send + 'static {
    type Assoc: Association;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<Self::Assoc>>;
    fn local_addr(&self) -> SocketAddr;
    fn accept(&mut self) -> impl Future<Output = Result<Self::Assoc>> + Send + '_
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_accept(cx))
    }
}

/// Opens associations towards backends (or, in the node simulator, towards e2lb).
pub trait Connector: Clone + Send + Sync + 'static {
    type Assoc: Association;
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = Result<Self::Assoc>> + Send;
    /// Open one association to a peer known by several addresses (a
    /// multi-homed SCTP endpoint; all on one port), the first preferred.
    fn connect_multi(
        &self,
        addrs: &[SocketAddr],
    ) -> impl Future<Output = Result<Self::Assoc>> + Send;
}

/// Stream counts and socket options shared by both transports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Outbound streams requested in INIT (SCTP_INITMSG sinit_num_ostreams).
    pub out_streams: u16,
    /// Maximum inbound streams accepted (sinit_max_instreams).
    pub in_streams: u16,
    /// Largest message accepted; larger ones fail the association with [`Error::TooLarge`].
    pub max_message: usize,
    /// Socket send/receive buffer size in bytes (0 keeps the kernel default).
    pub socket_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out_streams: 2,
            in_streams: 2,
            max_message: 1 << 20,
            socket_buffer: 0,
        }
    }
}
