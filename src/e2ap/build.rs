//! Typed builders for the E2AP messages the proxy and the simulators send.
//!
//! Each message is described by a small struct of plain values (ints, byte
//! slices, the enums below) and built through the generated types, encoded with
//! the generated APER encoder, into [`Bytes`].
//!
//! The generated encoder cannot write APER lengths of 16 KiB or more. RIC
//! Indication and RIC Control Request messages that large are encoded with an
//! empty placeholder first; the placeholder IE and the enclosing open-type
//! lengths are then rewritten with X.691 §11.9.3.8 fragmented lengths
//! ([`splice_large_octets`]). The result is checked against pycrate in
//! `tests/oracle.rs`.

use bitvec::order::Msb0;
use bitvec::vec::BitVec;
use bytes::Bytes;

use super::codec::{self, CodecError};
use super::generated as g;
pub use super::peek::RicRequestId;

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A field is outside the range its ASN.1 type allows.
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// A list has fewer or more items than its ASN.1 type allows.
    #[error("{field} has {len} items, allowed {min}..={max}")]
    ListSize {
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    /// A field that must be small enough for the generated encoder is not.
    #[error("{field} of {len} bytes is too large")]
    TooLarge { field: &'static str, len: usize },
    /// The generated encoder failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// `Cause ::= CHOICE { ricRequest, ricService, e2Node, transport, protocol, misc }`;
/// the number is the ENUMERATED index within that group. Only root values can
/// be built: the generated encoder does not encode ENUMERATED extension
/// additions (e.g. `ricRequest: ric-subscription-end-time-expired`, 14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    RicRequest(u8),
    RicService(u8),
    E2Node(u8),
    Transport(u8),
    Protocol(u8),
    Misc(u8),
}

impl Cause {
    /// `misc: unspecified`.
    pub const UNSPECIFIED: Cause = Cause::Misc(g::CauseMisc::UNSPECIFIED);

    pub(crate) fn to_gen(self) -> Result<g::Cause, BuildError> {
        // (root count, extension count) of each ENUMERATED in E2AP-IEs.
        let check = |field, v: u8, max: u8| {
            if v > max {
                Err(BuildError::OutOfRange {
                    field,
                    value: v.into(),
                    min: 0,
                    max: max.into(),
                })
            } else {
                Ok(v)
            }
        };
        Ok(match self {
            Cause::RicRequest(v) => g::Cause::RicRequest(g::CauseRICrequest(check(
                "cause.ricRequest",
                v,
                g::CauseRICrequest::UNSPECIFIED,
            )?)),
            Cause::RicService(v) => g::Cause::RicService(g::CauseRICservice(check(
                "cause.ricService",
                v,
                g::CauseRICservice::RIC_RESOURCE_LIMIT,
            )?)),
            Cause::E2Node(v) => g::Cause::E2Node(g::CauseE2node(check(
                "cause.e2Node",
                v,
                g::CauseE2node::E2NODE_COMPONENT_UNKNOWN,
            )?)),
            Cause::Transport(v) => g::Cause::Transport(g::CauseTransport(check(
                "cause.transport",
                v,
                g::CauseTransport::TRANSPORT_RESOURCE_UNAVAILABLE,
            )?)),
            Cause::Protocol(v) => g::Cause::Protocol(g::CauseProtocol(check(
                "cause.protocol",
                v,
                g::CauseProtocol::UNSPECIFIED,
            )?)),
            Cause::Misc(v) => g::Cause::Misc(g::CauseMisc(check(
                "cause.misc",
                v,
                g::CauseMisc::UNSPECIFIED,
            )?)),
        })
    }
}

/// `GlobalE2node-ID` of type gNB: PLMN identity and a gNB-ID of 22..=32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GnbId {
    pub plmn: [u8; 3],
    /// The gNB-ID value; only its low `gnb_id_bits` bits are sent.
    pub gnb_id: u32,
    /// Length of the gNB-ID BIT STRING, 22..=32.
    pub gnb_id_bits: u8,
}

/// `GlobalRIC-ID`: PLMN identity and a 20-bit near-RT RIC id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GlobalRicId {
    pub plmn: [u8; 3],
    /// Only the low 20 bits are allowed.
    pub ric_id: u32,
}

/// One RAN function offered in an E2 Setup Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RanFunction<'a> {
    pub id: u16,
    pub definition: &'a [u8],
    pub revision: u16,
    /// The E2SM's OID, a PrintableString of 1..=1000 characters.
    pub oid: &'a str,
}

/// Which E2 node component a configuration addition is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentId<'a> {
    /// NG interface, identified by its AMF name.
    Ng { amf_name: &'a str },
    /// E1 interface, identified by the gNB-CU-UP id.
    E1 { gnb_cu_up_id: u64 },
    /// F1 interface, identified by the gNB-DU id.
    F1 { gnb_du_id: u64 },
}

/// One `E2nodeComponentConfigAddition-Item`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeComponent<'a> {
    pub id: ComponentId<'a>,
    pub request_part: &'a [u8],
    pub response_part: &'a [u8],
}

/// `RICactionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionType {
    Report,
    Insert,
    Policy,
}

/// One action of a RIC Subscription Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action<'a> {
    pub id: u8,
    pub kind: ActionType,
    pub definition: Option<&'a [u8]>,
}

/// `RICindicationType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndicationType {
    Report,
    Insert,
}

/// E2 Setup Request (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct E2SetupRequest<'a> {
    pub transaction_id: u8,
    pub node: GnbId,
    pub ran_functions: &'a [RanFunction<'a>],
    /// At least one component is required by E2AP v03.01.
    pub components: &'a [NodeComponent<'a>],
}

/// E2 Setup Response (RIC → node).
#[derive(Clone, Copy, Debug)]
pub struct E2SetupResponse<'a> {
    pub transaction_id: u8,
    pub ric: GlobalRicId,
    /// Accepted RAN functions as (id, revision); the IE is left out when empty.
    pub accepted: &'a [(u16, u16)],
    /// Rejected RAN functions; the IE is left out when empty.
    pub rejected: &'a [(u16, Cause)],
    /// Components acknowledged with outcome `success` (at least one).
    pub components: &'a [ComponentId<'a>],
}

