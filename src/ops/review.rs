//! Review: gather what a task changed against its base, as data: the commits `commit` will
//! re-create (the same [`crate::git::promote::plan`]), the net changes, binary files, the
//! changes that need a second look, its status and the tail of its output; and, for a group
//! of attempts, each member with its diffstat.
//!
//! Syncs first when asked and the engine is reachable; without the engine the last synced
//! work is reviewed and the status is marked unchecked. Returns data and raw git output; it
//! never escapes, colours, pages or prints (that is `cli::review`), and runs no diff driver,
//! external diff or textconv.

use serde::Serialize;

use crate::git::promote::{self, Plan};
use crate::git::sensitive::{self, Flag, RawChange, parse_diff_tree, parse_raw};
use crate::runtime::Runtime;
use crate::runtime::select::Engine;
use crate::task::store::Loaded;

use super::{Ctx, Event, Events, OpError, lock_task};

/// Label of the uncommitted-changes snapshot in flags.
pub const WIP_LABEL: &str = "uncommitted changes";

/// What to review.
#[derive(Debug, Clone)]
pub struct ReviewRequest {
    /// A task (any unique prefix of its name), or the exact name of a group of attempts.
    pub task: String,
    /// Sync first (when the engine is reachable).
    pub sync: bool,
    /// Only the changes to these paths (git pathspecs; empty: all).
    pub paths: Vec<String>,
    /// The output tail as the agent emitted it, not rendered (see [`output_tail`]).
    pub raw_output: bool,
}

/// A review: of one task, or of a group of attempts side by side.
pub enum Reviewed {
    Task(Box<TaskReview>),
    Group(GroupReview),
}

/// What review knows about one task's work.
pub struct TaskReview {
    pub loaded: Loaded,
    /// Whether the engine confirmed the status (false: it could not be reached, and the work
    /// is the last synced).
    pub status_checked: bool,
    /// The last lines of the task's output (escaped for a terminal already), when read.
    pub output_tail: Option<String>,
    /// The engine, when it was reached for a task with a container (for further live reads,
    /// such as the task's network use).
    pub engine: Option<Engine>,
    pub facts: Facts,
    /// The pathspec the review is limited to (empty: none).
    pub paths: Vec<String>,
}

/// The facts of a task's work (see [`gather`]).
pub struct Facts {
    /// The commits `git agent commit` will re-create, in order, and the snapshot after them.
    pub plan: Plan,
    /// Commits of `base..head` in total (promoted or not).
    pub total_commits: u64,
    /// The net changes, base to tip.
    pub net: Vec<RawChange>,
    /// Changed files with binary content (not shown as text in a diff).
    pub binary: Vec<BinaryFile>,
    /// Changes that need a second look, from each re-created commit and the net diff.
    pub flags: Vec<Flag>,
}

impl Facts {
    /// Commits of the task already on its branch.
    pub fn already_committed(&self) -> u64 {
        self.total_commits
            .saturating_sub(self.plan.commits.len() as u64)
    }
}

/// A changed file with binary content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinaryFile {
    pub path: String,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    pub old_blob: String,
    pub new_blob: String,
}

/// Lines added and removed in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub added: Option<u64>,
    pub removed: Option<u64>,
}

/// Several attempts at one task (`spawn --agent a,b`).
pub struct GroupReview {
    pub group: String,
    /// Each attempt (synced or refreshed when the engine answered) with its diffstat (raw
    /// git output, not escaped).
    pub members: Vec<(Loaded, String)>,
}

/// Why a review failed.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for ReviewError {
    fn from(e: anyhow::Error) -> Self {
        ReviewError::Other(e)
    }
}

impl OpError for ReviewError {
    fn hint(&self) -> Option<String> {
        None
    }

    fn below(&self) -> Option<&anyhow::Error> {
        let ReviewError::Other(e) = self;
        Some(e)
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ReviewError::Other(e) => Ok(e),
        }
    }
}

/// Review a task, or a group of attempts when `task` is a group's name and no task's.
pub async fn run(
    ctx: &Ctx,
    req: &ReviewRequest,
    events: &dyn Events,
) -> Result<Reviewed, ReviewError> {
    if ctx.store.names()?.iter().all(|n| n != &req.task) {
        let members: Vec<Loaded> = ctx
            .store
            .all()?
            .into_iter()
            .filter(|l| l.record.group.as_deref() == Some(req.task.as_str()))
            .collect();
        if !members.is_empty() {
            return Ok(Reviewed::Group(
                group(ctx, &req.task, members, req.sync, events).await?,
            ));
        }
    }
    Ok(Reviewed::Task(Box::new(task(ctx, req, events).await?)))
}

