//! The container engine seam. Operations talk to a [`Runtime`], chosen in one place
//! ([`select`]): [`docker::DockerRuntime`] (Docker, or Podman through its Docker-compatible
//! API) is the one that sandboxes; the engine-less `local` runtime exists only in test builds
//! (feature `local-runtime`) and confines nothing. Nothing here bind-mounts host paths:
//! workspaces are named volumes, data moves over exec streams.
//!
//! Owns: the trait, the container specs and their [`Hardening`] (everything a backend must
//! enforce, as data), and typed engine failures ([`EngineError`]). Must not: decide policy
//! (which user, capabilities or limits a container gets is the caller's, in `sandbox` and
//! `image`), touch the terminal (interactive sessions get a [`Terminal`] from `cli`), print,
//! or make callers read engine message text. Every backend says what it confines
//! ([`Runtime::isolation`]) and must pass the checks in `tests/it/conformance.rs`: the
//! `contract` always, the `isolation` half when it claims [`Isolation::Confines`].

pub mod address;
pub mod docker;
pub mod engines;
pub mod libpod;
#[cfg(feature = "local-runtime")]
pub mod local;
pub mod select;
pub mod ssh;
pub mod subnet;
pub mod tls;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncWrite};

/// Labels put on every runtime object, so objects can be traced back to their task.
pub const LABEL_TASK: &str = "git-agent.task";
pub const LABEL_REPO: &str = "git-agent.repo";
pub const LABEL_REPO_PATH: &str = "git-agent.repo-path";
/// On a spare task network and its gateway, made ahead for a repository's next spawn (see
/// `sandbox::spare`): the spare's id. The gateway keeps it once a task claims it.
pub const LABEL_SPARE: &str = "git-agent.spare";

/// A numeric user and group. Containers always get one explicitly, so that nothing in the
/// image (`/etc/passwd`, `USER`) decides who their processes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserId {
    pub uid: u32,
    pub gid: u32,
}

impl UserId {
    pub const ROOT: UserId = UserId { uid: 0, gid: 0 };

    /// A user whose group has the same number.
    pub const fn same(id: u32) -> UserId {
        UserId { uid: id, gid: id }
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A writable in-memory file system over `path` (of an otherwise read-only root), mounted
/// `nosuid` and `nodev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub path: String,
    /// Most bytes it holds.
    pub size: u64,
    /// Permission bits of its root directory (e.g. `0o1777`).
    pub mode: u32,
}

/// What a container may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Most processes (threads included) at once.
    pub pids: i64,
    /// Most memory, in bytes.
    pub memory: i64,
    /// CPU time in billionths of a CPU; `None` leaves CPU unlimited.
    pub nano_cpus: Option<i64>,
    /// The engine's record of the container's output is rotated: at most `files` files of
    /// `file_size` bytes each (`None`: the engine's default).
    pub log: Option<LogRotation>,
}

/// How much of a container's output the engine keeps (see [`ResourceLimits::log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub file_size: u64,
    pub files: u32,
}

/// How a container is confined, as data: what every backend must enforce, exactly as given.
/// The caller that builds a spec decides these (the policy lives with the sandbox and image
/// code); a backend translates them and adds nothing and leaves nothing out. A backend that
/// cannot enforce one of them must refuse to create the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Who the container's main process (and every exec that does not say otherwise) runs as.
    pub user: UserId,
    /// The capabilities kept (names as in capabilities(7) without `CAP_`, e.g. `KILL`);
    /// every other one is dropped.
    pub keep_caps: Vec<String>,
    /// No process may gain privileges (setuid binaries, file capabilities).
    pub no_new_privileges: bool,
    /// The root file system is read-only; only mounted volumes and `tmpfs` are writable.
    pub read_only_root: bool,
    /// In-memory file systems (the writable paths of a read-only root).
    pub tmpfs: Vec<Tmpfs>,
    pub limits: ResourceLimits,
    /// A minimal init process reaps orphans and forwards signals to the main process.
    pub init: bool,
}

/// A named volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
}

impl VolumeMount {
    /// A writable mount.
    pub fn new(volume: impl Into<String>, target: impl Into<String>) -> VolumeMount {
        VolumeMount {
            volume: volume.into(),
            target: target.into(),
            read_only: false,
        }
    }
}

