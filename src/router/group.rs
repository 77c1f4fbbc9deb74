//! Which nodes are served in router mode, and by which pods (pure).
//!
//! A node group matches on the node's GlobalE2node-ID: its PLMN, and for gNB
//! nodes optionally the gNB-ID; a group with neither matches every node. The
//! first matching group wins; a node no group matches is served in
//! association mode.

use asn1_codecs::aper::AperCodec;
use asn1_codecs::PerCodecData;

use super::RouterConfig;
use crate::e2ap::generated as g;
use crate::session::NodeId;

/// Which pods must see a node of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodChoice {
    /// These backends, by name.
    Named(Vec<String>),
    /// Every healthy backend that is not draining.
    AllHealthy,
    /// This many, chosen one after the other by the Bull-and-Bear rule.
    Replicas(usize),
}

/// One `[[router.groups]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeGroup {
    pub name: String,
    /// PLMN identity (3 octets as sent); `None`: any.
    pub plmn: Option<[u8; 3]>,
    /// gNB-IDs (gNB nodes only); empty: any.
    pub gnb_ids: Vec<u32>,
    pub pods: PodChoice,
}

/// Router mode as configured: the groups and the per-node knobs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterSettings {
    pub groups: Vec<NodeGroup>,
    pub config: RouterConfig,
}

/// What matching needs of a GlobalE2node-ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub plmn: [u8; 3],
    /// The gNB-ID of a gNB node (its bit string as a number).
    pub gnb_id: Option<u32>,
}

/// Read the PLMN (and gNB-ID) of a node's GlobalE2node-ID (APER bytes).
pub fn identity(node: &NodeId) -> Option<NodeIdentity> {
    let decoded = std::panic::catch_unwind(|| {
        let mut data = PerCodecData::from_slice_aper(&node.0);
        g::GlobalE2node_ID::aper_decode(&mut data)
    });
    let id = decoded.ok()?.ok()?;
    let (plmn, gnb_id) = match &id {
        g::GlobalE2node_ID::GNB(x) => {
            let g::GNB_ID_Choice::Gnb_ID(bits) = &x.global_g_nb_id.gnb_id;
            let v = bits
                .0
                .iter()
                .fold(0u32, |acc, b| (acc << 1) | u32::from(*b));
            (&x.global_g_nb_id.plmn_id.0, Some(v))
        }
        g::GlobalE2node_ID::En_gNB(x) => (&x.global_en_g_nb_id.plmn_identity.0, None),
        g::GlobalE2node_ID::Ng_eNB(x) => (&x.global_ng_e_nb_id.plmn_id.0, None),
        g::GlobalE2node_ID::ENB(x) => (&x.global_e_nb_id.plmn_identity.0, None),
    };
    Some(NodeIdentity {
        plmn: plmn.as_slice().try_into().ok()?,
        gnb_id,
    })
}

impl NodeGroup {
    pub fn matches(&self, who: Option<&NodeIdentity>) -> bool {
        if self.plmn.is_none() && self.gnb_ids.is_empty() {
            return true;
        }
        let Some(who) = who else {
            return false;
        };
        self.plmn.is_none_or(|p| p == who.plmn)
            && (self.gnb_ids.is_empty() || who.gnb_id.is_some_and(|g| self.gnb_ids.contains(&g)))
    }
}

impl RouterSettings {
    /// The group serving `node` in router mode, if any.
    pub fn group_for(&self, node: &NodeId) -> Option<&NodeGroup> {
        if self.groups.is_empty() {
            return None;
        }
        let who = identity(node);
        self.groups.iter().find(|g| g.matches(who.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ap::build::{ComponentId, E2SetupRequest, GnbId, NodeComponent, RanFunction};
    use crate::e2ap::Envelope;

    fn node(plmn: [u8; 3], gnb: u32) -> NodeId {
        let b = E2SetupRequest {
            transaction_id: 1,
            node: GnbId {
                plmn,
                gnb_id: gnb,
                gnb_id_bits: 28,
            },
            ran_functions: &[RanFunction {
                id: 1,
                definition: b"kpm",
                revision: 1,
                oid: "1.3.6.1.4.1.53148.1.2.2.2",
            }],
            components: &[NodeComponent {
                id: ComponentId::Ng { amf_name: "amf" },
                request_part: b"a",
                response_part: b"b",
            }],
        }
        .build()
        .unwrap();
        let raw = Envelope::parse(&b).unwrap().global_e2node_id_raw().unwrap();
        NodeId(raw.into())
    }

    fn group(name: &str, plmn: Option<[u8; 3]>, gnb_ids: &[u32]) -> NodeGroup {
        NodeGroup {
            name: name.into(),
            plmn,
            gnb_ids: gnb_ids.to_vec(),
            pods: PodChoice::AllHealthy,
        }
    }

    #[test]
    fn the_identity_of_a_gnb_is_read_from_its_global_id() {
        let who = identity(&node([0x00, 0xf1, 0x10], 4242)).unwrap();
        assert_eq!(who.plmn, [0x00, 0xf1, 0x10]);
        assert_eq!(who.gnb_id, Some(4242));
        assert_eq!(identity(&NodeId(vec![0xff].into())), None);
    }

    #[test]
    fn the_first_matching_group_wins_and_others_stay_in_association_mode() {
        let s = RouterSettings {
            groups: vec![
                group("cells-7", Some([0x00, 0xf1, 0x10]), &[7]),
                group("plmn", Some([0x00, 0xf1, 0x10]), &[]),
            ],
            config: RouterConfig::default(),
        };
        let name = |n: &NodeId| s.group_for(n).map(|g| g.name.clone());
        assert_eq!(
            name(&node([0x00, 0xf1, 0x10], 7)).as_deref(),
            Some("cells-7")
        );
        assert_eq!(name(&node([0x00, 0xf1, 0x10], 8)).as_deref(), Some("plmn"));
        assert_eq!(name(&node([0x02, 0xf8, 0x39], 7)), None);
        let all = RouterSettings {
            groups: vec![group("all", None, &[])],
            config: RouterConfig::default(),
        };
        assert!(all.group_for(&NodeId(vec![0xff].into())).is_some());
        assert!(RouterSettings::default()
            .group_for(&node([0x00, 0xf1, 0x10], 7))
            .is_none());
    }
}
