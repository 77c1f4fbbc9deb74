//! The Linux SCTP socket API, as far as e2lb uses it: constants and structs from
//! the uapi header `linux/sctp.h` (libc does not carry them), and small safe
//! wrappers around the libc calls that need them. All `unsafe` of the SCTP
//! transport lives here, one call per function.
//!
//! Every number below was checked against `/usr/include/linux/sctp.h` (Debian 12,
//! linux-libc-dev); struct sizes are asserted at compile time against the sizes a
//! C compiler gives for the same header on x86_64/aarch64.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::{c_int, c_void, socklen_t};

/// `IPPROTO_SCTP`, also the `cmsg_level` of SCTP ancillary data.
pub const IPPROTO_SCTP: c_int = 132;
/// `SOL_SCTP`: the socket-option level (same value as the protocol number).
pub const SOL_SCTP: c_int = 132;

// Socket options (linux/sctp.h, "#define SCTP_…").
pub const SCTP_RTOINFO: c_int = 0;
pub const SCTP_INITMSG: c_int = 2;
pub const SCTP_NODELAY: c_int = 3;
pub const SCTP_EVENTS: c_int = 11;
pub const SCTP_STATUS: c_int = 14;
pub const SCTP_RECVRCVINFO: c_int = 32;
pub const SCTP_RECVNXTINFO: c_int = 33;
pub const SCTP_SOCKOPT_BINDX_ADD: c_int = 100;
pub const SCTP_SOCKOPT_CONNECTX: c_int = 110;
pub const SCTP_EVENT: c_int = 127;

// cmsg types (enum sctp_cmsg_type).
pub const SCTP_SNDINFO: c_int = 2;
pub const SCTP_RCVINFO: c_int = 3;
pub const SCTP_NXTINFO: c_int = 4;

// recvmsg flags.
pub const MSG_NOTIFICATION: c_int = 0x8000;

// Notification types (enum sctp_sn_type, base 1 << 15).
pub const SCTP_ASSOC_CHANGE: u16 = 0x8001;
pub const SCTP_SEND_FAILED: u16 = 0x8003;
pub const SCTP_SHUTDOWN_EVENT: u16 = 0x8005;
pub const SCTP_PARTIAL_DELIVERY_EVENT: u16 = 0x8006;
pub const SCTP_SEND_FAILED_EVENT: u16 = 0x800d;

// sac_state values (enum sctp_sac_state).
pub const SCTP_COMM_UP: u16 = 0;
pub const SCTP_COMM_LOST: u16 = 1;
pub const SCTP_RESTART: u16 = 2;
pub const SCTP_SHUTDOWN_COMP: u16 = 3;
pub const SCTP_CANT_STR_ASSOC: u16 = 4;

// sstat_state values (enum sctp_sstat_state).
pub const SCTP_ESTABLISHED: i32 = 4;

/// `struct sctp_initmsg`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpInitmsg {
    pub sinit_num_ostreams: u16,
    pub sinit_max_instreams: u16,
    pub sinit_max_attempts: u16,
    pub sinit_max_init_timeo: u16,
}

/// `struct sctp_rtoinfo` (milliseconds; 0 leaves a value unchanged).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpRtoinfo {
    pub srto_assoc_id: i32,
    pub srto_initial: u32,
    pub srto_max: u32,
    pub srto_min: u32,
}

/// `struct sctp_sndinfo` (cmsg `SCTP_SNDINFO`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpSndinfo {
    pub snd_sid: u16,
    pub snd_flags: u16,
    /// Network byte order on the API, opaque to the kernel.
    pub snd_ppid: u32,
    pub snd_context: u32,
    pub snd_assoc_id: i32,
}

/// `struct sctp_rcvinfo` (cmsg `SCTP_RCVINFO`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpRcvinfo {
    pub rcv_sid: u16,
    pub rcv_ssn: u16,
    pub rcv_flags: u16,
    pub rcv_ppid: u32,
    pub rcv_tsn: u32,
    pub rcv_cumtsn: u32,
    pub rcv_context: u32,
    pub rcv_assoc_id: i32,
}

/// `struct sctp_event` (option `SCTP_EVENT`, Linux ≥ 5.0).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpEvent {
    pub se_assoc_id: i32,
    pub se_type: u16,
    pub se_on: u8,
}

