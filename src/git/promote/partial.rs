//! Partial promotion: `git agent commit <task> -- <pathspec>...` promotes only the changes to
//! the paths the pathspec matches, and a later `commit` (with no pathspec, or another one)
//! promotes the rest on top.
//!
//! The semantics, decided here and documented in the README:
//! - The branch stays linear. Each task commit (in the order [`super::plan`] lists them, then
//!   the uncommitted snapshot) becomes one commit on top of the previous one, whose tree is
//!   the previous tree with every path that commit changed (against its first parent) AND
//!   that the pathspec matches set to that commit's version (added, changed or deleted),
//!   where the branch still holds the version that commit changed from: a change whose
//!   starting point is not on the branch (it was promoted already, at a later version) is
//!   skipped. A commit that changes nothing on the branch this way is dropped.
//! - While a branch holds a partial promotion, the next `commit` replays the task's commits
//!   again from the last full promotion (or the base), restricted to its own pathspec (all
//!   paths without one), on top of the branch: what is there already makes no change, so
//!   only the rest is written, and commits whose changes were all promoted are dropped.
//! - The record keeps the pathspecs promoted so far ([`crate::task::Promotion::pathspec`],
//!   empty once everything is) and where replays start ([`crate::task::Promotion::replay_from`]);
//!   each commit's note says `git-agent-pathspec:` (a JSON list) when it was partial.
//!
//! Pathspecs are the user's and keep git's magic; paths from the task's trees are hostile and
//! only ever travel NUL-separated on stdin (`update-index -z --index-info`), never as
//! arguments. The new trees are written by git into the repository's object store (trees of
//! blobs it holds already; unreferenced ones are garbage for `git gc` if the promotion fails).

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::recreate::{Job, Parent};
use super::{Plan, PromoteError, Source};
use crate::git::Git;
use crate::git::sensitive::parse_raw;

/// One commit the partial promotion writes: its job and the task commit it came from.
pub struct Written {
    pub jobs: Vec<Job>,
    pub sources: Vec<String>,
}

/// A commit to replay: its id, its first parent, its message (`None`: the snapshot, whose
/// message is the user's).
struct Step<'a> {
    id: &'a str,
    parent: String,
    message: Option<&'a str>,
}

