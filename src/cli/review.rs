//! `git agent review`: what a task changed, with its status and output.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::{Ctx, engine_for_reading, term};
use crate::error::sanitize;
use crate::git::promote::{self, Plan};
use crate::git::sensitive::claims::{self, Claim};
use crate::git::sensitive::{self, Flag, RawChange, parse_diff_tree, parse_raw};
use crate::runtime::Runtime;
use crate::task::branch_name;
use crate::task::store::Loaded;

mod visible;

/// Show what a task changed against its base: a summary, its status and exit code, the tail
/// of its output, the full message of every commit `git agent commit` will re-create, changes
/// that need a second look, then the diff (through git's pager).
///
/// Changes are flagged from every commit that commit will re-create (each one's own diff) and
/// the uncommitted work, not only the net diff: a file added in one commit and removed in the
/// next is still flagged, with the commits it is in. Flagged: files that run code when the
/// branch is checked out, opened, built or tested (CI, hooks, direnv and dotenv files, editor
/// tasks, dev containers, build, package-manager and toolchain files, agent instructions,
/// attributes, submodules; the table is in docs/security.md), symbolic links, exec bits,
/// binary and large files (with size and blob id), message lines that claim people
/// (Signed-off-by, Reviewed-by, Co-authored-by and the like, also disguised) and author or
/// committer identities the agent set.
///
/// Everything the agent wrote is shown escaped: terminal controls, bidi overrides and
/// invisible characters appear as \x1b or \u{202e}. No diff driver, external diff or textconv
/// runs, and no attribute hides a text file.
///
/// When the container engine cannot be reached, review shows the last synced work and says
/// the runtime status is unknown (a live status is shown as `running?`).
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Only the diffstat.
    #[arg(long)]
    pub stat: bool,
    /// Only the names of changed files.
    #[arg(long, conflicts_with = "stat")]
    pub name_only: bool,
    /// Machine-readable summary on stdout.
    #[arg(long, conflicts_with_all = ["stat", "name_only"])]
    pub json: bool,
    /// Do not sync first; review what was last synced.
    #[arg(long)]
    pub no_sync: bool,
    /// Instead of the net diff, show each commit `git agent commit` will re-create (and the
    /// uncommitted changes) with its own patch: content added and removed again is seen too.
    #[arg(long, conflicts_with_all = ["stat", "name_only", "json"])]
    pub commits: bool,
}

#[derive(Serialize)]
struct FileChange {
    path: String,
    added: Option<u64>,
    removed: Option<u64>,
}

/// One commit that `commit` will re-create, as review shows it.
#[derive(Serialize)]
struct CommitJson {
    id: String,
    /// The agent's author and committer: `commit` writes the user's identity instead and
    /// keeps these in the provenance note.
    author: String,
    committer: String,
    /// True when the agent set an identity other than the sandbox's own.
    foreign_identity: bool,
    message: String,
    claims: Vec<Claim>,
}

#[derive(Serialize)]
struct BinaryJson {
    path: String,
    old_size: Option<u64>,
    new_size: Option<u64>,
    old_blob: String,
    new_blob: String,
}

#[derive(Serialize)]
struct ReviewJson<'a> {
    task: &'a str,
    agent: &'a str,
    status: &'a str,
    /// Whether the engine confirmed the status (false: it could not be reached, and the
    /// work shown is the last synced).
    status_checked: bool,
    exit_code: Option<i64>,
    base: &'a str,
    head: Option<&'a str>,
    wip: Option<&'a str>,
    /// The commits `git agent commit` will re-create, in order.
    commits: Vec<CommitJson>,
    /// Commits of the task already on its branch.
    already_committed: u64,
    files: Vec<FileChange>,
    /// Changed files with binary content (not shown as text in the diff).
    binary: Vec<BinaryJson>,
    sensitive: Vec<Flag>,
    network: Option<super::network::NetworkUse>,
}

