//! Doctor and panic: checking what git-agent needs and this repository's tasks (and with
//! `--fix` repairing what can be, see [`crate::sandbox::checkup`]), and the emergency stop
//! of every task container. Results are handed to the caller; nothing here prints.

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use crate::image::DEFAULT_BASE_IMAGE;
use crate::runtime::select::Engine;
use crate::runtime::{ContainerState, LABEL_REPO, Runtime};
use crate::sandbox::checkup::{self, Outcome};
use crate::sandbox::stuck;

/// What went wrong in a doctor run: its checks report problems as entries, so what fails
/// the run itself comes from below (the refs, the engine, the caller's sink), as it came.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for DoctorError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let DoctorError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            DoctorError::Other(e) => Ok(e),
        }
    }
}

/// What went wrong in a panic stop, beyond the engine's own failures.
#[derive(Debug, thiserror::Error)]
pub enum PanicError {
    #[error("cannot reach the engine to stop tasks: {detail}")]
    Unreachable { detail: String },
    /// A failure below the operation (the engine's stop), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for PanicError {
    fn hint(&self) -> Option<String> {
        match self {
            PanicError::Unreachable { .. } => Some(
                "stop the engine itself (e.g. `sudo systemctl stop docker`) to stop every container"
                    .into(),
            ),
            PanicError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            PanicError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            PanicError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// The oldest git this works with: `update-ref --stdin` transactions with `start`/`prepare`
/// (2.27) and `fetch --no-auto-maintenance` (2.29).
pub const MIN_GIT: (u32, u32) = (2, 29);

/// Parse `git version 2.47.3` into (2, 47).
pub fn git_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// `ok`, `warn`, `FAIL`, or for `--fix` `fixed` and `busy`.
    pub status: &'static str,
    pub check: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// The checks' results, handed to the caller as they come.
struct Report<'a> {
    failed: bool,
    sink: &'a mut (dyn FnMut(Entry) -> Result<()> + Send),
}

impl Report<'_> {
    fn push(&mut self, e: Entry) -> Result<()> {
        (self.sink)(e)
    }
    fn entry(status: &'static str, what: &str, detail: &str, fix: Option<&str>) -> Entry {
        Entry {
            status,
            check: what.to_string(),
            detail: detail.to_string(),
            fix: fix.map(str::to_string),
            task: None,
        }
    }
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) -> Result<()> {
        self.push(Self::entry("ok", what, detail.as_ref(), None))
    }
    fn warn(&mut self, what: &str, detail: impl AsRef<str>, fix: &str) -> Result<()> {
        self.push(Self::entry("warn", what, detail.as_ref(), Some(fix)))
    }
    fn fail(&mut self, what: &str, detail: impl AsRef<str>, fix: &str) -> Result<()> {
        self.failed = true;
        self.push(Self::entry("FAIL", what, detail.as_ref(), Some(fix)))
    }
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct for a valid NUL-terminated path; we check the result.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut s) == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
}

