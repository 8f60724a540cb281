//! [`Runtime`] on the Docker Engine API through bollard, at an [`EngineAddress`] (a local
//! socket, TCP with mutual TLS, or SSH), with the API version negotiated against the engine.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointSettings,
    HostConfig, Ipam, IpamConfig, Mount, MountType, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CommitContainerOptionsBuilder,
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, ResizeContainerTTYOptionsBuilder, ResizeExecOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::address::{EngineAddress, Scheme};
use super::{
    CommitSpec, CompanionSpec, ContainerState, DoorSpec, EngineError, EngineErrorKind, ExecOutcome,
    GatewaySpec, Hardening, ImageConfig, ImageInfo, ImageUse, Inventory, LABEL_TASK, Listed,
    LogRotation, ObjectKind, OutputTooLarge, Owned, Runtime, SandboxSpec, StepSpec, Terminal,
    Upload, VolumeMount, WardenSpec,
};
use crate::error::hinted;

const STDERR_KEEP: usize = 64 * 1024;

/// A Docker (or Podman) engine.
pub struct DockerRuntime {
    docker: Docker,
    address: EngineAddress,
    /// Whether the engine is Podman, asked once (see [`DockerRuntime::is_podman`]).
    podman: tokio::sync::OnceCell<bool>,
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_conflict(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// Type a client error: by its variant, then by the HTTP status the engine answered with.
/// Only [`engine_says`] looks at the engine's words, for the failures that have no status of
/// their own.
pub fn classify(e: BollardError) -> EngineError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = engine_says(&message).unwrap_or(match status_code {
                404 => EngineErrorKind::NotFound,
                // Docker answers 403 ("forbidden") for a request the object's current state
                // does not allow (a network with endpoints, an endpoint that exists).
                409 | 403 => EngineErrorKind::Conflict,
                401 => EngineErrorKind::PermissionDenied,
                _ => EngineErrorKind::Other,
            });
            EngineError::new(kind, Some(status_code), message)
        }
        BollardError::HyperLegacyError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_) => {
            let denied =
                io_cause(&e).is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
            let kind = if denied {
                EngineErrorKind::PermissionDenied
            } else {
                EngineErrorKind::Unreachable
            };
            EngineError::new(kind, None, describe(&e))
        }
        other => EngineError::new(EngineErrorKind::Other, None, describe(&other)),
    }
}

/// The kinds the engine reports only in words (with a generic 4xx/5xx status): a full
/// address pool, a full disk, and (Podman) an object in use. The texts are the engine's own (Docker 20.10 to 27, Podman).
pub fn engine_says(message: &str) -> Option<EngineErrorKind> {
    let m = message.to_ascii_lowercase();
    let pool = [
        "non-overlapping ipv4 address pool",
        "non-overlapping ipv6 address pool",
        "could not find an available predefined network",
        "all predefined address pools have been fully subnetted",
        "could not find a free subnet",
    ];
    if pool.iter().any(|p| m.contains(p)) {
        return Some(EngineErrorKind::AddressPoolExhausted);
    }
    if m.contains("no space left on device") {
        return Some(EngineErrorKind::NoSpace);
    }
    // Podman answers 500 for a network or volume a container (a stopped one too) still
    // uses, where Docker answers 403/409.
    if m.contains("network is being used") || m.contains("volume is being used") {
        return Some(EngineErrorKind::Conflict);
    }
    None
}

/// The first I/O error under a client error (connection refused, permission denied).
fn io_cause(e: &BollardError) -> Option<&std::io::Error> {
    if let BollardError::IOError { err } = e {
        return Some(err);
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = err.source();
    }
    None
}

/// A client error with its causes ("client error (Connect): Connection refused"): the
/// outermost text alone often says only which layer failed.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        let text = text.trim();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_string());
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A client error as an `anyhow` error carrying its [`EngineError`].
pub fn engine(e: BollardError) -> anyhow::Error {
    anyhow::Error::new(classify(e))
}

/// The error of [`DockerRuntime::connect_at`]: typed, naming the address tried, with the
/// hint for that kind of address (start the engine, check the certificates, check SSH).
fn unreachable(address: &EngineAddress, e: BollardError) -> anyhow::Error {
    let mut err = classify(e);
    if err.kind != EngineErrorKind::PermissionDenied {
        err.kind = EngineErrorKind::Unreachable;
        err.hint = Some(address.unreachable_hint());
    }
    err.message = format!("{address}: {}", err.message);
    anyhow::Error::new(err)
}

/// A client for an `ssh://` engine, on [`super::ssh`]'s transport.
fn connect_ssh(
    url: &str,
    version: &bollard::ClientVersion,
) -> std::result::Result<Docker, BollardError> {
    use hyper_util::client::legacy::Client;
    let target = super::ssh::SshTarget::parse(url).ok_or_else(|| {
        BollardError::UnsupportedURISchemeError {
            uri: url.to_string(),
        }
    })?;
    let client: Client<super::ssh::SshDial, _> =
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(super::ssh::SshDial::new(target));
    let transport = move |req: bollard::BollardRequest| {
        let client = client.clone();
        async move { client.request(req).await.map_err(BollardError::from) }
    };
    // The host part is a placeholder: every connection goes through `ssh`.
    Docker::connect_with_custom_transport(
        transport,
        Some("http://ssh-engine"),
        STREAM_TIMEOUT_SECS,
        version,
    )
}

/// A client for a `tcp://` engine with mutual TLS, on [`super::tls`]'s configuration.
fn connect_tls(
    url: &str,
    config: rustls::ClientConfig,
    version: &bollard::ClientVersion,
) -> std::result::Result<Docker, BollardError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnector::from((http, config));
    // As bollard's own transports: no idle connections kept for reuse. (The SSH transport
    // keeps them: a new login per request would be slow, and sshd limits logins at once.)
    let client: Client<_, _> = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    let transport = move |req: bollard::BollardRequest| {
        let client = client.clone();
        async move { client.request(req).await.map_err(BollardError::from) }
    };
    let authority = url.trim_start_matches("tcp://").trim_end_matches('/');
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{authority}")),
        STREAM_TIMEOUT_SECS,
        version,
    )
}

/// How long the engine has to answer the first request of a command that needs it: long
/// enough for an engine busy with many tasks, short enough that a dead one is reported.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The same for commands that can do without the engine (list, status, review, logs): they
/// fall back to the refs, so an engine that accepts connections but never replies must not
/// hold them for long.
pub const READ_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// bollard's per-request timeout: long-running streams (logs -f, wait, an agent's exec) must
/// not hit its default of 2 minutes.
const STREAM_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

impl DockerRuntime {
    /// Connect to the engine the environment names ([`EngineAddress::from_env`]) and
    /// negotiate the API version; a clear error, within [`CONNECT_TIMEOUT`], when no engine
    /// answers.
    pub async fn connect() -> Result<DockerRuntime> {
        Self::connect_within(CONNECT_TIMEOUT).await
    }

    /// [`connect`](Self::connect), giving up after `limit`.
    pub async fn connect_within(limit: Duration) -> Result<DockerRuntime> {
        Self::connect_at(&EngineAddress::from_env()?, limit).await
    }

