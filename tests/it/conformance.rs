//! The contract of [`Runtime`]: one suite every backend passes, each check a function over
//! any `R: Runtime`, instantiated at the end of this file for Docker and for the engine-less
//! local runtime.
//!
//! Two halves:
//! - [`contract`]: what every backend does, confined or not: create, start, state, exec with
//!   stdin, stdout and stderr streamed and exit codes, the environment, working directory and
//!   user of a spec (a backend that cannot be the user refuses the spec: it never runs as
//!   another), wait, stop and kill, removal that is idempotent on missing objects, names that
//!   conflict, labels found again by `labels_of`, `list_objects`, `inventory` and
//!   `containers_with` (by label and by name prefix), volumes that keep data across
//!   containers, read-only mounts (a write fails, even as root), networks (create, exists,
//!   in use, remove), uploads and the container's output read back. Interactive sessions
//!   ([`interactive`]) where the backend has terminals; [`no_terminals`] where it says it has
//!   none.
//! - [`isolation`]: what a backend that claims [`Isolation::Confines`] must enforce from a
//!   [`Hardening`]: the numeric user, exactly the kept capabilities, no new privileges, a
//!   read-only root writable only where asked, the process, memory and CPU limits, an init,
//!   and networks without a way out. [`isolation_as_claimed`] runs it for every backend that
//!   claims it.
//!
//! Paths: the local runtime maps a container path onto a host directory in an argument word
//! that names it and in an environment value, not inside a shell script; so the checks name
//! container paths that way (`["cat", "/data/file"]`, `"$DATA"`), and both backends see the
//! same thing.
//!
//! The checks return errors instead of panicking, so [`cleanup`] always runs; everything they
//! create carries [`LABEL`] and a name starting with the fixture's prefix.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail, ensure};
use git_agent::runtime::docker::DockerRuntime;
use git_agent::runtime::{
    ContainerState, EngineErrorKind, Hardening, Isolation, ObjectKind, OutputTooLarge,
    ResourceLimits, Runtime, SandboxSpec, Terminal, Tmpfs, Upload, UserId, VolumeMount,
    engine_kind,
};

use crate::common::base_image;
use crate::require_docker;

/// The label on every object the checks create (value: the fixture's prefix).
pub const LABEL: &str = "git-agent.conformance";

/// What the checks need from the test's environment.
pub struct Fixture {
    /// An image with `sh`, `bash`, coreutils (`timeout` among them), `grep` and `awk` (for
    /// the local runtime: any image; its processes are the host's).
    pub image: String,
    /// Every object's name starts with it; unique per fixture.
    pub prefix: String,
    /// The user the fixture's containers run as: one the backend can be.
    pub user: UserId,
}

impl Fixture {
    pub fn new(image: impl Into<String>, user: UserId) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        Fixture {
            image: image.into(),
            prefix: format!(
                "ga-conf-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
            user,
        }
    }

    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL.to_string(), self.prefix.clone())])
    }

    fn label(&self) -> (&str, &str) {
        (LABEL, &self.prefix)
    }

    /// A container running `cmd` as the fixture's user with no capabilities and modest
    /// limits, the volume `volume` (if any) at `/data` (named by `$DATA`).
    pub fn spec(
        &self,
        what: &str,
        cmd: &[&str],
        volume: Option<&str>,
        network: Option<&str>,
    ) -> SandboxSpec {
        SandboxSpec {
            name: self.name(what),
            image: self.image.clone(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            env: vec!["CONFORMANCE=1".into(), "DATA=/data".into()],
            labels: self.labels(),
            mounts: volume
                .map(|v| vec![VolumeMount::new(v, "/data")])
                .unwrap_or_default(),
            working_dir: "/".into(),
            network: network.map(str::to_string),
            tty: false,
            oci_runtime: None,
            hosts: vec![],
            address: None,
            hardening: Hardening {
                user: self.user,
                keep_caps: vec![],
                no_new_privileges: true,
                read_only_root: false,
                tmpfs: vec![],
                limits: ResourceLimits {
                    pids: 128,
                    memory: 256 << 20,
                    nano_cpus: None,
                    log: None,
                },
                init: true,
            },
        }
    }
}

const SLEEP: &[&str] = &["sleep", "infinity"];

fn words(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|c| c.to_string()).collect()
}

