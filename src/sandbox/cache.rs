//! The per-repository object cache on the engine: one volume (`git-agent-cache-<repo>`)
//! holding a bare repository of the history that tasks of this repository start from. Tasks
//! mount it read-only and borrow its objects through `objects/info/alternates`, so a spawn
//! delivers no history: it checks the base out from the cache (the helper's `borrow`). N
//! tasks on one repository cost one copy of history plus N work trees.
//!
//! Only git-agent writes the cache: a short-lived writer container (the gateway's image,
//! built from git-agent's own files only; root, no capabilities, no network, read-only root)
//! receives an incremental bundle over exec stdin (the tips the host already sent are its
//! prerequisites), checks it (`git bundle verify`) and unbundles it. Its files belong to
//! root and tasks mount the volume read-only: two walls between an agent and the objects
//! every other task of the repository reads.
//!
//! What the host sent is remembered on the host (`<git-dir>/git-agent/cache-state`: the
//! volume's generation label and the tips), never read back from the engine: a spawn whose
//! base is already in the cache starts no writer at all. Updates of one repository's cache
//! are serialised by a host-side lock beside the task locks.
//!
//! The cache lives on the engine (a remote one works the same: history goes over exec
//! streams). After a switch to another engine (`DOCKER_HOST`, a context) the first spawn
//! there finds none (warned as gone: the host cannot tell a removed cache from another
//! engine's) and fills it. The memory keeps one block per cache generation,
//! the most recent [`STATES_KEPT`], so switching back and forth fills each engine's cache
//! incrementally; a generation is random per volume, so one engine's memory never passes for
//! another's.
//!
//! Damage is found three ways and repaired by a rebuild (a fresh repository swapped in
//! under the same volume, so running tasks keep their mount), each with a warning: the
//! volume is gone or is not git-agent's (the engine makes an empty, unlabelled one when a
//! container names a missing volume); the writer's own check fails (a pack whose trailer
//! does not match its index, a prerequisite it should have but lacks); or a task cannot
//! check its base out of it (see [`BORROW_FAILED`]).
//!
//! Must not: run git anywhere but in the writer or on the host's own repository; trust
//! anything the writer prints beyond its exit code; be written by anything a task runs.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::RepoId;
use super::spawn::Limits;
use crate::error::{exit_detail, hinted};
use crate::git::Git;
use crate::runtime::{
    Hardening, LABEL_REPO, LABEL_REPO_PATH, LogRotation, ObjectKind, ResourceLimits, Runtime,
    SandboxSpec, Tmpfs, UserId, VolumeMount,
};
use crate::task::lock::{TaskLock, state_dir};
use crate::transfer::{Meter, Metered};

/// Where tasks (and their readers) see the cache, read-only.
pub const MOUNT: &str = "/opt/git-agent-cache";
/// The cache's repository inside the volume (and under [`MOUNT`]).
pub const REPO_DIR: &str = "repo.git";
/// The label that marks the cache volume and its writer (value: the repository id). They
/// carry no task label: `doctor` must not take them for a task's leftovers.
pub const LABEL_CACHE: &str = "git-agent.cache";
/// A random word chosen when the volume is created: a volume deleted and made again (by
/// anyone) has another, so the host's memory of what it sent no longer applies.
const LABEL_GENERATION: &str = "git-agent.cache-generation";
/// Where the writer mounts the cache (read-write).
const WRITER_MOUNT: &str = "/cache";
/// The helper's `borrow` exits with this when the cache cannot give it the base (missing
/// repository, missing or unreadable objects): the host rebuilds the cache and tries once more.
pub const BORROW_FAILED: i64 = 5;
/// The writer's script exits with this when the cache is damaged: rebuild it.
const DAMAGED: i64 = 4;
/// Name of the host-side lock serialising cache updates (not a valid task name, so it
/// never meets a task's lock).
const LOCK: &str = ".object-cache";

/// Is the object cache on? (`agent.objectCache`, default true.) Off, spawn streams the
/// base's whole history into each task as before.
pub fn enabled(config: &crate::git::Config) -> Result<bool> {
    config.bool("agent.objectCache", true)
}

