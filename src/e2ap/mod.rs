//! E2AP: the envelope peek (routing, zero-copy, tolerant) and the full APER codec.

pub mod build;
pub mod codec;
pub mod generated;
pub mod ids;
pub mod inspect;
pub mod peek;

pub use ids::Procedure;
pub use peek::{Criticality, Envelope, Ie, PduKind, RicRequestId};

/// Why a PDU could not be read. Each variant's [`DecodeError::kind`] is a bounded metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ended inside the named field.
    #[error("truncated PDU: buffer ends inside {at}")]
    Truncated { at: &'static str },
    /// The E2AP-PDU CHOICE extension bit is set (an alternative added after v03.01).
    #[error("E2AP-PDU uses an extension alternative this build does not know")]
    ExtensionPdu,
    /// The 2-bit CHOICE index is 3, which no E2AP version defines.
    #[error("invalid E2AP-PDU choice index {0}")]
    BadChoice(u8),
    /// Criticality value 3 (only reject, ignore, notify exist).
    #[error("invalid criticality value {0}")]
    BadCriticality(u8),
    /// An APER length determinant that is not a valid form.
    #[error("invalid APER length determinant 0x{0:02x}")]
    BadLength(u8),
    /// Bytes left over after the PDU or after the IE container.
    #[error("{0} trailing bytes after the encoded value")]
    Trailing(usize),
    /// More fragments than the peek's fixed table holds (a message of several MiB).
    #[error(
        "message is split into more than {} APER fragments",
        peek::MAX_SEGMENTS
    )]
    TooFragmented,
    /// A required IE is absent (id given).
    #[error("mandatory IE {0} is missing")]
    MissingIe(u16),
}

impl DecodeError {
    /// Short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::ExtensionPdu => "extension_pdu",
            DecodeError::BadChoice(_) => "bad_choice",
            DecodeError::BadCriticality(_) => "bad_criticality",
            DecodeError::BadLength(_) => "bad_length",
            DecodeError::Trailing(_) => "trailing_bytes",
            DecodeError::TooFragmented => "too_fragmented",
            DecodeError::MissingIe(_) => "missing_ie",
        }
    }
}
