//! The one place that chooses the container engine. [`Engine`] is the [`Runtime`] every
//! operation gets (through `ops::engine`); it delegates to the engine chosen here.
//!
//! Shipped builds have one engine: Docker (or Podman through its Docker-compatible API),
//! found as today through `DOCKER_HOST` or the default socket. The engine-less test backend
//! ([`super::local`]) exists only in builds with the `local-runtime` cargo feature, and even
//! there only when the environment asks for it with `GIT_AGENT_RUNTIME=local`: in a default
//! build that variable is never read, so nobody can run agents unsandboxed by setting it.
//!
//! This module must not hold engine logic of its own: only the choice and the delegation.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncWrite};

use super::docker::DockerRuntime;
use super::engines::EngineDef;
#[cfg(feature = "local-runtime")]
use super::local::LocalRuntime;
use super::{
    CommitSpec, CompanionSpec, ContainerState, DoorSpec, ExecOutcome, GatewaySpec, ImageConfig,
    Inventory, Listed, ObjectKind, Owned, Runtime, SandboxSpec, StepSpec, Upload, WardenSpec,
};

/// The environment variable that asks a `local-runtime` build for the local runtime.
pub const RUNTIME_ENV: &str = "GIT_AGENT_RUNTIME";

/// Which engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Docker,
    /// Only in builds with the `local-runtime` feature.
    #[cfg(feature = "local-runtime")]
    Local,
}

/// The engine for a request (the value of [`RUNTIME_ENV`], if set). Only a `local-runtime`
/// build ever answers anything but Docker.
pub fn choose(requested: Option<&str>) -> Choice {
    #[cfg(feature = "local-runtime")]
    if requested.map(str::trim) == Some("local") {
        return Choice::Local;
    }
    let _ = requested;
    Choice::Docker
}

/// The engine this process was asked to use.
pub fn chosen() -> Choice {
    #[cfg(feature = "local-runtime")]
    {
        choose(std::env::var(RUNTIME_ENV).ok().as_deref())
    }
    #[cfg(not(feature = "local-runtime"))]
    {
        choose(None)
    }
}

/// The chosen container engine.
pub enum Engine {
    Docker(Box<DockerRuntime>),
    #[cfg(feature = "local-runtime")]
    Local(LocalRuntime),
}

impl Engine {
    /// Connect to the chosen engine (see [`DockerRuntime::connect`]).
    pub async fn connect() -> Result<Engine> {
        match chosen() {
            Choice::Docker => Ok(Engine::Docker(Box::new(DockerRuntime::connect().await?))),
            #[cfg(feature = "local-runtime")]
            Choice::Local => Ok(Engine::Local(LocalRuntime::from_env()?)),
        }
    }

    /// Connect to the engine `def` defines (see [`super::engines`]), giving up after `limit`.
    /// A failure names the engine when the user named it.
    pub async fn connect_to(def: &EngineDef, limit: Duration) -> Result<Engine> {
        match chosen() {
            Choice::Docker => {
                let rt = match &def.address {
                    Some(address) => DockerRuntime::connect_at(address, limit).await,
                    None => DockerRuntime::connect_within(limit).await,
                };
                match rt {
                    Ok(rt) => Ok(Engine::Docker(Box::new(rt))),
                    Err(e) if def.name == super::engines::DEFAULT => Err(e),
                    Err(e) => Err(e.context(format!("engine '{}'", def.name))),
                }
            }
            #[cfg(feature = "local-runtime")]
            Choice::Local => Ok(Engine::Local(LocalRuntime::from_env()?)),
        }
    }

    /// [`connect`](Self::connect), giving up after `limit`.
    pub async fn connect_within(limit: Duration) -> Result<Engine> {
        match chosen() {
            Choice::Docker => Ok(Engine::Docker(Box::new(
                DockerRuntime::connect_within(limit).await?,
            ))),
            #[cfg(feature = "local-runtime")]
            Choice::Local => Ok(Engine::Local(LocalRuntime::from_env()?)),
        }
    }
}

/// Run `$body` with `$rt` bound to whichever engine `$engine` holds.
macro_rules! each {
    ($engine:expr, $rt:ident => $body:expr) => {
        match $engine {
            Engine::Docker($rt) => $body,
            #[cfg(feature = "local-runtime")]
            Engine::Local($rt) => $body,
        }
    };
}

impl Runtime for Engine {
    fn isolation(&self) -> super::Isolation {
        each!(self, rt => rt.isolation())
    }

