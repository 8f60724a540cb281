//! Addresses and ports a user opens on purpose. The gateway refuses every loopback, private,
//! link-local, metadata and otherwise non-public address, whatever name leads there; only the
//! user's own settings (`agent.allowAddress`, `--allow-address`; `agent.allowPort`) can open a
//! specific address or network, or a port beyond 443 (CONNECT) and 80 (plain HTTP). A
//! repository's files never can: `.git-agent/config.toml` has no such key.

use std::net::IpAddr;

/// Check an address or network (`10.1.2.3`, `10.1.0.0/16`, `fd00::1`) and write it
/// canonically (`10.1.2.3/32`).
pub fn address_entry(text: &str) -> Result<String, String> {
    let t = text.trim();
    let (ip, len) = match t.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (t, None),
    };
    let ip: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| "not an IP address (write 10.1.2.3, 10.1.0.0/16 or fd00::1)".to_string())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("the prefix length must be 0 to {max}"))?,
        None => max,
    };
    if len < max / 4 {
        return Err(format!(
            "/{len} is wider than any one network; name the network you mean"
        ));
    }
    Ok(format!("{ip}/{len}"))
}

/// Check a port the user opens for CONNECT and plain HTTP.
pub fn port_entry(text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("'{}' is not a port (1 to 65535)", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_are_canonical() {
        assert_eq!(address_entry("172.20.0.5").unwrap(), "172.20.0.5/32");
        assert_eq!(address_entry(" 10.1.0.0/16 ").unwrap(), "10.1.0.0/16");
        assert_eq!(address_entry("[fd00::1]").unwrap(), "fd00::1/128");
        for bad in [
            "",
            "example.com",
            "10.1.2.3/33",
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/4",
            "2130706433",
            "10.1/16",
            "1.2.3.4/x",
        ] {
            assert!(address_entry(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ports_are_numbers_in_range() {
        assert_eq!(port_entry("8000").unwrap(), 8000);
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(port_entry(bad).is_err(), "{bad:?} accepted");
        }
    }
}
