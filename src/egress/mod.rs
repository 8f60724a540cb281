//! Egress policy: which hosts a task may reach.
//!
//! A task's containers sit on an internal network with no route out; the only way out is the
//! task's gateway (see [`crate::sandbox::gateway`]), an HTTP(S) proxy that allows hosts by
//! domain. What it allows comes from the task's network profile (`none`, `api`, `dev`,
//! `open`, or the user's own in `~/.config/git-agent/profiles/`), plus domains added by the
//! user (`--allow`, `agent.allow`) and by the repository (`.git-agent/config.toml`).
//!
//! Whatever the profile (`open` included), the gateway reaches only public addresses on port
//! 443 (CONNECT) or 80 (plain HTTP): it refuses IP literals, host-gateway and special-use
//! names, and every name that resolves to a loopback, private, link-local or metadata address,
//! checked against the address it then connects to. Only the user's own settings open more:
//! `agent.allowAddress`/`--allow-address` (an address or network) and `agent.allowPort`.
//!
//! Trust follows the rule of the whole tool: a repository's files may add registrable public
//! domains (see [`domain`]), never take a restriction away. So profiles are looked up in the
//! user's config and the built-in set only, and a repository cannot choose one, open an
//! address or a port.

pub mod address;
pub mod domain;
pub mod log;
pub mod repo;
pub mod vault;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::data::{Kind, Search};
use crate::error::hinted;
use crate::git::Config;

pub const PROFILES: Kind = Kind {
    dir: "profiles",
    ext: "toml",
    builtin: &[
        ("none", include_str!("../../templates/profiles/none.toml")),
        ("api", include_str!("../../templates/profiles/api.toml")),
        ("dev", include_str!("../../templates/profiles/dev.toml")),
        ("open", include_str!("../../templates/profiles/open.toml")),
        ("build", include_str!("../../templates/profiles/build.toml")),
    ],
};

/// The profile a task gets when nothing picks one.
pub const DEFAULT_PROFILE: &str = "api";

/// A network profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    /// Let the agent reach its model API.
    #[serde(default)]
    pub api: bool,
    /// Allow every host (connections are still recorded).
    #[serde(default)]
    pub open: bool,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The egress policy recorded with a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    pub profile: String,
    /// Every host is allowed.
    #[serde(default)]
    pub open: bool,
    /// The model API is reachable (through the vault when it holds the credentials).
    #[serde(default)]
    pub api: bool,
    /// Allowed domains; each also allows its subdomains (`*.x` allows only subdomains).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Ports beyond 443 (CONNECT) and 80 (plain HTTP), from the user's `agent.allowPort`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Non-public addresses or networks the user opened (`agent.allowAddress`,
    /// `--allow-address`), as `ip/len`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub profile: Option<&'a str>,
    pub allow: &'a [String],
    /// `--allow-address`: addresses or networks to open.
    pub allow_address: &'a [String],
}

/// Split a multi-valued setting's values on commas and spaces.
fn words(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter()
        .flat_map(|e| e.split([',', ' ']))
        .filter(|d| !d.is_empty())
}

/// Load a profile: the user's config, then the built-in ones (never the repository's).
pub fn load_profile(search: &Search, name: &str) -> Result<Profile> {
    let trusted = Search {
        repo: None,
        user: search.user.clone(),
    };
    let found = trusted.find(PROFILES, name)?.ok_or_else(|| {
        hinted(
            format!("unknown network profile '{name}'"),
            "use none, api, dev or open, or add ~/.config/git-agent/profiles/<name>.toml",
        )
    })?;
    toml::from_str(&found.text).map_err(|e| {
        hinted(
            format!("bad network profile {} ({}): {e}", name, found.origin),
            "fields: description, api (bool), open (bool), allow (list of domains)",
        )
    })
}