/// Run `cmd` in container `id`; (exit code, stdout, stderr).
async fn run_in<R: Runtime>(rt: &R, id: &str, cmd: &[&str]) -> Result<(i64, String, String)> {
    let mut out = Vec::new();
    let o = rt
        .exec(id, &words(cmd), None::<&[u8]>, &mut out, 1 << 20)
        .await?;
    Ok((
        o.exit_code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

/// Run `script` with `sh -c` in container `id`; (exit code, stdout, stderr).
async fn sh<R: Runtime>(rt: &R, id: &str, script: &str) -> Result<(i64, String, String)> {
    run_in(rt, id, &["sh", "-c", script]).await
}

/// Create and start a container.
async fn run<R: Runtime>(rt: &R, spec: &SandboxSpec) -> Result<String> {
    let id = rt.create_container(spec).await?;
    rt.start(&id).await?;
    Ok(id)
}

/// Every check of the contract but interactive sessions.
pub async fn contract<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    lifecycle(rt, fx).await.context("lifecycle")?;
    killed(rt, fx).await.context("killed")?;
    exec_streams(rt, fx).await.context("exec streams")?;
    place_env_and_user(rt, fx)
        .await
        .context("working directory, environment and user")?;
    missing_objects(rt, fx).await.context("missing objects")?;
    conflicts(rt, fx).await.context("conflicts")?;
    labels_and_listings(rt, fx)
        .await
        .context("labels and listings")?;
    volumes_keep_data(rt, fx).await.context("volumes")?;
    read_only_mounts(rt, fx).await.context("read-only mounts")?;
    uploads_and_output(rt, fx)
        .await
        .context("uploads and output")?;
    images(rt, fx).await.context("images")?;
    Ok(())
}

/// An image is listed by its label with its tag; a container made from it (not even
/// started) is listed as using it and keeps it (removal is refused as a conflict, never
/// forced); once the container is gone, removing its only tag deletes it.
pub async fn images<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let tag = format!("{}-img:1", fx.prefix);
    let dockerfile = format!("FROM {}\n", fx.image);
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    let id = rt
        .build_image(tar.into_inner()?, &tag, &fx.labels(), &mut |_| {})
        .await?;
    let result = async {
        let listed = rt.images_labelled(LABEL).await?;
        let mine = listed
            .iter()
            .find(|i| i.id == id)
            .context("the image is listed by its label")?;
        ensure!(mine.tags == [tag.clone()], "{:?}", mine.tags);
        ensure!(mine.labels.get(LABEL) == Some(&fx.prefix));
        ensure!(mine.created > 0);
        let mut spec = fx.spec("imguser", SLEEP, None, None);
        spec.image = tag.clone();
        let c = rt.create_container(&spec).await?;
        let uses = rt.image_uses().await?;
        ensure!(
            uses.iter().any(|u| u.image_id == id && !u.running),
            "a created container uses it"
        );
        let e = rt
            .remove_image_tag(&tag)
            .await
            .err()
            .context("an image a container uses is kept")?;
        ensure!(engine_kind(&e) == Some(EngineErrorKind::Conflict), "{e:#}");
        ensure!(rt.image_id(&tag).await?.is_some());
        rt.remove_container(&c).await?;
        ensure!(rt.remove_image_tag(&tag).await?, "its last tag: deleted");
        ensure!(rt.image_id(&tag).await?.is_none());
        ensure!(!rt.images_labelled(LABEL).await?.iter().any(|i| i.id == id));
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = rt.remove_container(&fx.name("imguser")).await;
        let _ = rt.remove_image_tag(&tag).await;
    }
    result
}

/// Created, running, stopped, waited for, removed: each state as the engine reports it, and
/// the main process's exit code.
pub async fn lifecycle<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    ensure!(
        rt.image_id(&fx.image).await?.is_some(),
        "the image is there"
    );
    ensure!(rt.image_id("ga-conf-no-such-image:1").await?.is_none());
    let spec = fx.spec("life", SLEEP, None, None);
    let id = rt.create_container(&spec).await?;
    ensure!(rt.state(&id).await? == ContainerState::Created);
    ensure!(
        rt.state(&spec.name).await? == ContainerState::Created,
        "found by name"
    );
    rt.start(&id).await?;
    ensure!(rt.state(&id).await? == ContainerState::Running);
    let (code, out, _) = sh(rt, &id, "echo $CONFORMANCE; id -u").await?;
    ensure!(code == 0);
    ensure!(
        out == format!("1\n{}\n", fx.user.uid),
        "env and user: {out:?}"
    );
    rt.stop(&id, 1).await?;
    ensure!(
        matches!(rt.state(&id).await?, ContainerState::Exited(_)),
        "stopped"
    );
    ensure!(
        sh(rt, &id, "true").await.is_err(),
        "no exec in a stopped container"
    );
    rt.stop(&id, 1).await.context("stopping twice")?;
    rt.remove_container(&id).await?;
    ensure!(rt.state(&id).await? == ContainerState::Missing);

    let spec = fx.spec("exit", &["sh", "-c", "sleep 1; exit 7"], None, None);
    let id = run(rt, &spec).await?;
    ensure!(rt.wait(&id).await? == 7, "wait returns the exit code");
    ensure!(rt.state(&id).await? == ContainerState::Exited(7));
    rt.remove_container(&id).await?;
    Ok(())
}

/// A main process killed by a signal exits 137; a stop of one that ignores TERM kills it
/// once the timeout has passed.
pub async fn killed<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let id = run(
        rt,
        &fx.spec("kill9", &["sh", "-c", "kill -KILL $$"], None, None),
    )
    .await?;
    ensure!(rt.wait(&id).await? == 137, "killed: 128 + 9");
    ensure!(rt.state(&id).await? == ContainerState::Exited(137));
    rt.remove_container(&id).await?;

    let stubborn = ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"];
    let id = run(rt, &fx.spec("stubborn", &stubborn, None, None)).await?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    rt.stop(&id, 1).await?;
    ensure!(
        rt.state(&id).await? == ContainerState::Exited(137),
        "{:?}",
        rt.state(&id).await?
    );
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "stop took {:?}",
        started.elapsed()
    );
    rt.remove_container(&id).await?;
    Ok(())
}

