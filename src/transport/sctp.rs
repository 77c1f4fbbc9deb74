//! Kernel SCTP transport: one-to-one style sockets (`SOCK_STREAM`,
//! `IPPROTO_SCTP`) driven by tokio's [`AsyncFd`].
//!
//! Each association is one socket with `SCTP_NODELAY` on, the stream counts of
//! [`Options`] in `SCTP_INITMSG`, and subscriptions to association-change,
//! shutdown and send-failed notifications. A received message is one `recvmsg`
//! whose `SCTP_RCVINFO` cmsg gives its stream and PPID; a sent message is one
//! `sendmsg` with an `SCTP_SNDINFO` cmsg. Notifications never reach the caller:
//! they become `Ok(None)` (graceful end), [`Error::Lost`], or a counter.
//!
//! Syscall economy (DESIGN §7, ≤ 2.2 syscalls per forwarded message): readiness
//! is edge-triggered and cached by tokio, so steady state is one `recvmsg` per
//! received message and one `sendmsg` per sent message. `SCTP_RECVNXTINFO` tells
//! whether another message was already queued: when none was, read readiness is
//! dropped at once instead of being discovered by a `recvmsg` failing with EAGAIN.
//! No `getsockopt` runs per message; `SCTP_STATUS` is read once, at establishment.
//!
//! Back-pressure: `poll_send` tries `sendmsg(MSG_DONTWAIT)`; on EAGAIN it
//! registers write interest and returns `Pending`, leaving the message with the
//! caller. Closing is always graceful: `shutdown(SHUT_WR)` is an SCTP SHUTDOWN,
//! and `Drop` shuts down and drains the socket before closing it, because Linux
//! answers `close()` on a socket with unread data with an ABORT.
//!
//! Limits: Linux refuses (`EMSGSIZE`) a message larger than the socket's send
//! buffer (212 992 bytes by default); the first such send grows that buffer for
//! its association (`SO_SNDBUFFORCE` as root, else `SO_SNDBUF`, capped by
//! `net.core.wmem_max`). Connecting has no time limit of its own beyond the
//! kernel's INIT retransmissions (minutes): wrap it in a timeout.

mod sys;

use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{AssocInfo, Association, Connector, Error, Listener, Message, Options, Result};
use crate::transport::stats::STATS;

/// Size of the receive buffer that messages are received into and sliced
/// from (no copy, no allocation per message).
///
/// One such buffer is shared by every association a worker thread reads
/// (see [`SHARED_RX`]): an association owns a buffer only while a message
/// that arrived in pieces is incomplete, so an idle association holds none.
/// Received payloads are slices of the shared buffer, so a message kept for
/// long (a cached E2 Setup) pins its whole chunk: copy what you keep
/// (`Bytes::copy_from_slice`) when memory matters.
pub const RECV_CHUNK: usize = 64 * 1024;
/// Below this much free space the buffer is topped up before `recvmsg`, so that
/// ordinary E2AP messages (≤ 32 KiB) arrive in one piece.
const MIN_SPARE: usize = 32 * 1024;
/// How long a dropped association may take to finish its graceful shutdown
/// before its socket is closed regardless.
pub const LINGER: Duration = Duration::from_secs(10);
/// RTO.Initial (ms) of an association opened to several peer addresses.
const MULTI_HOMED_RTO_INITIAL_MS: u32 = 1000;
/// Listen backlog for [`SctpListener`].
const BACKLOG: i32 = 1024;

thread_local! {
    /// The receive buffer of this thread (see [`RECV_CHUNK`]). An association
    /// borrows it for one `recvmsg` when it has no partial message of its
    /// own and gives it back unless the message is still incomplete, in
    /// which case it keeps the buffer (no copy) and the thread starts a new one.
    static SHARED_RX: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}
/// Notifications are only parsed from their first bytes; larger ones (a
/// SEND_FAILED carries the undelivered message) are cut to this length.
const NOTIFICATION_KEEP: usize = 256;

