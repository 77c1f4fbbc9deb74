//! Full typed E2AP codec: APER decode/encode through the generated types.
//!
//! The routing path never needs this module (see [`super::peek`]); it is used
//! where the proxy must read or build a whole message (E2 Setup, subscriptions,
//! the simulators).
//!
//! Limits of the generated codec (asn1-compiler / asn1-codecs 0.7.2), and how
//! this wrapper keeps them away from callers:
//! - APER lengths of 16 KiB or more (fragmented lengths) are neither decoded
//!   correctly nor encoded. [`decode`] checks the outermost open-type length
//!   (every inner length is smaller) and returns
//!   [`CodecError::Fragmented`] instead of misreading; [`encode`] returns
//!   [`CodecError::Encode`]. [`super::build`] encodes large RIC Indication and
//!   RIC Control messages itself.
//! - Unknown IE ids and CHOICE extension additions fail to decode
//!   ([`CodecError::Decode`]).
//! - The generated decoder is lenient where it should not be: it skips
//!   SEQUENCE extension additions, and it decodes an open type's value without
//!   holding it to the open type's length, so junk inside an IE value shifts
//!   everything after it and can still "decode" (found by fuzzing). [`decode`]
//!   therefore re-encodes what it decoded and accepts it only if the bytes are
//!   identical ([`CodecError::NotCanonical`] otherwise); [`decode_lenient`]
//!   skips that check.
//! - Any panic inside the generated code is caught, counted
//!   ([`panics_caught`]) and reported as [`CodecError::Panicked`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use asn1_codecs::aper::AperCodec;
use asn1_codecs::{PerCodecData, PerCodecError};

pub use super::generated::E2AP_PDU;

/// Why the full codec could not decode or encode a PDU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The buffer is too short to hold even the PDU header.
    #[error("PDU of {0} bytes is too short")]
    Truncated(usize),
    /// The PDU carries a fragmented APER length (a value of 16 KiB or more),
    /// which the generated decoder cannot read.
    #[error("PDU uses fragmented APER lengths (>= 16 KiB), not supported by the full decoder")]
    Fragmented,
    /// The outer length says the PDU ends before the buffer does.
    #[error("{0} trailing bytes after the PDU")]
    Trailing(usize),
    /// The generated APER decoder rejected the bytes (unknown IE id, CHOICE
    /// extension addition, out-of-range value, truncated field...).
    #[error("APER decode failed: {0}")]
    Decode(#[source] PerCodecError),
    /// The generated APER encoder rejected the value (e.g. a length >= 16 KiB,
    /// a value outside its constraint).
    #[error("APER encode failed: {0}")]
    Encode(#[source] PerCodecError),
    /// The generated decoder accepted the bytes but they do not re-encode to
    /// themselves: an extension addition it skipped, or bytes inside an open
    /// type it did not read. The decoded value would not be what was sent.
    #[error(
        "PDU does not re-encode to the same bytes (extension addition or malformed open type)"
    )]
    NotCanonical,
    /// The generated code panicked on this input (counted in [`panics_caught`]).
    #[error("the generated APER codec panicked on this input")]
    Panicked,
    /// The decoded value could not be turned into JSON.
    #[error("JSON view failed: {0}")]
    Json(#[from] serde_json::Error),
}

impl CodecError {
    /// Short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Truncated(_) => "truncated",
            CodecError::Fragmented => "fragmented",
            CodecError::Trailing(_) => "trailing_bytes",
            CodecError::Decode(_) => "decode",
            CodecError::Encode(_) => "encode",
            CodecError::NotCanonical => "not_canonical",
            CodecError::Panicked => "panicked",
            CodecError::Json(_) => "json",
        }
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// How many panics of the generated codec were caught since start.
pub fn panics_caught() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Total size of the PDU as announced by its outer open-type length.
///
/// `E2AP-PDU` is a 2-bit CHOICE (+ extension bit) of a SEQUENCE
/// `{ procedureCode (1 octet), criticality (2 bits), value (open type) }`, so
/// the open-type length determinant always starts at octet 3.
fn framed_len(bytes: &[u8]) -> Result<usize, CodecError> {
    let b3 = *bytes.get(3).ok_or(CodecError::Truncated(bytes.len()))?;
    if b3 & 0x80 == 0 {
        Ok(4 + usize::from(b3))
    } else if b3 & 0x40 == 0 {
        let b4 = *bytes.get(4).ok_or(CodecError::Truncated(bytes.len()))?;
        Ok(5 + (usize::from(b3 & 0x3f) << 8 | usize::from(b4)))
    } else {
        Err(CodecError::Fragmented)
    }
}