/// Exec: stdin copied in and closed (the command sees EOF), stdout streamed out, stderr kept,
/// the exit code returned, extra environment, output beyond the limit refused, a command that
/// is not there 126 (the exec could not start).
pub async fn exec_streams<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let id = run(rt, &fx.spec("exec", SLEEP, None, None)).await?;
    let cmd = |s: &str| vec!["sh".to_string(), "-c".into(), s.to_string()];

    let mut out = Vec::new();
    let o = rt
        .exec(
            &id,
            &cmd("cat; echo to-stderr >&2; exit 3"),
            Some(&b"hello\n"[..]),
            &mut out,
            1 << 20,
        )
        .await?;
    ensure!(o.exit_code == 3, "exit code {}", o.exit_code);
    ensure!(out == b"hello\n", "{out:?}");
    ensure!(o.stdout_len == 6);
    ensure!(String::from_utf8_lossy(&o.stderr) == "to-stderr\n");

    // More than a pipe holds, both ways at once.
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    let o = rt
        .exec(&id, &cmd("cat"), Some(big.as_slice()), &mut out, 8 << 20)
        .await?;
    ensure!(o.exit_code == 0);
    ensure!(out == big, "{} bytes back of {}", out.len(), big.len());

    let mut out = Vec::new();
    let o = rt
        .exec_env(
            &id,
            &cmd("printf %s \"$EXTRA\""),
            &["EXTRA=given".to_string()],
            None::<&[u8]>,
            &mut out,
            1 << 10,
        )
        .await?;
    ensure!(o.exit_code == 0 && out == b"given", "{out:?}");

    let mut out = Vec::new();
    let err = rt
        .exec(
            &id,
            &cmd("head -c 100000 /dev/zero"),
            None::<&[u8]>,
            &mut out,
            1000,
        )
        .await
        .err()
        .context("output beyond the limit must fail")?;
    ensure!(
        err.downcast_ref::<OutputTooLarge>().map(|e| e.limit) == Some(1000),
        "{err:#}"
    );
    ensure!(out.len() <= 1000);

    let (code, _, _) = run_in(rt, &id, &["/nonexistent/command"]).await?;
    ensure!(code == 126, "a command that cannot start: {code}");
    rt.remove_container(&id).await?;
    Ok(())
}

/// A spec's working directory, environment and user hold for its main process and its
/// execs. A user the backend cannot be (the local runtime when it is not root) is refused
/// when the container is created; a container never runs as another user.
pub async fn place_env_and_user<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("pvol");
    rt.create_volume(&volume, &fx.labels()).await?;
    let mut spec = fx.spec(
        "place",
        &[
            "sh",
            "-c",
            "echo \"$CONFORMANCE $(id -u)\" > main-wrote; sleep infinity",
        ],
        Some(&volume),
        None,
    );
    spec.working_dir = "/data".into();
    let id = run(rt, &spec).await?;
    sh(rt, &id, "echo \"$CONFORMANCE $(id -u)\" > exec-wrote").await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, out, _) =
            run_in(rt, &id, &["cat", "/data/main-wrote", "/data/exec-wrote"]).await?;
        let want = format!("1 {0}\n1 {0}\n", fx.user.uid);
        if code == 0 && out == want {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "relative paths land in the working directory: {out:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    rt.remove_container(&id).await?;

    // Another user: run as that user (both ids), or refused.
    let other = UserId {
        uid: 1000,
        gid: 1001,
    };
    let mut spec = fx.spec("user", SLEEP, None, None);
    spec.hardening.user = other;
    match rt.create_container(&spec).await {
        Ok(id) => {
            rt.start(&id).await?;
            let (code, out, err) = sh(rt, &id, "id -u; id -g").await?;
            ensure!(code == 0 && out == "1000\n1001\n", "{out:?} {err}");
            rt.remove_container(&id).await?;
        }
        Err(e) => {
            ensure!(
                rt.isolation() == Isolation::HostProcesses && fx.user.uid != 0,
                "a backend that can be any user refused one: {e:#}"
            );
            ensure!(
                rt.state(&spec.name).await? == ContainerState::Missing,
                "a refused spec left a container"
            );
        }
    }
    rt.remove_volume(&volume).await?;
    Ok(())
}

/// Removing or stopping what does not exist succeeds; asking about it says it is missing.
pub async fn missing_objects<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let name = fx.name("never-made");
    rt.remove_container(&name).await?;
    rt.remove_volume(&name).await?;
    rt.remove_network(&name).await?;
    rt.stop(&name, 1).await?;
    ensure!(rt.state(&name).await? == ContainerState::Missing);
    ensure!(!rt.network_exists(&name).await?);
    for kind in [
        ObjectKind::Container,
        ObjectKind::Volume,
        ObjectKind::Network,
    ] {
        ensure!(rt.labels_of(kind, &name).await?.is_none(), "{kind:?}");
    }
    Ok(())
}

/// A taken container name is a conflict; a container cannot run on a network that is not
/// there (not found, when it is created or started); a volume or network a container uses
/// cannot be removed (a conflict), and is there afterwards.
pub async fn conflicts<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("cvol");
    let network = fx.name("cnet");
    rt.create_volume(&volume, &fx.labels()).await?;
    rt.create_network(&network, &fx.labels(), true, None)
        .await?;
    let spec = fx.spec("taken", SLEEP, Some(&volume), Some(&network));
    let id = run(rt, &spec).await?;
    let e = rt
        .create_container(&spec)
        .await
        .err()
        .context("a taken name")?;
    ensure!(engine_kind(&e) == Some(EngineErrorKind::Conflict), "{e:#}");
    let bad = fx.spec("badnet", SLEEP, None, Some(&fx.name("no-such-net")));
    // Refused when it is created (the local runtime) or started (Docker).
    let e = match rt.create_container(&bad).await {
        Err(e) => e,
        Ok(id) => rt
            .start(&id)
            .await
            .err()
            .context("started without its network")?,
    };
    ensure!(engine_kind(&e) == Some(EngineErrorKind::NotFound), "{e:#}");
    rt.remove_container(&bad.name).await?;
    let e = rt
        .remove_volume(&volume)
        .await
        .err()
        .context("volume in use")?;
    ensure!(engine_kind(&e) == Some(EngineErrorKind::Conflict), "{e:#}");
    let e = rt
        .remove_network(&network)
        .await
        .err()
        .context("network in use")?;
    ensure!(engine_kind(&e) == Some(EngineErrorKind::Conflict), "{e:#}");
    ensure!(rt.network_exists(&network).await?);
    ensure!(rt.labels_of(ObjectKind::Volume, &volume).await?.is_some());
    rt.remove_container(&id).await?;
    rt.remove_container(&id).await.context("removing twice")?;
    rt.remove_volume(&volume).await?;
    rt.remove_network(&network).await?;
    ensure!(!rt.network_exists(&network).await?);
    Ok(())
}