/// Check the setup and this repository's tasks (with `fix`, repair first what can be
/// repaired), handing each result to `sink` as it comes. Returns whether a check failed.
pub async fn run(
    ctx: &Ctx,
    fix: bool,
    sink: &mut (dyn FnMut(Entry) -> Result<()> + Send),
) -> Result<bool, DoctorError> {
    let mut r = Report {
        failed: false,
        sink,
    };
    let git = ctx.git.run(["version"]).unwrap_or_default();
    match git_version(&git) {
        Some(v) if v >= MIN_GIT => r.ok("git", &git)?,
        _ => r.fail(
            "git",
            format!("{git} is too old or unknown"),
            "install git 2.29 or newer",
        )?,
    }
    for (what, path) in [
        ("disk", ctx.git.common_dir.clone()),
        ("tmp", std::env::temp_dir()),
    ] {
        match free_bytes(&path) {
            Some(b) if b < 1 << 30 => r.warn(
                what,
                format!("{} MiB free at {}", b >> 20, path.display()),
                "free some space: sync writes bundles there",
            )?,
            Some(b) => r.ok(what, format!("{} GiB free at {}", b >> 30, path.display()))?,
            None => r.warn(
                what,
                format!("cannot read free space of {}", path.display()),
                "check the path",
            )?,
        }
    }
    // Named engines: each is reached (an unreachable one fails the check); the checks that
    // follow run on the first.
    let defs = super::engine_defs(ctx)?;
    if defs.iter().any(|d| d.address.is_some()) {
        for def in &defs {
            let what = format!("engine {}", def.name);
            match Engine::connect_to(def, crate::runtime::docker::READ_CONNECT_TIMEOUT).await {
                Ok(rt) => match rt.ping().await {
                    Ok(v) => r.ok(&what, format!("{v} at {}", def.place()))?,
                    Err(e) => r.fail(&what, format!("{e:#}"), &engine_fix(&e))?,
                },
                Err(e) => r.fail(&what, format!("{e:#}"), &engine_fix(&e))?,
            }
        }
    }
    let rt = match Engine::connect_to(&defs[0], crate::runtime::docker::CONNECT_TIMEOUT).await {
        Ok(rt) => rt,
        Err(e) => {
            r.fail("engine", e.to_string(), &engine_fix(&e))?;
            return Ok(r.failed);
        }
    };
    // Which engine answered: with DOCKER_HOST, a context or a remote engine, the user must
    // see that it is the one they meant.
    let at = match &rt {
        crate::runtime::select::Engine::Docker(d) => format!(" at {}", d.address()),
        #[cfg(feature = "local-runtime")]
        _ => String::new(),
    };
    match rt.ping().await {
        Ok(v) => r.ok("engine", format!("{v}{at}"))?,
        Err(e) => {
            let hint = crate::error::find_hint(&e)
                .unwrap_or("start the container engine".into())
                .to_string();
            r.fail("engine", e.to_string(), &hint)?
        }
    }
    let base = ctx
        .config
        .get("agent.baseImage")
        .unwrap_or(DEFAULT_BASE_IMAGE);
    match rt.image_id(base).await {
        Ok(Some(_)) => r.ok("image", format!("base image {base} is present"))?,
        Ok(None) => r.warn(
            "image",
            format!("base image {base} is not present; the first build pulls it"),
            "make sure the registry is reachable, or set agent.baseImage to a local image",
        )?,
        Err(e) => r.fail("image", e.to_string(), "check the engine")?,
    }
    gateway_checks(&rt, ctx, &mut r).await?;
    task_checks(&rt, ctx, &mut r, fix).await?;
    oci_runtime_checks(ctx, &mut r).await?;
    Ok(r.failed)
}

/// Tasks recorded under an OCI runtime (`agent.ociRuntime`) that their engine no longer has:
/// their restart, preview and commit-message drafts would be refused. Each engine is asked
/// once; an engine that does not answer was reported above.
async fn oci_runtime_checks(ctx: &Ctx, r: &mut Report<'_>) -> Result<()> {
    let mut by_engine: std::collections::BTreeMap<Option<String>, Vec<(String, String)>> =
        Default::default();
    for l in ctx.store.all()? {
        if let Some(runtime) = &l.record.oci_runtime {
            by_engine
                .entry(l.record.engine.clone())
                .or_default()
                .push((l.record.name.clone(), runtime.clone()));
        }
    }
    for (engine, tasks) in by_engine {
        let Ok(def) =
            crate::runtime::engines::of_task(&super::engine_defs(ctx)?, engine.as_deref())
        else {
            continue;
        };
        let Ok(rt) = Engine::connect_to(&def, crate::runtime::docker::READ_CONNECT_TIMEOUT).await
        else {
            continue;
        };
        let Ok(available) = rt.oci_runtimes().await else {
            continue;
        };
        for (task, runtime) in tasks {
            if available.contains(&runtime) {
                continue;
            }
            let mut e = Report::entry(
                "warn",
                "runtime",
                &format!(
                    "task {task} runs under the OCI runtime '{runtime}', which the engine '{}' no longer has (it has: {}); restarting or previewing it is refused",
                    def.name,
                    available.join(", ")
                ),
                Some(&format!(
                    "register '{runtime}' with the engine again (for gVisor's runsc: scripts/setup-engine.sh), or `git agent purge {task}`"
                )),
            );
            e.task = Some(task);
            r.push(e)?;
        }
    }
    Ok(())
}