/// The cache volume's name for a repository.
pub fn volume_name(repo: &RepoId) -> String {
    format!("git-agent-cache-{}", repo.id)
}

fn writer_name(repo: &RepoId) -> String {
    format!("git-agent-cache-{}.writer", repo.id)
}

/// The labels of the cache volume and its writer.
pub fn labels(repo: &RepoId, generation: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_CACHE.to_string(), repo.id.clone()),
        (LABEL_REPO.to_string(), repo.id.clone()),
        (LABEL_REPO_PATH.to_string(), repo.path.clone()),
    ]);
    if let Some(g) = generation {
        l.insert(LABEL_GENERATION.to_string(), g.to_string());
    }
    l
}

/// Is this object (by its labels) a repository's object cache or its writer?
pub fn is_cache_object(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(LABEL_CACHE)
}

/// The read-only mount of the cache into a task's container.
pub fn task_mount(volume: &str) -> VolumeMount {
    VolumeMount {
        read_only: true,
        ..VolumeMount::new(volume, MOUNT)
    }
}

/// The environment telling the sandbox helper where the cache is.
pub fn task_env() -> String {
    format!("GIT_AGENT_CACHE={MOUNT}")
}

/// What the host remembers about the cache it filled.
#[derive(Debug, Clone, Default, PartialEq)]
struct HostState {
    generation: String,
    /// Commits whose whole history the cache holds.
    tips: Vec<String>,
}

fn state_path(git: &Git) -> PathBuf {
    state_dir(git).join("cache-state")
}

