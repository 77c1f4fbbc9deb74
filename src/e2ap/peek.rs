//! The envelope peek: a tolerant, zero-copy reader of exactly what routing needs.
//!
//! Every E2AP PDU, in every version, has the same envelope:
//!
//! ```text
//! E2AP-PDU ::= CHOICE { initiatingMessage, successfulOutcome, unsuccessfulOutcome, ... }
//!   each   ::= SEQUENCE { procedureCode INTEGER (0..255), criticality ENUMERATED {reject, ignore, notify},
//!                         value OPEN TYPE }          -- the open type holds
//!   message ::= SEQUENCE { protocolIEs SEQUENCE (SIZE (0..65535)) OF
//!                            SEQUENCE { id INTEGER (0..65535), criticality, value OPEN TYPE }, ... }
//! ```
//!
//! In ALIGNED PER that is: one octet holding the choice (extension bit + 2-bit
//! index), one octet of procedure code, one octet holding the criticality in its
//! top two bits, then a length-prefixed open type; inside it one octet holding the
//! message's extension bit, a 2-octet IE count, and per IE a 2-octet id, an octet
//! with the criticality, and a length-prefixed value. [`Envelope::parse`] checks
//! that framing strictly (every length inside the buffer, nothing trailing) and
//! returns the IE list without decoding any value: unknown procedure codes and IE
//! ids are reported, not rejected.
//!
//! Open types of 16 KiB and more are split into fragments by APER (X.691 §11.9.3.8),
//! so a big RIC Indication is not contiguous in the buffer. The peek keeps a small
//! fixed table of fragments ([`MAX_SEGMENTS`]) and reads through it; it never
//! allocates. IE values that are contiguous (all but multi-fragment ones) are
//! given as plain byte ranges of the buffer.

use std::ops::Range;

use bytes::Bytes;

use super::ids::ie;
use super::DecodeError;

/// Most physical pieces a message's IE container may be split into (each up to
/// 64 KiB, so messages of a few MiB; larger ones are refused as too fragmented).
pub const MAX_SEGMENTS: usize = 48;

/// Which of the three E2AP-PDU alternatives a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PduKind {
    Initiating,
    Successful,
    Unsuccessful,
}

impl PduKind {
    /// The ASN.1 alternative name (also a bounded metric label).
    pub fn name(self) -> &'static str {
        match self {
            PduKind::Initiating => "initiatingMessage",
            PduKind::Successful => "successfulOutcome",
            PduKind::Unsuccessful => "unsuccessfulOutcome",
        }
    }
}

/// `Criticality ::= ENUMERATED { reject, ignore, notify }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Criticality {
    Reject,
    Ignore,
    Notify,
}

impl Criticality {
    fn from_bits(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(Criticality::Reject),
            1 => Ok(Criticality::Ignore),
            2 => Ok(Criticality::Notify),
            v => Err(DecodeError::BadCriticality(v)),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Criticality::Reject => "reject",
            Criticality::Ignore => "ignore",
            Criticality::Notify => "notify",
        }
    }
}

/// `RICrequestID ::= SEQUENCE { ricRequestorID INTEGER (0..65535), ricInstanceID INTEGER (0..65535), ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RicRequestId {
    pub requestor: u16,
    pub instance: u16,
}

impl std::fmt::Display for RicRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.requestor, self.instance)
    }
}

/// One protocol IE as found in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ie {
    pub id: u16,
    pub criticality: Criticality,
    /// Bytes of the value's encoding in the buffer. When `contiguous` is false
    /// (a value of 16 KiB or more, split by APER fragmentation, or one straddling
    /// a fragment of the outer open type) the range spans first to last value
    /// byte and includes the fragment headers between them.
    pub value: Range<usize>,
    pub contiguous: bool,
    /// Position and length of the value in the container's logical byte space
    /// (valid for reading when the value itself is not fragmented).
    logical: Range<usize>,
    fragmented: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Seg {
    start: u32,
    len: u32,
}

