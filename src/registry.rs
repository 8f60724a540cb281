//! The per-user registry of repositories with queued tasks, read by `git agent serve`.
//!
//! One file per repository in `$XDG_STATE_HOME/git-agent/repos/` (else
//! `~/.local/state/git-agent/repos/`), named by a hash of the repository's common directory,
//! holding its path. An entry is never trusted for anything but "look here": the server
//! re-discovers the repository at that path, checks that it is a directory owned by this user
//! and a git repository whose refs hold queued tasks before it acts (see `ops::serve`).
//! Owns the registry files only; it must not open repositories or run git.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The registry directory.
pub fn dir() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(state);
        if p.is_absolute() {
            return Some(p.join("git-agent/repos"));
        }
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/git-agent/repos"))
}

/// The entry name of a repository: a hash of its common directory.
pub fn entry_name(common_dir: &Path) -> String {
    let digest = Sha256::digest(common_dir.as_os_str().as_encoded_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Register the repository whose work tree is `work_dir` and common directory `common_dir`.
pub fn register(work_dir: &Path, common_dir: &Path) -> Result<PathBuf> {
    let dir = dir().context("cannot find the registry of repositories: HOME is not set")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(entry_name(common_dir));
    let tmp = dir.join(format!(
        ".{}.{}",
        entry_name(common_dir),
        std::process::id()
    ));
    std::fs::write(&tmp, work_dir.as_os_str().as_encoded_bytes())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The paths the registry names, each with its entry file (unreadable or odd entries are
/// skipped: at most 4 KiB, one absolute path).
pub fn entries() -> Vec<(PathBuf, PathBuf)> {
    let Some(dir) = dir() else {
        return Vec::new();
    };
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.len() != 32 {
            continue;
        }
        let file = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            continue;
        };
        if !meta.is_file() || meta.len() > 4096 {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let path = PathBuf::from(text.trim_end_matches('\n'));
        if path.is_absolute() && !text.contains('\0') {
            out.push((path, file));
        }
    }
    out.sort();
    out
}

/// Forget an entry (its repository is gone or is no repository).
pub fn forget(entry: &Path) {
    let _ = std::fs::remove_file(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_stable_hashes() {
        let a = entry_name(Path::new("/home/u/repo/.git"));
        assert_eq!(a.len(), 32);
        assert_eq!(a, entry_name(Path::new("/home/u/repo/.git")));
        assert_ne!(a, entry_name(Path::new("/home/u/other/.git")));
    }
}
