//! `git agent doctor` and `git agent panic`: checking the setup, and the emergency stop.

use anyhow::Result;
use clap::Args;

use super::{Ctx, engine, out};
use crate::error::hinted;
use crate::image::DEFAULT_BASE_IMAGE;
use crate::runtime::{ContainerState, LABEL_REPO, Runtime};
use crate::task::Status;

/// Check what git-agent needs: git, the container engine and its API version, the base
/// image, free disk space, and tasks whose record and runtime objects disagree. Each
/// problem is printed with its fix; exits 1 when any check fails.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// Stop every git-agent task container on the engine at once (all repositories): their
/// networks are cut first, then they are killed. Workspaces, volumes and refs are kept, so
/// nothing is lost; `git agent restart <task>` resumes a task.
#[derive(Debug, Args)]
pub struct PanicArgs {
    /// Only the tasks of the repository you are in.
    #[arg(long)]
    pub this_repo: bool,
}

/// The oldest git this works with: `update-ref --stdin` transactions with `start`/`prepare`
/// (2.27) and `fetch --no-auto-maintenance` (2.29).
const MIN_GIT: (u32, u32) = (2, 29);

/// Parse `git version 2.47.3` into (2, 47).
pub fn git_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

struct Report {
    failed: bool,
}

impl Report {
    fn ok(&self, what: &str, detail: impl AsRef<str>) -> Result<()> {
        out(format!("ok    {what:<10} {}", detail.as_ref()))
    }
    fn warn(&self, what: &str, detail: impl AsRef<str>, fix: &str) -> Result<()> {
        out(format!(
            "warn  {what:<10} {}\n      fix: {fix}",
            detail.as_ref()
        ))
    }
    fn fail(&mut self, what: &str, detail: impl AsRef<str>, fix: &str) -> Result<()> {
        self.failed = true;
        out(format!(
            "FAIL  {what:<10} {}\n      fix: {fix}",
            detail.as_ref()
        ))
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

pub async fn run_doctor(_: DoctorArgs) -> Result<i32> {
    let mut r = Report { failed: false };
    let ctx = Ctx::open()?;
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
    let rt = match engine().await {
        Ok(rt) => rt,
        Err(e) => {
            let hint = crate::error::find_hint(&e)
                .unwrap_or("start the container engine")
                .to_string();
            r.fail("engine", e.to_string(), &hint)?;
            return Ok(1);
        }
    };
    match rt.ping().await {
        Ok(v) => r.ok("engine", v)?,
        Err(e) => r.fail("engine", e.to_string(), "start the container engine")?,
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
    gateway_checks(&rt, &ctx, &mut r).await?;
    // Tasks and runtime objects that disagree.
    let tasks = ctx.store.all()?;
    let mut stale = 0;
    for l in &tasks {
        let rec = &l.record;
        if let Some(c) = &rec.sandbox.container {
            if matches!(rec.status, Status::Running | Status::Creating)
                && rt.state(c).await? == ContainerState::Missing
            {
                stale += 1;
                r.fail(
                    "task",
                    format!("{} is recorded as {} but its container is gone", rec.name, rec.status.as_str()),
                    &format!("`git agent status {0}` records it; `git agent purge --refs {0}` removes it", rec.name),
                )?;
            }
        }
    }
    let names: Vec<&str> = tasks.iter().map(|l| l.record.name.as_str()).collect();
    for o in rt.containers_with(&[(LABEL_REPO, &ctx.repo.id)]).await? {
        if !names.contains(&o.task.as_str()) {
            stale += 1;
            r.fail(
                "orphan",
                format!("container of task '{}' has no task refs", o.task),
                &format!("`git agent purge {}` removes it", o.task),
            )?;
        }
    }
    if stale == 0 {
        r.ok(
            "tasks",
            format!("{} task(s), records and runtime agree", tasks.len()),
        )?;
    }
    Ok(if r.failed { 1 } else { 0 })
}

/// The egress gateway: its image, internal networks on this engine, and the gateways of
/// running tasks.
async fn gateway_checks<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report) -> Result<()> {
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
    let probe = format!("git-agent-doctor-{}", std::process::id());
    match rt.create_network(&probe, &Default::default(), true).await {
        Ok(_) => {
            rt.remove_network(&probe).await.ok();
            r.ok("network", "internal networks without a host address work")?;
        }
        Err(e) => r.fail(
            "network",
            format!("cannot create an internal network: {e:#}"),
            "the engine must support internal bridge networks (Docker 20.10+, or Podman's Docker API)",
        )?,
    }
    for l in ctx.store.all()? {
        let rec = &l.record;
        if rec.status != Status::Running {
            continue;
        }
        if let Some(gw) = &rec.sandbox.gateway {
            if rt.state(gw).await? != ContainerState::Running {
                r.fail(
                    "gateway",
                    format!(
                        "task {}'s gateway is not running: the task has no way out",
                        rec.name
                    ),
                    &format!("`git agent restart {}` gives it a new one", rec.name),
                )?;
            }
        }
    }
    Ok(())
}

pub async fn run_panic(args: PanicArgs) -> Result<i32> {
    let repo = if args.this_repo {
        Some(Ctx::open()?.repo.id)
    } else {
        None
    };
    let rt = engine().await.map_err(|e| {
        hinted(
            format!("cannot reach the engine to stop tasks: {e}"),
            "stop the engine itself (e.g. `sudo systemctl stop docker`) to stop every container",
        )
    })?;
    let stopped = rt
        .panic_stop_all(repo.as_deref().map(|id| (LABEL_REPO, id)))
        .await?;
    for name in &stopped {
        out(name)?;
    }
    eprintln!(
        "git-agent: cut the network of and stopped {} task container(s); workspaces and refs are kept",
        stopped.len()
    );
    Ok(0)
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
}
