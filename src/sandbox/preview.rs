//! A task's preview: a dev server run from the task's workspace, mounted read-only, that the
//! user opens in a browser on the host while the agent works.
//!
//! Two containers. The preview runs the server in the task's image, confined like the task
//! (its user, no capabilities, no new privileges, the task's limits, a read-only root with a
//! /tmp), on the task's internal network (as [`ALIAS`]), so its only way out is the task's
//! gateway; a task whose run has ended has no network, and its preview gets an internal one
//! of its own with no way out at all. Engines publish no ports of containers on internal
//! networks, so the way in is a door: a container from git-agent's own gateway image that
//! runs only the relay below, on a network of its own whose one published port is bound to
//! one address of the engine's host, and on the preview's network, where it passes each
//! connection to the preview. For a local engine that address is 127.0.0.1. Nothing is
//! mounted from the host, so a remote engine (`tcp://`, `ssh://`) works the same; its port is
//! then bound to the address the user reaches that engine by (the engine URL's host, see
//! [`Published`]), and the URL names that host: a port on the remote loopback could not be
//! opened from the user's browser without a tunnel.
//!
//! Owns: the names, specs and hardening of both containers and their networks, and removing
//! them. Must not: give the preview a writable mount, a network with a route out, or a port
//! bound to more than the one address; remove an object without the task's labels.

use anyhow::Result;

use super::{RepoId, owned_by};
use crate::runtime::address::Published;
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{
    CompanionSpec, ContainerState, DoorSpec, Hardening, ObjectKind, ResourceLimits, Runtime,
    UserId, VolumeMount,
};

/// The preview's name on its network (the door connects to it there).
pub const ALIAS: &str = "git-agent-preview";

/// The address the door's port is published on for a local engine: its loopback only.
pub const HOST_IP: &str = "127.0.0.1";

/// Label on both preview containers and their networks (besides the task's labels), so an
/// engine listing tells them from the task's own objects.
pub const LABEL_ROLE: &str = "git-agent.role";

/// The door's relay (Python 3 standard library, git-agent's own code): accept on the port,
/// connect to the preview's same port, and copy bytes both ways, passing on half-closes.
const RELAY: &str = r#"import asyncio, sys
target, port = sys.argv[1], int(sys.argv[2])
async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
        if w.can_write_eof():
            w.write_eof()
    except Exception:
        pass
async def client(cr, cw):
    try:
        ur, uw = await asyncio.open_connection(target, port)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
    for w in (uw, cw):
        try:
            w.close()
        except Exception:
            pass
async def main():
    srv = await asyncio.start_server(client, "0.0.0.0", port)
    print("git-agent-door: relaying port", port, "to", target, flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"#;

/// The door's command.
pub fn door_command(port: u16) -> Vec<String> {
    vec![
        "/usr/bin/python3".into(),
        "-IS".into(),
        "-c".into(),
        RELAY.into(),
        ALIAS.into(),
        port.to_string(),
    ]
}

/// The door's confinement: nobody, no capabilities, no new privileges, a read-only root and
/// small limits. It holds nothing and writes nothing.
fn door_hardening() -> Hardening {
    Hardening {
        user: UserId::same(65534),
        keep_caps: vec![],
        no_new_privileges: true,
        read_only_root: true,
        tmpfs: vec![],
        limits: ResourceLimits {
            pids: 64,
            memory: 64 << 20,
            nano_cpus: None,
            log: Some(crate::runtime::LogRotation {
                file_size: 1 << 20,
                files: 2,
            }),
        },
        init: true,
    }
}

/// What to preview.
#[derive(Debug, Clone)]
pub struct PreviewPlan {
    /// The image the dev server runs in (the task's, unless the user chose another).
    pub image: String,
    /// The dev server's command line, run by `/bin/sh -c` in the workspace.
    pub cmd: String,
    /// The port it listens on inside the preview (and the door on its network).
    pub port: u16,
    /// The port on the engine's host.
    pub host_port: u16,
    /// Where on the engine's host that port is bound (its loopback for a local engine, the
    /// address the user reaches a remote one by), and the URL's host.
    pub published: Published,
    /// The task's internal network, when its run is live (the way out is its gateway);
    /// `None`: the preview gets an internal network of its own.
    pub task_network: Option<String>,
    /// That network's subnet, when recorded (the preview takes its fixed address there).
    pub task_subnet: Option<Ipv4Net>,
    /// Where a network of the preview's own takes its subnet from (`agent.subnets`).
    pub subnets: super::network::SubnetRange,
    /// The task's limits (the preview is confined like the task).
    pub limits: super::spawn::Limits,
    /// git-agent's own gateway image (the door runs in it).
    pub door_image: String,
    /// The task's OCI runtime: the preview runs the task's code (its door, the default).
    pub oci_runtime: Option<String>,
}

/// The preview's container spec: the workspace read-only, the task's confinement with a
/// read-only root, the gateway's proxy settings and no credentials.
pub fn preview_spec(
    repo: &RepoId,
    task: &str,
    plan: &PreviewPlan,
    network: &str,
    subnet: Option<&Ipv4Net>,
) -> CompanionSpec {
    let names = repo.object_names(task);
    let mut env = super::gateway::proxy_env();
    env.push("HOME=/tmp".into());
    env.push(format!("PORT={}", plan.port));
    env.push(format!("GIT_AGENT_TASK={task}"));
    CompanionSpec {
        name: names.preview.clone(),
        image: plan.image.clone(),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), plan.cmd.clone()]),
        env,
        labels: labels(repo, task),
        mounts: vec![VolumeMount {
            volume: names.volume.clone(),
            target: super::WORKSPACE.into(),
            read_only: true,
        }],
        working_dir: Some(super::WORKSPACE.into()),
        network: network.to_string(),
        alias: ALIAS.into(),
        address: subnet.map(super::network::preview_address),
        // On the task's network its proxy settings name the task's gateway.
        hosts: if plan.task_network.is_some() {
            super::gateway::hosts(subnet)
        } else {
            vec![]
        },
        hardening: super::task_hardening(&plan.limits, true),
        oci_runtime: plan.oci_runtime.clone(),
    }
}

