//! Tasks fetched from another clone: where their refs live and what of their records is kept.
//!
//! A task is shared with plain git (see `git agent share`): its refs are pushed to the
//! remote's `refs/agent/*`, and another clone fetches them into a namespace of their own,
//! `refs/agent-remotes/<remote>/<task>/...`, the way branches land in `refs/remotes/`. So a
//! fetch can never move a local task's refs (a task of the same name stays untouched), and a
//! fetched task is named `<remote>/<task>` everywhere (local task names have no `/`).
//!
//! Everything fetched was written by someone else, perhaps a stranger. Only the ref names
//! decide a fetched task's name (the remote and task parts are validated like task names, so
//! they are safe as file names); its record is read with tighter limits, and what in it
//! describes the other clone's runtime or promotion (container, volumes, network, egress
//! policy, promotion, merge, change summary) is dropped when it is read, so no command ever
//! looks for an engine object a fetched record names, and nothing the other clone did is
//! taken as done here. Commands that need a sandbox refuse fetched tasks
//! ([`StoreError::Fetched`]). This module must not print or reach the engine.

use super::TaskRecord;
use super::store::StoreError;

/// Where fetched tasks' refs live: `refs/agent-remotes/<remote>/<task>/<leaf>`.
pub const NAMESPACE: &str = "refs/agent-remotes/";
/// The notes ref the other clones' provenance notes are fetched into (one per remote).
pub const NOTES_NAMESPACE: &str = "refs/notes/agent-remotes/";
/// The most bytes a fetched task's `prompt.md` may have (a local one may have more).
pub const PROMPT_LIMIT: u64 = 1 << 20;

/// The remote and task of a fetched task's name (`origin/fix-1`), `None` for a local name.
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once('/')
}

/// Whether `name` names a fetched task.
pub fn is_fetched(name: &str) -> bool {
    split(name).is_some()
}

/// A remote name git-agent accepts as part of a fetched task's name: safe as a file name and
/// a ref component (`origin`, `alice`, `up-stream.2`).
fn valid_remote(remote: &str) -> bool {
    !remote.is_empty()
        && remote.len() <= 64
        && remote.starts_with(|c: char| c.is_ascii_alphanumeric())
        && remote
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !remote.contains("..")
        && !remote.ends_with('.')
        && !remote.ends_with(".lock")
}

/// The name of the fetched task whose refs are under `refs/agent-remotes/<remote>/<task>/`,
/// or why it is refused (a part that is no valid name).
pub fn qualified(remote: &str, task: &str) -> Result<String, String> {
    if !valid_remote(remote) {
        return Err(format!(
            "remote name '{}' is not one git-agent reads tasks from",
            crate::error::sanitize(remote)
        ));
    }
    super::TaskName::parse(task).map_err(|e| crate::error::sanitize(&e.to_string()))?;
    Ok(format!("{remote}/{task}"))
}

/// The refs prefix of a task's namespace, local or fetched.
pub fn prefix(name: &str) -> String {
    if is_fetched(name) {
        format!("{NAMESPACE}{name}/")
    } else {
        format!("refs/agent/{name}/")
    }
}

/// Make a fetched record safe to use here: its name is the one its refs give, and what
/// describes the other clone's runtime objects, egress policy, promotion and merge is
/// dropped (see the module doc).
pub fn sanitize(record: &mut TaskRecord, name: &str) {
    record.name = name.to_string();
    let s = &mut record.sandbox;
    s.container = None;
    s.volume = None;
    s.network = None;
    s.subnet = None;
    s.home_volume = None;
    s.gateway = None;
    s.state_volume = None;
    s.cache = None;
    record.network = None;
    record.promoted = None;
    record.merged = None;
    record.changes = None;
}

/// The git commands that share tasks through `remote` (see `git agent share`): pushing this
/// clone's tasks and provenance notes (without `+`, so a push never replaces a task another
/// clone pushed under the same name), and the fetch refspecs that bring the remote's tasks
/// and notes into their own namespaces (forced, as remote-tracking branches are). `None`
/// when `remote` is no name fetched tasks can have.
pub fn share_commands(remote: &str) -> Option<Vec<String>> {
    qualified(remote, "t").ok()?;
    Some(vec![
        format!(
            "git push {remote} 'refs/agent/*:refs/agent/*' 'refs/notes/agent:refs/notes/agent'"
        ),
        format!("git config --add remote.{remote}.fetch '+refs/agent/*:{NAMESPACE}{remote}/*'"),
        format!(
            "git config --add remote.{remote}.fetch '+refs/notes/agent:{NOTES_NAMESPACE}{remote}'"
        ),
        format!("git fetch {remote}"),
    ])
}

/// The refusal of a command that needs a sandbox, for fetched task `name`.
pub fn no_sandbox(name: &str, command: &str) -> StoreError {
    let (remote, _) = split(name).unwrap_or(("a remote", name));
    StoreError::Fetched {
        task: name.to_string(),
        remote: remote.to_string(),
        command: command.to_string(),
        hint: format!(
            "look at its work with `git agent review {name}`, promote it with `git agent commit {name}`, or run it again here with `git agent retry {name}`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_names_are_remote_and_task() {
        assert_eq!(split("origin/fix-1"), Some(("origin", "fix-1")));
        assert_eq!(split("fix-1"), None);
        assert_eq!(prefix("origin/fix-1"), "refs/agent-remotes/origin/fix-1/");
        assert_eq!(prefix("fix-1"), "refs/agent/fix-1/");
        assert_eq!(qualified("origin", "fix-1").unwrap(), "origin/fix-1");
        assert_eq!(qualified("Up_stream.2", "t").unwrap(), "Up_stream.2/t");
    }

    #[test]
    fn share_commands_name_the_namespaces() {
        let c = share_commands("origin").unwrap();
        assert_eq!(
            c[0],
            "git push origin 'refs/agent/*:refs/agent/*' 'refs/notes/agent:refs/notes/agent'"
        );
        assert_eq!(
            c[1],
            "git config --add remote.origin.fetch '+refs/agent/*:refs/agent-remotes/origin/*'"
        );
        assert!(share_commands("a;rm -rf /").is_none());
        assert!(share_commands("..").is_none());
    }

    #[test]
    fn path_tricks_are_no_names() {
        for (remote, task) in [
            ("..", "t"),
            ("origin", ".."),
            ("origin", "a..b"),
            (".hidden", "t"),
            ("origin", "T"),
            ("origin", "x.lock"),
            ("o\u{1b}[31m", "t"),
            ("", "t"),
            ("origin", ""),
        ] {
            let e = qualified(remote, task).unwrap_err();
            assert!(!e.contains('\u{1b}'), "{e:?}");
        }
    }

    #[test]
    fn a_fetched_record_keeps_no_runtime_or_promotion() {
        let mut r = TaskRecord {
            name: "local-task".into(),
            prompt: "p".into(),
            ..Default::default()
        };
        r.sandbox.container = Some("c".into());
        r.sandbox.volume = Some("v".into());
        r.sandbox.gateway = Some("g".into());
        r.promoted = Some(super::super::Promotion {
            task_tip: "a".into(),
            branch_tip: "b".into(),
            ..Default::default()
        });
        sanitize(&mut r, "origin/t");
        assert_eq!(r.name, "origin/t");
        assert_eq!(r.prompt, "p");
        assert_eq!(r.sandbox, super::super::Sandbox::default());
        assert!(r.promoted.is_none());
    }
}
