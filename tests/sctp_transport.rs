//! The kernel SCTP transport over real kernel SCTP (loopback).
//!
//! Run them inside the User-Mode-Linux rig: `scripts/rig-test sctp_transport`.
//! On a host without kernel SCTP each test prints "skipped" and passes, unless
//! `E2LB_REQUIRE_SCTP=1`. Sized for the rig, where every syscall is slow:
//! thousands of messages, not millions.

#[path = "common/rig.rs"]
mod rig;

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2lb::transport::sctp::{SctpAssoc, SctpConnector, SctpListener, RECV_CHUNK};
use e2lb::transport::stats::STATS;
use e2lb::transport::{Association, AssociationExt, Connector, Error, Listener, Message, Options};

/// Every test body runs under this bound, so that a hang fails instead of stalling CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A listener on `at` (port 0) and one association to it: (client, server).
async fn pair_with(
    at: &str,
    server: Options,
    client: Options,
) -> (SctpAssoc, SctpAssoc, SctpListener) {
    let mut l = SctpListener::bind(&[addr(at)], &server).expect("bind");
    let c = SctpConnector::new(client);
    let a = c.connect(l.local_addr()).await.expect("connect");
    let b = l.accept().await.expect("accept");
    (a, b, l)
}

async fn pair() -> (SctpAssoc, SctpAssoc, SctpListener) {
    pair_with("127.0.0.1:0", Options::default(), Options::default()).await
}

/// A payload whose bytes encode its index and length, to catch mix-ups.
fn pattern(i: usize, len: usize) -> Bytes {
    (0..len)
        .map(|j| (i.wrapping_mul(31).wrapping_add(j)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn stream_and_ppid_are_preserved_both_ways() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, _l) = pair().await;
        assert_eq!(a.info().outbound_streams, 2);
        assert_eq!(b.info().inbound_streams, 2);
        assert_eq!(a.info().peer, b.info().local);
        assert_eq!(a.info().local, b.info().peer);
        let cases = [
            (0u16, 0u32),
            (1, 70),
            (0, 70),
            (1, 0),
            (1, 71),
            (0, 0xdead_beef),
        ];
        // Client sends right after connect, before the server even reads.
        for (i, (s, p)) in cases.iter().enumerate() {
            a.send(&Message::new(*s, *p, pattern(i, 10 + i)))
                .await
                .unwrap();
        }
        for (i, (s, p)) in cases.iter().enumerate() {
            let m = b.recv().await.unwrap().expect("message");
            assert_eq!(m, Message::new(*s, *p, pattern(i, 10 + i)), "case {i}");
        }
        for (i, (s, p)) in cases.iter().enumerate() {
            b.send(&Message::new(*s, *p, pattern(i, 3 + i)))
                .await
                .unwrap();
        }
        for (i, (s, p)) in cases.iter().enumerate() {
            let m = a.recv().await.unwrap().expect("message");
            assert_eq!(
                m,
                Message::new(*s, *p, pattern(i, 3 + i)),
                "reverse case {i}"
            );
        }
    })
    .await
}

/// Chunks (type, whole chunk) of an SCTP packet seen at the network layer.
fn sctp_chunks(ip: &[u8]) -> Vec<(u8, &[u8])> {
    let sctp = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.get(9) == Some(&132) => ip.get(usize::from(ip[0] & 0xf) * 4..),
        Some(6) if ip.get(6) == Some(&132) => ip.get(40..),
        _ => None,
    };
    let mut out = Vec::new();
    let mut rest = sctp.and_then(|s| s.get(12..)).unwrap_or_default();
    while let (Some(&ty), Some(len)) = (rest.first(), rest.get(2..4)) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(chunk) = rest.get(..len).filter(|_| len >= 4) else {
            break;
        };
        out.push((ty, chunk));
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    out
}

/// Watch loopback with an AF_PACKET socket (root only: the rig) until a packet
/// satisfies `want`, for at most 20 s. `None` when packet capture is not allowed.
fn capture(
    want: impl Fn(&[(u8, &[u8])]) -> bool + Send + 'static,
) -> Option<std::thread::JoinHandle<bool>> {
    let eth_p_all = i32::from((libc::ETH_P_ALL as u16).to_be());
    let sock = match socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::DGRAM,
        Some(eth_p_all.into()),
    ) {
        Ok(s) => s,
        Err(e) => {
            println!("no packet capture ({e}): wire check skipped");
            return None;
        }
    };
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    Some(std::thread::spawn(move || {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok(n) = (&sock).read(&mut buf) {
                if want(&sctp_chunks(&buf[..n])) {
                    return true;
                }
            }
        }
        false
    }))
}