/// Everything needed to create a task's container (and the short-lived containers that work
/// on a task's workspace: readers, drafts).
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub name: String,
    pub image: String,
    /// The whole command: the image's entrypoint is not used.
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Volumes mounted; the workspace, home and helper state of the task.
    pub mounts: Vec<VolumeMount>,
    /// Where the command starts.
    pub working_dir: String,
    /// The network the container is on; `None`: no network at all.
    pub network: Option<String>,
    /// Give the main process a terminal with an open stdin (interactive agents).
    pub tty: bool,
    pub hardening: Hardening,
    /// The engine's OCI runtime the container runs under (e.g. gVisor's `runsc`), by name
    /// ([`is_oci_runtime_name`]); `None`: the engine's default.
    pub oci_runtime: Option<String>,
    /// Extra names in the container's /etc/hosts (see [`Hosts`]).
    pub hosts: Hosts,
    /// Its fixed address on `network` (see [`GatewaySpec::address`]); `None`: any.
    pub address: Option<std::net::Ipv4Addr>,
}

/// Names a container finds in its /etc/hosts, with their IPv4 addresses. Every container
/// git-agent puts on an internal network finds the others it talks to (the gateway, the
/// task's services, a preview) this way, at addresses git-agent fixed in the network's
/// subnet: such a network needs no name server, and on Podman it has none (its name server
/// would resolve any name through the host's, a way out around the gateway).
pub type Hosts = Vec<(String, std::net::Ipv4Addr)>;

/// A task's egress gateway: a container on an outer network with a route out and on the
/// task's internal network (under `alias`). Its image (git-agent's own) decides its command.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub inner: String,
    pub outer: String,
    pub alias: String,
    /// A host name under which the container reaches the engine's host, if any.
    pub host_alias: Option<String>,
    pub hardening: Hardening,
    /// Its fixed address on the task's network, when that network's subnet is git-agent's
    /// (the names of the task's containers point there, see [`Hosts`]); `None`: any.
    pub address: Option<std::net::Ipv4Addr>,
}

/// A task's disk warden: a container in the task's PID namespace that measures the task's
/// volumes (mounted read-only) and kills every process of the task once they hold too
/// much (see [`crate::sandbox::warden_command`]). It has no network; it ends with the
/// task's namespace.
#[derive(Debug, Clone)]
pub struct WardenSpec {
    pub name: String,
    /// An image git-agent built from its own files only (the gateway's).
    pub image: String,
    /// The whole command.
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    /// The task's container (its PID namespace is joined).
    pub task: String,
    pub mounts: Vec<VolumeMount>,
    pub hardening: Hardening,
}

/// A container that lives beside a task on the task's internal network, reachable there by
/// a network alias: a preview (the task's workspace mounted read-only, a dev server) or a
/// service the task's tests need (a database). It has no other network and no published
/// ports; a preview is reached from the host only through its [`DoorSpec`].
#[derive(Debug, Clone)]
pub struct CompanionSpec {
    pub name: String,
    pub image: String,
    /// The whole command; `None`: the image's own entrypoint and command.
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub mounts: Vec<VolumeMount>,
    /// Where the command starts; `None`: the image's.
    pub working_dir: Option<String>,
    /// The internal network it joins, and its name there.
    pub network: String,
    pub alias: String,
    pub hardening: Hardening,
    /// The engine's OCI runtime (see [`SandboxSpec::oci_runtime`]): a preview runs the task's
    /// code and so the task's runtime; a service the engine's default.
    pub oci_runtime: Option<String>,
    /// Its fixed address on `network` (see [`GatewaySpec::address`]); `None`: any.
    pub address: Option<std::net::Ipv4Addr>,
    /// Extra names in its /etc/hosts (see [`Hosts`]).
    pub hosts: Hosts,
}

