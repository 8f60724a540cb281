//! The engines a user has: named in git config (`agent.engine.<name>.url` and friends), or,
//! when none is, the one the environment names (`DOCKER_HOST`, contexts, the local socket)
//! under the name `default`. Which engine a new task goes to ([`place`]): the one `--engine` or
//! `agent.engine` pins, else the reachable one with the most free room against its
//! `agent.engine.<name>.limit` (running tasks), in the order of configuration on a tie.
//!
//! Owns: reading and checking the definitions and the placement rule. Must not: connect
//! (that is [`super::select::Engine::connect_to`]) or read anything a repository wrote: only the
//! user's git config and environment say which engines exist and where they are.

use std::path::PathBuf;

use anyhow::Result;

use super::address::EngineAddress;
use crate::error::hinted;
use crate::git::Config;

/// The name of the engine the environment names, when no engine is configured.
pub const DEFAULT: &str = "default";

/// One engine a task may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineDef {
    pub name: String,
    /// Where it is; `None`: what the environment says (the `default` engine).
    pub address: Option<EngineAddress>,
    /// Most running tasks placed on it (`agent.engine.<name>.limit`); `None`: no limit.
    pub limit: Option<u32>,
}

impl EngineDef {
    /// The environment's engine, as every task used before engines had names.
    pub fn environment() -> EngineDef {
        EngineDef {
            name: DEFAULT.into(),
            address: None,
            limit: None,
        }
    }

    /// The address, for messages.
    pub fn place(&self) -> String {
        match &self.address {
            Some(a) => a.to_string(),
            None => EngineAddress::from_env()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "the environment's engine".into()),
        }
    }
}

/// Is `name` usable as an engine name (it is part of config keys and task records)?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-')
}

