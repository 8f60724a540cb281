//! A [`Runtime`] without a container engine, for tests: orchestration, interruption and
//! crash-point tests run in seconds against it. Compiled only with the `local-runtime` cargo
//! feature (off by default, so a shipped binary does not have it) and used only when the
//! environment also asks for it (`GIT_AGENT_RUNTIME=local`, see [`super::select`]).
//!
//! It owns a root directory (`GIT_AGENT_LOCAL_RUNTIME_DIR`) and nothing else:
//! - volumes are directories (`volumes/<name>/data`, labels beside them);
//! - networks are records (`networks/<name>.json`): nothing is connected to anything;
//! - an image is a name: a build records its context (`images/<id>/context`), nothing runs;
//! - a container is a record (`containers/<name>/record.json`) plus, for task-like
//!   containers, host processes: the main command runs under a small `sh` wrapper that
//!   writes its output to `log` and its exit status to `exit`, in a process group of its
//!   own, so it outlives the command that started it (as a container outlives `docker run`)
//!   and `stop` can signal all of it. An exec is a host process too, with stdin and stdout
//!   streamed and its exit status returned.
//!
//! Container paths are mapped onto directories: the workspace, home and helper-state mounts,
//! and the sandbox helper and guards recorded from the image's build context. The helper is
//! told its places through `GIT_AGENT_WS`, `GIT_AGENT_STATE` and `GIT_AGENT_TMP`; any other
//! argument word naming a mounted path is rewritten to the directory. The gateway and the
//! disk warden run no process here: the gateway's helper commands (`ready`, `policy`,
//! `reload`) are answered from its uploaded files, and a warden only follows its task's state.
//!
//! What it honours of a spec, as every backend must (see `tests/it/conformance.rs`): the
//! command, environment and working directory, labels, volumes, and read-only mounts (a
//! process sees them through a read-only bind mount in a mount namespace of its own). The
//! spec's user too: a process runs as that user when the runtime runs as root, and a spec
//! whose user the runtime cannot be (it runs as another, unprivileged user) is refused, as is a
//! read-only mount it cannot make, rather than run as someone else or writable.
//!
//! It must never pretend to isolate ([`Isolation::HostProcesses`]): everything else of a
//! [`super::Hardening`] (capabilities, no new privileges, read-only root, limits) is not
//! enforced, processes see the host's network and file system. It must not be reachable from a
//! default build.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    CommitSpec, CompanionSpec, ContainerState, DoorSpec, EngineError, EngineErrorKind, ExecOutcome,
    GatewaySpec, ImageConfig, ImageInfo, ImageUse, Inventory, Isolation, LABEL_TASK, Listed,
    ObjectKind, OutputTooLarge, Owned, Runtime, SandboxSpec, StepSpec, Terminal, Upload, UserId,
    WardenSpec,
};
use crate::error::Hint;

/// The environment variable naming the local runtime's root directory.
pub const DIR_ENV: &str = "GIT_AGENT_LOCAL_RUNTIME_DIR";

const STDERR_KEEP: usize = 64 * 1024;

/// Where the image puts the sandbox helper, and its guards (see dockerfiles/final.dockerfile),
/// with the file or directory of the build context that holds each.
const IMAGE_FILES: &[(&str, &str)] = &[
    ("/usr/local/bin/git-agent-sandbox", "git-agent-sandbox"),
    ("/usr/local/lib/git-agent/hooks", "hooks"),
    ("/usr/local/lib/git-agent/readonly-bin", "readonly-bin"),
];
const GATEWAY_HELPER: &str = "/usr/local/bin/git-agent-gateway";
const GATEWAY_CONF: &str = "/etc/git-agent-gateway";
const WORKSPACE: &str = "/workspace";
const STATE: &str = "/opt/git-agent";

/// The main process's wrapper (`$1` the container's directory, then the command): the
/// command's output goes to the log, its exit status to `exit` once it has ended. A TERM
/// (a stop) is passed on to the command, which decides how it ends.
const WRAPPER: &str = r#"dir="$1"; shift
"$@" </dev/null >>"$dir/log" 2>&1 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  if wait "$child"; then status=0; else status=$?; fi
  kill -0 "$child" 2>/dev/null || break
done
echo "$status" > "$dir/exit.tmp" && mv "$dir/exit.tmp" "$dir/exit""#;

/// What went wrong in the local runtime itself (engine-like failures, such as a missing
/// object or a taken name, are [`EngineError`]s as the Docker runtime reports them).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the local runtime needs {DIR_ENV} (a directory for its objects)")]
    NoRoot,
    #[error("cannot {what} in the local runtime ({path})")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local runtime's record {path} is damaged")]
    BadRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the local runtime has no terminals: {0} needs a container engine")]
    NoTerminal(&'static str),
    #[error(
        "the local runtime cannot run container {name} as user {wanted}: it runs as {running}, which can be no other user"
    )]
    CannotBeUser {
        name: String,
        wanted: UserId,
        running: UserId,
    },
    #[error(
        "the local runtime cannot mount volume {volume} read-only in container {name}: that needs root"
    )]
    CannotMountReadOnly { name: String, volume: String },
    #[error(
        "the local runtime cannot run a container under the OCI runtime {0}: it runs processes on the host, under no OCI runtime"
    )]
    NoOciRuntime(String),
}

impl LocalError {
    fn hint(&self) -> Option<&'static str> {
        match self {
            LocalError::NoRoot => {
                Some("set GIT_AGENT_LOCAL_RUNTIME_DIR, or unset GIT_AGENT_RUNTIME to use Docker")
            }
            LocalError::NoTerminal(_) => Some("unset GIT_AGENT_RUNTIME to use Docker"),
            LocalError::NoOciRuntime(_) => Some(
                "unset GIT_AGENT_RUNTIME to use Docker, or unset agent.ociRuntime: git config --unset agent.ociRuntime",
            ),
            LocalError::CannotBeUser { .. } | LocalError::CannotMountReadOnly { .. } => Some(
                "run the tests as root (the local runtime then runs each process as its spec's user), or unset GIT_AGENT_RUNTIME to use Docker",
            ),
            _ => None,
        }
    }

    /// As an error, with its hint where it has one (found by [`crate::error::find_hint`]).
    fn into_error(self) -> anyhow::Error {
        match self.hint() {
            Some(hint) => {
                let message = self.to_string();
                anyhow::Error::new(self).context(Hint {
                    message,
                    hint: hint.into(),
                })
            }
            None => anyhow::Error::new(self),
        }
    }
}