/// The one way into a preview from the host: a relay container (from git-agent's own image)
/// on a `front` network of its own, whose `port` is published on `host_ip:host_port` of the
/// engine's host, and on the preview's `inner` network, where it relays each connection to
/// the preview. Engines do not publish ports of containers on internal networks, so the
/// preview itself never gets one.
#[derive(Debug, Clone)]
pub struct DoorSpec {
    pub name: String,
    pub image: String,
    /// The whole command (the relay).
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    pub front: String,
    pub inner: String,
    pub host_ip: String,
    pub host_port: u16,
    pub port: u16,
    pub hardening: Hardening,
    /// Extra names in its /etc/hosts (see [`Hosts`]).
    pub hosts: Hosts,
}

/// A short-lived container that applies an untrusted build step to an image (see
/// [`crate::image::project`]): no mounts, on an internal network. Its command only waits
/// (in `/`); the steps run as execs, as root.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub hardening: Hardening,
    /// Extra names in its /etc/hosts (see [`Hosts`]).
    pub hosts: Hosts,
    /// Its fixed address on `network` (see [`GatewaySpec::address`]); `None`: any.
    pub address: Option<std::net::Ipv4Addr>,
}

/// The parts of an image's configuration a build carries on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
}

/// An image made from a stopped container, with its configuration set explicitly (the
/// engine fills fields left empty from the container's; see the docker implementation).
#[derive(Debug, Clone)]
pub struct CommitSpec {
    pub container: String,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub labels: HashMap<String, String>,
}

/// A file to upload into a container.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub data: Vec<u8>,
    pub mode: u32,
    /// Owner uid/gid of the file inside the container.
    pub owner: u64,
}

/// The kinds of runtime object a task owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Container,
    Volume,
    Network,
}

/// What the engine says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Missing,
    Created,
    Running,
    Exited(i64),
    Other(String),
}

/// How an exec ended.
#[derive(Debug)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Up to the first 64 KiB of the exec's stderr (untrusted).
    pub stderr: Vec<u8>,
    /// Bytes written to the output sink.
    pub stdout_len: u64,
}

/// The output of an exec grew beyond the permitted size.
#[derive(Debug)]
pub struct OutputTooLarge {
    pub limit: u64,
}

impl std::fmt::Display for OutputTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the sandbox sent more than {} bytes", self.limit)
    }
}

impl std::error::Error for OutputTooLarge {}

/// A runtime object owned by a task, as found by its labels.
#[derive(Debug, Clone)]
pub struct Owned {
    pub task: String,
    pub id: String,
    pub state: ContainerState,
}

/// Every object carrying some labels, from one listing per kind: how `list` learns the
/// state of many tasks' objects without asking about each one.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Container state by name and by id.
    pub containers: HashMap<String, ContainerState>,
    /// Network names and ids.
    pub networks: HashSet<String>,
    /// Volume names.
    pub volumes: HashSet<String>,
}

impl Inventory {
    /// The state of a container named (or with id) `name`; missing when not listed.
    pub fn container(&self, name: &str) -> ContainerState {
        self.containers
            .get(name)
            .cloned()
            .unwrap_or(ContainerState::Missing)
    }
}

/// An image on the engine, as [`Runtime::images_labelled`] lists it.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// The engine's id (`sha256:...`).
    pub id: String,
    /// Its tags (`name:tag`).
    pub tags: Vec<String>,
    /// Its size in bytes.
    pub size: u64,
    /// When it was made (seconds since the Unix epoch).
    pub created: i64,
    pub labels: HashMap<String, String>,
}

/// A container (in any state) and the image it was made from.
#[derive(Debug, Clone)]
pub struct ImageUse {
    /// The image's id (`sha256:...`).
    pub image_id: String,
    pub container: String,
    pub running: bool,
}