/// Every engine the user configured (`agent.engine.<name>.url`), in name order; with none,
/// the environment's engine alone.
pub fn configured(config: &Config) -> Result<Vec<EngineDef>> {
    let mut names: Vec<String> = config
        .keys()
        .filter_map(|k| {
            k.strip_prefix("agent.engine.")
                .and_then(|rest| rest.strip_suffix(".url"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        let mut def = EngineDef::environment();
        def.limit = limit(config, DEFAULT)?;
        return Ok(vec![def]);
    }
    names.iter().map(|n| definition(config, n)).collect()
}

/// The definition of the engine `name`, from `agent.engine.<name>.*`.
fn definition(config: &Config, name: &str) -> Result<EngineDef> {
    if !valid_name(name) {
        return Err(hinted(
            format!("'{name}' (in agent.engine.{name}.url) is not a usable engine name"),
            "name engines with lowercase letters, digits, '-' and '_' (up to 40): git config agent.engine.big.url tcp://host:2376",
        ));
    }
    let url_key = format!("agent.engine.{name}.url");
    let url = config.get(&url_key).unwrap_or_default().trim();
    let cert_key = format!("agent.engine.{name}.certPath");
    let cert_dir = config.get(&cert_key).map(expand_home);
    let verify_key = format!("agent.engine.{name}.tlsVerify");
    // TLS is on when a certificate directory is named, unless turned off explicitly.
    let verify = config.bool(&verify_key, cert_dir.is_some() || url.starts_with("tcp://"))?;
    let address = EngineAddress::new(url, cert_dir.as_deref(), verify).map_err(|e| {
        hinted(
            format!("engine '{name}' ({url_key} = {url}): {e:#}"),
            format!(
                "fix it (`git config {url_key} tcp://host:2376`, `git config {cert_key} <dir with ca.pem, cert.pem, key.pem>`) or remove it: git config --remove-section agent.engine.{name}"
            ),
        )
    })?;
    Ok(EngineDef {
        name: name.to_string(),
        address: Some(address),
        limit: limit(config, name)?,
    })
}

fn limit(config: &Config, name: &str) -> Result<Option<u32>> {
    let key = format!("agent.engine.{name}.limit");
    match config.get(&key) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(hinted(
                format!("bad value '{v}' for {key}"),
                format!(
                    "set how many tasks may run there at once (0: no limit): git config {key} 3"
                ),
            )),
        },
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The engine a task whose record names `engine` runs on (`None`: the environment's, as for
/// every task from before engines had names).
pub fn of_task(defs: &[EngineDef], engine: Option<&str>) -> Result<EngineDef> {
    let name = engine.unwrap_or(DEFAULT);
    if let Some(def) = defs.iter().find(|d| d.name == name) {
        return Ok(def.clone());
    }
    if name == DEFAULT {
        return Ok(EngineDef::environment());
    }
    Err(hinted(
        format!("the task runs on the engine '{name}', which is no longer configured"),
        format!(
            "name it again (`git config agent.engine.{name}.url <url>`); `git agent list` shows which tasks run where"
        ),
    ))
}

/// What placement knows of one engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub name: String,
    /// Its tasks that run now (or are being started).
    pub running: u32,
    pub limit: Option<u32>,
    /// Did it answer? An unreachable engine gets no task.
    pub reachable: bool,
}

/// Why no engine can take a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every reachable engine is at its limit.
    Full(Vec<Load>),
    /// No engine answered.
    Unreachable(Vec<String>),
}

/// The engine for a new task: among the reachable ones, the one with the most free room (no
/// limit counts as always room, ahead of any limited engine); on a tie the first in
/// `loads`' order.
pub fn place(loads: &[Load]) -> Result<String, Refusal> {
    let reachable: Vec<&Load> = loads.iter().filter(|l| l.reachable).collect();
    if reachable.is_empty() {
        return Err(Refusal::Unreachable(
            loads.iter().map(|l| l.name.clone()).collect(),
        ));
    }
    let room = |l: &Load| match l.limit {
        None => u64::MAX,
        Some(n) => u64::from(n.saturating_sub(l.running)),
    };
    let best = reachable
        .iter()
        .copied()
        .filter(|l| room(l) > 0)
        .fold(None::<&Load>, |best, l| match best {
            Some(b) if room(b) >= room(l) => Some(b),
            _ => Some(l),
        });
    match best {
        Some(l) => Ok(l.name.clone()),
        None => Err(Refusal::Full(loads.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, running: u32, limit: Option<u32>, reachable: bool) -> Load {
        Load {
            name: name.into(),
            running,
            limit,
            reachable,
        }
    }

    #[test]
    fn no_engine_configured_is_the_environments() {
        let defs = configured(&Config::from_pairs(&[("agent.memory", "2g")])).unwrap();
        assert_eq!(defs, vec![EngineDef::environment()]);
        let defs = configured(&Config::from_pairs(&[("agent.engine.default.limit", "4")])).unwrap();
        assert_eq!(defs[0].limit, Some(4));
    }

    #[test]
    fn configured_engines_in_name_order_with_limits() {
        let defs = configured(&Config::from_pairs(&[
            ("agent.engine.b.url", "unix:///run/b.sock"),
            ("agent.engine.b.limit", "3"),
            ("agent.engine.a.url", "ssh://me@host"),
        ]))
        .unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(defs[1].limit, Some(3));
        assert_eq!(defs[0].limit, None);
        assert_eq!(defs[0].address.as_ref().unwrap().url, "ssh://me@host");
    }

    #[test]
    fn bad_definitions_are_refused_with_a_fix() {
        for pairs in [
            vec![("agent.engine.x.url", "http://host")],
            vec![("agent.engine.x.url", "")],
            vec![
                ("agent.engine.x.url", "unix:///a"),
                ("agent.engine.x.limit", "many"),
            ],
            vec![
                ("agent.engine.x.url", "tcp://h:2376"),
                ("agent.engine.x.certPath", "/nonexistent-dir"),
            ],
        ] {
            let err = configured(&Config::from_pairs(&pairs)).unwrap_err();
            let hint = crate::error::find_hint(&err)
                .unwrap_or_default()
                .to_string();
            assert!(hint.contains("git config"), "{pairs:?}: {err:#} / {hint}");
        }
        assert!(!valid_name("Big"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("-x"));
        assert!(valid_name("big-2"));
    }

    #[test]
    fn a_task_finds_its_engine_or_says_it_is_gone() {
        let defs = configured(&Config::from_pairs(&[("agent.engine.a.url", "unix:///a")])).unwrap();
        assert_eq!(of_task(&defs, Some("a")).unwrap().name, "a");
        // Tasks from before engines had names run on the environment's engine.
        assert_eq!(of_task(&defs, None).unwrap(), EngineDef::environment());
        let err = of_task(&defs, Some("gone")).unwrap_err();
        assert!(format!("{err:#}").contains("'gone'"));
    }

    #[test]
    fn placement_takes_the_most_room_and_skips_full_and_unreachable_engines() {
        let l = [load("a", 2, Some(3), true), load("b", 0, Some(3), true)];
        assert_eq!(place(&l), Ok("b".into()));
        let l = [load("a", 1, Some(3), true), load("b", 1, Some(3), true)];
        assert_eq!(place(&l), Ok("a".into()), "a tie goes to the first");
        let l = [load("a", 3, Some(3), true), load("b", 2, Some(3), true)];
        assert_eq!(place(&l), Ok("b".into()));
        let l = [load("a", 0, None, false), load("b", 2, Some(3), true)];
        assert_eq!(place(&l), Ok("b".into()));
        let l = [load("a", 9, None, true), load("b", 0, Some(3), true)];
        assert_eq!(place(&l), Ok("a".into()), "no limit is always room");
        let l = [load("a", 3, Some(3), true), load("b", 5, Some(3), true)];
        assert!(matches!(place(&l), Err(Refusal::Full(_))));
        let l = [load("a", 0, None, false)];
        assert_eq!(place(&l), Err(Refusal::Unreachable(vec!["a".into()])));
    }
}