/// DATA chunk layout (RFC 9260 §3.3.1): type, flags, length, TSN, stream id,
/// SSN, PPID, then the user data.
fn data_chunk_has(chunk: &[u8], ppid: u32, payload: &[u8]) -> bool {
    chunk.get(12..16) == Some(&ppid.to_be_bytes()[..]) && chunk.get(16..) == Some(payload)
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn ppid_appears_unchanged_on_the_wire() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, _l) = pair().await;
        let Some(seen) = capture(|chunks| {
            chunks
                .iter()
                .any(|(ty, c)| *ty == 0 && data_chunk_has(c, 70, b"wire-ppid-70"))
        }) else {
            return;
        };
        a.send(&Message::new(1, 70, &b"wire-ppid-70"[..]))
            .await
            .unwrap();
        assert_eq!(b.recv().await.unwrap().unwrap().ppid, 70);
        let seen = tokio::task::spawn_blocking(move || seen.join().unwrap())
            .await
            .unwrap();
        assert!(
            seen,
            "no DATA chunk with PPID 70 (network order) on the wire"
        );
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn many_small_messages_keep_their_boundaries() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, _l) = pair().await;
        const N: usize = 5000;
        let send = async {
            for i in 0..N {
                let m = Message::new((i % 2) as u16, i as u32, pattern(i, 1 + i % 300));
                a.send(&m).await.unwrap();
            }
            a.shutdown().await.unwrap();
        };
        let recv = async {
            for i in 0..N {
                let m = b.recv().await.unwrap().expect("message");
                assert_eq!(
                    m.payload.len(),
                    1 + i % 300,
                    "message {i} was split or coalesced"
                );
                assert_eq!(
                    m,
                    Message::new((i % 2) as u16, i as u32, pattern(i, 1 + i % 300))
                );
            }
            assert_eq!(b.recv().await.unwrap(), None);
        };
        tokio::join!(send, recv);
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn big_messages_arrive_whole() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, _l) = pair().await;
        let sizes = [
            100_000,
            1,
            RECV_CHUNK + 1,
            1_000_000,
            70,
            3 * RECV_CHUNK,
            Options::default().max_message,
            5,
        ];
        let send = async {
            for (i, n) in sizes.iter().enumerate() {
                a.send(&Message::new(1, 70, pattern(i, *n))).await.unwrap();
            }
        };
        let recv = async {
            for (i, n) in sizes.iter().enumerate() {
                let m = b.recv().await.unwrap().expect("message");
                assert_eq!(m.payload.len(), *n, "message {i}");
                assert_eq!(m, Message::new(1, 70, pattern(i, *n)), "message {i}");
            }
        };
        tokio::join!(send, recv);
        // And the other way.
        let big = Message::new(0, 0, pattern(9, 200_000));
        tokio::join!(async { b.send(&big).await.unwrap() }, async {
            assert_eq!(a.recv().await.unwrap().as_ref(), Some(&big));
        });
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn a_receiver_that_stops_reading_pushes_back_without_loss() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let small = Options {
            socket_buffer: 32 * 1024,
            ..Options::default()
        };
        let (mut a, mut b, _l) = pair_with("127.0.0.1:0", small.clone(), small).await;
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut sent = 0usize;
        loop {
            let m = Message::new(0, 70, pattern(sent, 1000));
            match a.poll_send(&mut cx, &m) {
                Poll::Ready(r) => r.unwrap(),
                Poll::Pending => break,
            }
            sent += 1;
            assert!(sent < 100_000, "poll_send never pushed back");
        }
        assert!(sent > 0);
        // The message refused with Pending was not taken: offer it again, this
        // time waiting, while the receiver drains everything.
        let total = sent + 200;
        let send = async {
            for i in sent..total {
                a.send(&Message::new(0, 70, pattern(i, 1000)))
                    .await
                    .unwrap();
            }
        };
        let recv = async {
            for i in 0..total {
                let m = b.recv().await.unwrap().expect("message");
                assert_eq!(m.payload, pattern(i, 1000), "message {i} lost or reordered");
            }
        };
        tokio::join!(send, recv);
        println!("back-pressure after {sent} messages of 1000 bytes");
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn streams_above_the_peers_count_fall_back_to_the_highest() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let server = Options {
            in_streams: 1,
            out_streams: 1,
            ..Options::default()
        };
        let client = Options {
            out_streams: 4,
            in_streams: 4,
            ..Options::default()
        };
        let (mut a, mut b, _l) = pair_with("127.0.0.1:0", server, client).await;
        assert_eq!(a.info().outbound_streams, 1);
        assert_eq!(a.info().inbound_streams, 1);
        assert_eq!(b.info().outbound_streams, 1);
        let before = STATS.stream_fallbacks();
        a.send(&Message::new(3, 70, &b"x"[..])).await.unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::new(0, 70, &b"x"[..]))
        );
        assert!(STATS.stream_fallbacks() > before);
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn graceful_shutdown_is_seen_as_end_of_stream() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, _l) = pair().await;
        for i in 0..3 {
            a.send(&Message::new(0, 70, pattern(i, 50))).await.unwrap();
        }
        a.shutdown().await.unwrap();
        for i in 0..3 {
            assert_eq!(
                b.recv().await.unwrap().expect("message").payload,
                pattern(i, 50)
            );
        }
        assert_eq!(b.recv().await.unwrap(), None);
        assert_eq!(b.recv().await.unwrap(), None);
        // The side that shut down sees the end too, once the peer agrees.
        b.shutdown().await.unwrap();
        assert_eq!(a.recv().await.unwrap(), None);

        // Dropping an association closes it gracefully as well (never ABORT),
        // even with unread data in its receive queue.
        let (mut a, mut b, _l) = pair().await;
        b.send(&Message::new(0, 70, &b"unread"[..])).await.unwrap();
        a.send(&Message::new(0, 70, &b"last"[..])).await.unwrap();
        drop(a);
        assert_eq!(
            b.recv().await.unwrap().expect("message").payload,
            &b"last"[..]
        );
        assert_eq!(b.recv().await.unwrap(), None);
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn an_abort_from_the_peer_is_lost() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let mut l = SctpListener::bind(&[addr("127.0.0.1:0")], &Options::default()).unwrap();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::from(132)),
        )
        .unwrap();
        raw.connect(&l.local_addr().into()).unwrap();
        let mut b = l.accept().await.unwrap();
        raw.set_linger(Some(Duration::ZERO)).unwrap();
        drop(raw); // SO_LINGER 0: close() sends ABORT
        assert!(matches!(b.recv().await, Err(Error::Lost(_))));
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn ipv6_loopback() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let (mut a, mut b, l) = pair_with("[::1]:0", Options::default(), Options::default()).await;
        assert!(l.local_addr().is_ipv6());
        assert_eq!(a.info().peer, l.local_addr());
        assert!(b.info().peer.is_ipv6());
        a.send(&Message::new(1, 70, &b"v6"[..])).await.unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::new(1, 70, &b"v6"[..]))
        );
        b.send(&Message::new(0, 0, &b"back"[..])).await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Some(Message::new(0, 0, &b"back"[..]))
        );
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn multi_homed_listener_and_connector() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let mut l = SctpListener::bind(
            &[addr("127.0.0.1:0"), addr("127.0.0.2:0")],
            &Options::default(),
        )
        .expect("bindx");
        let port = l.local_addr().port();
        assert_eq!(l.local_addr(), SocketAddr::new([127, 0, 0, 1].into(), port));
        // Either address reaches the same endpoint.
        for at in ["127.0.0.1", "127.0.0.2"] {
            let to = SocketAddr::new(at.parse().unwrap(), port);
            let mut a = SctpConnector::new(Options::default())
                .connect(to)
                .await
                .unwrap();
            let mut b = l.accept().await.unwrap();
            a.send(&Message::new(0, 70, at.as_bytes().to_vec()))
                .await
                .unwrap();
            assert_eq!(b.recv().await.unwrap().unwrap().payload, at.as_bytes());
        }
        // A multi-homed client (bindx on two local addresses) to a multi-homed
        // peer (connectx with both of its addresses).
        let c = SctpConnector {
            local: Some(vec![addr("127.0.0.3:0"), addr("127.0.0.4:0")]),
            opts: Options::default(),
        };
        let peers = [
            SocketAddr::new([127, 0, 0, 2].into(), port),
            SocketAddr::new([127, 0, 0, 1].into(), port),
        ];
        let mut a = c.connect_multi(&peers).await.unwrap();
        let mut b = l.accept().await.unwrap();
        assert!(
            [[127, 0, 0, 3], [127, 0, 0, 4]]
                .iter()
                .any(|ip| b.info().peer.ip() == std::net::IpAddr::from(*ip)),
            "peer {}",
            b.info().peer
        );
        b.send(&Message::new(1, 70, &b"mh"[..])).await.unwrap();
        assert_eq!(
            a.recv().await.unwrap(),
            Some(Message::new(1, 70, &b"mh"[..]))
        );
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn an_oversized_message_is_too_large() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let server = Options {
            max_message: 10_000,
            ..Options::default()
        };
        let (mut a, mut b, _l) = pair_with("127.0.0.1:0", server, Options::default()).await;
        a.send(&Message::new(0, 70, pattern(0, 10_000)))
            .await
            .unwrap();
        a.send(&Message::new(0, 70, pattern(1, 100_000)))
            .await
            .unwrap();
        assert_eq!(b.recv().await.unwrap().unwrap().payload.len(), 10_000);
        match b.recv().await {
            Err(Error::TooLarge { size, max }) => {
                assert!(size > 10_000);
                assert_eq!(max, 10_000);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn connecting_to_a_closed_port_is_refused() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let port = {
            let l = SctpListener::bind(&[addr("127.0.0.1:0")], &Options::default()).unwrap();
            l.local_addr().port()
        };
        let to = SocketAddr::new([127, 0, 0, 1].into(), port);
        let r = SctpConnector::new(Options::default()).connect(to).await;
        assert!(
            matches!(r, Err(Error::Refused(a)) if a == to),
            "{:?}",
            r.err()
        );
    })
    .await
}

