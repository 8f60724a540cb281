//! Driving a task's sandbox: creating it and delivering the repository (spawn), bringing its
//! work home (sync), and reconciling the recorded state with what the engine reports.
//!
//! History crosses the boundary only as bundles over exec stdin/stdout; the host never runs
//! git anywhere a sandbox can write. Runtime objects get deterministic names derived from the
//! repository and task, plus labels, so they can always be found and cleaned up again.

pub mod cache;
pub mod checkup;
pub mod gateway;
pub mod health;
pub mod network;
pub mod oci;
pub mod preview;
pub mod reseed;
pub mod services;
pub mod spare;
pub mod spawn;
pub mod stuck;
pub mod sync;

use std::collections::HashMap;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::git::Git;
use crate::runtime::{
    ContainerState, Hardening, LABEL_REPO, LABEL_REPO_PATH, LABEL_TASK, LogRotation, ObjectKind,
    ResourceLimits, Runtime, Tmpfs, UserId,
};
use crate::task::store::{Loaded, TaskStore};
use crate::task::{Status, now};

/// The path of the sandbox helper inside the image.
pub const HELPER: &str = "/usr/local/bin/git-agent-sandbox";

/// Where a task's workspace volume is mounted, and where its command starts.
pub const WORKSPACE: &str = "/workspace";
/// Where the sandbox helper keeps its state when the root file system is read-only.
pub const STATE_DIR: &str = "/opt/git-agent";

/// The confinement of a task's container (and of the readers and drafts that work on its
/// workspace): the task user, no capabilities, no new privileges, the task's limits, an init
/// reaping what the agent leaves behind, and rotated logs, so that an agent that prints
/// without end fills at most `LOG_FILES` x `LOG_FILE_SIZE` of the engine's disk (the
/// transcript keeps its own head and tail, see [`CappedBuf`]). A read-only root keeps /tmp
/// writable.
pub fn task_hardening(limits: &spawn::Limits, read_only: bool) -> Hardening {
    Hardening {
        user: UserId::same(crate::image::TASK_UID),
        keep_caps: vec![],
        no_new_privileges: true,
        read_only_root: read_only,
        tmpfs: if read_only {
            vec![Tmpfs {
                path: "/tmp".into(),
                size: 1 << 30,
                mode: 0o1777,
            }]
        } else {
            vec![]
        },
        limits: ResourceLimits {
            pids: limits.pids,
            memory: limits.memory,
            nano_cpus: Some(limits.nano_cpus),
            log: Some(LogRotation {
                file_size: LOG_FILE_SIZE,
                files: LOG_FILES,
            }),
        },
        init: true,
    }
}

/// Size of one rotated log file of a task's container.
pub const LOG_FILE_SIZE: u64 = 20 << 20;
/// Rotated log files kept per container.
pub const LOG_FILES: u32 = 5;

/// The confinement of a task's disk warden: root, so the task user can neither signal it nor
/// hide files from it, but with only CAP_KILL and CAP_DAC_READ_SEARCH, a read-only root and
/// small limits.
pub fn warden_hardening() -> Hardening {
    Hardening {
        user: UserId::ROOT,
        keep_caps: vec!["KILL".into(), "DAC_READ_SEARCH".into()],
        no_new_privileges: true,
        read_only_root: true,
        tmpfs: vec![],
        limits: ResourceLimits {
            pids: 32,
            memory: 64 << 20,
            nano_cpus: None,
            log: Some(LogRotation {
                file_size: LOG_FILE_SIZE,
                files: LOG_FILES,
            }),
        },
        init: false,
    }
}

/// The disk warden's loop (`$1` the limit in KiB, `$2` the interval in seconds). Over the
/// limit it says so (the line the host looks for, see [`DISK_MARK`]) and kills every
/// process it can signal: all of the task's but the namespace's init, which then exits with
/// its child, ending the container and this loop with it.
const WARDEN_SCRIPT: &str = r#"limit="$1" every="$2"
while sleep "$every"; do
  used="$(du -skx /watch/* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')"
  if [ "$used" -gt "$limit" ]; then
    echo "git-agent-sandbox: disk limit: ${used} KiB used, over the limit of ${limit} KiB; stopping the task"
    kill -KILL -1
    exit 0
  fi
done"#;

/// The disk warden's command: measure the volumes mounted under `/watch` every
/// `interval_secs` and stop the task once they hold more than `limit_kib`.
pub fn warden_command(limit_kib: u64, interval_secs: u64) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        WARDEN_SCRIPT.into(),
        "git-agent-warden".into(),
        limit_kib.to_string(),
        interval_secs.to_string(),
    ]
}

