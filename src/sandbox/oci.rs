//! The OCI runtime a task's code runs under: `spawn --oci-runtime <name>`, else
//! `agent.ociRuntime`, else the engine's default. A runtime such as gVisor's `runsc` puts a
//! kernel of its own between the agent and the host's.
//!
//! Owns: choosing the name, refusing anything that is not a runtime's name (the value goes
//! to the engine as it is), and checking that the engine has that runtime before anything
//! is created. The runtime is recorded with the task, so every later container that runs
//! the task's code (a restart's, `continue`'s, a reader's, a draft's, a preview) gets it
//! too. git-agent's own helpers (the gateway, the disk warden, a preview's door, the object
//! cache's writer) and a task's services stay on the engine's default. Must not: read
//! repository files (only the user's git config and flags choose a runtime).

use anyhow::Result;

use crate::error::hinted;
use crate::git::Config;
use crate::runtime::{Runtime, is_oci_runtime_name};

/// The runtime asked for: the flag's value, else `agent.ociRuntime` (an empty value is the
/// engine's default), refused when it is not a runtime's name.
pub fn choose(flag: Option<&str>, config: &Config) -> Result<Option<String>> {
    let (value, from) = match flag {
        Some(v) => (v, "--oci-runtime"),
        None => match config.get("agent.ociRuntime") {
            Some(v) => (v, "agent.ociRuntime"),
            None => return Ok(None),
        },
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    parse(value, from).map(Some)
}

/// `value` as a runtime's name, else an error naming where it came from (`from`).
pub fn parse(value: &str, from: &str) -> Result<String> {
    if is_oci_runtime_name(value) {
        return Ok(value.to_string());
    }
    Err(hinted(
        format!(
            "bad value {:?} for {from}: an OCI runtime is given by the name the engine knows it by (letters, digits, '_', '.', '-'), never a path or options",
            crate::error::sanitize(value)
        ),
        "name one of the engine's runtimes (`docker info` lists them), e.g. git config agent.ociRuntime runsc",
    ))
}

/// Check that the engine has runtime `name` (nothing to check for the default): an error
/// listing those it has, with how to register gVisor's, when it does not.
pub async fn check<R: Runtime>(rt: &R, name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        return Ok(());
    };
    let name = parse(name, "the OCI runtime")?;
    let available = rt.oci_runtimes().await?;
    if available.contains(&name) {
        return Ok(());
    }
    Err(unknown(&name, &available))
}

/// Is `name` the engine's default runtime (`None` always is)? Containers that must share a
/// task's namespaces (the disk warden shares its PIDs) work only with the default: under
/// gVisor the task's processes live in its own kernel, and the namespace the engine hands
/// out for the task is that of the runtime's host processes.
pub async fn is_default<R: Runtime>(rt: &R, name: Option<&str>) -> Result<bool> {
    let Some(name) = name else {
        return Ok(true);
    };
    Ok(rt.oci_runtimes().await?.first().map(String::as_str) == Some(name))
}

fn unknown(name: &str, available: &[String]) -> anyhow::Error {
    let has = if available.is_empty() {
        "none".to_string()
    } else {
        available.join(", ")
    };
    hinted(
        format!(
            "the container engine has no OCI runtime named '{name}' (it has: {has}); nothing was created"
        ),
        format!(
            "register it with the engine: for gVisor, install `runsc` and add \
             {{\"runtimes\": {{\"runsc\": {{\"path\": \"/usr/bin/runsc\"}}}}}} to /etc/docker/daemon.json, \
             then `sudo kill -HUP $(pidof dockerd)` (or start dockerd with `--add-runtime runsc=/usr/bin/runsc`); \
             or choose one it has: git agent spawn --oci-runtime {}",
            available.first().map_or("runc", String::as_str)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs)
    }

    #[test]
    fn the_flag_wins_over_the_config_and_empty_is_the_default() {
        let c = config(&[("agent.ociRuntime", "runsc")]);
        assert_eq!(choose(None, &c).unwrap().as_deref(), Some("runsc"));
        assert_eq!(choose(Some("runc"), &c).unwrap().as_deref(), Some("runc"));
        assert_eq!(choose(Some(" "), &c).unwrap(), None);
        assert_eq!(choose(None, &config(&[])).unwrap(), None);
        assert_eq!(
            choose(None, &config(&[("agent.ociRuntime", "")])).unwrap(),
            None
        );
    }

    #[test]
    fn only_names_pass() {
        for good in [
            "runsc",
            "runc",
            "io.containerd.runc.v2",
            "kata-qemu",
            "my_rt2",
        ] {
            assert_eq!(parse(good, "x").unwrap(), good);
        }
        for bad in [
            "../../bin/sh",
            "/usr/bin/runsc",
            "runc --foo",
            "--privileged",
            "-x",
            ".hidden",
            "..",
            "run\nsc",
            "runsc;id",
            "rün",
            &"a".repeat(129),
        ] {
            let err = parse(bad, "--oci-runtime").unwrap_err();
            assert!(format!("{err}").contains("--oci-runtime"), "{bad:?}: {err}");
            assert!(crate::error::find_hint(&err).is_some(), "{bad:?}");
        }
        let err = choose(None, &config(&[("agent.ociRuntime", "runc --foo")])).unwrap_err();
        assert!(format!("{err}").contains("agent.ociRuntime"), "{err}");
    }

    #[test]
    fn an_unknown_runtime_lists_the_engines_and_says_how_to_register_runsc() {
        let err = unknown("runsc", &["runc".into(), "kata".into()]);
        let text = format!("{err}");
        assert!(
            text.contains("'runsc'") && text.contains("runc, kata"),
            "{text}"
        );
        let hint = crate::error::find_hint(&err).unwrap();
        assert!(
            hint.contains("--add-runtime runsc=/usr/bin/runsc"),
            "{hint}"
        );
        assert!(hint.contains("daemon.json"), "{hint}");
        assert!(hint.contains("--oci-runtime runc"), "{hint}");
    }
}
