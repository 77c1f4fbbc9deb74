//! The source allow-list of E2 node associations (`[proxy] allow`).
//!
//! An empty list allows every source (the default). Otherwise a node whose
//! association comes from an address outside every listed network is refused
//! at accept, before anything is read from it.
//!
//! IPv4-mapped IPv6 sources (`::ffff:10.1.2.3`, what a dual-stack IPv6 socket
//! reports for an IPv4 peer) are matched as the IPv4 address they carry, so
//! `10.0.0.0/8` admits them; a network written in the mapped form
//! (`::ffff:10.0.0.0/104`) still matches them too.

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR written in `[proxy] allow` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is neither a CIDR (10.0.0.0/8, fd00::/8) nor an IP address")]
pub struct BadCidr(pub String);

/// Networks E2 nodes may connect from; empty = anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Every source is allowed.
    pub fn any() -> Self {
        AllowList::default()
    }

    /// Parse CIDRs (`10.0.0.0/8`, `::1/128`) or bare addresses (a host:
    /// `/32`, `/128`). Host bits below the prefix are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, BadCidr)> {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            nets.push(parse_one(e.as_ref()).map_err(|b| (i, b))?);
        }
        Ok(AllowList { nets })
    }

    /// The networks, in configuration order.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// True when every source is allowed (no network configured).
    pub fn is_any(&self) -> bool {
        self.nets.is_empty()
    }

    /// May a node connect from `ip`?
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        let canonical = ip.to_canonical();
        self.nets
            .iter()
            .any(|n| n.contains(&canonical) || n.contains(&ip))
    }
}

/// From a list of strings (`[proxy] allow`); a bad entry names its index.
impl<'de> serde::Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        AllowList::parse(&entries)
            .map_err(|(i, e)| serde::de::Error::custom(format!("allow[{i}]: {e}")))
    }
}

fn parse_one(s: &str) -> Result<IpNet, BadCidr> {
    let t = s.trim();
    if let Ok(n) = t.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| BadCidr(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_allows_everyone() {
        let a = AllowList::any();
        assert!(a.is_any());
        assert!(a.permits(ip("203.0.113.9")));
        assert!(a.permits(ip("2001:db8::1")));
    }

    #[test]
    fn networks_and_hosts() {
        let a = AllowList::parse(&["10.0.0.0/8", "192.0.2.7", "::1/128", "fd00::/8"]).unwrap();
        assert!(a.permits(ip("10.200.3.4")));
        assert!(!a.permits(ip("11.0.0.1")));
        assert!(a.permits(ip("192.0.2.7")));
        assert!(!a.permits(ip("192.0.2.8")));
        assert!(a.permits(ip("::1")));
        assert!(a.permits(ip("fd12::5")));
        assert!(!a.permits(ip("2001:db8::1")));
        // v4 networks never match plain v6 addresses and vice versa.
        assert!(!a.permits(ip("::a00:1")));
    }

    #[test]
    fn ipv4_mapped_sources_match_ipv4_networks() {
        let a = AllowList::parse(&["10.0.0.0/8"]).unwrap();
        assert!(a.permits(ip("::ffff:10.1.2.3")));
        assert!(!a.permits(ip("::ffff:11.1.2.3")));
        let mapped = AllowList::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.permits(ip("::ffff:10.1.2.3")));
        // Loopback written as v4 admits the mapped loopback, not ::1.
        let lo = AllowList::parse(&["127.0.0.0/8"]).unwrap();
        assert!(lo.permits(ip("::ffff:127.0.0.1")));
        assert!(!lo.permits(ip("::1")));
    }

    #[test]
    fn host_bits_are_ignored_and_bad_entries_are_named() {
        let a = AllowList::parse(&["10.1.2.3/8"]).unwrap();
        assert_eq!(a.nets()[0].to_string(), "10.0.0.0/8");
        assert_eq!(
            AllowList::parse(&["10.0.0.0/8", "10.0.0.0/33"]),
            Err((1, BadCidr("10.0.0.0/33".into())))
        );
        assert!(AllowList::parse(&["example.org"]).is_err());
        assert!(AllowList::parse(&[""]).is_err());
    }
}
