//! Push: send a task's promoted branch `agent/<task>` (and, when asked, the provenance notes)
//! to a remote with the user's own git and credential helpers. Never forces.
//!
//! Owns the choice of remote, the refspecs, the upstream setting and telling a rejected push
//! from an unreachable remote (by git's porcelain status lines, never by the wording). It does
//! not print: what the remote said is returned as data, in the result or in the error, for
//! the command line to show.

use std::process::Stdio;

use crate::git::promote::NOTES_REF;
use crate::task::branch_name;
use crate::task::store::Loaded;

use super::{Ctx, OpError};

/// What to push and how.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Remote name or URL; `None` picks one: the base branch's remote, else remote.pushDefault,
    /// else the only remote, else origin.
    pub remote: Option<String>,
    /// Set the upstream of `agent/<task>`: `Some` decides, `None` reads agent.pushSetUpstream.
    pub set_upstream: Option<bool>,
    /// Push the provenance notes too: `Some` decides, `None` reads agent.pushNotes.
    pub notes: Option<bool>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub task: String,
    /// `agent/<task>`.
    pub branch: String,
    pub remote: String,
    /// The notes went in the same push.
    pub notes: bool,
    /// The remote branch became the upstream.
    pub upstream: bool,
    /// What git and the remote printed (where forges put the link to open a pull request).
    pub remote_messages: String,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("branch {branch} does not exist yet")]
    NotCommitted { task: String, branch: String },
    #[error("this repository has no remote to push to")]
    NoRemote,
    #[error("cannot tell which remote to push to")]
    AmbiguousRemote,
    #[error("no remote named '{remote}'")]
    UnknownRemote { remote: String, known: Vec<String> },
    #[error("cannot reach remote '{remote}' to push {branch}: {detail}")]
    Unreachable {
        remote: String,
        branch: String,
        /// git's last line (escaped).
        detail: String,
        remote_messages: String,
    },
    #[error("push of {branch} to {remote} was rejected: {}", reasons.join("; "))]
    Rejected {
        remote: String,
        branch: String,
        /// `<ref> <why>` for each rejected ref.
        reasons: Vec<String>,
        remote_messages: String,
    },
    #[error("cannot run git push")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for PushError {
    fn from(e: anyhow::Error) -> Self {
        PushError::Other(e)
    }
}

impl PushError {
    /// What the remote printed before the push failed, for the user to read.
    pub fn remote_messages(&self) -> Option<&str> {
        match self {
            PushError::Unreachable {
                remote_messages, ..
            }
            | PushError::Rejected {
                remote_messages, ..
            } => Some(remote_messages),
            _ => None,
        }
    }
}

