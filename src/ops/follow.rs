//! Following a running task: its work comes home by itself, so `list`, `review` and `status`
//! show fresh changes without anyone running `sync`.
//!
//! A follower is a detached git-agent process (`git agent sync --follow <task>` starts one;
//! `spawn` of a headless task and `restart` too), one per task at most (it holds
//! [`Follower`] while alive; a second one exits at once), with its output in
//! `<common-dir>/git-agent/follow/<task>.log`. Every `agent.followInterval` it asks the
//! sandbox helper for a `fingerprint` of the work (one exec, stat calls only, a short line
//! read with a size cap and parsed strictly) and syncs only when that changed, through the
//! same code as `git agent sync` ([`crate::sandbox::sync`]), so it never runs git where the
//! sandbox can write. It takes the task's lock only for the sync, and only when it is free
//! (a user's command holding it wins; the follower tries again next round).
//!
//! While the task runs it also reports when the agent waits for input: when the user has
//! set `agent.onWait` (or `agent.notify`), every round it asks the sandbox helper for the
//! waiting marker (`git-agent-sandbox waiting`: one short line an agent opens with
//! `git-agent-sandbox wait-notify`, Claude Code through its Notification hook), and fires
//! the user's hook once per waiting episode ([`crate::event_hooks::claim_wait`]). The marker
//! is hostile data: read with a size cap, parsed strictly, its message cut to one short line
//! of printable characters before it reaches the hook's environment.
//!
//! It exits when the task's run has ended (after a last sync), when the task was removed or
//! purged, when following is switched off (`agent.follow=false`, git config only), and when
//! the repository is gone. This module must not print: what a follower does goes to its
//! [`Events`] sink, which the command line renders into the log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Ctx, Event, Events};
use crate::error::hinted;
use crate::git::{Config, Git};
use crate::runtime::{ContainerState, Runtime};
use crate::sandbox::HELPER;
use crate::task::lock::{Follower, TaskLock};

/// What went wrong in following a task.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// `agent.follow` is false.
    #[error("following tasks is switched off (agent.follow=false)")]
    Off,
    /// A failure below the operation (the refs, the engine, starting the process).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for FollowError {
    fn hint(&self) -> Option<String> {
        match self {
            FollowError::Off => Some(
                "switch it on with `git config agent.follow true`, or bring the work home with `git agent sync <task>`".into(),
            ),
            FollowError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            FollowError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            FollowError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Default time between two looks at a followed task (`agent.followInterval`).
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(3);
/// The shortest interval accepted: every round execs in the container.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// The most a fingerprint may print: one short line.
const FINGERPRINT_LIMIT: u64 = 256;
/// The most the waiting marker may print: one short line.
const WAITING_LIMIT: u64 = 512;
/// The most characters of the agent's message handed to the user's hook.
const WAIT_MESSAGE_CHARS: usize = 200;
/// How many rounds in a row a follower may fail to read its task before it gives up.
const UNREADABLE_ROUNDS: u32 = 10;
/// How long a follower whose task's run ended waits for the task's lock for its last sync.
const LAST_SYNC_WAIT: Duration = Duration::from_secs(120);

/// Following settings, from git config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `agent.follow` (default true).
    pub enabled: bool,
    /// `agent.followInterval` (default [`FOLLOW_INTERVAL`]).
    pub interval: Duration,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings> {
        Ok(Settings {
            enabled: config.bool("agent.follow", true)?,
            interval: match config.get("agent.followInterval") {
                None => FOLLOW_INTERVAL,
                Some(v) => parse_interval(v).ok_or_else(|| {
                    hinted(
                        format!("bad value '{v}' for agent.followInterval"),
                        "set a duration of at least 200ms such as 3s, 500ms or 1m: git config agent.followInterval 3s",
                    )
                })?,
            },
        })
    }
}

/// A duration in the one syntax ([`crate::duration`]); at least [`MIN_INTERVAL`].
fn parse_interval(v: &str) -> Option<Duration> {
    crate::duration::parse(v)
        .ok()
        .filter(|d| *d >= MIN_INTERVAL)
}

/// Where a task's follower writes what it does.
pub fn log_path(git: &Git, task: &str) -> PathBuf {
    crate::task::lock::state_dir(git)
        .join("follow")
        .join(format!("{task}.log"))
}

/// Is a live follower following `task`?
pub fn active(git: &Git, task: &str) -> bool {
    Follower::held(git, task).unwrap_or(false)
}

/// What [`start`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// A follower was started; it writes to this log.
    Started(PathBuf),
    /// One is following the task already.
    AlreadyFollowed(PathBuf),
}

