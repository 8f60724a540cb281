//! `git agent hooks install|uninstall|list`: git-agent's blocks inside the repository's git
//! hook files, and what each hook does when git runs it (`git agent hook-run <hook>`).
//!
//! The hook files are found where git runs them: `core.hooksPath` (relative to the top of
//! the work tree, a linked worktree's own, as git resolves it), else the common dir's
//! `hooks/`. The block is edited by [`crate::hookfile`] (appended after the user's content,
//! removed byte for byte). Its body is data: `hooks/git/<hook>` built in, overridable from
//! the user's config (`~/.config/git-agent/hooks/git/<hook>`), never from the repository.
//! Whether a hook does anything is chosen in git config (`agent.hooks.prePush` and so on),
//! never by a repository file.
//!
//! This module must not print or prompt; the pre-push gate is in [`crate::ops::gate`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::git::{Config, Git};
use crate::hookfile::{self, Edit, Refusal};

/// A git hook git-agent can put a block into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookKind {
    /// The hook's file name, as git names it.
    pub name: &'static str,
    /// The git config key that switches it on.
    pub key: &'static str,
    /// The built-in body of the block.
    builtin: &'static str,
}

pub const HOOKS: &[HookKind] = &[
    HookKind {
        name: "pre-push",
        key: "agent.hooks.prePush",
        builtin: include_str!("../../hooks/git/pre-push"),
    },
    HookKind {
        name: "post-commit",
        key: "agent.hooks.postCommit",
        builtin: include_str!("../../hooks/git/post-commit"),
    },
    HookKind {
        name: "prepare-commit-msg",
        key: "agent.hooks.prepareCommitMsg",
        builtin: include_str!("../../hooks/git/prepare-commit-msg"),
    },
];

/// What went wrong managing hook files.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    #[error("git-agent has no '{name}' hook")]
    Unknown { name: String },
    #[error("{} is a {line} script; git-agent's block is shell and cannot go into it", path.display())]
    NotShell { path: PathBuf, line: String },
    #[error("the hook body {} holds a git-agent marker line", path.display())]
    BadBody { path: PathBuf },
    #[error("bad value '{value}' for {key}")]
    BadSetting { key: String, value: String },
    /// A failure below the operation (git, the file system), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for HooksError {
    fn hint(&self) -> Option<String> {
        match self {
            HooksError::Unknown { .. } => Some(format!(
                "the hooks are: {}; see them with `git agent hooks list`",
                names().join(", ")
            )),
            HooksError::NotShell { path, .. } => Some(format!(
                "call `git agent hook-run <hook> \"$@\"` from {} yourself (passing git's stdin), or make it a shell script and run `git agent hooks install` again",
                path.display()
            )),
            HooksError::BadBody { path } => Some(format!(
                "remove the lines starting with `# >>> git-agent` or `# <<< git-agent` from {}",
                path.display()
            )),
            HooksError::BadSetting { key, .. } => Some(format!(
                "set a template name or `git agent add` options, e.g. `git config {key} review`, or remove it with `git config --unset {key}`"
            )),
            HooksError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            HooksError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            HooksError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

fn names() -> Vec<&'static str> {
    HOOKS.iter().map(|h| h.name).collect()
}

/// The hooks `names` asks for (every one when empty).
pub fn select(names: &[String]) -> Result<Vec<HookKind>, HooksError> {
    if names.is_empty() {
        return Ok(HOOKS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            HOOKS
                .iter()
                .find(|h| h.name == n)
                .copied()
                .ok_or_else(|| HooksError::Unknown { name: n.clone() })
        })
        .collect()
}

/// The directory git runs this work tree's hooks from.
pub fn hooks_dir(git: &Git) -> Result<PathBuf> {
    let out = git.run(["rev-parse", "--git-path", "hooks"])?;
    let path = PathBuf::from(out);
    Ok(if path.is_absolute() {
        path
    } else {
        git.dir.join(path)
    })
}

/// Where a hook's body comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodySource {
    BuiltIn,
    User(PathBuf),
}

/// The body of a hook's block: the user's override, else the built-in one. Never read from
/// the repository.
pub fn body(kind: HookKind) -> Result<(String, BodySource), HooksError> {
    if let Some(dir) = crate::data::user_config_dir() {
        let path = dir.join("hooks/git").join(kind.name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if !hookfile::body_is_valid(&text) {
                    return Err(HooksError::BadBody { path });
                }
                return Ok((text, BodySource::User(path)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot read {}", path.display()))
                    .into());
            }
        }
    }
    Ok((kind.builtin.to_string(), BodySource::BuiltIn))
}