/// A logical byte sequence made of up to MAX_SEGMENTS physical pieces of a buffer.
#[derive(Clone, Copy, Debug)]
struct View {
    segs: [Seg; MAX_SEGMENTS],
    n: usize,
    len: usize,
}

impl View {
    fn empty() -> Self {
        View {
            segs: [Seg::default(); MAX_SEGMENTS],
            n: 0,
            len: 0,
        }
    }

    fn whole(buf: &[u8]) -> Result<Self, DecodeError> {
        let len = u32::try_from(buf.len()).map_err(|_| DecodeError::TooFragmented)?;
        let mut v = View::empty();
        v.segs[0] = Seg { start: 0, len };
        v.n = 1;
        v.len = buf.len();
        Ok(v)
    }

    /// The whole view as one slice, when it is a single piece.
    #[inline]
    fn contiguous<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        if self.n != 1 {
            return None;
        }
        let s = self.segs[0];
        buf.get(s.start as usize..s.start as usize + s.len as usize)
    }

    /// Physical offset of logical byte `pos` (which must be < len).
    #[inline]
    fn phys(&self, mut pos: usize) -> Option<usize> {
        for s in &self.segs[..self.n] {
            let l = s.len as usize;
            if pos < l {
                return Some(s.start as usize + pos);
            }
            pos -= l;
        }
        None
    }

    #[inline]
    fn byte(&self, buf: &[u8], pos: usize, at: &'static str) -> Result<u8, DecodeError> {
        if self.n == 1 {
            // Fast path: one contiguous piece.
            if pos < self.len {
                let p = self.segs[0].start as usize + pos;
                return buf.get(p).copied().ok_or(DecodeError::Truncated { at });
            }
            return Err(DecodeError::Truncated { at });
        }
        self.phys(pos)
            .and_then(|p| buf.get(p).copied())
            .ok_or(DecodeError::Truncated { at })
    }

    #[inline]
    fn u16(&self, buf: &[u8], pos: usize, at: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes([
            self.byte(buf, pos, at)?,
            self.byte(buf, pos + 1, at)?,
        ]))
    }

    /// Append the parent's logical range [lpos, lpos+len) as physical segments.
    fn push_from(
        &mut self,
        parent: &View,
        mut lpos: usize,
        mut len: usize,
    ) -> Result<(), DecodeError> {
        if lpos.checked_add(len).is_none_or(|end| end > parent.len) {
            return Err(DecodeError::Truncated {
                at: "open type value",
            });
        }
        self.len += len;
        let mut base = 0usize;
        for s in &parent.segs[..parent.n] {
            let sl = s.len as usize;
            if len == 0 {
                break;
            }
            if lpos < base + sl {
                let off = lpos - base;
                let take = (sl - off).min(len);
                let start = s.start + off as u32; // off < sl ≤ u32::MAX
                let take32 = take as u32; // take ≤ sl
                match self.n {
                    0 => {}
                    n if self.segs[n - 1].start + self.segs[n - 1].len == start => {
                        self.segs[n - 1].len += take32;
                        lpos += take;
                        len -= take;
                        base += sl;
                        continue;
                    }
                    _ => {}
                }
                if self.n == MAX_SEGMENTS {
                    return Err(DecodeError::TooFragmented);
                }
                self.segs[self.n] = Seg { start, len: take32 };
                self.n += 1;
                lpos += take;
                len -= take;
            }
            base += sl;
        }
        Ok(())
    }
}

/// A decoded APER length determinant.
enum Len {
    /// The last (or only) piece: `n` octets follow.
    Last(usize),
    /// A fragment of `n` octets (a multiple of 16 Ki); another length follows it.
    Fragment(usize),
}

#[inline]
fn read_len(
    v: &View,
    buf: &[u8],
    pos: usize,
    at: &'static str,
) -> Result<(Len, usize), DecodeError> {
    let b = v.byte(buf, pos, at)?;
    if b & 0x80 == 0 {
        Ok((Len::Last(b as usize), 1))
    } else if b & 0xC0 == 0x80 {
        let lo = v.byte(buf, pos + 1, at)?;
        Ok((Len::Last((((b & 0x3F) as usize) << 8) | lo as usize), 2))
    } else {
        let m = (b & 0x3F) as usize;
        if !(1..=4).contains(&m) {
            return Err(DecodeError::BadLength(b));
        }
        Ok((Len::Fragment(m * 16384), 1))
    }
}