/// The door's container spec.
pub fn door_spec(
    repo: &RepoId,
    task: &str,
    plan: &PreviewPlan,
    inner: &str,
    subnet: Option<&Ipv4Net>,
) -> DoorSpec {
    let names = repo.object_names(task);
    DoorSpec {
        name: names.door.clone(),
        image: plan.door_image.clone(),
        cmd: door_command(plan.port),
        labels: labels(repo, task),
        front: names.preview_front.clone(),
        inner: inner.to_string(),
        host_ip: plan.published.bind_ip.clone(),
        host_port: plan.host_port,
        port: plan.port,
        hosts: subnet
            .map(|s| vec![(ALIAS.to_string(), super::network::preview_address(s))])
            .unwrap_or_default(),
        hardening: door_hardening(),
    }
}

fn labels(repo: &RepoId, task: &str) -> std::collections::HashMap<String, String> {
    let mut labels = repo.labels(task);
    labels.insert(LABEL_ROLE.into(), "preview".into());
    labels
}

/// Start a task's preview (any earlier one of the task is removed first). Returns the URL on
/// the engine's host.
pub async fn start<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    plan: &PreviewPlan,
) -> Result<String> {
    remove(rt, repo, task).await?;
    let names = repo.object_names(task);
    let labels = labels(repo, task);
    let started = async {
        let (network, subnet) = match &plan.task_network {
            Some(n) => (n.clone(), plan.task_subnet),
            None => {
                let subnet =
                    super::network::create(rt, &plan.subnets, &names.preview_net, &labels).await?;
                (names.preview_net.clone(), subnet)
            }
        };
        rt.create_network(&names.preview_front, &labels, false, None)
            .await?;
        let preview = rt
            .create_companion(&preview_spec(repo, task, plan, &network, subnet.as_ref()))
            .await?;
        rt.start(&preview).await?;
        let door = rt
            .create_door(&door_spec(repo, task, plan, &network, subnet.as_ref()))
            .await?;
        rt.start(&door).await?;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = started.await {
        // Nothing half made stays behind.
        remove(rt, repo, task).await.ok();
        return Err(e);
    }
    Ok(plan.published.url(plan.host_port))
}

/// The state of a task's preview container.
pub async fn state<R: Runtime>(rt: &R, repo: &RepoId, task: &str) -> Result<ContainerState> {
    let names = repo.object_names(task);
    if !owned_by(rt, repo, task, ObjectKind::Container, &names.preview).await? {
        return Ok(ContainerState::Missing);
    }
    rt.state(&names.preview).await
}

/// Remove a task's preview, its door and their networks (each only when it carries the
/// task's labels). Returns whether there was a preview container.
pub async fn remove<R: Runtime>(rt: &R, repo: &RepoId, task: &str) -> Result<bool> {
    let names = repo.object_names(task);
    let mut found = false;
    for (kind, name) in [
        (ObjectKind::Container, &names.door),
        (ObjectKind::Container, &names.preview),
        (ObjectKind::Network, &names.preview_front),
        (ObjectKind::Network, &names.preview_net),
    ] {
        if !owned_by(rt, repo, task, kind, name).await? {
            continue;
        }
        match kind {
            ObjectKind::Container => {
                found |= *name == names.preview;
                rt.remove_container(name).await?
            }
            _ => rt.remove_network(name).await?,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PreviewPlan {
        PreviewPlan {
            image: "img".into(),
            cmd: "npm run dev".into(),
            port: 5173,
            host_port: 15173,
            published: Published::loopback(),
            task_network: Some("net".into()),
            task_subnet: Ipv4Net::parse("10.242.0.16/28"),
            subnets: Default::default(),
            limits: crate::sandbox::spawn::Limits {
                pids: 100,
                memory: 1 << 30,
                nano_cpus: 1_000_000_000,
                disk: 0,
            },
            door_image: "gw".into(),
            oci_runtime: Some("runsc".into()),
        }
    }

    fn repo() -> RepoId {
        RepoId {
            id: "0123abcd".into(),
            path: "/r/.git".into(),
        }
    }

    #[test]
    fn the_preview_reads_the_workspace_and_is_confined_like_the_task() {
        let subnet = Ipv4Net::parse("10.242.0.16/28");
        let spec = preview_spec(&repo(), "t", &plan(), "net", subnet.as_ref());
        assert_eq!(spec.mounts.len(), 1);
        assert!(spec.mounts[0].read_only);
        assert_eq!(spec.mounts[0].target, "/workspace");
        assert!(spec.hardening.keep_caps.is_empty());
        assert!(spec.hardening.no_new_privileges);
        assert!(spec.hardening.read_only_root);
        assert_eq!(spec.hardening.user, UserId::same(crate::image::TASK_UID));
        assert_eq!(spec.network, "net");
        // It runs the task's code: under the task's OCI runtime; its door, git-agent's relay,
        // under the engine's default.
        assert_eq!(spec.oci_runtime.as_deref(), Some("runsc"));
        // No credential of any kind, only the way out through the gateway.
        assert!(
            spec.env
                .iter()
                .all(|e| !e.contains("KEY") && !e.contains("TOKEN"))
        );
        assert!(spec.env.iter().any(|e| e.starts_with("HTTPS_PROXY=")));
        // Its fixed address is the network's last; it finds the task's gateway by name.
        assert_eq!(spec.address, Some("10.242.0.30".parse().unwrap()));
        assert_eq!(
            spec.hosts,
            vec![(
                "git-agent-gateway".to_string(),
                "10.242.0.18".parse().unwrap()
            )]
        );
        // On a network of its own there is no gateway to find.
        let mut own = plan();
        own.task_network = None;
        assert!(
            preview_spec(&repo(), "t", &own, "p", subnet.as_ref())
                .hosts
                .is_empty()
        );
    }

    #[test]
    fn the_door_publishes_on_loopback_only() {
        let subnet = Ipv4Net::parse("10.242.0.16/28");
        let spec = door_spec(&repo(), "t", &plan(), "net", subnet.as_ref());
        assert_eq!(spec.host_ip, "127.0.0.1");
        // It finds the preview by name at the preview's fixed address.
        assert_eq!(
            spec.hosts,
            vec![(ALIAS.to_string(), "10.242.0.30".parse().unwrap())]
        );
        assert_eq!((spec.port, spec.host_port), (5173, 15173));
        assert!(spec.hardening.keep_caps.is_empty());
        assert!(spec.hardening.read_only_root);
        assert_eq!(spec.inner, "net");
        assert_ne!(spec.front, spec.inner);
        // A remote engine's: on the one address the user reaches it by.
        let mut remote = plan();
        remote.published = Published {
            bind_ip: "10.77.0.2".into(),
            url_host: "10.77.0.2".into(),
        };
        assert_eq!(
            door_spec(&repo(), "t", &remote, "net", None).host_ip,
            "10.77.0.2"
        );
    }
}
