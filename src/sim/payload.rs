//! The indication payload format shared by `sim node` and `sim ric`.
//!
//! A simulated RIC Indication carries:
//! - a RICindicationHeader of [`HEADER_LEN`] bytes ([`IndicationHeader`]): a
//!   magic, the per-subscription sequence number, the send timestamp in ns since
//!   the UNIX epoch (`CLOCK_REALTIME`, so two processes on one host agree), the
//!   length and FNV-1a checksum of the message, and the RICrequestID the node
//!   knows the subscription by (a RIC that sees another id in the PDU got the
//!   stream handed over by e2lb);
//! - a RICindicationMessage of exactly the configured payload size, filled
//!   with a pattern seeded per subscription.
//!
//! The node builds one APER template per subscription ([`IndicationTemplate`])
//! and stamps the sequence number and timestamp into a copy for every send, so
//! the generated encoder runs once per subscription, not once per message.
//! The RIC reads the header through the envelope peek and checks the message
//! against the header ([`read_indication`]), reassembling it when APER
//! fragmentation (messages of 16 KiB or more) splits it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::e2ap::build::{self, BuildError, IndicationType};
use crate::e2ap::generated as g;
use crate::e2ap::{DecodeError, Envelope, PduKind, RicRequestId};

/// Size of the simulator's RICindicationHeader.
pub const HEADER_LEN: usize = 40;
/// First bytes of every simulator header.
pub const MAGIC: [u8; 4] = *b"E2LB";
/// Header format version.
pub const VERSION: u8 = 2;

const SEQ_AT: usize = 8;
const SENT_AT: usize = 16;
const ORIGIN_AT: usize = 32;

/// Nanoseconds since the UNIX epoch (`CLOCK_REALTIME`); 0 if the clock is before 1970.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// 32-bit FNV-1a.
pub fn checksum(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `len` bytes of a pattern that depends on `seed` (xorshift), so a message
/// moved between subscriptions or truncated fails the checksum.
pub fn fill_payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    out
}

/// The decoded simulator header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndicationHeader {
    /// Per-subscription sequence number, from 0.
    pub seq: u64,
    /// Send time, ns since the UNIX epoch.
    pub sent_ns: u64,
    /// Length of the RICindicationMessage.
    pub payload_len: u32,
    /// FNV-1a of the RICindicationMessage.
    pub payload_sum: u32,
    /// The subscription's RICrequestID at the node.
    pub origin: RicRequestId,
}

impl IndicationHeader {
    /// Big-endian layout: magic(4) version(1) reserved(3) seq(8) sent_ns(8)
    /// len(4) sum(4) origin requestor(2) origin instance(2) reserved(4).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[SEQ_AT..SEQ_AT + 8].copy_from_slice(&self.seq.to_be_bytes());
        h[SENT_AT..SENT_AT + 8].copy_from_slice(&self.sent_ns.to_be_bytes());
        h[24..28].copy_from_slice(&self.payload_len.to_be_bytes());
        h[28..32].copy_from_slice(&self.payload_sum.to_be_bytes());
        h[ORIGIN_AT..ORIGIN_AT + 2].copy_from_slice(&self.origin.requestor.to_be_bytes());
        h[ORIGIN_AT + 2..ORIGIN_AT + 4].copy_from_slice(&self.origin.instance.to_be_bytes());
        h
    }

    /// `None` unless `b` is a simulator header of this version.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = b.try_into().ok()?;
        if b[..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        let u64_at = |o: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(v)
        };
        let u32_at = |o: usize| {
            let mut v = [0u8; 4];
            v.copy_from_slice(&b[o..o + 4]);
            u32::from_be_bytes(v)
        };
        Some(IndicationHeader {
            seq: u64_at(SEQ_AT),
            sent_ns: u64_at(SENT_AT),
            payload_len: u32_at(24),
            payload_sum: u32_at(28),
            origin: RicRequestId {
                requestor: u16::from_be_bytes([b[ORIGIN_AT], b[ORIGIN_AT + 1]]),
                instance: u16::from_be_bytes([b[ORIGIN_AT + 2], b[ORIGIN_AT + 3]]),
            },
        })
    }
}

