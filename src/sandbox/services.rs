//! Service containers a task's tests need (a database, a cache): declared by the user
//! (`~/.config/git-agent/services.toml`) or the repository (`.git-agent/services.toml`), with
//! an image and environment ONLY.
//!
//! ```toml
//! [services.db]
//! image = "redis:7"
//! env = { REDIS_ARGS = "--save ''" }
//! ```
//!
//! Each runs beside the task on the task's own internal network, reachable there by its
//! name (a network alias), confined like the task (its user, no capabilities, no new
//! privileges, its limits), with no mounts, no published ports and no other network; its
//! only way out is the task's gateway. Services start before the agent's command and are
//! removed when the task's run ends (stop, a finished run, `rm`, `purge`, `doctor --fix`).
//!
//! A repository's file is untrusted: any key but `image` and `env` (ports, volumes,
//! privileged, capabilities, network settings, a command, a user...) is refused, naming the
//! file and the key; an image must be a plain image reference, which the engine can only
//! pull or find (never a path, never a mount). The user's file uses the same format, and
//! wins over a repository's service of the same name.
//!
//! Owns: reading and checking the files, the services' names, specs and labels, starting
//! and removing them. Must not: give a service a mount, a port, a capability or a network
//! with a route out.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;

use super::RepoId;
use crate::error::hinted;
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{CompanionSpec, Hosts, LABEL_REPO, LABEL_TASK, Runtime};

/// The repository's file, relative to the work tree.
pub const REPO_FILE: &str = ".git-agent/services.toml";
/// The label telling a service container from the task's other objects, and the label
/// naming the service.
pub const LABEL_ROLE: &str = super::preview::LABEL_ROLE;
pub const LABEL_SERVICE: &str = "git-agent.service";
/// Most services per task (a task's network holds 13 containers).
pub const MAX_SERVICES: usize = 8;

/// One declared service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name, and its host name on the task's network.
    pub name: String,
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// Where it was declared (for messages).
    pub origin: String,
}

fn bad(origin: &str, what: String) -> anyhow::Error {
    hinted(
        format!("{origin}: {what}"),
        format!(
            "a service has only `image = \"<image>\"` and `env = {{ NAME = \"value\" }}`, under [services.<name>]; fix or remove {origin}"
        ),
    )
}

/// Parse a services file (`origin` names it in errors).
pub fn parse(text: &str, origin: &str) -> Result<Vec<Service>> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| bad(origin, format!("not valid TOML: {e}")))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        if key != "services" {
            return Err(bad(
                origin,
                format!("'{key}' is not allowed (only [services.<name>] tables)"),
            ));
        }
        let Some(services) = value.as_table() else {
            return Err(bad(origin, "'services' must be a table".into()));
        };
        for (name, def) in services {
            check_name(name).map_err(|why| bad(origin, format!("service '{name}': {why}")))?;
            let Some(def) = def.as_table() else {
                return Err(bad(origin, format!("service '{name}' must be a table")));
            };
            let mut image = None;
            let mut env = BTreeMap::new();
            for (k, v) in def {
                match k.as_str() {
                    "image" => {
                        let i = v.as_str().ok_or_else(|| {
                            bad(origin, format!("service '{name}': image must be a string"))
                        })?;
                        check_image(i).map_err(|why| {
                            bad(origin, format!("service '{name}': image '{i}' {why}"))
                        })?;
                        image = Some(i.to_string());
                    }
                    "env" | "environment" => {
                        let t = v.as_table().ok_or_else(|| {
                            bad(origin, format!("service '{name}': env must be a table"))
                        })?;
                        for (var, val) in t {
                            let val = val.as_str().ok_or_else(|| {
                                bad(
                                    origin,
                                    format!("service '{name}': env {var} must be a string"),
                                )
                            })?;
                            check_env(var, val).map_err(|why| {
                                bad(origin, format!("service '{name}': env {var} {why}"))
                            })?;
                            env.insert(var.clone(), val.to_string());
                        }
                    }
                    other => {
                        return Err(bad(
                            origin,
                            format!(
                                "service '{name}' asks for '{other}', which a service may not have (only image and env: no ports, mounts, privileges, capabilities, network settings or commands)"
                            ),
                        ));
                    }
                }
            }
            let Some(image) = image else {
                return Err(bad(origin, format!("service '{name}' has no image")));
            };
            out.push(Service {
                name: name.clone(),
                image,
                env,
                origin: origin.to_string(),
            });
        }
    }
    if out.len() > MAX_SERVICES {
        return Err(bad(
            origin,
            format!("{} services; at most {MAX_SERVICES}", out.len()),
        ));
    }
    Ok(out)
}