/// An object found by [`Runtime::list_objects`]: its kind, id, name and labels. Networks
/// may share a name (Docker does not refuse a second one), so objects are removed by id.
#[derive(Debug, Clone)]
pub struct Listed {
    pub kind: ObjectKind,
    /// The engine's id (a volume's is its name).
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// The user's side of an interactive session. The caller owns the terminal: it puts it in
/// raw mode, reads it and watches its size (see `cli::term::session`); a runtime only moves
/// the bytes and passes the sizes on, and never touches the terminal itself.
pub struct Terminal {
    /// What the user types; the session's stdin stays open until this ends.
    pub input: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// Where the session's output goes.
    pub output: Box<dyn AsyncWrite + Unpin + Send>,
    /// The window's (columns, rows), updated when it changes; `None` when unknown.
    pub size: tokio::sync::watch::Receiver<Option<(u16, u16)>>,
}

/// What a backend enforces of a spec's [`Hardening`] and of its networks, as it declares it
/// ([`Runtime::isolation`]). The conformance suite checks a backend against its claim: the
/// `isolation` half runs for every backend that claims to confine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Every field of a spec's [`Hardening`] is enforced (user, capabilities, no new
    /// privileges, read-only root, tmpfs, limits, init), and networks are isolated (an
    /// internal network has no route out, a container without one reaches nothing). The
    /// only kind of backend that may run agents.
    Confines,
    /// Nothing is confined beyond what every backend must do anyway (a spec's user, refused
    /// when the backend cannot be it, and read-only mounts): processes run on the host with
    /// its network, capabilities and limits. For tests only; never selected by a shipped build.
    HostProcesses,
}