/// Labels stay on every kind of object and find it again, as does a name prefix.
pub async fn labels_and_listings<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("lvol");
    let network = fx.name("lnet");
    rt.create_volume(&volume, &fx.labels()).await?;
    rt.create_network(&network, &fx.labels(), true, None)
        .await?;
    ensure!(rt.network_exists(&network).await?);
    let spec = fx.spec("lbl", SLEEP, Some(&volume), Some(&network));
    let id = run(rt, &spec).await?;
    for (kind, name) in [
        (ObjectKind::Container, &spec.name),
        (ObjectKind::Volume, &volume),
        (ObjectKind::Network, &network),
    ] {
        let labels = rt.labels_of(kind, name).await?.context("labels_of")?;
        ensure!(
            labels.get(LABEL) == Some(&fx.prefix),
            "{kind:?} {name}: {labels:?}"
        );
        let by_prefix = rt.list_objects(kind, &fx.prefix, None).await?;
        ensure!(
            by_prefix.iter().any(|o| &o.name == name && o.kind == kind),
            "{kind:?} {name} by prefix: {by_prefix:?}"
        );
        let by_label = rt
            .list_objects(kind, "ga-conf-no-such-prefix-", Some(fx.label()))
            .await?;
        ensure!(
            by_label.iter().any(|o| &o.name == name),
            "{kind:?} {name} by label: {by_label:?}"
        );
        ensure!(
            by_label
                .iter()
                .all(|o| o.labels.get(LABEL) == Some(&fx.prefix)),
            "only labelled objects: {by_label:?}"
        );
        let other = rt
            .list_objects(kind, "ga-conf-no-such-prefix-", Some((LABEL, "none")))
            .await?;
        ensure!(other.is_empty(), "{other:?}");
    }
    let inv = rt.inventory(&[fx.label()]).await?;
    ensure!(
        inv.container(&spec.name) == ContainerState::Running,
        "{inv:?}"
    );
    ensure!(inv.container(&id) == ContainerState::Running, "{inv:?}");
    ensure!(inv.networks.contains(&network), "{inv:?}");
    ensure!(inv.volumes.contains(&volume), "{inv:?}");
    let owned = rt.containers_with(&[fx.label()]).await?;
    ensure!(
        owned.len() == 1 && owned[0].id == id && owned[0].state == ContainerState::Running,
        "{owned:?}"
    );
    let none = rt.inventory(&[(LABEL, "none")]).await?;
    ensure!(none.container(&spec.name) == ContainerState::Missing);
    ensure!(!none.volumes.contains(&volume) && !none.networks.contains(&network));

    rt.remove_container(&id).await?;
    ensure!(rt.inventory(&[fx.label()]).await?.container(&id) == ContainerState::Missing);
    rt.remove_volume(&volume).await?;
    rt.remove_network(&network).await?;
    ensure!(rt.labels_of(ObjectKind::Volume, &volume).await?.is_none());
    ensure!(!rt.network_exists(&network).await?);
    Ok(())
}

/// What one container writes into a volume, the next one reads.
pub async fn volumes_keep_data<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("vol");
    rt.create_volume(&volume, &fx.labels()).await?;
    let write = fx.spec(
        "vwrite",
        &["sh", "-c", "echo kept > \"$DATA/file\""],
        Some(&volume),
        None,
    );
    let id = run(rt, &write).await?;
    ensure!(rt.wait(&id).await? == 0);
    rt.remove_container(&id).await?;
    let id = run(rt, &fx.spec("vread", SLEEP, Some(&volume), None)).await?;
    let (code, out, err) = run_in(rt, &id, &["cat", "/data/file"]).await?;
    ensure!(code == 0 && out == "kept\n", "{code} {out:?} {err}");
    rt.remove_container(&id).await?;
    rt.remove_volume(&volume).await?;
    Ok(())
}