/// Start a detached follower of `task` (a git-agent process of its own session, its output
/// in [`log_path`]) and return at once. A follower that finds another one exits by itself.
pub fn start(ctx: &Ctx, task: &str) -> Result<Started, FollowError> {
    if !Settings::from_config(&ctx.config)?.enabled {
        return Err(FollowError::Off);
    }
    let log = log_path(&ctx.git, task);
    if active(&ctx.git, task) {
        return Ok(Started::AlreadyFollowed(log));
    }
    spawn_detached(&ctx.git, task, &log)?;
    Ok(Started::Started(log))
}

/// Start a follower for tasks that were just started or restarted, when following is on;
/// a follower that cannot be started is a warning, never a failure of the command.
pub fn start_quietly(ctx: &Ctx, task: &str, events: &dyn Events) {
    match start(ctx, task) {
        Ok(_) | Err(FollowError::Off) => {}
        Err(e) => events.emit(Event::warning(
            Some(task),
            format!(
                "its work will not come home by itself ({e:#}); bring it home with `git agent sync {task}`"
            ),
        )),
    }
}

fn spawn_detached(git: &Git, task: &str, log: &std::path::Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find git-agent itself")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["sync", "--follow-here", task])
        .current_dir(&git.dir)
        .env_remove(crate::crash::ENV);
    crate::detach::spawn(cmd, log).context("cannot start the follower")
}

/// How a follower ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Another follower follows the task; this one did nothing.
    AlreadyFollowed,
    /// The task's run ended (its work was synced a last time, when possible).
    RunEnded,
    /// The task (or its container) was removed or purged.
    Removed,
    /// `agent.follow` was switched off.
    Off,
    /// The repository is gone.
    RepositoryGone,
}

/// Follow `task` in this process until its run ends (see the module doc).
pub async fn run<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    events: &dyn Events,
) -> Result<Ended, FollowError> {
    let Some(_claim) = Follower::try_take(&ctx.git, task)? else {
        return Ok(Ended::AlreadyFollowed);
    };
    events.emit(Event::step(
        Some(task),
        format!("{task}: following (pid {})", std::process::id()),
    ));
    // The fingerprint the last successful sync started from.
    let mut synced: Option<Fingerprint> = None;
    let mut pause = Duration::ZERO;
    let mut unreadable = 0;
    loop {
        tokio::time::sleep(pause).await;
        if repository_gone(&ctx.git) {
            return Ok(Ended::RepositoryGone);
        }
        let settings = match ctx
            .git
            .agent_config()
            .and_then(|c| Settings::from_config(&c))
        {
            Ok(s) => s,
            Err(_) if repository_gone(&ctx.git) => return Ok(Ended::RepositoryGone),
            Err(e) => return Err(e.into()),
        };
        if !settings.enabled {
            return Ok(Ended::Off);
        }
        pause = settings.interval;
        let loaded = match ctx.store.load(task) {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(Ended::Removed),
            Err(_) if repository_gone(&ctx.git) => return Ok(Ended::RepositoryGone),
            // Refs being rewritten under it (a gc packing them): look again next round, a
            // few times.
            Err(e) if unreadable >= UNREADABLE_ROUNDS => return Err(e.into()),
            Err(e) => {
                unreadable += 1;
                events.emit(Event::warning(
                    Some(task),
                    format!("cannot read the task: {e:#}"),
                ));
                continue;
            }
        };
        unreadable = 0;
        let Some(container) = loaded.record.sandbox.container.clone() else {
            return Ok(Ended::Removed);
        };
        match rt.state(&container).await {
            Ok(ContainerState::Running) => {}
            Ok(_) => match last_sync(rt, ctx, task, &container, events).await? {
                Some(end) => return Ok(end),
                // Restarted meanwhile: follow its new run.
                None => {
                    synced = None;
                    continue;
                }
            },
            Err(e) => {
                events.emit(Event::warning(
                    Some(task),
                    format!("cannot reach the container engine: {e:#}"),
                ));
                continue;
            }
        }
        report_wait(rt, ctx, task, &container, events).await;
        let now = fingerprint(rt, &container).await;
        if now.is_some() && now == synced {
            continue;
        }
        let Some(lock) = TaskLock::try_acquire(&ctx.git, task, "follow")? else {
            continue;
        };
        match sync_locked(rt, ctx, task, &container, &lock, events).await {
            Ok(true) => synced = now,
            Ok(false) => {}
            Err(e) => {
                events.emit(Event::warning(Some(task), format!("sync failed: {e:#}")));
                // Not again at once: a sync that fails tends to fail the same way.
                pause = (settings.interval * 10).min(Duration::from_secs(60));
            }
        }
    }
}