/// Read an open type starting at logical `pos` of `v`. Returns the value's first
/// logical byte, the position after the value, and whether it was fragmented.
/// When `into` is given, the value's pieces are appended to it.
fn open_type(
    v: &View,
    buf: &[u8],
    mut pos: usize,
    at: &'static str,
    mut into: Option<&mut View>,
) -> Result<(usize, usize, bool), DecodeError> {
    let mut first = None;
    let mut fragmented = false;
    loop {
        let (len, hdr) = read_len(v, buf, pos, at)?;
        pos += hdr;
        first.get_or_insert(pos);
        let (n, last) = match len {
            Len::Last(n) => (n, true),
            Len::Fragment(n) => (n, false),
        };
        if pos.checked_add(n).is_none_or(|e| e > v.len) {
            return Err(DecodeError::Truncated { at });
        }
        if let Some(into) = into.as_deref_mut() {
            into.push_from(v, pos, n)?;
        }
        pos += n;
        if last {
            return Ok((first.unwrap_or(pos), pos, fragmented));
        }
        fragmented = true;
    }
}

/// The routing view of one E2AP PDU, borrowed from its buffer.
#[derive(Clone, Debug)]
pub struct Envelope<'a> {
    buf: &'a [u8],
    kind: PduKind,
    procedure_code: u8,
    criticality: Criticality,
    content: View,
    ie_count: u16,
    extended: bool,
    /// Where the routing IEs are ([`ROUTING_IES`] order), found during `parse`'s
    /// walk so their accessors need no second walk.
    known: [Option<Loc>; ROUTING_IES.len()],
}

/// IEs whose first occurrence `parse` remembers.
const ROUTING_IES: [u16; 3] = [ie::TRANSACTION_ID, ie::RIC_REQUEST_ID, ie::RAN_FUNCTION_ID];

/// A value's place in the container's logical byte space.
#[derive(Clone, Copy, Debug)]
struct Loc {
    start: u32,
    end: u32,
    fragmented: bool,
}

/// Position of the first IE in the message value: extension octet + 2-octet count.
const FIRST_IE: usize = 3;