/// Identifies a repository on the engine: a short hash of its git dir's path.
#[derive(Debug, Clone)]
pub struct RepoId {
    pub id: String,
    pub path: String,
}

impl RepoId {
    pub fn of(git: &Git) -> RepoId {
        let path = git.common_dir.display().to_string();
        let digest = Sha256::digest(path.as_bytes());
        let id = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        RepoId { id, path }
    }

    /// Engine object names for a task. Each is `git-agent-<repo>.<kind>.<task>`: the repo id
    /// has a fixed length and the kind (a fixed word without `.`) comes before the task name,
    /// so no task's name can produce another task's object (task `a-gw` cannot own task
    /// `a`'s gateway). Names from before this scheme (`git-agent-<repo>-<task>[-kind]`) have a
    /// `-` where these have a `.`, so old and new names never meet either.
    pub fn object_names(&self, task: &str) -> ObjectNames {
        let name = |kind: &str| format!("git-agent-{}.{kind}.{task}", self.id);
        ObjectNames {
            container: name("task"),
            volume: name("ws"),
            home_volume: name("home"),
            state_volume: name("state"),
            network: name("net"),
            gateway: name("gw"),
            reader: name("read"),
            shell: name("shell"),
            draft: name("draft"),
            draft_volume: name("draftws"),
            warden: name("warden"),
            preview: name("preview"),
            door: name("door"),
            preview_front: name("pvfront"),
            preview_net: name("pvnet"),
        }
    }

    pub fn labels(&self, task: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL_TASK.to_string(), task.to_string()),
            (LABEL_REPO.to_string(), self.id.clone()),
            (LABEL_REPO_PATH.to_string(), self.path.clone()),
        ])
    }
}

#[derive(Debug, Clone)]
pub struct ObjectNames {
    pub container: String,
    pub volume: String,
    pub home_volume: String,
    pub state_volume: String,
    pub network: String,
    pub gateway: String,
    /// A short-lived container reading a finished task's workspace (sync, shell).
    pub reader: String,
    /// A `shell` into a finished task's workspace (its own name: a sync's reader comes and
    /// goes under the task's lock, a shell stays open for as long as the user works).
    pub shell: String,
    /// A short-lived container drafting a commit message, and its empty workspace.
    pub draft: String,
    pub draft_volume: String,
    /// The task's disk warden (see [`crate::runtime::WardenSpec`]).
    pub warden: String,
    /// The task's preview (see [`preview`]), its door, the door's own network with the
    /// published port, and the internal network a preview of a task whose run has ended
    /// gets (one with no route out at all).
    pub preview: String,
    pub door: String,
    pub preview_front: String,
    pub preview_net: String,
}

impl ObjectNames {
    /// Every name, with the kind of object it names.
    pub fn all(&self) -> [(ObjectKind, &str); 15] {
        [
            (ObjectKind::Container, &self.container),
            (ObjectKind::Container, &self.door),
            (ObjectKind::Container, &self.preview),
            (ObjectKind::Container, &self.warden),
            (ObjectKind::Container, &self.gateway),
            (ObjectKind::Container, &self.reader),
            (ObjectKind::Container, &self.shell),
            (ObjectKind::Container, &self.draft),
            (ObjectKind::Volume, &self.volume),
            (ObjectKind::Volume, &self.home_volume),
            (ObjectKind::Volume, &self.state_volume),
            (ObjectKind::Volume, &self.draft_volume),
            (ObjectKind::Network, &self.network),
            (ObjectKind::Network, &self.preview_front),
            (ObjectKind::Network, &self.preview_net),
        ]
    }
}

/// Most bytes of a task's output kept as its transcript.
pub const TRANSCRIPT_MAX: usize = 16 << 20;

/// An in-memory sink that keeps at most `cap` bytes: the first half and the last half of
/// what was written, with a marker line between them when something in the middle was
/// dropped. The end of a run (the agent's final answer, its statistics, the error that
/// stopped it) matters as much as its start.
pub struct CappedBuf {
    head: Vec<u8>,
    /// The most recent bytes, as a ring of `cap - cap / 2` bytes starting at `tail_start`.
    tail: Vec<u8>,
    tail_start: usize,
    dropped: u64,
    cap: usize,
}

impl CappedBuf {
    pub fn new(cap: usize) -> CappedBuf {
        CappedBuf {
            head: Vec::new(),
            tail: Vec::new(),
            tail_start: 0,
            dropped: 0,
            cap,
        }
    }