/// The repository's tasks and runtime objects (see [`checkup`]); with `fix`, repair first
/// and report what is left.
async fn task_checks<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report<'_>, fix: bool) -> Result<()> {
    ended_runs(rt, ctx, r, fix).await?;
    held_networks(rt, ctx, r, fix).await?;
    let mut findings = checkup::examine(rt, &ctx.store, &ctx.repo).await?;
    if fix && !findings.is_empty() {
        for f in &findings {
            let outcome = checkup::repair(rt, &ctx.store, &ctx.repo, f).await?;
            let (status, detail) = match outcome {
                Outcome::Repaired => ("fixed", f.problem.clone()),
                Outcome::Busy => (
                    "busy",
                    format!("{} (a command is working on it; left alone)", f.problem),
                ),
                Outcome::Manual => continue,
            };
            r.push(Entry {
                status,
                check: f.check.to_string(),
                detail,
                fix: None,
                task: f.task.clone(),
            })?;
        }
        findings = checkup::examine(rt, &ctx.store, &ctx.repo).await?;
    }
    for f in &findings {
        r.failed = true;
        r.push(Entry {
            status: "FAIL",
            check: f.check.to_string(),
            detail: f.problem.clone(),
            fix: Some(f.fix.clone()),
            task: f.task.clone(),
        })?;
    }
    // Spawns that died and were recorded as such: nothing is wrong any more, but the task is
    // of no use.
    let tasks = ctx.store.all()?;
    for l in tasks.iter().filter(|l| stuck::is_interrupted(l)) {
        let name = &l.record.name;
        if findings.iter().any(|f| f.task.as_deref() == Some(name)) {
            continue;
        }
        let mut e = Report::entry(
            "warn",
            "task",
            &format!("task {name} failed: {}", stuck::REASON),
            Some(&format!("`git agent purge --refs {name}` removes it")),
        );
        e.task = Some(name.clone());
        r.push(e)?;
    }
    if findings.is_empty() {
        r.ok(
            "tasks",
            format!("{} task(s), records and runtime agree", tasks.len()),
        )?;
    }
    Ok(())
}

/// Tasks recorded as running whose command has ended since (read-only commands show them as
/// exited without recording it): nothing is wrong, but their gateway still runs. With `fix`,
/// record each (its exit, transcript and connection log) and retire its gateway, as the next
/// command that changes the task would; a task some command holds is left to that command.
async fn ended_runs<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report<'_>, fix: bool) -> Result<()> {
    let following = super::follow::Settings::from_config(&ctx.config)?.enabled;
    for l in ctx.store.all()? {
        let name = l.record.name.clone();
        let Some(container) = l.record.sandbox.container.as_deref() else {
            continue;
        };
        if l.record.status != crate::task::Status::Running {
            continue;
        }
        let entry = |status, detail: String, fix: Option<String>| Entry {
            status,
            check: "task".into(),
            detail,
            fix,
            task: Some(name.clone()),
        };
        let code = match rt.state(container).await? {
            ContainerState::Exited(code) => code,
            ContainerState::Running if following && !super::follow::active(&ctx.git, &name) => {
                r.push(unfollowed(ctx, &name, fix, entry))?;
                continue;
            }
            _ => continue,
        };
        let detail = format!("task {name}'s command ended (exit {code}); not recorded yet");
        if !fix {
            r.push(entry(
                "warn",
                detail,
                Some("`git agent doctor --fix` (or the next command that changes it) records it and retires its gateway".into()),
            ))?;
            continue;
        }
        let lock = fix_lock(ctx, &name)?;
        match lock {
            Some(_lock) => {
                if let Some(l) = ctx.store.load(&name)? {
                    crate::sandbox::refresh(rt, &ctx.store, l).await?;
                }
                r.push(entry("fixed", detail, None))?;
            }
            None => r.push(entry(
                "busy",
                format!("{detail} (a command is working on it; left alone)"),
                None,
            ))?,
        }
    }
    Ok(())
}