/// A volume mounted read-only cannot be written, by the main process or an exec, as root
/// too; it can be read, and what it held stays. A backend that cannot make a mount
/// read-only refuses the spec.
pub async fn read_only_mounts<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("rovol");
    rt.create_volume(&volume, &fx.labels()).await?;
    let write = fx.spec(
        "rowrite",
        &["sh", "-c", "echo kept > \"$DATA/file\""],
        Some(&volume),
        None,
    );
    let id = run(rt, &write).await?;
    ensure!(rt.wait(&id).await? == 0);
    rt.remove_container(&id).await?;

    let mut spec = fx.spec(
        "ro",
        &[
            "sh",
            "-c",
            "echo main >> \"$DATA/file\"; echo $? > /dev/null; sleep infinity",
        ],
        Some(&volume),
        None,
    );
    spec.mounts[0].read_only = true;
    let id = match rt.create_container(&spec).await {
        Ok(id) => id,
        Err(e) => {
            ensure!(
                rt.isolation() == Isolation::HostProcesses && fx.user.uid != 0,
                "a backend refused a read-only mount: {e:#}"
            );
            rt.remove_volume(&volume).await?;
            return Ok(());
        }
    };
    rt.start(&id).await?;
    let (code, _, _) = run_in(rt, &id, &["touch", "/data/new"]).await?;
    ensure!(code != 0, "an exec created a file in a read-only mount");
    let (code, _, _) = sh(rt, &id, "echo exec >> \"$DATA/file\"").await?;
    ensure!(code != 0, "an exec wrote to a read-only mount");
    let (code, _, _) = sh(rt, &id, "rm -f \"$DATA/file\"").await?;
    ensure!(code != 0, "an exec removed a file of a read-only mount");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, out, err) = run_in(rt, &id, &["cat", "/data/file"]).await?;
    ensure!(code == 0 && out == "kept\n", "{code} {out:?} {err}");
    rt.remove_container(&id).await?;

    // Mounted writable again, it is as it was.
    let id = run(rt, &fx.spec("rocheck", SLEEP, Some(&volume), None)).await?;
    let (code, out, _) = run_in(rt, &id, &["ls", "-A", "/data"]).await?;
    ensure!(code == 0 && out == "file\n", "{out:?}");
    rt.remove_container(&id).await?;
    rt.remove_volume(&volume).await?;
    Ok(())
}

/// Files uploaded into a created container are there once it runs, with their mode and
/// owner; what the main process prints (stdout and stderr) comes back from `logs` (whole,
/// followed to the end, or its last lines) and `timestamped_log` (each line stamped).
pub async fn uploads_and_output<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("uvol");
    rt.create_volume(&volume, &fx.labels()).await?;
    let spec = fx.spec(
        "up",
        &[
            "sh",
            "-c",
            "echo err-line >&2; sleep 0.5; echo out-line; cat \"$DATA/up.txt\"; exit 5",
        ],
        Some(&volume),
        None,
    );
    let id = rt.create_container(&spec).await?;
    let owner = if fx.user.uid == 0 { 1000 } else { fx.user.uid };
    rt.upload(
        &id,
        "/data",
        &[Upload {
            name: "up.txt".into(),
            data: b"uploaded\n".to_vec(),
            mode: 0o604,
            owner: owner.into(),
        }],
    )
    .await?;
    rt.start(&id).await?;
    ensure!(rt.wait(&id).await? == 5);
    let mut log = Vec::new();
    rt.logs(&id, true, None, &mut log).await?;
    let log = String::from_utf8_lossy(&log).into_owned();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    ensure!(lines == ["err-line", "out-line", "uploaded"], "{log:?}");
    let mut tail = Vec::new();
    rt.logs(&id, false, Some(1), &mut tail).await?;
    ensure!(
        tail == b"uploaded\n",
        "{:?}",
        String::from_utf8_lossy(&tail)
    );
    let stamped = rt.timestamped_log(&id, 1 << 16).await?;
    let stamped = String::from_utf8_lossy(&stamped).into_owned();
    ensure!(stamped.lines().count() == 3, "{stamped:?}");
    for line in stamped.lines() {
        let (stamp, _) = line.split_once(' ').context("a stamp")?;
        ensure!(
            stamp.len() >= 20 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
            "{line:?}"
        );
    }
    rt.remove_container(&id).await?;
    let id = run(rt, &fx.spec("upcheck", SLEEP, Some(&volume), None)).await?;
    let (code, out, err) = run_in(rt, &id, &["stat", "-c", "%a %u", "/data/up.txt"]).await?;
    ensure!(
        code == 0 && out == format!("604 {owner}\n"),
        "{out:?} {err}"
    );
    rt.remove_container(&id).await?;
    rt.remove_volume(&volume).await?;
    Ok(())
}

/// A backend without terminals says so: an interactive exec or attach is an error, never a
/// session that silently reads nothing.
#[cfg_attr(not(feature = "local-runtime"), allow(dead_code))]
pub async fn no_terminals<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let id = run(rt, &fx.spec("noterm", SLEEP, None, None)).await?;
    let (term, _t) = terminal(80, 24);
    ensure!(
        rt.exec_interactive(&id, &["sh".to_string()], term)
            .await
            .is_err()
    );
    let (term, _t) = terminal(80, 24);
    ensure!(
        rt.attach_terminal(&id, term, async { Ok(()) })
            .await
            .is_err()
    );
    rt.remove_container(&id).await?;
    Ok(())
}

/// Try to connect from container `id` to its network's gateway (the engine's host) and to
/// an outside address; for each, whether anything answered (a connection or a refusal) and
/// what the shell said. Needs `bash` and `timeout` in the image.
const REACH: &str = r#"
gw=$(awk '$2 == "00000000" { g = $3 } END { print g }' /proc/net/route)
try() { out=$(timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); echo "$? $out"; }
if [ -n "$gw" ]; then
  try "$(printf '%d.%d.%d.%d' 0x${gw:6:2} 0x${gw:4:2} 0x${gw:2:2} 0x${gw:0:2})" 9
else
  echo "no-route"
fi
try 1.1.1.1 80
"#;

