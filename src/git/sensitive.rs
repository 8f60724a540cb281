//! Changes that deserve a second look before promotion: files that run code on a developer's
//! machine or in automation when a branch is checked out, opened, built or tested; changes that
//! hide content from a casual review (symlinks, binaries, submodules, exec bits, large files).
//!
//! The path rules are data ([`RULES`], one reason per pattern) and are matched
//! case-insensitively at any depth, on names normalised the way case- and
//! dot-insensitive file systems see them, because a nested `Makefile` or a `.GitHub` directory
//! on macOS runs just the same. `docs/security.md` lists the table and why each entry is there.
//!
//! Flags are computed per commit (every commit `git agent commit` re-creates, plus the
//! uncommitted-work snapshot), so content that was added in one commit and removed in the next
//! is still seen: promotion re-creates both commits, and the first one stays in history.

pub mod claims;

use std::collections::HashMap;

use serde::Serialize;

/// Files larger than this are flagged as large.
pub const LARGE: u64 = 1 << 20;

/// One flagged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub path: String,
    pub why: String,
    /// Where it comes from: the (short) ids of the commits that `commit` will re-create, and
    /// `uncommitted changes` for the work-tree snapshot. Empty when only the net diff shows it
    /// (its commits were promoted already).
    pub commits: Vec<String>,
    /// False when the change is not in the net diff (for example added, then removed again):
    /// the plain diff does not show it, but promotion still re-creates the commits holding it.
    pub in_final_diff: bool,
}

/// One entry of `git diff --raw -z` (plus facts about the new blob, when known).
#[derive(Debug, Clone, Default)]
pub struct RawChange {
    pub old_mode: String,
    pub new_mode: String,
    pub old_oid: String,
    pub new_oid: String,
    pub status: char,
    pub path: String,
    pub new_size: Option<u64>,
    /// The new content is binary (a NUL byte in its first 8000 bytes, git's own test).
    pub binary: bool,
}

/// Parse `git diff --raw -z --no-renames --no-abbrev` output.
pub fn parse_raw(text: &str) -> Vec<RawChange> {
    parse_diff_tree(text)
        .into_iter()
        .flat_map(|(_, c)| c)
        .collect()
}

/// Parse `git diff-tree --stdin -r -z --raw --no-abbrev --no-renames [-m]` output into
/// `(commit, changes)` groups (plain `git diff --raw -z` output is one group with an empty id).
pub fn parse_diff_tree(text: &str) -> Vec<(String, Vec<RawChange>)> {
    let mut out: Vec<(String, Vec<RawChange>)> = Vec::new();
    let mut parts = text.split('\0');
    while let Some(meta) = parts.next() {
        let meta = meta.trim_start_matches('\n');
        if meta.is_empty() {
            continue;
        }
        if !meta.starts_with(':') {
            // A commit header: "<id>" or "<id> (from <parent>)".
            let id = meta.split(' ').next().unwrap_or_default().to_string();
            if out.last().is_none_or(|(last, _)| *last != id) {
                out.push((id, Vec::new()));
            }
            continue;
        }
        let Some(path) = parts.next() else { break };
        let f: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if f.len() < 5 {
            continue;
        }
        if out.is_empty() {
            out.push((String::new(), Vec::new()));
        }
        out.last_mut().expect("a group").1.push(RawChange {
            old_mode: f[0].to_string(),
            new_mode: f[1].to_string(),
            old_oid: f[2].to_string(),
            new_oid: f[3].to_string(),
            status: f[4].chars().next().unwrap_or('?'),
            path: path.to_string(),
            ..RawChange::default()
        });
    }
    out
}