/// Why an indication template could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The payload does not fit the 32-bit length of the header.
    #[error("payload of {0} bytes is too large")]
    TooLarge(usize),
    /// The encoded PDU does not contain the header where it must be.
    #[error("the encoded indication does not contain the header")]
    HeaderNotFound,
}

/// A pre-encoded RIC Indication for one subscription; [`Self::stamp`] makes
/// each message to send.
#[derive(Clone, Debug)]
pub struct IndicationTemplate {
    pdu: Bytes,
    /// Offset of the header's first byte in `pdu`.
    header_at: usize,
    /// Offset of the RICrequestID's two integers (4 octets) in `pdu`.
    request_at: usize,
}

/// RICrequestID written into templates, found again to stamp the real one.
const MARKER_REQUEST: RicRequestId = RicRequestId {
    requestor: 0xe21b,
    instance: 0x5a17,
};

impl IndicationTemplate {
    /// Encode a REPORT indication with a `payload_len`-byte message; the
    /// RICrequestID is stamped per message.
    pub fn new(
        ran_function: u16,
        action_id: u8,
        payload_len: usize,
        seed: u64,
    ) -> Result<Self, TemplateError> {
        let payload = fill_payload(payload_len, seed);
        let len32 = u32::try_from(payload_len).map_err(|_| TemplateError::TooLarge(payload_len))?;
        // The timestamp field starts as a marker no real clock produces, so the
        // header is found in the encoding without knowing the APER layout.
        let header = IndicationHeader {
            seq: u64::MAX,
            sent_ns: 0xA55A_5AA5_E21B_0001,
            payload_len: len32,
            payload_sum: checksum(&payload),
            origin: MARKER_REQUEST,
        }
        .encode();
        let pdu = build::Indication {
            request: MARKER_REQUEST,
            ran_function,
            action_id,
            sn: None,
            kind: IndicationType::Report,
            header: &header,
            message: &payload,
        }
        .build()?;
        // The header IE precedes the message IE, so the first match is the header;
        // it sits in the first 16 KiB fragment, so its bytes are contiguous.
        let header_at = pdu
            .windows(HEADER_LEN)
            .position(|w| w == header)
            .ok_or(TemplateError::HeaderNotFound)?;
        // RICrequestID (ext octet, requestor, instance) is the first IE.
        let mut marker = [0u8; 4];
        marker[..2].copy_from_slice(&MARKER_REQUEST.requestor.to_be_bytes());
        marker[2..].copy_from_slice(&MARKER_REQUEST.instance.to_be_bytes());
        let request_at = pdu[..header_at]
            .windows(4)
            .position(|w| w == marker)
            .ok_or(TemplateError::HeaderNotFound)?;
        Ok(IndicationTemplate {
            pdu,
            header_at,
            request_at,
        })
    }

    /// A copy of the template carrying `request` (also as the header's
    /// origin), `seq` and `sent_ns`.
    pub fn stamp(&self, request: RicRequestId, seq: u64, sent_ns: u64) -> Bytes {
        let mut b = BytesMut::from(&self.pdu[..]);
        for at in [self.request_at, self.header_at + ORIGIN_AT] {
            if let Some(slot) = b.get_mut(at..at + 4) {
                slot[..2].copy_from_slice(&request.requestor.to_be_bytes());
                slot[2..].copy_from_slice(&request.instance.to_be_bytes());
            }
        }
        let s = self.header_at + SEQ_AT;
        let t = self.header_at + SENT_AT;
        // Offsets were found inside this very buffer.
        if let Some(slot) = b.get_mut(s..s + 8) {
            slot.copy_from_slice(&seq.to_be_bytes());
        }
        if let Some(slot) = b.get_mut(t..t + 8) {
            slot.copy_from_slice(&sent_ns.to_be_bytes());
        }
        b.freeze()
    }