/// Decode one E2AP PDU (APER) into the generated types, strictly: the buffer
/// must hold exactly one PDU and the decoded value must re-encode to the same
/// bytes (see the module doc for why).
pub fn decode(bytes: &[u8]) -> Result<E2AP_PDU, CodecError> {
    let pdu = decode_lenient(bytes)?;
    match encode(&pdu) {
        Ok(again) if again == bytes => Ok(pdu),
        _ => Err(CodecError::NotCanonical),
    }
}

/// Decode without the re-encode check: extension additions are dropped and
/// junk inside open types may be misread. The outer framing is still checked.
pub fn decode_lenient(bytes: &[u8]) -> Result<E2AP_PDU, CodecError> {
    let total = framed_len(bytes)?;
    if total > bytes.len() {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if total < bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - total));
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut data = PerCodecData::from_slice_aper(bytes);
        E2AP_PDU::aper_decode(&mut data)
    }));
    match result {
        Ok(Ok(pdu)) => Ok(pdu),
        Ok(Err(e)) => Err(CodecError::Decode(e)),
        Err(_) => {
            PANICS.fetch_add(1, Ordering::Relaxed);
            Err(CodecError::Panicked)
        }
    }
}

/// Encode a PDU (APER) with the generated encoder.
pub fn encode(pdu: &E2AP_PDU) -> Result<Vec<u8>, CodecError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut data = PerCodecData::new_aper();
        pdu.aper_encode(&mut data).map(|()| data.into_bytes())
    }));
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(CodecError::Encode(e)),
        Err(_) => {
            PANICS.fetch_add(1, Ordering::Relaxed);
            Err(CodecError::Panicked)
        }
    }
}

/// Full-decode JSON view of a PDU (the `full` key of `e2lb e2ap decode`).
///
/// The shape is the serde form of the generated types: enums as
/// `{"Variant": value}`, newtypes as their inner value, BIT STRINGs as bitvec's
/// serde form, OCTET STRINGs as arrays of numbers.
pub fn to_json(bytes: &[u8]) -> Result<serde_json::Value, CodecError> {
    let pdu = decode(bytes)?;
    Ok(serde_json::to_value(&pdu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A RIC Subscription Delete Request captured from FlexRIC (E2AP v3).
    const DELETE_REQ: &str = "00090012000002001d00050003fd0000000500020002";

    #[test]
    fn round_trip_small_pdu() {
        let bytes = hex::decode(DELETE_REQ).expect("hex");
        let pdu = decode(&bytes).expect("decode");
        assert!(matches!(pdu, E2AP_PDU::InitiatingMessage(_)));
        assert_eq!(encode(&pdu).expect("encode"), bytes);
        let json = to_json(&bytes).expect("json");
        assert!(json.get("InitiatingMessage").is_some(), "{json}");
    }

    #[test]
    fn framing_is_strict() {
        let mut bytes = hex::decode(DELETE_REQ).expect("hex");
        assert!(matches!(decode(&bytes[..3]), Err(CodecError::Truncated(3))));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(CodecError::Truncated(_))
        ));
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn fragmented_lengths_are_refused_not_misread() {
        let bytes = [0x00, 0x05, 0x40, 0xc1, 0x00, 0x00];
        assert!(matches!(decode(&bytes), Err(CodecError::Fragmented)));
    }

    #[test]
    fn junk_inside_an_open_type_is_not_misread() {
        // Fuzzer find: the RICqueryHeader IE's open type holds 25 octets but its
        // OCTET STRING only 2; the generated decoder reads the rest as more IEs.
        let bytes = hex::decode(
            "0010003c000004001d00050045ef9f5c000500020b6b005f0019020b6b005f73590e8a\
             6656c8bbae927e1ca5ea6061318e00fe0060000908b8e1bdd4ba8232fc",
        )
        .expect("hex");
        assert!(decode_lenient(&bytes).is_ok());
        assert!(matches!(decode(&bytes), Err(CodecError::NotCanonical)));
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u32;
        for len in 0..200usize {
            let mut buf = vec![0u8; len];
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state.to_le_bytes()[0];
            }
            if len >= 4 {
                // make the outer frame consistent so the generated decoder runs
                buf[0] &= 0x5f;
                buf[3] = u8::try_from(len - 4).unwrap_or(0x7f) & 0x7f;
            }
            let _ = decode(&buf);
        }
        assert_eq!(panics_caught(), 0);
    }
}
