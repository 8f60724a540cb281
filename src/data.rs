//! Layered lookup of the files users customise: agent definitions, prompt templates and
//! dockerfile snippets. A name is looked up in the repository (`.git-agent/<kind>/`), then the
//! user's config (`$XDG_CONFIG_HOME/git-agent/<kind>/` or `~/.config/git-agent/<kind>/`), then
//! the built-in copies embedded from this crate's `templates/` and `dockerfiles/`.
//!
//! A repository is written by someone else, so its files are untrusted data. Of the kinds
//! here only prompt templates are plain data a repository may add ([`Kind::repository_data`]).
//! Every other kind (agents: where credentials go and which host values are read; stack
//! snippets: what runs at build time) is refused when the repository provides it, naming the
//! file, unless the user trusted that exact content with `git agent trust` (see
//! [`crate::trust`]). Repository files are read without following symbolic links, and only
//! if they are regular UTF-8 files of at most [`MAX_REPO_FILE`] bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::hinted;
use crate::trust::{self, Trust};

/// A kind of customisable file: directory name, file extension and built-in files.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub dir: &'static str,
    pub ext: &'static str,
    pub builtin: &'static [(&'static str, &'static str)],
}

pub const AGENTS: Kind = Kind {
    dir: "agents",
    ext: "toml",
    builtin: &[
        ("claude", include_str!("../templates/agents/claude.toml")),
        ("codex", include_str!("../templates/agents/codex.toml")),
        (
            "opencode",
            include_str!("../templates/agents/opencode.toml"),
        ),
        ("gemini", include_str!("../templates/agents/gemini.toml")),
        ("exec", include_str!("../templates/agents/exec.toml")),
    ],
};

pub const PROMPTS: Kind = Kind {
    dir: "templates",
    ext: "md",
    builtin: &[
        ("feat", include_str!("../templates/prompts/feat.md")),
        ("fix", include_str!("../templates/prompts/fix.md")),
        ("refactor", include_str!("../templates/prompts/refactor.md")),
        ("test", include_str!("../templates/prompts/test.md")),
        ("doc", include_str!("../templates/prompts/doc.md")),
        ("review", include_str!("../templates/prompts/review.md")),
        (
            "commit-msg",
            include_str!("../templates/prompts/commit-msg.md"),
        ),
    ],
};

pub const STACKS: Kind = Kind {
    dir: "dockerfiles/stacks",
    ext: "dockerfile",
    builtin: &[
        (
            "default",
            include_str!("../dockerfiles/stacks/default.dockerfile"),
        ),
        (
            "rust",
            include_str!("../dockerfiles/stacks/rust.dockerfile"),
        ),
        ("go", include_str!("../dockerfiles/stacks/go.dockerfile")),
        (
            "node",
            include_str!("../dockerfiles/stacks/node.dockerfile"),
        ),
        (
            "python",
            include_str!("../dockerfiles/stacks/python.dockerfile"),
        ),
        (
            "java",
            include_str!("../dockerfiles/stacks/java.dockerfile"),
        ),
    ],
};

impl Kind {
    /// Whether a repository may provide files of this kind without the user trusting them:
    /// only prompt templates, which are text for the agent and cannot say where credentials
    /// go, which host values are read or what runs. Everything else needs trust.
    pub fn repository_data(&self) -> bool {
        self.dir == PROMPTS.dir
    }

    /// What one file of this kind is, for messages.
    pub fn noun(&self) -> &'static str {
        match self.dir {
            "agents" => "agent",
            "templates" => "template",
            "dockerfiles/stacks" => "stack",
            "profiles" => "network profile",
            _ => "file",
        }
    }

    /// A file's path relative to the work tree when a repository provides it.
    pub fn repo_path(&self, name: &str) -> String {
        format!(".git-agent/{}/{name}.{}", self.dir, self.ext)
    }
}

/// The largest repository file git-agent reads.
pub const MAX_REPO_FILE: u64 = 1 << 20;

/// The user's git-agent config directory: `$XDG_CONFIG_HOME/git-agent` (when absolute) or
/// `~/.config/git-agent`.
pub fn user_config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("git-agent"))
}