/// (the host answered, the outside answered, the shell's words).
async fn reach<R: Runtime>(rt: &R, id: &str) -> Result<(bool, bool, String)> {
    let mut out = Vec::new();
    let cmd = ["bash".to_string(), "-c".into(), REACH.into()];
    let o = rt.exec(id, &cmd, None::<&[u8]>, &mut out, 1 << 16).await?;
    let out = String::from_utf8_lossy(&out).into_owned();
    ensure!(o.exit_code == 0, "{out}");
    let answered = |line: &str| {
        line.starts_with("0 ") || line.to_ascii_lowercase().contains("connection refused")
    };
    let mut lines = out.lines();
    let host = lines.next().is_some_and(answered);
    let outside = lines.next().is_some_and(answered);
    Ok((host, outside, out))
}

/// A container on an internal network reaches neither the engine's host nor anything
/// outside; one on an ordinary network reaches the host (so the check can tell), and one
/// without a network reaches nothing.
pub async fn internal_networks<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let inner = fx.name("inner");
    let outer = fx.name("outer");
    rt.create_network(&inner, &fx.labels(), true, None).await?;
    rt.create_network(&outer, &fx.labels(), false, None).await?;
    let a = run(rt, &fx.spec("ninner", SLEEP, None, Some(&inner))).await?;
    let b = run(rt, &fx.spec("nouter", SLEEP, None, Some(&outer))).await?;
    let c = run(rt, &fx.spec("nnone", SLEEP, None, None)).await?;
    let (host, outside, said) = reach(rt, &a).await?;
    ensure!(
        !host && !outside,
        "an internal network has a way out: {said}"
    );
    let (host, _, said) = reach(rt, &b).await?;
    ensure!(host, "an ordinary network reaches the host: {said}");
    let (host, outside, said) = reach(rt, &c).await?;
    ensure!(!host && !outside, "no network has a way out: {said}");
    for id in [a, b, c] {
        rt.remove_container(&id).await?;
    }
    rt.remove_network(&inner).await?;
    rt.remove_network(&outer).await?;
    Ok(())
}