/// Whether this kernel can open SCTP sockets (`socket(AF_INET, SOCK_STREAM,
/// IPPROTO_SCTP)` succeeds). Kernels without `CONFIG_IP_SCTP`, or with the
/// module absent, return false: run inside `scripts/uml-run` instead.
pub fn kernel_sctp_available() -> bool {
    Socket::new(
        Domain::IPV4,
        Type::STREAM,
        Some(Protocol::from(sys::IPPROTO_SCTP)),
    )
    .is_ok()
}

/// A non-blocking one-to-one SCTP socket of the family of `v6`.
fn new_socket(v6: bool) -> Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::from(sys::IPPROTO_SCTP)),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => Error::NoKernelSctp(e),
        Some(libc::EAFNOSUPPORT) if !v6 => Error::NoKernelSctp(e),
        _ => Error::io("socket", e),
    })
}

/// Per-socket flags (set on listeners, connecting sockets and, although Linux
/// copies them on accept, again on accepted sockets: the receive path relies on
/// `SCTP_RECVNXTINFO` being on).
fn set_flags(fd: i32) -> Result<()> {
    let on: libc::c_int = 1;
    sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_NODELAY, &on)
        .map_err(|e| Error::io("SCTP_NODELAY", e))?;
    sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_RECVRCVINFO, &on)
        .map_err(|e| Error::io("SCTP_RECVRCVINFO", e))?;
    sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_RECVNXTINFO, &on)
        .map_err(|e| Error::io("SCTP_RECVNXTINFO", e))?;
    Ok(())
}

/// Subscribe to the notifications the transport consumes.
fn subscribe(fd: i32) -> Result<()> {
    for ty in [
        sys::SCTP_ASSOC_CHANGE,
        sys::SCTP_SHUTDOWN_EVENT,
        sys::SCTP_SEND_FAILED_EVENT,
    ] {
        let ev = sys::SctpEvent {
            se_assoc_id: 0,
            se_type: ty,
            se_on: 1,
        };
        if let Err(e) = sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_EVENT, &ev) {
            // Kernels before 5.0 lack SCTP_EVENT: use the older all-in-one option.
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOPROTOOPT) | Some(libc::EINVAL)
            ) {
                let sub = sys::SctpEventSubscribe {
                    association: 1,
                    shutdown: 1,
                    send_failure: 1,
                    ..Default::default()
                };
                return sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_EVENTS, &sub)
                    .map_err(|e| Error::io("SCTP_EVENTS", e));
            }
            return Err(Error::io("SCTP_EVENT", e));
        }
    }
    Ok(())
}

/// Everything an association socket needs before `listen`/`connect`.
fn configure(sock: &Socket, opts: &Options) -> Result<()> {
    let fd = sock.as_raw_fd();
    let init = sys::SctpInitmsg {
        sinit_num_ostreams: opts.out_streams.max(1),
        sinit_max_instreams: opts.in_streams.max(1),
        ..Default::default()
    };
    sys::setsockopt(fd, sys::SOL_SCTP, sys::SCTP_INITMSG, &init)
        .map_err(|e| Error::io("SCTP_INITMSG", e))?;
    set_flags(fd)?;
    subscribe(fd)?;
    if opts.socket_buffer > 0 {
        sock.set_send_buffer_size(opts.socket_buffer)
            .map_err(|e| Error::io("SO_SNDBUF", e))?;
        sock.set_recv_buffer_size(opts.socket_buffer)
            .map_err(|e| Error::io("SO_RCVBUF", e))?;
    }
    Ok(())
}