fn is_oid(s: &str) -> bool {
    matches!(s.len(), 40 | 64)
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// How many engines' caches the host remembers (most recent first).
const STATES_KEPT: usize = 8;

impl HostState {
    /// One block: `generation <g>` then its `tip <oid>` lines.
    #[cfg(test)]
    fn parse(text: &str) -> Option<HostState> {
        let mut all = HostState::parse_all(text)?;
        (all.len() == 1).then(|| all.remove(0))
    }

    /// Every block of the file (one per engine the repository's cache was filled on; a
    /// generation is random per volume, so each names one engine's cache).
    fn parse_all(text: &str) -> Option<Vec<HostState>> {
        let mut all: Vec<HostState> = Vec::new();
        for l in text.lines() {
            if let Some(generation) = l.strip_prefix("generation ") {
                if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                all.push(HostState {
                    generation: generation.to_string(),
                    tips: Vec::new(),
                });
                continue;
            }
            let tip = l.strip_prefix("tip ")?;
            if !is_oid(tip) {
                return None;
            }
            all.last_mut()?.tips.push(tip.to_string());
        }
        (!all.is_empty()).then_some(all)
    }

    fn render(&self) -> String {
        let mut s = format!("generation {}\n", self.generation);
        for t in &self.tips {
            s.push_str(&format!("tip {t}\n"));
        }
        s
    }

    fn read_all(git: &Git) -> Vec<HostState> {
        std::fs::read_to_string(state_path(git))
            .ok()
            .and_then(|t| HostState::parse_all(&t))
            .unwrap_or_default()
    }

    /// What the host sent to the cache of `generation`.
    fn read(git: &Git, generation: &str) -> Option<HostState> {
        HostState::read_all(git)
            .into_iter()
            .find(|s| s.generation == generation)
    }

    /// Remember this block first, in place of an earlier one of its generation.
    fn write(&self, git: &Git) -> Result<()> {
        let mut all = HostState::read_all(git);
        all.retain(|s| s.generation != self.generation);
        all.insert(0, self.clone());
        write_all(git, &all)
    }
}

fn write_all(git: &Git, all: &[HostState]) -> Result<()> {
    let path = state_path(git);
    if all.is_empty() {
        std::fs::remove_file(&path).ok();
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::create_dir_all(state_dir(git))?;
    let text: String = all
        .iter()
        .take(STATES_KEPT)
        .map(HostState::render)
        .collect();
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Forget what was sent to the cache of `generation` (it is gone or being refilled); the
/// caches of other engines stay remembered.
fn forget(git: &Git, generation: &str) {
    let mut all = HostState::read_all(git);
    let before = all.len();
    all.retain(|s| s.generation != generation);
    if all.len() != before {
        write_all(git, &all).ok();
    }
}

/// The generation label of a cache volume's labels.
fn generation_of(labels: &HashMap<String, String>) -> Option<&str> {
    labels.get(LABEL_GENERATION).map(String::as_str)
}

/// A history to put into the cache: a ref on the host naming it (a bundle needs ref names)
/// and the commit it names.
#[derive(Debug, Clone)]
pub struct Tip {
    pub refname: String,
    pub oid: String,
}

/// What the cache needs to start its writer.
pub struct Writer<'a> {
    /// The gateway's image (git-agent's own files only; it has git).
    pub image: &'a str,
    pub limits: &'a Limits,
    /// Where the history sent to the writer is metered (see [`crate::transfer`]).
    pub events: &'a dyn crate::ops::Events,
}

/// Make sure the repository's cache volume exists, is git-agent's, and holds the history of
/// every tip. Returns the volume's name. Warnings (a cache rebuilt) go to `warn`.
pub async fn ensure<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    tips: &[Tip],
    writer: &Writer<'_>,
    warn: &dyn Fn(String),
) -> Result<String> {
    let _lock = TaskLock::acquire(git, LOCK, "updating the object cache", |_| {}).await?;
    let volume = volume_name(repo);
    let found = rt.labels_of(ObjectKind::Volume, &volume).await?;
    let generation = found
        .as_ref()
        .filter(|l| l.get(LABEL_CACHE) == Some(&repo.id))
        .and_then(|l| l.get(LABEL_GENERATION).cloned());
    let known = generation.as_deref().and_then(|g| HostState::read(git, g));
    match (found, generation) {
        (Some(_), Some(g)) if known.is_some() => {
            let known = known.expect("checked");
            let fresh = |t: &&Tip| !known.tips.contains(&t.oid);
            let new: Vec<&Tip> = tips.iter().filter(fresh).collect();
            if new.is_empty() || !has_new_history(git, &new, &known.tips)? {
                return Ok(volume);
            }
            match add(rt, git, repo, writer, &new, &known).await? {
                Added::Done => Ok(volume),
                Added::Damaged(why) => {
                    warn(format!(
                        "the object cache {volume} is damaged ({why}); rebuilding it"
                    ));
                    rebuild_in_place(rt, git, repo, tips, writer, g).await?;
                    Ok(volume)
                }
            }
        }
        (Some(_), Some(g)) => {
            // A cache this host has no memory of filling (its state file lost): what it
            // holds is not known, so it is filled again from scratch.
            rebuild_in_place(rt, git, repo, tips, writer, g).await?;
            Ok(volume)
        }
        (Some(l), None) => {
            if !l.is_empty() && !is_cache_object(&l) {
                return Err(hinted(
                    format!("a volume named {volume} exists but is not git-agent's object cache"),
                    format!(
                        "remove or rename it (`docker volume rm {volume}`), or turn the cache off: git config agent.objectCache false"
                    ),
                ));
            }
            warn(format!(
                "the object cache {volume} was replaced by an empty volume; rebuilding it"
            ));
            rt.remove_container(&writer_name(repo)).await?;
            rt.remove_volume(&volume).await.with_context(|| {
                format!("cannot remove the unlabelled volume {volume} (a container still uses it?)")
            })?;
            create(rt, git, repo, tips, writer).await?;
            Ok(volume)
        }
        (None, _) => {
            // The host filled a cache of this repository before, here or on another engine
            // (a switch of DOCKER_HOST or context): which one, it cannot tell.
            if !HostState::read_all(git).is_empty() {
                warn(format!(
                    "the object cache {volume} is gone from this engine (removed, or another engine than before); rebuilding it"
                ));
            }
            create(rt, git, repo, tips, writer).await?;
            Ok(volume)
        }
    }
}

/// Make sure the cache a task's workspace borrows from (its record says which) is there
/// and holds the task's base, before a container of the task (restart, a reader) mounts
/// it. Nothing to do for a task that does not borrow.
pub async fn ensure_for_task<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    loaded: &crate::task::store::Loaded,
    limits: &Limits,
    warn: &dyn Fn(String),
) -> Result<()> {
    if loaded.record.sandbox.cache.is_none() {
        return Ok(());
    }
    let task = &loaded.record.name;
    let tip = Tip {
        refname: crate::task::ref_name(task, "base"),
        oid: loaded
            .ref_value("base")
            .unwrap_or(&loaded.record.base)
            .to_string(),
    };
    let image = crate::image::gateway_plan(&git.agent_config()?)?.tag;
    let writer = Writer {
        image: &image,
        limits,
        events: &crate::ops::NoEvents,
    };
    ensure(rt, git, repo, std::slice::from_ref(&tip), &writer, warn).await?;
    Ok(())
}