/// A service name: a DNS label of lower-case letters, digits and `-`, not one of git-agent's.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(
            "a name is 1 to 30 lower-case letters, digits and '-', starting with a letter".into(),
        );
    }
    if name.starts_with("git-agent") {
        return Err("names starting with git-agent are git-agent's own".into());
    }
    Ok(())
}

/// An image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, nothing else.
fn check_image(image: &str) -> Result<(), String> {
    let plain = !image.is_empty()
        && image.len() <= 255
        && image.starts_with(|c: char| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !image.contains("//")
        && !image.contains("..")
        && !image.ends_with(['/', ':', '@']);
    if plain {
        Ok(())
    } else {
        Err("is not a plain image reference (name[:tag][@digest])".into())
    }
}

fn check_env(var: &str, val: &str) -> Result<(), String> {
    let name_ok = var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err("is not a variable name".into());
    }
    if val.contains('\0') || val.len() > 4096 {
        return Err("has a value that is too long or holds a NUL".into());
    }
    Ok(())
}

/// The services of a task in the repository at `root`: the user's (in `user_dir`) over the
/// repository's, by name.
pub fn load(root: &Path, user_dir: Option<&Path>) -> Result<Vec<Service>> {
    let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
    if let Some(text) = crate::data::read_repo_file(root, REPO_FILE)? {
        for s in parse(&text, REPO_FILE)? {
            by_name.insert(s.name.clone(), s);
        }
    }
    if let Some(dir) = user_dir {
        let path = dir.join("services.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for s in parse(&text, &path.display().to_string())? {
                    by_name.insert(s.name.clone(), s);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot read {}", path.display()))
                );
            }
        }
    }
    let all: Vec<Service> = by_name.into_values().collect();
    if all.len() > MAX_SERVICES {
        return Err(hinted(
            format!(
                "{} services declared; a task may have at most {MAX_SERVICES}",
                all.len()
            ),
            format!("remove some from {REPO_FILE} or your services.toml"),
        ));
    }
    Ok(all)
}

/// The engine name of task `task`'s service `service`.
pub fn container_name(repo: &RepoId, task: &str, service: &str) -> String {
    format!("git-agent-{}.svc-{service}.{task}", repo.id)
}

/// The container spec of a service: the image's own command, its environment plus the
/// gateway's proxy settings, the task's confinement, no mounts.
pub fn spec(
    repo: &RepoId,
    task: &str,
    service: &Service,
    limits: &super::spawn::Limits,
    network: &str,
) -> CompanionSpec {
    let mut env: Vec<String> = service
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(super::gateway::proxy_env());
    let mut labels = repo.labels(task);
    labels.insert(LABEL_ROLE.into(), "service".into());
    labels.insert(LABEL_SERVICE.into(), service.name.clone());
    CompanionSpec {
        name: container_name(repo, task, &service.name),
        image: service.image.clone(),
        cmd: None,
        env,
        labels,
        mounts: vec![],
        working_dir: None,
        network: network.to_string(),
        alias: service.name.clone(),
        address: None,
        hosts: vec![],
        hardening: super::task_hardening(limits, false),
        // A service runs its image's program, not the task's code: the engine's default.
        oci_runtime: None,
    }
}

/// The names of a task's services at their fixed addresses in `subnet` (none without one).
pub fn hosts(subnet: Option<&Ipv4Net>, services: &[Service]) -> Hosts {
    let Some(subnet) = subnet else {
        return vec![];
    };
    services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), super::network::service_address(subnet, i)))
        .collect()
}