/// Bind to every address in `addrs` (the first with `bind`, the others with
/// `sctp_bindx(SCTP_BINDX_ADD_ADDR)`), all on the port the first one got.
fn bind_all(sock: &Socket, addrs: &[SocketAddr]) -> Result<SocketAddr> {
    let (first, rest) = addrs.split_first().ok_or_else(|| {
        Error::io(
            "bind",
            io::Error::new(io::ErrorKind::InvalidInput, "no address"),
        )
    })?;
    sock.bind(&(*first).into())
        .map_err(|e| Error::io("bind", e))?;
    let bound = local_addr(sock)?;
    if !rest.is_empty() {
        let others: Vec<SocketAddr> = rest
            .iter()
            .map(|a| {
                let mut a = *a;
                if a.port() == 0 {
                    a.set_port(bound.port());
                }
                a
            })
            .collect();
        sys::setsockopt_bytes(
            sock.as_raw_fd(),
            sys::SOL_SCTP,
            sys::SCTP_SOCKOPT_BINDX_ADD,
            &sys::pack_addrs(&others),
        )
        .map_err(|e| Error::io("sctp_bindx", e))?;
    }
    Ok(bound)
}

/// An IPv4-mapped IPv6 address as plain IPv4, anything else unchanged.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn local_addr(sock: &Socket) -> Result<SocketAddr> {
    sock.local_addr()
        .map_err(|e| Error::io("getsockname", e))?
        .as_socket()
        .map(canonical)
        .ok_or_else(|| Error::io("getsockname", io::Error::other("not an IP address")))
}

fn peer_addr(sock: &Socket) -> Result<SocketAddr> {
    sock.peer_addr()
        .map_err(|e| Error::io("getpeername", e))?
        .as_socket()
        .map(canonical)
        .ok_or_else(|| Error::io("getpeername", io::Error::other("not an IP address")))
}

fn status(fd: i32) -> io::Result<sys::SctpStatus> {
    let st = sys::SctpStatus {
        sstat_assoc_id: 0,
        sstat_state: 0,
        sstat_rwnd: 0,
        sstat_unackdata: 0,
        sstat_penddata: 0,
        sstat_instrms: 0,
        sstat_outstrms: 0,
        sstat_fragmentation_point: 0,
        sstat_primary: [0; 152],
    };
    sys::getsockopt(fd, sys::SOL_SCTP, sys::SCTP_STATUS, st)
}

fn register(sock: Socket) -> Result<AsyncFd<Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::io(
            "register",
            io::Error::other("SCTP sockets must be created inside a tokio runtime"),
        ));
    }
    sys::async_fd(sock).map_err(|e| Error::io("register", e))
}

/// Listens for associations on one or several local addresses (multi-homing).
pub struct SctpListener {
    fd: AsyncFd<Socket>,
    local: SocketAddr,
    opts: Options,
}

impl SctpListener {
    /// Bind to `addrs` (IPv4 and/or IPv6; several = one multi-homed endpoint,
    /// all on the first address's port, 0 = pick one) and listen. Must be called
    /// inside a tokio runtime.
    pub fn bind(addrs: &[SocketAddr], opts: &Options) -> Result<SctpListener> {
        let v6 = addrs.iter().any(SocketAddr::is_ipv6);
        let sock = new_socket(v6)?;
        sock.set_reuse_address(true)
            .map_err(|e| Error::io("SO_REUSEADDR", e))?;
        configure(&sock, opts)?;
        let local = bind_all(&sock, addrs)?;
        sock.listen(BACKLOG).map_err(|e| Error::io("listen", e))?;
        tracing::debug!(?addrs, %local, "sctp listening");
        Ok(SctpListener {
            fd: register(sock)?,
            local,
            opts: opts.clone(),
        })
    }
}

