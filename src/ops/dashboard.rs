//! What `git agent dashboard` shows: one snapshot of the tasks of one or more repositories
//! (as `list` sees them), each task's gateway decisions, and the latest output of the task
//! the user selected, rendered readably as `logs` does.
//!
//! Reads only, never prints. Every engine request is bounded in time, so a slow or dead
//! engine makes a snapshot that says so instead of one that never comes; the dashboard
//! gathers on a background task and redraws from the last snapshot meanwhile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Ctx;
use super::inspect;
use super::logs::{self, Output};
use crate::egress::log::Connection;
use crate::runtime::select::Engine;

/// Output lines kept of the selected task.
pub const OUTPUT_LINES: usize = 200;

/// Connections kept per task (the newest).
pub const CONNECTIONS_PER_TASK: usize = 200;

/// How long one engine read may take before the snapshot gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A task, across repositories: the repository's work tree and the task's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub repo: PathBuf,
    pub name: String,
}

/// One task as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub key: TaskKey,
    /// The repository's short name (its directory's), shown with `--all`.
    pub repo_label: String,
    pub agent: String,
    /// As `list` shows it (`running`, `running?`, `queued #2`, `exited (0)`).
    pub status: String,
    pub created: i64,
    pub files_changed: u64,
    pub insertions: u64,
    pub deletions: u64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub queue_position: Option<usize>,
    /// The gateway's decisions, oldest first (live while the gateway runs, else as kept).
    pub connections: Vec<Connection>,
}

/// The latest output of one task.
#[derive(Debug, Clone, Default)]
pub struct OutputView {
    pub key: Option<TaskKey>,
    /// Readable lines (control characters escaped), oldest first.
    pub lines: Vec<String>,
    /// Why there is no (live) output, when there is none.
    pub note: Option<String>,
}

/// One refresh of the dashboard.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tasks: Vec<TaskView>,
    /// Why the engine could not be asked, if it could not: the statuses are then what the
    /// refs last recorded.
    pub unreachable: Option<String>,
    /// Repositories that could not be read, each with why.
    pub problems: Vec<String>,
    pub output: OutputView,
    /// When it was taken (Unix seconds); 0 before the first one.
    pub taken: i64,
}

/// The repositories to show: the one at `cwd` (when it is one), and with `all` every
/// repository in the registry ([`crate::registry`]) that checks out as the one its entry
/// names, in a directory of this user's. Also returns a note for each entry skipped.
pub fn repositories(cwd: &Path, all: bool) -> (Vec<PathBuf>, Vec<String>) {
    let mut repos = Vec::new();
    let mut skipped = Vec::new();
    if let Ok(git) = crate::git::Git::discover(cwd) {
        repos.push(git.dir);
    }
    if !all {
        return (repos, skipped);
    }
    for (path, entry) in crate::registry::entries() {
        if repos.contains(&path) {
            continue;
        }
        let git = crate::git::Git::discover(&path)
            .ok()
            .filter(|g| g.dir == path && owned_directory(&path));
        let named = git.as_ref().is_some_and(|g| {
            entry.file_name().map(|n| n.to_string_lossy().into_owned())
                == Some(crate::registry::entry_name(&g.common_dir))
        });
        if named {
            repos.push(path);
        } else {
            skipped.push(format!(
                "skipping {}: not a repository of yours that the registry names",
                path.display()
            ));
        }
    }
    (repos, skipped)
}

/// Is `path` a directory this user owns (not a link)?
fn owned_directory(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions and cannot fail.
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == unsafe { libc::getuid() })
}

/// `fut`, or `None` once `limit` has passed (it only reads, so it may be dropped).
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

/// Take one snapshot of `repos`, with the output of `selected` (if any).
pub async fn gather(repos: &[PathBuf], selected: Option<&TaskKey>) -> Snapshot {
    let mut snap = Snapshot {
        taken: crate::task::now(),
        ..Snapshot::default()
    };
    // Asked once per snapshot, tasks or not, so the dashboard can say the engine is gone.
    let engine = match within(READ_TIMEOUT, super::engine_for_reading()).await {
        Some(Ok(rt)) => Some(rt),
        Some(Err(e)) => {
            snap.unreachable = Some(format!("{e:#}"));
            None
        }
        None => {
            snap.unreachable = Some(format!(
                "the container engine did not answer within {}s",
                READ_TIMEOUT.as_secs()
            ));
            None
        }
    };
    for repo in repos {
        let ctx = match Ctx::open_at(repo) {
            Ok(ctx) => ctx,
            Err(e) => {
                snap.problems.push(format!("{}: {e:#}", repo.display()));
                continue;
            }
        };
        match inspect::list(&ctx).await {
            Ok(listing) => {
                if snap.unreachable.is_none() {
                    snap.unreachable = listing.unchecked.clone();
                }
                for row in listing.rows {
                    let connections = if row.fetched_from.is_none() {
                        connections(&ctx, engine.as_ref(), &row.name).await
                    } else {
                        Vec::new()
                    };
                    snap.tasks.push(view(repo, row, connections));
                }
            }
            Err(e) => snap.problems.push(format!("{}: {e:#}", repo.display())),
        }
        if let Some(key) = selected.filter(|k| &k.repo == repo) {
            snap.output = output(&ctx, key).await;
        }
    }
    snap
}