/// Create and start a task's services on its network (at their fixed addresses in `subnet`,
/// the network's, when it is known), each finding the gateway and the others by name.
pub async fn start<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    services: &[Service],
    limits: &super::spawn::Limits,
    network: &str,
    subnet: Option<&Ipv4Net>,
) -> Result<()> {
    let names = super::spawn::task_hosts(subnet, services);
    for (i, s) in services.iter().enumerate() {
        let mut spec = spec(repo, task, s, limits, network);
        spec.address = subnet.map(|n| super::network::service_address(n, i));
        spec.hosts = names
            .iter()
            .filter(|(n, _)| *n != s.name)
            .cloned()
            .collect();
        let id = rt.create_companion(&spec).await.map_err(|e| {
            e.context(format!(
                "cannot create service '{}' (image {}, from {})",
                s.name, s.image, s.origin
            ))
        })?;
        rt.start(&id).await?;
    }
    Ok(())
}

/// Remove every service container of a task (found by its labels).
pub async fn remove<R: Runtime>(rt: &R, repo: &RepoId, task: &str) -> Result<()> {
    let found = rt
        .containers_with(&[
            (LABEL_REPO, repo.id.as_str()),
            (LABEL_TASK, task),
            (LABEL_ROLE, "service"),
        ])
        .await?;
    for c in found {
        rt.remove_container(&c.id).await?;
    }
    Ok(())
}

/// Labels of a service container, for tests and listings.
pub fn is_service(labels: &HashMap<String, String>) -> bool {
    labels.get(LABEL_ROLE).map(String::as_str) == Some("service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_and_env_are_read() {
        let s = parse(
            "[services.db]\nimage = \"redis:7\"\nenv = { A = \"1\" }\n",
            "f",
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "db");
        assert_eq!(s[0].image, "redis:7");
        assert_eq!(s[0].env.get("A").map(String::as_str), Some("1"));
    }

    #[test]
    fn anything_but_image_and_env_is_refused() {
        for extra in [
            "privileged = true",
            "ports = [\"5432:5432\"]",
            "volumes = [\"/:/host\"]",
            "cap_add = [\"SYS_ADMIN\"]",
            "network_mode = \"host\"",
            "command = [\"sh\"]",
            "user = \"root\"",
            "mounts = []",
        ] {
            let text = format!("[services.db]\nimage = \"redis\"\n{extra}\n");
            let e = parse(&text, ".git-agent/services.toml").unwrap_err();
            let key = extra.split(' ').next().unwrap();
            assert!(e.to_string().contains(key), "{extra}: {e}");
            assert!(crate::error::find_hint(&e).is_some());
        }
        assert!(parse("privileged = true\n", "f").is_err());
        assert!(parse("[services]\ndb = \"redis\"\n", "f").is_err());
        assert!(parse("[services.db]\nenv = {}\n", "f").is_err());
    }

    #[test]
    fn an_image_is_a_plain_reference_and_never_a_mount() {
        for ok in [
            "redis",
            "redis:7",
            "registry:5000/a/b:1.0",
            "a@sha256:0123abcd",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/etc",
            "./x",
            "../x",
            "-v /:/host",
            "a b",
            "redis --privileged",
            "type=bind,source=/,target=/h",
            "a//b",
            "",
            "x:",
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_dns_labels_and_not_git_agents() {
        for bad in ["", "Db", "1db", "db.x", "db-", "git-agent-gateway", "a_b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("db-1").is_ok());
    }

    #[test]
    fn a_service_is_confined_like_the_task() {
        let repo = RepoId {
            id: "0123abcd".into(),
            path: "/r".into(),
        };
        let s = parse("[services.db]\nimage = \"redis\"\n", "f").unwrap();
        let limits = crate::sandbox::spawn::Limits {
            pids: 10,
            memory: 1 << 20,
            nano_cpus: 1,
            disk: 0,
        };
        let spec = spec(&repo, "t", &s[0], &limits, "net");
        assert!(spec.mounts.is_empty());
        assert!(spec.hardening.keep_caps.is_empty());
        assert!(spec.hardening.no_new_privileges);
        assert_eq!(spec.network, "net");
        assert_eq!(spec.alias, "db");
        assert_eq!(spec.name, "git-agent-0123abcd.svc-db.t");
        // A service runs its image's program, not the task's code: the engine's default.
        assert_eq!(spec.oci_runtime, None);
        assert!(is_service(&spec.labels));
    }
}
