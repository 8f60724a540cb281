//! `git agent doctor` and `git agent panic`: checking the setup, and the emergency stop.

use anyhow::Result;
use clap::Args;

use serde::Serialize;

use super::{Ctx, engine, out};
use crate::error::hinted;
use crate::image::DEFAULT_BASE_IMAGE;
use crate::runtime::{LABEL_REPO, Runtime};
use crate::sandbox::checkup::{self, Outcome};
use crate::sandbox::stuck;

/// Check what git-agent needs (git, the container engine and its API version, the base
/// image, free disk space) and this repository's tasks: spawns that died (a task left
/// `creating` that no spawn is setting up), tasks whose container, workspace volume,
/// network or gateway is missing, runtime objects whose task has no refs, objects named like
/// this repository's but without git-agent's labels, leftovers of image builds whose builder
/// died, and reader/draft containers and temp files of interrupted syncs and commits. Each
/// problem is printed with the command that fixes it; exits 1 when any check fails.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Repair what can be repaired: a dead spawn is recorded as failed and its containers
    /// and network removed (then `git agent purge --refs <task>` removes it), leftovers are
    /// removed, and a task whose container is gone is recorded as failed. Never deletes task
    /// refs or a workspace; what needs a command of its own (e.g. `git agent restart
    /// <task>` for a dead gateway) is printed with it. Exits 1 when something is left.
    #[arg(long)]
    pub fix: bool,
    /// Print the checks and findings as JSON.
    #[arg(long)]
    pub json: bool,
}

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

/// One check's result.
#[derive(Debug, Serialize)]
struct Entry {
    status: &'static str,
    check: String,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
}

/// The checks' results, printed as they come (text) or at the end (`--json`).
struct Report {
    failed: bool,
    json: bool,
    entries: Vec<Entry>,
}

impl Report {
    fn push(&mut self, e: Entry) -> Result<()> {
        if !self.json {
            let mut line = format!("{:<5} {:<10} {}", e.status, e.check, e.detail);
            if let Some(fix) = &e.fix {
                line.push_str(&format!("\n      fix: {fix}"));
            }
            out(line)?;
        }
        self.entries.push(e);
        Ok(())
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
    /// Print the JSON document (`--json`) and return the exit code.
    fn finish(self) -> Result<i32> {
        let code = if self.failed { 1 } else { 0 };
        if self.json {
            let doc = serde_json::json!({ "ok": !self.failed, "checks": self.entries });
            out(serde_json::to_string_pretty(&doc)?)?;
        }
        Ok(code)
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

pub async fn run_doctor(args: DoctorArgs) -> Result<i32> {
    let mut r = Report {
        failed: false,
        json: args.json,
        entries: Vec::new(),
    };
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
            return r.finish();
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
    task_checks(&rt, &ctx, &mut r, args.fix).await?;
    r.finish()
}

/// The repository's tasks and runtime objects (see [`checkup`]); with `fix`, repair first
/// and report what is left.
async fn task_checks<R: Runtime>(rt: &R, ctx: &Ctx, r: &mut Report, fix: bool) -> Result<()> {
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
    let probe = format!("{}{}", checkup::PROBE_PREFIX, std::process::id());
    match rt
        .create_network(&probe, &checkup::probe_labels(&ctx.git), true)
        .await
    {
        Ok(_) => {
            rt.remove_network(&probe).await.ok();
            r.ok("network", "internal networks without a host address work")?;
        }
        Err(e) => {
            let hint = crate::error::find_hint(&e).unwrap_or(
                "the engine must support internal bridge networks (Docker 20.10+, or Podman's Docker API)",
            );
            r.fail(
                "network",
                format!("cannot create an internal network: {e:#}"),
                hint,
            )?
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
