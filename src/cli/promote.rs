//! `git agent commit`, `push` and `commit-push`: promote a task's work with the user's own
//! git identity, signing and credentials. Nothing here runs in or near the sandbox.

use std::process::Stdio;

use anyhow::{Context, Result};
use clap::Args;

use super::{Ctx, engine, out, term};
use crate::error::hinted;
use crate::git::RefUpdate;
use crate::git::promote::NOTES_REF;
use crate::git::promote::{PromoteRequest, needs_message, promote};
use crate::runtime::Runtime;
use crate::task::lock::TaskLock;
use crate::task::store::Loaded;
use crate::task::{Promotion, branch_name};

/// Create commits for a task's work on branch agent/<task>, as you.
///
/// Each commit the agent made is re-created with your identity (and signed when
/// commit.gpgSign is set), keeping its message and exact content; uncommitted agent work
/// becomes one more commit whose message comes from -m or your editor. Provenance (with the
/// agent's own author and committer) is noted under refs/notes/agent. The commits are the
/// ones `git agent review` lists, down from the tip promoted (whatever branch or detached
/// HEAD the agent used, every commit on agent/<task> is re-created as you). Objects are
/// written aside and enter your repository only when all are written; the branch, the notes
/// and the task's record then move in one transaction, so an interrupted commit leaves the
/// old state or the new one, and running it again completes it. A branch agent/<task> left
/// by an interrupted commit (its notes name this task) is taken over; one you made is not. Progress shows on stderr for long histories. Your work tree, index and HEAD are
/// not touched.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Message for the commit of the agent's uncommitted changes.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
}

/// Push branch agent/<task> with your git and credential helpers.
///
/// Works like `git push`: the remote's messages (where forges print the link to open a pull
/// request) show on stderr; a missing remote, a rejected push (with the remote's reason) and
/// an unreachable remote are told apart. Never forces.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    #[command(flatten)]
    pub push: PushOpts,
}

/// How to push (shared by `push` and `commit-push`).
#[derive(Debug, Args, Clone, Default)]
pub struct PushOpts {
    /// Remote to push to (default: the base branch's remote, else remote.pushDefault, else
    /// the only remote, else origin).
    #[arg(long)]
    pub remote: Option<String>,
    /// Make the remote branch the upstream of agent/<task> (branch.agent/<task>.remote and
    /// .merge), as `git push -u`. Default: agent.pushSetUpstream (false).
    #[arg(short = 'u', long = "set-upstream", overrides_with = "no_set_upstream")]
    pub set_upstream: bool,
    /// Do not set the upstream, whatever agent.pushSetUpstream says.
    #[arg(long = "no-set-upstream")]
    pub no_set_upstream: bool,
    /// Also push the provenance notes (refs/notes/agent) in the same push, atomically when
    /// the remote supports it; never forced. Default: agent.pushNotes (false).
    #[arg(long, overrides_with = "no_notes")]
    pub notes: bool,
    /// Do not push the notes, whatever agent.pushNotes says.
    #[arg(long = "no-notes")]
    pub no_notes: bool,
}

/// Commit a task's work, then push it.
#[derive(Debug, Args)]
pub struct CommitPushArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Message for the commit of the agent's uncommitted changes.
    #[arg(short = 'm', long = "message")]
    pub message: Option<String>,
    #[command(flatten)]
    pub push: PushOpts,
}

async fn synced(ctx: &Ctx, task: &str, lock: &TaskLock) -> Result<Loaded> {
    let loaded = super::reload(ctx, task)?;
    if loaded.record.sandbox.container.is_none() {
        return Ok(loaded);
    }
    let rt = engine().await?;
    crate::ops::sync::if_possible(&rt, ctx, loaded, lock, &super::Stderr).await
}

/// Most bytes of the diff shown to the agent drafting a commit message.
const DRAFT_DIFF_MAX: usize = 64 << 10;