/// The task's container is no longer running: sync one last time and end, or (`None`) go on
/// following a new run that a restart started meanwhile.
async fn last_sync<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    container: &str,
    events: &dyn Events,
) -> Result<Option<Ended>, FollowError> {
    let deadline = Instant::now() + LAST_SYNC_WAIT;
    let lock = loop {
        if let Some(lock) = TaskLock::try_acquire(&ctx.git, task, "follow")? {
            break lock;
        }
        if Instant::now() > deadline || repository_gone(&ctx.git) {
            return Ok(Some(Ended::RunEnded));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let now = match ctx.store.load(task)? {
        None => return Ok(Some(Ended::Removed)),
        Some(l) => l,
    };
    match now.record.sandbox.container.as_deref() {
        None => return Ok(Some(Ended::Removed)),
        Some(c) if c != container => return Ok(None),
        Some(_) => {}
    }
    if rt.state(container).await? == ContainerState::Missing {
        return Ok(Some(Ended::Removed));
    }
    if let Err(e) = sync_locked(rt, ctx, task, container, &lock, events).await {
        events.emit(Event::warning(
            Some(task),
            format!("last sync failed: {e:#}"),
        ));
    }
    Ok(Some(Ended::RunEnded))
}

/// Sync `task` under `lock` if it still runs in `container`; true when a sync ran.
async fn sync_locked<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    container: &str,
    lock: &TaskLock,
    events: &dyn Events,
) -> Result<bool> {
    let Some(loaded) = ctx.store.load(task)? else {
        return Ok(false);
    };
    if loaded.record.sandbox.container.as_deref() != Some(container) {
        return Ok(false);
    }
    let outcome =
        crate::sandbox::sync::sync(rt, &ctx.store, loaded, ctx.bundle_limit()?, lock, events)
            .await?;
    if !outcome.nothing_new() {
        events.emit(Event::step(Some(task), super::sync::describe(&outcome)));
    }
    Ok(true)
}

/// Fire the user's `agent.onWait` when the agent opened a waiting episode not fired yet
/// (see the module doc); never fails the follower.
async fn report_wait<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    task: &str,
    container: &str,
    events: &dyn Events,
) {
    use crate::event_hooks::{TaskEvent, claim_wait, fire, wanted};
    let Ok(config) = ctx.git.agent_config() else {
        return;
    };
    if !wanted(&config, TaskEvent::Wait) {
        return;
    }
    let Some(waiting) = waiting(rt, container).await else {
        return;
    };
    let new = |loaded: &crate::task::store::Loaded| {
        loaded.record.sandbox.container.as_deref() == Some(container)
            && claim_wait(&mut loaded.record.clone(), waiting.episode)
    };
    match ctx.store.load(task) {
        Ok(Some(loaded)) if new(&loaded) => {}
        _ => return,
    }
    let mut claimed = false;
    let updated = ctx.store.update(task, "wait for input", |r, loaded| {
        claimed = loaded.record.sandbox.container.as_deref() == Some(container)
            && claim_wait(r, waiting.episode);
        Ok(vec![])
    });
    match updated {
        Ok(loaded) if claimed => {
            events.emit(Event::step(
                Some(task),
                format!("{task}: waits for input: {}", waiting.message),
            ));
            let mut shown = loaded.record;
            shown.reason = Some(waiting.message);
            fire(&ctx.git, &config, &shown, TaskEvent::Wait);
        }
        Ok(_) => {}
        Err(e) => events.emit(Event::warning(
            Some(task),
            format!("cannot record that it waits for input: {e:#}"),
        )),
    }
}

/// An open waiting episode, as the sandbox's marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    episode: u64,
    message: String,
}

async fn waiting<R: Runtime>(rt: &R, container: &str) -> Option<Waiting> {
    let cmd = [HELPER.to_string(), "waiting".to_string()];
    let mut out: Vec<u8> = Vec::new();
    let done = rt
        .exec(container, &cmd, None::<&[u8]>, &mut out, WAITING_LIMIT)
        .await
        .ok()?;
    if done.exit_code != 0 {
        return None;
    }
    parse_waiting(&out)
}

/// `git-agent-wait 1 <episode> <message>` and a newline, nothing else; the message loses its
/// control characters and is cut to [`WAIT_MESSAGE_CHARS`].
fn parse_waiting(out: &[u8]) -> Option<Waiting> {
    let text = std::str::from_utf8(out).ok()?.strip_suffix('\n')?;
    if text.contains('\n') {
        return None;
    }
    let rest = text.strip_prefix("git-agent-wait 1 ")?;
    let (episode, message) = rest.split_once(' ').unwrap_or((rest, ""));
    if episode.is_empty() || episode.len() > 19 || !episode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let episode = episode.parse::<u64>().ok().filter(|e| *e > 0)?;
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(WAIT_MESSAGE_CHARS)
        .collect();
    let message = message.trim();
    Some(Waiting {
        episode,
        message: if message.is_empty() {
            "the agent waits for input".to_string()
        } else {
            message.to_string()
        },
    })
}

