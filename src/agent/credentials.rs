//! Agent credentials, read on the host: from the environment, else from git-agent's own
//! store (`git agent auth <agent>`), a TOML file readable only by the user. Never from the
//! host's `~/.claude` or `~/.codex`, and never mounted into a container.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Agent;
use crate::error::hinted;

/// The store file: `$XDG_CONFIG_HOME/git-agent/credentials.toml` or
/// `~/.config/git-agent/credentials.toml`.
pub fn store_path() -> Option<PathBuf> {
    crate::data::user_config_dir().map(|c| c.join("credentials.toml"))
}

type Store = BTreeMap<String, BTreeMap<String, String>>;

fn read_store() -> Result<Store> {
    let Some(path) = store_path() else {
        return Ok(Store::new());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            hinted(
                format!("cannot read {}: {}", path.display(), e.message()),
                "fix or delete the file, then run `git agent auth <agent>` again",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Save `var=value` for `agent` in the store (created with mode 0600).
pub fn save(agent: &str, var: &str, value: &str) -> Result<PathBuf> {
    let path = store_path().ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    let mut store = read_store()?;
    store
        .entry(agent.to_string())
        .or_default()
        .insert(var.to_string(), value.to_string());
    write_store(&path, &store)?;
    Ok(path)
}

/// Delete `agent`'s stored credentials (only `var` when given) from the store. Returns the
/// variables deleted (none when nothing was stored); the agent need not exist any more.
pub fn delete(agent: &str, var: Option<&str>) -> Result<Vec<String>> {
    let Some(path) = store_path() else {
        return Ok(vec![]);
    };
    let mut store = read_store()?;
    let Some(vars) = store.get_mut(agent) else {
        return Ok(vec![]);
    };
    let deleted: Vec<String> = match var {
        Some(v) => vars.remove_entry(v).map(|(k, _)| k).into_iter().collect(),
        None => std::mem::take(vars).into_keys().collect(),
    };
    if vars.is_empty() {
        store.remove(agent);
    }
    if !deleted.is_empty() {
        write_store(&path, &store)?;
    }
    Ok(deleted)
}

/// Replace the store with `store`, atomically, readable only by the user.
fn write_store(path: &std::path::Path, store: &Store) -> Result<()> {
    let text = toml::to_string(store)?;
    std::fs::create_dir_all(path.parent().expect("store path has a parent"))?;
    let tmp = path.with_extension("toml.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Which of an agent's credential variables are set, and where (for `auth --status`).
pub fn sources(agent: &Agent) -> Result<Vec<(String, Option<&'static str>)>> {
    let store = read_store()?;
    Ok(agent
        .def
        .credentials
        .iter()
        .map(|var| {
            let src = if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
                Some("environment")
            } else if store.get(&agent.name).and_then(|s| s.get(var)).is_some() {
                Some("git-agent store")
            } else {
                None
            };
            (var.clone(), src)
        })
        .collect())
}

/// The credentials handed to a task of `agent`: each of its variables that is set, from the
/// environment first, then the store. An agent that declares credentials needs at least one.
pub fn resolve(agent: &Agent) -> Result<Vec<(String, String)>> {
    if agent.def.credentials.is_empty() {
        return Ok(vec![]);
    }
    let store = read_store()?;
    let mut out = Vec::new();
    for var in &agent.def.credentials {
        let value = std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| store.get(&agent.name).and_then(|s| s.get(var)).cloned());
        if let Some(v) = value {
            out.push((var.clone(), v));
        }
    }
    if out.is_empty() {
        return Err(hinted(
            format!(
                "no credentials for agent '{}' (it needs one of {})",
                agent.name,
                agent.def.credentials.join(", ")
            ),
            format!(
                "export {} in your shell, or store it with `git agent auth {}`",
                agent.def.credentials[0], agent.name
            ),
        ));
    }
    Ok(out)
}