    /// Connect to the engine at `address` (a local socket, TCP with mutual TLS, plain TCP,
    /// or SSH through the system `ssh` client) and negotiate the API version within `limit`.
    pub async fn connect_at(address: &EngineAddress, limit: Duration) -> Result<DockerRuntime> {
        let version = bollard::API_DEFAULT_VERSION;
        let url = address.url.as_str();
        let client = match (address.scheme(), &address.tls) {
            (Scheme::Unix, _) => Docker::connect_with_unix(url, STREAM_TIMEOUT_SECS, version),
            (Scheme::Tcp, Some(tls)) => connect_tls(url, super::tls::client_config(tls)?, version),
            (Scheme::Tcp, None) => Docker::connect_with_http(url, STREAM_TIMEOUT_SECS, version),
            (Scheme::Ssh, _) => connect_ssh(url, version),
        };
        let docker = client.map_err(|e| unreachable(address, e))?;
        let docker = match tokio::time::timeout(limit, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(address, e)),
            Err(_) => {
                let mut err = EngineError::new(
                    EngineErrorKind::Unreachable,
                    None,
                    format!("{address}: no answer within {}s", limit.as_secs()),
                );
                err.hint = Some(address.unreachable_hint());
                return Err(anyhow::Error::new(err));
            }
        };
        Ok(DockerRuntime {
            docker,
            address: address.clone(),
            podman: tokio::sync::OnceCell::new(),
        })
    }

    /// Where this engine is.
    pub fn address(&self) -> &EngineAddress {
        &self.address
    }
}

fn parse_state(state: Option<ContainerStateStatusEnum>, exit: Option<i64>) -> ContainerState {
    match state {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD) => {
            ContainerState::Exited(exit.unwrap_or(-1))
        }
        other => ContainerState::Other(format!("{other:?}").to_lowercase()),
    }
}

impl Runtime for DockerRuntime {
    /// The engine enforces every field of a spec's hardening (see `tests/it/conformance.rs`).
    fn isolation(&self) -> super::Isolation {
        super::Isolation::Confines
    }