/// The repository a follower follows in has been deleted.
fn repository_gone(git: &Git) -> bool {
    !git.common_dir.join("HEAD").exists() || !git.dir.exists()
}

/// The sandbox helper's fingerprint of the work, as it printed it (`git-agent-fingerprint 1
/// <crc> <length>`). `None` when it could not be read or is not exactly that: the follower
/// then syncs every round. The line is hostile data: capped at [`FINGERPRINT_LIMIT`] bytes
/// and only ever compared, never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(u64, u64);

async fn fingerprint<R: Runtime>(rt: &R, container: &str) -> Option<Fingerprint> {
    let cmd = [HELPER.to_string(), "fingerprint".to_string()];
    let mut out: Vec<u8> = Vec::new();
    let done = rt
        .exec(container, &cmd, None::<&[u8]>, &mut out, FINGERPRINT_LIMIT)
        .await
        .ok()?;
    if done.exit_code != 0 {
        return None;
    }
    parse_fingerprint(&out)
}

fn parse_fingerprint(out: &[u8]) -> Option<Fingerprint> {
    let text = std::str::from_utf8(out).ok()?.strip_suffix('\n')?;
    let mut words = text.split(' ');
    let digits = |w: &str| {
        (!w.is_empty() && w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
            .then(|| w.parse::<u64>().ok())
            .flatten()
    };
    let (Some("git-agent-fingerprint"), Some("1"), Some(crc), Some(len), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    Some(Fingerprint(digits(crc)?, digits(len)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_one_strict_line() {
        assert_eq!(
            parse_fingerprint(b"git-agent-fingerprint 1 2094069139 125\n"),
            Some(Fingerprint(2094069139, 125))
        );
        for bad in [
            &b"git-agent-fingerprint 1 2094069139 125"[..],
            b"git-agent-fingerprint 1 2094069139 125\n\n",
            b"git-agent-fingerprint 2 1 2\n",
            b"git-agent-fingerprint 1 1 2 3\n",
            b"git-agent-fingerprint 1 -1 2\n",
            b"git-agent-fingerprint 1 1\x1b[2J 2\n",
            b"git-agent-fingerprint 1  1 2\n",
            b"git-agent-fingerprint 1 99999999999999999999999 2\n",
            b"\xff\xfe\n",
            b"",
        ] {
            assert_eq!(parse_fingerprint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_waiting_marker_is_one_strict_line_with_a_tame_message() {
        let w = |e: u64, m: &str| {
            Some(Waiting {
                episode: e,
                message: m.to_string(),
            })
        };
        assert_eq!(
            parse_waiting(b"git-agent-wait 1 3 Claude needs your permission\n"),
            w(3, "Claude needs your permission")
        );
        assert_eq!(
            parse_waiting(b"git-agent-wait 1 1\n"),
            w(1, "the agent waits for input")
        );
        // Control characters (a terminal escape, a carriage return) become spaces.
        assert_eq!(
            parse_waiting(b"git-agent-wait 1 2 a\x1b[2Jb\rc\n"),
            w(2, "a [2Jb c")
        );
        let long = format!("git-agent-wait 1 4 {}\n", "\u{e9}".repeat(300));
        assert_eq!(
            parse_waiting(long.as_bytes())
                .unwrap()
                .message
                .chars()
                .count(),
            WAIT_MESSAGE_CHARS
        );
        for bad in [
            &b""[..],
            b"git-agent-wait 1 3 x",
            b"git-agent-wait 1 3 x\nmore\n",
            b"git-agent-wait 2 3 x\n",
            b"git-agent-wait 1 0 x\n",
            b"git-agent-wait 1 -3 x\n",
            b"git-agent-wait 1 99999999999999999999 x\n",
            b"git-agent-wait 1  x\n",
            b"git-agent-wait 1 3\xff\n",
        ] {
            assert_eq!(parse_waiting(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn follow_settings_read_git_config() {
        let cfg = |pairs: &[(&str, &str)]| Settings::from_config(&Config::from_pairs(pairs));
        assert_eq!(
            cfg(&[]).unwrap(),
            Settings {
                enabled: true,
                interval: FOLLOW_INTERVAL
            }
        );
        assert!(!cfg(&[("agent.follow", "false")]).unwrap().enabled);
        let interval = |v: &str| cfg(&[("agent.followInterval", v)]).map(|s| s.interval);
        assert_eq!(interval("5").unwrap(), Duration::from_secs(5));
        assert_eq!(interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(interval("2m").unwrap(), Duration::from_secs(120));
        for bad in ["0", "10ms", "fast", "-1s", ""] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }
}