/// Bring a task up to date under its lock (sync when `sync`), else show its effective status
/// without recording anything (`review --no-sync` changes nothing).
pub(super) async fn fresh<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    loaded: Loaded,
    sync: bool,
    events: &dyn Events,
) -> anyhow::Result<Loaded> {
    if sync && loaded.record.sandbox.container.is_some() {
        let name = loaded.record.name.clone();
        let lock = lock_task(ctx, &name, "review", events).await?;
        let loaded = super::reload(ctx, &name)?;
        return super::sync::if_possible(rt, ctx, loaded, &lock, events)
            .await
            .map_err(OpError::into_report);
    }
    super::inspect::effective(rt, &ctx.store, loaded)
        .await
        .map_err(OpError::into_report)
}

/// How many lines of a task's output review shows.
const TAIL_LINES: usize = 10;
/// How many lines of a structured transcript are read to render [`TAIL_LINES`] from.
const TRANSCRIPT_READ: usize = 200;

/// The last lines of a task's output as review shows them: a structured transcript
/// rendered as `git agent logs` renders it, anything else as it came; escaped either way.
pub fn output_tail(output: &[u8], rendered: Option<crate::agent::OutputFormat>) -> String {
    let text = String::from_utf8_lossy(output);
    let Some(format) = rendered else {
        return crate::error::sanitize(&text);
    };
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| format.render_line(l))
        .flat_map(|r| r.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let mut tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if !tail.is_empty() {
        tail.push('\n');
    }
    tail
}

async fn task(
    ctx: &Ctx,
    req: &ReviewRequest,
    events: &dyn Events,
) -> Result<TaskReview, ReviewError> {
    let mut loaded = ctx.store.resolve(&req.task)?;
    let mut output_tail = None;
    let mut engine = None;
    let mut status_checked = true;
    if loaded.record.sandbox.container.is_some() {
        match super::engine_of_for_reading(ctx, &loaded.record).await {
            Ok(rt) => {
                loaded = fresh(&rt, ctx, loaded, req.sync, events).await?;
                let mut buf = Vec::new();
                let container = loaded.record.sandbox.container.clone().unwrap_or_default();
                let search = crate::data::Search::new(&ctx.git.dir);
                let rendered = super::logs::structured(&search, &loaded.record.agent)
                    .filter(|_| !req.raw_output);
                // A rendered transcript shows far fewer lines than it has: read more of it.
                let read = if rendered.is_some() {
                    TRANSCRIPT_READ
                } else {
                    TAIL_LINES
                };
                if rt
                    .logs(&container, false, Some(read), &mut buf)
                    .await
                    .is_ok()
                {
                    output_tail = Some(self::output_tail(&buf, rendered));
                }
                engine = Some(rt);
            }
            Err(e) => {
                events.emit(Event::step(
                    Some(&loaded.record.name),
                    format!(
                        "not syncing: {e}; runtime status unknown, showing the last synced work"
                    ),
                ));
                status_checked = false;
            }
        }
    }
    let facts = gather_paths(ctx, &loaded, &req.paths)?;
    Ok(TaskReview {
        loaded,
        status_checked,
        output_tail,
        engine,
        facts,
        paths: req.paths.clone(),
    })
}

async fn group(
    ctx: &Ctx,
    name: &str,
    members: Vec<Loaded>,
    sync: bool,
    events: &dyn Events,
) -> anyhow::Result<GroupReview> {
    let mut rows = Vec::new();
    for mut l in members {
        // Each member on its own engine; one that does not answer is shown as last synced.
        match super::engine_of_for_reading(ctx, &l.record).await {
            Ok(rt) => l = fresh(&rt, ctx, l, sync, events).await?,
            Err(e) => events.emit(Event::step(None, format!("{e}; runtime status unknown"))),
        }
        let stat = ctx.git.run([
            "diff",
            "--stat",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            &l.record.base,
            l.tip(),
        ])?;
        rows.push((l, stat));
    }
    Ok(GroupReview {
        group: name.to_string(),
        members: rows,
    })
}

/// A short label for a commit.
pub fn short(id: &str) -> String {
    id.get(..12).unwrap_or(id).to_string()
}

/// Every commit `commit` will re-create is looked at on its own (its diff against each
/// parent), with the uncommitted snapshot and the net diff: what was added in one commit and
/// removed in the next is still flagged.
pub fn gather(ctx: &Ctx, loaded: &Loaded) -> Result<Facts, ReviewError> {
    gather_paths(ctx, loaded, &[])
}