/// A peer that sends data together with its COOKIE-ECHO (implicit association
/// setup by `sendto` on a one-to-many socket): the first message is already
/// queued when the association is accepted.
#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn data_bundled_with_cookie_echo_is_received() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let mut l = SctpListener::bind(&[addr("127.0.0.1:0")], &Options::default()).unwrap();
        let raw = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::SEQPACKET,
            Some(socket2::Protocol::from(132)),
        )
        .unwrap();
        // Check on the wire that the DATA chunk really rode with the COOKIE ECHO.
        let bundled = capture(|chunks| {
            chunks.iter().any(|(ty, _)| *ty == 10)
                && chunks
                    .iter()
                    .any(|(ty, c)| *ty == 0 && data_chunk_has(c, 0, b"early bird"))
        });
        raw.send_to(b"early bird", &l.local_addr().into()).unwrap();
        let mut b = l.accept().await.unwrap();
        assert_eq!(
            b.recv().await.unwrap(),
            Some(Message::new(0, 0, &b"early bird"[..]))
        );
        b.send(&Message::new(0, 70, &b"welcome"[..])).await.unwrap();
        let raw = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = [0u8; 64];
            let n = (&raw).read(&mut buf).unwrap();
            buf[..n].to_vec()
        })
        .await
        .unwrap();
        assert_eq!(raw, b"welcome");
        if let Some(bundled) = bundled {
            let bundled = tokio::task::spawn_blocking(move || bundled.join().unwrap())
                .await
                .unwrap();
            assert!(bundled, "no packet with COOKIE ECHO + DATA seen");
        }
    })
    .await
}

