//! `git agent trust`: let git-agent use a repository's own agent definitions and stack
//! snippets, by exact content (see [`crate::trust`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};
use crate::data::{AGENTS, Kind, STACKS, Search};
use crate::error::hinted;
use crate::trust::{self, Store, Trust};

/// Trust a repository's own agent definition or stack snippet, by its exact content.
///
/// A repository's files are untrusted: git-agent takes prompt templates
/// (.git-agent/templates/), a project dockerfile snippet and domains to allow
/// (.git-agent/config.toml) from it, nothing else. An agent definition
/// (.git-agent/agents/<name>.toml says where credentials go and which host values are read)
/// or a stack snippet (.git-agent/dockerfiles/stacks/<name>.dockerfile) is refused until you
/// read it and trust it here. Trust records the file's SHA-256 in
/// ~/.config/git-agent/trust.toml (mode 0600), keyed by the work tree and the file's path;
/// when the file changes, git-agent refuses it again until you trust the new content.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The files to trust (or, with --revoke, to stop trusting).
    #[arg(value_name = "FILE", required_unless_present = "list")]
    pub files: Vec<PathBuf>,
    /// Stop trusting the files.
    #[arg(long, conflicts_with = "list")]
    pub revoke: bool,
    /// List every trusted file with its state: trusted, changed (refused until trusted
    /// again) or missing.
    #[arg(long)]
    pub list: bool,
}

/// The kinds whose repository files need trust.
const KINDS: &[Kind] = &[AGENTS, STACKS];

/// Which kind a work-tree-relative path is, and the name it defines.
fn kind_of(rel: &str) -> Option<(Kind, String)> {
    KINDS.iter().find_map(|k| {
        let name = rel
            .strip_prefix(&format!(".git-agent/{}/", k.dir))?
            .strip_suffix(&format!(".{}", k.ext))?;
        (!name.is_empty() && !name.contains('/')).then(|| (*k, name.to_string()))
    })
}

/// `path` (as given, relative to the current directory) relative to the work tree `root`.
fn relative_to_root(root: &Path, path: &Path) -> Result<String> {
    let cwd = std::fs::canonicalize(std::env::current_dir()?)?;
    let root = std::fs::canonicalize(root)?;
    let abs = cwd.join(path);
    // Normalise `.` and `..` lexically: the file itself may be a link we must not follow.
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                norm.pop();
            }
            std::path::Component::CurDir => {}
            c => norm.push(c),
        }
    }
    let rel = norm.strip_prefix(&root).map_err(|_| {
        hinted(
            format!("{} is not in this repository's work tree", path.display()),
            "name a file under .git-agent/ of the repository you are in",
        )
    })?;
    Ok(rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/"))
}

/// What trusting an agent definition lets it do, for the user to see.
fn summary(kind: Kind, name: &str, rel: &str, text: &str, root: &Path) -> Result<String> {
    if kind.dir != AGENTS.dir {
        return Ok(format!(
            "stack '{name}': its dockerfile snippet runs at image build"
        ));
    }
    let found = crate::data::Found {
        name: name.to_string(),
        origin: crate::data::Origin::Repository(root.join(rel)),
        text: text.to_string(),
    };
    let a = crate::agent::parse(&found)?;
    let d = &a.def;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let env: Vec<String> = d.env.keys().cloned().collect();
    if d.credentials.is_empty() {
        return Ok(format!(
            "agent '{name}': no credentials; environment {}; API domains {}",
            list(&d.env.keys().cloned().collect::<Vec<_>>()),
            list(&d.api_domains),
        ));
    }
    Ok(format!(
        "agent '{name}': credentials {} sent to {}{}; environment {}; API domains {}",
        list(&d.credentials),
        d.api_url.as_deref().unwrap_or("(no api_url)"),
        d.base_url_env
            .as_ref()
            .map(|v| format!(" (or your ${v})"))
            .unwrap_or_default(),
        list(&env),
        list(&d.api_domains),
    ))
}

pub fn run(args: TrustArgs) -> Result<i32> {
    let store_path = crate::data::user_config_dir()
        .map(|d| d.join(trust::FILE))
        .ok_or_else(|| hinted("HOME is not set", "set HOME or XDG_CONFIG_HOME"))?;
    let mut store = trust::load(&store_path)?;
    if args.list {
        return list(&store);
    }
    let ctx = Ctx::open()?;
    let root = ctx.git.dir.clone();
    let key = trust::repo_key(&root);
    let search = Search::new(&root);
    let mut changed = false;
    for path in &args.files {
        let rel = relative_to_root(&root, path)?;
        let Some((kind, name)) = kind_of(&rel) else {
            return Err(hinted(
                format!(
                    "{} is not a file that needs trust; git-agent trusts only a repository's .git-agent/agents/<name>.toml and .git-agent/dockerfiles/stacks/<name>.dockerfile",
                    path.display()
                ),
                "prompt templates, the project dockerfile and .git-agent/config.toml are used without trust",
            ));
        };
        if args.revoke {
            let removed = store
                .get_mut(&key)
                .and_then(|files| files.remove(&rel))
                .is_some();
            if !removed {
                return Err(hinted(
                    format!("{} is not trusted", path.display()),
                    "see the trusted files with `git agent trust --list`",
                ));
            }
            store.retain(|_, files| !files.is_empty());
            eprintln!("git-agent: no longer trusting {rel} in {key}");
            changed = true;
            continue;
        }
        let file = search.repo_file(kind, &name)?.ok_or_else(|| {
            hinted(
                format!("{} does not exist", path.display()),
                "name an existing file under .git-agent/",
            )
        })?;
        let what = summary(kind, &name, &rel, &file.text, &root)?;
        let hash = trust::digest(file.text.as_bytes());
        store
            .entry(key.clone())
            .or_default()
            .insert(rel.clone(), hash.clone());
        let what = crate::error::sanitize(&what);
        eprintln!("git-agent: trusting {rel} ({hash}): {what}");
        changed = true;
    }
    if changed {
        trust::save(&store_path, &store)?;
    }
    Ok(0)
}

fn list(store: &Store) -> Result<i32> {
    for (repo, files) in store {
        for (rel, hash) in files {
            let state = match crate::data::read_repo_file(Path::new(repo), rel) {
                Ok(Some(text)) if trust::digest(text.as_bytes()) == *hash => Trust::Trusted,
                Ok(Some(_)) => Trust::Changed {
                    trusted: hash.clone(),
                },
                _ => Trust::Untrusted,
            };
            let state = match state {
                Trust::Trusted => "trusted",
                Trust::Changed { .. } => "changed",
                _ => "missing",
            };
            out(format!("{state:<8} {repo}/{rel} {hash}"))?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agent_and_stack_files_take_trust() {
        assert_eq!(
            kind_of(".git-agent/agents/claude.toml").map(|k| k.1),
            Some("claude".into())
        );
        assert_eq!(
            kind_of(".git-agent/dockerfiles/stacks/rust.dockerfile").map(|k| k.1),
            Some("rust".into())
        );
        for bad in [
            ".git-agent/templates/fix.md",
            ".git-agent/config.toml",
            ".git-agent/agents/sub/x.toml",
            ".git-agent/agents/.toml",
            "src/main.rs",
        ] {
            assert!(kind_of(bad).is_none(), "{bad}");
        }
    }
}