/// Resolve a task's policy from its profile, the user's settings and flags, and the
/// repository's additions.
pub fn resolve(
    search: &Search,
    config: &Config,
    req: &Request<'_>,
    repo_allow: &[String],
) -> Result<NetworkPolicy> {
    let name = req
        .profile
        .or(config.get("agent.network"))
        .unwrap_or(DEFAULT_PROFILE);
    let profile = load_profile(search, name)?;
    let mut allow = Vec::new();
    let from_config = config.get_all("agent.allow");
    let sources: [(&str, &[String]); 4] = [
        ("the profile", &profile.allow),
        ("agent.allow", &from_config),
        ("--allow", req.allow),
        (".git-agent/config.toml", repo_allow),
    ];
    for (origin, list) in sources {
        for d in words(list) {
            allow.push(domain::allow_entry(d).map_err(|e| {
                hinted(
                    format!("bad domain '{d}' in {origin}: {e}"),
                    "write a registrable domain such as example.com, a name below one, or *.example.com for its subdomains",
                )
            })?);
        }
    }
    allow.sort();
    allow.dedup();
    let mut ports = Vec::new();
    for p in words(&config.get_all("agent.allowPort")) {
        ports.push(address::port_entry(p).map_err(|e| {
            hinted(
                format!("bad agent.allowPort: {e}"),
                "git config --replace-all agent.allowPort 8443",
            )
        })?);
    }
    ports.sort_unstable();
    ports.dedup();
    let mut addresses = Vec::new();
    let from_config = config.get_all("agent.allowAddress");
    for (origin, list) in [
        ("agent.allowAddress", &from_config[..]),
        ("--allow-address", req.allow_address),
    ] {
        for a in words(list) {
            addresses.push(address::address_entry(a).map_err(|e| {
                hinted(
                    format!("bad address '{a}' in {origin}: {e}"),
                    "write an address or network such as 10.1.2.3 or 10.1.0.0/16",
                )
            })?);
        }
    }
    addresses.sort();
    addresses.dedup();
    Ok(NetworkPolicy {
        profile: name.to_string(),
        open: profile.open,
        api: profile.api,
        allow,
        ports,
        addresses,
    })
}