impl Listener for SctpListener {
    type Assoc = SctpAssoc;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<SctpAssoc>> {
        loop {
            let mut guard =
                ready!(self.fd.poll_read_ready(cx)).map_err(|e| Error::io("accept", e))?;
            match guard.try_io(|l| sys::accept_nonblocking(l.as_raw_fd())) {
                Ok(Ok(fd)) => return Poll::Ready(SctpAssoc::accepted(fd, &self.opts)),
                // The association died between its arrival and accept: take the next.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Ok(Err(e)) => return Poll::Ready(Err(Error::io("accept", e))),
                Err(_would_block) => continue,
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Opens associations, optionally from fixed local addresses (bound first,
/// several = multi-homed) and to multi-homed peers ([`SctpConnector::connect_multi`]).
#[derive(Clone, Debug, Default)]
pub struct SctpConnector {
    pub local: Option<Vec<SocketAddr>>,
    pub opts: Options,
}

impl SctpConnector {
    pub fn new(opts: Options) -> Self {
        SctpConnector { local: None, opts }
    }

    /// Open one association to a peer reachable at any of `peers` (`connect`
    /// for one address, `sctp_connectx` for several). Completes once the
    /// association is established (COOKIE-ACK received); a peer that answers
    /// the INIT with an ABORT (nobody listening) gives [`Error::Refused`].
    pub async fn connect_multi(&self, peers: &[SocketAddr]) -> Result<SctpAssoc> {
        let first = *peers.first().ok_or_else(|| {
            Error::io(
                "connect",
                io::Error::new(io::ErrorKind::InvalidInput, "no address"),
            )
        })?;
        let v6 = peers
            .iter()
            .chain(self.local.iter().flatten())
            .any(SocketAddr::is_ipv6);
        let sock = new_socket(v6)?;
        configure(&sock, &self.opts)?;
        if let Some(local) = &self.local {
            bind_all(&sock, local)?;
        }
        if peers.len() > 1 {
            // The INIT goes to the next address when the one before it
            // timed out: after RTO.Initial, which RFC 9260 sets to 1 s
            // (Linux keeps RFC 4960's 3 s, e2lb's whole connect time-out).
            let rto = sys::SctpRtoinfo {
                srto_initial: MULTI_HOMED_RTO_INITIAL_MS,
                ..Default::default()
            };
            sys::setsockopt(sock.as_raw_fd(), sys::SOL_SCTP, sys::SCTP_RTOINFO, &rto)
                .map_err(|e| Error::io("SCTP_RTOINFO", e))?;
        }
        let started = if peers.len() == 1 {
            sock.connect(&first.into())
        } else {
            sys::setsockopt_bytes(
                sock.as_raw_fd(),
                sys::SOL_SCTP,
                sys::SCTP_SOCKOPT_CONNECTX,
                &sys::pack_addrs(peers),
            )
            .map(drop)
        };
        let refused = |e: io::Error| match e.raw_os_error() {
            Some(libc::ECONNREFUSED) | Some(libc::ECONNRESET) => Error::Refused(first),
            _ => Error::io("connect", e),
        };
        match started {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(refused(e)),
        }
        let fd = register(sock)?;
        // A one-to-one socket reports writable only once established (while the
        // association is being set up, the socket state is CLOSED and poll gives
        // no POLLOUT); a failed setup sets the socket error, which wakes us too.
        // A refused INIT only sets the socket error and queues a notification,
        // which wakes readers, not writers: wait for either.
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
        let st = loop {
            let mut guard = fd
                .ready(interest)
                .await
                .map_err(|e| Error::io("connect", e))?;
            if let Some(e) = fd
                .get_ref()
                .take_error()
                .map_err(|e| Error::io("SO_ERROR", e))?
            {
                return Err(refused(e));
            }
            match status(fd.as_raw_fd()) {
                // Established, or already shutting down: the peer accepted it
                // (and may be closing it at once: the first receive says so).
                Ok(st) if st.sstat_state >= sys::SCTP_ESTABLISHED => break st,
                Ok(_) => guard.clear_ready(),
                // No association any more, and no error: it was established
                // and closed by the peer before we looked (a server at its
                // association limit does that).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(Error::Lost(
                        "closed by the peer as soon as it was established",
                    ))
                }
                Err(e) => return Err(refused(e)),
            }
        };
        // The status just read, not a second one: the peer may close the
        // association at once (a server at its limit), and then asking again
        // fails (EINVAL) where the first receive would simply report the close.
        let assoc = SctpAssoc::established(fd, st, &self.opts).map_err(|e| match e {
            Error::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOTCONN | libc::EINVAL)) =>
            {
                Error::Lost("closed by the peer as soon as it was established")
            }
            e => e,
        })?;
        tracing::debug!(local = %assoc.info.local, peer = %assoc.info.peer, "sctp connected");
        Ok(assoc)
    }
}