/// What installing or removing did to one hook file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub hook: &'static str,
    pub path: PathBuf,
    /// `installed`, `updated`, `created`, `unchanged`, `removed`, `restored`, `absent`.
    pub what: &'static str,
    /// Whether git config switches the hook on.
    pub enabled: bool,
}

fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

fn create(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode asked for at creation is reduced by the umask; a hook must be executable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))?;
    Ok(())
}

/// Put git-agent's block into each hook file of `kinds`.
pub fn install(git: &Git, config: &Config, kinds: &[HookKind]) -> Result<Vec<Change>, HooksError> {
    let dir = hooks_dir(git)?;
    let version = env!("CARGO_PKG_VERSION");
    // Check every file before changing any.
    let mut plan = Vec::new();
    for kind in kinds {
        let path = dir.join(kind.name);
        let (body, _) = body(*kind)?;
        let existing = read(&path)?;
        let edit = hookfile::install(existing.as_deref(), kind.name, &body, version).map_err(
            |Refusal::NotShell(line)| HooksError::NotShell {
                path: path.clone(),
                line,
            },
        )?;
        let what = match (&existing, &edit) {
            (_, Edit::Unchanged) => "unchanged",
            (None, _) => "created",
            (Some(old), _) if hookfile::find(old, kind.name).is_some() => "updated",
            _ => "installed",
        };
        plan.push((*kind, path, existing.is_some(), edit, what));
    }
    let mut changes = Vec::new();
    for (kind, path, existed, edit, what) in plan {
        if let Edit::Write(bytes) = &edit {
            if existed {
                std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            } else {
                create(&path, bytes)?;
            }
        }
        changes.push(Change {
            hook: kind.name,
            path,
            what,
            enabled: enabled(config, kind)?,
        });
    }
    Ok(changes)
}

/// Take git-agent's block out of each hook file of `kinds`, restoring it byte for byte.
pub fn uninstall(
    git: &Git,
    config: &Config,
    kinds: &[HookKind],
) -> Result<Vec<Change>, HooksError> {
    let dir = hooks_dir(git)?;
    let mut changes = Vec::new();
    for kind in kinds {
        let path = dir.join(kind.name);
        let what = match read(&path)? {
            None => "absent",
            Some(content) => match hookfile::uninstall(&content, kind.name) {
                Edit::Unchanged => "absent",
                Edit::Write(bytes) => {
                    std::fs::write(&path, bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    "restored"
                }
                Edit::Remove => {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("cannot remove {}", path.display()))?;
                    "removed"
                }
            },
        };
        changes.push(Change {
            hook: kind.name,
            path,
            what,
            enabled: enabled(config, *kind)?,
        });
    }
    Ok(changes)
}

/// One hook as `hooks list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookState {
    pub hook: &'static str,
    pub path: PathBuf,
    /// The version of git-agent's block in the file, when there is one.
    pub installed: Option<String>,
    /// The file holds more than git-agent's block (the user's own hook).
    pub user_hook: bool,
    /// The git config key and whether it switches the hook on.
    pub key: &'static str,
    pub enabled: bool,
    pub body: BodySource,
}

/// Every hook git-agent has: where it is, whether its block is installed and whether it is on.
pub fn list(git: &Git, config: &Config) -> Result<Vec<HookState>, HooksError> {
    let dir = hooks_dir(git)?;
    HOOKS
        .iter()
        .map(|kind| {
            let path = dir.join(kind.name);
            let content = read(&path)?;
            let found = content
                .as_deref()
                .and_then(|c| hookfile::find(c, kind.name));
            let user_hook = match (&content, &found) {
                (None, _) => false,
                (Some(_), Some(f)) if f.created => false,
                (Some(c), _) => {
                    !matches!(hookfile::uninstall(c, kind.name), Edit::Remove) && !c.is_empty()
                }
            };
            Ok(HookState {
                hook: kind.name,
                path,
                installed: found.map(|f| f.version),
                user_hook,
                key: kind.key,
                enabled: enabled(config, *kind)?,
                body: body(*kind)?.1,
            })
        })
        .collect()
}