/// How a rule matches a path (all comparisons on normalised, lower-case names).
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    /// The file name is exactly this.
    Name(&'static str),
    /// The file name starts with this.
    Prefix(&'static str),
    /// The file name ends with this.
    Suffix(&'static str),
    /// Some component of the path (a directory, or the entry itself) is exactly this.
    Dir(&'static str),
    /// These components appear in this order somewhere in the path (`a/b`).
    Within(&'static str),
}

/// One row of the table: a pattern and why it matters.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub pattern: Pattern,
    pub why: &'static str,
}

const CI: &str = "CI configuration: runs on your CI with its secrets";
const FORGE: &str = "forge configuration: workflows, actions, code owners, bots";
const OWNERS: &str = "code owners: changes who must approve changes";
const MAILMAP: &str = "mailmap: rewrites the names and emails git shows for people";
const HOOKS: &str = "hook scripts: run on developers' machines";
const ATTRS: &str = "attributes: filters and diff drivers can run commands";
const SUBMODULES: &str = "submodule URLs: where clones fetch code from";
const LFS: &str = "LFS configuration: where large files are fetched from and pushed to";
const GITCONFIG: &str = "git configuration file: can be included into git config";
const GIT_AGENT: &str = "git-agent configuration: agents, templates, image layers";
const DEVENV: &str =
    "shell environment: loaded or run when you enter the directory (direnv, autoenv, dotenv)";
const TOOLCHAIN: &str = "toolchain selection: chooses (and may download) the tools that run";
const NIX: &str = "Nix environment: evaluated when the shell or build is entered";
const EDITOR: &str = "editor configuration: tasks, settings and extensions can run commands when the folder is opened";
const DEVCONTAINER: &str =
    "dev container / cloud workspace: image and commands run when the folder is opened";
const AGENTS: &str =
    "agent instructions: steer coding agents and assistants that open this repository";
const MCP: &str = "agent tool servers: commands an assistant starts";
const BUILD: &str = "build script: runs when the project is built or tested";
const CARGO_CFG: &str = "cargo configuration: runners, linkers, aliases and flags";
const MANIFEST: &str = "package manifest: install/build scripts and dependencies";
const DEPS: &str = "dependency lock: which third-party code is fetched and run";
const PKGCFG: &str = "package-manager configuration: registries, install scripts, plugins";
const TESTCFG: &str = "test configuration: runs when tests are collected";
const STARTUP: &str = "interpreter start-up file: runs whenever the interpreter starts here";
const JSCONFIG: &str = "executable tool configuration: run by the tool that loads it";
const CONTAINER: &str = "container build: runs when the image is built or the stack started";
const LICENSE: &str = "license text: changes the terms the code is under";

use Pattern::{Dir, Name, Prefix, Suffix, Within};

/// Paths that run code (or decide what code runs) when a branch is checked out, opened, built
/// or tested, or that change who is trusted. The first matching row gives the reason.
pub const RULES: &[Rule] = &[
    // CI and forges
    r(Within(".github/workflows"), CI),
    r(Within(".github/actions"), CI),
    r(Dir(".github"), FORGE),
    r(Name(".gitlab-ci.yml"), CI),
    r(Name(".gitlab-ci.yaml"), CI),
    r(Dir(".gitlab"), FORGE),
    r(Dir(".circleci"), CI),
    r(Prefix("jenkinsfile"), CI),
    r(Name(".travis.yml"), CI),
    r(Prefix("azure-pipelines"), CI),
    r(Dir(".azure-pipelines"), CI),
    r(Dir(".azuredevops"), CI),
    r(Dir(".buildkite"), CI),
    r(Prefix("bitbucket-pipelines"), CI),
    r(Prefix(".drone."), CI),
    r(Prefix(".woodpecker"), CI),
    r(Dir(".woodpecker"), CI),
    r(Dir(".forgejo"), FORGE),
    r(Dir(".gitea"), FORGE),
    r(Prefix("appveyor."), CI),
    r(Prefix(".appveyor."), CI),
    r(Prefix("cloudbuild."), CI),
    r(Prefix("buildspec."), CI),
    r(Name(".cirrus.yml"), CI),
    r(Dir(".tekton"), CI),
    r(Dir(".semaphore"), CI),
    r(Name("codemagic.yaml"), CI),
    r(Dir(".ci"), CI),
    r(Prefix("codeowners"), OWNERS),
    r(Name(".mailmap"), MAILMAP),
    // git itself
    r(Name(".gitattributes"), ATTRS),
    r(Name(".gitmodules"), SUBMODULES),
    r(Name(".lfsconfig"), LFS),
    r(Name(".gitconfig"), GITCONFIG),
    r(Dir(".githooks"), HOOKS),
    r(Dir(".husky"), HOOKS),
    r(Prefix(".pre-commit-config"), HOOKS),
    r(Name(".pre-commit-hooks.yaml"), HOOKS),
    r(Prefix("lefthook"), HOOKS),
    r(Prefix(".lefthook"), HOOKS),
    r(Dir(".lefthook"), HOOKS),
    r(Name(".overcommit.yml"), HOOKS),
    r(Dir(".git-agent"), GIT_AGENT),
    // entering the directory
    r(Name(".envrc"), DEVENV),
    r(Name(".env"), DEVENV),
    r(Prefix(".env."), DEVENV),
    r(Prefix(".autoenv"), DEVENV),
    r(Name(".tool-versions"), TOOLCHAIN),
    r(Prefix("mise."), TOOLCHAIN),
    r(Prefix(".mise"), TOOLCHAIN),
    r(Dir(".mise"), TOOLCHAIN),
    r(Name(".rtx.toml"), TOOLCHAIN),
    r(Name(".nvmrc"), TOOLCHAIN),
    r(Name(".node-version"), TOOLCHAIN),
    r(Name(".python-version"), TOOLCHAIN),
    r(Name(".ruby-version"), TOOLCHAIN),
    r(Name(".java-version"), TOOLCHAIN),
    r(Name(".go-version"), TOOLCHAIN),
    r(Name(".terraform-version"), TOOLCHAIN),
    r(Name(".sdkmanrc"), TOOLCHAIN),
    r(Prefix("rust-toolchain"), TOOLCHAIN),
    r(Name("global.json"), TOOLCHAIN),
    r(Name(".bazelversion"), TOOLCHAIN),
    r(Name("flake.nix"), NIX),
    r(Name("flake.lock"), NIX),
    r(Name("shell.nix"), NIX),
    r(Name("default.nix"), NIX),
    r(Prefix("devenv."), NIX),
    r(Name("devbox.json"), NIX),
    // opening it in an editor or assistant
    r(Dir(".vscode"), EDITOR),
    r(Suffix(".code-workspace"), EDITOR),
    r(Dir(".idea"), EDITOR),
    r(Dir(".fleet"), EDITOR),
    r(Dir(".zed"), EDITOR),
    r(Dir(".theia"), EDITOR),
    r(Suffix(".sublime-project"), EDITOR),
    r(Name(".exrc"), EDITOR),
    r(Name(".nvimrc"), EDITOR),
    r(Name(".nvim.lua"), EDITOR),
    r(Name(".lvimrc"), EDITOR),
    r(Prefix(".dir-locals"), EDITOR),
    r(Dir(".devcontainer"), DEVCONTAINER),
    r(Name(".devcontainer.json"), DEVCONTAINER),
    r(Name(".gitpod.yml"), DEVCONTAINER),
    r(Name(".replit"), DEVCONTAINER),
    r(Name("replit.nix"), DEVCONTAINER),
    r(Name(".mcp.json"), MCP),
    r(Name("mcp.json"), MCP),
    r(
        Prefix("claude."), /* CLAUDE.md, CLAUDE.local.md */
        AGENTS,
    ),
    r(Name("agents.md"), AGENTS),
    r(Name("agent.md"), AGENTS),
    r(Name("gemini.md"), AGENTS),
    r(Name("conventions.md"), AGENTS),
    r(Dir(".claude"), AGENTS),
    r(Dir(".cursor"), AGENTS),
    r(Prefix(".cursorrules"), AGENTS),
    r(Prefix(".windsurfrules"), AGENTS),
    r(Dir(".windsurf"), AGENTS),
    r(Dir(".clinerules"), AGENTS),
    r(Dir(".roo"), AGENTS),
    r(Prefix(".roomodes"), AGENTS),
    r(Dir(".continue"), AGENTS),
    r(Dir(".codex"), AGENTS),
    r(Dir(".gemini"), AGENTS),
    r(Dir(".junie"), AGENTS),
    r(Dir(".kiro"), AGENTS),
    r(Dir(".amazonq"), AGENTS),
    r(Prefix(".aider"), AGENTS),
    // building and testing
    r(Name("makefile"), BUILD),
    r(Name("gnumakefile"), BUILD),
    r(Suffix(".mk"), BUILD),
    r(Suffix(".mak"), BUILD),
    r(Name("cmakelists.txt"), BUILD),
    r(Suffix(".cmake"), BUILD),
    r(Prefix("cmakepresets"), BUILD),
    r(Prefix("cmakeuserpresets"), BUILD),
    r(Name("meson.build"), BUILD),
    r(Name("meson_options.txt"), BUILD),
    r(Name("meson.options"), BUILD),
    r(Name("configure"), BUILD),
    r(Name("configure.ac"), BUILD),
    r(Name("configure.in"), BUILD),
    r(Name("makefile.am"), BUILD),
    r(Name("makefile.in"), BUILD),
    r(Name("autogen.sh"), BUILD),
    r(Suffix(".ninja"), BUILD),
    r(Name("build"), BUILD),
    r(Name("build.bazel"), BUILD),
    r(Name("workspace"), BUILD),
    r(Name("workspace.bazel"), BUILD),
    r(Name("module.bazel"), BUILD),
    r(Suffix(".bzl"), BUILD),
    r(Name(".bazelrc"), BUILD),
    r(Name("sconstruct"), BUILD),
    r(Name("sconscript"), BUILD),
    r(Name("justfile"), BUILD),
    r(Name(".justfile"), BUILD),
    r(Prefix("taskfile."), BUILD),
    r(Name("rakefile"), BUILD),
    r(Suffix(".rake"), BUILD),
    r(Name("earthfile"), BUILD),
    r(Name("tiltfile"), BUILD),
    r(Name("build.rs"), BUILD),
    r(Name("cargo.toml"), MANIFEST),
    r(Dir(".cargo"), CARGO_CFG),
    r(Name("build.zig"), BUILD),
    r(Name("build.zig.zon"), MANIFEST),
    r(Name("package.swift"), MANIFEST),
    r(Name("setup.py"), BUILD),
    r(Name("setup.cfg"), BUILD),
    r(Name("pyproject.toml"), MANIFEST),
    r(Name("conftest.py"), TESTCFG),
    r(Name("pytest.ini"), TESTCFG),
    r(Name("tox.ini"), TESTCFG),
    r(Name("noxfile.py"), TESTCFG),
    r(Name("sitecustomize.py"), STARTUP),
    r(Name("usercustomize.py"), STARTUP),
    r(Suffix(".pth"), STARTUP),
    r(Name(".rprofile"), STARTUP),
    r(Name("gemfile"), MANIFEST),
    r(Suffix(".gemspec"), MANIFEST),
    r(Dir(".bundle"), PKGCFG),
    r(Name("pom.xml"), BUILD),
    r(Dir(".mvn"), BUILD),
    r(Prefix("mvnw"), BUILD),
    r(Suffix(".gradle"), BUILD),
    r(Suffix(".gradle.kts"), BUILD),
    r(Prefix("gradlew"), BUILD),
    r(Name("gradle.properties"), BUILD),
    r(Dir("gradle"), BUILD),
    r(Suffix(".sbt"), BUILD),
    r(Name("build.xml"), BUILD),
    r(Name("makefile.pl"), BUILD),
    r(Name("build.pl"), BUILD),
    r(Name("cpanfile"), MANIFEST),
    r(Name("mix.exs"), BUILD),
    r(Suffix(".cabal"), MANIFEST),
    r(Name("setup.hs"), BUILD),
    r(Name("stack.yaml"), MANIFEST),
    r(Name("package.json"), MANIFEST),
    r(Name("deno.json"), MANIFEST),
    r(Name("deno.jsonc"), MANIFEST),
    r(Name("composer.json"), MANIFEST),
    r(Name("pubspec.yaml"), MANIFEST),
    r(Name("go.mod"), MANIFEST),
    r(Name("go.work"), MANIFEST),
    r(Name("podfile"), MANIFEST),
    r(Suffix(".csproj"), BUILD),
    r(Suffix(".fsproj"), BUILD),
    r(Suffix(".vbproj"), BUILD),
    r(Suffix(".props"), BUILD),
    r(Suffix(".targets"), BUILD),
    r(Suffix(".sln"), BUILD),
    r(Name("nuget.config"), PKGCFG),
    r(Name(".npmrc"), PKGCFG),
    r(Prefix(".yarnrc"), PKGCFG),
    r(Dir(".yarn"), PKGCFG),
    r(Prefix(".pnpmfile."), PKGCFG),
    r(Name("pnpm-workspace.yaml"), PKGCFG),
    r(Name("bunfig.toml"), PKGCFG),
    r(Name(".pypirc"), PKGCFG),
    r(Name("pip.conf"), PKGCFG),
    r(Name("uv.toml"), PKGCFG),
    r(Name(".condarc"), PKGCFG),
    r(Suffix(".config.js"), JSCONFIG),
    r(Suffix(".config.cjs"), JSCONFIG),
    r(Suffix(".config.mjs"), JSCONFIG),
    r(Suffix(".config.ts"), JSCONFIG),
    r(Suffix(".config.mts"), JSCONFIG),
    r(Suffix(".config.cts"), JSCONFIG),
    r(Prefix(".eslintrc"), JSCONFIG),
    r(Prefix(".babelrc"), JSCONFIG),
    r(Prefix(".mocharc"), JSCONFIG),
    r(Name("cargo.lock"), DEPS),
    r(Name("package-lock.json"), DEPS),
    r(Name("npm-shrinkwrap.json"), DEPS),
    r(Name("yarn.lock"), DEPS),
    r(Name("pnpm-lock.yaml"), DEPS),
    r(Prefix("bun.lock"), DEPS),
    r(Prefix("requirements"), DEPS),
    r(Name("constraints.txt"), DEPS),
    r(Name("pipfile"), DEPS),
    r(Name("pipfile.lock"), DEPS),
    r(Name("poetry.lock"), DEPS),
    r(Name("uv.lock"), DEPS),
    r(Name("gemfile.lock"), DEPS),
    r(Name("composer.lock"), DEPS),
    r(Name("go.sum"), DEPS),
    r(Name("mix.lock"), DEPS),
    r(Name("packages.lock.json"), DEPS),
    r(Name("pubspec.lock"), DEPS),
    r(Name("deno.lock"), DEPS),
    r(Name("podfile.lock"), DEPS),
    // containers and machines
    r(Prefix("dockerfile"), CONTAINER),
    r(Suffix(".dockerfile"), CONTAINER),
    r(Prefix("containerfile"), CONTAINER),
    r(Prefix("docker-compose"), CONTAINER),
    r(Name("compose.yaml"), CONTAINER),
    r(Name("compose.yml"), CONTAINER),
    r(Prefix("compose.override"), CONTAINER),
    r(Prefix("docker-bake"), CONTAINER),
    r(Name("skaffold.yaml"), CONTAINER),
    r(Name("devfile.yaml"), CONTAINER),
    r(Name("vagrantfile"), CONTAINER),
    r(Name("procfile"), CONTAINER),
    // terms
    r(Prefix("license"), LICENSE),
    r(Prefix("licence"), LICENSE),
    r(Prefix("copying"), LICENSE),
];

const fn r(pattern: Pattern, why: &'static str) -> Rule {
    Rule { pattern, why }
}

/// Characters some file systems ignore in names (HFS+ drops several zero-width and
/// direction characters), so `.git\u{200c}hub` is `.github` there.
fn ignorable(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// A path component as a case-insensitive file system sees it: lower-case, ignorable code
/// points dropped, trailing dots and spaces dropped (Windows).
fn normalise(component: &str) -> String {
    let s: String = component
        .chars()
        .filter(|c| !ignorable(*c))
        .flat_map(char::to_lowercase)
        .collect();
    s.trim_end_matches(['.', ' ']).to_string()
}

/// The reason a path is sensitive, from [`RULES`] (first match).
pub fn path_reason(path: &str) -> Option<&'static str> {
    let comps: Vec<String> = path.split('/').map(normalise).collect();
    let name = comps.last().map(String::as_str).unwrap_or_default();
    let joined = format!("/{}/", comps.join("/"));
    RULES
        .iter()
        .find(|rule| match rule.pattern {
            Name(n) => name == n,
            Prefix(p) => name.starts_with(p),
            Suffix(s) => name.ends_with(s) && name.len() > s.len(),
            Dir(d) => comps.iter().any(|c| c == d),
            Within(w) => joined.contains(&format!("/{w}/")),
        })
        .map(|rule| rule.why)
}

/// Why each change is sensitive, as `(path, why)` pairs.
pub fn flags(changes: &[RawChange]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in changes {
        let p = c.path.as_str();
        let mut flag = |why: String| out.push((p.to_string(), why));
        if let Some(why) = path_reason(p) {
            flag(why.to_string());
        }
        if c.new_mode == "120000" {
            flag("symbolic link".into());
        }
        if c.new_mode == "160000" || c.old_mode == "160000" {
            flag("submodule commit".into());
        }
        let was_exec = c.old_mode == "100755";
        let is_exec = c.new_mode == "100755";
        if is_exec != was_exec && c.status != 'D' && (c.status != 'A' || is_exec) {
            flag(if is_exec {
                "made executable".into()
            } else {
                "no longer executable".into()
            });
        }
        let blob = c.new_oid.get(..12).unwrap_or(&c.new_oid);
        match c.new_size {
            Some(s) if s > LARGE => flag(format!(
                "large file (over 1 MiB: {s} bytes{}, blob {blob})",
                if c.binary { ", binary" } else { "" }
            )),
            Some(s) if c.binary => flag(format!(
                "binary file ({s} bytes, blob {blob}): not shown as text"
            )),
            _ => {}
        }
    }
    out
}

/// Merge the flags of every re-created commit (`label`, changes) with those of the net diff.
pub fn collect(per_commit: &[(String, Vec<RawChange>)], net: &[RawChange]) -> Vec<Flag> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut found: HashMap<(String, String), Flag> = HashMap::new();
    let mut add = |path: String, why: String, label: Option<&str>, in_final: bool| {
        let key = (path.clone(), why.clone());
        let f = found.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Flag {
                path,
                why,
                commits: Vec::new(),
                in_final_diff: false,
            }
        });
        f.in_final_diff |= in_final;
        if let Some(l) = label
            && !f.commits.iter().any(|c| c == l)
        {
            f.commits.push(l.to_string());
        }
    };
    for (path, why) in flags(net) {
        add(path, why, None, true);
    }
    for (label, changes) in per_commit {
        for (path, why) in flags(changes) {
            add(path, why, Some(label), false);
        }
    }
    order.into_iter().filter_map(|k| found.remove(&k)).collect()
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
            new_oid: "0123456789abcdef0123".into(),
            ..RawChange::default()
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
        assert_eq!(c[1].new_oid, "ccc");
    }

    #[test]
    fn diff_tree_output_groups_by_commit() {
        let raw = "c1\0:000000 100644 000 aaa A\0a\0c2 (from p1)\0:100644 000000 aaa 000 D\0a\0c2 (from p2)\0:000000 100644 000 bbb A\0b\0";
        let g = parse_diff_tree(raw);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, "c1");
        assert_eq!(g[1].0, "c2");
        assert_eq!(g[1].1.len(), 2);
    }

    #[test]
    fn sensitive_changes_are_flagged_and_ordinary_ones_are_not() {
        let mut big = change("100644", "100644", 'M', "data.bin");
        big.new_size = Some(LARGE + 1);
        let mut bin = change("000000", "100644", 'A', "img.png");
        bin.new_size = Some(10);
        bin.binary = true;
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
            bin,
        ];
        let f = flags(&changes);
        let has = |p: &str, w: &str| f.iter().any(|(path, why)| path == p && why.starts_with(w));
        assert!(has(".github/workflows/ci.yml", "CI configuration"));
        assert!(has(".gitmodules", "submodule URLs"));
        assert!(has(
            ".git-agent/dockerfiles/project.dockerfile",
            "git-agent"
        ));
        assert!(has("build.sh", "made executable"));
        assert!(has("escape", "symbolic link"));
        assert!(has("tool.sh", "made executable"));
        assert!(has("data.bin", "large file"));
        assert!(has("img.png", "binary file (10 bytes, blob 0123456789ab)"));
        assert!(
            !f.iter()
                .any(|(p, _)| p == "src/main.rs" || p == "docs/readme.md")
        );
    }

    #[test]
    fn path_table_matches_at_any_depth_and_any_case() {
        for p in [
            ".envrc",
            "sub/.envrc",
            ".env.local",
            ".VSCode/tasks.json",
            ".vscode/settings.json",
            ".idea/workspace.xml",
            ".devcontainer/devcontainer.json",
            ".github/dependabot.yml",
            "svc/.GitLab-CI.yml",
            ".circleci/config.yml",
            "Jenkinsfile",
            ".travis.yml",
            "azure-pipelines.yml",
            ".buildkite/pipeline.yml",
            ".pre-commit-config.yaml",
            ".husky/pre-commit",
            "lefthook.yml",
            "Makefile",
            "lib/rules.mk",
            "build.rs",
            ".cargo/config.toml",
            "rust-toolchain.toml",
            "web/package.json",
            ".npmrc",
            ".yarnrc.yml",
            "setup.py",
            "pyproject.toml",
            "tests/conftest.py",
            "Gemfile",
            "Rakefile",
            "gradle/wrapper/gradle-wrapper.properties",
            "app/build.gradle.kts",
            "gradlew",
            "pom.xml",
            ".mvn/extensions.xml",
            "CMakeLists.txt",
            "Dockerfile",
            "docker/Dockerfile.dev",
            "docker-compose.override.yml",
            "flake.nix",
            "shell.nix",
            "lib/.gitattributes",
            ".gitmodules",
            ".lfsconfig",
            ".gitconfig",
            ".git-agent/agents/claude.toml",
            "CLAUDE.md",
            "pkg/AGENTS.md",
            ".claude/settings.json",
            ".cursor/rules/x.mdc",
            ".mcp.json",
            ".tool-versions",
            ".mise.toml",
            ".nvmrc",
            "vite.config.ts",
            "site-packages/evil.pth",
            ".github\u{200c}/workflows/x.yml",
            ".github./workflows/x.yml",
            "CODEOWNERS",
            ".mailmap",
        ] {
            assert!(path_reason(p).is_some(), "{p} is not flagged");
        }
        for p in [
            "src/main.rs",
            "README.md",
            "docs/guide.md",
            "build/output.txt",
            "src/config.rs",
            "environment.txt",
            ".config",
        ] {
            assert_eq!(path_reason(p), None, "{p} is flagged");
        }
        assert_eq!(
            path_reason(".github/workflows/x.yml"),
            Some(CI),
            "most specific row first"
        );
    }

    #[test]
    fn flags_from_commits_are_merged_with_their_origin() {
        let wf = change("000000", "100644", 'A', ".github/workflows/x.yml");
        let mut gone = wf.clone();
        gone.status = 'D';
        gone.new_mode = "000000".into();
        let per = vec![("c1".to_string(), vec![wf]), ("c2".to_string(), vec![gone])];
        let f = collect(&per, &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].commits, ["c1", "c2"]);
        assert!(!f[0].in_final_diff);
    }
}