/// Ask the task's agent to draft a message for its uncommitted changes (headless, with the
/// `commit-msg` template). `None` when there is no agent to ask.
///
/// Nothing the agent wrote runs for this: the draft runs in a fresh container of the task's
/// image with an empty workspace and a fresh home, never in the task's own container (whose
/// home holds the agent's settings and hooks) and without the task's workspace (whose
/// `.claude/`, `.codex/`, git config and hooks the agent wrote). The changes reach it as
/// text: the diff of the synced, host-checked `wip` commit, made by the host's git with
/// external diff and textconv drivers off. A running task is not asked (its gateway and
/// stand-ins are its own, and its work is still moving).
async fn draft_message(ctx: &Ctx, loaded: &Loaded) -> Option<String> {
    let r = &loaded.record;
    let search = crate::data::Search::new(&ctx.git.dir);
    let agent = crate::agent::load(&search, &r.agent).ok()?;
    if agent.is_exec() || r.sandbox.volume.is_none() {
        return None;
    }
    let wip = loaded.ref_value("wip")?;
    let template = search.find(crate::data::PROMPTS, "commit-msg").ok()??;
    let template = crate::template::parse(&template).ok()?;
    let mut prompt = crate::template::render(
        &template,
        &crate::template::PromptVars {
            description: r.prompt.clone(),
            repository: String::new(),
            base: r.base.clone(),
            base_branch: r.base_branch.clone().unwrap_or_default(),
            branch: branch_name(&r.name),
            task: r.name.clone(),
        },
    )
    .ok()?;
    let parent = format!("{wip}^");
    let diff = ctx
        .git
        .run([
            "-c",
            "core.quotePath=false",
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--stat",
            "--patch",
            &parent,
            wip,
        ])
        .ok()?;
    let mut diff = crate::error::sanitize(&diff);
    if diff.len() > DRAFT_DIFF_MAX {
        let mut end = DRAFT_DIFF_MAX;
        while !diff.is_char_boundary(end) {
            end -= 1;
        }
        diff.truncate(end);
        diff.push_str("\n[diff truncated]\n");
    }
    prompt.push_str("\n\nThe uncommitted changes:\n\n```diff\n");
    prompt.push_str(&diff);
    prompt.push_str("\n```\n");
    let rt = engine().await.ok()?;
    if let Some(c) = &r.sandbox.container
        && rt.state(c).await.ok()? == crate::runtime::ContainerState::Running
    {
        return None;
    }
    let names = ctx.repo.object_names(&r.name);
    let network = r.sandbox.network.clone()?;
    if !rt.network_exists(&network).await.ok()? {
        return None;
    }
    eprintln!(
        "git-agent: asking {} to draft a commit message...",
        agent.name
    );
    let answer = draft_in_fresh_container(ctx, &rt, &agent, loaded, &names, &prompt).await;
    rt.remove_container(&names.draft).await.ok();
    rt.remove_volume(&names.draft_volume).await.ok();
    rt.remove_container(&names.gateway).await.ok();
    match answer {
        Ok(a) if !a.trim().is_empty() => Some(a),
        Ok(_) => None,
        Err(e) => {
            eprintln!("git-agent: no draft ({e:#})");
            None
        }
    }
}