impl Connector for SctpConnector {
    type Assoc = SctpAssoc;
    async fn connect(&self, addr: SocketAddr) -> Result<SctpAssoc> {
        SctpConnector::connect_multi(self, &[addr]).await
    }
    /// `sctp_connectx` to every address: the kernel sends the INIT to the
    /// first and, when it goes unanswered, retransmits it to the others.
    async fn connect_multi(&self, addrs: &[SocketAddr]) -> Result<SctpAssoc> {
        SctpConnector::connect_multi(self, addrs).await
    }
}

/// What the receive path concluded from one `recvmsg`.
enum Step {
    /// Keep reading (a piece of a message, or a notification consumed).
    More,
    /// A whole message, or the graceful end (`None`).
    Done(Option<Message>),
}

/// One established SCTP association.
pub struct SctpAssoc {
    fd: AsyncFd<Socket>,
    info: AssocInfo,
    rx: Rx,
    /// `shutdown(SHUT_WR)` done.
    wr_shut: bool,
}

/// Receive-side state, apart from the socket so that it can be updated while
/// a readiness guard borrows the socket.
struct Rx {
    /// Holds the message being received (several `recvmsg` pieces until
    /// MSG_EOR). Empty, without capacity, between messages: `recvmsg` then
    /// reads into the thread's [`SHARED_RX`], lent to `rbuf` for the call.
    rbuf: BytesMut,
    /// Stream and PPID of the message in `rbuf`, from its first piece.
    cur: Option<(u16, u32)>,
    /// Where a notification being received in pieces starts in `rbuf`.
    notif_from: Option<usize>,
    max_message: usize,
    /// The peer shut down (or the association closed gracefully): recv gives `Ok(None)`.
    eof: bool,
    /// A receive error ended the association; later receives fail too.
    broken: bool,
}

impl SctpAssoc {
    fn accepted(fd: OwnedFd, opts: &Options) -> Result<SctpAssoc> {
        let sock = Socket::from(fd);
        set_flags(sock.as_raw_fd())?;
        let fd = register(sock)?;
        let st = status(fd.as_raw_fd()).map_err(|e| Error::io("SCTP_STATUS", e))?;
        let assoc = SctpAssoc::established(fd, st, opts)?;
        tracing::debug!(local = %assoc.info.local, peer = %assoc.info.peer, "sctp accepted");
        Ok(assoc)
    }

    fn established(fd: AsyncFd<Socket>, st: sys::SctpStatus, opts: &Options) -> Result<SctpAssoc> {
        let info = AssocInfo {
            local: local_addr(fd.get_ref())?,
            peer: peer_addr(fd.get_ref())?,
            outbound_streams: st.sstat_outstrms,
            inbound_streams: st.sstat_instrms,
        };
        Ok(SctpAssoc {
            fd,
            info,
            rx: Rx {
                rbuf: BytesMut::new(),
                cur: None,
                notif_from: None,
                max_message: opts.max_message,
                eof: false,
                broken: false,
            },
            wr_shut: false,
        })
    }
}

impl Rx {
    /// Lend the thread's shared buffer to `rbuf` when no message is being
    /// assembled here. Returns whether it was lent.
    fn borrow_shared(&mut self) -> bool {
        if !self.rbuf.is_empty() || self.cur.is_some() || self.notif_from.is_some() {
            return false;
        }
        // What capacity `rbuf` still had (a large message's buffer, once that
        // message was split off) is dropped here, not kept per association.
        self.rbuf = SHARED_RX.with(|b| std::mem::take(&mut *b.borrow_mut()));
        true
    }