/// Read the repository file `rel` (a `/`-separated path below the work tree `root`) as
/// untrusted input: `None` when it does not exist; an error naming it when it or a directory
/// on its way is a symbolic link (it could point at the user's secrets or outside the work
/// tree), when it is not a regular file, is larger than [`MAX_REPO_FILE`] or is not UTF-8.
pub fn read_repo_file(root: &Path, rel: &str) -> Result<Option<String>> {
    let refuse = |what: &str, why: &str| {
        hinted(
            format!("{what} {why}; git-agent does not read it from the repository"),
            format!("make {what} a regular file in the work tree, or remove it"),
        )
    };
    let parts: Vec<&str> = rel.split('/').collect();
    let mut path = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let shown = parts[..=i].join("/");
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {shown}")),
        };
        if meta.file_type().is_symlink() {
            return Err(refuse(&shown, "is a symbolic link"));
        }
        let last = i + 1 == parts.len();
        if !last && !meta.is_dir() {
            return Ok(None);
        }
        if last && !meta.is_file() {
            return Err(refuse(&shown, "is not a regular file"));
        }
    }
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("cannot read {rel}"))?;
    if !file.metadata()?.is_file() {
        return Err(refuse(rel, "is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_REPO_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {rel}"))?;
    if bytes.len() as u64 > MAX_REPO_FILE {
        return Err(refuse(
            rel,
            &format!("is larger than {} KiB", MAX_REPO_FILE / 1024),
        ));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| refuse(rel, "is not UTF-8 text"))
}

/// A file the repository provides, with the user's trust in it.
#[derive(Debug, Clone)]
pub struct RepoFile {
    /// Path relative to the work tree, e.g. `.git-agent/agents/claude.toml`.
    pub rel: String,
    pub path: PathBuf,
    pub text: String,
    pub trust: Trust,
}

impl RepoFile {
    /// May git-agent use it?
    pub fn usable(&self) -> bool {
        matches!(self.trust, Trust::Data | Trust::Trusted)
    }
}

/// Where a file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Repository(PathBuf),
    User(PathBuf),
    BuiltIn,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Repository(p) => write!(f, "repository ({})", p.display()),
            Origin::User(p) => write!(f, "user ({})", p.display()),
            Origin::BuiltIn => f.write_str("built-in"),
        }
    }
}

/// One customisable file.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub origin: Origin,
    pub text: String,
}

/// The directories searched, most specific first.
#[derive(Debug, Clone)]
pub struct Search {
    pub repo: Option<PathBuf>,
    pub user: Option<PathBuf>,
}

impl Search {
    /// Search the repository at `root` and the user's config directory.
    pub fn new(root: &Path) -> Search {
        Search {
            repo: Some(root.join(".git-agent")),
            user: user_config_dir(),
        }
    }

    /// The work tree searched, if any.
    pub fn root(&self) -> Option<&Path> {
        self.repo.as_deref().and_then(Path::parent)
    }

    /// The user's trust store (`trust.toml` in the user's config directory).
    pub fn trust_store(&self) -> Option<PathBuf> {
        self.user.as_ref().map(|u| u.join(trust::FILE))
    }

    /// The repository's file for `name` of `kind`, read as untrusted input, with the user's
    /// trust in it.
    pub fn repo_file(&self, kind: Kind, name: &str) -> Result<Option<RepoFile>> {
        let Some(root) = self.root() else {
            return Ok(None);
        };
        let rel = kind.repo_path(name);
        let Some(text) = read_repo_file(root, &rel)? else {
            return Ok(None);
        };
        let trust = if kind.repository_data() {
            Trust::Data
        } else {
            match self.trust_store() {
                Some(store) => trust::check(&store, root, &rel, text.as_bytes())?,
                None => Trust::Untrusted,
            }
        };
        Ok(Some(RepoFile {
            path: root.join(&rel),
            rel,
            text,
            trust,
        }))
    }