    async fn ping(&self) -> Result<String> {
        self.docker
            .ping()
            .await
            .map_err(|e| unreachable(&self.address, e))?;
        let v = self.docker.version().await.map_err(engine)?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(tag).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e).context(format!("cannot inspect image {tag}"))),
        }
    }

    async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &HashMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String> {
        let opts = BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .build();
        let mut stream = self.docker.build_image(
            opts,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context))),
        );
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(i) => i,
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(build_failed(&error));
                }
                Err(e) => return Err(engine(e).context("image build failed")),
            };
            if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                progress(text);
            }
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(build_failed(&err));
            }
        }
        self.image_id(tag)
            .await?
            .ok_or_else(|| anyhow!("the engine reported success but image {tag} is missing"))
    }

    async fn image_config(&self, image: &str) -> Result<ImageConfig> {
        let info = self
            .docker
            .inspect_image(image)
            .await
            .map_err(engine)
            .with_context(|| format!("cannot inspect image {image}"))?;
        let c = info.config.unwrap_or_default();
        Ok(ImageConfig {
            env: c.env.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
        })
    }

    async fn create_step_container(&self, spec: &StepSpec) -> Result<String> {
        let host = HostConfig {
            network_mode: Some(spec.network.clone()),
            extra_hosts: extra_hosts(&spec.hosts),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // Nothing in the image decides how this container starts.
            entrypoint: no_entrypoint(),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            user: Some(spec.hardening.user.to_string()),
            working_dir: Some("/".into()),
            labels: Some(spec.labels.clone()),
            host_config: Some(host),
            networking_config: fixed_endpoint(Some(&spec.network), spec.address),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create the build container {}", spec.name))?;
        Ok(resp.id)
    }

    async fn exec_step(
        &self,
        id: &str,
        cmd: &[String],
        env: &[String],
        workdir: &str,
        output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<i64> {
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    env: Some(env.to_vec()),
                    user: Some("0:0".to_string()),
                    working_dir: Some(workdir.to_string()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| exec_failed(id, e))?;
        let StartExecResults::Attached {
            output: mut out, ..
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(engine)?
        else {
            bail!("the engine did not attach to the build step");
        };
        while let Some(msg) = out.next().await {
            match msg.map_err(engine)? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => output(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        let info = self.docker.inspect_exec(&exec.id).await.map_err(engine)?;
        Ok(info.exit_code.unwrap_or(-1))
    }

    async fn commit(&self, spec: &CommitSpec) -> Result<String> {
        // The engine fills fields left empty from the container's own configuration (the
        // step container's: an empty entrypoint and `sleep`), and adds labels and variables
        // of the container that `spec` does not name. The final layer resets Entrypoint and
        // Cmd; task containers set their own anyway.
        let config = bollard::models::ContainerConfig {
            user: Some(spec.user.clone()),
            env: Some(spec.env.clone()),
            working_dir: Some(spec.working_dir.clone()),
            entrypoint: Some(vec![]),
            cmd: Some(vec![]),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        let opts = CommitContainerOptionsBuilder::new()
            .container(&spec.container)
            .comment("git-agent: project build step")
            .pause(false)
            .build();
        let resp = self
            .docker
            .commit_container(opts, config)
            .await
            .map_err(engine)
            .with_context(|| format!("cannot commit the build container {}", spec.container))?;
        Ok(resp.id)
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
        subnet: Option<&str>,
    ) -> Result<String> {
        // Podman: an internal network without its name server (see `libpod`).
        if internal
            && self.is_podman().await
            && let Some(socket) = self.unix_socket()
        {
            return match super::libpod::create_network(socket, name, labels, internal, subnet)
                .await?
            {
                Ok(id) => Ok(id),
                Err(r) => {
                    let e = BollardError::DockerResponseServerError {
                        status_code: r.status,
                        message: r.message,
                    };
                    if r.status == 409 {
                        Err(name_taken("network", name, e))
                    } else {
                        Err(engine(e).context(format!("cannot create network {name}")))
                    }
                }
            };
        }
        // An internal bridge has no route out; without an address of its own the host is
        // not reachable from it either (otherwise a task could connect to any service
        // listening on the host's addresses).
        let options = internal.then(|| {
            HashMap::from([(
                "com.docker.network.bridge.inhibit_ipv4".to_string(),
                "true".to_string(),
            )])
        });
        let resp = match self
            .docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                internal: Some(internal),
                options,
                labels: Some(labels.clone()),
                ipam: subnet.map(|s| Ipam {
                    driver: Some("default".into()),
                    config: Some(vec![IpamConfig {
                        subnet: Some(s.to_string()),
                        ..Default::default()
                    }]),
                    options: None,
                }),
                ..Default::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) if is_conflict(&e) => return Err(name_taken("network", name, e)),
            Err(e) => {
                return Err(engine(e).context(format!("cannot create network {name}")));
            }
        };
        // Engines before API 1.44 create a second network of a name that exists (and then
        // call every later request by that name ambiguous). The first network created
        // stays; a later creator removes its own and gets the conflict newer engines would
        // have given it. Two creations in flight at the very same moment may both miss the
        // other; git-agent's task locks and spawn leases keep its own commands from that.
        let ids = self.networks_named(name).await?;
        if ids.len() > 1 && ids.first() != Some(&resp.id) {
            self.docker.remove_network(&resp.id).await.map_err(engine)?;
            return Err(name_taken(
                "network",
                name,
                BollardError::DockerResponseServerError {
                    status_code: 409,
                    message: format!("network with name {name} already exists"),
                },
            ));
        }
        Ok(resp.id)
    }

    async fn network_subnets(&self) -> Result<Vec<String>> {
        let list = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(engine)
            .context("cannot list networks")?;
        Ok(list
            .into_iter()
            .filter_map(|n| n.ipam.and_then(|i| i.config))
            .flatten()
            .filter_map(|c| c.subnet)
            .collect())
    }

    async fn network_exists(&self, name: &str) -> Result<bool> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine(e).context(format!("cannot inspect network {name}"))),
        }
    }

    async fn create_gateway(&self, spec: &GatewaySpec) -> Result<String> {
        // Podman 4.3 does not know `host-gateway` (it writes the word into /etc/hosts as if
        // it were an address); it names the host `host.containers.internal` in every
        // container instead, which is what a vault forwarding to the host uses there.
        let podman = self.is_podman().await;
        let host = HostConfig {
            network_mode: Some(spec.outer.clone()),
            extra_hosts: spec
                .host_alias
                .as_ref()
                .filter(|_| !podman)
                .map(|alias| vec![format!("{alias}:host-gateway")]),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            user: Some(spec.hardening.user.to_string()),
            labels: Some(spec.labels.clone()),
            host_config: Some(host),
            // Podman: `bridge` is a network mode (its default network, named `podman`), not a
            // network it knows by that name; an endpoint named `bridge` fails the create with
            // "network not found". The mode alone says the same to Docker.
            networking_config: (spec.outer != "bridge").then(|| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.outer.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create the gateway container {}", spec.name))?;
        Ok(resp.id)
    }

    async fn attach_gateway(&self, id: &str, spec: &GatewaySpec) -> Result<()> {
        self.docker
            .connect_network(
                &spec.inner,
                NetworkConnectRequest {
                    container: id.to_string(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![spec.alias.clone()]),
                        ipam_config: fixed_address(spec.address),
                        ..Default::default()
                    }),
                },
            )
            .await
            .map_err(engine)
            .with_context(|| format!("cannot attach the gateway to network {}", spec.inner))
    }

    async fn create_warden(&self, spec: &WardenSpec) -> Result<String> {
        self.shares_pid_namespace(&spec.task).await?;
        let host = HostConfig {
            mounts: Some(mounts(&spec.mounts)),
            network_mode: Some("none".into()),
            pid_mode: Some(format!("container:{}", spec.task)),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: no_entrypoint(),
            cmd: Some(spec.cmd.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(spec.hardening.user.to_string()),
            working_dir: Some("/".into()),
            host_config: Some(host),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create the disk warden {}", spec.name))?;
        Ok(resp.id)
    }

    async fn create_companion(&self, spec: &CompanionSpec) -> Result<String> {
        let host = HostConfig {
            mounts: Some(mounts(&spec.mounts)),
            network_mode: Some(spec.network.clone()),
            runtime: oci_runtime(spec.oci_runtime.as_deref())?,
            extra_hosts: extra_hosts(&spec.hosts),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // With a command of ours the image's entrypoint is not used either.
            entrypoint: spec.cmd.as_ref().and_then(|_| no_entrypoint()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(spec.hardening.user.to_string()),
            working_dir: spec.working_dir.clone(),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![spec.alias.clone()]),
                        ipam_config: fixed_address(spec.address),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create container {}", spec.name))?;
        Ok(resp.id)
    }

    async fn create_door(&self, spec: &DoorSpec) -> Result<String> {
        let port = format!("{}/tcp", spec.port);
        let host = HostConfig {
            network_mode: Some(spec.front.clone()),
            port_bindings: Some(HashMap::from([(
                port.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    host_port: Some(spec.host_port.to_string()),
                }]),
            )])),
            extra_hosts: extra_hosts(&spec.hosts),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: no_entrypoint(),
            cmd: Some(spec.cmd.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(spec.hardening.user.to_string()),
            working_dir: Some("/".into()),
            exposed_ports: Some(vec![port]),
            host_config: Some(host),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create the preview's door {}", spec.name))?;
        self.docker
            .connect_network(
                &spec.inner,
                NetworkConnectRequest {
                    container: resp.id.clone(),
                    endpoint_config: Some(EndpointSettings::default()),
                },
            )
            .await
            .map_err(engine)
            .with_context(|| {
                format!("cannot attach the preview's door to network {}", spec.inner)
            })?;
        Ok(resp.id)
    }

    async fn upload(&self, id: &str, dir: &str, files: &[Upload]) -> Result<()> {
        let mut tar = tar::Builder::new(Vec::new());
        for f in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(f.data.len() as u64);
            header.set_mode(f.mode);
            header.set_uid(f.owner);
            header.set_gid(f.owner);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, &f.name, f.data.as_slice())?;
        }
        let body = bytes::Bytes::from(tar.into_inner()?);
        let opts = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_full(body))
            .await
            .map_err(engine)
            .with_context(|| format!("cannot upload files into container {id}"))
    }

    async fn timestamped_log(&self, id: &str, limit: usize) -> Result<Vec<u8>> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let bytes = item
                .map_err(engine)
                .with_context(|| format!("cannot read the log of container {id}"))?
                .into_bytes();
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&bytes[..bytes.len().min(room)]);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(engine)
            .with_context(|| format!("cannot create volume {name}"))?;
        Ok(())
    }

    async fn create_container(&self, spec: &SandboxSpec) -> Result<String> {
        let host = HostConfig {
            mounts: Some(mounts(&spec.mounts)),
            network_mode: Some(spec.network.clone().unwrap_or_else(|| "none".into())),
            runtime: oci_runtime(spec.oci_runtime.as_deref())?,
            extra_hosts: extra_hosts(&spec.hosts),
            ..host_config(&spec.hardening)
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // Nothing in the image decides how a task starts: no entrypoint, our command,
            // our numeric user, our working directory.
            entrypoint: no_entrypoint(),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            user: Some(spec.hardening.user.to_string()),
            working_dir: Some(spec.working_dir.clone()),
            tty: Some(spec.tty),
            open_stdin: Some(spec.tty),
            attach_stdin: Some(spec.tty),
            host_config: Some(host),
            networking_config: fixed_endpoint(spec.network.as_deref(), spec.address),
            ..Default::default()
        };
        let resp = self
            .create_named(&spec.name, body)
            .await
            .with_context(|| format!("cannot create container {}", spec.name))?;
        Ok(resp.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        // A start the runtime fails inside the engine (HTTP 500: runc's container init died,
        // seen under load; or runc's create failing in the engine's own network hook, which
        // Docker answers with a 400 though nothing in the request was wrong) leaves the
        // container created and is tried again, twice, before it is reported; refusals (4xx)
        // are reported at once.
        let mut delays = [300u64, 1000].into_iter();
        loop {
            self.podman_refuses_dead_pid_owner(id).await?;
            let err = match self.docker.start_container(id, None).await {
                Ok(()) => return Ok(()),
                Err(e) => engine(e),
            };
            let server_side = err.downcast_ref::<EngineError>().is_some_and(|x| {
                x.kind == EngineErrorKind::Other
                    && (x.status == Some(500)
                        || (x.status == Some(400) && runtime_hook_failed(&x.message)))
            });
            match delays.next() {
                Some(ms) if server_side => {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await
                }
                _ => return Err(err.context(format!("cannot start container {id}"))),
            }
        }
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        // Podman reports a container whose process ended but whose cleanup has not yet run
        // as `stopped`, a state the Docker API (and bollard) does not know: the inspect
        // fails to decode. It turns `exited` within moments; ask again until it has.
        let mut tries = 0;
        loop {
            match self.docker.inspect_container(id, None).await {
                Ok(c) => {
                    let s = c.state.unwrap_or_default();
                    return Ok(parse_state(s.status, s.exit_code));
                }
                Err(e) if is_not_found(&e) => return Ok(ContainerState::Missing),
                Err(e) if e.to_string().contains("unknown variant `stopped`") && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(engine(e).context(format!("cannot inspect container {id}")));
                }
            }
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
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdin: Some(stdin.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    env: (!env.is_empty()).then(|| env.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| exec_failed(id, e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(engine)?
        else {
            bail!("the engine did not attach to the exec");
        };
        let has_stdin = stdin.is_some();
        let feed = async move {
            if let Some(mut r) = stdin {
                tokio::io::copy(&mut r, &mut input).await?;
            }
            if has_stdin {
                // The exec sees EOF on its stdin only after the writer is shut down.
                input.shutdown().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let mut stderr = Vec::new();
        let mut written = 0u64;
        let read = async {
            while let Some(msg) = output.next().await {
                match msg.map_err(engine)? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        written += message.len() as u64;
                        if written > limit {
                            return Err(anyhow::Error::new(OutputTooLarge { limit }));
                        }
                        stdout.write_all(&message).await?;
                    }
                    LogOutput::StdErr { message } => {
                        let room = STDERR_KEEP.saturating_sub(stderr.len());
                        stderr.extend_from_slice(&message[..message.len().min(room)]);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            stdout.flush().await?;
            Ok(())
        };
        let (fed, read) = tokio::join!(feed, read);
        read?;
        let info = self.docker.inspect_exec(&exec.id).await.map_err(engine)?;
        let exit_code = info.exit_code.unwrap_or(-1);
        if exit_code == 0 {
            fed.context("could not send data into the sandbox")?;
        }
        Ok(ExecOutcome {
            exit_code,
            stderr,
            stdout_len: written,
        })
    }

    async fn exec_interactive(&self, id: &str, cmd: &[String], terminal: Terminal) -> Result<i64> {
        let exec = self
            .docker
            .create_exec(
                id,
                CreateExecOptions {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(true),
                    cmd: Some(cmd.to_vec()),
                    env: Some(vec!["TERM=xterm-256color".to_string()]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| exec_failed(id, e))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(engine)?
        else {
            bail!("the engine did not attach to the exec");
        };
        let resize = |(w, h): (u16, u16)| {
            let exec_id = exec.id.clone();
            async move {
                let opts = ResizeExecOptionsBuilder::new()
                    .w(w as i32)
                    .h(h as i32)
                    .build();
                let _ = self.docker.resize_exec(&exec_id, opts).await;
            }
        };
        pump_terminal(&mut output, &mut input, terminal, async { Ok(()) }, resize).await?;
        let info = self.docker.inspect_exec(&exec.id).await.map_err(engine)?;
        Ok(info.exit_code.unwrap_or(-1))
    }

    async fn attach_terminal<F>(&self, id: &str, terminal: Terminal, ready: F) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>> + Send,
    {
        let opts = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(true)
            .detach_keys("ctrl-p,ctrl-q")
            .build();
        let AttachContainerResults {
            mut output,
            mut input,
        } = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(engine)
            .with_context(|| format!("cannot attach to container {id}"))?;
        let resize = |(w, h): (u16, u16)| async move {
            let opts = ResizeContainerTTYOptionsBuilder::new()
                .w(w as i32)
                .h(h as i32)
                .build();
            let _ = self.docker.resize_container_tty(id, opts).await;
        };
        pump_terminal(&mut output, &mut input, terminal, ready, resize).await
    }

    async fn logs<W>(&self, id: &str, follow: bool, tail: Option<usize>, out: &mut W) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send,
    {
        let tail = tail.map_or("all".to_string(), |n| n.to_string());
        let opts = LogsOptionsBuilder::new()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut written = 0usize;
        while let Some(item) = stream.next().await {
            match item {
                Ok(m) => {
                    let bytes = m.into_bytes();
                    written += bytes.len();
                    out.write_all(&bytes).await?;
                    out.flush().await?;
                }
                Err(e) if is_not_found(&e) => {
                    return Err(hinted(
                        "the task's container was removed while its output was being read",
                        "`git agent status <task>` shows how the task ended; `git agent logs <task>` shows the output kept with it",
                    ));
                }
                Err(e) => return Err(engine(e)),
            }
        }
        if follow && tail == "all" {
            // A following stream can end before the engine flushed a last line without a
            // newline; read the log once more and pass on whatever the stream missed.
            let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
            let mut all = self.docker.logs(id, Some(opts));
            let mut seen = 0usize;
            while let Some(Ok(m)) = all.next().await {
                let bytes = m.into_bytes();
                let skip = written.saturating_sub(seen).min(bytes.len());
                seen += bytes.len();
                if skip < bytes.len() {
                    out.write_all(&bytes[skip..]).await?;
                }
            }
            out.flush().await?;
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        let mut stream = self.docker.wait_container(id, None);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(engine(e)),
            None => bail!("the engine closed the wait stream for {id}"),
        }
    }

    async fn stop(&self, id: &str, timeout_secs: i32) -> Result<()> {
        let opts = StopContainerOptionsBuilder::new().t(timeout_secs).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine(e).context(format!("cannot stop container {id}"))),
        }
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        let opts = bollard::query_parameters::RenameContainerOptionsBuilder::new()
            .name(name)
            .build();
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(engine)
            .with_context(|| format!("cannot rename container {id} to {name}"))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // Podman refuses to remove a container another one joins (a task's disk warden
            // shares its processes), where Docker removes it; it names those containers.
            // They are removed first (they cannot outlive it anyway), then this one.
            Err(BollardError::DockerResponseServerError { message, .. })
                if message.contains("has dependent containers which must be removed") =>
            {
                for dep in podman_dependents(&message) {
                    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
                    match self.docker.remove_container(&dep, Some(opts)).await {
                        Ok(()) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            return Err(engine(e).context(format!("cannot remove container {dep}")));
                        }
                    }
                }
                let opts = RemoveContainerOptionsBuilder::new().force(true).build();
                match self.docker.remove_container(id, Some(opts)).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(e) => Err(engine(e).context(format!("cannot remove container {id}"))),
                }
            }
            Err(e) if is_not_found(&e) => Ok(()),
            // Another request is removing it already: what we asked for is happening;
            // return once it is done.
            Err(e) if is_conflict(&e) => self.await_removal(id).await,
            Err(e) => Err(engine(e).context(format!("cannot remove container {id}"))),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let opts = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_conflict(&e) => Err(in_use("volume", name, e)),
            Err(e) => Err(engine(e).context(format!("cannot remove volume {name}"))),
        }
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        // A name two networks share (see `create_network`) is ambiguous to the engine.
        let ids = self.networks_named(name).await?;
        if ids.len() > 1 {
            for id in ids {
                match self.docker.remove_network(&id).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(engine(e).context(format!("cannot remove network {name}")));
                    }
                }
            }
            return Ok(());
        }
        let mut retried = false;
        loop {
            match self.docker.remove_network(name).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                // 403 "has active endpoints": a container is still attached.
                Err(e) if classify_ref(&e) == EngineErrorKind::Conflict => {
                    if !retried && self.podman_release_ended(name).await {
                        retried = true;
                        continue;
                    }
                    return Err(in_use("network", name, e));
                }
                Err(e) => {
                    return Err(engine(e).context(format!("cannot remove network {name}")));
                }
            }
        }
    }

    async fn panic_stop_all(&self, only: Option<(&str, &str)>) -> Result<Vec<String>> {
        let mut filters = HashMap::new();
        let mut labels = vec![LABEL_TASK.to_string()];
        if let Some((k, v)) = only {
            labels.push(format!("{k}={v}"));
        }
        filters.insert("label", labels);
        let opts = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine)?;
        let jobs = list.iter().map(|c| {
            let id = c.id.clone().unwrap_or_default();
            let networks: Vec<String> = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .map(|n| n.keys().cloned().collect())
                .unwrap_or_default();
            async move { self.cut_and_kill(&id, &networks).await }
        });
        let results = futures_util::future::join_all(jobs).await;
        let mut stopped = Vec::new();
        for (c, r) in list.iter().zip(results) {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            r.with_context(|| format!("cannot stop {name}"))?;
            stopped.push(name);
        }
        Ok(stopped)
    }

    async fn labels_of(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>> {
        let found = match kind {
            ObjectKind::Container => self
                .docker
                .inspect_container(name, None)
                .await
                .map(|c| c.config.and_then(|c| c.labels).unwrap_or_default()),
            ObjectKind::Volume => self.docker.inspect_volume(name).await.map(|v| v.labels),
            ObjectKind::Network => self
                .docker
                .inspect_network(
                    name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .map(|n| n.labels.unwrap_or_default()),
        };
        match found {
            Ok(labels) => Ok(Some(labels)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine(e).context(format!("cannot inspect {name}"))),
        }
    }

    async fn containers_with(&self, labels: &[(&str, &str)]) -> Result<Vec<Owned>> {
        let found = self
            .listing(ObjectKind::Container, &label_filter(labels))
            .await?;
        Ok(found
            .into_iter()
            .map(|f| Owned {
                task: f.listed.labels.get(LABEL_TASK).cloned().unwrap_or_default(),
                id: f.listed.id,
                state: f.state,
            })
            .collect())
    }

    async fn inventory(&self, labels: &[(&str, &str)]) -> Result<Inventory> {
        let filters = label_filter(labels);
        let (containers, networks, volumes) = tokio::try_join!(
            self.listing(ObjectKind::Container, &filters),
            self.listing(ObjectKind::Network, &filters),
            self.listing(ObjectKind::Volume, &filters),
        )?;
        let mut inv = Inventory::default();
        for c in containers {
            for name in c.names {
                inv.containers.insert(name, c.state.clone());
            }
            inv.containers.insert(c.listed.id, c.state);
        }
        for n in networks {
            inv.networks.insert(n.listed.name);
            inv.networks.insert(n.listed.id);
        }
        for v in volumes {
            inv.volumes.insert(v.listed.name);
        }
        Ok(inv)
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
        label: Option<(&str, &str)>,
    ) -> Result<Vec<Listed>> {
        // The engine's filters are ORed only within one key, so ask twice (by name, which
        // the engine matches anywhere in the name, and by label) and merge.
        let mut queries = vec![HashMap::from([(
            "name".to_string(),
            vec![prefix.to_string()],
        )])];
        if let Some(l) = label {
            queries.push(label_filter(&[l]));
        }
        let mut out: Vec<Listed> = Vec::new();
        for filters in queries {
            for Found { listed, .. } in self.listing(kind, &filters).await? {
                let wanted = listed.name.starts_with(prefix)
                    || label
                        .is_some_and(|(k, v)| listed.labels.get(k).map(String::as_str) == Some(v));
                if wanted && !out.iter().any(|o| o.id == listed.id) {
                    out.push(listed);
                }
            }
        }
        Ok(out)
    }

    async fn images_labelled(&self, key: &str) -> Result<Vec<ImageInfo>> {
        let filters = HashMap::from([("label".to_string(), vec![key.to_string()])]);
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(engine)
            .context("cannot list images")?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size: u64::try_from(i.size).unwrap_or(0),
                created: i.created,
                labels: i.labels,
            })
            .collect())
    }

    async fn image_uses(&self) -> Result<Vec<ImageUse>> {
        let opts = ListContainersOptionsBuilder::new().all(true).build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine)
            .context("cannot list containers")?;
        Ok(list
            .into_iter()
            .map(|c| ImageUse {
                image_id: c.image_id.unwrap_or_default(),
                container: c.id.unwrap_or_default(),
                running: matches!(
                    c.state,
                    Some(
                        bollard::models::ContainerSummaryStateEnum::RUNNING
                            | bollard::models::ContainerSummaryStateEnum::RESTARTING
                            | bollard::models::ContainerSummaryStateEnum::PAUSED
                    )
                ),
            })
            .collect())
    }

    async fn oci_runtimes(&self) -> Result<Vec<String>> {
        let info = self
            .docker
            .info()
            .await
            .map_err(engine)
            .context("cannot ask the engine for its OCI runtimes")?;
        let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        names.sort();
        if let Some(default) = info.default_runtime {
            names.retain(|n| *n != default);
            names.insert(0, default);
        }
        Ok(names)
    }

    async fn remove_image_tag(&self, tag: &str) -> Result<bool> {
        let opts = RemoveImageOptionsBuilder::new()
            .force(false)
            .noprune(false)
            .build();
        let gone = self
            .docker
            .remove_image(tag, Some(opts), None)
            .await
            .map_err(engine)
            .with_context(|| format!("cannot remove image {tag}"))?;
        Ok(gone.iter().any(|g| g.deleted.is_some()))
    }
}