/// The jobs of a partial promotion (or a replay after one) of `plan` restricted to
/// `pathspec` (empty: every path), on top of `start` (the branch tip, or the base). `note`
/// makes each commit's provenance note from its source id.
pub fn jobs(
    git: &Git,
    base: &str,
    start: &str,
    plan: &Plan,
    pathspec: &[String],
    message: Option<&str>,
    note: &dyn Fn(&str, Option<&Source>) -> String,
) -> std::result::Result<Written, PromoteError> {
    let scratch = tempfile::Builder::new()
        .prefix("partial-")
        .tempdir()
        .context("cannot make a scratch directory for the partial promotion")?;
    let index = scratch.path().join("index");
    let with_index = |args: &[&str], input: Option<&[u8]>| -> Result<String> {
        let mut cmd = git.command();
        cmd.env("GIT_INDEX_FILE", &index).args(args);
        let out = crate::git::output_of(&mut cmd, input)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    };
    let start_tree = git.run(["rev-parse", "--verify", &format!("{start}^{{tree}}")])?;
    with_index(&["read-tree", &start_tree], None)?;
    // What the branch holds at each path, as `(mode, id)`, kept current as changes apply.
    let mut held: HashMap<String, (String, String)> = HashMap::new();
    for entry in git
        .run(["ls-tree", "-r", "-z", "--full-tree", &start_tree])?
        .split('\0')
    {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let mut f = meta.split(' ');
        if let (Some(mode), Some(_), Some(id)) = (f.next(), f.next(), f.next()) {
            held.insert(path.to_string(), (mode.to_string(), id.to_string()));
        }
    }
    let mut steps: Vec<Step> = plan
        .commits
        .iter()
        .map(|c| Step {
            id: &c.id,
            parent: c
                .parents
                .first()
                .cloned()
                .unwrap_or_else(|| base.to_string()),
            message: Some(&c.message),
        })
        .collect();
    if let Some(w) = plan.wip.as_deref() {
        steps.push(Step {
            id: w,
            parent: git.run(["rev-parse", "--verify", &format!("{w}^")])?,
            message: None,
        });
    }
    let mut out = Written {
        jobs: Vec::new(),
        sources: Vec::new(),
    };
    let mut tree = start_tree;
    for step in steps {
        let mut diff = vec![
            "diff-tree".to_string(),
            "-r".into(),
            "-z".into(),
            "--raw".into(),
            "--no-renames".into(),
            "--no-abbrev".into(),
            step.parent.clone(),
            step.id.to_string(),
            "--".into(),
        ];
        diff.extend(pathspec.iter().cloned());
        let raw = git.run(&diff)?;
        let changes: Vec<_> = parse_raw(&raw)
            .into_iter()
            .filter(|c| {
                let from = (c.status != 'A').then(|| (c.old_mode.clone(), c.old_oid.clone()));
                held.get(&c.path) == from.as_ref()
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        let mut info = Vec::new();
        for c in &changes {
            if c.status == 'D' {
                held.remove(&c.path);
            } else {
                held.insert(c.path.clone(), (c.new_mode.clone(), c.new_oid.clone()));
            }
            if c.status == 'D' {
                info.extend_from_slice(format!("0 {}\t", "0".repeat(c.old_oid.len())).as_bytes());
            } else {
                info.extend_from_slice(format!("{} {}\t", c.new_mode, c.new_oid).as_bytes());
            }
            info.extend_from_slice(c.path.as_bytes());
            info.push(0);
        }
        with_index(&["update-index", "-z", "--index-info"], Some(&info))?;
        let next = with_index(&["write-tree"], None)?;
        if next == tree {
            continue;
        }
        let message = match step.message {
            Some(m) => m.to_string(),
            None => {
                let m = message
                    .filter(|m| !m.trim().is_empty())
                    .ok_or(PromoteError::EmptyMessage)?;
                format!("{}\n", m.trim_end())
            }
        };
        let parent = match out.jobs.len() {
            0 => Parent::Existing(start.to_string()),
            n => Parent::Job(n - 1),
        };
        let source = plan.commits.iter().find(|c| c.id == step.id);
        out.jobs.push(Job {
            tree: next.clone(),
            parents: vec![parent],
            message,
            note: note(step.id, source),
        });
        out.sources.push(step.id.to_string());
        tree = next;
    }
    Ok(out)
}

/// The note line that marks a partial commit: its pathspec as a JSON list (a pathspec may
/// hold any character, a newline too; JSON keeps it on one line).
pub fn note_line(pathspec: &[String]) -> String {
    format!(
        "git-agent-pathspec: {}\n",
        serde_json::to_string(pathspec).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::git;
    use super::*;

    /// Magic pathspecs work (here an exclusion), a commit left with no change is dropped, and
    /// replaying onto a branch that holds a later version skips the older change.
    #[test]
    fn magic_pathspecs_drop_empty_commits_and_replays_skip_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "-b", "main"]);
        git(d, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git(d, &["rev-parse", "HEAD"]);
        std::fs::write(d.join("keep"), "1\n").unwrap();
        std::fs::write(d.join("skip"), "1\n").unwrap();
        git(d, &["add", "."]);
        git(d, &["commit", "-qm", "both"]);
        std::fs::write(d.join("skip"), "2\n").unwrap();
        git(d, &["commit", "-qam", "skip only"]);
        std::fs::write(d.join("keep"), "2\n").unwrap();
        git(d, &["commit", "-qam", "keep again"]);
        let head = git(d, &["rev-parse", "HEAD"]);
        let g = Git::discover(d).unwrap();
        let plan = super::super::plan(&g, &base, &head, None, None).unwrap();
        let note = |s: &str, _: Option<&Source>| format!("source {s}\n");
        let spec = [":(exclude)skip".to_string()];
        let w = jobs(&g, &base, &base, &plan, &spec, None, &note).unwrap();
        assert_eq!(w.jobs.len(), 2, "'skip only' is dropped");
        let last = &w.jobs[1].tree;
        assert_eq!(git(d, &["ls-tree", "--name-only", last]), "keep");
        assert_eq!(git(d, &["show", &format!("{last}:keep")]), "2");

        // A branch that already holds keep=2: replaying everything skips the older keep=1.
        let held = git(d, &["commit-tree", last, "-p", &base, "-m", "held"]);
        let w = jobs(&g, &base, &held, &plan, &[], None, &note).unwrap();
        let messages: Vec<&str> = w.jobs.iter().map(|j| j.message.trim()).collect();
        assert_eq!(messages, ["both", "skip only"]);
        let tip = &w.jobs[1].tree;
        assert_eq!(tip, &git(d, &["rev-parse", &format!("{head}^{{tree}}")]));
    }

    #[test]
    fn a_pathspec_with_a_newline_stays_on_its_note_line() {
        let line = note_line(&["a\ngit-agent-task: other".into(), "-x".into()]);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.starts_with("git-agent-pathspec: [\"a\\ngit-agent-task: other\""));
    }
}