impl OpError for PushError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PushError::NotCommitted { task, .. } => {
                format!("create it first with `git agent commit {task}`")
            }
            PushError::NoRemote => {
                "add one with `git remote add origin <url>`, or pass --remote".into()
            }
            PushError::AmbiguousRemote => "pass --remote <name>".into(),
            PushError::UnknownRemote { known, .. } if known.is_empty() => {
                "this repository has no remotes; add one with `git remote add <name> <url>`".into()
            }
            PushError::UnknownRemote { remote, known } => format!(
                "remotes here: {} (see `git remote -v`); or add it with `git remote add {remote} <url>`",
                known.join(", ")
            ),
            PushError::Unreachable { remote, .. } => format!(
                "check its URL with `git remote -v` and your network or credentials; `git ls-remote {remote}` tests the connection"
            ),
            PushError::Rejected { remote, .. } => format!(
                "fetch it with `git fetch {remote}` and look at the remote branch; git-agent never force-pushes"
            ),
            PushError::Spawn(_) | PushError::Other(_) => return None,
        })
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            PushError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            PushError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// Push a task's branch.
pub fn run(ctx: &Ctx, req: &PushRequest) -> Result<Pushed, PushError> {
    let loaded = ctx.store.resolve(&req.task)?;
    let name = loaded.record.name.clone();
    let short = branch_name(&name);
    let branch = format!("refs/heads/{short}");
    if ctx.git.ref_value(&branch)?.is_none() {
        return Err(PushError::NotCommitted {
            task: name,
            branch: short,
        });
    }
    let remotes = ctx.git.run(["remote"])?;
    let known: Vec<String> = remotes.lines().map(str::to_string).collect();
    let remote = pick_remote(ctx, &loaded, req.remote.as_deref(), &known)?;
    if !is_url(&remote) && !known.contains(&remote) {
        return Err(PushError::UnknownRemote { remote, known });
    }
    let upstream = match req.set_upstream {
        Some(u) => u,
        None => ctx.config.bool("agent.pushSetUpstream", false)?,
    };
    let notes = match req.notes {
        Some(n) => n,
        None => ctx.config.bool("agent.pushNotes", false)?,
    };
    let notes = notes && ctx.git.ref_value(NOTES_REF)?.is_some();
    let refspecs = refspecs(&branch, notes);
    let mut result = git_push(ctx, &remote, &refspecs, notes)?;
    if notes && !result.ok && result.refs.is_empty() && result.stderr.contains("--atomic") {
        // The remote cannot do atomic pushes: push both in one push all the same.
        let first = std::mem::take(&mut result.stderr);
        result = git_push(ctx, &remote, &refspecs, false)?;
        result.stderr.insert_str(0, &first);
    }
    if !result.ok {
        let rejected: Vec<String> = result
            .refs
            .iter()
            .filter(|l| l.starts_with('!'))
            .map(|l| describe_ref_line(l))
            .collect();
        if rejected.is_empty() {
            return Err(PushError::Unreachable {
                detail: last_error_line(&crate::error::sanitize(&result.stderr)),
                remote,
                branch: short,
                remote_messages: result.stderr,
            });
        }
        return Err(PushError::Rejected {
            remote,
            branch: short,
            reasons: rejected,
            remote_messages: result.stderr,
        });
    }
    crate::crash::point("push.before-upstream");
    if upstream {
        ctx.git
            .run(["config", &format!("branch.{short}.remote"), &remote])?;
        ctx.git
            .run(["config", &format!("branch.{short}.merge"), &branch])?;
    }
    Ok(Pushed {
        task: name,
        branch: short,
        remote,
        notes,
        upstream,
        remote_messages: result.stderr,
    })
}

/// The refspecs of a push of `branch` (a full ref name), with the notes ref when `notes`.
pub fn refspecs(branch: &str, notes: bool) -> Vec<String> {
    let mut specs = vec![format!("{branch}:{branch}")];
    if notes {
        specs.push(format!("{NOTES_REF}:{NOTES_REF}"));
    }
    specs
}

/// The remote a task's branch goes to: the one given, else the base branch's remote, else
/// remote.pushDefault, else the only remote (`known`), else origin.
fn pick_remote(
    ctx: &Ctx,
    loaded: &Loaded,
    explicit: Option<&str>,
    known: &[String],
) -> Result<String, PushError> {
    if let Some(r) = explicit {
        return Ok(r.to_string());
    }
    let base_remote = loaded
        .record
        .base_branch
        .as_ref()
        .and_then(|b| ctx.git.run(["config", &format!("branch.{b}.remote")]).ok());
    let push_default = ctx.git.run(["config", "remote.pushDefault"]).ok();
    choose_remote(base_remote.as_deref(), push_default.as_deref(), known)
}

/// [`pick_remote`]'s decision, from what git config says and the remotes there are.
fn choose_remote(
    base_remote: Option<&str>,
    push_default: Option<&str>,
    known: &[String],
) -> Result<String, PushError> {
    if let Some(r) = base_remote.filter(|r| !r.is_empty() && *r != ".") {
        return Ok(r.to_string());
    }
    if let Some(r) = push_default.filter(|r| !r.is_empty()) {
        return Ok(r.to_string());
    }
    match known {
        [one] => Ok(one.clone()),
        many if many.iter().any(|r| r == "origin") => Ok("origin".into()),
        [] => Err(PushError::NoRemote),
        _ => Err(PushError::AmbiguousRemote),
    }
}

/// Is `remote` a URL or path rather than a remote's name (git accepts both)?
fn is_url(remote: &str) -> bool {
    remote.contains(':') || remote.contains('/') || remote.starts_with('.')
}