/// An object from one listing of the engine (see [`DockerRuntime::listing`]).
struct Found {
    listed: Listed,
    /// Every name of a container (an engine may list several); a network's or volume's one.
    names: Vec<String>,
    /// A container's state; [`ContainerState::Missing`] for other kinds.
    state: ContainerState,
}

/// The engine's filter for objects carrying all of `labels`.
fn label_filter(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )])
}

impl DockerRuntime {
    /// Every object of `kind` the engine lists under `filters` (containers in any state):
    /// one request, plus an inspection for an ended container whose listing does not say its
    /// exit code. [`Runtime::containers_with`], [`Runtime::inventory`] and
    /// [`Runtime::list_objects`] are views of it.
    async fn listing(
        &self,
        kind: ObjectKind,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Found>> {
        let found = match kind {
            ObjectKind::Container => {
                let opts = ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(filters)
                    .build();
                let list = self
                    .docker
                    .list_containers(Some(opts))
                    .await
                    .map_err(engine)
                    .context("cannot list containers")?;
                let mut out = Vec::new();
                for c in list {
                    let id = c.id.unwrap_or_default();
                    let state = match c.state.map(|s| s.to_string()).as_deref() {
                        Some("running") => ContainerState::Running,
                        Some("created") => ContainerState::Created,
                        Some("exited") | Some("dead") => {
                            match c.status.as_deref().and_then(listed_exit_code) {
                                Some(code) => ContainerState::Exited(code),
                                None => self.state(&id).await?,
                            }
                        }
                        other => ContainerState::Other(other.unwrap_or("unknown").to_string()),
                    };
                    let names: Vec<String> = c
                        .names
                        .unwrap_or_default()
                        .into_iter()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .collect();
                    out.push(Found {
                        listed: Listed {
                            kind,
                            id,
                            name: names.first().cloned().unwrap_or_default(),
                            labels: c.labels.unwrap_or_default(),
                        },
                        names,
                        state,
                    });
                }
                out
            }
            ObjectKind::Volume => {
                let opts = bollard::query_parameters::ListVolumesOptionsBuilder::new()
                    .filters(filters)
                    .build();
                self.docker
                    .list_volumes(Some(opts))
                    .await
                    .map_err(engine)
                    .context("cannot list volumes")?
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| Found {
                        names: vec![v.name.clone()],
                        listed: Listed {
                            kind,
                            id: v.name.clone(),
                            name: v.name,
                            labels: v.labels,
                        },
                        state: ContainerState::Missing,
                    })
                    .collect()
            }
            ObjectKind::Network => {
                let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
                    .filters(filters)
                    .build();
                self.docker
                    .list_networks(Some(opts))
                    .await
                    .map_err(engine)
                    .context("cannot list networks")?
                    .into_iter()
                    .map(|n| {
                        let name = n.name.unwrap_or_default();
                        Found {
                            names: vec![name.clone()],
                            listed: Listed {
                                kind,
                                id: n.id.unwrap_or_default(),
                                name,
                                labels: n.labels.unwrap_or_default(),
                            },
                            state: ContainerState::Missing,
                        }
                    })
                    .collect()
            }
        };
        Ok(found)
    }
}

