//! The PDUs router mode has to rewrite beyond a byte patch (full codec).
//!
//! - [`setup_responses`]: the one E2 Setup Response a node gets when several
//!   pods answered its E2 Setup. **Merge rule**: the first successful
//!   response is the base (its GlobalRIC-ID, TransactionID and component
//!   acknowledgements are kept); a RAN function is *accepted* when at least
//!   one pod accepted it (with the revision of the first pod that did), and
//!   *rejected* when no pod accepted it and at least one rejected it (with the
//!   cause of the first rejection). A function no pod mentioned stays
//!   unmentioned.
//! - [`split_delete_required`]: a node's RIC Subscription Delete Required
//!   lists subscriptions that may belong to several pods; each owner gets one
//!   copy that lists only its own, with its own RICrequestIDs.

use bytes::Bytes;

use crate::e2ap::codec::{self, CodecError};
use crate::e2ap::generated as g;
use crate::e2ap::RicRequestId;
use crate::session::BackendId;

/// Why a PDU could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no successful E2 Setup Response to merge")]
    Nothing,
    #[error("not the expected message")]
    Unexpected,
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn setup_response(pdu: &g::E2AP_PDU) -> Option<&g::E2setupResponse> {
    match pdu {
        g::E2AP_PDU::SuccessfulOutcome(g::SuccessfulOutcome {
            value: g::SuccessfulOutcomeValue::Id_E2setup(r),
            ..
        }) => Some(r),
        _ => None,
    }
}

/// (accepted items, rejected items) of one decoded response.
fn lists(
    r: &g::E2setupResponse,
) -> (
    Vec<g::RANfunctionsID_List_Entry>,
    Vec<g::RANfunctionsIDcause_List_Entry>,
) {
    let mut acc = Vec::new();
    let mut rej = Vec::new();
    for ie in &r.protocol_i_es.0 {
        match &ie.value {
            g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsAccepted(l) => {
                acc.extend(l.0.iter().cloned())
            }
            g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsRejected(l) => {
                rej.extend(l.0.iter().cloned())
            }
            _ => {}
        }
    }
    (acc, rej)
}

fn accepted_id(e: &g::RANfunctionsID_List_Entry) -> u16 {
    let g::RANfunctionsID_List_EntryValue::Id_RANfunctionID_Item(i) = &e.value;
    i.ran_function_id.0
}

fn rejected_id(e: &g::RANfunctionsIDcause_List_Entry) -> u16 {
    let g::RANfunctionsIDcause_List_EntryValue::Id_RANfunctionIEcause_Item(i) = &e.value;
    i.ran_function_id.0
}

/// The merged response, its accepted and its rejected RAN functions.
#[derive(Debug)]
pub struct MergedSetup {
    pub response: Bytes,
    pub accepted: Vec<u16>,
    pub rejected: Vec<u16>,
}

/// Merge the successful E2 Setup Responses of several pods (module doc).
pub fn setup_responses(responses: &[Bytes]) -> Result<MergedSetup, MergeError> {
    let first = responses.first().ok_or(MergeError::Nothing)?;
    let mut decoded = Vec::with_capacity(responses.len());
    for r in responses {
        decoded.push(codec::decode(r)?);
    }
    let mut accepted: Vec<g::RANfunctionsID_List_Entry> = Vec::new();
    let mut rejected: Vec<g::RANfunctionsIDcause_List_Entry> = Vec::new();
    let mut per_pod = Vec::with_capacity(decoded.len());
    for pdu in &decoded {
        let r = setup_response(pdu).ok_or(MergeError::Unexpected)?;
        let (a, j) = lists(r);
        per_pod.push(a.iter().map(accepted_id).collect::<Vec<_>>());
        for e in a {
            if !accepted.iter().any(|x| accepted_id(x) == accepted_id(&e)) {
                accepted.push(e);
            }
        }
        for e in j {
            if !rejected.iter().any(|x| rejected_id(x) == rejected_id(&e)) {
                rejected.push(e);
            }
        }
    }
    rejected.retain(|e| !accepted.iter().any(|a| accepted_id(a) == rejected_id(e)));
    let accepted_ids: Vec<u16> = accepted.iter().map(accepted_id).collect();
    let rejected_ids: Vec<u16> = rejected.iter().map(rejected_id).collect();
    // Every pod said the same: the first answer goes as it is (no re-encoding).
    if per_pod.iter().all(|a| {
        let mut a = a.clone();
        let mut b = accepted_ids.clone();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    }) {
        let (_, first_rejected) = lists(setup_response(&decoded[0]).ok_or(MergeError::Unexpected)?);
        if first_rejected.len() == rejected.len() {
            return Ok(MergedSetup {
                response: first.clone(),
                accepted: accepted_ids,
                rejected: rejected_ids,
            });
        }
    }
    let mut base = decoded.swap_remove(0);
    let g::E2AP_PDU::SuccessfulOutcome(g::SuccessfulOutcome {
        value: g::SuccessfulOutcomeValue::Id_E2setup(r),
        ..
    }) = &mut base
    else {
        return Err(MergeError::Unexpected);
    };
    let ies = &mut r.protocol_i_es.0;
    ies.retain(|ie| {
        !matches!(
            ie.value,
            g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsAccepted(_)
                | g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsRejected(_)
        )
    });
    // E2AP's IE order: TransactionID, GlobalRIC-ID, accepted, rejected, acks.
    let at = ies
        .iter()
        .position(|ie| {
            matches!(
                ie.value,
                g::E2setupResponseProtocolIEs_EntryValue::Id_E2nodeComponentConfigAdditionAck(_)
            )
        })
        .unwrap_or(ies.len());
    let mut insert = Vec::new();
    if !accepted.is_empty() {
        insert.push(g::E2setupResponseProtocolIEs_Entry {
            id: g::ProtocolIE_ID(crate::e2ap::ids::ie::RAN_FUNCTIONS_ACCEPTED),
            criticality: g::Criticality(g::Criticality::REJECT),
            value: g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsAccepted(
                g::RANfunctionsID_List(accepted),
            ),
        });
    }
    if !rejected.is_empty() {
        insert.push(g::E2setupResponseProtocolIEs_Entry {
            id: g::ProtocolIE_ID(crate::e2ap::ids::ie::RAN_FUNCTIONS_REJECTED),
            criticality: g::Criticality(g::Criticality::REJECT),
            value: g::E2setupResponseProtocolIEs_EntryValue::Id_RANfunctionsRejected(
                g::RANfunctionsIDcause_List(rejected),
            ),
        });
    }
    ies.splice(at..at, insert);
    Ok(MergedSetup {
        response: Bytes::from(codec::encode(&base)?),
        accepted: accepted_ids,
        rejected: rejected_ids,
    })
}