/// A running task that nobody follows (its follower was killed, or it ran before following
/// existed): its work comes home only when someone syncs. With `fix`, start a follower.
fn unfollowed(
    ctx: &Ctx,
    name: &str,
    fix: bool,
    entry: impl Fn(&'static str, String, Option<String>) -> Entry,
) -> Entry {
    let detail = format!("task {name} runs without a follower; its work comes home only on sync");
    if !fix {
        return entry(
            "warn",
            detail,
            Some(format!(
                "`git agent doctor --fix` (or `git agent sync --follow {name}`) starts one"
            )),
        );
    }
    match super::follow::start(ctx, name) {
        Ok(_) => entry("fixed", format!("{detail}: started one"), None),
        Err(e) => entry(
            "warn",
            format!("{detail}; starting one failed: {e:#}"),
            Some(format!("bring its work home with `git agent sync {name}`")),
        ),
    }
}

/// The task's lock for a repair, unless a spawn is still setting the task up or another
/// command holds it (then the task is left to it).
fn fix_lock(ctx: &Ctx, name: &str) -> Result<Option<crate::task::lock::TaskLock>> {
    if crate::task::lock::Lease::held(&ctx.git, name)? {
        return Ok(None);
    }
    crate::task::lock::TaskLock::try_acquire(&ctx.git, name, "doctor --fix")
}

/// Finished tasks that still hold a network (an older git-agent kept them until `purge`, or
/// a release was cut short): they cost the engine address space for nothing. With `fix`,
/// give each back as the end of a run does; a task some command holds is left to it. One
/// listing of the repository's networks, however many tasks there are.
async fn held_networks<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report<'_>, fix: bool) -> Result<()> {
    use crate::task::Status;
    let inv = rt
        .inventory(&[(crate::runtime::LABEL_REPO, &ctx.repo.id)])
        .await?;
    for l in ctx.store.all()? {
        let name = l.record.name.clone();
        if matches!(l.record.status, Status::Running | Status::Creating) {
            continue;
        }
        let names = ctx.repo.object_names(&name);
        // Its own network, or the spare's it ran on (see `sandbox::spare`).
        let Some(held) = [Some(&names.network), l.record.sandbox.network.as_ref()]
            .into_iter()
            .flatten()
            .find(|n| inv.networks.contains(*n))
            .cloned()
        else {
            continue;
        };
        let detail = format!("task {name} has finished but still holds its network");
        let entry = |status, detail: String, fix: Option<String>| Entry {
            status,
            check: "network".into(),
            detail,
            fix,
            task: Some(name.clone()),
        };
        if !fix {
            r.push(entry(
                "warn",
                detail,
                Some("`git agent doctor --fix` gives it back (`restart` makes a new one)".into()),
            ))?;
            continue;
        }
        let lock = fix_lock(ctx, &name)?;
        match lock {
            Some(_lock) => {
                if let Some(l) = ctx.store.load(&name)? {
                    crate::sandbox::gateway::retire(rt, &ctx.store, l, &names).await?;
                }
                let gone = !rt.network_exists(&held).await?;
                if gone {
                    r.push(entry("fixed", detail, None))?;
                } else {
                    r.push(entry(
                        "warn",
                        format!("{detail} (still in use)"),
                        Some(format!(
                            "`git agent rm {name}` removes the container that holds it"
                        )),
                    ))?;
                }
            }
            None => r.push(entry(
                "busy",
                format!("{detail} (a command is working on it; left alone)"),
                None,
            ))?,
        }
    }
    Ok(())
}