/// Operations git-agent needs from a container engine.
#[allow(async_fn_in_trait)]
pub trait Runtime {
    /// What this backend confines (see [`Isolation`]).
    fn isolation(&self) -> Isolation;
    /// Whether containers take the addresses git-agent fixes in the subnets it picks for its
    /// networks ([`SandboxSpec::address`], [`GatewaySpec::address`], ...), and so find each
    /// other by the [`Hosts`] it computes from them: Docker and Podman do. A backend whose
    /// network plugin owns every address (Kubernetes' CNI, see docs/kubernetes.md) says no:
    /// its networks get no subnet from git-agent, specs carry no fixed address and no hosts,
    /// and the backend resolves the names a container needs itself.
    fn fixes_addresses(&self) -> bool {
        true
    }
    /// Check the engine answers; the error carries a hint on how to start one.
    async fn ping(&self) -> Result<String>;
    /// The id of an image, if present locally.
    async fn image_id(&self, tag: &str) -> Result<Option<String>>;
    /// Build an image from an in-memory tar context; progress lines go to `progress`.
    async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &HashMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String>;
    /// The environment, user and working directory an image's containers start with.
    async fn image_config(&self, image: &str) -> Result<ImageConfig>;
    /// Create (not start) a container for untrusted build steps.
    async fn create_step_container(&self, spec: &StepSpec) -> Result<String>;
    /// Run one build step in a running step container as root, in `workdir`, with `env`
    /// added; its output (stdout and stderr) goes to `output`. Returns the exit code.
    async fn exec_step(
        &self,
        id: &str,
        cmd: &[String],
        env: &[String],
        workdir: &str,
        output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<i64>;
    /// Make an image from a stopped container; returns the image's id.
    async fn commit(&self, spec: &CommitSpec) -> Result<String>;
    /// Create a bridge network; an `internal` one has no route out and no address for the
    /// host on it. With a `subnet` (IPv4, `a.b.c.d/n`) the network gets exactly that range,
    /// and the engine refuses it when the range overlaps one of its networks'; without one
    /// the engine picks a range from its default address pools.
    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
        subnet: Option<&str>,
    ) -> Result<String>;
    /// The IPv4 subnets (`a.b.c.d/n`) of every network on the engine, whoever made it: what
    /// a new network's subnet must not overlap.
    async fn network_subnets(&self) -> Result<Vec<String>>;
    /// Does a network of this name exist?
    async fn network_exists(&self, name: &str) -> Result<bool>;
    /// Create (not start) a task's egress gateway, on its outer network only: it may be
    /// made while the task's network is still being created.
    async fn create_gateway(&self, spec: &GatewaySpec) -> Result<String>;
    /// Attach a created gateway to the task's network (`spec.inner`) under its alias.
    async fn attach_gateway(&self, id: &str, spec: &GatewaySpec) -> Result<()>;
    /// Create a task's disk warden (started with [`Runtime::start`] once the task runs).
    async fn create_warden(&self, spec: &WardenSpec) -> Result<String>;
    /// Create (not start) a container beside a task (see [`CompanionSpec`]).
    async fn create_companion(&self, spec: &CompanionSpec) -> Result<String>;
    /// Create (not start) a preview's door (see [`DoorSpec`]).
    async fn create_door(&self, spec: &DoorSpec) -> Result<String>;
    /// Write files into directory `dir` of a container (created or running).
    async fn upload(&self, id: &str, dir: &str, files: &[Upload]) -> Result<()>;
    /// Up to `limit` bytes of a container's output, each line prefixed by the engine's
    /// RFC 3339 timestamp.
    async fn timestamped_log(&self, id: &str, limit: usize) -> Result<Vec<u8>>;
    async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()>;
    async fn create_container(&self, spec: &SandboxSpec) -> Result<String>;
    async fn start(&self, id: &str) -> Result<()>;
    async fn state(&self, id: &str) -> Result<ContainerState>;
    /// Run `cmd` in a running container. `stdin` is copied in and closed; stdout is copied
    /// to `stdout`, failing with [`OutputTooLarge`] beyond `limit` bytes.
    async fn exec<R, W>(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<R>,
        stdout: &mut W,
        limit: u64,
    ) -> Result<ExecOutcome>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        self.exec_env(id, cmd, &[], stdin, stdout, limit).await
    }
    /// [`exec`](Self::exec) with extra `KEY=value` environment for the command.
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
        W: AsyncWrite + Unpin + Send;
    /// Interactive exec (with a tty) attached to `terminal`; returns the exit code.
    async fn exec_interactive(&self, id: &str, cmd: &[String], terminal: Terminal) -> Result<i64>;
    /// Attach `terminal` to a tty container's main process until the user detaches
    /// (Ctrl-P Ctrl-Q) or the process ends. `ready` runs once the attach is in place.
    async fn attach_terminal<F>(&self, id: &str, terminal: Terminal, ready: F) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>> + Send;
    /// Copy the container's output (stdout and stderr, interleaved) to `out`.
    async fn logs<W>(&self, id: &str, follow: bool, tail: Option<usize>, out: &mut W) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send;
    /// Wait for a container to stop; returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64>;
    async fn stop(&self, id: &str, timeout_secs: i32) -> Result<()>;
    /// Remove objects; a missing object is not an error.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Give container `id` (a name or an id) the name `name`; fails when the name is taken
    /// or no container answers to `id` (so a rename from a name claims it at most once).
    async fn rename(&self, id: &str, name: &str) -> Result<()>;
    /// Whether a spare task network and gateway may be made ahead on this engine (see
    /// `sandbox::spare`): only where containers are real and addresses are fixed.
    fn keeps_spares(&self) -> bool {
        self.fixes_addresses()
    }
    async fn remove_volume(&self, name: &str) -> Result<()>;
    async fn remove_network(&self, name: &str) -> Result<()>;
    /// The labels of a container, volume or network, or `None` when it does not exist.
    /// Removing a task's objects checks them first: a name alone never proves ownership.
    async fn labels_of(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>>;
    /// Containers carrying all the given labels.
    async fn containers_with(&self, labels: &[(&str, &str)]) -> Result<Vec<Owned>>;
    /// Containers, networks and volumes carrying all the given labels: three requests
    /// however many objects there are.
    async fn inventory(&self, labels: &[(&str, &str)]) -> Result<Inventory>;
    /// Cut every network of every git-agent container (or only those also carrying label
    /// `only`) at once and kill them all; volumes are kept. Returns the names it stopped.
    async fn panic_stop_all(&self, only: Option<(&str, &str)>) -> Result<Vec<String>>;
    /// Every object of `kind` (containers in any state) whose name starts with `prefix` or
    /// that carries `label` (`key`, `value`), with its labels. `doctor` finds leftovers with
    /// it, labelled or not.
    async fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
        label: Option<(&str, &str)>,
    ) -> Result<Vec<Listed>>;
    /// Every image carrying label `key` (whatever its value). A label proves nothing by
    /// itself: the caller checks tags and values.
    async fn images_labelled(&self, key: &str) -> Result<Vec<ImageInfo>>;
    /// Every container, running or not, with the image it was made from.
    async fn image_uses(&self) -> Result<Vec<ImageUse>>;
    /// The names of the OCI runtimes the engine can run containers under (`runc`, `runsc`,
    /// ...), its default first: what a [`SandboxSpec::oci_runtime`] may name.
    async fn oci_runtimes(&self) -> Result<Vec<String>>;
    /// Remove the tag `tag`, and the image when that was its last tag. Never forced: the
    /// engine refuses (a [`EngineErrorKind::Conflict`]) while any container uses the image.
    /// Returns whether the image itself was deleted.
    async fn remove_image_tag(&self, tag: &str) -> Result<bool>;
}