/// One flow of 100-byte messages, client → server; prints messages/s.
/// `scripts/rig-test --release sctp_transport -- --ignored --nocapture measure_`
#[tokio::test]
#[ignore = "measurement, run explicitly in the rig"]
async fn measure_throughput_one_flow_100_byte_messages() {
    if !rig::sctp_or_skip() {
        return;
    }
    let n: usize = std::env::var("E2LB_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (mut a, mut b, _l) = pair().await;
    let msg = Message::new(0, 70, vec![7u8; 100]);
    let start = Instant::now();
    let send = async {
        for _ in 0..n {
            a.send(&msg).await.unwrap();
        }
    };
    let recv = async {
        for _ in 0..n {
            b.recv().await.unwrap().expect("message");
        }
    };
    tokio::join!(send, recv);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput: {n} messages of 100 bytes in {secs:.3} s = {:.0} messages/s",
        n as f64 / secs
    );
}

/// A server that accepts and at once closes (as e2lb does beyond
/// `proxy.max_associations`): every connect either returns the association,
/// whose first receive is the end, or says the peer closed it; never an
/// unrelated error (it used to be `connect: Invalid argument` when the close
/// won the race with the connector's status check).
#[tokio::test]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn a_peer_that_closes_at_once_is_a_lost_association_not_an_error() {
    if !rig::sctp_or_skip() {
        return;
    }
    bounded(async {
        let mut l = SctpListener::bind(&[addr("127.0.0.1:0")], &Options::default()).unwrap();
        let to = l.local_addr();
        let server = tokio::spawn(async move {
            while let Ok(a) = l.accept().await {
                drop(a);
            }
        });
        let c = SctpConnector::new(Options::default());
        let tries: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.connect(to).await })
            })
            .collect();
        let (mut ended, mut lost) = (0, 0);
        for t in tries {
            match t.await.unwrap() {
                Ok(mut a) => {
                    let r = a.recv().await;
                    assert!(matches!(r, Ok(None) | Err(Error::Lost(_))), "{:?}", r.err());
                    ended += 1;
                }
                Err(Error::Lost(_)) => lost += 1,
                Err(e) => panic!("connect: {e}"),
            }
        }
        println!("{ended} established then ended, {lost} closed before connect returned");
        server.abort();
    })
    .await
}