/// E2 Setup Failure (RIC → node).
#[derive(Clone, Copy, Debug)]
pub struct E2SetupFailure {
    pub transaction_id: u8,
    pub cause: Cause,
    /// `TimeToWait` ENUMERATED index (0 = v1s, 1 = v2s, 2 = v5s, 3 = v10s,
    /// 4 = v20s, 5 = v60s); the IE is left out when `None`.
    pub time_to_wait: Option<u8>,
}

/// RIC Subscription Request (RIC → node).
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionRequest<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub event_trigger: &'a [u8],
    pub actions: &'a [Action<'a>],
}

/// RIC Subscription Response (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionResponse<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub admitted: &'a [u8],
    /// Not admitted actions; the IE is left out when empty.
    pub not_admitted: &'a [(u8, Cause)],
}

/// RIC Subscription Failure (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionFailure {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub cause: Cause,
}

/// RIC Subscription Delete Request (RIC → node) and Response (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionDelete {
    pub request: RicRequestId,
    pub ran_function: u16,
}

/// RIC Subscription Delete Failure (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionDeleteFailure {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub cause: Cause,
}

/// RIC Indication (node → RIC). The message may be of any size.
#[derive(Clone, Copy, Debug)]
pub struct Indication<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub action_id: u8,
    pub sn: Option<u16>,
    pub kind: IndicationType,
    pub header: &'a [u8],
    pub message: &'a [u8],
}

/// RIC Control Request (RIC → node). The message may be of any size.
#[derive(Clone, Copy, Debug)]
pub struct ControlRequest<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub header: &'a [u8],
    pub message: &'a [u8],
    /// `RICcontrolAckRequest`: `Some(true)` = ack, `Some(false)` = noAck.
    pub ack_request: Option<bool>,
}

/// RIC Control Acknowledge (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct ControlAcknowledge<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub outcome: Option<&'a [u8]>,
}

/// RIC Control Failure (node → RIC).
#[derive(Clone, Copy, Debug)]
pub struct ControlFailure<'a> {
    pub request: RicRequestId,
    pub ran_function: u16,
    pub cause: Cause,
    pub outcome: Option<&'a [u8]>,
}

/// Error Indication (either direction); every IE is optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorIndication {
    pub transaction_id: Option<u8>,
    pub request: Option<RicRequestId>,
    pub ran_function: Option<u16>,
    pub cause: Option<Cause>,
}

/// Reset Request (either direction).
#[derive(Clone, Copy, Debug)]
pub struct ResetRequest {
    pub transaction_id: u8,
    pub cause: Cause,
}

/// Reset Response (either direction).
#[derive(Clone, Copy, Debug)]
pub struct ResetResponse {
    pub transaction_id: u8,
}

// ---------------------------------------------------------------- helpers

/// Procedure codes, from the ASN.1 Constants module (via the generated code).
mod proc_code {
    use super::g;
    pub const E2_SETUP: u8 = g::ID_E2SETUP;
    pub const ERROR_INDICATION: u8 = g::ID_ERROR_INDICATION;
    pub const RESET: u8 = g::ID_RESET;
    pub const RIC_CONTROL: u8 = g::ID_RI_CCONTROL;
    pub const RIC_INDICATION: u8 = g::ID_RI_CINDICATION;
    pub const RIC_SUBSCRIPTION: u8 = g::ID_RI_CSUBSCRIPTION;
    pub const RIC_SUBSCRIPTION_DELETE: u8 = g::ID_RI_CSUBSCRIPTION_DELETE;
}

/// Protocol IE ids, from the ASN.1 Constants module (via the generated code).
mod id {
    use super::g;
    pub const CAUSE: u16 = g::ID_CAUSE;
    pub const GLOBAL_E2NODE_ID: u16 = g::ID_GLOBAL_E2NODE_ID;
    pub const GLOBAL_RIC_ID: u16 = g::ID_GLOBAL_RIC_ID;
    pub const RAN_FUNCTION_ID: u16 = g::ID_RA_NFUNCTION_ID;
    pub const RAN_FUNCTION_ID_ITEM: u16 = g::ID_RA_NFUNCTION_ID_ITEM;
    pub const RAN_FUNCTION_IE_CAUSE_ITEM: u16 = g::ID_RA_NFUNCTION_I_ECAUSE_ITEM;
    pub const RAN_FUNCTION_ITEM: u16 = g::ID_RA_NFUNCTION_ITEM;
    pub const RAN_FUNCTIONS_ACCEPTED: u16 = g::ID_RA_NFUNCTIONS_ACCEPTED;
    pub const RAN_FUNCTIONS_ADDED: u16 = g::ID_RA_NFUNCTIONS_ADDED;
    pub const RAN_FUNCTIONS_REJECTED: u16 = g::ID_RA_NFUNCTIONS_REJECTED;
    pub const RIC_ACTION_ADMITTED_ITEM: u16 = g::ID_RI_CACTION_ADMITTED_ITEM;
    pub const RIC_ACTION_ID: u16 = g::ID_RI_CACTION_ID;
    pub const RIC_ACTION_NOT_ADMITTED_ITEM: u16 = g::ID_RI_CACTION_NOT_ADMITTED_ITEM;
    pub const RIC_ACTIONS_ADMITTED: u16 = g::ID_RI_CACTIONS_ADMITTED;
    pub const RIC_ACTIONS_NOT_ADMITTED: u16 = g::ID_RI_CACTIONS_NOT_ADMITTED;
    pub const RIC_ACTION_TO_BE_SETUP_ITEM: u16 = g::ID_RI_CACTION_TO_BE_SETUP_ITEM;
    pub const RIC_CONTROL_ACK_REQUEST: u16 = g::ID_RI_CCONTROL_ACK_REQUEST;
    pub const RIC_CONTROL_HEADER: u16 = g::ID_RI_CCONTROL_HEADER;
    pub const RIC_CONTROL_MESSAGE: u16 = g::ID_RI_CCONTROL_MESSAGE;
    pub const RIC_CONTROL_OUTCOME: u16 = g::ID_RI_CCONTROL_OUTCOME;
    pub const RIC_INDICATION_HEADER: u16 = g::ID_RI_CINDICATION_HEADER;
    pub const RIC_INDICATION_MESSAGE: u16 = g::ID_RI_CINDICATION_MESSAGE;
    pub const RIC_INDICATION_SN: u16 = g::ID_RI_CINDICATION_SN;
    pub const RIC_INDICATION_TYPE: u16 = g::ID_RI_CINDICATION_TYPE;
    pub const RIC_REQUEST_ID: u16 = g::ID_RI_CREQUEST_ID;
    pub const RIC_SUBSCRIPTION_DETAILS: u16 = g::ID_RI_CSUBSCRIPTION_DETAILS;
    pub const TRANSACTION_ID: u16 = g::ID_TRANSACTION_ID;
    pub const TIME_TO_WAIT: u16 = g::ID_TIME_TO_WAIT;
    pub const E2NODE_COMPONENT_CONFIG_ADDITION: u16 = g::ID_E2NODE_COMPONENT_CONFIG_ADDITION;
    pub const E2NODE_COMPONENT_CONFIG_ADDITION_ITEM: u16 =
        g::ID_E2NODE_COMPONENT_CONFIG_ADDITION_ITEM;
    pub const E2NODE_COMPONENT_CONFIG_ADDITION_ACK: u16 =
        g::ID_E2NODE_COMPONENT_CONFIG_ADDITION_ACK;
    pub const E2NODE_COMPONENT_CONFIG_ADDITION_ACK_ITEM: u16 =
        g::ID_E2NODE_COMPONENT_CONFIG_ADDITION_ACK_ITEM;
}