/// Is `name` an OCI runtime's name as an engine registers it (`runsc`, `io.containerd.runc.v2`):
/// letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 128 bytes.
/// It is passed to the engine as it is, so nothing else is: no path, no flag, no space.
pub fn is_oci_runtime_name(name: &str) -> bool {
    name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What kind of engine failure an [`EngineError`] is: decided from the client's error variant
/// and the HTTP status, so callers branch on a type, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineErrorKind {
    /// No engine answers (socket missing, connection refused, timeout, broken stream).
    Unreachable,
    /// The object does not exist (404).
    NotFound,
    /// The object exists already, or is being removed or changed by another request (409).
    Conflict,
    /// The engine has no address range left for a new network.
    AddressPoolExhausted,
    /// The engine's disk is full.
    NoSpace,
    /// The engine refused the request for lack of rights (401/403).
    PermissionDenied,
    Other,
}

/// A failed request to the container engine, carried in the `anyhow` chain so callers can
/// `downcast_ref` it (see [`engine_error`]).
#[derive(Debug)]
pub struct EngineError {
    pub kind: EngineErrorKind,
    /// The HTTP status the engine answered with, if it answered.
    pub status: Option<u16>,
    /// What the engine (or the client, when it could not reach one) said.
    pub message: String,
    /// The next step for the user, for the kinds where there is one.
    pub hint: Option<String>,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.message.trim();
        match (self.kind, self.status) {
            (EngineErrorKind::Unreachable, _) if message.is_empty() => {
                f.write_str("cannot reach the container engine")
            }
            (EngineErrorKind::Unreachable, _) => {
                write!(f, "cannot reach the container engine: {message}")
            }
            (_, Some(status)) if message.is_empty() => {
                write!(f, "the engine answered HTTP {status} without a reason")
            }
            (_, Some(status)) => write!(f, "the engine answered HTTP {status}: {message}"),
            (_, None) if message.is_empty() => f.write_str("the engine request failed"),
            (_, None) => f.write_str(message),
        }
    }
}

impl std::error::Error for EngineError {}

impl EngineError {
    pub fn new(kind: EngineErrorKind, status: Option<u16>, message: impl Into<String>) -> Self {
        EngineError {
            kind,
            status,
            message: message.into(),
            hint: Self::hint_for(kind),
        }
    }

    fn hint_for(kind: EngineErrorKind) -> Option<String> {
        match kind {
            EngineErrorKind::Unreachable => Some(engine_hint()),
            EngineErrorKind::AddressPoolExhausted => Some(
                "the engine has no address range left for another network: remove unused ones \
                 with `docker network prune` (`git agent doctor` lists git-agent's leftovers), \
                 or give the engine more with `default-address-pools` in /etc/docker/daemon.json"
                    .into(),
            ),
            EngineErrorKind::NoSpace => Some(
                "free space on the engine's disk: `docker system df` shows what uses it, \
                 `git agent purge <task>` removes a finished task's volumes"
                    .into(),
            ),
            EngineErrorKind::PermissionDenied => Some(
                "use an account that may talk to the engine (e.g. a member of the `docker` \
                 group), or point DOCKER_HOST at an engine you may use"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// How to start the engine, or reach the one the environment names (see
/// [`address::EngineAddress::unreachable_hint`]).
pub fn engine_hint() -> String {
    match address::EngineAddress::from_env() {
        Ok(a) => a.unreachable_hint(),
        Err(e) => format!("{e}; `git agent doctor` checks the connection"),
    }
}

/// The engine failure anywhere in an error's chain, if there is one.
pub fn engine_error(err: &anyhow::Error) -> Option<&EngineError> {
    err.downcast_ref::<EngineError>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<EngineError>()))
}

/// The kind of the engine failure in an error's chain, if any.
pub fn engine_kind(err: &anyhow::Error) -> Option<EngineErrorKind> {
    engine_error(err).map(|e| e.kind)
}
