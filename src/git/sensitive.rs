//! Changes that deserve a second look before promotion: they can run code on the user's or
//! the CI's machines, or hide content from a casual review.

use serde::Serialize;

/// Files larger than this are flagged as large.
pub const LARGE: u64 = 1 << 20;

/// One flagged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub path: String,
    pub why: &'static str,
}

/// One entry of `git diff --raw -z` (plus the new blob's size, when known).
#[derive(Debug, Clone)]
pub struct RawChange {
    pub old_mode: String,
    pub new_mode: String,
    pub status: char,
    pub path: String,
    pub new_size: Option<u64>,
}

/// Parse `git diff --raw -z --no-renames` output.
pub fn parse_raw(text: &str) -> Vec<RawChange> {
    let mut out = Vec::new();
    let mut parts = text.split('\0');
    while let Some(meta) = parts.next() {
        let meta = meta.trim_start_matches('\n');
        if meta.is_empty() {
            continue;
        }
        let Some(path) = parts.next() else { break };
        let f: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        out.push(RawChange {
            old_mode: f[0].to_string(),
            new_mode: f[1].to_string(),
            status: f[4].chars().next().unwrap_or('?'),
            path: path.to_string(),
            new_size: None,
        });
    }
    out
}

/// Why a change is sensitive, if it is.
pub fn flags(changes: &[RawChange]) -> Vec<Flag> {
    let mut out = Vec::new();
    for c in changes {
        let p = c.path.as_str();
        let name = p.rsplit('/').next().unwrap_or(p);
        let mut flag = |why| {
            out.push(Flag {
                path: p.to_string(),
                why,
            })
        };
        if p.starts_with(".github/workflows/")
            || p == ".gitlab-ci.yml"
            || p.starts_with(".circleci/")
            || p == "Jenkinsfile"
            || p.starts_with(".ci/")
            || p == "azure-pipelines.yml"
        {
            flag("CI configuration: runs on your CI with its secrets");
        }
        if name == ".gitmodules" {
            flag("submodule URLs: where clones fetch code from");
        }
        if p.starts_with(".git-agent/") {
            flag("git-agent configuration: agents, templates, image layers");
        }
        if p.starts_with(".githooks/")
            || p.starts_with(".husky/")
            || name == ".pre-commit-config.yaml"
        {
            flag("hook scripts: run on developers' machines");
        }
        if name == ".gitattributes" {
            flag("attributes: filters and diff drivers can run commands");
        }
        if c.new_mode == "120000" {
            flag("symbolic link");
        }
        if c.new_mode == "160000" || c.old_mode == "160000" {
            flag("submodule commit");
        }
        let was_exec = c.old_mode == "100755";
        let is_exec = c.new_mode == "100755";
        if is_exec != was_exec && c.status != 'D' && (c.status != 'A' || is_exec) {
            flag(if is_exec {
                "made executable"
            } else {
                "no longer executable"
            });
        }
        if c.new_size.is_some_and(|s| s > LARGE) {
            flag("large file (over 1 MiB)");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(old: &str, new: &str, status: char, path: &str) -> RawChange {
        RawChange {
            old_mode: old.into(),
            new_mode: new.into(),
            status,
            path: path.into(),
            new_size: None,
        }
    }

    #[test]
    fn raw_output_parses() {
        let raw = ":100644 100755 aaa bbb M\0run.sh\0:000000 100644 000 ccc A\0.github/workflows/ci.yml\0";
        let c = parse_raw(raw);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].new_mode.as_str(), c[0].status, c[0].path.as_str()),
            ("100755", 'M', "run.sh")
        );
        assert_eq!(c[1].path, ".github/workflows/ci.yml");
    }

    #[test]
    fn sensitive_changes_are_flagged_and_ordinary_ones_are_not() {
        let mut big = change("100644", "100644", 'M', "data.bin");
        big.new_size = Some(LARGE + 1);
        let changes = vec![
            change("000000", "100644", 'A', ".github/workflows/ci.yml"),
            change("100644", "100644", 'M', ".gitmodules"),
            change(
                "000000",
                "100644",
                'A',
                ".git-agent/dockerfiles/project.dockerfile",
            ),
            change("100644", "100755", 'M', "build.sh"),
            change("000000", "120000", 'A', "escape"),
            change("000000", "100755", 'A', "tool.sh"),
            change("100644", "100644", 'M', "src/main.rs"),
            change("000000", "100644", 'A', "docs/readme.md"),
            big,
        ];
        let f = flags(&changes);
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&".github/workflows/ci.yml"));
        assert!(paths.contains(&".gitmodules"));
        assert!(paths.contains(&".git-agent/dockerfiles/project.dockerfile"));
        assert!(
            f.iter()
                .any(|f| f.path == "build.sh" && f.why == "made executable")
        );
        assert!(
            f.iter()
                .any(|f| f.path == "escape" && f.why == "symbolic link")
        );
        assert!(
            f.iter()
                .any(|f| f.path == "tool.sh" && f.why == "made executable")
        );
        assert!(
            f.iter()
                .any(|f| f.path == "data.bin" && f.why.starts_with("large"))
        );
        assert!(!paths.contains(&"src/main.rs") && !paths.contains(&"docs/readme.md"));
    }
}