/// Rebuild the cache after a task found it unusable (its base could not be checked out of
/// it): filled again from scratch under the same volume.
pub async fn rebuild<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    tips: &[Tip],
    writer: &Writer<'_>,
) -> Result<()> {
    let _lock = TaskLock::acquire(git, LOCK, "rebuilding the object cache", |_| {}).await?;
    let volume = volume_name(repo);
    match rt
        .labels_of(ObjectKind::Volume, &volume)
        .await?
        .and_then(|l| l.get(LABEL_GENERATION).cloned())
    {
        Some(g) => rebuild_in_place(rt, git, repo, tips, writer, g).await,
        None => {
            rt.remove_volume(&volume).await.ok();
            create(rt, git, repo, tips, writer).await
        }
    }
}

/// Does any of `new` have history that `known` does not cover?
fn has_new_history(git: &Git, new: &[&Tip], known: &[String]) -> Result<bool> {
    let mut args = vec!["rev-list".to_string(), "-n1".into()];
    args.extend(new.iter().map(|t| t.oid.clone()));
    let present = present_commits(git, known)?;
    if !present.is_empty() {
        args.push("--not".into());
        args.extend(present);
    }
    Ok(!git.run(&args)?.is_empty())
}

/// The commits of `oids` that exist in the host repository (what the host sent may have
/// been collected since; a prerequisite the host lacks cannot go in a bundle).
fn present_commits(git: &Git, oids: &[String]) -> Result<Vec<String>> {
    if oids.is_empty() {
        return Ok(vec![]);
    }
    let input: String = oids.iter().map(|o| format!("{o}^{{commit}}\n")).collect();
    let out = git.run_with_input(
        ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        input.as_bytes(),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_suffix(" commit"))
        .filter(|o| is_oid(o))
        .map(str::to_string)
        .collect())
}

/// Every task's base on the host (so a rebuilt cache still serves the running tasks), plus
/// `tips`.
fn all_tips(git: &Git, tips: &[Tip]) -> Result<Vec<Tip>> {
    let mut all = tips.to_vec();
    let out = git.run([
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/agent/",
    ])?;
    for line in out.lines() {
        if let Some((oid, refname)) = line.split_once(' ')
            && refname.ends_with("/base")
            && is_oid(oid)
            && !all.iter().any(|t| t.oid == oid)
        {
            all.push(Tip {
                refname: refname.to_string(),
                oid: oid.to_string(),
            });
        }
    }
    Ok(all)
}

/// Reduce tips to those no other one contains (`merge-base --independent`).
fn independent(git: &Git, oids: &[String]) -> Result<Vec<String>> {
    let present = present_commits(git, oids)?;
    if present.len() < 2 {
        return Ok(present);
    }
    let mut args = vec!["merge-base".to_string(), "--independent".into()];
    args.extend(present);
    Ok(git
        .run(&args)?
        .lines()
        .filter(|l| is_oid(l))
        .map(str::to_string)
        .collect())
}

pub(super) fn random_word() -> String {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> (8 * (i % 16))) as u8;
        }
    }
}