/// Per-file line counts between two commits, every non-binary file counted as text whatever
/// the attributes say (git's numstat reports `-` for attribute-binary files even with
/// `--text`, so those are counted from their patch).
fn numstat(ctx: &Ctx, from: &str, to: &str, binary: &[BinaryJson]) -> Result<Vec<FileChange>> {
    let text = ctx.git.run([
        "diff",
        "--numstat",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--text",
        from,
        to,
    ])?;
    let mut files = Vec::new();
    for entry in text.split('\0').filter(|e| !e.is_empty()) {
        let mut parts = entry.splitn(3, '\t');
        let (Some(a), Some(r), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        files.push(FileChange {
            path: p.to_string(),
            added: a.parse().ok(),
            removed: r.parse().ok(),
        });
    }
    let hidden: Vec<usize> = (0..files.len())
        .filter(|i| files[*i].added.is_none() && !binary.iter().any(|b| b.path == files[*i].path))
        .collect();
    if !hidden.is_empty() {
        let mut diff = ctx.git.command();
        diff.args([
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            "--no-renames",
            "--patch",
            from,
            to,
            "--",
        ]);
        for i in &hidden {
            diff.arg(format!(":(top,literal){}", files[*i].path));
        }
        let out = crate::git::output_of(&mut diff, None)?;
        for (i, (a, r)) in hidden.iter().zip(visible::count_lines(&out.stdout)) {
            files[*i].added = Some(a);
            files[*i].removed = Some(r);
        }
    }
    Ok(files)
}

/// Size and binary-ness of blobs, read in-process (no git process per blob).
struct Blobs {
    repo: Option<git2::Repository>,
    seen: HashMap<String, (Option<u64>, bool)>,
}

impl Blobs {
    fn open(ctx: &Ctx) -> Blobs {
        Blobs {
            repo: git2::Repository::open(&ctx.git.common_dir).ok(),
            seen: HashMap::new(),
        }
    }

    /// `(size, binary)` of a blob; binary as git decides it (a NUL in the first 8000 bytes).
    fn facts(&mut self, oid: &str) -> (Option<u64>, bool) {
        if oid.bytes().all(|b| b == b'0') {
            return (None, false);
        }
        if let Some(f) = self.seen.get(oid) {
            return *f;
        }
        let f = self
            .repo
            .as_ref()
            .and_then(|r| {
                let blob = r.find_blob(git2::Oid::from_str(oid).ok()?).ok()?;
                let c = blob.content();
                Some((Some(c.len() as u64), c[..c.len().min(8000)].contains(&0)))
            })
            .unwrap_or((None, false));
        self.seen.insert(oid.to_string(), f);
        f
    }

    fn fill(&mut self, changes: &mut [RawChange]) {
        for c in changes.iter_mut() {
            if c.status == 'D' || c.new_mode == "160000" {
                continue;
            }
            let (size, binary) = self.facts(&c.new_oid);
            c.new_size = size;
            c.binary = binary;
        }
    }
}

/// What review knows about a task's work before printing anything.
struct Facts {
    plan: Plan,
    /// Commits of `base..head` in total (promoted or not).
    total_commits: u64,
    net: Vec<RawChange>,
    binary: Vec<BinaryJson>,
    flags: Vec<Flag>,
}

/// A short label for a commit in flags.
fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

const WIP_LABEL: &str = "uncommitted changes";

/// Every commit `commit` will re-create is looked at on its own (its diff against each
/// parent), with the uncommitted snapshot and the net diff: what was added in one commit and
/// removed in the next is still flagged.
fn gather(ctx: &Ctx, loaded: &Loaded) -> Result<Facts> {
    let r = &loaded.record;
    let head = loaded.ref_value("head").unwrap_or(&r.base);
    let wip = loaded.ref_value("wip");
    let tip = loaded.tip();
    let plan = promote::plan(&ctx.git, &r.base, head, wip, r.promoted.as_ref())?;
    let total_commits = ctx
        .git
        .run(["rev-list", "--count", head, &format!("^{}", r.base)])?
        .parse()
        .unwrap_or(0);
    let mut blobs = Blobs::open(ctx);
    let mut per: Vec<(String, Vec<RawChange>)> = Vec::new();
    let ids: String = plan
        .commits
        .iter()
        .map(|c| c.id.as_str())
        .chain(plan.wip.as_deref())
        .map(|id| format!("{id}\n"))
        .collect();
    if !ids.is_empty() {
        let raw = ctx.git.run_with_input(
            [
                "diff-tree",
                "--stdin",
                "-r",
                "-z",
                "--raw",
                "-m",
                "--no-renames",
                "--no-abbrev",
            ],
            ids.as_bytes(),
        )?;
        for (id, mut changes) in parse_diff_tree(&raw) {
            blobs.fill(&mut changes);
            let label = if Some(id.as_str()) == plan.wip.as_deref() {
                WIP_LABEL.to_string()
            } else {
                short(&id)
            };
            per.push((label, changes));
        }
    }
    let raw = ctx.git.run([
        "diff",
        "--raw",
        "-z",
        "--no-renames",
        "--no-abbrev",
        &r.base,
        tip,
    ])?;
    let mut net = parse_raw(&raw);
    blobs.fill(&mut net);
    let mut binary = Vec::new();
    for c in &net {
        let old = if c.old_mode == "160000" {
            (None, false)
        } else {
            blobs.facts(&c.old_oid)
        };
        if (c.binary || old.1) && c.new_mode != "160000" {
            binary.push(BinaryJson {
                path: c.path.clone(),
                old_size: old.0,
                new_size: c.new_size,
                old_blob: c.old_oid.clone(),
                new_blob: c.new_oid.clone(),
            });
        }
    }
    let flags = sensitive::collect(&per, &net);
    Ok(Facts {
        plan,
        total_commits,
        net,
        binary,
        flags,
    })
}

fn commits_json(plan: &Plan) -> Vec<CommitJson> {
    plan.commits
        .iter()
        .map(|c| CommitJson {
            id: c.id.clone(),
            author: c.author.clone(),
            committer: c.committer.clone(),
            foreign_identity: claims::foreign_identity(&c.author)
                || claims::foreign_identity(&c.committer),
            message: c.message.clone(),
            claims: claims::message_claims(&c.message),
        })
        .collect()
}

/// The flag lines of the attention section (already escaped).
fn attention(facts: &Facts, branch: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for f in &facts.flags {
        let mut line = format!("  ! {}: {}", visible::escape(&f.path), f.why);
        if !f.commits.is_empty() {
            let mut shown: Vec<String> = f.commits.iter().take(5).cloned().collect();
            if f.commits.len() > 5 {
                shown.push(format!("{} more", f.commits.len() - 5));
            }
            line += &format!(" (in {})", shown.join(", "));
        } else {
            line += &format!(" (in work already on {branch})");
        }
        if !f.in_final_diff {
            line += " (not in the final diff)";
        }
        lines.push(line);
    }
    for c in &facts.plan.commits {
        for claim in claims::message_claims(&c.message) {
            lines.push(format!(
                "  ! commit {} line {}: {}: {}",
                short(&c.id),
                claim.line,
                claim.why,
                visible::escape(claim.text.trim_end())
            ));
        }
        for (what, ident) in [("author", &c.author), ("committer", &c.committer)] {
            if claims::foreign_identity(ident) {
                lines.push(format!(
                    "  ! commit {}: {what} {} was set by the agent; `commit` re-creates it with your identity and keeps this one in the provenance note",
                    short(&c.id),
                    visible::escape(ident)
                ));
            }
        }
    }
    lines
}

/// Several attempts at one task (`spawn --agent a,b`), side by side.
async fn review_group(ctx: &Ctx, group: &str, members: Vec<Loaded>, sync: bool) -> Result<i32> {
    let rt = super::engine_view::engine_or_warn().await;
    let mut rows = Vec::new();
    for mut l in members {
        if let Some(rt) = &rt {
            if sync && l.record.sandbox.container.is_some() {
                let lock = super::lock_task(ctx, &l.record.name, "review").await?;
                let fresh = super::reload(ctx, &l.record.name)?;
                l = crate::ops::sync::if_possible(rt, ctx, fresh, &lock, &super::Stderr).await?;
            } else {
                l = crate::ops::inspect::effective(rt, &ctx.store, l).await?;
            }
        }
        rows.push(l);
    }
    let mut text = format!("group {group}: {} attempts\n", rows.len());
    for l in &rows {
        let r = &l.record;
        let status = match r.exit_code {
            Some(c) => format!("{} ({c})", r.status.as_str()),
            None => r.status.as_str().to_string(),
        };
        let run = r.stats.as_ref().map(|s| s.summary()).unwrap_or_default();
        text += &format!(
            "\n== {} ({} agent, {status}{}{})\n",
            r.name,
            r.agent,
            if run.is_empty() { "" } else { ", " },
            run
        );
        let stat = visible::escape(&ctx.git.run([
            "diff",
            "--stat",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            &r.base,
            l.tip(),
        ])?);
        if stat.is_empty() {
            text += "   no changes\n";
        }
        for line in stat.lines() {
            text += &format!("  {line}\n");
        }
    }
    text += "\nSee one attempt in full with `git agent review <task>`.\n";
    super::out(text.trim_end())?;
    Ok(0)
}

pub async fn run(args: ReviewArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    if ctx.store.names()?.iter().all(|n| n != &args.task) {
        let members: Vec<Loaded> = ctx
            .store
            .all()?
            .into_iter()
            .filter(|l| l.record.group.as_deref() == Some(args.task.as_str()))
            .collect();
        if !members.is_empty() {
            return review_group(&ctx, &args.task, members, !args.no_sync).await;
        }
    }
    let mut loaded = ctx.store.resolve(&args.task)?;
    let mut output_tail = None;
    let mut network = None;
    let mut checked = true;
    if loaded.record.sandbox.container.is_some() {
        match engine_for_reading().await {
            Ok(rt) => {
                if !args.no_sync {
                    let name = loaded.record.name.clone();
                    let lock = super::lock_task(&ctx, &name, "review").await?;
                    let fresh = super::reload(&ctx, &name)?;
                    loaded = crate::ops::sync::if_possible(&rt, &ctx, fresh, &lock, &super::Stderr)
                        .await?;
                } else {
                    loaded = crate::ops::inspect::effective(&rt, &ctx.store, loaded).await?;
                }
                let mut buf = Vec::new();
                let container = loaded.record.sandbox.container.clone().unwrap_or_default();
                if rt.logs(&container, false, Some(10), &mut buf).await.is_ok() {
                    output_tail = Some(sanitize(&String::from_utf8_lossy(&buf)));
                }
                network = super::network::network_use(Some(&rt), &ctx.store, &loaded).await?;
            }
            Err(e) => {
                eprintln!(
                    "git-agent: not syncing: {e}; runtime status unknown, showing the last synced work"
                );
                checked = false;
            }
        }
    }
    if network.is_none() {
        network = super::network::network_use(
            None::<&crate::runtime::docker::DockerRuntime>,
            &ctx.store,
            &loaded,
        )
        .await?;
    }
    let r = &loaded.record;
    let tip = loaded.tip().to_string();
    let facts = gather(&ctx, &loaded)?;
    if args.json {
        let files = numstat(&ctx, &r.base, &tip, &facts.binary)?;
        let json = ReviewJson {
            task: &r.name,
            agent: &r.agent,
            status: r.status.as_str(),
            status_checked: checked,
            exit_code: r.exit_code,
            base: &r.base,
            head: loaded.ref_value("head"),
            wip: loaded.ref_value("wip"),
            commits: commits_json(&facts.plan),
            already_committed: facts
                .total_commits
                .saturating_sub(facts.plan.commits.len() as u64),
            files,
            binary: facts.binary,
            sensitive: facts.flags,
            network,
        };
        super::out(visible::json_safe(&serde_json::to_string_pretty(&json)?))?;
        return Ok(0);
    }
    if args.name_only {
        let names: Vec<String> = facts.net.iter().map(|c| visible::escape(&c.path)).collect();
        if !names.is_empty() {
            super::out(names.join("\n"))?;
        }
        return Ok(0);
    }

    let tty = term::stdout_is_tty();
    let color = ctx
        .git
        .run([
            "config",
            "--get-colorbool",
            "color.diff",
            if tty { "true" } else { "false" },
        ])
        .map(|v| v == "true")
        .unwrap_or(false);
    let palette = color.then(|| visible::Palette::from_git(&ctx.git));
    let mut text = String::new();
    let unverified = !checked
        && matches!(
            r.status,
            crate::task::Status::Running | crate::task::Status::Creating
        );
    let status = match r.exit_code {
        Some(c) => format!("{} ({c})", r.status.as_str()),
        None if unverified => format!("{}?", r.status.as_str()),
        None => r.status.as_str().to_string(),
    };
    text += &format!("task    {} ({} agent, {status})\n", r.name, r.agent);
    text += &format!(
        "base    {}{}\n",
        &r.base[..12],
        r.base_branch
            .as_deref()
            .map(|b| format!(" (from {})", visible::escape(b)))
            .unwrap_or_default()
    );
    let n = facts.plan.commits.len();
    let already = facts.total_commits.saturating_sub(n as u64);
    text += &format!(
        "work    {n} commit{}{}{}\n",
        if n == 1 { "" } else { "s" },
        if facts.plan.wip.is_some() {
            " + uncommitted changes"
        } else {
            ""
        },
        if already > 0 {
            format!(" to commit ({already} already on {})", branch_name(&r.name))
        } else {
            String::new()
        }
    );
    for c in &facts.plan.commits {
        let message = visible::escape(&c.message);
        let mut lines = message.lines();
        text += &format!(
            "        {} {}\n",
            short(&c.id),
            lines.next().unwrap_or_default()
        );
        for l in lines {
            text += format!("        | {l}").trim_end_matches(' ');
            text += "\n";
        }
        if claims::foreign_identity(&c.author) {
            text += &format!("        author {}\n", visible::escape(&c.author));
        }
        if c.committer != c.author && claims::foreign_identity(&c.committer) {
            text += &format!("        committer {}\n", visible::escape(&c.committer));
        }
    }
    let flagged = attention(&facts, &branch_name(&r.name));
    if !flagged.is_empty() {
        text += "attention: changes to look at before promoting\n";
        for l in &flagged {
            text += l;
            text += "\n";
        }
    }
    if let Some(n) = &network {
        let mut l = n.lines().into_iter();
        text += &format!(
            "network {}\n",
            visible::escape(&l.next().unwrap_or_default())
        );
        for x in l {
            text += &format!("        {}\n", visible::escape(&x));
        }
    }
    if let Some(tail) = &output_tail
        && !tail.trim().is_empty()
    {
        text += "output  (last lines)\n";
        for l in tail.lines() {
            text += &format!("  | {}\n", visible::escape(l));
        }
    }
    text += "\n";
    for b in &facts.binary {
        let size = |s: Option<u64>| s.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
        text += &format!(
            "binary  {}: {} -> {} bytes (blob {} -> {}), not shown as text\n",
            visible::escape(&b.path),
            size(b.old_size),
            size(b.new_size),
            short(&b.old_blob),
            short(&b.new_blob)
        );
    }
    if args.commits {
        let ids: String = facts
            .plan
            .commits
            .iter()
            .map(|c| c.id.as_str())
            .chain(facts.plan.wip.as_deref())
            .map(|id| format!("{id}\n"))
            .collect();
        let mut log = ctx.git.command();
        log.args([
            "-c",
            "log.showSignature=false",
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "--no-color",
            "--no-mailmap",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            "-m",
            "--stat",
            "--patch",
            "--ignore-submodules=none",
            // Message lines indented, so none can pass for a diff header.
            "--format=commit %H%nAuthor: %an <%ae>%n%n%w(0,4,4)%B",
        ]);
        let out = crate::git::output_of(&mut log, Some(ids.as_bytes()))?;
        let mut body = text.into_bytes();
        body.extend_from_slice(visible::render_diff(&out.stdout, palette.as_ref()).as_bytes());
        page(&ctx, &body, tty)?;
        return Ok(0);
    }
    // No diff drivers, no textconv, every non-binary file as text whatever the attributes
    // say, no colour from git: what is shown is the content, escaped here.
    let mut diff = ctx.git.command();
    diff.args([
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--text",
        "--ignore-submodules=none",
        "--submodule=short",
        "--stat",
    ]);
    if !args.stat {
        diff.arg("--patch");
    }
    diff.args([&r.base, &tip]);
    if !facts.binary.is_empty() {
        diff.arg("--");
        for b in &facts.binary {
            diff.arg(format!(":(top,literal,exclude){}", b.path));
        }
    }
    let diff_out = crate::git::output_of(&mut diff, None)?;
    let mut body = text.into_bytes();
    body.extend_from_slice(visible::render_diff(&diff_out.stdout, palette.as_ref()).as_bytes());
    page(&ctx, &body, tty)?;
    Ok(0)
}

/// Show `body` through git's pager when stdout is a terminal, else print it.
fn page(ctx: &Ctx, body: &[u8], tty: bool) -> Result<()> {
    let pager = if tty {
        ctx.git.run(["var", "GIT_PAGER"]).unwrap_or_default()
    } else {
        String::new()
    };
    if pager.is_empty() || pager == "cat" {
        let mut o = std::io::stdout().lock();
        o.write_all(body)?;
        o.flush()?;
        return Ok(());
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &pager]).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        cmd.env("LESS", "FRX");
    }
    if std::env::var_os("LV").is_none() {
        cmd.env("LV", "-c");
    }
    let mut child = cmd.spawn().context("cannot start the pager")?;
    if let Some(mut stdin) = child.stdin.take() {
        // The user quitting the pager early closes this pipe; that is fine.
        let _ = stdin.write_all(body);
    }
    child.wait()?;
    Ok(())
}