/// Read `from` into `seen` until it holds `needle` (or give up after 20 s).
async fn read_until(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    seen: &mut String,
    needle: &str,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = tokio::time::timeout_at(deadline, from.read(&mut buf))
            .await
            .with_context(|| format!("no {needle:?} in {seen:?}"))??;
        ensure!(n > 0, "the session ended before {needle:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}

/// A terminal the test drives: what it types, what it reads, the sizes it sets.
struct TestTerminal {
    keys: tokio::sync::mpsc::Sender<Vec<u8>>,
    screen: tokio::io::DuplexStream,
    sizes: tokio::sync::watch::Sender<Option<(u16, u16)>>,
}

fn terminal(cols: u16, rows: u16) -> (Terminal, TestTerminal) {
    let (keys, input) = tokio::sync::mpsc::channel(16);
    let (output, screen) = tokio::io::duplex(1 << 16);
    let (sizes, size) = tokio::sync::watch::channel(Some((cols, rows)));
    (
        Terminal {
            input,
            output: Box::new(output),
            size,
        },
        TestTerminal {
            keys,
            screen,
            sizes,
        },
    )
}

/// Type `stty size` and see `rows cols` come back.
async fn size_is(t: &mut TestTerminal, seen: &mut String, cols: u16, rows: u16) -> Result<()> {
    t.keys.send(b"stty size\n".to_vec()).await?;
    read_until(&mut t.screen, seen, &format!("{rows} {cols}")).await
}

/// Interactive sessions: an exec with a terminal and an attach to a tty container get what is
/// typed, show what the process prints, take the terminal's size and every change of it, and
/// end with the process (the exec's exit code returned).
pub async fn interactive<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let id = run(rt, &fx.spec("tty-exec", SLEEP, None, None)).await?;
    let (term, mut t) = terminal(100, 40);
    let shell = ["sh".to_string()];
    let session = rt.exec_interactive(&id, &shell, term);
    let drive = async {
        let mut seen = String::new();
        size_is(&mut t, &mut seen, 100, 40).await?;
        t.sizes.send_replace(Some((90, 30)));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        size_is(&mut t, &mut seen, 90, 30).await?;
        t.keys.send(b"exit 3\n".to_vec()).await?;
        Ok::<_, anyhow::Error>(t)
    };
    let (code, driven) = tokio::join!(session, drive);
    let _t = driven?;
    ensure!(code? == 3, "the exec's exit code");
    rt.remove_container(&id).await?;

    let mut spec = fx.spec("tty-attach", &["sh"], None, None);
    spec.tty = true;
    let id = run(rt, &spec).await?;
    let (term, mut t) = terminal(80, 24);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let ready = async move {
        let _ = ready_tx.send(());
        Ok(())
    };
    let session = rt.attach_terminal(&id, term, ready);
    let drive = async {
        ready_rx.await.context("ready runs once attached")?;
        let mut seen = String::new();
        size_is(&mut t, &mut seen, 80, 24).await?;
        t.sizes.send_replace(Some((132, 43)));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        size_is(&mut t, &mut seen, 132, 43).await?;
        t.keys.send(b"exit 4\n".to_vec()).await?;
        Ok::<_, anyhow::Error>(t)
    };
    let (attached, driven) = tokio::join!(session, drive);
    let _t = driven?;
    attached?;
    ensure!(rt.wait(&id).await? == 4, "the process ended the session");
    rt.remove_container(&id).await?;
    Ok(())
}

/// Capability numbers (capabilities(7)) of the names the checks keep.
fn cap_mask(caps: &[String]) -> Result<u64> {
    let mut mask = 0u64;
    for c in caps {
        let bit = match c.as_str() {
            "CHOWN" => 0,
            "DAC_OVERRIDE" => 1,
            "DAC_READ_SEARCH" => 2,
            "FOWNER" => 3,
            "FSETID" => 4,
            "KILL" => 5,
            "SETGID" => 6,
            "SETUID" => 7,
            other => bail!("no number known for capability {other}"),
        };
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// What a confined process sees of its confinement, as `key=value` lines.
const PROBE: &str = r#"
echo uid=$(id -u) gid=$(id -g)
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -d ' \t' | sed 's/:/=/'
echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)
echo memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
if [ -f /sys/fs/cgroup/cpu.max ]; then set -- $(cat /sys/fs/cgroup/cpu.max); echo cpu=$1/$2
else echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)/$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi
touch /etc/conformance 2>/dev/null && echo root=writable || echo root=read-only
touch /tmp/conformance 2>/dev/null && echo tmp=writable || echo tmp=read-only
touch /data/probe-$(id -u) 2>/dev/null && echo data=writable || echo data=read-only
echo tmpfs=$(awk '$2 == "/tmp" { print $3 "," $4 }' /proc/mounts) tmpmode=$(stat -c %a /tmp)
echo init=$(cat /proc/1/comm)
"#;

async fn probe<R: Runtime>(rt: &R, id: &str) -> Result<HashMap<String, String>> {
    let (code, out, err) = sh(rt, id, PROBE).await?;
    ensure!(code == 0, "probe failed ({code}): {err}");
    Ok(out
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The isolation half for every backend that claims to confine (see [`Isolation`]); a
/// backend that does not claims nothing it does not do.
pub async fn isolation_as_claimed<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    match rt.isolation() {
        Isolation::Confines => isolation(rt, fx).await,
        Isolation::HostProcesses => Ok(()),
    }
}

/// Every check of confinement.
pub async fn isolation<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    hardening(rt, fx).await.context("hardening")?;
    internal_networks(rt, fx).await.context("networks")?;
    Ok(())
}

/// What a [`Hardening`] asks, enforced. Its containers run as root where the spec says so,
/// whatever the fixture's user.
pub async fn hardening<R: Runtime>(rt: &R, fx: &Fixture) -> Result<()> {
    let volume = fx.name("ivol");
    rt.create_volume(&volume, &fx.labels()).await?;

    // Root keeps exactly the capabilities it was given, effective ones included, and can
    // use them (CHOWN) but not others (DAC_OVERRIDE).
    let mut spec = fx.spec("iroot", SLEEP, Some(&volume), None);
    spec.hardening.user = UserId::ROOT;
    spec.hardening.keep_caps = vec!["CHOWN".into(), "KILL".into()];
    let root = run(rt, &spec).await?;
    let p = probe(rt, &root).await?;
    let kept = format!("{:016x}", cap_mask(&spec.hardening.keep_caps)?);
    ensure!(p["uid"] == "0" && p["gid"] == "0", "{p:?}");
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        ensure!(p[cap] == kept, "{cap} {} instead of {kept}", p[cap]);
    }
    ensure!(p["NoNewPrivs"] == "1", "{p:?}");
    let (code, _, err) = sh(
        rt,
        &root,
        // A file in it: an empty volume may be filled from the image again on its next
        // mount, ownership included.
        "touch /data/kept && chmod 700 /data && chown 1000:1000 /data",
    )
    .await?;
    ensure!(code == 0, "CHOWN kept: {err}");
    let (code, _, _) = sh(rt, &root, "chmod 755 /data || ls /data").await?;
    ensure!(
        code != 0,
        "FOWNER, DAC_OVERRIDE and DAC_READ_SEARCH dropped: root cannot use a directory it gave away"
    );
    rt.remove_container(&root).await?;

    // A confined user process.
    let mut spec = fx.spec("iuser", SLEEP, Some(&volume), None);
    spec.hardening = Hardening {
        user: UserId {
            uid: 1000,
            gid: 1001,
        },
        keep_caps: vec!["KILL".into()],
        no_new_privileges: true,
        read_only_root: true,
        tmpfs: vec![Tmpfs {
            path: "/tmp".into(),
            size: 64 << 20,
            mode: 0o1777,
        }],
        limits: ResourceLimits {
            pids: 40,
            memory: 96 << 20,
            nano_cpus: Some(500_000_000),
            log: None,
        },
        init: true,
    };
    let user = run(rt, &spec).await?;
    let p = probe(rt, &user).await?;
    ensure!(p["uid"] == "1000" && p["gid"] == "1001", "{p:?}");
    ensure!(p["CapEff"] == "0000000000000000", "{p:?}");
    ensure!(p["CapPrm"] == "0000000000000000", "{p:?}");
    ensure!(p["CapBnd"] == format!("{:016x}", 1u64 << 5), "{p:?}");
    ensure!(p["NoNewPrivs"] == "1", "{p:?}");
    ensure!(p["root"] == "read-only", "{p:?}");
    ensure!(p["tmp"] == "writable", "{p:?}");
    ensure!(p["data"] == "writable", "{p:?}");
    let tmpfs = &p["tmpfs"];
    ensure!(
        tmpfs.starts_with("tmpfs,")
            && ["nosuid", "nodev", "size=65536k"]
                .iter()
                .all(|o| tmpfs.split(',').any(|t| t == *o)),
        "/tmp: {tmpfs}"
    );
    ensure!(p["tmpmode"] == "1777", "{p:?}");
    ensure!(p["pids"] == "40", "{p:?}");
    ensure!(p["memory"] == (96u64 << 20).to_string(), "{p:?}");
    let (quota, period) = p["cpu"].split_once('/').context("cpu")?;
    ensure!(
        quota.parse::<u64>()? * 1_000_000_000 / period.parse::<u64>()? == 500_000_000,
        "cpu {}",
        p["cpu"]
    );
    ensure!(p["init"] != "sleep", "an init is PID 1: {p:?}");

    // The process limit holds: however many processes are started, no more than the
    // limit exist at once.
    let (_, out, _) = sh(
        rt,
        &user,
        // Counted with builtins only: once the limit is reached nothing can fork.
        "(for i in $(seq 60); do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#",
    )
    .await?;
    let procs: u32 = out.trim().parse().context("process count")?;
    ensure!(
        (20..=40).contains(&procs),
        "{procs} processes under a limit of 40"
    );
    rt.remove_container(&user).await?;

    // Without init, the command is PID 1.
    let mut spec = fx.spec("inoinit", SLEEP, None, None);
    spec.hardening.user = UserId::ROOT;
    spec.hardening.init = false;
    let id = run(rt, &spec).await?;
    let (_, out, _) = sh(rt, &id, "cat /proc/1/comm").await?;
    ensure!(out.trim() == "sleep", "{out}");
    rt.remove_container(&id).await?;
    rt.remove_volume(&volume).await?;
    Ok(())
}

