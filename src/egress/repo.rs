//! A repository's own settings, `.git-agent/config.toml`. Anyone who can commit to a
//! repository can write this file, so it may only add to what the user allows (domains the
//! task may reach), never weaken the sandbox: asking for a host mount, privileged mode,
//! extra capabilities, a looser network profile or other limits is refused, naming the key
//! and saying where such a setting belongs instead.
//!
//! ```toml
//! [network]
//! allow = ["api.github.com", "*.example.org"]
//! ```

use std::path::Path;

use anyhow::Result;

use crate::error::hinted;

/// The file, relative to the work tree.
pub const FILE: &str = ".git-agent/config.toml";

/// Keys that would loosen the sandbox. Refused with a pointer to the user's own settings.
const LOOSENING: &[&str] = &[
    "privileged",
    "mount",
    "mounts",
    "volumes",
    "binds",
    "bind",
    "cap_add",
    "capabilities",
    "devices",
    "security_opt",
    "network_mode",
    "host_network",
    "user",
    "root",
    "read_only",
    "pids_limit",
    "memory",
    "cpus",
    "profile",
    "open",
    "deny",
    "docker_socket",
];

/// What a repository adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoSettings {
    pub allow: Vec<String>,
}

/// Read `.git-agent/config.toml` under `root`, if there is one.
pub fn load(root: &Path) -> Result<RepoSettings> {
    // Read as untrusted input: no symbolic links, bounded size, UTF-8.
    match crate::data::read_repo_file(root, FILE)? {
        Some(text) => parse(&text),
        None => Ok(RepoSettings::default()),
    }
}

fn refused(key: &str) -> anyhow::Error {
    hinted(
        format!(
            "{FILE} asks for '{key}', which would loosen the sandbox; a repository's files may only add allowed domains"
        ),
        "limits, profiles and the like come from your own git config (agent.*) or command-line flags; git-agent never gives a task host mounts, privileged mode or extra capabilities",
    )
}

pub fn parse(text: &str) -> Result<RepoSettings> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        hinted(
            format!("{FILE} is not valid TOML: {e}"),
            "fix the file; the only setting is [network] allow = [\"domain\", ...]",
        )
    })?;
    let mut settings = RepoSettings::default();
    for (key, value) in &table {
        if LOOSENING.contains(&key.as_str()) {
            return Err(refused(key));
        }
        if key != "network" {
            return Err(hinted(
                format!("{FILE}: unknown setting '{key}'"),
                "the only setting is [network] allow = [\"domain\", ...]",
            ));
        }
        let Some(net) = value.as_table() else {
            return Err(hinted(
                format!("{FILE}: 'network' must be a table"),
                "write [network] allow = [\"domain\", ...]",
            ));
        };
        for (k, v) in net {
            if k != "allow" {
                if LOOSENING.contains(&k.as_str()) {
                    return Err(refused(&format!("network.{k}")));
                }
                return Err(hinted(
                    format!("{FILE}: unknown setting 'network.{k}'"),
                    "the only setting is [network] allow = [\"domain\", ...]",
                ));
            }
            let list = v.as_array().filter(|a| a.iter().all(|x| x.is_str()));
            let Some(list) = list else {
                return Err(hinted(
                    format!("{FILE}: network.allow must be a list of domains"),
                    "write allow = [\"example.com\"]",
                ));
            };
            settings
                .allow
                .extend(list.iter().filter_map(|x| x.as_str()).map(str::to_string));
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_may_add_domains() {
        let s = parse("[network]\nallow = [\"a.example\", \"*.b.example\"]\n").unwrap();
        assert_eq!(s.allow, vec!["a.example", "*.b.example"]);
        assert_eq!(parse("").unwrap(), RepoSettings::default());
    }

    #[test]
    fn a_repository_cannot_loosen_the_sandbox() {
        for text in [
            "privileged = true",
            "mounts = [\"/:/host\"]",
            "cap_add = [\"SYS_ADMIN\"]",
            "[network]\nprofile = \"open\"",
            "[network]\nopen = true",
            "memory = \"64g\"",
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains("loosen the sandbox"), "{text}: {err}");
        }
        let err = format!("{:#}", parse("colour = 1").unwrap_err());
        assert!(err.contains("unknown setting 'colour'"), "{err}");
        assert!(parse("[network]\nallow = [1]").is_err());
        assert!(parse("not toml [").is_err());
    }
}