    /// Give the shared buffer back, unless it now holds the first pieces of
    /// a message: then this association keeps it and the thread starts a
    /// new one on its next read.
    fn return_shared(&mut self, lent: bool) {
        if lent && self.rbuf.is_empty() {
            let b = std::mem::take(&mut self.rbuf);
            SHARED_RX.with(|s| *s.borrow_mut() = b);
        }
    }

    /// Make room for the next `recvmsg`: 64 KiB chunks normally; while a large
    /// message is being assembled, grow geometrically (few syscalls per MB), but
    /// never far beyond `max_message`.
    fn reserve(&mut self) {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare >= MIN_SPARE {
            return;
        }
        let want = RECV_CHUNK.max(self.rbuf.len());
        let cap_left = (self.max_message + 1)
            .saturating_sub(self.rbuf.len())
            .max(MIN_SPARE);
        self.rbuf.reserve(want.min(cap_left));
    }

    /// Interpret one `recvmsg` result; the bytes are already appended to `rbuf`.
    fn on_received(
        &mut self,
        info: &mut AssocInfo,
        before: usize,
        r: sys::Received,
    ) -> Result<Step> {
        if r.flags & sys::MSG_NOTIFICATION != 0 {
            let from = *self.notif_from.get_or_insert(before);
            if r.flags & libc::MSG_EOR == 0 {
                // Only the header matters: keep the start, drop the rest.
                self.rbuf
                    .truncate(from + NOTIFICATION_KEEP.min(self.rbuf.len() - from));
                return Ok(Step::More);
            }
            self.notif_from = None;
            let step = self.on_notification(info, from);
            self.rbuf.truncate(from);
            return step;
        }
        if r.len == 0 && r.flags & libc::MSG_EOR == 0 {
            // EOF: the association is closed and everything was read.
            self.eof = true;
            return Ok(Step::Done(None));
        }
        if self.cur.is_none() {
            self.cur = Some(r.info.unwrap_or((0, 0)));
        }
        if self.rbuf.len() > self.max_message {
            self.broken = true;
            return Err(Error::TooLarge {
                size: self.rbuf.len(),
                max: self.max_message,
            });
        }
        if r.flags & libc::MSG_EOR == 0 {
            return Ok(Step::More);
        }
        let (stream, ppid) = self.cur.take().unwrap_or((0, 0));
        let payload: Bytes = self.rbuf.split().freeze();
        Ok(Step::Done(Some(Message {
            stream,
            ppid,
            payload,
        })))
    }