/// The egress gateway: its image, internal networks on this engine, and the gateways of
/// running tasks.
async fn gateway_checks<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report<'_>) -> Result<()> {
    let plan = crate::image::gateway_plan(&ctx.config)?;
    match rt.image_id(&plan.tag).await {
        Ok(Some(_)) => r.ok("gateway", format!("image {} is present", plan.tag))?,
        Ok(None) => r.warn(
            "gateway",
            format!(
                "image {} is not built yet; the first spawn builds it",
                plan.tag
            ),
            "make sure the base image can install Debian's python3 (apt), or run a spawn once",
        )?,
        Err(e) => r.fail("gateway", e.to_string(), "check the engine")?,
    }
    let probe = format!("{}{}", checkup::PROBE_PREFIX, std::process::id());
    // The way a task's network is made: with a subnet of agent.subnets.
    let made = async {
        let range = crate::sandbox::network::SubnetRange::from_config(&ctx.config)?;
        let labels = checkup::probe_labels(&ctx.git);
        let subnet = crate::sandbox::network::create(rt, &range, &probe, &labels).await?;
        Ok::<_, anyhow::Error>((range, subnet))
    };
    match made.await {
        Ok((range, subnet)) => {
            rt.remove_network(&probe).await.ok();
            r.ok(
                "network",
                match subnet {
                    Some(subnet) => format!(
                        "internal networks without a host address work (task subnets from {range}, e.g. {subnet})",
                        range = range.net()
                    ),
                    None => "internal networks work (the engine gives their addresses)".into(),
                },
            )?;
        }
        Err(e) => {
            let hint = crate::error::find_hint(&e).unwrap_or(
                "the engine must support internal bridge networks (Docker 20.10+, or Podman's Docker API)"
                    .into(),
            );
            r.fail(
                "network",
                format!("cannot create an internal network: {e:#}"),
                &hint,
            )?
        }
    }
    Ok(())
}

/// Cut the network of and stop every git-agent task container on the engine (only those of
/// repository `repo` when given). Returns the containers stopped.
/// The fix an engine failure names, or how to start one.
fn engine_fix(e: &anyhow::Error) -> String {
    crate::error::find_hint(e)
        .unwrap_or("start the container engine".into())
        .to_string()
}

/// Every configured engine is asked (see [`crate::runtime::engines`]); one that does not answer
/// does not keep the others' tasks running, and is reported once they are stopped.
pub async fn panic(repo: Option<&str>) -> Result<Vec<String>, PanicError> {
    let config = crate::git::agent_config_here()?;
    let defs = crate::runtime::engines::configured(&config)?;
    let mut stopped = Vec::new();
    let mut unreachable = Vec::new();
    for def in &defs {
        match Engine::connect_to(def, crate::runtime::docker::CONNECT_TIMEOUT).await {
            Ok(rt) => stopped.extend(rt.panic_stop_all(repo.map(|id| (LABEL_REPO, id))).await?),
            Err(e) => unreachable.push(format!("{e:#}")),
        }
    }
    if !unreachable.is_empty() {
        let also = if stopped.is_empty() {
            String::new()
        } else {
            format!(" (stopped on the other engines: {})", stopped.join(" "))
        };
        return Err(PanicError::Unreachable {
            detail: format!("{}{also}", unreachable.join("; ")),
        });
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::git_version;

    #[test]
    fn git_versions() {
        assert_eq!(git_version("git version 2.47.3"), Some((2, 47)));
        assert_eq!(git_version("git version 2.39.5.windows.1\n"), Some((2, 39)));
        assert_eq!(git_version("hub version 1"), None);
        assert!(git_version("git version 2.28.0").unwrap() < super::MIN_GIT);
    }

    #[test]
    fn panic_errors_carry_their_hint() {
        let e: anyhow::Error = super::PanicError::Unreachable {
            detail: "no engine".into(),
        }
        .into();
        assert_eq!(
            crate::error::find_hint(&e).as_deref(),
            Some(
                "stop the engine itself (e.g. `sudo systemctl stop docker`) to stop every container"
            )
        );
    }
}