/// Start the draft's container (the task's image, an empty workspace volume, no home
/// volume, the task's network with a fresh gateway under the task's policy) and ask.
async fn draft_in_fresh_container<R: crate::runtime::Runtime>(
    ctx: &Ctx,
    rt: &R,
    agent: &crate::agent::Agent,
    loaded: &Loaded,
    names: &crate::sandbox::ObjectNames,
    prompt: &str,
) -> Result<String> {
    let r = &loaded.record;
    let policy = r
        .network
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the task has no network policy"))?;
    let (env, _, _) = super::spawn::fresh_gateway(ctx, rt, agent, policy, &r.name).await?;
    let labels = ctx.repo.labels(&r.name);
    rt.remove_container(&names.draft).await?;
    rt.create_volume(&names.draft_volume, &labels).await?;
    let limits = crate::sandbox::spawn::Limits::from_config(&ctx.config)?;
    let mut spec = crate::sandbox::spawn::sandbox_spec(
        &ctx.repo,
        &r.name,
        crate::sandbox::spawn::Process {
            image_id: &r.sandbox.image_id,
            cmd: vec!["sleep".into(), "infinity".into()],
            env: &[],
            home_volume: false,
            tty: false,
            read_only: false,
        },
        &limits,
    );
    spec.name = names.draft.clone();
    spec.mounts = vec![crate::runtime::VolumeMount::new(
        &names.draft_volume,
        crate::sandbox::WORKSPACE,
    )];
    spec.network = r.sandbox.network.clone().or(spec.network);
    let id = rt.create_container(&spec).await?;
    rt.start(&id).await?;
    crate::sandbox::spawn::ask(rt, &id, agent, prompt, &env).await
}

/// Ask for a message in the user's editor, git style, starting from `draft`.
fn edit_message(ctx: &Ctx, loaded: &Loaded, draft: Option<&str>) -> Result<Option<String>> {
    if !term::stdin_is_tty() || !term::stdout_is_tty() {
        return Err(hinted(
            "the task has uncommitted changes and no commit message was given",
            "pass one with -m: git agent commit <task> -m \"message\"",
        ));
    }
    let wip = loaded.ref_value("wip").unwrap_or_default();
    let stat = ctx
        .git
        .run(["diff", "--stat", &format!("{wip}^"), wip])
        .unwrap_or_default();
    let mut text = format!(
        "{}\n# Message for the uncommitted changes of task {}.{}\n# Lines starting with '#' are ignored; an empty message aborts.\n#\n",
        draft.unwrap_or(""),
        loaded.record.name,
        if draft.is_some() {
            " The agent drafted the text above."
        } else {
            ""
        }
    );
    for l in stat.lines() {
        text += &format!("# {l}\n");
    }
    let raw = term::edit_in_editor(&ctx.git, &text, "AGENT_COMMIT_EDITMSG", "", || {
        hinted(
            "the editor failed; nothing was committed",
            "pass the message with -m instead",
        )
    })?;
    let clean = ctx
        .git
        .run_with_input(["stripspace", "--strip-comments"], raw.as_bytes())?;
    Ok((!clean.trim().is_empty()).then_some(clean))
}

/// Promote a task's work. With `up_to_date_ok`, work that is already on the branch is not
/// an error (so `commit-push` can finish a push that failed earlier).
async fn commit(
    ctx: &Ctx,
    task: &str,
    message: Option<String>,
    up_to_date_ok: bool,
) -> Result<String> {
    let name = ctx.store.resolve(task)?.record.name;
    let lock = super::lock_task(ctx, &name, "commit").await?;
    crate::git::promote::sweep(&ctx.git, Some(&name));
    let loaded = synced(ctx, &name, &lock).await?;
    let r = &loaded.record;
    let head = loaded.ref_value("head").unwrap_or(&r.base).to_string();
    let wip = loaded.ref_value("wip").map(str::to_string);
    let tip = crate::git::promote::task_tip(&head, wip.as_deref());
    if up_to_date_ok && r.promoted.as_ref().is_some_and(|p| p.task_tip == tip) {
        eprintln!(
            "git-agent: {} is already committed on {}",
            r.name,
            branch_name(&r.name)
        );
        return Ok(r.name.clone());
    }
    let mut req = PromoteRequest {
        task: &r.name,
        agent: &r.agent,
        base: &r.base,
        head: &head,
        wip: wip.as_deref(),
        previous: r.promoted.as_ref(),
        message,
    };
    if req.message.is_none()
        && needs_message(&ctx.git, &req)?
        && crate::git::promote::task_tip(&head, wip.as_deref()) != r.base
    {
        let draft = if term::stdin_is_tty() && term::stdout_is_tty() {
            draft_message(ctx, &loaded).await
        } else {
            None
        };
        req.message = edit_message(ctx, &loaded, draft.as_deref())?;
    }
    let mut record = |p: &Promotion| -> Result<Vec<RefUpdate>> {
        let p = p.clone();
        let prepared = ctx.store.prepare(&r.name, "commit", &[], move |rec, _| {
            rec.promoted = Some(p);
            Ok(vec![])
        })?;
        Ok(prepared.updates)
    };
    let done = promote(&ctx.git, req, &mut record)?;
    if done.adopted {
        eprintln!(
            "git-agent: {} holds this task's work from an interrupted commit; taken over",
            branch_name(&r.name)
        );
    }
    eprintln!(
        "git-agent: {} commit{} on {} ({})",
        done.commits.len(),
        if done.commits.len() == 1 { "" } else { "s" },
        branch_name(&r.name),
        &done.promotion.branch_tip[..12]
    );
    Ok(r.name.clone())
}