/// The exit code in a container listing's status text (`Exited (137) 2 minutes ago`).
fn listed_exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// Size the session to the terminal, run `ready`, then copy what the user types to `input`
/// and `output` to the terminal until the output ends, passing every new window size to
/// `resize`.
async fn pump_terminal<Fut>(
    output: &mut std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send>,
    >,
    input: &mut std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    terminal: Terminal,
    ready: impl std::future::Future<Output = Result<()>>,
    resize: impl Fn((u16, u16)) -> Fut,
) -> Result<()>
where
    Fut: std::future::Future<Output = ()>,
{
    let Terminal {
        input: mut typed,
        output: mut out,
        mut size,
    } = terminal;
    let first = *size.borrow_and_update();
    if let Some(s) = first {
        resize(s).await;
    }
    ready.await?;
    let mut stdin_open = true;
    let mut sizes_open = true;
    loop {
        tokio::select! {
            msg = output.next() => match msg {
                Some(Ok(m)) => {
                    out.write_all(&m.into_bytes()).await?;
                    out.flush().await?;
                }
                Some(Err(e)) => return Err(engine(e)),
                None => break,
            },
            data = typed.recv(), if stdin_open => match data {
                Some(data) => {
                    if input.write_all(&data).await.is_err() {
                        stdin_open = false;
                    }
                }
                None => stdin_open = false,
            },
            changed = size.changed(), if sizes_open => match changed {
                Ok(()) => {
                    let now = *size.borrow_and_update();
                    if let Some(s) = now {
                        resize(s).await;
                    }
                }
                Err(_) => sizes_open = false,
            },
        }
    }
    Ok(())
}

