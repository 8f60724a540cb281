//! Layered lookup of the files users customise: agent definitions, prompt templates and
//! dockerfile snippets. A name is looked up in the repository (`.git-agent/<kind>/`), then the
//! user's config (`$XDG_CONFIG_HOME/git-agent/<kind>/` or `~/.config/git-agent/<kind>/`), then
//! the built-in copies embedded from this crate's `templates/` and `dockerfiles/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
        let user = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|c| c.join("git-agent"));
        Search {
            repo: Some(root.join(".git-agent")),
            user,
        }
    }

    fn dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut d = Vec::new();
        if let Some(r) = &self.repo {
            d.push((r.clone(), true));
        }
        if let Some(u) = &self.user {
            d.push((u.clone(), false));
        }
        d
    }

    /// Find `name` of `kind`, most specific first.
    pub fn find(&self, kind: Kind, name: &str) -> Result<Option<Found>> {
        for (dir, is_repo) in self.dirs() {
            let path = dir.join(kind.dir).join(format!("{name}.{}", kind.ext));
            if path.is_file() {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let origin = if is_repo {
                    Origin::Repository(path)
                } else {
                    Origin::User(path)
                };
                return Ok(Some(Found {
                    name: name.to_string(),
                    origin,
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

    /// Every file of `kind` by name; a more specific one hides the others of its name.
    pub fn list(&self, kind: Kind) -> Result<Vec<Found>> {
        let mut names: BTreeMap<String, ()> = BTreeMap::new();
        for (n, _) in kind.builtin {
            names.insert(n.to_string(), ());
        }
        for (dir, _) in self.dirs() {
            let Ok(entries) = std::fs::read_dir(dir.join(kind.dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = file.strip_suffix(&format!(".{}", kind.ext)) {
                    names.insert(stem.to_string(), ());
                }
            }
        }
        let mut out = Vec::new();
        for name in names.keys() {
            if let Some(f) = self.find(kind, name)? {
                out.push(f);
            }
        }
        Ok(out)
    }
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
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert!(names.contains(&"mine".to_string()) && names.contains(&"commit-msg".to_string()));
        assert!(search.find(PROMPTS, "nope").unwrap().is_none());
    }
}