/// `struct sctp_event_subscribe` (option `SCTP_EVENTS`, the pre-5.0 fallback).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SctpEventSubscribe {
    pub data_io: u8,
    pub association: u8,
    pub address: u8,
    pub send_failure: u8,
    pub peer_error: u8,
    pub shutdown: u8,
    pub partial_delivery: u8,
    pub adaptation_layer: u8,
    pub authentication: u8,
    pub sender_dry: u8,
    pub stream_reset: u8,
    pub assoc_reset: u8,
    pub stream_change: u8,
    pub send_failure_event: u8,
}

/// `struct sctp_status`; `sstat_primary` (a packed `struct sctp_paddrinfo`) is kept opaque.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SctpStatus {
    pub sstat_assoc_id: i32,
    pub sstat_state: i32,
    pub sstat_rwnd: u32,
    pub sstat_unackdata: u16,
    pub sstat_penddata: u16,
    pub sstat_instrms: u16,
    pub sstat_outstrms: u16,
    pub sstat_fragmentation_point: u32,
    pub sstat_primary: [u8; 152],
}

// Sizes as gcc reports them for linux/sctp.h.
const _: () = assert!(size_of::<SctpInitmsg>() == 8);
const _: () = assert!(size_of::<SctpSndinfo>() == 16);
const _: () = assert!(size_of::<SctpRcvinfo>() == 28);
const _: () = assert!(size_of::<SctpEvent>() == 8);
const _: () = assert!(size_of::<SctpEventSubscribe>() == 14);
const _: () = assert!(size_of::<SctpStatus>() == 176);

/// Marker for plain-old-data option structs: any bit pattern (all zeroes
/// included) is a valid value, so the kernel may write them.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers and integer arrays.
pub unsafe trait Pod: Copy {}
// SAFETY: all are repr(C) structs of integers / integer arrays.
unsafe impl Pod for SctpInitmsg {}
unsafe impl Pod for SctpRtoinfo {}
unsafe impl Pod for SctpSndinfo {}
unsafe impl Pod for SctpRcvinfo {}
unsafe impl Pod for SctpEvent {}
unsafe impl Pod for SctpEventSubscribe {}
unsafe impl Pod for SctpStatus {}
unsafe impl Pod for c_int {}

/// `setsockopt(fd, level, name, value)`.
pub fn setsockopt<T: Pod>(fd: RawFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised T of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setsockopt` with a byte buffer (bindx, connectx); returns the call's result
/// (connectx returns the new association id).
pub fn setsockopt_bytes(fd: RawFd, level: c_int, name: c_int, value: &[u8]) -> io::Result<c_int> {
    let len = socklen_t::try_from(value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option too long"))?;
    // SAFETY: the pointer and length describe the live slice `value`.
    let rc = unsafe { libc::setsockopt(fd, level, name, value.as_ptr().cast::<c_void>(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// `getsockopt(fd, level, name)` into a T whose leading fields the caller preset
/// (SCTP_STATUS reads `sstat_assoc_id` as input).
pub fn getsockopt<T: Pod>(fd: RawFd, level: c_int, name: c_int, mut value: T) -> io::Result<T> {
    let mut len = size_of::<T>() as socklen_t;
    // SAFETY: `value` is a valid T of `len` bytes; T is Pod, so whatever the
    // kernel writes (at most `len` bytes) is a valid T.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)`: one syscall for a
/// ready-to-register socket.
pub fn accept_nonblocking(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed by accept4.
    let rc = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// Control buffer: 8-byte aligned, large enough for
/// `CMSG_SPACE(sizeof(struct sctp_rcvinfo)) + CMSG_SPACE(sizeof(struct sctp_nxtinfo))`
/// (48 + 32 bytes) with room to spare.
#[repr(C, align(8))]
struct CmsgBuf([u8; 128]);

/// `sendmsg` of one whole message with an `SCTP_SNDINFO` cmsg.
/// `ppid` is in host order; it is put on the wire unchanged (htonl here).
pub fn send_msg(
    fd: RawFd,
    stream: u16,
    ppid: u32,
    payload: &[u8],
    flags: c_int,
) -> io::Result<usize> {
    let info = SctpSndinfo {
        snd_sid: stream,
        snd_ppid: ppid.to_be(),
        ..SctpSndinfo::default()
    };
    let mut cbuf = CmsgBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast::<c_void>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<SctpSndinfo>() as u32) } as _;
    // SAFETY: msg_control points at `cbuf`, which is aligned and at least
    // CMSG_SPACE(16) = 32 bytes long, so the first header and its data fit;
    // the kernel only reads `payload` through the iovec.
    let rc = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = IPPROTO_SCTP;
        (*cmsg).cmsg_type = SCTP_SNDINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<SctpSndinfo>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<SctpSndinfo>(), info);
        libc::sendmsg(fd, &msg, flags)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// What one `recvmsg` returned.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// Bytes written at the start of the buffer; 0 with no flags means EOF.
    pub len: usize,
    /// `msg_flags` (`MSG_EOR`, `MSG_NOTIFICATION`, …).
    pub flags: c_int,
    /// Stream id and PPID (host order) from the `SCTP_RCVINFO` cmsg, if present.
    pub info: Option<(u16, u32)>,
    /// An `SCTP_NXTINFO` cmsg came along: another message (or notification) was
    /// already queued when this one was read.
    pub more: bool,
}