/// Whether git config switches `kind` on: `true` for the pre-push gate; for the post-commit
/// trigger a template or `add` options.
pub fn enabled(config: &Config, kind: HookKind) -> Result<bool, HooksError> {
    if kind.name == "post-commit" {
        return Ok(post_commit_args(config)?.is_some());
    }
    if kind.name == "prepare-commit-msg" {
        return Ok(super::draft_msg::options(config).is_some());
    }
    Ok(config.bool(kind.key, false)?)
}

/// The `git agent add` arguments `agent.hooks.postCommit` asks for (`None`: switched off).
/// A single word is a template name (`--type <word>`); otherwise the value is `add` options
/// separated by spaces (no shell quoting). `--base <commit>` is added when not given.
pub fn post_commit_args(config: &Config) -> Result<Option<Vec<String>>, HooksError> {
    let key = "agent.hooks.postCommit";
    let Some(value) = config.get(key) else {
        return Ok(None);
    };
    let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    match words.as_slice() {
        [] => Ok(None),
        [w] if ["false", "no", "off", "0"].contains(&w.to_ascii_lowercase().as_str()) => Ok(None),
        [w] if ["true", "yes", "on", "1"].contains(&w.to_ascii_lowercase().as_str()) => {
            Err(HooksError::BadSetting {
                key: key.into(),
                value: value.into(),
            })
        }
        [w] if !w.starts_with('-') => Ok(Some(vec!["--type".into(), w.clone()])),
        _ => Ok(Some(words)),
    }
}

/// What the post-commit hook started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostCommit {
    /// Switched off, or a commit git-agent itself made.
    Off,
    /// `git agent add` was started with these arguments, its output going to the log.
    Queued { args: Vec<String>, log: PathBuf },
}

/// Where hook runs that do not wait write what they did.
pub fn log_path(git: &Git, hook: &str) -> PathBuf {
    crate::task::lock::state_dir(git)
        .join("hooks")
        .join(format!("{hook}.log"))
}

/// The post-commit trigger: queue the configured task on the new commit with a detached
/// `git agent add` and return at once.
pub fn post_commit(git: &Git, config: &Config, nested: bool) -> Result<PostCommit, HooksError> {
    if nested {
        return Ok(PostCommit::Off);
    }
    let Some(mut args) = post_commit_args(config)? else {
        return Ok(PostCommit::Off);
    };
    // Options go before a `--` (after it, words are the exec agent's command).
    let options = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let given = |names: &[&str]| {
        args[..options].iter().any(|a| {
            names
                .iter()
                .any(|n| a == n || (n.starts_with("--") && a.starts_with(&format!("{n}="))))
        })
    };
    let mut extra = Vec::new();
    if !given(&["--base"]) {
        extra.extend(["--base".to_string(), git.resolve_commit("HEAD")?]);
    }
    // A template needs a description: the commit it is about, unless the setting gives one.
    if !given(&["-m", "-F", "--message", "--file"]) {
        let subject = git
            .run(["log", "-1", "--format=%h %s", "HEAD"])
            .unwrap_or_default();
        extra.extend(["-m".to_string(), format!("the commit {}", subject.trim())]);
    }
    args.splice(options..options, extra);
    let exe = std::env::current_exe().context("cannot find git-agent itself")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("add")
        .args(&args)
        .current_dir(&git.dir)
        // The hook's index is the commit's; the task reads the commit.
        .env_remove("GIT_INDEX_FILE");
    let log = log_path(git, "post-commit");
    crate::detach::spawn(cmd, &log)?;
    Ok(PostCommit::Queued { args, log })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_commit_setting_reads_a_template_or_options() {
        let args =
            |v: &str| post_commit_args(&Config::from_pairs(&[("agent.hooks.postCommit", v)]));
        assert_eq!(
            args("review").unwrap(),
            Some(vec!["--type".into(), "review".into()])
        );
        assert_eq!(args("false").unwrap(), None);
        assert_eq!(
            args("-t review --agent codex").unwrap(),
            Some(vec![
                "-t".into(),
                "review".into(),
                "--agent".into(),
                "codex".into()
            ])
        );
        assert!(matches!(args("true"), Err(HooksError::BadSetting { .. })));
        assert_eq!(post_commit_args(&Config::from_pairs(&[])).unwrap(), None);
    }

    #[test]
    fn every_builtin_body_calls_hook_run_and_holds_no_marker() {
        for h in HOOKS {
            assert!(hookfile::body_is_valid(h.builtin), "{}", h.name);
            assert!(
                h.builtin
                    .contains(&format!("git agent hook-run {} \"$@\"", h.name)),
                "{}",
                h.name
            );
        }
    }
}