impl DockerRuntime {
    /// Whether the engine is Podman (through its Docker-compatible API), asked once per
    /// connection (a process may talk to several engines). Only for the few places where
    /// Podman's answers differ in a way that matters; each says why.
    pub async fn is_podman(&self) -> bool {
        *self
            .podman
            .get_or_init(|| async {
                self.docker.version().await.is_ok_and(|v| {
                    v.components
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.name.starts_with("Podman"))
                })
            })
            .await
    }

    /// The engine's Unix socket, when it is reached through one.
    fn unix_socket(&self) -> Option<&std::path::Path> {
        (self.address.scheme() == Scheme::Unix)
            .then(|| self.address.url.strip_prefix("unix://"))
            .flatten()
            .map(std::path::Path::new)
    }

    /// Whether the engine is Podman reached other than through its local socket: its
    /// internal networks then keep their name server (only libpod's own API, reached on the
    /// socket, creates them without one; see `libpod`), which resolves any name through the
    /// host's resolvers.
    pub async fn podman_dns_gap(&self) -> bool {
        self.is_podman().await && self.unix_socket().is_none()
    }

    /// Why this engine would not enforce a container's limits, if it would not: rootless
    /// Podman on cgroups v1, or on v2 without the controllers delegated (see `libpod`). A
    /// Podman reached off its socket is not asked (it is refused for its name server first).
    pub async fn limits_unenforced(&self) -> Option<String> {
        if !self.is_podman().await {
            return None;
        }
        let info = super::libpod::info(self.unix_socket()?).await.ok()?;
        super::libpod::limits_unenforced(&info)
    }

    /// Podman starts the container whose processes `id` joins (`pid_mode: container:<x>`)
    /// when that one is not running, where Docker refuses the start. A disk warden started
    /// just after its task ended would bring the task back (its helper, seeing the task ran,
    /// then sleeps forever and `spawn --wait` never returns): refuse as Docker does.
    async fn podman_refuses_dead_pid_owner(&self, id: &str) -> Result<()> {
        if !self.is_podman().await {
            return Ok(());
        }
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            // The start reports it.
            Err(_) => return Ok(()),
        };
        let owner = c
            .host_config
            .and_then(|h| h.pid_mode)
            .and_then(|m| m.strip_prefix("container:").map(str::to_string));
        match owner {
            Some(owner) if self.state(&owner).await? != ContainerState::Running => {
                Err(anyhow::Error::new(EngineError::new(
                    EngineErrorKind::Conflict,
                    Some(409),
                    format!(
                        "cannot start container {id}: container {owner}, whose processes it joins, is not running"
                    ),
                )))
            }
            _ => Ok(()),
        }
    }

    /// Podman keeps a container that has ended on its networks (Docker lets go of its
    /// endpoints when it stops), so a finished task's network could not be removed while its
    /// container is kept. Disconnect the containers on `network` that are not running, as
    /// Docker would have; true when there were some.
    async fn podman_release_ended(&self, network: &str) -> bool {
        if !self.is_podman().await {
            return false;
        }
        let filters = HashMap::from([("network", vec![network])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(list) = self.docker.list_containers(Some(opts)).await else {
            return false;
        };
        let mut released = false;
        for id in list.into_iter().filter_map(|c| c.id) {
            if matches!(self.state(&id).await, Ok(ContainerState::Running) | Err(_)) {
                continue;
            }
            let req = bollard::models::NetworkDisconnectRequest {
                container: id,
                force: Some(true),
            };
            released |= self.docker.disconnect_network(network, req).await.is_ok();
        }
        released
    }

    /// Create a container under a fixed name. A 409 means another request holds the name
    /// (a container of that name exists, or is still being removed): said as such, typed
    /// [`EngineErrorKind::Conflict`], never the engine's raw answer.
    async fn create_named(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<bollard::models::ContainerCreateResponse> {
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r),
            Err(e) if is_conflict(&e) => Err(name_taken("container", name, e)),
            Err(e) => Err(engine(e)),
        }
    }

    /// The ids of the networks named exactly `name`, oldest first (the engine's name filter
    /// matches parts of names, and API versions before 1.44 let two networks share a name).
    async fn networks_named(&self, name: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("name", vec![name])]);
        let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(engine)
            .with_context(|| format!("cannot list networks named {name}"))?;
        let mut found: Vec<((String, u32), String)> = list
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                let created = created_key(n.created.as_deref().unwrap_or_default());
                n.id.map(|id| (created, id))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// Wait (a bounded time) for a container whose removal another request started to be gone,
    /// so a create of the same name that follows does not meet it.
    async fn await_removal(&self, id: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.docker.inspect_container(id, None).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => {
                    return Err(engine(e).context(format!("cannot inspect container {id}")));
                }
                Ok(_) if std::time::Instant::now() >= deadline => {
                    return Err(hinted(
                        format!("container {id} is still being removed by the engine after 30s"),
                        "run `git agent doctor` to see what is left; `git agent purge <task>` removes a task's objects",
                    ));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Refuse to put a container into the PID namespace of `task` unless the task runs under
    /// the engine's default OCI runtime. Under another (gVisor's `runsc`) the task's processes
    /// live in that runtime's own kernel, and the namespace the engine hands out is the one
    /// of the runtime's host processes: with Docker and runsc, the host's. A disk warden
    /// there would see, and could kill, every process on the machine.
    async fn shares_pid_namespace(&self, task: &str) -> Result<()> {
        // Podman's Docker-compatible API names every container's runtime `oci`, whichever
        // runs it (and its transient `stopped` state fails an inspect): this check cannot
        // tell there, and the first line holds (no warden is made for a task whose record
        // names another runtime, see `sandbox::oci`).
        if self.is_podman().await {
            return Ok(());
        }
        let c = self
            .docker
            .inspect_container(task, None)
            .await
            .map_err(engine)
            .with_context(|| format!("cannot inspect container {task}"))?;
        let runtime = c.host_config.and_then(|h| h.runtime).unwrap_or_default();
        if runtime.is_empty() || runtime == "runc" {
            return Ok(());
        }
        let default = self
            .docker
            .info()
            .await
            .map_err(engine)
            .context("cannot ask the engine for its default OCI runtime")?
            .default_runtime
            .unwrap_or_default();
        if runtime == default {
            return Ok(());
        }
        Err(hinted(
            format!(
                "refusing to join the PID namespace of container {task}: it runs under the OCI runtime {runtime}, whose processes are not in a namespace of their own"
            ),
            "a task under another OCI runtime than the engine's default has no disk warden (git-agent does not start one); `git agent doctor` lists what is left",
        ))
    }

    async fn cut_and_kill(&self, id: &str, networks: &[String]) -> Result<()> {
        for net in networks {
            self.docker
                .disconnect_network(
                    net,
                    bollard::models::NetworkDisconnectRequest {
                        container: id.to_string(),
                        force: Some(true),
                    },
                )
                .await
                .ok();
        }
        self.stop(id, 0).await
    }
}

/// The containers Podman names in "container X has dependent containers which must be
/// removed before it: <id>[,<id>...]: container already exists": full ids only.
fn podman_dependents(message: &str) -> Vec<String> {
    let Some((_, rest)) = message.split_once("must be removed before it: ") else {
        return vec![];
    };
    let list = rest.split(": ").next().unwrap_or_default();
    list.split(',')
        .map(str::trim)
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// The entrypoint that resets the image's: `[""]`, as `docker run --entrypoint ""` sends it.
/// Podman (4.3) reads an empty list as "not given" and runs the image's entrypoint with our
/// command as its arguments; Docker reads both forms as "none".
fn no_entrypoint() -> Option<Vec<String>> {
    Some(vec![String::new()])
}

/// The engine's settings for a [`Hardening`], faithfully: every capability dropped but the
/// kept ones, and nothing added that the caller did not ask for.
/// Whether a start failed in the OCI runtime's hook that the engine itself installs (Docker's
/// network setup, `libnetwork-setkey`), an engine-internal failure seen under load.
fn runtime_hook_failed(message: &str) -> bool {
    message.contains("OCI runtime create failed") && message.contains("error running hook")
}

/// `/etc/hosts` lines for [`crate::runtime::Hosts`] (`None` when there are none).
fn extra_hosts(hosts: &crate::runtime::Hosts) -> Option<Vec<String>> {
    (!hosts.is_empty()).then(|| hosts.iter().map(|(n, a)| format!("{n}:{a}")).collect())
}

/// The endpoint of a container on `network` at a fixed address (none without both).
fn fixed_endpoint(
    network: Option<&str>,
    address: Option<std::net::Ipv4Addr>,
) -> Option<NetworkingConfig> {
    let (network, address) = (network?, address?);
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                ipam_config: fixed_address(Some(address)),
                ..Default::default()
            },
        )])),
    })
}