    /// Consume the notification at `rbuf[from..]`.
    fn on_notification(&mut self, info: &mut AssocInfo, from: usize) -> Result<Step> {
        let n = self.rbuf.get(from..).unwrap_or_default();
        let u16_at = |o: usize| n.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            n.get(o..o + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let Some(ty) = u16_at(0) else {
            return Ok(Step::More);
        };
        match ty {
            sys::SCTP_ASSOC_CHANGE => {
                let state = u16_at(8).unwrap_or(u16::MAX);
                let error = u16_at(10).unwrap_or(0);
                let len = u32_at(4).unwrap_or(0);
                match state {
                    sys::SCTP_COMM_UP => Ok(Step::More),
                    sys::SCTP_RESTART => {
                        // The peer restarted: same addresses, fresh stream counts.
                        if let (Some(out), Some(inb)) = (u16_at(12), u16_at(14)) {
                            info.outbound_streams = out;
                            info.inbound_streams = inb;
                        }
                        tracing::warn!(peer = %info.peer, "sctp association restarted by peer");
                        Ok(Step::More)
                    }
                    sys::SCTP_SHUTDOWN_COMP => {
                        self.eof = true;
                        Ok(Step::Done(None))
                    }
                    sys::SCTP_COMM_LOST => {
                        self.broken = true;
                        // An ABORT from the peer comes with the ABORT chunk attached.
                        if len > 20 {
                            tracing::debug!(peer = %info.peer, error, "sctp association aborted by peer");
                            Err(Error::Lost("aborted by peer"))
                        } else {
                            tracing::debug!(peer = %info.peer, error, "sctp communication lost");
                            Err(Error::Lost("communication lost"))
                        }
                    }
                    _ => {
                        self.broken = true;
                        Err(Error::Lost("association could not be established"))
                    }
                }
            }
            sys::SCTP_SHUTDOWN_EVENT => {
                // The peer sent SHUTDOWN: all its data was delivered before this.
                self.eof = true;
                Ok(Step::Done(None))
            }
            sys::SCTP_SEND_FAILED_EVENT | sys::SCTP_SEND_FAILED => {
                STATS.send_failed();
                let error = u32_at(8).unwrap_or(0);
                let stream = u16_at(12).unwrap_or(0);
                tracing::warn!(peer = %info.peer, error, stream, "sctp send failed");
                Ok(Step::More)
            }
            sys::SCTP_PARTIAL_DELIVERY_EVENT => {
                // Partial delivery aborted: what we hold of that message is void.
                self.cur = None;
                self.rbuf.truncate(0);
                Ok(Step::More)
            }
            _ => Ok(Step::More),
        }
    }

    fn map_recv_err(&mut self, wr_shut: bool, e: io::Error) -> Result<Option<Message>> {
        match e.raw_os_error() {
            // The association is gone after a graceful close.
            Some(libc::ENOTCONN) if wr_shut => {
                self.eof = true;
                Ok(None)
            }
            Some(libc::ECONNRESET) => {
                self.broken = true;
                Err(Error::Lost("aborted by peer"))
            }
            Some(libc::ETIMEDOUT) => {
                self.broken = true;
                Err(Error::Lost("communication lost"))
            }
            Some(libc::ENOTCONN) | Some(libc::EPIPE) => {
                self.broken = true;
                Err(Error::Lost("not connected"))
            }
            _ => {
                self.broken = true;
                Err(Error::io("recvmsg", e))
            }
        }
    }
}

impl Association for SctpAssoc {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        let SctpAssoc {
            fd,
            info,
            rx,
            wr_shut,
        } = self;
        if rx.eof {
            return Poll::Ready(Ok(None));
        }
        if rx.broken {
            return Poll::Ready(Err(Error::Lost("association failed earlier")));
        }
        loop {
            let mut guard = ready!(fd.poll_read_ready(cx)).map_err(|e| Error::io("recvmsg", e))?;
            let lent = rx.borrow_shared();
            rx.reserve();
            let before = rx.rbuf.len();
            let rbuf = &mut rx.rbuf;
            let read = guard.try_io(|s| sys::recv_into(s.as_raw_fd(), rbuf, 0));
            let step = match read {
                Ok(Ok(r)) => rx.on_received(info, before, r).map(|step| (step, r)),
                Ok(Err(e)) => {
                    rx.return_shared(lent);
                    return Poll::Ready(rx.map_recv_err(*wr_shut, e));
                }
                Err(_would_block) => {
                    rx.return_shared(lent);
                    continue;
                }
            };
            rx.return_shared(lent);
            let (step, r) = step?;
            match step {
                Step::More => {}
                Step::Done(m) => {
                    if !r.more {
                        // Nothing else queued: wait for the next edge rather than
                        // learn it from a recvmsg that fails with EAGAIN. (tokio
                        // keeps the readiness if an event arrived meanwhile.)
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(m));
                }
            }
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, msg: &Message) -> Poll<Result<()>> {
        let out = self.info.outbound_streams;
        let fallback = msg.stream >= out;
        let stream = if fallback {
            out.saturating_sub(1)
        } else {
            msg.stream
        };
        let mut grown = false;
        loop {
            let mut guard =
                ready!(self.fd.poll_write_ready(cx)).map_err(|e| Error::io("sendmsg", e))?;
            let sent = guard.try_io(|s| {
                sys::send_msg(
                    s.as_raw_fd(),
                    stream,
                    msg.ppid,
                    &msg.payload,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            });
            match sent {
                Ok(Ok(_)) => {
                    if fallback {
                        STATS.stream_fallback();
                    }
                    return Poll::Ready(Ok(()));
                }
                // Linux refuses a message larger than the send buffer: grow it
                // for this association (once) and retry.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) && !grown => {
                    grown = true;
                    grow_send_buffer(self.fd.get_ref(), msg.payload.len());
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Poll::Ready(Err(Error::io(
                        "sendmsg: message larger than the socket send buffer (raise net.core.wmem_max)",
                        e,
                    )))
                }
                Ok(Err(e)) => {
                    return Poll::Ready(Err(match e.raw_os_error() {
                        Some(libc::EPIPE) | Some(libc::ENOTCONN) | Some(libc::ESHUTDOWN) => {
                            Error::Lost("association closed")
                        }
                        Some(libc::ECONNRESET) => Error::Lost("aborted by peer"),
                        _ => Error::io("sendmsg", e),
                    }))
                }
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.wr_shut {
            self.wr_shut = true;
            match self.fd.get_ref().shutdown(Shutdown::Write) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
                Err(e) => return Poll::Ready(Err(Error::io("shutdown", e))),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn info(&self) -> &AssocInfo {
        &self.info
    }
}

impl Drop for SctpAssoc {
    fn drop(&mut self) {
        if !self.wr_shut {
            // SHUTDOWN, never ABORT: queued data still goes out.
            let _ = self.fd.get_ref().shutdown(Shutdown::Write);
        }
        if self.rx.eof {
            return;
        }
        // close() with unread data (notifications count) would send an ABORT:
        // read and discard until the shutdown completes, then close.
        let Ok(dup) = self.fd.get_ref().try_clone() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = tokio::time::timeout(LINGER, drain(dup)).await;
                });
            }
            Err(_) => drain_now(&dup),
        }
    }
}

/// Let the socket queue a message of `len` bytes: `SO_SNDBUFFORCE` when we may
/// (CAP_NET_ADMIN), else `SO_SNDBUF`, which the kernel caps at twice
/// `net.core.wmem_max`. Both double the value asked for (bookkeeping overhead).
fn grow_send_buffer(sock: &Socket, len: usize) {
    let want = libc::c_int::try_from(len).unwrap_or(libc::c_int::MAX);
    if sys::setsockopt(
        sock.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        &want,
    )
    .is_err()
    {
        let _ = sock.set_send_buffer_size(len);
    }
    tracing::debug!(len, sndbuf = ?sock.send_buffer_size().ok(), "sctp send buffer grown for a large message");
}

/// Read and discard until the association has closed (EOF or error).
async fn drain(sock: Socket) {
    let Ok(fd) = sys::async_fd(sock) else {
        return;
    };
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let Ok(mut guard) = fd.readable().await else {
            return;
        };
        match guard.try_io(|s| {
            buf.clear();
            sys::recv_into(s.as_raw_fd(), &mut buf, 0)
        }) {
            Ok(Ok(r)) if r.len == 0 && r.flags & libc::MSG_EOR == 0 => return,
            Ok(Ok(r)) if r.flags & sys::MSG_NOTIFICATION != 0 && is_final(&buf) => return,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_would_block) => {}
        }
    }
}

/// Without a runtime: discard what is queued now, then let close() happen.
fn drain_now(sock: &Socket) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        buf.clear();
        match sys::recv_into(sock.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT) {
            Ok(r) if r.len > 0 || r.flags != 0 => {}
            _ => return,
        }
    }
}

/// A notification after which nothing more arrives (SHUTDOWN_COMP, COMM_LOST …).
fn is_final(n: &[u8]) -> bool {
    let ty = n.get(0..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let state = n.get(8..10).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    ty == Some(sys::SCTP_ASSOC_CHANGE)
        && matches!(
            state,
            Some(sys::SCTP_SHUTDOWN_COMP)
                | Some(sys::SCTP_COMM_LOST)
                | Some(sys::SCTP_CANT_STR_ASSOC)
        )
}