/// Remove everything a fixture's checks created (containers first: they hold volumes and
/// networks).
pub async fn cleanup<R: Runtime>(rt: &R, fx: &Fixture) {
    for kind in [
        ObjectKind::Container,
        ObjectKind::Volume,
        ObjectKind::Network,
    ] {
        let Ok(found) = rt.list_objects(kind, &fx.prefix, Some(fx.label())).await else {
            continue;
        };
        for o in found {
            let _ = match kind {
                ObjectKind::Container => rt.remove_container(&o.id).await,
                ObjectKind::Volume => rt.remove_volume(&o.name).await,
                ObjectKind::Network => rt.remove_network(&o.name).await,
            };
        }
    }
}

/// Run `check` on `rt` with a fresh fixture, then clean up.
async fn checked<R: Runtime>(
    rt: &R,
    fx: Fixture,
    check: impl AsyncFnOnce(&R, &Fixture) -> Result<()>,
) {
    let result = check(rt, &fx).await;
    cleanup(rt, &fx).await;
    if let Err(e) = result {
        panic!("{e:#}");
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(f)
}

/// Run `check` on the Docker backend (as root in the base image).
fn on_docker(check: impl AsyncFnOnce(&DockerRuntime, &Fixture) -> Result<()>) {
    block_on(async {
        let rt = DockerRuntime::connect().await.expect("the Docker engine");
        checked(&rt, Fixture::new(base_image(), UserId::ROOT), check).await;
    });
}

#[test]
fn docker_honours_the_contract() {
    require_docker!();
    on_docker(contract::<DockerRuntime>);
}

#[test]
fn docker_runs_interactive_sessions() {
    require_docker!();
    on_docker(interactive::<DockerRuntime>);
}

#[test]
fn docker_isolates() {
    require_docker!();
    on_docker(async |rt, fx| {
        ensure!(rt.isolation() == Isolation::Confines, "Docker must confine");
        isolation_as_claimed(rt, fx).await
    });
}

#[cfg(feature = "local-runtime")]
mod local {
    use std::collections::HashMap;

    use anyhow::{Result, ensure};
    use git_agent::runtime::local::LocalRuntime;
    use git_agent::runtime::{Isolation, Runtime, UserId};

    use super::{Fixture, block_on, checked};

    /// Run `check` on a fresh local runtime (in a directory the task user may pass through),
    /// whose one image is a build context holding only a Dockerfile, as the invoking user
    /// (who, as root, may be any user).
    fn on_local(check: impl AsyncFnOnce(&LocalRuntime, &Fixture) -> Result<()>) {
        let dir = crate::common::traversable_tempdir();
        let root = dir.path().join("rt");
        let rt = LocalRuntime::at(root.clone()).expect("a local runtime");
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        let text = b"FROM scratch\n";
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", &text[..])
            .unwrap();
        let context = tar.into_inner().unwrap();
        // SAFETY: geteuid and getegid cannot fail.
        let user = unsafe {
            UserId {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        };
        block_on(async {
            let image = rt
                .build_image(context, "conformance:1", &HashMap::new(), &mut |_| {})
                .await
                .expect("an image");
            checked(&rt, Fixture::new(image, user), check).await;
        });
        LocalRuntime::kill_all(&root);
    }

    #[test]
    fn local_honours_the_contract() {
        on_local(super::contract::<LocalRuntime>);
    }

    #[test]
    fn local_has_no_terminals_and_says_so() {
        on_local(super::no_terminals::<LocalRuntime>);
    }

    /// The local runtime confines nothing and says so: the isolation half does not run for
    /// it, and nothing selects it unless asked (see `orchestration.rs`).
    #[test]
    fn local_claims_no_isolation() {
        on_local(async |rt, fx| {
            ensure!(rt.isolation() == Isolation::HostProcesses);
            super::isolation_as_claimed(rt, fx).await
        });
    }
}