const REJECT: u8 = g::Criticality::REJECT;
const IGNORE: u8 = g::Criticality::IGNORE;

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(BuildError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn list_size(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), BuildError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(BuildError::ListSize {
            field,
            len,
            min,
            max,
        })
    }
}

/// The low `bits` bits of `value`, most significant first.
fn bit_string(value: u64, bits: u8) -> BitVec<u8, Msb0> {
    (0..bits).rev().map(|i| (value >> i) & 1 == 1).collect()
}

fn plmn(p: [u8; 3]) -> g::PLMN_Identity {
    g::PLMN_Identity(p.to_vec())
}

fn ran_function_id(field: &'static str, id: u16) -> Result<g::RANfunctionID, BuildError> {
    range(field, id.into(), 0, 4095)?;
    Ok(g::RANfunctionID(id))
}

fn ric_request_id(r: RicRequestId) -> g::RICrequestID {
    g::RICrequestID {
        ric_requestor_id: g::RICrequestIDRicRequestorID(r.requestor),
        ric_instance_id: g::RICrequestIDRicInstanceID(r.instance),
    }
}

fn transaction_id(t: u8) -> g::TransactionID {
    g::TransactionID(t)
}

/// A PrintableString of 3..=`max` characters. The ASN.1 allows 1, but
/// asn1-codecs 0.7.2 does not octet-align variable-size strings of 16 bits or
/// less (X.691 §30.5.7), so 1- and 2-character values would be mis-encoded.
fn printable(field: &'static str, s: &str, max: usize) -> Result<String, BuildError> {
    list_size(field, s.len(), 3, max)?;
    // PrintableString alphabet (X.680 §41.4)
    if let Some(c) = s
        .bytes()
        .find(|c| !(c.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(c)))
    {
        return Err(BuildError::OutOfRange {
            field,
            value: c.into(),
            min: 0x20,
            max: 0x7a,
        });
    }
    Ok(s.to_owned())
}

fn component_id(
    c: &ComponentId<'_>,
) -> Result<(g::E2nodeComponentInterfaceType, g::E2nodeComponentID), BuildError> {
    const MAX_ID: u64 = 68_719_476_735;
    Ok(match *c {
        ComponentId::Ng { amf_name } => (
            g::E2nodeComponentInterfaceType(g::E2nodeComponentInterfaceType::NG),
            g::E2nodeComponentID::E2nodeComponentInterfaceTypeNG(g::E2nodeComponentInterfaceNG {
                amf_name: g::AMFName(printable("component.amf_name", amf_name, 150)?),
            }),
        ),
        ComponentId::E1 { gnb_cu_up_id } => {
            range("component.gnb_cu_up_id", gnb_cu_up_id, 0, MAX_ID)?;
            (
                g::E2nodeComponentInterfaceType(g::E2nodeComponentInterfaceType::E1),
                g::E2nodeComponentID::E2nodeComponentInterfaceTypeE1(
                    g::E2nodeComponentInterfaceE1 {
                        gnb_cu_up_id: g::GNB_CU_UP_ID(gnb_cu_up_id),
                    },
                ),
            )
        }
        ComponentId::F1 { gnb_du_id } => {
            range("component.gnb_du_id", gnb_du_id, 0, MAX_ID)?;
            (
                g::E2nodeComponentInterfaceType(g::E2nodeComponentInterfaceType::F1),
                g::E2nodeComponentID::E2nodeComponentInterfaceTypeF1(
                    g::E2nodeComponentInterfaceF1 {
                        gnb_du_id: g::GNB_DU_ID(gnb_du_id),
                    },
                ),
            )
        }
    })
}

fn initiating(code: u8, crit: u8, value: g::InitiatingMessageValue) -> g::E2AP_PDU {
    g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
        procedure_code: g::ProcedureCode(code),
        criticality: g::Criticality(crit),
        value,
    })
}

fn successful(code: u8, crit: u8, value: g::SuccessfulOutcomeValue) -> g::E2AP_PDU {
    g::E2AP_PDU::SuccessfulOutcome(g::SuccessfulOutcome {
        procedure_code: g::ProcedureCode(code),
        criticality: g::Criticality(crit),
        value,
    })
}

fn unsuccessful(code: u8, crit: u8, value: g::UnsuccessfulOutcomeValue) -> g::E2AP_PDU {
    g::E2AP_PDU::UnsuccessfulOutcome(g::UnsuccessfulOutcome {
        procedure_code: g::ProcedureCode(code),
        criticality: g::Criticality(crit),
        value,
    })
}

/// One `ProtocolIE-Field` of the generated entry type `$entry`.
macro_rules! field {
    ($entry:ident, $value:ident :: $variant:ident, $id:expr, $crit:expr, $v:expr) => {
        g::$entry {
            id: g::ProtocolIE_ID($id),
            criticality: g::Criticality($crit),
            value: g::$value::$variant($v),
        }
    };
}

fn to_bytes(pdu: &g::E2AP_PDU) -> Result<Bytes, BuildError> {
    Ok(Bytes::from(codec::encode(pdu)?))
}

// ---------------------------------------------------------------- E2 Setup