impl<'a> Envelope<'a> {
    /// Check the envelope and IE framing of `buf` and return the routing view.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let root = View::whole(buf)?;
        let b0 = root.byte(buf, 0, "E2AP-PDU choice")?;
        if b0 & 0x80 != 0 {
            return Err(DecodeError::ExtensionPdu);
        }
        let kind = match (b0 >> 5) & 0x03 {
            0 => PduKind::Initiating,
            1 => PduKind::Successful,
            2 => PduKind::Unsuccessful,
            i => return Err(DecodeError::BadChoice(i)),
        };
        let procedure_code = root.byte(buf, 1, "procedureCode")?;
        let criticality = Criticality::from_bits(root.byte(buf, 2, "criticality")? >> 6)?;
        let mut content = View::empty();
        let (_, end, _) = open_type(&root, buf, 3, "message value", Some(&mut content))?;
        if end != buf.len() {
            return Err(DecodeError::Trailing(buf.len() - end));
        }
        let extended = content.byte(buf, 0, "message extension bit")? & 0x80 != 0;
        let ie_count = content.u16(buf, 1, "IE count")?;
        let mut env = Envelope {
            buf,
            kind,
            procedure_code,
            criticality,
            content,
            ie_count,
            extended,
            known: [None; ROUTING_IES.len()],
        };
        // Walk the container once so every later accessor works on checked framing.
        let pos = match env.content.contiguous(buf) {
            Some(c) => env.walk_contiguous(c)?,
            None => env.walk()?,
        };
        // Without extension additions the IE container must fill the value exactly.
        if !extended && pos != env.content.len {
            return Err(DecodeError::Trailing(env.content.len - pos));
        }
        Ok(env)
    }

    /// Remember where a routing IE's value is (first occurrence wins).
    #[inline]
    fn note(&mut self, id: u16, start: usize, end: usize, fragmented: bool) {
        if let Some(k) = ROUTING_IES.iter().position(|&r| r == id) {
            // Positions are inside a buffer whose length fits u32 (checked by View::whole).
            self.known[k].get_or_insert(Loc {
                start: start as u32,
                end: end as u32,
                fragmented,
            });
        }
    }

    /// The framing walk through the fragment table (values of 16 KiB and more).
    fn walk(&mut self) -> Result<usize, DecodeError> {
        let buf = self.buf;
        let mut pos = FIRST_IE;
        for _ in 0..self.ie_count {
            let id = self.content.u16(buf, pos, "IE id")?;
            Criticality::from_bits(self.content.byte(buf, pos + 2, "IE criticality")? >> 6)?;
            let (start, end, fragmented) =
                open_type(&self.content, buf, pos + 3, "IE value", None)?;
            self.note(id, start, end, fragmented);
            pos = end;
        }
        Ok(pos)
    }

    /// The same walk over a container that is one contiguous slice (every
    /// message below 16 KiB): plain slice reads, the hot path of the proxy.
    fn walk_contiguous(&mut self, c: &[u8]) -> Result<usize, DecodeError> {
        let mut pos = FIRST_IE;
        for _ in 0..self.ie_count {
            let hdr = c
                .get(pos..pos + 4)
                .ok_or(DecodeError::Truncated { at: "IE header" })?;
            let &[id_hi, id_lo, crit, len0] = hdr else {
                return Err(DecodeError::Truncated { at: "IE header" });
            };
            let id = u16::from_be_bytes([id_hi, id_lo]);
            Criticality::from_bits(crit >> 6)?;
            let (start, end, fragmented) = if len0 & 0x80 == 0 {
                (pos + 4, pos + 4 + usize::from(len0), false)
            } else if len0 & 0xC0 == 0x80 {
                let lo = *c
                    .get(pos + 4)
                    .ok_or(DecodeError::Truncated { at: "IE value" })?;
                let n = (usize::from(len0 & 0x3F) << 8) | usize::from(lo);
                (pos + 5, pos + 5 + n, false)
            } else {
                open_type(&self.content, self.buf, pos + 3, "IE value", None)?
            };
            if end > c.len() {
                return Err(DecodeError::Truncated { at: "IE value" });
            }
            self.note(id, start, end, fragmented);
            pos = end;
        }
        Ok(pos)
    }

    fn read_ie(&self, pos: usize) -> Result<(Ie, usize), DecodeError> {
        let id = self.content.u16(self.buf, pos, "IE id")?;
        let criticality =
            Criticality::from_bits(self.content.byte(self.buf, pos + 2, "IE criticality")? >> 6)?;
        let (start, end, fragmented) =
            open_type(&self.content, self.buf, pos + 3, "IE value", None)?;
        let (value, contiguous) = if end > start {
            let p0 = self
                .content
                .phys(start)
                .ok_or(DecodeError::Truncated { at: "IE value" })?;
            let p1 = self
                .content
                .phys(end - 1)
                .ok_or(DecodeError::Truncated { at: "IE value" })?;
            (p0..p1 + 1, !fragmented && p1 + 1 - p0 == end - start)
        } else {
            let p = self.content.phys(pos).unwrap_or(0);
            (p..p, true)
        };
        Ok((
            Ie {
                id,
                criticality,
                value,
                contiguous,
                logical: start..end,
                fragmented,
            },
            end,
        ))
    }

    pub fn kind(&self) -> PduKind {
        self.kind
    }
    pub fn procedure_code(&self) -> u8 {
        self.procedure_code
    }
    pub fn procedure(&self) -> super::ids::Procedure {
        super::ids::Procedure(self.procedure_code)
    }
    pub fn criticality(&self) -> Criticality {
        self.criticality
    }
    /// Number of IEs in the container.
    pub fn ie_count(&self) -> u16 {
        self.ie_count
    }
    /// Whether the message SEQUENCE has extension additions after its IEs.
    pub fn extended(&self) -> bool {
        self.extended
    }

    /// The IEs in order (framing was checked by `parse`).
    pub fn ies(&self) -> Ies<'_, 'a> {
        Ies {
            env: self,
            pos: FIRST_IE,
            left: self.ie_count,
        }
    }

    /// The first IE with this id.
    pub fn find(&self, id: u16) -> Option<Ie> {
        self.ies().find(|ie| ie.id == id)
    }

    /// The value bytes of an IE when they are contiguous in the buffer.
    pub fn value(&self, ie: &Ie) -> Option<&'a [u8]> {
        if ie.contiguous {
            self.buf.get(ie.value.clone())
        } else {
            None
        }
    }

    /// Where a routing IE's (unfragmented, long enough) value starts.
    fn small_value(&self, id: u16, min_len: usize) -> Option<usize> {
        let k = ROUTING_IES.iter().position(|&r| r == id)?;
        let loc = self.known[k]?;
        let (start, end) = (loc.start as usize, loc.end as usize);
        (!loc.fragmented && end - start >= min_len).then_some(start)
    }

    #[inline]
    fn at(&self, start: usize, off: usize) -> Option<u8> {
        self.content.byte(self.buf, start + off, "IE value").ok()
    }

    /// `TransactionID ::= INTEGER (0..255, ...)`; `None` if absent or out of the root range.
    pub fn transaction_id(&self) -> Option<u8> {
        let v = self.small_value(ie::TRANSACTION_ID, 2)?;
        if self.at(v, 0)? & 0x80 != 0 {
            return None;
        }
        self.at(v, 1)
    }

    /// `RICrequestID` (5 octets in APER: extension bit, then two 2-octet integers).
    pub fn ric_request_id(&self) -> Option<RicRequestId> {
        let v = self.small_value(ie::RIC_REQUEST_ID, 5)?;
        let b = |o| self.at(v, o);
        Some(RicRequestId {
            requestor: u16::from_be_bytes([b(1)?, b(2)?]),
            instance: u16::from_be_bytes([b(3)?, b(4)?]),
        })
    }

    /// `RANfunctionID ::= INTEGER (0..4095)`.
    pub fn ran_function_id(&self) -> Option<u16> {
        let at = self.small_value(ie::RAN_FUNCTION_ID, 2)?;
        let v = u16::from_be_bytes([self.at(at, 0)?, self.at(at, 1)?]);
        (v <= 4095).then_some(v)
    }

    /// The APER bytes of an IE's value, copied out (works across fragments).
    pub fn raw_value(&self, id: u16) -> Option<Vec<u8>> {
        let ie = self.find(id)?;
        if ie.fragmented {
            return None;
        }
        (0..ie.logical.len())
            .map(|o| self.at(ie.logical.start, o))
            .collect()
    }

    /// `GlobalE2node-ID` value bytes (canonical APER: usable as the node's identity).
    pub fn global_e2node_id_raw(&self) -> Option<Vec<u8>> {
        self.raw_value(ie::GLOBAL_E2NODE_ID)
    }

    /// `GlobalRIC-ID` value bytes.
    pub fn global_ric_id_raw(&self) -> Option<Vec<u8>> {
        self.raw_value(ie::GLOBAL_RIC_ID)
    }

    /// The leading `ranFunctionID` of every item of a RAN-function list IE
    /// (`RANfunctions-List`, `RANfunctionsID-List`, `RANfunctionsIDcause-List`):
    /// `SEQUENCE (SIZE (1..256)) OF ProtocolIE-SingleContainer`, each item a
    /// SEQUENCE whose first octet holds its extension bit and whose next two hold
    /// the id. Used on E2 Setup only, so it may allocate.
    pub fn ran_function_list(&self, id: u16) -> Result<Vec<u16>, DecodeError> {
        let Some(ie) = self.find(id) else {
            return Ok(Vec::new());
        };
        if ie.fragmented {
            return Err(DecodeError::TooFragmented);
        }
        let at = "RAN function list";
        let base = ie.logical.start;
        let end = ie.logical.end;
        let count = self.content.byte(self.buf, base, at)? as usize + 1;
        let mut pos = base + 1;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            // ProtocolIE-SingleContainer: id (2), criticality (1), open type.
            let (start, next, fragmented) = open_type(&self.content, self.buf, pos + 3, at, None)?;
            if next > end {
                return Err(DecodeError::Truncated { at });
            }
            if fragmented || next - start < 3 {
                return Err(DecodeError::Truncated { at });
            }
            ids.push(self.content.u16(self.buf, start + 1, at)?);
            pos = next;
        }
        if pos != end {
            return Err(DecodeError::Trailing(end - pos));
        }
        Ok(ids)
    }

    /// Zero-copy slice of an IE value out of the `Bytes` this envelope was parsed from.
    pub fn slice(&self, from: &Bytes, ie: &Ie) -> Option<Bytes> {
        (ie.contiguous
            && std::ptr::eq(from.as_ptr(), self.buf.as_ptr())
            && ie.value.end <= from.len())
        .then(|| from.slice(ie.value.clone()))
    }

    /// Physical offsets of the 4 RICrequestID integer octets, for in-place rewrite.
    fn ric_request_id_offsets(&self) -> Option<[usize; 4]> {
        let v = self.small_value(ie::RIC_REQUEST_ID, 5)?;
        let p = |o| self.content.phys(v + o);
        Some([p(1)?, p(2)?, p(3)?, p(4)?])
    }

    /// Physical offset of the TransactionID value octet, for in-place rewrite.
    fn transaction_id_offset(&self) -> Option<usize> {
        let v = self.small_value(ie::TRANSACTION_ID, 2)?;
        if self.at(v, 0)? & 0x80 != 0 {
            return None;
        }
        self.content.phys(v + 1)
    }
}