/// `recvmsg` into `buf`, reading the `SCTP_RCVINFO` cmsg.
pub fn recv_msg(fd: RawFd, buf: &mut [MaybeUninit<u8>], flags: c_int) -> io::Result<Received> {
    let mut cbuf = CmsgBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast::<c_void>(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast::<c_void>();
    msg.msg_controllen = cbuf.0.len() as _;
    // SAFETY: the iovec describes `buf` (writable, possibly uninitialised: the
    // kernel only writes); msg_control describes `cbuf`.
    let rc = unsafe { libc::recvmsg(fd, &mut msg, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut info = None;
    let mut more = false;
    // SAFETY: walking the control buffer the kernel filled, with the libc
    // macros, which bound every header by msg_controllen; the data is read
    // unaligned and only when its length covers a whole sctp_rcvinfo.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == IPPROTO_SCTP
                && c.cmsg_type == SCTP_RCVINFO
                && c.cmsg_len as usize >= libc::CMSG_LEN(size_of::<SctpRcvinfo>() as u32) as usize
            {
                let ri = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<SctpRcvinfo>());
                info = Some((ri.rcv_sid, u32::from_be(ri.rcv_ppid)));
            } else if c.cmsg_level == IPPROTO_SCTP && c.cmsg_type == SCTP_NXTINFO {
                more = true;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len: rc as usize,
        flags: msg.msg_flags,
        info,
        more,
    })
}

/// `recvmsg` into the spare capacity of `buf`, which grows by the bytes read.
pub fn recv_into(fd: RawFd, buf: &mut bytes::BytesMut, flags: c_int) -> io::Result<Received> {
    let r = recv_msg(fd, buf.spare_capacity_mut(), flags)?;
    let n = r.len.min(buf.capacity() - buf.len());
    // SAFETY: the kernel initialised the first `r.len` bytes of the spare
    // capacity (recvmsg never returns more than the iovec length; `min` is a
    // belt-and-braces bound).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(r)
}

/// Pack addresses as the kernel expects for bindx/connectx: `sockaddr_in` (16
/// bytes) and `sockaddr_in6` (28 bytes) back to back, unpadded.
pub fn pack_addrs(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * 28);
    for a in addrs {
        match a {
            SocketAddr::V4(v4) => {
                out.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                out.extend_from_slice(&v4.port().to_be_bytes());
                out.extend_from_slice(&v4.ip().octets());
                out.extend_from_slice(&[0; 8]);
            }
            SocketAddr::V6(v6) => {
                out.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                out.extend_from_slice(&v6.port().to_be_bytes());
                out.extend_from_slice(&v6.flowinfo().to_be_bytes());
                out.extend_from_slice(&v6.ip().octets());
                out.extend_from_slice(&v6.scope_id().to_ne_bytes());
            }
        }
    }
    out
}

/// Register a socket with tokio's reactor (panics outside a runtime: check first).
pub fn async_fd(sock: socket2::Socket) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    // SAFETY: a `socket2::Socket` owns its descriptor: it stays open and is the
    // same descriptor for as long as the `AsyncFd` holds the socket.
    unsafe { tokio::io::unix::AsyncFd::register(sock) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_addresses_have_kernel_sizes() {
        let v = pack_addrs(&[
            "127.0.0.1:36421".parse().unwrap(),
            "[::1]:36421".parse().unwrap(),
        ]);
        assert_eq!(v.len(), 16 + 28);
        assert_eq!(&v[2..4], &36421u16.to_be_bytes());
        assert_eq!(&v[4..8], &[127, 0, 0, 1]);
        assert_eq!(&v[16 + 2..16 + 4], &36421u16.to_be_bytes());
    }
}
