//! Which kinds of repository git-agent can work in, and a true word about the others.
//!
//! git-agent supports SHA-1 repositories with the files ref backend only (its state
//! records, ref-transaction checks and the sandbox's bundles assume them), and the sandbox sends work back as a bundle whose prerequisites are the full
//! history of the task's base, which a shallow clone does not have. Rather than fail half-way
//! (or, for a shallow clone, create a task whose work can never come back), commands refuse
//! at once and say what to do.

use anyhow::Result;

use super::Git;
use crate::error::hinted;

/// How a repository stores its objects and refs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFormat {
    /// `sha1` or `sha256`.
    pub object_format: String,
    /// `files` or `reftable`.
    pub ref_format: String,
    /// A shallow clone (part of its history is missing).
    pub shallow: bool,
}

impl Git {
    /// How this repository is stored: asked of git once per process and repository (it does
    /// not change while a command runs).
    pub fn format(&self) -> Result<RepoFormat> {
        static KNOWN: std::sync::Mutex<Vec<(std::path::PathBuf, RepoFormat)>> =
            std::sync::Mutex::new(Vec::new());
        let known = |g: &Git| {
            KNOWN
                .lock()
                .ok()?
                .iter()
                .find(|(dir, _)| *dir == g.common_dir)
                .map(|(_, f)| f.clone())
        };
        if let Some(f) = known(self) {
            return Ok(f);
        }
        let f = self.ask_format()?;
        if let Ok(mut k) = KNOWN.lock() {
            k.push((self.common_dir.clone(), f.clone()));
        }
        Ok(f)
    }

    /// Ask git how this repository is stored.
    fn ask_format(&self) -> Result<RepoFormat> {
        let text = self.run([
            "rev-parse",
            "--show-object-format",
            "--is-shallow-repository",
        ])?;
        let mut lines = text.lines();
        let object_format = lines.next().unwrap_or("sha1").trim().to_string();
        let shallow = lines.next().is_some_and(|l| l.trim() == "true");
        // `rev-parse --show-ref-format` needs git 2.45; the extension says the same everywhere.
        let ref_format = self
            .run(["config", "--get", "extensions.refStorage"])
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "files".to_string())
            .to_lowercase();
        Ok(RepoFormat {
            object_format,
            ref_format,
            shallow,
        })
    }

    /// Refuse repositories every command would fail in (SHA-256, reftable), before anything
    /// reads or writes them.
    pub fn require_supported_format(&self) -> Result<RepoFormat> {
        let f = self.format()?;
        f.check()?;
        Ok(f)
    }

    /// Refuse to start a task from a shallow clone: its work could never come back.
    pub fn require_full_history(&self) -> Result<()> {
        if self.format()?.shallow {
            return Err(shallow_error());
        }
        Ok(())
    }
}

impl RepoFormat {
    /// An error for a format git-agent cannot work in.
    pub fn check(&self) -> Result<()> {
        if self.object_format != "sha1" {
            let name = match self.object_format.as_str() {
                "sha256" => "SHA-256".to_string(),
                other => other.to_string(),
            };
            return Err(hinted(
                format!(
                    "this repository uses {name} object ids; git-agent supports only SHA-1 repositories for now (its task store and the sandbox's bundles are SHA-1 only)"
                ),
                "work in a SHA-1 copy of it: `git init --object-format=sha1 <dir> && git fast-export --all | git -C <dir> fast-import && git -C <dir> checkout <branch>` (commit ids change), then run git agent there",
            ));
        }
        if self.ref_format != "files" {
            return Err(hinted(
                format!(
                    "this repository stores its refs as {}; git-agent supports only the files ref format for now (its task store cannot read {} refs)",
                    self.ref_format, self.ref_format
                ),
                "convert it in place with `git refs migrate --ref-format=files` (git 2.48 or later; 2.46 and 2.47 refuse a repository with reflogs), or work in a converted clone: `git clone --ref-format=files <this repository> <dir>`",
            ));
        }
        Ok(())
    }
}

fn shallow_error() -> anyhow::Error {
    hinted(
        "this repository is a shallow clone: a task needs the full history of its base commit, because the sandbox sends its work back as a bundle built on that history",
        "fetch the missing history with `git fetch --unshallow`, then spawn again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::find_hint;

    fn fmt(o: &str, r: &str) -> RepoFormat {
        RepoFormat {
            object_format: o.into(),
            ref_format: r.into(),
            shallow: false,
        }
    }

    #[test]
    fn only_sha1_files_repositories_pass() {
        assert!(fmt("sha1", "files").check().is_ok());
        let e = fmt("sha256", "files").check().unwrap_err();
        assert!(e.to_string().contains("SHA-256"), "{e}");
        assert!(find_hint(&e).unwrap().contains("fast-import"));
        let e = fmt("sha1", "reftable").check().unwrap_err();
        assert!(e.to_string().contains("reftable"), "{e}");
        assert!(find_hint(&e).unwrap().contains("--ref-format=files"));
    }
}