    async fn ping(&self) -> Result<String> {
        each!(self, rt => rt.ping().await)
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>> {
        each!(self, rt => rt.image_id(tag).await)
    }

    async fn build_image(
        &self,
        context: Vec<u8>,
        tag: &str,
        labels: &HashMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<String> {
        each!(self, rt => rt.build_image(context, tag, labels, progress).await)
    }

    async fn image_config(&self, image: &str) -> Result<ImageConfig> {
        each!(self, rt => rt.image_config(image).await)
    }

    async fn create_step_container(&self, spec: &StepSpec) -> Result<String> {
        each!(self, rt => rt.create_step_container(spec).await)
    }

    async fn exec_step(
        &self,
        id: &str,
        cmd: &[String],
        env: &[String],
        workdir: &str,
        output: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<i64> {
        each!(self, rt => rt.exec_step(id, cmd, env, workdir, output).await)
    }

    async fn commit(&self, spec: &CommitSpec) -> Result<String> {
        each!(self, rt => rt.commit(spec).await)
    }

    async fn create_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        internal: bool,
        subnet: Option<&str>,
    ) -> Result<String> {
        each!(self, rt => rt.create_network(name, labels, internal, subnet).await)
    }

    async fn network_subnets(&self) -> Result<Vec<String>> {
        each!(self, rt => rt.network_subnets().await)
    }

    async fn network_exists(&self, name: &str) -> Result<bool> {
        each!(self, rt => rt.network_exists(name).await)
    }

    async fn create_gateway(&self, spec: &GatewaySpec) -> Result<String> {
        each!(self, rt => rt.create_gateway(spec).await)
    }

    async fn attach_gateway(&self, id: &str, spec: &GatewaySpec) -> Result<()> {
        each!(self, rt => rt.attach_gateway(id, spec).await)
    }

    async fn create_warden(&self, spec: &WardenSpec) -> Result<String> {
        each!(self, rt => rt.create_warden(spec).await)
    }

    async fn create_companion(&self, spec: &CompanionSpec) -> Result<String> {
        each!(self, rt => rt.create_companion(spec).await)
    }

    async fn create_door(&self, spec: &DoorSpec) -> Result<String> {
        each!(self, rt => rt.create_door(spec).await)
    }

    async fn upload(&self, id: &str, dir: &str, files: &[Upload]) -> Result<()> {
        each!(self, rt => rt.upload(id, dir, files).await)
    }

    async fn timestamped_log(&self, id: &str, limit: usize) -> Result<Vec<u8>> {
        each!(self, rt => rt.timestamped_log(id, limit).await)
    }

    async fn create_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<()> {
        each!(self, rt => rt.create_volume(name, labels).await)
    }

    async fn create_container(&self, spec: &SandboxSpec) -> Result<String> {
        each!(self, rt => rt.create_container(spec).await)
    }

    async fn start(&self, id: &str) -> Result<()> {
        each!(self, rt => rt.start(id).await)
    }

    async fn state(&self, id: &str) -> Result<ContainerState> {
        each!(self, rt => rt.state(id).await)
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
        each!(self, rt => rt.exec_env(id, cmd, env, stdin, stdout, limit).await)
    }

    async fn exec_interactive(
        &self,
        id: &str,
        cmd: &[String],
        terminal: super::Terminal,
    ) -> Result<i64> {
        each!(self, rt => rt.exec_interactive(id, cmd, terminal).await)
    }

    async fn attach_terminal<F>(&self, id: &str, terminal: super::Terminal, ready: F) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>> + Send,
    {
        each!(self, rt => rt.attach_terminal(id, terminal, ready).await)
    }

    async fn logs<W>(&self, id: &str, follow: bool, tail: Option<usize>, out: &mut W) -> Result<()>
    where
        W: AsyncWrite + Unpin + Send,
    {
        each!(self, rt => rt.logs(id, follow, tail, out).await)
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        each!(self, rt => rt.wait(id).await)
    }

    async fn stop(&self, id: &str, timeout_secs: i32) -> Result<()> {
        each!(self, rt => rt.stop(id, timeout_secs).await)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        each!(self, rt => rt.remove_container(id).await)
    }

    async fn rename(&self, id: &str, name: &str) -> Result<()> {
        each!(self, rt => rt.rename(id, name).await)
    }

    fn keeps_spares(&self) -> bool {
        each!(self, rt => rt.keeps_spares())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        each!(self, rt => rt.remove_volume(name).await)
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        each!(self, rt => rt.remove_network(name).await)
    }

    async fn labels_of(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>> {
        each!(self, rt => rt.labels_of(kind, name).await)
    }

    async fn containers_with(&self, labels: &[(&str, &str)]) -> Result<Vec<Owned>> {
        each!(self, rt => rt.containers_with(labels).await)
    }

    async fn inventory(&self, labels: &[(&str, &str)]) -> Result<Inventory> {
        each!(self, rt => rt.inventory(labels).await)
    }

    async fn panic_stop_all(&self, only: Option<(&str, &str)>) -> Result<Vec<String>> {
        each!(self, rt => rt.panic_stop_all(only).await)
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
        label: Option<(&str, &str)>,
    ) -> Result<Vec<Listed>> {
        each!(self, rt => rt.list_objects(kind, prefix, label).await)
    }

    async fn images_labelled(&self, key: &str) -> Result<Vec<super::ImageInfo>> {
        each!(self, rt => rt.images_labelled(key).await)
    }

    async fn image_uses(&self) -> Result<Vec<super::ImageUse>> {
        each!(self, rt => rt.image_uses().await)
    }

    async fn remove_image_tag(&self, tag: &str) -> Result<bool> {
        each!(self, rt => rt.remove_image_tag(tag).await)
    }

    async fn oci_runtimes(&self) -> Result<Vec<String>> {
        each!(self, rt => rt.oci_runtimes().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A default build never runs agents outside a container, whatever is asked: `local` is
    /// not even a choice it has (tests/it/orchestration.rs checks the built binary too).
    #[cfg(not(feature = "local-runtime"))]
    #[test]
    fn a_default_build_ignores_a_request_for_the_local_runtime() {
        assert_eq!(choose(Some("local")), Choice::Docker);
        assert_eq!(choose(None), Choice::Docker);
        assert_eq!(chosen(), Choice::Docker);
    }

    #[cfg(feature = "local-runtime")]
    #[test]
    fn a_local_runtime_build_uses_it_only_when_asked() {
        assert_eq!(choose(Some("local")), Choice::Local);
        assert_eq!(choose(Some("docker")), Choice::Docker);
        assert_eq!(choose(Some("podman")), Choice::Docker);
        assert_eq!(choose(None), Choice::Docker);
    }
}