/// An endpoint's fixed IPv4 address, if any.
fn fixed_address(address: Option<std::net::Ipv4Addr>) -> Option<EndpointIpamConfig> {
    address.map(|a| EndpointIpamConfig {
        ipv4_address: Some(a.to_string()),
        ..Default::default()
    })
}

fn host_config(h: &Hardening) -> HostConfig {
    let tmpfs = (!h.tmpfs.is_empty()).then(|| {
        h.tmpfs
            .iter()
            .map(|t| {
                (
                    t.path.clone(),
                    format!(
                        "rw,nosuid,nodev,size={},mode={:o}",
                        human_size(t.size),
                        t.mode
                    ),
                )
            })
            .collect()
    });
    HostConfig {
        readonly_rootfs: Some(h.read_only_root),
        tmpfs,
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: Some(h.keep_caps.clone()),
        security_opt: h
            .no_new_privileges
            .then(|| vec!["no-new-privileges".into()]),
        pids_limit: Some(h.limits.pids),
        memory: Some(h.limits.memory),
        nano_cpus: h.limits.nano_cpus,
        init: Some(h.init),
        log_config: h.limits.log.map(log_rotation),
        ..Default::default()
    }
}

/// The engine's `Runtime` for a container: the name as it is, once it is known to be a
/// name and nothing else (it reaches the engine, which looks it up among its runtimes).
fn oci_runtime(name: Option<&str>) -> Result<Option<String>> {
    match name {
        Some(n) if !super::is_oci_runtime_name(n) => Err(hinted(
            format!("refusing the OCI runtime {n:?}: it is not a runtime's name"),
            "name one of the engine's runtimes (`docker info` lists them): git config agent.ociRuntime runsc",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

fn mounts(list: &[VolumeMount]) -> Vec<Mount> {
    list.iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.volume.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect()
}

/// Rotated json-file logs (see [`super::ResourceLimits::log`]).
fn log_rotation(r: LogRotation) -> bollard::models::HostConfigLogConfig {
    bollard::models::HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), human_size(r.file_size)),
            ("max-file".to_string(), r.files.to_string()),
        ])),
    }
}

/// A size in the engine's notation, in the largest unit that divides it (`20m`, `1g`).
fn human_size(bytes: u64) -> String {
    for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
        if bytes > 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// An engine timestamp (RFC 3339, nanoseconds with trailing zeros cut) as a sortable key:
/// the seconds, then the fraction in nanoseconds. One engine writes one time zone.
fn created_key(stamp: &str) -> (String, u32) {
    let (secs, rest) = stamp.split_at(stamp.len().min(19));
    let nanos = rest
        .strip_prefix('.')
        .map(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).take(9).collect();
            format!("{digits:0<9}").parse().unwrap_or(0)
        })
        .unwrap_or(0);
    (secs.to_string(), nanos)
}

/// An exec that could not be created. A 409 means the container is not running (it ended,
/// or was stopped meanwhile): said so, not as the engine's raw answer.
fn exec_failed(id: &str, e: BollardError) -> anyhow::Error {
    if is_conflict(&e) {
        return anyhow::Error::new(classify(e)).context(crate::error::Hint {
            message: format!("cannot run a command in container {id}: it is not running"),
            hint: "see the task's state with `git agent status <task>`; `git agent restart <task>` starts it again".into(),
        });
    }
    engine(e).context(format!("cannot run a command in container {id}"))
}

/// The kind of a client error without consuming it.
fn classify_ref(e: &BollardError) -> EngineErrorKind {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            classify(BollardError::DockerResponseServerError {
                status_code: *status_code,
                message: message.clone(),
            })
            .kind
        }
        _ => EngineErrorKind::Other,
    }
}

/// A volume or network that cannot be removed because a container still uses it.
fn in_use(what: &str, name: &str, e: BollardError) -> anyhow::Error {
    anyhow::Error::new(classify(e)).context(crate::error::Hint {
        message: format!("cannot remove {what} {name}: a container still uses it"),
        hint: "`git agent doctor` lists what is left of each task; `git agent purge <task>` removes a task's container before its volumes and network".into(),
    })
}

/// A 409 on creating a named object: someone else holds the name right now.
fn name_taken(what: &str, name: &str, e: BollardError) -> anyhow::Error {
    let mut err = classify(e);
    err.kind = EngineErrorKind::Conflict;
    anyhow::Error::new(err).context(crate::error::Hint {
        message: format!(
            "cannot create {what} {name}: one of that name already exists or is being removed (another git-agent command may be working on the same task)"
        ),
        hint: "let the other command finish, then run this one again; `git agent doctor` lists objects left behind and `git agent purge <task>` removes a task's".into(),
    })
}