    /// Encoded size of every message made from this template.
    pub fn len(&self) -> usize {
        self.pdu.len()
    }

    /// Whether the template is empty (never: an indication has a header).
    pub fn is_empty(&self) -> bool {
        self.pdu.is_empty()
    }
}

/// What the RIC learns from one indication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadIndication {
    pub request: RicRequestId,
    pub ran_function: Option<u16>,
    /// `None`: the header is not a simulator header (a real E2 node's indication).
    pub header: Option<IndicationHeader>,
    /// The message has the length and checksum the header announces
    /// (`false` when there is no simulator header).
    pub intact: bool,
}

/// Why an indication could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Not a RIC Indication initiating message.
    #[error("not a RIC Indication")]
    NotIndication,
    /// The indication has no RICrequestID.
    #[error("RIC Indication without RICrequestID")]
    NoRequestId,
}

/// Read a RIC Indication: ids, the simulator header and the message check.
pub fn read_indication(pdu: &[u8]) -> Result<ReadIndication, ReadError> {
    let env = Envelope::parse(pdu)?;
    if env.kind() != PduKind::Initiating || env.procedure_code() != g::ID_RI_CINDICATION {
        return Err(ReadError::NotIndication);
    }
    let request = env.ric_request_id().ok_or(ReadError::NoRequestId)?;
    let header = env
        .raw_value(g::ID_RI_CINDICATION_HEADER)
        .and_then(|v| octet_string(&v).and_then(IndicationHeader::decode));
    let intact = match header {
        Some(h) => message_matches(&env, pdu, &h),
        None => false,
    };
    Ok(ReadIndication {
        request,
        ran_function: env.ran_function_id(),
        header,
        intact,
    })
}

fn message_matches(env: &Envelope<'_>, pdu: &[u8], h: &IndicationHeader) -> bool {
    let Some(ie) = env.find(g::ID_RI_CINDICATION_MESSAGE) else {
        return false;
    };
    let check = |m: &[u8]| {
        u32::try_from(m.len()).is_ok_and(|l| l == h.payload_len) && checksum(m) == h.payload_sum
    };
    if let Some(m) = env.value(&ie).and_then(octet_string) {
        return check(m);
    }
    // Split by APER fragmentation: reassemble the hard way.
    match unfragmented_ie(pdu, g::ID_RI_CINDICATION_MESSAGE) {
        Some(v) => match unfragment(&v, 0) {
            Some((m, end)) if end == v.len() => check(&m),
            _ => false,
        },
        None => false,
    }
}

/// The contents of an unconstrained OCTET STRING whose APER encoding is
/// contiguous (no fragmentation): the length determinant, then the bytes.
fn octet_string(v: &[u8]) -> Option<&[u8]> {
    let (&b0, rest) = v.split_first()?;
    let (len, body) = if b0 & 0x80 == 0 {
        (usize::from(b0), rest)
    } else if b0 & 0x40 == 0 {
        let (&b1, rest) = rest.split_first()?;
        ((usize::from(b0 & 0x3f) << 8) | usize::from(b1), rest)
    } else {
        return None;
    };
    (body.len() == len).then_some(body)
}

/// Read one APER length-prefixed value at `pos` (X.691 §11.9: short, long or
/// fragmented form), joining the fragments. Returns the bytes and the end position.
fn unfragment(buf: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    const FRAGMENT: usize = 16 * 1024;
    let mut out = Vec::new();
    loop {
        let b0 = *buf.get(pos)?;
        let (len, more) = if b0 & 0x80 == 0 {
            pos += 1;
            (usize::from(b0), false)
        } else if b0 & 0x40 == 0 {
            let b1 = *buf.get(pos + 1)?;
            pos += 2;
            ((usize::from(b0 & 0x3f) << 8) | usize::from(b1), false)
        } else {
            let m = usize::from(b0 & 0x3f);
            if !(1..=4).contains(&m) {
                return None;
            }
            pos += 1;
            (m * FRAGMENT, true)
        };
        out.extend_from_slice(buf.get(pos..pos.checked_add(len)?)?);
        pos += len;
        if !more {
            return Some((out, pos));
        }
    }
}