fn io(what: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> anyhow::Error {
    let what = what.into();
    let path = path.to_path_buf();
    move |source| LocalError::Io { what, path, source }.into_error()
}

fn no_oci_runtimes(asked: &str) -> anyhow::Error {
    LocalError::NoOciRuntime(asked.to_string()).into_error()
}

fn not_found(what: &str, name: &str) -> anyhow::Error {
    anyhow::Error::new(EngineError::new(
        EngineErrorKind::NotFound,
        Some(404),
        format!("no such {what}: {name}"),
    ))
}

/// The file that claims a subnet among the network records (not a `.json`, so never listed
/// as a network).
fn subnet_claim(subnet: &str) -> String {
    format!("subnet-{}.claim", subnet.replace(['.', '/'], "_"))
}

/// The same wording and hint as the Docker runtime's for a name that is taken.
fn name_taken(what: &str, name: &str) -> anyhow::Error {
    anyhow::Error::new(EngineError::new(
        EngineErrorKind::Conflict,
        Some(409),
        format!("{what} {name} already exists"),
    ))
    .context(Hint {
        message: format!(
            "cannot create {what} {name}: one of that name already exists or is being removed (another git-agent command may be working on the same task)"
        ),
        hint: "let the other command finish, then run this one again; `git agent doctor` lists objects left behind and `git agent purge <task>` removes a task's".into(),
    })
}

fn in_use(what: &str, name: &str) -> anyhow::Error {
    anyhow::Error::new(EngineError::new(
        EngineErrorKind::Conflict,
        Some(409),
        format!("{what} {name} is in use"),
    ))
    .context(Hint {
        message: format!("cannot remove {what} {name}: a container still uses it"),
        hint: "`git agent doctor` lists what is left of each task; `git agent purge <task>` removes a task's container before its volumes and network".into(),
    })
}

fn not_running(id: &str) -> anyhow::Error {
    anyhow::Error::new(EngineError::new(
        EngineErrorKind::Conflict,
        Some(409),
        format!("container {id} is not running"),
    ))
    .context(Hint {
        message: format!("cannot run a command in container {id}: it is not running"),
        hint: "see the task's state with `git agent status <task>`; `git agent restart <task>` starts it again".into(),
    })
}

/// What a container is for, which decides what runs in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
enum Role {
    /// A task's container (or a reader, shell or draft container): its command runs.
    Task,
    /// A gateway: no process; its helper's commands are answered from its files.
    Gateway,
    /// A disk warden: no process; it runs while its task does.
    Warden { task: String },
    /// A build-step container: no process; steps are not run.
    Step,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContainerRecord {
    id: String,
    name: String,
    role: Role,
    image: String,
    cmd: Vec<String>,
    env: Vec<String>,
    labels: HashMap<String, String>,
    /// Container path -> host path, longest container path first.
    mounts: Vec<(String, PathBuf)>,
    volumes: Vec<String>,
    networks: Vec<String>,
    /// Where processes start (a container path).
    #[serde(default = "workspace")]
    working_dir: String,
    /// The user processes switch to; `None`: the runtime's own (the spec's user is it).
    #[serde(default)]
    run_as: Option<(u32, u32)>,
    /// Host directories processes see read-only.
    #[serde(default)]
    read_only: Vec<PathBuf>,
}

fn workspace() -> String {
    WORKSPACE.to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetworkRecord {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    internal: bool,
    /// The IPv4 range it was given (`a.b.c.d/n`), if it was given one.
    #[serde(default)]
    subnet: Option<String>,
}

/// The engine-less runtime (see the module doc).
pub struct LocalRuntime {
    root: PathBuf,
}

impl LocalRuntime {
    /// The runtime whose objects live under `GIT_AGENT_LOCAL_RUNTIME_DIR`.
    pub fn from_env() -> Result<LocalRuntime> {
        match std::env::var_os(DIR_ENV) {
            Some(dir) if !dir.is_empty() => LocalRuntime::at(PathBuf::from(dir)),
            _ => Err(LocalError::NoRoot.into_error()),
        }
    }

    /// The runtime whose objects live under `root` (created when missing).
    pub fn at(root: PathBuf) -> Result<LocalRuntime> {
        for sub in ["containers", "volumes", "networks", "images", "tags"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io("create a directory", &dir))?;
        }
        Ok(LocalRuntime { root })
    }

    fn container_dir(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }

    /// The record of a container named (or with id) `name`, with its directory.
    fn find(&self, name: &str) -> Result<Option<(PathBuf, ContainerRecord)>> {
        if valid_name(name) {
            let dir = self.container_dir(name);
            if let Some(rec) = read_json::<ContainerRecord>(&dir.join("record.json"))? {
                return Ok(Some((dir, rec)));
            }
        }
        Ok(self.containers()?.into_iter().find(|(_, r)| r.id == name))
    }

    fn get(&self, name: &str) -> Result<(PathBuf, ContainerRecord)> {
        self.find(name)?.ok_or_else(|| not_found("container", name))
    }

    fn containers(&self) -> Result<Vec<(PathBuf, ContainerRecord)>> {
        let mut out = Vec::new();
        for dir in subdirs(&self.root.join("containers"))? {
            if let Some(rec) = read_json::<ContainerRecord>(&dir.join("record.json"))? {
                out.push((dir, rec));
            }
        }
        Ok(out)
    }

    fn volume_dir(&self, name: &str) -> Result<PathBuf> {
        if !valid_name(name) {
            bail!("bad volume name {name:?}");
        }
        Ok(self.root.join("volumes").join(name))
    }

    /// A volume's data directory, creating the volume (labelled `labels`) when it is not
    /// there; an existing one is handed back as it is, as an engine does. Made under a hidden
    /// name and renamed into place, so it never exists without its labels.
    fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<PathBuf> {
        let dir = self.volume_dir(name)?;
        let data = dir.join("data");
        if data.is_dir() {
            return Ok(data);
        }
        let tmp = self
            .root
            .join("volumes")
            .join(format!(".new.{}", new_id(name)));
        std::fs::create_dir_all(tmp.join("data")).map_err(io("create a volume", &tmp))?;
        write_json(&tmp.join("labels.json"), labels)?;
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another request made it first: that one stands.
            std::fs::remove_dir_all(&tmp).ok();
        }
        if !data.is_dir() {
            bail!("cannot create volume {name} in the local runtime");
        }
        Ok(data)
    }

    fn volumes(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        let mut out = Vec::new();
        for dir in subdirs(&self.root.join("volumes"))? {
            let name = file_name(&dir);
            let labels = read_json(&dir.join("labels.json"))?.unwrap_or_default();
            out.push((name, labels));
        }
        Ok(out)
    }

    fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let dir = self.root.join("networks");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("list networks", &dir))? {
            let path = entry.map_err(io("list networks", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(n) = read_json::<NetworkRecord>(&path)?
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        Ok(self
            .networks()?
            .into_iter()
            .find(|n| n.name == name || n.id == name))
    }

    /// Take `subnet` for network `name`, or refuse it (HTTP 403, as Docker does) when it is
    /// not an IPv4 subnet or overlaps another network's. Two creations in flight cannot both
    /// take one subnet: each claims it with a file only one can create.
    fn claim_subnet(&self, name: &str, subnet: &str) -> Result<()> {
        let refuse = |why: String| {
            anyhow::Error::new(EngineError::new(EngineErrorKind::Conflict, Some(403), why))
        };
        let Some(wanted) = super::subnet::Ipv4Net::parse(subnet) else {
            return Err(refuse(format!(
                "invalid subnet {subnet:?} for network {name}"
            )));
        };
        let overlaps = self.networks()?.into_iter().any(|n| {
            n.subnet
                .as_deref()
                .and_then(super::subnet::Ipv4Net::parse_lenient)
                .is_some_and(|s| s.overlaps(&wanted))
        });
        let claim = self.root.join("networks").join(subnet_claim(subnet));
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim);
        match claimed {
            Ok(_) if !overlaps => Ok(()),
            Ok(_) => {
                std::fs::remove_file(&claim).ok();
                Err(refuse(
                    "Pool overlaps with other one on this address space".into(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(refuse(
                "Pool overlaps with other one on this address space".into(),
            )),
            Err(e) => Err(io("claim a subnet", &claim)(e)),
        }
    }

    /// A network a container may join: one of the engine's own, or one created here.
    fn check_network(&self, name: &str) -> Result<()> {
        if matches!(name, "none" | "bridge" | "host") || self.network(name)?.is_some() {
            return Ok(());
        }
        Err(not_found("network", name))
    }

    /// The id of an image given by id or tag.
    fn resolve_image(&self, image: &str) -> Result<Option<String>> {
        if let Some(hex) = image.strip_prefix("sha256:") {
            return Ok(self
                .root
                .join("images")
                .join(hex)
                .is_dir()
                .then(|| image.to_string()));
        }
        let tag = self.root.join("tags").join(hex_digest(image.as_bytes()));
        match std::fs::read_to_string(&tag) {
            Ok(id) => Ok(Some(id.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read an image tag", &tag)(e)),
        }
    }

    /// Every tag with a recorded name, with the id it points at.
    fn tags(&self) -> Result<Vec<(String, String)>> {
        let dir = self.root.join("tags");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list image tags", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(io("list image tags", &dir))?.path();
            if path.extension().is_none_or(|e| e != "name") {
                continue;
            }
            let (Ok(tag), Ok(id)) = (
                std::fs::read_to_string(&path),
                std::fs::read_to_string(path.with_extension("")),
            ) else {
                continue;
            };
            out.push((tag, id.trim().to_string()));
        }
        out.sort();
        Ok(out)
    }

    fn image_context(&self, image: &str) -> Result<PathBuf> {
        let id = self
            .resolve_image(image)?
            .ok_or_else(|| not_found("image", image))?;
        let hex = id.trim_start_matches("sha256:");
        Ok(self.root.join("images").join(hex).join("context"))
    }

    /// Make a container's directory and record; a taken name is a conflict. The directory is
    /// made whole under a hidden name (`prepare` fills it in) and then renamed into place, so
    /// a container is there complete or not at all, whenever its creator dies.
    fn create_record(
        &self,
        rec: &ContainerRecord,
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        if !valid_name(&rec.name) {
            bail!("bad container name {:?}", rec.name);
        }
        let dir = self.container_dir(&rec.name);
        if dir.exists() {
            return Err(name_taken("container", &rec.name));
        }
        let tmp = self
            .root
            .join("containers")
            .join(format!(".new.{}", rec.id));
        let made = (|| {
            for sub in ["tmp", "fs", "execs"] {
                let d = tmp.join(sub);
                std::fs::create_dir_all(&d).map_err(io("create a container", &d))?;
            }
            write_json(&tmp.join("record.json"), rec)?;
            prepare(&tmp)
        })();
        if let Err(e) = made {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e);
        }
        // rename(2) onto an existing container (never empty) fails: the name is taken.
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            std::fs::remove_dir_all(&tmp).ok();
            if dir.exists() {
                return Err(name_taken("container", &rec.name));
            }
            return Err(io("create a container", &dir)(e));
        }
        Ok(dir)
    }

    fn plain_record(
        &self,
        name: &str,
        role: Role,
        image: &str,
        labels: &HashMap<String, String>,
        networks: Vec<String>,
    ) -> Result<ContainerRecord> {
        if self.resolve_image(image)?.is_none() {
            return Err(not_found("image", image));
        }
        for n in &networks {
            self.check_network(n)?;
        }
        Ok(ContainerRecord {
            id: new_id(name),
            name: name.to_string(),
            role,
            image: image.to_string(),
            cmd: vec![],
            env: vec![],
            labels: labels.clone(),
            mounts: vec![],
            volumes: vec![],
            networks,
            working_dir: "/".into(),
            run_as: None,
            read_only: vec![],
        })
    }

    fn host_path(dir: &Path, rec: &ContainerRecord, path: &str) -> PathBuf {
        for (target, host) in &rec.mounts {
            if let Some(rest) = path.strip_prefix(target.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return host.join(rest.trim_start_matches('/'));
            }
        }
        dir.join("fs").join(path.trim_start_matches('/'))
    }

    /// The environment of a process in the container: a plain PATH, the container's own
    /// variables, `extra`, and where its mapped places are.
    fn process_env(dir: &Path, rec: &ContainerRecord, extra: &[String]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("GIT_AGENT_SANDBOX".into(), "1".into()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ];
        for kv in rec.env.iter().chain(extra) {
            if let Some((k, v)) = kv.split_once('=') {
                env.retain(|(key, _)| key != k);
                env.push((k.to_string(), map_paths(&rec.mounts, v)));
            }
        }
        let tmp = dir.join("tmp").display().to_string();
        let place = |target: &str| Self::host_path(dir, rec, target).display().to_string();
        let home = rec
            .mounts
            .iter()
            .find(|(t, _)| t.starts_with("/home/") || t == "/root")
            .map(|(_, h)| h.display().to_string())
            .unwrap_or_else(|| dir.join("fs").display().to_string());
        for (k, v) in [
            ("HOME", home),
            ("TMPDIR", tmp.clone()),
            ("GIT_AGENT_TMP", tmp),
            ("GIT_AGENT_WS", place(WORKSPACE)),
            ("GIT_AGENT_STATE", place(STATE)),
            // Its "containers" cannot reach a gateway by name: the helper waits for `go`.
            ("GIT_AGENT_LOCAL_RUNTIME", "1".to_string()),
        ] {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        }
        env
    }

    /// Answer the gateway helper's commands from the gateway's uploaded files.
    fn gateway_helper(
        dir: &Path,
        rec: &ContainerRecord,
        cmd: &[String],
    ) -> (i64, Vec<u8>, Vec<u8>) {
        let conf = Self::host_path(dir, rec, GATEWAY_CONF);
        let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
        match words.as_slice() {
            [GATEWAY_HELPER, "ready"] => (0, vec![], vec![]),
            [GATEWAY_HELPER, "policy"] => match std::fs::read(conf.join("policy.json")) {
                Ok(p) => (0, format!("{}\n", hex_digest(&p)).into_bytes(), vec![]),
                Err(e) => (1, vec![], format!("no policy: {e}\n").into_bytes()),
            },
            [GATEWAY_HELPER, "reload", digest] => {
                let new = conf.join(format!("policy.json.{digest}"));
                match std::fs::read(&new) {
                    Ok(p) if hex_digest(&p) == *digest => {
                        match std::fs::rename(&new, conf.join("policy.json")) {
                            Ok(()) => (0, vec![], vec![]),
                            Err(e) => (
                                1,
                                vec![],
                                format!("cannot install the policy: {e}\n").into_bytes(),
                            ),
                        }
                    }
                    Ok(_) => (
                        1,
                        vec![],
                        b"the uploaded policy does not match its digest\n".to_vec(),
                    ),
                    Err(e) => (1, vec![], format!("no uploaded policy: {e}\n").into_bytes()),
                }
            }
            _ => (
                127,
                vec![],
                b"the local runtime's gateway runs only its helper's ready, policy and reload\n"
                    .to_vec(),
            ),
        }
    }

    fn state_of(&self, dir: &Path, rec: &ContainerRecord) -> Result<ContainerState> {
        let exit = read_exit(dir);
        match &rec.role {
            Role::Task => {
                let Some((pid, start)) = read_pid(dir) else {
                    return Ok(match exit {
                        Some(code) => ContainerState::Exited(code),
                        None => ContainerState::Created,
                    });
                };
                if alive(pid, start) {
                    return Ok(ContainerState::Running);
                }
                // The main process ended: the rest of the container ends with it. Only once:
                // later, its pid may be another process's.
                if !dir.join("reaped").exists() {
                    kill_group(pid, libc::SIGKILL);
                    std::fs::write(dir.join("reaped"), b"").ok();
                }
                Ok(ContainerState::Exited(read_exit(dir).unwrap_or(137)))
            }
            Role::Gateway | Role::Step => Ok(if dir.join("running").exists() {
                ContainerState::Running
            } else {
                match exit {
                    Some(code) => ContainerState::Exited(code),
                    None => ContainerState::Created,
                }
            }),
            Role::Warden { task } => {
                if !dir.join("running").exists() {
                    return Ok(match exit {
                        Some(code) => ContainerState::Exited(code),
                        None => ContainerState::Created,
                    });
                }
                let task_runs = match self.find(task)? {
                    Some((d, r)) => self.state_of(&d, &r)? == ContainerState::Running,
                    None => false,
                };
                Ok(if task_runs {
                    ContainerState::Running
                } else {
                    ContainerState::Exited(0)
                })
            }
        }
    }

    /// Stop a container's processes: TERM to its main process group (the wrapper passes it
    /// on), KILL to everything of it once `timeout` has passed.
    async fn stop_dir(&self, dir: &Path, rec: &ContainerRecord, timeout: Duration) -> Result<()> {
        match rec.role {
            Role::Task => {
                if let Some((pid, start)) = read_pid(dir)
                    && alive(pid, start)
                {
                    kill_group(pid, libc::SIGTERM);
                    let deadline = std::time::Instant::now() + timeout;
                    while alive(pid, start) && std::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    kill_group(pid, libc::SIGKILL);
                    while alive(pid, start) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                kill_execs(dir);
            }
            _ => {
                if dir.join("running").exists() {
                    write_file(&dir.join("exit"), b"0\n")?;
                    std::fs::remove_file(dir.join("running")).ok();
                }
            }
        }
        Ok(())
    }

    /// Kill every process of every container under `root` (a test's cleanup). Errors are
    /// ignored: it runs where nothing can be reported.
    pub fn kill_all(root: &Path) {
        let Ok(dirs) = subdirs(&root.join("containers")) else {
            return;
        };
        for dir in dirs {
            if let Some((pid, start)) = read_pid(&dir)
                && alive(pid, start)
            {
                kill_group(pid, libc::SIGKILL);
            }
            kill_execs(&dir);
        }
    }

    async fn run_exec<R, W>(
        dir: &Path,
        rec: &ContainerRecord,
        cmd: &[String],
        env: &[String],
        stdin: Option<R>,
        stdout: &mut W,
        limit: u64,
    ) -> Result<ExecOutcome>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let argv: Vec<String> = cmd.iter().map(|w| map_paths(&rec.mounts, w)).collect();
        let Some((program, args)) = argv.split_first() else {
            bail!("an exec needs a command");
        };
        let cwd = Self::host_path(dir, rec, &rec.working_dir);
        let confine = confinement(rec, &cwd)?;
        let mut command = tokio::process::Command::new(program);
        // SAFETY: the closure makes system calls only (see `confinement`).
        unsafe {
            command.pre_exec(confine);
        }
        command
            .args(args)
            .env_clear()
            .envs(Self::process_env(dir, rec, env))
            .current_dir(&cwd)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                // What the engine says when an exec cannot start (the command is not in
                // the image, or cannot run): 126, as a shell says of a command it cannot run.
                return Ok(ExecOutcome {
                    exit_code: 126,
                    stderr: format!("cannot run {}: {e}\n", cmd[0]).into_bytes(),
                    stdout_len: 0,
                });
            }
        };
        let pid = child.id().unwrap_or(0);
        let marker = dir.join("execs").join(pid.to_string());
        let started = start_time(pid).unwrap_or(0);
        std::fs::write(&marker, started.to_string()).ok();
        let mut input = child.stdin.take();
        let mut output = child.stdout.take().expect("stdout was piped");
        let mut errors = child.stderr.take().expect("stderr was piped");
        let feed = async move {
            if let (Some(mut r), Some(w)) = (stdin, input.as_mut()) {
                tokio::io::copy(&mut r, w).await?;
            }
            // The exec sees EOF on its stdin once the pipe is closed.
            drop(input);
            Ok::<_, std::io::Error>(())
        };
        let read = async {
            let mut buf = vec![0u8; 64 * 1024];
            let mut written = 0u64;
            loop {
                let n = output.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                written += n as u64;
                if written > limit {
                    kill_group(pid, libc::SIGKILL);
                    return Err(anyhow::Error::new(OutputTooLarge { limit }));
                }
                stdout.write_all(&buf[..n]).await?;
            }
            stdout.flush().await?;
            Ok(written)
        };
        let drain = async {
            let mut kept = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = errors.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        };
        let (fed, read, stderr) = tokio::join!(feed, read, drain);
        let status = child.wait().await;
        std::fs::remove_file(&marker).ok();
        let written = read?;
        let exit_code = exit_code(status.context("cannot wait for an exec")?);
        if exit_code == 0 {
            fed.context("could not send data into the sandbox")?;
        }
        Ok(ExecOutcome {
            exit_code,
            stderr,
            stdout_len: written,
        })
    }
}

impl Runtime for LocalRuntime {
    fn isolation(&self) -> Isolation {
        Isolation::HostProcesses
    }

    async fn ping(&self) -> Result<String> {
        Ok(format!(
            "local runtime in {} (host processes, no isolation)",
            self.root.display()
        ))
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>> {
        self.resolve_image(tag)
    }

    async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &HashMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String> {
        let hex = hex_digest(&context);
        let image = self.root.join("images").join(&hex);
        if !image.is_dir() {
            let tmp = self
                .root
                .join("images")
                .join(format!(".{hex}.{}", std::process::id()));
            std::fs::create_dir_all(tmp.join("context")).map_err(io("record an image", &tmp))?;
            tar::Archive::new(context.as_slice())
                .unpack(tmp.join("context"))
                .map_err(io("unpack a build context", &tmp))?;
            write_json(&tmp.join("labels.json"), labels)?;
            if let Err(e) = std::fs::rename(&tmp, &image) {
                std::fs::remove_dir_all(&tmp).ok();
                if !image.is_dir() {
                    return Err(io("record an image", &image)(e));
                }
            }
        }
        let id = format!("sha256:{hex}");
        let tag_file = self.root.join("tags").join(hex_digest(tag.as_bytes()));
        // The tag's name beside it, so images can be listed by tag.
        write_file(&tag_file.with_extension("name"), tag.as_bytes())?;
        write_file(&tag_file, id.as_bytes())?;
        progress(&format!(
            "local runtime: recorded {tag} as {id} (nothing is built)\n"
        ));
        Ok(id)
    }

    async fn image_config(&self, image: &str) -> Result<ImageConfig> {
        self.image_context(image)?;
        Ok(ImageConfig::default())
    }

    async fn create_step_container(&self, spec: &StepSpec) -> Result<String> {
        let rec = self.plain_record(
            &spec.name,
            Role::Step,
            &spec.image,
            &spec.labels,
            vec![spec.network.clone()],
        )?;
        self.create_record(&rec, |_| Ok(()))?;
        Ok(rec.id)
    }

    async fn exec_step(
        &self,
        id: &str,
        cmd: &[String],
        _env: &[String],
        _workdir: &str,
        output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<i64> {
        let (dir, rec) = self.get(id)?;
        if self.state_of(&dir, &rec)? != ContainerState::Running {
            return Err(not_running(id));
        }
        // Build steps run as root in a real engine: never on this host.
        output(format!("local runtime: build step not run: {}\n", cmd.join(" ")).as_bytes());
        Ok(0)
    }

    async fn commit(&self, spec: &CommitSpec) -> Result<String> {
        let (_, rec) = self.get(&spec.container)?;
        // Nothing ran in the step container: the image is the one it started from.
        self.resolve_image(&rec.image)?
            .ok_or_else(|| not_found("image", &rec.image))
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
        subnet: Option<&str>,
    ) -> Result<String> {
        if !valid_name(name) {
            bail!("bad network name {name:?}");
        }
        if let Some(s) = subnet {
            self.claim_subnet(name, s)?;
        }
        let path = self.root.join("networks").join(format!("{name}.json"));
        let rec = NetworkRecord {
            id: new_id(name),
            name: name.to_string(),
            labels: labels.clone(),
            internal,
            subnet: subnet.map(str::to_string),
        };
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                if let Some(s) = subnet {
                    let claim = self.root.join("networks").join(subnet_claim(s));
                    std::fs::remove_file(claim).ok();
                }
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return Err(name_taken("network", name));
                }
                return Err(io("create a network", &path)(e));
            }
        };
        file.write_all(&serde_json::to_vec(&rec)?)
            .map_err(io("create a network", &path))?;
        Ok(rec.id)
    }

    async fn network_exists(&self, name: &str) -> Result<bool> {
        Ok(self.network(name)?.is_some())
    }

    async fn network_subnets(&self) -> Result<Vec<String>> {
        Ok(self
            .networks()?
            .into_iter()
            .filter_map(|n| n.subnet)
            .collect())
    }

    async fn create_gateway(&self, spec: &GatewaySpec) -> Result<String> {
        let rec = self.plain_record(
            &spec.name,
            Role::Gateway,
            &spec.image,
            &spec.labels,
            vec![spec.outer.clone()],
        )?;
        self.create_record(&rec, |_| Ok(()))?;
        Ok(rec.id)
    }

    async fn attach_gateway(&self, id: &str, spec: &GatewaySpec) -> Result<()> {
        self.check_network(&spec.inner)?;
        let (dir, mut rec) = self.get(id)?;
        if !rec.networks.contains(&spec.inner) {
            rec.networks.push(spec.inner.clone());
        }
        write_json(&dir.join("record.json"), &rec)
    }

    async fn create_warden(&self, spec: &WardenSpec) -> Result<String> {
        let (_, task) = self.get(&spec.task)?;
        let mut rec = self.plain_record(
            &spec.name,
            Role::Warden { task: task.name },
            &spec.image,
            &spec.labels,
            vec![],
        )?;
        rec.volumes = spec.mounts.iter().map(|m| m.volume.clone()).collect();
        self.create_record(&rec, |_| Ok(()))?;
        Ok(rec.id)
    }

    async fn create_companion(&self, spec: &CompanionSpec) -> Result<String> {
        bail!(
            "the local runtime runs no containers beside a task ({} needs a container engine)",
            spec.name
        )
    }

    async fn create_door(&self, spec: &DoorSpec) -> Result<String> {
        bail!(
            "the local runtime publishes no ports ({} needs a container engine)",
            spec.name
        )
    }

    async fn upload(&self, id: &str, dir: &str, files: &[Upload]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let (cdir, rec) = self.get(id)?;
        let target = Self::host_path(&cdir, &rec, dir);
        std::fs::create_dir_all(&target).map_err(io("upload files", &target))?;
        for f in files {
            let path = target.join(&f.name);
            write_file(&path, &f.data)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
                .map_err(io("upload files", &path))?;
            // Owned as asked where the runtime may give files away (as root); otherwise
            // every file is the one user's there is.
            if invoker().uid == 0 {
                let owner = u32::try_from(f.owner).context("an upload's owner")?;
                chown(&path, (owner, owner))?;
            }
        }
        Ok(())
    }

    async fn timestamped_log(&self, id: &str, limit: usize) -> Result<Vec<u8>> {
        let (dir, _) = self.get(id)?;
        let path = dir.join("log");
        let (log, stamp) = match std::fs::read(&path) {
            Ok(l) => {
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                (l, rfc3339(modified))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io("read a log", &path)(e)),
        };
        let mut out = Vec::new();
        for line in log.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
            out.extend_from_slice(line);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        self.ensure_volume(name, labels).map(|_| ())
    }

    async fn create_container(&self, spec: &SandboxSpec) -> Result<String> {
        if let Some(runtime) = &spec.oci_runtime {
            return Err(no_oci_runtimes(runtime));
        }
        let context = self.image_context(&spec.image)?;
        if let Some(network) = &spec.network {
            self.check_network(network)?;
        }
        let dir = self.container_dir(&spec.name);
        let home = format!("/home/{}", crate::image::TASK_USER);
        // Processes run as the spec's user, or the spec is refused: never as another.
        let running = invoker();
        let wanted = spec.hardening.user;
        let run_as = if wanted == running {
            None
        } else if running.uid == 0 {
            Some((wanted.uid, wanted.gid))
        } else {
            return Err(LocalError::CannotBeUser {
                name: spec.name.clone(),
                wanted,
                running,
            }
            .into_error());
        };
        if let Some(m) = spec.mounts.iter().find(|m| m.read_only)
            && running.uid != 0
        {
            return Err(LocalError::CannotMountReadOnly {
                name: spec.name.clone(),
                volume: m.volume.clone(),
            }
            .into_error());
        }
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        let mut volumes = Vec::new();
        let mut read_only = Vec::new();
        // A volume a container names comes into being with it, as with an engine.
        for m in &spec.mounts {
            volumes.push(m.volume.clone());
            let data = self.ensure_volume(&m.volume, &HashMap::new())?;
            if m.read_only {
                read_only.push(data.clone());
            } else if let Some(owner) = run_as
                && is_empty_dir(&data)
            {
                // A fresh volume takes the owner of the place it is mounted on, as an
                // engine copies it from the image: here, the container's user.
                chown(&data, owner)?;
            }
            mounts.push((m.target.clone(), data));
        }
        // The task user's home and the helper's state live in the container when no
        // volume holds them.
        for (target, own) in [(home.as_str(), "home"), (STATE, "state")] {
            if !spec.mounts.iter().any(|m| m.target == target) {
                mounts.push((target.to_string(), dir.join(own)));
            }
        }
        for (target, source) in IMAGE_FILES {
            let host = context.join(source);
            if host.exists() {
                mounts.push((target.to_string(), host));
            }
        }
        mounts.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        let rec = ContainerRecord {
            id: new_id(&spec.name),
            name: spec.name.clone(),
            role: Role::Task,
            image: spec.image.clone(),
            cmd: spec.cmd.clone(),
            env: spec.env.clone(),
            labels: spec.labels.clone(),
            mounts,
            volumes,
            networks: spec.network.iter().cloned().collect(),
            working_dir: match spec.working_dir.as_str() {
                "" => "/".into(),
                w => w.into(),
            },
            run_as,
            read_only,
        };
        // What the image has in those places, as an engine copies it into a fresh volume:
        // the task user's git identity and the helper's `go` fifo. (The container's own
        // directories are filled in before it is renamed into place.)
        let seed = |tmp: &Path| -> Result<()> {
            let place = |target: &str| {
                let host = Self::host_path(&dir, &rec, target);
                match host.strip_prefix(&dir) {
                    Ok(inside) => tmp.join(inside),
                    Err(_) => host,
                }
            };
            let (home, state, work) = (place(&home), place(STATE), place(&rec.working_dir));
            for d in [&home, &state, &work] {
                std::fs::create_dir_all(d).map_err(io("create a container", d))?;
            }
            let gitconfig = context.join("gitconfig");
            if gitconfig.is_file() && !home.join(".gitconfig").exists() {
                std::fs::copy(&gitconfig, home.join(".gitconfig"))
                    .map_err(io("create a container", &home))?;
            }
            if !state.join("go").exists() {
                let made = std::process::Command::new("mkfifo")
                    .arg(state.join("go"))
                    .status()
                    .map_err(io("create the helper's fifo", &state))?;
                if !made.success() {
                    bail!("mkfifo {} failed", state.join("go").display());
                }
            }
            // The container's own places are its user's, as is what was seeded.
            if let Some(owner) = rec.run_as {
                for p in [
                    tmp.to_path_buf(),
                    tmp.join("fs"),
                    tmp.join("tmp"),
                    home.clone(),
                    home.join(".gitconfig"),
                    state.clone(),
                    state.join("go"),
                    work,
                ] {
                    if std::fs::symlink_metadata(&p).is_ok() {
                        chown(&p, owner)?;
                    }
                }
            }
            Ok(())
        };
        self.create_record(&rec, seed)?;
        Ok(rec.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let (dir, rec) = self.get(id)?;
        if self.state_of(&dir, &rec)? == ContainerState::Running {
            return Ok(());
        }
        // The last run's pid first: without it the container reads as created, never as a
        // run that ended (whose group would be killed again, see `state_of`).
        for file in ["pid", "exit", "reaped"] {
            std::fs::remove_file(dir.join(file)).ok();
        }
        if rec.role != Role::Task {
            return write_file(&dir.join("running"), b"");
        }
        let argv: Vec<String> = rec.cmd.iter().map(|w| map_paths(&rec.mounts, w)).collect();
        // A container with no workspace mount (the object cache's writer) starts in an
        // empty directory of its own, as an engine gives it an empty working directory.
        let cwd = Self::host_path(&dir, &rec, &rec.working_dir);
        std::fs::create_dir_all(&cwd).map_err(io("start a container", &cwd))?;
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("git-agent-local")
            .arg(&dir)
            .args(&argv)
            .env_clear()
            .envs(Self::process_env(&dir, &rec, &[]))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let confine = confinement(&rec, &cwd)?;
        // SAFETY: the closure makes system calls only (see `confinement`).
        unsafe {
            command.pre_exec(confine);
        }
        let child = command.spawn().map_err(io("start a container", &dir))?;
        let pid = child.id();
        let start = start_time(pid).unwrap_or(0);
        write_file(&dir.join("pid"), format!("{pid} {start}\n").as_bytes())?;
        // Reaped here while this process lives; once it is gone, by whoever inherits it.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(())
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        match self.find(id)? {
            Some((dir, rec)) => self.state_of(&dir, &rec),
            None => Ok(ContainerState::Missing),
        }
    }

    async fn exec_env<R, W>(
        &self,
        id: &str,
        cmd: &[String],
        env: &[String],
        stdin: Option<R>,
        stdout: &mut W,
        limit: u64,
    ) -> Result<ExecOutcome>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let (dir, rec) = self.get(id)?;
        if self.state_of(&dir, &rec)? != ContainerState::Running {
            return Err(not_running(id));
        }
        match rec.role {
            Role::Task => Self::run_exec(&dir, &rec, cmd, env, stdin, stdout, limit).await,
            _ => {
                let (exit_code, out, stderr) = Self::gateway_helper(&dir, &rec, cmd);
                if out.len() as u64 > limit {
                    return Err(anyhow::Error::new(OutputTooLarge { limit }));
                }
                stdout.write_all(&out).await?;
                stdout.flush().await?;
                Ok(ExecOutcome {
                    exit_code,
                    stderr,
                    stdout_len: out.len() as u64,
                })
            }
        }
    }

    async fn exec_interactive(
        &self,
        _id: &str,
        _cmd: &[String],
        _terminal: Terminal,
    ) -> Result<i64> {
        Err(LocalError::NoTerminal("an interactive shell").into_error())
    }

    async fn attach_terminal<F>(&self, _id: &str, _terminal: Terminal, _ready: F) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>> + Send,
    {
        Err(LocalError::NoTerminal("attaching to a task").into_error())
    }

    async fn logs<W>(&self, id: &str, follow: bool, tail: Option<usize>, out: &mut W) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let (dir, rec) = self.get(id)?;
        let path = dir.join("log");
        let read = |from: usize| -> Result<Vec<u8>> {
            match std::fs::read(&path) {
                Ok(b) => Ok(b.get(from..).map(<[u8]>::to_vec).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                Err(e) => Err(io("read a log", &path)(e)),
            }
        };
        let all = read(0)?;
        let start = match tail {
            Some(n) => tail_start(&all, n),
            None => 0,
        };
        out.write_all(&all[start..]).await?;
        out.flush().await?;
        let mut seen = all.len();
        if !follow {
            return Ok(());
        }
        loop {
            let running = self.state_of(&dir, &rec)? == ContainerState::Running;
            let more = read(seen)?;
            seen += more.len();
            out.write_all(&more).await?;
            out.flush().await?;
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        loop {
            let (dir, rec) = self.get(id)?;
            match self.state_of(&dir, &rec)? {
                ContainerState::Running => tokio::time::sleep(Duration::from_millis(50)).await,
                ContainerState::Exited(code) => return Ok(code),
                _ => return Ok(0),
            }
        }
    }

    async fn stop(&self, id: &str, timeout_secs: i32) -> Result<()> {
        let Some((dir, rec)) = self.find(id)? else {
            return Ok(());
        };
        let timeout = Duration::from_secs(timeout_secs.max(0) as u64);
        self.stop_dir(&dir, &rec, timeout).await
    }

    async fn rename(&self, id: &str, _name: &str) -> Result<()> {
        anyhow::bail!("the engine-less runtime cannot rename container {id}")
    }

    /// Its "containers" are processes on the host: nothing is gained by making one ahead.
    fn keeps_spares(&self) -> bool {
        false
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let Some((dir, rec)) = self.find(id)? else {
            return Ok(());
        };
        self.stop_dir(&dir, &rec, Duration::ZERO).await?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove a container", &dir)(e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let dir = self.volume_dir(name)?;
        if !dir.exists() {
            return Ok(());
        }
        if self
            .containers()?
            .iter()
            .any(|(_, r)| r.volumes.iter().any(|v| v == name))
        {
            return Err(in_use("volume", name));
        }
        // Renamed away first, so the name is free at once and no reader sees half of it.
        let gone = self
            .root
            .join("volumes")
            .join(format!(".removed.{}", new_id(name)));
        match std::fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove a volume", &dir)(e)),
        }
        std::fs::remove_dir_all(&gone).map_err(io("remove a volume", &gone))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        let Some(net) = self.network(name)? else {
            return Ok(());
        };
        // As with an engine, only a running container keeps a network in use: a stopped one
        // merely names it (and cannot start again without it).
        for (dir, r) in self.containers()? {
            if r.networks.iter().any(|n| *n == net.name || *n == net.id)
                && matches!(self.state_of(&dir, &r)?, ContainerState::Running)
            {
                return Err(in_use("network", name));
            }
        }
        let path = self
            .root
            .join("networks")
            .join(format!("{}.json", net.name));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove a network", &path)(e)),
        }
        if let Some(s) = &net.subnet {
            let claim = self.root.join("networks").join(subnet_claim(s));
            std::fs::remove_file(&claim).ok();
        }
        Ok(())
    }

    async fn panic_stop_all(&self, only: Option<(&str, &str)>) -> Result<Vec<String>> {
        let mut stopped = Vec::new();
        for (dir, rec) in self.containers()? {
            let wanted = rec.labels.contains_key(LABEL_TASK)
                && only.is_none_or(|(k, v)| rec.labels.get(k).map(String::as_str) == Some(v));
            if wanted && self.state_of(&dir, &rec)? == ContainerState::Running {
                self.stop_dir(&dir, &rec, Duration::ZERO).await?;
                stopped.push(rec.name);
            }
        }
        Ok(stopped)
    }

    async fn labels_of(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>> {
        Ok(match kind {
            ObjectKind::Container => self.find(name)?.map(|(_, r)| r.labels),
            ObjectKind::Volume => self
                .volumes()?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, l)| l),
            ObjectKind::Network => self.network(name)?.map(|n| n.labels),
        })
    }

    async fn containers_with(&self, labels: &[(&str, &str)]) -> Result<Vec<Owned>> {
        let mut out = Vec::new();
        for (dir, rec) in self.containers()? {
            if has_labels(&rec.labels, labels) {
                out.push(Owned {
                    task: rec.labels.get(LABEL_TASK).cloned().unwrap_or_default(),
                    state: self.state_of(&dir, &rec)?,
                    id: rec.id,
                });
            }
        }
        Ok(out)
    }

    async fn inventory(&self, labels: &[(&str, &str)]) -> Result<Inventory> {
        let mut inv = Inventory::default();
        for (dir, rec) in self.containers()? {
            if has_labels(&rec.labels, labels) {
                let state = self.state_of(&dir, &rec)?;
                inv.containers.insert(rec.name, state.clone());
                inv.containers.insert(rec.id, state);
            }
        }
        for n in self.networks()? {
            if has_labels(&n.labels, labels) {
                inv.networks.insert(n.name);
                inv.networks.insert(n.id);
            }
        }
        for (name, l) in self.volumes()? {
            if has_labels(&l, labels) {
                inv.volumes.insert(name);
            }
        }
        Ok(inv)
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
        label: Option<(&str, &str)>,
    ) -> Result<Vec<Listed>> {
        let all: Vec<(String, String, HashMap<String, String>)> = match kind {
            ObjectKind::Container => self
                .containers()?
                .into_iter()
                .map(|(_, r)| (r.id, r.name, r.labels))
                .collect(),
            ObjectKind::Volume => self
                .volumes()?
                .into_iter()
                .map(|(n, l)| (n.clone(), n, l))
                .collect(),
            ObjectKind::Network => self
                .networks()?
                .into_iter()
                .map(|n| (n.id, n.name, n.labels))
                .collect(),
        };
        Ok(all
            .into_iter()
            .filter(|(_, name, labels)| {
                name.starts_with(prefix)
                    || label.is_some_and(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
            })
            .map(|(id, name, labels)| Listed {
                kind,
                id,
                name,
                labels,
            })
            .collect())
    }

    async fn images_labelled(&self, key: &str) -> Result<Vec<ImageInfo>> {
        let mut images: Vec<ImageInfo> = Vec::new();
        for (tag, id) in self.tags()? {
            if let Some(i) = images.iter_mut().find(|i| i.id == id) {
                i.tags.push(tag);
                continue;
            }
            let dir = self
                .root
                .join("images")
                .join(id.trim_start_matches("sha256:"));
            let labels: HashMap<String, String> =
                read_json(&dir.join("labels.json"))?.unwrap_or_default();
            if !labels.contains_key(key) {
                continue;
            }
            let created = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            images.push(ImageInfo {
                size: dir_size(&dir),
                id,
                tags: vec![tag],
                created,
                labels,
            });
        }
        Ok(images)
    }

    async fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let mut uses = Vec::new();
        for (dir, rec) in self.containers()? {
            let Some(image_id) = self.resolve_image(&rec.image)? else {
                continue;
            };
            uses.push(ImageUse {
                image_id,
                running: self.state_of(&dir, &rec)? == ContainerState::Running,
                container: rec.id,
            });
        }
        Ok(uses)
    }

    /// Processes run on the host: there is no OCI runtime to choose.
    async fn oci_runtimes(&self) -> Result<Vec<String>> {
        Err(no_oci_runtimes("any"))
    }

    async fn remove_image_tag(&self, tag: &str) -> Result<bool> {
        let id = self
            .resolve_image(tag)?
            .ok_or_else(|| not_found("image", tag))?;
        let tags = self.tags()?;
        let last = tags.iter().filter(|(_, i)| *i == id).count() <= 1;
        if last {
            // As an engine does: an image a container was made from stays, whatever its state.
            for (_, rec) in self.containers()? {
                if self.resolve_image(&rec.image)?.as_deref() == Some(id.as_str()) {
                    return Err(anyhow::Error::new(EngineError::new(
                        EngineErrorKind::Conflict,
                        Some(409),
                        format!("image {tag} is used by container {}", rec.name),
                    )));
                }
            }
        }
        let tag_file = self.root.join("tags").join(hex_digest(tag.as_bytes()));
        std::fs::remove_file(&tag_file).map_err(io("remove an image tag", &tag_file))?;
        std::fs::remove_file(tag_file.with_extension("name")).ok();
        if last {
            let dir = self
                .root
                .join("images")
                .join(id.trim_start_matches("sha256:"));
            std::fs::remove_dir_all(&dir).map_err(io("remove an image", &dir))?;
        }
        Ok(last)
    }
}