fn request_id(r: &g::RICrequestID) -> RicRequestId {
    RicRequestId {
        requestor: r.ric_requestor_id.0,
        instance: r.ric_instance_id.0,
    }
}

/// Split a RIC Subscription Delete Required by owner: `owners` maps a
/// node-side RICrequestID to the pods and the ids they know the subscription
/// by (empty: nobody owns it, the item is left out). Returns one PDU per pod,
/// in the order the pods first appear, and how many items had no owner.
pub fn split_delete_required(
    bytes: &[u8],
    owners: impl Fn(RicRequestId) -> Vec<(BackendId, RicRequestId)>,
) -> Result<(Vec<(BackendId, Bytes)>, usize), MergeError> {
    let pdu = codec::decode(bytes)?;
    let g::E2AP_PDU::InitiatingMessage(m) = &pdu else {
        return Err(MergeError::Unexpected);
    };
    let g::InitiatingMessageValue::Id_RICsubscriptionDeleteRequired(req) = &m.value else {
        return Err(MergeError::Unexpected);
    };
    let mut per_pod: Vec<(BackendId, Vec<g::RICsubscription_List_withCause_Entry>)> = Vec::new();
    let mut orphans = 0;
    for ie in &req.protocol_i_es.0 {
        let g::RICsubscriptionDeleteRequiredProtocolIEs_EntryValue::Id_RICsubscriptionToBeRemoved(
            list,
        ) = &ie.value;
        for item in &list.0 {
            let g::RICsubscription_List_withCause_EntryValue::Id_RICsubscription_withCause_Item(i) =
                &item.value;
            let owners = owners(request_id(&i.ric_request_id));
            if owners.is_empty() {
                orphans += 1;
            }
            for (pod, pod_id) in owners {
                let mut item = item.clone();
                let g::RICsubscription_List_withCause_EntryValue::Id_RICsubscription_withCause_Item(
                    i,
                ) = &mut item.value;
                i.ric_request_id = g::RICrequestID {
                    ric_requestor_id: g::RICrequestIDRicRequestorID(pod_id.requestor),
                    ric_instance_id: g::RICrequestIDRicInstanceID(pod_id.instance),
                };
                match per_pod.iter_mut().find(|(p, _)| *p == pod) {
                    Some((_, items)) => items.push(item),
                    None => per_pod.push((pod, vec![item])),
                }
            }
        }
    }
    let mut out = Vec::with_capacity(per_pod.len());
    for (pod, items) in per_pod {
        let mut copy = pdu.clone();
        if let g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
            value: g::InitiatingMessageValue::Id_RICsubscriptionDeleteRequired(req),
            ..
        }) = &mut copy
        {
            for ie in req.protocol_i_es.0.iter_mut() {
                let g::RICsubscriptionDeleteRequiredProtocolIEs_EntryValue::Id_RICsubscriptionToBeRemoved(list) = &mut ie.value;
                list.0 = items.clone();
            }
        }
        out.push((pod, Bytes::from(codec::encode(&copy)?)));
    }
    Ok((out, orphans))
}