/// The value (open type contents) of IE `id` of a PDU whose outer open type
/// or IE may be fragmented. Copies; used only for large messages.
fn unfragmented_ie(pdu: &[u8], id: u16) -> Option<Vec<u8>> {
    // E2AP-PDU: choice (1) procedureCode (1) criticality (1), then the open type.
    let (content, end) = unfragment(pdu, 3)?;
    if end != pdu.len() {
        return None;
    }
    // Message SEQUENCE: extension bit octet, IE count (2), IEs.
    let count = u16::from_be_bytes([*content.get(1)?, *content.get(2)?]);
    let mut pos = 3;
    for _ in 0..count {
        let ie_id = u16::from_be_bytes([*content.get(pos)?, *content.get(pos + 1)?]);
        let (value, next) = unfragment(&content, pos + 3)?;
        if ie_id == id {
            return Some(value);
        }
        pos = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid() -> RicRequestId {
        RicRequestId {
            requestor: 7,
            instance: 42,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = IndicationHeader {
            seq: 0x0102_0304_0506_0708,
            sent_ns: 1_700_000_000_123_456_789,
            payload_len: 100,
            payload_sum: 0xdead_beef,
            origin: rid(),
        };
        assert_eq!(IndicationHeader::decode(&h.encode()), Some(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(IndicationHeader::decode(&bad), None);
        assert_eq!(
            IndicationHeader::decode(&h.encode()[..HEADER_LEN - 1]),
            None
        );
    }

    #[test]
    fn payload_fill_is_sized_and_seeded() {
        assert_eq!(fill_payload(0, 1).len(), 0);
        assert_eq!(fill_payload(13, 1).len(), 13);
        assert_ne!(fill_payload(64, 1), fill_payload(64, 2));
        assert_eq!(fill_payload(64, 3), fill_payload(64, 3));
    }

    fn round_trip(payload: usize) {
        let t = IndicationTemplate::new(3, 1, payload, 99).expect("template");
        let m = t.stamp(rid(), 17, 123_456);
        assert_eq!(m.len(), t.len());
        let r = read_indication(&m).expect("read");
        assert_eq!(r.request, rid());
        assert_eq!(r.header.map(|h| h.origin), Some(rid()));
        assert_eq!(r.ran_function, Some(3));
        let h = r.header.expect("sim header");
        assert_eq!((h.seq, h.sent_ns), (17, 123_456));
        assert_eq!(h.payload_len as usize, payload);
        assert!(r.intact, "payload {payload}");
        // A flipped byte in the message body is detected.
        let mut bad = m.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        let r = read_indication(&bad).expect("read");
        assert!(!r.intact, "corruption not seen at payload {payload}");
    }

    #[test]
    fn small_and_large_indications_read_back_intact() {
        for payload in [0, 1, 100, 127, 128, 16_383, 16_384, 40_000, 100_000] {
            round_trip(payload);
        }
    }

    #[test]
    fn foreign_header_is_not_ours() {
        let pdu = build::Indication {
            request: rid(),
            ran_function: 1,
            action_id: 1,
            sn: None,
            kind: IndicationType::Report,
            header: b"kpm header",
            message: b"kpm message",
        }
        .build()
        .expect("build");
        let r = read_indication(&pdu).expect("read");
        assert_eq!(r.header, None);
        assert!(!r.intact);
    }

    #[test]
    fn not_an_indication() {
        let pdu = build::SubscriptionDelete {
            request: rid(),
            ran_function: 1,
        }
        .build_request()
        .expect("build");
        assert_eq!(read_indication(&pdu), Err(ReadError::NotIndication));
        assert!(read_indication(&[0x00, 0x05]).is_err());
    }
}