/// The user this process runs as.
fn invoker() -> UserId {
    // SAFETY: geteuid and getegid cannot fail.
    unsafe {
        UserId {
            uid: libc::geteuid(),
            gid: libc::getegid(),
        }
    }
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io("give a file away", path))
}

/// What a process of container `rec` does between fork and exec: see its read-only mounts
/// read-only (bind mounts, remounted read-only, in a mount namespace of its own whose mounts
/// do not propagate to the host), start in `cwd` again (under those mounts), and become the
/// container's user. System calls only: it runs in the forked child.
fn confinement(
    rec: &ContainerRecord,
    cwd: &Path,
) -> Result<impl FnMut() -> std::io::Result<()> + Send + Sync + 'static> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .with_context(|| format!("a path with a NUL byte: {}", p.display()))
    };
    let read_only = rec
        .read_only
        .iter()
        .map(|p| c_path(p))
        .collect::<Result<Vec<_>>>()?;
    let cwd = c_path(cwd)?;
    let run_as = rec.run_as;
    Ok(move || {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls with valid NUL-terminated paths.
        unsafe {
            if !read_only.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for p in &read_only {
                    check(libc::mount(
                        p.as_ptr(),
                        p.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    check(libc::mount(
                        none,
                        p.as_ptr(),
                        none,
                        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
                check(libc::chdir(cwd.as_ptr()))?;
            }
            if let Some((uid, gid)) = run_as {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
        }
        Ok(())
    })
}

fn has_labels(have: &HashMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
}

/// A name that is one plain path component (object names become file names here).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// `word` with every mounted container path in it (at a path boundary) replaced by its
/// directory on the host. `mounts` is longest container path first.
fn map_paths(mounts: &[(String, PathBuf)], word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    'scan: while !rest.is_empty() {
        for (target, host) in mounts {
            if let Some(after) = rest.strip_prefix(target.as_str()) {
                let before_ok = out.chars().last().is_none_or(|c| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
                });
                let after_ok = after
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
                if before_ok && after_ok {
                    out.push_str(&host.display().to_string());
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Where the last `n` lines of `log` start.
fn tail_start(log: &[u8], n: usize) -> usize {
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    if n == 0 { log.len() } else { 0 }
}

fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as i64,
        (None, Some(s)) => 128 + s as i64,
        _ => -1,
    }
}

fn read_exit(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join("exit"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn read_pid(dir: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(dir.join("pid")).ok()?;
    let mut words = text.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// Kill the execs still running in a container (each recorded by pid and start time, so a
/// pid reused since is left alone).
fn kill_execs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("execs")) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let start = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if start != 0 && alive(pid, start) {
            kill_group(pid, libc::SIGKILL);
        }
    }
}

/// The state letter and start time (clock ticks after boot) of process `pid`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Process `pid` runs, and is the one that started at `start` (0: not known).
fn alive(pid: u32, start: u64) -> bool {
    match proc_stat(pid) {
        Some((state, t)) => state != 'Z' && state != 'X' && (start == 0 || t == start),
        None => false,
    }
}

/// Signal the process group led by `pid`.
fn kill_group(pid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn new_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hex_digest(format!("{name}\0{nanos}\0{}", std::process::id()).as_bytes())
}

/// The bytes of the files under `dir` (what an image takes here).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn hex_digest(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The directories in `dir`, leaving out hidden ones (work in progress).
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        if path.is_dir() && !file_name(&path).starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Write a file whole: readers see the old content or the new, never part of it.
fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(".{}.{}.tmp", file_name(path), std::process::id()));
    std::fs::write(&tmp, data).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("write", path))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_file(path, &serde_json::to_vec(value)?)
}

/// A record, or `None` when there is none (a missing file, or one removed meanwhile).
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|source| {
            LocalError::BadRecord {
                path: path.to_path_buf(),
                source,
            }
            .into_error()
        }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Seconds since the epoch as an RFC 3339 UTC time (an engine's log timestamp).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_paths_are_mapped_at_path_boundaries_only() {
        let mounts = vec![
            (
                "/usr/local/bin/git-agent-sandbox".to_string(),
                PathBuf::from("/r/img/git-agent-sandbox"),
            ),
            ("/workspace".to_string(), PathBuf::from("/r/ws")),
        ];
        assert_eq!(map_paths(&mounts, "/workspace"), "/r/ws");
        assert_eq!(
            map_paths(&mounts, "cd /workspace || exit 10; ls /workspace/.git"),
            "cd /r/ws || exit 10; ls /r/ws/.git"
        );
        assert_eq!(map_paths(&mounts, "/workspaces"), "/workspaces");
        assert_eq!(map_paths(&mounts, "/x/workspace"), "/x/workspace");
        assert_eq!(
            map_paths(&mounts, "/usr/local/bin/git-agent-sandbox"),
            "/r/img/git-agent-sandbox"
        );
        assert_eq!(map_paths(&mounts, "naïve /workspace"), "naïve /r/ws");
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(tail_start(b"a\nb\nc\n", 2), 2);
        assert_eq!(tail_start(b"a\nb\nc", 1), 4);
        assert_eq!(tail_start(b"a\nb\n", 5), 0);
        assert_eq!(tail_start(b"a\n", 0), 2);
    }

    #[test]
    fn log_times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400 + 3661),
            "2000-02-29T01:01:01.000000000Z"
        );
    }

    #[test]
    fn names_are_single_path_components() {
        assert!(valid_name("git-agent-0a1b2c3d.task.x_1"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