/// The builder stopped on an error. Its output went to the caller's progress as it came
/// (the caller keeps the log and shows its end), so the message is the engine's alone.
fn build_failed(error: &str) -> anyhow::Error {
    let error = crate::error::sanitize(error.trim());
    let msg = if error.is_empty() {
        "image build failed: the engine's builder stopped without saying why".to_string()
    } else {
        format!("image build failed: {error}")
    };
    hinted(
        msg,
        "fix the failing step (see `git agent image build --dry-run` for the Dockerfile), then run `git agent image build`",
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_failed_network_hook_is_the_engines_not_the_request() {
        // What Docker 26 answered (HTTP 400) under load, seen in this project's CI.
        let seen = "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: error running hook #0: error running hook: exit status 1, stdout: , stderr: time=\"2026-12-03T14:03:12Z\" level=fatal msg=\"no such file or directory\": unknown";
        assert!(runtime_hook_failed(seen));
        // A refusal of what was asked stays one.
        assert!(!runtime_hook_failed(
            "OCI runtime create failed: runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        ));
        assert!(!runtime_hook_failed("invalid mount config"));
    }

    use super::*;

    fn server(status_code: u16, message: &str) -> BollardError {
        BollardError::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn creation_times_sort_by_their_value() {
        let a = created_key("2026-12-02T07:01:02.1234567Z");
        let b = created_key("2026-12-02T07:01:02.12345Z");
        let c = created_key("2026-12-02T07:01:02Z");
        assert!(c < b && b < a, "{a:?} {b:?} {c:?}");
        assert!(created_key("2026-12-02T07:01:03.1Z") > a);
    }

    #[test]
    fn engine_answers_are_typed_by_status() {
        let e = classify(server(404, "No such container: x"));
        assert_eq!(e.kind, EngineErrorKind::NotFound);
        let e = classify(server(
            409,
            "Conflict. The container name \"/ga-1\" is already in use by container \"abc\". You have to remove (or rename) that container to be able to reuse that name.",
        ));
        assert_eq!(e.kind, EngineErrorKind::Conflict);
        let e = classify(server(
            403,
            "error while removing network: network ga-1 id 6c0d has active endpoints",
        ));
        assert_eq!(e.kind, EngineErrorKind::Conflict);
        assert_eq!(
            classify(server(500, "driver failed")).kind,
            EngineErrorKind::Other
        );
        assert!(classify(server(500, "")).to_string().contains("500"));
    }

    /// The engines' own answers when no address range is left for a network (Docker 20.10
    /// to 23, older ones, 27+) and when its disk is full; the pool cannot be exhausted on a
    /// shared test engine without breaking everyone else's networks.
    #[test]
    fn pool_exhaustion_and_full_disk_are_recognised_from_the_engines_words() {
        for body in [
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
            "failed to parse pool request for address space \"LocalDefault\" pool \"\" subpool \"\": could not find an available predefined network",
            "all predefined address pools have been fully subnetted",
            "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network",
            "failed to allocate network: could not find a free subnet",
        ] {
            for status in [400, 403, 404, 500] {
                let e = classify(server(status, body));
                assert_eq!(e.kind, EngineErrorKind::AddressPoolExhausted, "{body}");
                let hint = e.hint.unwrap();
                assert!(hint.contains("docker network prune"), "{hint}");
                assert!(hint.contains("default-address-pools"), "{hint}");
            }
        }
        let e = classify(server(
            500,
            "write /var/lib/docker/volumes/x/_data/f: no space left on device",
        ));
        assert_eq!(e.kind, EngineErrorKind::NoSpace);
        assert_eq!(engine_says("No such network: ga-1"), None);
    }

    #[test]
    fn podmans_dependent_containers_are_read_from_its_words() {
        let a = "a".repeat(64);
        let b = "0123456789abcdef".repeat(4);
        let m = format!(
            "container {a} has dependent containers which must be removed before it: {b},{a}: container already exists"
        );
        assert_eq!(podman_dependents(&m), vec![b.clone(), a.clone()]);
        assert!(podman_dependents("no such container").is_empty());
        assert!(podman_dependents("removed before it: ../x,short: y").is_empty());
    }

    #[test]
    fn podmans_objects_in_use_are_conflicts() {
        // Podman 4.3's own words (HTTP 500) for `DELETE /networks/<n>` and `/volumes/<v>`.
        for body in [
            "\"git-agent-1.net.t\" has associated containers with it. Use -f to forcibly delete containers and pods: network is being used",
            "volume git-agent-1.ws.t is being used by the following container(s): 0123abcd: volume is being used",
        ] {
            assert_eq!(classify(server(500, body)).kind, EngineErrorKind::Conflict);
        }
    }

    #[test]
    fn a_refused_connection_is_unreachable_with_a_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = classify(BollardError::IOError { err: io });
        assert_eq!(e.kind, EngineErrorKind::Unreachable);
        assert!(e.to_string().contains("Connection refused"), "{e}");
        assert!(e.hint.unwrap().contains("git agent doctor"));
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = classify(BollardError::IOError { err: denied });
        assert_eq!(e.kind, EngineErrorKind::PermissionDenied);
        let e = classify(BollardError::SocketNotFoundError("/nope.sock".into()));
        assert_eq!(e.kind, EngineErrorKind::Unreachable);
    }

    fn hardening() -> Hardening {
        Hardening {
            user: super::super::UserId::same(1000),
            keep_caps: vec!["KILL".into()],
            no_new_privileges: true,
            read_only_root: true,
            tmpfs: vec![super::super::Tmpfs {
                path: "/tmp".into(),
                size: 1 << 30,
                mode: 0o1777,
            }],
            limits: super::super::ResourceLimits {
                pids: 64,
                memory: 256 << 20,
                nano_cpus: Some(500_000_000),
                log: Some(LogRotation {
                    file_size: 20 << 20,
                    files: 5,
                }),
            },
            init: true,
        }
    }

    /// A container's OCI runtime reaches the engine only as a runtime's name.
    #[test]
    fn an_oci_runtime_is_passed_on_only_as_a_name() {
        assert_eq!(oci_runtime(None).unwrap(), None);
        assert_eq!(
            oci_runtime(Some("runsc")).unwrap().as_deref(),
            Some("runsc")
        );
        for bad in [
            "../../bin/sh",
            "runc --foo",
            "/usr/bin/runsc",
            "--privileged",
            "",
        ] {
            let err = oci_runtime(Some(bad)).unwrap_err();
            assert!(crate::error::find_hint(&err).is_some(), "{bad:?}");
        }
    }

    /// Every field of a hardening reaches the engine, and nothing else is added: all
    /// capabilities but the kept ones dropped.
    #[test]
    fn hardening_is_translated_faithfully() {
        let h = host_config(&hardening());
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, Some(vec!["KILL".to_string()]));
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(
            h.tmpfs,
            Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,nodev,size=1g,mode=1777".to_string()
            )]))
        );
        assert_eq!(h.pids_limit, Some(64));
        assert_eq!(h.memory, Some(256 << 20));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.init, Some(true));
        let log = h.log_config.expect("rotated logs");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let config = log.config.expect("rotation settings");
        assert_eq!(config["max-size"], "20m");
        assert_eq!(config["max-file"], "5");
        assert_eq!(h.privileged, None);
        assert_eq!(h.binds, None);

        let mut loose = hardening();
        loose.no_new_privileges = false;
        loose.read_only_root = false;
        loose.tmpfs.clear();
        loose.limits.nano_cpus = None;
        loose.limits.log = None;
        loose.init = false;
        let h = host_config(&loose);
        assert_eq!(h.security_opt, None);
        assert_eq!(h.readonly_rootfs, Some(false));
        assert_eq!(h.tmpfs, None);
        assert_eq!(h.nano_cpus, None);
        assert_eq!(h.log_config.map(|l| l.typ), None);
        assert_eq!(h.init, Some(false));
    }

    #[test]
    fn sizes_in_the_engines_notation() {
        assert_eq!(human_size(1 << 30), "1g");
        assert_eq!(human_size(20 << 20), "20m");
        assert_eq!(human_size(1536 << 20), "1536m");
        assert_eq!(human_size(3 << 10), "3k");
        assert_eq!(human_size(1000), "1000");
        assert_eq!(human_size(0), "0");
    }

    #[test]
    fn exit_code_from_a_listing() {
        assert_eq!(listed_exit_code("Exited (137) 2 minutes ago"), Some(137));
        assert_eq!(
            listed_exit_code("Exited (0) Less than a second ago"),
            Some(0)
        );
        assert_eq!(listed_exit_code("Up 3 seconds"), None);
        assert_eq!(listed_exit_code("Exited (x)"), None);
    }
}
