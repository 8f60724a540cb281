//! The container engine seam. Commands talk to a [`Runtime`]; [`docker::DockerRuntime`] is the
//! one implementation today (Docker, or Podman through its Docker-compatible API). Nothing
//! here bind-mounts host paths: workspaces are named volumes, data moves over exec streams.

pub mod docker;

use std::collections::HashMap;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncWrite};

/// Labels put on every runtime object, so objects can be traced back to their task.
pub const LABEL_TASK: &str = "git-agent.task";
pub const LABEL_REPO: &str = "git-agent.repo";
pub const LABEL_REPO_PATH: &str = "git-agent.repo-path";

/// Everything needed to create a task's container.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub volume: String,
    /// A volume mounted over the task user's home, keeping agent sessions across restarts.
    pub home_volume: Option<String>,
    pub network: String,
    /// Who the process runs as, numeric (`uid:gid`), so that nothing in the image
    /// (`/etc/passwd`, `USER`) decides it.
    pub user: String,
    /// The task user's home (where `home_volume` is mounted).
    pub home: String,
    /// Give the main process a terminal with an open stdin (interactive agents).
    pub tty: bool,
    /// Limits: process count, memory in bytes, CPUs in billionths.
    pub pids_limit: i64,
    pub memory: i64,
    pub nano_cpus: i64,
    /// Read-only root file system; the workspace, home and state volumes and /tmp stay
    /// writable.
    pub read_only: bool,
    /// A volume for the sandbox helper's state (only with `read_only`).
    pub state_volume: Option<String>,
}

/// A task's egress gateway: a container on the task's internal network (under `alias`)
/// and on an outer network with a route out.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub inner: String,
    pub outer: String,
    pub alias: String,
}

/// A task's disk warden: a container in the task's PID namespace that measures the task's
/// volumes (mounted read-only) and kills every process of the task once they hold more
/// than `limit_kib`. It runs as root with only CAP_KILL and CAP_DAC_READ_SEARCH and without
/// a network, so the task user can neither signal it nor hide files from it; it ends with
/// the task's namespace.
#[derive(Debug, Clone)]
pub struct WardenSpec {
    pub name: String,
    /// An image git-agent built from its own files only (the gateway's).
    pub image: String,
    pub labels: HashMap<String, String>,
    /// The task's container (its PID namespace is joined).
    pub task: String,
    /// Volumes to watch: (volume name, where it is mounted in the warden).
    pub volumes: Vec<(String, String)>,
    pub limit_kib: u64,
    pub interval_secs: u64,
}

/// A short-lived container that applies an untrusted build step to an image (see
/// [`crate::image::project`]): no mounts, root with only `cap_add`, `no-new-privileges`,
/// limits, on an internal network. Its command only waits; the steps run as execs.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
    pub network: String,
    /// The only capabilities kept; every other one is dropped.
    pub cap_add: Vec<String>,
    pub pids_limit: i64,
    pub memory: i64,
    pub nano_cpus: i64,
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

/// Operations git-agent needs from a container engine.
#[allow(async_fn_in_trait)]
pub trait Runtime {
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
    /// host on it.
    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
    ) -> Result<String>;
    /// Does a network of this name exist?
    async fn network_exists(&self, name: &str) -> Result<bool>;
    /// Create (not start) a task's egress gateway.
    async fn create_gateway(&self, spec: &GatewaySpec) -> Result<String>;
    /// Create a task's disk warden (started with [`Runtime::start`] once the task runs).
    async fn create_warden(&self, spec: &WardenSpec) -> Result<String>;
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
    /// Interactive exec attached to the terminal; returns the exit code.
    async fn exec_interactive(&self, id: &str, cmd: &[String]) -> Result<i64>;
    /// Attach the terminal to a tty container's main process until the user detaches
    /// (Ctrl-P Ctrl-Q) or the process ends. `ready` runs once the attach is in place.
    async fn attach_terminal<F>(&self, id: &str, ready: F) -> Result<()>
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
}