/// Create the volume and fill it.
async fn create<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    tips: &[Tip],
    writer: &Writer<'_>,
) -> Result<()> {
    let generation = random_word();
    let volume = volume_name(repo);
    rt.create_volume(&volume, &labels(repo, Some(&generation)))
        .await?;
    rebuild_in_place(rt, git, repo, tips, writer, generation).await
}

/// Fill the cache from scratch: every task's base and `tips` in one bundle, unpacked into a
/// fresh repository that then replaces the old one.
async fn rebuild_in_place<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    tips: &[Tip],
    writer: &Writer<'_>,
    generation: String,
) -> Result<()> {
    forget(git, &generation);
    let all = all_tips(git, tips)?;
    let refs: Vec<String> = all.iter().map(|t| t.refname.clone()).collect();
    let format = git.run(["rev-parse", "--show-object-format"])?;
    let format = if format == "sha256" { "sha256" } else { "sha1" };
    let id = start_writer(rt, repo, writer).await?;
    let res = async {
        let mut child = git.start_bundle(&refs)?;
        let out = run_script(rt, &id, &["fresh", format], child.stdout.take(), writer).await?;
        bundle_ok(child).await?;
        if out.exit_code != 0 {
            bail!(
                "could not fill the object cache ({})",
                exit_detail(out.exit_code, &out.stderr)
            );
        }
        Ok(())
    }
    .await;
    rt.remove_container(&id).await.ok();
    res?;
    let oids: Vec<String> = all.into_iter().map(|t| t.oid).collect();
    HostState {
        generation,
        tips: independent(git, &oids)?,
    }
    .write(git)
}

enum Added {
    Done,
    Damaged(String),
}

/// Send the history of `new` the cache lacks, with what it holds as prerequisites.
async fn add<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    writer: &Writer<'_>,
    new: &[&Tip],
    known: &HostState,
) -> Result<Added> {
    let present = present_commits(git, &known.tips)?;
    let mut revs: Vec<String> = new.iter().map(|t| t.refname.clone()).collect();
    if !present.is_empty() {
        revs.push("--not".into());
        revs.extend(present.iter().cloned());
    }
    let id = start_writer(rt, repo, writer).await?;
    let res = async {
        let mut child = git.start_bundle(&revs)?;
        let out = run_script(rt, &id, &["add"], child.stdout.take(), writer).await?;
        bundle_ok(child).await?;
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    rt.remove_container(&id).await.ok();
    let out = res?;
    if out.exit_code == DAMAGED {
        return Ok(Added::Damaged(crate::error::sanitize(
            String::from_utf8_lossy(&out.stderr).trim(),
        )));
    }
    if out.exit_code != 0 {
        bail!(
            "could not update the object cache ({})",
            exit_detail(out.exit_code, &out.stderr)
        );
    }
    let mut tips = known.tips.clone();
    tips.extend(new.iter().map(|t| t.oid.clone()));
    HostState {
        generation: known.generation.clone(),
        tips: independent(git, &tips)?,
    }
    .write(git)?;
    Ok(Added::Done)
}

async fn bundle_ok(child: tokio::process::Child) -> Result<()> {
    let bundle = child.wait_with_output().await?;
    if !bundle.status.success() {
        bail!(
            "git bundle create failed: {}",
            String::from_utf8_lossy(&bundle.stderr).trim_end()
        );
    }
    Ok(())
}

/// The writer's confinement: root (it owns the cache's files, so tasks, another user, can
/// only read them) but no capabilities, no new privileges, a read-only root with a small
/// /tmp, no network, and the task limits.
fn writer_hardening(limits: &Limits) -> Hardening {
    Hardening {
        user: UserId::ROOT,
        keep_caps: vec![],
        no_new_privileges: true,
        read_only_root: true,
        tmpfs: vec![Tmpfs {
            path: "/tmp".into(),
            size: 64 << 20,
            mode: 0o1777,
        }],
        limits: ResourceLimits {
            pids: 64,
            memory: limits.memory,
            nano_cpus: Some(limits.nano_cpus),
            log: Some(LogRotation {
                file_size: 1 << 20,
                files: 1,
            }),
        },
        init: true,
    }
}

async fn start_writer<R: Runtime>(rt: &R, repo: &RepoId, writer: &Writer<'_>) -> Result<String> {
    let name = writer_name(repo);
    rt.remove_container(&name).await?;
    let spec = SandboxSpec {
        name: name.clone(),
        image: writer.image.to_string(),
        cmd: vec!["sleep".into(), "infinity".into()],
        env: vec![],
        labels: labels(repo, None),
        mounts: vec![VolumeMount::new(volume_name(repo), WRITER_MOUNT)],
        working_dir: "/".into(),
        network: None,
        tty: false,
        hardening: writer_hardening(writer.limits),
        // git-agent's own helper: the engine's default runtime.
        oci_runtime: None,
        hosts: vec![],
        address: None,
    };
    let id = rt.create_container(&spec).await?;
    if let Err(e) = rt.start(&id).await {
        rt.remove_container(&id).await.ok();
        return Err(e);
    }
    Ok(id)
}

async fn run_script<R: Runtime>(
    rt: &R,
    id: &str,
    args: &[&str],
    stdin: Option<tokio::process::ChildStdout>,
    writer: &Writer<'_>,
) -> Result<crate::runtime::ExecOutcome> {
    let mut cmd = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        WRITER_SCRIPT.into(),
        "git-agent-cache".into(),
        WRITER_MOUNT.into(),
    ];
    cmd.extend(args.iter().map(|s| s.to_string()));
    let mut sink = tokio::io::sink();
    match stdin {
        Some(s) => {
            let meter = Meter::new(
                writer.events,
                None,
                "sending history to the object cache",
                0,
            );
            let mut s = Metered::new(s, meter);
            let out = rt.exec(id, &cmd, Some(&mut s), &mut sink, 1 << 20).await;
            s.finish();
            out
        }
        None => rt.exec(id, &cmd, None::<&[u8]>, &mut sink, 1 << 20).await,
    }
}