    /// `name` of `kind` from the user's config or the built-in set (never the repository).
    pub fn find_trusted(&self, kind: Kind, name: &str) -> Result<Option<Found>> {
        if let Some(user) = &self.user {
            let path = user.join(kind.dir).join(format!("{name}.{}", kind.ext));
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                return Ok(Some(Found {
                    name: name.to_string(),
                    origin: Origin::User(path),
                    text,
                }));
            }
        }
        Ok(kind
            .builtin
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| Found {
                name: n.to_string(),
                origin: Origin::BuiltIn,
                text: t.to_string(),
            }))
    }

    /// Find `name` of `kind`, most specific first. A repository file of a kind that needs
    /// trust is an error naming it unless the user trusted its exact content.
    pub fn find(&self, kind: Kind, name: &str) -> Result<Option<Found>> {
        if let Some(f) = self.repo_file(kind, name)? {
            if !f.usable() {
                let hidden = self.find_trusted(kind, name)?;
                return Err(refusal(kind, name, &f, hidden.as_ref()));
            }
            return Ok(Some(Found {
                name: name.to_string(),
                origin: Origin::Repository(f.path),
                text: f.text,
            }));
        }
        self.find_trusted(kind, name)
    }

    /// Every name of `kind` (built-in, user's, repository's), sorted.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        let mut names: BTreeMap<String, ()> = BTreeMap::new();
        for (n, _) in kind.builtin {
            names.insert(n.to_string(), ());
        }
        let repo_dir = self.root().and_then(|root| {
            // Never list through a symbolic link in the work tree (reading refuses it anyway).
            let mut p = root.to_path_buf();
            for part in format!(".git-agent/{}", kind.dir).split('/') {
                p.push(part);
                let meta = std::fs::symlink_metadata(&p).ok()?;
                if !meta.is_dir() {
                    return None;
                }
            }
            Some(p)
        });
        let user_dir = self.user.as_ref().map(|u| u.join(kind.dir));
        for dir in repo_dir.iter().chain(user_dir.iter()) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = file.strip_suffix(&format!(".{}", kind.ext)) {
                    names.insert(stem.to_string(), ());
                }
            }
        }
        names.into_keys().collect()
    }

    /// Every file of `kind` by name, as [`Search::find`] finds it (a more specific one hides
    /// the others of its name; a refused repository file is its error).
    pub fn list(&self, kind: Kind) -> Vec<(String, Result<Found>)> {
        self.names(kind)
            .into_iter()
            .filter_map(|name| match self.find(kind, &name) {
                Ok(Some(f)) => Some((name, Ok(f))),
                Ok(None) => None,
                Err(e) => Some((name, Err(e))),
            })
            .collect()
    }
}