/// The remote a task's branch goes to.
fn pick_remote(ctx: &Ctx, loaded: &Loaded, explicit: Option<&str>) -> Result<String> {
    if let Some(r) = explicit {
        return Ok(r.to_string());
    }
    if let Some(b) = &loaded.record.base_branch
        && let Ok(r) = ctx.git.run(["config", &format!("branch.{b}.remote")])
        && !r.is_empty()
        && r != "."
    {
        return Ok(r);
    }
    if let Ok(r) = ctx.git.run(["config", "remote.pushDefault"])
        && !r.is_empty()
    {
        return Ok(r);
    }
    let remotes = ctx.git.run(["remote"])?;
    let remotes: Vec<&str> = remotes.lines().collect();
    match remotes.as_slice() {
        [one] => Ok(one.to_string()),
        many if many.contains(&"origin") => Ok("origin".into()),
        [] => Err(hinted(
            "this repository has no remote to push to",
            "add one with `git remote add origin <url>`, or pass --remote",
        )),
        _ => Err(hinted(
            "cannot tell which remote to push to",
            "pass --remote <name>",
        )),
    }
}

/// Is `remote` a URL or path rather than a remote's name (git accepts both)?
fn is_url(remote: &str) -> bool {
    remote.contains(':') || remote.contains('/') || remote.starts_with('.')
}