/// Drop from the cache every tip but `keep` and repack it (objects no kept tip reaches go).
/// Runs the writer's own check first; a damaged cache is reported as such.
pub async fn collect<R: Runtime>(
    rt: &R,
    git: &Git,
    repo: &RepoId,
    keep: &[String],
    writer: &Writer<'_>,
) -> Result<CollectOutcome> {
    let _lock = TaskLock::acquire(git, LOCK, "collecting the object cache", |_| {}).await?;
    let volume = volume_name(repo);
    // What the host remembers of another engine's cache stays: only this one's is touched.
    let Some(labels) = rt.labels_of(ObjectKind::Volume, &volume).await? else {
        return Ok(CollectOutcome::Missing);
    };
    let generation = generation_of(&labels).map(str::to_string);
    let keep = present_commits(git, keep)?;
    let id = start_writer(rt, repo, writer).await?;
    let mut args = vec!["gc"];
    args.extend(keep.iter().map(String::as_str));
    let res = run_script(rt, &id, &args, None, writer).await;
    rt.remove_container(&id).await.ok();
    let out = res?;
    if out.exit_code == DAMAGED {
        if let Some(g) = &generation {
            forget(git, g);
        }
        return Ok(CollectOutcome::Damaged(crate::error::sanitize(
            String::from_utf8_lossy(&out.stderr).trim(),
        )));
    }
    if out.exit_code != 0 {
        bail!(
            "could not collect the object cache ({})",
            exit_detail(out.exit_code, &out.stderr)
        );
    }
    if let Some(mut state) = generation.and_then(|g| HostState::read(git, &g)) {
        state.tips = independent(git, &keep)?;
        state.write(git)?;
    }
    Ok(CollectOutcome::Collected)
}

/// What [`collect`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum CollectOutcome {
    Collected,
    /// There is no cache.
    Missing,
    /// The cache failed its check; the next spawn rebuilds it.
    Damaged(String),
}

