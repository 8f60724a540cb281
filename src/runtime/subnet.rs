//! IPv4 subnets as the engine speaks of them (`a.b.c.d/n`): parsed, compared for overlap, and
//! printed back. Pure data, shared by the backends (the local runtime refuses overlapping
//! networks as an engine does) and by the allocation of task networks in
//! [`crate::sandbox::network`]. Must not talk to an engine or read configuration.

use std::net::Ipv4Addr;

/// An IPv4 network: an address with its host bits clear, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: u32,
    prefix: u8,
}

impl Ipv4Net {
    /// A network from an address and prefix; `None` when the prefix is over 32 or the
    /// address has host bits set (`10.0.0.1/8` names no network).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        let addr = u32::from(addr);
        (prefix <= 32 && addr & !mask(prefix) == 0).then_some(Ipv4Net { addr, prefix })
    }

    /// Parse `a.b.c.d/n` exactly (host bits clear, no spaces, no leading zeros).
    pub fn parse(text: &str) -> Option<Ipv4Net> {
        let (addr, prefix) = text.split_once('/')?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if prefix.len() > 1 && prefix.starts_with('0') {
            return None;
        }
        Ipv4Net::new(addr.parse().ok()?, prefix.parse().ok()?)
    }

    /// Parse what an engine reports: `a.b.c.d/n`, host bits allowed (and cleared). IPv6
    /// and anything else is `None`.
    pub fn parse_lenient(text: &str) -> Option<Ipv4Net> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Ipv4Net {
            addr: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The last address it spans.
    fn last(&self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    /// Does it hold all of `other`?
    pub fn contains(&self, other: &Ipv4Net) -> bool {
        self.prefix <= other.prefix && other.addr & mask(self.prefix) == self.addr
    }

    /// Do the two share any address?
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }

    /// The `index`th subnet of length `prefix` inside this one (`None` past the end, or for a
    /// prefix shorter than this network's own).
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 || index >= 1u64 << (prefix - self.prefix) {
            return None;
        }
        let addr = self.addr as u64 + (index << (32 - prefix));
        Some(Ipv4Net {
            addr: addr as u32,
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap()
    }

    #[test]
    fn parses_exactly_and_prints_back() {
        for s in [
            "10.242.0.0/16",
            "0.0.0.0/0",
            "192.168.1.16/28",
            "10.0.0.1/32",
        ] {
            assert_eq!(net(s).to_string(), s);
        }
        for bad in [
            "10.242.0.1/16",
            "10.242.0.0",
            "10.242.0.0/33",
            "10.242.0.0/",
            "10.242.0.0/016",
            "10.242.0.0/+8",
            " 10.242.0.0/16",
            "10.242.0/16",
            "010.242.0.0/16",
            "fd00::/8",
            "garbage",
            "",
        ] {
            assert_eq!(Ipv4Net::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Ipv4Net::parse_lenient("172.17.0.1/16"),
            Some(net("172.17.0.0/16"))
        );
        assert_eq!(Ipv4Net::parse_lenient("fd00::/64"), None);
    }

    #[test]
    fn overlap_and_containment() {
        let range = net("10.242.0.0/16");
        assert!(range.contains(&net("10.242.255.240/28")));
        assert!(!range.contains(&net("10.243.0.0/28")));
        assert!(!net("10.242.0.0/28").contains(&range));
        assert!(range.overlaps(&net("10.0.0.0/8")));
        assert!(net("10.0.0.0/8").overlaps(&range));
        assert!(net("10.242.0.0/28").overlaps(&net("10.242.0.8/29")));
        assert!(!net("10.242.0.0/28").overlaps(&net("10.242.0.16/28")));
        assert!(net("0.0.0.0/0").overlaps(&net("255.255.255.255/32")));
    }

    #[test]
    fn subnets_tile_their_network() {
        let range = net("10.242.0.0/24");
        assert_eq!(range.subnet(28, 0), Some(net("10.242.0.0/28")));
        assert_eq!(range.subnet(28, 15), Some(net("10.242.0.240/28")));
        assert_eq!(range.subnet(28, 16), None);
        assert_eq!(range.subnet(23, 0), None);
        assert_eq!(
            net("255.255.255.0/24").subnet(28, 15),
            Some(net("255.255.255.240/28"))
        );
    }
}