fn push(ctx: &Ctx, task: &str, opts: &PushOpts) -> Result<()> {
    let loaded = ctx.store.resolve(task)?;
    let name = loaded.record.name.clone();
    let short = branch_name(&name);
    let branch = format!("refs/heads/{short}");
    if ctx.git.ref_value(&branch)?.is_none() {
        return Err(hinted(
            format!("branch {short} does not exist yet"),
            format!("create it first with `git agent commit {name}`"),
        ));
    }
    let remote = pick_remote(ctx, &loaded, opts.remote.as_deref())?;
    let remotes = ctx.git.run(["remote"])?;
    if !is_url(&remote) && !remotes.lines().any(|r| r == remote) {
        let known: Vec<&str> = remotes.lines().collect();
        return Err(hinted(
            format!("no remote named '{remote}'"),
            if known.is_empty() {
                "this repository has no remotes; add one with `git remote add <name> <url>`"
                    .to_string()
            } else {
                format!(
                    "remotes here: {} (see `git remote -v`); or add it with `git remote add {remote} <url>`",
                    known.join(", ")
                )
            },
        ));
    }
    let upstream = if opts.no_set_upstream {
        false
    } else {
        opts.set_upstream || ctx.config.bool("agent.pushSetUpstream", false)?
    };
    let notes = if opts.no_notes {
        false
    } else {
        opts.notes || ctx.config.bool("agent.pushNotes", false)?
    };
    let notes = notes && ctx.git.ref_value(NOTES_REF)?.is_some();
    let mut refspecs = vec![format!("{branch}:{branch}")];
    if notes {
        refspecs.push(format!("{NOTES_REF}:{NOTES_REF}"));
    }
    let mut result = git_push(ctx, &remote, &refspecs, notes)?;
    if notes && !result.ok && result.refs.is_empty() && result.stderr.contains("--atomic") {
        // The remote cannot do atomic pushes: push both in one push all the same.
        result = git_push(ctx, &remote, &refspecs, false)?;
    }
    if !result.ok {
        let rejected: Vec<&String> = result.refs.iter().filter(|l| l.starts_with('!')).collect();
        if rejected.is_empty() {
            return Err(hinted(
                format!(
                    "cannot reach remote '{remote}' to push {short}: {}",
                    last_error_line(&result.stderr)
                ),
                format!(
                    "check its URL with `git remote -v` and your network or credentials; `git ls-remote {remote}` tests the connection"
                ),
            ));
        }
        let reasons: Vec<String> = rejected.iter().map(|l| describe_ref_line(l)).collect();
        return Err(hinted(
            format!(
                "push of {short} to {remote} was rejected: {}",
                reasons.join("; ")
            ),
            format!(
                "fetch it with `git fetch {remote}` and look at the remote branch; git-agent never force-pushes"
            ),
        ));
    }
    crate::crash::point("push.before-upstream");
    if upstream {
        ctx.git
            .run(["config", &format!("branch.{short}.remote"), &remote])?;
        ctx.git
            .run(["config", &format!("branch.{short}.merge"), &branch])?;
    }
    eprintln!(
        "git-agent: pushed {short}{} to {remote}{}",
        if notes { " and its notes" } else { "" },
        if upstream { " (upstream set)" } else { "" }
    );
    Ok(())
}

/// What a `git push --porcelain` did.
struct Pushed {
    ok: bool,
    /// The porcelain status line of each ref (`<flag>\t<from>:<to>\t<summary>`).
    refs: Vec<String>,
    /// Everything git and the remote printed on stderr (also shown to the user as it came).
    stderr: String,
}

/// `git push --porcelain` with the remote's messages passed through to our stderr as they
/// come, and kept to tell a rejection from an unreachable remote.
fn git_push(ctx: &Ctx, remote: &str, refspecs: &[String], atomic: bool) -> Result<Pushed> {
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
    let mut child = cmd.spawn().context("cannot run git push")?;
    let mut err = child.stderr.take().expect("stderr was piped");
    let tee = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        let mut stderr = std::io::stderr();
        loop {
            match std::io::Read::read(&mut err, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = std::io::Write::write_all(&mut stderr, &buf[..n]);
                    kept.extend_from_slice(&buf[..n]);
                }
            }
        }
        kept
    });
    let out = child
        .wait_with_output()
        .context("git push did not finish")?;
    let kept = tee.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let refs = stdout
        .lines()
        .filter(|l| l.contains('\t'))
        .map(str::to_string)
        .collect();
    Ok(Pushed {
        ok: out.status.success(),
        refs,
        stderr: crate::error::sanitize(&String::from_utf8_lossy(&kept)),
    })
}

/// `refs/heads/x: rejected (fetch first)` from a porcelain line `!\tfrom:to\t[rejected] (fetch first)`.
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

pub async fn run_commit(args: CommitArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = commit(&ctx, &args.task, args.message, false).await?;
    out(branch_name(&name))?;
    Ok(0)
}

pub async fn run_push(args: PushArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    push(&ctx, &args.task, &args.push)?;
    Ok(0)
}

pub async fn run_commit_push(args: CommitPushArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let name = commit(&ctx, &args.task, args.message, true).await?;
    push(&ctx, &name, &args.push)?;
    out(branch_name(&name))?;
    Ok(0)
}
