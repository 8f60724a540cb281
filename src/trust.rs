//! The user's trust in repository files, as direnv and mise do it: `git agent trust <file>`
//! records the file's content hash in the user's own config, and git-agent uses a repository
//! file of a kind that needs trust (an agent definition, a stack snippet) only while its
//! content still has that hash. A changed file needs trusting again.
//!
//! The record lives in `trust.toml` in the user's config directory (`$XDG_CONFIG_HOME/
//! git-agent/` or `~/.config/git-agent/`), mode 0600, replaced atomically; never in the
//! repository or in git config (which `git -c` or an `include` could change). It is keyed by
//! the canonical path of the work tree and the file's path inside it, so each clone and each
//! linked worktree is trusted on its own:
//!
//! ```toml
//! ["/home/me/src/shop"]
//! ".git-agent/agents/claude.toml" = "sha256:9f2c..."
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::hinted;

/// The store's file name in the user's config directory.
pub const FILE: &str = "trust.toml";

/// Work tree (canonical path) -> file path inside it -> `sha256:<hex>` of the trusted content.
pub type Store = BTreeMap<String, BTreeMap<String, String>>;

/// What the user said about one repository file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Plain data a repository may provide (a prompt template); no trust needed.
    Data,
    /// Trusted, and the content is the one trusted.
    Trusted,
    /// Never trusted.
    Untrusted,
    /// Trusted once, but the content changed since.
    Changed { trusted: String },
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The key of a work tree in the store: its canonical path.
pub fn repo_key(root: &Path) -> String {
    std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_path_buf())
        .display()
        .to_string()
}

/// Read the store at `path` (empty when it does not exist).
pub fn load(path: &Path) -> Result<Store> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            hinted(
                format!("cannot read {}: {}", path.display(), e.message()),
                "fix the file, or delete it and trust the files you use again with `git agent trust <file>`",
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replace the store at `path` atomically (a private temporary file renamed over it), mode
/// 0600 in a directory created 0700.
pub fn save(path: &Path, store: &Store) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().context("the trust store has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = String::from(
        "# Repository files git-agent may use, by content hash; written by `git agent trust`.\n",
    );
    text.push_str(&toml::to_string(store)?);
    let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
    // A leftover of a crashed run with the same process id.
    std::fs::remove_file(&tmp).ok();
    let written = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if written.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// The user's trust in the file `rel` of the work tree `root` whose content is `bytes`.
pub fn check(store: &Path, root: &Path, rel: &str, bytes: &[u8]) -> Result<Trust> {
    let store = load(store)?;
    Ok(
        match store.get(&repo_key(root)).and_then(|files| files.get(rel)) {
            None => Trust::Untrusted,
            Some(h) if *h == digest(bytes) => Trust::Trusted,
            Some(h) => Trust::Changed { trusted: h.clone() },
        },
    )
}

/// `text` as one shell word (single-quoted unless it is plain), for hints naming a command.
pub fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-+=:@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// How to name the repository file at `path` (`rel` inside its work tree) so that the user
/// can pass it to `git agent trust` from the current directory: relative to it when the
/// current directory is inside the work tree, else the absolute path.
pub fn shown_path(path: &Path, rel: &str) -> String {
    let depth = rel.split('/').count();
    let root = path.ancestors().nth(depth).map(Path::to_path_buf);
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|c| std::fs::canonicalize(c).ok());
    if let (Some(root), Some(cwd)) = (root.and_then(|r| std::fs::canonicalize(r).ok()), cwd)
        && let Ok(below) = cwd.strip_prefix(&root)
    {
        let ups: PathBuf = below.components().map(|_| "..").collect();
        return ups.join(rel).display().to_string();
    }
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_follows_the_exact_content() {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("cfg/git-agent").join(FILE);
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let rel = ".git-agent/agents/claude.toml";
        assert_eq!(
            check(&store_path, &root, rel, b"a").unwrap(),
            Trust::Untrusted
        );
        let mut store = load(&store_path).unwrap();
        store
            .entry(repo_key(&root))
            .or_default()
            .insert(rel.into(), digest(b"a"));
        save(&store_path, &store).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            check(&store_path, &root, rel, b"a").unwrap(),
            Trust::Trusted
        );
        assert!(matches!(
            check(&store_path, &root, rel, b"b").unwrap(),
            Trust::Changed { .. }
        ));
        // Another work tree, or another path in the same one, is not trusted.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert_eq!(
            check(&store_path, &other, rel, b"a").unwrap(),
            Trust::Untrusted
        );
        assert_eq!(
            check(&store_path, &root, ".git-agent/agents/x.toml", b"a").unwrap(),
            Trust::Untrusted
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(store_path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE]);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(
            shell_word(".git-agent/agents/x.toml"),
            ".git-agent/agents/x.toml"
        );
        assert_eq!(shell_word("/my repo/a"), "'/my repo/a'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn a_broken_store_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        std::fs::write(&p, "not = [toml").unwrap();
        let e = check(&p, dir.path(), "x", b"").unwrap_err();
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