fn view(repo: &Path, row: inspect::Row, connections: Vec<Connection>) -> TaskView {
    TaskView {
        key: TaskKey {
            repo: repo.to_path_buf(),
            name: row.name,
        },
        // A directory name may hold anything; it is drawn on the terminal.
        repo_label: crate::error::sanitize(
            &repo
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| repo.display().to_string()),
        ),
        agent: row.agent,
        status: row.status_text,
        created: row.created,
        files_changed: row.files_changed,
        insertions: row.insertions,
        deletions: row.deletions,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cost_usd: row.cost_usd,
        queue_position: row.queue_position,
        connections,
    }
}

/// A task's gateway decisions, the newest [`CONNECTIONS_PER_TASK`]; none when they cannot be
/// read in time.
async fn connections(ctx: &Ctx, engine: Option<&Engine>, task: &str) -> Vec<Connection> {
    let Ok(loaded) = ctx.store.resolve(task) else {
        return Vec::new();
    };
    if loaded.record.network.is_none() {
        return Vec::new();
    }
    // A task on a named engine has its gateway there.
    let own = match loaded.record.engine {
        Some(_) => within(
            READ_TIMEOUT,
            super::engine_of_for_reading(ctx, &loaded.record),
        )
        .await
        .and_then(Result::ok),
        None => None,
    };
    let engine = match (&own, loaded.record.engine.is_some()) {
        (Some(own), _) => Some(own),
        (None, true) => None,
        (None, false) => engine,
    };
    let read = crate::sandbox::gateway::connections(engine, &ctx.store, &loaded);
    let mut conns = within(READ_TIMEOUT, read)
        .await
        .and_then(Result::ok)
        .unwrap_or_default();
    let extra = conns.len().saturating_sub(CONNECTIONS_PER_TASK);
    conns.drain(..extra);
    conns
}

/// The latest output of task `key`, rendered readably.
async fn output(ctx: &Ctx, key: &TaskKey) -> OutputView {
    let mut view = OutputView {
        key: Some(key.clone()),
        ..OutputView::default()
    };
    let opened = match within(READ_TIMEOUT, logs::open(ctx, &key.name)).await {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            view.note = Some(crate::error::sanitize(&e.to_string()));
            return view;
        }
        None => {
            view.note = Some("the container engine did not answer in time".into());
            return view;
        }
    };
    let raw = match opened.output {
        Output::Live { rt, container } => {
            let mut buf = Vec::new();
            let read = logs::copy_live(&rt, &container, false, Some(OUTPUT_LINES), &mut buf);
            match within(READ_TIMEOUT, read).await {
                Some(Ok(())) => buf,
                Some(Err(e)) => {
                    view.note = Some(crate::error::sanitize(&e.to_string()));
                    buf
                }
                None => {
                    view.note = Some("the container engine did not answer in time".into());
                    buf
                }
            }
        }
        Output::Kept {
            transcript,
            unchecked,
        } => {
            view.note = unchecked.map(|_| "kept output (the engine cannot be reached)".into());
            logs::tail(transcript, Some(OUTPUT_LINES))
        }
    };
    view.lines = readable(&raw, opened.structured);
    view
}

/// Output as a person reads it: a structured transcript as messages and tool calls (as
/// `logs` renders it), anything else with control characters escaped; tabs become spaces.
/// The last [`OUTPUT_LINES`] lines.
pub fn readable(raw: &[u8], structured: Option<crate::agent::OutputFormat>) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let shown = if let Some(format) = structured {
            match format.render_line(line) {
                Some(r) => r,
                None => continue,
            }
        } else {
            crate::error::sanitize(line)
        };
        // A rendered message may span lines; each is escaped already.
        lines.extend(shown.lines().map(|l| l.replace('\t', "    ")));
    }
    let extra = lines.len().saturating_sub(OUTPUT_LINES);
    lines.drain(..extra);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_escaped_and_capped() {
        let lines = readable(b"ok\n\x1b[2Jclear\x07\ta\rb\r\n", None);
        // A carriage return inside a line could overwrite what the pane shows: escaped.
        assert_eq!(lines, ["ok", "\\x1b[2Jclear\\x07    a\\x0db"]);
        let many: String = (0..OUTPUT_LINES + 10).map(|i| format!("{i}\n")).collect();
        let lines = readable(many.as_bytes(), None);
        assert_eq!(lines.len(), OUTPUT_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("209"));
    }

    #[test]
    fn a_transcript_reads_as_messages() {
        let t = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hello\u001b[31m there"}]}}"#;
        let lines = readable(
            t.as_bytes(),
            Some(crate::agent::OutputFormat::ClaudeStreamJson),
        );
        assert!(lines.iter().any(|l| l.contains("hello")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("\"type\"")), "{lines:?}");
    }

    #[test]
    fn a_directory_outside_a_repository_has_no_tasks_to_show() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (repos, _) = repositories(dir.path(), false);
        assert!(repos.is_empty());
    }
}