impl E2SetupRequest<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let n = self.node;
        range("node.gnb_id_bits", n.gnb_id_bits.into(), 22, 32)?;
        if n.gnb_id_bits < 32 {
            range(
                "node.gnb_id",
                n.gnb_id.into(),
                0,
                (1u64 << n.gnb_id_bits) - 1,
            )?;
        }
        list_size("ran_functions", self.ran_functions.len(), 1, 256)?;
        list_size("components", self.components.len(), 1, 1024)?;
        let node = g::GlobalE2node_ID::GNB(g::GlobalE2node_gNB_ID {
            global_g_nb_id: g::GlobalgNB_ID {
                plmn_id: plmn(n.plmn),
                gnb_id: g::GNB_ID_Choice::Gnb_ID(g::GNB_ID_Choice_gnb_ID(bit_string(
                    n.gnb_id.into(),
                    n.gnb_id_bits,
                ))),
            },
            global_en_g_nb_id: None,
            gnb_cu_up_id: None,
            gnb_du_id: None,
        });
        let mut functions = Vec::with_capacity(self.ran_functions.len());
        for f in self.ran_functions {
            range("ran_function.revision", f.revision.into(), 0, 4095)?;
            functions.push(field!(
                RANfunctions_List_Entry,
                RANfunctions_List_EntryValue::Id_RANfunction_Item,
                id::RAN_FUNCTION_ITEM,
                IGNORE,
                g::RANfunction_Item {
                    ran_function_id: ran_function_id("ran_function.id", f.id)?,
                    ran_function_definition: g::RANfunctionDefinition(f.definition.to_vec()),
                    ran_function_revision: g::RANfunctionRevision(f.revision),
                    ran_function_oid: g::RANfunctionOID(printable(
                        "ran_function.oid",
                        f.oid,
                        1000
                    )?),
                }
            ));
        }
        let mut components = Vec::with_capacity(self.components.len());
        for c in self.components {
            let (kind, id) = component_id(&c.id)?;
            components.push(field!(
                E2nodeComponentConfigAddition_List_Entry,
                E2nodeComponentConfigAddition_List_EntryValue::Id_E2nodeComponentConfigAddition_Item,
                id::E2NODE_COMPONENT_CONFIG_ADDITION_ITEM,
                REJECT,
                g::E2nodeComponentConfigAddition_Item {
                    e2node_component_interface_type: kind,
                    e2node_component_id: id,
                    e2node_component_configuration: g::E2nodeComponentConfiguration {
                        e2node_component_request_part:
                            g::E2nodeComponentConfigurationE2nodeComponentRequestPart(c.request_part.to_vec()),
                        e2node_component_response_part:
                            g::E2nodeComponentConfigurationE2nodeComponentResponsePart(c.response_part.to_vec()),
                    },
                }
            ));
        }
        let ies = vec![
            field!(
                E2setupRequestProtocolIEs_Entry,
                E2setupRequestProtocolIEs_EntryValue::Id_TransactionID,
                id::TRANSACTION_ID,
                REJECT,
                transaction_id(self.transaction_id)
            ),
            field!(
                E2setupRequestProtocolIEs_Entry,
                E2setupRequestProtocolIEs_EntryValue::Id_GlobalE2node_ID,
                id::GLOBAL_E2NODE_ID,
                REJECT,
                node
            ),
            field!(
                E2setupRequestProtocolIEs_Entry,
                E2setupRequestProtocolIEs_EntryValue::Id_RANfunctionsAdded,
                id::RAN_FUNCTIONS_ADDED,
                REJECT,
                g::RANfunctions_List(functions)
            ),
            field!(
                E2setupRequestProtocolIEs_Entry,
                E2setupRequestProtocolIEs_EntryValue::Id_E2nodeComponentConfigAddition,
                id::E2NODE_COMPONENT_CONFIG_ADDITION,
                REJECT,
                g::E2nodeComponentConfigAddition_List(components)
            ),
        ];
        Ok(initiating(
            proc_code::E2_SETUP,
            REJECT,
            g::InitiatingMessageValue::Id_E2setup(g::E2setupRequest {
                protocol_i_es: g::E2setupRequestProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl E2SetupResponse<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        range("ric.ric_id", self.ric.ric_id.into(), 0, (1 << 20) - 1)?;
        list_size("components", self.components.len(), 1, 1024)?;
        let mut ies = vec![
            field!(
                E2setupResponseProtocolIEs_Entry,
                E2setupResponseProtocolIEs_EntryValue::Id_TransactionID,
                id::TRANSACTION_ID,
                REJECT,
                transaction_id(self.transaction_id)
            ),
            field!(
                E2setupResponseProtocolIEs_Entry,
                E2setupResponseProtocolIEs_EntryValue::Id_GlobalRIC_ID,
                id::GLOBAL_RIC_ID,
                REJECT,
                g::GlobalRIC_ID {
                    plmn_identity: plmn(self.ric.plmn),
                    ric_id: g::GlobalRIC_IDRic_ID(bit_string(self.ric.ric_id.into(), 20)),
                }
            ),
        ];
        if !self.accepted.is_empty() {
            list_size("accepted", self.accepted.len(), 1, 256)?;
            let mut items = Vec::with_capacity(self.accepted.len());
            for &(fid, rev) in self.accepted {
                range("accepted.revision", rev.into(), 0, 4095)?;
                items.push(field!(
                    RANfunctionsID_List_Entry,
                    RANfunctionsID_List_EntryValue::Id_RANfunctionID_Item,
                    id::RAN_FUNCTION_ID_ITEM,
                    IGNORE,
                    g::RANfunctionID_Item {
                        ran_function_id: ran_function_id("accepted.id", fid)?,
                        ran_function_revision: g::RANfunctionRevision(rev),
                    }
                ));
            }
            ies.push(field!(
                E2setupResponseProtocolIEs_Entry,
                E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsAccepted,
                id::RAN_FUNCTIONS_ACCEPTED,
                REJECT,
                g::RANfunctionsID_List(items)
            ));
        }
        if !self.rejected.is_empty() {
            list_size("rejected", self.rejected.len(), 1, 256)?;
            let mut items = Vec::with_capacity(self.rejected.len());
            for &(fid, cause) in self.rejected {
                items.push(field!(
                    RANfunctionsIDcause_List_Entry,
                    RANfunctionsIDcause_List_EntryValue::Id_RANfunctionIEcause_Item,
                    id::RAN_FUNCTION_IE_CAUSE_ITEM,
                    IGNORE,
                    g::RANfunctionIDcause_Item {
                        ran_function_id: ran_function_id("rejected.id", fid)?,
                        cause: cause.to_gen()?,
                    }
                ));
            }
            ies.push(field!(
                E2setupResponseProtocolIEs_Entry,
                E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsRejected,
                id::RAN_FUNCTIONS_REJECTED,
                REJECT,
                g::RANfunctionsIDcause_List(items)
            ));
        }
        let mut acks = Vec::with_capacity(self.components.len());
        for c in self.components {
            let (kind, cid) = component_id(c)?;
            acks.push(field!(
                E2nodeComponentConfigAdditionAck_List_Entry,
                E2nodeComponentConfigAdditionAck_List_EntryValue::Id_E2nodeComponentConfigAdditionAck_Item,
                id::E2NODE_COMPONENT_CONFIG_ADDITION_ACK_ITEM,
                REJECT,
                g::E2nodeComponentConfigAdditionAck_Item {
                    e2node_component_interface_type: kind,
                    e2node_component_id: cid,
                    e2node_component_configuration_ack: g::E2nodeComponentConfigurationAck {
                        update_outcome: g::E2nodeComponentConfigurationAckUpdateOutcome(
                            g::E2nodeComponentConfigurationAckUpdateOutcome::SUCCESS,
                        ),
                        failure_cause: None,
                    },
                }
            ));
        }
        ies.push(field!(
            E2setupResponseProtocolIEs_Entry,
            E2setupResponseProtocolIEs_EntryValue::Id_E2nodeComponentConfigAdditionAck,
            id::E2NODE_COMPONENT_CONFIG_ADDITION_ACK,
            REJECT,
            g::E2nodeComponentConfigAdditionAck_List(acks)
        ));
        Ok(successful(
            proc_code::E2_SETUP,
            REJECT,
            g::SuccessfulOutcomeValue::Id_E2setup(g::E2setupResponse {
                protocol_i_es: g::E2setupResponseProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl E2SetupFailure {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = vec![
            field!(
                E2setupFailureProtocolIEs_Entry,
                E2setupFailureProtocolIEs_EntryValue::Id_TransactionID,
                id::TRANSACTION_ID,
                REJECT,
                transaction_id(self.transaction_id)
            ),
            field!(
                E2setupFailureProtocolIEs_Entry,
                E2setupFailureProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                IGNORE,
                self.cause.to_gen()?
            ),
        ];
        if let Some(t) = self.time_to_wait {
            range("time_to_wait", t.into(), 0, g::TimeToWait::V60S.into())?;
            ies.push(field!(
                E2setupFailureProtocolIEs_Entry,
                E2setupFailureProtocolIEs_EntryValue::Id_TimeToWait,
                id::TIME_TO_WAIT,
                IGNORE,
                g::TimeToWait(t)
            ));
        }
        Ok(unsuccessful(
            proc_code::E2_SETUP,
            REJECT,
            g::UnsuccessfulOutcomeValue::Id_E2setup(g::E2setupFailure {
                protocol_i_es: g::E2setupFailureProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

// ---------------------------------------------------------------- RIC Subscription

impl SubscriptionRequest<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        list_size("actions", self.actions.len(), 1, 16)?;
        let actions = self
            .actions
            .iter()
            .map(|a| {
                field!(
                    RICactions_ToBeSetup_List_Entry,
                    RICactions_ToBeSetup_List_EntryValue::Id_RICaction_ToBeSetup_Item,
                    id::RIC_ACTION_TO_BE_SETUP_ITEM,
                    IGNORE,
                    g::RICaction_ToBeSetup_Item {
                        ric_action_id: g::RICactionID(a.id),
                        ric_action_type: g::RICactionType(match a.kind {
                            ActionType::Report => g::RICactionType::REPORT,
                            ActionType::Insert => g::RICactionType::INSERT,
                            ActionType::Policy => g::RICactionType::POLICY,
                        }),
                        ric_action_definition: a
                            .definition
                            .map(|d| g::RICactionDefinition(d.to_vec())),
                        ric_subsequent_action: None,
                    }
                )
            })
            .collect();
        let ies = vec![
            field!(
                RICsubscriptionRequestProtocolIEs_Entry,
                RICsubscriptionRequestProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionRequestProtocolIEs_Entry,
                RICsubscriptionRequestProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICsubscriptionRequestProtocolIEs_Entry,
                RICsubscriptionRequestProtocolIEs_EntryValue::Id_RICsubscriptionDetails,
                id::RIC_SUBSCRIPTION_DETAILS,
                REJECT,
                g::RICsubscriptionDetails {
                    ric_event_trigger_definition: g::RICeventTriggerDefinition(
                        self.event_trigger.to_vec()
                    ),
                    ric_action_to_be_setup_list: g::RICactions_ToBeSetup_List(actions),
                }
            ),
        ];
        Ok(initiating(
            proc_code::RIC_SUBSCRIPTION,
            REJECT,
            g::InitiatingMessageValue::Id_RICsubscription(g::RICsubscriptionRequest {
                protocol_i_es: g::RICsubscriptionRequestProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl SubscriptionResponse<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        list_size("admitted", self.admitted.len(), 1, 16)?;
        let admitted = self
            .admitted
            .iter()
            .map(|&a| {
                field!(
                    RICaction_Admitted_List_Entry,
                    RICaction_Admitted_List_EntryValue::Id_RICaction_Admitted_Item,
                    id::RIC_ACTION_ADMITTED_ITEM,
                    IGNORE,
                    g::RICaction_Admitted_Item {
                        ric_action_id: g::RICactionID(a)
                    }
                )
            })
            .collect();
        let mut ies = vec![
            field!(
                RICsubscriptionResponseProtocolIEs_Entry,
                RICsubscriptionResponseProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionResponseProtocolIEs_Entry,
                RICsubscriptionResponseProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICsubscriptionResponseProtocolIEs_Entry,
                RICsubscriptionResponseProtocolIEs_EntryValue::Id_RICactions_Admitted,
                id::RIC_ACTIONS_ADMITTED,
                REJECT,
                g::RICaction_Admitted_List(admitted)
            ),
        ];
        if !self.not_admitted.is_empty() {
            list_size("not_admitted", self.not_admitted.len(), 1, 16)?;
            let mut items = Vec::with_capacity(self.not_admitted.len());
            for &(a, cause) in self.not_admitted {
                items.push(field!(
                    RICaction_NotAdmitted_List_Entry,
                    RICaction_NotAdmitted_List_EntryValue::Id_RICaction_NotAdmitted_Item,
                    id::RIC_ACTION_NOT_ADMITTED_ITEM,
                    IGNORE,
                    g::RICaction_NotAdmitted_Item {
                        ric_action_id: g::RICactionID(a),
                        cause: cause.to_gen()?,
                    }
                ));
            }
            ies.push(field!(
                RICsubscriptionResponseProtocolIEs_Entry,
                RICsubscriptionResponseProtocolIEs_EntryValue::Id_RICactions_NotAdmitted,
                id::RIC_ACTIONS_NOT_ADMITTED,
                REJECT,
                g::RICaction_NotAdmitted_List(items)
            ));
        }
        Ok(successful(
            proc_code::RIC_SUBSCRIPTION,
            REJECT,
            g::SuccessfulOutcomeValue::Id_RICsubscription(g::RICsubscriptionResponse {
                protocol_i_es: g::RICsubscriptionResponseProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl SubscriptionFailure {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![
            field!(
                RICsubscriptionFailureProtocolIEs_Entry,
                RICsubscriptionFailureProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionFailureProtocolIEs_Entry,
                RICsubscriptionFailureProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICsubscriptionFailureProtocolIEs_Entry,
                RICsubscriptionFailureProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                REJECT,
                self.cause.to_gen()?
            ),
        ];
        Ok(unsuccessful(
            proc_code::RIC_SUBSCRIPTION,
            REJECT,
            g::UnsuccessfulOutcomeValue::Id_RICsubscription(g::RICsubscriptionFailure {
                protocol_i_es: g::RICsubscriptionFailureProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl SubscriptionDelete {
    /// The RIC Subscription Delete Request as generated types.
    pub fn request_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![
            field!(
                RICsubscriptionDeleteRequestProtocolIEs_Entry,
                RICsubscriptionDeleteRequestProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionDeleteRequestProtocolIEs_Entry,
                RICsubscriptionDeleteRequestProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
        ];
        Ok(initiating(
            proc_code::RIC_SUBSCRIPTION_DELETE,
            REJECT,
            g::InitiatingMessageValue::Id_RICsubscriptionDelete(g::RICsubscriptionDeleteRequest {
                protocol_i_es: g::RICsubscriptionDeleteRequestProtocolIEs(ies),
            }),
        ))
    }

    /// The RIC Subscription Delete Response as generated types.
    pub fn response_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![
            field!(
                RICsubscriptionDeleteResponseProtocolIEs_Entry,
                RICsubscriptionDeleteResponseProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionDeleteResponseProtocolIEs_Entry,
                RICsubscriptionDeleteResponseProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
        ];
        Ok(successful(
            proc_code::RIC_SUBSCRIPTION_DELETE,
            REJECT,
            g::SuccessfulOutcomeValue::Id_RICsubscriptionDelete(g::RICsubscriptionDeleteResponse {
                protocol_i_es: g::RICsubscriptionDeleteResponseProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the RIC Subscription Delete Request.
    pub fn build_request(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.request_pdu()?)
    }

    /// APER bytes of the RIC Subscription Delete Response.
    pub fn build_response(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.response_pdu()?)
    }
}

impl SubscriptionDeleteFailure {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![
            field!(
                RICsubscriptionDeleteFailureProtocolIEs_Entry,
                RICsubscriptionDeleteFailureProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICsubscriptionDeleteFailureProtocolIEs_Entry,
                RICsubscriptionDeleteFailureProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICsubscriptionDeleteFailureProtocolIEs_Entry,
                RICsubscriptionDeleteFailureProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                IGNORE,
                self.cause.to_gen()?
            ),
        ];
        Ok(unsuccessful(
            proc_code::RIC_SUBSCRIPTION_DELETE,
            REJECT,
            g::UnsuccessfulOutcomeValue::Id_RICsubscriptionDelete(
                g::RICsubscriptionDeleteFailure {
                    protocol_i_es: g::RICsubscriptionDeleteFailureProtocolIEs(ies),
                },
            ),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

// ---------------------------------------------------------------- RIC Indication

/// Payloads at or above this size go through [`splice_large_octets`]: with the
/// other IEs the outer open type would otherwise reach 16 KiB.
const SPLICE_AT: usize = 16 * 1024 - 1024;

/// Build a message whose `message_ie` may be of any size: through the generated
/// encoder when small, else encoded with an empty message and the large octets
/// spliced in with fragmented lengths ([`splice_large_octets`]). `pdu_with`
/// builds the PDU around a given message value.
fn build_large(
    header: &[u8],
    message: &[u8],
    header_field: &'static str,
    message_ie: u16,
    pdu_with: impl Fn(&[u8]) -> Result<g::E2AP_PDU, BuildError>,
) -> Result<Bytes, BuildError> {
    if header.len() + message.len() < SPLICE_AT {
        return to_bytes(&pdu_with(message)?);
    }
    if header.len() >= SPLICE_AT {
        return Err(BuildError::TooLarge {
            field: header_field,
            len: header.len(),
        });
    }
    let small = codec::encode(&pdu_with(&[])?)?;
    Ok(Bytes::from(splice_large_octets(
        &small, message_ie, message,
    )?))
}

impl Indication<'_> {
    /// The message as generated types, with `message` as the indication message.
    fn pdu_with(&self, message: &[u8]) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = vec![
            field!(
                RICindicationProtocolIEs_Entry,
                RICindicationProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICindicationProtocolIEs_Entry,
                RICindicationProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICindicationProtocolIEs_Entry,
                RICindicationProtocolIEs_EntryValue::Id_RICactionID,
                id::RIC_ACTION_ID,
                REJECT,
                g::RICactionID(self.action_id)
            ),
        ];
        if let Some(sn) = self.sn {
            ies.push(field!(
                RICindicationProtocolIEs_Entry,
                RICindicationProtocolIEs_EntryValue::Id_RICindicationSN,
                id::RIC_INDICATION_SN,
                REJECT,
                g::RICindicationSN(sn)
            ));
        }
        let kind = match self.kind {
            IndicationType::Report => g::RICindicationType::REPORT,
            IndicationType::Insert => g::RICindicationType::INSERT,
        };
        ies.push(field!(
            RICindicationProtocolIEs_Entry,
            RICindicationProtocolIEs_EntryValue::Id_RICindicationType,
            id::RIC_INDICATION_TYPE,
            REJECT,
            g::RICindicationType(kind)
        ));
        ies.push(field!(
            RICindicationProtocolIEs_Entry,
            RICindicationProtocolIEs_EntryValue::Id_RICindicationHeader,
            id::RIC_INDICATION_HEADER,
            REJECT,
            g::RICindicationHeader(self.header.to_vec())
        ));
        ies.push(field!(
            RICindicationProtocolIEs_Entry,
            RICindicationProtocolIEs_EntryValue::Id_RICindicationMessage,
            id::RIC_INDICATION_MESSAGE,
            REJECT,
            g::RICindicationMessage(message.to_vec())
        ));
        Ok(initiating(
            proc_code::RIC_INDICATION,
            IGNORE,
            g::InitiatingMessageValue::Id_RICindication(g::RICindication {
                protocol_i_es: g::RICindicationProtocolIEs(ies),
            }),
        ))
    }

    /// The message as generated types. The generated encoder cannot encode it
    /// when the message is 16 KiB or more: use [`Indication::build`].
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        self.pdu_with(self.message)
    }

    /// APER bytes of the message, of any size.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        build_large(
            self.header,
            self.message,
            "indication.header",
            id::RIC_INDICATION_MESSAGE,
            |m| self.pdu_with(m),
        )
    }
}

// ---------------------------------------------------------------- RIC Control

impl ControlRequest<'_> {
    fn pdu_with(&self, message: &[u8]) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = vec![
            field!(
                RICcontrolRequestProtocolIEs_Entry,
                RICcontrolRequestProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICcontrolRequestProtocolIEs_Entry,
                RICcontrolRequestProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICcontrolRequestProtocolIEs_Entry,
                RICcontrolRequestProtocolIEs_EntryValue::Id_RICcontrolHeader,
                id::RIC_CONTROL_HEADER,
                REJECT,
                g::RICcontrolHeader(self.header.to_vec())
            ),
            field!(
                RICcontrolRequestProtocolIEs_Entry,
                RICcontrolRequestProtocolIEs_EntryValue::Id_RICcontrolMessage,
                id::RIC_CONTROL_MESSAGE,
                REJECT,
                g::RICcontrolMessage(message.to_vec())
            ),
        ];
        if let Some(ack) = self.ack_request {
            let v = if ack {
                g::RICcontrolAckRequest::ACK
            } else {
                g::RICcontrolAckRequest::NO_ACK
            };
            ies.push(field!(
                RICcontrolRequestProtocolIEs_Entry,
                RICcontrolRequestProtocolIEs_EntryValue::Id_RICcontrolAckRequest,
                id::RIC_CONTROL_ACK_REQUEST,
                REJECT,
                g::RICcontrolAckRequest(v)
            ));
        }
        Ok(initiating(
            proc_code::RIC_CONTROL,
            REJECT,
            g::InitiatingMessageValue::Id_RICcontrol(g::RICcontrolRequest {
                protocol_i_es: g::RICcontrolRequestProtocolIEs(ies),
            }),
        ))
    }

    /// The message as generated types (see [`Indication::to_pdu`] on size).
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        self.pdu_with(self.message)
    }

    /// APER bytes of the message, of any size.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        build_large(
            self.header,
            self.message,
            "control.header",
            id::RIC_CONTROL_MESSAGE,
            |m| self.pdu_with(m),
        )
    }
}

impl ControlAcknowledge<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = vec![
            field!(
                RICcontrolAcknowledgeProtocolIEs_Entry,
                RICcontrolAcknowledgeProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICcontrolAcknowledgeProtocolIEs_Entry,
                RICcontrolAcknowledgeProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
        ];
        if let Some(o) = self.outcome {
            ies.push(field!(
                RICcontrolAcknowledgeProtocolIEs_Entry,
                RICcontrolAcknowledgeProtocolIEs_EntryValue::Id_RICcontrolOutcome,
                id::RIC_CONTROL_OUTCOME,
                REJECT,
                g::RICcontrolOutcome(o.to_vec())
            ));
        }
        Ok(successful(
            proc_code::RIC_CONTROL,
            REJECT,
            g::SuccessfulOutcomeValue::Id_RICcontrol(g::RICcontrolAcknowledge {
                protocol_i_es: g::RICcontrolAcknowledgeProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl ControlFailure<'_> {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = vec![
            field!(
                RICcontrolFailureProtocolIEs_Entry,
                RICcontrolFailureProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(self.request)
            ),
            field!(
                RICcontrolFailureProtocolIEs_Entry,
                RICcontrolFailureProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", self.ran_function)?
            ),
            field!(
                RICcontrolFailureProtocolIEs_Entry,
                RICcontrolFailureProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                IGNORE,
                self.cause.to_gen()?
            ),
        ];
        if let Some(o) = self.outcome {
            ies.push(field!(
                RICcontrolFailureProtocolIEs_Entry,
                RICcontrolFailureProtocolIEs_EntryValue::Id_RICcontrolOutcome,
                id::RIC_CONTROL_OUTCOME,
                REJECT,
                g::RICcontrolOutcome(o.to_vec())
            ));
        }
        Ok(unsuccessful(
            proc_code::RIC_CONTROL,
            REJECT,
            g::UnsuccessfulOutcomeValue::Id_RICcontrol(g::RICcontrolFailure {
                protocol_i_es: g::RICcontrolFailureProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

// ---------------------------------------------------------------- global procedures

impl ErrorIndication {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let mut ies = Vec::with_capacity(4);
        if let Some(t) = self.transaction_id {
            ies.push(field!(
                ErrorIndicationProtocolIEs_Entry,
                ErrorIndicationProtocolIEs_EntryValue::Id_TransactionID,
                id::TRANSACTION_ID,
                REJECT,
                transaction_id(t)
            ));
        }
        if let Some(r) = self.request {
            ies.push(field!(
                ErrorIndicationProtocolIEs_Entry,
                ErrorIndicationProtocolIEs_EntryValue::Id_RICrequestID,
                id::RIC_REQUEST_ID,
                REJECT,
                ric_request_id(r)
            ));
        }
        if let Some(f) = self.ran_function {
            ies.push(field!(
                ErrorIndicationProtocolIEs_Entry,
                ErrorIndicationProtocolIEs_EntryValue::Id_RANfunctionID,
                id::RAN_FUNCTION_ID,
                REJECT,
                ran_function_id("ran_function", f)?
            ));
        }
        if let Some(c) = self.cause {
            ies.push(field!(
                ErrorIndicationProtocolIEs_Entry,
                ErrorIndicationProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                IGNORE,
                c.to_gen()?
            ));
        }
        Ok(initiating(
            proc_code::ERROR_INDICATION,
            IGNORE,
            g::InitiatingMessageValue::Id_ErrorIndication(g::ErrorIndication {
                protocol_i_es: g::ErrorIndicationProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl ResetRequest {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![
            field!(
                ResetRequestProtocolIEs_Entry,
                ResetRequestProtocolIEs_EntryValue::Id_TransactionID,
                id::TRANSACTION_ID,
                REJECT,
                transaction_id(self.transaction_id)
            ),
            field!(
                ResetRequestProtocolIEs_Entry,
                ResetRequestProtocolIEs_EntryValue::Id_Cause,
                id::CAUSE,
                IGNORE,
                self.cause.to_gen()?
            ),
        ];
        Ok(initiating(
            proc_code::RESET,
            REJECT,
            g::InitiatingMessageValue::Id_Reset(g::ResetRequest {
                protocol_i_es: g::ResetRequestProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

impl ResetResponse {
    /// The message as generated types.
    pub fn to_pdu(&self) -> Result<g::E2AP_PDU, BuildError> {
        let ies = vec![field!(
            ResetResponseProtocolIEs_Entry,
            ResetResponseProtocolIEs_EntryValue::Id_TransactionID,
            id::TRANSACTION_ID,
            REJECT,
            transaction_id(self.transaction_id)
        )];
        Ok(successful(
            proc_code::RESET,
            REJECT,
            g::SuccessfulOutcomeValue::Id_Reset(g::ResetResponse {
                protocol_i_es: g::ResetResponseProtocolIEs(ies),
            }),
        ))
    }

    /// APER bytes of the message.
    pub fn build(&self) -> Result<Bytes, BuildError> {
        to_bytes(&self.to_pdu()?)
    }
}

// ---------------------------------------------------------------- large values

/// Append an APER unconstrained length determinant and `content`, splitting
/// into 64K/48K/32K/16K fragments when `content` is 16 KiB or more
/// (X.691 §11.9.3.8; the same for OCTET STRING octets and open-type octets).
pub fn put_aper_octets(out: &mut Vec<u8>, content: &[u8]) {
    const K16: usize = 16 * 1024;
    let mut rest = content;
    loop {
        let n = rest.len();
        if n < 128 {
            out.push(n as u8); // n < 128 fits
            out.extend_from_slice(rest);
            return;
        }
        if n < K16 {
            out.push(0x80 | (n >> 8) as u8); // n < 16384: high bits < 0x40
            out.push((n & 0xff) as u8);
            out.extend_from_slice(rest);
            return;
        }
        let m = (n / K16).min(4);
        out.push(0xc0 | m as u8); // m in 1..=4
        let (chunk, tail) = rest.split_at(m * K16);
        out.extend_from_slice(chunk);
        rest = tail;
        // a final fragment (possibly of length 0) always follows
    }
}

fn take_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let b = *buf.get(at)?;
    if b & 0x80 == 0 {
        Some((usize::from(b), 1))
    } else if b & 0x40 == 0 {
        let b2 = *buf.get(at + 1)?;
        Some((usize::from(b & 0x3f) << 8 | usize::from(b2), 2))
    } else {
        None
    }
}

/// Replace the (empty) OCTET STRING value of IE `ie_id` in `small`, a PDU the
/// generated encoder produced, with `value`, rewriting the IE's and the PDU's
/// open-type lengths (fragmented when 16 KiB or more).
///
/// `small` must be under 16 KiB, its IE container must be the only component
/// of the message (true for every E2AP message), and the IE's value must be an
/// empty OCTET STRING.
pub fn splice_large_octets(small: &[u8], ie_id: u16, value: &[u8]) -> Result<Vec<u8>, BuildError> {
    let bad = || BuildError::TooLarge {
        field: "spliced PDU (not a small E2AP PDU with an empty placeholder)",
        len: small.len(),
    };
    // E2AP-PDU header: choice, procedureCode, criticality; then the open type.
    let (outer_len, outer_hdr) = take_len(small, 3).ok_or_else(bad)?;
    let start = 3 + outer_hdr;
    let content = small.get(start..start + outer_len).ok_or_else(bad)?;
    if start + outer_len != small.len() {
        return Err(bad());
    }
    // SEQUENCE preamble (extension bit, padded) + 16-bit IE count.
    let mut pos = 3;
    let mut splice = None;
    let count = u16::from_be_bytes([
        *content.get(1).ok_or_else(bad)?,
        *content.get(2).ok_or_else(bad)?,
    ]);
    for _ in 0..count {
        let id = u16::from_be_bytes([
            *content.get(pos).ok_or_else(bad)?,
            *content.get(pos + 1).ok_or_else(bad)?,
        ]);
        let len_at = pos + 3;
        let (len, hdr) = take_len(content, len_at).ok_or_else(bad)?;
        let end = len_at + hdr + len;
        if id == ie_id {
            // the placeholder: open type of 1 octet holding an empty OCTET STRING
            if content.get(len_at + hdr..end) != Some(&[0u8][..]) {
                return Err(bad());
            }
            splice = Some((len_at, end));
        }
        pos = end;
    }
    if pos != content.len() {
        return Err(bad());
    }
    let (from, to) = splice.ok_or_else(bad)?;
    let mut octets = Vec::with_capacity(value.len() + 16);
    put_aper_octets(&mut octets, value);
    let mut inner = Vec::with_capacity(content.len() + octets.len() + 16);
    inner.extend_from_slice(&content[..from]);
    put_aper_octets(&mut inner, &octets);
    inner.extend_from_slice(&content[to..]);
    let mut out = Vec::with_capacity(inner.len() + 16);
    out.extend_from_slice(&small[..3]);
    put_aper_octets(&mut out, &inner);
    Ok(out)
}

#[cfg(test)]
mod tests;