/// Iterator over the IEs of an [`Envelope`].
pub struct Ies<'e, 'a> {
    env: &'e Envelope<'a>,
    pos: usize,
    left: u16,
}

impl Iterator for Ies<'_, '_> {
    type Item = Ie;
    fn next(&mut self) -> Option<Ie> {
        if self.left == 0 {
            return None;
        }
        // Framing was validated by `Envelope::parse`, so this cannot fail; stop if it does.
        let (ie, next) = self.env.read_ie(self.pos).ok()?;
        self.pos = next;
        self.left -= 1;
        Some(ie)
    }
}

/// Replace the RICrequestID of a PDU in place (its APER encoding has a fixed size,
/// so nothing else moves). Returns the previous id.
pub fn rewrite_ric_request_id(
    msg: &mut [u8],
    new: RicRequestId,
) -> Result<RicRequestId, DecodeError> {
    let (old, offs) = {
        let env = Envelope::parse(msg)?;
        match (env.ric_request_id(), env.ric_request_id_offsets()) {
            (Some(old), Some(offs)) => (old, offs),
            _ => return Err(DecodeError::MissingIe(ie::RIC_REQUEST_ID)),
        }
    };
    let r = new.requestor.to_be_bytes();
    let i = new.instance.to_be_bytes();
    for (off, b) in offs.into_iter().zip([r[0], r[1], i[0], i[1]]) {
        // Offsets come from a successful parse of this very buffer.
        if let Some(slot) = msg.get_mut(off) {
            *slot = b;
        }
    }
    Ok(old)
}

/// Replace the TransactionID of a PDU in place. Returns the previous value.
pub fn rewrite_transaction_id(msg: &mut [u8], new: u8) -> Result<u8, DecodeError> {
    let (old, off) = {
        let env = Envelope::parse(msg)?;
        match (env.transaction_id(), env.transaction_id_offset()) {
            (Some(old), Some(off)) => (old, off),
            _ => return Err(DecodeError::MissingIe(ie::TRANSACTION_ID)),
        }
    };
    if let Some(slot) = msg.get_mut(off) {
        *slot = new;
    }
    Ok(old)
}

#[cfg(test)]
mod tests;
