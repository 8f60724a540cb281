//! Which allow-list entries are acceptable: a registrable domain (`example.com`,
//! `example.co.uk`) or a name below one, optionally as `*.name` for its subdomains only.
//!
//! An entry opens every name it covers, so one that names a public suffix (`com`, `co.uk`,
//! `github.io`, or `*.com`) opens a whole registry, a single label (`internal`, `localhost`)
//! names no public host, and an IP literal or a name under a special-use or private top-level
//! name (`host.docker.internal`, `printer.local`) points at a local network rather than the
//! internet. All are refused, whoever wrote the entry (profile, `agent.allow`, `--allow`,
//! `git agent allow`, a repository's `.git-agent/config.toml`). Opening a private address is
//! a separate, user-only setting (`agent.allowAddress`, `--allow-address`).
//!
//! Public suffixes come from the Public Suffix List (publicsuffix.org, MPL 2.0), embedded
//! from `public_suffix_list.dat` (Debian's `publicsuffix` package copy) and read with the
//! `publicsuffix` crate: a small parser with no code generation, which compiles in seconds on
//! two cores where the `psl` crate compiles the list into a very large match.

use std::sync::OnceLock;

use publicsuffix::{List, Psl};

const LIST: &str = include_str!("public_suffix_list.dat");

/// Top-level names that never lead to a public host: special-use (RFC 6761, 6762, 8375,
/// ICANN's `.internal`) and names commonly used inside private networks.
const PRIVATE_TLDS: &[&str] = &[
    "localhost",
    "local",
    "internal",
    "invalid",
    "arpa",
    "lan",
    "home",
    "corp",
    "intranet",
    "private",
    "localdomain",
];

fn list() -> &'static List {
    static L: OnceLock<List> = OnceLock::new();
    L.get_or_init(|| {
        LIST.parse()
            .expect("the embedded public suffix list parses")
    })
}

/// Check and lower-case an allow-list entry (see the module doc).
pub fn allow_entry(text: &str) -> Result<String, String> {
    let d = super::normalize_domain(text)?;
    let body = d.strip_prefix("*.").unwrap_or(&d);
    let labels: Vec<&str> = body.split('.').collect();
    let last = labels.last().copied().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Err("an IP address is no domain; to open an address of your own network use `git config --add agent.allowAddress <ip or cidr>` or `--allow-address`".into());
    }
    if labels.len() < 2 {
        return Err("a single label names no public host".into());
    }
    if PRIVATE_TLDS.contains(&last) {
        return Err(format!(
            "names under '.{last}' are local, never public hosts"
        ));
    }
    match list().domain(body.as_bytes()) {
        Some(_) => Ok(d),
        None => Err(format!(
            "'{body}' is a public suffix: it would open every domain registered under it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains_and_below_pass() {
        for ok in [
            "example.com",
            "api.example.com",
            "*.example.com",
            "example.co.uk",
            "foo.github.io",
            "*.foo.github.io",
            "crates.io",
            "allowed.test",
            "Registry.NPMJS.org.",
        ] {
            assert!(allow_entry(ok).is_ok(), "{ok}: {:?}", allow_entry(ok));
        }
        assert_eq!(
            allow_entry("Registry.NPMJS.org.").unwrap(),
            "registry.npmjs.org"
        );
    }

    #[test]
    fn suffixes_single_labels_addresses_and_local_names_fail() {
        for bad in [
            "com",
            "*.com",
            "co.uk",
            "*.co.uk",
            "github.io",
            "*.github.io",
            "internal",
            "localhost",
            "test",
            "host.docker.internal",
            "gateway.docker.internal",
            "metadata.google.internal",
            "printer.local",
            "a.localhost",
            "169.254.169.254",
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "10.1",
            "",
            "a/b",
            "[::1]",
        ] {
            assert!(allow_entry(bad).is_err(), "{bad:?} accepted");
        }
        assert!(allow_entry("co.uk").unwrap_err().contains("public suffix"));
        assert!(
            allow_entry("*.github.io")
                .unwrap_err()
                .contains("public suffix")
        );
        assert!(
            allow_entry("10.0.0.1")
                .unwrap_err()
                .contains("allowAddress")
        );
    }
}