    /// Were bytes in the middle dropped?
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    fn push(&mut self, mut buf: &[u8]) {
        let head_cap = self.cap / 2;
        let tail_cap = self.cap - head_cap;
        let room = head_cap.saturating_sub(self.head.len());
        let n = buf.len().min(room);
        self.head.extend_from_slice(&buf[..n]);
        buf = &buf[n..];
        if tail_cap == 0 {
            self.dropped += buf.len() as u64;
            return;
        }
        if buf.len() >= tail_cap {
            self.dropped += (self.tail.len() + buf.len() - tail_cap) as u64;
            self.tail = buf[buf.len() - tail_cap..].to_vec();
            self.tail_start = 0;
            return;
        }
        for &b in buf {
            if self.tail.len() < tail_cap {
                self.tail.push(b);
            } else {
                self.tail[self.tail_start] = b;
                self.tail_start = (self.tail_start + 1) % tail_cap;
                self.dropped += 1;
            }
        }
    }

    /// What was kept: the head, a marker line if anything was dropped, the tail.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.dropped > 0 {
            if !out.ends_with(b"\n") && !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(
                format!(
                    "[git-agent: {} bytes of output left out here; the transcript keeps the first and the last {} bytes]\n",
                    self.dropped,
                    self.cap / 2
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(&self.tail[self.tail_start..]);
        out.extend_from_slice(&self.tail[..self.tail_start]);
        out
    }
}

impl tokio::io::AsyncWrite for CappedBuf {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The line the sandbox helper prints when it stops a task over its disk limit.
const DISK_MARK: &str = "git-agent-sandbox: disk limit: ";

/// Why a run ended, from its exit code (`timeout(1)` exits 124, or 137 once it had to kill)
/// and the end of its output (the helper's disk-limit line, see `disk_watch` in the helper).
fn end_reason(code: i64, timeout: Option<u64>, transcript: &[u8], disk: u64) -> Option<String> {
    let tail = &transcript[transcript.len().saturating_sub(64 << 10)..];
    let killed = matches!(code, 137 | 143);
    if killed && disk > 0 && String::from_utf8_lossy(tail).contains(DISK_MARK) {
        return Some(format!(
            "workspace over its {} disk limit",
            human_size(disk)
        ));
    }
    match (code, timeout) {
        (124, Some(t)) | (137, Some(t)) => Some(format!("timed out after {t}s")),
        _ => None,
    }
}

/// `10g`, `512m`, `300k` or bytes, as git writes sizes.
fn human_size(n: u64) -> String {
    for (unit, shift) in [("g", 30), ("m", 20), ("k", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Bring a running task's record up to date with its container: a finished command is
/// recorded as exited with its exit code, its output kept as the task's transcript and the
/// run's statistics read from it; a vanished container is recorded as failed; a task whose
/// spawn died is recorded as failed (see [`stuck`]).
pub async fn refresh<R: Runtime>(rt: &R, store: &TaskStore, loaded: Loaded) -> Result<Loaded> {
    let loaded = stuck::settle(store, loaded)?;
    let Some(ending) = ending(rt, store, &loaded).await? else {
        return Ok(loaded);
    };
    let names = RepoId::of(store.git()).object_names(&loaded.record.name);
    rt.remove_container(&names.warden).await.ok();
    let kept = (!ending.transcript.is_empty()).then_some(ending.transcript.as_slice());
    // The change that records the end also claims its event hook, so one command fires it.
    let mut event = None;
    let loaded = store.update_with(&loaded.record.name, ending.status.as_str(), kept, |r, _| {
        let live = matches!(r.status, Status::Running | Status::Creating);
        ending.apply(r);
        event = live.then(|| crate::event_hooks::claim(r)).flatten();
        Ok(vec![])
    })?;
    if let Some(event) = event
        && let Ok(config) = store.git().agent_config()
    {
        crate::event_hooks::fire(store.git(), &config, &loaded.record, event);
    }
    gateway::retire(rt, store, loaded, &names).await
}

/// How a live task's run ended, as the engine shows it, before anything is recorded: what
/// [`refresh`] records, and what read-only commands (`list`, `status`, `review --no-sync`)
/// show without recording it.
#[derive(Debug, Clone)]
pub struct Ending {
    pub status: Status,
    pub code: Option<i64>,
    pub reason: Option<String>,
    pub stats: Option<crate::agent::claude::RunStats>,
    /// The run's output, as kept with the task once recorded.
    pub transcript: Vec<u8>,
}

impl Ending {
    /// Apply to a record that is still live (a record that moved on meanwhile is left).
    pub fn apply(&self, r: &mut crate::task::TaskRecord) {
        if matches!(r.status, Status::Running | Status::Creating) {
            r.status = self.status;
            r.exit_code = self.code;
            r.reason = self.reason.clone();
            r.finished = Some(now());
            if self.stats.is_some() {
                r.stats = self.stats.clone();
            }
        }
    }
}

/// Has a task recorded as live ended (its command exited, its container vanished)? Reads
/// the engine (state and logs) only; changes nothing.
pub async fn ending<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: &Loaded,
) -> Result<Option<Ending>> {
    if !matches!(loaded.record.status, Status::Running | Status::Creating) {
        return Ok(None);
    }
    let Some(container) = loaded.record.sandbox.container.clone() else {
        return Ok(None);
    };
    let state = rt.state(&container).await?;
    let (status, code) = match state {
        ContainerState::Exited(code) => (Status::Exited, Some(code)),
        ContainerState::Missing if loaded.record.status == Status::Running => {
            (Status::Failed, None)
        }
        _ => return Ok(None),
    };
    let mut transcript = CappedBuf::new(TRANSCRIPT_MAX);
    if code.is_some() {
        rt.logs(&container, false, None, &mut transcript).await.ok();
    }
    let transcript = transcript.bytes();
    let names = RepoId::of(store.git()).object_names(&loaded.record.name);
    // The disk warden says why it stopped the task in its own log (it cannot write to the
    // task's); its line counts like the helper's.
    let mut warden = CappedBuf::new(64 << 10);
    rt.logs(&names.warden, false, None, &mut warden).await.ok();
    let reason = match code {
        Some(code) => {
            let disk = spawn::Limits::from_config(&store.git().agent_config()?)
                .map(|l| l.disk)
                .unwrap_or(spawn::DISK_LIMIT);
            let seen = [transcript.as_slice(), &warden.bytes()].concat();
            end_reason(code, loaded.record.timeout, &seen, disk)
        }
        None => Some("the container disappeared".to_string()),
    };
    // Read as its agent's output format says (a definition that no longer loads: whichever
    // known format the transcript is in).
    let text = String::from_utf8_lossy(&transcript);
    let stats = match crate::agent::load(
        &crate::data::Search::new(&store.git().dir),
        &loaded.record.agent,
    ) {
        Ok(a) => a.def.output.stats(&text),
        Err(_) => crate::agent::run_stats(&text),
    }
    .map(|s| crate::agent::prices::Prices::load().priced(s));
    Ok(Some(Ending {
        status,
        code,
        reason,
        stats,
        transcript,
    }))
}

/// Remove a task's runtime objects: those its names say and those its record names (a
/// task from before the current naming scheme), but each only when its labels say it
/// belongs to this task of this repository. A name is never proof of ownership: an object
/// of that name may belong to another task or to something else entirely. Missing objects
/// are fine.
pub async fn remove_objects<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    recorded: Option<&crate::task::Sandbox>,
    volume: bool,
    network: bool,
) -> Result<()> {
    let names = repo.object_names(task);
    // Its services first (found by their labels): they hold the task's network.
    services::remove(rt, repo, task).await?;
    let mut wanted: Vec<(ObjectKind, String)> = names
        .all()
        .iter()
        .map(|(k, n)| (*k, n.to_string()))
        .collect();
    if let Some(s) = recorded {
        for c in [&s.container, &s.gateway].into_iter().flatten() {
            wanted.push((ObjectKind::Container, c.clone()));
        }
        for v in [&s.volume, &s.home_volume, &s.state_volume]
            .into_iter()
            .flatten()
        {
            wanted.push((ObjectKind::Volume, v.clone()));
        }
        if let Some(n) = &s.network {
            wanted.push((ObjectKind::Network, n.clone()));
        }
    }
    // A gateway claimed from a spare came with the spare's network, which a spawn cut short
    // before it recorded it would not name.
    for g in [
        Some(&names.gateway),
        recorded.and_then(|s| s.gateway.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(n) = spare::network_of_gateway(rt, repo, g).await? {
            wanted.push((ObjectKind::Network, n));
        }
    }
    // Containers first: volumes and networks in use cannot go.
    wanted.sort_by_key(|(k, _)| *k as u8);
    wanted.dedup();
    for (kind, name) in wanted {
        let keep = match kind {
            ObjectKind::Container => false,
            ObjectKind::Volume => !volume,
            ObjectKind::Network => !network,
        };
        if keep || !owned_by(rt, repo, task, kind, &name).await? {
            continue;
        }
        match kind {
            ObjectKind::Container => rt.remove_container(&name).await?,
            ObjectKind::Volume => rt.remove_volume(&name).await?,
            ObjectKind::Network => rt.remove_network(&name).await?,
        }
    }
    Ok(())
}

/// Does the object exist and carry this repository's and this task's labels?
pub async fn owned_by<R: Runtime>(
    rt: &R,
    repo: &RepoId,
    task: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<bool> {
    let Some(l) = rt.labels_of(kind, name).await? else {
        return Ok(false);
    };
    if spare::is_spare_object(&l) {
        return spare::owned(rt, repo, task, kind, name, &l).await;
    }
    Ok(l.get(LABEL_REPO) == Some(&repo.id) && l.get(LABEL_TASK).map(String::as_str) == Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId {
            id: "0123abcd".into(),
            path: "/r/.git".into(),
        }
    }

    /// Every name of every task is different from every name of every other task, over
    /// names built to collide (kind words, separators, prefixes of each other).
    #[test]
    fn object_names_are_injective() {
        let words = [
            "a", "gw", "net", "ws", "home", "state", "read", "draft", "draftws", "task", "x.gw",
            "preview", "door", "pvfront", "pvnet", "a-gw", "a.gw", "a_gw", "gw-a", "gw.a",
            "task.a", "a-net", "a-ws", "a-read", "0",
        ];
        let mut tasks: Vec<String> = Vec::new();
        for w in words {
            tasks.push(w.to_string());
            for v in words {
                for sep in ["-", ".", "_"] {
                    tasks.push(format!("{w}{sep}{v}"));
                }
            }
        }
        tasks.retain(|t| crate::task::TaskName::parse(t).is_ok());
        tasks.sort();
        tasks.dedup();
        let mut seen: HashMap<String, String> = HashMap::new();
        for t in &tasks {
            let names = repo().object_names(t);
            for (_, n) in names.all() {
                if let Some(other) = seen.insert(n.to_string(), t.clone()) {
                    panic!("{n} belongs to both {other} and {t}");
                }
                // Never a name of the scheme before this one (`git-agent-<repo>-...`).
                assert!(n.starts_with("git-agent-0123abcd."), "{n}");
            }
        }
        assert!(tasks.len() > 1000, "{}", tasks.len());
    }

    fn write_all(buf: &mut CappedBuf, data: &[u8], chunk: usize) {
        for c in data.chunks(chunk) {
            buf.push(c);
        }
    }

    #[test]
    fn transcript_keeps_head_and_tail() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for chunk in [1, 7, 100, 4096, data.len()] {
            let mut buf = CappedBuf::new(1000);
            write_all(&mut buf, &data, chunk);
            let out = String::from_utf8(buf.bytes()).unwrap();
            assert!(buf.truncated());
            assert!(out.starts_with("line 0\nline 1\n"), "{chunk}");
            assert!(out.ends_with("line 9998\nline 9999\n"), "{chunk}: {out}");
            assert!(out.contains("bytes of output left out here"), "{out}");
            let dropped = data.len() - 1000;
            assert!(
                out.contains(&format!("[git-agent: {dropped} bytes")),
                "{out}"
            );
        }
        let mut small = CappedBuf::new(1000);
        write_all(&mut small, b"short\n", 2);
        assert_eq!(small.bytes(), b"short\n");
        assert!(!small.truncated());
        // Exactly full: nothing dropped, nothing marked.
        let mut full = CappedBuf::new(10);
        write_all(&mut full, b"0123456789", 3);
        assert_eq!(full.bytes(), b"0123456789");
    }

    #[test]
    fn disk_limit_reason_needs_the_helpers_line_and_a_kill() {
        let t = b"work\ngit-agent-sandbox: disk limit: 2000 KiB used, over the limit of 1024 KiB; stopping the task\n";
        assert_eq!(
            end_reason(137, None, t, 1 << 20).as_deref(),
            Some("workspace over its 1m disk limit")
        );
        assert_eq!(
            end_reason(143, None, t, 10 << 30).as_deref(),
            Some("workspace over its 10g disk limit")
        );
        assert_eq!(end_reason(0, None, t, 1 << 20), None);
        assert_eq!(end_reason(137, None, b"work\n", 1 << 20), None);
        assert_eq!(
            end_reason(124, Some(5), b"", 1 << 20).as_deref(),
            Some("timed out after 5s")
        );
    }
}