/// The error for a repository file the user has not trusted (or that changed since).
fn refusal(kind: Kind, name: &str, f: &RepoFile, hidden: Option<&Found>) -> anyhow::Error {
    let noun = kind.noun();
    let what = match hidden {
        Some(h) if h.origin == Origin::BuiltIn => {
            format!("it would replace the built-in {noun} '{name}'")
        }
        Some(h) => format!("it would replace your {noun} '{name}' ({})", h.origin),
        None => format!("it defines the {noun} '{name}'"),
    };
    let shown = trust::shown_path(&f.path, &f.rel);
    let state = match &f.trust {
        Trust::Changed { .. } => "changed since you trusted it",
        _ => "is not trusted",
    };
    hinted(
        format!(
            "{shown} comes from the repository and {state}: {what}, and a repository file may not say where credentials go, which host values are read or what runs"
        ),
        format!(
            "read it, then trust this exact content with `git agent trust {}` (or delete the file)",
            trust::shell_word(&shown)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_hides_user_hides_builtin() {
        let root = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let search = Search {
            repo: Some(root.path().join(".git-agent")),
            user: Some(user.path().to_path_buf()),
        };
        assert_eq!(
            search.find(PROMPTS, "fix").unwrap().unwrap().origin,
            Origin::BuiltIn
        );
        std::fs::create_dir_all(user.path().join("templates")).unwrap();
        std::fs::write(user.path().join("templates/fix.md"), "user fix").unwrap();
        std::fs::write(user.path().join("templates/mine.md"), "mine").unwrap();
        let f = search.find(PROMPTS, "fix").unwrap().unwrap();
        assert!(matches!(f.origin, Origin::User(_)) && f.text == "user fix");
        std::fs::create_dir_all(root.path().join(".git-agent/templates")).unwrap();
        std::fs::write(root.path().join(".git-agent/templates/fix.md"), "repo fix").unwrap();
        let f = search.find(PROMPTS, "fix").unwrap().unwrap();
        assert!(matches!(f.origin, Origin::Repository(_)) && f.text == "repo fix");
        let names: Vec<String> = search
            .list(PROMPTS)
            .into_iter()
            .map(|(n, f)| {
                f.unwrap();
                n
            })
            .collect();
        assert!(names.contains(&"mine".to_string()) && names.contains(&"commit-msg".to_string()));
        assert!(search.find(PROMPTS, "nope").unwrap().is_none());
    }

    fn search_in(root: &Path, user: &Path) -> Search {
        Search {
            repo: Some(root.join(".git-agent")),
            user: Some(user.to_path_buf()),
        }
    }

    const AGENT: &str =
        "description = \"d\"\nheadless = [\"a\"]\nprompt = \"stdin\"\noutput = \"text\"\n";

    #[test]
    fn repository_agents_and_stacks_are_refused_until_trusted() {
        let root = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let search = search_in(root.path(), user.path());
        let dir = root.path().join(".git-agent/agents");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("claude.toml"), AGENT).unwrap();
        std::fs::write(dir.join("mine.toml"), AGENT).unwrap();
        let e = search.find(AGENTS, "claude").unwrap_err().to_string();
        assert!(
            e.contains(".git-agent/agents/claude.toml")
                && e.contains("not trusted")
                && e.contains("replace the built-in agent 'claude'"),
            "{e}"
        );
        let e = search.find(AGENTS, "mine").unwrap_err().to_string();
        assert!(e.contains("defines the agent 'mine'"), "{e}");
        // A user's agent of the same name does not make the repository's usable.
        std::fs::create_dir_all(user.path().join("agents")).unwrap();
        std::fs::write(user.path().join("agents/mine.toml"), AGENT).unwrap();
        let e = search.find(AGENTS, "mine").unwrap_err().to_string();
        assert!(e.contains("replace your agent 'mine'"), "{e}");
        let stacks = root.path().join(".git-agent/dockerfiles/stacks");
        std::fs::create_dir_all(&stacks).unwrap();
        std::fs::write(stacks.join("rust.dockerfile"), "RUN true\n").unwrap();
        let e = search.find(STACKS, "rust").unwrap_err().to_string();
        assert!(e.contains("replace the built-in stack 'rust'"), "{e}");
        // Listing reports the refusal per name instead of failing.
        let listed = search.list(AGENTS);
        assert!(listed.iter().any(|(n, f)| n == "claude" && f.is_err()));
        assert!(listed.iter().any(|(n, f)| n == "codex" && f.is_ok()));

        // Trusted by content: usable; changed: refused again, saying so.
        let store = search.trust_store().unwrap();
        let mut s = crate::trust::Store::new();
        s.entry(crate::trust::repo_key(root.path()))
            .or_default()
            .insert(
                ".git-agent/agents/claude.toml".into(),
                crate::trust::digest(AGENT.as_bytes()),
            );
        crate::trust::save(&store, &s).unwrap();
        let f = search.find(AGENTS, "claude").unwrap().unwrap();
        assert!(matches!(f.origin, Origin::Repository(_)));
        std::fs::write(dir.join("claude.toml"), format!("{AGENT}# more\n")).unwrap();
        let e = search.find(AGENTS, "claude").unwrap_err().to_string();
        assert!(e.contains("changed since you trusted it"), "{e}");
        // Without a user config directory nothing from the repository is trusted.
        let bare = Search {
            repo: Some(root.path().join(".git-agent")),
            user: None,
        };
        std::fs::write(dir.join("claude.toml"), AGENT).unwrap();
        assert!(bare.find(AGENTS, "claude").is_err());
    }

    #[test]
    fn repository_files_are_read_without_following_links() {
        let root = tempfile::tempdir().unwrap();
        let user = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "TOKEN=hunter2").unwrap();
        let search = search_in(root.path(), user.path());
        let t = root.path().join(".git-agent/templates");
        std::fs::create_dir_all(&t).unwrap();
        std::os::unix::fs::symlink(&secret, t.join("fix.md")).unwrap();
        let e = search.find(PROMPTS, "fix").unwrap_err().to_string();
        assert!(
            e.contains(".git-agent/templates/fix.md is a symbolic link"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        // A linked directory on the way is refused as well.
        std::fs::remove_dir_all(root.path().join(".git-agent")).unwrap();
        std::fs::create_dir_all(outside.path().join("templates")).unwrap();
        std::fs::write(outside.path().join("templates/fix.md"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join(".git-agent")).unwrap();
        let e = search.find(PROMPTS, "fix").unwrap_err().to_string();
        assert!(e.contains(".git-agent is a symbolic link"), "{e}");
        std::fs::remove_file(root.path().join(".git-agent")).unwrap();
        // Too large, not UTF-8, not a file.
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("big.md"), vec![b'a'; MAX_REPO_FILE as usize + 1]).unwrap();
        let e = search.find(PROMPTS, "big").unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        std::fs::write(t.join("bin.md"), [0xff, 0xfe]).unwrap();
        let e = search.find(PROMPTS, "bin").unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        std::fs::create_dir_all(t.join("dir.md")).unwrap();
        let e = search.find(PROMPTS, "dir").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        // A plain template is data: used without trust.
        std::fs::write(t.join("ok.md"), "hi").unwrap();
        let f = search.find(PROMPTS, "ok").unwrap().unwrap();
        assert!(matches!(f.origin, Origin::Repository(_)) && f.text == "hi");
        // `.git-agent` as a file: nothing there.
        std::fs::remove_dir_all(root.path().join(".git-agent")).unwrap();
        std::fs::write(root.path().join(".git-agent"), "x").unwrap();
        assert_eq!(
            search.find(PROMPTS, "fix").unwrap().unwrap().origin,
            Origin::BuiltIn
        );
    }
}