/// [`gather`] limited to the changes to `paths` (git pathspecs; empty: all). The commits
/// listed are still every one `commit` re-creates.
pub fn gather_paths(ctx: &Ctx, loaded: &Loaded, paths: &[String]) -> Result<Facts, ReviewError> {
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
    let mut per: Vec<(String, Vec<RawChange>)> = Vec::new();
    let ids = plan_ids(&plan);
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
                "--",
            ]
            .into_iter()
            .chain(paths.iter().map(String::as_str)),
            ids.as_bytes(),
        )?;
        for (id, changes) in parse_diff_tree(&raw) {
            let label = if Some(id.as_str()) == plan.wip.as_deref() {
                WIP_LABEL.to_string()
            } else {
                short(&id)
            };
            per.push((label, changes));
        }
    }
    let raw = ctx.git.run(
        [
            "diff",
            "--raw",
            "-z",
            "--no-renames",
            "--no-abbrev",
            &r.base,
            tip,
            "--",
        ]
        .into_iter()
        .chain(paths.iter().map(String::as_str)),
    )?;
    let mut net = parse_raw(&raw);
    let blobs = ctx.git.blob_facts(
        per.iter()
            .flat_map(|(_, c)| c.iter())
            .chain(net.iter())
            .filter(|c| has_new_blob(c))
            .map(|c| c.new_oid.as_str())
            .chain(
                net.iter()
                    .filter(|c| c.old_mode != "160000")
                    .map(|c| c.old_oid.as_str()),
            ),
    )?;
    let fill = |changes: &mut [RawChange]| {
        for c in changes.iter_mut().filter(|c| has_new_blob(c)) {
            let f = blobs.get(&c.new_oid).copied().unwrap_or_default();
            c.new_size = f.size;
            c.binary = f.binary;
        }
    };
    for (_, changes) in per.iter_mut() {
        fill(changes);
    }
    fill(&mut net);
    let mut binary = Vec::new();
    for c in &net {
        let old = if c.old_mode == "160000" {
            Default::default()
        } else {
            blobs.get(&c.old_oid).copied().unwrap_or_default()
        };
        if (c.binary || old.binary) && c.new_mode != "160000" {
            binary.push(BinaryFile {
                path: c.path.clone(),
                old_size: old.size,
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

/// Does this change leave a blob to look at (not a deletion, not a submodule)?
fn has_new_blob(c: &RawChange) -> bool {
    c.status != 'D' && c.new_mode != "160000"
}

/// The ids of the plan's commits and snapshot, one a line (input for `--stdin` commands).
fn plan_ids(plan: &Plan) -> String {
    plan.commits
        .iter()
        .map(|c| c.id.as_str())
        .chain(plan.wip.as_deref())
        .map(|id| format!("{id}\n"))
        .collect()
}

/// Per-file line counts of the net diff, every non-binary file counted as text whatever the
/// attributes say (git's numstat reports `-` for attribute-binary files even with `--text`,
/// so those are counted from their patch).
pub fn numstat(ctx: &Ctx, review: &TaskReview) -> Result<Vec<FileChange>, ReviewError> {
    let (from, to) = (&review.loaded.record.base, review.loaded.tip());
    let text = ctx.git.run(
        [
            "diff",
            "--numstat",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            from,
            to,
            "--",
        ]
        .into_iter()
        .chain(review.paths.iter().map(String::as_str)),
    )?;
    let mut files = parse_numstat(&text);
    let binary = &review.facts.binary;
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
        for (i, (a, r)) in hidden.iter().zip(count_lines(&out.stdout)) {
            files[*i].added = Some(a);
            files[*i].removed = Some(r);
        }
    }
    Ok(files)
}

/// Parse `git diff --numstat -z --no-renames` output (`-` counts become `None`).
fn parse_numstat(text: &str) -> Vec<FileChange> {
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
    files
}

/// Added and removed line counts of each file of a `git diff --patch` output, in order (git
/// counts attribute-"binary" files as `-` even with `--text`; this counts what was shown).
pub fn count_lines(diff: &[u8]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let (mut old_left, mut new_left) = (0u64, 0u64);
    for line in diff.split(|b| *b == b'\n') {
        if old_left > 0 || new_left > 0 {
            let last = out.last_mut();
            match (line.first(), last) {
                (Some(b'+'), Some(l)) => {
                    l.0 += 1;
                    new_left = new_left.saturating_sub(1);
                }
                (Some(b'-'), Some(l)) => {
                    l.1 += 1;
                    old_left = old_left.saturating_sub(1);
                }
                (Some(b'\\'), _) => {}
                _ => {
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                }
            }
        } else if line.starts_with(b"diff --git ") {
            out.push((0, 0));
        } else if line.starts_with(b"@@")
            && let Some((o, n)) = hunk_counts(line)
        {
            old_left = o;
            new_left = n;
        }
    }
    out
}

/// The old and new line counts of a `@@ -a[,b] +c[,d] @@` header.
pub fn hunk_counts(line: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    parts.next()?;
    let count = |s: &str| -> Option<u64> {
        match s[1..].split_once(',') {
            Some((_, n)) => n.parse().ok(),
            None => Some(1),
        }
    };
    let old = count(parts.next()?)?;
    let new = count(parts.next()?)?;
    Some((old, new))
}

/// Which diff to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// The net diffstat.
    Stat,
    /// The net diffstat and patch.
    Patch,
    /// Each commit `commit` will re-create (and the snapshot) with its own stat and patch.
    Commits,
}

/// The raw diff (git's output, no colour, not escaped) of a reviewed task. Binary files are
/// left out of the net diff (they are listed in [`Facts::binary`]); every other file is shown
/// as text whatever the attributes say.
pub fn diff(ctx: &Ctx, review: &TaskReview, kind: DiffKind) -> Result<Vec<u8>, ReviewError> {
    let r = &review.loaded.record;
    if kind == DiffKind::Commits {
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
        if !review.paths.is_empty() {
            log.arg("--").args(&review.paths);
        }
        let ids = plan_ids(&review.facts.plan);
        return Ok(crate::git::output_of(&mut log, Some(ids.as_bytes()))?.stdout);
    }
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
    if kind == DiffKind::Patch {
        diff.arg("--patch");
    }
    diff.args([r.base.as_str(), review.loaded.tip()]);
    if !review.facts.binary.is_empty() || !review.paths.is_empty() {
        diff.arg("--").args(&review.paths);
        for b in &review.facts.binary {
            diff.arg(format!(":(top,literal,exclude){}", b.path));
        }
    }
    Ok(crate::git::output_of(&mut diff, None)?.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream-json tail is shown as readable lines (never JSON), escaped; --raw keeps
    /// the JSON (escaped too); plain output stays as it came.
    #[test]
    fn a_transcript_tail_is_rendered_unless_raw() {
        let mut out = String::new();
        for i in 0..30 {
            out.push_str(&format!(
                "{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"step {i} \\u001b[2J\"}}]}}}}\n"
            ));
        }
        let tail = output_tail(
            out.as_bytes(),
            Some(crate::agent::OutputFormat::ClaudeStreamJson),
        );
        assert_eq!(tail.lines().count(), TAIL_LINES, "{tail}");
        assert!(
            tail.lines().all(|l| l.starts_with("assistant: step ")),
            "{tail}"
        );
        assert!(
            tail.contains("step 29") && !tail.contains("step 19 "),
            "{tail}"
        );
        assert!(!tail.contains('\x1b') && !tail.contains("{\""), "{tail}");
        let raw = output_tail(out.as_bytes(), None);
        assert!(
            raw.contains("{\"type\":\"assistant\"") && !raw.contains('\x1b'),
            "{raw}"
        );
        assert_eq!(
            output_tail(
                b"plain\n",
                Some(crate::agent::OutputFormat::ClaudeStreamJson)
            ),
            "plain\n"
        );
        assert_eq!(
            output_tail(b"", Some(crate::agent::OutputFormat::ClaudeStreamJson)),
            ""
        );
    }

    #[test]
    fn numstat_entries_keep_odd_paths_and_unknown_counts() {
        let files = parse_numstat("1\t2\ta b.txt\0-\t-\tpic.png\0\0garbage\0");
        assert_eq!(
            files,
            vec![
                FileChange {
                    path: "a b.txt".into(),
                    added: Some(1),
                    removed: Some(2)
                },
                FileChange {
                    path: "pic.png".into(),
                    added: None,
                    removed: None
                },
            ]
        );
    }

    #[test]
    fn an_empty_plan_has_no_ids() {
        assert_eq!(plan_ids(&Plan::default()), "");
        let plan = Plan {
            wip: Some("w".into()),
            ..Plan::default()
        };
        assert_eq!(plan_ids(&plan), "w\n");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn lines_are_counted_per_file() {
        let diff = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n--- a\n+++ b\n ctx\ndiff --git a/y b/y\nnew file mode 100644\ndiff --git a/z b/z\n@@ -0,0 +1 @@\n+z\n\\ No newline at end of file\n";
        assert_eq!(count_lines(diff), [(1, 1), (0, 0), (1, 0)]);
    }
}