/// Does any task's workspace borrow from the cache (its record names it)?
pub fn in_use(store: &crate::task::store::TaskStore) -> Result<bool> {
    Ok(store
        .all()?
        .iter()
        .any(|l| l.record.sandbox.cache.is_some()))
}

/// Remove the cache when no task's workspace borrows from it any more (the last one was
/// purged, or the only spawn failed). Returns whether it was removed.
pub async fn release_if_unused<R: Runtime>(
    rt: &R,
    store: &crate::task::store::TaskStore,
    repo: &RepoId,
) -> Result<bool> {
    let git = store.git();
    let _lock = TaskLock::acquire(git, LOCK, "removing the object cache", |_| {}).await?;
    if in_use(store)? {
        return Ok(false);
    }
    remove_locked(rt, git, repo).await
}

/// Remove the repository's cache (its writer first). Fails while a container mounts it.
pub async fn remove<R: Runtime>(rt: &R, git: &Git, repo: &RepoId) -> Result<bool> {
    let _lock = TaskLock::acquire(git, LOCK, "removing the object cache", |_| {}).await?;
    remove_locked(rt, git, repo).await
}

async fn remove_locked<R: Runtime>(rt: &R, git: &Git, repo: &RepoId) -> Result<bool> {
    let volume = volume_name(repo);
    rt.remove_container(&writer_name(repo)).await?;
    let found = rt.labels_of(ObjectKind::Volume, &volume).await?;
    if let Some(g) = found.as_ref().and_then(generation_of) {
        forget(git, g);
    }
    match found {
        Some(l) if is_cache_object(&l) && l.get(LABEL_REPO) == Some(&repo.id) => {
            rt.remove_volume(&volume).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The writer's script: `$1` the cache's mount, `$2` the mode.
///
/// - `fresh FORMAT`: a bundle on stdin becomes a new repository that replaces the old one.
/// - `add`: a bundle on stdin is verified (its prerequisites must be in the cache) and
///   unbundled into the cache.
/// - `gc KEEP..`: drop every tip but KEEP, repack, prune.
///
/// Each tip is kept as `refs/tips/<oid>`. A cache that fails its check (a pack whose trailer
/// is not the checksum its index records, i.e. truncated or overwritten; a missing
/// prerequisite) exits 4. Git here reads no config but the cache's own, which only this
/// script writes.
const WRITER_SCRIPT: &str = r#"set -eu
C="$1" mode="$2"; shift 2
R="$C/repo.git"
export HOME=/tmp GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
damaged() { echo "$*" >&2; exit 4; }
hex() { od -An -tx1 | tr -d ' \n'; }
check() {
  [ -d "$1/objects" ] || damaged "it holds no repository"
  n=20
  [ "$(git --git-dir="$1" rev-parse --show-object-format 2>/dev/null)" = sha256 ] && n=32
  for idx in "$1"/objects/pack/*.idx; do
    [ -e "$idx" ] || continue
    pack="${idx%.idx}.pack"
    [ -f "$pack" ] || damaged "pack $(basename "$pack") is missing"
    want="$(tail -c $((2 * n)) "$idx" | head -c "$n" | hex)"
    have="$(tail -c "$n" "$pack" | hex)"
    [ "$want" = "$have" ] || damaged "pack $(basename "$pack") does not match its index"
  done
}
tips() {
  git --git-dir="$1" bundle unbundle "$2" | while read -r oid ref; do
    case "$oid" in *[!0-9a-f]* | "") continue ;; esac
    git --git-dir="$1" update-ref "refs/tips/$oid" "$oid"
  done
}
case "$mode" in
fresh)
  rm -rf "$C/new.git" "$C"/old.*.git "$C/in.bundle"
  git init -q --bare --object-format="$1" "$C/new.git"
  git --git-dir="$C/new.git" config gc.auto 0
  cat > "$C/in.bundle"
  tips "$C/new.git" "$C/in.bundle"
  rm -f "$C/in.bundle"
  check "$C/new.git"
  if [ -d "$R" ]; then mv "$R" "$C/old.$$.git"; fi
  mv "$C/new.git" "$R"
  rm -rf "$C/old.$$.git"
  ;;
add)
  check "$R"
  cat > "$C/in.bundle"
  git --git-dir="$R" bundle verify -q "$C/in.bundle" >/dev/null 2>&1 || { rm -f "$C/in.bundle"; damaged "it lacks history it should hold"; }
  tips "$R" "$C/in.bundle"
  rm -f "$C/in.bundle"
  ;;
gc)
  check "$R"
  git --git-dir="$R" for-each-ref --format='%(refname)' refs/tips/ | while read -r ref; do
    keep=no
    for k in "$@"; do [ "$ref" = "refs/tips/$k" ] && keep=yes; done
    [ "$keep" = yes ] || git --git-dir="$R" update-ref -d "$ref"
  done
  for k in "$@"; do git --git-dir="$R" update-ref "refs/tips/$k" "$k" 2>/dev/null || :; done
  git --git-dir="$R" repack -a -d -q
  git --git-dir="$R" prune --expire=now
  check "$R"
  ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_state_round_trips_and_refuses_junk() {
        let s = HostState {
            generation: "abc123".into(),
            tips: vec!["a".repeat(40), "b".repeat(64)],
        };
        assert_eq!(HostState::parse(&s.render()), Some(s));
        assert_eq!(HostState::parse(""), None);
        assert_eq!(HostState::parse("generation \n"), None);
        assert_eq!(HostState::parse("generation a;b\n"), None);
        assert_eq!(HostState::parse("generation g\ntip xyz\n"), None);
        assert_eq!(
            HostState::parse(&format!("generation g\ntip {}\n", "A".repeat(40))),
            None
        );
        assert_eq!(HostState::parse("generation g\nother\n"), None);
        // A tip before any generation is junk too.
        assert_eq!(
            HostState::parse_all(&format!("tip {}\n", "a".repeat(40))),
            None
        );
    }

    /// One block per engine's cache: filling one engine's cache keeps what the host sent to
    /// another's (a switch back finds it), and forgetting one forgets only that one.
    #[test]
    fn each_engines_cache_is_remembered_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success());
        let git = Git::discover(dir.path()).unwrap();
        let state = |g: &str, tip: char| HostState {
            generation: g.into(),
            tips: vec![tip.to_string().repeat(40)],
        };
        state("local", 'a').write(&git).unwrap();
        state("remote", 'b').write(&git).unwrap();
        assert_eq!(HostState::read(&git, "local"), Some(state("local", 'a')));
        assert_eq!(HostState::read(&git, "remote"), Some(state("remote", 'b')));
        state("local", 'c').write(&git).unwrap();
        assert_eq!(HostState::read(&git, "local"), Some(state("local", 'c')));
        assert_eq!(HostState::read_all(&git).len(), 2);
        forget(&git, "local");
        assert_eq!(HostState::read(&git, "local"), None);
        assert_eq!(HostState::read(&git, "remote"), Some(state("remote", 'b')));
        // The file of one block, as hosts wrote it before, still reads.
        std::fs::write(state_path(&git), state("old", 'd').render()).unwrap();
        assert_eq!(HostState::read(&git, "old"), Some(state("old", 'd')));
        // Only the most recent engines are kept.
        for i in 0..STATES_KEPT + 3 {
            state(&format!("g{i}"), 'e').write(&git).unwrap();
        }
        assert_eq!(HostState::read_all(&git).len(), STATES_KEPT);
        assert!(HostState::read(&git, &format!("g{}", STATES_KEPT + 2)).is_some());
    }

    #[test]
    fn cache_objects_are_told_apart_by_label() {
        let repo = RepoId {
            id: "0123abcd".into(),
            path: "/r/.git".into(),
        };
        assert!(is_cache_object(&labels(&repo, Some("g"))));
        assert!(!is_cache_object(&repo.labels("t")));
        assert_eq!(volume_name(&repo), "git-agent-cache-0123abcd");
        let m = task_mount(&volume_name(&repo));
        assert!(m.read_only);
        assert_eq!(m.target, MOUNT);
    }
}