/// What a `git push --porcelain` did.
struct PushOutput {
    ok: bool,
    /// The porcelain status line of each ref (`<flag>\t<from>:<to>\t<summary>`).
    refs: Vec<String>,
    /// Everything git and the remote printed on stderr.
    stderr: String,
}

/// `git push --porcelain`, keeping what the remote said to tell a rejection from an
/// unreachable remote. Its stdin stays the user's, for credential helpers that ask.
fn git_push(
    ctx: &Ctx,
    remote: &str,
    refspecs: &[String],
    atomic: bool,
) -> Result<PushOutput, PushError> {
    let mut cmd = ctx.git.command();
    cmd.args(["push", "--porcelain"]);
    if atomic {
        cmd.arg("--atomic");
    }
    cmd.arg(remote)
        .args(refspecs)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(PushError::Spawn)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(PushOutput {
        ok: out.status.success(),
        refs: stdout
            .lines()
            .filter(|l| l.contains('\t'))
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `refs/heads/x rejected (fetch first)` from a porcelain line `!\tfrom:to\t[rejected] (fetch first)`.
fn describe_ref_line(line: &str) -> String {
    let mut f = line.split('\t');
    let _flag = f.next();
    let to = f
        .next()
        .and_then(|r| r.split_once(':'))
        .map(|(_, to)| to)
        .unwrap_or("");
    let summary = f.next().unwrap_or("").replace(['[', ']'], "");
    format!("{to} {summary}").trim().to_string()
}

/// The last meaningful line git printed (its `fatal:` line, usually).
fn last_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git push failed")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_remote_comes_from_the_base_branch_then_push_default_then_the_remotes() {
        let two = names(&["origin", "fork"]);
        assert_eq!(choose_remote(Some("up"), Some("pd"), &two).unwrap(), "up");
        // `.` is the local repository: not a remote to push a task to.
        assert_eq!(choose_remote(Some("."), Some("pd"), &two).unwrap(), "pd");
        assert_eq!(choose_remote(Some(""), None, &two).unwrap(), "origin");
        assert_eq!(
            choose_remote(None, None, &names(&["fork"])).unwrap(),
            "fork"
        );
        assert!(matches!(
            choose_remote(None, None, &[]),
            Err(PushError::NoRemote)
        ));
        assert!(matches!(
            choose_remote(None, Some(""), &names(&["a", "b"])),
            Err(PushError::AmbiguousRemote)
        ));
    }

    #[test]
    fn rejections_are_described_from_porcelain_lines() {
        assert_eq!(
            describe_ref_line("!\trefs/heads/agent/t:refs/heads/agent/t\t[rejected] (fetch first)"),
            "refs/heads/agent/t rejected (fetch first)"
        );
        assert_eq!(
            last_error_line("remote: hi\nfatal: could not read\n\n"),
            "fatal: could not read"
        );
        assert_eq!(last_error_line(""), "git push failed");
        assert!(is_url("../elsewhere") && is_url("git@host:x") && !is_url("origin"));
        assert_eq!(
            refspecs("refs/heads/agent/t", true),
            vec![
                "refs/heads/agent/t:refs/heads/agent/t".to_string(),
                "refs/notes/agent:refs/notes/agent".to_string()
            ]
        );
    }

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A task with one agent commit and no container, in a repository with a bare remote.
    fn repo_with_task(d: &std::path::Path) -> Ctx {
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["config", "user.name", "Test User"]);
        git(d, &["config", "user.email", "test@example.com"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git(d, &["rev-parse", "HEAD"]);
        std::fs::write(d.join("f.txt"), "agent work\n").unwrap();
        git(d, &["add", "f.txt"]);
        git(d, &["commit", "-q", "-m", "agent work"]);
        let head = git(d, &["rev-parse", "HEAD"]);
        git(d, &["reset", "-q", "--hard", &base]);
        let remote = d.join("remote.git");
        git(d, &["init", "-q", "--bare", remote.to_str().unwrap()]);
        git(d, &["remote", "add", "origin", remote.to_str().unwrap()]);
        let ctx = Ctx::open_at(d).unwrap();
        let record = crate::task::TaskRecord {
            name: "t".into(),
            agent: "exec".into(),
            command: vec!["true".into()],
            base,
            base_branch: Some("main".into()),
            status: crate::task::Status::Exited,
            exit_code: Some(0),
            prompt: "work".into(),
            ..Default::default()
        };
        let name = crate::task::name::TaskName::parse("t").unwrap();
        ctx.store.create(&name, &record).unwrap();
        git(d, &["update-ref", "refs/agent/t/head", &head]);
        ctx
    }

    /// Commit then push through the operations, with real git: the branch and its notes
    /// reach the remote, the upstream is set, and a diverged remote branch is a rejection
    /// (never forced) that carries what git said.
    #[tokio::test]
    async fn commit_then_push_then_a_rejected_push() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let ctx = repo_with_task(d);
        let events = crate::ops::events::Collected::default();
        let prepared = crate::ops::commit::prepare(&ctx, "t", false, false, &[], &events)
            .await
            .unwrap();
        assert!(!prepared.needs_message && !prepared.already_committed);
        let done = crate::ops::commit::finish(&ctx, prepared, None, &events).unwrap();
        assert_eq!(done.branch, "agent/t");
        assert_eq!(done.commits.len(), 1);
        assert_eq!(done.branch_tip, git(d, &["rev-parse", "agent/t"]));
        assert_eq!(
            git(d, &["log", "-1", "--format=%an %s", "agent/t"]),
            "Test User agent work"
        );

        let req = PushRequest {
            task: "t".into(),
            notes: Some(true),
            set_upstream: Some(true),
            ..PushRequest::default()
        };
        let pushed = run(&ctx, &req).unwrap();
        assert_eq!(
            pushed.remote, "origin",
            "the base branch has no remote: the only one"
        );
        assert!(pushed.notes && pushed.upstream);
        let remote = d.join("remote.git");
        assert_eq!(git(&remote, &["rev-parse", "agent/t"]), done.branch_tip);
        assert_eq!(
            git(&remote, &["rev-parse", NOTES_REF]),
            git(d, &["rev-parse", NOTES_REF])
        );
        assert_eq!(git(d, &["config", "branch.agent/t.remote"]), "origin");

        git(d, &["commit", "-q", "--allow-empty", "-m", "someone else"]);
        git(
            d,
            &["push", "-q", "-f", "origin", "HEAD:refs/heads/agent/t"],
        );
        let e = run(
            &ctx,
            &PushRequest {
                task: "t".into(),
                ..PushRequest::default()
            },
        )
        .unwrap_err();
        let PushError::Rejected { reasons, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(reasons[0].starts_with("refs/heads/agent/t "), "{reasons:?}");
        assert!(e.remote_messages().is_some());
        assert_ne!(git(&remote, &["rev-parse", "agent/t"]), done.branch_tip);

        let e = run(
            &ctx,
            &PushRequest {
                task: "t".into(),
                remote: Some("nope".into()),
                ..PushRequest::default()
            },
        )
        .unwrap_err();
        assert!(matches!(&e, PushError::UnknownRemote { known, .. } if known == &["origin"]));
        let events = events.take();
        assert!(
            events.is_empty(),
            "no wait, no sync, no progress: {events:?}"
        );
    }

    #[test]
    fn push_errors_carry_their_hints() {
        let e = PushError::UnknownRemote {
            remote: "up".into(),
            known: names(&["origin"]),
        };
        assert_eq!(e.to_string(), "no remote named 'up'");
        assert!(e.hint().unwrap().contains("git remote add up <url>"));
        let e = PushError::Rejected {
            remote: "origin".into(),
            branch: "agent/t".into(),
            reasons: names(&["refs/heads/agent/t rejected (fetch first)"]),
            remote_messages: "remote: no\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "push of agent/t to origin was rejected: refs/heads/agent/t rejected (fetch first)"
        );
        assert_eq!(e.remote_messages(), Some("remote: no\n"));
        assert!(e.hint().unwrap().contains("never force-pushes"));
    }
}