/// Check and lower-case a host name: `example.com`, `*.example.com`, or an IPv4 address.
/// (Only the syntax: allow-list entries must also pass [`domain::allow_entry`].)
pub fn normalize_domain(text: &str) -> Result<String, String> {
    let d = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let body = d.strip_prefix("*.").unwrap_or(&d);
    if body.is_empty() || body.len() > 253 {
        return Err("not a host name".into());
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("empty or overlong label".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("only letters, digits, '-' and '_' may appear in a label".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label may not start or end with '-'".into());
        }
    }
    Ok(d)
}

/// Does `host` fall under an allow-list entry?
pub fn matches(entry: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match entry.strip_prefix("*.") {
        Some(parent) => host.len() > parent.len() + 1 && host.ends_with(&format!(".{parent}")),
        None => host == entry || host.ends_with(&format!(".{entry}")),
    }
}

impl NetworkPolicy {
    /// Does the policy let the task reach `host`?
    pub fn allows(&self, host: &str) -> bool {
        self.open || self.allow.iter().any(|e| matches(e, host))
    }

    /// The gateway proxy's policy file (`policy.json`, read by dockerfiles/git-agent-gateway).
    pub fn proxy_policy(&self) -> String {
        let mut v = serde_json::json!({
            "profile": self.profile,
            "open": self.open,
            "allow": self.allow,
            "ports": self.ports,
            "addresses": self.addresses,
        })
        .to_string();
        v.push('\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked_and_lowered() {
        assert_eq!(normalize_domain("Crates.IO.").unwrap(), "crates.io");
        assert_eq!(normalize_domain("*.example.com").unwrap(), "*.example.com");
        assert_eq!(normalize_domain("10.0.0.1").unwrap(), "10.0.0.1");
        for bad in [
            "", "*", "*.", "a..b", "-a.com", "a b", "a/b", "a:443", "ex$ample", "*.*.x", "é.com",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn entries_cover_subdomains_on_label_boundaries() {
        assert!(matches("example.com", "example.com"));
        assert!(matches("example.com", "api.example.com"));
        assert!(!matches("example.com", "badexample.com"));
        assert!(!matches("example.com", "example.com.evil.net"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "example.com"));
    }

    #[test]
    fn the_proxy_policy_carries_domains_ports_and_addresses() {
        let p = NetworkPolicy {
            profile: "x".into(),
            allow: vec!["a.b".into(), "*.c.d".into()],
            ports: vec![8443],
            addresses: vec!["10.1.2.3/32".into()],
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&p.proxy_policy()).unwrap();
        assert_eq!(v["allow"], serde_json::json!(["a.b", "*.c.d"]));
        assert_eq!(v["ports"], serde_json::json!([8443]));
        assert_eq!(v["addresses"], serde_json::json!(["10.1.2.3/32"]));
        assert_eq!(v["open"], false);
        let open = NetworkPolicy { open: true, ..p };
        assert!(open.allows("anything.example"));
        // Old task records (without ports and addresses) still read.
        let old: NetworkPolicy =
            serde_json::from_str(r#"{"profile":"api","open":false,"api":true,"allow":[]}"#)
                .unwrap();
        assert!(old.ports.is_empty() && old.addresses.is_empty());
    }

    #[test]
    fn only_the_user_opens_ports_and_addresses() {
        let search = Search {
            repo: None,
            user: None,
        };
        let config = Config::from_pairs(&[
            ("agent.allowPort", "8443"),
            ("agent.allowPort", "22, 8443"),
            ("agent.allowAddress", "172.20.0.5"),
        ]);
        let flag = vec!["10.9.0.0/16".to_string()];
        let p = resolve(
            &search,
            &config,
            &Request {
                allow_address: &flag,
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(p.ports, vec![22, 8443]);
        assert_eq!(p.addresses, vec!["10.9.0.0/16", "172.20.0.5/32"]);
        for (k, v) in [
            ("agent.allowPort", "ssh"),
            ("agent.allowAddress", "evil.com"),
        ] {
            let bad = Config::from_pairs(&[(k, v)]);
            let err = resolve(&search, &bad, &Request::default(), &[]).unwrap_err();
            assert!(format!("{err:#}").contains(k), "{err:#}");
        }
    }

    #[test]
    fn a_repository_cannot_allow_suffixes_local_names_or_addresses() {
        let search = Search {
            repo: None,
            user: None,
        };
        for entry in [
            "com",
            "internal",
            "169.254.169.254",
            "host.docker.internal",
            "*.github.io",
        ] {
            let repo = vec![entry.to_string()];
            let err = resolve(&search, &Config::default(), &Request::default(), &repo).unwrap_err();
            assert!(
                format!("{err:#}").contains(".git-agent/config.toml"),
                "{entry}: {err:#}"
            );
        }
    }

    #[test]
    fn resolution_adds_from_every_source_and_checks_them() {
        let search = Search {
            repo: None,
            user: None,
        };
        let config = Config::from_pairs(&[("agent.allow", "one.example, two.example")]);
        let flags = vec!["Three.Example".to_string()];
        let repo = vec!["four.example".to_string()];
        let p = resolve(
            &search,
            &config,
            &Request {
                profile: Some("dev"),
                allow: &flags,
                ..Default::default()
            },
            &repo,
        )
        .unwrap();
        assert_eq!(p.profile, "dev");
        assert!(p.api && !p.open);
        for d in [
            "one.example",
            "two.example",
            "three.example",
            "four.example",
            "crates.io",
        ] {
            assert!(
                p.allow.iter().any(|a| a == d),
                "{d} missing from {:?}",
                p.allow
            );
        }
        let none = resolve(&search, &Config::default(), &Request::default(), &[]).unwrap();
        assert_eq!(none.profile, "api");
        assert!(none.allow.is_empty());
        let bad = vec!["evil/domain".to_string()];
        let err = resolve(
            &search,
            &Config::default(),
            &Request {
                allow: &bad,
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--allow"));
        assert!(
            resolve(
                &search,
                &Config::default(),
                &Request {
                    profile: Some("nope"),
                    ..Default::default()
                },
                &[]
            )
            .is_err()
        );
    }
}
